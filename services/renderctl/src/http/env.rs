//! `PATCH /render/services/{id}/env`: merge (default), replace or clear a service's env vars,
//! optionally deploying afterwards (Render applies env changes on the next deploy).

use std::collections::{BTreeMap, BTreeSet};

use autonoma_common::Problem;
use autonoma_common::extract::Json;
use autonoma_common::problem::FieldError;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{TAG, actor};
use crate::Renderctl;
use crate::changes::{NewChange, Origin};
use crate::render::{Deploy, EnvVarInput, EnvVarValue};

pub fn router() -> OpenApiRouter<Renderctl> {
    OpenApiRouter::new().routes(routes!(patch_env))
}

const MAX_VARS: usize = 500;
const MAX_VALUE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum EnvMode {
    /// Set the given keys, delete those in `remove`, keep every other key.
    #[default]
    Merge,
    /// The given keys become the service's whole env; every other key is deleted.
    Replace,
    /// Delete every env var (`envVars` must be empty).
    Clear,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvPatch {
    #[serde(default)]
    pub mode: EnvMode,
    /// Keys and values to set.
    #[serde(default)]
    pub env_vars: BTreeMap<String, String>,
    /// Keys to delete (merge mode).
    #[serde(default)]
    pub remove: Vec<String>,
    /// Trigger a deploy once the env is written, so the change takes effect.
    #[serde(default)]
    pub deploy: bool,
}

/// What changed, by key; values are never echoed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvOut {
    pub service_id: String,
    pub mode: EnvMode,
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: usize,
    /// The deploy started when `deploy` was asked for (absent if Render only queued one).
    pub deploy: Option<Deploy>,
    pub deploy_requested: bool,
}

pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 256
        && !key.starts_with(|c: char| c.is_ascii_digit())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl EnvPatch {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut bad = |field: String, message: &str| {
            errors.push(FieldError {
                field,
                message: message.to_owned(),
            })
        };
        if self.env_vars.len() > MAX_VARS {
            bad("/envVars".into(), "at most 500 variables");
        }
        for (key, value) in &self.env_vars {
            if !valid_key(key) {
                bad(
                    format!("/envVars/{key}"),
                    "env var names are letters, digits and _, not starting with a digit",
                );
            }
            if value.len() > MAX_VALUE_BYTES {
                bad(format!("/envVars/{key}"), "values are at most 64 KiB");
            }
        }
        for (index, key) in self.remove.iter().enumerate() {
            if self.mode != EnvMode::Merge {
                bad(
                    format!("/remove/{index}"),
                    "only merge mode removes single keys",
                );
            } else if self.env_vars.contains_key(key) {
                bad(format!("/remove/{index}"), "is also in envVars");
            }
        }
        if self.mode == EnvMode::Clear && !self.env_vars.is_empty() {
            bad("/envVars".into(), "must be empty to clear");
        }
        errors
    }
}

/// Writes env vars of a service: `merge` (default) sets the given keys one by one and keeps
/// the rest, `replace` makes the given keys the whole env, `clear` removes everything. With
/// `deploy: true` a deploy follows so the change takes effect.
#[utoipa::path(patch, path = "/render/services/{id}/env", tag = TAG,
    security(("basicAuth" = []), ("internalKey" = [])),
    params(("id" = String, Path, description = "Render service id (srv-…)")),
    request_body = EnvPatch,
    responses(
        (status = 200, body = EnvOut),
        (status = 404, description = "No such service on Render", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ))]
async fn patch_env(
    State(app): State<Renderctl>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(patch): Json<EnvPatch>,
) -> Result<Json<EnvOut>, Problem> {
    let errors = patch.validate();
    if !errors.is_empty() {
        return Err(Problem::validation("The env patch is not valid.", errors));
    }
    app.require_token()?;
    let service = app.client.get_service(&id).await?;
    let current: BTreeMap<String, String> = app
        .client
        .list_env_vars(&id)
        .await?
        .into_iter()
        .map(|var| (var.key, var.value))
        .collect();
    let mut added = Vec::new();
    let mut changed = Vec::new();
    let mut unchanged = 0;
    for (key, value) in &patch.env_vars {
        match current.get(key) {
            None => added.push(key.clone()),
            Some(have) if have != value => changed.push(key.clone()),
            Some(_) => unchanged += 1,
        }
    }
    let removed: Vec<String> = match patch.mode {
        EnvMode::Merge => patch
            .remove
            .iter()
            .filter(|key| current.contains_key(*key))
            .cloned()
            .collect(),
        EnvMode::Replace | EnvMode::Clear => current
            .keys()
            .filter(|key| !patch.env_vars.contains_key(*key))
            .cloned()
            .collect(),
    };
    let who = actor(&headers);
    let before_keys: BTreeSet<&String> = current.keys().collect();
    match patch.mode {
        EnvMode::Merge => {
            for key in added.iter().chain(&changed) {
                let value = EnvVarValue::Value {
                    value: patch.env_vars[key].clone(),
                };
                let record = NewChange::new(&who, Origin::Api, "put_env_var", &service.name)
                    .target_id(&id)
                    .after(json!({ "key": key, "change": if added.contains(key) { "add" } else { "change" } }));
                let result = app.client.put_env_var(&id, key, &value).await;
                app.recorder
                    .record(
                        record,
                        result.as_ref().map(|_| (200, json!({ "key": key }))),
                    )
                    .await;
                result?;
            }
            for key in &removed {
                let record = NewChange::new(&who, Origin::Api, "delete_env_var", &service.name)
                    .target_id(&id)
                    .before(json!({ "key": key }));
                let result = app.client.delete_env_var(&id, key).await;
                app.recorder
                    .record(
                        record,
                        result.as_ref().map(|_| (204, json!({ "key": key }))),
                    )
                    .await;
                result?;
            }
        }
        EnvMode::Replace | EnvMode::Clear => {
            let vars: Vec<EnvVarInput> = patch
                .env_vars
                .iter()
                .map(|(key, value)| EnvVarInput::Value {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect();
            let action = if patch.mode == EnvMode::Clear {
                "clear_env"
            } else {
                "replace_env"
            };
            let record = NewChange::new(&who, Origin::Api, action, &service.name)
                .target_id(&id)
                .before(json!({ "keys": before_keys }))
                .after(json!({ "keys": patch.env_vars.keys().collect::<Vec<_>>() }));
            let result = app.client.replace_env_vars(&id, &vars).await;
            app.recorder
                .record(
                    record,
                    result
                        .as_ref()
                        .map(|now| (200, json!({ "count": now.len() }))),
                )
                .await;
            result?;
        }
    }
    let deploy = if patch.deploy {
        let record = NewChange::new(&who, Origin::Api, "deploy", &service.name)
            .target_id(&id)
            .after(json!({ "reason": "env vars changed" }));
        let result = app.client.trigger_deploy(&id, false).await;
        app.recorder
            .record(record, crate::changes::deploy_answer(&result))
            .await;
        result?.deploy
    } else {
        None
    };
    Ok(Json(EnvOut {
        service_id: id,
        mode: patch.mode,
        added,
        changed,
        removed,
        unchanged,
        deploy,
        deploy_requested: patch.deploy,
    }))
}
