//! `POST /render/blueprint/apply`: reconciles Render with `render.yaml` (`dryRun` shows the
//! plan without changing anything).

use autonoma_common::Problem;
use autonoma_common::extract::Json;
use autonoma_common::problem::FieldError;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{TAG, actor, render_problem};
use crate::Renderctl;
use crate::blueprint::{apply, plan};
use crate::changes::Origin;

pub fn router() -> OpenApiRouter<Renderctl> {
    OpenApiRouter::new().routes(routes!(apply_blueprint))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplyIn {
    /// `true` returns the plan and changes nothing; `false` carries it out. Required, so
    /// nothing is applied by accident.
    pub dry_run: bool,
}

/// Reads `render.yaml` (`RENDER_BLUEPRINT_PATH`), validates it against Render's Blueprint
/// schema, compares it with Render and returns the plan: databases and env groups to create,
/// services to create or update, env additions, changes and removals (keys only, never
/// values), links and deploys. Without `dryRun` the plan is applied in that order; applying
/// twice leaves an empty plan.
#[utoipa::path(post, path = "/render/blueprint/apply", tag = TAG,
    security(("basicAuth" = []), ("internalKey" = [])),
    request_body = ApplyIn,
    responses(
        (status = 200, description = "The plan (dry run), or what was applied", body = Object),
        (status = 422, description = "render.yaml is not valid (every problem listed)", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "Render refused a step; the steps already applied are listed", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ))]
async fn apply_blueprint(
    State(app): State<Renderctl>,
    headers: HeaderMap,
    Json(body): Json<ApplyIn>,
) -> Result<Json<Value>, Problem> {
    let blueprint = app.read_blueprint().await.map_err(|errors| {
        Problem::validation(
            format!(
                "{} is not a valid Render Blueprint; nothing was changed.",
                app.blueprint_path().display()
            ),
            errors.into_iter().map(|error| FieldError {
                field: error.path,
                message: error.message,
            }),
        )
        .kind("invalid-blueprint")
    })?;
    app.require_token()?;
    let owner = app.owner_id().await?;
    let target = app.target(&owner);
    if body.dry_run {
        let plan = plan::plan(&target, &blueprint).await?;
        return Ok(Json(json!({ "dryRun": true, "plan": plan })));
    }
    match apply::apply(
        &target,
        &blueprint,
        &app.recorder,
        &actor(&headers),
        Origin::Blueprint,
    )
    .await
    {
        Ok(report) => Ok(Json(json!({
            "dryRun": false,
            "plan": report.plan,
            "applied": report.applied,
            "rounds": report.rounds,
            "remaining": report.remaining,
        }))),
        Err(failed) => {
            let mut problem = render_problem(failed.error);
            if problem.status().is_client_error() || problem.status() == StatusCode::BAD_GATEWAY {
                problem.status = StatusCode::BAD_GATEWAY.as_u16();
                problem.title = "Blueprint apply stopped".into();
            }
            Err(problem
                .extension(
                    "failedStep",
                    json!({ "action": failed.action, "target": failed.target }),
                )
                .extension("applied", json!(failed.applied)))
        }
    }
}
