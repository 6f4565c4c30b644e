//! A real server built by the bootstrap, on 127.0.0.1 and a free port, for the tests.
#![allow(dead_code)]

use std::collections::HashMap;

use autonoma_common::ServerBuilder;
use autonoma_common::config::{self, ServerConfig, ServiceConfig};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;

pub const KEY_NEW: &str = "new-key-0123456789abcdef";
pub const KEY_OLD: &str = "old-key-fedcba9876543210";
pub const USER: &str = "operator";
pub const PASS: &str = "correct-horse-battery";
pub const ORIGIN: &str = "http://localhost:5173";

/// The server group, read from the echo-agent's section (whose other groups are satisfied by
/// [`env`] and otherwise ignored here).
#[derive(Debug, Deserialize)]
pub struct TestConfig {
    #[serde(flatten)]
    pub server: ServerConfig,
}

impl ServiceConfig for TestConfig {
    const SERVICE: &'static str = "echo-agent";
    fn server(&self) -> &ServerConfig {
        &self.server
    }
}

pub fn env(extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = [
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("INTERNAL_API_KEYS", &format!("{KEY_NEW},{KEY_OLD}")),
        ("BASIC_AUTH_USER", USER),
        ("BASIC_AUTH_PASS", PASS),
        ("WS_ALLOWED_ORIGINS", ORIGIN),
        // Required by the agent group; nothing is started that would call it.
        ("ORCHESTRATOR_URL", "http://127.0.0.1:9"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in extra {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    env
}

pub struct Running {
    pub base: String,
    pub shutdown: CancellationToken,
    pub handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

pub async fn start(routes: OpenApiRouter, extra_env: &[(&str, &str)]) -> Running {
    start_with_database(routes, extra_env, None).await
}

/// [`start`], with `/health/ready` reporting on `pool`.
pub async fn start_with_database(
    routes: OpenApiRouter,
    extra_env: &[(&str, &str)],
    pool: Option<sqlx::PgPool>,
) -> Running {
    let loaded = config::load_from::<TestConfig>("echo-agent", &env(extra_env))
        .expect("test configuration is valid");
    let mut builder = ServerBuilder::new(&loaded).routes(routes);
    if let Some(pool) = pool {
        builder = builder.database(pool);
    }
    let server = builder.bind().await.expect("server binds");
    let base = format!("http://{}", server.local_addr());
    let shutdown = server.shutdown_token();
    let handle = tokio::spawn(server.run());
    Running {
        base,
        shutdown,
        handle,
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::new()
}
