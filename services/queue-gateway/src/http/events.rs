//! User input: `POST /pages/{page}/events` (browser) puts an event on the page's input queue
//! `page-input-<page>`; `GET /pages/{page}/input` (AI) takes events off it.

use std::collections::BTreeMap;
use std::time::Duration;

use autonoma_bus::MAX_WAIT;
use autonoma_common::Problem;
use autonoma_common::extract::{Json, Query};
use autonoma_common::problem::FieldError;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Gateway, bus_problem, parse_page};
use crate::envelope::Address;

/// Largest `POST /pages/{page}/events` body; well below the bus's 256 KiB message limit.
const EVENT_BODY_LIMIT: usize = 64 * 1024;
/// Longest event kind.
const KIND_MAX: usize = 64;
/// Most events one `GET /pages/{page}/input` returns.
const INPUT_BATCH: usize = 10;

pub fn ai_router(gateway: Gateway) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(get_input))
        .layer(DefaultBodyLimit::max(0))
        .with_state(gateway)
}

pub fn browser_router(gateway: Gateway) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(post_event))
        .layer(DefaultBodyLimit::max(EVENT_BODY_LIMIT))
        .with_state(gateway)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventIn {
    /// The address of the component the user acted on.
    pub component: String,
    /// What happened, e.g. `click`, `submit`, `select`: 1–64 characters of `[a-z0-9._-]`.
    #[schema(pattern = "^[a-z0-9._-]{1,64}$")]
    pub kind: String,
    /// The event's data, e.g. the submitted form values.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub value: Value,
}

/// One event as it travels on the input queue and reaches the AI.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventOut {
    pub page: String,
    pub component: String,
    pub kind: String,
    #[schema(value_type = Object)]
    pub value: Value,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub received_at: OffsetDateTime,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventAccepted {
    /// The bus message id.
    pub id: String,
}

/// Sends user input to the AI waiting on the page.
#[utoipa::path(post, path = "/pages/{page}/events", tag = "events",
    security(("basicAuth" = []), ("internalKey" = []), ("bearerAuth" = [])),
    params(("page" = String, Path, description = "Page id")),
    request_body = EventIn,
    responses(
        (status = 202, description = "Queued for the AI", body = EventAccepted),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such page", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown component address or bad kind; errors name the fields", body = Problem, content_type = "application/problem+json"),
    ))]
async fn post_event(
    State(gateway): State<Gateway>,
    Path(page): Path<String>,
    Json(input): Json<EventIn>,
) -> Result<(StatusCode, Json<EventAccepted>), Problem> {
    let id = gateway.post_event(&page, input).await?;
    Ok((StatusCode::ACCEPTED, Json(EventAccepted { id })))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct InputQuery {
    /// Seconds to wait for the first event, 0 to 20 (default 0).
    #[param(maximum = 20)]
    pub wait: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InputOut {
    /// Up to 10 events, oldest first; empty when the wait ran out.
    pub events: Vec<EventOut>,
}

/// Takes the user input waiting for the AI on the page, waiting up to `wait` seconds for the
/// first event. What is returned is removed from the queue.
#[utoipa::path(get, path = "/pages/{page}/input", tag = "events",
    security(("internalKey" = [])),
    params(("page" = String, Path, description = "Page id"), InputQuery),
    responses(
        (status = 200, body = InputOut),
        (status = 400, description = "A parameter is not valid; the error names it", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such page", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_input(
    State(gateway): State<Gateway>,
    Path(page): Path<String>,
    Query(query): Query<InputQuery>,
) -> Result<Json<InputOut>, Problem> {
    let wait = Duration::from_secs(query.wait.unwrap_or(0));
    let events = gateway.take_input(&page, wait).await?;
    Ok(Json(InputOut { events }))
}

impl Gateway {
    /// Puts a browser's event on the page's input queue; answers the bus message id.
    pub async fn post_event(&self, page: &str, input: EventIn) -> Result<String, Problem> {
        let page = parse_page(page)?;
        let mut errors = Vec::new();
        if let Err(e) = input.component.parse::<Address>() {
            errors.push(FieldError {
                field: "/component".into(),
                message: e.to_string(),
            });
        }
        let kind_ok = (1..=KIND_MAX).contains(&input.kind.len())
            && input
                .kind
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if !kind_ok {
            errors.push(FieldError {
                field: "/kind".into(),
                message: format!("expected 1 to {KIND_MAX} characters of a-z, 0-9, '.', '_', '-'"),
            });
        }
        if !errors.is_empty() {
            return Err(Problem::validation("The event is not valid.", errors));
        }
        self.require_page(&page).await?;
        let queue = self.input_queue(&page, false).await?;
        let event = EventOut {
            page: page.to_string(),
            component: input.component,
            kind: input.kind,
            value: input.value,
            received_at: OffsetDateTime::now_utc(),
        };
        let body = serde_json::to_string(&event).map_err(Problem::internal)?;
        self.bus
            .send(&queue, &body, &BTreeMap::new())
            .await
            .map_err(bus_problem)
    }

    /// Takes up to 10 events waiting on the page's input queue, waiting up to `wait` (at most
    /// 20 s) for the first. What is returned is removed from the queue.
    pub async fn take_input(&self, page: &str, wait: Duration) -> Result<Vec<EventOut>, Problem> {
        let page = parse_page(page)?;
        if wait > MAX_WAIT {
            return Err(Problem::bad_request(format!(
                "wait is at most {} seconds.",
                MAX_WAIT.as_secs()
            ))
            .field("wait", format!("expected 0 to {}", MAX_WAIT.as_secs())));
        }
        self.require_page(&page).await?;
        let queue = self.input_queue(&page, false).await?;
        let received = self
            .bus
            .receive(&queue, INPUT_BATCH, wait.min(self.limits.poll_wait))
            .await
            .map_err(bus_problem)?;
        let mut events = Vec::with_capacity(received.len());
        for message in received {
            match serde_json::from_str::<EventOut>(&message.body) {
                Ok(event) => events.push(event),
                // Only this service writes the queue; anything else is dropped, not returned.
                Err(error) => {
                    tracing::warn!(%error, id = %message.id, "dropping an unreadable input event")
                }
            }
            self.bus
                .delete(&queue, &message.receipt)
                .await
                .map_err(bus_problem)?;
        }
        Ok(events)
    }
}
