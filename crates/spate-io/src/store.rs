//! Object stores behind URLs: `s3://bucket/...`, `gs://bucket/...`,
//! `az://container/...` (also `abfs[s]://`), `http(s)://host/...`.
//! Credentials and endpoints come from the usual environment variables
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
//! `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`; `GOOGLE_SERVICE_ACCOUNT`;
//! `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`, ...), as the
//! AWS, Google and Azure tools read them.

use std::sync::Arc;

use async_trait::async_trait;
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
    let Some((scheme, rest)) = location.split_once("://") else {
        return Ok(());
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme == "file" {
        return Ok(());
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
    let base = url::Url::parse(&format!("{scheme}://{authority}"))
        .map_err(|e| format!("{location}: {e}"))?;
    session
        .runtime_env()
        .register_object_store(&base, HidingStore::wrap(store));
    Ok(())
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
