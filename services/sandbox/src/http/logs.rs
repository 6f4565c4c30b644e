//! `WS /api/sessions/{id}/logs`: the session's log as JSON text frames
//! `{seq, ts, stream, line}` (`stream` is `stdout`, `stderr`, `tool` or `system`), starting
//! with the kept lines after `?after=` (default all kept), then live.

use std::time::Duration;

use autonoma_common::Problem;
use autonoma_common::extract::Query;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{TAG, parse_session};
use crate::Sandbox;

/// A watched session stays alive: the stream counts as activity this often.
const TOUCH_EVERY: Duration = Duration::from_secs(30);

pub fn router() -> OpenApiRouter<Sandbox> {
    OpenApiRouter::new().routes(routes!(stream_logs))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Replay only lines after this `seq`.
    #[serde(default)]
    pub after: u64,
    /// Basic credentials as `base64(user:pass)`, for browsers (WebSockets cannot set headers).
    #[serde(default)]
    pub auth: Option<String>,
}

/// Upgrades to a WebSocket streaming the session's log lines.
#[utoipa::path(get, path = "/api/sessions/{id}/logs", tag = TAG,
    security(("basicAuth" = []), ("internalKey" = [])),
    params(("id" = String, Path, description = "Session id"), LogsQuery),
    responses(
        (status = 101, description = "WebSocket of `{seq, ts, stream, line}` frames"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn stream_logs(
    State(sandbox): State<Sandbox>,
    Path(id): Path<String>,
    Query(query): Query<LogsQuery>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, Problem> {
    let live = sandbox.live(parse_session(&id)?).await?;
    Ok(upgrade.on_upgrade(move |socket| serve(socket, sandbox, live, query.after)))
}

async fn serve(
    mut socket: WebSocket,
    sandbox: Sandbox,
    live: std::sync::Arc<crate::sandbox::Live>,
    after: u64,
) {
    let (backlog, mut lines) = live.logs.subscribe(after);
    for line in backlog {
        let Ok(text) = serde_json::to_string(&line) else {
            continue;
        };
        if socket.send(Message::Text(text.into())).await.is_err() {
            return;
        }
    }
    let shutdown = sandbox.shutdown_token();
    let mut touch = tokio::time::interval(TOUCH_EVERY);
    loop {
        tokio::select! {
            () = live.ended.cancelled() => {
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
            () = shutdown.cancelled() => {
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
            line = lines.recv() => match line {
                Ok(line) => {
                    let Ok(text) = serde_json::to_string(&line) else { continue };
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    let note = serde_json::json!({"stream": "system", "line": format!("{missed} lines skipped: the stream fell behind")});
                    if socket.send(Message::Text(note.to_string().into())).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Closed) => {
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
            },
            message = socket.recv() => match message {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            _ = touch.tick() => sandbox.touch(&live).await,
        }
    }
}
