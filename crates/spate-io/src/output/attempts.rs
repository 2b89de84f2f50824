//! Task attempts of a write on a cluster. DataFusion's file writers run
//! inside one task on an executor, and Ballista runs a task again when its
//! executor is lost — also after it wrote part of its files, or all of them
//! (its result lived on the lost executor). Written straight into the
//! staging place, the files of every attempt would be published together:
//! rows twice, or a half-written file.
//!
//! So each attempt writes into a directory of its own beside the place the
//! statement writes, and marks itself complete once every file is closed
//! (`spate-core`'s `cluster_writes` does that on the executor):
//!
//! ```text
//! STAGING/attempt-<id>/...      the files of one attempt
//! STAGING/attempt-<id>.done     written last: that attempt is complete
//! ```
//!
//! After the job succeeded, the driver keeps exactly one complete attempt
//! (the first by name: complete attempts of one task hold the same rows)
//! and deletes the others, complete or not ([`settle`]); then the
//! statement publishes as it does locally. The same protocol as Hadoop's
//! output committer (task attempt directories, the job committed once by
//! its driver), with the completion marker standing in for the task commit.

use datafusion::prelude::SessionContext;
use object_store::ObjectStoreExt;

use super::place::{Place, move_all};
use crate::{Error, Result};

/// The name an attempt's directory starts with.
const ATTEMPT_PREFIX: &str = "attempt-";
/// The suffix of an attempt's completion marker (beside its directory).
const DONE_SUFFIX: &str = ".done";

/// Where one attempt of a write aimed at `url` writes, and its marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptUrls {
    /// What the attempt's writer is aimed at: a directory URL (ending in
    /// `/`) for a directory write, a file's URL for a one-file write.
    pub write: String,
    /// The completion marker, written once the attempt's files are closed.
    pub done: String,
}

/// The places of attempt `id` of a write aimed at `url`: a directory (a
/// URL ending in `/`) or one file.
pub fn attempt_urls(url: &str, id: &str) -> AttemptUrls {
    let attempt = format!("{ATTEMPT_PREFIX}{id}");
    if let Some(dir) = url.strip_suffix('/') {
        return AttemptUrls {
            write: format!("{dir}/{attempt}/"),
            done: format!("{dir}/{attempt}{DONE_SUFFIX}"),
        };
    }
    let (dir, name) = url.rsplit_once('/').unwrap_or(("", url));
    AttemptUrls {
        write: format!("{dir}/{attempt}/{name}"),
        done: format!("{dir}/{attempt}{DONE_SUFFIX}"),
    }
}

/// After a write aimed at `dest` (a directory, or with `single` one file)
/// succeeded on a cluster: moves the files of one complete attempt to
/// `dest` and deletes every attempt's directory and marker.
pub(super) async fn settle(session: &SessionContext, dest: &str, single: bool) -> Result<()> {
    let target = Place::new(session, dest)?;
    let (base, file_name) = if single {
        let (parent, name) = target.parent()?;
        (parent, Some(name))
    } else {
        (target, None)
    };
    let listing = base
        .store
        .list_with_delimiter(Some(&base.path))
        .await
        .map_err(|e| Error::Storage(format!("listing {}: {e}", base.url)))?;
    let mut complete: Vec<String> = listing
        .objects
        .iter()
        .filter_map(|o| o.location.filename())
        .filter(|n| n.starts_with(ATTEMPT_PREFIX))
        .filter_map(|n| n.strip_suffix(DONE_SUFFIX))
        .map(str::to_string)
        .collect();
    complete.sort();
    let attempts: Vec<String> = listing
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename())
        .filter(|n| n.starts_with(ATTEMPT_PREFIX))
        .map(str::to_string)
        .collect();
    let Some(kept) = complete.first() else {
        return Err(Error::Storage(format!(
            "the write to {dest} succeeded, yet none of its task attempts marked itself \
             complete under {} (nothing was published)",
            base.url
        )));
    };
    let from = base.join(kept);
    let moved = match &file_name {
        // An attempt that wrote no rows may have made no directory.
        None => move_all(&from, &base).await.map(|_| ()),
        Some(name) => {
            let src = from.path.clone().join(name.as_str());
            let dst = base.path.clone().join(name.as_str());
            match base.store.rename(&src, &dst).await {
                Err(object_store::Error::NotFound { .. }) => Ok(()),
                other => other.map_err(|e| {
                    Error::Storage(format!("moving {src} to {dst} after the write: {e}"))
                }),
            }
        }
    };
    for name in &attempts {
        base.join(name).remove().await;
    }
    for name in &complete {
        let marker = base.path.clone().join(format!("{name}{DONE_SUFFIX}"));
        let _ = base.store.delete(&marker).await;
    }
    moved
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_places() {
        assert_eq!(
            attempt_urls("file:///t/.out.stage/", "a1"),
            AttemptUrls {
                write: "file:///t/.out.stage/attempt-a1/".into(),
                done: "file:///t/.out.stage/attempt-a1.done".into(),
            }
        );
        assert_eq!(
            attempt_urls("s3://b/.stage/rows.csv", "a1"),
            AttemptUrls {
                write: "s3://b/.stage/attempt-a1/rows.csv".into(),
                done: "s3://b/.stage/attempt-a1.done".into(),
            }
        );
    }

    fn files(dir: &std::path::Path) -> Vec<String> {
        let mut out: Vec<String> = walk(dir)
            .into_iter()
            .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
            .collect();
        out.sort();
        out
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }

    #[tokio::test]
    async fn one_complete_attempt_is_kept_and_the_rest_go() {
        let session = SessionContext::new();
        let tmp = tempfile::tempdir().unwrap();
        let write_at = |root: &std::path::Path, rel: &str, text: &str| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        let stage = tmp.path().join("stage");
        let write = |rel: &str, text: &str| write_at(&stage, rel, text);
        // Killed half-way: files, no marker.
        write("attempt-a/1.csv", "half");
        write("attempt-a/2.csv#1", "unfinished upload");
        // Two complete attempts of the same task (the first one's executor
        // was lost after it finished): one is kept, whole.
        write("attempt-b/year=1/1.csv", "b1");
        write("attempt-b/year=2/2.csv", "b2");
        write("attempt-b.done", "2");
        write("attempt-c/year=1/9.csv", "c1");
        write("attempt-c.done", "1");
        settle(&session, &stage.to_string_lossy(), false)
            .await
            .unwrap();
        assert_eq!(files(&stage), ["year=1/1.csv", "year=2/2.csv"]);

        // One file: the kept attempt's file takes the target's name.
        let one = tmp.path().join("one");
        let write = |rel: &str, text: &str| write_at(&one, rel, text);
        write("attempt-x/rows.csv", "partial");
        write("attempt-y/rows.csv", "whole");
        write("attempt-y.done", "");
        settle(&session, &one.join("rows.csv").to_string_lossy(), true)
            .await
            .unwrap();
        assert_eq!(files(&one), ["rows.csv"]);
        assert_eq!(
            std::fs::read_to_string(one.join("rows.csv")).unwrap(),
            "whole"
        );

        // No complete attempt: an error, and nothing published.
        let none = tmp.path().join("none");
        std::fs::create_dir_all(none.join("attempt-z")).unwrap();
        std::fs::write(none.join("attempt-z/1.csv"), "half").unwrap();
        let err = settle(&session, &none.to_string_lossy(), false)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("marked itself complete"), "{err}");
    }
}
