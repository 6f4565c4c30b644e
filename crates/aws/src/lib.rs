//! AWS clients built from the `aws` group of `infra/config.schema.json`.
//!
//! Production talks to Amazon; tests and the local stack point `AWS_ENDPOINT_URL` at any
//! SQS- and S3-compatible server (such as moto). Explicit configuration wins over the SDK's own
//! environment and profile lookup; what is left unset falls back to the SDK's default chain.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_sqs::config::Credentials;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

pub use aws_sdk_s3;
pub use aws_sdk_sqs;

/// Connecting to the endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One attempt of one call: above the 20 s wait of an SQS long poll.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// One call, retries included.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(90);
/// Attempts per call (the first one included) for throttling and transient errors.
const MAX_ATTEMPTS: u32 = 3;

/// The `aws` group. Flatten it into a service's config type.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct AwsConfig {
    /// Any SQS- and S3-compatible endpoint; unset means Amazon's endpoint for the region.
    #[serde(default)]
    pub aws_endpoint_url: Option<Url>,
    pub aws_region: String,
    #[serde(default)]
    pub aws_access_key_id: Option<String>,
    #[serde(default)]
    pub aws_secret_access_key: Option<SecretString>,
}

impl std::fmt::Debug for AwsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsConfig")
            .field(
                "aws_endpoint_url",
                &self.aws_endpoint_url.as_ref().map(Url::as_str),
            )
            .field("aws_region", &self.aws_region)
            .field("aws_access_key_id", &self.aws_access_key_id)
            .field(
                "aws_secret_access_key",
                &self.aws_secret_access_key.as_ref().map(|_| "***"),
            )
            .finish()
    }
}

impl AwsConfig {
    /// The endpoint as the SDK wants it (no trailing slash), when one is configured.
    pub fn endpoint(&self) -> Option<String> {
        self.aws_endpoint_url
            .as_ref()
            .map(|url| url.as_str().trim_end_matches('/').to_owned())
    }

    /// The shared SDK configuration: region, endpoint, credentials, timeouts and retries.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(self.aws_region.clone()))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .operation_timeout(OPERATION_TIMEOUT)
                    .build(),
            )
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS));
        if let Some(endpoint) = self.endpoint() {
            loader = loader.endpoint_url(endpoint);
        }
        if let (Some(id), Some(secret)) = (&self.aws_access_key_id, &self.aws_secret_access_key) {
            loader = loader.credentials_provider(Credentials::new(
                id.clone(),
                secret.expose_secret().to_owned(),
                None,
                None,
                "autonoma-config",
            ));
        }
        loader.load().await
    }
}

/// An SQS client for `config`. Building it does not contact the endpoint.
pub async fn sqs_client(config: &AwsConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&config.sdk_config().await)
}

/// An S3 client for `config`. Building it does not contact the endpoint.
///
/// With `AWS_ENDPOINT_URL` set the bucket goes in the path (`endpoint/bucket/key`), which
/// S3-compatible servers (moto, MinIO, R2) accept without wildcard DNS; Amazon itself gets
/// virtual-hosted addressing.
pub async fn s3_client(config: &AwsConfig) -> aws_sdk_s3::Client {
    let s3_config = aws_sdk_s3::config::Builder::from(&config.sdk_config().await)
        .force_path_style(config.aws_endpoint_url.is_some())
        .build();
    aws_sdk_s3::Client::from_conf(s3_config)
}
