//! Where output goes: a local path or a place in an object store, and
//! moving objects between two places.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::datasource::listing::ListingTableUrl;
use datafusion::prelude::SessionContext;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::{Error, Result};

/// A local path or a place in an object store.
pub(super) struct Place {
    /// The store and the object path (a local path too has them: the
    /// engine's local file store).
    pub(super) store: Arc<dyn ObjectStore>,
    pub(super) path: ObjectPath,
    /// The URL as the engine parses it, without a trailing `/`.
    pub(super) url: String,
    pub(super) local: Option<PathBuf>,
}

impl Place {
    pub(super) fn new(session: &SessionContext, location: &str) -> Result<Self> {
        let is_url = location.contains("://") && !location.starts_with("file://");
        // The engine reads `*?[` in a path as a glob (and `?`/`#` in a URL
        // as its query and fragment): output there would land elsewhere.
        let special: &[char] = if is_url {
            &['*', '?', '[', '#']
        } else {
            &['*', '?', '[']
        };
        if location.contains(special) {
            return Err(Error::BadOutput(format!(
                "{location}: output paths may not contain {}",
                special
                    .iter()
                    .map(|c| format!("'{c}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        crate::store::register_for(session, location).map_err(Error::BadOutput)?;
        let local = if is_url {
            None
        } else {
            let path = location.strip_prefix("file://").unwrap_or(location);
            let path = Path::new(path);
            Some(if path.is_absolute() {
                path.to_path_buf()
            } else {
                std::env::current_dir()
                    .map_err(|e| Error::io("preparing output", path, e))?
                    .join(path)
            })
        };
        let url = match &local {
            Some(p) => p.to_string_lossy().trim_end_matches('/').to_string(),
            None => location.trim_end_matches('/').to_string(),
        };
        let parsed =
            ListingTableUrl::parse(&url).map_err(|e| Error::BadOutput(format!("{url}: {e}")))?;
        let store = session
            .runtime_env()
            .object_store(parsed.object_store())
            .map_err(|e| Error::BadOutput(format!("{location}: {e}")))?;
        Ok(Self {
            store,
            path: parsed.prefix().clone(),
            url,
            local,
        })
    }

    /// A child at `name`.
    pub(super) fn join(&self, name: &str) -> Self {
        Self {
            store: self.store.clone(),
            path: self.path.clone().join(name),
            url: format!("{}/{name}", self.url),
            local: self.local.as_ref().map(|p| p.join(name)),
        }
    }

    /// The place holding this one, and this one's name in it.
    pub(super) fn parent(&self) -> Result<(Self, String)> {
        if self.path.parts().next().is_none() {
            return Err(Error::BadOutput(format!(
                "{}: names a bucket or the root, not a file or directory in it",
                self.url
            )));
        }
        let (parent, name) = self
            .url
            .rsplit_once('/')
            .filter(|(_, n)| !n.is_empty())
            .ok_or_else(|| {
                Error::BadOutput(format!("{}: not a file or directory name", self.url))
            })?;
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
    pub(super) async fn exists(&self) -> Result<bool> {
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
    pub(super) async fn objects(&self) -> Result<Vec<ObjectPath>> {
        self.store
            .list(Some(&self.path))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|e| Error::Storage(format!("listing {}: {e}", self.url)))
    }

    /// Removes the place and everything under it (best effort: it is a
    /// hidden staging place or a write being undone).
    pub(super) async fn remove(&self) {
        if let Some(p) = &self.local {
            let _ = std::fs::remove_dir_all(p);
            return;
        }
        if let Ok(objects) = self.objects().await {
            self.delete_all(&objects).await;
        }
    }

    /// Deletes these objects (what one statement put here), best effort.
    pub(super) async fn delete_all(&self, objects: &[ObjectPath]) {
        for o in objects {
            let _ = self.store.delete(o).await;
        }
    }
}

/// Moves every object under `from` to the same relative path under `to`;
/// where they went. If one move fails, the objects already moved go back,
/// and the error is returned.
pub(super) async fn move_all(from: &Place, to: &Place) -> Result<Vec<ObjectPath>> {
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
