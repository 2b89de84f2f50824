//! Text input on object stores (`s3://bucket/key`, `gs://`, `az://`,
//! `http(s)://`): listing a URL into objects, and reading an object from an
//! offset as a [`Read`] for the same line reader that reads local files.
//!
//! An input file on a store keeps its URL as its path
//! (`s3://bucket/dir/part-0.txt`), so errors, split tags and a Hadoop
//! task's `map_input_file` name it as the user wrote it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use datafusion::execution::runtime_env::RuntimeEnv;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};

use super::InputFile;
use crate::error::{Error, Result};

/// Whether `input` is the URL of an object store's object or prefix (a
/// scheme other than `file://`), not a local path.
pub fn is_url(input: &str) -> bool {
    match input.split_once("://") {
        Some((scheme, _)) => {
            !scheme.is_empty()
                && !scheme.eq_ignore_ascii_case("file")
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

/// An object's place: its store's URL (`scheme://authority`) and its key.
#[derive(Debug, Clone)]
struct Location {
    base: String,
    key: ObjectPath,
}

impl Location {
    /// A URL as a user gives it: the key percent-decoded as URLs are.
    fn of_input(input: &str) -> Result<Self> {
        let bad = |message: String| Error::BadPattern {
            pattern: input.to_string(),
            message,
        };
        let url = url::Url::parse(input).map_err(|e| bad(e.to_string()))?;
        let key = ObjectPath::from_url_path(url.path()).map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            base: base_of(input),
            key,
        })
    }

    /// The path of an input file listed by [`list_url`].
    fn of_listed(path: &Path) -> Result<Self> {
        let text = path.to_string_lossy();
        let (_, rest) = text.split_once("://").unwrap_or_default();
        let key = rest.split_once('/').map_or("", |(_, key)| key);
        let key = ObjectPath::parse(key).map_err(|e| Error::BadPattern {
            pattern: text.to_string(),
            message: e.to_string(),
        })?;
        Ok(Self {
            base: base_of(&text),
            key,
        })
    }

    fn url(&self, key: &ObjectPath) -> PathBuf {
        PathBuf::from(format!("{}/{key}", self.base))
    }
}

/// `scheme://authority` of a URL.
fn base_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or_default();
    let authority = rest.split('/').next().unwrap_or_default();
    format!("{scheme}://{authority}")
}

fn store_error(op: &'static str, path: &Path, e: object_store::Error) -> Error {
    match e {
        object_store::Error::NotFound { .. } => Error::io(
            op,
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, e.to_string()),
        ),
        e => Error::Storage(format!("{op} {}: {e}", path.display())),
    }
}

/// The store of `input` in `runtime` (set up from the environment when
/// no store is registered for its bucket).
fn store_in(runtime: &RuntimeEnv, input: &str) -> Result<Arc<dyn ObjectStore>> {
    crate::store::resolve(runtime, input).map_err(Error::BadInput)
}

/// The store of `input` from this process's environment, for a reader
/// given no runtime (see [`crate::store::StoresFromEnv`]).
fn store_from_env(input: &str) -> Result<Arc<dyn ObjectStore>> {
    use datafusion::execution::object_store::ObjectStoreRegistry;
    static STORES: std::sync::OnceLock<Arc<crate::store::StoresFromEnv>> =
        std::sync::OnceLock::new();
    let url = url::Url::parse(&base_of(input)).map_err(|e| Error::BadInput(e.to_string()))?;
    STORES
        .get_or_init(crate::store::StoresFromEnv::new)
        .get_store(&url)
        .map_err(|e| Error::BadInput(e.to_string()))
}

fn has_glob_chars(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Expands an object-store URL into its objects, sorted by key: the object
/// itself, or every object below it taken as a directory (a trailing `/` is
/// optional), or, for a glob (`s3://b/logs/2024-*/part-*`), the objects it
/// matches and those below the "directories" it matches. Hidden names
/// (`_SUCCESS`, `.staging`) below the listed prefix are left out, as in
/// local directories. A URL that matches nothing is an error.
pub(super) async fn list_url(input: &str, runtime: &RuntimeEnv) -> Result<Vec<InputFile>> {
    let store = store_in(runtime, input)?;
    let not_found = || Error::InputNotFound {
        path: PathBuf::from(input),
    };
    let (_, rest) = input.split_once("://").unwrap_or_default();
    let raw_key = rest.split_once('/').map_or("", |(_, key)| key);
    if has_glob_chars(raw_key) {
        return list_glob(input, raw_key, store.as_ref()).await;
    }
    let place = Location::of_input(input)?;
    // A "directory" first: some stores answer a HEAD of a prefix with an
    // error other than "not found" (and retry it).
    let prefix = (!place.key.as_ref().is_empty()).then_some(&place.key);
    let mut files = list_below(&place, prefix, store.as_ref(), |_| true).await?;
    if files.is_empty() && !raw_key.is_empty() && !raw_key.ends_with('/') {
        match store.head(&place.key).await {
            Ok(meta) => {
                return Ok(vec![InputFile {
                    path: place.url(&meta.location),
                    len: meta.size,
                }]);
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store_error("opening", Path::new(input), e)),
        }
    }
    if files.is_empty() {
        return Err(not_found());
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// The objects below `prefix` that `keep` accepts.
async fn list_below(
    place: &Location,
    prefix: Option<&ObjectPath>,
    store: &dyn ObjectStore,
    keep: impl Fn(&ObjectPath) -> bool,
) -> Result<Vec<InputFile>> {
    let listed_at = place.url(prefix.unwrap_or(&ObjectPath::default()));
    let mut listing = store.list(prefix);
    let mut files = Vec::new();
    while let Some(meta) = listing.next().await {
        let meta = meta.map_err(|e| store_error("listing", &listed_at, e))?;
        if keep(&meta.location) {
            files.push(InputFile {
                path: place.url(&meta.location),
                len: meta.size,
            });
        }
    }
    Ok(files)
}

/// The objects a glob matches: by their key, or by a "directory" above them.
async fn list_glob(input: &str, raw_key: &str, store: &dyn ObjectStore) -> Result<Vec<InputFile>> {
    let bad = |message: String| Error::BadPattern {
        pattern: input.to_string(),
        message,
    };
    // `logs/day=*/`: the directories the pattern matches.
    let raw_key = raw_key.trim_end_matches('/');
    let pattern = glob::Pattern::new(raw_key).map_err(|e| bad(e.to_string()))?;
    let literal: Vec<&str> = raw_key
        .split('/')
        .take_while(|part| !has_glob_chars(part))
        .collect();
    let place = Location {
        base: base_of(input),
        key: ObjectPath::default(),
    };
    let prefix = ObjectPath::from_iter(literal.iter().copied().filter(|p| !p.is_empty()));
    let prefix = (!prefix.as_ref().is_empty()).then_some(&prefix);
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    let matches = |key: &ObjectPath| {
        // The key itself, or one of its "directories" below the prefix.
        let parts: Vec<_> = key.parts().collect();
        (literal.len() + 1..=parts.len()).any(|n| {
            let head: Vec<&str> = parts[..n].iter().map(|p| p.as_ref()).collect();
            pattern.matches_with(&head.join("/"), options)
        })
    };
    let mut files = list_below(&place, prefix, store, matches).await?;
    if files.is_empty() {
        return Err(Error::InputNotFound {
            path: PathBuf::from(input),
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// Reads an object from an offset with at most two requests: the bytes up
/// to `bound` (the end of a split), then, only if the reader wants more
/// (the line that crosses the split's end), the rest of the object.
pub(super) struct ObjectRead {
    store: Arc<dyn ObjectStore>,
    key: ObjectPath,
    path: PathBuf,
    runtime: tokio::runtime::Handle,
    pos: u64,
    bound: Option<u64>,
    body: Option<BoxStream<'static, object_store::Result<Bytes>>>,
    chunk: Bytes,
    done: bool,
}

impl ObjectRead {
    /// A reader of the object at `path` (a URL listed by [`list_url`]) from
    /// byte `from`, its first request ending at `bound`. It must run
    /// outside async code, under a tokio runtime (a blocking task).
    pub(super) fn open(
        path: &Path,
        from: u64,
        bound: Option<u64>,
        runtime: Option<&RuntimeEnv>,
    ) -> Result<Self> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::Storage(format!(
                "reading {}: object stores are read under a tokio runtime",
                path.display()
            ))
        })?;
        let text = path.to_string_lossy();
        let store = match runtime {
            Some(runtime) => store_in(runtime, &text)?,
            None => store_from_env(&text)?,
        };
        let place = Location::of_listed(path)?;
        Ok(Self {
            store,
            key: place.key,
            path: path.to_path_buf(),
            runtime: handle,
            pos: from,
            bound: bound.filter(|b| *b > from),
            body: None,
            chunk: Bytes::new(),
            done: false,
        })
    }

    fn request(&mut self) -> std::io::Result<()> {
        let range = match self.bound {
            Some(end) => Some(GetRange::Bounded(self.pos..end)),
            None if self.pos == 0 => None,
            None => Some(GetRange::Offset(self.pos)),
        };
        let options = GetOptions {
            range,
            ..GetOptions::default()
        };
        let got = self
            .runtime
            .block_on(self.store.get_opts(&self.key, options))
            .map_err(|e| self.io_error(e))?;
        self.body = Some(got.into_stream());
        Ok(())
    }

    fn io_error(&self, e: object_store::Error) -> std::io::Error {
        let kind = match e {
            object_store::Error::NotFound { .. } => std::io::ErrorKind::NotFound,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, format!("{} (at byte offset {})", e, self.pos))
    }
}

impl Read for ObjectRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if !self.chunk.is_empty() {
                let n = buf.len().min(self.chunk.len());
                buf[..n].copy_from_slice(&self.chunk[..n]);
                let _ = self.chunk.split_to(n);
                self.pos += n as u64;
                return Ok(n);
            }
            if self.done || buf.is_empty() {
                return Ok(0);
            }
            if self.body.is_none() {
                self.request()?;
            }
            let Some(body) = self.body.as_mut() else {
                return Ok(0);
            };
            match self.runtime.block_on(body.next()) {
                Some(Ok(bytes)) => self.chunk = bytes,
                Some(Err(e)) => return Err(self.io_error(e)),
                None => {
                    self.body = None;
                    // Past the split's end: the rest of the object next.
                    if self.bound.take().is_none() {
                        self.done = true;
                    }
                }
            }
        }
    }
}

impl std::fmt::Debug for ObjectRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ObjectRead({} at {})", self.path.display(), self.pos)
    }
}
