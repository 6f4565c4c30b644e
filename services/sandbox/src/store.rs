//! The sessions and tool calls in Postgres (migration `sandbox`).

use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub id: Uuid,
    pub template: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub container_id: Option<String>,
    pub container_name: String,
    pub workspace_path: String,
    pub snapshot: Value,
    pub dev_command: Option<String>,
    pub dev_port: Option<i32>,
    pub oom_kills: i32,
    pub created_at: OffsetDateTime,
    pub last_active_at: OffsetDateTime,
    pub deleted_at: Option<OffsetDateTime>,
}

const COLUMNS: &str = "id, template, status, status_reason, container_id, container_name, \
     workspace_path, snapshot, dev_command, dev_port, oom_kills, created_at, last_active_at, \
     deleted_at";

/// Inserts a `creating` session unless `max` sessions are live already (`None` then). The
/// count and the insert are serialised by a transaction-scoped advisory lock, so concurrent
/// creates never pass the cap together.
pub async fn insert_capped(
    pool: &PgPool,
    id: Uuid,
    template: &str,
    container_name: &str,
    workspace_path: &str,
    max: u32,
) -> sqlx::Result<Option<SessionRow>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('sandbox_sessions'))")
        .execute(&mut *tx)
        .await?;
    let live: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sandbox_sessions WHERE status IN ('creating', 'ready')",
    )
    .fetch_one(&mut *tx)
    .await?;
    if live >= i64::from(max) {
        return Ok(None);
    }
    let row = sqlx::query_as::<_, SessionRow>(sqlx::AssertSqlSafe(format!(
        "INSERT INTO sandbox_sessions (id, template, status, container_name, workspace_path) \
         VALUES ($1, $2, 'creating', $3, $4) RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(template)
    .bind(container_name)
    .bind(workspace_path)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(row))
}

pub async fn get(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<SessionRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM sandbox_sessions WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// What a list of sessions shows of each.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionSummaryRow {
    pub id: Uuid,
    pub template: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub created_at: OffsetDateTime,
    pub last_active_at: OffsetDateTime,
    pub deleted_at: Option<OffsetDateTime>,
}

/// Up to `limit` sessions, newest first (`created_at`, then `id`, both descending), with
/// `status` when given, after the (`created_at`, `id`) of the previous page's last one.
pub async fn page(
    pool: &PgPool,
    status: Option<&str>,
    after: Option<(OffsetDateTime, Uuid)>,
    limit: i64,
) -> sqlx::Result<Vec<SessionSummaryRow>> {
    let (after_created, after_id) = after.unzip();
    sqlx::query_as(
        "SELECT id, template, status, status_reason, created_at, last_active_at, deleted_at \
         FROM sandbox_sessions \
         WHERE ($1::text IS NULL OR status = $1) \
         AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid)) \
         ORDER BY created_at DESC, id DESC LIMIT $4",
    )
    .bind(status)
    .bind(after_created)
    .bind(after_id)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Sessions a running service should have: `creating` or `ready`.
pub async fn live(pool: &PgPool) -> sqlx::Result<Vec<SessionRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM sandbox_sessions WHERE status IN ('creating', 'ready') \
         ORDER BY created_at"
    )))
    .fetch_all(pool)
    .await
}

pub async fn mark_ready(
    pool: &PgPool,
    id: Uuid,
    container_id: &str,
    snapshot: &Value,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE sandbox_sessions SET status = 'ready', container_id = $2, snapshot = $3, \
         last_active_at = now() WHERE id = $1 AND status = 'creating'",
    )
    .bind(id)
    .bind(container_id)
    .bind(snapshot)
    .execute(pool)
    .await?;
    Ok(())
}

/// Ends a session (`failed` or `deleted`) with the reason; a session already ended keeps its
/// first reason. True when this call ended it.
pub async fn end(pool: &PgPool, id: Uuid, status: &str, reason: &str) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE sandbox_sessions SET status = $2, status_reason = $3, \
         deleted_at = CASE WHEN $2 = 'deleted' THEN now() ELSE deleted_at END \
         WHERE id = $1 AND status IN ('creating', 'ready')",
    )
    .bind(id)
    .bind(status)
    .bind(reason)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn set_snapshot(pool: &PgPool, id: Uuid, snapshot: &Value) -> sqlx::Result<()> {
    sqlx::query("UPDATE sandbox_sessions SET snapshot = $2 WHERE id = $1")
        .bind(id)
        .bind(snapshot)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn set_dev(
    pool: &PgPool,
    id: Uuid,
    command: Option<&str>,
    port: Option<u16>,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE sandbox_sessions SET dev_command = $2, dev_port = $3 WHERE id = $1")
        .bind(id)
        .bind(command)
        .bind(port.map(i32::from))
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn count_oom_kill(pool: &PgPool, id: Uuid) -> sqlx::Result<()> {
    sqlx::query("UPDATE sandbox_sessions SET oom_kills = oom_kills + 1 WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn touch(pool: &PgPool, id: Uuid) -> sqlx::Result<()> {
    sqlx::query("UPDATE sandbox_sessions SET last_active_at = now() WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Live sessions untouched for `idle_secs`.
pub async fn idle(pool: &PgPool, idle_secs: f64) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT id FROM sandbox_sessions WHERE status IN ('creating', 'ready') \
         AND last_active_at < now() - make_interval(secs => $1)",
    )
    .bind(idle_secs)
    .fetch_all(pool)
    .await
}

/// The id that labels this database's containers in the engine, made on first use, so
/// services on other databases that share the engine never touch them.
pub async fn owner_tag(pool: &PgPool) -> sqlx::Result<Uuid> {
    sqlx::query("INSERT INTO sandbox_store (id) VALUES ($1) ON CONFLICT (singleton) DO NOTHING")
        .bind(Uuid::new_v4())
        .execute(pool)
        .await?;
    sqlx::query_scalar("SELECT id FROM sandbox_store")
        .fetch_one(pool)
        .await
}

pub struct NewToolCall<'a> {
    pub session: Uuid,
    pub tool: &'a str,
    pub via: &'a str,
    pub arguments: &'a Value,
    pub ok: bool,
    pub summary: &'a str,
    pub duration_ms: i32,
}

/// Records a call and counts it as activity.
pub async fn record_tool_call(pool: &PgPool, call: NewToolCall<'_>) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "WITH touched AS (UPDATE sandbox_sessions SET last_active_at = now() WHERE id = $1) \
         INSERT INTO sandbox_tool_calls (session_id, tool, via, arguments, ok, summary, \
         duration_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(call.session)
    .bind(call.tool)
    .bind(call.via)
    .bind(call.arguments)
    .bind(call.ok)
    .bind(call.summary)
    .bind(call.duration_ms)
    .fetch_one(pool)
    .await
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct ToolCallOut {
    pub id: i64,
    pub tool: String,
    /// `http` or `mcp`.
    pub via: String,
    #[schema(value_type = Object)]
    pub arguments: Value,
    pub ok: bool,
    pub summary: String,
    pub duration_ms: i32,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

/// The session's calls after `after`, oldest first.
pub async fn tool_calls(
    pool: &PgPool,
    session: Uuid,
    after: i64,
    limit: i64,
) -> sqlx::Result<Vec<ToolCallOut>> {
    sqlx::query_as(
        "SELECT id, tool, via, arguments, ok, summary, duration_ms, created_at \
         FROM sandbox_tool_calls WHERE session_id = $1 AND id > $2 ORDER BY id LIMIT $3",
    )
    .bind(session)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
}
