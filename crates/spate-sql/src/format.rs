//! Writing result sets as an aligned table, CSV or JSON lines.

use std::io::Write;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use spate_core::error::{Error, Result};

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// An aligned table with a header.
    #[default]
    Table,
    /// CSV with a header line.
    Csv,
    /// One JSON object per row.
    Json,
}

impl std::str::FromStr for Format {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "table" => Ok(Format::Table),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            other => Err(Error::Usage(format!(
                "unknown format '{other}' (table, csv or json)"
            ))),
        }
    }
}

fn write_error(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("writing results: {e}"))
}

/// Writes a result set to `out`.
pub fn write(
    format: Format,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    out: &mut dyn Write,
) -> Result<()> {
    match format {
        Format::Table => {
            let empty;
            let shown: &[RecordBatch] = if batches.iter().all(|b| b.num_rows() == 0) {
                empty = [RecordBatch::new_empty(schema.clone())];
                &empty
            } else {
                batches
            };
            let table = arrow::util::pretty::pretty_format_batches(shown).map_err(write_error)?;
            writeln!(out, "{table}").map_err(write_error)
        }
        Format::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut *out);
            if batches.is_empty() {
                writer
                    .write(&RecordBatch::new_empty(schema.clone()))
                    .map_err(write_error)?;
            }
            for b in batches {
                writer.write(b).map_err(write_error)?;
            }
            Ok(())
        }
        Format::Json => {
            let mut writer = arrow::json::LineDelimitedWriter::new(&mut *out);
            for b in batches {
                writer.write(b).map_err(write_error)?;
            }
            writer.finish().map_err(write_error)
        }
    }
}

/// Every value as text (`NULL` for nulls), row by row: for comparing
/// results with expected answers.
pub fn text_rows(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>> {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(write_error)?;
        for row in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect(),
            );
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch() -> (SchemaRef, RecordBatch) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("word", DataType::Utf8, false),
            Field::new("n", DataType::Int64, false),
        ]));
        let b = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["a", "b,c"])),
                Arc::new(Int64Array::from(vec![1, 22])),
            ],
        )
        .unwrap();
        (schema, b)
    }

    fn render(f: Format, batches: &[RecordBatch], schema: &SchemaRef) -> String {
        let mut out = Vec::new();
        write(f, schema, batches, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn formats() {
        let (schema, b) = batch();
        let table = render(Format::Table, std::slice::from_ref(&b), &schema);
        assert!(table.contains("| word | n  |"), "{table}");
        assert!(table.contains("| b,c  | 22 |"), "{table}");
        assert_eq!(
            render(Format::Csv, std::slice::from_ref(&b), &schema),
            "word,n\na,1\n\"b,c\",22\n"
        );
        assert_eq!(
            render(Format::Json, &[b], &schema),
            "{\"word\":\"a\",\"n\":1}\n{\"word\":\"b,c\",\"n\":22}\n"
        );
        // No rows: the header still shows.
        assert!(render(Format::Table, &[], &schema).contains("| word | n |"));
        assert_eq!(render(Format::Csv, &[], &schema), "word,n\n");
    }
}
