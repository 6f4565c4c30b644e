//! The logging binary as a real process: back-pressure when the writer cannot keep up, and no
//! acknowledged record lost on SIGTERM.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use autonoma_testkit::{ServiceProcess, test_db};
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use support::{KEY, PASS, USER, count, frame, wait_for_rows};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_logging"))
}

fn env(database_url: &str, extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("INTERNAL_API_KEYS", KEY.to_owned()),
        ("BASIC_AUTH_USER", USER.to_owned()),
        ("BASIC_AUTH_PASS", PASS.to_owned()),
        ("DATABASE_URL", database_url.to_owned()),
        ("LOG_FORMAT", "json".to_owned()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    env
}

fn batch(size: usize, label: &str) -> Value {
    Value::Array(
        (0..size)
            .map(|i| frame("loadgen", "info", &format!("{label} {i}")))
            .collect(),
    )
}

/// Holds `ACCESS EXCLUSIVE` on `logs` until released, so no insert can finish.
async fn lock_logs(url: &str) -> PgConnection {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    sqlx::raw_sql("BEGIN; LOCK TABLE logs IN ACCESS EXCLUSIVE MODE")
        .execute(&mut conn)
        .await
        .expect("lock logs");
    conn
}

async fn release(mut conn: PgConnection) {
    sqlx::raw_sql("COMMIT")
        .execute(&mut conn)
        .await
        .expect("unlock");
    conn.close().await.expect("close");
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// The value of the sample named `name` whose labels include every one of `labels`.
async fn metric(
    http: &reqwest::Client,
    service: &ServiceProcess,
    name: &str,
    labels: &[&str],
) -> f64 {
    let text = http
        .get(service.url("/metrics"))
        .header("x-internal-key", KEY)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
                && labels.iter().all(|label| line.contains(label))
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in:\n{text}"))
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after_and_loses_nothing() {
    let db = test_db().await;
    let mut service =
        ServiceProcess::spawn(bin(), &env(&db.url, &[("LOG_INGEST_QUEUE", "100")])).expect("spawn");
    service
        .wait_healthy(Duration::from_secs(30))
        .await
        .expect("healthy");
    let http = reqwest::Client::new();
    let post = |body: Value| {
        http.post(service.url("/log"))
            .header("x-internal-key", KEY)
            .json(&body)
            .send()
    };

    let lock = lock_logs(&db.url).await;
    let mut accepted = 0;
    let mut refused = 0;
    for i in 0..5 {
        let response = post(batch(40, &format!("held {i}"))).await.expect("post");
        match response.status().as_u16() {
            202 => accepted += 40,
            503 => {
                refused += 1;
                let retry_after = response.headers().get("retry-after").expect("Retry-After");
                assert!(retry_after.to_str().is_ok_and(|v| v.parse::<u32>().is_ok()));
                let problem: Value = response.json().await.expect("problem");
                assert_eq!(problem["type"], "urn:autonoma:problem:ingest-queue-full");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    // 100 places: two batches of 40 fit, a third does not, whole batches only.
    assert_eq!((accepted, refused), (80, 3));
    assert_eq!(
        metric(&http, &service, "log_ingest_queue_depth", &[]).await,
        80.0
    );

    // Many more refused batches do not make the process grow.
    let before = rss_kib(service.pid());
    for i in 0..400 {
        let response = post(batch(40, &format!("refused {i}")))
            .await
            .expect("post");
        assert_eq!(response.status(), 503);
    }
    let after = rss_kib(service.pid());
    assert!(
        after < before + 16 * 1024,
        "RSS grew from {before} KiB to {after} KiB while refusing"
    );
    assert_eq!(
        metric(&http, &service, "log_ingest_queue_depth", &[]).await,
        80.0
    );
    assert!(
        metric(
            &http,
            &service,
            "log_records_rejected_total",
            &["reason=\"queue_full\""]
        )
        .await
            >= 403.0 * 40.0
    );

    release(lock).await;
    wait_for_rows(&db.pool, accepted, Duration::from_secs(30)).await;
    // A writer gives its records' places back once its write has settled, just after the
    // rows became visible.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let depth = metric(&http, &service, "log_ingest_queue_depth", &[]).await;
        if depth == 0.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{depth} records still queued after every row was written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Room again.
    let response = post(batch(40, "after")).await.expect("post");
    assert_eq!(response.status(), 202);
    wait_for_rows(&db.pool, accepted + 40, Duration::from_secs(30)).await;

    service.terminate().expect("SIGTERM");
    let status = service.wait(Duration::from_secs(30)).await.expect("exits");
    assert!(status.success(), "{}", service.output());
}

#[tokio::test]
async fn sigterm_writes_every_acknowledged_record_before_exiting() {
    let db = test_db().await;
    let mut service = ServiceProcess::spawn(bin(), &env(&db.url, &[])).expect("spawn");
    service
        .wait_healthy(Duration::from_secs(30))
        .await
        .expect("healthy");

    // The table stays locked while posting, so most acknowledged records are still queued
    // when the signal arrives.
    let lock = lock_logs(&db.url).await;
    let acknowledged = Arc::new(AtomicI64::new(0));
    let refused = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let url = service.url("/log");
            let acknowledged = Arc::clone(&acknowledged);
            let refused = Arc::clone(&refused);
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                for i in 0..15 {
                    let response = http
                        .post(&url)
                        .header("x-internal-key", KEY)
                        .json(&batch(500, &format!("client {client} batch {i}")))
                        .send()
                        .await
                        .expect("post");
                    match response.status().as_u16() {
                        202 => {
                            let body: Value = response.json().await.expect("json");
                            let n = body["accepted"].as_i64().expect("accepted");
                            acknowledged.fetch_add(n, Ordering::SeqCst);
                        }
                        _ => refused.store(true, Ordering::SeqCst),
                    }
                }
            })
        })
        .collect();
    for client in clients {
        client.await.expect("client");
    }
    service.terminate().expect("SIGTERM");
    let acknowledged = acknowledged.load(Ordering::SeqCst);
    assert_eq!(acknowledged, 4 * 15 * 500, "every batch fit in the queue");
    assert!(!refused.load(Ordering::SeqCst));

    // Still draining: nothing can be written while the table is locked.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        service.try_wait().expect("status").is_none(),
        "exited before writing what it acknowledged:\n{}",
        service.output()
    );
    // New records are refused while draining (or the port is already closed).
    let late = reqwest::Client::new()
        .post(service.url("/log"))
        .header("x-internal-key", KEY)
        .json(&frame("loadgen", "info", "late"))
        .send()
        .await;
    if let Ok(response) = late {
        assert_eq!(response.status(), 503);
    }

    release(lock).await;
    let status = service.wait(Duration::from_secs(60)).await.expect("exits");
    assert!(status.success(), "exit {status}:\n{}", service.output());
    assert_eq!(count(&db.pool).await, acknowledged);
    assert!(
        service.output().contains("drained the queue"),
        "{}",
        service.output()
    );
}

#[tokio::test]
async fn a_database_that_keeps_failing_at_shutdown_is_given_up_on_loudly() {
    let db = test_db().await;
    let env = env(
        &db.url,
        &[
            ("SHUTDOWN_GRACE", "1s"),
            ("DATABASE_STATEMENT_TIMEOUT", "200ms"),
        ],
    );
    let mut service = ServiceProcess::spawn(bin(), &env).expect("spawn");
    service
        .wait_healthy(Duration::from_secs(30))
        .await
        .expect("healthy");

    // Every insert now times out: a transient failure, retried, never written.
    let lock = lock_logs(&db.url).await;
    let response = reqwest::Client::new()
        .post(service.url("/log"))
        .header("x-internal-key", KEY)
        .json(&batch(25, "doomed"))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 202);
    service.terminate().expect("SIGTERM");
    let status = service.wait(Duration::from_secs(30)).await.expect("exits");
    release(lock).await;

    assert_eq!(status.code(), Some(1), "{}", service.output());
    let output = service.output();
    assert!(
        output.contains("25 acknowledged log records were not stored"),
        "{output}"
    );
    assert_eq!(count(&db.pool).await, 0);
}
