//! A fake orchestrator that records what agents send it, and an agent served in-process.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use autonoma_agent_kit::{Agent, AgentConfig, AgentHandle};
use autonoma_aws::AwsConfig;
use autonoma_common::config::{ServerConfig, ServiceConfig, load_from};
use autonoma_common::{Loaded, ServerBuilder};
use autonoma_testkit::{TestServer, serve_router};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub const KEY: &str = "agent-kit-test-key-0123456789";

/// One request the fake orchestrator received.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub internal_key: Option<String>,
    pub traceparent: Option<String>,
    pub body: Value,
}

#[derive(Default)]
struct Script {
    calls: Vec<Call>,
    /// Statuses for the next `POST /agents`, then 201.
    register: VecDeque<u16>,
    /// Statuses for the next `PATCH /task/{id}`, then 200.
    patch: VecDeque<u16>,
}

/// Answers like the orchestrator would, as scripted, and records every request.
#[derive(Clone, Default)]
pub struct FakeOrchestrator {
    script: Arc<Mutex<Script>>,
}

impl FakeOrchestrator {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register_answers(&self, statuses: &[u16]) -> &Self {
        self.lock().register.extend(statuses);
        self
    }

    pub fn patch_answers(&self, statuses: &[u16]) -> &Self {
        self.lock().patch.extend(statuses);
        self
    }

    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    pub fn calls_to(&self, method: &str, path_prefix: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method && c.path.starts_with(path_prefix))
            .collect()
    }

    pub fn router(&self) -> Router {
        Router::new().fallback(answer).with_state(self.clone())
    }

    pub async fn serve(&self) -> TestServer {
        serve_router(self.router()).await
    }

    /// Serves on a given port of 127.0.0.1, e.g. one an agent already tries to reach.
    pub async fn serve_on(&self, port: u16) -> tokio::task::JoinHandle<()> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .await
            .expect("bind the fake orchestrator");
        let router = self.router();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

async fn answer(State(fake): State<FakeOrchestrator>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_else(|_| Bytes::new());
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let call = Call {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        internal_key: header("x-internal-key"),
        traceparent: header("traceparent"),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    };
    let mut script = fake.lock();
    let status = match (call.method.as_str(), call.path.as_str()) {
        ("POST", "/agents") => script.register.pop_front().unwrap_or(201),
        ("PATCH", path) if path.starts_with("/task/") => script.patch.pop_front().unwrap_or(200),
        ("POST", path) if path.ends_with("/heartbeat") => 204,
        _ => 404,
    };
    script.calls.push(call);
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status == StatusCode::NO_CONTENT {
        status.into_response()
    } else {
        (status, axum::Json(serde_json::json!({}))).into_response()
    }
}

/// The config of an agent under test. The kit's variables are those of the reference agent's
/// section of the schema, which is made of exactly the shared groups.
#[derive(Debug, Clone, Deserialize)]
pub struct TestAgentConfig {
    #[serde(flatten)]
    pub server: ServerConfig,
    #[serde(flatten)]
    pub agent: AgentConfig,
    #[serde(flatten)]
    pub aws: AwsConfig,
}

impl ServiceConfig for TestAgentConfig {
    const SERVICE: &'static str = "echo-agent";
    fn server(&self) -> &ServerConfig {
        &self.server
    }
}

/// An agent served in-process on 127.0.0.1 and started against `orchestrator_url`.
pub struct RunningAgent {
    pub base_url: String,
    pub shutdown: CancellationToken,
    pub handle: Option<AgentHandle>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningAgent {
    pub async fn start(agent: &Agent, orchestrator_url: &str, extra: &[(&str, &str)]) -> Self {
        let mut env: HashMap<String, String> = [
            ("INTERNAL_API_KEYS", KEY),
            ("BASIC_AUTH_USER", "operator"),
            ("BASIC_AUTH_PASS", "correct-horse-battery"),
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("HEARTBEAT_INTERVAL", "200ms"),
            ("ORCHESTRATOR_URL", orchestrator_url),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let loaded: Loaded<TestAgentConfig> = match load_from("echo-agent", &env) {
            Ok(loaded) => loaded,
            Err(error) => panic!("test configuration: {error}"),
        };
        let server = ServerBuilder::new(&loaded)
            .routes(agent.routes())
            .bind()
            .await
            .expect("bind");
        let config = &loaded.config;
        let handle = agent
            .start(&config.agent, &config.aws, &config.server, &server)
            .expect("start the agent");
        let base_url = format!("http://{}", server.local_addr());
        let shutdown = server.shutdown_token();
        RunningAgent {
            base_url,
            shutdown,
            handle: Some(handle),
            server: tokio::spawn(server.run()),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Shuts the server down and waits for the agent's background work to end.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(30), handle.stopped())
                .await
                .expect("the agent stops");
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), &mut self.server).await;
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Polls `check` until it returns Some, failing the test after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("http client")
}

pub fn local(port: u16) -> String {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port)).to_string()
}
