//! `AwsConfig` from the schema, and the SQS client it builds against a real SQS-compatible
//! server (moto, `TEST_SQS_ENDPOINT`).

use std::collections::HashMap;

use autonoma_aws::{AwsConfig, sqs_client};
use autonoma_common::config::{ConfigError, KeyStatus, load_from};
use serde::Deserialize;

/// The `aws` group alone, read from the reference agent's section (which includes it).
#[derive(Debug, Deserialize)]
struct OnlyAws {
    #[serde(flatten)]
    aws: AwsConfig,
}

fn env(extra: &[(&str, &str)]) -> HashMap<String, String> {
    [
        ("INTERNAL_API_KEYS", "aws-test-key-0123456789"),
        ("BASIC_AUTH_USER", "operator"),
        ("BASIC_AUTH_PASS", "correct-horse-battery"),
        ("ORCHESTRATOR_URL", "http://127.0.0.1:9"),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

fn load(extra: &[(&str, &str)]) -> Result<AwsConfig, ConfigError> {
    load_from::<OnlyAws>("echo-agent", &env(extra)).map(|loaded| loaded.config.aws)
}

#[test]
fn defaults_leave_endpoint_and_credentials_to_the_sdk() {
    let config = load(&[]).expect("valid");
    assert_eq!(config.aws_region, "us-east-1");
    assert!(config.aws_endpoint_url.is_none());
    assert!(config.aws_access_key_id.is_none());
    assert!(config.aws_secret_access_key.is_none());
    assert_eq!(config.endpoint(), None);
}

#[test]
fn an_access_key_without_its_secret_is_refused_by_name() {
    let Err(ConfigError::Invalid(report)) = load(&[("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")]) else {
        panic!("a lone access key id must be refused");
    };
    let secret = report
        .keys
        .iter()
        .find(|k| k.key == "AWS_SECRET_ACCESS_KEY")
        .expect("reported");
    assert_eq!(secret.status, KeyStatus::Missing);
    assert!(
        secret
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("required when AWS_ACCESS_KEY_ID is set")),
        "{secret:?}"
    );

    let Err(ConfigError::Invalid(report)) = load(&[("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")])
    else {
        panic!("a lone secret must be refused");
    };
    assert!(report.problems().any(|k| k.key == "AWS_ACCESS_KEY_ID"));
    assert!(!report.render_text().contains("s3cr3t-value"));

    let Err(ConfigError::Invalid(report)) = load(&[("AWS_ENDPOINT_URL", "moto:5000")]) else {
        panic!("a malformed endpoint must be refused");
    };
    assert!(report.problems().any(|k| k.key == "AWS_ENDPOINT_URL"));
}

#[test]
fn debug_output_hides_the_secret() {
    let config = load(&[
        ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "s3cr3t-value"),
    ])
    .expect("valid");
    let debug = format!("{config:?}");
    assert!(debug.contains("AKIAEXAMPLE"), "{debug}");
    assert!(!debug.contains("s3cr3t-value"), "{debug}");
}

#[tokio::test]
async fn the_client_talks_to_the_configured_endpoint() {
    let endpoint = autonoma_testkit::sqs_endpoint();
    let config = load(&[
        ("AWS_ENDPOINT_URL", &format!("{endpoint}/")),
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ])
    .expect("valid");
    assert_eq!(config.endpoint().as_deref(), Some(endpoint.as_str()));
    let sqs = sqs_client(&config).await;

    let name = format!("aws-test-{}", std::process::id());
    let queue_url = sqs
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .expect("CreateQueue")
        .queue_url
        .expect("queue URL");
    assert!(queue_url.ends_with(&name), "{queue_url}");
    sqs.send_message()
        .queue_url(&queue_url)
        .message_body("hello")
        .send()
        .await
        .expect("SendMessage");
    let received = sqs
        .receive_message()
        .queue_url(&queue_url)
        .wait_time_seconds(5)
        .send()
        .await
        .expect("ReceiveMessage")
        .messages
        .unwrap_or_default();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body.as_deref(), Some("hello"));
    sqs.delete_queue()
        .queue_url(&queue_url)
        .send()
        .await
        .expect("DeleteQueue");
}
