//! What a log record is, as stored and as served.

use serde_json::value::RawValue;
use time::OffsetDateTime;
use uuid::Uuid;

pub use autonoma_protocol::{Level, LogOut};

/// A validated frame waiting to be written.
#[derive(Debug, Clone)]
pub struct Record {
    pub ts: OffsetDateTime,
    pub received_at: OffsetDateTime,
    pub level: Level,
    pub service: String,
    pub message: String,
    pub trace_id: Option<String>,
    pub correlation_id: Option<String>,
    pub task_id: Option<Uuid>,
    /// A JSON object, as the client wrote it (checked by [`crate::jsonb::check`]); `None`
    /// stores `{}`.
    pub fields: Option<Box<RawValue>>,
}

/// The filters `GET /logs` and `GET /logs/stream` share.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub service: Option<String>,
    pub min_level: Option<Level>,
    pub trace_id: Option<String>,
    pub correlation_id: Option<String>,
    pub task_id: Option<Uuid>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    pub text: Option<String>,
}

/// The columns of [`LogOut`], in a `SELECT`.
pub const LOG_COLUMNS: &str = "id, ts, received_at, level, service, message, trace_id, \
                               correlation_id, task_id, fields";

impl Filters {
    /// Appends ` AND …` for every filter that is set.
    pub fn push_sql(&self, sql: &mut sqlx::QueryBuilder<sqlx::Postgres>) {
        if let Some(service) = &self.service {
            sql.push(" AND service = ").push_bind(service.as_str());
        }
        if let Some(level) = self.min_level {
            sql.push(" AND level = ANY(")
                .push_bind(level.and_above())
                .push(")");
        }
        if let Some(trace_id) = &self.trace_id {
            sql.push(" AND trace_id = ").push_bind(trace_id.as_str());
        }
        if let Some(correlation_id) = &self.correlation_id {
            sql.push(" AND correlation_id = ")
                .push_bind(correlation_id.as_str());
        }
        if let Some(task_id) = self.task_id {
            sql.push(" AND task_id = ").push_bind(task_id);
        }
        if let Some(since) = self.since {
            sql.push(" AND ts >= ").push_bind(since);
        }
        if let Some(until) = self.until {
            sql.push(" AND ts < ").push_bind(until);
        }
        if let Some(text) = &self.text {
            sql.push(" AND to_tsvector('simple', message) @@ websearch_to_tsquery('simple', ")
                .push_bind(text.as_str())
                .push(")");
        }
    }
}
