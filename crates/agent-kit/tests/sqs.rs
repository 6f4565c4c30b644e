//! The SQS transport against a real SQS-compatible server (moto, `TEST_SQS_ENDPOINT`) and a
//! fake orchestrator.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use autonoma_agent_kit::{Agent, DispatchIn, TaskContext, TaskError};
use autonoma_aws::aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName};
use autonoma_aws::{AwsConfig, aws_sdk_sqs};
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use support::{FakeOrchestrator, KEY, RunningAgent, eventually};

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";

fn aws_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint.to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
    ]
}

async fn sqs() -> aws_sdk_sqs::Client {
    let endpoint = autonoma_testkit::sqs_endpoint();
    let config = AwsConfig {
        aws_endpoint_url: Some(endpoint.parse().expect("endpoint URL")),
        aws_region: "us-east-1".into(),
        aws_access_key_id: Some("testing".into()),
        aws_secret_access_key: Some("testing".to_owned().into()),
    };
    autonoma_aws::sqs_client(&config).await
}

/// A fresh queue whose messages come back 2 s after a consumer lets go of them.
async fn fresh_queue(sqs: &aws_sdk_sqs::Client) -> String {
    sqs.create_queue()
        .queue_name(format!("agent-kit-{}", Uuid::new_v4().simple()))
        .attributes(QueueAttributeName::VisibilityTimeout, "2")
        .send()
        .await
        .expect("CreateQueue")
        .queue_url
        .expect("queue URL")
}

/// Messages on the queue, visible or being handled.
async fn messages_left(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> usize {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .expect("GetQueueAttributes")
        .attributes
        .unwrap_or_default();
    [
        QueueAttributeName::ApproximateNumberOfMessages,
        QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
    ]
    .iter()
    .filter_map(|name| attributes.get(name)?.parse::<usize>().ok())
    .sum()
}

fn dispatch(payload: Value, deadline: OffsetDateTime) -> DispatchIn {
    DispatchIn {
        task_id: Uuid::new_v4(),
        kind: "count".into(),
        payload,
        attempt: 1,
        version: 3,
        trace_id: TRACE_ID.into(),
        traceparent: format!("00-{TRACE_ID}-b7ad6b7169203331-01"),
        correlation_id: Some("batch-9".into()),
        deadline,
    }
}

async fn send(sqs: &aws_sdk_sqs::Client, queue_url: &str, dispatch: &DispatchIn) {
    sqs.send_message()
        .queue_url(queue_url)
        .message_body(serde_json::to_string(dispatch).expect("json"))
        .message_attributes(
            "traceparent",
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(&dispatch.traceparent)
                .build()
                .expect("attribute"),
        )
        .send()
        .await
        .expect("SendMessage");
}

/// An agent whose one kind, `count`, counts its runs and echoes the payload.
fn counting_agent(runs: Arc<AtomicUsize>) -> Agent {
    Agent::builder("queue-agent")
        .kind(
            "count",
            json!({"type": "object"}),
            move |ctx: TaskContext, payload: Value| {
                let runs = runs.clone();
                async move {
                    let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
                    Ok::<_, TaskError>(
                        json!({"payload": payload, "run": run, "attempt": ctx.attempt}),
                    )
                }
            },
        )
        .build()
        .expect("agent")
}

async fn start(agent: &Agent, orchestrator: &str, queue: (&str, &str)) -> RunningAgent {
    let endpoint = autonoma_testkit::sqs_endpoint();
    let mut env = aws_env(&endpoint);
    env.push(("AGENT_TRANSPORT", "sqs".into()));
    env.push((queue.0, queue.1.to_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    RunningAgent::start(agent, orchestrator, &env).await
}

#[tokio::test]
async fn a_queued_dispatch_is_run_reported_with_its_version_and_deleted() {
    let sqs = sqs().await;
    let queue_url = fresh_queue(&sqs).await;
    let fake = FakeOrchestrator::new();
    let orchestrator = fake.serve().await;
    let runs = Arc::new(AtomicUsize::new(0));
    let agent = counting_agent(runs.clone());
    let running = start(
        &agent,
        &orchestrator.base_url,
        ("AGENT_QUEUE_URL", &queue_url),
    )
    .await;

    let message = dispatch(
        json!({"n": 1}),
        OffsetDateTime::now_utc() + Duration::from_secs(60),
    );
    send(&sqs, &queue_url, &message).await;

    let patch = eventually("the report", Duration::from_secs(30), || async {
        fake.calls_to("PATCH", "/task/").pop()
    })
    .await;
    assert_eq!(patch.path, format!("/task/{}", message.task_id));
    assert_eq!(patch.internal_key.as_deref(), Some(KEY));
    assert!(
        patch
            .traceparent
            .as_deref()
            .is_some_and(|t| t.starts_with(&format!("00-{TRACE_ID}-"))),
        "{patch:?}"
    );
    assert_eq!(
        patch.body,
        json!({
            "ifVersion": 3,
            "status": "succeeded",
            "result": {"payload": {"n": 1}, "run": 1, "attempt": 1}
        })
    );
    eventually(
        "the message to be deleted",
        Duration::from_secs(10),
        || async { (messages_left(&sqs, &queue_url).await == 0).then_some(()) },
    )
    .await;

    let registration = fake
        .calls_to("POST", "/agents")
        .into_iter()
        .find(|c| c.path == "/agents")
        .expect("registered");
    assert_eq!(registration.body["transport"], "sqs");
    assert_eq!(registration.body["queueUrl"], queue_url.as_str());
    running.stop().await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_stale_report_still_deletes_the_message() {
    let sqs = sqs().await;
    let queue_url = fresh_queue(&sqs).await;
    let fake = FakeOrchestrator::new();
    fake.patch_answers(&[409]);
    let orchestrator = fake.serve().await;
    let runs = Arc::new(AtomicUsize::new(0));
    let agent = counting_agent(runs.clone());
    let running = start(
        &agent,
        &orchestrator.base_url,
        ("AGENT_QUEUE_URL", &queue_url),
    )
    .await;

    send(
        &sqs,
        &queue_url,
        &dispatch(
            json!({}),
            OffsetDateTime::now_utc() + Duration::from_secs(60),
        ),
    )
    .await;
    eventually(
        "the message to be deleted",
        Duration::from_secs(30),
        || async {
            (fake.calls_to("PATCH", "/task/").len() == 1
                && messages_left(&sqs, &queue_url).await == 0)
                .then_some(())
        },
    )
    .await;
    // Past the visibility timeout, nothing comes back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(fake.calls_to("PATCH", "/task/").len(), 1);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    running.stop().await;
}

#[tokio::test]
async fn a_report_the_orchestrator_fails_leaves_the_message_for_redelivery() {
    let sqs = sqs().await;
    let queue_url = fresh_queue(&sqs).await;
    let fake = FakeOrchestrator::new();
    // Every try of the first report fails; the redelivered attempt's report is accepted.
    fake.patch_answers(&[500, 500, 500]);
    let orchestrator = fake.serve().await;
    let runs = Arc::new(AtomicUsize::new(0));
    let agent = counting_agent(runs.clone());
    let running = start(
        &agent,
        &orchestrator.base_url,
        ("AGENT_QUEUE_URL", &queue_url),
    )
    .await;

    send(
        &sqs,
        &queue_url,
        &dispatch(
            json!({}),
            OffsetDateTime::now_utc() + Duration::from_secs(60),
        ),
    )
    .await;
    eventually(
        "the first report to fail",
        Duration::from_secs(30),
        || async { (fake.calls_to("PATCH", "/task/").len() >= 3).then_some(()) },
    )
    .await;
    assert!(
        messages_left(&sqs, &queue_url).await == 1,
        "the message stays on the queue"
    );
    eventually(
        "the redelivered message to be reported and deleted",
        Duration::from_secs(30),
        || async {
            (fake.calls_to("PATCH", "/task/").len() == 4
                && messages_left(&sqs, &queue_url).await == 0)
                .then_some(())
        },
    )
    .await;
    let patches = fake.calls_to("PATCH", "/task/");
    assert_eq!(
        patches[3].body["result"]["run"], 2,
        "run again on redelivery"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    running.stop().await;
}

#[tokio::test]
async fn an_expired_message_is_deleted_without_running() {
    let sqs = sqs().await;
    let queue_url = fresh_queue(&sqs).await;
    let fake = FakeOrchestrator::new();
    let orchestrator = fake.serve().await;
    let runs = Arc::new(AtomicUsize::new(0));
    let agent = counting_agent(runs.clone());
    let running = start(
        &agent,
        &orchestrator.base_url,
        ("AGENT_QUEUE_URL", &queue_url),
    )
    .await;

    send(
        &sqs,
        &queue_url,
        &dispatch(
            json!({}),
            OffsetDateTime::now_utc() - Duration::from_secs(1),
        ),
    )
    .await;
    eventually(
        "the message to be deleted",
        Duration::from_secs(30),
        || async { (messages_left(&sqs, &queue_url).await == 0).then_some(()) },
    )
    .await;
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    assert!(fake.calls_to("PATCH", "/task/").is_empty());
    running.stop().await;
}

#[tokio::test]
async fn a_queue_named_by_agent_queue_name_is_created_and_registered() {
    let sqs = sqs().await;
    let name = format!("agent-kit-named-{}", Uuid::new_v4().simple());
    let fake = FakeOrchestrator::new();
    let orchestrator = fake.serve().await;
    let runs = Arc::new(AtomicUsize::new(0));
    let agent = counting_agent(runs.clone());
    let running = start(&agent, &orchestrator.base_url, ("AGENT_QUEUE_NAME", &name)).await;

    let registration = eventually("the registration", Duration::from_secs(30), || async {
        fake.calls_to("POST", "/agents")
            .into_iter()
            .find(|c| c.path == "/agents")
    })
    .await;
    let queue_url = registration.body["queueUrl"]
        .as_str()
        .expect("queueUrl")
        .to_owned();
    assert!(queue_url.ends_with(&name), "{queue_url}");
    let looked_up = sqs
        .get_queue_url()
        .queue_name(&name)
        .send()
        .await
        .expect("GetQueueUrl");
    assert_eq!(looked_up.queue_url.as_deref(), Some(queue_url.as_str()));

    send(
        &sqs,
        &queue_url,
        &dispatch(
            json!({}),
            OffsetDateTime::now_utc() + Duration::from_secs(60),
        ),
    )
    .await;
    eventually("the report", Duration::from_secs(30), || async {
        fake.calls_to("PATCH", "/task/").pop()
    })
    .await;
    running.stop().await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}
