//! The sandbox in-process on a fresh database, running sessions in the test run's container
//! engine (`TEST_DOCKER_HOST`) from the busybox test image, and the calls an AI makes of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use autonoma_common::config;
use autonoma_testkit::{SANDBOX_TEST_IMAGE, TestDb, docker_host, test_db};
use bollard::Docker;
use reqwest::StatusCode;
use sandbox::SandboxConfig;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const KEY: &str = "sandbox-test-key-0123456789";
pub const USER: &str = "operator";
pub const PASS: &str = "correct-horse-battery";

pub struct Service {
    pub base: String,
    pub http: reqwest::Client,
    pub shutdown: CancellationToken,
    pub server: JoinHandle<anyhow::Result<()>>,
}

impl Drop for Service {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A test's database and workspace directory, which outlive one run of the service. Dropping
/// it removes the containers its sessions left in the engine.
pub struct Env {
    pub db: TestDb,
    pub dir: tempfile::TempDir,
    pub extra: Vec<(String, String)>,
    owner: std::sync::Mutex<Option<String>>,
}

impl Drop for Env {
    fn drop(&mut self) {
        let Some(owner) = self.owner.lock().ok().and_then(|mut o| o.take()) else {
            return;
        };
        // Drop cannot await, and the test's runtime may be shutting down: a thread of its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(remove_containers(&owner));
        });
        let _ = cleanup.join();
    }
}

/// Removes every container labelled with this store's owner tag.
async fn remove_containers(owner: &str) {
    use sandbox::driver::Driver;
    let Ok(driver) = sandbox::driver::docker::DockerDriver::connect(&docker_host()) else {
        return;
    };
    let label = format!("{}={owner}", sandbox::sandbox::OWNER_LABEL);
    for container in driver.list(&label).await.unwrap_or_default() {
        let _ = driver.remove(&container.id).await;
    }
}

impl Env {
    pub async fn new(extra: &[(&str, &str)]) -> Self {
        Self {
            db: test_db().await,
            dir: tempfile::tempdir().expect("tempdir"),
            extra: extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            owner: std::sync::Mutex::new(None),
        }
    }

    pub fn variables(&self) -> HashMap<String, String> {
        let mut env: HashMap<String, String> = [
            ("HOST", "127.0.0.1".to_owned()),
            ("PORT", "0".to_owned()),
            ("INTERNAL_API_KEYS", KEY.to_owned()),
            ("BASIC_AUTH_USER", USER.to_owned()),
            ("BASIC_AUTH_PASS", PASS.to_owned()),
            ("DATABASE_URL", self.db.url.clone()),
            ("REQUEST_TIMEOUT", "130s".to_owned()),
            ("DOCKER_HOST", docker_host()),
            ("SANDBOX_IMAGE", SANDBOX_TEST_IMAGE.to_owned()),
            (
                "SANDBOX_WORKSPACE_DIR",
                self.workspaces().display().to_string(),
            ),
            ("SANDBOX_MEMORY_MB", "256".to_owned()),
            ("SANDBOX_PIDS_LIMIT", "128".to_owned()),
            ("SANDBOX_TMPFS_MB", "16".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        env.extend(self.extra.iter().cloned());
        env
    }

    pub fn workspaces(&self) -> PathBuf {
        self.dir.path().join("sandbox")
    }

    pub async fn start(&self) -> Service {
        let loaded = config::load_from::<SandboxConfig>(sandbox::SERVICE, &self.variables())
            .unwrap_or_else(|e| panic!("config: {e}"));
        let server = sandbox::build(loaded).await.expect("build");
        let pool = sqlx::PgPool::connect(&self.db.url).await.expect("database");
        let owner: Option<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM sandbox_store")
            .fetch_optional(&pool)
            .await
            .expect("owner tag");
        pool.close().await;
        if let (Some(owner), Ok(mut slot)) = (owner, self.owner.lock()) {
            *slot = Some(owner.to_string());
        }
        let base = format!("http://{}", server.local_addr());
        let shutdown = server.shutdown_token();
        let server = tokio::spawn(server.run());
        Service {
            base,
            http: reqwest::Client::new(),
            shutdown,
            server,
        }
    }
}

pub async fn start() -> (Env, Service) {
    start_with(&[]).await
}

pub async fn start_with(extra: &[(&str, &str)]) -> (Env, Service) {
    let env = Env::new(extra).await;
    let service = env.start().await;
    (env, service)
}

impl Service {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the service and waits until it has.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let server = take_server(self);
        let _ = tokio::time::timeout(Duration::from_secs(30), server).await;
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(self.url(path))
            .header("x-internal-key", KEY)
            .json(&body)
            .send()
            .await
            .expect("POST");
        read(response).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(self.url(path))
            .basic_auth(USER, Some(PASS))
            .send()
            .await
            .expect("GET");
        read(response).await
    }

    pub async fn delete(&self, path: &str) -> StatusCode {
        self.http
            .delete(self.url(path))
            .header("x-internal-key", KEY)
            .send()
            .await
            .expect("DELETE")
            .status()
    }

    /// Creates a session and returns its id.
    pub async fn create(&self, template: &str) -> String {
        let (status, body) = self
            .post("/api/sessions", json!({"template": template}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["sessionId"].as_str().expect("sessionId").to_owned()
    }

    pub async fn exec(&self, session: &str, cmd: &str) -> Value {
        self.exec_with(session, json!({"cmd": cmd})).await
    }

    pub async fn exec_with(&self, session: &str, body: Value) -> Value {
        let (status, out) = self
            .post(&format!("/api/sessions/{session}/exec"), body)
            .await;
        assert_eq!(status, StatusCode::OK, "{out}");
        out
    }

    pub async fn write(&self, session: &str, path: &str, content: &str) -> Value {
        let (status, out) = self
            .post(
                &format!("/api/sessions/{session}/fs/write"),
                json!({"path": path, "content": content}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{out}");
        out
    }

    pub async fn state(&self, session: &str) -> Value {
        let (status, state) = self.get(&format!("/api/sessions/{session}/state")).await;
        assert_eq!(status, StatusCode::OK, "{state}");
        state
    }

    /// Polls the preview at `path` until it answers 200, and returns the body.
    pub async fn preview_when_up(&self, session: &str, path: &str) -> String {
        let url = self.url(&format!("/api/sessions/{session}/preview/proxy{path}"));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let response = self
                .http
                .get(&url)
                .basic_auth(USER, Some(PASS))
                .send()
                .await
                .expect("preview GET");
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            if status == StatusCode::OK {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the preview did not answer 200 within 15 s: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Moves the server handle out of a service that is being dropped.
fn take_server(mut service: Service) -> JoinHandle<anyhow::Result<()>> {
    let placeholder = tokio::spawn(async { Ok(()) });
    std::mem::replace(&mut service.server, placeholder)
}

pub async fn read(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

pub async fn docker() -> Docker {
    let host = docker_host();
    Docker::connect_with_unix(&host, 120, bollard::API_DEFAULT_VERSION)
        .expect("connecting to the engine")
        .negotiate_version()
        .await
        .expect("negotiating the API version")
}

/// Whether the engine still has the container.
pub async fn container_exists(id: &str) -> bool {
    docker()
        .await
        .inspect_container(
            id,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .is_ok()
}
