//! Writing a DataFrame's rows at a place: DataFusion's writers for
//! Parquet, CSV, JSON and Arrow (a `COPY` plan), spate's text writer for
//! text (one file per partition, uploaded as it grows).

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::dataframe::DataFrame;
use datafusion::datasource::file_format::csv::{CsvFormat, CsvFormatFactory};
use datafusion::datasource::file_format::json::{JsonFormat, JsonFormatFactory};
use datafusion::datasource::file_format::parquet::{ParquetFormat, ParquetFormatFactory};
use datafusion::datasource::file_format::{FileFormatFactory, format_as_file_type};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlanBuilder;
use datafusion::prelude::{Expr, SessionContext, cast};
use futures::StreamExt;
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;

use super::place::Place;
use super::{FileFormat, Output, text_compression};
use crate::{Error, Result};

/// Writes `df`'s rows at `dest` (a directory URL; or, with `single`, one
/// file), text files named `part-...` with `name_tag`; the number of
/// rows. `strict` as in [`Output::writer_options`].
pub(super) async fn write(
    session: &SessionContext,
    df: DataFrame,
    output: &Output,
    strict: bool,
    dest: &str,
    single: bool,
    name_tag: &str,
) -> Result<u64> {
    let options = output.writer_options(strict)?;
    let df = plain_types(df)?;
    let Some(engine_name) = output.format.engine_name() else {
        return write_text(session, df, output, &options, dest, single, name_tag).await;
    };
    if output.format == FileFormat::Arrow && distributed(session) {
        return Err(Error::BadOutput(
            "Arrow IPC files cannot be written on a cluster (DataFusion 55 has no plan \
             encoding for its Arrow writer): write Parquet, which keeps the same types"
                .into(),
        ));
    }
    let state = session.state();
    let factory = state.get_file_format_factory(engine_name).ok_or_else(|| {
        Error::Engine(datafusion::error::DataFusionError::Internal(format!(
            "no {engine_name} writer registered"
        )))
    })?;
    let factory = with_options_inside(factory, &state, &options)?;
    // The format options are in the factory now; given again, they would be
    // applied to its options under their table-level names, which fail.
    // (On a cluster `single_file_output` is dropped with the rest: a file
    // target has an extension, so DataFusion's default mode finds it.)
    let options = HashMap::from([("single_file_output".to_string(), single.to_string())]);
    let url = if single {
        dest.to_string()
    } else {
        format!("{}/", dest.trim_end_matches('/'))
    };
    let plan = LogicalPlanBuilder::copy_to(
        df.into_unoptimized_plan(),
        url,
        format_as_file_type(factory),
        options,
        output.partition_by.clone(),
    )
    .and_then(LogicalPlanBuilder::build)
    .map_err(|e| Error::BadOutput(e.to_string()))?;
    let batches = DataFrame::new(state, plan)
        .collect()
        .await
        .map_err(Error::Engine)?;
    if distributed(session) {
        // Executors wrote one directory per task attempt: keep one whole.
        super::attempts::settle(session, dest, single).await?;
    }
    Ok(super::written_rows(&batches))
}

/// Whether the session plans its queries for a Ballista cluster (its
/// configuration has Ballista's settings).
fn distributed(session: &SessionContext) -> bool {
    session
        .state()
        .config()
        .options()
        .entries()
        .iter()
        .any(|e| e.key.starts_with("ballista."))
}

/// The format factory with the write's options inside it. A `COPY` plan
/// keeps its options beside the format, and DataFusion's plan encoding
/// drops them (`datafusion-proto` 55 decodes every `COPY` with no options),
/// so a cluster would write with defaults: no compression, no header. The
/// format's own options do travel.
fn with_options_inside(
    factory: Arc<dyn FileFormatFactory>,
    state: &SessionState,
    options: &HashMap<String, String>,
) -> Result<Arc<dyn FileFormatFactory>> {
    let format = factory
        .create(state, options)
        .map_err(|e| Error::BadOutput(e.to_string()))?;
    Ok(if let Some(f) = format.downcast_ref::<CsvFormat>() {
        Arc::new(CsvFormatFactory::new_with_options(f.options().clone()))
    } else if let Some(f) = format.downcast_ref::<JsonFormat>() {
        Arc::new(JsonFormatFactory::new_with_options(f.options().clone()))
    } else if let Some(f) = format.downcast_ref::<ParquetFormat>() {
        Arc::new(ParquetFormatFactory::new_with_options(f.options().clone()))
    } else {
        // Arrow IPC files have no options.
        factory
    })
}

/// `df` with string and binary *view* columns cast to their plain types.
/// The engine reads Parquet strings as views; files written with view
/// types would record them in their schema, and a table whose files
/// disagree on a column's type cannot be opened.
fn plain_types(df: DataFrame) -> Result<DataFrame> {
    use arrow::datatypes::DataType;
    let fields = df.schema().fields().clone();
    if !fields
        .iter()
        .any(|f| matches!(f.data_type(), DataType::Utf8View | DataType::BinaryView))
    {
        return Ok(df);
    }
    let exprs: Vec<Expr> = df
        .schema()
        .columns()
        .into_iter()
        .zip(fields.iter())
        .map(|(c, f)| match f.data_type() {
            DataType::Utf8View => cast(Expr::Column(c), DataType::Utf8).alias(f.name()),
            DataType::BinaryView => cast(Expr::Column(c), DataType::Binary).alias(f.name()),
            _ => Expr::Column(c),
        })
        .collect();
    df.select(exprs).map_err(Error::Engine)
}

/// Text output: each partition of the result to one file (or everything to
/// one file), lines as spate's text sink formats them, gzip or zstd
/// compressed on request.
async fn write_text(
    session: &SessionContext,
    df: DataFrame,
    output: &Output,
    options: &HashMap<String, String>,
    dest: &str,
    single: bool,
    name_tag: &str,
) -> Result<u64> {
    debug_assert_eq!(output.format, FileFormat::Text);
    if !output.partition_by.is_empty() {
        return Err(Error::BadOutput(
            "TEXT output is not partitioned: its lines carry no column names".into(),
        ));
    }
    let compression = match options.get("format.compression") {
        Some(c) => text_compression(c)?,
        None => None,
    };
    let place = Place::new(session, dest)?;
    let streams = if single {
        vec![df.execute_stream().await.map_err(Error::Engine)?]
    } else {
        df.execute_stream_partitioned()
            .await
            .map_err(Error::Engine)?
    };
    // Dropping the set (on an error) stops the other writers.
    let mut tasks = tokio::task::JoinSet::new();
    for (i, stream) in streams.into_iter().enumerate() {
        let path = if single {
            place.path.clone()
        } else {
            let ext = compression.map(|c| format!(".{c}")).unwrap_or_default();
            place
                .path
                .clone()
                .join(format!("part-{i:05}{name_tag}{ext}"))
        };
        let store = place.store.clone();
        tasks.spawn(text_file(stream, store, path, compression));
    }
    let mut rows = 0;
    while let Some(done) = tasks.join_next().await {
        let written = done
            .map_err(|e| Error::Storage(format!("text writer stopped: {e}")))
            .and_then(|r| r);
        match written {
            Ok(n) => rows += n,
            Err(e) => {
                // Every writer has stopped before the staging place goes.
                tasks.shutdown().await;
                return Err(e);
            }
        }
    }
    Ok(rows)
}

/// The compressor in front of a text file.
enum Encoder {
    Plain(Vec<u8>),
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    fn new(compression: Option<&str>) -> std::io::Result<Self> {
        Ok(match compression {
            Some("gz") => Self::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::default(),
            )),
            Some(_) => Self::Zstd(zstd::stream::write::Encoder::new(Vec::new(), 3)?),
            None => Self::Plain(Vec::new()),
        })
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Plain(v) => {
                v.extend_from_slice(bytes);
                Ok(())
            }
            Self::Gzip(e) => e.write_all(bytes),
            Self::Zstd(e) => e.write_all(bytes),
        }
    }

    /// The compressed bytes produced so far.
    fn take(&mut self) -> Vec<u8> {
        match self {
            Self::Plain(v) => std::mem::take(v),
            Self::Gzip(e) => std::mem::take(e.get_mut()),
            Self::Zstd(e) => std::mem::take(e.get_mut()),
        }
    }

    fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            Self::Plain(v) => Ok(v),
            Self::Gzip(e) => e.finish(),
            Self::Zstd(e) => e.finish(),
        }
    }
}

/// Writes one stream as one text file (uploaded in parts as it grows).
async fn text_file(
    mut stream: SendableRecordBatchStream,
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    compression: Option<&'static str>,
) -> Result<u64> {
    let mut file = object_store::buffered::BufWriter::new(store, path.clone());
    let written = text_body(&mut stream, &mut file, &path, compression).await;
    if written.is_err() {
        // An unfinished multipart upload would linger, unlisted, on S3.
        let _ = file.abort().await;
    }
    written
}

async fn text_body(
    stream: &mut SendableRecordBatchStream,
    file: &mut object_store::buffered::BufWriter,
    path: &ObjectPath,
    compression: Option<&'static str>,
) -> Result<u64> {
    use tokio::io::AsyncWriteExt;
    let io = |e: std::io::Error| Error::io("writing", path.as_ref(), e);
    let store = |e: object_store::Error| Error::Storage(format!("writing {path}: {e}"));
    let mut encoder = Encoder::new(compression).map_err(io)?;
    let mut rows = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(Error::Engine)?;
        rows += batch.num_rows() as u64;
        let text = crate::sink::batch_to_text(&batch).map_err(Error::Engine)?;
        encoder.write(&text).map_err(io)?;
        let ready = encoder.take();
        if !ready.is_empty() {
            file.put(Bytes::from(ready)).await.map_err(store)?;
        }
    }
    let rest = encoder.finish().map_err(io)?;
    if !rest.is_empty() {
        file.put(Bytes::from(rest)).await.map_err(store)?;
    }
    file.shutdown().await.map_err(io)?;
    Ok(rows)
}
