//! logging: Autonoma's log service. Every service ships its structured log frames here
//! (`POST /log`); operators and the dashboard read them back (`GET /logs`) or follow them live
//! (`GET /logs/stream`).
//!
//! Accepted frames wait in a bounded queue until the writers insert them in chunks; when the
//! queue is full the service answers 503 with `Retry-After` instead of growing. On shutdown it
//! stops accepting and writes everything it acknowledged before exiting.

pub mod ingest;
pub mod jsonb;
pub mod metrics;
pub mod model;
pub mod query;
pub mod retention;
pub mod stream;
pub mod writer;

use std::net::SocketAddr;

use autonoma_common::config::{DatabaseConfig, ServerConfig, ServiceConfig};
use autonoma_common::{Loaded, Server, ServerBuilder, db};
use serde::Deserialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::ingest::Ingest;
use crate::metrics::LogMetrics;
use crate::stream::Newest;

pub const SERVICE: &str = "logging";

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct LoggingConfig {
    #[serde(flatten)]
    pub server: ServerConfig,
    #[serde(flatten)]
    pub database: DatabaseConfig,
    pub log_retention_days: u32,
    pub log_ingest_queue: usize,
    pub log_max_batch: usize,
}

impl ServiceConfig for LoggingConfig {
    const SERVICE: &'static str = SERVICE;

    fn server(&self) -> &ServerConfig {
        &self.server
    }

    fn database(&self) -> Option<&DatabaseConfig> {
        Some(&self.database)
    }

    fn ships_logs(&self) -> bool {
        false
    }
}

/// The bound server with the background work it owns: the writer, the notification
/// listener and the retention task.
pub struct Application {
    server: Server,
    shutdown: CancellationToken,
    writer: JoinHandle<usize>,
    writer_stop: CancellationToken,
    background: Vec<JoinHandle<()>>,
}

/// Opens the database, binds the server and starts the background tasks.
pub async fn build(loaded: Loaded<LoggingConfig>) -> anyhow::Result<Application> {
    let config = &loaded.config;
    let pool = db::open(SERVICE, &config.database).await?;
    let builder = ServerBuilder::new(&loaded).database(pool.clone());
    let shutdown = builder.shutdown_token();
    let metrics = LogMetrics::register(builder.metrics());

    let (ingest, batches) = Ingest::new(
        config.log_ingest_queue,
        config.log_max_batch,
        shutdown.clone(),
        metrics.clone(),
    );
    let newest = Newest::new();
    let server = builder
        .routes(ingest::router(ingest))
        .routes(query::router(pool.clone()))
        .routes(stream::router(newest.state(pool.clone(), shutdown.clone())))
        .bind()
        .await?;

    let writer_stop = CancellationToken::new();
    let writer = writer::spawn(
        batches,
        pool.clone(),
        metrics,
        writer_stop.clone(),
        config.server.shutdown_grace,
    );
    let background = vec![
        tokio::spawn(stream::listen(newest, pool.clone(), shutdown.clone())),
        tokio::spawn(retention::run(
            pool,
            config.log_retention_days,
            shutdown.clone(),
        )),
    ];
    Ok(Application {
        server,
        shutdown,
        writer,
        writer_stop,
        background,
    })
}

impl autonoma_common::Serve for Application {
    fn run_until_stopped(self) -> impl std::future::Future<Output = anyhow::Result<()>> + Send {
        Application::run_until_stopped(self)
    }
}

impl Application {
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Cancel it to shut down as SIGTERM would.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until SIGTERM or SIGINT (or the shutdown token); returns once every
    /// acknowledged record is written.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application {
            server,
            shutdown,
            writer,
            writer_stop,
            background,
        } = self;
        let served = server.run_until_stopped().await;
        finish(served, shutdown, writer, writer_stop, background).await
    }

    /// Serves until the shutdown token is cancelled (no signal handling), then drains.
    pub async fn run(self) -> anyhow::Result<()> {
        let Application {
            server,
            shutdown,
            writer,
            writer_stop,
            background,
        } = self;
        let served = server.run().await;
        finish(served, shutdown, writer, writer_stop, background).await
    }
}

async fn finish(
    served: anyhow::Result<()>,
    shutdown: CancellationToken,
    writer: JoinHandle<usize>,
    writer_stop: CancellationToken,
    background: Vec<JoinHandle<()>>,
) -> anyhow::Result<()> {
    // The server has stopped taking requests (or failed): write what was acknowledged.
    shutdown.cancel();
    writer_stop.cancel();
    for task in background {
        task.abort();
    }
    let lost = writer
        .await
        .map_err(|e| anyhow::anyhow!("the log writer failed: {e}"))?;
    served?;
    if lost > 0 {
        anyhow::bail!("{lost} acknowledged log records were not stored (see the errors above)");
    }
    Ok(())
}
