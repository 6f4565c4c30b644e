//! The gateway's figures on this machine, printed, not asserted, for each set of backends:
//! - AI send → browser receive (a browser long-polling the page), p50/p99/max, for a send over
//!   HTTP and for a directive put on the bus queue the gateway consumes,
//! - browser input → AI receive (the AI long-polling the page's input), p50/p99/max,
//! - 1,000 browsers long-polling one page at once (each polls again as soon as it is
//!   answered): AI send → browser latency for one other browser while they are all held, then
//!   `BENCH_FANOUTS` sends to their page, each delivered to all 1,000 (p50/p99/max over every
//!   delivery), and the gateway's memory idle, with the polls held and after the sends,
//! - a 50 MB dataset uploaded as a stream and fetched back: the gateway's peak memory before
//!   and after.
//!
//! The gateway runs as its own process (this package's release binary) on a throwaway
//! Postgres, so its memory is its own. The embedded backends always run; SQS + S3 run when
//! `TEST_SQS_ENDPOINT` names a moto (or other SQS/S3) server.
//! Run: `cargo bench -p queue-gateway --bench latency`.
//! Sizes: `BENCH_ROUNDS` (default 500), `BENCH_BROWSERS` (1000), `BENCH_FANOUTS` (5),
//! `BENCH_DATASET_MB` (50).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use autonoma_testkit::ServiceProcess;
use futures::StreamExt;
use serde_json::{Value, json};

const KEY: &str = "bench-internal-key-0123456789";
const USER: &str = "operator";
const PASS: &str = "correct-horse-battery";

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

fn summary(label: &str, mut millis: Vec<f64>) {
    millis.sort_by(f64::total_cmp);
    println!(
        "  {label:<44} n={:<5} p50 {:>8.2} ms   p99 {:>8.2} ms   max {:>8.2} ms",
        millis.len(),
        percentile(&millis, 0.50),
        percentile(&millis, 0.99),
        millis.last().copied().unwrap_or(f64::NAN),
    );
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

struct Gateway {
    process: ServiceProcess,
    http: reqwest::Client,
}

impl Gateway {
    async fn start(bin: &Path, env: Vec<(&'static str, String)>) -> Result<Self> {
        let mut process = ServiceProcess::spawn(bin, &env)?;
        process.wait_healthy(Duration::from_secs(30)).await?;
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(2000)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { process, http })
    }

    fn ai(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.process.url(path))
            .header("x-internal-key", KEY)
    }

    fn browser(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.process.url(path))
            .basic_auth(USER, Some(PASS))
    }

    async fn create_page(&self, page: &str) -> Result<()> {
        let response = self
            .ai(reqwest::Method::POST, "/pages")
            .json(&json!({"page": page}))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("creating {page}: {}", response.status());
        }
        Ok(())
    }

    async fn text(&self, page: &str, text: &str) -> Result<()> {
        let response = self
            .ai(reqwest::Method::POST, &format!("/pages/{page}/messages"))
            .json(&json!({"to": "text-component-answer", "directive": "text.set", "body": {"text": text}}))
            .send()
            .await?;
        if response.status() != reqwest::StatusCode::CREATED {
            bail!("send: {} {}", response.status(), response.text().await?);
        }
        Ok(())
    }
}

/// AI send → browser receive, one message at a time, with the browser always long-polling.
async fn ai_to_browser(gateway: &Gateway, page: &'static str, rounds: usize) -> Result<Vec<f64>> {
    gateway.create_page(page).await?;
    let (received_tx, mut received_rx) = tokio::sync::mpsc::unbounded_channel::<(i64, Instant)>();
    let poll = {
        let (client, base) = (gateway.http.clone(), gateway.process.base_url());
        tokio::spawn(async move {
            let mut after = 0i64;
            loop {
                let url = format!("{base}/pages/{page}/poll?after={after}&wait=20");
                let body: Value = client
                    .get(url)
                    .basic_auth(USER, Some(PASS))
                    .send()
                    .await?
                    .json()
                    .await?;
                let at = Instant::now();
                for message in body["messages"].as_array().into_iter().flatten() {
                    let seq = message["seq"].as_i64().context("seq")?;
                    if received_tx.send((seq, at)).is_err() {
                        return Ok::<_, anyhow::Error>(());
                    }
                }
                after = body["next"].as_i64().context("next")?;
            }
        })
    };
    // Let the first poll reach its wait.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut latencies = Vec::with_capacity(rounds);
    for round in 1..=rounds {
        let sent = Instant::now();
        gateway.text(page, &format!("answer {round}")).await?;
        let (seq, at) = tokio::time::timeout(Duration::from_secs(30), received_rx.recv())
            .await
            .context("the browser did not receive in 30 s")?
            .context("the poller stopped")?;
        if seq != round as i64 {
            bail!("expected seq {round}, got {seq}");
        }
        latencies.push(at.duration_since(sent).as_secs_f64() * 1000.0);
    }
    poll.abort();
    Ok(latencies)
}

/// AI directive put on the bus queue → browser receive, one at a time: the path of an AI that
/// sends through `GATEWAY_DIRECTIVE_QUEUE` instead of HTTP.
async fn queue_to_browser(
    gateway: &Gateway,
    bus: &autonoma_bus::Bus,
    rounds: usize,
) -> Result<Vec<f64>> {
    let page = "latency-queue";
    gateway.create_page(page).await?;
    let queue = bus.open_queue("page-directives").await?;
    let attributes = std::collections::BTreeMap::new();
    let mut after = 0i64;
    let mut latencies = Vec::with_capacity(rounds);
    for round in 1..=rounds {
        let poll = gateway
            .browser(
                reqwest::Method::GET,
                &format!("/pages/{page}/poll?after={after}&wait=20"),
            )
            .send();
        let poll = tokio::spawn(poll);
        // Let the poll reach its wait before the directive goes out.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let directive = json!({"page": page, "to": "text-component-answer",
            "directive": "text.set", "body": {"text": format!("answer {round}")}});
        let sent = Instant::now();
        bus.send(&queue, &directive.to_string(), &attributes)
            .await?;
        let body: Value = poll.await??.json().await?;
        let at = Instant::now();
        after = body["next"]
            .as_i64()
            .with_context(|| format!("no next in the poll's answer {body}"))?;
        if after != round as i64 {
            bail!("expected seq {round}, got {after}");
        }
        latencies.push(at.duration_since(sent).as_secs_f64() * 1000.0);
    }
    Ok(latencies)
}

/// Browser input → AI receive, one event at a time, with the AI always long-polling.
async fn browser_to_ai(gateway: &Gateway, rounds: usize) -> Result<Vec<f64>> {
    let page = "latency-in";
    gateway.create_page(page).await?;
    let (received_tx, mut received_rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    let take = {
        let request = gateway.ai(
            reqwest::Method::GET,
            &format!("/pages/{page}/input?wait=20"),
        );
        tokio::spawn(async move {
            loop {
                let request = request.try_clone().context("cloneable request")?;
                let body: Value = request.send().await?.json().await?;
                let at = Instant::now();
                for event in body["events"].as_array().into_iter().flatten() {
                    let round = event["value"]["round"].as_u64().context("round")?;
                    if received_tx.send((round, at)).is_err() {
                        return Ok::<_, anyhow::Error>(());
                    }
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut latencies = Vec::with_capacity(rounds);
    for round in 1..=rounds as u64 {
        let sent = Instant::now();
        let response = gateway
            .browser(reqwest::Method::POST, &format!("/pages/{page}/events"))
            .json(&json!({"component": "text-component-ask", "kind": "submit", "value": {"round": round}}))
            .send()
            .await?;
        if response.status() != reqwest::StatusCode::ACCEPTED {
            bail!("event: {} {}", response.status(), response.text().await?);
        }
        let (got, at) = tokio::time::timeout(Duration::from_secs(30), received_rx.recv())
            .await
            .context("the AI did not receive in 30 s")?
            .context("the taker stopped")?;
        if got != round {
            bail!("expected round {round}, got {got}");
        }
        latencies.push(at.duration_since(sent).as_secs_f64() * 1000.0);
    }
    take.abort();
    Ok(latencies)
}

/// One browser of the crowd: long-polls the page again at once after every answer, and
/// reports when each message reached it, until it has seen `last`.
async fn crowd_browser(
    request: reqwest::RequestBuilder,
    page_url: String,
    last: i64,
    received: tokio::sync::mpsc::UnboundedSender<(i64, Instant)>,
) -> Result<()> {
    let mut after = 0i64;
    while after < last {
        let response = request
            .try_clone()
            .context("cloneable request")?
            .query(&[("after", after)])
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("{page_url}: {}", response.status());
        }
        let body: Value = response.json().await?;
        let at = Instant::now();
        for message in body["messages"].as_array().into_iter().flatten() {
            let seq = message["seq"].as_i64().context("seq")?;
            // The bench has stopped listening when it gave up on this round.
            let _ = received.send((seq, at));
        }
        after = body["next"].as_i64().context("next")?;
    }
    Ok(())
}

/// `browsers` long polls held on one page. While they wait, one browser on another page is
/// sent `rounds` messages one at a time (latency under the crowd); then `fanouts` sends to the
/// crowd's page, each delivered to every held poll (time from the send until each browser has
/// it). Also the gateway's memory idle, with the polls held and after the sends.
async fn crowd(gateway: &Gateway, browsers: usize, rounds: usize, fanouts: usize) -> Result<()> {
    let page = "crowd";
    gateway.create_page(page).await?;
    let (idle_rss, _) = memory(gateway.process.pid())?;
    let (received_tx, mut received_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut polls = Vec::with_capacity(browsers);
    for _ in 0..browsers {
        let request = gateway
            .browser(reqwest::Method::GET, &format!("/pages/{page}/poll"))
            .query(&[("wait", 20)]);
        polls.push(tokio::spawn(crowd_browser(
            request,
            page.to_owned(),
            fanouts as i64,
            received_tx.clone(),
        )));
    }
    drop(received_tx);
    // Let every poll reach the gateway and start waiting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (held_rss, _) = memory(gateway.process.pid())?;
    let early = polls.iter().filter(|poll| poll.is_finished()).count();

    println!("  {browsers} browsers long-polling one page (each polls again once answered):");
    summary(
        &format!("  AI send → one browser, {browsers} others held"),
        ai_to_browser(gateway, "latency-crowded", rounds).await?,
    );

    let mut delays = Vec::with_capacity(browsers * fanouts);
    let mut sends = Vec::with_capacity(fanouts);
    let mut missing = 0usize;
    for round in 1..=fanouts as i64 {
        let sent = Instant::now();
        gateway.text(page, &format!("to everyone {round}")).await?;
        sends.push(sent.elapsed().as_secs_f64() * 1000.0);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut got = 0;
        while got < browsers {
            match tokio::time::timeout_at(deadline, received_rx.recv()).await {
                Ok(Some((seq, at))) if seq == round => {
                    got += 1;
                    delays.push(at.duration_since(sent).as_secs_f64() * 1000.0);
                }
                // Late from a round that gave up on it: already counted as missing.
                Ok(Some(_)) => {}
                // Every poller stopped, or some did not get it in 30 s.
                Ok(None) | Err(_) => break,
            }
        }
        missing += browsers - got;
        // Let every browser poll again and wait before the next send.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (after_rss, _) = memory(gateway.process.pid())?;
    let mut failed = 0usize;
    for poll in polls {
        match tokio::time::timeout(Duration::from_secs(30), poll).await {
            Ok(Ok(Ok(()))) => {}
            _ => failed += 1,
        }
    }
    summary(
        &format!("  AI send → each of the {browsers} browsers"),
        delays,
    );
    summary("  AI send answered (POST /messages)", sends);
    println!(
        "    {fanouts} sends to all: {missing} deliveries missing; {failed} browsers failed \
         ({early} before the first send)"
    );
    println!(
        "    gateway RSS {idle_rss:.1} MiB idle, {held_rss:.1} MiB with the {browsers} polls held \
         ({:.1} KiB per poll), {after_rss:.1} MiB after the sends",
        (held_rss - idle_rss) * 1024.0 / browsers as f64
    );
    Ok(())
}

/// A dataset streamed in with `POST /blobs`, routed to the page and fetched back.
async fn dataset(gateway: &Gateway, megabytes: usize) -> Result<()> {
    let page = "dataset";
    gateway.create_page(page).await?;
    let (_, peak_before) = memory(gateway.process.pid())?;
    let chunk = vec![b'7'; 1024 * 1024];
    let upload =
        futures::stream::iter((0..megabytes).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let started = Instant::now();
    let response = gateway
        .ai(reqwest::Method::POST, "/blobs?kind=dataset&name=bench.csv")
        .header("content-type", "text/csv")
        .body(reqwest::Body::wrap_stream(upload))
        .send()
        .await?;
    if response.status() != reqwest::StatusCode::CREATED {
        bail!("upload: {} {}", response.status(), response.text().await?);
    }
    let stored: Value = response.json().await?;
    let uploaded = started.elapsed();
    let id = stored["id"].as_str().context("id")?.to_owned();
    let response = gateway
        .ai(reqwest::Method::POST, &format!("/pages/{page}/messages"))
        .json(&json!({"to": "dataset-router", "directive": "dataset.route",
            "body": {"dataset": {"blobId": id}, "to": ["plotly-panel-main"], "mapping": {"x": "a"}}}))
        .send()
        .await?;
    if response.status() != reqwest::StatusCode::CREATED {
        bail!("route: {} {}", response.status(), response.text().await?);
    }
    let started = Instant::now();
    let mut response = gateway
        .browser(reqwest::Method::GET, &format!("/pages/{page}/blobs/{id}"))
        .send()
        .await?;
    if response.status() == reqwest::StatusCode::TEMPORARY_REDIRECT {
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .context("location")?
            .to_owned();
        response = reqwest::get(location).await?;
    }
    let mut bytes = 0usize;
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        bytes += chunk?.len();
    }
    let fetched = started.elapsed();
    let (_, peak_after) = memory(gateway.process.pid())?;
    println!(
        "  {megabytes} MiB dataset: upload {:.0} ms, fetch {:.0} ms ({bytes} bytes back); \
         gateway peak RSS {peak_before:.1} MiB before, {peak_after:.1} MiB after",
        uploaded.as_secs_f64() * 1000.0,
        fetched.as_secs_f64() * 1000.0,
    );
    Ok(())
}

async fn run(
    label: &str,
    bin: &Path,
    env: Vec<(&'static str, String)>,
    bus: autonoma_bus::Bus,
) -> Result<()> {
    let rounds = size("BENCH_ROUNDS", 500);
    let browsers = size("BENCH_BROWSERS", 1000);
    let fanouts = size("BENCH_FANOUTS", 5);
    let megabytes = size("BENCH_DATASET_MB", 50);
    println!("\n{label}");
    let gateway = Gateway::start(bin, env).await?;
    // A few rounds first so connections and caches are warm.
    ai_to_browser(&gateway, "warm-up", 20).await?;
    summary(
        "AI send → browser receive, alone",
        ai_to_browser(&gateway, "latency-out", rounds).await?,
    );
    summary(
        "AI via the bus queue → browser",
        queue_to_browser(&gateway, &bus, rounds).await?,
    );
    summary(
        "browser input → AI receive",
        browser_to_ai(&gateway, rounds).await?,
    );
    // Before the crowd, so the peak it leaves does not hide the dataset's.
    dataset(&gateway, megabytes).await?;
    crowd(&gateway, browsers, rounds, fanouts).await?;
    gateway.process.terminate()?;
    Ok(())
}

/// A bus client like the AI's, on the gateway's database or the SQS endpoint.
async fn connect_bus(
    backend: &str,
    db: &autonoma_testkit::TestDb,
    endpoint: Option<&str>,
) -> Result<autonoma_bus::Bus> {
    let config: autonoma_bus::BusConfig = serde_json::from_value(json!({"BUS_BACKEND": backend}))?;
    let aws: autonoma_aws::AwsConfig = serde_json::from_value(json!({
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }))?;
    Ok(autonoma_bus::Bus::connect(&config, Some(&db.pool), Some(&aws)).await?)
}

#[tokio::main]
async fn main() -> Result<()> {
    let bin = Path::new(env!("CARGO_BIN_EXE_queue-gateway"));
    let db = autonoma_testkit::test_db().await;
    let blobs = tempfile::tempdir()?;
    let base = |database: &str| -> Vec<(&'static str, String)> {
        vec![
            ("INTERNAL_API_KEYS", KEY.to_owned()),
            ("BASIC_AUTH_USER", USER.to_owned()),
            ("BASIC_AUTH_PASS", PASS.to_owned()),
            ("DATABASE_URL", database.to_owned()),
            ("DATABASE_MAX_CONNECTIONS", "20".to_owned()),
            // Every simulated browser comes from 127.0.0.1: one client address to the limiter.
            ("RATE_LIMIT_PER_SECOND", "1000000".to_owned()),
            ("RATE_LIMIT_BURST", "1000000".to_owned()),
            ("BLOB_DIR", blobs.path().display().to_string()),
            ("LOG_LEVEL", "warn".to_owned()),
        ]
    };
    let bus = connect_bus("postgres", &db, None).await?;
    run("Postgres queue + blob directory", bin, base(&db.url), bus).await?;

    match std::env::var("TEST_SQS_ENDPOINT") {
        Ok(endpoint) if !endpoint.trim().is_empty() => {
            let db = autonoma_testkit::test_db().await;
            let mut env = base(&db.url);
            env.extend([
                ("BUS_BACKEND", "sqs".to_owned()),
                ("BLOB_BACKEND", "s3".to_owned()),
                (
                    "BLOB_BUCKET",
                    format!("gateway-bench-{:08x}", rand::random::<u32>()),
                ),
                ("AWS_ENDPOINT_URL", endpoint.trim().to_owned()),
                ("AWS_REGION", "us-east-1".to_owned()),
                ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
                ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
            ]);
            let bus = connect_bus("sqs", &db, Some(endpoint.trim())).await?;
            run(&format!("SQS + S3 at {endpoint}"), bin, env, bus).await?;
        }
        _ => println!(
            "\nSQS + S3: not run; set TEST_SQS_ENDPOINT to a moto server \
             (`moto_server -H 127.0.0.1 -p 5000`, then TEST_SQS_ENDPOINT=http://127.0.0.1:5000)"
        ),
    }
    Ok(())
}
