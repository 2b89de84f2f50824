//! Publishing a write: a new directory, a new file, files added to a
//! table's directory, and undoing a new directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use datafusion::dataframe::DataFrame;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;

use super::engine::write;
use super::place::{Place, move_all};
use super::{FileFormat, Output, WriteSummary, exists_error};
use crate::commit::{SUCCESS_MARKER, StagedOutput, StagingDir, staging_name, sync_dir, sync_tree};
use crate::sink::WriteExec;
use crate::{Error, Result};

/// Runs `plan` with each partition written as one `part-NNNNN` file
/// (text or JSON lines, see [`WriteExec`]) of a new local directory `dir`,
/// published whole with its `_SUCCESS` marker.
pub async fn write_parts(
    plan: Arc<dyn ExecutionPlan>,
    task: Arc<TaskContext>,
    dir: &Path,
    format: FileFormat,
) -> Result<WriteSummary> {
    stage_parts(plan, task, dir, format).await?.publish()
}

/// A write done but not yet published: [`publish`](Self::publish) puts
/// it in place, dropping it removes it. Several writes that must appear
/// together (a pipeline's sinks) are staged first and published only when
/// every one is.
#[derive(Debug)]
pub struct StagedWrite {
    staged: StagedOutput,
    rows: u64,
    files: usize,
}

impl StagedWrite {
    /// Writes the `_SUCCESS` marker and renames the directory into place.
    pub fn publish(self) -> Result<WriteSummary> {
        let path = self.staged.commit()?;
        Ok(WriteSummary {
            path,
            rows: self.rows,
            files: self.files,
            objects: Vec::new(),
        })
    }

    /// Where it will be published.
    pub fn target(&self) -> &Path {
        self.staged.target()
    }
}

/// [`write_parts`] up to, not including, publishing.
pub async fn stage_parts(
    plan: Arc<dyn ExecutionPlan>,
    task: Arc<TaskContext>,
    dir: &Path,
    format: FileFormat,
) -> Result<StagedWrite> {
    let staged = StagedOutput::create(dir)?;
    let writer = Arc::new(
        WriteExec::new(plan, staged.staging_dir().to_path_buf(), format).map_err(Error::Engine)?,
    );
    let files = writer.properties().output_partitioning().partition_count();
    let batches = datafusion::physical_plan::collect(writer, task)
        .await
        .map_err(Error::Engine)?;
    let rows = super::written_rows(&batches);
    Ok(StagedWrite {
        staged,
        rows,
        files,
    })
}

/// Writes a new directory at `location` (which must not exist) with a
/// `_SUCCESS` marker, published only when complete.
pub async fn new_directory(
    session: &SessionContext,
    df: DataFrame,
    output: &Output,
    location: &str,
) -> Result<WriteSummary> {
    let target = Place::new(session, location)?;
    // A bucket root has no parent to stage beside: say so first.
    if target.local.is_none() {
        target.parent()?;
    }
    if target.exists().await? {
        return Err(exists_error(location));
    }
    if let Some(local) = &target.local {
        let staged = StagedOutput::create(local)?;
        let staging = staged.staging_dir().to_string_lossy().into_owned();
        let rows = write(session, df, output, true, &staging, false, "").await?;
        let files = Place::new(session, &staging)?.objects().await?.len();
        staged.commit()?;
        return Ok(WriteSummary {
            path: PathBuf::from(location),
            rows,
            files,
            objects: Vec::new(),
        });
    }
    let (parent, name) = target.parent()?;
    let staging = parent.join(&staging_name(&name));
    let mut moved = Vec::new();
    let result = async {
        let rows = write(session, df, output, true, &staging.url, false, "").await?;
        moved = move_all(&staging, &target).await?;
        let files = moved.len();
        let marker = target.path.clone().join(SUCCESS_MARKER);
        target
            .store
            .put(&marker, Bytes::new().into())
            .await
            .map_err(|e| Error::Storage(format!("writing {}/_SUCCESS: {e}", target.url)))?;
        moved.push(marker);
        Ok(WriteSummary {
            path: PathBuf::from(location),
            rows,
            files,
            objects: moved.iter().map(ToString::to_string).collect(),
        })
    }
    .await;
    staging.remove().await;
    if result.is_err() {
        // Only what this statement moved in goes: never another writer's
        // files.
        target.delete_all(&moved).await;
    }
    result
}

/// Writes one new file at `location` (which must not exist). The rows
/// written.
pub async fn new_file(
    session: &SessionContext,
    df: DataFrame,
    output: &Output,
    location: &str,
) -> Result<u64> {
    let target = Place::new(session, location)?;
    let (parent, name) = target.parent()?;
    if target.exists().await? {
        return Err(exists_error(location));
    }
    if let (Some(dir), Some(local_target)) = (&parent.local, &target.local) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("preparing output", dir, e))?;
        // Staged beside the target, flushed, and renamed into place without
        // replacing a file that appeared meanwhile.
        let staging_dir = StagingDir::create(dir, &name)?;
        let staged = Place::new(session, &staging_dir.path().to_string_lossy())?.join(&name);
        let rows = write(session, df, output, true, &staged.url, true, "").await?;
        sync_tree(staging_dir.path())?;
        crate::commit::rename_no_replace(&staging_dir.path().join(&name), local_target).map_err(
            |e| match e {
                Error::OutputExists { .. } => exists_error(location),
                e => e,
            },
        )?;
        sync_dir(dir)?;
        return Ok(rows);
    }
    let staging = parent.join(&staging_name(&name));
    let result = async {
        let staged = staging.join(&name);
        let rows = write(session, df, output, true, &staged.url, true, "").await?;
        // Never replace a file that appeared meanwhile, where the store can
        // tell.
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
            object_store::Error::AlreadyExists { .. } => exists_error(location),
            e => Error::Storage(format!("moving the file to {location}: {e}")),
        })?;
        Ok(rows)
    }
    .await;
    staging.remove().await;
    result
}

/// Adds files with `df`'s rows to the directory at `location` (a table's).
/// The rows written.
///
/// Locally, the new files are flushed to disk before they are moved in,
/// and the directories they land in after. The files move one by one: a
/// failure moves the moved ones back, but a crash (SIGKILL, power loss)
/// between two moves leaves the files already moved in the table.
pub async fn add_to_directory(
    session: &SessionContext,
    df: DataFrame,
    output: &Output,
    location: &str,
) -> Result<u64> {
    let target = Place::new(session, location)?;
    let tag = format!("-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    if let Some(table_dir) = &target.local {
        let staging_dir = StagingDir::create(table_dir, "insert")?;
        let staging = Place::new(session, &staging_dir.path().to_string_lossy())?;
        let rows = write(session, df, output, false, &staging.url, false, &tag).await?;
        sync_tree(staging_dir.path())?;
        let moved = move_all(&staging, &target).await?;
        let mut dirs: Vec<PathBuf> = moved
            .iter()
            .filter_map(|o| Path::new(&format!("/{o}")).parent().map(Path::to_path_buf))
            .collect();
        dirs.sort();
        dirs.dedup();
        for dir in dirs {
            sync_dir(&dir)?;
        }
        return Ok(rows);
    }
    let staging = target.join(&staging_name("insert"));
    let result = async {
        let rows = write(session, df, output, false, &staging.url, false, &tag).await?;
        move_all(&staging, &target).await?;
        Ok(rows)
    }
    .await;
    staging.remove().await;
    result
}

/// Undoes [`new_directory`] after a later step failed: the local directory
/// goes; on an object store, the objects it put there.
pub async fn remove_directory(session: &SessionContext, written: &WriteSummary) {
    let Ok(place) = Place::new(session, &written.path.to_string_lossy()) else {
        return;
    };
    if place.local.is_some() {
        place.remove().await;
        return;
    }
    let objects: Vec<ObjectPath> = written
        .objects
        .iter()
        .map(|o| ObjectPath::from(o.as_str()))
        .collect();
    place.delete_all(&objects).await;
}
