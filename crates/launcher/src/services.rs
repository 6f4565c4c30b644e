//! The services the local stack runs, in start order, and what each one is told.

/// One service binary of the workspace.
#[derive(Debug, Clone, Copy)]
pub struct ServiceSpec {
    /// Binary and schema section name.
    pub name: &'static str,
    /// Offset from the stack's base port.
    pub port_offset: u16,
    /// Gets `DATABASE_URL`.
    pub database: bool,
    /// An agent: gets `ORCHESTRATOR_URL` and `AGENT_PUBLIC_URL`.
    pub agent: bool,
    /// Stores blobs: gets `BLOB_DIR` under the stack's state directory.
    pub blobs: bool,
    /// Runs sessions in the container engine (`DOCKER_HOST`, inherited): gets
    /// `SANDBOX_WORKSPACE_DIR` under the state directory and a request timeout that fits its
    /// longest command.
    pub sandbox: bool,
}

/// Started one after the other, each once the previous answers `/health`: logging first so
/// the others' logs have somewhere to go, the orchestrator before the agents that register.
pub const SERVICES: &[ServiceSpec] = &[
    ServiceSpec {
        name: "logging",
        port_offset: 1,
        database: true,
        agent: false,
        blobs: false,
        sandbox: false,
    },
    ServiceSpec {
        name: "orchestrator",
        port_offset: 0,
        database: true,
        agent: false,
        blobs: false,
        sandbox: false,
    },
    ServiceSpec {
        name: "echo-agent",
        port_offset: 2,
        database: false,
        agent: true,
        blobs: false,
        sandbox: false,
    },
    ServiceSpec {
        name: "renderctl",
        port_offset: 3,
        database: true,
        agent: false,
        blobs: false,
        sandbox: false,
    },
    ServiceSpec {
        name: "queue-gateway",
        port_offset: 5,
        database: true,
        agent: false,
        blobs: true,
        sandbox: false,
    },
    ServiceSpec {
        name: "sandbox",
        port_offset: 4,
        database: true,
        agent: false,
        blobs: false,
        sandbox: true,
    },
];

pub fn url_of(name: &str, base_port: u16) -> Option<String> {
    SERVICES
        .iter()
        .find(|s| s.name == name)
        .map(|s| format!("http://127.0.0.1:{}", base_port + s.port_offset))
}
