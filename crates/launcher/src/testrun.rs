//! `autonoma test`: every test of the workspace against real components.
//!
//! Starts what the tests talk to (a throwaway Postgres cluster, unless `TEST_DATABASE_URL` is
//! set; a moto server for SQS, unless `TEST_SQS_ENDPOINT` is set), runs `cargo nextest run
//! --workspace` (or `cargo test` where nextest is missing; `-p NAME` arguments narrow it to
//! those packages) with their addresses in the environment, stops them, and exits with the
//! test run's code. `TEST_MCP_PYTHON` tells the MCP tests which Python has the MCP client,
//! `TEST_SCHEMATHESIS` the fuzz suite where schemathesis is (both from the venv of `.ci/run`).
//! Where `podman` is installed and `TEST_DOCKER_HOST` is not set, a Podman service on a socket
//! of the scratch directory is the container engine the tests get as `TEST_DOCKER_HOST`, with
//! the image [`podman::BASE_TEST_IMAGE`] built in it.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use autonoma_localpg::{Cluster, ClusterOptions, PgBinaries};
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::podman::{self, Podman};
use crate::workspace;

const MOTO_START_TIMEOUT: Duration = Duration::from_secs(60);
const MOTO_STOP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Passed on to `cargo nextest run` (e.g. a test name filter).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub extra: Vec<String>,
}

pub async fn test(args: TestArgs) -> anyhow::Result<ExitCode> {
    let root = workspace::root()?;
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;

    let moto = match std::env::var("TEST_SQS_ENDPOINT") {
        Ok(_) => None,
        Err(_) => {
            let moto = Moto::start(scratch.path()).await?;
            println!("autonoma test: moto (SQS) on {}", moto.endpoint);
            Some(moto)
        }
    };

    let podman = match (std::env::var_os("TEST_DOCKER_HOST"), Podman::locate()) {
        (Some(_), _) => None,
        (None, Some(bin)) => {
            let podman = Podman::start(bin, scratch.path()).await?;
            println!(
                "autonoma test: podman (Docker API) on {} (image {} built in {:.1}s, service up in {:.1}s)",
                podman.docker_host,
                podman::BASE_TEST_IMAGE,
                podman.image_build.as_secs_f64(),
                podman.startup.as_secs_f64(),
            );
            Some(podman)
        }
        (None, None) => {
            println!(
                "autonoma test: podman not found, so the container tests have no engine \
                 (TEST_DOCKER_HOST). Install it with\n\n    {}\n",
                podman::INSTALL_HINT
            );
            None
        }
    };

    let cluster = throwaway_postgres(scratch.path())?;
    if let Some(cluster) = &cluster {
        println!("autonoma test: postgres on 127.0.0.1:{}", cluster.port());
    }

    let selection = Selection::of(&args.extra);
    let mut failed = false;
    // The dashboard's unit tests and build first: the launcher's own tests serve that build.
    let mut dashboard_built = false;
    if selection.dashboard {
        match crate::dashboard::unit_tests(&root).await {
            Ok(passed) => {
                failed |= !passed;
                dashboard_built = passed;
            }
            Err(error) => {
                eprintln!("autonoma test: dashboard tests could not run: {error:#}");
                failed = true;
            }
        }
    }
    if selection.rust {
        let status = cargo_tests(&root, &selection.cargo_args, &cluster, &moto, &podman).await?;
        failed |= !status.success();
    }
    if dashboard_built {
        let docker_host = podman
            .as_ref()
            .map(|p| p.docker_host.clone())
            .or_else(|| std::env::var("TEST_DOCKER_HOST").ok());
        let passed = crate::dashboard::browser_tests(
            &root,
            &selection.dashboard_args,
            docker_host.as_deref(),
        )
        .await;
        match passed {
            Ok(passed) => failed |= !passed,
            Err(error) => {
                eprintln!("autonoma test: dashboard browser tests could not run: {error:#}");
                failed = true;
            }
        }
    }

    stop_backing(cluster, moto, podman).await?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `cargo nextest run` (or `cargo test`) with the addresses of what the tests talk to.
async fn cargo_tests(
    root: &Path,
    extra: &[String],
    cluster: &Option<Cluster>,
    moto: &Option<Moto>,
    podman: &Option<Podman>,
) -> anyhow::Result<std::process::ExitStatus> {
    let nextest = tokio::process::Command::new(workspace::cargo())
        .args(["nextest", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success());
    let mut command = tokio::process::Command::new(workspace::cargo());
    if nextest {
        command.args(["nextest", "run", "--no-fail-fast"]);
    } else {
        println!("autonoma test: cargo-nextest not found; using cargo test");
        command.args(["test", "--no-fail-fast"]);
    }
    if !selects_packages(extra) {
        command.arg("--workspace");
    }
    command.args(extra).current_dir(root);
    if let Some(cluster) = cluster {
        command.env("TEST_DATABASE_URL", cluster.url("postgres"));
    }
    if let Some(moto) = moto {
        command
            .env("TEST_SQS_ENDPOINT", &moto.endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing");
    }
    if let Some(podman) = podman {
        command.env("TEST_DOCKER_HOST", &podman.docker_host);
    }
    if std::env::var_os("TEST_MCP_PYTHON").is_none() {
        command.env("TEST_MCP_PYTHON", venv_python());
    }
    if std::env::var_os("TEST_SCHEMATHESIS").is_none() {
        command.env(
            "TEST_SCHEMATHESIS",
            venv_python().with_file_name("schemathesis"),
        );
    }
    command.status().await.context("running the tests")
}

/// Which suites a `cargo autonoma test` run covers: without arguments the Rust workspace and
/// the dashboard; `-p dashboard` names the dashboard alone (what follows `--` then goes to its
/// browser tests, e.g. a file name); other `-p` names narrow it to those Rust packages.
#[derive(Debug, PartialEq)]
struct Selection {
    rust: bool,
    cargo_args: Vec<String>,
    dashboard: bool,
    dashboard_args: Vec<String>,
}

impl Selection {
    fn of(extra: &[String]) -> Self {
        let mut cargo_args = Vec::new();
        let mut dashboard_named = false;
        let mut args = extra.iter().peekable();
        while let Some(arg) = args.next() {
            if arg == "--" {
                break;
            }
            let named = match arg.as_str() {
                "-p" | "--package" => args.peek().is_some_and(|next| *next == DASHBOARD),
                other => {
                    other
                        .strip_prefix("--package=")
                        .or(other.strip_prefix("-p"))
                        == Some(DASHBOARD)
                }
            };
            if named {
                dashboard_named = true;
                if !arg.contains(DASHBOARD) {
                    args.next();
                }
            } else {
                cargo_args.push(arg.clone());
            }
        }
        let after_dashes: Vec<String> = extra
            .iter()
            .skip_while(|arg| *arg != "--")
            .cloned()
            .collect();
        if dashboard_named {
            let rust = selects_packages(&cargo_args);
            let mut dashboard_args = Vec::new();
            if rust {
                cargo_args.extend(after_dashes);
            } else {
                dashboard_args.extend(after_dashes.into_iter().skip(1));
            }
            return Selection {
                rust,
                cargo_args,
                dashboard: true,
                dashboard_args,
            };
        }
        cargo_args.extend(after_dashes);
        // A filter or package list narrows the run to those Rust tests.
        Selection {
            dashboard: cargo_args.is_empty(),
            rust: true,
            cargo_args,
            dashboard_args: Vec::new(),
        }
    }
}

const DASHBOARD: &str = "dashboard";

/// Whether the arguments name packages (`-p NAME`, `--package NAME`, `--workspace`), which
/// then replace the default of the whole workspace. Arguments after `--` go to the tests.
fn selects_packages(extra: &[String]) -> bool {
    extra.iter().take_while(|arg| *arg != "--").any(|arg| {
        arg == "--workspace"
            || arg == "--all"
            || arg == "--package"
            || arg.starts_with("--package=")
            || arg.starts_with("-p")
    })
}

/// Where `.ci/run` keeps its Python virtualenv with moto: `$AUTONOMA_CACHE_DIR/venv`, by
/// default `~/.cache/autonoma/venv`.
fn default_venv() -> PathBuf {
    let cache = std::env::var_os("AUTONOMA_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
            home.join(".cache").join("autonoma")
        });
    cache.join("venv")
}

/// The Python of the venv moto comes from (`AUTONOMA_MOTO_SERVER`'s directory, else the
/// default venv), where `.ci/run` also installs the MCP SDK the MCP tests drive the gateway with
/// and schemathesis.
fn venv_python() -> PathBuf {
    std::env::var_os("AUTONOMA_MOTO_SERVER")
        .map(PathBuf::from)
        .and_then(|bin| bin.parent().map(|dir| dir.join("python")))
        .unwrap_or_else(|| default_venv().join("bin").join("python"))
}

/// A moto server in server mode: the SQS the tests talk to.
/// A throwaway cluster under `scratch` (fsync and synchronous_commit off, stopped with this
/// process), or none when `TEST_DATABASE_URL` names a database to use instead.
pub(crate) fn throwaway_postgres(scratch: &Path) -> anyhow::Result<Option<Cluster>> {
    if std::env::var_os("TEST_DATABASE_URL").is_some() {
        return Ok(None);
    }
    let bins = PgBinaries::locate()?;
    let mut options = ClusterOptions::new(scratch.join("pg"));
    options.ephemeral = true;
    options.stop_with_parent = true;
    Ok(Some(Cluster::start(&bins, options)?))
}

/// Stops what [`throwaway_postgres`], [`Moto::start`] and Podman started for a run.
pub(crate) async fn stop_backing(
    cluster: Option<Cluster>,
    moto: Option<Moto>,
    podman: Option<Podman>,
) -> anyhow::Result<()> {
    if let Some(moto) = moto {
        moto.stop().await;
    }
    if let Some(podman) = podman {
        podman.stop().await;
    }
    if let Some(cluster) = cluster {
        cluster.stop()?;
    }
    Ok(())
}

pub(crate) struct Moto {
    child: tokio::process::Child,
    pub(crate) endpoint: String,
}

impl Moto {
    /// Starts `moto_server` (`AUTONOMA_MOTO_SERVER`, else the one in the default venv) on a
    /// free port of 127.0.0.1 and waits until it answers. Its output goes to `moto.log` in
    /// `scratch`, shown if it fails to start.
    pub(crate) async fn start(scratch: &Path) -> anyhow::Result<Self> {
        let venv = default_venv();
        let bin = std::env::var_os("AUTONOMA_MOTO_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| venv.join("bin").join("moto_server"));
        if !bin.is_file() {
            bail!(
                "moto_server (the SQS server the tests use) is not at {}. Install it with\n\n    \
                 python3 -m venv {venv} && {venv}/bin/pip install 'moto[server]'\n\n\
                 or set AUTONOMA_MOTO_SERVER to a moto_server, or TEST_SQS_ENDPOINT to a running \
                 SQS-compatible server. `.ci/run` installs it.",
                bin.display(),
                venv = venv.display(),
            );
        }
        let port = autonoma_localpg::free_port()?;
        let log_path = scratch.join("moto.log");
        let log = std::fs::File::create(&log_path).context("creating moto.log")?;
        let mut command = std::process::Command::new(&bin);
        command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("sharing moto.log")?)
            .stderr(log)
            // Out of the terminal's process group, so Ctrl-C reaches the launcher, which stops
            // it; if the launcher dies instead, the kernel sends it SIGTERM.
            .process_group(0);
        autonoma_localpg::signal_when_parent_dies(&mut command, Signal::SIGTERM);
        let child = tokio::process::Command::from(command)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };

        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = tokio::time::Instant::now() + MOTO_START_TIMEOUT;
        loop {
            if let Some(status) = moto.child.try_wait()? {
                let output = std::fs::read_to_string(&log_path).unwrap_or_default();
                bail!("moto_server exited ({status}) before answering:\n{output}");
            }
            // Any HTTP answer means it is serving.
            if client.get(&moto.endpoint).send().await.is_ok() {
                return Ok(moto);
            }
            if tokio::time::Instant::now() > deadline {
                let output = std::fs::read_to_string(&log_path).unwrap_or_default();
                bail!(
                    "moto_server did not answer on {} within {}s:\n{output}",
                    moto.endpoint,
                    MOTO_START_TIMEOUT.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, then SIGKILL if it lingers.
    pub(crate) async fn stop(mut self) {
        if let Some(pid) = self.child.id().and_then(|id| i32::try_from(id).ok()) {
            let _ = signal::kill(Pid::from_raw(pid), Signal::SIGTERM);
            if tokio::time::timeout(MOTO_STOP_TIMEOUT, self.child.wait())
                .await
                .is_ok()
            {
                return;
            }
        }
        let _ = self.child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use super::{Selection, selects_packages};

    #[test]
    fn the_dashboard_runs_with_the_whole_workspace_or_by_name() {
        let all = Selection::of(&args(&[]));
        assert!(all.rust && all.dashboard);
        let one = Selection::of(&args(&["-p", "echo-agent"]));
        assert!(one.rust && !one.dashboard);
        assert_eq!(one.cargo_args, args(&["-p", "echo-agent"]));
        let dashboard = Selection::of(&args(&["-p", "dashboard", "--", "e2e/tasks.e2e.ts"]));
        assert!(!dashboard.rust && dashboard.dashboard);
        assert_eq!(dashboard.dashboard_args, args(&["e2e/tasks.e2e.ts"]));
        let both = Selection::of(&args(&["--package=dashboard", "-p", "logging"]));
        assert!(both.rust && both.dashboard);
        assert_eq!(both.cargo_args, args(&["-p", "logging"]));
        let filtered = Selection::of(&args(&["some_test", "--", "--nocapture"]));
        assert!(filtered.rust && !filtered.dashboard);
        assert_eq!(
            filtered.cargo_args,
            args(&["some_test", "--", "--nocapture"])
        );
    }

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn package_arguments_replace_the_whole_workspace() {
        assert!(!selects_packages(&args(&[])));
        assert!(!selects_packages(&args(&[
            "some_test_name",
            "--no-capture"
        ])));
        assert!(!selects_packages(&args(&["--", "-p"])));
        for selecting in [
            &["-p", "echo-agent"][..],
            &["-pecho-agent"],
            &["--package", "echo-agent"],
            &["--package=echo-agent"],
            &["--workspace"],
        ] {
            assert!(selects_packages(&args(selecting)), "{selecting:?}");
        }
    }
}
