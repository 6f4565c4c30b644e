//! Directives: `POST /pages/{page}/messages` and `DELETE /pages/{page}/components/{address}`
//! (AI) append to the page log; `GET /pages/{page}/poll` (browser) long-polls it.

use std::time::Duration;

use autonoma_blobs::{BlobKind, NewBlob};
use autonoma_common::Problem;
use autonoma_common::extract::{Json, Query};
use autonoma_common::problem::FieldError;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{Gateway, MAX_POLL_WAIT, blob_problem, page_problem, parse_page};
use crate::envelope::{Address, BlobRef, Body, Envelope, PageId};
use crate::pages::{MAX_BATCH, NewMessage, REMOVE_DIRECTIVE};

/// Room for the envelope fields around a body of the largest accepted size.
const ENVELOPE_OVERHEAD: usize = 64 * 1024;
/// Content type of a directive body stored as a blob.
const BLOB_CONTENT_TYPE: &str = "application/json";

pub fn ai_router(gateway: Gateway) -> OpenApiRouter {
    let body_limit = gateway.limits.directive.saturating_add(ENVELOPE_OVERHEAD);
    let send = OpenApiRouter::new()
        .routes(routes!(post_message))
        .layer(DefaultBodyLimit::max(body_limit));
    let remove = OpenApiRouter::new()
        .routes(routes!(delete_component))
        .layer(DefaultBodyLimit::max(0));
    send.merge(remove).with_state(gateway)
}

pub fn browser_router(gateway: Gateway) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(get_poll))
        .layer(DefaultBodyLimit::max(0))
        .with_state(gateway)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MessageIn {
    /// The component address: `layout-manager`, `dataset-router`, `plotly-panel-{id}` or
    /// `text-component-{id}`.
    pub to: String,
    /// A directive type the address accepts, e.g. `plotly.figure`.
    pub directive: String,
    /// The directive's body, checked against its JSON Schema.
    #[schema(value_type = Object)]
    pub body: Value,
    /// W3C trace context to keep with the message.
    #[serde(default)]
    pub traceparent: Option<String>,
    /// A UUIDv7 the sender chose, so a retried send is refused (409) instead of stored
    /// twice; one is generated when absent.
    #[serde(default)]
    pub id: Option<Uuid>,
}

/// Checks `to`, the directive and the body, stores a large body as a blob and appends the
/// message to the page's log. Nothing is stored when any check fails.
#[utoipa::path(post, path = "/pages/{page}/messages", tag = "messages",
    security(("internalKey" = [])),
    params(("page" = String, Path, description = "Page id")),
    request_body = MessageIn,
    responses(
        (status = 201, description = "Appended; bodies over GATEWAY_INLINE_LIMIT travel as a blob reference", body = Envelope),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such page", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body exceeds GATEWAY_DIRECTIVE_LIMIT", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown address, directive the address does not accept, or a body against the directive's schema; errors name the fields", body = Problem, content_type = "application/problem+json"),
    ))]
async fn post_message(
    State(gateway): State<Gateway>,
    Path(page): Path<String>,
    Json(input): Json<MessageIn>,
) -> Result<(StatusCode, Json<Envelope>), Problem> {
    let envelope = gateway.send_message(&page, input).await?;
    Ok((StatusCode::CREATED, Json(envelope)))
}

impl Gateway {
    /// Checks the address, the directive and its body, stores a body over the inline limit as
    /// a blob and appends the message to the page's log. Nothing is stored when a check fails.
    pub async fn send_message(&self, page: &str, input: MessageIn) -> Result<Envelope, Problem> {
        let page = parse_page(page)?;
        let to: Address = input.to.parse().map_err(|e: crate::AddressError| {
            Problem::validation(
                "The address is not valid.",
                [FieldError {
                    field: "/to".into(),
                    message: e.to_string(),
                }],
            )
        })?;
        crate::directives::validate(&to, &input.directive, &input.body).map_err(|errors| {
            Problem::validation("The directive is not valid for its address.", errors)
        })?;
        self.require_page(&page).await?;

        let encoded = serde_json::to_vec(&input.body).map_err(Problem::internal)?;
        if encoded.len() > self.limits.directive {
            return Err(Problem::new(StatusCode::PAYLOAD_TOO_LARGE).detail(format!(
                "The body is {} bytes; the limit is {} bytes. Upload large data with \
                 POST /blobs and refer to it by id.",
                encoded.len(),
                self.limits.directive
            )));
        }
        let body = if encoded.len() > self.limits.inline && input.directive != REMOVE_DIRECTIVE {
            let meta = NewBlob::new(blob_kind(&input.directive), BLOB_CONTENT_TYPE)
                .name(format!("{page}/{to}/{}", input.directive));
            let stored = self
                .blobs
                .put_bytes(meta, Bytes::from(encoded))
                .await
                .map_err(blob_problem)?;
            Body::Blob(BlobRef {
                blob_id: stored.id,
                sha256: stored.sha256,
                size: u64::try_from(stored.size).map_err(Problem::internal)?,
                content_type: stored.content_type,
            })
        } else {
            Body::Inline(input.body)
        };
        let message = NewMessage {
            id: input.id.unwrap_or_else(Uuid::now_v7),
            page,
            to,
            from: "ai".into(),
            directive: input.directive,
            body,
            traceparent: input.traceparent,
        };
        self.log.append(message).await.map_err(page_problem)
    }

    /// Takes a component off the page: appends a `component.remove` to `layout-manager`.
    pub async fn remove_component(&self, page: &str, address: &str) -> Result<Envelope, Problem> {
        let page = parse_page(page)?;
        let layout: Address = "layout-manager"
            .parse()
            .map_err(|e: crate::AddressError| Problem::internal(e))?;
        let message = NewMessage::from_ai(
            page,
            layout,
            REMOVE_DIRECTIVE,
            json!({ "component": address }),
        );
        // The directive's schema names `/body/inline/component`; the caller named it alone.
        self.log.append(message).await.map_err(|error| match error {
            crate::PageError::Invalid(_) => Problem::validation(
                "Only plotly-panel-{id} and text-component-{id} components can be removed.",
                [FieldError {
                    field: "address".into(),
                    message: format!("{address:?} is not a removable component address"),
                }],
            ),
            other => page_problem(other),
        })
    }
}

/// What a stored directive body is, for the blob registry.
fn blob_kind(directive: &str) -> BlobKind {
    match directive {
        "plotly.figure" => BlobKind::Plotly,
        "dataset.route" => BlobKind::Dataset,
        "layout.set" => BlobKind::Layout,
        _ => BlobKind::Other,
    }
}

/// Takes a component off the page: appends a `component.remove` from the AI to
/// `layout-manager`.
#[utoipa::path(delete, path = "/pages/{page}/components/{address}", tag = "messages",
    security(("internalKey" = [])),
    params(
        ("page" = String, Path, description = "Page id"),
        ("address" = String, Path, description = "A `plotly-panel-{id}` or `text-component-{id}`"),
    ),
    responses(
        (status = 201, description = "The component.remove appended", body = Envelope),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such page", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a removable component address", body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_component(
    State(gateway): State<Gateway>,
    Path((page, address)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Envelope>), Problem> {
    let envelope = gateway.remove_component(&page, &address).await?;
    Ok((StatusCode::CREATED, Json(envelope)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct PollQuery {
    /// The last sequence number the browser has; 0 (the default) for the whole history.
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// Seconds to wait when nothing follows `after` yet, 0 to 30 (default 0).
    #[param(maximum = 30)]
    pub wait: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PollOut {
    /// Up to 1000 messages after `after`, in order.
    pub messages: Vec<Envelope>,
    /// Pass as `after` on the next poll.
    pub next: i64,
}

/// The page's messages after `after`, waiting up to `wait` seconds for one when there are
/// none yet. Every browser on the page gets the same messages in the same order.
#[utoipa::path(get, path = "/pages/{page}/poll", tag = "messages",
    security(("basicAuth" = []), ("internalKey" = []), ("bearerAuth" = [])),
    params(("page" = String, Path, description = "Page id"), PollQuery),
    responses(
        (status = 200, body = PollOut),
        (status = 400, description = "A parameter is not valid; the error names it", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such page", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_poll(
    State(gateway): State<Gateway>,
    Path(page): Path<String>,
    Query(query): Query<PollQuery>,
) -> Result<Json<PollOut>, Problem> {
    let page = parse_page(&page)?;
    let after = query.after.unwrap_or(0);
    if after < 0 {
        return Err(Problem::bad_request("after must be 0 or more.").field("after", "negative"));
    }
    let wait = Duration::from_secs(query.wait.unwrap_or(0));
    if wait > MAX_POLL_WAIT {
        return Err(Problem::bad_request(format!(
            "wait is at most {} seconds.",
            MAX_POLL_WAIT.as_secs()
        ))
        .field("wait", format!("expected 0 to {}", MAX_POLL_WAIT.as_secs())));
    }
    let messages = poll(&gateway, &page, after, wait.min(gateway.limits.poll_wait)).await?;
    let next = messages.last().map_or(after, |last| last.seq);
    Ok(Json(PollOut { messages, next }))
}

async fn poll(
    gateway: &Gateway,
    page: &PageId,
    after: i64,
    wait: Duration,
) -> Result<Vec<Envelope>, Problem> {
    if wait.is_zero() {
        gateway.log.after(page, after, MAX_BATCH).await
    } else {
        gateway.log.wait_after(page, after, wait).await
    }
    .map_err(page_problem)
}
