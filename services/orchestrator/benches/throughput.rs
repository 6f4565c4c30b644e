//! End-to-end figures of the task lifecycle on this machine, printed, not asserted:
//! - tasks/s through orchestrator → echo-agent over HTTP (create to succeeded),
//! - enqueue-to-dispatch latency (task created → claimed and sent), under load and idle,
//! - WebSocket fan-out delay (event committed → frame received) to 500 clients.
//!
//! Both services run in this process on a throwaway Postgres (`autonoma-testkit`), or on
//! `TEST_DATABASE_URL`. Run: `cargo bench -p orchestrator --bench throughput`.
//! Sizes: `BENCH_TASKS` (default 5000), `BENCH_CLIENTS` (500).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use autonoma_common::auth::encode_basic;
use autonoma_common::config;
use futures::StreamExt;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const KEY: &str = "bench-internal-key-0123456789";
const USER: &str = "operator";
const PASS: &str = "correct-horse-battery";
const ORIGIN: &str = "http://localhost:5173";

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

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn sizes(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn dispatch_latencies(pool: &sqlx::PgPool, since: OffsetDateTime) -> Vec<f64> {
    let mut latencies: Vec<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM started_at - created_at)::float8 * 1000 FROM tasks
         WHERE created_at >= $1 AND started_at IS NOT NULL",
    )
    .bind(since)
    .fetch_all(pool)
    .await
    .expect("latencies");
    latencies.sort_by(f64::total_cmp);
    latencies
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let tasks = sizes("BENCH_TASKS", 5000);
    let clients = sizes("BENCH_CLIENTS", 500);
    let db = autonoma_testkit::test_db().await;

    let loaded = config::load_from::<orchestrator::OrchestratorConfig>(
        "orchestrator",
        &env(&[
            ("DATABASE_URL", db.url.clone()),
            ("DATABASE_MAX_CONNECTIONS", "40".into()),
            ("WS_CLIENT_BUFFER", "100000".into()),
        ]),
    )?;
    let server = orchestrator::build(loaded).await?;
    let base = format!("http://{}", server.local_addr());
    tokio::spawn(server.run());

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

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let agents: Value = http
            .get(format!("{base}/agents"))
            .basic_auth(USER, Some(PASS))
            .send()
            .await?
            .json()
            .await?;
        if agents.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "echo-agent never registered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let create = |payload: Value| {
        let http = http.clone();
        let url = format!("{base}/task");
        async move {
            let response = http
                .post(url)
                .basic_auth(USER, Some(PASS))
                .json(&json!({"kind": "echo", "payload": payload}))
                .send()
                .await?;
            anyhow::ensure!(
                response.status() == 201,
                "create answered {}",
                response.status()
            );
            anyhow::Ok(())
        }
    };

    // Warm-up.
    futures::stream::iter(0..200)
        .map(|i| create(json!({"i": i})))
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 1. Throughput: create `tasks` tasks as fast as 64 clients can, until all succeeded.
    let since = OffsetDateTime::now_utc();
    let started = Instant::now();
    let created: Vec<anyhow::Result<()>> = futures::stream::iter(0..tasks)
        .map(|i| create(json!({"i": i})))
        .buffer_unordered(64)
        .collect()
        .await;
    let failures = created.iter().filter(|r| r.is_err()).count();
    let create_secs = started.elapsed().as_secs_f64();
    loop {
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM tasks WHERE created_at >= $1 AND status = 'succeeded'",
        )
        .bind(since)
        .fetch_one(&db.pool)
        .await?;
        if done as usize >= tasks - failures {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "only {done} of {tasks} succeeded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total_secs = started.elapsed().as_secs_f64();
    let loaded_latency = dispatch_latencies(&db.pool, since).await;

    // 2. Enqueue-to-dispatch with the system otherwise idle: one task every 20 ms.
    let since = OffsetDateTime::now_utc();
    for i in 0..200 {
        create(json!({"i": i})).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_latency = dispatch_latencies(&db.pool, since).await;

    // 3. WebSocket fan-out to `clients` clients.
    let auth = encode_basic(USER, PASS);
    let ws_url = format!(
        "{}/ws?auth={auth}&logs=false",
        base.replace("http://", "ws://")
    );
    let mut readers = Vec::new();
    for _ in 0..clients {
        let mut request = ws_url.as_str().into_client_request()?;
        request.headers_mut().insert("origin", ORIGIN.parse()?);
        let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
        socket.next().await;
        readers.push(tokio::spawn(async move {
            let mut delays = Vec::new();
            let end = Instant::now() + Duration::from_secs(30);
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
                delays.push((received - at).as_seconds_f64() * 1000.0);
                if text.contains("\"last\":true") && text.contains("\"toStatus\":\"succeeded\"") {
                    break;
                }
            }
            delays
        }));
    }
    let ws_tasks = 100;
    for i in 0..ws_tasks {
        create(json!({"i": i, "last": i == ws_tasks - 1})).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut fanout = Vec::new();
    for reader in readers {
        fanout.extend(reader.await?);
    }
    fanout.sort_by(f64::total_cmp);

    println!(
        "orchestrator → echo-agent over HTTP, local Postgres, {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!("  tasks: {tasks} created by 64 concurrent clients ({failures} create failures)");
    println!(
        "  end to end:          {:.0} tasks/s ({total_secs:.2} s until all succeeded)",
        tasks as f64 / total_secs
    );
    println!(
        "  create rate:         {:.0} tasks/s",
        tasks as f64 / create_secs
    );
    println!(
        "  enqueue→dispatch under load: p50 {:.1} ms, p99 {:.1} ms",
        percentile(&loaded_latency, 0.5),
        percentile(&loaded_latency, 0.99)
    );
    println!(
        "  enqueue→dispatch idle (1 task / 20 ms): p50 {:.1} ms, p99 {:.1} ms",
        percentile(&idle_latency, 0.5),
        percentile(&idle_latency, 0.99)
    );
    println!(
        "  WebSocket fan-out to {clients} clients ({} frames): p50 {:.1} ms, p99 {:.1} ms",
        fanout.len(),
        percentile(&fanout, 0.5),
        percentile(&fanout, 0.99)
    );
    Ok(())
}
