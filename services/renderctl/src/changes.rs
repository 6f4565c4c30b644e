//! Every change renderctl makes on Render: who, what, before, after, and Render's answer,
//! logged and (when a database is configured) recorded in `render_changes`. Env values never
//! reach a record: callers pass keys and settings only.

use serde::Serialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::render::{RenderError, Triggered};

/// Where a change came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Api,
    Blueprint,
    Monitor,
    Cli,
}

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Origin::Api => "api",
            Origin::Blueprint => "blueprint",
            Origin::Monitor => "monitor",
            Origin::Cli => "cli",
        }
    }
}

/// A change about to be recorded.
#[derive(Debug, Clone)]
pub struct NewChange {
    pub actor: String,
    pub origin: Origin,
    pub action: &'static str,
    pub target: String,
    pub target_id: Option<String>,
    pub before: Value,
    pub after: Value,
}

impl NewChange {
    pub fn new(actor: &str, origin: Origin, action: &'static str, target: &str) -> Self {
        Self {
            actor: actor.to_owned(),
            origin,
            action,
            target: target.to_owned(),
            target_id: None,
            before: Value::Null,
            after: Value::Null,
        }
    }

    pub fn target_id(mut self, id: impl Into<String>) -> Self {
        self.target_id = Some(id.into());
        self
    }

    pub fn before(mut self, before: Value) -> Self {
        self.before = before;
        self
    }

    pub fn after(mut self, after: Value) -> Self {
        self.after = after;
        self
    }
}

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct ChangeOut {
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    pub actor: String,
    pub origin: String,
    pub action: String,
    pub target: String,
    pub target_id: Option<String>,
    pub before: Value,
    pub after: Value,
    pub ok: bool,
    pub status: Option<i16>,
    pub answer: Value,
}

#[derive(Clone)]
pub struct Recorder {
    pool: Option<PgPool>,
}

impl Recorder {
    pub fn new(pool: Option<PgPool>) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> Option<&PgPool> {
        self.pool.as_ref()
    }

    /// Records the outcome of `change`. `answer` summarises Render's reply on success (ids,
    /// statuses); on failure Render's status and `{id, message}` are kept.
    pub async fn record(
        &self,
        mut change: NewChange,
        outcome: Result<(u16, Value), &RenderError>,
    ) -> Option<i64> {
        let (ok, status, mut answer) = match outcome {
            Ok((status, answer)) => (true, Some(status), answer),
            Err(error) => (
                false,
                error.status().map(|s| s.as_u16()),
                error_answer(error),
            ),
        };
        // What a caller put in a forwarded field (and Render quoted back) may hold a secret.
        for value in [&mut change.before, &mut change.after, &mut answer] {
            autonoma_common::redact::redact_json(value);
        }
        if ok {
            tracing::info!(
                target: "renderctl::change",
                actor = change.actor, origin = change.origin.as_str(), action = change.action,
                target = change.target, target_id = change.target_id, status,
                before = %change.before, after = %change.after, answer = %answer,
                "changed on Render"
            );
        } else {
            tracing::warn!(
                target: "renderctl::change",
                actor = change.actor, origin = change.origin.as_str(), action = change.action,
                target = change.target, target_id = change.target_id, status,
                before = %change.before, after = %change.after, answer = %answer,
                "change on Render failed"
            );
        }
        let pool = self.pool.as_ref()?;
        let inserted = sqlx::query_scalar::<_, i64>(
            "INSERT INTO render_changes \
             (actor, origin, action, target, target_id, before, after, ok, status, answer) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        )
        .bind(&change.actor)
        .bind(change.origin.as_str())
        .bind(change.action)
        .bind(&change.target)
        .bind(&change.target_id)
        .bind(&change.before)
        .bind(&change.after)
        .bind(ok)
        .bind(status.map(|s| s as i16))
        .bind(&answer)
        .fetch_one(pool)
        .await;
        match inserted {
            Ok(id) => Some(id),
            Err(error) => {
                // The change happened on Render; the log line above is its record.
                tracing::error!(error = %error, action = change.action, target = change.target, "could not record a Render change in Postgres");
                None
            }
        }
    }

    /// The newest changes first, older than `before` when given.
    pub async fn list(
        &self,
        target_id: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> sqlx::Result<Vec<ChangeOut>> {
        let Some(pool) = &self.pool else {
            return Ok(Vec::new());
        };
        sqlx::query_as::<_, ChangeOut>(
            "SELECT id, at, actor, origin, action, target, target_id, before, after, ok, status, \
             answer FROM render_changes \
             WHERE ($1::text IS NULL OR target_id = $1) AND ($2::bigint IS NULL OR id < $2) \
             ORDER BY id DESC LIMIT $3",
        )
        .bind(target_id)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
    }
}

pub fn error_answer(error: &RenderError) -> Value {
    match error {
        RenderError::Api {
            status,
            id,
            message,
            ..
        } => json!({ "status": status.as_u16(), "id": id, "message": message }),
        other => json!({ "message": other.to_string() }),
    }
}

/// Render's answer to a deploy trigger, as recorded: 201 with the deploy id, or 202 (queued).
pub fn deploy_answer(
    result: &Result<Triggered, RenderError>,
) -> Result<(u16, Value), &RenderError> {
    result.as_ref().map(|triggered| {
        let status = if triggered.queued { 202 } else { 201 };
        (status, json!({ "deployId": triggered.deploy_id() }))
    })
}
