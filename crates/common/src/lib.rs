//! What every Autonoma service shares: typed configuration validated against
//! `infra/config.schema.json`, internal-key and Basic Auth, problem+json errors, telemetry,
//! the database pool and migrations, the internal HTTP client, and the server bootstrap.

pub mod auth;
pub mod client;
pub mod commands;
pub mod config;
pub mod db;
pub mod extract;
#[cfg(feature = "mcp")]
pub mod mcp;
pub mod metrics;
pub mod problem;
pub mod ratelimit;
pub mod redact;
pub mod server;
pub mod telemetry;
pub mod trace;
pub mod wakeups;

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

pub use config::{Loaded, ServiceConfig};
pub use problem::Problem;
pub use server::{Server, ServerBuilder};

/// What a service's `build` returns: a bound server, with whatever background work it owns,
/// that serves until SIGTERM or SIGINT and returns once it has wound down.
pub trait Serve: Send {
    fn run_until_stopped(self) -> impl Future<Output = anyhow::Result<()>> + Send;
}

impl Serve for Server {
    fn run_until_stopped(self) -> impl Future<Output = anyhow::Result<()>> + Send {
        Server::run_until_stopped(self)
    }
}

/// The `main` of a service binary: load and validate the configuration (printing every
/// problem and exiting with 78 before anything binds when it is invalid), start telemetry,
/// build the server with `build`, serve until SIGTERM/SIGINT, flush telemetry.
///
/// With `healthcheck` or `migrate` as its first argument the binary does that instead of
/// serving (see [`commands`]).
pub fn run_service<C, S, F, Fut>(build: F) -> ExitCode
where
    C: ServiceConfig,
    S: Serve,
    F: FnOnce(Loaded<C>) -> Fut,
    Fut: Future<Output = anyhow::Result<S>>,
{
    let command = commands::Command::from_args();
    if command == Some(commands::Command::Healthcheck) {
        return commands::health_probe(C::SERVICE);
    }
    let loaded = match config::load::<C>(C::SERVICE) {
        Ok(loaded) => loaded,
        Err(config::ConfigError::Invalid(report)) => {
            eprintln!("{}", report.render_text());
            return ExitCode::from(config::EXIT_CONFIG);
        }
        Err(error) => {
            eprintln!("{}: {error}", C::SERVICE);
            return ExitCode::from(config::EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("{}: cannot start the async runtime: {error}", C::SERVICE);
            return ExitCode::FAILURE;
        }
    };
    if command == Some(commands::Command::Migrate) {
        return runtime.block_on(commands::migrate(&loaded));
    }
    let result = runtime.block_on(async {
        let mut server_config = loaded.config.server().clone();
        if !loaded.config.ships_logs() {
            server_config.logging_url = None;
        }
        let telemetry = telemetry::init(C::SERVICE, &server_config)?;
        let result = async { build(loaded).await?.run_until_stopped().await }.await;
        if let Err(error) = &result {
            tracing::error!(error = format!("{error:#}"), "service failed");
        }
        telemetry.shutdown(Duration::from_secs(5)).await;
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{}: {error:#}", C::SERVICE);
            ExitCode::FAILURE
        }
    }
}
