//! Rows to a task's input lines and its output lines back to rows.

use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryBuilder, RecordBatch};
use arrow::compute::{SortOptions, sort_to_indices, take_record_batch};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::error::{DataFusionError, Result as DfResult};
use tokio::sync::mpsc::Sender;

use super::driver::OpView;
use super::task::StdoutEnd;
use super::{BATCH_BYTES, KEY, PipeInput, PipeOutput, SORT, VALUE};

/// A column whose values a task reads as bytes.
pub(super) enum TextColumn<'a> {
    Binary(&'a arrow::array::BinaryArray),
    LargeBinary(&'a arrow::array::LargeBinaryArray),
    BinaryView(&'a arrow::array::BinaryViewArray),
    Utf8(&'a arrow::array::StringArray),
    LargeUtf8(&'a arrow::array::LargeStringArray),
    Utf8View(&'a arrow::array::StringViewArray),
}

impl<'a> TextColumn<'a> {
    /// The column as bytes; any other type is an error naming the column
    /// (a task must never be fed empty lines in its place).
    pub(super) fn of(a: &'a ArrayRef, what: &str) -> Result<Self, String> {
        Ok(match a.data_type() {
            DataType::Binary => Self::Binary(a.as_binary()),
            DataType::LargeBinary => Self::LargeBinary(a.as_binary()),
            DataType::BinaryView => Self::BinaryView(a.as_binary_view()),
            DataType::Utf8 => Self::Utf8(a.as_string()),
            DataType::LargeUtf8 => Self::LargeUtf8(a.as_string()),
            DataType::Utf8View => Self::Utf8View(a.as_string_view()),
            other => {
                return Err(format!(
                    "the {what} written to the command must be text or bytes, not {other} \
                     (convert it to a string first)"
                ));
            }
        })
    }

    pub(super) fn bytes(&self, row: usize) -> &'a [u8] {
        match self {
            Self::Binary(a) => a.value(row),
            Self::LargeBinary(a) => a.value(row),
            Self::BinaryView(a) => a.value(row),
            Self::Utf8(a) => a.value(row).as_bytes(),
            Self::LargeUtf8(a) => a.value(row).as_bytes(),
            Self::Utf8View(a) => a.value(row).as_bytes(),
        }
    }
}

/// Writes each row of `batch` as one line; returns the row count.
pub(super) fn write_lines(
    input: &PipeInput,
    batch: &RecordBatch,
    out: &mut Vec<u8>,
) -> Result<usize, String> {
    let rows = batch.num_rows();
    match input {
        PipeInput::Lines => {
            let col = TextColumn::of(batch.column(0), "lines")?;
            for row in 0..rows {
                out.extend_from_slice(col.bytes(row));
                out.push(b'\n');
            }
        }
        PipeInput::KeyValue(spec) => {
            let key = batch
                .column_by_name(KEY)
                .ok_or_else(|| "no key column".to_string())?;
            let value = batch
                .column_by_name(VALUE)
                .ok_or_else(|| "no value column".to_string())?;
            let (keys, values) = (
                TextColumn::of(key, "keys")?,
                TextColumn::of(value, "values")?,
            );
            for row in 0..rows {
                out.extend_from_slice(keys.bytes(row));
                if value.is_valid(row) {
                    out.extend_from_slice(&spec.separator);
                    out.extend_from_slice(values.bytes(row));
                }
                out.push(b'\n');
            }
        }
    }
    Ok(rows)
}

/// Batches gathered into one sorted run for a combiner.
#[derive(Default)]
pub(super) struct RunBuffer {
    pub(super) batches: Vec<RecordBatch>,
    pub(super) bytes: usize,
}

impl RunBuffer {
    pub(super) fn push(&mut self, batch: RecordBatch) {
        self.bytes += batch.get_array_memory_size();
        self.batches.push(batch);
    }

    pub(super) fn take_sorted(&mut self, input: &PipeInput) -> DfResult<RecordBatch> {
        let batches = std::mem::take(&mut self.batches);
        self.bytes = 0;
        let Some(first) = batches.first() else {
            return Err(DataFusionError::Internal("empty run".into()));
        };
        let schema = first.schema();
        let all = arrow::compute::concat_batches(&schema, &batches)?;
        let sort_name = match input {
            PipeInput::KeyValue(spec) if spec.compare.is_some() => SORT,
            _ => KEY,
        };
        let Some(column) = all.column_by_name(sort_name) else {
            return Ok(all);
        };
        let options = SortOptions {
            descending: false,
            nulls_first: true,
        };
        let indices = sort_to_indices(column, Some(options), None)?;
        Ok(take_record_batch(&all, &indices)?)
    }
}

/// Turns a command's output lines into rows of the op's schema.
pub(super) struct LineParser {
    pub(super) output: PipeOutput,
    pub(super) schema: SchemaRef,
    pub(super) batch_rows: usize,
    pub(super) key: BinaryBuilder,
    pub(super) value: BinaryBuilder,
    pub(super) part: BinaryBuilder,
    pub(super) sort: BinaryBuilder,
    pub(super) scratch: Vec<u8>,
    pub(super) rows: usize,
    pub(super) bytes: usize,
    pub(super) records: u64,
    pub(super) carry: Vec<u8>,
    /// The longest line accepted; a longer one fails the attempt.
    pub(super) max_line: usize,
}

impl LineParser {
    pub(super) fn new(op: &OpView) -> Self {
        Self {
            output: op.output.clone(),
            schema: op.schema.clone(),
            batch_rows: op.batch_rows,
            key: BinaryBuilder::new(),
            value: BinaryBuilder::new(),
            part: BinaryBuilder::new(),
            sort: BinaryBuilder::new(),
            scratch: Vec::new(),
            rows: 0,
            bytes: 0,
            records: 0,
            carry: Vec::new(),
            max_line: op.max_line,
        }
    }

    pub(super) fn line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        self.records += 1;
        self.rows += 1;
        self.bytes += line.len();
        match &self.output {
            PipeOutput::Lines => self.value.append_value(line),
            PipeOutput::KeyValue(spec) => {
                let (key, value) = spec.split(line);
                self.key.append_value(key);
                match value {
                    Some(v) => self.value.append_value(v),
                    None => self.value.append_null(),
                }
                self.scratch.clear();
                if spec.partition_bytes(key, &mut self.scratch) {
                    self.part.append_value(&self.scratch);
                }
                self.scratch.clear();
                if spec.sort_bytes(key, &mut self.scratch) {
                    self.sort.append_value(&self.scratch);
                }
            }
        }
    }

    pub(super) fn full(&self) -> bool {
        self.rows >= self.batch_rows || self.bytes >= BATCH_BYTES
    }

    pub(super) fn batch(&mut self) -> DfResult<Option<RecordBatch>> {
        if self.rows == 0 {
            return Ok(None);
        }
        self.rows = 0;
        self.bytes = 0;
        let columns: Vec<ArrayRef> = match &self.output {
            PipeOutput::Lines => vec![Arc::new(self.value.finish())],
            PipeOutput::KeyValue(spec) => {
                let mut c: Vec<ArrayRef> =
                    vec![Arc::new(self.key.finish()), Arc::new(self.value.finish())];
                if spec.partition.is_some() {
                    c.push(Arc::new(self.part.finish()));
                }
                if spec.compare.is_some() {
                    c.push(Arc::new(self.sort.finish()));
                }
                c
            }
        };
        Ok(Some(RecordBatch::try_new(self.schema.clone(), columns)?))
    }

    pub(super) fn send(&mut self, tx: &Sender<DfResult<RecordBatch>>) -> StdoutEnd {
        match self.batch() {
            Ok(Some(b)) => {
                if tx.blocking_send(Ok(b)).is_err() {
                    return StdoutEnd::Closed;
                }
                StdoutEnd::Streamed(self.records)
            }
            Ok(None) => StdoutEnd::Streamed(self.records),
            Err(e) => StdoutEnd::Failed(e.to_string()),
        }
    }

    /// Parses complete lines of `bytes` (keeping a partial last line).
    pub(super) fn push_bytes(
        &mut self,
        bytes: &[u8],
        tx: &Sender<DfResult<RecordBatch>>,
    ) -> StdoutEnd {
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', bytes) {
            if self.carry.is_empty() {
                self.line(&bytes[start..nl]);
            } else {
                let mut carry = std::mem::take(&mut self.carry);
                carry.extend_from_slice(&bytes[start..nl]);
                self.line(&carry);
                carry.clear();
                self.carry = carry;
            }
            start = nl + 1;
            if self.full() {
                let end = self.send(tx);
                if !matches!(end, StdoutEnd::Streamed(_)) {
                    return end;
                }
            }
        }
        let rest = &bytes[start..];
        if self.carry.len() + rest.len() > self.max_line {
            return StdoutEnd::Failed(format!(
                "it wrote a line of more than {} bytes (after {} complete lines); \
                 no line is cut or dropped, so the task fails",
                self.max_line, self.records
            ));
        }
        self.carry.extend_from_slice(rest);
        StdoutEnd::Streamed(self.records)
    }

    /// Sends what is left, including a last line without a newline.
    pub(super) fn flush(&mut self, tx: &Sender<DfResult<RecordBatch>>) -> StdoutEnd {
        if !self.carry.is_empty() {
            let carry = std::mem::take(&mut self.carry);
            self.line(&carry);
        }
        self.send(tx)
    }

    /// Parses everything `reader` yields and sends it on. When downstream
    /// stops reading, the rest is drained (so the command never blocks on a
    /// full pipe) and `Closed` is returned.
    pub(super) fn stream(
        &mut self,
        reader: impl Read,
        tx: &Sender<DfResult<RecordBatch>>,
    ) -> StdoutEnd {
        let mut reader = BufReader::with_capacity(1 << 17, reader);
        loop {
            let n = match reader.fill_buf() {
                Ok([]) => break,
                Ok(buf) => {
                    let end = self.push_bytes(buf, tx);
                    let n = buf.len();
                    if end == StdoutEnd::Closed {
                        reader.consume(n);
                        let _ = std::io::copy(&mut reader, &mut std::io::sink());
                        return StdoutEnd::Closed;
                    }
                    if let StdoutEnd::Failed(e) = end {
                        return StdoutEnd::Failed(e);
                    }
                    n
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return StdoutEnd::Failed(e.to_string()),
            };
            reader.consume(n);
        }
        self.flush(tx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_text_and_bytes_become_lines() {
        let batch = |a: ArrayRef| RecordBatch::try_from_iter([("value", a)]).unwrap();
        let mut out = Vec::new();
        let text: ArrayRef = Arc::new(arrow::array::StringViewArray::from(vec!["a", "b"]));
        assert_eq!(
            write_lines(&PipeInput::Lines, &batch(text), &mut out),
            Ok(2)
        );
        assert_eq!(out, b"a\nb\n");
        let numbers: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![1, 2]));
        let err = write_lines(&PipeInput::Lines, &batch(numbers), &mut Vec::new()).unwrap_err();
        assert!(err.contains("must be text or bytes, not Int64"), "{err}");
    }
}
