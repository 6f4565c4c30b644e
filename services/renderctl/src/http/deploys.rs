//! `POST /render/deploy/{id}`, `GET /render/services/{id}/deploys`,
//! `GET /render/services/{id}/deploys/{deployId}`.

use autonoma_common::Problem;
use autonoma_common::extract::{Json, Query};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{TAG, actor, limit_param, next_cursor};
use crate::Renderctl;
use crate::changes::{NewChange, Origin};
use crate::render::{Deploy, PAGE_LIMIT};

pub fn router() -> OpenApiRouter<Renderctl> {
    OpenApiRouter::new()
        .routes(routes!(create_deploy))
        .routes(routes!(list_deploys))
        .routes(routes!(get_deploy))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeployIn {
    /// Clear Render's build cache first.
    #[serde(default)]
    pub clear_cache: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeployOut {
    pub service_id: String,
    /// The new deploy. When Render only queued one (202, no body) this is the newest deploy
    /// Render lists, if any.
    pub deploy: Option<Deploy>,
}

/// Triggers a deploy of the service: 201 with the deploy, or 202 when Render queued it
/// behind one in progress.
#[utoipa::path(post, path = "/render/deploy/{id}", tag = TAG,
    security(("basicAuth" = []), ("internalKey" = [])),
    params(("id" = String, Path, description = "Render service id (srv-…)")),
    request_body(content = Option<DeployIn>, description = "Optional"),
    responses(
        (status = 201, body = DeployOut),
        (status = 202, description = "Render queued the deploy", body = DeployOut),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_deploy(
    State(app): State<Renderctl>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<DeployOut>), Problem> {
    let options = if body.iter().all(u8::is_ascii_whitespace) {
        DeployIn::default()
    } else {
        autonoma_common::extract::parse_json::<DeployIn>(&body)?
    };
    app.require_token()?;
    let record = NewChange::new(&actor(&headers), Origin::Api, "deploy", &id)
        .target_id(&id)
        .after(json!({ "clearCache": options.clear_cache }));
    let result = app.client.trigger_deploy(&id, options.clear_cache).await;
    app.recorder
        .record(record, crate::changes::deploy_answer(&result))
        .await;
    let triggered = result?;
    let status = if triggered.queued {
        StatusCode::ACCEPTED
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(DeployOut {
            service_id: id,
            deploy: triggered.deploy,
        }),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeploysQuery {
    pub cursor: Option<String>,
    /// 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploysOut {
    pub items: Vec<Deploy>,
    pub next_cursor: Option<String>,
}

/// The service's deploys, newest first.
#[utoipa::path(get, path = "/render/services/{id}/deploys", tag = TAG,
    security(("basicAuth" = []), ("internalKey" = [])),
    params(("id" = String, Path, description = "Render service id (srv-…)"), DeploysQuery),
    responses(
        (status = 200, body = DeploysOut),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_deploys(
    State(app): State<Renderctl>,
    Path(id): Path<String>,
    Query(query): Query<DeploysQuery>,
) -> Result<Json<DeploysOut>, Problem> {
    let limit = limit_param(query.limit, 20, PAGE_LIMIT)?;
    app.require_token()?;
    let page = app
        .client
        .list_deploys(&id, query.cursor.as_deref(), limit)
        .await?;
    let (items, next_cursor) = next_cursor(page, limit);
    Ok(Json(DeploysOut { items, next_cursor }))
}

/// One deploy of the service.
#[utoipa::path(get, path = "/render/services/{id}/deploys/{deploy_id}", tag = TAG,
    security(("basicAuth" = []), ("internalKey" = [])),
    params(
        ("id" = String, Path, description = "Render service id (srv-…)"),
        ("deploy_id" = String, Path, description = "Render deploy id (dep-…)"),
    ),
    responses(
        (status = 200, body = Deploy),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_deploy(
    State(app): State<Renderctl>,
    Path((id, deploy_id)): Path<(String, String)>,
) -> Result<Json<Deploy>, Problem> {
    app.require_token()?;
    Ok(Json(app.client.get_deploy(&id, &deploy_id).await?))
}
