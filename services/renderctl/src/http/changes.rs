//! `GET /render/changes` (what renderctl changed on Render) and `GET /render/monitor` (what
//! the deploy monitor found and did).

use autonoma_common::Problem;
use autonoma_common::extract::{Json, Query};
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{TAG, limit_param};
use crate::Renderctl;
use crate::changes::ChangeOut;
use crate::monitor::{self, FindingOut};

pub fn router() -> OpenApiRouter<Renderctl> {
    OpenApiRouter::new()
        .routes(routes!(list_changes))
        .routes(routes!(list_findings))
}

const MAX_LIMIT: u32 = 200;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ChangesQuery {
    /// Only changes to this Render id (srv-…, evg-…).
    pub target_id: Option<String>,
    /// Changes older than this record id (the previous page's `nextBefore`).
    pub before: Option<i64>,
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangesOut {
    pub items: Vec<ChangeOut>,
    pub next_before: Option<i64>,
}

/// Every change renderctl made on Render, newest first: who, what, before, after (settings and
/// env keys, never env values) and Render's answer.
#[utoipa::path(get, path = "/render/changes", tag = TAG,
    security(("basicAuth" = []), ("internalKey" = [])),
    params(ChangesQuery),
    responses(
        (status = 200, body = ChangesOut),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_changes(
    State(app): State<Renderctl>,
    Query(query): Query<ChangesQuery>,
) -> Result<Json<ChangesOut>, Problem> {
    let limit = limit_param(query.limit, 50, MAX_LIMIT)?;
    let items = app
        .recorder
        .list(query.target_id.as_deref(), query.before, limit)
        .await?;
    let next_before = (items.len() as u32 == limit)
        .then(|| items.last().map(|c| c.id))
        .flatten();
    Ok(Json(ChangesOut { items, next_before }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FindingsQuery {
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// Failed deploys the monitor looked at, newest first, with what it did about each.
#[utoipa::path(get, path = "/render/monitor", tag = TAG,
    security(("basicAuth" = []), ("internalKey" = [])),
    params(FindingsQuery),
    responses(
        (status = 200, body = Vec<FindingOut>),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_findings(
    State(app): State<Renderctl>,
    Query(query): Query<FindingsQuery>,
) -> Result<Json<Vec<FindingOut>>, Problem> {
    let limit = limit_param(query.limit, 50, MAX_LIMIT)?;
    let Some(pool) = app.recorder.pool() else {
        return Ok(Json(Vec::new()));
    };
    Ok(Json(monitor::findings(pool, limit).await?))
}
