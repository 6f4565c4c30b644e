//! The SQS transport: long-poll the agent's queue, run each attempt, report its outcome to
//! the orchestrator, and delete the message once the orchestrator has it.
//!
//! A message stays invisible while its attempt runs (its visibility is extended by the
//! queue's own visibility timeout, every half of it). It is deleted when the orchestrator
//! accepts the report (2xx) or calls it stale (409: the task was cancelled, timed out or
//! retried meanwhile), when its deadline passed before it was taken, or when it is not a
//! dispatch at all. Otherwise it is left alone and comes back once its visibility timeout
//! runs out.

use std::sync::Arc;
use std::time::Duration;

use autonoma_aws::aws_sdk_sqs;
use autonoma_aws::aws_sdk_sqs::error::DisplayErrorContext;
use autonoma_aws::aws_sdk_sqs::types::{Message, QueueAttributeName};
use autonoma_common::client::InternalClient;
use autonoma_common::trace::TraceContext;
use autonoma_protocol::{DispatchIn, DispatchOut, TaskPatch, TaskStatus, Transport};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::lifecycle::{create_queue, forever_backoff, pause, truncate};
use crate::run::Attempt;
use crate::{Agent, AgentConfig};

/// SQS's longest long poll.
const WAIT_SECONDS: i32 = 20;
/// SQS's largest batch.
const MAX_BATCH: usize = 10;
/// Used when the queue's own visibility timeout cannot be read.
const DEFAULT_VISIBILITY: Duration = Duration::from_secs(30);
/// Delays between the tries of one report before the message is left for redelivery.
const REPORT_RETRIES: [Duration; 2] = [Duration::from_millis(250), Duration::from_secs(1)];

pub(crate) struct Consumer {
    pub agent: Agent,
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub client: InternalClient,
    pub config: AgentConfig,
    pub shutdown: CancellationToken,
}

/// Receives until shutdown, then waits for the attempts already taken.
pub(crate) async fn consume(consumer: Consumer) {
    let consumer = Arc::new(consumer);
    let visibility = queue_visibility(&consumer).await;
    let permits = Arc::new(Semaphore::new(consumer.config.agent_concurrency.max(1)));
    let mut running = JoinSet::new();
    let mut backoff = forever_backoff();
    let shutdown = consumer.shutdown.clone();

    loop {
        while running.try_join_next().is_some() {}
        let first = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = shutdown.cancelled() => break,
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match permits.clone().try_acquire_owned() {
                Ok(permit) => batch.push(permit),
                Err(_) => break,
            }
        }
        let receive = consumer
            .sqs
            .receive_message()
            .queue_url(&consumer.queue_url)
            .max_number_of_messages(batch.len() as i32)
            .wait_time_seconds(WAIT_SECONDS)
            .message_attribute_names("All")
            .send();
        let received = tokio::select! {
            result = receive => result,
            () = shutdown.cancelled() => break,
        };
        match received {
            Ok(output) => {
                backoff = forever_backoff();
                for message in output.messages.unwrap_or_default() {
                    let Some(permit) = batch.pop() else { break };
                    running.spawn(handle(consumer.clone(), message, visibility, permit));
                }
            }
            Err(error) => {
                tracing::warn!(
                    queue_url = %consumer.queue_url,
                    error = %DisplayErrorContext(&error),
                    "cannot receive from the agent's queue; retrying"
                );
                drop(batch);
                let gone = error
                    .as_service_error()
                    .is_some_and(|e| e.is_queue_does_not_exist());
                if gone && let Some(name) = consumer.config.agent_queue_name.as_deref() {
                    recreate(&consumer, name).await;
                }
                if !pause(backoff.next().unwrap_or(Duration::from_secs(10)), &shutdown).await {
                    break;
                }
            }
        }
    }
    while running.try_join_next().is_some() {}
    if !running.is_empty() {
        tracing::info!(
            running = running.len(),
            "queue consumer stopping; finishing the attempts already taken"
        );
    }
    while running.join_next().await.is_some() {}
}

/// The queue this agent created at start is gone (an emulator restarted, someone deleted
/// it): it is created again under its name, which gives it the same URL.
async fn recreate(consumer: &Consumer, name: &str) {
    match create_queue(&consumer.sqs, name).await {
        Ok(url) if url == consumer.queue_url => {
            tracing::warn!(queue_url = %url, "the agent's queue was gone; created it again")
        }
        Ok(url) => tracing::error!(
            queue_url = %url,
            registered = %consumer.queue_url,
            "the agent's queue was created again under another URL; restart the agent to register it"
        ),
        Err(error) => tracing::warn!(queue = name, %error, "cannot create the agent's queue again"),
    }
}

async fn queue_visibility(consumer: &Consumer) -> Duration {
    let attributes = consumer
        .sqs
        .get_queue_attributes()
        .queue_url(&consumer.queue_url)
        .attribute_names(QueueAttributeName::VisibilityTimeout)
        .send()
        .await;
    let seconds = match attributes {
        Ok(output) => output
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::VisibilityTimeout).cloned())
            .and_then(|v| v.parse::<u64>().ok()),
        Err(error) => {
            tracing::warn!(
                error = %DisplayErrorContext(&error),
                "cannot read the queue's visibility timeout; assuming 30s"
            );
            None
        }
    };
    seconds
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_VISIBILITY)
}

async fn handle(
    consumer: Arc<Consumer>,
    message: Message,
    visibility: Duration,
    _permit: OwnedSemaphorePermit,
) {
    let Some(receipt) = message.receipt_handle.clone() else {
        tracing::warn!("received a message without a receipt handle; ignoring it");
        return;
    };
    let body = message.body.as_deref().unwrap_or_default();
    let mut dispatch: DispatchIn = match serde_json::from_str(body) {
        Ok(dispatch) => dispatch,
        Err(error) => {
            tracing::error!(
                message_id = message.message_id.as_deref().unwrap_or_default(),
                error = %error,
                body = truncate(body, 500),
                "the message is not a dispatch; deleting it"
            );
            delete(&consumer, &receipt).await;
            return;
        }
    };
    if dispatch.deadline <= OffsetDateTime::now_utc() {
        tracing::info!(
            task_id = %dispatch.task_id,
            attempt = dispatch.attempt,
            deadline = %dispatch.deadline,
            "the attempt's deadline passed before it was taken; deleting it unrun"
        );
        delete(&consumer, &receipt).await;
        return;
    }
    if TraceContext::parse(&dispatch.traceparent).is_none()
        && let Some(traceparent) = message
            .message_attributes
            .as_ref()
            .and_then(|attributes| attributes.get("traceparent"))
            .and_then(|attribute| attribute.string_value())
    {
        dispatch.traceparent = traceparent.to_owned();
    }

    let task_id = dispatch.task_id;
    let version = dispatch.version;
    let attempt = Attempt::new(&consumer.agent, dispatch, Transport::Sqs);
    let span = attempt.span.clone();
    let trace = attempt.trace;

    let keep_hidden = KeepHidden::spawn(&consumer, &receipt, visibility);
    let outcome = attempt.run(None).await;
    drop(keep_hidden);

    let report = trace.scope(report(&consumer, task_id, version, outcome));
    let delete_it = report.instrument(span.clone()).await;
    if delete_it {
        delete(&consumer, &receipt).instrument(span).await;
    }
}

/// Sends the outcome; true when the message is done with (accepted, or stale).
async fn report(
    consumer: &Consumer,
    task_id: uuid::Uuid,
    version: i32,
    outcome: DispatchOut,
) -> bool {
    let patch = match outcome {
        DispatchOut::Succeeded { result } => TaskPatch {
            if_version: Some(version),
            status: Some(TaskStatus::Succeeded),
            result: Some(result),
            ..TaskPatch::default()
        },
        DispatchOut::Failed { error, retryable } => TaskPatch {
            if_version: Some(version),
            status: Some(TaskStatus::Failed),
            error: Some(with_retryable(error, retryable)),
            ..TaskPatch::default()
        },
    };
    let url = consumer.config.orchestrator(&format!("/task/{task_id}"));
    let mut delays = REPORT_RETRIES.iter();
    loop {
        let problem = match consumer
            .client
            .send(Method::PATCH, &url, Some(&patch))
            .await
        {
            Ok(response) if response.status().is_success() => {
                tracing::info!("outcome reported");
                return true;
            }
            Ok(response) if response.status() == StatusCode::CONFLICT => {
                tracing::info!(
                    "the orchestrator has moved on from this attempt (409); dropping its outcome"
                );
                return true;
            }
            Ok(response) if response.status().is_client_error() => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                tracing::error!(
                    status = status.as_u16(),
                    body = truncate(&body, 500),
                    "the orchestrator refused the report; the message is left for redelivery"
                );
                return false;
            }
            Ok(response) => format!("{url} answered {}", response.status()),
            Err(error) => error.to_string(),
        };
        match delays.next() {
            Some(delay) => tokio::time::sleep(*delay).await,
            None => {
                tracing::warn!(
                    error = %problem,
                    "cannot report the outcome; the message is left for redelivery"
                );
                return false;
            }
        }
    }
}

/// The error object with `retryable` in it: a PATCH has no other place for it.
fn with_retryable(error: Value, retryable: bool) -> Value {
    match error {
        Value::Object(mut object) => {
            object.insert("retryable".into(), Value::Bool(retryable));
            Value::Object(object)
        }
        other => serde_json::json!({ "message": other, "retryable": retryable }),
    }
}

async fn delete(consumer: &Consumer, receipt: &str) {
    let deleted = consumer
        .sqs
        .delete_message()
        .queue_url(&consumer.queue_url)
        .receipt_handle(receipt)
        .send()
        .await;
    if let Err(error) = deleted {
        tracing::warn!(
            error = %DisplayErrorContext(&error),
            "cannot delete the message; it will be delivered again and found stale"
        );
    }
}

/// Extends a message's visibility while its attempt runs; stops when dropped.
struct KeepHidden(tokio::task::JoinHandle<()>);

impl KeepHidden {
    fn spawn(consumer: &Arc<Consumer>, receipt: &str, visibility: Duration) -> Self {
        let consumer = consumer.clone();
        let receipt = receipt.to_owned();
        let every = (visibility / 2).max(Duration::from_secs(1));
        let seconds = i32::try_from(visibility.as_secs()).unwrap_or(i32::MAX);
        KeepHidden(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let extended = consumer
                    .sqs
                    .change_message_visibility()
                    .queue_url(&consumer.queue_url)
                    .receipt_handle(&receipt)
                    .visibility_timeout(seconds)
                    .send()
                    .await;
                if let Err(error) = extended {
                    tracing::warn!(
                        error = %DisplayErrorContext(&error),
                        "cannot extend the message's visibility; it may be delivered again"
                    );
                }
            }
        }))
    }
}

impl Drop for KeepHidden {
    fn drop(&mut self) {
        self.0.abort();
    }
}
