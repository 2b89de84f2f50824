//! Atomic output commit.
//!
//! A job writes into a staging directory next to the output
//! (`.<name>.spate-staging-<id>`); on success it writes `_SUCCESS` and renames
//! the staging directory to the output name in one `rename(2)`. On failure the
//! staging directory is removed. Readers therefore see either no output
//! directory or a complete one — never a partial one that looks complete.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Name of the marker file a committed output directory holds.
pub const SUCCESS_MARKER: &str = "_SUCCESS";

/// A staging directory that becomes the output directory on [`commit`](Self::commit).
/// Dropping it uncommitted removes it.
#[derive(Debug)]
pub struct StagedOutput {
    target: PathBuf,
    staging: PathBuf,
    committed: bool,
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
        let staging = parent.join(staging_name(&name));
        std::fs::create_dir(&staging).map_err(|e| Error::io("preparing output", &staging, e))?;
        Ok(Self {
            target: target.to_path_buf(),
            staging,
            committed: false,
        })
    }

    /// The directory to write part files into.
    pub fn staging_dir(&self) -> &Path {
        &self.staging
    }

    /// The final output directory.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Writes the success marker and publishes the output directory.
    pub fn commit(mut self) -> Result<PathBuf> {
        let marker = self.staging.join(SUCCESS_MARKER);
        std::fs::write(&marker, b"").map_err(|e| Error::io("writing", &marker, e))?;
        if self.target.exists() {
            return Err(Error::OutputExists {
                path: self.target.clone(),
            });
        }
        std::fs::rename(&self.staging, &self.target)
            .map_err(|e| Error::io("publishing", &self.target, e))?;
        self.committed = true;
        Ok(self.target.clone())
    }
}

impl Drop for StagedOutput {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: a leftover staging directory is hidden and never
            // mistaken for output, so a failure here loses nothing.
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }
}

/// A unique hidden name for output in progress towards `name`
/// (`.<name>.spate-staging-<id>`): readers skip it.
pub fn staging_name(name: &str) -> String {
    format!(".{name}.spate-staging-{}", uuid::Uuid::new_v4().simple())
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
}
