//! renderctl drives this product's Render setup from the repository: it creates services,
//! edits their env vars and deploys them through Render's API ([`render`]), reconciles
//! `render.yaml` with Render ([`blueprint`]), watches deploys of chosen services and fixes the
//! common static-site build failures ([`monitor`]), and records every change it makes
//! ([`changes`]). The HTTP API is in [`http`]; [`cli`] is the same for CI.

pub mod blueprint;
pub mod changes;
pub mod cli;
pub mod http;
pub mod monitor;
pub mod render;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use autonoma_common::config::{DatabaseConfig, ServerConfig, ServiceConfig};
use autonoma_common::{Loaded, Problem, Server, ServerBuilder, db};
use secrecy::SecretString;
use serde::Deserialize;
use tokio::sync::OnceCell;
use url::Url;

use blueprint::{Blueprint, BlueprintError};
use changes::Recorder;
use render::{ClientOptions, RenderClient, RenderError};

pub const SERVICE: &str = "renderctl";

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct RenderctlConfig {
    #[serde(flatten)]
    pub server: ServerConfig,
    #[serde(flatten)]
    pub database: DatabaseConfig,
    #[serde(flatten)]
    pub render: RenderConfig,
    pub render_monitor_services: Vec<String>,
    #[serde(with = "humantime_serde")]
    pub render_monitor_interval: Duration,
}

/// The `render` group: how to reach Render, shared by the service and the command line.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct RenderConfig {
    pub render_api_token: Option<SecretString>,
    pub render_api_base_url: Url,
    pub render_owner_id: Option<String>,
    pub render_repo: Option<String>,
    #[serde(with = "humantime_serde")]
    pub render_api_timeout: Duration,
    pub render_api_max_retries: u32,
    #[serde(with = "humantime_serde")]
    pub render_rate_limit_max_wait: Duration,
    pub render_blueprint_path: PathBuf,
}

impl ServiceConfig for RenderctlConfig {
    const SERVICE: &'static str = SERVICE;

    fn server(&self) -> &ServerConfig {
        &self.server
    }

    fn database(&self) -> Option<&DatabaseConfig> {
        Some(&self.database)
    }
}

/// What every handler, the monitor and the command line share.
#[derive(Clone)]
pub struct Renderctl {
    pub client: RenderClient,
    pub recorder: Recorder,
    configured_owner: Option<String>,
    owner: Arc<OnceCell<String>>,
    default_repo: Option<String>,
    blueprint_path: PathBuf,
}

impl Renderctl {
    pub fn new(config: &RenderConfig, recorder: Recorder) -> anyhow::Result<Self> {
        let client = RenderClient::new(ClientOptions {
            base_url: config.render_api_base_url.clone(),
            token: config.render_api_token.clone(),
            timeout: config.render_api_timeout,
            max_retries: config.render_api_max_retries,
            max_wait: config.render_rate_limit_max_wait,
        })?;
        Ok(Self {
            client,
            recorder,
            configured_owner: config.render_owner_id.clone(),
            owner: Arc::default(),
            default_repo: config.render_repo.clone(),
            blueprint_path: config.render_blueprint_path.clone(),
        })
    }

    /// The Render workspace: `RENDER_OWNER_ID`, else the only workspace the token can see.
    pub async fn owner_id(&self) -> Result<String, Problem> {
        if let Some(owner) = &self.configured_owner {
            return Ok(owner.clone());
        }
        self.owner
            .get_or_try_init(|| async {
                let owners = self.client.owners().await.map_err(http::render_problem)?;
                match owners.as_slice() {
                    [only] => Ok(only.id.clone()),
                    [] => Err(Problem::unavailable(
                        "The Render API token sees no workspace; set RENDER_OWNER_ID.",
                    )
                    .kind("render-owner-unknown")),
                    several => Err(Problem::unavailable(format!(
                        "The Render API token sees {} workspaces ({}); set RENDER_OWNER_ID to one of them.",
                        several.len(),
                        several
                            .iter()
                            .map(|o| format!("{} {}", o.id, o.name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                    .kind("render-owner-unknown")),
                }
            })
            .await
            .cloned()
    }

    pub fn target<'a>(&'a self, owner_id: &'a str) -> blueprint::plan::Target<'a> {
        blueprint::plan::Target {
            client: &self.client,
            owner_id,
            default_repo: self.default_repo.as_deref(),
        }
    }

    /// `RENDER_REPO`: the repository for services that name none.
    pub fn default_repo(&self) -> Option<&str> {
        self.default_repo.as_deref()
    }

    pub fn blueprint_path(&self) -> &std::path::Path {
        &self.blueprint_path
    }

    /// Reads and validates `render.yaml`.
    pub async fn read_blueprint(&self) -> Result<Blueprint, Vec<BlueprintError>> {
        let path = &self.blueprint_path;
        let text = tokio::fs::read_to_string(path).await.map_err(|error| {
            vec![BlueprintError {
                path: path.display().to_string(),
                message: format!("cannot be read: {error}"),
            }]
        })?;
        Blueprint::parse(&text)
    }

    /// Fails fast, before any request, when there is no token.
    pub fn require_token(&self) -> Result<(), Problem> {
        if self.client.has_token() {
            Ok(())
        } else {
            Err(http::render_problem(RenderError::NoToken))
        }
    }
}

/// Opens the database, starts the monitor when services are named, and binds the server. A
/// missing `RENDER_API_TOKEN` does not stop the service: `/health/ready` reports it and every
/// Render endpoint answers 503 naming the variable.
pub async fn build(loaded: Loaded<RenderctlConfig>) -> anyhow::Result<Server> {
    let config = &loaded.config;
    let pool = db::open(SERVICE, &config.database).await?;
    let app = Renderctl::new(&config.render, Recorder::new(Some(pool.clone())))?;
    let builder = ServerBuilder::new(&loaded).database(pool);
    let ready = app.clone();
    let builder = builder.ready_check("Render API", move || {
        let app = ready.clone();
        async move {
            app.require_token().map_err(|p| p.to_string())?;
            app.owner_id()
                .await
                .map(|owner| format!("workspace {owner}"))
                .map_err(|p| p.to_string())
        }
    });
    if !config.render_monitor_services.is_empty() {
        let monitor = monitor::Monitor::new(
            app.clone(),
            config.render_monitor_services.clone(),
            config.render_monitor_interval,
        );
        tokio::spawn(monitor.run(builder.shutdown_token()));
    }
    builder.routes(http::router(app)).bind().await
}
