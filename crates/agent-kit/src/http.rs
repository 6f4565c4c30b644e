//! The HTTP transport: the orchestrator posts each attempt and reads the outcome from the
//! answer.

use autonoma_common::Problem;
use autonoma_common::auth::require_internal_key;
use autonoma_common::extract::Json;
use autonoma_common::problem::FieldError;
use autonoma_protocol::{DispatchIn, DispatchOut, Transport};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::middleware::from_fn;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::run::Attempt;
use crate::{AGENT_TAG, Agent};

pub(crate) fn routes(agent: Agent) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(dispatch))
        .routes(routes!(cancel))
        .route_layer(from_fn(require_internal_key))
        .with_state(agent)
}

/// Runs one attempt of a task and answers with its outcome once it ends: when the handler
/// returns, at the task's deadline (`Failed`, "timed out"), or on cancellation.
#[utoipa::path(post, path = "/tasks/dispatch", tag = AGENT_TAG,
    security(("internalKey" = [])),
    request_body = DispatchIn,
    responses(
        (status = 200, description = "The attempt's outcome", body = DispatchOut),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Malformed dispatch, or a kind this agent does not serve",
            body = Problem, content_type = "application/problem+json"),
    ))]
async fn dispatch(
    State(agent): State<Agent>,
    Json(dispatch): Json<DispatchIn>,
) -> Result<Json<DispatchOut>, Problem> {
    if agent.kind(&dispatch.kind).is_none() {
        return Err(Problem::validation(
            format!(
                "Agent {} does not serve kind {}.",
                agent.name(),
                dispatch.kind
            ),
            [FieldError {
                field: "/kind".into(),
                message: format!(
                    "not one of: {}",
                    agent
                        .kinds()
                        .into_iter()
                        .map(|k| k.kind)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }],
        )
        .kind("unknown-kind"));
    }
    let limit = agent.http_limit();
    let attempt = Attempt::new(&agent, dispatch, Transport::Http);
    Ok(Json(attempt.run(limit).await))
}

/// Cancels the task's attempt running on this agent; its dispatch is answered `Failed`
/// ("cancelled") once the handler has stopped.
#[utoipa::path(post, path = "/tasks/{id}/cancel", tag = AGENT_TAG,
    security(("internalKey" = [])),
    params(("id" = Uuid, Path, description = "Task id")),
    responses(
        (status = 204, description = "It was running here and is being cancelled"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not running here", body = Problem,
            content_type = "application/problem+json"),
    ))]
async fn cancel(State(agent): State<Agent>, Path(id): Path<Uuid>) -> Result<StatusCode, Problem> {
    if agent.cancel(id) {
        tracing::info!(task_id = %id, "cancellation requested");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(
            Problem::not_found(format!("Task {id} is not running on this agent."))
                .kind("not-running"),
        )
    }
}
