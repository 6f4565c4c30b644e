//! `GET /ws`: task updates and log records, live.
//!
//! Browsers authenticate with `?auth=<base64(user:pass)>` on the upgrade (or the
//! `Authorization` header), and their Origin must be in `WS_ALLOWED_ORIGINS` (checked for every
//! request by the server bootstrap). Subscription filters come from the query string and can be
//! replaced at any time with a `{"type":"subscribe", …}` message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use autonoma_common::auth::require_stream_auth;
use autonoma_common::extract::Query;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::middleware::from_fn;
use axum::response::Response;
use axum::routing::get;
use futures::SinkExt;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
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

pub fn router(state: AppState) -> OpenApiRouter {
    OpenApiRouter::new()
        .route("/ws", get(get_ws))
        .route_layer(from_fn(require_stream_auth))
        .with_state(state)
}

/// What a client wants to see. Task frames pass when every filter set matches; log frames
/// pass (when `logs` is on) if no id filter is set or one of the set ids matches.
#[derive(Debug, Clone, Default, Deserialize, Serialize, IntoParams)]
#[serde(rename_all = "camelCase")]
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

/// Upgrades to a WebSocket streaming JSON frames: `{"type":"task","event":…,"task":…}` for
/// every task change and `{"type":"log","log":…}` for log records.
async fn get_ws(
    State(state): State<AppState>,
    Query(subscription): Query<Subscription>,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade.on_upgrade(move |socket| serve(socket, state, subscription))
}

async fn serve(mut socket: WebSocket, state: AppState, mut subscription: Subscription) {
    let mut frames = state.hub.subscribe();
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
                    let wanted = batch.iter().filter(|f| subscription.matches(f));
                    if !send_all(&mut socket, wanted).await {
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
                Some(Ok(Message::Text(text))) => match serde_json::from_str::<ClientMessage>(&text) {
                    Ok(ClientMessage::Subscribe(next)) => {
                        subscription = next;
                        let ack = serde_json::json!({"type": "subscribed", "subscription": subscription}).to_string();
                        if socket.send(Message::Text(ack.into())).await.is_err() {
                            return;
                        }
                    }
                    Err(error) => {
                        let reply = serde_json::json!({"type": "error", "message": format!("not understood: {error}")}).to_string();
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
                if socket.send(Message::Ping(Default::default())).await.is_err() {
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
    matches!(tokio::time::timeout(SEND_WITHIN, write).await, Ok(Ok(())))
}

async fn too_slow(socket: &mut WebSocket, missed: u64) {
    tracing::info!(missed, "WebSocket client too slow; disconnecting");
    let close = CloseFrame {
        code: TOO_SLOW,
        reason: "too slow: reconnect and refetch".into(),
    };
    let _ = socket.send(Message::Close(Some(close))).await;
}
