//! `/api/sessions/{id}/preview/proxy/*`: the live preview ([`crate::preview`]).

use autonoma_common::Problem;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use utoipa_axum::router::OpenApiRouter;

use super::parse_session;
use crate::Sandbox;

pub fn router() -> OpenApiRouter<Sandbox> {
    OpenApiRouter::new()
        .route("/api/sessions/{id}/preview/proxy", any(proxy))
        .route("/api/sessions/{id}/preview/proxy/", any(proxy))
        .route("/api/sessions/{id}/preview/proxy/{*rest}", any(proxy))
}

async fn proxy(
    State(sandbox): State<Sandbox>,
    Path(params): Path<Vec<(String, String)>>,
    request: Request,
) -> Response {
    let id = params
        .iter()
        .find(|(name, _)| name == "id")
        .map(|(_, value)| value.as_str())
        .unwrap_or_default();
    let live = match parse_session(id) {
        Ok(id) => sandbox.live(id).await,
        Err(problem) => Err::<_, Problem>(problem),
    };
    match live {
        Ok(live) => crate::preview::proxy(&sandbox, &live, request).await,
        Err(problem) => problem.into_response(),
    }
}
