//! renderctl in-process on a fresh database, talking to the Render contract fake (every
//! request and response checked against `infra/specs/render-openapi.json`).
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use autonoma_common::config;
use autonoma_render_fake::RenderFake;
use autonoma_testkit::{TestDb, test_db};
use renderctl::RenderctlConfig;
use reqwest::StatusCode;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub const KEY: &str = "renderctl-test-key-0123456789";
pub const USER: &str = "operator";
pub const PASS: &str = "correct-horse-battery";
pub const REPO: &str = "https://github.com/acme/autonoma";

/// The product's own Blueprint.
pub fn product_blueprint() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../render.yaml")
}

pub struct Stack {
    pub fake: RenderFake,
    pub db: TestDb,
    pub dir: tempfile::TempDir,
    pub base: String,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub struct Options<'a> {
    pub token: bool,
    pub blueprint: Option<&'a str>,
    pub extra: &'a [(&'a str, &'a str)],
}

impl Default for Options<'_> {
    fn default() -> Self {
        Self {
            token: true,
            blueprint: None,
            extra: &[],
        }
    }
}

pub async fn start() -> Stack {
    start_with(Options::default()).await
}

pub async fn start_with(options: Options<'_>) -> Stack {
    let fake = RenderFake::start().await.expect("Render fake");
    let db = test_db().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let blueprint = match options.blueprint {
        Some(text) => {
            let path = dir.path().join("render.yaml");
            std::fs::write(&path, text).expect("write render.yaml");
            path
        }
        None => product_blueprint(),
    };
    let mut env: HashMap<String, String> = [
        ("HOST", "127.0.0.1".to_owned()),
        ("PORT", "0".to_owned()),
        ("INTERNAL_API_KEYS", KEY.to_owned()),
        ("BASIC_AUTH_USER", USER.to_owned()),
        ("BASIC_AUTH_PASS", PASS.to_owned()),
        ("DATABASE_URL", db.url.clone()),
        ("RENDER_API_BASE_URL", fake.base_url()),
        ("RENDER_REPO", REPO.to_owned()),
        ("RENDER_API_MAX_RETRIES", "3".to_owned()),
        ("RENDER_RATE_LIMIT_MAX_WAIT", "5s".to_owned()),
        ("RENDER_BLUEPRINT_PATH", blueprint.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if options.token {
        env.insert("RENDER_API_TOKEN".into(), fake.token().to_owned());
    }
    for (key, value) in options.extra {
        env.insert((*key).to_owned(), (*value).to_owned());
    }
    let loaded = config::load_from::<RenderctlConfig>(renderctl::SERVICE, &env)
        .unwrap_or_else(|e| panic!("config: {e}"));
    let server = renderctl::build(loaded).await.expect("build");
    let base = format!("http://{}", server.local_addr());
    let shutdown = server.shutdown_token();
    tokio::spawn(server.run());
    Stack {
        fake,
        db,
        dir,
        base,
        http: reqwest::Client::new(),
        shutdown,
    }
}

impl Stack {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, self.url(path))
            .basic_auth(USER, Some(PASS));
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.expect("request")).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::PATCH, path, Some(body)).await
    }

    /// The changes renderctl recorded, oldest first: `(actor, origin, action, ok)`.
    pub async fn recorded(&self) -> Vec<(String, String, String, bool)> {
        sqlx::query_as("SELECT actor, origin, action, ok FROM render_changes ORDER BY id")
            .fetch_all(&self.db.pool)
            .await
            .expect("render_changes")
    }

    /// Fails the test if anything that crossed the fake broke Render's published contract.
    pub fn assert_contract_kept(&self) {
        let violations = self.fake.violations();
        assert!(
            violations.is_empty(),
            "requests or responses broke render-openapi.json:\n{}",
            violations.join("\n")
        );
    }

    /// Waits until the fake's deploy `deploy_id` of `service_id` has finished.
    pub async fn settle(&self, service_id: &str, deploy_id: &str) -> String {
        for _ in 0..200 {
            let deploys = self.fake.deploys(service_id);
            let status = deploys
                .iter()
                .find(|d| d["id"] == deploy_id)
                .and_then(|d| d["status"].as_str())
                .unwrap_or_default()
                .to_owned();
            if [
                "live",
                "build_failed",
                "update_failed",
                "canceled",
                "deactivated",
            ]
            .contains(&status.as_str())
            {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("deploy {deploy_id} of {service_id} did not finish");
    }
}

pub async fn read(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("body");
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, value)
}
