//! The services the local stack runs, and the environment each one gets.

/// One service binary of the workspace.
#[derive(Debug, Clone, Copy)]
pub struct ServiceSpec {
    /// Binary and schema section name.
    pub name: &'static str,
    /// Offset from the stack's base port.
    pub port_offset: u16,
    /// Whether it gets `DATABASE_URL`.
    pub database: bool,
}

pub const SERVICES: &[ServiceSpec] = &[ServiceSpec {
    name: "echo-agent",
    port_offset: 2,
    database: false,
}];
