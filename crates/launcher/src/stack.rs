//! `autonoma up`: the whole stack on one machine.
//!
//! Postgres (a cluster under the state directory, so data survives restarts, or the one in
//! `DATABASE_URL`), migrations, then every service binary with a generated local configuration,
//! each one's output prefixed with its name. Ctrl-C or SIGTERM stops the services (SIGTERM,
//! so they drain), then Postgres. The services and Postgres also get a signal if the launcher
//! itself dies, so nothing outlives it.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use autonoma_localpg::{Cluster, ClusterOptions, PgBinaries};
use rand::RngExt;
use rand::distr::Alphanumeric;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::services::{SERVICES, ServiceSpec, url_of};
use crate::workspace;

const DATABASE: &str = "autonoma";
const HEALTH_TIMEOUT: Duration = Duration::from_secs(90);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Build and run optimised release binaries.
    #[arg(long)]
    pub release: bool,
    /// Run the binaries already built instead of running `cargo build` first.
    #[arg(long)]
    pub no_build: bool,
    /// Where the local Postgres keeps its data (git-ignored).
    #[arg(long, default_value = ".autonoma")]
    pub state_dir: PathBuf,
    /// Services listen on consecutive ports from here: orchestrator on the base port, logging
    /// on +1, echo-agent on +2.
    #[arg(long, default_value_t = 7100)]
    pub base_port: u16,
    /// Port of the local Postgres.
    #[arg(long, default_value_t = 7432)]
    pub pg_port: u16,
    /// Use this database instead of starting a local Postgres.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// The operator's sign-in name.
    #[arg(long, env = "BASIC_AUTH_USER", default_value = "operator")]
    pub user: String,
    /// The operator's password (random when not given; printed once the stack is up).
    #[arg(long, env = "BASIC_AUTH_PASS", hide_env_values = true)]
    pub password: Option<String>,
    /// Internal API key(s), comma-separated (random when not given).
    #[arg(long, env = "INTERNAL_API_KEYS", hide_env_values = true)]
    pub internal_keys: Option<String>,
}

struct Running {
    spec: ServiceSpec,
    child: Child,
    url: String,
}

pub async fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    let root = workspace::root()?;
    let state_dir = if args.state_dir.is_absolute() {
        args.state_dir.clone()
    } else {
        root.join(&args.state_dir)
    };

    let binaries = if args.no_build {
        workspace::binaries(&root, args.release, SERVICES.iter().map(|s| s.name))?
    } else {
        workspace::build(&root, args.release, SERVICES.iter().map(|s| s.name)).await?
    };

    let (cluster, database_url) = match &args.database_url {
        Some(url) => (None, url.clone()),
        None => {
            let cluster = start_postgres(&state_dir, args.pg_port)?;
            let url = cluster.url(DATABASE);
            ensure_database(&cluster.url("postgres"), DATABASE).await?;
            println!(
                "{} postgres on 127.0.0.1:{} (pid {}, data in {})",
                tag("launcher"),
                cluster.port(),
                cluster.pid(),
                cluster.data_dir().display()
            );
            (Some(cluster), url)
        }
    };

    let dashboard = crate::dashboard::prepare(&root, !args.no_build).await?;
    let outcome = run_services(&args, &binaries, &database_url, &state_dir, dashboard).await;
    if let Some(cluster) = cluster {
        println!("{} stopping postgres", tag("launcher"));
        if let Err(error) = cluster.stop() {
            eprintln!(
                "{} postgres did not stop cleanly: {error:#}",
                tag("launcher")
            );
        }
    }
    let code = outcome?;
    println!("{} stopped", tag("launcher"));
    Ok(code)
}

async fn run_services(
    args: &UpArgs,
    binaries: &[(String, PathBuf)],
    database_url: &str,
    state_dir: &Path,
    dashboard: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let pool = sqlx_pool(database_url).await?;
    autonoma_common::db::migrate(&pool).await?;
    pool.close().await;
    println!("{} migrations applied", tag("launcher"));

    let internal_keys = args
        .internal_keys
        .clone()
        .unwrap_or_else(|| random_secret(40));
    let user = args.user.clone();
    let pass = args.password.clone().unwrap_or_else(|| random_secret(20));
    let dashboard_port = args
        .base_port
        .checked_add(crate::dashboard::PORT_OFFSET)
        .context("--base-port is too high")?;
    // The served dashboard and Vite's dev server (`npm run dev`) may open the WebSocket.
    let dashboard_origins = format!(
        "http://127.0.0.1:{dashboard_port},http://localhost:{dashboard_port},\
         http://127.0.0.1:5173,http://localhost:5173"
    );

    let mut running: Vec<Running> = Vec::new();
    let mut shutdown = Box::pin(shutdown_signal());
    let logging_url = url_of("logging", args.base_port);
    let orchestrator_url = url_of("orchestrator", args.base_port);
    for spec in SERVICES {
        let binary = binaries
            .iter()
            .find(|(name, _)| name == spec.name)
            .map(|(_, path)| path.clone())
            .with_context(|| format!("no binary for {}", spec.name))?;
        let port = args
            .base_port
            .checked_add(spec.port_offset)
            .context("--base-port is too high")?;
        let url = format!("http://127.0.0.1:{port}");
        let mut env = vec![
            ("HOST", "127.0.0.1".to_owned()),
            ("PORT", port.to_string()),
            ("INTERNAL_API_KEYS", internal_keys.clone()),
            ("BASIC_AUTH_USER", user.clone()),
            ("BASIC_AUTH_PASS", pass.clone()),
            ("WS_ALLOWED_ORIGINS", dashboard_origins.clone()),
            ("LOG_FORMAT", "text".to_owned()),
        ];
        if let Some(logging_url) = &logging_url {
            env.push(("LOGGING_URL", logging_url.clone()));
        }
        if spec.database {
            env.push(("DATABASE_URL", database_url.to_owned()));
            env.push(("MIGRATE_ON_START", "false".to_owned()));
        }
        if spec.blobs {
            env.push(("BLOB_DIR", state_dir.join("blobs").display().to_string()));
        }
        if spec.sandbox {
            env.push((
                "SANDBOX_WORKSPACE_DIR",
                state_dir.join("sandbox").display().to_string(),
            ));
            env.push(("SANDBOX_PREVIEW_BASE_URL", url.clone()));
            env.push(("REQUEST_TIMEOUT", "130s".to_owned()));
        }
        if spec.name == "renderctl" {
            let blueprint = crate::workspace::root()?.join("render.yaml");
            env.push(("RENDER_BLUEPRINT_PATH", blueprint.display().to_string()));
        }
        if spec.agent {
            if let Some(orchestrator_url) = &orchestrator_url {
                env.push(("ORCHESTRATOR_URL", orchestrator_url.clone()));
            }
            env.push(("AGENT_PUBLIC_URL", url.clone()));
        }
        let child = match spawn_service(spec.name, &binary, &env) {
            Ok(child) => child,
            Err(error) => {
                stop_all(&mut running).await;
                return Err(error);
            }
        };
        running.push(Running {
            spec: *spec,
            child,
            url,
        });
        let ready = tokio::select! {
            ready = wait_healthy(running.last_mut()) => ready,
            () = &mut shutdown => Err(anyhow::anyhow!("interrupted while starting")),
        };
        if let Err(error) = ready {
            stop_all(&mut running).await;
            return Err(error);
        }
    }

    let mut readiness_of = Vec::with_capacity(running.len());
    for service in &running {
        readiness_of.push(readiness(&service.url).await);
    }
    let service_urls: serde_json::Map<String, serde_json::Value> = running
        .iter()
        .map(|s| (s.spec.name.to_owned(), s.url.clone().into()))
        .collect();
    let dashboard_url = match &dashboard {
        Some(dist) => {
            match crate::dashboard::serve(dist, dashboard_port, service_urls.into()).await {
                Ok((url, _server)) => Some(url),
                Err(error) => {
                    stop_all(&mut running).await;
                    return Err(error);
                }
            }
        }
        None => None,
    };
    let stack_file = state_dir.join("stack.json");
    if let Err(error) = write_stack_file(&stack_file, &running, dashboard_url.as_deref(), &user) {
        stop_all(&mut running).await;
        return Err(error);
    }
    println!();
    println!("{} the stack is up:", tag("launcher"));
    for (service, readiness) in running.iter().zip(&readiness_of) {
        println!(
            "{}   {:<14} {}{readiness}",
            tag("launcher"),
            service.spec.name,
            service.url,
        );
    }
    if let Some(url) = &dashboard_url {
        println!("{}   {:<14} {url}", tag("launcher"), "dashboard");
    }
    if args.password.is_none() {
        println!("{}   operator sign-in: {user} / {pass}", tag("launcher"));
    } else {
        println!(
            "{}   operator sign-in: {user} / (BASIC_AUTH_PASS)",
            tag("launcher")
        );
    }
    if args.internal_keys.is_none() {
        println!("{}   internal key:     {internal_keys}", tag("launcher"));
    }
    println!("{} Ctrl-C stops everything.", tag("launcher"));

    let died = tokio::select! {
        () = &mut shutdown => None,
        died = first_exit(&mut running) => Some(died),
    };
    let code = match died {
        None => {
            println!("{} shutting down", tag("launcher"));
            ExitCode::SUCCESS
        }
        Some((name, status)) => {
            eprintln!(
                "{} {name} exited unexpectedly ({status}); stopping the stack",
                tag("launcher")
            );
            ExitCode::FAILURE
        }
    };
    stop_all(&mut running).await;
    let _ = std::fs::remove_file(&stack_file);
    Ok(code)
}

/// `stack.json` in the state directory while the stack is up: where the dashboard and each
/// service answer and each service's pid, for tools and tests that drive the running stack.
/// Written whole and renamed into place, so a reader never sees half of it.
fn write_stack_file(
    path: &Path,
    running: &[Running],
    dashboard: Option<&str>,
    user: &str,
) -> anyhow::Result<()> {
    let services: serde_json::Map<String, serde_json::Value> = running
        .iter()
        .map(|s| {
            (
                s.spec.name.to_owned(),
                serde_json::json!({ "url": s.url, "pid": s.child.id() }),
            )
        })
        .collect();
    let document = serde_json::json!({
        "dashboard": dashboard,
        "user": user,
        "services": services,
    });
    let partial = path.with_extension("json.partial");
    std::fs::write(&partial, serde_json::to_vec_pretty(&document)?)
        .with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Empty when the service is ready; otherwise why not (a sandbox without a container engine
/// runs, but cannot make sessions until one answers).
async fn readiness(url: &str) -> String {
    let client = reqwest::Client::new();
    let response = client
        .get(format!("{url}/health/ready"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    match response {
        Ok(response) if response.status().is_success() => String::new(),
        Ok(response) => {
            let problem: serde_json::Value = response.json().await.unwrap_or_default();
            let detail = problem["detail"].as_str().unwrap_or("no reason given");
            format!("  (not ready: {detail})")
        }
        Err(error) => format!("  (not ready: {error})"),
    }
}

fn start_postgres(state_dir: &Path, port: u16) -> anyhow::Result<Cluster> {
    let bins = PgBinaries::locate()?;
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;
    let mut options = ClusterOptions::new(state_dir.join("pg"));
    options.port = port;
    options.stop_with_parent = true;
    options.log_file = Some(state_dir.join("postgres.log"));
    Cluster::start(&bins, options).with_context(|| {
        format!(
            "starting Postgres on port {port} (data in {}; pass --pg-port to use another port or DATABASE_URL to use a running server)",
            state_dir.join("pg").display()
        )
    })
}

async fn sqlx_pool(url: &str) -> anyhow::Result<sqlx::PgPool> {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .context("connecting to the database")
}

async fn ensure_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let pool = sqlx_pool(admin_url).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&pool)
            .await?;
    if !exists {
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&pool)
            .await
            .with_context(|| format!("creating database {name}"))?;
    }
    pool.close().await;
    Ok(())
}

fn random_secret(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

fn spawn_service(
    name: &'static str,
    binary: &Path,
    env: &[(&str, String)],
) -> anyhow::Result<Child> {
    let mut command = std::process::Command::new(binary);
    command
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: Ctrl-C reaches only the launcher, which stops the services
        // in order. If the launcher dies, the service gets SIGTERM from the kernel instead.
        .process_group(0);
    autonoma_localpg::signal_when_parent_dies(&mut command, nix::sys::signal::Signal::SIGTERM);
    let mut child = Command::from(command)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(prefix_lines(name, stdout));
    }
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(prefix_lines(name, stderr));
    }
    Ok(child)
}

async fn prefix_lines(name: &'static str, stream: impl tokio::io::AsyncRead + Unpin) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        println!("{} {line}", tag(name));
    }
}

pub(crate) fn tag(name: &str) -> String {
    format!("{name:>14} |")
}

async fn wait_healthy(service: Option<&mut Running>) -> anyhow::Result<()> {
    let Some(service) = service else {
        return Ok(());
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = tokio::time::Instant::now() + HEALTH_TIMEOUT;
    loop {
        if let Some(status) = service.child.try_wait()? {
            bail!(
                "{} exited during startup ({status}); its output is above",
                service.spec.name
            );
        }
        let health = client.get(format!("{}/health", service.url)).send().await;
        if health.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "{} did not answer /health within {}s",
                service.spec.name,
                HEALTH_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn first_exit(running: &mut [Running]) -> (&'static str, std::process::ExitStatus) {
    loop {
        for service in running.iter_mut() {
            if let Ok(Some(status)) = service.child.try_wait() {
                return (service.spec.name, status);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// SIGTERM to every service (in reverse start order), then wait; SIGKILL what will not stop.
async fn stop_all(running: &mut Vec<Running>) {
    for service in running.iter().rev() {
        if let Some(pid) = service.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
    for service in running.iter_mut().rev() {
        match tokio::time::timeout(STOP_TIMEOUT, service.child.wait()).await {
            Ok(Ok(status)) => println!(
                "{} {} stopped ({status})",
                tag("launcher"),
                service.spec.name
            ),
            _ => {
                eprintln!(
                    "{} {} did not stop in time; killing it",
                    tag("launcher"),
                    service.spec.name
                );
                let _ = service.child.kill().await;
            }
        }
    }
    running.clear();
}

async fn shutdown_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
