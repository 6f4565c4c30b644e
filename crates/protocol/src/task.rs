use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    /// Waiting to be dispatched (first time, or after a failed attempt, at `runAt`).
    Queued,
    /// Dispatched to its agent under a lease.
    Running,
    Succeeded,
    /// Gave up: the last attempt failed and no attempt is left, or an operator said so.
    Failed,
    Cancelled,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 5] = [
        TaskStatus::Queued,
        TaskStatus::Running,
        TaskStatus::Succeeded,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Queued => "queued",
            TaskStatus::Running => "running",
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        TaskStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskStatus::Succeeded | TaskStatus::Failed | TaskStatus::Cancelled
        )
    }

    /// The one table of legal status changes. Everything not listed is refused.
    pub fn can_become(self, to: TaskStatus) -> bool {
        use TaskStatus::*;
        matches!(
            (self, to),
            (Queued, Running)
                | (Queued, Cancelled)
                | (Queued, Failed)
                | (Running, Succeeded)
                | (Running, Failed)
                | (Running, Queued)
                | (Running, Cancelled)
                | (Failed, Queued)
                | (Cancelled, Queued)
        )
    }
}

impl std::fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `POST /task`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskIn {
    /// A kind an agent has registered.
    #[schema(pattern = "^[a-z][a-z0-9_.-]{0,127}$")]
    pub kind: String,
    /// Checked against the JSON Schema the kind's agent registered.
    #[serde(default)]
    pub payload: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 200)]
    pub correlation_id: Option<String>,
    /// A second create with the same key returns the first task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 200)]
    pub idempotency_key: Option<String>,
    /// -100..=100, higher first (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = -100, maximum = 100)]
    pub priority: Option<i16>,
    /// 1..=100 (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 100)]
    pub max_attempts: Option<i32>,
    /// Per attempt, 1..=86400 (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 86400)]
    pub timeout_secs: Option<i32>,
    /// Not before this time (default now).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub run_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskOut {
    pub id: Uuid,
    pub kind: String,
    pub status: TaskStatus,
    pub payload: Value,
    pub result: Option<Value>,
    pub error: Option<Value>,
    pub version: i32,
    pub correlation_id: Option<String>,
    pub trace_id: String,
    pub idempotency_key: Option<String>,
    /// The agent serving the task's kind when it was last dispatched.
    pub agent: Option<String>,
    pub priority: i16,
    pub attempts: i32,
    pub max_attempts: i32,
    pub timeout_secs: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub run_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
}

/// `PATCH /task/:id`: what an operator or an agent changes. `ifVersion` (or `If-Match`) is
/// required; every field left out stays as it is.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_version: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TaskStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<i32>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub run_at: Option<OffsetDateTime>,
    /// Free text recorded with the change (why an operator did it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One entry of a task's audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskEventOut {
    pub id: i64,
    pub task_id: Uuid,
    /// created, dispatched, succeeded, attempt_failed, failed, timed_out, cancelled, retried,
    /// patched, lease_expired.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Who made the change: `operator`, `agent:<name>`, `dispatcher:<replica>`, `webhook:<source>`.
    pub actor: String,
    pub from_status: Option<TaskStatus>,
    pub to_status: Option<TaskStatus>,
    pub version: i32,
    /// What changed: field → new value (and `attempt`, `error`, `note` where relevant).
    pub changes: Value,
    pub trace_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A page of a keyset-paginated list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// What an agent receives for one attempt of a task: the body of the HTTP dispatch, or of
/// the SQS message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DispatchIn {
    pub task_id: Uuid,
    pub kind: String,
    pub payload: Value,
    /// 1 for the first attempt.
    pub attempt: i32,
    /// The task's version while this attempt runs; report with it as `ifVersion`.
    pub version: i32,
    pub trace_id: String,
    /// The W3C traceparent to continue.
    pub traceparent: String,
    pub correlation_id: Option<String>,
    /// When the orchestrator stops waiting for this attempt.
    #[serde(with = "time::serde::rfc3339")]
    pub deadline: OffsetDateTime,
}

/// An agent's answer to an HTTP dispatch (200), or the result it reports later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum DispatchOut {
    /// The work is done.
    Succeeded { result: Value },
    /// This attempt failed; the orchestrator retries while attempts remain (unless
    /// `retryable` is false).
    Failed {
        error: Value,
        #[serde(default = "yes")]
        retryable: bool,
    },
}

fn yes() -> bool {
    true
}
