//! Publishing output whole, or not at all.
//!
//! A job writes into a hidden staging directory next to the output
//! (`.<name>.spate-staging-<id>`) that it holds an exclusive `flock(2)` on
//! while it lives. On success every file and directory in it is flushed to
//! disk (`fsync`), `_SUCCESS` is written and flushed, and the staging
//! directory is renamed to the output name with
//! `renameat2(RENAME_NOREPLACE)` — one step that never replaces an output
//! that appeared meanwhile — and the parent directory is flushed. On failure
//! the staging directory is removed. Readers therefore see either no output
//! directory or a complete one, also after a crash or a power loss.
//!
//! A writer killed outright (SIGKILL, a lost machine) cannot clean up: its
//! staging directory stays, hidden, and unlocked now that the process is
//! gone. The next write to the same place removes such leftovers — only the
//! ones whose lock it can take, so a live writer's staging is never touched.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Name of the marker file a committed output directory holds.
pub const SUCCESS_MARKER: &str = "_SUCCESS";

const STAGING_TAG: &str = ".spate-staging-";
const CREATING_TAG: &str = ".spate-creating-";

/// A unique hidden name for output in progress towards `name`
/// (`.<name>.spate-staging-<id>`): readers skip it.
pub fn staging_name(name: &str) -> String {
    format!(".{name}{STAGING_TAG}{}", uuid::Uuid::new_v4().simple())
}

/// A hidden directory that output is written into before it is published,
/// locked by this process for as long as the value lives (removed when
/// dropped unless [`publish`](Self::publish)ed).
#[derive(Debug)]
pub struct StagingDir {
    path: PathBuf,
    /// Holds the `flock(2)` that tells other writers this staging is live.
    lock: Option<File>,
}

impl StagingDir {
    /// Creates a staging directory in `parent` for output named `name`,
    /// first removing staging directories for the same name that their
    /// writers left behind when they died.
    pub fn create(parent: &Path, name: &str) -> Result<Self> {
        remove_stale(parent, name);
        // Created and locked under a name no other writer sweeps, then
        // renamed: a staging directory is never seen unlocked.
        let id = uuid::Uuid::new_v4().simple().to_string();
        let creating = parent.join(format!(".{name}{CREATING_TAG}{id}"));
        std::fs::create_dir(&creating).map_err(|e| Error::io("preparing output", &creating, e))?;
        let lock =
            File::open(&creating).map_err(|e| Error::io("preparing output", &creating, e))?;
        if let Err(e) = lock.try_lock() {
            let _ = std::fs::remove_dir(&creating);
            return Err(Error::io(
                "locking",
                &creating,
                std::io::Error::other(e.to_string()),
            ));
        }
        let path = parent.join(format!(".{name}{STAGING_TAG}{id}"));
        if let Err(e) = std::fs::rename(&creating, &path) {
            let _ = std::fs::remove_dir(&creating);
            return Err(Error::io("preparing output", &path, e));
        }
        Ok(Self {
            path,
            lock: Some(lock),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes everything in the staging directory to disk, then renames it
    /// to `target`, which must not exist, and flushes `target`'s parent.
    pub fn publish(mut self, target: &Path) -> Result<()> {
        sync_tree(&self.path)?;
        rename_no_replace(&self.path, target)?;
        if let Some(parent) = target.parent() {
            sync_dir(parent)?;
        }
        // The lock goes with the file handle; the directory is output now.
        self.lock = None;
        self.path = PathBuf::new();
        Ok(())
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            // Best effort: a leftover staging directory is hidden, never
            // mistaken for output, and removed by the next writer.
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Removes the staging directories for `name` in `parent` that no live
/// writer holds (their writers were killed before they could clean up).
/// Best effort: what cannot be removed stays hidden.
pub fn remove_stale(parent: &Path, name: &str) {
    let staging = format!(".{name}{STAGING_TAG}");
    let creating = format!(".{name}{CREATING_TAG}");
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        let is_staging = file_name.starts_with(&staging);
        // A directory being created is locked within microseconds; one an
        // hour old was left by a writer that died in between.
        let is_abandoned = file_name.starts_with(&creating)
            && entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 3600);
        if !is_staging && !is_abandoned {
            continue;
        }
        let path = entry.path();
        let Ok(dir) = File::open(&path) else {
            continue;
        };
        // Locked: its writer is alive. Unlocked: nobody will publish it.
        if dir.try_lock().is_ok() {
            log::info!("removing {} (left by a writer that died)", path.display());
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// `rename(2)` that fails with [`Error::OutputExists`] instead of replacing
/// an existing `to` (`renameat2(RENAME_NOREPLACE)`; where the file system
/// lacks it, a check before a plain rename).
pub fn rename_no_replace(from: &Path, to: &Path) -> Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::EXIST) | Err(rustix::io::Errno::NOTEMPTY) => {
            Err(Error::OutputExists {
                path: to.to_path_buf(),
            })
        }
        Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOSYS) => {
            if to.exists() {
                return Err(Error::OutputExists {
                    path: to.to_path_buf(),
                });
            }
            std::fs::rename(from, to).map_err(|e| Error::io("publishing", to, e))
        }
        Err(e) => Err(Error::io("publishing", to, e.into())),
    }
}

/// Flushes a directory's entries to disk.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("flushing", dir, e))
}

/// Flushes every file and directory under `root` (and `root`) to disk.
pub fn sync_tree(root: &Path) -> Result<()> {
    let entries = std::fs::read_dir(root).map_err(|e| Error::io("flushing", root, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("flushing", root, e))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(|e| Error::io("flushing", &path, e))?;
        if kind.is_dir() {
            sync_tree(&path)?;
        } else if kind.is_file() {
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io("flushing", &path, e))?;
        }
    }
    sync_dir(root)
}

/// A staging directory that becomes the output directory on [`commit`](Self::commit).
/// Dropping it uncommitted removes it.
#[derive(Debug)]
pub struct StagedOutput {
    target: PathBuf,
    staging: StagingDir,
}

impl StagedOutput {
    /// Creates the staging directory for `target`. Fails if `target` exists.
    pub fn create(target: &Path) -> Result<Self> {
        if target.exists() {
            return Err(Error::OutputExists {
                path: target.to_path_buf(),
            });
        }
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(|e| Error::io("preparing output", &parent, e))?;
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "output".into());
        Ok(Self {
            target: target.to_path_buf(),
            staging: StagingDir::create(&parent, &name)?,
        })
    }

    /// The directory to write part files into.
    pub fn staging_dir(&self) -> &Path {
        self.staging.path()
    }

    /// The final output directory.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Writes the success marker and publishes the output directory.
    pub fn commit(self) -> Result<PathBuf> {
        let marker = self.staging.path().join(SUCCESS_MARKER);
        std::fs::write(&marker, b"").map_err(|e| Error::io("writing", &marker, e))?;
        self.staging.publish(&self.target)?;
        Ok(self.target)
    }
}

/// File name of the `index`-th part file, Hadoop style: `part-00000`.
pub fn part_file_name(index: usize, extension: &str) -> String {
    if extension.is_empty() {
        format!("part-{index:05}")
    } else {
        format!("part-{index:05}.{extension}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_publishes_and_drop_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let staged = StagedOutput::create(&out).unwrap();
        std::fs::write(staged.staging_dir().join("part-00000"), "a\n").unwrap();
        assert!(!out.exists());
        staged.commit().unwrap();
        assert!(out.join(SUCCESS_MARKER).exists());
        assert_eq!(
            std::fs::read_to_string(out.join("part-00000")).unwrap(),
            "a\n"
        );
        assert!(matches!(
            StagedOutput::create(&out),
            Err(Error::OutputExists { .. })
        ));

        let out2 = dir.path().join("out2");
        let staged = StagedOutput::create(&out2).unwrap();
        let staging = staged.staging_dir().to_path_buf();
        drop(staged);
        assert!(!staging.exists());
        assert!(!out2.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn publishing_never_replaces_an_output_that_appeared_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let staged = StagedOutput::create(&out).unwrap();
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("theirs"), "x").unwrap();
        assert!(matches!(staged.commit(), Err(Error::OutputExists { .. })));
        assert_eq!(std::fs::read_to_string(out.join("theirs")).unwrap(), "x");
        // The failed commit left no staging behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn stale_staging_goes_and_live_staging_stays() {
        let dir = tempfile::tempdir().unwrap();
        // Left by a writer that was killed: no lock held.
        let dead = dir.path().join(staging_name("out"));
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join("part-00000"), "old").unwrap();
        // A live writer's, and another output's.
        let live = StagingDir::create(dir.path(), "out").unwrap();
        assert!(!dead.exists(), "a dead writer's staging is removed");
        let other = dir.path().join(staging_name("other"));
        std::fs::create_dir(&other).unwrap();
        let second = StagingDir::create(dir.path(), "out").unwrap();
        assert!(live.path().exists(), "a live writer's staging stays");
        assert!(second.path().exists());
        assert!(other.exists(), "another output's staging is not touched");
    }
}
