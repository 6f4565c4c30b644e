//! `POST /api/sessions`, `GET /api/sessions`, `GET /api/sessions/{id}/state`,
//! `DELETE /api/sessions/{id}`, `GET /api/sessions/{id}/tool-calls`.

use autonoma_common::Problem;
use autonoma_common::extract::{Json, Query};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{TAG, parse_session};
use crate::Sandbox;
use crate::project::Template;
use crate::sandbox::{SessionOut, SessionSummaryOut, StateOut};
use crate::store::{self, ToolCallOut};

pub fn router() -> OpenApiRouter<Sandbox> {
    OpenApiRouter::new()
        .routes(routes!(create_session, list_sessions))
        .routes(routes!(get_state))
        .routes(routes!(delete_session))
        .routes(routes!(list_tool_calls))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionIn {
    /// The files the workspace starts with (default `empty`).
    #[serde(default)]
    pub template: Template,
}

/// Creates a session: a workspace from the template and a container running it.
#[utoipa::path(post, path = "/api/sessions", tag = TAG,
    security(("basicAuth" = []), ("internalKey" = [])),
    request_body = SessionIn,
    responses(
        (status = 201, body = SessionOut),
        (status = 422, description = "Unknown template", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "SANDBOX_MAX_SESSIONS sessions are live", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The container engine or the image is unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_session(State(sandbox): State<Sandbox>, body: Bytes) -> Result<Response, Problem> {
    // The body is optional: no body is the default template.
    let template = if body.iter().all(u8::is_ascii_whitespace) {
        Template::default()
    } else {
        autonoma_common::extract::parse_json::<SessionIn>(&body)?.template
    };
    let created = sandbox.create_session(template).await?;
    let location = format!("/api/sessions/{}/state", created.session_id);
    let mut response = (StatusCode::CREATED, Json(created)).into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// A session's status, as `GET /api/sessions?status=` filters on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum SessionStatus {
    Creating,
    Ready,
    Failed,
    Deleted,
}

impl SessionStatus {
    const ALL: [Self; 4] = [Self::Creating, Self::Ready, Self::Failed, Self::Deleted];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "creating",
            Self::Ready => "ready",
            Self::Failed => "failed",
            Self::Deleted => "deleted",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == value)
    }
}

/// Default page size of `GET /api/sessions`.
const SESSIONS_PAGE: i64 = 50;
/// Largest page size of `GET /api/sessions`.
const SESSIONS_PAGE_MAX: i64 = 200;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SessionsQuery {
    /// Only sessions with this status.
    #[param(inline, value_type = Option<SessionStatus>)]
    pub status: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
    /// The previous page's `nextCursor`.
    pub cursor: Option<String>,
}

/// A page of sessions.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionsOut {
    pub items: Vec<SessionSummaryOut>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Sessions, newest first, a page at a time (pass `nextCursor` back as `cursor`).
#[utoipa::path(get, path = "/api/sessions", tag = TAG,
    security(("basicAuth" = []), ("internalKey" = [])),
    params(SessionsQuery),
    responses(
        (status = 200, body = SessionsOut),
        (status = 422, description = "A bad status, limit or cursor", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_sessions(
    State(sandbox): State<Sandbox>,
    Query(query): Query<SessionsQuery>,
) -> Result<Json<SessionsOut>, Problem> {
    let status = match query.status.as_deref() {
        None => None,
        Some(status) => Some(SessionStatus::parse(status).ok_or_else(|| {
            crate::sandbox::invalid(
                "There is no such session status.",
                "status",
                "expected creating, ready, failed or deleted",
            )
        })?),
    };
    let limit = match query.limit.as_deref() {
        None => SESSIONS_PAGE,
        Some(limit) => limit
            .parse::<i64>()
            .ok()
            .filter(|limit| (1..=SESSIONS_PAGE_MAX).contains(limit))
            .ok_or_else(|| {
                crate::sandbox::invalid(
                    "The page size is out of range.",
                    "limit",
                    format!("expected 1 to {SESSIONS_PAGE_MAX}"),
                )
            })?,
    };
    let after = match query.cursor.as_deref() {
        None => None,
        Some(cursor) => Some(decode_cursor(cursor).ok_or_else(|| {
            crate::sandbox::invalid(
                "The cursor is not one this service gave out.",
                "cursor",
                "expected the nextCursor of a previous page",
            )
        })?),
    };
    let mut rows = store::page(
        sandbox.pool(),
        status.map(SessionStatus::as_str),
        after,
        limit + 1,
    )
    .await
    .map_err(Problem::internal)?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|row| encode_cursor(row.created_at, row.id))
    } else {
        None
    };
    Ok(Json(SessionsOut {
        items: rows
            .into_iter()
            .map(|row| sandbox.summary_of(row))
            .collect(),
        next_cursor,
    }))
}

/// The keyset position after a session: its creation time (microseconds, what Postgres
/// keeps) and id, as `base64url("session:<micros>:<id>")`.
fn encode_cursor(created_at: OffsetDateTime, id: Uuid) -> String {
    let micros = created_at.unix_timestamp_nanos() / 1000;
    URL_SAFE_NO_PAD.encode(format!("session:{micros}:{id}"))
}

fn decode_cursor(cursor: &str) -> Option<(OffsetDateTime, Uuid)> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
    let (micros, id) = text.strip_prefix("session:")?.split_once(':')?;
    let micros: i128 = micros.parse().ok()?;
    let created_at = OffsetDateTime::from_unix_timestamp_nanos(micros.checked_mul(1000)?).ok()?;
    Some((created_at, Uuid::parse_str(id).ok()?))
}

/// The session: status, preview URL, container and dev server, project snapshot, resources.
#[utoipa::path(get, path = "/api/sessions/{id}/state", tag = TAG,
    security(("basicAuth" = []), ("internalKey" = [])),
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 200, body = StateOut),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_state(
    State(sandbox): State<Sandbox>,
    Path(id): Path<String>,
) -> Result<Json<StateOut>, Problem> {
    Ok(Json(sandbox.state(parse_session(&id)?).await?))
}

/// Deletes the session: stops its processes, removes its container, workspace and
/// checkpoints. Its record and tool calls stay (status `deleted`).
#[utoipa::path(delete, path = "/api/sessions/{id}", tag = TAG,
    security(("basicAuth" = []), ("internalKey" = [])),
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 204),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "Already ended", body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_session(
    State(sandbox): State<Sandbox>,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    let id = parse_session(&id)?;
    sandbox.live(id).await?;
    sandbox
        .delete_session(id, "deleted through the API")
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ToolCallsQuery {
    /// Only calls after this id (the last id of the previous page).
    #[serde(default)]
    pub after: i64,
    /// Page size, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// The session's recorded tool calls, oldest first.
#[utoipa::path(get, path = "/api/sessions/{id}/tool-calls", tag = TAG,
    security(("basicAuth" = []), ("internalKey" = [])),
    params(("id" = String, Path, description = "Session id"), ToolCallsQuery),
    responses(
        (status = 200, body = Vec<ToolCallOut>),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_tool_calls(
    State(sandbox): State<Sandbox>,
    Path(id): Path<String>,
    Query(query): Query<ToolCallsQuery>,
) -> Result<Json<Vec<ToolCallOut>>, Problem> {
    let id = parse_session(&id)?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(crate::sandbox::invalid(
            "The page size is out of range.",
            "limit",
            "expected 1 to 500",
        ));
    }
    if store::get(sandbox.pool(), id)
        .await
        .map_err(Problem::internal)?
        .is_none()
    {
        return Err(crate::sandbox::not_found(id));
    }
    let calls = store::tool_calls(sandbox.pool(), id, query.after, limit)
        .await
        .map_err(Problem::internal)?;
    Ok(Json(calls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_junk_is_refused() {
        let created_at = OffsetDateTime::from_unix_timestamp_nanos(1_800_000_000_123_456_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let id = Uuid::new_v4();
        let cursor = encode_cursor(created_at, id);
        assert_eq!(decode_cursor(&cursor), Some((created_at, id)));
        for junk in [
            "",
            "nope",
            "c2Vzc2lvbjp4OnE",
            &URL_SAFE_NO_PAD.encode(format!("task:1:{id}")),
            &URL_SAFE_NO_PAD.encode("session:1:not-a-uuid"),
            &URL_SAFE_NO_PAD.encode(format!("session:{}:{id}", i128::MAX)),
        ] {
            assert_eq!(decode_cursor(junk), None, "{junk:?}");
        }
    }
}
