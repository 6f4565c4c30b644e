//! `autonoma test`: every test of the workspace against real components.
//!
//! Starts what the tests talk to (a throwaway Postgres cluster, unless `TEST_DATABASE_URL` is
//! set), runs `cargo nextest run --workspace` (or `cargo test` where nextest is missing) with
//! their addresses in the environment, stops them, and exits with the test run's code.

use std::process::ExitCode;

use anyhow::Context;
use autonoma_localpg::{Cluster, ClusterOptions, PgBinaries};

use crate::workspace;

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Passed on to `cargo nextest run` (e.g. a test name filter).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub extra: Vec<String>,
}

pub async fn test(args: TestArgs) -> anyhow::Result<ExitCode> {
    let root = workspace::root()?;
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;

    let cluster = match std::env::var("TEST_DATABASE_URL") {
        Ok(_) => None,
        Err(_) => {
            let bins = PgBinaries::locate()?;
            let mut options = ClusterOptions::new(scratch.path().join("pg"));
            options.ephemeral = true;
            options.stop_with_parent = true;
            let cluster = Cluster::start(&bins, options)?;
            println!("autonoma test: postgres on 127.0.0.1:{}", cluster.port());
            Some(cluster)
        }
    };

    let nextest = tokio::process::Command::new(workspace::cargo())
        .args(["nextest", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success());
    let mut command = tokio::process::Command::new(workspace::cargo());
    if nextest {
        command.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
    } else {
        println!("autonoma test: cargo-nextest not found; using cargo test");
        command.args(["test", "--workspace", "--no-fail-fast"]);
    }
    command.args(&args.extra).current_dir(&root);
    if let Some(cluster) = &cluster {
        command.env("TEST_DATABASE_URL", cluster.url("postgres"));
    }
    let status = command.status().await.context("running the tests")?;

    if let Some(cluster) = cluster {
        cluster.stop()?;
    }
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}
