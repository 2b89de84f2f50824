//! Text input: path expansion, byte-range splits and the `TextSourceExec` node.
//!
//! Splitting follows Hadoop's `LineRecordReader`: a split `[start, end)` owns
//! every line whose first byte lies in it. A reader whose split does not start
//! at 0 skips the partial line it lands in; every reader finishes the line that
//! crosses its end. So each line is read exactly once, whatever the split points.
//! Compressed files (`.gz`, `.zst`) cannot be split and are read whole.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::StringArray;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use serde::{Deserialize, Serialize};

use crate::progress::Progress;

mod files;
mod groups;
mod newlines;
mod objects;
mod read;
mod split;

pub use crate::format::Compression;
pub use files::{InputFile, expand_inputs, list_inputs};
pub use groups::{SplitGroups, TextFileSource, as_file_scan, from_split_groups, text_file_scan};
pub use objects::is_url;
pub use read::MAX_LINE_BYTES;
pub use split::{FileRange, plan_splits, plan_whole_files};

use read::{BatchSink, FlushError, read_range};

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
    /// One row per file, `(path, content)` in columns `0` and `1`, instead
    /// of one per line (Spark's `wholeTextFiles`); files are not split.
    #[serde(default)]
    pub whole_files: bool,
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
            range.size.saturating_sub(range.start)
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
    if options.whole_files {
        return Arc::new(Schema::new(vec![
            Field::new("0", DataType::Utf8, false),
            Field::new("1", line_type, false),
        ]));
    }
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

/// How a partition of a text scan reads: rows per batch, the progress to
/// report to, and the runtime whose object stores serve URLs (`None`: set
/// up from the environment).
pub(crate) type Reading = (usize, Option<Arc<Progress>>, Option<Arc<RuntimeEnv>>);

/// Reads `ranges` (each with its number among all splits of its source) in
/// a blocking thread, as batches of lines: one partition of a text scan.
pub(crate) fn read_splits(
    ranges: Vec<(FileRange, usize)>,
    options: LineOptions,
    (batch_rows, progress, runtime): Reading,
    metrics: &ExecutionPlanMetricsSet,
    partition: usize,
) -> SendableRecordBatchStream {
    let batch_rows = batch_rows.max(1);
    let output_rows = MetricBuilder::new(metrics).output_rows(partition);
    let bytes = MetricBuilder::new(metrics).counter("bytes_read", partition);
    let schema = line_schema_with(options);
    let mut builder = RecordBatchReceiverStreamBuilder::new(schema, 4);
    let tx = builder.tx();
    if options.whole_files {
        builder.spawn_blocking(move || {
            let runtime = runtime.as_deref();
            read::read_whole_files(
                &ranges,
                (options, batch_rows),
                &tx,
                progress.as_deref(),
                runtime,
            )
        });
        return builder.build();
    }
    let elapsed = MetricBuilder::new(metrics).elapsed_compute(partition);
    builder.spawn_blocking(move || {
        let mut sink = BatchSink::new(batch_rows, &tx, progress.as_deref(), output_rows, bytes);
        sink.elapsed = Some(elapsed);
        sink.options = options;
        sink.schema = line_schema_with(options);
        for (range, index) in &ranges {
            if options.tag_splits {
                let tag = SplitTag::of(*index, range).encode();
                sink.tag = Some(Arc::new(StringArray::from(vec![tag])));
            }
            read_range(range, &mut sink, runtime.as_deref())?;
        }
        match sink.flush() {
            Ok(()) | Err(FlushError::Closed(_)) => Ok(()),
            Err(FlushError::Df(e)) => Err(e),
        }
    });
    builder.build()
}

/// Reads text files as batches of lines, one partition per group of ranges.
#[derive(Debug)]
pub struct TextSourceExec {
    splits: Vec<Vec<FileRange>>,
    options: LineOptions,
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
        let first_index: usize = self.splits[..partition].iter().map(Vec::len).sum();
        let indexed = ranges
            .into_iter()
            .enumerate()
            .map(|(i, range)| (range, first_index + i))
            .collect();
        let config = context.session_config();
        let reading = (
            config.batch_size(),
            config.get_extension::<Progress>(),
            Some(context.runtime_env()),
        );
        Ok(read_splits(
            indexed,
            self.options,
            reading,
            &self.metrics,
            partition,
        ))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}
