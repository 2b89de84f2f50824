//! Exactly-once text files: each batch's lines go to one file, committed
//! under a visible name only after a commit log entry names it.
//!
//! ```text
//! OUT/part-00007            batch 7's lines (sorted), visible once committed
//! OUT/_spate_log/7          the files batch 7 committed (JSON)
//! OUT/.part-00007.tmp       batch 7's file while it is written
//! ```
//!
//! A batch run again after a crash finds its log entry and only finishes
//! renaming what the entry names; without an entry it writes the file
//! again. Readers that skip hidden names (`.`, `_`) see whole batches only.
//! The directory may be a prefix in an object store (`s3://bucket/out`):
//! there a file is PUT whole under its hidden name, and the rename is a
//! copy and a delete (a crash between them leaves the same bytes twice,
//! one hidden; the replay finishes).
//! The log keeps the entries of the last 100 batches.

use std::path::Path;

use spate_core::Context;
use spate_core::error::{Error, Result};

use crate::dir::Dir;

/// Commit log entries kept (as Spark keeps 100 batches of metadata).
const KEEP_LOG: u64 = 100;

pub(crate) struct FileSink {
    dir: Dir,
    log: Dir,
}

impl FileSink {
    /// The sink writing into `dir`: a local directory or an object-store
    /// URL (`s3://bucket/out`).
    pub fn new(ctx: &Context, dir: &Path) -> Result<Self> {
        let dir = Dir::open(ctx, dir, "output")?;
        let log = dir.sub("_spate_log");
        Ok(Self { dir, log })
    }

    /// Makes the directory ready. A stream starting afresh (`fresh`)
    /// refuses a directory that holds anything, so output of another
    /// stream is never mixed in; a resumed one takes the directory as its
    /// commit log left it.
    pub fn prepare(&self, fresh: bool) -> Result<()> {
        // A stream stopped before its first batch leaves only an empty
        // commit log: that is still an empty output.
        if fresh
            && (self.dir.names()?.iter().any(|n| n != "_spate_log")
                || !self.log.names()?.is_empty())
        {
            return Err(Error::Usage(format!(
                "output directory {} is not empty; a new stream needs an empty or missing one \
                 (a stream resumed from its checkpoint goes on writing into its own)",
                self.dir
            )));
        }
        self.log.create_all()?;
        // The stream holds its checkpoint: no other run writes here now.
        self.dir.remove_leftovers()?;
        self.log.remove_leftovers()
    }

    /// Whether batch `batch` is committed (its files may still await their
    /// rename: [`commit`](Self::commit) finishes that).
    pub fn is_committed(&self, batch: u64) -> Result<bool> {
        self.log.exists(&batch.to_string())
    }

    /// Commits batch `batch`'s lines (sorted first, so a batch run again
    /// writes the same bytes). Returns the lines written.
    pub fn commit(&self, batch: u64, mut lines: Vec<String>) -> Result<u64> {
        let name = format!("part-{batch:05}");
        let hidden = |f: &str| format!(".{f}.tmp");
        let entry = batch.to_string();
        let files: Vec<String> = match self.log.read(&entry)? {
            Some(json) => serde_json::from_slice(&json)
                .map_err(|e| Error::Storage(format!("{}: {e}", self.log.shown(&entry))))?,
            None => {
                let files = if lines.is_empty() {
                    Vec::new()
                } else {
                    lines.sort_unstable();
                    let mut bytes =
                        Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum::<usize>());
                    for l in &lines {
                        bytes.extend_from_slice(l.as_bytes());
                        bytes.push(b'\n');
                    }
                    // Whole (and its name on disk) before a log entry names it.
                    self.dir.write(&hidden(&name), &bytes)?;
                    vec![name]
                };
                let json = serde_json::to_vec(&files)
                    .map_err(|e| Error::Storage(format!("{}: {e}", self.log.shown(&entry))))?;
                self.log.write(&entry, &json)?;
                files
            }
        };
        for f in &files {
            if self.dir.exists(&hidden(f))? {
                self.dir.rename(&hidden(f), f)?;
            } else if !self.dir.exists(f)? {
                return Err(Error::Storage(format!(
                    "output {}: batch {batch} committed {f}, which is gone",
                    self.dir
                )));
            }
        }
        self.prune(batch);
        Ok(lines.len() as u64)
    }

    /// Drops log entries of batches long committed (only the batch in
    /// flight is ever looked up again), keeping the last [`KEEP_LOG`]; what
    /// cannot be dropped now is dropped by a later batch.
    fn prune(&self, batch: u64) {
        let Some(below) = batch.checked_sub(KEEP_LOG) else {
            return;
        };
        if let Ok(numbers) = self.log.numbered() {
            for n in numbers.into_iter().filter(|&n| n < below) {
                let _ = self.log.remove(&n.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_keeps_the_last_entries_and_replays_finish_renames() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Context::builder().build().unwrap();
        let sink = FileSink::new(&ctx, dir.path()).unwrap();
        sink.prepare(true).unwrap();
        for b in 0..105 {
            sink.commit(b, vec![format!("line {b}")]).unwrap();
        }
        let logged = sink.log.numbered().unwrap();
        assert_eq!(logged.first(), Some(&4));
        assert_eq!(logged.len(), 101);
        // Every batch's file stays.
        assert!(dir.path().join("part-00000").exists());
        // A batch committed again (a replay) changes nothing.
        assert!(sink.is_committed(104).unwrap());
        sink.commit(104, Vec::new()).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("part-00104")).unwrap(),
            "line 104\n"
        );
        // A crash between the log entry and the rename: the replay renames.
        std::fs::rename(
            dir.path().join("part-00104"),
            dir.path().join(".part-00104.tmp"),
        )
        .unwrap();
        sink.commit(104, Vec::new()).unwrap();
        assert!(dir.path().join("part-00104").exists());
    }

    #[test]
    fn a_sink_on_an_object_store_commits_once_and_replays_finish_renames() {
        let (ctx, _) = crate::dir::tests::memory_store();
        let sink = FileSink::new(&ctx, Path::new("s3://mem/out")).unwrap();
        sink.prepare(true).unwrap();
        assert_eq!(sink.commit(0, vec!["b".into(), "a".into()]).unwrap(), 2);
        assert_eq!(sink.dir.read("part-00000").unwrap().unwrap(), b"a\nb\n");
        assert!(!sink.dir.exists(".part-00000.tmp").unwrap());
        // Killed between its log entry and the copy: the replay copies.
        sink.dir.write(".part-00001.tmp", b"c\n").unwrap();
        sink.log.write("1", br#"["part-00001"]"#).unwrap();
        assert!(sink.is_committed(1).unwrap());
        sink.commit(1, Vec::new()).unwrap();
        assert_eq!(sink.dir.read("part-00001").unwrap().unwrap(), b"c\n");
        assert!(!sink.dir.exists(".part-00001.tmp").unwrap());
        // A new stream refuses the prefix, naming it.
        let again = FileSink::new(&ctx, Path::new("s3://mem/out/")).unwrap();
        let err = again.prepare(true).unwrap_err().to_string();
        assert!(
            err.contains("output directory s3://mem/out is not empty"),
            "{err}"
        );
        again.prepare(false).unwrap();
    }
}
