//! renderctl's HTTP API (Basic Auth, or an internal key for the dashboard's backend):
//! `POST /render/services`, `GET /render/services`, `GET /render/services/{id}`,
//! `PATCH /render/services/{id}/env`, `POST /render/deploy/{id}`,
//! `GET /render/services/{id}/deploys`, `POST /render/blueprint/apply`, and the records
//! `GET /render/changes` and `GET /render/monitor`.

pub mod blueprint;
pub mod changes;
pub mod deploys;
pub mod env;
pub mod services;

use autonoma_common::Problem;
use autonoma_common::auth::{bearer_token, decode_basic, require_operator};
use autonoma_common::problem::FieldError;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::from_fn;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;

use crate::Renderctl;
use crate::render::RenderError;

pub const TAG: &str = "render";

pub fn router(app: Renderctl) -> OpenApiRouter {
    services::router()
        .merge(env::router())
        .merge(deploys::router())
        .merge(blueprint::router())
        .merge(changes::router())
        .route_layer(from_fn(require_operator))
        .with_state(app)
}

/// `limit` of a list query: `default` when absent, else 1 to `max`.
pub fn limit_param(limit: Option<u32>, default: u32, max: u32) -> Result<u32, Problem> {
    let limit = limit.unwrap_or(default);
    if (1..=max).contains(&limit) {
        Ok(limit)
    } else {
        Err(Problem::validation(
            "The query is not valid.",
            [FieldError {
                field: "limit".into(),
                message: format!("must be 1 to {max}"),
            }],
        ))
    }
}

/// The cursor of the next page of one of Render's lists: none once a page comes back short.
pub fn next_cursor<T>(page: crate::render::Page<T>, limit: u32) -> (Vec<T>, Option<String>) {
    let full = page.items.len() as u32 >= limit;
    (page.items, if full { page.cursor } else { None })
}

/// Who made a request, for the change record: the Basic Auth user, or `internal`.
pub fn actor(headers: &HeaderMap) -> String {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Basic "))
        .and_then(decode_basic)
        .map(|(user, _)| user)
        .or_else(|| bearer_token(headers).map(|_| "bearer".to_owned()))
        .unwrap_or_else(|| "internal".to_owned())
}

/// A Render API failure as a problem: Render's status where it concerns the request (404,
/// 400, 409, 422), 502 where Render failed or refused renderctl's token, 503 when rate-limited
/// or unconfigured. Render's own `{id, message}` is carried as the `render` member.
pub fn render_problem(error: RenderError) -> Problem {
    match &error {
        RenderError::NoToken => Problem::unavailable(
            "RENDER_API_TOKEN is not set: renderctl cannot call Render's API. Set it to an API key \
             from the Render Dashboard (Account Settings → API Keys) and restart renderctl.",
        )
        .kind("render-token-missing")
        .title("Render API token missing"),
        RenderError::Api {
            method,
            path,
            status,
            id,
            message,
        } => {
            let ours = match *status {
                StatusCode::NOT_FOUND => StatusCode::NOT_FOUND,
                StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                StatusCode::CONFLICT => StatusCode::CONFLICT,
                StatusCode::PAYMENT_REQUIRED => StatusCode::PAYMENT_REQUIRED,
                _ => StatusCode::BAD_GATEWAY,
            };
            let kind = match *status {
                StatusCode::NOT_FOUND => "render-not-found",
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => "render-unauthorized",
                s if s.is_client_error() => "render-refused",
                _ => "render-failed",
            };
            let detail = match *status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => format!(
                    "Render refused renderctl's RENDER_API_TOKEN ({status}) for {method} {path}: {message}"
                ),
                _ => format!("Render answered {status} to {method} {path}: {message}"),
            };
            Problem::new(ours).kind(kind).detail(detail).extension(
                "render",
                json!({ "status": status.as_u16(), "id": id, "message": message }),
            )
        }
        RenderError::RateLimited { retry_after, .. } => {
            let mut problem = Problem::unavailable(error.to_string()).kind("render-rate-limited");
            if let Some(wait) = retry_after
                && let Ok(value) = HeaderValue::from_str(&wait.as_secs().max(1).to_string())
            {
                problem = problem.header(header::RETRY_AFTER, value);
            }
            problem
        }
        RenderError::Transport { .. } | RenderError::Decode { .. } => {
            Problem::new(StatusCode::BAD_GATEWAY)
                .kind("render-unreachable")
                .detail(error.to_string())
        }
    }
}

impl From<RenderError> for Problem {
    fn from(error: RenderError) -> Self {
        render_problem(error)
    }
}
