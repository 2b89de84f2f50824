//! The checkpoint directory: what a killed stream needs to resume with no
//! loss and no duplicate (the layout of Spark's checkpoints).
//!
//! ```text
//! CHECKPOINT/metadata          the job's stateful steps and sources, checked on restart
//! CHECKPOINT/offsets/N         batch N's input, processing time and watermark, written before it runs
//! CHECKPOINT/state/N           state after batch N: windows, source positions, watermark
//! CHECKPOINT/state/N.delta     or what batch N changed in the state after batch N-1
//! CHECKPOINT/commits/N         batch N is complete (its output is committed)
//! ```
//!
//! The state is written whole every [`SNAPSHOT_EVERY`] batches (and when
//! the batch before left none); in between, each step that keeps track of
//! its changed keys writes only those (Spark's delta files and snapshots),
//! and the small rest (source positions, watermark, late counts) whole. A
//! restart reads the last whole state and applies the deltas after it.
//!
//! Every file is written under a hidden name, flushed to disk and renamed,
//! so a file that exists is whole. On restart, the newest batch with an
//! offset entry but no commit is run again from its offset entry, on the
//! state of the batch before it: the same input, processing time and
//! watermark give the same output, which the sinks commit once.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use spate_core::error::{Error, Result};

use crate::time::Millis;

/// Batches whose offsets and commits are kept (Spark keeps 100).
const KEEP_LOGS: u64 = 100;

/// Every this many batches the state is written whole (Spark's
/// `minDeltasForSnapshot`, 10): a restart applies at most this many deltas.
pub(crate) const SNAPSHOT_EVERY: u64 = 10;

/// One batch's entry in the offset log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct OffsetEntry {
    pub batch: u64,
    /// Processing time the batch runs at (its triggers see this time).
    pub processing_time: Millis,
    /// The watermark when the batch starts (its late-data check).
    pub watermark: Millis,
    /// What each source gives the batch (absent: nothing).
    pub sources: BTreeMap<String, Value>,
    /// Sources idle when the batch was planned (they do not hold the
    /// watermark back), so a batch run again computes the same watermark.
    #[serde(default)]
    pub idle: std::collections::BTreeSet<String>,
    /// Sources that had ended when the batch was planned.
    #[serde(default)]
    pub done: std::collections::BTreeSet<String>,
}

/// A source's standing, kept with the state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct SourceState {
    pub position: Value,
    pub max_event: Millis,
    pub last_data: Option<Millis>,
}

/// Everything a batch leaves for the next one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Snapshot {
    pub watermark: Millis,
    /// Processing time the stream first started (idleness counts from it).
    #[serde(default)]
    pub started: Millis,
    pub sources: BTreeMap<String, SourceState>,
    /// Steps' states written whole.
    pub stages: BTreeMap<String, Vec<u8>>,
    /// Steps' changes since the batch before (only in a delta file).
    #[serde(default)]
    pub deltas: BTreeMap<String, Vec<u8>>,
    pub late: BTreeMap<String, u64>,
}

/// Where a restarted stream resumes.
pub(crate) struct Resume {
    /// The state after the last complete batch (`None`: no batch
    /// completed): its last whole snapshot, then the deltas after it.
    pub snapshot: Option<(u64, Vec<Snapshot>)>,
    /// A batch that was planned but not completed: run it again.
    pub redo: Option<OffsetEntry>,
}

pub(crate) struct Checkpoint {
    dir: PathBuf,
    /// Held (an exclusive lock on `CHECKPOINT/lock`) while the run lasts:
    /// two runs on one checkpoint would plan the same batch twice.
    _lock: std::fs::File,
}

fn storage(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Storage(format!("checkpoint {}: {e}", path.display()))
}

/// Writes `bytes` to `path` whole or not at all.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(|e| storage(&tmp, e))?;
    f.write_all(bytes).map_err(|e| storage(&tmp, e))?;
    f.sync_all().map_err(|e| storage(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| storage(path, e))?;
    sync_dir(dir)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| storage(dir, e))
}

fn numbered(dir: &Path) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| storage(dir, e))? {
        let entry = entry.map_err(|e| storage(dir, e))?;
        if let Ok(n) = entry.file_name().to_string_lossy().parse::<u64>() {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

impl Checkpoint {
    /// Opens (creating) the checkpoint at `dir` for a job described by
    /// `metadata`, and says where to resume. A checkpoint of a job whose
    /// stateful steps or sources differ is refused, naming the step.
    pub fn open(dir: &Path, metadata: &BTreeMap<String, String>) -> Result<(Self, Resume)> {
        for sub in ["offsets", "state", "commits"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| storage(dir, e))?;
        }
        let lock_path = dir.join("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| storage(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Usage(format!(
                    "checkpoint {} is in use by another run of the stream; \
                     one run at a time resumes a checkpoint",
                    dir.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(storage(&lock_path, e)),
        }
        let cp = Self {
            dir: dir.to_path_buf(),
            _lock: lock,
        };
        let meta_path = dir.join("metadata");
        match std::fs::read(&meta_path) {
            Ok(bytes) => {
                let old: BTreeMap<String, String> =
                    serde_json::from_slice(&bytes).map_err(|e| storage(&meta_path, e))?;
                check_same_job(dir, &old, metadata)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let json = serde_json::to_vec_pretty(metadata).map_err(|e| storage(dir, e))?;
                write_atomic(&meta_path, &json)?;
            }
            Err(e) => return Err(storage(&meta_path, e)),
        }
        let resume = cp.resume()?;
        Ok((cp, resume))
    }

    fn resume(&self) -> Result<Resume> {
        let offsets = numbered(&self.dir.join("offsets"))?;
        let commits = numbered(&self.dir.join("commits"))?;
        let last_commit = commits.last().copied();
        let snapshot = match last_commit {
            Some(n) => Some((n, self.read_states(n)?)),
            None => None,
        };
        let redo = match offsets.last() {
            Some(&n) if Some(n) != last_commit => {
                let expected = last_commit.map_or(0, |c| c + 1);
                if n != expected {
                    return Err(storage(
                        &self.dir,
                        format!(
                            "the offset log ends at batch {n} but the last commit is {last_commit:?}: the checkpoint is damaged"
                        ),
                    ));
                }
                Some(self.read_offsets(n)?)
            }
            _ => None,
        };
        Ok(Resume { snapshot, redo })
    }

    fn read_json<T: serde::de::DeserializeOwned>(&self, path: PathBuf) -> Result<T> {
        let bytes = std::fs::read(&path).map_err(|e| storage(&path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| storage(&path, e))
    }

    fn read_offsets(&self, n: u64) -> Result<OffsetEntry> {
        self.read_json(self.dir.join("offsets").join(n.to_string()))
    }

    fn state_path(&self, n: u64, whole: bool) -> PathBuf {
        let name = if whole {
            n.to_string()
        } else {
            format!("{n}.delta")
        };
        self.dir.join("state").join(name)
    }

    /// Whether the state after batch `n` was written (whole or a delta).
    pub fn has_state(&self, n: u64) -> bool {
        self.state_path(n, true).exists() || self.state_path(n, false).exists()
    }

    /// The state after batch `n`: its last whole snapshot, then the deltas
    /// up to `n`, oldest first.
    fn read_states(&self, n: u64) -> Result<Vec<Snapshot>> {
        let mut chain = Vec::new();
        let mut at = n;
        loop {
            let whole = self.state_path(at, true);
            let path = if whole.exists() {
                whole
            } else {
                self.state_path(at, false)
            };
            let bytes = std::fs::read(&path).map_err(|e| {
                storage(
                    &path,
                    format!("{e}: the state after batch {n} needs it; the checkpoint is damaged"),
                )
            })?;
            let snap: Snapshot =
                ciborium::from_reader(bytes.as_slice()).map_err(|e| storage(&path, e))?;
            let is_whole = path.extension().is_none();
            chain.push(snap);
            if is_whole {
                break;
            }
            at = at.checked_sub(1).ok_or_else(|| {
                storage(
                    &path,
                    "a delta of batch 0 (no state before it): the checkpoint is damaged",
                )
            })?;
        }
        chain.reverse();
        Ok(chain)
    }

    /// Records a batch before it runs.
    pub fn write_offsets(&self, entry: &OffsetEntry) -> Result<()> {
        let json = serde_json::to_vec(entry).map_err(|e| storage(&self.dir, e))?;
        write_atomic(
            &self.dir.join("offsets").join(entry.batch.to_string()),
            &json,
        )
    }

    /// Records the state after a batch (whole, or a delta of the state
    /// after the batch before), then the batch as complete.
    pub fn commit(&self, batch: u64, snapshot: &Snapshot, whole: bool) -> Result<()> {
        let mut bytes = Vec::new();
        ciborium::into_writer(snapshot, &mut bytes).map_err(|e| storage(&self.dir, e))?;
        write_atomic(&self.state_path(batch, whole), &bytes)?;
        // A run killed after writing this batch's state the other way.
        let other = self.state_path(batch, !whole);
        if other.exists() {
            std::fs::remove_file(&other).map_err(|e| storage(&other, e))?;
        }
        let commit = serde_json::json!({ "batch": batch, "watermark": snapshot.watermark });
        write_atomic(
            &self.dir.join("commits").join(batch.to_string()),
            commit.to_string().as_bytes(),
        )?;
        self.prune(batch)
    }

    /// Keeps the states from the last whole one before `batch` (the
    /// state of `batch - 1` may still be needed) and the last
    /// [`KEEP_LOGS`] log entries.
    fn prune(&self, batch: u64) -> Result<()> {
        let remove = |sub: &str, below: u64| -> Result<()> {
            let dir = self.dir.join(sub);
            for n in numbered(&dir)? {
                if n < below {
                    let _ = std::fs::remove_file(dir.join(n.to_string()));
                }
            }
            Ok(())
        };
        let states = self.dir.join("state");
        let whole = numbered(&states)?;
        if let Some(&keep) = whole.iter().rev().find(|&&n| n < batch) {
            remove("state", keep)?;
            for entry in std::fs::read_dir(&states).map_err(|e| storage(&states, e))? {
                let entry = entry.map_err(|e| storage(&states, e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(n) = name
                    .strip_suffix(".delta")
                    .and_then(|n| n.parse::<u64>().ok())
                    && n < keep
                {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        remove("offsets", batch.saturating_sub(KEEP_LOGS))?;
        remove("commits", batch.saturating_sub(KEEP_LOGS))
    }
}

fn check_same_job(
    dir: &Path,
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Result<()> {
    for (step, was) in old {
        match new.get(step) {
            None => {
                return Err(Error::Usage(format!(
                    "checkpoint {} holds {step} ({was}), which this job does not have: \
                     give the job its old steps back, or start it with a new checkpoint directory",
                    dir.display()
                )));
            }
            Some(now) if now != was => {
                return Err(Error::Usage(format!(
                    "checkpoint {} holds {step} as {was}, but the job now has it as {now}: \
                     its state does not fit; start the changed job with a new checkpoint directory",
                    dir.display()
                )));
            }
            _ => {}
        }
    }
    if let Some((step, now)) = new.iter().find(|(s, _)| !old.contains_key(*s)) {
        return Err(Error::Usage(format!(
            "the job has {step} ({now}), which checkpoint {} does not know: \
             a step added to a running stream would start without its state; start with a new checkpoint directory",
            dir.display()
        )));
    }
    Ok(())
}
