//! `GET /pages/{page}/stream` (browser): the page log as Server-Sent Events, for browsers that
//! prefer a stream to long polls. Each event is one envelope, its id the envelope's `seq`, so
//! an EventSource that reconnects with `Last-Event-ID` resumes exactly after what it had.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use autonoma_common::Problem;
use autonoma_common::extract::Query;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Gateway, parse_page};
use crate::envelope::{Envelope, PageId};
use crate::pages::PageError;

const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long one wait on the page log lasts before the stream looks again.
const WAIT: Duration = Duration::from_secs(25);
/// Pause after a failed read before the stream retries.
const RETRY: Duration = Duration::from_secs(1);

pub fn browser_router(gateway: Gateway) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(get_page_stream))
        .layer(DefaultBodyLimit::max(0))
        .with_state(gateway)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Start after this sequence number (default 0: the whole history). `Last-Event-ID`
    /// takes precedence when an EventSource reconnects.
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// `base64(user:pass)`, for EventSource, which cannot send an `Authorization` header.
    pub auth: Option<String>,
}

/// The page's messages after `after` as they are appended: events named `message` whose data
/// is the envelope and whose id is its `seq`.
#[utoipa::path(get, path = "/pages/{page}/stream", tag = "messages",
    security(("basicAuth" = []), ("internalKey" = []), ("bearerAuth" = [])),
    params(("page" = String, Path, description = "Page id"), StreamQuery),
    responses(
        (status = 200, description = "An event stream of envelopes", content_type = "text/event-stream"),
        (status = 400, description = "`after` or `Last-Event-ID` is not a sequence number", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such page", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_page_stream(
    State(gateway): State<Gateway>,
    Path(page): Path<String>,
    headers: HeaderMap,
    Query(query): Query<StreamQuery>,
) -> Result<Response, Problem> {
    let page = parse_page(&page)?;
    let after = match headers.get("last-event-id") {
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .ok_or_else(|| {
                Problem::bad_request("The Last-Event-ID header is not a sequence number.")
                    .field("Last-Event-ID", "expected an integer")
            })?,
        None => query.after.unwrap_or(0),
    };
    if after < 0 {
        return Err(Problem::bad_request("after must be 0 or more.").field("after", "negative"));
    }
    gateway.require_page(&page).await?;
    let follower = Follower {
        gateway,
        page,
        after,
        buffer: VecDeque::new(),
    };
    let mut response = Sse::new(follower.into_stream())
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response();
    // Proxies such as nginx would otherwise hold events back.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// One stream's position in the page log.
struct Follower {
    gateway: Gateway,
    page: PageId,
    /// Every message up to this seq has been sent.
    after: i64,
    buffer: VecDeque<Envelope>,
}

impl Follower {
    fn into_stream(self) -> impl Stream<Item = Result<Event, Infallible>> {
        futures::stream::unfold(self, |mut follower| async move {
            let event = follower.next().await?;
            Some((Ok(event), follower))
        })
    }

    /// The next event, or `None` when the service shuts down or the page is gone.
    async fn next(&mut self) -> Option<Event> {
        let shutdown = self.gateway.shutdown.clone();
        loop {
            if let Some(envelope) = self.buffer.pop_front() {
                match Event::default()
                    .id(envelope.seq.to_string())
                    .event("message")
                    .json_data(&envelope)
                {
                    Ok(event) => return Some(event),
                    Err(error) => {
                        tracing::error!(%error, id = %envelope.id, "cannot encode an envelope");
                        continue;
                    }
                }
            }
            let read = tokio::select! {
                read = self.gateway.log.wait_after(&self.page, self.after, WAIT) => read,
                () = shutdown.cancelled() => return None,
            };
            match read {
                Ok(envelopes) => {
                    if let Some(last) = envelopes.last() {
                        self.after = last.seq;
                    }
                    self.buffer.extend(envelopes);
                }
                Err(PageError::UnknownPage(_)) => return None,
                Err(error) => {
                    tracing::warn!(%error, page = %self.page, "reading a page stream failed");
                    tokio::select! {
                        () = tokio::time::sleep(RETRY) => {}
                        () = shutdown.cancelled() => return None,
                    }
                }
            }
        }
    }
}
