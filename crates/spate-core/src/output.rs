//! The files statements write — `COPY ... TO`, `CREATE TABLE ... AS
//! SELECT`, `INSERT INTO` — in any of spate's formats (Parquet, CSV, JSON
//! lines, Arrow IPC, text), compressed or not, on local disk or an object
//! store, and published only once complete:
//!
//! - a new local directory is written in a hidden staging directory beside
//!   it and renamed into place with its `_SUCCESS` marker (one `rename(2)`);
//! - a new directory on an object store (which has no directory rename) is
//!   written under a hidden staging prefix, its objects are moved into
//!   place, and `_SUCCESS` is written last — Hadoop's convention for
//!   knowing that an output on a store is complete;
//! - rows added to a table (`INSERT`) are written under a hidden staging
//!   directory inside it — table scans do not look into it — and then moved
//!   file by file into the table's directory (into `key=value/`
//!   subdirectories for a partitioned table). A failure while moving moves
//!   the files back, so the table keeps its old rows.
//!
//! Parquet, CSV, JSON and Arrow files come from DataFusion's writers (a
//! `COPY` plan aimed at the staging place); text files from spate's own
//! Hadoop-style text writer (columns joined by a tab, one line per row).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::context::Context;
use crate::error::{Error, Result};
use bytes::Bytes;
use datafusion::dataframe::DataFrame;
use datafusion::datasource::file_format::format_as_file_type;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlanBuilder;
use datafusion::prelude::{Expr, cast};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use spate_io::commit::{SUCCESS_MARKER, StagedOutput, StagingDir, staging_name};

pub use spate_io::format::{FileFormat, compressed_suffix};

/// What to write: a format, its options, and the columns whose values name
/// `key=value/` directories.
#[derive(Debug, Clone)]
pub struct Output {
    /// The file format.
    pub format: FileFormat,
    /// Writer options as the user gave them (`compression`,
    /// `format.compression`, `format.has_header`, ...).
    pub options: Vec<(String, String)>,
    /// Columns written as `key=value/` directories instead of in the files.
    pub partition_by: Vec<String>,
}

/// An option's key as DataFusion's writers know it: lowercased, `format.`
/// added to a bare key.
fn option_key(key: &str) -> String {
    let key = key.trim().to_ascii_lowercase();
    // Hive's `TBLPROPERTIES ('parquet.compression' = ...)`.
    if let Some(rest) = key.strip_prefix("parquet.") {
        return format!("format.{rest}");
    }
    if key.contains('.') {
        key
    } else {
        format!("format.{key}")
    }
}

/// The compressions spate's text reader understands, with their file
/// extensions.
fn text_compression(value: &str) -> Result<Option<&'static str>> {
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "none" | "uncompressed" => Ok(None),
        "gzip" | "gz" => Ok(Some("gz")),
        "zstd" | "zst" => Ok(Some("zst")),
        other => Err(Error::Usage(format!(
            "TEXT files are written uncompressed, gzip or zstd, not '{other}'"
        ))),
    }
}

impl Output {
    /// The options handed to DataFusion's writer. `strict`: an option that
    /// is not a format option is an error (options the user gave for this
    /// write) rather than skipped (a table's options, which may also
    /// configure reading).
    fn writer_options(&self, strict: bool) -> Result<HashMap<String, String>> {
        let mut map = HashMap::new();
        for (k, v) in &self.options {
            let key = option_key(k);
            if key.starts_with("format.") {
                map.insert(key, v.clone());
            } else if strict {
                return Err(Error::Usage(format!(
                    "unknown write option '{k}' (write options are the format's: \
                     compression, has_header, delimiter, ...)"
                )));
            }
        }
        if self.format == FileFormat::Text {
            for key in map.keys() {
                if key != "format.compression" && strict {
                    return Err(Error::Usage(format!(
                        "TEXT files take one option, compression (gzip or zstd), not '{key}'"
                    )));
                }
            }
            if let Some(c) = map.get("format.compression") {
                text_compression(c)?;
            }
        }
        Ok(map)
    }

    /// The options as a table keeps them (keys as the engine knows them).
    pub fn table_options(&self) -> Vec<(String, String)> {
        self.options
            .iter()
            .map(|(k, v)| (option_key(k), v.clone()))
            .collect()
    }

    /// Checks the options before anything is written.
    pub fn check(&self) -> Result<()> {
        self.writer_options(true).map(|_| ())
    }
}

/// Where output goes: a local path or a place in an object store.
struct Place {
    /// The store and the object path (a local path too has them: the
    /// engine's local file store).
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    /// The URL as the engine parses it, without a trailing `/`.
    url: String,
    local: Option<PathBuf>,
}

impl Place {
    fn new(ctx: &Context, location: &str) -> Result<Self> {
        let is_url = location.contains("://") && !location.starts_with("file://");
        // The engine reads `*?[` in a path as a glob (and `?`/`#` in a URL
        // as its query and fragment): output there would land elsewhere.
        let special: &[char] = if is_url {
            &['*', '?', '[', '#']
        } else {
            &['*', '?', '[']
        };
        if location.contains(special) {
            return Err(Error::Usage(format!(
                "{location}: output paths may not contain {}",
                special
                    .iter()
                    .map(|c| format!("'{c}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        spate_io::store::register_for(ctx.session(), location).map_err(Error::Usage)?;
        let local = if is_url {
            None
        } else {
            let path = location.strip_prefix("file://").unwrap_or(location);
            let path = Path::new(path);
            Some(if path.is_absolute() {
                path.to_path_buf()
            } else {
                std::env::current_dir()
                    .map_err(|e| Error::Usage(format!("no working directory: {e}")))?
                    .join(path)
            })
        };
        let url = match &local {
            Some(p) => p.to_string_lossy().trim_end_matches('/').to_string(),
            None => location.trim_end_matches('/').to_string(),
        };
        let parsed = ListingTableUrl::parse(&url).map_err(|e| Error::Usage(e.to_string()))?;
        let store = ctx
            .session()
            .runtime_env()
            .object_store(parsed.object_store())
            .map_err(|e| Error::Usage(format!("{location}: {e}")))?;
        Ok(Self {
            store,
            path: parsed.prefix().clone(),
            url,
            local,
        })
    }

    /// A sibling or child at `name`.
    fn join(&self, name: &str) -> Self {
        Self {
            store: self.store.clone(),
            path: self.path.clone().join(name),
            url: format!("{}/{name}", self.url),
            local: self.local.as_ref().map(|p| p.join(name)),
        }
    }

    fn parent(&self) -> Result<(Self, String)> {
        if self.path.parts().next().is_none() {
            return Err(Error::Usage(format!(
                "{}: names a bucket or the root, not a file or directory in it",
                self.url
            )));
        }
        let (parent, name) = self
            .url
            .rsplit_once('/')
            .filter(|(_, n)| !n.is_empty())
            .ok_or_else(|| Error::Usage(format!("{}: not a file or directory name", self.url)))?;
        let parts: Vec<_> = self.path.parts().collect();
        let parent_path = ObjectPath::from_iter(parts[..parts.len().saturating_sub(1)].to_vec());
        Ok((
            Self {
                store: self.store.clone(),
                path: parent_path,
                url: parent.to_string(),
                local: self
                    .local
                    .as_ref()
                    .and_then(|p| p.parent().map(Path::to_path_buf)),
            },
            name.to_string(),
        ))
    }

    /// Is anything at this place (a file, or objects under the prefix)?
    async fn exists(&self) -> Result<bool> {
        if let Some(p) = &self.local {
            return Ok(p.exists());
        }
        if self.store.head(&self.path).await.is_ok() {
            return Ok(true);
        }
        let first = self.store.list(Some(&self.path)).next().await;
        match first {
            None => Ok(false),
            Some(Ok(_)) => Ok(true),
            Some(Err(e)) => Err(Error::Storage(format!("{}: {e}", self.url))),
        }
    }

    /// Every object under this prefix.
    async fn objects(&self) -> Result<Vec<ObjectPath>> {
        self.store
            .list(Some(&self.path))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|e| Error::Storage(format!("listing {}: {e}", self.url)))
    }

    /// Removes the staging place (best effort: it is hidden either way).
    async fn remove(&self) {
        if let Some(p) = &self.local {
            let _ = std::fs::remove_dir_all(p);
            return;
        }
        if let Ok(objects) = self.objects().await {
            for o in objects {
                let _ = self.store.delete(&o).await;
            }
        }
    }

    /// Deletes these objects (what one statement put here), best effort.
    async fn delete_all(&self, objects: &[ObjectPath]) {
        for o in objects {
            let _ = self.store.delete(o).await;
        }
    }
}

/// Moves every object under `from` to the same relative path under `to`;
/// where they went. If one move fails, the objects already moved go back,
/// and the error is returned.
async fn move_all(from: &Place, to: &Place) -> Result<Vec<ObjectPath>> {
    let objects = from.objects().await?;
    let mut moved: Vec<(ObjectPath, ObjectPath)> = Vec::new();
    for object in objects {
        let Some(relative) = object.prefix_match(&from.path) else {
            continue;
        };
        let mut target = to.path.clone();
        for part in relative {
            target = target.join(part);
        }
        if let Err(e) = from.store.rename(&object, &target).await {
            let mut stuck = Vec::new();
            for (src, dst) in moved.iter().rev() {
                if from.store.rename(dst, src).await.is_err() {
                    stuck.push(dst.to_string());
                }
            }
            let back = if stuck.is_empty() {
                "the files already moved were moved back".to_string()
            } else {
                format!("these could not be moved back: {}", stuck.join(", "))
            };
            return Err(Error::Storage(format!(
                "moving new files into {}: {e} ({back})",
                to.url
            )));
        }
        moved.push((object, target));
    }
    Ok(moved.into_iter().map(|(_, to)| to).collect())
}

/// Writes `df`'s rows at `dest` (a directory URL; or, with `single`, one
/// file), named `part-...` with `name_tag` for text; the number of rows.
async fn write(
    ctx: &Context,
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
        return write_text(ctx, df, output, &options, dest, single, name_tag).await;
    };
    let state = ctx.session().state();
    let factory = state
        .get_file_format_factory(engine_name)
        .ok_or_else(|| Error::Internal(format!("no {engine_name} writer registered")))?;
    let mut options = options;
    options.insert("single_file_output".into(), single.to_string());
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
    .map_err(|e| Error::Usage(e.to_string()))?;
    let batches = DataFrame::new(state, plan)
        .collect()
        .await
        .map_err(crate::error::from_df)?;
    // DataFusion's writers report one `count` column.
    Ok(batches
        .iter()
        .filter_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<arrow::array::UInt64Array>()
                .map(|a| a.iter().flatten().sum::<u64>())
        })
        .sum())
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
    df.select(exprs).map_err(crate::error::from_df)
}

/// Text output: each partition of the result to one file (or everything to
/// one file), lines as spate's text sink formats them, gzip or zstd
/// compressed on request.
async fn write_text(
    ctx: &Context,
    df: DataFrame,
    output: &Output,
    options: &HashMap<String, String>,
    dest: &str,
    single: bool,
    name_tag: &str,
) -> Result<u64> {
    if !output.partition_by.is_empty() {
        return Err(Error::Usage(
            "TEXT output is not partitioned: its lines carry no column names".into(),
        ));
    }
    let compression = match options.get("format.compression") {
        Some(c) => text_compression(c)?,
        None => None,
    };
    let place = Place::new(ctx, dest)?;
    let streams = if single {
        vec![df.execute_stream().await.map_err(crate::error::from_df)?]
    } else {
        df.execute_stream_partitioned()
            .await
            .map_err(crate::error::from_df)?
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
            .map_err(|e| Error::Internal(format!("text writer: {e}")))
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
    let io = |e: std::io::Error| Error::Storage(format!("writing {path}: {e}"));
    let mut encoder = Encoder::new(compression).map_err(io)?;
    let mut rows = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(crate::error::from_df)?;
        rows += batch.num_rows() as u64;
        let text = spate_io::sink::batch_to_text(&batch).map_err(crate::error::from_df)?;
        encoder.write(&text).map_err(io)?;
        let ready = encoder.take();
        if !ready.is_empty() {
            file.put(Bytes::from(ready))
                .await
                .map_err(|e| Error::Storage(format!("writing {path}: {e}")))?;
        }
    }
    let rest = encoder.finish().map_err(io)?;
    if !rest.is_empty() {
        file.put(Bytes::from(rest))
            .await
            .map_err(|e| Error::Storage(format!("writing {path}: {e}")))?;
    }
    file.shutdown().await.map_err(io)?;
    Ok(rows)
}

/// What a write produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Rows written.
    pub rows: u64,
    /// Data files written (markers not counted).
    pub files: usize,
    /// On an object store, every object this write put in place (marker
    /// included), so that undoing it deletes nothing else. Empty for a
    /// local directory, which is renamed into place whole.
    pub objects: Vec<String>,
}

/// Writes a new directory at `location` (which must not exist) with a
/// `_SUCCESS` marker, published only when complete.
pub fn new_directory(
    ctx: &Context,
    df: DataFrame,
    output: &Output,
    location: &str,
) -> Result<Written> {
    let target = Place::new(ctx, location)?;
    ctx.block_on(async {
        // A bucket root has no parent to stage beside: say so first.
        if target.local.is_none() {
            target.parent()?;
        }
        if target.exists().await? {
            return Err(Error::Usage(format!(
                "{location} already exists; remove it or write somewhere else"
            )));
        }
        if let Some(local) = &target.local {
            let staged = StagedOutput::create(local)?;
            let staging = staged.staging_dir().to_string_lossy().into_owned();
            let rows = write(ctx, df, output, true, &staging, false, "").await?;
            let files = Place::new(ctx, &staging)?.objects().await?.len();
            staged.commit()?;
            return Ok(Written {
                rows,
                files,
                objects: Vec::new(),
            });
        }
        let (parent, name) = target.parent()?;
        let staging = parent.join(&staging_name(&name));
        let mut moved = Vec::new();
        let result = async {
            let rows = write(ctx, df, output, true, &staging.url, false, "").await?;
            moved = move_all(&staging, &target).await?;
            let files = moved.len();
            let marker = target.path.clone().join(SUCCESS_MARKER);
            target
                .store
                .put(&marker, Bytes::new().into())
                .await
                .map_err(|e| Error::Storage(format!("writing {}/_SUCCESS: {e}", target.url)))?;
            moved.push(marker);
            Ok(Written {
                rows,
                files,
                objects: moved.iter().map(ToString::to_string).collect(),
            })
        }
        .await;
        staging.remove().await;
        if result.is_err() {
            // Only what this statement moved in goes: never another
            // writer's files.
            target.delete_all(&moved).await;
        }
        result
    })
}

/// Writes one new file at `location` (which must not exist). The rows
/// written.
pub fn new_file(ctx: &Context, df: DataFrame, output: &Output, location: &str) -> Result<u64> {
    let target = Place::new(ctx, location)?;
    let (parent, name) = target.parent()?;
    ctx.block_on(async {
        if target.exists().await? {
            return Err(Error::Usage(format!(
                "{location} already exists; remove it or write somewhere else"
            )));
        }
        if let (Some(dir), Some(local_target)) = (&parent.local, &target.local) {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::Usage(format!("cannot create {}: {e}", dir.display())))?;
            // Staged beside the target, flushed, and renamed into place
            // without replacing a file that appeared meanwhile.
            let staging_dir = StagingDir::create(dir, &name)?;
            let staged = Place::new(ctx, &staging_dir.path().to_string_lossy())?.join(&name);
            let rows = write(ctx, df, output, true, &staged.url, true, "").await?;
            let staged_file = staging_dir.path().join(&name);
            spate_io::commit::sync_tree(staging_dir.path())?;
            spate_io::commit::rename_no_replace(&staged_file, local_target).map_err(
                |e| match e {
                    spate_io::Error::OutputExists { .. } => Error::Usage(format!(
                        "{location} already exists; remove it or write somewhere else"
                    )),
                    e => e.into(),
                },
            )?;
            spate_io::commit::sync_dir(dir)?;
            return Ok(rows);
        }
        let staging = parent.join(&staging_name(&name));
        let result = async {
            let staged = staging.join(&name);
            let rows = write(ctx, df, output, true, &staged.url, true, "").await?;
            // Never replace a file that appeared meanwhile, where the store
            // can tell.
            let moved = match target
                .store
                .rename_if_not_exists(&staged.path, &target.path)
                .await
            {
                Err(object_store::Error::NotSupported { .. })
                | Err(object_store::Error::NotImplemented { .. }) => {
                    target.store.rename(&staged.path, &target.path).await
                }
                other => other,
            };
            moved.map_err(|e| match e {
                object_store::Error::AlreadyExists { .. } => Error::Usage(format!(
                    "{location} already exists; remove it or write somewhere else"
                )),
                e => Error::Storage(format!("moving the file to {location}: {e}")),
            })?;
            Ok(rows)
        }
        .await;
        staging.remove().await;
        result
    })
}

/// Adds files with `df`'s rows to the directory at `location` (a table's).
/// The rows written.
///
/// Locally, the new files are flushed to disk before they are moved in,
/// and the directories they land in after. The files move one by one: a
/// failure moves the moved ones back, but a crash (SIGKILL, power loss)
/// between two moves leaves the files already moved in the table.
pub fn add_to_directory(
    ctx: &Context,
    df: DataFrame,
    output: &Output,
    location: &str,
) -> Result<u64> {
    let target = Place::new(ctx, location)?;
    let tag = format!("-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    ctx.block_on(async {
        if let Some(table_dir) = &target.local {
            let staging_dir = StagingDir::create(table_dir, "insert")?;
            let staging = Place::new(ctx, &staging_dir.path().to_string_lossy())?;
            let rows = write(ctx, df, output, false, &staging.url, false, &tag).await?;
            spate_io::commit::sync_tree(staging_dir.path())?;
            let moved = move_all(&staging, &target).await?;
            let mut dirs: Vec<PathBuf> = moved
                .iter()
                .filter_map(|o| Path::new(&format!("/{o}")).parent().map(Path::to_path_buf))
                .collect();
            dirs.sort();
            dirs.dedup();
            for dir in dirs {
                spate_io::commit::sync_dir(&dir)?;
            }
            return Ok(rows);
        }
        let staging = target.join(&staging_name("insert"));
        let result = async {
            let rows = write(ctx, df, output, false, &staging.url, false, &tag).await?;
            move_all(&staging, &target).await?;
            Ok(rows)
        }
        .await;
        staging.remove().await;
        result
    })
}

/// Undoes [`new_directory`] after a later step failed: the local directory
/// goes; on an object store, the objects it put there.
pub fn remove_directory(ctx: &Context, location: &str, written: &Written) {
    let Ok(place) = Place::new(ctx, location) else {
        return;
    };
    if place.local.is_some() {
        ctx.block_on(place.remove());
        return;
    }
    let objects: Vec<ObjectPath> = written
        .objects
        .iter()
        .map(|o| ObjectPath::from(o.as_str()))
        .collect();
    ctx.block_on(place.delete_all(&objects));
}

/// Does `location` name a file (its last part has an extension) rather
/// than a directory?
pub fn names_a_file(location: &str) -> bool {
    if location.ends_with('/') {
        return false;
    }
    let last = location.rsplit('/').next().unwrap_or(location);
    matches!(last.rsplit_once('.'), Some((stem, ext)) if !stem.is_empty() && !ext.is_empty())
}
