//! The difference between `render.yaml` and what Render has, as an ordered list of steps:
//! databases, env groups, new services, changed service fields, env additions, changes and
//! removals, env group links, then deploys of the services whose settings changed (Render
//! applies env changes on the next deploy).
//!
//! A plan shows keys, sources and setting names, never an env value: values are carried in
//! fields that are not serialised.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Value, json};

use super::{Blueprint, BlueprintEnvVar, BlueprintService, api_plan};
use crate::render::{
    DockerDetailsIn, EnvGroup, EnvGroupPost, EnvVarInput, EnvVarValue, Postgres, PostgresPost,
    RenderClient, RenderError, Service, ServiceDetailsIn, ServiceFilter, ServicePatch, ServicePost,
    ServiceType,
};

/// What a plan is computed against.
#[derive(Clone)]
pub struct Target<'a> {
    pub client: &'a RenderClient,
    pub owner_id: &'a str,
    /// The repository `render.yaml` lives in, for services that name none.
    pub default_repo: Option<&'a str>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub steps: Vec<Step>,
    pub warnings: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(
    tag = "action",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Step {
    CreateDatabase {
        name: String,
        plan: String,
        version: String,
        #[serde(skip)]
        body: PostgresPost,
    },
    CreateEnvGroup {
        name: String,
        env: Vec<EnvChange>,
        #[serde(skip)]
        body: EnvGroupPost,
    },
    UpdateEnvGroup {
        name: String,
        group_id: String,
        env: Vec<EnvChange>,
        #[serde(skip)]
        ops: Vec<EnvOp>,
    },
    CreateService {
        name: String,
        service_type: ServiceType,
        settings: BTreeMap<String, Value>,
        env: Vec<EnvChange>,
        #[serde(skip)]
        body: Box<ServicePost>,
    },
    UpdateService {
        name: String,
        service_id: String,
        fields: Vec<FieldChange>,
        #[serde(skip)]
        patch: ServicePatch,
    },
    UpdateEnv {
        name: String,
        service_id: String,
        env: Vec<EnvChange>,
        #[serde(skip)]
        ops: Vec<EnvOp>,
    },
    LinkEnvGroup {
        group: String,
        service: String,
        /// Unknown until the group or the service is created; linked on the next round.
        #[serde(skip_serializing_if = "Option::is_none")]
        group_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        service_id: Option<String>,
    },
    Deploy {
        name: String,
        service_id: String,
        reason: String,
    },
}

impl Step {
    pub fn action(&self) -> &'static str {
        match self {
            Step::CreateDatabase { .. } => "createDatabase",
            Step::CreateEnvGroup { .. } => "createEnvGroup",
            Step::UpdateEnvGroup { .. } => "updateEnvGroup",
            Step::CreateService { .. } => "createService",
            Step::UpdateService { .. } => "updateService",
            Step::UpdateEnv { .. } => "updateEnv",
            Step::LinkEnvGroup { .. } => "linkEnvGroup",
            Step::Deploy { .. } => "deploy",
        }
    }

    pub fn target(&self) -> String {
        match self {
            Step::CreateDatabase { name, .. }
            | Step::CreateEnvGroup { name, .. }
            | Step::UpdateEnvGroup { name, .. }
            | Step::CreateService { name, .. }
            | Step::UpdateService { name, .. }
            | Step::UpdateEnv { name, .. }
            | Step::Deploy { name, .. } => name.clone(),
            Step::LinkEnvGroup { group, service, .. } => format!("{group} → {service}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Change {
    Add,
    Change,
    Remove,
}

/// One env var difference: the key, what happens, and where the value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvChange {
    pub key: String,
    pub change: Change,
    pub source: String,
}

/// One setting difference; settings are not secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldChange {
    pub field: String,
    pub from: Value,
    pub to: Value,
}

/// A single-variable write carried out by apply.
#[derive(Debug, Clone)]
pub enum EnvOp {
    Put(String, EnvVarValue),
    Delete(String),
}

/// What `render.yaml` wants for one key.
#[derive(Debug, Clone)]
enum Desired {
    Literal(String),
    Generate,
    /// `sync: false`: set by hand in Render; left alone.
    Manual,
    Resolved {
        value: String,
        source: String,
    },
    /// Refers to a database or service that does not exist yet.
    Pending {
        source: String,
    },
}

impl Desired {
    fn source(&self) -> String {
        match self {
            Desired::Literal(_) => "value".into(),
            Desired::Generate => "generateValue".into(),
            Desired::Manual => "sync: false".into(),
            Desired::Resolved { source, .. } | Desired::Pending { source } => source.clone(),
        }
    }
}

/// Render's current state of everything `render.yaml` names.
struct Actual {
    services: BTreeMap<String, (Service, BTreeMap<String, String>)>,
    databases: BTreeMap<String, Postgres>,
    groups: BTreeMap<String, EnvGroup>,
    connection: BTreeMap<String, String>,
}

impl Actual {
    async fn fetch(target: &Target<'_>, blueprint: &Blueprint) -> Result<Self, RenderError> {
        let client = target.client;
        let names: BTreeSet<&str> = blueprint.services.iter().map(|s| s.name.as_str()).collect();
        let filter = ServiceFilter {
            names: names.iter().map(|name| (*name).to_owned()).collect(),
            owner_id: Some(target.owner_id.to_owned()),
            ..ServiceFilter::default()
        };
        let mut services = BTreeMap::new();
        if !names.is_empty() {
            for service in client.list_all_services(&filter).await? {
                if names.contains(service.name.as_str()) && !services.contains_key(&service.name) {
                    let env = client.list_env_vars(&service.id).await?;
                    let env = env.into_iter().map(|var| (var.key, var.value)).collect();
                    services.insert(service.name.clone(), (service, env));
                }
            }
        }
        let mut databases = BTreeMap::new();
        let mut connection = BTreeMap::new();
        for db in &blueprint.databases {
            if let Some(found) = client
                .list_postgres(&db.name)
                .await?
                .into_iter()
                .find(|found| found.name == db.name)
            {
                let info = client.postgres_connection_info(&found.id).await?;
                connection.insert(db.name.clone(), info.internal_connection_string);
                databases.insert(db.name.clone(), found);
            }
        }
        let mut groups = BTreeMap::new();
        for group in &blueprint.env_var_groups {
            if let Some(meta) = client
                .list_env_groups(&group.name)
                .await?
                .into_iter()
                .find(|meta| meta.name == group.name)
            {
                groups.insert(group.name.clone(), client.get_env_group(&meta.id).await?);
            }
        }
        Ok(Self {
            services,
            databases,
            groups,
            connection,
        })
    }
}

/// Compares `render.yaml` with Render and lists what apply would do, in a safe order.
pub async fn plan(target: &Target<'_>, blueprint: &Blueprint) -> Result<Plan, RenderError> {
    let actual = Actual::fetch(target, blueprint).await?;
    let mut plan = Plan::default();
    let mut deploy_reasons: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();

    for db in &blueprint.databases {
        if actual.databases.contains_key(&db.name) {
            continue;
        }
        let plan_name = api_plan(db.plan.as_deref().unwrap_or("basic-256mb"));
        let version = db
            .postgres_major_version
            .clone()
            .unwrap_or_else(|| "16".into());
        plan.steps.push(Step::CreateDatabase {
            name: db.name.clone(),
            plan: plan_name.clone(),
            version: version.clone(),
            body: PostgresPost {
                name: db.name.clone(),
                owner_id: target.owner_id.to_owned(),
                plan: plan_name,
                version,
                region: db.region.clone(),
                database_name: db.database_name.clone(),
                database_user: db.user.clone(),
            },
        });
    }

    let mut changed_groups = BTreeSet::new();
    for group in &blueprint.env_var_groups {
        let desired: BTreeMap<String, Desired> = group
            .env_vars
            .iter()
            .filter_map(|var| plain_desired(var).map(|d| (env_key(var), d)))
            .collect();
        match actual.groups.get(&group.name) {
            None => {
                let (env, inputs) = creation_env(&desired);
                plan.steps.push(Step::CreateEnvGroup {
                    name: group.name.clone(),
                    env,
                    body: EnvGroupPost {
                        name: group.name.clone(),
                        owner_id: target.owner_id.to_owned(),
                        env_vars: inputs,
                    },
                });
            }
            Some(existing) => {
                let current = existing
                    .env_vars
                    .iter()
                    .map(|var| (var.key.clone(), var.value.clone()))
                    .collect();
                let (env, ops) = env_diff(&desired, &current);
                if !env.is_empty() {
                    changed_groups.insert(group.name.clone());
                    plan.steps.push(Step::UpdateEnvGroup {
                        name: group.name.clone(),
                        group_id: existing.id.clone(),
                        env,
                        ops,
                    });
                }
            }
        }
    }

    let mut updates = Vec::new();
    let mut env_updates = Vec::new();
    let mut links = Vec::new();
    for (index, service) in blueprint.services.iter().enumerate() {
        let Some(kind) = service.service_type() else {
            continue;
        };
        let desired = desired_env(service, blueprint, &actual, &mut plan.warnings);
        match actual.services.get(&service.name) {
            None => {
                let (env, inputs) = creation_env(&desired);
                let (settings, details) = creation_settings(service, kind);
                let repo = service
                    .repo
                    .clone()
                    .or_else(|| target.default_repo.map(str::to_owned));
                if repo.is_none() {
                    plan.warnings.push(format!(
                        "services[{index}] ({}) names no repo and RENDER_REPO is not set; Render needs one to create it",
                        service.name
                    ));
                }
                plan.steps.push(Step::CreateService {
                    name: service.name.clone(),
                    service_type: kind,
                    settings,
                    env,
                    body: Box::new(ServicePost {
                        kind,
                        name: service.name.clone(),
                        owner_id: target.owner_id.to_owned(),
                        repo,
                        branch: service.branch.clone(),
                        auto_deploy: service.auto_deploy.map(yes_no),
                        root_dir: service.root_dir.clone(),
                        env_vars: inputs,
                        service_details: Some(details),
                    }),
                });
            }
            Some((existing, current_env)) => {
                let (fields, patch) = field_diff(service, kind, existing, &mut plan.warnings);
                if !fields.is_empty() {
                    deploy_reasons
                        .entry(service.name.clone())
                        .or_insert_with(|| (existing.id.clone(), Vec::new()))
                        .1
                        .push("settings changed".into());
                    updates.push(Step::UpdateService {
                        name: service.name.clone(),
                        service_id: existing.id.clone(),
                        fields,
                        patch,
                    });
                }
                let (env, ops) = env_diff(&desired, current_env);
                if !env.is_empty() {
                    deploy_reasons
                        .entry(service.name.clone())
                        .or_insert_with(|| (existing.id.clone(), Vec::new()))
                        .1
                        .push("env vars changed".into());
                    env_updates.push(Step::UpdateEnv {
                        name: service.name.clone(),
                        service_id: existing.id.clone(),
                        env,
                        ops,
                    });
                }
            }
        }
        for var in &service.env_vars {
            let BlueprintEnvVar::FromGroup { from_group } = var else {
                continue;
            };
            let service_id = actual
                .services
                .get(&service.name)
                .map(|(s, _)| s.id.clone());
            let group = actual.groups.get(from_group);
            let linked = match (&service_id, group) {
                (Some(id), Some(group)) => group.service_links.iter().any(|link| &link.id == id),
                _ => false,
            };
            if let (Some(id), true) = (&service_id, changed_groups.contains(from_group)) {
                deploy_reasons
                    .entry(service.name.clone())
                    .or_insert_with(|| (id.clone(), Vec::new()))
                    .1
                    .push(format!("env group {from_group} changed"));
            }
            if !linked {
                links.push(Step::LinkEnvGroup {
                    group: from_group.clone(),
                    service: service.name.clone(),
                    group_id: group.map(|g| g.id.clone()),
                    service_id,
                });
                if let Some((existing, _)) = actual.services.get(&service.name) {
                    deploy_reasons
                        .entry(service.name.clone())
                        .or_insert_with(|| (existing.id.clone(), Vec::new()))
                        .1
                        .push(format!("env group {from_group} linked"));
                }
            }
        }
    }
    plan.steps.extend(updates);
    plan.steps.extend(env_updates);
    plan.steps.extend(links);
    for (name, (service_id, reasons)) in deploy_reasons {
        let mut reasons = reasons;
        reasons.dedup();
        plan.steps.push(Step::Deploy {
            name,
            service_id,
            reason: reasons.join(", "),
        });
    }
    Ok(plan)
}

fn yes_no(on: bool) -> String {
    if on { "yes" } else { "no" }.to_owned()
}

fn env_key(var: &BlueprintEnvVar) -> String {
    match var {
        BlueprintEnvVar::FromDatabase { key, .. }
        | BlueprintEnvVar::FromService { key, .. }
        | BlueprintEnvVar::Plain { key, .. } => key.clone(),
        BlueprintEnvVar::FromGroup { .. } => String::new(),
    }
}

fn plain_desired(var: &BlueprintEnvVar) -> Option<Desired> {
    match var {
        BlueprintEnvVar::Plain {
            value,
            generate_value,
            sync,
            ..
        } => Some(match (value, generate_value, sync) {
            (Some(value), _, _) => Desired::Literal(value.clone()),
            (None, true, _) => Desired::Generate,
            _ => Desired::Manual,
        }),
        _ => None,
    }
}

fn desired_env(
    service: &BlueprintService,
    blueprint: &Blueprint,
    actual: &Actual,
    warnings: &mut Vec<String>,
) -> BTreeMap<String, Desired> {
    let mut desired = BTreeMap::new();
    for var in &service.env_vars {
        let want = match var {
            BlueprintEnvVar::FromGroup { .. } => continue,
            BlueprintEnvVar::Plain { .. } => plain_desired(var),
            BlueprintEnvVar::FromDatabase { from_database, .. } => {
                let source = format!(
                    "fromDatabase {}.{}",
                    from_database.name, from_database.property
                );
                match actual.connection.get(&from_database.name) {
                    None => Some(Desired::Pending { source }),
                    Some(url) => match database_property(url, &from_database.property) {
                        Some(value) => Some(Desired::Resolved { value, source }),
                        None => {
                            warnings.push(format!(
                                "{}: {}: the database property {:?} is not known",
                                service.name,
                                env_key(var),
                                from_database.property
                            ));
                            None
                        }
                    },
                }
            }
            BlueprintEnvVar::FromService { from_service, .. } => {
                let what = from_service
                    .env_var_key
                    .as_deref()
                    .or(from_service.property.as_deref())
                    .unwrap_or_default();
                let source = format!("fromService {}.{what}", from_service.name);
                match actual.services.get(&from_service.name) {
                    None if blueprint.service(&from_service.name).is_some() => {
                        Some(Desired::Pending { source })
                    }
                    None => None,
                    Some((other, other_env)) => {
                        match service_property(other, other_env, from_service) {
                            Some(value) => Some(Desired::Resolved { value, source }),
                            None => {
                                warnings.push(format!(
                                    "{}: {}: {} has no {what}",
                                    service.name,
                                    env_key(var),
                                    from_service.name
                                ));
                                None
                            }
                        }
                    }
                }
            }
        };
        if let Some(want) = want {
            desired.insert(env_key(var), want);
        }
    }
    desired
}

/// `connectionString`, `host`, `port`, `user`, `password`, `database` of a Postgres URL.
fn database_property(url: &str, property: &str) -> Option<String> {
    if property == "connectionString" {
        return Some(url.to_owned());
    }
    let parsed = url::Url::parse(url).ok()?;
    match property {
        "host" => parsed.host_str().map(str::to_owned),
        "port" => Some(parsed.port().unwrap_or(5432).to_string()),
        "user" => Some(parsed.username().to_owned()),
        "password" => parsed.password().map(str::to_owned),
        "database" => Some(parsed.path().trim_start_matches('/').to_owned()),
        _ => None,
    }
}

/// A service's private-network `host` (its slug), `port`, `hostport`, or one of its env vars.
fn service_property(
    service: &Service,
    env: &BTreeMap<String, String>,
    from: &super::FromService,
) -> Option<String> {
    if let Some(key) = &from.env_var_key {
        return env.get(key).cloned();
    }
    let port = || env.get("PORT").cloned().unwrap_or_else(|| "10000".into());
    match from.property.as_deref()? {
        "host" => Some(service.slug.clone()),
        "port" => Some(port()),
        "hostport" => Some(format!("{}:{}", service.slug, port())),
        _ => None,
    }
}

/// The env of a resource being created: what can be sent now (pending references and
/// hand-set secrets are left for later rounds or for people).
fn creation_env(desired: &BTreeMap<String, Desired>) -> (Vec<EnvChange>, Vec<EnvVarInput>) {
    let mut changes = Vec::new();
    let mut inputs = Vec::new();
    for (key, want) in desired {
        let input = match want {
            Desired::Literal(value) | Desired::Resolved { value, .. } => EnvVarInput::Value {
                key: key.clone(),
                value: value.clone(),
            },
            Desired::Generate => EnvVarInput::Generate {
                key: key.clone(),
                generate_value: true,
            },
            Desired::Pending { .. } => {
                changes.push(EnvChange {
                    key: key.clone(),
                    change: Change::Add,
                    source: want.source(),
                });
                continue;
            }
            Desired::Manual => continue,
        };
        changes.push(EnvChange {
            key: key.clone(),
            change: Change::Add,
            source: want.source(),
        });
        inputs.push(input);
    }
    (changes, inputs)
}

/// Additions, changes and removals between the wanted and the current env.
fn env_diff(
    desired: &BTreeMap<String, Desired>,
    current: &BTreeMap<String, String>,
) -> (Vec<EnvChange>, Vec<EnvOp>) {
    let mut changes = Vec::new();
    let mut ops = Vec::new();
    for (key, want) in desired {
        let have = current.get(key);
        let (change, op) = match (want, have) {
            (Desired::Manual, _) | (Desired::Generate, Some(_)) => continue,
            (Desired::Generate, None) => (
                Change::Add,
                Some(EnvVarValue::Generate {
                    generate_value: true,
                }),
            ),
            (Desired::Literal(value) | Desired::Resolved { value, .. }, have) => {
                if have == Some(value) {
                    continue;
                }
                let change = if have.is_some() {
                    Change::Change
                } else {
                    Change::Add
                };
                (
                    change,
                    Some(EnvVarValue::Value {
                        value: value.clone(),
                    }),
                )
            }
            (Desired::Pending { .. }, None) => (Change::Add, None),
            (Desired::Pending { .. }, Some(_)) => (Change::Change, None),
        };
        changes.push(EnvChange {
            key: key.clone(),
            change,
            source: want.source(),
        });
        if let Some(value) = op {
            ops.push(EnvOp::Put(key.clone(), value));
        }
    }
    for key in current.keys() {
        if !desired.contains_key(key) {
            changes.push(EnvChange {
                key: key.clone(),
                change: Change::Remove,
                source: "not in render.yaml".into(),
            });
            ops.push(EnvOp::Delete(key.clone()));
        }
    }
    (changes, ops)
}

/// The settings a new service is created with, shown in the plan and sent to Render.
fn creation_settings(
    service: &BlueprintService,
    kind: ServiceType,
) -> (BTreeMap<String, Value>, ServiceDetailsIn) {
    let details = wanted_details(service, kind);
    let mut settings = BTreeMap::new();
    if let Ok(Value::Object(map)) = serde_json::to_value(&details) {
        settings.extend(map);
    }
    for (name, value) in [
        ("rootDir", service.root_dir.clone()),
        ("branch", service.branch.clone()),
        ("repo", service.repo.clone()),
    ] {
        if let Some(value) = value {
            settings.insert(name.into(), json!(value));
        }
    }
    if let Some(on) = service.auto_deploy {
        settings.insert("autoDeploy".into(), json!(yes_no(on)));
    }
    (settings, details)
}

fn wanted_details(service: &BlueprintService, kind: ServiceType) -> ServiceDetailsIn {
    if kind == ServiceType::StaticSite {
        return ServiceDetailsIn {
            build_command: service.build_command.clone(),
            publish_path: service.static_publish_path.clone(),
            ..ServiceDetailsIn::default()
        };
    }
    let docker = DockerDetailsIn {
        dockerfile_path: service.dockerfile_path.clone(),
        docker_context: service.docker_context.clone(),
        docker_command: service.docker_command.clone(),
    };
    ServiceDetailsIn {
        runtime: Some(service.runtime.clone().unwrap_or_else(|| "docker".into())),
        plan: service.plan.as_deref().map(api_plan),
        region: service.region.clone(),
        health_check_path: service.health_check_path.clone(),
        num_instances: service.num_instances,
        env_specific_details: (docker != DockerDetailsIn::default()).then_some(docker),
        ..ServiceDetailsIn::default()
    }
}

/// Settings `render.yaml` states that differ on Render; settings it leaves out are Render's.
fn field_diff(
    service: &BlueprintService,
    kind: ServiceType,
    existing: &Service,
    warnings: &mut Vec<String>,
) -> (Vec<FieldChange>, ServicePatch) {
    let mut fields = Vec::new();
    let mut patch = ServicePatch::default();
    let mut details = ServiceDetailsIn::default();
    let have = &existing.service_details;
    let docker_have = have.env_specific_details.clone().unwrap_or_default();
    let mut docker = DockerDetailsIn::default();

    let mut compare =
        |field: &str, want: &Option<String>, current: Option<&str>| -> Option<String> {
            let want = want.as_ref()?;
            if current == Some(want.as_str()) {
                return None;
            }
            fields.push(FieldChange {
                field: field.to_owned(),
                from: current.map_or(Value::Null, |c| json!(c)),
                to: json!(want),
            });
            Some(want.clone())
        };
    patch.root_dir = compare("rootDir", &service.root_dir, Some(&existing.root_dir));
    patch.branch = compare("branch", &service.branch, existing.branch.as_deref());
    patch.repo = compare("repo", &service.repo, existing.repo.as_deref());
    patch.auto_deploy = compare(
        "autoDeploy",
        &service.auto_deploy.map(yes_no),
        Some(&existing.auto_deploy),
    );
    if kind == ServiceType::StaticSite {
        details.build_command = compare(
            "serviceDetails.buildCommand",
            &service.build_command,
            have.build_command.as_deref(),
        );
        details.publish_path = compare(
            "serviceDetails.publishPath",
            &service.static_publish_path,
            have.publish_path.as_deref(),
        );
    } else {
        details.plan = compare(
            "serviceDetails.plan",
            &service.plan.as_deref().map(api_plan),
            have.plan.as_deref(),
        );
        if kind == ServiceType::WebService {
            details.health_check_path = compare(
                "serviceDetails.healthCheckPath",
                &service.health_check_path,
                have.health_check_path.as_deref(),
            );
        }
        docker.dockerfile_path = compare(
            "serviceDetails.envSpecificDetails.dockerfilePath",
            &service.dockerfile_path,
            docker_have.dockerfile_path.as_deref(),
        );
        docker.docker_context = compare(
            "serviceDetails.envSpecificDetails.dockerContext",
            &service.docker_context,
            docker_have.docker_context.as_deref(),
        );
        docker.docker_command = compare(
            "serviceDetails.envSpecificDetails.dockerCommand",
            &service.docker_command,
            docker_have.docker_command.as_deref(),
        );
    }
    if kind != ServiceType::StaticSite
        && let Some(want) = service.num_instances
        && have.num_instances != Some(want)
    {
        fields.push(FieldChange {
            field: "serviceDetails.numInstances".into(),
            from: have.num_instances.map_or(Value::Null, |n| json!(n)),
            to: json!(want),
        });
        details.num_instances = Some(want);
    }
    if let (Some(want), Some(current)) = (&service.region, &have.region)
        && want != current
    {
        warnings.push(format!(
            "{}: region is {current} on Render and {want} in render.yaml; a service cannot change region (recreate it to move it)",
            service.name
        ));
    }
    if docker != DockerDetailsIn::default() {
        details.env_specific_details = Some(docker);
    }
    if !details.is_empty() {
        patch.service_details = Some(details);
    }
    (fields, patch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_diff_keeps_generated_and_hand_set_values_and_removes_the_rest() {
        let desired = BTreeMap::from([
            ("A".to_owned(), Desired::Literal("1".into())),
            ("B".to_owned(), Desired::Literal("2".into())),
            ("G".to_owned(), Desired::Generate),
            ("M".to_owned(), Desired::Manual),
            ("N".to_owned(), Desired::Generate),
        ]);
        let current = BTreeMap::from([
            ("A".to_owned(), "1".to_owned()),
            ("B".to_owned(), "old".to_owned()),
            ("G".to_owned(), "secret".to_owned()),
            ("M".to_owned(), "by hand".to_owned()),
            ("X".to_owned(), "stray".to_owned()),
        ]);
        let (changes, ops) = env_diff(&desired, &current);
        let summary: Vec<(&str, Change)> =
            changes.iter().map(|c| (c.key.as_str(), c.change)).collect();
        assert_eq!(
            summary,
            [
                ("B", Change::Change),
                ("N", Change::Add),
                ("X", Change::Remove)
            ]
        );
        assert_eq!(ops.len(), 3);
        let shown = serde_json::to_string(&changes).expect("json");
        assert!(!shown.contains("old") && !shown.contains("stray") && !shown.contains("secret"));
    }

    #[test]
    fn database_properties_come_from_the_connection_string() {
        let url = "postgresql://app:pw@dpg-1-a:5432/autonoma";
        assert_eq!(database_property(url, "host").as_deref(), Some("dpg-1-a"));
        assert_eq!(database_property(url, "port").as_deref(), Some("5432"));
        assert_eq!(database_property(url, "user").as_deref(), Some("app"));
        assert_eq!(database_property(url, "password").as_deref(), Some("pw"));
        assert_eq!(
            database_property(url, "database").as_deref(),
            Some("autonoma")
        );
        assert_eq!(
            database_property(url, "connectionString").as_deref(),
            Some(url)
        );
        assert_eq!(database_property(url, "nonsense"), None);
    }
}
