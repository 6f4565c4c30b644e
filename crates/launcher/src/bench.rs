//! `autonoma bench`: every benchmark of the workspace in one run, against one Postgres.
//!
//! Starts one throwaway Postgres cluster (unless `TEST_DATABASE_URL` is set), moto for SQS + S3
//! (unless `TEST_SQS_ENDPOINT` is set) and, where `podman` is installed, a Podman service as
//! the container engine (unless `TEST_DOCKER_HOST` is set); prints the machine; then runs each
//! bench with `cargo bench` in sequence, their output streamed, with those addresses in the
//! environment; stops everything and exits non-zero if a bench failed. Without moto the gateway
//! bench measures its embedded backends only; without an engine the sandbox bench is skipped.
//! Both are said.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::podman::{self, Podman};
use crate::testrun::Moto;
use crate::workspace;

/// Each bench: (name to select it by, package, bench target, what it measures).
const BENCHES: [(&str, &str, &str, &str); 4] = [
    (
        "orchestrator",
        "orchestrator",
        "throughput",
        "tasks/s and enqueue→start latency next to graphile-worker, WebSocket fan-out",
    ),
    (
        "logging",
        "logging",
        "ingest",
        "log lines/s against the raw COPY ceiling",
    ),
    (
        "queue-gateway",
        "queue-gateway",
        "latency",
        "AI↔browser latency, 1,000 long polls, dataset memory",
    ),
    (
        "sandbox",
        "sandbox",
        "sessions",
        "session create, exec round trip, concurrent sessions",
    ),
];

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Benches to run (orchestrator, logging, queue-gateway, sandbox); all by default.
    pub only: Vec<String>,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    for name in &args.only {
        if !BENCHES.iter().any(|(bench, ..)| bench == name) {
            anyhow::bail!(
                "no bench named {name:?}; the benches are {}",
                BENCHES.map(|(bench, ..)| bench).join(", ")
            );
        }
    }
    let selected = |name: &str| args.only.is_empty() || args.only.iter().any(|n| n == name);
    let root = workspace::root()?;
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let started = Instant::now();

    let cluster = crate::testrun::throwaway_postgres(scratch.path())?;
    if let Some(cluster) = &cluster {
        println!(
            "autonoma bench: postgres on 127.0.0.1:{} (fsync and synchronous_commit off)",
            cluster.port()
        );
    }
    let database_url = match &cluster {
        Some(cluster) => cluster.url("postgres"),
        None => std::env::var("TEST_DATABASE_URL").unwrap_or_default(),
    };

    let moto = match std::env::var("TEST_SQS_ENDPOINT") {
        Ok(_) => None,
        Err(_) if !selected("queue-gateway") => None,
        Err(_) => match Moto::start(scratch.path()).await {
            Ok(moto) => {
                println!("autonoma bench: moto (SQS + S3) on {}", moto.endpoint);
                Some(moto)
            }
            Err(error) => {
                println!("autonoma bench: no moto, so no SQS + S3 figures: {error:#}");
                None
            }
        },
    };

    let podman = match (std::env::var_os("TEST_DOCKER_HOST"), Podman::locate()) {
        (Some(_), _) => None,
        _ if !selected("sandbox") => None,
        (None, Some(bin)) => match Podman::start(bin, scratch.path()).await {
            Ok(podman) => {
                println!(
                    "autonoma bench: podman (Docker API) on {}",
                    podman.docker_host
                );
                Some(podman)
            }
            Err(error) => {
                println!("autonoma bench: podman did not start: {error:#}");
                None
            }
        },
        (None, None) => None,
    };
    let engine = podman.is_some() || std::env::var_os("TEST_DOCKER_HOST").is_some();

    print_machine(&database_url).await;

    let mut failed = Vec::new();
    let mut timings = Vec::new();
    for (name, package, target, what) in BENCHES {
        if !selected(name) {
            continue;
        }
        if name == "sandbox" && !engine {
            println!(
                "\nautonoma bench: sandbox skipped, no container engine (install it with `{}`, \
                 or set TEST_DOCKER_HOST)",
                podman::INSTALL_HINT
            );
            continue;
        }
        println!("\n==> cargo bench -p {package} --bench {target}   ({what})\n");
        let bench_started = Instant::now();
        let mut command = tokio::process::Command::new(workspace::cargo());
        command
            .args(["bench", "--locked", "-p", package, "--bench", target])
            .current_dir(&root)
            .env("TEST_DATABASE_URL", &database_url);
        if let Some(moto) = &moto {
            command
                .env("TEST_SQS_ENDPOINT", &moto.endpoint)
                .env("AWS_REGION", "us-east-1")
                .env("AWS_ACCESS_KEY_ID", "testing")
                .env("AWS_SECRET_ACCESS_KEY", "testing");
        }
        if let Some(podman) = &podman {
            command.env("TEST_DOCKER_HOST", &podman.docker_host);
        }
        let status = command
            .status()
            .await
            .with_context(|| format!("running cargo bench -p {package}"))?;
        let took = bench_started.elapsed();
        timings.push((name, took, status.success()));
        if !status.success() {
            eprintln!("autonoma bench: {name} failed ({status})");
            failed.push(name);
        }
    }

    crate::testrun::stop_backing(cluster, moto, podman).await?;

    println!();
    for (name, took, ok) in &timings {
        println!(
            "autonoma bench: {name:<14} {:>6}{}",
            minutes(*took),
            if *ok { "" } else { "  FAILED" }
        );
    }
    println!(
        "autonoma bench: total          {:>6}",
        minutes(started.elapsed())
    );
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn minutes(took: Duration) -> String {
    let secs = took.as_secs();
    format!("{}m{:02}s", secs / 60, secs % 60)
}

/// What BENCHMARKS.md records of the machine: cores, CPU model, memory, Postgres version.
async fn print_machine(database_url: &str) {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map_or("unknown", |(_, model)| model.trim());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(f64::NAN, |kib| kib / 1024.0 / 1024.0);
    let postgres = postgres_version(database_url)
        .await
        .unwrap_or_else(|error| format!("unknown ({error:#})"));
    println!(
        "\nautonoma bench: {cores} cores ({model}), {memory_gib:.1} GiB RAM, {postgres}, \
         cargo's bench profile (opt-level 3)"
    );
}

async fn postgres_version(database_url: &str) -> anyhow::Result<String> {
    use sqlx::Connection;
    let mut conn = tokio::time::timeout(
        Duration::from_secs(10),
        sqlx::PgConnection::connect(database_url),
    )
    .await
    .context("connecting took too long")??;
    let version: String = sqlx::query_scalar("SELECT version()")
        .fetch_one(&mut conn)
        .await?;
    let _ = conn.close().await;
    Ok(version.split(" on ").next().unwrap_or(&version).to_owned())
}

#[cfg(test)]
mod tests {
    use super::BENCHES;

    #[test]
    fn every_bench_names_a_bench_target_of_its_package() {
        let root = super::workspace::root().expect("workspace root");
        for (_, package, target, _) in BENCHES {
            let manifest =
                std::fs::read_to_string(root.join("services").join(package).join("Cargo.toml"))
                    .unwrap_or_else(|error| panic!("{package}'s Cargo.toml: {error}"));
            assert!(
                manifest.contains(&format!("name = \"{target}\"")),
                "{package} has no bench named {target}"
            );
            assert!(
                root.join("services")
                    .join(package)
                    .join("benches")
                    .join(format!("{target}.rs"))
                    .is_file(),
                "services/{package}/benches/{target}.rs is missing"
            );
        }
    }
}
