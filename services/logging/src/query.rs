//! `GET /logs`: filtered pages of records, newest first, with keyset pagination by id.

use autonoma_common::Problem;
use autonoma_common::auth::require_operator;
use autonoma_common::extract::{Json, Query};
use axum::extract::State;
use axum::middleware::from_fn;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, QueryBuilder};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::model::{Filters, LOG_COLUMNS, Level, LogOut};

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 500;

const CURSOR_PREFIX: &str = "logs-before:";

pub fn router(pool: PgPool) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(get_logs))
        .route_layer(from_fn(require_operator))
        .with_state(pool)
}

/// Query parameters of `GET /logs`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Only records of this service.
    pub service: Option<String>,
    /// Minimum level: `warn` returns warn and error.
    #[param(value_type = Option<Level>)]
    pub level: Option<Level>,
    /// Only records of this trace (32 hex digits).
    pub trace_id: Option<String>,
    pub correlation_id: Option<String>,
    pub task_id: Option<Uuid>,
    /// Only records with `ts` at or after this instant (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<OffsetDateTime>,
    /// Only records with `ts` before this instant (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<OffsetDateTime>,
    /// Words the message must contain (web-search syntax: `"exact phrase"`, `-excluded`, `or`).
    pub q: Option<String>,
    /// Page size, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogsOut {
    pub items: Vec<LogOut>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Stored records matching every given filter, newest first.
#[utoipa::path(get, path = "/logs", tag = "logs",
    security(("basicAuth" = []), ("internalKey" = [])),
    params(LogsQuery),
    responses(
        (status = 200, body = LogsOut),
        (status = 400, description = "A parameter is not valid; the error names it", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_logs(
    State(pool): State<PgPool>,
    Query(query): Query<LogsQuery>,
) -> Result<Json<LogsOut>, Problem> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(invalid("limit", format!("expected 1 to {MAX_LIMIT}")));
    }
    let before = match query.cursor.as_deref() {
        None => None,
        Some(cursor) => Some(
            decode_cursor(cursor)
                .ok_or_else(|| invalid("cursor", "not a cursor returned by GET /logs"))?,
        ),
    };
    let filters = filters(FilterParams {
        service: query.service,
        level: query.level,
        trace_id: query.trace_id,
        correlation_id: query.correlation_id,
        task_id: query.task_id,
        since: query.since,
        until: query.until,
        q: query.q,
    })?;

    let mut sql = QueryBuilder::new(format!("SELECT {LOG_COLUMNS} FROM logs WHERE true"));
    filters.push_sql(&mut sql);
    if let Some(before) = before {
        sql.push(" AND id < ").push_bind(before);
    }
    // One more than asked tells whether another page follows.
    sql.push(" ORDER BY id DESC LIMIT ")
        .push_bind(i64::from(limit) + 1);
    let mut items: Vec<LogOut> = sql.build_query_as().fetch_all(&pool).await?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|last| encode_cursor(last.id))
    } else {
        None
    };
    Ok(Json(LogsOut { items, next_cursor }))
}

/// The filter parameters `GET /logs` and `GET /logs/stream` share, as received.
pub struct FilterParams {
    pub service: Option<String>,
    pub level: Option<Level>,
    pub trace_id: Option<String>,
    pub correlation_id: Option<String>,
    pub task_id: Option<Uuid>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    pub q: Option<String>,
}

pub fn filters(params: FilterParams) -> Result<Filters, Problem> {
    let trace_id = params.trace_id.map(|id| id.to_ascii_lowercase());
    if let Some(id) = &trace_id
        && !(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(invalid("traceId", "expected 32 hex digits"));
    }
    if let (Some(since), Some(until)) = (params.since, params.until)
        && until <= since
    {
        return Err(invalid("until", "must be later than since"));
    }
    // PostgreSQL text cannot hold U+0000, so no stored record could match such a filter.
    for (parameter, value) in [
        ("service", &params.service),
        ("correlationId", &params.correlation_id),
        ("q", &params.q),
    ] {
        if value.as_deref().is_some_and(|v| v.contains('\0')) {
            return Err(invalid(parameter, "must not contain U+0000"));
        }
    }
    Ok(Filters {
        service: params.service,
        min_level: params.level,
        trace_id,
        correlation_id: params.correlation_id,
        task_id: params.task_id,
        since: params.since,
        until: params.until,
        text: params.q.filter(|q| !q.trim().is_empty()),
    })
}

pub fn invalid(parameter: &str, message: impl Into<String>) -> Problem {
    let message = message.into();
    Problem::bad_request(format!(
        "Query parameter {parameter} is not valid: {message}."
    ))
    .kind("invalid-query")
    .field(parameter, message)
}

fn encode_cursor(id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{id}"))
}

fn decode_cursor(cursor: &str) -> Option<i64> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
    let id: i64 = text.strip_prefix(CURSOR_PREFIX)?.parse().ok()?;
    (id > 0).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_anything_else() {
        assert_eq!(decode_cursor(&encode_cursor(42)), Some(42));
        assert_eq!(decode_cursor("42"), None);
        assert_eq!(decode_cursor("!!!"), None);
        assert_eq!(
            decode_cursor(&URL_SAFE_NO_PAD.encode("logs-before:-1")),
            None
        );
    }
}
