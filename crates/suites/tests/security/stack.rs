//! The six services as real processes on loopback, each on a fresh database, with known
//! credentials, and their route tables read from `GET /openapi.json`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use autonoma_testkit::{
    SANDBOX_TEST_IMAGE, ServiceProcess, TestDb, docker_host, test_db, workspace_binary,
};
use base64::Engine;
use serde_json::Value;

pub const SERVICES: [&str; 6] = [
    "orchestrator",
    "logging",
    "echo-agent",
    "renderctl",
    "sandbox",
    "queue-gateway",
];

pub const KEY: &str = "suite-internal-key-0123456789abcdef";
pub const USER: &str = "operator";
pub const PASS: &str = "suite-password-0123456";
/// The webhook source the orchestrator is configured with, and its secret.
pub const HOOK_SOURCE: &str = "github";
pub const HOOK_SECRET: &str = "suite-hook-secret-0123456789";

const START_TIMEOUT: Duration = Duration::from_secs(120);

/// Limits high enough that a suite sending hundreds of refused requests is never throttled.
pub const NO_RATE_LIMITS: [(&str, &str); 4] = [
    ("RATE_LIMIT_PER_SECOND", "1000000"),
    ("RATE_LIMIT_BURST", "1000000"),
    ("RATE_LIMIT_AUTH_FAILURES_PER_MINUTE", "1000000"),
    ("RATE_LIMIT_AUTH_FAILURE_BURST", "1000000"),
];

pub fn basic(user: &str, pass: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
}

/// One service binary running on a fresh database.
pub struct Service {
    pub name: &'static str,
    pub process: ServiceProcess,
    _db: TestDb,
    _dir: tempfile::TempDir,
}

impl Service {
    /// Starts `name` with the suite's credentials and `extra` over the defaults, and waits until
    /// it is healthy.
    pub async fn start(name: &'static str, extra: &[(&str, &str)]) -> Service {
        let db = test_db().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut env: BTreeMap<&str, String> = [
            ("INTERNAL_API_KEYS", KEY.to_owned()),
            ("BASIC_AUTH_USER", USER.to_owned()),
            ("BASIC_AUTH_PASS", PASS.to_owned()),
            ("LOG_FORMAT", "json".to_owned()),
        ]
        .into_iter()
        .collect();
        if name != "echo-agent" {
            env.insert("DATABASE_URL", db.url.clone());
        }
        let path = |sub: &str| dir.path().join(sub).display().to_string();
        match name {
            "orchestrator" => {
                env.insert("WEBHOOK_SECRETS", format!("{HOOK_SOURCE}:{HOOK_SECRET}"));
                env.insert("WEBHOOK_ROUTES", format!("{HOOK_SOURCE}/*=echo"));
            }
            // Nothing answers there: the agent keeps retrying its registration, which the
            // suites do not need.
            "echo-agent" => {
                env.insert("ORCHESTRATOR_URL", "http://127.0.0.1:9".to_owned());
            }
            // No request reaches Render: the suites stop at authentication and validation.
            "renderctl" => {
                env.insert("RENDER_API_BASE_URL", "http://127.0.0.1:9".to_owned());
                env.insert("RENDER_BLUEPRINT_PATH", path("render.yaml"));
            }
            "sandbox" => {
                env.insert("DOCKER_HOST", docker_host());
                env.insert("SANDBOX_IMAGE", SANDBOX_TEST_IMAGE.to_owned());
                env.insert("SANDBOX_WORKSPACE_DIR", path("sandbox"));
                env.insert("SANDBOX_MEMORY_MB", "256".to_owned());
                env.insert("SANDBOX_PIDS_LIMIT", "128".to_owned());
                env.insert("SANDBOX_TMPFS_MB", "16".to_owned());
            }
            "queue-gateway" => {
                env.insert("BLOB_DIR", path("blobs"));
            }
            _ => {}
        }
        for (key, value) in extra {
            env.insert(key, (*value).to_owned());
        }
        let env: Vec<(&str, String)> = env.into_iter().collect();
        let mut process =
            ServiceProcess::spawn(&workspace_binary(name), &env).expect("the service starts");
        process
            .wait_healthy(START_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        Service {
            name,
            process,
            _db: db,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.process.url(path)
    }

    /// The service's OpenAPI document, read with the internal key.
    pub async fn openapi(&self, http: &reqwest::Client) -> Value {
        let response = http
            .get(self.url("/openapi.json"))
            .header("x-internal-key", KEY)
            .send()
            .await
            .expect("GET /openapi.json");
        assert_eq!(response.status(), 200, "{}: GET /openapi.json", self.name);
        response.json().await.expect("the OpenAPI document is JSON")
    }
}

/// One operation of a route table.
#[derive(Debug, Clone)]
pub struct Route {
    pub method: reqwest::Method,
    /// As the document writes it, `{param}`s included.
    pub path: String,
    pub operation: Value,
}

impl Route {
    pub fn name(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// The media type of the request body, when the operation takes one.
    pub fn body_type(&self) -> Option<String> {
        let content = self.operation["requestBody"]["content"].as_object()?;
        Some(
            content
                .keys()
                .next()
                .cloned()
                .unwrap_or_else(|| "application/json".to_owned()),
        )
    }

    /// Whether the operation's `security` names `scheme` (`basicAuth`, `internalKey`,
    /// `bearerAuth`).
    pub fn declares(&self, scheme: &str) -> bool {
        self.operation["security"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|requirement| requirement.get(scheme).is_some())
    }

    /// The query parameters the operation declares, with their schemas.
    pub fn query_parameters(&self) -> Vec<(String, Value)> {
        self.operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "query")
            .filter_map(|p| Some((p["name"].as_str()?.to_owned(), p["schema"].clone())))
            .collect()
    }
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Every operation of an OpenAPI document.
pub fn routes(openapi: &Value) -> Vec<Route> {
    let mut routes = Vec::new();
    for (path, item) in openapi["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            routes.push(Route {
                method: method.to_ascii_uppercase().parse().expect("a method"),
                path: path.clone(),
                operation: operation.clone(),
            });
        }
    }
    routes
}

/// `path` with each `{param}` replaced by a well-formed value, so a request reaches the route's
/// authentication rather than the router's 404: the configured webhook source, a page id, a
/// component address, a file path, else a fresh UUID (every other id is one).
pub fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        let name = &rest[start + 1..start + end];
        out.push_str(&match name {
            "source" => HOOK_SOURCE.to_owned(),
            "page" => "suite-page".to_owned(),
            "address" => "text-component-main".to_owned(),
            "name" => "suite-agent".to_owned(),
            "rest" => "index.html".to_owned(),
            _ => uuid::Uuid::new_v4().to_string(),
        });
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("HTTP client")
}

/// The status and body of a problem document; an error saying what the answer was otherwise.
pub async fn problem_document(
    response: reqwest::Response,
) -> Result<(reqwest::StatusCode, Value), String> {
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.unwrap_or_default();
    if content_type != "application/problem+json" {
        return Err(format!(
            "answered {status} as {content_type:?}: {text:.200}"
        ));
    }
    match serde_json::from_str::<Value>(&text) {
        Ok(body) => Ok((status, body)),
        Err(error) => Err(format!(
            "answered {status} with a body that is not JSON: {error}"
        )),
    }
}
