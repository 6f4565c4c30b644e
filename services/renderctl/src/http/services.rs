//! `POST /render/services`, `GET /render/services`, `GET /render/services/{id}`.

use std::collections::BTreeMap;

use autonoma_common::Problem;
use autonoma_common::extract::{Json, Query};
use autonoma_common::problem::FieldError;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{TAG, actor, limit_param, next_cursor};
use crate::Renderctl;
use crate::changes::{NewChange, Origin};
use crate::render::{
    DockerDetailsIn, EnvVarInput, PAGE_LIMIT, Service, ServiceDetailsIn, ServiceFilter,
    ServicePost, ServiceType,
};

pub fn router() -> OpenApiRouter<Renderctl> {
    OpenApiRouter::new()
        .routes(routes!(create_service, list_services))
        .routes(routes!(get_service))
}

const MAX_NAME: usize = 100;
const MAX_ENV_VARS: usize = 500;

/// A service to create. Docker web services need no more than a name and a repo; static sites
/// take `buildCommand` and `publishPath`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceIn {
    pub name: String,
    /// `web_service` (default), `static_site`, `private_service` or `background_worker`.
    #[serde(rename = "type", default = "web_service")]
    pub kind: ServiceType,
    /// Repository URL; defaults to `RENDER_REPO`.
    pub repo: Option<String>,
    pub branch: Option<String>,
    pub auto_deploy: Option<bool>,
    pub root_dir: Option<String>,
    /// Instance type (`starter`, `standard`, …); not for static sites.
    pub plan: Option<String>,
    pub region: Option<String>,
    pub health_check_path: Option<String>,
    pub num_instances: Option<u32>,
    pub dockerfile_path: Option<String>,
    pub docker_context: Option<String>,
    pub docker_command: Option<String>,
    pub build_command: Option<String>,
    pub publish_path: Option<String>,
    /// Env vars the service starts with.
    #[serde(default)]
    pub env_vars: BTreeMap<String, String>,
}

fn web_service() -> ServiceType {
    ServiceType::WebService
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceCreatedOut {
    pub service: Service,
    /// The first deploy Render started, if it reported one.
    pub deploy_id: Option<String>,
}

impl ServiceIn {
    fn validate(&self, default_repo: Option<&str>) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut bad = |field: &str, message: String| {
            errors.push(FieldError {
                field: field.into(),
                message,
            })
        };
        let name = self.name.trim();
        if name.is_empty() || name.len() > MAX_NAME {
            bad("/name", format!("must be 1 to {MAX_NAME} characters"));
        }
        if self.kind == ServiceType::CronJob {
            bad(
                "/type",
                "cron_job services are not created by renderctl".into(),
            );
        }
        if self.repo.is_none() && default_repo.is_none() {
            bad(
                "/repo",
                "is required (or set RENDER_REPO, the repository render.yaml lives in)".into(),
            );
        }
        let is_static = self.kind == ServiceType::StaticSite;
        let web_only = [
            ("/plan", self.plan.is_some()),
            ("/healthCheckPath", self.health_check_path.is_some()),
            ("/numInstances", self.num_instances.is_some()),
            ("/dockerfilePath", self.dockerfile_path.is_some()),
            ("/dockerContext", self.docker_context.is_some()),
            ("/dockerCommand", self.docker_command.is_some()),
        ];
        let static_only = [
            ("/buildCommand", self.build_command.is_some()),
            ("/publishPath", self.publish_path.is_some()),
        ];
        for (field, set) in if is_static {
            &web_only[..]
        } else {
            &static_only[..]
        } {
            if *set {
                let kind = self.kind.as_str();
                bad(field, format!("does not apply to a {kind}"));
            }
        }
        if self.num_instances == Some(0) {
            bad("/numInstances", "must be at least 1".into());
        }
        if self.env_vars.len() > MAX_ENV_VARS {
            bad("/envVars", format!("at most {MAX_ENV_VARS} variables"));
        }
        for key in self.env_vars.keys() {
            if !super::env::valid_key(key) {
                bad(
                    &format!("/envVars/{key}"),
                    "env var names are letters, digits and _, not starting with a digit".into(),
                );
            }
        }
        errors
    }

    fn into_post(self, owner_id: String, default_repo: Option<&str>) -> ServicePost {
        let details = if self.kind == ServiceType::StaticSite {
            ServiceDetailsIn {
                build_command: self.build_command,
                publish_path: self.publish_path,
                ..ServiceDetailsIn::default()
            }
        } else {
            let docker = DockerDetailsIn {
                dockerfile_path: self.dockerfile_path,
                docker_context: self.docker_context,
                docker_command: self.docker_command,
            };
            ServiceDetailsIn {
                runtime: Some("docker".into()),
                plan: self.plan,
                region: self.region,
                health_check_path: self.health_check_path,
                num_instances: self.num_instances,
                env_specific_details: (docker != DockerDetailsIn::default()).then_some(docker),
                ..ServiceDetailsIn::default()
            }
        };
        ServicePost {
            kind: self.kind,
            name: self.name.trim().to_owned(),
            owner_id,
            repo: self.repo.or_else(|| default_repo.map(str::to_owned)),
            branch: self.branch,
            auto_deploy: self
                .auto_deploy
                .map(|on| if on { "yes" } else { "no" }.to_owned()),
            root_dir: self.root_dir,
            env_vars: self
                .env_vars
                .into_iter()
                .map(|(key, value)| EnvVarInput::Value { key, value })
                .collect(),
            service_details: Some(details),
        }
    }
}

/// Creates a service on Render (a Docker web service unless `type` says otherwise); Render
/// starts its first deploy.
#[utoipa::path(post, path = "/render/services", tag = TAG,
    security(("basicAuth" = []), ("internalKey" = [])),
    request_body = ServiceIn,
    responses(
        (status = 201, body = ServiceCreatedOut),
        (status = 409, description = "A service of that name exists", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid service, or refused by Render", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "RENDER_API_TOKEN is not set, or Render is rate-limiting", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_service(
    State(app): State<Renderctl>,
    headers: HeaderMap,
    Json(service): Json<ServiceIn>,
) -> Result<(StatusCode, Json<ServiceCreatedOut>), Problem> {
    let errors = service.validate(app.default_repo());
    if !errors.is_empty() {
        return Err(Problem::validation("The service is not valid.", errors));
    }
    app.require_token()?;
    let owner = app.owner_id().await?;
    let post = service.into_post(owner, app.default_repo());
    let env_keys: Vec<&str> = post.env_vars.iter().map(EnvVarInput::key).collect();
    let record =
        NewChange::new(&actor(&headers), Origin::Api, "create_service", &post.name).after(json!({
            "type": post.kind, "repo": post.repo, "branch": post.branch, "rootDir": post.root_dir,
            "serviceDetails": post.service_details, "envKeys": env_keys,
        }));
    let result = app.client.create_service(&post).await;
    let answer = result.as_ref().map(|created| {
        (
            201,
            json!({ "id": created.service.id, "deployId": created.deploy_id }),
        )
    });
    let record = match &result {
        Ok(created) => record.target_id(&created.service.id),
        Err(_) => record,
    };
    app.recorder.record(record, answer).await;
    let created = result?;
    Ok((
        StatusCode::CREATED,
        Json(ServiceCreatedOut {
            service: created.service,
            deploy_id: created.deploy_id,
        }),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ServicesQuery {
    /// Exact service names, comma-separated.
    pub name: Option<String>,
    /// Service types: `web_service`, `static_site`, `private_service`, `background_worker`,
    /// `cron_job` (comma-separated).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: Option<String>,
    /// From a previous page's `nextCursor`.
    pub cursor: Option<String>,
    /// 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServicesOut {
    pub items: Vec<Service>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The workspace's services, filtered by name or type, one page at a time (Render's cursors).
#[utoipa::path(get, path = "/render/services", tag = TAG,
    security(("basicAuth" = []), ("internalKey" = [])),
    params(ServicesQuery),
    responses(
        (status = 200, body = ServicesOut),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_services(
    State(app): State<Renderctl>,
    Query(query): Query<ServicesQuery>,
) -> Result<Json<ServicesOut>, Problem> {
    let limit = limit_param(query.limit, 20, PAGE_LIMIT)?;
    let mut types = Vec::new();
    for kind in split(query.kind.as_deref()) {
        match serde_json::from_value::<ServiceType>(json!(kind)) {
            Ok(kind) => types.push(kind),
            Err(_) => {
                return Err(Problem::validation(
                    "The query is not valid.",
                    [FieldError {
                        field: "type".into(),
                        message: format!(
                            "{kind:?} is not a service type (web_service, static_site, private_service, background_worker, cron_job)"
                        ),
                    }],
                ));
            }
        }
    }
    app.require_token()?;
    let filter = ServiceFilter {
        names: split(query.name.as_deref()),
        types,
        owner_id: None,
    };
    let page = app
        .client
        .list_services(&filter, query.cursor.as_deref(), limit)
        .await?;
    let (items, next_cursor) = next_cursor(page, limit);
    Ok(Json(ServicesOut { items, next_cursor }))
}

fn split(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(str::to_owned)
        .collect()
}

/// One service as Render describes it.
#[utoipa::path(get, path = "/render/services/{id}", tag = TAG,
    security(("basicAuth" = []), ("internalKey" = [])),
    params(("id" = String, Path, description = "Render service id (srv-…)")),
    responses(
        (status = 200, body = Service),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_service(
    State(app): State<Renderctl>,
    Path(id): Path<String>,
) -> Result<Json<Service>, Problem> {
    app.require_token()?;
    Ok(Json(app.client.get_service(&id).await?))
}
