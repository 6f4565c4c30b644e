//! `GET /ws`: task updates and log records, live.
//!
//! Browsers authenticate with `?auth=<base64(user:pass)>` on the upgrade (or the
//! `Authorization` header), and their Origin must be in `WS_ALLOWED_ORIGINS` (checked for every
//! request by the server bootstrap). Subscription filters come from the query string and can be
//! replaced at any time with a `{"type":"subscribe", …}` message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use autonoma_common::Problem;
use autonoma_common::auth::require_stream_auth;
use autonoma_common::extract::Query;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::middleware::from_fn;
use axum::response::Response;
use futures::SinkExt;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::hub::Frame;

const PING_EVERY: Duration = Duration::from_secs(20);
const PONG_WITHIN: Duration = Duration::from_secs(60);
const SEND_WITHIN: Duration = Duration::from_secs(10);
/// Frames written before one flush.
const SEND_BATCH: usize = 256;
/// Close code for a client that could not keep up (RFC 6455 "policy violation").
const TOO_SLOW: u16 = 1008;
/// Close code when the live feed lost its Postgres listener (RFC 6455 "service restart"):
/// changes may have been missed, so the client reconnects and refetches.
const FEED_INTERRUPTED: u16 = 1012;
/// Close code when the live feed is not listening yet (RFC 6455 "try again later").
const FEED_NOT_READY: u16 = 1013;
/// How long a new client waits for the live feed before it is told to come back.
const FEED_WAIT: Duration = Duration::from_secs(5);
/// Clients only send small subscription messages. tungstenite zero-fills its whole read
/// buffer before every read, so its default of 128 KiB cost that much memory per client and
/// that much zeroing per wake-up (each broadcast frame wakes every client).
const READ_BUFFER: usize = 4 * 1024;
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// Frames are queued up to this before they are written (and always on flush): with a
/// client that does not read, this and one frame are all its connection holds.
const WRITE_BUFFER: usize = 16 * 1024;

pub fn router(state: AppState) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(get_ws))
        .route_layer(from_fn(require_stream_auth))
        .with_state(state)
}

/// What a client wants to see. Task frames pass when every filter set matches; log frames
/// pass (when `logs` is on) if no id filter is set or one of the set ids matches.
#[derive(Debug, Clone, Default, Deserialize, Serialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct Subscription {
    task_id: Option<Uuid>,
    correlation_id: Option<String>,
    kind: Option<String>,
    trace_id: Option<String>,
    /// Include log records (default true).
    logs: Option<bool>,
}

impl Subscription {
    fn matches(&self, frame: &Frame) -> bool {
        if frame.is_log {
            if self.logs == Some(false) {
                return false;
            }
            let ids_set =
                self.task_id.is_some() || self.trace_id.is_some() || self.correlation_id.is_some();
            return !ids_set
                || (self.task_id.is_some() && self.task_id == frame.task_id)
                || (self.trace_id.is_some() && self.trace_id == frame.trace_id)
                || (self.correlation_id.is_some() && self.correlation_id == frame.correlation_id);
        }
        self.task_id.is_none_or(|id| frame.task_id == Some(id))
            && self
                .correlation_id
                .as_ref()
                .is_none_or(|c| frame.correlation_id.as_ref() == Some(c))
            && self
                .kind
                .as_ref()
                .is_none_or(|k| frame.kind.as_ref() == Some(k))
            && self
                .trace_id
                .as_ref()
                .is_none_or(|t| frame.trace_id.as_ref() == Some(t))
    }
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum ClientMessage {
    Subscribe(Subscription),
}

/// The keys of a subscribe message. A misspelt filter (`task_id`) must be an error: ignored,
/// it would quietly widen the subscription to every task.
const SUBSCRIBE_KEYS: [&str; 6] = ["type", "taskId", "correlationId", "kind", "traceId", "logs"];

impl ClientMessage {
    fn parse(text: &str) -> Result<ClientMessage, String> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|error| format!("not understood: {error}"))?;
        if let Some(unknown) = value.as_object().and_then(|object| {
            object
                .keys()
                .find(|key| !SUBSCRIBE_KEYS.contains(&key.as_str()))
        }) {
            return Err(format!(
                "unknown field `{unknown}`: a subscribe message has type, taskId, correlationId, kind, traceId and logs"
            ));
        }
        serde_json::from_value(value).map_err(|error| format!("not understood: {error}"))
    }
}

/// Upgrades to a WebSocket streaming JSON frames: `{"type":"task","event":…,"task":…}` for
/// every task change and `{"type":"log","log":…}` for log records.
#[utoipa::path(get, path = "/ws", tag = "live",
    security(("basicAuth" = []), ("internalKey" = [])),
    params(Subscription),
    responses(
        (status = 101, description = "WebSocket of task and log frames"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Origin not allowed", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_ws(
    State(state): State<AppState>,
    Query(subscription): Query<Subscription>,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .read_buffer_size(READ_BUFFER)
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .write_buffer_size(WRITE_BUFFER)
        .on_upgrade(move |socket| serve(socket, state, subscription))
}

async fn serve(mut socket: WebSocket, state: AppState, mut subscription: Subscription) {
    let Some(mut frames) = state.hub.subscribe(FEED_WAIT).await else {
        tracing::info!("live feed not listening; turning a WebSocket client away");
        close(
            &mut socket,
            FEED_NOT_READY,
            "live feed not ready: try again",
        )
        .await;
        return;
    };
    let hello = serde_json::json!({"type": "hello", "subscription": subscription}).to_string();
    if socket.send(Message::Text(hello.into())).await.is_err() {
        return;
    }
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut last_pong = Instant::now();
    loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Ok(frame) => {
                    // Queue this frame and whatever else is already waiting, then flush once.
                    let mut batch = vec![frame];
                    let mut lagged = None;
                    while batch.len() < SEND_BATCH {
                        match frames.try_recv() {
                            Ok(frame) => batch.push(frame),
                            Err(TryRecvError::Lagged(missed)) => {
                                lagged = Some(missed);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    // What came before an interruption is still sent, then the client goes.
                    let interrupted = batch.iter().position(|f| f.interrupted);
                    if let Some(at) = interrupted {
                        batch.truncate(at);
                    }
                    // Most wake-ups of a filtered client bring nothing for it: no write then.
                    let wanted: Vec<&Arc<Frame>> =
                        batch.iter().filter(|f| subscription.matches(f)).collect();
                    if !wanted.is_empty() && !send_all(&mut socket, wanted.into_iter()).await {
                        return;
                    }
                    if interrupted.is_some() {
                        close(&mut socket, FEED_INTERRUPTED, "live feed interrupted: reconnect and refetch").await;
                        return;
                    }
                    if let Some(missed) = lagged {
                        too_slow(&mut socket, missed).await;
                        return;
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    too_slow(&mut socket, missed).await;
                    return;
                }
                Err(RecvError::Closed) => return,
            },
            message = socket.recv() => match message {
                Some(Ok(Message::Text(text))) => match ClientMessage::parse(&text) {
                    Ok(ClientMessage::Subscribe(next)) => {
                        subscription = next;
                        let ack = serde_json::json!({"type": "subscribed", "subscription": subscription}).to_string();
                        if socket.send(Message::Text(ack.into())).await.is_err() {
                            return;
                        }
                    }
                    Err(message) => {
                        let reply = serde_json::json!({"type": "error", "message": message}).to_string();
                        if socket.send(Message::Text(reply.into())).await.is_err() {
                            return;
                        }
                    }
                },
                Some(Ok(Message::Pong(_))) => last_pong = Instant::now(),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if last_pong.elapsed() > PONG_WITHIN {
                    tracing::info!("WebSocket client stopped answering pings; disconnecting");
                    return;
                }
                // Bounded like frames: a client that reads nothing must not hold this task.
                let ping = socket.send(Message::Ping(Default::default()));
                if !matches!(tokio::time::timeout(SEND_WITHIN, ping).await, Ok(Ok(()))) {
                    return;
                }
            }
        }
    }
}

async fn send_all<'a>(
    socket: &mut WebSocket,
    frames: impl Iterator<Item = &'a Arc<Frame>>,
) -> bool {
    let write = async {
        for frame in frames {
            socket.feed(Message::Text(frame.text.clone())).await?;
        }
        socket.flush().await
    };
    match tokio::time::timeout(SEND_WITHIN, write).await {
        Ok(Ok(())) => true,
        // Gone.
        Ok(Err(_)) => false,
        Err(_) => {
            tracing::info!(
                within_secs = SEND_WITHIN.as_secs(),
                "WebSocket client stopped reading; disconnecting"
            );
            false
        }
    }
}

async fn too_slow(socket: &mut WebSocket, missed: u64) {
    tracing::info!(missed, "WebSocket client too slow; disconnecting");
    close(socket, TOO_SLOW, "too slow: reconnect and refetch").await;
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    // Bounded: a client that has stopped reading entirely must not hold this task either.
    let _ = tokio::time::timeout(SEND_WITHIN, socket.send(Message::Close(Some(frame)))).await;
}
