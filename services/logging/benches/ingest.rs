//! Ingest throughput of the logging service: several clients POST batches of 500 frames to a
//! service running in-process on a fresh database, for a fixed number of batches (and at most
//! a fixed time); then the bench waits until every accepted record is in the table.
//!
//! Prints accepted and written lines per second and the p50/p99 latency of `POST /log`.
//! The database is the test kit's (a throwaway local cluster unless `TEST_DATABASE_URL` is
//! set), which runs with fsync and synchronous_commit off.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use autonoma_common::config;
use logging::LoggingConfig;
use serde_json::{Value, json};

const CLIENTS: usize = 6;
const BATCH: usize = 500;
const BATCHES: usize = 400;
const WARMUP_BATCHES: usize = 20;
const TIME_LIMIT: Duration = Duration::from_secs(120);
const KEY: &str = "bench-internal-key-0123456789";
/// Distinct request bodies the clients cycle through.
const BODIES: usize = 16;

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

/// A batch of frames shaped like what services ship: a request line with ids and fields.
fn body(variant: usize) -> Vec<u8> {
    let services = ["orchestrator", "echo-agent", "renderctl", "sandbox"];
    let levels = ["info", "info", "info", "debug", "warn", "error"];
    let frames: Vec<Value> = (0..BATCH)
        .map(|i| {
            let n = variant * BATCH + i;
            json!({
                "ts": "2026-11-21T09:30:00.123456Z",
                "level": levels[n % levels.len()],
                "service": services[n % services.len()],
                "message": format!("request finished: POST /task/{n} answered 201 in 12ms for order {}", n % 97),
                "traceId": format!("{:032x}", 0x0af7_6519_16cd_43dd_u128 * (n as u128 + 1)),
                "correlationId": format!("order-{}", n % 97),
                "fields": {"method": "POST", "status": 201, "latencyMs": 12.5, "route": "/task/{id}"},
            })
        })
        .collect();
    serde_json::to_vec(&frames).unwrap_or_default()
}

struct ClientResult {
    latencies: Vec<Duration>,
    /// When each accepted batch was answered.
    accepted_at: Vec<Instant>,
    refused: usize,
    first_refusal: Option<Instant>,
}

async fn client(
    url: String,
    bodies: Arc<Vec<bytes::Bytes>>,
    next: Arc<AtomicUsize>,
    limit: usize,
    deadline: Instant,
) -> anyhow::Result<ClientResult> {
    let http = reqwest::Client::new();
    let mut result = ClientResult {
        latencies: Vec::new(),
        accepted_at: Vec::new(),
        refused: 0,
        first_refusal: None,
    };
    loop {
        let index = next.fetch_add(1, Ordering::Relaxed);
        if index >= limit || Instant::now() >= deadline {
            return Ok(result);
        }
        let body = bodies[index % bodies.len()].clone();
        loop {
            let started = Instant::now();
            let response = http
                .post(&url)
                .header("x-internal-key", KEY)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await?;
            let status = response.status();
            response.bytes().await?;
            match status.as_u16() {
                202 => {
                    result.latencies.push(started.elapsed());
                    result.accepted_at.push(Instant::now());
                    break;
                }
                503 => {
                    // The queue is full: back off as a shipping service does.
                    result.refused += 1;
                    result.first_refusal.get_or_insert_with(Instant::now);
                    if Instant::now() >= deadline {
                        return Ok(result);
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => anyhow::bail!("POST /log answered {other}"),
            }
        }
    }
}

/// `log_records_written_total` from `/metrics`: cheap to poll, unlike `count(*)`.
async fn written(http: &reqwest::Client, metrics_url: &str) -> anyhow::Result<u64> {
    let text = http
        .get(metrics_url)
        .header("x-internal-key", KEY)
        .send()
        .await?
        .text()
        .await?;
    text.lines()
        .find(|line| line.starts_with("log_records_written_total"))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse::<f64>().ok())
        .map(|value| value as u64)
        .context("log_records_written_total not in /metrics")
}

async fn wait_written(
    http: &reqwest::Client,
    metrics_url: &str,
    expected: u64,
    deadline: Instant,
) -> anyhow::Result<()> {
    while written(http, metrics_url).await? < expected {
        anyhow::ensure!(Instant::now() < deadline, "records not written in time");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn run() -> anyhow::Result<()> {
    let db = autonoma_testkit::test_db().await;
    let env: std::collections::HashMap<String, String> = [
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("INTERNAL_API_KEYS", KEY),
        ("BASIC_AUTH_USER", "bench"),
        ("BASIC_AUTH_PASS", "bench-password-0123"),
        ("DATABASE_URL", db.url.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let loaded =
        config::load_from::<LoggingConfig>("logging", &env).context("bench configuration")?;
    let app = logging::build(loaded).await?;
    let url = format!("http://{}/log", app.local_addr());
    let metrics_url = format!("http://{}/metrics", app.local_addr());
    let http = reqwest::Client::new();
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run());

    let bodies: Arc<Vec<bytes::Bytes>> =
        Arc::new((0..BODIES).map(|v| bytes::Bytes::from(body(v))).collect());
    let body_bytes: usize = bodies.iter().map(|b| b.len()).sum::<usize>() / BODIES;

    // Warm-up: connections, prepared statements, the table's first pages.
    let warmup = Arc::new(AtomicUsize::new(0));
    let far = Instant::now() + TIME_LIMIT;
    client(url.clone(), bodies.clone(), warmup, WARMUP_BATCHES, far).await?;
    let baseline = (WARMUP_BATCHES * BATCH) as u64;
    wait_written(&http, &metrics_url, baseline, far).await?;

    let started = Instant::now();
    let deadline = started + TIME_LIMIT;
    let next = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            tokio::spawn(client(
                url.clone(),
                bodies.clone(),
                next.clone(),
                BATCHES,
                deadline,
            ))
        })
        .collect();
    let mut latencies = Vec::new();
    let mut accepted_at = Vec::new();
    let mut refused = 0;
    let mut first_refusal: Option<Instant> = None;
    for handle in clients {
        let result = handle.await??;
        latencies.extend(result.latencies);
        accepted_at.extend(result.accepted_at);
        refused += result.refused;
        if let Some(at) = result.first_refusal {
            first_refusal = Some(first_refusal.map_or(at, |first| first.min(at)));
        }
    }
    accepted_at.sort_unstable();
    let accepted = accepted_at.len() * BATCH;
    let accept_time = accepted_at
        .last()
        .map_or(Duration::ZERO, |last| *last - started);
    wait_written(
        &http,
        &metrics_url,
        baseline + accepted as u64,
        Instant::now() + TIME_LIMIT,
    )
    .await?;
    let write_time = started.elapsed();

    shutdown.cancel();
    server.await??;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM logs")
        .fetch_one(&db.pool)
        .await?;
    anyhow::ensure!(
        stored as u64 == baseline + accepted as u64,
        "{stored} rows stored, {} acknowledged",
        baseline + accepted as u64
    );

    latencies.sort_unstable();
    let per_second = |lines: usize, time: Duration| lines as f64 / time.as_secs_f64();
    println!(
        "ingest: {CLIENTS} clients, {} batches of {BATCH} frames ({} KiB per request)",
        latencies.len(),
        body_bytes / 1024
    );
    println!(
        "  accepted: {accepted} lines in {:.2}s = {:.0} lines/s",
        accept_time.as_secs_f64(),
        per_second(accepted, accept_time)
    );
    if let Some(first) = first_refusal {
        let burst = accepted_at.iter().filter(|at| **at < first).count() * BATCH;
        let burst_time = first - started;
        println!(
            "  until the queue first filled: {burst} lines accepted in {:.2}s = {:.0} lines/s",
            burst_time.as_secs_f64(),
            per_second(burst, burst_time)
        );
    }
    println!(
        "  written:  {accepted} lines in {:.2}s = {:.0} lines/s",
        write_time.as_secs_f64(),
        per_second(accepted, write_time)
    );
    println!(
        "  POST /log latency: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {refused} answers 503 (queue full)",
        percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
    );
    Ok(())
}
