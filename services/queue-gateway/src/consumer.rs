//! The AI's directives arriving on the bus. An AI (or any service) that would rather put
//! messages on a queue than call HTTP sends [`QueuedDirective`]s to `GATEWAY_DIRECTIVE_QUEUE`;
//! this loop takes them off, checks and appends each exactly as `POST /pages/{page}/messages`
//! does, and browsers get them from the page log.
//!
//! A message is deleted once its directive is in the log. One the gateway refuses for good
//! (unknown page, bad address, body against its schema, unreadable JSON) moves to the
//! dead-letter queue at once with the reason in its `error` attribute; one that fails for a
//! passing reason (database down) is left to reappear after the visibility timeout and goes to
//! the dead-letter queue after [`MAX_RECEIVES`] tries. The message id makes redelivery safe:
//! a directive already appended is not appended again.

use std::collections::BTreeMap;
use std::time::Duration;

use autonoma_bus::{MAX_RECEIVE, MAX_WAIT, Message, QueueOptions, QueueRef, dlq_name};
use autonoma_common::Problem;
use serde::Deserialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::http::Gateway;
use crate::http::messages::MessageIn;

/// Receives after which a message that keeps failing goes to the dead-letter queue.
pub const MAX_RECEIVES: u32 = 5;
/// Pause after the bus itself failed, before receiving again.
const RETRY: Duration = Duration::from_secs(1);
/// Longest `error` attribute put on a dead-lettered message.
const ERROR_MAX: usize = 1024;

/// One directive on the queue: `POST /pages/{page}/messages`'s body plus the page.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueuedDirective {
    pub page: String,
    pub to: String,
    pub directive: String,
    pub body: Value,
    #[serde(default)]
    pub traceparent: Option<String>,
    /// A UUIDv7 the sender chose; redelivered copies of the message are appended once.
    #[serde(default)]
    pub id: Option<Uuid>,
}

/// Creates the queue (and its dead-letter queue) if missing.
pub async fn open(gateway: &Gateway, name: &str) -> Result<QueueRef, autonoma_bus::Error> {
    let options = QueueOptions {
        max_receives: Some(MAX_RECEIVES),
        ..QueueOptions::default()
    };
    gateway.bus().ensure_queue(name, &options).await
}

/// Takes directives off `queue` until `shutdown`.
pub async fn run(gateway: Gateway, queue: QueueRef, shutdown: CancellationToken) {
    tracing::info!(queue = queue.name(), "taking directives from the bus");
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => return,
            received = gateway.bus().receive(&queue, MAX_RECEIVE, MAX_WAIT) => received,
        };
        match received {
            Ok(messages) => {
                for message in messages {
                    handle(&gateway, &queue, message).await;
                }
            }
            Err(error) => {
                tracing::warn!(%error, queue = queue.name(), "receiving directives failed");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(RETRY) => {}
                }
            }
        }
    }
}

async fn handle(gateway: &Gateway, queue: &QueueRef, message: Message) {
    let outcome = match serde_json::from_str::<QueuedDirective>(&message.body) {
        Ok(queued) => {
            let page = queued.page;
            let input = MessageIn {
                to: queued.to,
                directive: queued.directive,
                body: queued.body,
                traceparent: queued.traceparent,
                id: queued.id,
            };
            gateway.send_message(&page, input).await.map(|_| ())
        }
        Err(error) => Err(Problem::bad_request(format!(
            "The message is not a directive: {error}."
        ))),
    };
    let done = match outcome {
        Ok(()) => true,
        // Appended by an earlier delivery of the same message.
        Err(problem) if problem.status == 409 => true,
        Err(problem) if problem.status().is_client_error() => {
            dead_letter(gateway, queue, &message, &problem).await
        }
        Err(problem) => {
            tracing::warn!(
                id = %message.id,
                receives = message.receive_count,
                detail = problem.detail.as_deref().unwrap_or_default(),
                "appending a queued directive failed; it will be delivered again"
            );
            false
        }
    };
    if done && let Err(error) = gateway.bus().delete(queue, &message.receipt).await {
        // Delivered again later, and then recognised by its id.
        tracing::warn!(%error, id = %message.id, "deleting a handled directive failed");
    }
}

/// Moves a refused message to the dead-letter queue with the reason; true when it is there.
async fn dead_letter(
    gateway: &Gateway,
    queue: &QueueRef,
    message: &Message,
    problem: &Problem,
) -> bool {
    let reason = serde_json::to_string(problem).unwrap_or_else(|_| problem.title.clone());
    let reason: String = reason.chars().take(ERROR_MAX).collect();
    tracing::warn!(id = %message.id, error = %reason, "a queued directive was refused; dead-lettered");
    let attributes = BTreeMap::from([("error".to_owned(), reason)]);
    let sent = async {
        let dlq = gateway.bus().open_queue(&dlq_name(queue.name())).await?;
        gateway.bus().send(&dlq, &message.body, &attributes).await
    };
    match sent.await {
        Ok(_) => true,
        Err(error) => {
            tracing::warn!(%error, id = %message.id, "dead-lettering failed; the message stays");
            false
        }
    }
}
