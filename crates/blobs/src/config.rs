//! The blob variables of `infra/config.schema.json` (`BLOB_*`).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Where blob bytes are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobBackend {
    /// A local directory (`BLOB_DIR`).
    Dir,
    /// An S3 bucket (`BLOB_BUCKET`) reached with the service's `aws` configuration.
    S3,
}

/// The blob store's configuration. Flatten it into a service's config type next to `AwsConfig`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct BlobConfig {
    pub blob_backend: BlobBackend,
    pub blob_dir: PathBuf,
    pub blob_bucket: String,
    #[serde(with = "humantime_serde")]
    pub blob_presign_ttl: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deserialises_from_schema_values() -> Result<(), serde_json::Error> {
        let config: BlobConfig = serde_json::from_value(serde_json::json!({
            "BLOB_BACKEND": "s3",
            "BLOB_DIR": ".autonoma/blobs",
            "BLOB_BUCKET": "autonoma-blobs",
            "BLOB_PRESIGN_TTL": "5m",
        }))?;
        assert_eq!(config.blob_backend, BlobBackend::S3);
        assert_eq!(config.blob_dir, PathBuf::from(".autonoma/blobs"));
        assert_eq!(config.blob_bucket, "autonoma-blobs");
        assert_eq!(config.blob_presign_ttl, Duration::from_secs(300));
        Ok(())
    }
}
