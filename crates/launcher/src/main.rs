//! `autonoma`: run the whole stack locally, run every test and benchmark, apply migrations.

mod bench;
mod dashboard;
mod dockerfiles;
mod envfile;
mod footprint;
mod podman;
mod services;
mod stack;
mod testrun;
mod workspace;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "autonoma", version, about = "Run Autonoma on one machine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start Postgres, apply migrations, start every service; Ctrl-C stops it all.
    Up(stack::UpArgs),
    /// Run every test of the workspace against real components.
    Test(testrun::TestArgs),
    /// Apply pending migrations to a database.
    Migrate {
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
    },
    /// Print .env.example, generated from infra/config.schema.json.
    EnvExample,
    /// Write services/<name>/Dockerfile for every service from infra/docker/Dockerfile.template.
    Dockerfiles(dockerfiles::DockerfilesArgs),
    /// Build the services, run the stack and report each one's binary size and idle memory.
    Footprint(footprint::FootprintArgs),
    /// Run every benchmark in sequence against one Postgres (and moto, and Podman).
    Bench(bench::BenchArgs),
}

// Single-threaded on purpose: children are spawned from the main thread, which lives as long
// as the launcher, so their parent-death signal fires only when the launcher itself goes.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(args) => stack::up(args).await,
        Command::Test(args) => testrun::test(args).await,
        Command::Migrate { database_url } => migrate(&database_url).await,
        Command::EnvExample => envfile::render().map(|text| {
            print!("{text}");
            ExitCode::SUCCESS
        }),
        Command::Dockerfiles(args) => dockerfiles::run(args),
        Command::Footprint(args) => footprint::run(args).await,
        Command::Bench(args) => bench::run(args).await,
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("autonoma: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(database_url: &str) -> anyhow::Result<ExitCode> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(30))
        .connect(database_url)
        .await?;
    autonoma_common::db::migrate(&pool).await?;
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&pool)
        .await?;
    println!("migrations applied: {applied}");
    Ok(ExitCode::SUCCESS)
}
