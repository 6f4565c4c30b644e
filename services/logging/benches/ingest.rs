//! Ingest throughput of the logging service against the raw `COPY` ceiling of the same table,
//! measured in the same run on the same Postgres.
//!
//! - The service: several clients POST batches of 500 frames to a service running in-process,
//!   for a fixed number of batches (and at most a fixed time); a measurement ends when every
//!   accepted line is in the table. Prints accepted and written lines per second and the
//!   latency of `POST /log`.
//! - One of the service's writes alone (reservation, COPY, notification), called directly on
//!   the same records one after another: what one writer does without HTTP, JSON and queueing
//!   (the service runs `logging::writer::WRITERS` of them side by side).
//! - The ceiling: the same rows (the frames validated by the service's own code) copied with
//!   `COPY … FROM STDIN` straight into the same `logs` table (same migrated schema, indexes and
//!   constraints), no HTTP and no service: text and binary format, one request batch (500
//!   rows) or one writer chunk per statement on one connection, as each of the service's
//!   writers does, and 500-row statements on as many connections as there are clients. The
//!   fastest is the ceiling.
//!
//! Every measurement starts on an emptied table with a warm-up; rounds interleave them and the
//! best of each is compared. Prints the fraction of the ceiling the service reached (written
//! lines/s ÷ COPY lines/s) and the size of a request, a COPY row and a stored row.
//!
//! The database is the test kit's (a throwaway local cluster unless `TEST_DATABASE_URL` is
//! set; the local one runs with fsync and synchronous_commit off).
//! Run: `cargo bench -p logging --bench ingest`. Sizes: `BENCH_BATCHES` (default 400),
//! `BENCH_ROUNDS` (3).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use autonoma_common::config;
use autonoma_testkit::Cpu;
use logging::LoggingConfig;
use logging::ingest::FramesIn;
use logging::model::Record;
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use sqlx::types::Json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const CLIENTS: usize = 6;
const BATCH: usize = 500;
const WARMUP_BATCHES: usize = 20;
const TIME_LIMIT: Duration = Duration::from_secs(120);
const KEY: &str = "bench-internal-key-0123456789";
/// Distinct request bodies the clients cycle through.
const BODIES: usize = 16;

const COLUMNS: &str =
    "ts, received_at, level, service, message, trace_id, correlation_id, task_id, fields";

fn size(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

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

fn per_second(lines: usize, time: Duration) -> f64 {
    lines as f64 / time.as_secs_f64()
}

/// The service running in-process on the bench's database.
struct Service {
    url: String,
    metrics_url: String,
    http: reqwest::Client,
    shutdown: tokio_util::sync::CancellationToken,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Service {
    async fn start(db: &autonoma_testkit::TestDb) -> anyhow::Result<Self> {
        let env: HashMap<String, String> = [
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
        Ok(Service {
            url: format!("http://{}/log", app.local_addr()),
            metrics_url: format!("http://{}/metrics", app.local_addr()),
            http: reqwest::Client::new(),
            shutdown: app.shutdown_token(),
            server: tokio::spawn(app.run()),
        })
    }

    /// One measurement on an emptied table: a warm-up (connections, the table's first
    /// pages), then `batches` from all clients; done when every accepted line is written.
    async fn measure(
        &self,
        db: &autonoma_testkit::TestDb,
        bodies: &Arc<Vec<bytes::Bytes>>,
        batches: usize,
    ) -> anyhow::Result<ServiceRound> {
        sqlx::query("TRUNCATE logs").execute(&db.pool).await?;
        let before = written(&self.http, &self.metrics_url).await?;
        let warmup = Arc::new(AtomicUsize::new(0));
        let far = Instant::now() + TIME_LIMIT;
        client(
            self.url.clone(),
            bodies.clone(),
            warmup,
            WARMUP_BATCHES,
            far,
        )
        .await?;
        let baseline = before + (WARMUP_BATCHES * BATCH) as u64;
        wait_written(&self.http, &self.metrics_url, baseline, far).await?;

        let cpu = Cpu::now(db).await?;
        let started = Instant::now();
        let deadline = started + TIME_LIMIT;
        let next = Arc::new(AtomicUsize::new(0));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                tokio::spawn(client(
                    self.url.clone(),
                    bodies.clone(),
                    next.clone(),
                    batches,
                    deadline,
                ))
            })
            .collect();
        let mut latencies = Vec::new();
        let mut accepted_at = Vec::new();
        let mut refused = 0;
        for handle in clients {
            let result = handle.await??;
            latencies.extend(result.latencies);
            accepted_at.extend(result.accepted_at);
            refused += result.refused;
        }
        accepted_at.sort_unstable();
        let accepted = accepted_at.len() * BATCH;
        let accept_time = accepted_at
            .last()
            .map_or(Duration::ZERO, |last| *last - started);
        wait_written(
            &self.http,
            &self.metrics_url,
            baseline + accepted as u64,
            Instant::now() + TIME_LIMIT,
        )
        .await?;
        let write_time = started.elapsed();
        let cpu = Cpu::now(db).await?.per(cpu, accepted);
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM logs")
            .fetch_one(&db.pool)
            .await?;
        let acknowledged = WARMUP_BATCHES * BATCH + accepted;
        anyhow::ensure!(
            stored as usize == acknowledged,
            "{stored} rows stored, {acknowledged} acknowledged"
        );
        latencies.sort_unstable();
        Ok(ServiceRound {
            accepted,
            accept_time,
            write_time,
            latencies,
            refused,
            cpu,
        })
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.server.await?
    }
}

struct ServiceRound {
    accepted: usize,
    /// From the first request until the last was answered 202.
    accept_time: Duration,
    /// From the first request until every accepted line was in the table.
    write_time: Duration,
    latencies: Vec<Duration>,
    refused: usize,
    /// CPU per line.
    cpu: String,
}

impl ServiceRound {
    fn written_per_second(&self) -> f64 {
        per_second(self.accepted, self.write_time)
    }

    fn print(&self, round: usize) {
        println!(
            "  round {round}: accepted {:.0} lines/s, written {:.0} lines/s ({} lines in {:.2}s); \
             POST /log p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} answers 503 (queue full); \
             CPU per line {}",
            per_second(self.accepted, self.accept_time),
            self.written_per_second(),
            self.accepted,
            self.write_time.as_secs_f64(),
            percentile(&self.latencies, 0.50).as_secs_f64() * 1000.0,
            percentile(&self.latencies, 0.99).as_secs_f64() * 1000.0,
            self.latencies
                .last()
                .copied()
                .unwrap_or_default()
                .as_secs_f64()
                * 1000.0,
            self.refused,
            self.cpu,
        );
    }
}

/// The records the service stores for a request body: the same parsing and validation.
fn records(body: &[u8]) -> anyhow::Result<Vec<Record>> {
    let frames = match serde_json::from_slice::<FramesIn>(body)? {
        FramesIn::Many(frames) => frames,
        FramesIn::One(frame) => vec![frame],
    };
    logging::ingest::validate(frames, false, OffsetDateTime::now_utc())
        .map_err(|problem| anyhow::anyhow!("the bench's frames are invalid: {problem:?}"))
}

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Text,
    Binary,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Binary => "binary",
        }
    }

    fn statement(self) -> String {
        match self {
            Format::Text => format!("COPY logs ({COLUMNS}) FROM STDIN"),
            Format::Binary => logging::writer::COPY_NUMBERED_BY_TABLE.to_owned(),
        }
    }

    fn header(self) -> &'static [u8] {
        match self {
            Format::Text => b"",
            Format::Binary => logging::writer::COPY_HEADER,
        }
    }

    fn trailer(self) -> &'static [u8] {
        match self {
            Format::Text => b"",
            Format::Binary => logging::writer::COPY_TRAILER,
        }
    }

    /// The rows of one batch, without header or trailer.
    fn rows(self, records: &[Record]) -> anyhow::Result<Vec<u8>> {
        match self {
            Format::Text => {
                let mut out = Vec::new();
                for record in records {
                    text_row(&mut out, record)?;
                }
                Ok(out)
            }
            // The service's own encoding.
            Format::Binary => logging::writer::copy_rows(records, None)
                .map_err(|error| anyhow::anyhow!("encoding COPY rows: {error}")),
        }
    }
}

fn text_field(out: &mut Vec<u8>, value: Option<&str>) {
    let Some(value) = value else {
        out.extend_from_slice(b"\\N");
        return;
    };
    for byte in value.bytes() {
        match byte {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            other => out.push(other),
        }
    }
}

fn text_row(out: &mut Vec<u8>, record: &Record) -> anyhow::Result<()> {
    let fields: [Option<String>; 9] = [
        Some(record.ts.format(&Rfc3339)?),
        Some(record.received_at.format(&Rfc3339)?),
        Some(record.level.as_str().to_owned()),
        Some(record.service.clone()),
        Some(record.message.clone()),
        record.trace_id.clone(),
        record.correlation_id.clone(),
        record.task_id.map(|id| id.to_string()),
        Some(record.fields.as_ref().map_or("{}", |f| f.get()).to_owned()),
    ];
    for (index, field) in fields.iter().enumerate() {
        if index > 0 {
            out.push(b'\t');
        }
        text_field(out, field.as_deref());
    }
    out.push(b'\n');
    Ok(())
}

/// One `COPY` statement per `per_copy` batches, taken in turn by `connections` connections.
/// Returns the time from the first statement until the last one committed.
async fn copy_batches(
    pool: &PgPool,
    format: Format,
    payloads: &Arc<Vec<Vec<u8>>>,
    batches: usize,
    per_copy: usize,
    connections: usize,
) -> anyhow::Result<Duration> {
    let statements = batches.div_ceil(per_copy);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (pool, payloads, next) = (pool.clone(), payloads.clone(), next.clone());
            let statement = format.statement();
            tokio::spawn(async move {
                let mut conn = pool.acquire().await?;
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= statements {
                        return Ok::<_, anyhow::Error>(());
                    }
                    let first = index * per_copy;
                    let last = (first + per_copy).min(batches);
                    // One message, as the service's writer sends it.
                    let mut data = format.header().to_vec();
                    for batch in first..last {
                        data.extend_from_slice(&payloads[batch % payloads.len()]);
                    }
                    data.extend_from_slice(format.trailer());
                    let mut copy = conn.copy_in_raw(&statement).await?;
                    copy.send(data).await?;
                    let rows = copy.finish().await?;
                    anyhow::ensure!(
                        rows as usize == (last - first) * BATCH,
                        "COPY stored {rows} rows"
                    );
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    Ok(started.elapsed())
}

/// `batches` request batches written in chunks of the writer's size by `write`, on an emptied
/// table after a warm-up: the time, and the CPU per line.
async fn time_chunks<'r, F, Fut>(
    db: &'r autonoma_testkit::TestDb,
    records: &'r [Vec<Record>],
    batches: usize,
    write: F,
) -> anyhow::Result<(Duration, String)>
where
    F: Fn(Vec<&'r Record>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let per_chunk = logging::writer::WRITE_CHUNK / BATCH;
    let run = |count: usize| {
        let write = &write;
        async move {
            for first in (0..count).step_by(per_chunk) {
                let chunk: Vec<&Record> = (first..(first + per_chunk).min(count))
                    .flat_map(|batch| &records[batch % records.len()])
                    .collect();
                write(chunk).await?;
            }
            anyhow::Ok(())
        }
    };
    sqlx::query("TRUNCATE logs").execute(&db.pool).await?;
    run(WARMUP_BATCHES).await?;
    let cpu = Cpu::now(db).await?;
    let started = Instant::now();
    run(batches).await?;
    let time = started.elapsed();
    Ok((time, Cpu::now(db).await?.per(cpu, batches * BATCH)))
}

/// The service's own write transaction (writers' lock, copy, notification) on the same
/// records, with no HTTP in front: where the service's time goes.
async fn write_directly(
    db: &autonoma_testkit::TestDb,
    records: &[Vec<Record>],
    batches: usize,
) -> anyhow::Result<(Duration, String)> {
    time_chunks(db, records, batches, |chunk| async move {
        Ok(logging::writer::insert(&db.pool, &chunk, None).await?)
    })
    .await
}

/// The same chunks as [`write_directly`] with one multi-row `INSERT … SELECT FROM UNNEST`
/// each, in a plain transaction: the statement `COPY` is weighed against.
async fn insert_unnest(
    db: &autonoma_testkit::TestDb,
    records: &[Vec<Record>],
    batches: usize,
) -> anyhow::Result<(Duration, String)> {
    use sqlx::postgres::PgBindIterExt;
    let insert = format!(
        "INSERT INTO logs ({COLUMNS})
         SELECT * FROM UNNEST($1::timestamptz[], $2::timestamptz[], $3::text[], $4::text[],
                              $5::text[], $6::text[], $7::text[], $8::uuid[], $9::jsonb[])"
    );
    let insert = insert.as_str();
    time_chunks(db, records, batches, |chunk| async move {
        sqlx::query(sqlx::AssertSqlSafe(insert))
            .bind(chunk.iter().map(|r| r.ts).bind_iter())
            .bind(chunk.iter().map(|r| r.received_at).bind_iter())
            .bind(chunk.iter().map(|r| r.level.as_str()).bind_iter())
            .bind(chunk.iter().map(|r| r.service.as_str()).bind_iter())
            .bind(chunk.iter().map(|r| r.message.as_str()).bind_iter())
            .bind(chunk.iter().map(|r| r.trace_id.as_deref()).bind_iter())
            .bind(
                chunk
                    .iter()
                    .map(|r| r.correlation_id.as_deref())
                    .bind_iter(),
            )
            .bind(chunk.iter().map(|r| r.task_id).bind_iter())
            .bind(chunk.iter().map(|r| Json(r.fields.as_deref())).bind_iter())
            .execute(&db.pool)
            .await?;
        Ok(())
    })
    .await
}

/// A way to copy the rows in: format, request batches per statement, connections.
struct Way {
    format: Format,
    per_copy: usize,
    connections: usize,
    payloads: Arc<Vec<Vec<u8>>>,
}

impl Way {
    fn label(&self) -> String {
        format!(
            "{}, {} rows per COPY, {} connection{}",
            self.format.name(),
            self.per_copy * BATCH,
            self.connections,
            if self.connections == 1 { "" } else { "s" }
        )
    }

    fn row_bytes(&self) -> usize {
        self.payloads.iter().map(Vec::len).sum::<usize>() / (self.payloads.len() * BATCH)
    }

    /// One measurement on an emptied table, after a warm-up.
    async fn measure(&self, pool: &PgPool, batches: usize) -> anyhow::Result<Duration> {
        sqlx::query("TRUNCATE logs").execute(pool).await?;
        let (format, payloads) = (self.format, &self.payloads);
        copy_batches(pool, format, payloads, WARMUP_BATCHES, self.per_copy, 1).await?;
        let time = copy_batches(
            pool,
            format,
            payloads,
            batches,
            self.per_copy,
            self.connections,
        )
        .await?;
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM logs")
            .fetch_one(pool)
            .await?;
        anyhow::ensure!(
            stored as usize == (WARMUP_BATCHES + batches) * BATCH,
            "{stored} rows after COPY"
        );
        Ok(time)
    }
}

/// Heap and index bytes per stored row, averaged over the table as it is.
async fn stored_sizes(pool: &PgPool) -> anyhow::Result<(f64, f64, f64)> {
    let (rows, heap, indexes, tuple): (i64, i64, i64, f64) = sqlx::query_as(
        "SELECT count(*), pg_table_size('logs'), pg_indexes_size('logs'),
                coalesce(avg(pg_column_size(logs.*)), 0)::float8
         FROM logs",
    )
    .fetch_one(pool)
    .await?;
    let rows = rows.max(1) as f64;
    Ok((tuple, heap as f64 / rows, indexes as f64 / rows))
}

/// The best rate and every round's, for one line of output.
fn rates(lines: usize, times: &[Duration]) -> (f64, String) {
    let all: Vec<f64> = times.iter().map(|time| per_second(lines, *time)).collect();
    let best = all.iter().copied().fold(0.0, f64::max);
    let listed: Vec<String> = all.iter().map(|rate| format!("{rate:.0}")).collect();
    (best, listed.join(", "))
}

/// [`rates`], with the CPU figures of the fastest round.
fn best_with_cpu(lines: usize, rounds: &[(Duration, String)]) -> (f64, String, String) {
    let times: Vec<Duration> = rounds.iter().map(|(time, _)| *time).collect();
    let (best, all) = rates(lines, &times);
    let cpu = rounds
        .iter()
        .min_by_key(|(time, _)| *time)
        .map_or_else(String::new, |(_, cpu)| cpu.clone());
    (best, all, cpu)
}

async fn run() -> anyhow::Result<()> {
    let (batches, rounds) = (size("BENCH_BATCHES", 400), size("BENCH_ROUNDS", 3).max(1));
    let lines = batches * BATCH;
    let db = autonoma_testkit::test_db().await;
    let bodies: Arc<Vec<bytes::Bytes>> =
        Arc::new((0..BODIES).map(|v| bytes::Bytes::from(body(v))).collect());
    let body_bytes: usize = bodies.iter().map(|b| b.len()).sum::<usize>() / BODIES;
    let records = bodies
        .iter()
        .map(|body| records(body))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let chunk = logging::writer::WRITE_CHUNK / BATCH;
    let ways = [
        (Format::Text, 1, 1),
        (Format::Binary, 1, 1),
        (Format::Text, chunk, 1),
        (Format::Binary, chunk, 1),
        (Format::Binary, 1, CLIENTS),
    ]
    .into_iter()
    .map(|(format, per_copy, connections)| {
        let payloads = records
            .iter()
            .map(|batch| format.rows(batch))
            .collect::<anyhow::Result<_>>()?;
        anyhow::Ok(Way {
            format,
            per_copy,
            connections,
            payloads: Arc::new(payloads),
        })
    })
    .collect::<anyhow::Result<Vec<_>>>()?;
    let copy_pool = PgPoolOptions::new()
        .max_connections(CLIENTS as u32)
        .connect(&db.url)
        .await?;

    // Rounds interleave the ways, so a busy moment of the machine does not favour one.
    let service = Service::start(&db).await?;
    let mut served = Vec::with_capacity(rounds);
    let mut direct = Vec::with_capacity(rounds);
    let mut inserted = Vec::with_capacity(rounds);
    let mut copied = vec![Vec::with_capacity(rounds); ways.len()];
    let mut sizes = (0.0, 0.0, 0.0);
    for _ in 0..rounds {
        served.push(service.measure(&db, &bodies, batches).await?);
        sizes = stored_sizes(&db.pool).await?;
        direct.push(write_directly(&db, &records, batches).await?);
        inserted.push(insert_unnest(&db, &records, batches).await?);
        for (way, times) in ways.iter().zip(&mut copied) {
            times.push(way.measure(&copy_pool, batches).await?);
        }
    }
    service.stop().await?;
    copy_pool.close().await;

    println!(
        "log ingestion on one Postgres: {lines} lines per measurement ({batches} batches of \
         {BATCH}, after {WARMUP_BATCHES} batches of warm-up, on an emptied logs table); best of \
         {rounds} rounds"
    );
    println!("service, POST /log from {CLIENTS} clients:");
    for (round, measured) in served.iter().enumerate() {
        measured.print(round + 1);
    }
    let service_best = served
        .iter()
        .map(ServiceRound::written_per_second)
        .fold(0.0, f64::max);
    let (direct_best, direct_all, direct_cpu) = best_with_cpu(lines, &direct);
    println!(
        "the service's write transaction alone, {} rows per COPY, no HTTP: {direct_best:.0} \
         lines/s (rounds: {direct_all}); CPU per line {direct_cpu}",
        logging::writer::WRITE_CHUNK
    );
    let (inserted_best, inserted_all, inserted_cpu) = best_with_cpu(lines, &inserted);
    println!(
        "a multi-row INSERT … SELECT FROM UNNEST per {} rows instead, no HTTP: \
         {inserted_best:.0} lines/s (rounds: {inserted_all}); CPU per line {inserted_cpu}",
        logging::writer::WRITE_CHUNK
    );
    println!("COPY … FROM STDIN of the same rows straight into the table, no service:");
    let mut ceiling = (0.0, String::new());
    for (way, times) in ways.iter().zip(&copied) {
        let (best, all) = rates(lines, times);
        println!(
            "  {:<42} {best:>7.0} lines/s (rounds: {all}; {} B per row sent)",
            way.label(),
            way.row_bytes()
        );
        if best > ceiling.0 {
            ceiling = (best, way.label());
        }
    }
    let (tuple, heap, indexes) = sizes;
    println!(
        "sizes: {body_bytes} B per request of {BATCH} frames ({} B per JSON frame); stored: \
         {tuple:.0} B per row, {heap:.0} B of table and {indexes:.0} B of indexes per row",
        body_bytes / BATCH
    );
    println!(
        "service ÷ COPY ceiling: {service_best:.0} ÷ {:.0} lines/s ({}) = {:.0}% of the ceiling \
         (the write transaction alone: {:.0}%)",
        ceiling.0,
        ceiling.1,
        service_best / ceiling.0 * 100.0,
        direct_best / ceiling.0 * 100.0
    );
    Ok(())
}
