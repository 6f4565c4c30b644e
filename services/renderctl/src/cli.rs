//! The command line, for CI: `renderctl apply [--dry-run]` reconciles `render.yaml` like
//! `POST /render/blueprint/apply`, and `renderctl deploy SERVICE --wait` starts a deploy and
//! follows it, exiting non-zero unless it goes live. Settings come from the same environment
//! variables as the service (`commands.renderctl` in `infra/config.schema.json`); with
//! `DATABASE_URL` set, changes are recorded in Postgres as the service records them.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

use crate::blueprint::{apply, plan};
use crate::changes::{NewChange, Origin, Recorder};
use crate::render::{Deploy, DeployStatus, ServiceFilter};
use crate::{RenderConfig, Renderctl};

/// Exit status of a command that ran but failed (a refused change, a failed deploy).
const EXIT_FAILED: u8 = 1;

#[derive(Debug, Parser)]
#[command(name = "renderctl", version, about = "Render automation for Autonoma")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service (the default).
    Serve,
    /// Exit 0 when the service at HOST:PORT answers /health (the image's HEALTHCHECK).
    Healthcheck,
    /// Apply the pending migrations to DATABASE_URL's database and exit.
    Migrate,
    /// Reconcile Render with render.yaml; print the plan (or what was applied) as JSON.
    Apply {
        /// Print the plan and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// The Blueprint to apply (default RENDER_BLUEPRINT_PATH, then render.yaml).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Trigger a deploy of a service (its name or srv- id).
    Deploy {
        service: String,
        /// Follow the deploy until it finishes; exit 1 unless it goes live.
        #[arg(long)]
        wait: bool,
        /// Give up waiting after this long.
        #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
        timeout: Duration,
        /// How often to look at the deploy while waiting.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        poll: Duration,
        #[arg(long)]
        clear_cache: bool,
    },
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
struct CliConfig {
    #[serde(flatten)]
    render: RenderConfig,
    database_url: Option<SecretString>,
    log_level: String,
}

/// Runs a command; `None` means the service bootstrap (`run_service`) takes over: it serves,
/// or runs `healthcheck` and `migrate`, which every service binary understands (it reads them
/// from the same arguments).
pub fn run(command: Command) -> Option<ExitCode> {
    if matches!(
        command,
        Command::Serve | Command::Healthcheck | Command::Migrate
    ) {
        return None;
    }
    let loaded = match autonoma_common::config::load_command::<CliConfig>("renderctl") {
        Ok(loaded) => loaded,
        Err(autonoma_common::config::ConfigError::Invalid(report)) => {
            eprintln!("{}", report.render_text());
            return Some(ExitCode::from(autonoma_common::config::EXIT_CONFIG));
        }
        Err(error) => {
            eprintln!("renderctl: {error}");
            return Some(ExitCode::from(autonoma_common::config::EXIT_CONFIG));
        }
    };
    let config = loaded.config;
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("renderctl: cannot start the async runtime: {error}");
            return Some(ExitCode::FAILURE);
        }
    };
    Some(runtime.block_on(async move {
        match execute(command, config).await {
            Ok(code) => code,
            Err(error) => {
                eprintln!("renderctl: {error:#}");
                ExitCode::from(EXIT_FAILED)
            }
        }
    }))
}

async fn execute(command: Command, mut config: CliConfig) -> anyhow::Result<ExitCode> {
    let pool = match &config.database_url {
        Some(url) => Some(sqlx::PgPool::connect(url.expose_secret()).await?),
        None => None,
    };
    if let Command::Apply {
        file: Some(file), ..
    } = &command
    {
        config.render.render_blueprint_path = file.clone();
    }
    let app = Renderctl::new(&config.render, Recorder::new(pool))?;
    match command {
        Command::Serve | Command::Healthcheck | Command::Migrate => Ok(ExitCode::SUCCESS),
        Command::Apply { dry_run, .. } => apply_command(&app, dry_run).await,
        Command::Deploy {
            service,
            wait,
            timeout,
            poll,
            clear_cache,
        } => deploy_command(&app, &service, wait, timeout, poll, clear_cache).await,
    }
}

async fn apply_command(app: &Renderctl, dry_run: bool) -> anyhow::Result<ExitCode> {
    let blueprint = match app.read_blueprint().await {
        Ok(blueprint) => blueprint,
        Err(errors) => {
            eprintln!(
                "renderctl: {} is not a valid Render Blueprint; nothing was changed:",
                app.blueprint_path().display()
            );
            for error in errors {
                eprintln!("  {error}");
            }
            return Ok(ExitCode::from(EXIT_FAILED));
        }
    };
    app.require_token().map_err(|p| anyhow::anyhow!("{p}"))?;
    let owner = app.owner_id().await.map_err(|p| anyhow::anyhow!("{p}"))?;
    let target = app.target(&owner);
    if dry_run {
        let plan = plan::plan(&target, &blueprint).await?;
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "dryRun": true, "plan": plan }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    match apply::apply(&target, &blueprint, &app.recorder, "cli", Origin::Cli).await {
        Ok(report) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({
                    "dryRun": false, "plan": report.plan, "applied": report.applied,
                    "rounds": report.rounds, "remaining": report.remaining,
                }))?
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(failed) => {
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &json!({ "dryRun": false, "applied": failed.applied })
                )?
            );
            eprintln!(
                "renderctl: apply stopped at {} {}: {}",
                failed.action, failed.target, failed.error
            );
            Ok(ExitCode::from(EXIT_FAILED))
        }
    }
}

async fn deploy_command(
    app: &Renderctl,
    service: &str,
    wait: bool,
    timeout: Duration,
    poll: Duration,
    clear_cache: bool,
) -> anyhow::Result<ExitCode> {
    app.require_token().map_err(|p| anyhow::anyhow!("{p}"))?;
    let client = &app.client;
    let service = if service.starts_with("srv-") {
        client.get_service(service).await?
    } else {
        let filter = ServiceFilter {
            names: vec![service.to_owned()],
            ..ServiceFilter::default()
        };
        client
            .list_all_services(&filter)
            .await?
            .into_iter()
            .find(|found| found.name == service)
            .ok_or_else(|| anyhow::anyhow!("no Render service is named {service:?}"))?
    };
    let record = NewChange::new("cli", Origin::Cli, "deploy", &service.name)
        .target_id(&service.id)
        .after(json!({ "clearCache": clear_cache }));
    let result = client.trigger_deploy(&service.id, clear_cache).await;
    app.recorder
        .record(record, crate::changes::deploy_answer(&result))
        .await;
    let Some(mut deploy) = result?.deploy else {
        anyhow::bail!(
            "Render queued the deploy but lists no deploy of {}",
            service.name
        );
    };
    eprintln!(
        "renderctl: deploy {} of {} started",
        deploy.id, service.name
    );
    if !wait {
        println!("{}", serde_json::to_string_pretty(&deploy)?);
        return Ok(ExitCode::SUCCESS);
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last: Option<DeployStatus> = None;
    loop {
        if deploy.status != last {
            if let Some(status) = deploy.status {
                eprintln!("renderctl: {} is {}", deploy.id, status_name(status));
            }
            last = deploy.status;
        }
        if let Some(status) = deploy.status
            && status.is_finished()
        {
            return finish(app, &service.id, &deploy, status).await;
        }
        if tokio::time::Instant::now() + poll > deadline {
            println!("{}", serde_json::to_string_pretty(&deploy)?);
            eprintln!(
                "renderctl: gave up after {} waiting for {} to finish",
                humantime::format_duration(timeout),
                deploy.id
            );
            return Ok(ExitCode::from(EXIT_FAILED));
        }
        tokio::time::sleep(poll).await;
        deploy = client.get_deploy(&service.id, &deploy.id).await?;
    }
}

async fn finish(
    app: &Renderctl,
    service_id: &str,
    deploy: &Deploy,
    status: DeployStatus,
) -> anyhow::Result<ExitCode> {
    println!("{}", serde_json::to_string_pretty(deploy)?);
    if status == DeployStatus::Live {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "renderctl: deploy {} ended {}",
        deploy.id,
        status_name(status)
    );
    if let Ok(owner) = app.owner_id().await
        && let Ok(lines) = app.client.build_logs(&owner, service_id, 30).await
    {
        for line in lines
            .iter()
            .filter(|line| line.label("instance").is_none_or(|id| id == deploy.id))
        {
            eprintln!("  | {}", line.message);
        }
    }
    Ok(ExitCode::from(EXIT_FAILED))
}

fn status_name(status: DeployStatus) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{status:?}"))
}
