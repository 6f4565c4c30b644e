//! `render.yaml`, Render's Blueprint: parsed, validated against the published Blueprint schema
//! (`infra/specs/render-blueprint.schema.json`), and read into the subset renderctl reconciles
//! (services, Postgres databases, env groups). [`plan`] compares it with what Render has;
//! [`apply`] carries a plan out.

pub mod apply;
pub mod plan;

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::render::ServiceType;

const SCHEMA: &str = include_str!("../../../../infra/specs/render-blueprint.schema.json");

/// Blueprints larger than this are refused before parsing.
pub const MAX_BLUEPRINT_BYTES: usize = 1024 * 1024;

/// One reason a `render.yaml` was refused: where (a path such as `services[2].plan`, or a
/// line and column for YAML syntax) and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct BlueprintError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for BlueprintError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Blueprint {
    #[serde(default)]
    pub services: Vec<BlueprintService>,
    #[serde(default)]
    pub databases: Vec<BlueprintDatabase>,
    #[serde(default)]
    pub env_var_groups: Vec<BlueprintEnvGroup>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlueprintService {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub runtime: Option<String>,
    pub plan: Option<String>,
    pub region: Option<String>,
    pub repo: Option<String>,
    pub branch: Option<String>,
    pub root_dir: Option<String>,
    pub build_command: Option<String>,
    pub start_command: Option<String>,
    pub static_publish_path: Option<String>,
    pub dockerfile_path: Option<String>,
    pub docker_context: Option<String>,
    pub docker_command: Option<String>,
    pub health_check_path: Option<String>,
    pub num_instances: Option<u32>,
    pub auto_deploy: Option<bool>,
    #[serde(default)]
    pub env_vars: Vec<BlueprintEnvVar>,
}

impl BlueprintService {
    /// The API's service type: a Blueprint `web` with `runtime: static` is a static site.
    pub fn service_type(&self) -> Option<ServiceType> {
        match (self.kind.as_str(), self.runtime.as_deref()) {
            ("web", Some("static")) | ("static", _) => Some(ServiceType::StaticSite),
            ("web", _) => Some(ServiceType::WebService),
            ("pserv", _) => Some(ServiceType::PrivateService),
            ("worker", _) => Some(ServiceType::BackgroundWorker),
            ("cron", _) => Some(ServiceType::CronJob),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlueprintDatabase {
    pub name: String,
    pub database_name: Option<String>,
    pub user: Option<String>,
    pub region: Option<String>,
    pub plan: Option<String>,
    pub postgres_major_version: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlueprintEnvGroup {
    pub name: String,
    #[serde(default)]
    pub env_vars: Vec<BlueprintEnvVar>,
}

/// One entry of `envVars`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged, rename_all = "camelCase")]
pub enum BlueprintEnvVar {
    #[serde(rename_all = "camelCase")]
    FromDatabase {
        key: String,
        from_database: FromDatabase,
    },
    #[serde(rename_all = "camelCase")]
    FromService {
        key: String,
        from_service: FromService,
    },
    #[serde(rename_all = "camelCase")]
    FromGroup { from_group: String },
    #[serde(rename_all = "camelCase")]
    Plain {
        key: String,
        #[serde(default, deserialize_with = "string_or_number")]
        value: Option<String>,
        #[serde(default)]
        generate_value: bool,
        /// `sync: false`: a secret set by hand in Render; never written or removed here.
        sync: Option<bool>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FromDatabase {
    pub name: String,
    pub property: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FromService {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub property: Option<String>,
    pub env_var_key: Option<String>,
}

fn string_or_number<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(deserializer)? {
        Some(Value::String(text)) => Some(text),
        Some(Value::Number(number)) => Some(number.to_string()),
        Some(Value::Null) | None => None,
        Some(other) => {
            return Err(serde::de::Error::custom(format!(
                "expected a string or a number, found {other}"
            )));
        }
    })
}

impl Blueprint {
    /// Parses and validates `render.yaml`; every problem found is returned, not just the first.
    pub fn parse(text: &str) -> Result<Blueprint, Vec<BlueprintError>> {
        if text.len() > MAX_BLUEPRINT_BYTES {
            return Err(vec![BlueprintError {
                path: "render.yaml".into(),
                message: format!(
                    "is {} bytes; the limit is {MAX_BLUEPRINT_BYTES}",
                    text.len()
                ),
            }]);
        }
        let document: Value = yaml_serde::from_str(text).map_err(|error| {
            let path = error
                .location()
                .map(|at| format!("line {}, column {}", at.line(), at.column()))
                .unwrap_or_else(|| "render.yaml".into());
            vec![BlueprintError {
                path,
                message: format!("is not valid YAML: {error}"),
            }]
        })?;
        let errors = validate(&document);
        if !errors.is_empty() {
            return Err(errors);
        }
        let blueprint: Blueprint = serde_json::from_value(document).map_err(|error| {
            vec![BlueprintError {
                path: "render.yaml".into(),
                message: error.to_string(),
            }]
        })?;
        let errors = blueprint.check_references();
        if errors.is_empty() {
            Ok(blueprint)
        } else {
            Err(errors)
        }
    }

    pub fn service(&self, name: &str) -> Option<&BlueprintService> {
        self.services.iter().find(|service| service.name == name)
    }

    /// What the schema cannot say: unique names, references that resolve, supported types.
    fn check_references(&self) -> Vec<BlueprintError> {
        let mut errors = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for (index, service) in self.services.iter().enumerate() {
            let at = format!("services[{index}]");
            if !seen.insert(service.name.as_str()) {
                errors.push(error(
                    &at,
                    format!("the name {:?} is used twice", service.name),
                ));
            }
            if service.service_type().is_none() {
                errors.push(error(
                    &format!("{at}.type"),
                    format!("{:?} services are not managed by renderctl", service.kind),
                ));
            }
            for (var_index, var) in service.env_vars.iter().enumerate() {
                let var_at = format!("{at}.envVars[{var_index}]");
                match var {
                    BlueprintEnvVar::FromDatabase { from_database, .. } => {
                        if !self
                            .databases
                            .iter()
                            .any(|db| db.name == from_database.name)
                        {
                            errors.push(error(
                                &var_at,
                                format!(
                                    "fromDatabase names {:?}, which is not in databases",
                                    from_database.name
                                ),
                            ));
                        }
                    }
                    BlueprintEnvVar::FromService { from_service, .. } => {
                        if self.service(&from_service.name).is_none() {
                            errors.push(error(
                                &var_at,
                                format!(
                                    "fromService names {:?}, which is not in services",
                                    from_service.name
                                ),
                            ));
                        }
                        if from_service.property.is_none() && from_service.env_var_key.is_none() {
                            errors.push(error(
                                &var_at,
                                "fromService needs a property or an envVarKey".to_owned(),
                            ));
                        }
                    }
                    BlueprintEnvVar::FromGroup { from_group } => {
                        if !self
                            .env_var_groups
                            .iter()
                            .any(|group| &group.name == from_group)
                        {
                            errors.push(error(
                                &var_at,
                                format!(
                                    "fromGroup names {from_group:?}, which is not in envVarGroups"
                                ),
                            ));
                        }
                    }
                    BlueprintEnvVar::Plain {
                        value,
                        generate_value,
                        sync,
                        ..
                    } => {
                        if value.is_none() && !generate_value && *sync != Some(false) {
                            errors.push(error(
                                &var_at,
                                "needs a value, generateValue: true, or sync: false".to_owned(),
                            ));
                        }
                    }
                }
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (index, db) in self.databases.iter().enumerate() {
            if !seen.insert(db.name.as_str()) {
                errors.push(error(
                    &format!("databases[{index}]"),
                    format!("the name {:?} is used twice", db.name),
                ));
            }
        }
        errors
    }
}

fn error(path: &str, message: String) -> BlueprintError {
    BlueprintError {
        path: path.to_owned(),
        message,
    }
}

fn validator() -> Result<&'static jsonschema::Validator, String> {
    static VALIDATOR: OnceLock<Result<jsonschema::Validator, String>> = OnceLock::new();
    VALIDATOR
        .get_or_init(|| {
            let schema: Value = serde_json::from_str(SCHEMA).map_err(|e| e.to_string())?;
            jsonschema::draft202012::new(&schema).map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The Blueprint schema's verdict, with paths written the way people read YAML.
pub fn validate(document: &Value) -> Vec<BlueprintError> {
    let validator = match validator() {
        Ok(validator) => validator,
        Err(cause) => {
            return vec![error(
                "render.yaml",
                format!("the Blueprint schema did not load: {cause}"),
            )];
        }
    };
    let mut errors: Vec<BlueprintError> = validator
        .iter_errors(document)
        .map(|e| {
            error(
                &readable_path(&e.instance_path().to_string()),
                e.to_string(),
            )
        })
        .collect();
    errors.sort_by(|a, b| a.path.cmp(&b.path));
    errors.dedup();
    errors
}

/// `/services/2/plan` → `services[2].plan`.
fn readable_path(pointer: &str) -> String {
    let mut out = String::new();
    for part in pointer.split('/').filter(|part| !part.is_empty()) {
        let part = part.replace("~1", "/").replace("~0", "~");
        if part.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&part);
        }
    }
    if out.is_empty() {
        "render.yaml".into()
    } else {
        out
    }
}

/// Blueprint plan names to the API's: `pro plus` → `pro_plus`, `basic-256mb` → `basic_256mb`.
pub fn api_plan(plan: &str) -> String {
    plan.replace([' ', '-'], "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_read_like_yaml() {
        assert_eq!(readable_path("/services/2/plan"), "services[2].plan");
        assert_eq!(readable_path(""), "render.yaml");
        assert_eq!(api_plan("pro plus"), "pro_plus");
        assert_eq!(api_plan("basic-256mb"), "basic_256mb");
    }

    #[test]
    fn a_small_blueprint_parses_with_its_references() {
        let yaml = r#"
services:
  - type: web
    name: api
    runtime: docker
    plan: pro plus
    envVars:
      - key: DATABASE_URL
        fromDatabase: { name: db, property: connectionString }
      - key: TOKEN
        generateValue: true
      - key: PORT
        value: 8080
      - key: HAND_SET
        sync: false
      - fromGroup: shared
  - type: web
    name: site
    runtime: static
    buildCommand: npm run build
    staticPublishPath: dist
databases:
  - name: db
envVarGroups:
  - name: shared
    envVars:
      - key: A
        value: b
"#;
        let blueprint = Blueprint::parse(yaml).expect("valid");
        assert_eq!(
            blueprint.services[0].service_type(),
            Some(ServiceType::WebService)
        );
        assert_eq!(
            blueprint.services[1].service_type(),
            Some(ServiceType::StaticSite)
        );
        assert!(
            blueprint.services[0]
                .env_vars
                .contains(&BlueprintEnvVar::Plain {
                    key: "PORT".into(),
                    value: Some("8080".into()),
                    generate_value: false,
                    sync: None,
                })
        );
        assert!(matches!(
            &blueprint.services[0].env_vars[4],
            BlueprintEnvVar::FromGroup { from_group } if from_group == "shared"
        ));
    }

    #[test]
    fn schema_violations_and_bad_references_are_all_reported() {
        let yaml = r#"
services:
  - type: web
    name: api
    runtime: docker
    plan: gigantic
    envVars:
      - key: DATABASE_URL
        fromDatabase: { name: missing, property: connectionString }
"#;
        let errors = Blueprint::parse(yaml).expect_err("invalid");
        assert!(
            errors.iter().any(|e| e.path.starts_with("services[0]")),
            "{errors:?}"
        );
        let yaml = r#"
services:
  - type: web
    name: api
    runtime: docker
    envVars:
      - key: DATABASE_URL
        fromDatabase: { name: missing, property: connectionString }
"#;
        let errors = Blueprint::parse(yaml).expect_err("invalid");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, "services[0].envVars[0]");
        let errors = Blueprint::parse("services: [\n  - name: a\n").expect_err("yaml");
        assert!(errors[0].path.starts_with("line "), "{errors:?}");
    }
}
