//! The container engine behind the sandbox: one hardened container per session, commands run
//! in it as execs, and byte streams into it for previews.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub mod docker;
mod runner;

pub use docker::DockerDriver;

/// What a session container is created from.
///
/// Hardening is always applied on top: all capabilities dropped, `no-new-privileges`, not
/// privileged, the given user, working directory `/workspace`, no swap beyond the memory limit,
/// and a PID 1 that sleeps forever and exits on `SIGTERM`.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    /// Host directory bind-mounted read-write at `/workspace`; must exist and be absolute.
    pub workspace: PathBuf,
    /// `uid:gid`, e.g. `1000:1000`.
    pub user: String,
    pub memory_bytes: i64,
    pub nano_cpus: i64,
    pub pids_limit: i64,
    /// `None` runs without a network (loopback only); `Some(name)` joins that network.
    pub network: Option<String>,
    /// Read-only root filesystem, with a tmpfs at `/tmp` of `tmpfs_bytes` writable by the user.
    pub read_only_root: bool,
    pub tmpfs_bytes: u64,
    /// `KEY=value`; `PATH` defaults to `/usr/local/bin:/usr/bin:/bin` when absent.
    pub env: Vec<String>,
    pub labels: HashMap<String, String>,
}

/// A command to run in a container.
#[derive(Debug, Clone)]
pub struct ExecSpec {
    /// Run by `/bin/sh -c`.
    pub cmd: String,
    /// Absolute path inside the container.
    pub cwd: String,
    pub env: Vec<String>,
    /// `None` lets the command run until it exits or is cancelled.
    pub timeout: Option<Duration>,
}

/// A piece of a command's output, as it arrived.
#[derive(Debug, Clone, PartialEq)]
pub enum Chunk {
    Stdout(Bytes),
    Stderr(Bytes),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExecOutcome {
    /// `None` when the engine did not report one.
    pub exit_code: Option<i64>,
    pub timed_out: bool,
    /// Killed by the driver, on timeout or cancellation.
    pub killed: bool,
    /// Killed by the kernel's OOM killer when the container ran out of memory.
    pub oom_killed: bool,
    pub duration: Duration,
}

#[derive(Debug, Clone)]
pub struct ContainerState {
    pub id: String,
    pub name: String,
    pub running: bool,
    /// The container's main process was OOM-killed.
    pub oom_killed: bool,
    /// `None` while running.
    pub exit_code: Option<i64>,
    pub labels: HashMap<String, String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub memory_bytes: u64,
    pub memory_limit: u64,
    pub pids: u64,
    pub cpu_total_ns: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("{0}")]
    Unreachable(String),
    #[error("image {image} is not available to the container engine")]
    ImageMissing { image: String },
    #[error("no container {id}")]
    NotFound { id: String },
    #[error("container {id} is not running")]
    NotRunning { id: String },
    #[error("container engine: {0}")]
    Engine(String),
}

/// A byte stream to a port inside a container.
pub trait Connection: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Connection for T {}

#[async_trait]
pub trait Driver: Send + Sync + 'static {
    fn name(&self) -> &'static str;

    /// The engine's name and version.
    async fn ping(&self) -> Result<String, DriverError>;

    /// Creates and starts a container; returns its id.
    async fn create(&self, spec: &ContainerSpec) -> Result<String, DriverError>;

    /// Runs `spec.cmd` in its own process group, sending its output to `output` as it comes
    /// (discarded once the receiver is gone), until it exits, the timeout passes or `cancel`
    /// is cancelled. On timeout or cancellation, or when this future is dropped, the command
    /// and every process it started are killed with SIGKILL. Processes it leaves in the
    /// background when it exits by itself keep running.
    async fn exec(
        &self,
        id: &str,
        spec: ExecSpec,
        output: mpsc::Sender<Chunk>,
        cancel: CancellationToken,
    ) -> Result<ExecOutcome, DriverError>;

    /// A byte stream to `127.0.0.1:port` inside the container. It ends (EOF) when the
    /// connection inside closes, at once when nothing listens on the port.
    async fn connect(&self, id: &str, port: u16) -> Result<Box<dyn Connection>, DriverError>;

    /// `None` when the container does not exist.
    async fn inspect(&self, id: &str) -> Result<Option<ContainerState>, DriverError>;

    /// One sample of the container's resource use.
    async fn stats(&self, id: &str) -> Result<Stats, DriverError>;

    /// Stops the container, killing it after at most 2 s.
    async fn stop(&self, id: &str) -> Result<(), DriverError>;

    /// Freezes every process of the container (no exec starts until [`Driver::unpause`]), so
    /// the host can read and write its workspace without racing it.
    async fn pause(&self, id: &str) -> Result<(), DriverError>;

    async fn unpause(&self, id: &str) -> Result<(), DriverError>;

    /// Removes the container, running or not; `Ok` when it is already gone.
    async fn remove(&self, id: &str) -> Result<(), DriverError>;

    /// All containers, running or not, with the label `key=value`.
    async fn list(&self, label: &str) -> Result<Vec<ContainerState>, DriverError>;
}
