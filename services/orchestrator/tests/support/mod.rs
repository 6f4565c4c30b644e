//! An orchestrator on a fresh database, and agents that behave as a test needs.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use autonoma_common::config;
use autonoma_protocol::{DispatchIn, DispatchOut, TaskOut, TaskStatus};
use autonoma_testkit::{TestDb, TestServer, serve_router, test_db};
use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use orchestrator::OrchestratorConfig;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub const KEY: &str = "orchestrator-test-key-0123";
pub const USER: &str = "operator";
pub const PASS: &str = "correct-horse-battery";
pub const ORIGIN: &str = "http://localhost:5173";
pub const HOOK_SECRET: &str = "a-webhook-secret-of-some-length";

pub struct Orchestrator {
    pub db: TestDb,
    pub base: String,
    pub shutdown: CancellationToken,
    pub http: reqwest::Client,
}

pub fn env(db_url: &str, extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = [
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("INTERNAL_API_KEYS", KEY),
        ("BASIC_AUTH_USER", USER),
        ("BASIC_AUTH_PASS", PASS),
        ("WS_ALLOWED_ORIGINS", ORIGIN),
        ("DATABASE_URL", db_url),
        ("RETRY_BACKOFF_BASE", "50ms"),
        ("RETRY_BACKOFF_MAX", "200ms"),
        ("LEASE_GRACE", "1s"),
        ("WEBHOOK_SECRETS", &format!("github:{HOOK_SECRET}")),
        ("WEBHOOK_ROUTES", "github/push=echo"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in extra {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    env
}

/// An orchestrator on `db_url`, served in this process: its base URL, and the token that
/// stops it.
pub async fn serve(db_url: &str, extra: &[(&str, &str)]) -> (String, CancellationToken) {
    let loaded = config::load_from::<OrchestratorConfig>("orchestrator", &env(db_url, extra))
        .expect("valid configuration");
    let server = orchestrator::build(loaded)
        .await
        .expect("orchestrator builds");
    let base = format!("http://{}", server.local_addr());
    let shutdown = server.shutdown_token();
    tokio::spawn(server.run());
    (base, shutdown)
}

pub async fn start_on(db: TestDb, extra: &[(&str, &str)]) -> Orchestrator {
    // The orchestrator's own log lines, shown with a failing test's output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("TEST_LOG").unwrap_or_else(|_| "info,sqlx=warn".into()))
        .with_test_writer()
        .try_init();
    let (base, shutdown) = serve(&db.url, extra).await;
    Orchestrator {
        db,
        base,
        shutdown,
        http: reqwest::Client::new(),
    }
}

pub async fn start(extra: &[(&str, &str)]) -> Orchestrator {
    start_on(test_db().await, extra).await
}

impl Orchestrator {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn operator(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .basic_auth(USER, Some(PASS))
    }

    pub fn internal(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .header("x-internal-key", KEY)
    }

    pub async fn register(&self, name: &str, base_url: &str, kinds: Value) {
        let response = self
            .internal(reqwest::Method::POST, "/agents")
            .json(&json!({"name": name, "baseUrl": base_url, "transport": "http", "kinds": kinds}))
            .send()
            .await
            .expect("request");
        assert_eq!(
            response.status(),
            200,
            "{}",
            response.text().await.unwrap_or_default()
        );
    }

    pub async fn create(&self, body: Value) -> reqwest::Response {
        self.operator(reqwest::Method::POST, "/task")
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    pub async fn task(&self, id: uuid::Uuid) -> TaskOut {
        self.operator(reqwest::Method::GET, &format!("/task/{id}"))
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("task")
    }

    pub async fn events(&self, id: uuid::Uuid) -> Vec<Value> {
        self.operator(reqwest::Method::GET, &format!("/task/{id}/events"))
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("events")
    }

    /// Polls until the task reaches `status` (fails after `within`).
    pub async fn wait_for(&self, id: uuid::Uuid, status: TaskStatus, within: Duration) -> TaskOut {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let task = self.task(id).await;
            if task.status == status {
                return task;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "task {id} is {:?}, not {status:?}: {task:?}\nevents: {:#?}",
                task.status,
                self.events(id).await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Open payload schema for the fake agent's kind.
pub fn any_payload() -> Value {
    json!([{"kind": "echo", "payloadSchema": {"type": "object"}}])
}

/// A fake agent: answers dispatches by the payload's `mode` (ok, fail, failTimes, hang, accept)
/// and records every dispatch it received.
pub struct FakeAgent {
    pub server: TestServer,
    pub received: Arc<Mutex<Vec<DispatchIn>>>,
}

pub async fn fake_agent() -> FakeAgent {
    let received: Arc<Mutex<Vec<DispatchIn>>> = Arc::default();
    let log = received.clone();
    let router = Router::new().route(
        "/tasks/dispatch",
        post(move |axum::Json(dispatch): axum::Json<DispatchIn>| {
            let log = log.clone();
            async move {
                log.lock().expect("lock").push(dispatch.clone());
                let mode = dispatch.payload.get("mode").and_then(Value::as_str).unwrap_or("ok");
                let fail_times = dispatch.payload.get("failTimes").and_then(Value::as_i64).unwrap_or(0);
                match mode {
                    "accept" => StatusCode::ACCEPTED.into_response(),
                    "hang" if dispatch.attempt == 1 => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        StatusCode::OK.into_response()
                    }
                    "fail" => axum::Json(DispatchOut::Failed {
                        error: json!({"message": "always fails"}),
                        retryable: true,
                    })
                    .into_response(),
                    _ if i64::from(dispatch.attempt) <= fail_times => axum::Json(DispatchOut::Failed {
                        error: json!({"message": format!("failing attempt {}", dispatch.attempt)}),
                        retryable: true,
                    })
                    .into_response(),
                    _ => axum::Json(DispatchOut::Succeeded {
                        result: json!({"echo": dispatch.payload, "attempt": dispatch.attempt}),
                    })
                    .into_response(),
                }
            }
        }),
    );
    FakeAgent {
        server: serve_router(router).await,
        received,
    }
}
