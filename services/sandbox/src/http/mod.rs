//! The HTTP API (Basic Auth or an internal key), following the seed's shape:
//! `POST /api/sessions`, `GET /api/sessions`, `GET /api/sessions/{id}/state`,
//! `DELETE /api/sessions/{id}`, the tools under `/api/sessions/{id}/` (`fs/list`, `fs/read`,
//! `fs/write`, `exec`, `install`, `dev/start`, `dev/stop`, `http/fetch`, `checkpoints`), the
//! recorded `tool-calls`, the WebSocket `logs`, and the `preview/proxy/*` (browsers may pass
//! `?auth=` on the last two; the preview answers with a cookie that opens it for the page's
//! own requests).
//! [`router`] also mounts the MCP endpoint of each session ([`crate::mcp`]).

pub mod logs;
pub mod preview;
pub mod sessions;
pub mod tools;

use autonoma_common::Problem;
use autonoma_common::auth::{require_operator, require_stream_auth};
use axum::middleware::from_fn;
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use crate::Sandbox;

pub const TAG: &str = "sessions";

pub fn router(sandbox: Sandbox) -> OpenApiRouter {
    let api = sessions::router()
        .merge(tools::router(sandbox.limits()))
        .route_layer(from_fn(require_operator))
        .with_state(sandbox.clone());
    let browser = logs::router()
        .route_layer(from_fn(require_stream_auth))
        .merge(preview::router(sandbox.clone()))
        .with_state(sandbox.clone());
    api.merge(browser).merge(crate::mcp::router(sandbox))
}

pub fn parse_session(id: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(id).map_err(|_| {
        Problem::not_found(format!("No session {id:?}: session ids are UUIDs."))
            .kind("session-not-found")
    })
}
