//! The parts of Render's API objects renderctl reads and writes, named as in Render's OpenAPI
//! document (`infra/specs/render-openapi.json`). Fields renderctl does not use are left out
//! when reading and never sent when writing.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `serviceType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ServiceType {
    StaticSite,
    WebService,
    PrivateService,
    BackgroundWorker,
    CronJob,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StaticSite => "static_site",
            Self::WebService => "web_service",
            Self::PrivateService => "private_service",
            Self::BackgroundWorker => "background_worker",
            Self::CronJob => "cron_job",
        }
    }
}

/// `service`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    pub id: String,
    pub name: String,
    pub owner_id: String,
    #[serde(rename = "type")]
    pub kind: ServiceType,
    pub slug: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// `yes` or `no`.
    pub auto_deploy: String,
    pub root_dir: String,
    pub dashboard_url: String,
    /// `suspended` or `not_suspended`.
    pub suspended: String,
    pub created_at: String,
    pub updated_at: String,
    pub service_details: ServiceDetails,
}

/// The union of the `serviceDetails` of every service type, as far as renderctl reads it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_instances: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_specific_details: Option<EnvSpecificDetails>,
}

/// `dockerDetails` (or the native runtime's build and start commands).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvSpecificDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_context: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_command: Option<String>,
}

/// `servicePOST`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServicePost {
    #[serde(rename = "type")]
    pub kind: ServiceType,
    pub name: String,
    pub owner_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_deploy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_vars: Vec<EnvVarInput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_details: Option<ServiceDetailsIn>,
}

/// The `serviceDetails` of `servicePOST` and `servicePATCH`: only what is set is sent, so the
/// same shape serves a static site (`buildCommand`, `publishPath`) and a Docker web service
/// (`runtime`, `plan`, `region`, `healthCheckPath`, `envSpecificDetails`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceDetailsIn {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_instances: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_specific_details: Option<DockerDetailsIn>,
}

impl ServiceDetailsIn {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// `dockerDetailsPOST` / `dockerDetailsPATCH`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DockerDetailsIn {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_context: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_command: Option<String>,
}

/// `servicePATCH`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServicePatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_deploy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_details: Option<ServiceDetailsIn>,
}

impl ServicePatch {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// `serviceAndDeploy`: what creating a service answers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAndDeploy {
    pub service: Service,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_id: Option<String>,
}

/// `envVarInput`: a literal value, or one Render generates (and keeps) itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EnvVarInput {
    Value {
        key: String,
        value: String,
    },
    #[serde(rename_all = "camelCase")]
    Generate {
        key: String,
        generate_value: bool,
    },
}

impl EnvVarInput {
    pub fn key(&self) -> &str {
        match self {
            Self::Value { key, .. } | Self::Generate { key, .. } => key,
        }
    }
}

/// `addUpdateEnvVarInput`: the body of a single-variable upsert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum EnvVarValue {
    Value {
        value: String,
    },
    #[serde(rename_all = "camelCase")]
    Generate {
        generate_value: bool,
    },
}

/// `envVar`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvVar {
    pub key: String,
    pub value: String,
}

/// `deployStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeployStatus {
    Created,
    Queued,
    BuildInProgress,
    UpdateInProgress,
    Live,
    Deactivated,
    BuildFailed,
    UpdateFailed,
    Canceled,
    PreDeployInProgress,
    PreDeployFailed,
}

impl DeployStatus {
    pub fn is_finished(self) -> bool {
        !matches!(
            self,
            Self::Created
                | Self::Queued
                | Self::BuildInProgress
                | Self::UpdateInProgress
                | Self::PreDeployInProgress
        )
    }

    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Self::BuildFailed | Self::UpdateFailed | Self::PreDeployFailed | Self::Canceled
        )
    }
}

/// `deploy`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Deploy {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<DeployStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

/// `owner`.
#[derive(Debug, Clone, Deserialize)]
pub struct Owner {
    pub id: String,
    pub name: String,
}

/// One line of `GET /logs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogLine {
    pub id: String,
    pub message: String,
    pub timestamp: String,
    #[serde(default)]
    pub labels: Vec<LogLabel>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogLabel {
    pub name: String,
    pub value: String,
}

impl LogLine {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|label| label.name == name)
            .map(|label| label.value.as_str())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogsPage {
    pub has_more: bool,
    pub next_start_time: String,
    pub next_end_time: String,
    pub logs: Vec<LogLine>,
}

/// `postgres` (list items) and `postgresDetail`, as far as renderctl reads them.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Postgres {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub plan: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub database_name: Option<String>,
    #[serde(default)]
    pub database_user: Option<String>,
}

/// `postgresPOSTInput`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PostgresPost {
    pub name: String,
    pub owner_id: String,
    pub plan: String,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_user: Option<String>,
}

/// `postgresConnectionInfo`: secrets, never logged or recorded.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostgresConnectionInfo {
    pub internal_connection_string: String,
    pub external_connection_string: String,
}

/// `envGroupMeta`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvGroupMeta {
    pub id: String,
    pub name: String,
}

/// `envGroup`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvGroup {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub env_vars: Vec<EnvVar>,
    #[serde(default)]
    pub service_links: Vec<ServiceLink>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServiceLink {
    pub id: String,
}

/// `envGroupPOSTInput`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvGroupPost {
    pub name: String,
    pub owner_id: String,
    pub env_vars: Vec<EnvVarInput>,
}
