//! Typed configuration from environment variables, validated against `infra/config.schema.json`.
//!
//! A service names its section of the schema; [`load`] reads the process environment (and a
//! `.env` file in the working directory, without overriding what is already set), converts each
//! declared variable to its schema type, fills defaults, validates the result with `jsonschema`
//! and deserialises it into the service's config type. The same [`Spec::evaluate`] produces the
//! report served at `/config/validate`, so the boot check and the endpoint never disagree.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;
use utoipa::ToSchema;

/// The schema every service validates its environment against, embedded at build time.
pub const SCHEMA_JSON: &str = include_str!("../../../infra/config.schema.json");

/// The report's name for a violated rule that spans several variables.
pub const COMBINATION_KEY: &str = "(combination)";

/// Exit code of a service whose configuration is invalid (`EX_CONFIG` from sysexits.h).
pub const EXIT_CONFIG: u8 = 78;

static SCHEMA: LazyLock<Result<Value, String>> = LazyLock::new(|| {
    serde_json::from_str(SCHEMA_JSON).map_err(|e| format!("infra/config.schema.json: {e}"))
});

/// The parsed schema document.
pub fn schema() -> Result<&'static Value, ConfigError> {
    SCHEMA.as_ref().map_err(|e| ConfigError::Schema(e.clone()))
}

/// Names of the services the schema has a section for.
pub fn service_names() -> Result<Vec<String>, ConfigError> {
    Ok(schema()?
        .get("services")
        .and_then(Value::as_object)
        .map(|services| services.keys().cloned().collect())
        .unwrap_or_default())
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration schema is unusable: {0}")]
    Schema(String),
    #[error("{}", .0.render_text())]
    Invalid(ConfigReport),
    #[error("could not read .env: {0}")]
    EnvFile(String),
}

/// The type a variable's string value is converted to before validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueKind {
    String,
    Integer,
    Number,
    Boolean,
    Array(Box<ValueKind>),
}

/// What the schema says about one variable of a service.
#[derive(Debug, Clone)]
pub struct VarSpec {
    pub name: String,
    pub kind: ValueKind,
    pub required: bool,
    pub secret: bool,
    pub default: Option<Value>,
    pub description: String,
    pub examples: Vec<Value>,
    /// The variable's schema with `$ref`s resolved (and sibling keywords overlaid).
    pub schema: Map<String, Value>,
}

/// What [`Spec::key_coverage`] finds, each list sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyCoverage {
    /// Set, but not a variable of the section.
    pub unknown: Vec<String>,
    /// Required by the section, and not set.
    pub missing: Vec<String>,
}

impl KeyCoverage {
    pub fn is_complete(&self) -> bool {
        self.unknown.is_empty() && self.missing.is_empty()
    }

    /// One line per finding, each beginning with `what` (say, "render.yaml: autonoma-logging").
    pub fn problems(&self, what: &str) -> Vec<String> {
        self.unknown
            .iter()
            .map(|key| format!("{what}: sets {key}, which its config schema does not know"))
            .chain(
                self.missing.iter().map(|key| {
                    format!("{what}: does not set {key}, which its config schema requires")
                }),
            )
            .collect()
    }
}

/// One service's section of the schema, compiled.
pub struct Spec {
    service: String,
    vars: BTreeMap<String, VarSpec>,
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spec")
            .field("service", &self.service)
            .field("vars", &self.vars.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    /// Set and valid.
    Ok,
    /// Not set; the schema's default applies.
    Defaulted,
    /// Optional, not set, no default: the feature it enables is off.
    Unset,
    /// Required and not set.
    Missing,
    /// Set, but the value does not satisfy the schema.
    Invalid,
}

impl KeyStatus {
    pub fn is_problem(self) -> bool {
        matches!(self, KeyStatus::Missing | KeyStatus::Invalid)
    }
}

/// The verdict on one variable. Secret values are never included.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyReport {
    pub key: String,
    pub status: KeyStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The effective value (set or defaulted); absent for secrets and unset keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    pub secret: bool,
    pub required: bool,
    pub description: String,
}

/// A service's configuration, key by key, problems first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigReport {
    pub service: String,
    pub valid: bool,
    pub problems: usize,
    pub keys: Vec<KeyReport>,
}

impl ConfigReport {
    pub fn problems(&self) -> impl Iterator<Item = &KeyReport> {
        self.keys.iter().filter(|k| k.status.is_problem())
    }

    /// What a person reads when a service refuses to start.
    pub fn render_text(&self) -> String {
        let mut out = format!(
            "{}: configuration is invalid ({} problem{}); not starting.\n",
            self.service,
            self.problems,
            if self.problems == 1 { "" } else { "s" }
        );
        for key in self.problems() {
            let status = match key.status {
                KeyStatus::Missing => "missing",
                _ => "invalid",
            };
            out.push_str(&format!(
                "  {}: {status}: {}\n",
                key.key,
                key.reason.as_deref().unwrap_or("")
            ));
        }
        out.push_str("The variables are described in infra/config.schema.json and .env.example.");
        out
    }
}

/// The outcome of evaluating an environment: the report and, when valid, the typed values.
#[derive(Debug)]
pub struct Evaluation {
    pub report: ConfigReport,
    pub values: Map<String, Value>,
}

impl Spec {
    /// Compiles the section of `service`.
    pub fn for_service(service: &str) -> Result<Spec, ConfigError> {
        Spec::from_document(schema()?, service)
    }

    /// Compiles the section of `service` of a schema document shaped like
    /// `infra/config.schema.json`.
    pub fn from_document(root: &Value, service: &str) -> Result<Spec, ConfigError> {
        Spec::from_section(root, "services", service)
    }

    /// Compiles the section of a command-line tool (`commands.<name>` in the schema): the
    /// variables a binary reads when it runs a one-off command instead of serving.
    pub fn for_command(name: &str) -> Result<Spec, ConfigError> {
        Spec::from_section(schema()?, "commands", name)
    }

    fn from_section(root: &Value, kind: &str, service: &str) -> Result<Spec, ConfigError> {
        let section = root
            .get(kind)
            .and_then(|s| s.get(service))
            .ok_or_else(|| ConfigError::Schema(format!("no section {service:?} under {kind:?}")))?;
        let defs = root
            .get("$defs")
            .cloned()
            .unwrap_or(Value::Object(Map::new()));

        let mut standalone = match section {
            Value::Object(map) => map.clone(),
            _ => {
                return Err(ConfigError::Schema(format!(
                    "{kind}.{service} must be an object schema"
                )));
            }
        };
        standalone.insert("$defs".into(), defs);
        if let Some(dialect) = root.get("$schema") {
            standalone.insert("$schema".into(), dialect.clone());
        }
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&Value::Object(standalone))
            .map_err(|e| ConfigError::Schema(format!("{kind}.{service}: {e}")))?;

        let mut required = BTreeSet::new();
        let mut properties = Map::new();
        let mut collect = |schema: &Map<String, Value>| {
            if let Some(Value::Array(names)) = schema.get("required") {
                required.extend(names.iter().filter_map(Value::as_str).map(str::to_owned));
            }
            if let Some(Value::Object(props)) = schema.get("properties") {
                properties.extend(props.clone());
            }
        };
        if let Some(Value::Array(groups)) = section.get("allOf") {
            for group in groups {
                collect(&resolve(root, group)?);
            }
        }
        collect(&resolve(root, section)?);

        let mut vars = BTreeMap::new();
        for (name, prop) in properties {
            let schema = resolve(root, &prop)?;
            let kind = value_kind(root, &schema)
                .map_err(|e| ConfigError::Schema(format!("{name}: {e}")))?;
            let text = |key: &str| schema.get(key).and_then(Value::as_str).unwrap_or_default();
            vars.insert(
                name.clone(),
                VarSpec {
                    required: required.contains(&name),
                    secret: schema.get("writeOnly") == Some(&Value::Bool(true)),
                    default: schema.get("default").cloned(),
                    description: text("description").to_owned(),
                    examples: schema
                        .get("examples")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                    name,
                    kind,
                    schema,
                },
            );
        }
        if let Some(unknown) = required.iter().find(|name| !vars.contains_key(*name)) {
            return Err(ConfigError::Schema(format!(
                "{kind}.{service} requires {unknown} but declares no such property"
            )));
        }
        Ok(Spec {
            service: service.to_owned(),
            vars,
            validator,
        })
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    pub fn vars(&self) -> impl Iterator<Item = &VarSpec> {
        self.vars.values()
    }

    pub fn var(&self, name: &str) -> Option<&VarSpec> {
        self.vars.get(name)
    }

    /// Judges the names a deployment file (render.yaml, docker-compose.yml) sets for this
    /// service, whatever their values: those this section does not declare, and the required
    /// variables that are not among them.
    pub fn key_coverage<'a>(&self, keys: impl IntoIterator<Item = &'a str>) -> KeyCoverage {
        let keys: BTreeSet<&str> = keys.into_iter().collect();
        KeyCoverage {
            unknown: keys
                .iter()
                .filter(|key| !self.vars.contains_key(**key))
                .map(|key| (*key).to_owned())
                .collect(),
            missing: self
                .vars
                .values()
                .filter(|var| var.required && !keys.contains(var.name.as_str()))
                .map(|var| var.name.clone())
                .collect(),
        }
    }

    /// Judges an environment (name → raw string value) against this section.
    pub fn evaluate(&self, env: &HashMap<String, String>) -> Evaluation {
        let mut values = Map::new();
        let mut reports: BTreeMap<&str, KeyReport> = BTreeMap::new();

        for var in self.vars.values() {
            let raw = env
                .get(&var.name)
                .map(String::as_str)
                .filter(|v| !v.is_empty());
            let (status, value, reason) = match raw {
                Some(raw) => match coerce(&with_scheme(var, raw), &var.kind) {
                    Ok(value) => (KeyStatus::Ok, Some(value), None),
                    Err(reason) => (KeyStatus::Invalid, None, Some(reason)),
                },
                None => match (&var.default, var.required) {
                    (Some(default), _) => (KeyStatus::Defaulted, Some(default.clone()), None),
                    (None, true) => (
                        KeyStatus::Missing,
                        None,
                        Some(format!("required: {}", var.description)),
                    ),
                    (None, false) => (KeyStatus::Unset, None, None),
                },
            };
            if let Some(value) = &value {
                values.insert(var.name.clone(), value.clone());
            }
            reports.insert(
                &var.name,
                KeyReport {
                    key: var.name.clone(),
                    status,
                    reason,
                    value: if var.secret { None } else { value },
                    secret: var.secret,
                    required: var.required,
                    description: var.description.clone(),
                },
            );
        }

        let instance = Value::Object(values.clone());
        let mut unattributed = Vec::new();
        for error in self.validator.iter_errors(&instance) {
            let (key, status) = match error.kind() {
                jsonschema::error::ValidationErrorKind::Required { property } => (
                    property.as_str().unwrap_or_default().to_owned(),
                    KeyStatus::Missing,
                ),
                _ => {
                    let path = error.instance_path().as_str();
                    let key = path
                        .trim_start_matches('/')
                        .split('/')
                        .next()
                        .unwrap_or_default();
                    (key.to_owned(), KeyStatus::Invalid)
                }
            };
            let Some(report) = reports.get_mut(key.as_str()) else {
                // A rule over several variables (anyOf, not, …) fails at the section's root.
                unattributed.push(error.masked().to_string());
                continue;
            };
            if report.status == KeyStatus::Missing {
                continue;
            }
            // A requirement that depends on other variables (if/then, dependentRequired): the
            // description says when the variable is needed, the bare error does not.
            let message = if status == KeyStatus::Missing {
                format!("required: {}", report.description)
            } else if report.secret {
                error.masked().to_string()
            } else {
                error.to_string()
            };
            // anyOf/oneOf messages say nothing useful on their own.
            let message = if message.contains("'anyOf'") || message.contains("'oneOf'") {
                match &report.value {
                    Some(value) => format!("{value} is not valid: {}", report.description),
                    None => format!("value is not valid: {}", report.description),
                }
            } else {
                message
            };
            report.status = status;
            report.value = None;
            report.reason = Some(match report.reason.take() {
                Some(previous) if report.status == KeyStatus::Invalid => {
                    format!("{previous}; {message}")
                }
                _ => message,
            });
        }

        let mut keys: Vec<KeyReport> = reports.into_values().collect();
        if !unattributed.is_empty() {
            keys.push(KeyReport {
                key: COMBINATION_KEY.into(),
                status: KeyStatus::Invalid,
                reason: Some(unattributed.join("; ")),
                value: None,
                secret: false,
                required: false,
                description: "A rule of the schema that spans several variables.".into(),
            });
        }
        keys.sort_by_key(|k| (!k.status.is_problem(), k.key.clone()));
        let problems = keys.iter().filter(|k| k.status.is_problem()).count();
        if problems > 0 {
            values.clear();
        }
        Evaluation {
            report: ConfigReport {
                service: self.service.clone(),
                valid: problems == 0,
                problems,
                keys,
            },
            values,
        }
    }
}

/// Resolves `#/$defs/...` references of `schema` against `root`, overlaying sibling keywords.
fn resolve(root: &Value, schema: &Value) -> Result<Map<String, Value>, ConfigError> {
    let Value::Object(map) = schema else {
        return Err(ConfigError::Schema(format!(
            "expected an object schema, got {schema}"
        )));
    };
    let Some(reference) = map.get("$ref").and_then(Value::as_str) else {
        return Ok(map.clone());
    };
    let target = reference
        .strip_prefix('#')
        .and_then(|pointer| root.pointer(pointer))
        .ok_or_else(|| ConfigError::Schema(format!("unresolvable $ref {reference}")))?;
    let mut merged = resolve(root, target)?;
    for (key, value) in map {
        if key != "$ref" {
            merged.insert(key.clone(), value.clone());
        }
    }
    Ok(merged)
}

fn value_kind(root: &Value, schema: &Map<String, Value>) -> Result<ValueKind, String> {
    match schema.get("type").and_then(Value::as_str) {
        Some("string") => Ok(ValueKind::String),
        Some("integer") => Ok(ValueKind::Integer),
        Some("number") => Ok(ValueKind::Number),
        Some("boolean") => Ok(ValueKind::Boolean),
        Some("array") => {
            let items = schema
                .get("items")
                .ok_or("an array variable needs \"items\"")
                .and_then(|items| resolve(root, items).map_err(|_| "unresolvable items"))?;
            Ok(ValueKind::Array(Box::new(value_kind(root, &items)?)))
        }
        Some(other) => Err(format!(
            "type {other:?} cannot come from an environment variable"
        )),
        None => match schema.get("enum").and_then(Value::as_array) {
            Some(options) if options.iter().all(Value::is_string) => Ok(ValueKind::String),
            _ => Err("declare a \"type\" (or a string \"enum\")".into()),
        },
    }
}

/// A `serviceUrl` given as `host:port` (what Render's `fromService … property: hostport`
/// provides) is read as `http://host:port`; anything else is left as it is.
fn with_scheme<'a>(var: &VarSpec, raw: &'a str) -> std::borrow::Cow<'a, str> {
    let raw_trimmed = raw.trim();
    let hostport = var.schema.get("x-hostport") == Some(&Value::Bool(true))
        && !raw_trimmed.contains("://")
        && raw_trimmed.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                && port.parse::<u16>().is_ok()
        });
    if hostport {
        std::borrow::Cow::Owned(format!("http://{raw_trimmed}"))
    } else {
        std::borrow::Cow::Borrowed(raw)
    }
}

/// Converts an environment string to the JSON value the schema judges.
pub fn coerce(raw: &str, kind: &ValueKind) -> Result<Value, String> {
    let raw = raw.trim();
    match kind {
        ValueKind::String => Ok(Value::String(raw.to_owned())),
        ValueKind::Integer => raw
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| format!("{raw:?} is not an integer")),
        ValueKind::Number => raw
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("{raw:?} is not a number")),
        ValueKind::Boolean => match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Value::Bool(true)),
            "false" | "0" | "no" | "off" => Ok(Value::Bool(false)),
            _ => Err(format!("{raw:?} is not a boolean (true/false)")),
        },
        ValueKind::Array(item) => raw
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| coerce(s, item))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
    }
}

/// A JSON value written the way an environment variable holds it (arrays comma-separated).
pub fn env_string(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(env_string).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// A service's typed configuration with the report it was judged by.
#[derive(Debug)]
pub struct Loaded<T> {
    pub config: T,
    pub report: ConfigReport,
    pub spec: Arc<Spec>,
}

/// Reads `.env` (if present) and the process environment, validates and types them.
pub fn load<T: DeserializeOwned>(service: &str) -> Result<Loaded<T>, ConfigError> {
    evaluate(Spec::for_service(service)?, &process_env()?)
}

/// `.env` (if present) under the process environment. Only the working directory's `.env` is
/// read: `dotenvy::dotenv` would also search every parent directory, so a service started
/// below some unrelated `.env` (a checkout's, `/tmp/.env`) would quietly take its values.
pub(crate) fn process_env() -> Result<HashMap<String, String>, ConfigError> {
    match dotenvy::from_path(".env") {
        Ok(_) => {}
        Err(e) if e.not_found() => {}
        Err(e) => return Err(ConfigError::EnvFile(e.to_string())),
    }
    Ok(std::env::vars().collect())
}

/// Like [`load`], for a command-line tool's section (`commands.<name>`).
pub fn load_command<T: DeserializeOwned>(name: &str) -> Result<Loaded<T>, ConfigError> {
    evaluate(Spec::for_command(name)?, &process_env()?)
}

/// Like [`load`], from an explicit environment.
pub fn load_from<T: DeserializeOwned>(
    service: &str,
    env: &HashMap<String, String>,
) -> Result<Loaded<T>, ConfigError> {
    evaluate(Spec::for_service(service)?, env)
}

fn evaluate<T: DeserializeOwned>(
    spec: Spec,
    env: &HashMap<String, String>,
) -> Result<Loaded<T>, ConfigError> {
    let service = spec.service().to_owned();
    let Evaluation { report, values } = spec.evaluate(env);
    if !report.valid {
        return Err(ConfigError::Invalid(report));
    }
    for var in spec.vars().filter(|var| var.secret) {
        match values.get(&var.name) {
            Some(Value::String(secret)) => crate::redact::register(secret),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .for_each(crate::redact::register),
            _ => {}
        }
    }
    let config = serde_json::from_value(Value::Object(values)).map_err(|e| {
        ConfigError::Schema(format!(
            "the schema accepted a value the {service} config type cannot hold: {e}"
        ))
    })?;
    Ok(Loaded {
        config,
        report,
        spec: Arc::new(spec),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Text,
}

/// The `server` group: what every service's HTTP server needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct ServerConfig {
    pub host: IpAddr,
    pub port: u16,
    pub internal_api_keys: Vec<SecretString>,
    pub basic_auth_user: String,
    pub basic_auth_pass: SecretString,
    pub ws_allowed_origins: Vec<String>,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    pub request_body_limit: usize,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    pub log_level: String,
    pub log_format: LogFormat,
    pub logging_url: Option<Url>,
    pub log_ship_buffer: usize,
    pub otel_exporter_otlp_endpoint: Option<Url>,
    #[serde(flatten)]
    pub rate_limit: crate::ratelimit::RateLimitConfig,
}

impl ServerConfig {
    /// The key this service sends to others (the first of `INTERNAL_API_KEYS`).
    pub fn outbound_internal_key(&self) -> SecretString {
        self.internal_api_keys
            .first()
            .map(|k| SecretString::from(k.expose_secret().to_owned()))
            .unwrap_or_else(|| SecretString::from(String::new()))
    }
}

/// The `database` group.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct DatabaseConfig {
    pub database_url: SecretString,
    pub database_max_connections: u32,
    #[serde(with = "humantime_serde")]
    pub database_acquire_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub database_statement_timeout: Duration,
    pub migrate_on_start: bool,
}

/// Implemented by each service's config type so the bootstrap finds the shared groups.
pub trait ServiceConfig: DeserializeOwned + Send + Sync + 'static {
    /// The service's section name in the schema.
    const SERVICE: &'static str;
    fn server(&self) -> &ServerConfig;
    fn database(&self) -> Option<&DatabaseConfig> {
        None
    }
    /// Whether this service ships its log events to `LOGGING_URL`. The logging service
    /// itself does not: shipping its own request logs to itself would feed back.
    fn ships_logs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_coverage_names_unknown_and_missing_variables() {
        let spec = Spec::for_service("logging").expect("section");
        let set = [
            "INTERNAL_API_KEYS",
            "BASIC_AUTH_USER",
            "DATABASE_URL",
            "NO_SUCH_KEY",
        ];
        let coverage = spec.key_coverage(set);
        assert_eq!(coverage.unknown, ["NO_SUCH_KEY"]);
        assert_eq!(coverage.missing, ["BASIC_AUTH_PASS"]);
        assert!(!coverage.is_complete());
        assert_eq!(
            coverage.problems("f: s"),
            [
                "f: s: sets NO_SUCH_KEY, which its config schema does not know",
                "f: s: does not set BASIC_AUTH_PASS, which its config schema requires",
            ]
        );
        let all = [
            "INTERNAL_API_KEYS",
            "BASIC_AUTH_USER",
            "BASIC_AUTH_PASS",
            "DATABASE_URL",
        ];
        assert!(spec.key_coverage(all).is_complete());
    }

    #[test]
    fn a_rule_over_several_variables_is_reported_not_dropped() {
        let document = serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$defs": {},
            "services": {"svc": {
                "type": "object",
                "properties": {
                    "A": {"type": "string", "description": "a", "examples": ["x"]},
                    "B": {"type": "string", "description": "b", "examples": ["y"], "writeOnly": true}
                },
                "anyOf": [{"required": ["A"]}, {"required": ["B"]}]
            }}
        });
        let spec = Spec::from_document(&document, "svc").expect("compiles");
        let report = spec.evaluate(&HashMap::new()).report;
        assert!(!report.valid);
        let problem = report.problems().next().expect("one problem");
        assert_eq!(problem.key, COMBINATION_KEY);
        let env = HashMap::from([("B".to_owned(), "secret-value".to_owned())]);
        let report = spec.evaluate(&env).report;
        assert!(report.valid, "{report:?}");
    }
}
