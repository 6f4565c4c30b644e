//! Carries a plan out, step by step in the plan's order, recording every change. References
//! to resources created in the same run (a service's `fromService` on a new service, a link to
//! a new env group) resolve once those exist, so apply plans again after each round until the
//! plan is empty, for at most [`MAX_ROUNDS`] rounds. It stops at the first step Render refuses.

use serde::Serialize;
use serde_json::{Value, json};

use super::Blueprint;
use super::plan::{EnvOp, Plan, Step, Target, plan};
use crate::changes::{NewChange, Origin, Recorder};
use crate::render::RenderError;

pub const MAX_ROUNDS: usize = 3;

/// One step carried out.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Applied {
    pub action: &'static str,
    pub target: String,
    /// Ids Render gave back (a new service's id, a deploy id).
    pub result: Value,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyReport {
    /// The plan as it stood before anything was changed.
    pub plan: Plan,
    pub applied: Vec<Applied>,
    pub rounds: usize,
    /// What is still different after the last round (empty when Render matches).
    pub remaining: Plan,
}

#[derive(Debug)]
pub struct ApplyFailed {
    pub applied: Vec<Applied>,
    pub action: &'static str,
    pub target: String,
    pub error: RenderError,
}

pub async fn apply(
    target: &Target<'_>,
    blueprint: &Blueprint,
    recorder: &Recorder,
    actor: &str,
    origin: Origin,
) -> Result<ApplyReport, ApplyFailed> {
    let mut applied = Vec::new();
    let fail = |applied: &Vec<Applied>, error: RenderError, action, target: String| ApplyFailed {
        applied: applied.clone(),
        action,
        target,
        error,
    };
    let first = plan(target, blueprint)
        .await
        .map_err(|error| fail(&applied, error, "plan", "render.yaml".into()))?;
    let mut current = first.clone();
    let mut rounds = 0;
    while !current.is_empty() && rounds < MAX_ROUNDS {
        rounds += 1;
        for step in &current.steps {
            if let Some(done) = execute(target, step, recorder, actor, origin)
                .await
                .map_err(|error| fail(&applied, error, step.action(), step.target()))?
            {
                applied.push(done);
            }
        }
        current = plan(target, blueprint)
            .await
            .map_err(|error| fail(&applied, error, "plan", "render.yaml".into()))?;
    }
    Ok(ApplyReport {
        plan: first,
        applied,
        rounds,
        remaining: current,
    })
}

/// Runs one step; `None` when it has to wait for a later round (an id not known yet).
async fn execute(
    target: &Target<'_>,
    step: &Step,
    recorder: &Recorder,
    actor: &str,
    origin: Origin,
) -> Result<Option<Applied>, RenderError> {
    let client = target.client;
    let change = |action, name: &str| NewChange::new(actor, origin, action, name);
    let applied = |step: &Step, result: Value| Applied {
        action: step.action(),
        target: step.target(),
        result,
    };
    match step {
        Step::CreateDatabase {
            name,
            plan,
            version,
            body,
        } => {
            let record = change("create_database", name)
                .after(json!({ "plan": plan, "version": version, "region": body.region }));
            let result = client.create_postgres(body).await;
            let answer = result.as_ref().map(|db| (201, json!({ "id": db.id })));
            recorder.record(record, answer).await;
            let db = result?;
            Ok(Some(applied(step, json!({ "id": db.id }))))
        }
        Step::CreateEnvGroup { name, env, body } => {
            let record = change("create_env_group", name).after(json!({ "env": env }));
            let result = client.create_env_group(body).await;
            let answer = result
                .as_ref()
                .map(|group| (201, json!({ "id": group.id })));
            recorder.record(record, answer).await;
            let group = result?;
            Ok(Some(applied(step, json!({ "id": group.id }))))
        }
        Step::UpdateEnvGroup {
            name,
            group_id,
            env,
            ops,
        } => {
            for op in ops {
                let (action, key, result) = match op {
                    EnvOp::Put(key, value) => (
                        "put_env_group_var",
                        key,
                        client.put_env_group_var(group_id, key, value).await,
                    ),
                    EnvOp::Delete(key) => (
                        "delete_env_group_var",
                        key,
                        client.delete_env_group_var(group_id, key).await,
                    ),
                };
                let record = change(action, name)
                    .target_id(group_id)
                    .after(env_record(env, key));
                recorder
                    .record(record, result.as_ref().map(|_| (200, Value::Null)))
                    .await;
                result?;
            }
            Ok(Some(applied(step, json!({ "id": group_id }))))
        }
        Step::CreateService {
            name,
            settings,
            env,
            body,
            ..
        } => {
            let record = change("create_service", name)
                .after(json!({ "type": body.kind, "settings": settings, "env": env }));
            let result = client.create_service(body).await;
            let answer = result.as_ref().map(|created| {
                (
                    201,
                    json!({ "id": created.service.id, "deployId": created.deploy_id }),
                )
            });
            recorder.record(record, answer).await;
            let created = result?;
            Ok(Some(applied(
                step,
                json!({ "id": created.service.id, "deployId": created.deploy_id }),
            )))
        }
        Step::UpdateService {
            name,
            service_id,
            fields,
            patch,
        } => {
            let before: Value = fields
                .iter()
                .map(|f| (f.field.clone(), f.from.clone()))
                .collect::<serde_json::Map<_, _>>()
                .into();
            let after: Value = fields
                .iter()
                .map(|f| (f.field.clone(), f.to.clone()))
                .collect::<serde_json::Map<_, _>>()
                .into();
            let record = change("update_service", name)
                .target_id(service_id)
                .before(before)
                .after(after);
            let result = client.update_service(service_id, patch).await;
            recorder
                .record(record, result.as_ref().map(|_| (200, Value::Null)))
                .await;
            result?;
            Ok(Some(applied(step, json!({ "id": service_id }))))
        }
        Step::UpdateEnv {
            name,
            service_id,
            env,
            ops,
        } => {
            if ops.is_empty() {
                return Ok(None);
            }
            for op in ops {
                let (action, key, result) = match op {
                    EnvOp::Put(key, value) => (
                        "put_env_var",
                        key,
                        client.put_env_var(service_id, key, value).await.map(drop),
                    ),
                    EnvOp::Delete(key) => (
                        "delete_env_var",
                        key,
                        client.delete_env_var(service_id, key).await,
                    ),
                };
                let record = change(action, name)
                    .target_id(service_id)
                    .after(env_record(env, key));
                recorder
                    .record(record, result.as_ref().map(|_| (200, Value::Null)))
                    .await;
                result?;
            }
            Ok(Some(applied(step, json!({ "id": service_id }))))
        }
        Step::LinkEnvGroup {
            group,
            service,
            group_id: Some(group_id),
            service_id: Some(service_id),
        } => {
            let record = change("link_env_group", service)
                .target_id(service_id)
                .after(json!({ "group": group, "groupId": group_id }));
            let result = client.link_env_group(group_id, service_id).await;
            recorder
                .record(record, result.as_ref().map(|_| (200, Value::Null)))
                .await;
            result?;
            Ok(Some(applied(
                step,
                json!({ "groupId": group_id, "serviceId": service_id }),
            )))
        }
        Step::LinkEnvGroup { .. } => Ok(None),
        Step::Deploy {
            name,
            service_id,
            reason,
        } => {
            let record = change("deploy", name)
                .target_id(service_id)
                .after(json!({ "reason": reason }));
            let result = client.trigger_deploy(service_id, false).await;
            recorder
                .record(record, crate::changes::deploy_answer(&result))
                .await;
            let triggered = result?;
            Ok(Some(applied(
                step,
                json!({ "deployId": triggered.deploy_id(), "queued": triggered.queued }),
            )))
        }
    }
}

/// The record of one env write: the key, what happened and the value's source, no value.
fn env_record(env: &[super::plan::EnvChange], key: &str) -> Value {
    env.iter()
        .find(|change| change.key == key)
        .map_or_else(|| json!({ "key": key }), |change| json!(change))
}
