//! The S3 backend: objects under `blobs/<sha256>` in one bucket. A body is received into a
//! local temporary file (its key is its hash, known only at the end) and uploaded from there
//! with one PutObject, streamed from disk. Browsers read through presigned GET URLs.

use std::path::PathBuf;
use std::time::Duration;

use autonoma_aws::aws_sdk_s3::Client;
use autonoma_aws::aws_sdk_s3::error::DisplayErrorContext;
use autonoma_aws::aws_sdk_s3::presigning::PresigningConfig;
use autonoma_aws::aws_sdk_s3::primitives::ByteStream as S3Body;
use autonoma_aws::aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use futures::StreamExt;
use tokio_util::io::ReaderStream;

use crate::stage::Staged;
use crate::{ByteStream, Error};

const READ_CHUNK: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub(crate) struct S3Backend {
    client: Client,
    bucket: String,
    presign_ttl: Duration,
    staging_dir: PathBuf,
}

fn s3_error(operation: &'static str, err: impl std::error::Error) -> Error {
    Error::S3 {
        operation,
        message: DisplayErrorContext(err).to_string(),
    }
}

fn key(sha256: &str) -> String {
    format!("blobs/{sha256}")
}

impl S3Backend {
    pub fn new(client: Client, bucket: String, presign_ttl: Duration) -> Result<Self, Error> {
        // Checked here so a bad BLOB_PRESIGN_TTL fails at start, not at the first read.
        PresigningConfig::expires_in(presign_ttl)
            .map_err(|err| Error::Config(format!("BLOB_PRESIGN_TTL: {err}")))?;
        Ok(Self {
            client,
            bucket,
            presign_ttl,
            staging_dir: std::env::temp_dir().join("autonoma-blobs"),
        })
    }

    pub fn staging_dir(&self) -> PathBuf {
        self.staging_dir.clone()
    }

    /// Creates the bucket unless it exists.
    pub async fn ensure_bucket(&self) -> Result<(), Error> {
        if self
            .client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        let mut create = self.client.create_bucket().bucket(&self.bucket);
        // us-east-1 is the one region that refuses an explicit location constraint.
        if let Some(region) = self.client.config().region()
            && region.as_ref() != "us-east-1"
        {
            create = create.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region.as_ref()))
                    .build(),
            );
        }
        match create.send().await {
            Ok(_) => Ok(()),
            Err(err)
                if err.as_service_error().is_some_and(|e| {
                    e.is_bucket_already_owned_by_you() || e.is_bucket_already_exists()
                }) =>
            {
                Ok(())
            }
            Err(err) => Err(s3_error("CreateBucket", err)),
        }
    }

    pub async fn store(&self, staged: Staged) -> Result<(), Error> {
        let key = key(&staged.sha256);
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(_) => return Ok(()),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found()) => {}
            Err(err) => return Err(s3_error("HeadObject", err)),
        }
        let body = S3Body::from_path(&staged.path)
            .await
            .map_err(|err| s3_error("PutObject", err))?;
        let size = i64::try_from(staged.size)
            .map_err(|_| Error::Invalid("blob is too large for S3".to_owned()))?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_length(size)
            .content_type("application/octet-stream")
            .body(body)
            .send()
            .await
            .map_err(|err| s3_error("PutObject", err))?;
        Ok(())
    }

    /// A GET URL for the object, valid for the configured time. The object is shared by every
    /// registry entry with the same content, so the entry's content type rides in the URL.
    pub async fn presign(&self, sha256: &str, content_type: &str) -> Result<String, Error> {
        let config = PresigningConfig::expires_in(self.presign_ttl)
            .map_err(|err| Error::Config(format!("BLOB_PRESIGN_TTL: {err}")))?;
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key(sha256))
            .response_content_type(content_type)
            .presigned(config)
            .await
            .map_err(|err| s3_error("presigning GetObject", err))?;
        Ok(request.uri().to_owned())
    }

    pub fn presign_ttl(&self) -> Duration {
        self.presign_ttl
    }

    pub async fn read(&self, sha256: &str) -> Result<ByteStream, Error> {
        let object = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key(sha256))
            .send()
            .await
            .map_err(|err| s3_error("GetObject", err))?;
        Ok(ReaderStream::with_capacity(object.body.into_async_read(), READ_CHUNK).boxed())
    }
}
