//! What a handler gets besides its payload, and what it returns when the work fails.

use std::time::Duration;

use autonoma_common::trace::TraceContext;
use autonoma_protocol::Transport;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// One attempt of one task, as its handler sees it.
#[derive(Debug, Clone)]
pub struct TaskContext {
    pub task_id: Uuid,
    pub kind: String,
    /// 1 for the first attempt.
    pub attempt: i32,
    /// The task's version while this attempt runs.
    pub version: i32,
    /// The task's trace; it is also the current trace while the handler runs, so calls made
    /// with `InternalClient` carry it.
    pub trace: TraceContext,
    pub correlation_id: Option<String>,
    /// When the orchestrator stops waiting; the handler is stopped then.
    pub deadline: OffsetDateTime,
    /// Cancelled when the orchestrator cancels the task. Long work should watch it; the
    /// handler is stopped shortly after it fires anyway.
    pub cancelled: CancellationToken,
    /// How this attempt reached the agent.
    pub transport: Transport,
}

impl TaskContext {
    /// Time left until the deadline (zero once it has passed).
    pub fn remaining(&self) -> Duration {
        remaining_until(self.deadline)
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.is_cancelled()
    }

    /// Waits `duration`, or fails with [`TaskError::cancelled`] as soon as the task is
    /// cancelled.
    pub async fn sleep(&self, duration: Duration) -> Result<(), TaskError> {
        tokio::select! {
            () = tokio::time::sleep(duration) => Ok(()),
            () = self.cancelled.cancelled() => Err(TaskError::cancelled()),
        }
    }
}

pub(crate) fn remaining_until(deadline: OffsetDateTime) -> Duration {
    Duration::try_from(deadline - OffsetDateTime::now_utc()).unwrap_or(Duration::ZERO)
}

/// Why an attempt failed. Reported to the orchestrator as `{"message": …, …details}`; the
/// orchestrator retries a retryable failure while attempts remain.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskError {
    message: String,
    details: Map<String, Value>,
    retryable: bool,
}

impl TaskError {
    /// A failure worth retrying (the default: most failures are transient).
    pub fn new(message: impl Into<String>) -> Self {
        TaskError {
            message: message.into(),
            details: Map::new(),
            retryable: true,
        }
    }

    /// A failure another attempt would repeat (bad input, a refused operation).
    pub fn permanent(message: impl Into<String>) -> Self {
        TaskError {
            retryable: false,
            ..TaskError::new(message)
        }
    }

    /// The task was cancelled while it ran.
    pub fn cancelled() -> Self {
        TaskError::permanent("cancelled")
    }

    /// Adds a member to the reported error object (`message` and `retryable` are reserved).
    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        if key != "message" && key != "retryable" {
            self.details.insert(key.to_owned(), value.into());
        }
        self
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The error object reported to the orchestrator.
    pub fn to_value(&self) -> Value {
        let mut object = Map::new();
        object.insert("message".into(), Value::String(self.message.clone()));
        object.extend(self.details.clone());
        Value::Object(object)
    }
}

impl std::fmt::Display for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TaskError {}

/// Any other error becomes a retryable failure with its full chain as the message.
impl From<anyhow::Error> for TaskError {
    fn from(error: anyhow::Error) -> Self {
        TaskError::new(format!("{error:#}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_object_has_message_and_details_but_not_reserved_keys() {
        let error = TaskError::permanent("bad input")
            .detail("field", "/name")
            .detail("message", "ignored")
            .detail("retryable", true);
        assert!(!error.is_retryable());
        assert_eq!(
            error.to_value(),
            serde_json::json!({"message": "bad input", "field": "/name"})
        );
        assert!(TaskError::new("flaky").is_retryable());
        let from_anyhow = TaskError::from(anyhow::anyhow!("inner").context("outer"));
        assert_eq!(from_anyhow.message(), "outer: inner");
    }
}
