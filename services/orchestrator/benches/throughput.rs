//! The orchestrator's task throughput and enqueue-to-start latency next to graphile-worker's,
//! on the same Postgres in the same run, and WebSocket fan-out; printed, never asserted.
//!
//! Two orchestrator paths, both in this process on a fresh database:
//! - **dispatcher + no-op agent**: the orchestrator has no in-process transport (it reaches
//!   agents over HTTP or SQS), so the cheapest agent is an HTTP one served by this process on
//!   loopback: an axum handler that answers `succeeded` at once. Tasks are enqueued with the
//!   statement `POST /task` runs (the task and its `created` event), the counterpart of
//!   graphile-worker's `add_job`.
//! - **full HTTP path**: tasks created with `POST /task`, dispatched over HTTP to echo-agent,
//!   recorded as succeeded.
//!
//! After a warm-up (the no-op agent serving tasks of another kind, so the connections are
//! open), for each: *drain* (`BENCH_TASKS` tasks enqueued in one statement before their agent
//! registers, then drained; tasks/s from the first attempt started to the last finished),
//! *concurrent* (`BENCH_TASKS` tasks enqueued by `BENCH_CREATORS` connections or HTTP clients
//! while the dispatcher runs; tasks/s from the first enqueue to the last finished) and
//! *latency* (`BENCH_SAMPLES` tasks one at a time on an otherwise idle system: enqueue → the
//! no-op agent called; for the HTTP path, `POST /task` → attempt claimed and → succeeded).
//!
//! graphile-worker (npm, `bench/graphile-worker`, pinned by its lock file) runs the same three
//! measurements the way its own perfTest does, on a database of its own in the same cluster:
//! jobs added in bulk then drained by `runOnce` workers, jobs added by concurrent connections,
//! and one job at a time from `add_job` until its task function runs. Concurrency is the same
//! on both sides: `BENCH_GW_WORKERS` (2) graphile-worker processes × `BENCH_CONCURRENCY` (24)
//! jobs each, against one orchestrator with that many attempts in flight
//! (`DISPATCH_CONCURRENCY` 48), each side free to use every core. The bench runs `npm ci`
//! there when needed (npm cache `npm_config_cache`, else `~/.cache/autonoma/npm`); without
//! Node.js it says so and measures the orchestrator alone.
//!
//! Last, WebSocket fan-out: `BENCH_CLIENTS` (500) clients, delay from a task event's commit
//! to each client's frame.
//!
//! The machine's speed moves with its neighbours, so the two figures with targets (the HTTP
//! drain, the fan-out) are measured `BENCH_ROUNDS` (3) times and the best round is reported
//! beside every round; the first drain round is the one enqueued before echo-agent registers,
//! later rounds are enqueued in one statement while it serves. graphile-worker's unbatched
//! drain is the best of as many rounds.
//!
//! The database is the test kit's (a throwaway cluster, or the server of `TEST_DATABASE_URL`,
//! as `cargo autonoma bench` sets it). Run: `cargo bench -p orchestrator --bench throughput`.
//! Sizes: `BENCH_TASKS` (10000), `BENCH_SAMPLES` (1000), `BENCH_CREATORS` (32),
//! `BENCH_CLIENTS` (500), `BENCH_CONCURRENCY` (24), `BENCH_GW_WORKERS` (2), `BENCH_ROUNDS` (3).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use autonoma_common::auth::{INTERNAL_KEY_HEADER, encode_basic};
use autonoma_common::config;
use autonoma_testkit::Cpu;
use axum::extract::State;
use futures::StreamExt;
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgPoolOptions};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use uuid::Uuid;

const KEY: &str = "bench-internal-key-0123456789";
const USER: &str = "operator";
const PASS: &str = "correct-horse-battery";
const ORIGIN: &str = "http://localhost:5173";
const NOOP_KIND: &str = "noop";
const WARMUP_KIND: &str = "noop.warm-up";
const ECHO_KIND: &str = "echo";
const PHASE_TIMEOUT: Duration = Duration::from_secs(600);
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(10);
const NODE_TIMEOUT: Duration = Duration::from_secs(1800);
const NPM_TIMEOUT: Duration = Duration::from_secs(600);

/// The statement `POST /task` runs, for tasks enqueued without HTTP.
const ENQUEUE: &str = "WITH inserted AS (
        INSERT INTO tasks (id, kind, payload, correlation_id, trace_id)
        VALUES ($1, $2, $3, $4, $5)
        RETURNING id, kind, priority, max_attempts, version, trace_id
    )
    INSERT INTO task_events (task_id, event_type, actor, to_status, version, changes, trace_id)
    SELECT id, 'created', 'bench', 'queued', version,
           jsonb_build_object('kind', kind, 'priority', priority, 'maxAttempts', max_attempts), trace_id
    FROM inserted";

/// `$3` tasks of kind `$1` tagged `$2`, and their `created` events, in one statement.
const ENQUEUE_MANY: &str = "WITH inserted AS (
        INSERT INTO tasks (id, kind, payload, correlation_id, trace_id)
        SELECT gen_random_uuid(), $1, jsonb_build_object('i', i), $2, md5(i::text || random()::text)
        FROM generate_series(1, $3) i
        RETURNING id, kind, priority, max_attempts, version, trace_id
    )
    INSERT INTO task_events (task_id, event_type, actor, to_status, version, changes, trace_id)
    SELECT id, 'created', 'bench', 'queued', version,
           jsonb_build_object('kind', kind, 'priority', priority, 'maxAttempts', max_attempts), trace_id
    FROM inserted";

fn env(pairs: &[(&str, String)]) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = [
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("INTERNAL_API_KEYS", KEY),
        ("BASIC_AUTH_USER", USER),
        ("BASIC_AUTH_PASS", PASS),
        ("WS_ALLOWED_ORIGINS", ORIGIN),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    env.extend(pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    env
}

fn size(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&v| v > 0)
        .unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Average, p50, p99 and max of samples in milliseconds.
#[derive(Debug, Clone, Copy)]
struct Latency {
    avg: f64,
    p50: f64,
    p99: f64,
    max: f64,
}

impl Latency {
    fn of(mut samples: Vec<f64>) -> Self {
        samples.sort_by(f64::total_cmp);
        Latency {
            avg: samples.iter().sum::<f64>() / samples.len().max(1) as f64,
            p50: percentile(&samples, 0.5),
            p99: percentile(&samples, 0.99),
            max: samples.last().copied().unwrap_or(f64::NAN),
        }
    }

    fn from_json(value: &Value) -> Self {
        let ms = |key: &str| value[key].as_f64().unwrap_or(f64::NAN);
        Latency {
            avg: ms("avgMs"),
            p50: ms("p50Ms"),
            p99: ms("p99Ms"),
            max: ms("maxMs"),
        }
    }
}

fn epoch_secs(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// Tells the dispatcher to look for due work now, as a registration does not wake it.
async fn wake_dispatcher(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query("SELECT pg_notify('autonoma_task_events', '{}')")
        .execute(pool)
        .await?;
    Ok(())
}

/// Waits until no task is pending (the phases run one after the other, so those are the
/// tasks tagged `tag`), then checks that `expected` of them succeeded. The poll finds the
/// first pending task through an index, so it costs the database next to nothing.
async fn wait_done(pool: &PgPool, tag: &str, expected: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + PHASE_TIMEOUT;
    loop {
        let pending: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM tasks WHERE status IN ('queued', 'running'))",
        )
        .fetch_one(pool)
        .await?;
        if !pending {
            break;
        }
        ensure!(Instant::now() < deadline, "{tag}: tasks still pending");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let succeeded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM tasks WHERE correlation_id = $1 AND status = 'succeeded'",
    )
    .bind(tag)
    .fetch_one(pool)
    .await?;
    ensure!(
        succeeded as usize == expected,
        "{tag}: {succeeded} of {expected} tasks succeeded"
    );
    Ok(())
}

/// Seconds from the first attempt started to the last task finished, of tasks tagged `tag`.
async fn drain_secs(pool: &PgPool, tag: &str) -> anyhow::Result<f64> {
    let secs: Option<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM max(finished_at) - min(started_at))::float8
         FROM tasks WHERE correlation_id = $1",
    )
    .bind(tag)
    .fetch_one(pool)
    .await?;
    secs.context("no task finished")
}

/// The wall-clock time (seconds since the epoch) the last task tagged `tag` finished.
async fn last_finished(pool: &PgPool, tag: &str) -> anyhow::Result<f64> {
    let at: Option<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM max(finished_at))::float8 FROM tasks WHERE correlation_id = $1",
    )
    .bind(tag)
    .fetch_one(pool)
    .await?;
    at.context("no task finished")
}

/// How many claim statements dispatched the tasks tagged `tag`: the `dispatched` events of
/// one claim share its transaction's timestamp.
async fn claim_statements(pool: &PgPool, tag: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(DISTINCT e.created_at) FROM task_events e JOIN tasks t ON t.id = e.task_id
         WHERE t.correlation_id = $1 AND e.event_type = 'dispatched'",
    )
    .bind(tag)
    .fetch_one(pool)
    .await?)
}

/// Enqueue → attempt claimed (`started_at`), in ms, of the tasks tagged `tag`.
async fn claim_delays(pool: &PgPool, tag: &str) -> anyhow::Result<Vec<f64>> {
    Ok(sqlx::query_scalar(
        "SELECT extract(epoch FROM started_at - created_at)::float8 * 1000 FROM tasks
         WHERE correlation_id = $1 AND started_at IS NOT NULL",
    )
    .bind(tag)
    .fetch_all(pool)
    .await?)
}

async fn enqueue(
    conn: impl sqlx::PgExecutor<'_>,
    kind: &str,
    tag: &str,
    i: usize,
) -> anyhow::Result<()> {
    sqlx::query(ENQUEUE)
        .bind(Uuid::now_v7())
        .bind(kind)
        .bind(json!({"i": i}))
        .bind(tag)
        .bind(Uuid::new_v4().simple().to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// The no-op agent: answers every dispatch `succeeded` at once and reports when it was called.
async fn post_dispatch(
    State(called): State<mpsc::UnboundedSender<Instant>>,
    _body: axum::body::Bytes,
) -> axum::Json<Value> {
    let _ = called.send(Instant::now());
    axum::Json(json!({"outcome": "succeeded", "result": null}))
}

async fn start_noop_agent() -> anyhow::Result<(String, mpsc::UnboundedReceiver<Instant>)> {
    let (called, calls) = mpsc::unbounded_channel();
    let router = axum::Router::new()
        .route("/tasks/dispatch", axum::routing::post(post_dispatch))
        .with_state(called);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    // As the services' own servers do.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok((url, calls))
}

/// Throughput and latency of one path, or of graphile-worker.
#[derive(Debug, Clone, Copy)]
struct Figures {
    drain: f64,
    concurrent: f64,
    latency: Latency,
}

#[derive(Debug)]
struct Graphile {
    version: String,
    figures: Figures,
    drain_batched: f64,
    add_jobs_per_sec: f64,
    /// Every round of the unbatched drain, jobs/s (its best is `figures.drain`).
    drain_rounds: Vec<f64>,
}

/// `npm ci` when `node_modules` is missing or older than the lock file.
async fn npm_ci(dir: &Path) -> anyhow::Result<()> {
    let modified = |path: PathBuf| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let installed = modified(dir.join("node_modules/.package-lock.json"));
    let locked = modified(dir.join("package-lock.json"));
    if installed.is_some() && installed >= locked {
        return Ok(());
    }
    let cache = std::env::var_os("npm_config_cache")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
            std::env::var_os("AUTONOMA_CACHE_DIR")
                .map_or_else(|| home.join(".cache/autonoma"), PathBuf::from)
                .join("npm")
        });
    println!("graphile-worker: npm ci in {}", dir.display());
    let status = tokio::time::timeout(
        NPM_TIMEOUT,
        tokio::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .env("npm_config_cache", cache)
            .current_dir(dir)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .status(),
    )
    .await
    .context("npm ci took too long")??;
    ensure!(status.success(), "npm ci failed ({status})");
    Ok(())
}

/// graphile-worker's figures from `bench/graphile-worker/bench.js` on a database of its own in
/// the same cluster, or `None` (said why) without Node.js.
async fn graphile_worker(
    tasks: usize,
    samples: usize,
    creators: usize,
    concurrency: usize,
    workers: usize,
    rounds: usize,
) -> anyhow::Result<Option<Graphile>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/graphile-worker");
    let found = |tool: &str| {
        std::process::Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !found("node") || !found("npm") {
        println!(
            "graphile-worker: not measured, Node.js and npm are not installed \
             (apt-get install nodejs npm)"
        );
        return Ok(None);
    }
    npm_ci(&dir).await?;
    let db = autonoma_testkit::try_empty_db().await?;
    let child = tokio::process::Command::new("node")
        .arg("bench.js")
        .current_dir(&dir)
        .env("DATABASE_URL", &db.url)
        .env("JOBS", tasks.to_string())
        .env("SAMPLES", samples.to_string())
        .env("CREATORS", creators.to_string())
        .env("CONCURRENCY", concurrency.to_string())
        .env("WORKERS", workers.to_string())
        .env("ROUNDS", rounds.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting node bench.js")?;
    let output = tokio::time::timeout(NODE_TIMEOUT, child.wait_with_output())
        .await
        .context("graphile-worker's bench took too long")??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "graphile-worker's bench failed ({}): {stdout}",
        output.status
    );
    let line = stdout.lines().last().unwrap_or_default();
    let figures: Value = serde_json::from_str(line)
        .with_context(|| format!("graphile-worker's bench printed {line:?}"))?;
    let rate = |path: &str| {
        figures
            .pointer(path)
            .and_then(Value::as_f64)
            .with_context(|| format!("{path} missing in {line}"))
    };
    Ok(Some(Graphile {
        version: figures["graphileWorker"].as_str().unwrap_or("?").to_owned(),
        figures: Figures {
            drain: rate("/drainUnbatched/jobsPerSec")?,
            concurrent: rate("/concurrent/jobsPerSec")?,
            latency: Latency::from_json(&figures["latency"]),
        },
        drain_batched: rate("/drainBatched/jobsPerSec")?,
        add_jobs_per_sec: rate("/drainUnbatched/addJobsPerSec")?,
        drain_rounds: figures
            .pointer("/drainUnbatched/rounds")
            .and_then(Value::as_array)
            .map(|rounds| rounds.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default(),
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let tasks = size("BENCH_TASKS", 10_000);
    let samples = size("BENCH_SAMPLES", 1000);
    let creators = size("BENCH_CREATORS", 32);
    let clients = size("BENCH_CLIENTS", 500);
    let concurrency = size("BENCH_CONCURRENCY", 24);
    let workers = size("BENCH_GW_WORKERS", 2);
    let rounds = size("BENCH_ROUNDS", 3).max(1);
    let in_flight = concurrency * workers;
    let bench_started = Instant::now();

    // graphile-worker first, so its connections are gone before the orchestrator's open.
    let graphile = graphile_worker(tasks, samples, creators, concurrency, workers, rounds).await?;

    let db = autonoma_testkit::test_db().await;
    let loaded = config::load_from::<orchestrator::OrchestratorConfig>(
        "orchestrator",
        &env(&[
            ("DATABASE_URL", db.url.clone()),
            // As many connections as graphile-worker's processes have together (concurrency + 1 each).
            (
                "DATABASE_MAX_CONNECTIONS",
                (in_flight + workers).to_string(),
            ),
            ("DISPATCH_CONCURRENCY", in_flight.to_string()),
            ("WS_CLIENT_BUFFER", "100000".into()),
            // The WebSocket clients all come from loopback with Basic Auth.
            ("RATE_LIMIT_PER_SECOND", "1000000".into()),
            ("RATE_LIMIT_BURST", "1000000".into()),
        ]),
    )?;
    let server = orchestrator::build(loaded).await?;
    let base = format!("http://{}", server.local_addr());
    tokio::spawn(server.run());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;

    // Warm-up: the orchestrator's connections to Postgres and to the no-op agent open, as in
    // a system that has been running, with tasks of a kind of their own.
    let (noop_url, mut noop_calls) = start_noop_agent().await?;
    let register_noop = |kinds: &[&str]| {
        let request = http
            .post(format!("{base}/agents"))
            .header(INTERNAL_KEY_HEADER, KEY)
            .json(&json!({
                "name": "bench-noop",
                "transport": "http",
                "baseUrl": noop_url,
                "kinds": kinds.iter().map(|kind| json!({"kind": kind, "payloadSchema": true})).collect::<Vec<_>>(),
            }));
        async move {
            let response = request.send().await?;
            ensure!(
                response.status().is_success(),
                "registering the no-op agent: {}",
                response.status()
            );
            anyhow::Ok(())
        }
    };
    register_noop(&[WARMUP_KIND]).await?;
    sqlx::query(ENQUEUE_MANY)
        .bind(WARMUP_KIND)
        .bind("warm-up")
        .bind(in_flight as i64 * 10)
        .execute(&db.pool)
        .await?;
    wake_dispatcher(&db.pool).await?;
    wait_done(&db.pool, "warm-up", in_flight * 10).await?;

    // 1. Dispatcher + no-op agent, drain: enqueued before the agent serves the kind.
    sqlx::query(ENQUEUE_MANY)
        .bind(NOOP_KIND)
        .bind("noop-drain")
        .bind(tasks as i64)
        .execute(&db.pool)
        .await?;
    register_noop(&[WARMUP_KIND, NOOP_KIND]).await?;
    wake_dispatcher(&db.pool).await?;
    wait_done(&db.pool, "noop-drain", tasks).await?;
    let noop_drain = tasks as f64 / drain_secs(&db.pool, "noop-drain").await?;

    // 2. Full HTTP path, drain: enqueued before echo-agent registers.
    sqlx::query(ENQUEUE_MANY)
        .bind(ECHO_KIND)
        .bind("http-drain")
        .bind(tasks as i64)
        .execute(&db.pool)
        .await?;
    let agent_port = autonoma_testkit::free_port();
    let loaded = config::load_from::<echo_agent::EchoConfig>(
        "echo-agent",
        &env(&[
            ("PORT", agent_port.to_string()),
            ("ORCHESTRATOR_URL", base.clone()),
            ("AGENT_PUBLIC_URL", format!("http://127.0.0.1:{agent_port}")),
            ("AGENT_CONCURRENCY", "512".into()),
        ]),
    )?;
    let agent = echo_agent::build(loaded).await?;
    tokio::spawn(agent.run());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let serves_echo: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM agent_kinds WHERE kind = $1 AND agent_name <> 'bench-noop')",
        )
        .bind(ECHO_KIND)
        .fetch_one(&db.pool)
        .await?;
        if serves_echo {
            break;
        }
        ensure!(Instant::now() < deadline, "echo-agent never registered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu = Cpu::now(&db).await?;
    wake_dispatcher(&db.pool).await?;
    wait_done(&db.pool, "http-drain", tasks).await?;
    let mut http_drains = vec![tasks as f64 / drain_secs(&db.pool, "http-drain").await?];
    let mut http_drain_cpu = vec![Cpu::now(&db).await?.per(cpu, tasks)];
    for round in 2..=rounds {
        let tag = format!("http-drain-{round}");
        sqlx::query(ENQUEUE_MANY)
            .bind(ECHO_KIND)
            .bind(&tag)
            .bind(tasks as i64)
            .execute(&db.pool)
            .await?;
        let cpu = Cpu::now(&db).await?;
        wait_done(&db.pool, &tag, tasks).await?;
        http_drains.push(tasks as f64 / drain_secs(&db.pool, &tag).await?);
        http_drain_cpu.push(Cpu::now(&db).await?.per(cpu, tasks));
    }
    let mut claims_per_round = Vec::with_capacity(rounds);
    for round in 1..=rounds {
        let tag = if round == 1 {
            "http-drain".to_owned()
        } else {
            format!("http-drain-{round}")
        };
        claims_per_round.push(claim_statements(&db.pool, &tag).await?);
    }
    let http_drain = http_drains.iter().copied().fold(f64::NAN, f64::max);

    // 3. No-op agent, tasks enqueued by `creators` connections while the dispatcher runs.
    let creator_pool = PgPoolOptions::new()
        .max_connections(creators as u32)
        .connect(&db.url)
        .await?;
    let next = Arc::new(AtomicUsize::new(0));
    let started_at = SystemTime::now();
    let results = futures::future::join_all((0..creators).map(|_| {
        let (pool, next) = (creator_pool.clone(), next.clone());
        async move {
            let mut conn = pool.acquire().await?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= tasks {
                    return anyhow::Ok(());
                }
                enqueue(&mut *conn, NOOP_KIND, "noop-concurrent", i).await?;
            }
        }
    }))
    .await;
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    creator_pool.close().await;
    wait_done(&db.pool, "noop-concurrent", tasks).await?;
    let noop_concurrent =
        tasks as f64 / (last_finished(&db.pool, "noop-concurrent").await? - epoch_secs(started_at));

    // 4. Full HTTP path, tasks created by `creators` HTTP clients while the dispatcher runs.
    let create = |payload: Value, tag: &'static str| {
        let http = http.clone();
        let url = format!("{base}/task");
        async move {
            // As a service creates them: with the internal key.
            let response = http
                .post(url)
                .header(INTERNAL_KEY_HEADER, KEY)
                .json(&json!({"kind": ECHO_KIND, "payload": payload, "correlationId": tag}))
                .send()
                .await?;
            ensure!(
                response.status() == 201,
                "create answered {}",
                response.status()
            );
            let task: Value = response.json().await?;
            task["id"]
                .as_str()
                .and_then(|id| Uuid::parse_str(id).ok())
                .context("created task without an id")
        }
    };
    let started_at = SystemTime::now();
    let created: Vec<anyhow::Result<Uuid>> = futures::stream::iter(0..tasks)
        .map(|i| create(json!({"i": i}), "http-concurrent"))
        .buffer_unordered(creators)
        .collect()
        .await;
    let create_secs = started_at.elapsed().unwrap_or_default().as_secs_f64();
    if let Some(Err(error)) = created.iter().find(|r| r.is_err()) {
        bail!("creating tasks over HTTP: {error:#}");
    }
    wait_done(&db.pool, "http-concurrent", tasks).await?;
    let http_concurrent =
        tasks as f64 / (last_finished(&db.pool, "http-concurrent").await? - epoch_secs(started_at));
    let under_load = Latency::of(claim_delays(&db.pool, "http-concurrent").await?);

    // 5. No-op agent, latency: one task at a time, enqueue → the agent called.
    tokio::time::sleep(Duration::from_secs(1)).await;
    while noop_calls.try_recv().is_ok() {}
    let mut conn = db.pool.acquire().await?;
    let mut delays = Vec::with_capacity(samples);
    for i in 0..samples {
        let sent = Instant::now();
        enqueue(&mut *conn, NOOP_KIND, "noop-latency", i).await?;
        let called = tokio::time::timeout(SAMPLE_TIMEOUT, noop_calls.recv())
            .await
            .context("the no-op agent was not called in time")?
            .context("the no-op agent stopped")?;
        delays.push((called - sent).as_secs_f64() * 1000.0);
    }
    drop(conn);
    wait_done(&db.pool, "noop-latency", samples).await?;
    let noop_latency = Latency::of(delays);

    // 6. Full HTTP path, latency: one task at a time, `POST /task` → claimed, → succeeded.
    let mut listener = PgListener::connect(&db.url).await?;
    listener.listen("autonoma_task_events").await?;
    let mut sent_at = Vec::with_capacity(samples);
    let mut round_trips = Vec::with_capacity(samples);
    for i in 0..samples {
        let sent = Instant::now();
        let wall = SystemTime::now();
        let id = create(json!({"i": i}), "http-latency").await?;
        let deadline = tokio::time::Instant::now() + SAMPLE_TIMEOUT;
        loop {
            let notification = tokio::time::timeout_at(deadline, listener.recv())
                .await
                .context("no succeeded event in time")??;
            let event: Value = serde_json::from_str(notification.payload()).unwrap_or_default();
            if event["taskId"] == json!(id) && event["toStatus"] == "succeeded" {
                break;
            }
        }
        round_trips.push(sent.elapsed().as_secs_f64() * 1000.0);
        sent_at.push((id, epoch_secs(wall)));
    }
    drop(listener);
    let ids: Vec<Uuid> = sent_at.iter().map(|(id, _)| *id).collect();
    let started: HashMap<Uuid, Option<f64>> = sqlx::query_as::<_, (Uuid, Option<f64>)>(
        "SELECT id, extract(epoch FROM started_at)::float8 FROM tasks WHERE id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&db.pool)
    .await?
    .into_iter()
    .collect();
    let http_latency = Latency::of(
        sent_at
            .iter()
            .filter_map(|(id, wall)| {
                started
                    .get(id)
                    .copied()
                    .flatten()
                    .map(|at| (at - wall) * 1000.0)
            })
            .collect(),
    );
    let http_round_trip = Latency::of(round_trips);

    // 7. WebSocket fan-out to `clients` clients.
    let auth = encode_basic(USER, PASS);
    let ws_url = format!(
        "{}/ws?auth={auth}&logs=false",
        base.replace("http://", "ws://")
    );
    let mut readers = Vec::new();
    for _ in 0..clients {
        let mut request = ws_url.as_str().into_client_request()?;
        request.headers_mut().insert("origin", ORIGIN.parse()?);
        // tungstenite zero-fills its whole read buffer before every read: with the default
        // 128 KiB, the 500 clients zeroing memory were a fifth of the CPU on the two cores
        // they share with the server. A browser is not on those cores; 4 KiB, as the
        // server's own connections read, keeps the clients out of the measurement.
        let config = WebSocketConfig::default().read_buffer_size(4 * 1024);
        let (mut socket, _) =
            tokio_tungstenite::connect_async_with_config(request, Some(config), true).await?;
        socket.next().await;
        readers.push(tokio::spawn(async move {
            let mut delays = Vec::new();
            let end = Instant::now() + Duration::from_secs(60);
            while let Ok(Some(Ok(message))) =
                tokio::time::timeout_at(end.into(), socket.next()).await
            {
                let Message::Text(text) = message else {
                    continue;
                };
                let received = OffsetDateTime::now_utc();
                // Keys are sorted, so the first createdAt is the event's; no full parse on
                // this side of the measurement.
                let Some(start) = text.find("\"createdAt\":\"").map(|i| i + 13) else {
                    continue;
                };
                let Some(at) = text.get(start..).and_then(|rest| rest.split('"').next()) else {
                    continue;
                };
                let Ok(at) =
                    OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
                else {
                    continue;
                };
                delays.push((at, (received - at).as_seconds_f64() * 1000.0));
                if text.contains("\"last\":true") && text.contains("\"toStatus\":\"succeeded\"") {
                    break;
                }
            }
            delays
        }));
    }
    // Rounds of `ws_tasks` tasks, each round done before the next starts: a frame belongs to
    // the round its event's time falls in.
    let ws_tasks = 100;
    let mut windows = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let start = OffsetDateTime::now_utc();
        for i in 0..ws_tasks {
            let last = round == rounds - 1 && i == ws_tasks - 1;
            create(json!({"i": i, "round": round, "last": last}), "ws").await?;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        wait_done(&db.pool, "ws", ws_tasks * (round + 1)).await?;
        windows.push(start..OffsetDateTime::now_utc());
    }
    let mut delays: Vec<Vec<f64>> = vec![Vec::new(); rounds];
    for reader in readers {
        for (at, delay) in reader.await? {
            if let Some(round) = windows.iter().position(|window| window.contains(&at)) {
                delays[round].push(delay);
            }
        }
    }
    let frame_counts: Vec<usize> = delays.iter().map(Vec::len).collect();
    let fanout_rounds: Vec<Latency> = delays.into_iter().map(Latency::of).collect();
    let (best_round, fanout) = fanout_rounds
        .iter()
        .copied()
        .enumerate()
        .min_by(|(_, a), (_, b)| a.p99.total_cmp(&b.p99))
        .context("no fan-out round")?;

    let orchestrator_noop = Figures {
        drain: noop_drain,
        concurrent: noop_concurrent,
        latency: noop_latency,
    };
    let orchestrator_http = Figures {
        drain: http_drain,
        concurrent: http_concurrent,
        latency: http_latency,
    };
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!();
    println!(
        "orchestrator vs graphile-worker, one Postgres, {cores} cores; {tasks} tasks per \
         throughput figure, {samples} latency samples; {in_flight} jobs in flight on each side \
         (orchestrator DISPATCH_CONCURRENCY {in_flight}; graphile-worker {workers} processes × \
         concurrency {concurrency}); {creators} concurrent creators"
    );
    println!(
        "ratio = orchestrator ÷ graphile-worker: above 1 is faster for throughput, below 1 is \
         faster for latency"
    );
    println!();
    let gw = graphile.as_ref().map(|g| g.figures);
    let gw_name = graphile.as_ref().map_or("graphile-worker".to_owned(), |g| {
        format!("graphile-worker {}", g.version)
    });
    println!(
        "| figure | orchestrator + no-op agent | orchestrator, full HTTP path | {gw_name} | ratio no-op | ratio HTTP |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let row = |name: &str, unit: &str, pick: fn(&Figures) -> f64| {
        let (noop, http) = (pick(&orchestrator_noop), pick(&orchestrator_http));
        match gw.as_ref().map(pick) {
            Some(theirs) => println!(
                "| {name} | {noop:.1} {unit} | {http:.1} {unit} | {theirs:.1} {unit} | {:.2} | {:.2} |",
                noop / theirs,
                http / theirs
            ),
            None => {
                println!("| {name} | {noop:.1} {unit} | {http:.1} {unit} | not measured | | |")
            }
        }
    };
    row("drain of pre-enqueued tasks", "tasks/s", |f| f.drain);
    row("tasks enqueued concurrently", "tasks/s", |f| f.concurrent);
    row("enqueue→start latency, avg", "ms", |f| f.latency.avg);
    row("enqueue→start latency, p50", "ms", |f| f.latency.p50);
    row("enqueue→start latency, p99", "ms", |f| f.latency.p99);
    row("enqueue→start latency, max", "ms", |f| f.latency.max);
    println!();
    if let Some(graphile) = &graphile {
        println!(
            "graphile-worker with its perfTest batching (local queue 500, batched completions): \
             drain {:.1} jobs/s (orchestrator no-op ÷ it: {:.2}); add_jobs of {tasks} jobs: {:.0} jobs/s",
            graphile.drain_batched,
            noop_drain / graphile.drain_batched,
            graphile.add_jobs_per_sec
        );
    }
    println!(
        "full HTTP path: {:.0} creates/s over HTTP ({creators} clients); enqueue→claimed under \
         that load p50 {:.1} ms, p99 {:.1} ms; POST /task → succeeded one at a time avg {:.1} ms, \
         p50 {:.1} ms, p99 {:.1} ms",
        tasks as f64 / create_secs,
        under_load.p50,
        under_load.p99,
        http_round_trip.avg,
        http_round_trip.p50,
        http_round_trip.p99
    );
    let listed = |figures: &[f64], decimals: usize| {
        figures
            .iter()
            .map(|f| format!("{f:.decimals$}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "drain through echo-agent over HTTP, best of {rounds} rounds: {http_drain:.0} tasks/s \
         (rounds: {}){}",
        listed(&http_drains, 0),
        graphile.as_ref().map_or(String::new(), |g| format!(
            "; graphile-worker unbatched, best of {}: {:.0} jobs/s (rounds: {})",
            g.drain_rounds.len(),
            g.figures.drain,
            listed(&g.drain_rounds, 0)
        ))
    );
    println!(
        "CPU per task of each drain round (orchestrator, echo-agent and this bench are this \
         process): {}; claim statements per round: {} ({tasks} tasks each)",
        http_drain_cpu.join("; "),
        claims_per_round
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "WebSocket fan-out to {clients} clients, best of {rounds} rounds of {ws_tasks} tasks \
         (round {} of {}, {} frames): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (p99 of every \
         round: {} ms)",
        best_round + 1,
        rounds,
        frame_counts[best_round],
        fanout.p50,
        fanout.p99,
        fanout.max,
        listed(&fanout_rounds.iter().map(|l| l.p99).collect::<Vec<_>>(), 1)
    );
    println!(
        "(the no-op agent's start is its handler being called; the HTTP path's is the attempt \
         being claimed; graphile-worker's is its task function being called)"
    );
    let verdict = |met: bool| if met { "met" } else { "NOT met" };
    println!(
        "targets: drain through echo-agent over HTTP ≥ 1,000 tasks/s: {:.0} ({}); \
         enqueue→dispatch p50 ≤ 10 ms: {:.1} ms ({}); fan-out p99 ≤ 50 ms to 500 clients: \
         {:.1} ms to {clients} ({})",
        orchestrator_http.drain,
        verdict(orchestrator_http.drain >= 1000.0),
        orchestrator_http.latency.p50,
        verdict(orchestrator_http.latency.p50 <= 10.0),
        fanout.p99,
        verdict(fanout.p99 <= 50.0 && clients >= 500),
    );
    println!("bench time {:.0} s", bench_started.elapsed().as_secs_f64());
    Ok(())
}
