//! A directory of whole files, on the local disk or under a prefix of an
//! object store (`s3://bucket/prefix`, `gs://`, `az://`): where a stream's
//! checkpoint and its file sinks keep what they commit.
//!
//! Every file is written whole or not at all. Locally that takes a hidden
//! temporary name, a flush to disk and a rename (then a flush of the
//! directory); on an object store a PUT is already all or nothing. A file
//! can also be created only if it does not exist yet (a hard link of the
//! flushed temporary file; a PUT with `If-None-Match: *`): that is how a
//! second run of a stream on the same checkpoint is found out, as Spark
//! finds it out by creating its offset log entries.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use spate_core::Context;
use spate_core::error::{Error, Result};

/// A directory: local, or a prefix in an object store.
#[derive(Clone)]
pub(crate) struct Dir {
    place: Place,
    /// What errors call it (the path or the URL as given).
    shown: String,
}

#[derive(Clone)]
enum Place {
    Local(PathBuf),
    Store {
        ctx: Context,
        store: Arc<dyn ObjectStore>,
        prefix: ObjectPath,
    },
}

/// How the hidden temporary files of local writes end.
const TEMP_SUFFIX: &str = ".spate-tmp";

/// Is `location` an object-store URL (`scheme://...`, not `file://`)?
pub(crate) fn is_url(location: &str) -> bool {
    location
        .split_once("://")
        .is_some_and(|(scheme, _)| !scheme.eq_ignore_ascii_case("file"))
}

impl Dir {
    /// The directory at `location`: a local path (or `file://` URL), or an
    /// object-store URL whose store is set up from the environment as
    /// `ctx`'s queries set it up (see `spate_io::store`).
    pub fn open(ctx: &Context, location: &Path, what: &str) -> Result<Self> {
        let text = location.to_string_lossy();
        if !is_url(&text) {
            let local = text
                .strip_prefix("file://")
                .map_or_else(|| location.to_path_buf(), PathBuf::from);
            return Ok(Self {
                place: Place::Local(local),
                shown: text.into_owned(),
            });
        }
        let store = spate_io::store::resolve(&ctx.session().runtime_env(), &text)
            .map_err(|e| Error::Usage(format!("{what} {e}")))?;
        let key = text
            .split_once("://")
            .map(|(_, rest)| rest.split_once('/').map_or("", |(_, key)| key))
            .unwrap_or_default()
            .trim_matches('/');
        Ok(Self {
            place: Place::Store {
                ctx: ctx.clone(),
                store,
                prefix: ObjectPath::from(key),
            },
            shown: text.trim_end_matches('/').to_string(),
        })
    }

    /// The local path, if the directory is local.
    pub fn local(&self) -> Option<&Path> {
        match &self.place {
            Place::Local(p) => Some(p),
            Place::Store { .. } => None,
        }
    }

    /// The directory `name` inside this one.
    pub fn sub(&self, name: &str) -> Self {
        let place = match &self.place {
            Place::Local(p) => Place::Local(p.join(name)),
            Place::Store { ctx, store, prefix } => Place::Store {
                ctx: ctx.clone(),
                store: Arc::clone(store),
                prefix: prefix.clone().join(name),
            },
        };
        Self {
            place,
            shown: format!("{}/{name}", self.shown),
        }
    }

    /// How errors name the file `name` in this directory.
    pub fn shown(&self, name: &str) -> String {
        format!("{}/{name}", self.shown)
    }

    fn store_err(&self, name: &str, e: impl std::fmt::Display) -> Error {
        Error::Storage(format!("{}: {e}", self.shown(name)))
    }

    /// Makes the directory exist (an object store needs nothing).
    pub fn create_all(&self) -> Result<()> {
        match &self.place {
            Place::Local(p) => std::fs::create_dir_all(p).map_err(|e| io_err(p, e)),
            Place::Store { .. } => Ok(()),
        }
    }

    /// The bytes of file `name`, or `None` if there is none.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        match &self.place {
            Place::Local(p) => match std::fs::read(p.join(name)) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(io_err(&p.join(name), e)),
            },
            Place::Store { ctx, store, prefix } => {
                let path = prefix.clone().join(name);
                let got = ctx.block_on(async {
                    match store.get(&path).await {
                        Ok(r) => r.bytes().await.map(Some),
                        Err(object_store::Error::NotFound { .. }) => Ok(None),
                        Err(e) => Err(e),
                    }
                });
                got.map(|b| b.map(|b| b.to_vec()))
                    .map_err(|e| self.store_err(name, e))
            }
        }
    }

    /// Whether file `name` exists.
    pub fn exists(&self, name: &str) -> Result<bool> {
        match &self.place {
            Place::Local(p) => p
                .join(name)
                .try_exists()
                .map_err(|e| io_err(&p.join(name), e)),
            Place::Store { ctx, store, prefix } => {
                let path = prefix.clone().join(name);
                match ctx.block_on(store.head(&path)) {
                    Ok(_) => Ok(true),
                    Err(object_store::Error::NotFound { .. }) => Ok(false),
                    Err(e) => Err(self.store_err(name, e)),
                }
            }
        }
    }

    /// Writes file `name` whole or not at all, replacing any before it.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<()> {
        match &self.place {
            Place::Local(p) => {
                let tmp = Self::flushed_temp(p, name, bytes)?;
                let path = p.join(name);
                std::fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
                sync_dir(p)
            }
            Place::Store { ctx, store, prefix } => {
                let path = prefix.clone().join(name);
                let payload = PutPayload::from(bytes.to_vec());
                ctx.block_on(store.put(&path, payload))
                    .map(|_| ())
                    .map_err(|e| self.store_err(name, e))
            }
        }
    }

    /// Creates file `name` whole, only if there is none: `false` (and
    /// nothing written) if there was one.
    pub fn create(&self, name: &str, bytes: &[u8]) -> Result<bool> {
        match &self.place {
            Place::Local(p) => {
                let tmp = Self::flushed_temp(p, name, bytes)?;
                let path = p.join(name);
                let created = match std::fs::hard_link(&tmp, &path) {
                    Ok(()) => Ok(true),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                    // A file system without hard links (SMB, some FUSE
                    // mounts): a local checkpoint's lock keeps other runs
                    // out, so checking, then renaming, is safe there.
                    Err(_) => match path.try_exists() {
                        Ok(true) => Ok(false),
                        Ok(false) => std::fs::rename(&tmp, &path)
                            .map(|()| true)
                            .map_err(|e| io_err(&path, e)),
                        Err(e) => Err(io_err(&path, e)),
                    },
                };
                let _ = std::fs::remove_file(&tmp);
                if created? {
                    sync_dir(p)?;
                    return Ok(true);
                }
                Ok(false)
            }
            Place::Store { ctx, store, prefix } => {
                let path = prefix.clone().join(name);
                let payload = PutPayload::from(bytes.to_vec());
                let opts = PutOptions::from(PutMode::Create);
                match ctx.block_on(store.put_opts(&path, payload, opts)) {
                    Ok(_) => Ok(true),
                    Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
                    Err(e @ object_store::Error::NotImplemented { .. }) => {
                        Err(Error::Usage(format!(
                            "{}: the object store cannot create an object only if it is absent \
                         ({e}), which a stream needs to keep a second run off its checkpoint; \
                         use a store with conditional PUT (S3, GCS, Azure, MinIO, R2) or a local directory",
                            self.shown(name)
                        )))
                    }
                    Err(e) => Err(self.store_err(name, e)),
                }
            }
        }
    }

    /// `bytes` in a hidden temporary file next to `name`, flushed to disk.
    /// Its name is new (never an older run's leftover, which may be a
    /// hard link to a committed file: writing through it would change
    /// that file).
    fn flushed_temp(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf> {
        use std::io::Write;
        let tmp = dir.join(format!(
            ".{name}.{}{TEMP_SUFFIX}",
            uuid::Uuid::new_v4().simple()
        ));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| io_err(&tmp, e))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| io_err(&tmp, e))?;
        Ok(tmp)
    }

    /// The names of the files (and directories) in this directory, sorted.
    /// On an object store set up from the environment, names hidden from
    /// readers (`.x`, `_x`) are left out, as `spate_io::store::HidingStore`
    /// lists (a store registered on the context by hand lists them all).
    pub fn names(&self) -> Result<Vec<String>> {
        let mut out = match &self.place {
            Place::Local(p) => match std::fs::read_dir(p) {
                Ok(entries) => {
                    let mut out = Vec::new();
                    for e in entries {
                        let e = e.map_err(|e| io_err(p, e))?;
                        out.push(e.file_name().to_string_lossy().into_owned());
                    }
                    out
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(io_err(p, e)),
            },
            Place::Store { ctx, store, prefix } => {
                let listed = ctx
                    .block_on(store.list_with_delimiter(Some(prefix)))
                    .map_err(|e| Error::Storage(format!("{}: {e}", self.shown)))?;
                let objects = listed.objects.into_iter().map(|o| o.location);
                objects
                    .chain(listed.common_prefixes)
                    .filter_map(|p| p.filename().map(str::to_string))
                    .collect()
            }
        };
        out.sort_unstable();
        Ok(out)
    }

    /// The objects under this store prefix (not below its sub-prefixes):
    /// name, size and last modification, hidden names left out. `None` for
    /// a local directory.
    pub fn objects(&self) -> Result<Option<Vec<(String, u64, std::time::SystemTime)>>> {
        let Place::Store { ctx, store, prefix } = &self.place else {
            return Ok(None);
        };
        let listed = ctx
            .block_on(store.list_with_delimiter(Some(prefix)))
            .map_err(|e| Error::Storage(format!("{}: {e}", self.shown)))?;
        Ok(Some(
            listed
                .objects
                .into_iter()
                .filter_map(|o| {
                    let name = o.location.filename()?.to_string();
                    Some((name, o.size, std::time::SystemTime::from(o.last_modified)))
                })
                .collect(),
        ))
    }

    /// Removes the temporary files that runs killed while writing left
    /// here (locally: on a store a write leaves nothing). Only for a
    /// directory no other run writes into at the same time.
    pub fn remove_leftovers(&self) -> Result<()> {
        let Place::Local(p) = &self.place else {
            return Ok(());
        };
        for name in self.names()? {
            if name.starts_with('.') && name.ends_with(TEMP_SUFFIX) {
                let _ = std::fs::remove_file(p.join(name));
            }
        }
        Ok(())
    }

    /// The numbers that name files here (`7`, not `7.delta`), ascending.
    pub fn numbered(&self) -> Result<Vec<u64>> {
        let mut out: Vec<u64> = self
            .names()?
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Removes file `name` (none there is no error).
    pub fn remove(&self, name: &str) -> Result<()> {
        match &self.place {
            Place::Local(p) => match std::fs::remove_file(p.join(name)) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_err(&p.join(name), e)),
            },
            Place::Store { ctx, store, prefix } => {
                match ctx.block_on(store.delete(&prefix.clone().join(name))) {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(self.store_err(name, e)),
                }
            }
        }
    }

    /// Renames file `from` to `to`, replacing any `to` (on an object store:
    /// a copy, then the delete of `from`; a crash between them leaves both,
    /// whole).
    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        match &self.place {
            Place::Local(p) => {
                std::fs::rename(p.join(from), p.join(to)).map_err(|e| io_err(&p.join(from), e))?;
                sync_dir(p)
            }
            Place::Store { ctx, store, prefix } => ctx
                .block_on(store.rename(&prefix.clone().join(from), &prefix.clone().join(to)))
                .map_err(|e| self.store_err(from, e)),
        }
    }
}

impl std::fmt::Display for Dir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Storage(format!("{}: {e}", path.display()))
}

/// Flushes a directory's entries (new names, renames) to disk.
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A context whose `s3://mem` bucket is an in-memory object store.
    pub(crate) fn memory_store() -> (Context, Arc<dyn ObjectStore>) {
        let ctx = Context::builder().threads(1).build().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        ctx.session()
            .runtime_env()
            .register_object_store(&url::Url::parse("s3://mem").unwrap(), Arc::clone(&store));
        (ctx, store)
    }

    fn files_behave_alike(dir: &Dir) {
        assert_eq!(dir.read("a").unwrap(), None);
        assert!(!dir.exists("a").unwrap());
        dir.write("a", b"one").unwrap();
        dir.write("a", b"two").unwrap();
        assert_eq!(dir.read("a").unwrap().as_deref(), Some(&b"two"[..]));
        // Created once only: the second create writes nothing.
        assert!(dir.create("7", b"first").unwrap());
        assert!(!dir.create("7", b"second").unwrap());
        assert_eq!(dir.read("7").unwrap().as_deref(), Some(&b"first"[..]));
        dir.write("12", b"x").unwrap();
        dir.write("3.delta", b"x").unwrap();
        assert_eq!(dir.numbered().unwrap(), [7, 12]);
        dir.rename("12", "13").unwrap();
        assert!(!dir.exists("12").unwrap());
        assert_eq!(dir.read("13").unwrap().as_deref(), Some(&b"x"[..]));
        dir.remove("13").unwrap();
        dir.remove("13").unwrap();
        let sub = dir.sub("log");
        sub.create_all().unwrap();
        sub.write("1", b"x").unwrap();
        assert_eq!(sub.numbered().unwrap(), [1]);
        assert_eq!(dir.names().unwrap(), ["3.delta", "7", "a", "log"]);
    }

    #[test]
    fn local_and_object_store_directories_behave_alike() {
        let tmp = tempfile::tempdir().unwrap();
        let (ctx, store) = memory_store();
        let local = Dir::open(&ctx, tmp.path(), "test").unwrap();
        assert!(local.local().is_some());
        files_behave_alike(&local);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(names.len(), 4);

        let remote = Dir::open(&ctx, Path::new("s3://mem/a/b/"), "test").unwrap();
        assert!(remote.local().is_none());
        assert_eq!(remote.to_string(), "s3://mem/a/b");
        files_behave_alike(&remote);
        let key = ObjectPath::from("a/b/7");
        let bytes = ctx.block_on(async { store.get(&key).await.unwrap().bytes().await });
        assert_eq!(&bytes.unwrap()[..], b"first");
    }

    #[test]
    fn a_url_without_a_known_store_is_refused_naming_it() {
        let ctx = Context::builder().threads(1).build().unwrap();
        let err = Dir::open(&ctx, Path::new("nosuch://x/y"), "checkpoint")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("checkpoint nosuch://x/y"), "{err}");
    }
}
