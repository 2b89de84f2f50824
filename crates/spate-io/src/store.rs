//! Object stores behind URLs: `s3://bucket/...`, `gs://bucket/...`,
//! `az://container/...` (also `abfs[s]://`), `http(s)://host/...`.
//! Credentials and endpoints come from the usual environment variables
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
//! `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`; `GOOGLE_SERVICE_ACCOUNT`;
//! `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`, ...), as the
//! AWS, Google and Azure tools read them.

use std::sync::Arc;

use datafusion::prelude::SessionContext;
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::http::HttpBuilder;

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
    session.runtime_env().register_object_store(&base, store);
    Ok(())
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
}
