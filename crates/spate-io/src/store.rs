//! Object stores behind URLs: `s3://bucket/...`, `gs://bucket/...`,
//! `az://container/...` (also `abfs[s]://`), `http(s)://host/...`.
//! Credentials and endpoints come from the usual environment variables
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
//! `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`; `GOOGLE_SERVICE_ACCOUNT`;
//! `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`, ...), as the
//! AWS, Google and Azure tools read them.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::error::DataFusionError;
use datafusion::execution::object_store::ObjectStoreRegistry;
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::http::HttpBuilder;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

/// Registers, in `session`, the object store a location needs. Local paths
/// and `file://` URLs need none. The error says what is wrong with the URL
/// or the store's configuration.
pub fn register_for(session: &SessionContext, location: &str) -> Result<(), String> {
    if let Some((base, store)) = store_for(location)? {
        session.runtime_env().register_object_store(&base, store);
    }
    Ok(())
}

/// The object store behind `location` (a URL: `s3://bucket/key`) in
/// `runtime`: the store registered for its bucket, or else one set up from
/// the environment (as [`register_for`] does) and registered. The error
/// says what is wrong with the URL or the store's configuration.
pub fn resolve(
    runtime: &datafusion::execution::runtime_env::RuntimeEnv,
    location: &str,
) -> Result<Arc<dyn ObjectStore>, String> {
    let base = store_base(location)?;
    if let Ok(store) = runtime.object_store_registry.get_store(&base) {
        return Ok(store);
    }
    match store_for(location)? {
        Some((base, store)) => {
            runtime.register_object_store(&base, Arc::clone(&store));
            Ok(store)
        }
        None => Err(format!("{location}: not an object-store URL")),
    }
}

/// The URL a location's store is registered under: `scheme://authority`.
fn store_base(location: &str) -> Result<url::Url, String> {
    let (scheme, rest) = location
        .split_once("://")
        .ok_or_else(|| format!("{location}: not a URL"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(format!("{location}: the URL names no bucket or host"));
    }
    url::Url::parse(&format!("{}://{authority}", scheme.to_ascii_lowercase()))
        .map_err(|e| format!("{location}: {e}"))
}

/// A store and the URL it is registered under.
type Registered = (url::Url, Arc<dyn ObjectStore>);

/// The object store behind `location` (`None` for local paths and
/// `file://`), set up from the environment and behind [`HidingStore`], with
/// the URL it is registered under (`scheme://bucket`).
fn store_for(location: &str) -> Result<Option<Registered>, String> {
    let Some((scheme, rest)) = location.split_once("://") else {
        return Ok(None);
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme == "file" {
        return Ok(None);
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(format!("{location}: the URL names no bucket or host"));
    }
    let built = |r: object_store::Result<Arc<dyn ObjectStore>>| {
        r.map_err(|e| format!("{location}: cannot set up its object store: {e}"))
    };
    let store: Arc<dyn ObjectStore> = match scheme.as_str() {
        "s3" | "s3a" => built(
            AmazonS3Builder::from_env()
                .with_bucket_name(authority)
                .build()
                .map(|s| Arc::new(s) as _),
        )?,
        "gs" | "gcs" => built(
            GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(authority)
                .build()
                .map(|s| Arc::new(s) as _),
        )?,
        "az" | "azure" | "abfs" | "abfss" => built(
            MicrosoftAzureBuilder::from_env()
                .with_url(location)
                .build()
                .map(|s| Arc::new(s) as _),
        )?,
        "http" | "https" => built(
            HttpBuilder::new()
                .with_url(format!("{scheme}://{authority}"))
                .build()
                .map(|s| Arc::new(s) as _),
        )?,
        other => {
            return Err(format!(
                "{location}: no object store for {other}:// (s3, gs, az, abfs, http, https)"
            ));
        }
    };
    Ok(Some((store_base(location)?, HidingStore::wrap(store))))
}

/// The object stores of a process that plans or runs other processes'
/// queries: a cluster's scheduler and executors. A store is set up the first
/// time a URL of its bucket is used, from this process's environment (the
/// variables [`register_for`] reads on the driver), so a scheduler and its
/// executors need the store's credentials in their own environment, as
/// Spark's executors and Hadoop's task nodes do. Local files are read
/// behind [`HidingStore`] as on the driver.
pub struct StoresFromEnv {
    stores: std::sync::Mutex<std::collections::HashMap<String, Arc<dyn ObjectStore>>>,
}

impl StoresFromEnv {
    /// A registry holding the local file system.
    pub fn new() -> Arc<Self> {
        let local: Arc<dyn ObjectStore> =
            HidingStore::wrap(Arc::new(object_store::local::LocalFileSystem::new()));
        let stores = std::collections::HashMap::from([("file://".to_string(), local)]);
        Arc::new(Self {
            stores: std::sync::Mutex::new(stores),
        })
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Arc<dyn ObjectStore>>> {
        // A panic while holding the lock left the map whole: keep using it.
        self.stores
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The registry's key for `url`: its scheme and authority, without
/// credentials (DataFusion's rule).
fn store_key(url: &url::Url) -> String {
    format!(
        "{}://{}",
        url.scheme(),
        &url[url::Position::BeforeHost..url::Position::AfterPort]
    )
}

impl std::fmt::Debug for StoresFromEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut keys: Vec<String> = self.lock().keys().cloned().collect();
        keys.sort();
        f.debug_struct("StoresFromEnv")
            .field("stores", &keys)
            .finish()
    }
}

impl ObjectStoreRegistry for StoresFromEnv {
    fn register_store(
        &self,
        url: &url::Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.lock().insert(store_key(url), store)
    }

    fn deregister_store(&self, url: &url::Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        self.lock().remove(&store_key(url)).ok_or_else(|| {
            DataFusionError::Execution(format!("no object store is registered for {url}"))
        })
    }

    fn get_store(&self, url: &url::Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        let key = store_key(url);
        let mut stores = self.lock();
        if let Some(store) = stores.get(&key) {
            return Ok(Arc::clone(store));
        }
        match store_for(&key) {
            Ok(Some((_, store))) => {
                stores.insert(key, Arc::clone(&store));
                Ok(store)
            }
            Ok(None) => Err(DataFusionError::Execution(format!(
                "no object store for {url}"
            ))),
            Err(e) => Err(DataFusionError::Execution(format!(
                "{e} (on {}, from its own environment)",
                crate::host_name().unwrap_or_else(|| "this host".into())
            ))),
        }
    }
}

/// Registers the local file system in `runtime` behind [`HidingStore`].
pub fn register_local(runtime: &datafusion::execution::runtime_env::RuntimeEnv) {
    if let Ok(url) = url::Url::parse("file://") {
        runtime.register_object_store(
            &url,
            HidingStore::wrap(Arc::new(object_store::local::LocalFileSystem::new())),
        );
    }
}

/// Is a file or directory name hidden from readers? Hadoop's and Spark's
/// rule: names starting with `.` (staging directories, `.crc` files) or
/// with `_` (`_SUCCESS`, `_temporary`) — except `_col=value` partition
/// directories.
pub fn is_hidden_name(name: &str) -> bool {
    name.starts_with('.') || (name.starts_with('_') && !name.contains('='))
}

/// An object store whose listings leave out hidden files and directories
/// below the listed prefix (see [`is_hidden_name`]), as Hadoop's and
/// Spark's readers do: a table directory's `_SUCCESS` marker or a
/// statement's staging directory is never read as data. Reading, writing
/// and moving named objects are untouched.
#[derive(Debug)]
pub struct HidingStore {
    inner: Arc<dyn ObjectStore>,
}

impl HidingStore {
    /// `inner` behind the filter.
    pub fn wrap(inner: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        Arc::new(Self { inner })
    }
}

/// Does `location`, below `prefix`, pass through a hidden name?
fn hidden_below(prefix: Option<&Path>, location: &Path) -> bool {
    match prefix {
        Some(p) => match location.prefix_match(p) {
            Some(mut parts) => parts.any(|part| is_hidden_name(part.as_ref())),
            None => false,
        },
        None => location.parts().any(|part| is_hidden_name(part.as_ref())),
    }
}

/// A listing without the hidden objects below `prefix` (errors pass).
fn visible(
    prefix: Option<&Path>,
    listing: BoxStream<'static, object_store::Result<ObjectMeta>>,
) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
    let prefix = prefix.cloned();
    listing
        .filter(move |m| {
            let keep = match m {
                Ok(meta) => !hidden_below(prefix.as_ref(), &meta.location),
                Err(_) => true,
            };
            futures::future::ready(keep)
        })
        .boxed()
}

impl std::fmt::Display for HidingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.inner)
    }
}

#[async_trait]
impl ObjectStore for HidingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> object_store::Result<Vec<bytes::Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        visible(prefix, self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        visible(prefix, self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let mut listed = self.inner.list_with_delimiter(prefix).await?;
        listed.common_prefixes.retain(|p| !hidden_below(prefix, p));
        listed
            .objects
            .retain(|m| !hidden_below(prefix, &m.location));
        Ok(listed)
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_need_no_store_and_bad_urls_are_named() {
        let ctx = SessionContext::new();
        assert!(register_for(&ctx, "/data/x.parquet").is_ok());
        assert!(register_for(&ctx, "file:///data/x.parquet").is_ok());
        let e = register_for(&ctx, "ftp://host/x").unwrap_err();
        assert!(e.contains("no object store for ftp://"), "{e}");
        let e = register_for(&ctx, "s3:///x").unwrap_err();
        assert!(e.contains("names no bucket"), "{e}");
        // An S3 store needs no network to be set up.
        assert!(register_for(&ctx, "s3://bucket/dir/").is_ok());
    }

    #[test]
    fn stores_from_env_are_set_up_once_per_bucket() {
        let stores = StoresFromEnv::new();
        let url = |u: &str| url::Url::parse(u).unwrap();
        // Local files, hidden names left out, as on the driver.
        let local = stores.get_store(&url("file:///tmp/x")).unwrap();
        assert!(local.to_string().contains("LocalFileSystem"), "{local}");
        let a = stores.get_store(&url("s3://bucket/a/b.parquet")).unwrap();
        let b = stores.get_store(&url("s3://bucket/c/")).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "one store per bucket");
        let other = stores.get_store(&url("s3://other/")).unwrap();
        assert!(!Arc::ptr_eq(&a, &other));
        let e = stores
            .get_store(&url("ftp://host/x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no object store for ftp://"), "{e}");
        assert!(e.contains("from its own environment"), "{e}");
        // What a session registers itself wins.
        let mine: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        stores.register_store(&url("s3://bucket"), Arc::clone(&mine));
        let got = stores.get_store(&url("s3://bucket/a")).unwrap();
        assert!(Arc::ptr_eq(&got, &mine));
        assert!(stores.deregister_store(&url("s3://bucket")).is_ok());
        assert!(stores.deregister_store(&url("s3://bucket")).is_err());
    }

    #[tokio::test]
    async fn listings_leave_out_hidden_names_below_the_prefix() {
        use object_store::ObjectStoreExt;
        use object_store::memory::InMemory;
        let store = HidingStore::wrap(Arc::new(InMemory::new()));
        assert!(!is_hidden_name("_year=2024"));
        for p in [
            ".home/t/a.parquet",
            ".home/t/_SUCCESS",
            ".home/t/.staging-1/b.parquet",
            ".home/t/y=1/c.parquet",
            ".home/t/_tmp/d.parquet",
        ] {
            store.put(&Path::from(p), "x".into()).await.unwrap();
        }
        let prefix = Path::from(".home/t");
        let mut listed: Vec<String> = store
            .list(Some(&prefix))
            .map(|m| m.unwrap().location.to_string())
            .collect()
            .await;
        listed.sort();
        assert_eq!(listed, [".home/t/a.parquet", ".home/t/y=1/c.parquet"]);
        let top = store.list_with_delimiter(Some(&prefix)).await.unwrap();
        let dirs: Vec<String> = top.common_prefixes.iter().map(|p| p.to_string()).collect();
        assert_eq!(dirs, [".home/t/y=1"]);
        assert_eq!(top.objects.len(), 1);
        // Named objects are still readable.
        assert!(store.head(&Path::from(".home/t/_SUCCESS")).await.is_ok());
    }
}
