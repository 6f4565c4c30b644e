//! The sandbox gives an AI an isolated workspace per session: one container (through a
//! [`driver::Driver`], Docker's API by default) with the session's directory bind-mounted at
//! `/workspace`, where the AI lists, reads and writes files, installs packages, runs commands
//! and a dev server, and the person watches the live result through the preview proxy and the
//! log stream. The same tools are served over HTTP ([`http`]) and MCP ([`mcp`]); every call is
//! recorded in Postgres ([`store`]).

pub mod driver;
pub mod http;
pub mod logs;
pub mod mcp;
pub mod output;
pub mod preview;
pub mod project;
pub mod sandbox;
pub mod store;
pub mod workspace;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use autonoma_common::config::{DatabaseConfig, ServerConfig, ServiceConfig};
use autonoma_common::{Loaded, Server, ServerBuilder, db};
use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

pub use sandbox::{Limits, Sandbox};

pub const SERVICE: &str = "sandbox";

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct SandboxConfig {
    #[serde(flatten)]
    pub server: ServerConfig,
    #[serde(flatten)]
    pub database: DatabaseConfig,
    pub docker_host: String,
    pub sandbox_image: String,
    pub sandbox_workspace_dir: PathBuf,
    pub sandbox_user: String,
    pub sandbox_network: String,
    pub sandbox_memory_mb: u64,
    pub sandbox_cpus: f64,
    pub sandbox_pids_limit: i64,
    pub sandbox_tmpfs_mb: u64,
    pub sandbox_max_sessions: u32,
    #[serde(with = "humantime_serde")]
    pub sandbox_idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub sandbox_exec_timeout: Duration,
    pub sandbox_output_limit: usize,
    pub sandbox_file_limit: usize,
    pub sandbox_preview_base_url: Url,
    pub sandbox_redact: Vec<SecretString>,
}

impl ServiceConfig for SandboxConfig {
    const SERVICE: &'static str = SERVICE;

    fn server(&self) -> &ServerConfig {
        &self.server
    }

    fn database(&self) -> Option<&DatabaseConfig> {
        Some(&self.database)
    }
}

/// Opens the database and the container engine, finds the sessions a previous run left, and
/// binds the server. An unreachable engine does not stop the service: `/health/ready` reports
/// it, and creating a session answers 503 until the engine is back.
pub async fn build(loaded: Loaded<SandboxConfig>) -> anyhow::Result<Server> {
    let config = &loaded.config;
    let pool = db::open(SERVICE, &config.database).await?;
    let driver: Arc<dyn driver::Driver> =
        Arc::new(driver::docker::DockerDriver::connect(&config.docker_host)?);
    let builder = ServerBuilder::new(&loaded).database(pool.clone());
    let sandbox = Sandbox::open(config, pool, driver.clone(), builder.shutdown_token()).await?;
    let engine = driver.clone();
    let builder = builder.ready_check("container engine", move || {
        let engine = engine.clone();
        async move { engine.ping().await.map_err(|e| e.to_string()) }
    });
    builder.routes(http::router(sandbox)).bind().await
}
