//! `GET /logs/stream`: new records as Server-Sent Events.
//!
//! One `LISTEN autonoma_logs` connection per process publishes the settled id (every id up to
//! it is committed or never will be; see `writer`) on a watch channel; each client, when woken,
//! reads the records after the last one it sent and up to that id from the table, a page at a
//! time. A slow client only falls behind in the table, never in memory.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use autonoma_common::Problem;
use autonoma_common::auth::require_stream_auth;
use autonoma_common::extract::Query;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::from_fn;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::Deserialize;
use sqlx::postgres::PgListener;
use sqlx::{PgPool, QueryBuilder};
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::model::{Filters, LOG_COLUMNS, Level, LogOut};
use crate::query::{FilterParams, filters, invalid};
use crate::writer::{CHANNEL, SETTLED_ID};

/// Records read per query while catching up.
const PAGE: i64 = 500;
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Clients look for new records at least this often, even without a notification.
const POLL_FALLBACK: Duration = Duration::from_secs(10);
const LISTEN_RETRY_MAX: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct StreamState {
    pool: PgPool,
    newest: watch::Receiver<i64>,
    shutdown: CancellationToken,
}

pub fn router(state: StreamState) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(get_logs_stream))
        .route_layer(from_fn(require_stream_auth))
        .with_state(state)
}

/// The settled log id, as published by [`listen`].
pub struct Newest {
    tx: watch::Sender<i64>,
}

impl Newest {
    pub fn new() -> Self {
        Newest {
            tx: watch::Sender::new(0),
        }
    }

    pub fn state(&self, pool: PgPool, shutdown: CancellationToken) -> StreamState {
        StreamState {
            pool,
            newest: self.tx.subscribe(),
            shutdown,
        }
    }

    fn publish(&self, id: i64) {
        self.tx.send_if_modified(|newest| {
            let newer = id > *newest;
            if newer {
                *newest = id;
            }
            newer
        });
    }
}

impl Default for Newest {
    fn default() -> Self {
        Newest::new()
    }
}

/// Publishes the settled id after every (re)connect, which covers notifications missed while
/// disconnected, and after every notification of a settled write, until `shutdown`.
pub async fn listen(newest: Newest, pool: PgPool, shutdown: CancellationToken) {
    let mut delay = Duration::from_millis(250);
    loop {
        let session = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            newest.publish(settled_id(&pool).await?);
            delay = Duration::from_millis(250);
            while listener.try_recv().await?.is_some() {
                // One look covers every write settled so far.
                while listener.next_buffered().is_some() {}
                newest.publish(settled_id(&pool).await?);
            }
            Ok::<(), sqlx::Error>(())
        };
        tokio::select! {
            ended = session => match ended {
                Ok(()) => tracing::warn!("log notification connection lost; reconnecting"),
                Err(error) => tracing::warn!(%error, retry_in = ?delay, "cannot listen for new log records"),
            },
            () = shutdown.cancelled() => return,
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.cancelled() => return,
        }
        delay = (delay * 2).min(LISTEN_RETRY_MAX);
    }
}

/// Query parameters of `GET /logs/stream`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Only records of this service.
    pub service: Option<String>,
    /// Minimum level: `warn` streams warn and error.
    #[param(value_type = Option<Level>)]
    pub level: Option<Level>,
    pub trace_id: Option<String>,
    pub correlation_id: Option<String>,
    pub task_id: Option<Uuid>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<OffsetDateTime>,
    pub q: Option<String>,
    /// Resume after this id (for clients that cannot send the `Last-Event-ID` header; the
    /// header wins when both are present).
    pub last_event_id: Option<i64>,
}

/// Live records matching the filters, as `event: log` with `id: <log id>` and the record as
/// JSON in `data`. Resumes after `Last-Event-ID` (header, or `lastEventId`); without one, it
/// starts at the newest record, so only records written later are sent. A comment is sent
/// every 15 s to keep the connection open.
#[utoipa::path(get, path = "/logs/stream", tag = "logs",
    security(("basicAuth" = []), ("internalKey" = [])),
    params(
        StreamQuery,
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this log id"),
        ("auth" = Option<String>, Query, description = "Basic Auth credentials as base64(user:password), for EventSource"),
    ),
    responses(
        (status = 200, description = "An event stream of LogOut records", content_type = "text/event-stream", body = String),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_logs_stream(
    State(state): State<StreamState>,
    headers: HeaderMap,
    Query(query): Query<StreamQuery>,
) -> Result<Response, Problem> {
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
    let resume = match headers.get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .ok_or_else(|| {
                    Problem::bad_request("The Last-Event-ID header is not a log id.")
                        .kind("invalid-header")
                        .field("Last-Event-ID", "expected an integer")
                })?,
        ),
        None => query.last_event_id,
    };
    if resume.is_some_and(|id| id < 0) {
        return Err(invalid("lastEventId", "must not be negative"));
    }
    let after = match resume {
        Some(id) => id,
        None => settled_id(&state.pool).await?,
    };

    let follower = Follower {
        pool: state.pool,
        filters: Arc::new(filters),
        after,
        newest: state.newest,
        shutdown: state.shutdown,
        buffer: VecDeque::new(),
        more: true,
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

/// One client's position in the table.
struct Follower {
    pool: PgPool,
    filters: Arc<Filters>,
    /// Every record with a smaller or equal id has been sent or does not match.
    after: i64,
    newest: watch::Receiver<i64>,
    shutdown: CancellationToken,
    buffer: VecDeque<LogOut>,
    /// The last read filled a page, so more may follow at once.
    more: bool,
}

impl Follower {
    fn into_stream(self) -> impl Stream<Item = Result<Event, Infallible>> {
        futures::stream::unfold(self, |mut follower| async move {
            let event = follower.next().await?;
            Some((Ok(event), follower))
        })
    }

    /// The next event, or `None` when the service shuts down.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(record) = self.buffer.pop_front() {
                match Event::default()
                    .id(record.id.to_string())
                    .event("log")
                    .json_data(&record)
                {
                    Ok(event) => return Some(event),
                    Err(error) => {
                        tracing::error!(%error, id = record.id, "cannot encode a log record");
                        continue;
                    }
                }
            }
            if self.shutdown.is_cancelled() {
                return None;
            }
            if !self.more {
                tokio::select! {
                    changed = self.newest.changed() => changed.ok()?,
                    () = tokio::time::sleep(POLL_FALLBACK) => {}
                    () = self.shutdown.cancelled() => return None,
                }
            }
            // Every id up to the published one is settled, and visible to the read below.
            let committed = *self.newest.borrow_and_update();
            match self.read(committed).await {
                Ok(records) => {
                    self.more = records.len() as i64 == PAGE;
                    if let Some(last) = records.last() {
                        self.after = last.id;
                    }
                    if !self.more {
                        self.after = self.after.max(committed);
                    }
                    self.buffer.extend(records);
                }
                Err(error) => {
                    tracing::warn!(%error, "reading new log records for a stream failed");
                    self.more = true;
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = self.shutdown.cancelled() => return None,
                    }
                }
            }
        }
    }

    /// The next page after `after`, up to `settled`: a record beyond it may be passed by one
    /// with a smaller id that commits later.
    async fn read(&self, settled: i64) -> Result<Vec<LogOut>, sqlx::Error> {
        let mut sql = QueryBuilder::new(format!("SELECT {LOG_COLUMNS} FROM logs WHERE id > "));
        sql.push_bind(self.after);
        sql.push(" AND id <= ").push_bind(settled);
        self.filters.push_sql(&mut sql);
        sql.push(" ORDER BY id LIMIT ").push_bind(PAGE);
        sql.build_query_as().fetch_all(&self.pool).await
    }
}

/// Every id up to this one is committed or will never be (`logs_settled_id()`).
async fn settled_id(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(SETTLED_ID).fetch_one(pool).await
}
