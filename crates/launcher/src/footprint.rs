//! `autonoma footprint`: each service's binary size and resident memory at idle.
//!
//! Builds the services (release by default), starts the whole stack with `autonoma up` on free
//! ports in a scratch directory, lets it settle, reads each service's `VmRSS` and `VmHWM` from
//! `/proc`, prints a table and stops the stack. The figures are measurements, not assertions:
//! the target (30 MB idle RSS per service) is printed beside them.

use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::Command;

use crate::services::SERVICES;
use crate::workspace;

const TARGET_RSS_MB: f64 = 30.0;
const STACK_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, clap::Args)]
pub struct FootprintArgs {
    /// Measure debug builds instead of release builds.
    #[arg(long)]
    debug: bool,
    /// How long the stack idles before memory is read.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    idle: Duration,
}

pub async fn run(args: FootprintArgs) -> anyhow::Result<ExitCode> {
    let root = workspace::root()?;
    let release = !args.debug;
    let binaries = workspace::build(&root, release, SERVICES.iter().map(|s| s.name)).await?;

    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    // The local Postgres runs as its own OS user, which must reach its data directory.
    std::fs::set_permissions(
        scratch.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let base_port = free_block(7)?;
    let pg_port = autonoma_localpg::free_port()?;
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args(["up", "--no-build", "--state-dir"])
        .arg(scratch.path())
        .args(["--base-port", &base_port.to_string()])
        .args(["--pg-port", &pg_port.to_string()])
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if release {
        command.arg("--release");
    }
    let mut stack = command.spawn().context("starting the stack")?;

    let stack_file = scratch.path().join("stack.json");
    let deadline = tokio::time::Instant::now() + STACK_TIMEOUT;
    while !stack_file.is_file() {
        if let Some(status) = stack.try_wait()? {
            bail!("the stack exited before it was up ({status})");
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the stack was not up within {}s", STACK_TIMEOUT.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(args.idle).await;
    let written: serde_json::Value = serde_json::from_slice(&std::fs::read(&stack_file)?)?;

    println!(
        "{} builds, after {}s idle (target: ≤ {TARGET_RSS_MB} MB idle RSS per service)\n",
        if release { "release" } else { "debug" },
        args.idle.as_secs()
    );
    println!("| service | binary | idle RSS | peak RSS |");
    println!("|---|---:|---:|---:|");
    let mut over = Vec::new();
    for (name, binary) in &binaries {
        let size = std::fs::metadata(binary)?.len();
        let pid = written["services"][name]["pid"].as_u64();
        let (rss, peak) = match pid {
            Some(pid) => (
                status_kib(pid, "VmRSS:").unwrap_or(0),
                status_kib(pid, "VmHWM:").unwrap_or(0),
            ),
            None => (0, 0),
        };
        let rss_mb = rss as f64 / 1024.0;
        if rss_mb > TARGET_RSS_MB {
            over.push(name.clone());
        }
        println!(
            "| {name} | {:.1} MB | {rss_mb:.1} MB | {:.1} MB |",
            size as f64 / 1_048_576.0,
            peak as f64 / 1024.0
        );
    }
    if !over.is_empty() {
        println!("\nover the idle target: {}", over.join(", "));
    }

    if let Some(pid) = stack.id().and_then(|id| i32::try_from(id).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let _ = tokio::time::timeout(Duration::from_secs(60), stack.wait()).await;
    Ok(ExitCode::SUCCESS)
}

/// A `Vm*:` line of `/proc/<pid>/status`, in KiB.
fn status_kib(pid: u64, field: &str) -> Option<u64> {
    let status =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// The first of `count` consecutive free ports of 127.0.0.1.
fn free_block(count: u16) -> anyhow::Result<u16> {
    for _ in 0..100 {
        let base = autonoma_localpg::free_port()?;
        let Some(last) = base.checked_add(count) else {
            continue;
        };
        if (base..last).all(|port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()) {
            return Ok(base);
        }
    }
    bail!("no {count} consecutive free ports")
}
