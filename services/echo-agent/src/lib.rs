//! echo-agent: Autonoma's reference agent. It mirrors the payload it is given, over HTTP
//! (`POST /echo`) and as tasks of kind `echo` from the orchestrator, which makes it the agent to
//! test the platform with. New agents copy its shape: a config type flattening the `server`,
//! `agent` and `aws` groups, their handlers, and the few lines of [`build`].

mod echo;
pub mod task;

use autonoma_agent_kit::{Agent, AgentConfig};
use autonoma_aws::AwsConfig;
use autonoma_common::config::{ServerConfig, ServiceConfig};
use autonoma_common::{Loaded, Server, ServerBuilder};
use serde::Deserialize;

pub const SERVICE: &str = "echo-agent";

#[derive(Debug, Clone, Deserialize)]
pub struct EchoConfig {
    #[serde(flatten)]
    pub server: ServerConfig,
    #[serde(flatten)]
    pub agent: AgentConfig,
    #[serde(flatten)]
    pub aws: AwsConfig,
}

impl ServiceConfig for EchoConfig {
    const SERVICE: &'static str = SERVICE;

    fn server(&self) -> &ServerConfig {
        &self.server
    }
}

/// The tasks echo-agent serves.
pub fn agent() -> anyhow::Result<Agent> {
    Agent::builder(SERVICE)
        .kind(task::KIND, task::payload_schema(), task::echo)
        .build()
}

/// Binds the echo-agent's server and starts its registration (and queue consumer, with
/// `AGENT_TRANSPORT=sqs`); `run_until_stopped` (or `run`) serves it.
pub async fn build(loaded: Loaded<EchoConfig>) -> anyhow::Result<Server> {
    let agent = agent()?;
    let server = ServerBuilder::new(&loaded)
        .routes(echo::router())
        .routes(agent.routes())
        .bind()
        .await?;
    let config = &loaded.config;
    agent.start(&config.agent, &config.aws, &config.server, &server)?;
    Ok(server)
}
