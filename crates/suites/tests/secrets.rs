//! No secret appears in anything a full end-to-end run produces.
//!
//! The six services run as real processes on one database, configured with long random
//! secrets: two internal keys (a rotation in progress), the Basic Auth password, the database
//! password, the Render token (renderctl talks to the Render contract fake), both webhook
//! secrets, the AWS secret key (the queue gateway runs on SQS and S3 in moto) and the sandbox's
//! own redaction list. Every service ships its logs to the logging service at debug level, some
//! as JSON and some as text. The run then does what the product is for, with its failures and
//! people's mistakes (see `secrets/drive.rs`), and keeps everything it produced: every answer
//! with its headers, the live streams, the MCP clients' output, renderctl's command line, every
//! service's stdout and stderr, every stored log record (through `GET /logs` and in the table)
//! and every row of every table. The sweep (`secrets/sweep.rs`) looks through all of it for each
//! secret as is, base64 and URL-encoded, and for the near misses the run sent.

#[path = "secrets/drive.rs"]
mod drive;
#[path = "secrets/mcp.rs"]
mod mcp;
#[path = "secrets/run.rs"]
mod run;
#[path = "security/stack.rs"]
mod stack;
#[path = "secrets/sweep.rs"]
mod sweep;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::Method;
use run::{Recorder, Secrets, Stack};
use sqlx::AssertSqlSafe;
use sweep::{Evidence, Secret, sweep};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_anything_a_full_run_produces() {
    let started = Instant::now();
    let secrets = Secrets::generate();
    let mut stack = Stack::start(secrets.clone()).await;
    let rec = Recorder::new(&stack);
    eprintln!("secrets suite: stack up after {:?}", started.elapsed());

    let streams = drive::open_streams(&stack);
    drive::operations(&stack, &rec).await;
    drive::orchestrator(&stack, &rec).await;
    drive::logging(&stack, &rec).await;
    drive::echo_agent(&stack, &rec).await;
    drive::renderctl(&stack, &rec).await;
    let sandbox_logs = drive::sandbox(&stack, &rec).await;
    drive::queue_gateway(&stack, &rec).await;
    drive::wrong_credentials(&stack, &rec).await;
    drive::secrets_in_queries(&stack, &rec).await;
    drive::refused_boot(&stack, &rec).await;
    drive::end_sandbox(&stack, &rec).await;
    eprintln!("secrets suite: run driven after {:?}", started.elapsed());

    // The streams and the log shipping (batches every 500 ms) catch up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    sandbox_logs.stop(&rec, "[REDACTED]");
    let [websocket, sse] = streams;
    websocket.stop(&rec, "\"succeeded\"");
    sse.stop(&rec, "data:");
    // The others flush their last log batches as they stop; the logging service still runs.
    stack.stop_all_but_logging().await;
    let shippers = every_log_record(&stack, &rec).await;
    for service in [
        "orchestrator",
        "echo-agent",
        "renderctl",
        "sandbox",
        "queue-gateway",
    ] {
        assert!(
            shippers.get(service).is_some_and(|n| *n > 10),
            "few or no log records of {service} arrived: {shippers:?}"
        );
    }
    stack.stop_logging().await;
    every_row(&stack, &rec).await;
    for (name, running) in &stack.services {
        rec.keep(
            format!("{name}'s stdout and stderr"),
            running.process.output(),
        );
    }
    let requests: Vec<String> = stack
        .fake
        .requests()
        .iter()
        .map(|r| format!("{} {} {:?} {}", r.method, r.path, r.query, r.status))
        .collect();
    assert!(
        requests.len() > 5,
        "renderctl hardly called Render: {requests:?}"
    );
    rec.keep("the requests the Render fake answered", requests.join("\n"));

    let evidence = rec.evidence();
    let bytes: usize = evidence.iter().map(|e| e.text.len()).sum();
    let findings = sweep(&secrets.list(), &evidence);
    eprintln!(
        "secrets suite: log records per service {shippers:?}; swept {} sources ({} KiB) for {} \
         secrets in {:?} overall",
        evidence.len(),
        bytes / 1024,
        secrets.list().len(),
        started.elapsed()
    );
    assert!(
        findings.is_empty(),
        "{} secret leak(s):\n{}",
        findings.len(),
        findings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Reads every stored log record through `GET /logs`, page by page; returns how many each
/// service shipped.
async fn every_log_record(stack: &Stack, rec: &Recorder) -> BTreeMap<String, usize> {
    let mut count = BTreeMap::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let path = match &cursor {
            Some(cursor) => format!("/logs?limit=500&cursor={cursor}"),
            None => "/logs?limit=500".to_owned(),
        };
        let page = rec
            .send(
                "every stored log record",
                stack.operator(Method::GET, "logging", &path),
            )
            .await;
        assert_eq!(page.status, 200, "{}", page.text);
        let page = page.json();
        for item in page["items"].as_array().into_iter().flatten() {
            let service = item["service"].as_str().unwrap_or_default().to_owned();
            *count.entry(service).or_insert(0) += 1;
        }
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return count,
        }
    }
    panic!("GET /logs never reached its last page");
}

/// Every row of every table of the shared database, as JSON.
async fn every_row(stack: &Stack, rec: &Recorder) {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&stack.db.pool)
    .await
    .expect("the tables");
    assert!(tables.iter().any(|t| t == "logs"), "{tables:?}");
    for table in tables {
        let rows: Option<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            r#"SELECT string_agg(row_to_json(t)::text, E'\n') FROM "{table}" t"#
        )))
        .fetch_one(&stack.db.pool)
        .await
        .unwrap_or_else(|e| panic!("reading {table}: {e}"));
        rec.keep(
            format!("the rows of table {table}"),
            rows.unwrap_or_default(),
        );
    }
}

/// The sweep finds each secret in each form it looks for, and names it without printing it.
#[test]
fn secrets_sweep_finds_every_form_and_prints_none() {
    let secrets = [
        Secret::new("KEY", "ik-0123456789abcdef+/="),
        Secret::new("PASS", "pw-0123456789"),
    ];
    for secret in &secrets {
        for (form, needle) in secret.forms() {
            let evidence = [Evidence {
                source: "a log line".into(),
                text: format!(
                    "{{\"level\":\"info\",\"message\":\"got {needle} from the caller\"}}"
                ),
            }];
            let findings = sweep(&secrets, &evidence);
            assert!(
                findings
                    .iter()
                    .any(|f| f.secret == secret.name && f.form == form),
                "{} ({form}) not found",
                secret.name
            );
            for finding in findings {
                let shown = finding.to_string();
                assert!(shown.contains(&format!("⟨{}⟩", secret.name)), "{shown}");
                for (_, any) in secrets.iter().flat_map(Secret::forms) {
                    assert!(!shown.contains(&any), "the report prints a secret: {shown}");
                }
            }
        }
    }
    let clean = [Evidence {
        source: "a log line".into(),
        text: "ik-0123456789abcdef and pw-012345678 are only prefixes".into(),
    }];
    assert!(sweep(&secrets, &clean).is_empty());
}
