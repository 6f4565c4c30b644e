//! orchestrator: the task lifecycle. Tasks are created (by people, CLIs, webhooks or an AI),
//! validated against the payload schema of the agent serving their kind, dispatched to that
//! agent under a lease, retried, timed out, cancelled, and every change is recorded as a task
//! event and streamed live.

mod actor;
mod agents;
mod dispatch;
mod hooks;
mod hub;
mod schemas;
mod tasks;
mod ws;

use std::sync::Arc;
use std::time::Duration;

use autonoma_aws::AwsConfig;
use autonoma_common::config::{DatabaseConfig, ServerConfig, ServiceConfig};
use autonoma_common::{Loaded, Server, ServerBuilder, db};
use secrecy::SecretString;
use serde::Deserialize;
use sqlx::PgPool;

pub const SERVICE: &str = "orchestrator";

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct OrchestratorConfig {
    #[serde(flatten)]
    pub server: ServerConfig,
    #[serde(flatten)]
    pub database: DatabaseConfig,
    #[serde(flatten)]
    pub aws: AwsConfig,
    pub dispatch_concurrency: usize,
    #[serde(with = "humantime_serde")]
    pub lease_grace: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_backoff_base: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_backoff_max: Duration,
    #[serde(with = "humantime_serde")]
    pub agent_liveness: Duration,
    pub webhook_secrets: Vec<SecretString>,
    pub webhook_routes: Vec<String>,
    pub ws_client_buffer: usize,
}

impl ServiceConfig for OrchestratorConfig {
    const SERVICE: &'static str = SERVICE;

    fn server(&self) -> &ServerConfig {
        &self.server
    }

    fn database(&self) -> Option<&DatabaseConfig> {
        Some(&self.database)
    }
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub pool: PgPool,
    pub config: Arc<OrchestratorConfig>,
    pub schemas: Arc<schemas::SchemaCache>,
    pub hub: hub::Hub,
    pub agents: Arc<dispatch::AgentCalls>,
    pub hooks: Arc<hooks::HookConfig>,
}

/// Connects (and migrates when asked), starts the dispatcher and the live hub, binds.
pub async fn build(loaded: Loaded<OrchestratorConfig>) -> anyhow::Result<Server> {
    let config = Arc::new(loaded.config.clone());
    let pool = db::open(SERVICE, &config.database).await?;
    let builder = ServerBuilder::new(&loaded).database(pool.clone());
    let shutdown = builder.shutdown_token();

    let agents = Arc::new(dispatch::AgentCalls::new(&config.server, &config.aws).await?);
    let hub = hub::Hub::start(pool.clone(), config.ws_client_buffer, shutdown.clone());
    dispatch::Dispatcher::new(pool.clone(), config.clone(), agents.clone()).start(shutdown.clone());

    let state = AppState {
        pool: pool.clone(),
        schemas: Arc::new(schemas::SchemaCache::default()),
        hooks: Arc::new(hooks::HookConfig::from_config(&config)?),
        config,
        hub,
        agents,
    };
    builder
        .routes(tasks::router(state.clone()))
        .routes(agents::router(state.clone()))
        .routes(ws::router(state.clone()))
        .routes(hooks::router(state))
        .bind()
        .await
}
