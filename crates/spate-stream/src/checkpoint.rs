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
//! The checkpoint is a local directory or a prefix in an object store
//! (`s3://bucket/ck`; see the `dir` module). Every file is written whole or
//! not at all (locally under a hidden name, flushed to disk and renamed).
//! Offset entries and commits are only ever created, never replaced: a
//! run that finds one there already has another run beside it and stops
//! (on a local directory a lock keeps the second run out sooner). On restart, the newest batch with an
//! offset entry but no commit is run again from its offset entry, on the
//! state of the batch before it: the same input, processing time and
//! watermark give the same output, which the sinks commit once.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use spate_core::error::{Error, Result};

use spate_core::Context;

use crate::dir::Dir;
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
    dir: Dir,
    offsets: Dir,
    state: Dir,
    commits: Dir,
    /// Held (an exclusive lock on `CHECKPOINT/lock`) while the run lasts,
    /// on a local checkpoint: two runs on one checkpoint would plan the
    /// same batch twice. An object store has no locks: there a second run
    /// is found out when it creates a batch's offset entry or commit that
    /// already exists.
    _lock: Option<std::fs::File>,
    /// The last batch committed (found on opening, then each commit).
    last_commit: std::cell::Cell<Option<u64>>,
    /// This run's id, in every offset entry and commit it creates: a
    /// create that a store's retry finds done is told from another run's.
    run: String,
}

fn storage(dir: &Dir, e: impl std::fmt::Display) -> Error {
    Error::Storage(format!("checkpoint {dir}: {e}"))
}

/// Takes the lock of a local checkpoint directory.
fn lock(dir: &Path) -> Result<std::fs::File> {
    let path = dir.join("lock");
    let err = |e: std::io::Error| Error::Storage(format!("checkpoint {}: {e}", path.display()));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(err)?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(in_use(&dir.display().to_string())),
        Err(std::fs::TryLockError::Error(e)) => Err(err(e)),
    }
}

fn in_use(dir: &str) -> Error {
    Error::Usage(format!(
        "checkpoint {dir} is in use by another run of the stream; \
         one run at a time resumes a checkpoint"
    ))
}

impl Checkpoint {
    /// Opens (creating) the checkpoint at `location` (a local directory
    /// or an object-store URL) for a job described by `metadata`, and
    /// says where to resume. A checkpoint of a job whose stateful steps or
    /// sources differ is refused, naming the step.
    pub fn open(
        ctx: &Context,
        location: &Path,
        metadata: &BTreeMap<String, String>,
    ) -> Result<(Self, Resume)> {
        let dir = Dir::open(ctx, location, "checkpoint")?;
        let (offsets, state, commits) = (dir.sub("offsets"), dir.sub("state"), dir.sub("commits"));
        for d in [&offsets, &state, &commits] {
            d.create_all()?;
        }
        let lock = dir.local().map(lock).transpose()?;
        let cp = Self {
            dir,
            offsets,
            state,
            commits,
            _lock: lock,
            last_commit: std::cell::Cell::new(None),
            run: uuid::Uuid::new_v4().simple().to_string(),
        };
        if cp.dir.local().is_some() {
            // This run holds the lock: what other runs left half-written
            // is theirs no more.
            for d in [&cp.dir, &cp.offsets, &cp.state, &cp.commits] {
                d.remove_leftovers()?;
            }
        }
        let json = serde_json::to_vec_pretty(metadata).map_err(|e| storage(&cp.dir, e))?;
        // Written by the first run; a run racing it reads what it wrote.
        if !cp.dir.create("metadata", &json)? {
            let old: BTreeMap<String, String> = read_json(&cp.dir, "metadata")?;
            check_same_job(&cp.dir, &old, metadata)?;
        }
        let resume = cp.resume()?;
        Ok((cp, resume))
    }

    fn resume(&self) -> Result<Resume> {
        let offsets = self.offsets.numbered()?;
        let commits = self.commits.numbered()?;
        let last_commit = commits.last().copied();
        self.last_commit.set(last_commit);
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
                Some(read_json(&self.offsets, &n.to_string())?)
            }
            _ => None,
        };
        Ok(Resume { snapshot, redo })
    }

    fn state_name(n: u64, whole: bool) -> String {
        if whole {
            n.to_string()
        } else {
            format!("{n}.delta")
        }
    }

    /// Whether the state after batch `n` is there (whole or a delta): `n`
    /// is the last batch committed.
    pub fn has_state(&self, n: u64) -> bool {
        self.last_commit.get() == Some(n)
    }

    /// The state after batch `n`: its last whole snapshot, then the deltas
    /// up to `n`, oldest first.
    fn read_states(&self, n: u64) -> Result<Vec<Snapshot>> {
        let mut chain = Vec::new();
        let mut at = n;
        loop {
            let whole = Self::state_name(at, true);
            let delta = Self::state_name(at, false);
            let (name, bytes, is_whole) = match self.state.read(&whole)? {
                Some(b) => (whole, b, true),
                None => match self.state.read(&delta)? {
                    Some(b) => (delta, b, false),
                    None => {
                        return Err(Error::Storage(format!(
                            "{}: missing: the state after batch {n} needs it; the checkpoint is damaged",
                            self.state.shown(&delta)
                        )));
                    }
                },
            };
            let snap: Snapshot = ciborium::from_reader(bytes.as_slice())
                .map_err(|e| Error::Storage(format!("{}: {e}", self.state.shown(&name))))?;
            chain.push(snap);
            if is_whole {
                break;
            }
            at = at.checked_sub(1).ok_or_else(|| {
                Error::Storage(format!(
                    "{}: a delta of batch 0 (no state before it): the checkpoint is damaged",
                    self.state.shown(&name)
                ))
            })?;
        }
        chain.reverse();
        Ok(chain)
    }

    /// Creates `name` in `dir` as this run's: one that is there already
    /// and is not this run's (a retried PUT finds its own first attempt)
    /// means another run beside this one on the same checkpoint.
    fn create_own(&self, dir: &Dir, name: &str, mut value: Value) -> Result<()> {
        value["run"] = Value::String(self.run.clone());
        let json = serde_json::to_vec(&value).map_err(|e| storage(&self.dir, e))?;
        if dir.create(name, &json)? || dir.read(name)?.as_deref() == Some(&json[..]) {
            Ok(())
        } else {
            Err(in_use(&self.dir.to_string()))
        }
    }

    /// Records a batch before it runs. A run that finds the entry already
    /// there has another run beside it on the same checkpoint.
    pub fn write_offsets(&self, entry: &OffsetEntry) -> Result<()> {
        let value = serde_json::to_value(entry).map_err(|e| storage(&self.dir, e))?;
        self.create_own(&self.offsets, &entry.batch.to_string(), value)
    }

    /// Records the state after a batch (whole, or a delta of the state
    /// after the batch before), then the batch as complete.
    pub fn commit(&self, batch: u64, snapshot: &Snapshot, whole: bool) -> Result<()> {
        let mut bytes = Vec::new();
        ciborium::into_writer(snapshot, &mut bytes).map_err(|e| storage(&self.dir, e))?;
        self.state.write(&Self::state_name(batch, whole), &bytes)?;
        // A run killed after writing this batch's state the other way.
        self.state.remove(&Self::state_name(batch, !whole))?;
        let commit = serde_json::json!({ "batch": batch, "watermark": snapshot.watermark });
        self.create_own(&self.commits, &batch.to_string(), commit)?;
        self.last_commit.set(Some(batch));
        // The batch is committed: a failure to tidy up (a listing that
        // failed) is left for a later batch's prune.
        let _ = self.prune(batch);
        Ok(())
    }

    /// Keeps the states from the last whole one before `batch` (the
    /// state of `batch - 1` may still be needed) and the last
    /// [`KEEP_LOGS`] log entries. What cannot be removed now is removed
    /// by a later batch.
    fn prune(&self, batch: u64) -> Result<()> {
        let remove = |dir: &Dir, below: u64| -> Result<()> {
            for n in dir.numbered()?.into_iter().filter(|&n| n < below) {
                let _ = dir.remove(&n.to_string());
            }
            Ok(())
        };
        let whole = self.state.numbered()?;
        if let Some(&keep) = whole.iter().rev().find(|&&n| n < batch) {
            remove(&self.state, keep)?;
            for name in self.state.names()? {
                if name
                    .strip_suffix(".delta")
                    .and_then(|n| n.parse::<u64>().ok())
                    .is_some_and(|n| n < keep)
                {
                    let _ = self.state.remove(&name);
                }
            }
        }
        remove(&self.offsets, batch.saturating_sub(KEEP_LOGS))?;
        remove(&self.commits, batch.saturating_sub(KEEP_LOGS))
    }
}

/// A JSON file of the checkpoint, which must be there.
fn read_json<T: serde::de::DeserializeOwned>(dir: &Dir, name: &str) -> Result<T> {
    let bytes = dir
        .read(name)?
        .ok_or_else(|| Error::Storage(format!("{}: missing", dir.shown(name))))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Storage(format!("{}: {e}", dir.shown(name))))
}

fn check_same_job(
    dir: &Dir,
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Result<()> {
    for (step, was) in old {
        match new.get(step) {
            None => {
                return Err(Error::Usage(format!(
                    "checkpoint {dir} holds {step} ({was}), which this job does not have: \
                     give the job its old steps back, or start it with a new checkpoint directory"
                )));
            }
            Some(now) if now != was => {
                return Err(Error::Usage(format!(
                    "checkpoint {dir} holds {step} as {was}, but the job now has it as {now}: \
                     its state does not fit; start the changed job with a new checkpoint directory"
                )));
            }
            _ => {}
        }
    }
    if let Some((step, now)) = new.iter().find(|(s, _)| !old.contains_key(*s)) {
        return Err(Error::Usage(format!(
            "the job has {step} ({now}), which checkpoint {dir} does not know: \
             a step added to a running stream would start without its state; start with a new checkpoint directory"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(batch: u64) -> OffsetEntry {
        OffsetEntry {
            batch,
            processing_time: 0,
            watermark: 0,
            sources: BTreeMap::new(),
            idle: Default::default(),
            done: Default::default(),
        }
    }

    #[test]
    fn a_second_run_on_an_object_store_checkpoint_is_found_out() {
        let (ctx, _) = crate::dir::tests::memory_store();
        let meta = BTreeMap::from([("step Count".to_string(), "count".to_string())]);
        let at = Path::new("s3://mem/ck");
        let (a, resume) = Checkpoint::open(&ctx, at, &meta).unwrap();
        assert!(resume.snapshot.is_none() && resume.redo.is_none());
        a.write_offsets(&entry(0)).unwrap();
        a.commit(0, &Snapshot::default(), true).unwrap();
        a.write_offsets(&entry(1)).unwrap();

        // A second run beside the first: it would redo batch 1, and the
        // batch after it, planned by both, is refused to the later one.
        let (b, resume) = Checkpoint::open(&ctx, at, &meta).unwrap();
        assert_eq!(resume.snapshot.as_ref().map(|s| s.0), Some(0));
        assert_eq!(resume.redo.as_ref().map(|e| e.batch), Some(1));
        a.commit(1, &Snapshot::default(), false).unwrap();
        let err = b.commit(1, &Snapshot::default(), false).unwrap_err();
        assert!(err.to_string().contains("in use by another run"), "{err}");
        a.write_offsets(&entry(2)).unwrap();
        // A run that finds its own entry (a store's retry of a PUT that
        // landed) goes on.
        a.write_offsets(&entry(2)).unwrap();
        let err = b.write_offsets(&entry(2)).unwrap_err();
        assert!(err.to_string().contains("in use by another run"), "{err}");

        // A restart reads the state chain back from the store.
        let (_, resume) = Checkpoint::open(&ctx, at, &meta).unwrap();
        let (n, chain) = resume.snapshot.unwrap();
        assert_eq!((n, chain.len()), (1, 2));
        assert_eq!(resume.redo.unwrap().batch, 2);

        // Another job's steps are refused, naming the step and the URL.
        let other = BTreeMap::from([("step Count".to_string(), "sum".to_string())]);
        let err = Checkpoint::open(&ctx, at, &other)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("checkpoint s3://mem/ck holds step Count as count"),
            "{err}"
        );
    }
}
