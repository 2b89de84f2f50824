//! Text input: path expansion, byte-range splits and the `TextSourceExec` node.
//!
//! Splitting follows Hadoop's `LineRecordReader`: a split `[start, end)` owns
//! every line whose first byte lies in it. A reader whose split does not start
//! at 0 skips the partial line it lands in; every reader finishes the line that
//! crosses its end. So each line is read exactly once, whatever the split points.
//! Compressed files (`.gz`, `.zst`) cannot be split and are read whole.

use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::format::Compression;

use arrow::array::{ArrayRef, BinaryArray, DictionaryArray, Int32Array, StringArray};
use arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::progress::Progress;

/// Name of the column holding the lines.
pub const LINE_COLUMN: &str = "value";

/// Name of the column that tags each line with its split (see [`LineOptions`]).
pub const SPLIT_COLUMN: &str = "split";

/// How a text source presents the lines it reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Serialize, Deserialize)]
pub struct LineOptions {
    /// Lines as raw bytes (`Binary`), not checked for UTF-8: Hadoop Streaming
    /// hands a task's command the bytes of its input as they are.
    pub raw: bool,
    /// Adds a [`SPLIT_COLUMN`] naming the byte range each line belongs to (a
    /// dictionary column: one value per batch, as a batch never spans two
    /// ranges), so a downstream op can start one task per split, as Hadoop
    /// starts one map task per input split. See [`SplitTag`].
    pub tag_splits: bool,
}

/// Which part of which file a line was read from: the value of the
/// [`SPLIT_COLUMN`], encoded as `index<TAB>start<TAB>length<TAB>path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitTag {
    /// The split's number among all splits of the source (Hadoop's map task number).
    pub index: usize,
    /// The file.
    pub path: PathBuf,
    /// Byte offset of the split in the file.
    pub start: u64,
    /// Length of the split in bytes (the whole file for compressed files).
    pub length: u64,
}

impl SplitTag {
    /// The tag of `range`.
    pub fn of(index: usize, range: &FileRange) -> Self {
        let length = if range.end == u64::MAX {
            std::fs::metadata(&range.path)
                .map(|m| m.len().saturating_sub(range.start))
                .unwrap_or(0)
        } else {
            range.end - range.start
        };
        Self {
            index,
            path: range.path.clone(),
            start: range.start,
            length,
        }
    }

    /// The tag as the column stores it.
    pub fn encode(&self) -> String {
        format!(
            "{}\t{}\t{}\t{}",
            self.index,
            self.start,
            self.length,
            self.path.display()
        )
    }

    /// Parses [`SplitTag::encode`]'s output.
    pub fn decode(s: &str) -> Option<Self> {
        let mut parts = s.splitn(4, '\t');
        let index = parts.next()?.parse().ok()?;
        let start = parts.next()?.parse().ok()?;
        let length = parts.next()?.parse().ok()?;
        let path = PathBuf::from(parts.next()?);
        Some(Self {
            index,
            path,
            start,
            length,
        })
    }
}

/// Lines longer than this are refused (they are almost always binary input).
pub const MAX_LINE_BYTES: usize = 256 * 1024 * 1024;

/// Files smaller than this are never split.
const MIN_SPLIT_BYTES: u64 = 1 << 20;

/// A batch is sent once its text exceeds this many bytes (or `batch_size`
/// rows): moderate buffers are recycled by the allocator instead of being
/// faulted in fresh (and zeroed) for every batch.
const BATCH_BYTES: usize = 256 << 10;

/// Bytes read from disk per read call.
const READ_BYTES: usize = 1 << 20;

/// One byte range of one input file: a unit of reading.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileRange {
    /// The file.
    pub path: PathBuf,
    /// First byte of the range.
    pub start: u64,
    /// One past the last byte whose line this range owns (`u64::MAX`: to the end).
    pub end: u64,
    /// How the file is compressed.
    pub compression: Compression,
}

/// An input file found by [`expand_inputs`], with its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    /// The file.
    pub path: PathBuf,
    /// Its size on disk in bytes.
    pub len: u64,
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(crate::store::is_hidden_name)
}

fn has_glob_chars(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn push_file(path: PathBuf, out: &mut Vec<InputFile>) -> Result<()> {
    let meta = std::fs::metadata(&path).map_err(|e| Error::io("reading", &path, e))?;
    out.push(InputFile {
        path,
        len: meta.len(),
    });
    Ok(())
}

/// Lists the files of a directory as Hadoop does: not recursive into hidden
/// entries (names starting with `.` or `_`, such as `_SUCCESS`), sorted by
/// name. `ancestors` are the directories being listed above this one (by
/// device and inode): a symbolic link back to one of them is an error, not
/// an endless walk.
fn push_dir(dir: &Path, ancestors: &mut Vec<(u64, u64)>, out: &mut Vec<InputFile>) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir).map_err(|e| Error::io("listing", dir, e))?;
    let id = (meta.dev(), meta.ino());
    if ancestors.contains(&id) {
        return Err(Error::io(
            "listing",
            dir,
            std::io::Error::other(
                "a symbolic link leads back to a directory that contains it \
                 (remove the link or name the files to read)",
            ),
        ));
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io("listing", dir, e))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::io("listing", dir, e))?;
    entries.sort();
    ancestors.push(id);
    for path in entries {
        if is_hidden(&path) {
            continue;
        }
        if path.is_dir() {
            push_dir(&path, ancestors, out)?;
        } else {
            push_file(path, out)?;
        }
    }
    ancestors.pop();
    Ok(())
}

/// Whether a glob match reaches a hidden name (`_SUCCESS`, a job's
/// `.out.spate-staging-*` directory) through a wildcard: a hidden name is
/// read only where the pattern spells it out, as Hadoop's glob does.
fn hidden_by_wildcard(pattern: &str, matched: &Path) -> bool {
    let pattern_parts: Vec<&str> = Path::new(pattern)
        .components()
        .map(|c| c.as_os_str().to_str().unwrap_or(""))
        .collect();
    let matched_parts: Vec<String> = matched
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let hidden_char = |p: &str| p.starts_with('.') || p.starts_with('_');
    matched_parts.iter().enumerate().any(|(i, part)| {
        if !crate::store::is_hidden_name(part) || part == "." || part == ".." {
            return false;
        }
        if pattern_parts.len() == matched_parts.len() {
            // One pattern part per path part: the part that matched must
            // itself start with the hidden character.
            !hidden_char(pattern_parts[i])
        } else {
            // `**` matched several parts: only names the pattern spells
            // out are asked for.
            !pattern_parts.contains(&part.as_str())
        }
    })
}

/// Expands input paths (files, directories, glob patterns) into files, in a
/// deterministic order. Any path that matches nothing is an error: a job never
/// silently reads less than it was given. Hidden files and directories are
/// left out of directory listings and glob matches unless named.
pub fn expand_inputs<P: AsRef<Path>>(inputs: &[P]) -> Result<Vec<InputFile>> {
    let mut out = Vec::new();
    let mut ancestors = Vec::new();
    for input in inputs {
        let input = input.as_ref();
        let text = input.to_string_lossy();
        if input.exists() {
            if input.is_dir() {
                push_dir(input, &mut ancestors, &mut out)?;
            } else {
                push_file(input.to_path_buf(), &mut out)?;
            }
        } else if has_glob_chars(&text) {
            let paths = glob::glob(&text).map_err(|e| Error::BadPattern {
                pattern: text.to_string(),
                message: e.to_string(),
            })?;
            let mut matched: Vec<PathBuf> = Vec::new();
            for p in paths {
                let p = p.map_err(|e| Error::io("listing", e.path().to_path_buf(), e.into()))?;
                if !hidden_by_wildcard(&text, &p) {
                    matched.push(p);
                }
            }
            matched.sort();
            if matched.is_empty() {
                return Err(Error::InputNotFound {
                    path: input.to_path_buf(),
                });
            }
            for p in matched {
                if p.is_dir() {
                    push_dir(&p, &mut ancestors, &mut out)?;
                } else {
                    push_file(p, &mut out)?;
                }
            }
        } else {
            return Err(Error::InputNotFound {
                path: input.to_path_buf(),
            });
        }
    }
    Ok(out)
}

/// Plans how to read `files` with `partitions` readers: uncompressed files are
/// cut into byte ranges of about equal size; compressed files go whole to the
/// least loaded reader. Empty partitions are dropped, but at least one remains.
pub fn plan_splits(files: &[InputFile], partitions: usize) -> Result<Vec<Vec<FileRange>>> {
    let partitions = partitions.max(1);
    let compressions = files
        .iter()
        .map(|f| {
            Compression::from_path(&f.path).map_err(|suffix| Error::UnsupportedCompression {
                path: f.path.clone(),
                suffix,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let splittable: u64 = files
        .iter()
        .zip(&compressions)
        .filter(|(_, c)| **c == Compression::None)
        .map(|(f, _)| f.len)
        .sum();
    let target = splittable.div_ceil(partitions as u64).max(MIN_SPLIT_BYTES);
    let mut ranges: Vec<(u64, FileRange)> = Vec::new();
    for (f, &compression) in files.iter().zip(&compressions) {
        if compression != Compression::None || f.len <= target {
            ranges.push((
                f.len,
                FileRange {
                    path: f.path.clone(),
                    start: 0,
                    end: u64::MAX,
                    compression,
                },
            ));
            continue;
        }
        let pieces = f.len.div_ceil(target);
        let step = f.len.div_ceil(pieces);
        let mut start = 0;
        while start < f.len {
            let end = (start + step).min(f.len);
            let end_mark = if end == f.len { u64::MAX } else { end };
            ranges.push((
                end - start,
                FileRange {
                    path: f.path.clone(),
                    start,
                    end: end_mark,
                    compression,
                },
            ));
            start = end;
        }
    }
    // Greedy: biggest ranges first, each to the least loaded reader. Ranges of a
    // reader are then put back in file order so output order is deterministic.
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    order.sort_by(|&a, &b| ranges[b].0.cmp(&ranges[a].0).then(a.cmp(&b)));
    let mut load = vec![0u64; partitions];
    let mut assigned: Vec<Vec<usize>> = vec![Vec::new(); partitions];
    for i in order {
        let (p, _) = load
            .iter()
            .enumerate()
            .min_by_key(|(p, l)| (**l, *p))
            .unwrap_or((0, &0));
        load[p] += ranges[i].0.max(1);
        assigned[p].push(i);
    }
    let mut out: Vec<Vec<FileRange>> = assigned
        .into_iter()
        .filter(|a| !a.is_empty())
        .map(|mut a| {
            a.sort_unstable();
            a.into_iter().map(|i| ranges[i].1.clone()).collect()
        })
        .collect();
    if out.is_empty() {
        out.push(Vec::new());
    }
    Ok(out)
}

/// The schema of text sources: one non-null UTF-8 column named [`LINE_COLUMN`].
pub fn line_schema() -> SchemaRef {
    line_schema_with(LineOptions::default())
}

/// The schema of a text source with `options`.
pub fn line_schema_with(options: LineOptions) -> SchemaRef {
    let line_type = if options.raw {
        DataType::Binary
    } else {
        DataType::Utf8
    };
    let mut fields = vec![Field::new(LINE_COLUMN, line_type, false)];
    if options.tag_splits {
        fields.push(Field::new(
            SPLIT_COLUMN,
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            false,
        ));
    }
    Arc::new(Schema::new(fields))
}

/// Reads text files as batches of lines, one partition per group of ranges.
#[derive(Debug)]
pub struct TextSourceExec {
    splits: Vec<Vec<FileRange>>,
    options: LineOptions,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl TextSourceExec {
    /// A source over the given splits (see [`plan_splits`]).
    pub fn new(splits: Vec<Vec<FileRange>>) -> Self {
        Self::with_options(splits, LineOptions::default())
    }

    /// A source over the given splits presenting lines as `options` say.
    pub fn with_options(splits: Vec<Vec<FileRange>>, options: LineOptions) -> Self {
        let schema = line_schema_with(options);
        let splits = if splits.is_empty() {
            vec![Vec::new()]
        } else {
            splits
        };
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(splits.len()),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Self {
            splits,
            options,
            schema,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    /// The splits this source reads, one entry per partition.
    pub fn splits(&self) -> &[Vec<FileRange>] {
        &self.splits
    }

    /// How this source presents lines.
    pub fn options(&self) -> LineOptions {
        self.options
    }
}

impl DisplayAs for TextSourceExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let mut files: Vec<&Path> = self
            .splits
            .iter()
            .flatten()
            .map(|r| r.path.as_path())
            .collect();
        files.dedup();
        let ranges: usize = self.splits.iter().map(Vec::len).sum();
        write!(
            f,
            "TextSourceExec: files={}, ranges={}",
            files.len(),
            ranges
        )?;
        if let Some(first) = files.first() {
            write!(f, ", first={}", first.display())?;
        }
        Ok(())
    }
}

impl ExecutionPlan for TextSourceExec {
    fn name(&self) -> &str {
        "TextSourceExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "TextSourceExec has no children".into(),
            ))
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let ranges = self.splits.get(partition).cloned().ok_or_else(|| {
            DataFusionError::Internal(format!("TextSourceExec has no partition {partition}"))
        })?;
        let batch_rows = context.session_config().batch_size().max(1);
        let progress = context.session_config().get_extension::<Progress>();
        let output_rows = MetricBuilder::new(&self.metrics).output_rows(partition);
        let bytes = MetricBuilder::new(&self.metrics).counter("bytes_read", partition);
        let schema = self.schema.clone();
        let options = self.options;
        let first_index: usize = self.splits[..partition].iter().map(Vec::len).sum();
        let mut builder = RecordBatchReceiverStreamBuilder::new(schema.clone(), 4);
        let tx = builder.tx();
        builder.spawn_blocking(move || {
            let mut sink = BatchSink::new(batch_rows, &tx, progress.as_deref(), output_rows, bytes);
            sink.options = options;
            sink.schema = line_schema_with(options);
            for (i, range) in ranges.iter().enumerate() {
                if options.tag_splits {
                    let tag = SplitTag::of(first_index + i, range).encode();
                    sink.tag = Some(Arc::new(StringArray::from(vec![tag])));
                }
                read_range(range, &mut sink)?;
            }
            match sink.flush() {
                Ok(()) | Err(FlushError::Closed(_)) => Ok(()),
                Err(FlushError::Df(e)) => Err(e),
            }
        });
        Ok(builder.build())
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// Collects lines into batches and sends them downstream. A batch never
/// spans two ranges, so its line offsets always refer to one file.
struct BatchSink<'a> {
    schema: SchemaRef,
    options: LineOptions,
    tag: Option<ArrayRef>,
    batch_rows: usize,
    tx: &'a tokio::sync::mpsc::Sender<DfResult<RecordBatch>>,
    progress: Option<&'a Progress>,
    output_rows: Count,
    bytes: Count,
    path: PathBuf,
    offsets: Vec<i32>,
    line_starts: Vec<u64>,
    values: Vec<u8>,
    last_values: usize,
    pending_bytes: u64,
}

/// Signals that the consumer went away (e.g. a `LIMIT` was satisfied).
struct Closed;

impl<'a> BatchSink<'a> {
    fn new(
        batch_rows: usize,
        tx: &'a tokio::sync::mpsc::Sender<DfResult<RecordBatch>>,
        progress: Option<&'a Progress>,
        output_rows: Count,
        bytes: Count,
    ) -> Self {
        Self {
            schema: line_schema(),
            options: LineOptions::default(),
            tag: None,
            batch_rows,
            tx,
            progress,
            output_rows,
            bytes,
            path: PathBuf::new(),
            offsets: vec![0],
            line_starts: Vec::new(),
            values: Vec::new(),
            last_values: 0,
            pending_bytes: 0,
        }
    }

    #[inline]
    fn push(&mut self, line: &[u8], offset: u64, raw_len: u64) -> Result<(), FlushError> {
        self.values.extend_from_slice(line);
        // Batches stay far below i32::MAX: they are flushed past BATCH_BYTES.
        self.offsets.push(self.values.len() as i32);
        self.line_starts.push(offset);
        self.pending_bytes += raw_len;
        if self.offsets.len() > self.batch_rows || self.values.len() > BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), FlushError> {
        let rows = self.offsets.len() - 1;
        if rows == 0 {
            return Ok(());
        }
        let offsets = std::mem::replace(&mut self.offsets, Vec::with_capacity(self.batch_rows + 1));
        self.offsets.push(0);
        // Size the next buffer like this one: no regrowing, no page-fault churn.
        self.last_values = self.values.len();
        let values = std::mem::replace(
            &mut self.values,
            Vec::with_capacity(self.last_values + self.last_values / 8),
        );
        // One UTF-8 validation per batch (in `try_new`); find the line only on failure.
        let offsets_buf = OffsetBuffer::new(ScalarBuffer::from(offsets));
        let buffer = Buffer::from_vec(values);
        let array: ArrayRef = if self.options.raw {
            Arc::new(BinaryArray::new(offsets_buf, buffer, None))
        } else {
            match StringArray::try_new(offsets_buf.clone(), buffer.clone(), None) {
                Ok(a) => Arc::new(a),
                Err(_) => {
                    let e = locate_invalid_utf8(
                        &self.path,
                        buffer.as_slice(),
                        &offsets_buf,
                        &self.line_starts,
                    );
                    return Err(FlushError::Df(e.into()));
                }
            }
        };
        self.line_starts.clear();
        let mut columns = vec![array];
        if let Some(tag) = &self.tag {
            let keys = Int32Array::from(vec![0; rows]);
            let tags = DictionaryArray::<Int32Type>::try_new(keys, tag.clone())
                .map_err(|e| FlushError::Df(e.into()))?;
            columns.push(Arc::new(tags));
        }
        let batch = RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| FlushError::Df(e.into()))?;
        self.output_rows.add(rows);
        self.bytes.add(self.pending_bytes as usize);
        if let Some(p) = self.progress {
            p.add_read(self.pending_bytes, rows as u64);
        }
        self.pending_bytes = 0;
        self.tx
            .blocking_send(Ok(batch))
            .map_err(|_| FlushError::Closed(Closed))
    }
}

enum FlushError {
    Closed(Closed),
    Df(DataFusionError),
}

fn open_range(range: &FileRange) -> Result<Box<dyn Read + Send>> {
    let file = File::open(&range.path).map_err(|e| Error::io("opening", &range.path, e))?;
    Ok(match range.compression {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
            READ_BYTES, file,
        ))),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::new(file)
                .map_err(|e| Error::io("opening", &range.path, e))?,
        ),
    })
}

/// Reads the lines a range owns into the sink.
fn read_range(range: &FileRange, sink: &mut BatchSink<'_>) -> DfResult<()> {
    sink.path.clone_from(&range.path);
    let result = read_range_inner(range, sink).and_then(|()| sink.flush());
    match result {
        Ok(()) | Err(FlushError::Closed(_)) => Ok(()),
        Err(FlushError::Df(e)) => Err(e),
    }
}

fn read_range_inner(range: &FileRange, sink: &mut BatchSink<'_>) -> Result<(), FlushError> {
    let io = |e: Error| FlushError::Df(e.into());
    // `pos` is the file offset of buf[0].
    let (mut reader, mut pos, mut skip_first): (Box<dyn Read + Send>, u64, bool) =
        if range.start > 0 {
            // Land one byte early: if it is a newline, the line at `start` is ours.
            let mut file =
                File::open(&range.path).map_err(|e| io(Error::io("opening", &range.path, e)))?;
            file.seek(SeekFrom::Start(range.start - 1))
                .map_err(|e| io(Error::io("seeking in", &range.path, e)))?;
            (Box::new(file), range.start - 1, true)
        } else {
            (open_range(range).map_err(io)?, 0, false)
        };
    let mut buf: Vec<u8> = Vec::with_capacity(READ_BYTES * 2);
    let mut eof = false;
    loop {
        // Fill: append up to READ_BYTES more.
        if !eof {
            let len = buf.len();
            buf.resize(len + READ_BYTES, 0);
            let n = read_full(&mut reader, &mut buf[len..])
                .map_err(|e| io(Error::io("reading", &range.path, e)))?;
            buf.truncate(len + n);
            if n == 0 {
                eof = true;
            }
        }
        let mut consumed = 0usize;
        if skip_first {
            match memchr::memchr(b'\n', &buf) {
                Some(i) => {
                    consumed = i + 1;
                    skip_first = false;
                }
                None if eof => return Ok(()),
                None => {
                    pos += buf.len() as u64;
                    buf.clear();
                    continue;
                }
            }
        }
        // Emit complete lines that start inside the range.
        let mut line_start = consumed;
        let mut done = false;
        for nl in memchr::memchr_iter(b'\n', &buf[consumed..]) {
            let nl = consumed + nl;
            if pos + line_start as u64 >= range.end {
                done = true;
                break;
            }
            emit_line(
                &buf[line_start..nl],
                pos + line_start as u64,
                (nl + 1 - line_start) as u64,
                sink,
            )?;
            line_start = nl + 1;
        }
        if !done && pos + line_start as u64 >= range.end {
            done = true;
        }
        if done {
            return Ok(());
        }
        if eof {
            // The last line of the file may lack its newline.
            if line_start < buf.len() {
                emit_line(
                    &buf[line_start..],
                    pos + line_start as u64,
                    (buf.len() - line_start) as u64,
                    sink,
                )?;
            }
            return Ok(());
        }
        if buf.len() - line_start > MAX_LINE_BYTES {
            return Err(io(Error::LineTooLong {
                path: range.path.clone(),
                offset: pos + line_start as u64,
                limit: MAX_LINE_BYTES,
            }));
        }
        // Keep the partial line for the next round.
        buf.drain(..line_start);
        pos += line_start as u64;
    }
}

fn emit_line(
    line: &[u8],
    offset: u64,
    raw_len: u64,
    sink: &mut BatchSink<'_>,
) -> Result<(), FlushError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    sink.push(line, offset, raw_len)
}

/// Finds the first invalid UTF-8 line of a batch (the slow path, only taken
/// when the batch as a whole failed validation).
fn locate_invalid_utf8(path: &Path, values: &[u8], offsets: &[i32], line_starts: &[u64]) -> Error {
    for (i, w) in offsets.windows(2).enumerate() {
        let line = &values[w[0] as usize..w[1] as usize];
        if let Err(e) = std::str::from_utf8(line) {
            let start = line_starts.get(i).copied().unwrap_or(0);
            return Error::InvalidUtf8 {
                path: path.to_path_buf(),
                offset: start + e.valid_up_to() as u64,
                line_start: start,
            };
        }
    }
    Error::InvalidUtf8 {
        path: path.to_path_buf(),
        offset: line_starts.first().copied().unwrap_or(0),
        line_start: 0,
    }
}

fn read_full(reader: &mut dyn Read, mut buf: &mut [u8]) -> std::io::Result<usize> {
    let mut total = 0;
    while !buf.is_empty() {
        match reader.read(buf) {
            Ok(0) => break,
            Ok(n) => {
                total += n;
                buf = &mut buf[n..];
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read_all(path: &Path, parts: usize) -> Vec<String> {
        let files = expand_inputs(&[path]).unwrap();
        let splits = plan_splits(&files, parts).unwrap();
        let mut lines = Vec::new();
        for split in splits {
            for r in split {
                let (tx, mut rx) = tokio::sync::mpsc::channel(1 << 16);
                let mut sink = BatchSink::new(7, &tx, None, Count::new(), Count::new());
                read_range(&r, &mut sink).unwrap();
                assert!(sink.flush().is_ok());
                drop(tx);
                while let Ok(b) = rx.try_recv() {
                    let b = b.unwrap();
                    let a = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
                    lines.extend(a.iter().map(|s| s.unwrap().to_string()));
                }
            }
        }
        lines
    }

    #[test]
    fn compressions_the_reader_cannot_decode_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt.bz2");
        std::fs::write(&path, b"BZh9").unwrap();
        let files = expand_inputs(&[&path]).unwrap();
        let err = plan_splits(&files, 2).unwrap_err().to_string();
        assert!(
            err.contains("a.txt.bz2: .bz2 files are not read as text"),
            "{err}"
        );
    }

    #[test]
    fn every_line_read_once_whatever_the_split() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.txt");
        let mut f = File::create(&path).unwrap();
        let mut expected = Vec::new();
        for i in 0..300_000u32 {
            let line = format!("line {i} {}", "x".repeat((i % 17) as usize));
            writeln!(f, "{line}").unwrap();
            expected.push(line);
        }
        write!(f, "last line without newline").unwrap();
        expected.push("last line without newline".into());
        drop(f);
        for parts in [1, 2, 3, 5, 8] {
            assert_eq!(read_all(&path, parts), expected, "parts={parts}");
        }
    }

    #[test]
    fn crlf_and_empty_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        std::fs::write(&path, b"a\r\n\r\n\nb\r\nc").unwrap();
        assert_eq!(read_all(&path, 1), vec!["a", "", "", "b", "c"]);
        let empty = dir.path().join("e.txt");
        std::fs::write(&empty, b"").unwrap();
        assert!(read_all(&empty, 2).is_empty());
    }

    #[test]
    fn invalid_utf8_names_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.txt");
        std::fs::write(&path, b"ok\nfine \xff here\n").unwrap();
        let files = expand_inputs(&[&path]).unwrap();
        let r = &plan_splits(&files, 1).unwrap()[0][0];
        let (tx, _rx) = tokio::sync::mpsc::channel(16);
        let mut sink = BatchSink::new(7, &tx, None, Count::new(), Count::new());
        let err = read_range(r, &mut sink).unwrap_err().to_string();
        assert!(err.contains("bad.txt"), "{err}");
        assert!(err.contains("byte offset 8"), "{err}");
    }

    #[test]
    fn compressed_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let gz = dir.path().join("a.txt.gz");
        let mut e = flate2::write::GzEncoder::new(
            File::create(&gz).unwrap(),
            flate2::Compression::default(),
        );
        e.write_all(b"x y\nz\n").unwrap();
        e.finish().unwrap();
        let zst = dir.path().join("b.txt.zst");
        std::fs::write(&zst, zstd::encode_all(&b"p\nq"[..], 3).unwrap()).unwrap();
        assert_eq!(read_all(dir.path(), 4), vec!["x y", "z", "p", "q"]);
    }

    #[test]
    fn globs_skip_hidden_names_and_symlink_loops_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(out.join(".out2.spate-staging-1")).unwrap();
        std::fs::write(out.join("part-00000"), "a\n").unwrap();
        std::fs::write(out.join("_SUCCESS"), "").unwrap();
        std::fs::write(out.join(".out2.spate-staging-1/part-00000"), "x\n").unwrap();
        std::fs::write(dir.path().join(".hidden.txt"), "h\n").unwrap();
        let names = |pattern: String| -> Vec<String> {
            expand_inputs(&[pattern])
                .unwrap()
                .into_iter()
                .map(|f| {
                    f.path
                        .strip_prefix(dir.path())
                        .unwrap()
                        .display()
                        .to_string()
                })
                .collect()
        };
        let root = dir.path().display();
        assert_eq!(names(format!("{root}/out/*")), ["out/part-00000"]);
        assert_eq!(names(format!("{root}/*/*")), ["out/part-00000"]);
        assert_eq!(names(format!("{root}/**/part-*")), ["out/part-00000"]);
        assert_eq!(names(format!("{root}/*")), ["out/part-00000"]);
        // Named, a hidden file is read.
        assert_eq!(names(format!("{root}/out/_SUC*")), ["out/_SUCCESS"]);
        assert_eq!(names(format!("{root}/.hid*")), [".hidden.txt"]);

        // A link back to an ancestor: an error naming the place, no overflow.
        std::os::unix::fs::symlink(dir.path(), out.join("loop")).unwrap();
        let err = expand_inputs(&[dir.path()]).unwrap_err().to_string();
        assert!(
            err.contains("loop") && err.contains("symbolic link"),
            "{err}"
        );
    }

    #[test]
    fn missing_inputs_are_errors() {
        let err = expand_inputs(&["/no/such/file"]).unwrap_err();
        assert!(matches!(err, Error::InputNotFound { .. }));
        let err = expand_inputs(&["/no/such/*.txt"]).unwrap_err();
        assert!(matches!(err, Error::InputNotFound { .. }));
    }
}
