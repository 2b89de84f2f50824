//! Typed rows ↔ Arrow columns.
//!
//! A `Dataset<T>` is stored as Arrow record batches whose schema is traced from
//! `T` with `serde_arrow`: a struct (or tuple) becomes one column per field
//! (tuples: `"0"`, `"1"`, ...); any other type becomes a single column named
//! `value`. Strings are `Utf8`, lists `List` — DataFusion's defaults — so typed
//! data *is* a DataFrame and SQL can read it.

use std::any::{Any, TypeId};
use std::marker::PhantomData;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringArray, StringBuilder, UInt64Array};
use arrow::datatypes::{DataType, FieldRef, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_arrow::schema::{SchemaLike, TracingOptions};

use crate::error::{Error, Result};

/// Name of the column that holds non-record row types.
pub const VALUE_COLUMN: &str = "value";

/// What a row type must be to live in a `Dataset`: serializable to Arrow
/// columns, owned, and shareable across threads.
pub trait Data: Serialize + DeserializeOwned + Send + Sync + 'static {}
impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Data for T {}

#[derive(Serialize, Deserialize)]
struct Value<T> {
    value: T,
}

#[derive(Serialize)]
struct ValueRef<'a, T> {
    value: &'a T,
}

fn tracing_options() -> TracingOptions {
    TracingOptions::default()
        .strings_as_large_utf8(false)
        .sequence_as_large_list(false)
        .bytes_as_large_binary(false)
        .allow_null_fields(true)
}

/// Converts rows of `T` to and from Arrow record batches.
pub struct RowCodec<T> {
    fields: Vec<FieldRef>,
    schema: SchemaRef,
    wrapped: bool,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for RowCodec<T> {
    fn clone(&self) -> Self {
        Self {
            fields: self.fields.clone(),
            schema: self.schema.clone(),
            wrapped: self.wrapped,
            _t: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for RowCodec<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RowCodec<{}>({:?})",
            std::any::type_name::<T>(),
            self.schema
        )
    }
}

impl<T: Data> RowCodec<T> {
    /// Traces `T`'s Arrow schema.
    pub fn new() -> Result<Self> {
        let schema_err = |e: serde_arrow::Error| Error::Schema {
            type_name: std::any::type_name::<T>(),
            message: e.to_string(),
        };
        let (fields, wrapped) = match Vec::<FieldRef>::from_type::<T>(tracing_options()) {
            Ok(fields) if !fields.is_empty() => (fields, false),
            _ => (
                Vec::<FieldRef>::from_type::<Value<T>>(tracing_options()).map_err(schema_err)?,
                true,
            ),
        };
        let schema = Arc::new(Schema::new(fields.clone()));
        Ok(Self {
            fields,
            schema,
            wrapped,
            _t: PhantomData,
        })
    }

    /// The Arrow schema of `T` rows.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Encodes rows into one record batch.
    pub fn encode(&self, rows: &[T]) -> Result<RecordBatch> {
        if let Some(batch) = self.encode_fast(rows) {
            return batch;
        }
        let batch = if self.wrapped {
            let refs: Vec<ValueRef<'_, T>> = rows.iter().map(|value| ValueRef { value }).collect();
            serde_arrow::to_record_batch(&self.fields, &refs)
        } else {
            serde_arrow::to_record_batch(&self.fields, &rows)
        };
        let batch = batch.map_err(|e| self.err(e))?;
        // serde_arrow infers field nullability from the schema we gave it; keep
        // our schema object so batches compare equal to the plan's schema.
        RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec()).map_err(|e| {
            Error::Schema {
                type_name: std::any::type_name::<T>(),
                message: e.to_string(),
            }
        })
    }

    /// Decodes a record batch into rows.
    pub fn decode(&self, batch: &RecordBatch) -> Result<Vec<T>> {
        if let Some(rows) = self.decode_fast(batch) {
            return rows;
        }
        if self.wrapped {
            let rows: Vec<Value<T>> =
                serde_arrow::from_record_batch(batch).map_err(|e| self.err(e))?;
            Ok(rows.into_iter().map(|v| v.value).collect())
        } else {
            serde_arrow::from_record_batch(batch).map_err(|e| self.err(e))
        }
    }

    fn err(&self, e: serde_arrow::Error) -> Error {
        Error::Schema {
            type_name: std::any::type_name::<T>(),
            message: e.to_string(),
        }
    }

    /// Decodes a record batch into runs handed to `emit` (which takes the
    /// rows). `String` rows are made `run` at a time straight from the
    /// Arrow buffer (the hot path of text jobs: a
    /// run's allocations are freed before the next run reuses them, while
    /// still in cache).
    pub fn decode_runs(
        &self,
        batch: &RecordBatch,
        run: usize,
        emit: &mut dyn FnMut(&mut Vec<T>),
    ) -> Result<()> {
        let run = run.max(1);
        if TypeId::of::<T>() == TypeId::of::<String>()
            && batch.num_columns() == 1
            && let Some(a) = batch.column(0).as_string_opt::<i32>()
            && a.null_count() == 0
        {
            let mut lines: Vec<String> = Vec::with_capacity(run.min(a.len()));
            for start in (0..a.len()).step_by(run) {
                lines.extend((start..(start + run).min(a.len())).map(|i| a.value(i).to_owned()));
                // T is String: hand the run over as `Vec<T>` without copying.
                if let Some(rows) = (&mut lines as &mut dyn Any).downcast_mut::<Vec<T>>() {
                    emit(rows);
                }
                lines.clear();
            }
            return Ok(());
        }
        // Other rows are decoded whole; cutting them up would save nothing.
        let mut rows = self.decode(batch)?;
        if !rows.is_empty() {
            emit(&mut rows);
        }
        Ok(())
    }

    /// `String` rows skip serde: they are the hot path of text jobs.
    fn decode_fast(&self, batch: &RecordBatch) -> Option<Result<Vec<T>>> {
        if TypeId::of::<T>() != TypeId::of::<String>() || batch.num_columns() != 1 {
            return None;
        }
        let col = batch.column(0);
        let strings: Vec<String> = match col.data_type() {
            DataType::Utf8 => {
                let a = col.as_string::<i32>();
                if a.null_count() > 0 {
                    return None;
                }
                a.iter().map(|s| s.unwrap_or_default().to_owned()).collect()
            }
            DataType::Utf8View => {
                let a = col.as_string_view();
                if a.null_count() > 0 {
                    return None;
                }
                a.iter().map(|s| s.unwrap_or_default().to_owned()).collect()
            }
            _ => return None,
        };
        let boxed: Box<dyn Any> = Box::new(strings);
        boxed.downcast::<Vec<T>>().ok().map(|b| Ok(*b))
    }

    /// `String` rows and string-keyed counts skip serde.
    fn encode_fast(&self, rows: &[T]) -> Option<Result<RecordBatch>> {
        let columns: Vec<ArrayRef> = if TypeId::of::<T>() == TypeId::of::<String>()
            && self.fields.len() == 1
            && self.fields[0].data_type() == &DataType::Utf8
        {
            let strings = rows
                .iter()
                .filter_map(|r| (r as &dyn Any).downcast_ref::<String>());
            vec![Arc::new(StringArray::from_iter_values(strings))]
        } else {
            string_counts::<T, String>(&self.fields, rows)
                .or_else(|| string_counts::<T, crate::word::Word>(&self.fields, rows))?
        };
        Some(
            RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| Error::Schema {
                type_name: std::any::type_name::<T>(),
                message: e.to_string(),
            }),
        )
    }
}

/// `(key, count)` rows with a string key — what a combiner of a
/// `count_by_value` or a sum by key emits, one row per key: as `Utf8` and
/// `UInt64` columns, without serde (12 M distinct words spent ~5 % of
/// their word count in serde_arrow's builders).
fn string_counts<T: 'static, K: AsRef<str> + 'static>(
    fields: &[FieldRef],
    rows: &[T],
) -> Option<Vec<ArrayRef>> {
    if TypeId::of::<T>() != TypeId::of::<(K, u64)>()
        || fields.len() != 2
        || fields[0].data_type() != &DataType::Utf8
        || fields[1].data_type() != &DataType::UInt64
    {
        return None;
    }
    let pairs = || {
        rows.iter()
            .filter_map(|r| (r as &dyn Any).downcast_ref::<(K, u64)>())
    };
    let bytes = pairs().map(|(k, _)| k.as_ref().len()).sum();
    let mut keys = StringBuilder::with_capacity(rows.len(), bytes);
    let mut counts = Vec::with_capacity(rows.len());
    for (k, n) in pairs() {
        keys.append_value(k.as_ref());
        counts.push(*n);
    }
    Some(vec![
        Arc::new(keys.finish()),
        Arc::new(UInt64Array::from(counts)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Person {
        name: String,
        age: u32,
        tags: Vec<String>,
        nick: Option<String>,
    }

    fn roundtrip<T: Data + Clone + PartialEq + std::fmt::Debug>(rows: Vec<T>) -> SchemaRef {
        let codec = RowCodec::<T>::new().unwrap();
        let batch = codec.encode(&rows).unwrap();
        assert_eq!(codec.decode(&batch).unwrap(), rows);
        codec.schema().clone()
    }

    #[test]
    fn scalars_structs_and_tuples() {
        let s = roundtrip(vec!["a".to_string(), "é".into(), String::new()]);
        assert_eq!(s.field(0).name(), VALUE_COLUMN);
        assert_eq!(s.field(0).data_type(), &DataType::Utf8);
        roundtrip(vec![1u64, 2, 3]);
        let s = roundtrip(vec![("a".to_string(), 1u64), ("b".into(), 2)]);
        assert_eq!(s.fields().len(), 2);
        assert_eq!(s.field(0).name(), "0");
        roundtrip(vec![Person {
            name: "x".into(),
            age: 3,
            tags: vec!["t".into()],
            nick: None,
        }]);
        roundtrip(vec![(1i64, ("a".to_string(), 2.5f64))]);
        roundtrip(vec![(("k".to_string(), 1u32), vec![1u8, 2])]);
        roundtrip::<String>(vec![]);
    }

    #[test]
    fn string_counts_encode_as_serde_would() {
        let rows = vec![
            ("b".to_string(), 2u64),
            (String::new(), 0),
            ("é".into(), u64::MAX),
        ];
        let codec = RowCodec::<(String, u64)>::new().unwrap();
        let fast = codec.encode(&rows).unwrap();
        let slow = serde_arrow::to_record_batch(&codec.fields, &rows).unwrap();
        assert_eq!(fast.columns(), slow.columns());
        assert_eq!(codec.decode(&fast).unwrap(), rows);
        let words: Vec<(crate::word::Word, u64)> =
            rows.iter().map(|(k, n)| (k.as_str().into(), *n)).collect();
        let codec = RowCodec::<(crate::word::Word, u64)>::new().unwrap();
        let fast = codec.encode(&words).unwrap();
        assert_eq!(fast.columns(), slow.columns());
        assert_eq!(codec.decode(&fast).unwrap(), words);
        // Other pairs keep serde.
        roundtrip(vec![("a".to_string(), 1i64)]);
        roundtrip::<(String, u64)>(vec![]);
    }
}

/// A value as the one field of a struct: `Option<Held<V>>` tells "no
/// value" (a null struct) from a value that is itself `None` (a struct
/// whose field is null), which `Option<Option<V>>` in Arrow columns cannot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Held<V> {
    pub(crate) v: V,
}
