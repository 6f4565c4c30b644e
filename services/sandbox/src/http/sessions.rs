//! `POST /api/sessions`, `GET /api/sessions/{id}/state`, `DELETE /api/sessions/{id}`,
//! `GET /api/sessions/{id}/tool-calls`.

use autonoma_common::Problem;
use autonoma_common::extract::{Json, Query};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{TAG, parse_session};
use crate::Sandbox;
use crate::project::Template;
use crate::sandbox::{SessionOut, StateOut};
use crate::store::{self, ToolCallOut};

pub fn router() -> OpenApiRouter<Sandbox> {
    OpenApiRouter::new()
        .routes(routes!(create_session))
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
