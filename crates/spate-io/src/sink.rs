//! Part-file writers: `WriteExec` writes each input partition to one
//! `part-NNNNN` file in a staging directory (see [`crate::commit`]).

use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::StreamExt;

use crate::commit::part_file_name;
use crate::error::Error;
pub use crate::format::FileFormat;

/// Writes each partition of its input to `dir/part-NNNNN`; outputs one row per
/// partition with the number of rows written (column `rows`).
#[derive(Debug)]
pub struct WriteExec {
    input: Arc<dyn ExecutionPlan>,
    dir: PathBuf,
    format: FileFormat,
    properties: Arc<PlanProperties>,
}

fn count_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "rows",
        DataType::UInt64,
        false,
    )]))
}

impl WriteExec {
    /// Writes `input` into `dir` (a staging directory) as `TEXT` or `JSON`
    /// part files; Parquet, CSV and Arrow files are written by DataFusion's
    /// writers (spate-core's `output` module), so those formats are refused.
    pub fn new(input: Arc<dyn ExecutionPlan>, dir: PathBuf, format: FileFormat) -> DfResult<Self> {
        if !matches!(format, FileFormat::Text | FileFormat::Json) {
            return Err(DataFusionError::Plan(format!(
                "part-file writer: {} files are written by DataFusion's writers, not here",
                format.table_type()
            )));
        }
        let partitions = input.properties().output_partitioning().partition_count();
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(count_schema()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Ok(Self {
            input,
            dir,
            format,
            properties,
        })
    }

    /// The directory part files go to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The output format.
    pub fn format(&self) -> FileFormat {
        self.format
    }
}

impl DisplayAs for WriteExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "WriteExec: format={:?}", self.format)
    }
}

impl ExecutionPlan for WriteExec {
    fn name(&self) -> &str {
        "WriteExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        match (children.pop(), children.is_empty()) {
            (Some(input), true) => Ok(Arc::new(WriteExec::new(
                input,
                self.dir.clone(),
                self.format,
            )?)),
            _ => Err(DataFusionError::Internal(
                "WriteExec takes one child".into(),
            )),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let mut input = self.input.execute(partition, context)?;
        let path = self
            .dir
            .join(part_file_name(partition, self.format.part_extension()));
        let format = self.format;
        let fut = async move {
            let file = File::create(&path).map_err(|e| Error::io("creating", &path, e))?;
            let mut writer = PartWriter::new(BufWriter::with_capacity(1 << 20, file), format);
            let mut rows = 0u64;
            while let Some(batch) = input.next().await {
                let batch = batch?;
                rows += batch.num_rows() as u64;
                writer.write(&batch).map_err(|e| e.with_path(&path))?;
            }
            writer.finish().map_err(|e| e.with_path(&path))?;
            let rows: ArrayRef = Arc::new(UInt64Array::from(vec![rows]));
            Ok(RecordBatch::try_new(count_schema(), vec![rows])?)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            count_schema(),
            futures::stream::once(fut),
        )))
    }
}

enum WriteError {
    Io(std::io::Error),
    Df(DataFusionError),
}

impl WriteError {
    fn with_path(self, path: &Path) -> DataFusionError {
        match self {
            WriteError::Io(e) => Error::io("writing", path, e).into(),
            WriteError::Df(e) => e,
        }
    }
}

impl From<std::io::Error> for WriteError {
    fn from(e: std::io::Error) -> Self {
        WriteError::Io(e)
    }
}

impl From<arrow::error::ArrowError> for WriteError {
    fn from(e: arrow::error::ArrowError) -> Self {
        WriteError::Df(e.into())
    }
}

/// Formats batches into one part file.
struct PartWriter<W: Write> {
    out: W,
    format: FileFormat,
}

impl<W: Write> PartWriter<W> {
    fn new(out: W, format: FileFormat) -> Self {
        Self { out, format }
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), WriteError> {
        match self.format {
            FileFormat::Text => write_text(&mut self.out, batch),
            FileFormat::Json => {
                let mut w = arrow::json::LineDelimitedWriter::new(&mut self.out);
                w.write(batch)?;
                w.finish()?;
                Ok(())
            }
            other => Err(WriteError::Df(DataFusionError::Plan(format!(
                "part-file writer: cannot write {} files",
                other.table_type()
            )))),
        }
    }

    fn finish(mut self) -> Result<(), WriteError> {
        self.out.flush()?;
        Ok(())
    }
}

/// Writes rows as text lines, columns separated by tabs (see [`FileFormat::Text`]).
fn write_text(out: &mut dyn Write, batch: &RecordBatch) -> Result<(), WriteError> {
    let options = FormatOptions::default().with_null("");
    let mut columns: Vec<Column<'_>> = Vec::with_capacity(batch.num_columns());
    for array in batch.columns() {
        columns.push(match array.data_type() {
            DataType::Utf8 => Column::Str(array.as_string::<i32>()),
            DataType::LargeUtf8 => Column::LargeStr(array.as_string::<i64>()),
            DataType::Utf8View => Column::View(array.as_string_view()),
            // Raw lines (Hadoop Streaming) are written as the bytes they are.
            DataType::Binary => Column::Bytes(array.as_binary::<i32>()),
            _ => Column::Other(ArrayFormatter::try_new(array.as_ref(), &options)?),
        });
    }
    for row in 0..batch.num_rows() {
        for (i, col) in columns.iter().enumerate() {
            if i > 0 {
                out.write_all(b"\t")?;
            }
            match col {
                Column::Str(a) => out.write_all(str_at(*a, row).as_bytes())?,
                Column::LargeStr(a) => out.write_all(str_at(*a, row).as_bytes())?,
                Column::View(a) => {
                    if a.is_valid(row) {
                        out.write_all(a.value(row).as_bytes())?
                    }
                }
                Column::Bytes(a) => {
                    if a.is_valid(row) {
                        out.write_all(a.value(row))?
                    }
                }
                Column::Other(f) => write!(out, "{}", f.value(row))?,
            }
        }
        out.write_all(b"\n")?;
    }
    Ok(())
}

fn str_at<O: arrow::array::OffsetSizeTrait>(
    a: &arrow::array::GenericStringArray<O>,
    row: usize,
) -> &str {
    if a.is_valid(row) { a.value(row) } else { "" }
}

enum Column<'a> {
    Str(&'a arrow::array::StringArray),
    LargeStr(&'a arrow::array::LargeStringArray),
    View(&'a arrow::array::StringViewArray),
    Bytes(&'a arrow::array::BinaryArray),
    Other(ArrayFormatter<'a>),
}

/// Formats a batch as text lines in memory (for printing output to a terminal).
pub fn batch_to_text(batch: &RecordBatch) -> DfResult<Vec<u8>> {
    let mut out = Vec::new();
    write_text(&mut out, batch).map_err(|e| match e {
        WriteError::Io(e) => DataFusionError::IoError(e),
        WriteError::Df(e) => e,
    })?;
    Ok(out)
}
