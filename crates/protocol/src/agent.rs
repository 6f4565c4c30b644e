use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// The orchestrator POSTs each attempt to `{baseUrl}/tasks/dispatch`.
    Http,
    /// The orchestrator sends each attempt to `queueUrl`; the agent reports through PATCH.
    Sqs,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Http => "http",
            Transport::Sqs => "sqs",
        }
    }
}

/// A kind of task an agent serves, with the JSON Schema its payload must satisfy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KindIn {
    pub kind: String,
    #[schema(value_type = Object)]
    pub payload_schema: Value,
}

/// `POST /agents`: registers an agent, or replaces its registration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentIn {
    pub name: String,
    /// Where the orchestrator reaches it (required for HTTP; used for cancellation with SQS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    pub transport: Transport,
    /// Required for SQS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_url: Option<String>,
    pub kinds: Vec<KindIn>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentOut {
    pub name: String,
    pub base_url: Option<String>,
    pub transport: Transport,
    pub queue_url: Option<String>,
    pub kinds: Vec<KindIn>,
    #[serde(with = "time::serde::rfc3339")]
    pub registered_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_heartbeat: Option<OffsetDateTime>,
    pub heartbeat_status: Option<String>,
    /// A heartbeat arrived within the orchestrator's liveness window.
    pub live: bool,
}

/// `POST /agents/:name/heartbeat`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeartbeatIn {
    /// ok (default), degraded or draining.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}
