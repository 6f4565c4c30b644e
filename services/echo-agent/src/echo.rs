//! `POST /echo`: the payload back, unchanged.

use std::time::Duration;

use autonoma_common::Problem;
use autonoma_common::auth::require_internal_key;
use autonoma_common::extract::Json;
use axum::middleware::from_fn;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Longest `delayMs` honoured, so a payload cannot park a request forever.
const MAX_DELAY: Duration = Duration::from_secs(60);

pub fn router() -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(post_echo))
        .route_layer(from_fn(require_internal_key))
}

/// Returns the JSON payload it was given. A numeric top-level `delayMs` (at most 60000)
/// makes it wait that long first, to exercise timeouts and graceful shutdown.
#[utoipa::path(post, path = "/echo", tag = "echo",
    security(("internalKey" = [])),
    request_body(content = Object, description = "Any JSON value"),
    responses(
        (status = 200, description = "The same JSON value", body = Object),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn post_echo(Json(payload): Json<Value>) -> Result<Json<Value>, Problem> {
    if let Some(delay) = payload.get("delayMs") {
        let millis = delay.as_u64().ok_or_else(|| {
            Problem::validation(
                "delayMs must be a whole number of milliseconds.",
                [autonoma_common::problem::FieldError {
                    field: "/delayMs".into(),
                    message: "expected a non-negative integer".into(),
                }],
            )
        })?;
        let delay = Duration::from_millis(millis);
        if delay > MAX_DELAY {
            return Err(Problem::validation(
                "delayMs is too long.",
                [autonoma_common::problem::FieldError {
                    field: "/delayMs".into(),
                    message: format!("at most {}", MAX_DELAY.as_millis()),
                }],
            ));
        }
        tokio::time::sleep(delay).await;
    }
    Ok(Json(payload))
}
