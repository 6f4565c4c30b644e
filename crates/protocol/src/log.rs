use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

/// Severity, least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    pub const ALL: [Level; 5] = [
        Level::Trace,
        Level::Debug,
        Level::Info,
        Level::Warn,
        Level::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }

    pub fn parse(name: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|level| level.as_str() == name)
    }

    /// This level and every more severe one, as stored in `logs.level`.
    pub fn and_above(self) -> Vec<&'static str> {
        Level::ALL
            .into_iter()
            .filter(|level| *level >= self)
            .map(Level::as_str)
            .collect()
    }
}

/// One stored log record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
#[serde(rename_all = "camelCase")]
pub struct LogOut {
    /// Increases with every record written; the keyset of pages and the stream's event id.
    pub id: i64,
    /// When the event happened, as its emitter said.
    #[serde(with = "time::serde::rfc3339")]
    pub ts: OffsetDateTime,
    /// When the logging service received it.
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    #[schema(value_type = Level)]
    pub level: String,
    pub service: String,
    pub message: String,
    pub trace_id: Option<String>,
    pub correlation_id: Option<String>,
    pub task_id: Option<Uuid>,
    #[schema(value_type = Object)]
    pub fields: Value,
}
