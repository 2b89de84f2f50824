//! Reading one byte range of a file as batches of lines.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, BinaryArray, DictionaryArray, Int32Array, StringArray};
use arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{Int32Type, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::physical_plan::metrics::Count;

use super::{Compression, FileRange, LineOptions, line_schema};
use crate::error::{Error, Result};
use crate::progress::Progress;

/// Lines longer than this are refused (they are almost always binary input).
pub const MAX_LINE_BYTES: usize = 256 * 1024 * 1024;

/// A batch is sent once its text exceeds this many bytes (or `batch_size`
/// rows): moderate buffers are recycled by the allocator instead of being
/// faulted in fresh (and zeroed) for every batch, and a batch stays in a
/// core's cache until its consumer reads it.
const BATCH_BYTES: usize = 128 << 10;

/// Bytes read from disk per read call (the read buffer is twice this):
/// small enough to leave the cache to the consumer's hash tables.
const READ_BYTES: usize = 256 << 10;

/// Collects lines into batches and sends them downstream. A batch never
/// spans two ranges, so its line offsets always refer to one file.
pub(super) struct BatchSink<'a> {
    pub(super) schema: SchemaRef,
    pub(super) options: LineOptions,
    pub(super) tag: Option<ArrayRef>,
    batch_rows: usize,
    tx: &'a tokio::sync::mpsc::Sender<DfResult<RecordBatch>>,
    progress: Option<&'a Progress>,
    output_rows: Count,
    bytes: Count,
    /// Time spent reading and cutting lines (not waiting for the consumer).
    pub(super) elapsed: Option<datafusion::physical_plan::metrics::Time>,
    since: std::time::Instant,
    path: PathBuf,
    offsets: Vec<i32>,
    line_starts: Vec<u64>,
    values: Vec<u8>,
    last_values: usize,
    pending_bytes: u64,
}

/// Signals that the consumer went away (e.g. a `LIMIT` was satisfied).
pub(super) struct Closed;

impl<'a> BatchSink<'a> {
    pub(super) fn new(
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
            elapsed: None,
            since: std::time::Instant::now(),
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
        self.pushed(offset, raw_len)
    }

    /// Pushes `data[start..end]`, copied as the 64 bytes from `start` (a
    /// fixed-size copy, inlined, where a short line's own length costs a
    /// call to `memmove`) when `data` has them, then cut to the line.
    #[inline]
    fn push_at(
        &mut self,
        data: &[u8],
        start: usize,
        end: usize,
        offset: u64,
        raw_len: u64,
    ) -> Result<(), FlushError> {
        let block: Option<&[u8; 64]> = data.get(start..start + 64).and_then(|b| b.try_into().ok());
        match block {
            Some(block) if end - start <= 64 => {
                let at = self.values.len();
                self.values.extend_from_slice(block);
                self.values.truncate(at + (end - start));
            }
            _ => self.values.extend_from_slice(&data[start..end]),
        }
        self.pushed(offset, raw_len)
    }

    /// Notes the line just pushed onto `values`; flushes a full batch.
    #[inline]
    fn pushed(&mut self, offset: u64, raw_len: u64) -> Result<(), FlushError> {
        // Batches stay far below i32::MAX: they are flushed past BATCH_BYTES.
        self.offsets.push(self.values.len() as i32);
        self.line_starts.push(offset);
        self.pending_bytes += raw_len;
        if self.offsets.len() > self.batch_rows || self.values.len() > BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    pub(super) fn flush(&mut self) -> Result<(), FlushError> {
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
        if let Some(elapsed) = &self.elapsed {
            elapsed.add_duration(self.since.elapsed());
        }
        let sent = self.tx.blocking_send(Ok(batch));
        self.since = std::time::Instant::now();
        sent.map_err(|_| FlushError::Closed(Closed))
    }
}

pub(super) enum FlushError {
    Closed(Closed),
    Df(DataFusionError),
}

/// Opens a range's file at byte `from`, decompressed if it is compressed
/// (a compressed file is read whole, from 0). A file on an object store is
/// read through `runtime`'s store for it, its first request ending where
/// the range does.
fn open_at(
    range: &FileRange,
    from: u64,
    runtime: Option<&RuntimeEnv>,
) -> Result<Box<dyn Read + Send>> {
    let path = &range.path;
    let raw: Box<dyn Read + Send> = if super::is_url(&path.to_string_lossy()) {
        let bound =
            (range.compression == Compression::None && range.end != u64::MAX).then_some(range.end);
        Box::new(super::objects::ObjectRead::open(
            path, from, bound, runtime,
        )?)
    } else {
        let mut file = File::open(path).map_err(|e| Error::io("opening", path, e))?;
        if from > 0 {
            file.seek(SeekFrom::Start(from))
                .map_err(|e| Error::io("seeking in", path, e))?;
        }
        Box::new(file)
    };
    Ok(match range.compression {
        Compression::None => raw,
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
            READ_BYTES, raw,
        ))),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::new(raw).map_err(|e| Error::io("opening", path, e))?,
        ),
    })
}

/// Reads the lines a range owns into the sink.
pub(super) fn read_range(
    range: &FileRange,
    sink: &mut BatchSink<'_>,
    runtime: Option<&RuntimeEnv>,
) -> DfResult<()> {
    sink.path.clone_from(&range.path);
    let result = read_range_inner(range, sink, runtime).and_then(|()| sink.flush());
    match result {
        Ok(()) | Err(FlushError::Closed(_)) => Ok(()),
        Err(FlushError::Df(e)) => Err(e),
    }
}

fn read_range_inner(
    range: &FileRange,
    sink: &mut BatchSink<'_>,
    runtime: Option<&RuntimeEnv>,
) -> Result<(), FlushError> {
    let io = |e: Error| FlushError::Df(e.into());
    // A range that does not start the file lands one byte early: if that
    // byte is a newline, the line at `start` is ours. `pos` is the file
    // offset of buf[0].
    let mut pos = range.start.saturating_sub(1);
    let mut skip_first = range.start > 0;
    let mut reader = open_at(range, pos, runtime).map_err(io)?;
    // `buf[..filled]` holds the bytes from `pos` on. The buffer is zeroed
    // once and reused: it grows only while a line longer than a read is
    // kept, so no read pays for clearing memory it is about to fill.
    let mut buf: Vec<u8> = vec![0; READ_BYTES * 2];
    let mut filled = 0usize;
    let mut eof = false;
    loop {
        // Fill: append up to READ_BYTES more.
        if !eof {
            if buf.len() < filled + READ_BYTES {
                buf.resize(filled + READ_BYTES, 0);
            }
            let n = read_full(&mut reader, &mut buf[filled..filled + READ_BYTES])
                .map_err(|e| io(Error::io("reading", &range.path, e)))?;
            filled += n;
            if n == 0 {
                eof = true;
            }
        }
        let data = &buf[..filled];
        let mut consumed = 0usize;
        if skip_first {
            match memchr::memchr(b'\n', data) {
                Some(i) => {
                    consumed = i + 1;
                    skip_first = false;
                }
                None if eof => return Ok(()),
                None => {
                    pos += filled as u64;
                    filled = 0;
                    continue;
                }
            }
        }
        // Emit complete lines that start inside the range.
        let mut line_start = consumed;
        let mut done = false;
        for nl in super::newlines::newlines(&data[consumed..]) {
            let nl = consumed + nl;
            if pos + line_start as u64 >= range.end {
                done = true;
                break;
            }
            // Without its `\r` when it ends in CRLF.
            let end = if nl > line_start && data[nl - 1] == b'\r' {
                nl - 1
            } else {
                nl
            };
            sink.push_at(
                data,
                line_start,
                end,
                pos + line_start as u64,
                (nl + 1 - line_start) as u64,
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
            if line_start < filled {
                emit_line(
                    &data[line_start..],
                    pos + line_start as u64,
                    (filled - line_start) as u64,
                    sink,
                )?;
            }
            return Ok(());
        }
        if filled - line_start > MAX_LINE_BYTES {
            return Err(io(Error::LineTooLong {
                path: range.path.clone(),
                offset: pos + line_start as u64,
                limit: MAX_LINE_BYTES,
            }));
        }
        // Keep the partial line for the next round.
        buf.copy_within(line_start..filled, 0);
        filled -= line_start;
        pos += line_start as u64;
    }
}

/// Reads each range's file whole (decompressed) as one `(path, content)`
/// row; content that is not UTF-8 fails naming the file and offset.
pub(super) fn read_whole_files(
    ranges: &[(FileRange, usize)],
    (options, batch_rows): (LineOptions, usize),
    tx: &tokio::sync::mpsc::Sender<DfResult<arrow::record_batch::RecordBatch>>,
    progress: Option<&crate::progress::Progress>,
    runtime: Option<&RuntimeEnv>,
) -> DfResult<()> {
    use arrow::array::{ArrayRef, BinaryBuilder, StringBuilder};
    let schema = super::line_schema_with(options);
    let mut paths = StringBuilder::new();
    let mut texts = StringBuilder::new();
    let mut raws = BinaryBuilder::new();
    let mut rows = 0usize;
    let flush = |paths: &mut StringBuilder,
                 texts: &mut StringBuilder,
                 raws: &mut BinaryBuilder,
                 rows: &mut usize|
     -> DfResult<bool> {
        if *rows == 0 {
            return Ok(true);
        }
        let content: ArrayRef = if options.raw {
            Arc::new(raws.finish())
        } else {
            Arc::new(texts.finish())
        };
        let batch = arrow::record_batch::RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(paths.finish()), content],
        )?;
        *rows = 0;
        Ok(tx.blocking_send(Ok(batch)).is_ok())
    };
    for (range, _) in ranges {
        let mut reader = open_at(range, 0, runtime)?;
        let mut bytes = Vec::new();
        reader
            .read_to_end(&mut bytes)
            .map_err(|e| DataFusionError::from(Error::io("reading", &range.path, e)))?;
        if let Some(p) = progress {
            p.add_read(range.size, 1);
        }
        let path = range.path.to_string_lossy();
        paths.append_value(path.as_ref());
        if options.raw {
            raws.append_value(&bytes);
        } else {
            match std::str::from_utf8(&bytes) {
                Ok(text) => texts.append_value(text),
                Err(e) => {
                    let offset = e.valid_up_to() as u64;
                    let line_start = bytes[..e.valid_up_to()]
                        .iter()
                        .rposition(|b| *b == b'\n')
                        .map_or(0, |i| i as u64 + 1);
                    return Err(Error::InvalidUtf8 {
                        path: range.path.clone(),
                        offset,
                        line_start,
                    }
                    .into());
                }
            }
        }
        rows += 1;
        if rows >= batch_rows && !flush(&mut paths, &mut texts, &mut raws, &mut rows)? {
            return Ok(());
        }
    }
    flush(&mut paths, &mut texts, &mut raws, &mut rows)?;
    Ok(())
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
    use crate::source::{expand_inputs, plan_splits};
    use std::io::Write;

    fn read_all(path: &Path, parts: usize) -> Vec<String> {
        let files = expand_inputs(&[path]).unwrap();
        let splits = plan_splits(&files, parts).unwrap();
        let mut lines = Vec::new();
        for split in splits {
            for r in split {
                let (tx, mut rx) = tokio::sync::mpsc::channel(1 << 16);
                let mut sink = BatchSink::new(7, &tx, None, Count::new(), Count::new());
                read_range(&r, &mut sink, None).unwrap();
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
        let err = read_range(r, &mut sink, None).unwrap_err().to_string();
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
}
