//! What the reliability suites share: credentials, the services' environment, spawning and
//! waiting with bounds, and a few database counts.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use autonoma_testkit::{ServiceProcess, workspace_binary};
use base64::Engine;
use serde_json::Value;
use sqlx::PgPool;
use tokio::time::Instant;

pub const KEY: &str = "reliability-internal-key-0123456789";
pub const USER: &str = "operator";
pub const PASS: &str = "reliability-pass-9876";
pub const ORIGIN: &str = "http://localhost:5173";

/// What every service gets, plus `DATABASE_URL` when given.
pub fn base_env(database_url: Option<&str>) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("INTERNAL_API_KEYS", KEY.to_owned()),
        ("BASIC_AUTH_USER", USER.to_owned()),
        ("BASIC_AUTH_PASS", PASS.to_owned()),
        ("WS_ALLOWED_ORIGINS", ORIGIN.to_owned()),
        ("LOG_FORMAT", "json".to_owned()),
    ];
    if let Some(url) = database_url {
        env.push(("DATABASE_URL", url.to_owned()));
    }
    env
}

/// The orchestrator's environment with short retry and lease delays, so faults are recovered
/// within a test's time.
pub fn orchestrator_env(database_url: &str, port: u16) -> Vec<(&'static str, String)> {
    let mut env = base_env(Some(database_url));
    env.extend([
        ("PORT", port.to_string()),
        ("RETRY_BACKOFF_BASE", "100ms".to_owned()),
        ("RETRY_BACKOFF_MAX", "1s".to_owned()),
        ("LEASE_GRACE", "1s".to_owned()),
        ("AGENT_LIVENESS", "5s".to_owned()),
    ]);
    env
}

/// echo-agent's environment: registered with the orchestrator at `orchestrator_url`.
pub fn echo_env(orchestrator_url: &str, port: u16) -> Vec<(&'static str, String)> {
    let mut env = base_env(None);
    env.extend([
        ("PORT", port.to_string()),
        ("ORCHESTRATOR_URL", orchestrator_url.to_owned()),
        ("AGENT_PUBLIC_URL", format!("http://127.0.0.1:{port}")),
        ("HEARTBEAT_INTERVAL", "1s".to_owned()),
    ]);
    env
}

pub fn binary(name: &str) -> PathBuf {
    workspace_binary(name)
}

/// Spawns `name` and waits (bounded) until `/health` answers.
pub async fn spawn_healthy(name: &str, env: &[(&str, String)]) -> ServiceProcess {
    let mut process = ServiceProcess::spawn(&binary(name), env)
        .unwrap_or_else(|error| panic!("{name} starts: {error:#}"));
    process
        .wait_healthy(Duration::from_secs(60))
        .await
        .unwrap_or_else(|error| panic!("{name} becomes healthy: {error:#}"));
    process
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client")
}

/// `base64(user:pass)`, for `?auth=` on a WebSocket upgrade.
pub fn basic_token() -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASS}"))
}

/// Polls `check` every `every` until it yields a value; panics with `what` and the last
/// observation after `within`.
pub async fn wait_for<T, F, Fut>(what: &str, within: Duration, every: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        let last = match check().await {
            Ok(value) => return value,
            Err(last) => last,
        };
        assert!(
            Instant::now() < deadline,
            "{what}: not within {within:?} (last: {last})"
        );
        tokio::time::sleep(every).await;
    }
}

/// Waits until the orchestrator lists `agent` as live.
pub async fn wait_registered(http: &reqwest::Client, orchestrator: &str, agent: &str) {
    let url = format!("{orchestrator}/agents");
    wait_for(
        &format!("{agent} registered"),
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            let agents: Value = http
                .get(&url)
                .header("x-internal-key", KEY)
                .send()
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            let live = agents
                .as_array()
                .is_some_and(|a| a.iter().any(|a| a["name"] == agent && a["live"] == true));
            if live {
                Ok(())
            } else {
                Err(agents.to_string())
            }
        },
    )
    .await;
}

/// The status code of `GET {base}/health/ready`, or the transport error.
pub async fn ready_status(http: &reqwest::Client, base: &str) -> Result<u16, String> {
    http.get(format!("{base}/health/ready"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

/// Task counts by status.
pub async fn status_counts(pool: &PgPool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT status, count(*) FROM tasks GROUP BY status ORDER BY status")
        .fetch_all(pool)
        .await
}

pub fn count_of(counts: &[(String, i64)], status: &str) -> i64 {
    counts
        .iter()
        .find(|(s, _)| s == status)
        .map_or(0, |(_, n)| *n)
}

/// Resident memory of a process in KiB (`VmRSS` of /proc/<pid>/status).
pub fn rss_kib(pid: u32) -> u64 {
    try_rss_kib(pid).unwrap_or_else(|| panic!("no VmRSS for process {pid}"))
}

/// [`rss_kib`], or None once the process is gone.
pub fn try_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// Builds the service binaries up front, so a scenario's timings leave out `cargo build`.
pub fn prebuild(names: &[&str]) {
    for name in names {
        binary(name);
    }
}

enum PgCommand {
    Stop(std::sync::mpsc::Sender<anyhow::Result<()>>),
    Start(std::sync::mpsc::Sender<anyhow::Result<()>>),
}

/// A Postgres cluster of one test, which it may stop and start again on the same port and
/// data. The server is owned by a thread of its own, which lives as long as this value, so the
/// server gets its parent-death signal only when the test process dies (see
/// `ClusterOptions::stop_with_parent`).
pub struct PrivatePg {
    port: u16,
    commands: std::sync::mpsc::Sender<PgCommand>,
    _dir: tempfile::TempDir,
}

impl PrivatePg {
    pub async fn start() -> PrivatePg {
        tokio::task::spawn_blocking(Self::start_blocking)
            .await
            .expect("the Postgres starter panicked")
    }

    fn start_blocking() -> PrivatePg {
        use std::os::unix::fs::PermissionsExt;
        let bins = autonoma_localpg::PgBinaries::locate().expect("Postgres binaries");
        let dir = tempfile::Builder::new()
            .prefix("autonoma-reliability-pg-")
            .tempdir()
            .expect("a directory for the cluster");
        // As root the server runs as `postgres`, which must be able to enter it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("opening the cluster directory");
        let port = autonoma_localpg::free_port().expect("a free port");
        let options = autonoma_localpg::ClusterOptions {
            port,
            ephemeral: true,
            stop_with_parent: true,
            ..autonoma_localpg::ClusterOptions::new(dir.path().join("data"))
        };
        let (commands, inbox) = std::sync::mpsc::channel::<PgCommand>();
        let (started, first) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("reliability-postgres".to_owned())
            .spawn(move || {
                let start = || autonoma_localpg::Cluster::start(&bins, options.clone());
                let mut cluster = match start() {
                    Ok(cluster) => {
                        let _ = started.send(Ok(()));
                        Some(cluster)
                    }
                    Err(error) => {
                        let _ = started.send(Err(error));
                        return;
                    }
                };
                // Ends (stopping the server) when the `PrivatePg` is dropped.
                for command in inbox {
                    match command {
                        PgCommand::Stop(reply) => {
                            let stopped = cluster.take().map_or(Ok(()), |c| c.stop());
                            let _ = reply.send(stopped);
                        }
                        PgCommand::Start(reply) => {
                            let result = start().map(|c| cluster = Some(c));
                            let _ = reply.send(result);
                        }
                    }
                }
            })
            .expect("spawning the Postgres thread");
        first
            .recv()
            .expect("the Postgres thread reports")
            .expect("starting Postgres");
        PrivatePg {
            port,
            commands,
            _dir: dir,
        }
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Fast shutdown: open transactions are rolled back, connections dropped.
    pub async fn stop(&self) {
        self.command(PgCommand::Stop)
            .await
            .expect("stopping Postgres");
    }

    /// Starts it again on the same port and data directory.
    pub async fn restart(&self) {
        self.command(PgCommand::Start)
            .await
            .expect("restarting Postgres");
    }

    async fn command(
        &self,
        make: fn(std::sync::mpsc::Sender<anyhow::Result<()>>) -> PgCommand,
    ) -> anyhow::Result<()> {
        let (reply, answer) = std::sync::mpsc::channel();
        self.commands
            .send(make(reply))
            .map_err(|_| anyhow::anyhow!("the Postgres thread is gone"))?;
        tokio::task::spawn_blocking(move || answer.recv())
            .await?
            .map_err(|_| anyhow::anyhow!("the Postgres thread did not answer"))?
    }
}

/// A moto server (the SQS endpoint) of one test, which it may kill and start again on the same
/// port. moto keeps its queues in memory: a restarted one has none.
pub struct PrivateMoto {
    bin: PathBuf,
    port: u16,
    child: Option<std::process::Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl PrivateMoto {
    /// `AUTONOMA_MOTO_SERVER`, else the `moto_server` beside `TEST_MCP_PYTHON` (the venv that
    /// `cargo autonoma test` uses), else the default venv's.
    fn locate() -> PathBuf {
        if let Some(bin) = std::env::var_os("AUTONOMA_MOTO_SERVER") {
            return PathBuf::from(bin);
        }
        if let Some(python) = std::env::var_os("TEST_MCP_PYTHON") {
            let beside = PathBuf::from(python).with_file_name("moto_server");
            if beside.is_file() {
                return beside;
            }
        }
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
        home.join(".cache/autonoma/venv/bin/moto_server")
    }

    pub async fn start() -> PrivateMoto {
        let bin = Self::locate();
        assert!(
            bin.is_file(),
            "moto_server not found at {} (set AUTONOMA_MOTO_SERVER or run `cargo autonoma test`)",
            bin.display()
        );
        let dir = tempfile::tempdir().expect("a directory for moto's log");
        let mut moto = PrivateMoto {
            bin,
            port: autonoma_localpg::free_port().expect("a free port"),
            child: None,
            log: dir.path().join("moto.log"),
            _dir: dir,
        };
        moto.restart().await;
        moto
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on its port and waits until it answers.
    pub async fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("moto's log");
        let mut command = std::process::Command::new(&self.bin);
        command
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("moto's log"))
            .stderr(log);
        autonoma_localpg::signal_when_parent_dies(&mut command, nix::sys::signal::Signal::SIGKILL);
        self.child = Some(command.spawn().expect("starting moto"));
        let http = http();
        let endpoint = self.endpoint();
        wait_for(
            "moto answers",
            Duration::from_secs(60),
            Duration::from_millis(100),
            || async {
                http.get(&endpoint)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            },
        )
        .await;
    }

    /// SIGKILL, and reaped.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateMoto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Held for a whole scenario: the scenarios are CPU-bound (debug builds of several services
/// and Postgres on a small machine), so they take turns instead of slowing each other down
/// past their time bounds. Released when dropped.
pub async fn take_turn() -> nix::fcntl::Flock<std::fs::File> {
    let path = std::env::temp_dir().join("autonoma-reliability.lock");
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .unwrap_or_else(|error| panic!("opening {}: {error}", path.display()));
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .unwrap_or_else(|(_, errno)| panic!("locking {}: {errno}", path.display()))
    })
    .await
    .expect("the lock taker panicked")
}
