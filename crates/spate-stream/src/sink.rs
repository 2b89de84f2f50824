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
//! The log keeps the entries of the last 100 batches.

use std::io::Write;
use std::path::{Path, PathBuf};

use spate_core::error::{Error, Result};

use crate::checkpoint::{sync_dir, write_atomic};

/// Commit log entries kept (as Spark keeps 100 batches of metadata).
const KEEP_LOG: u64 = 100;

pub(crate) struct FileSink {
    dir: PathBuf,
}

fn storage(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Storage(format!("output {}: {e}", path.display()))
}

impl FileSink {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.join("_spate_log")
    }

    /// Makes the directory ready. A stream starting afresh (`fresh`)
    /// refuses a directory that holds anything, so output of another
    /// stream is never mixed in; a resumed one takes the directory as its
    /// commit log left it.
    pub fn prepare(&self, fresh: bool) -> Result<()> {
        // A stream stopped before its first batch leaves only an empty
        // commit log: that is still an empty output.
        let empty_log = || std::fs::read_dir(self.log()).is_ok_and(|mut e| e.next().is_none());
        if fresh
            && let Ok(entries) = std::fs::read_dir(&self.dir)
            && entries
                .filter_map(|e| e.ok())
                .any(|e| !(e.file_name() == "_spate_log" && empty_log()))
        {
            return Err(Error::Usage(format!(
                "output directory {} is not empty; a new stream needs an empty or missing one \
                 (a stream resumed from its checkpoint goes on writing into its own)",
                self.dir.display()
            )));
        }
        std::fs::create_dir_all(self.log()).map_err(|e| storage(&self.dir, e))
    }

    /// Whether batch `batch` is committed (its files may still await their
    /// rename: [`commit`](Self::commit) finishes that).
    pub fn is_committed(&self, batch: u64) -> bool {
        self.log().join(batch.to_string()).exists()
    }

    /// Commits batch `batch`'s lines (sorted first, so a batch run again
    /// writes the same bytes). Returns the lines written.
    pub fn commit(&self, batch: u64, mut lines: Vec<String>) -> Result<u64> {
        let name = format!("part-{batch:05}");
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let entry = self.log().join(batch.to_string());
        if !entry.exists() {
            let files: Vec<String> = if lines.is_empty() {
                Vec::new()
            } else {
                lines.sort_unstable();
                let mut f = std::io::BufWriter::new(
                    std::fs::File::create(&tmp).map_err(|e| storage(&tmp, e))?,
                );
                for l in &lines {
                    f.write_all(l.as_bytes()).map_err(|e| storage(&tmp, e))?;
                    f.write_all(b"\n").map_err(|e| storage(&tmp, e))?;
                }
                let f = f.into_inner().map_err(|e| storage(&tmp, e))?;
                f.sync_all().map_err(|e| storage(&tmp, e))?;
                // The file's name must be on disk before a log entry names it.
                sync_dir(&self.dir)?;
                vec![name.clone()]
            };
            let json = serde_json::to_vec(&files).map_err(|e| storage(&entry, e))?;
            write_atomic(&entry, &json)?;
        }
        let json = std::fs::read(&entry).map_err(|e| storage(&entry, e))?;
        let files: Vec<String> = serde_json::from_slice(&json).map_err(|e| storage(&entry, e))?;
        for f in &files {
            let hidden = self.dir.join(format!(".{f}.tmp"));
            if hidden.exists() {
                std::fs::rename(&hidden, self.dir.join(f)).map_err(|e| storage(&hidden, e))?;
            } else if !self.dir.join(f).exists() {
                return Err(storage(
                    &self.dir,
                    format!("batch {batch} committed {f}, which is gone"),
                ));
            }
        }
        sync_dir(&self.dir)?;
        self.prune(batch);
        Ok(lines.len() as u64)
    }

    /// Drops log entries of batches long committed (only the batch in
    /// flight is ever looked up again), keeping the last [`KEEP_LOG`].
    fn prune(&self, batch: u64) {
        let Some(below) = batch.checked_sub(KEEP_LOG) else {
            return;
        };
        if let Ok(entries) = std::fs::read_dir(self.log()) {
            for e in entries.flatten() {
                let name = e.file_name();
                if name
                    .to_str()
                    .and_then(|n| n.parse::<u64>().ok())
                    .is_some_and(|n| n < below)
                {
                    let _ = std::fs::remove_file(e.path());
                }
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
        let sink = FileSink::new(dir.path());
        sink.prepare(true).unwrap();
        for b in 0..105 {
            sink.commit(b, vec![format!("line {b}")]).unwrap();
        }
        let mut logged: Vec<u64> = std::fs::read_dir(sink.log())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
            .collect();
        logged.sort();
        assert_eq!(logged.first(), Some(&4));
        assert_eq!(logged.len(), 101);
        // Every batch's file stays.
        assert!(dir.path().join("part-00000").exists());
        // A batch committed again (a replay) changes nothing.
        assert!(sink.is_committed(104));
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
}
