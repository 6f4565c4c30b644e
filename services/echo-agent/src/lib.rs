//! echo-agent: Autonoma's reference agent. It mirrors the payload it is given, which makes it
//! the agent to test the platform with; new agents copy its shape.

mod echo;

use autonoma_common::config::{ServerConfig, ServiceConfig};
use autonoma_common::{Loaded, Server, ServerBuilder};
use serde::Deserialize;

pub const SERVICE: &str = "echo-agent";

#[derive(Debug, Clone, Deserialize)]
pub struct EchoConfig {
    #[serde(flatten)]
    pub server: ServerConfig,
}

impl ServiceConfig for EchoConfig {
    const SERVICE: &'static str = SERVICE;

    fn server(&self) -> &ServerConfig {
        &self.server
    }
}

/// Binds the echo-agent's server; `run_until_stopped` (or `run`) serves it.
pub async fn build(loaded: Loaded<EchoConfig>) -> anyhow::Result<Server> {
    ServerBuilder::new(&loaded)
        .routes(echo::router())
        .bind()
        .await
}
