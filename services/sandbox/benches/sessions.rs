//! The sandbox's figures on this machine and container engine, printed, not asserted:
//! - session create → ready (`POST /api/sessions {"template":"empty"}`; its 201 means the
//!   container is running and ready), p50/p99/max over sequential creates, each deleted after
//!   (delete p50/p99/max too);
//! - the `exec` round trip (`POST /api/sessions/{id}/exec {"cmd":"true"}`) on one session,
//!   p50/p99/max over sequential calls, and `fs/write` + `fs/read` of a small file (new files,
//!   then the same file replaced, which takes a checkpoint first);
//! - sessions created all at once, each then running its execs of `echo $RANDOM` at once:
//!   errors (with their bodies), total wall time, create and exec p50/p99 under that load,
//!   then all deleted at once and each checked (`GET state` → `deleted`).
//!
//! The targets are printed beside the figures: create p50 ≤ 1 s, exec p50 ≤ 50 ms, 20
//! concurrent sessions without an error. For scale: E2B creates a sandbox in ~150 ms
//! (self-hosted), Daytona in < 90 ms.
//!
//! The sandbox runs as its own process (this package's binary, built optimised) on a throwaway
//! Postgres, against the container engine of `TEST_DOCKER_HOST` (as `cargo autonoma test`
//! sets it) or else `DOCKER_HOST` (a Docker API, e.g. `unix:///run/podman/podman.sock`), with
//! the image `SANDBOX_IMAGE` (default `localhost/autonoma-sandbox-base:test`, the image
//! `cargo autonoma test` builds).
//! Run: `TEST_DOCKER_HOST=unix:///… cargo bench -p sandbox --bench sessions`.
//! Sizes: `BENCH_CREATES` (default 30), `BENCH_EXECS` (200), `BENCH_FILES` (100),
//! `BENCH_CONCURRENT` (20 sessions), `BENCH_CONCURRENT_EXECS` (10 per session).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use autonoma_testkit::{SANDBOX_TEST_IMAGE, ServiceProcess};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const KEY: &str = "bench-internal-key-0123456789";
const USER: &str = "operator";
const PASS: &str = "correct-horse-battery";

const CREATE_TARGET_MS: f64 = 1000.0;
const EXEC_TARGET_MS: f64 = 50.0;
/// How many error bodies to print before only counting the rest.
const SHOWN_ERRORS: usize = 40;

fn size(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Prints p50/p99/max of `millis` and returns the p50.
fn summary(label: &str, mut millis: Vec<f64>) -> f64 {
    millis.sort_by(f64::total_cmp);
    let p50 = percentile(&millis, 0.50);
    println!(
        "  {label:<40} n={:<5} p50 {:>8.2} ms   p99 {:>8.2} ms   max {:>8.2} ms",
        millis.len(),
        p50,
        percentile(&millis, 0.99),
        millis.last().copied().unwrap_or(f64::NAN),
    );
    p50
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

fn target(what: &str, met: bool, anchors: &str) {
    println!("  {:<40} target {what}: {}{anchors}", "", verdict(met));
}

/// `VmRSS` and `VmHWM` (peak) of a process, in MiB.
fn memory(pid: u32) -> Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<f64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("{name} in /proc/{pid}/status"))?;
        let kib: f64 = line
            .split_whitespace()
            .nth(1)
            .context("a figure")?
            .parse()?;
        Ok(kib / 1024.0)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// The Docker API the sessions run in: `TEST_DOCKER_HOST`, else `DOCKER_HOST`.
fn engine() -> Result<String> {
    for name in ["TEST_DOCKER_HOST", "DOCKER_HOST"] {
        if let Ok(host) = std::env::var(name)
            && !host.trim().is_empty()
        {
            return Ok(host.trim().to_owned());
        }
    }
    bail!(
        "no container engine: set TEST_DOCKER_HOST (as `cargo autonoma test` does) or \
         DOCKER_HOST to a Docker API, e.g. \
         `TEST_DOCKER_HOST=unix:///run/podman/podman.sock cargo bench -p sandbox --bench sessions` \
         (`podman system service --time=0 unix:///run/podman/podman.sock` starts one), with the \
         image SANDBOX_IMAGE (default {SANDBOX_TEST_IMAGE}) in it"
    )
}

/// A client of the running sandbox, cheap to clone into tasks. It remembers the sessions it
/// created and has not deleted, so that a failed run can still clean up after itself.
#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    base: String,
    live: Arc<Mutex<BTreeSet<String>>>,
}

/// One answer: status, body (JSON, or the text as a JSON string) and the round trip in ms.
struct Answer {
    status: StatusCode,
    body: Value,
    millis: f64,
}

impl Client {
    fn new(base: String) -> Result<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(1000)
            .timeout(Duration::from_secs(150))
            .build()?;
        Ok(Self {
            http,
            base,
            live: Arc::default(),
        })
    }

    fn live(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn request(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Answer> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header("x-internal-key", KEY);
        if let Some(body) = body {
            request = request.json(body);
        }
        let started = Instant::now();
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .with_context(|| format!("{method} {path}: reading the body"))?;
        let millis = started.elapsed().as_secs_f64() * 1000.0;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Answer {
            status,
            body,
            millis,
        })
    }

    /// Creates an `empty` session; its id and the round trip.
    async fn create(&self) -> Result<(String, f64)> {
        let answer = self
            .request(
                Method::POST,
                "/api/sessions",
                Some(&json!({"template": "empty"})),
            )
            .await?;
        if answer.status != StatusCode::CREATED {
            bail!("create: {} {}", answer.status, answer.body);
        }
        let id = answer.body["sessionId"]
            .as_str()
            .with_context(|| format!("create: no sessionId in {}", answer.body))?
            .to_owned();
        self.live().insert(id.clone());
        Ok((id, answer.millis))
    }

    async fn delete(&self, id: &str) -> Result<f64> {
        let answer = self
            .request(Method::DELETE, &format!("/api/sessions/{id}"), None)
            .await?;
        if answer.status != StatusCode::NO_CONTENT {
            bail!("delete {id}: {} {}", answer.status, answer.body);
        }
        self.live().remove(id);
        Ok(answer.millis)
    }

    /// Runs `cmd`, which must exit 0: its stdout, the round trip and the time the engine took
    /// (`durationMs`: from creating the exec to reading its exit code).
    async fn exec(&self, id: &str, cmd: &str) -> Result<(String, f64, f64)> {
        let answer = self
            .request(
                Method::POST,
                &format!("/api/sessions/{id}/exec"),
                Some(&json!({"cmd": cmd})),
            )
            .await?;
        if answer.status != StatusCode::OK || answer.body["exitCode"] != 0 {
            bail!("exec {cmd:?} in {id}: {} {}", answer.status, answer.body);
        }
        let stdout = answer.body["stdout"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let engine = answer.body["durationMs"].as_f64().unwrap_or(f64::NAN);
        Ok((stdout, answer.millis, engine))
    }

    async fn write(&self, id: &str, path: &str, content: &str) -> Result<f64> {
        let answer = self
            .request(
                Method::POST,
                &format!("/api/sessions/{id}/fs/write"),
                Some(&json!({"path": path, "content": content})),
            )
            .await?;
        if answer.status != StatusCode::OK {
            bail!("fs/write {path} in {id}: {} {}", answer.status, answer.body);
        }
        Ok(answer.millis)
    }

    async fn read(&self, id: &str, path: &str, expected: &str) -> Result<f64> {
        let answer = self
            .request(
                Method::GET,
                &format!("/api/sessions/{id}/fs/read?path={path}"),
                None,
            )
            .await?;
        if answer.status != StatusCode::OK || answer.body["content"] != expected {
            bail!("fs/read {path} in {id}: {} {}", answer.status, answer.body);
        }
        Ok(answer.millis)
    }

    async fn status(&self, id: &str) -> Result<String> {
        let answer = self
            .request(Method::GET, &format!("/api/sessions/{id}/state"), None)
            .await?;
        if answer.status != StatusCode::OK {
            bail!("state of {id}: {} {}", answer.status, answer.body);
        }
        Ok(answer.body["status"].as_str().unwrap_or("?").to_owned())
    }

    /// Deletes every session this client created and has not deleted (best effort).
    async fn clean_up(&self) {
        let left: Vec<String> = self.live().iter().cloned().collect();
        for id in left {
            if let Err(error) = self.delete(&id).await {
                eprintln!("cleaning up: {error:#}");
            }
        }
    }
}

/// Sequential creates, each deleted after.
async fn creates(client: &Client, rounds: usize) -> Result<()> {
    let (mut created, mut deleted) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (id, millis) = client.create().await?;
        created.push(millis);
        deleted.push(client.delete(&id).await?);
    }
    let p50 = summary("session create → ready (sequential)", created);
    target(
        "p50 ≤ 1 s",
        p50 <= CREATE_TARGET_MS,
        "; anchors: E2B ~150 ms (self-hosted), Daytona < 90 ms",
    );
    summary("session delete (sequential)", deleted);
    Ok(())
}

/// Sequential execs and file calls on one session.
async fn tools(client: &Client, execs: usize, files: usize) -> Result<()> {
    let (id, _) = client.create().await?;
    // A few first, so connections and the engine's caches are warm.
    for _ in 0..5 {
        client.exec(&id, "true").await?;
    }
    let (mut round_trips, mut engine, mut service) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..execs {
        let (_, millis, in_engine) = client.exec(&id, "true").await?;
        round_trips.push(millis);
        engine.push(in_engine);
        service.push(millis - in_engine);
    }
    let p50 = summary("exec `true` round trip (sequential)", round_trips);
    target("p50 ≤ 50 ms", p50 <= EXEC_TARGET_MS, "");
    summary("  of which the engine (durationMs)", engine);
    summary("  of which the rest (HTTP, records)", service);

    let (mut writes, mut reads, mut replaces) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..files {
        let content = format!("small file {i}\n");
        writes.push(
            client
                .write(&id, &format!("bench/f{i}.txt"), &content)
                .await?,
        );
    }
    for i in 0..files {
        let content = format!("small file {i}\n");
        reads.push(
            client
                .read(&id, &format!("bench/f{i}.txt"), &content)
                .await?,
        );
    }
    client.write(&id, "bench/same.txt", "version 0\n").await?;
    for i in 1..=files {
        let content = format!("version {i}\n");
        replaces.push(client.write(&id, "bench/same.txt", &content).await?);
    }
    summary("fs/write new small file", writes);
    summary("fs/read small file", reads);
    summary("fs/write replacing (checkpoint first)", replaces);
    client.delete(&id).await?;
    Ok(())
}

/// What one of the concurrent sessions saw.
#[derive(Default)]
struct Run {
    id: Option<String>,
    create: Option<f64>,
    execs: Vec<f64>,
    errors: Vec<String>,
}

async fn one_of_many(client: Client, execs: usize) -> Run {
    let mut run = Run::default();
    let id = match client.create().await {
        Ok((id, millis)) => {
            run.create = Some(millis);
            id
        }
        Err(error) => {
            run.errors.push(format!("{error:#}"));
            return run;
        }
    };
    let calls = (0..execs).map(|_| client.exec(&id, "echo $RANDOM"));
    for result in futures::future::join_all(calls).await {
        match result {
            Ok((stdout, millis, _)) if stdout.trim().parse::<u32>().is_ok() => {
                run.execs.push(millis)
            }
            Ok((stdout, _, _)) => run.errors.push(format!(
                "exec `echo $RANDOM` in {id}: stdout {stdout:?} is not a number"
            )),
            Err(error) => run.errors.push(format!("{error:#}")),
        }
    }
    run.id = Some(id);
    run
}

fn print_errors(errors: &[String]) {
    for error in errors.iter().take(SHOWN_ERRORS) {
        println!("    error: {error}");
    }
    if errors.len() > SHOWN_ERRORS {
        println!("    … and {} more", errors.len() - SHOWN_ERRORS);
    }
}

/// `sessions` created at once, each running `execs` execs at once, then all deleted at once.
async fn concurrent(client: &Client, pid: u32, sessions: usize, execs: usize) -> Result<()> {
    let started = Instant::now();
    let tasks: Vec<_> = (0..sessions)
        .map(|_| tokio::spawn(one_of_many(client.clone(), execs)))
        .collect();
    let mut runs = Vec::with_capacity(sessions);
    for task in tasks {
        runs.push(task.await.context("a session task panicked")?);
    }
    let wall = started.elapsed();
    let (_, peak) = memory(pid)?;

    let errors: Vec<String> = runs.iter().flat_map(|r| r.errors.clone()).collect();
    let creates: Vec<f64> = runs.iter().filter_map(|r| r.create).collect();
    let round_trips: Vec<f64> = runs.iter().flat_map(|r| r.execs.clone()).collect();
    let label = format!("{sessions} at once: create → ready");
    summary(&label, creates);
    let label = format!("{sessions} at once: exec `echo $RANDOM`");
    summary(&label, round_trips);
    println!(
        "  {sessions} sessions × {execs} execs at once: wall {:.0} ms, {} errors; \
         sandbox peak RSS {peak:.1} MiB",
        wall.as_secs_f64() * 1000.0,
        errors.len(),
    );
    print_errors(&errors);
    target(
        &format!("{sessions} concurrent sessions without error"),
        errors.is_empty(),
        "",
    );

    let ids: Vec<String> = runs.iter().filter_map(|r| r.id.clone()).collect();
    let started = Instant::now();
    let deletes: Vec<_> = ids
        .iter()
        .map(|id| {
            let (client, id) = (client.clone(), id.clone());
            tokio::spawn(async move { client.delete(&id).await })
        })
        .collect();
    let (mut deleted, mut delete_errors) = (Vec::new(), Vec::new());
    for task in deletes {
        match task.await.context("a delete task panicked")? {
            Ok(millis) => deleted.push(millis),
            Err(error) => delete_errors.push(format!("{error:#}")),
        }
    }
    let wall = started.elapsed();
    let label = format!("{sessions} at once: delete");
    summary(&label, deleted);
    println!(
        "  {} deletes at once: wall {:.0} ms, {} errors",
        ids.len(),
        wall.as_secs_f64() * 1000.0,
        delete_errors.len()
    );
    print_errors(&delete_errors);

    let mut left = Vec::new();
    for id in &ids {
        match client.status(id).await {
            Ok(status) if status == "deleted" => {}
            Ok(status) => left.push(format!("{id} is {status}")),
            Err(error) => left.push(format!("{error:#}")),
        }
    }
    println!(
        "  after deleting: {} of {} sessions not `deleted`",
        left.len(),
        ids.len()
    );
    print_errors(&left);
    Ok(())
}

async fn run(client: &Client, pid: u32) -> Result<()> {
    let rounds = size("BENCH_CREATES", 30);
    let execs = size("BENCH_EXECS", 200);
    let files = size("BENCH_FILES", 100);
    let sessions = size("BENCH_CONCURRENT", 20);
    let per_session = size("BENCH_CONCURRENT_EXECS", 10);

    // The first session pays for the engine's cold caches (image layers, networks).
    let (id, cold) = client.create().await?;
    client.exec(&id, "true").await?;
    client.delete(&id).await?;
    println!("  first (cold) create → ready: {cold:.2} ms");

    creates(client, rounds).await?;
    tools(client, execs, files).await?;
    concurrent(client, pid, sessions, per_session).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let host = engine()?;
    let image = std::env::var("SANDBOX_IMAGE")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| SANDBOX_TEST_IMAGE.to_owned());
    let bin = Path::new(env!("CARGO_BIN_EXE_sandbox"));
    let db = autonoma_testkit::test_db().await;
    let dir = tempfile::tempdir()?;
    let sessions = size("BENCH_CONCURRENT", 20);
    let env: Vec<(&str, String)> = vec![
        ("HOST", "127.0.0.1".to_owned()),
        ("PORT", autonoma_testkit::free_port().to_string()),
        ("INTERNAL_API_KEYS", KEY.to_owned()),
        ("BASIC_AUTH_USER", USER.to_owned()),
        ("BASIC_AUTH_PASS", PASS.to_owned()),
        ("DATABASE_URL", db.url.clone()),
        ("DOCKER_HOST", host.clone()),
        ("SANDBOX_IMAGE", image.clone()),
        (
            "SANDBOX_WORKSPACE_DIR",
            dir.path().join("sandbox").display().to_string(),
        ),
        ("REQUEST_TIMEOUT", "130s".to_owned()),
        ("SANDBOX_MAX_SESSIONS", (sessions + 1).max(50).to_string()),
        ("SANDBOX_MEMORY_MB", "256".to_owned()),
        ("SANDBOX_PIDS_LIMIT", "128".to_owned()),
        ("SANDBOX_TMPFS_MB", "16".to_owned()),
        ("LOG_LEVEL", "warn".to_owned()),
    ];
    let mut process = ServiceProcess::spawn(bin, &env)?;
    process.wait_healthy(Duration::from_secs(60)).await?;
    let client = Client::new(process.base_url())?;
    let ready = client.request(Method::GET, "/health/ready", None).await?;
    if ready.status != StatusCode::OK {
        bail!(
            "the sandbox is not ready on engine {host}: {} {}",
            ready.status,
            ready.body
        );
    }
    println!("\nsandbox on {host}, image {image}");
    let outcome = run(&client, process.pid()).await;
    client.clean_up().await;
    process.terminate()?;
    process.wait(Duration::from_secs(30)).await?;
    outcome
}
