//! Agents that hang, crash or answer garbage: each such task is timed out or failed, retried up
//! to its `maxAttempts`, and ends `failed` with an error that says what went wrong, while the
//! orchestrator stays ready and echo tasks keep succeeding beside them.
//!
//! The misbehaving agent is a raw TCP server rather than an axum one: only raw can take a
//! request and drop the connection without any answer, or cut an answer half-way.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use autonoma_testkit::{free_port, test_db};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use crate::support::{
    KEY, echo_env, http, orchestrator_env, prebuild, ready_status, rss_kib, spawn_healthy,
    take_turn, wait_for, wait_registered,
};

/// How the fixture treats a dispatch of each kind.
const FAULTS: &[(&str, &str)] = &[
    ("fault.hang", "never answers"),
    (
        "fault.crash",
        "reads the request and closes the connection without an answer",
    ),
    (
        "fault.cut",
        "starts a 200 answer and closes the connection half-way through it",
    ),
    ("fault.garbage", "answers 200 with a body that is not JSON"),
    ("fault.shape", "answers 200 with JSON of the wrong shape"),
    ("fault.flood", "answers 200 with a body that never ends"),
    (
        "fault.silent",
        "answers 202 (will report later) and never reports",
    ),
];

/// A misbehaving HTTP agent. Dropping it stops it and closes every connection.
struct FaultAgent {
    base_url: String,
    server: JoinHandle<()>,
    dispatches: Arc<AtomicU64>,
}

impl Drop for FaultAgent {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FaultAgent {
    /// Serves until dropped; a dispatch of kind `fault.die` stops it (the process "dies").
    async fn start() -> FaultAgent {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base_url = format!("http://{}", listener.local_addr().expect("address"));
        let dispatches = Arc::new(AtomicU64::new(0));
        let counter = dispatches.clone();
        let server = tokio::spawn(async move {
            let dead = Arc::new(Notify::new());
            let mut connections = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        if let Ok((socket, _)) = accepted {
                            connections.spawn(serve(socket, counter.clone(), dead.clone()));
                        }
                        while connections.try_join_next().is_some() {}
                    }
                    // The listener and every open connection go at once, as with a killed
                    // process.
                    () = dead.notified() => return,
                }
            }
        });
        FaultAgent {
            base_url,
            server,
            dispatches,
        }
    }
}

/// Reads one request, then misbehaves as its task's kind says.
async fn serve(mut socket: TcpStream, counter: Arc<AtomicU64>, dead: Arc<Notify>) {
    let Some(body) = read_request(&mut socket).await else {
        return;
    };
    counter.fetch_add(1, Ordering::Relaxed);
    let dispatch: Value = serde_json::from_slice(&body).unwrap_or_default();
    let answer = |status: &str, body: &str| {
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    match dispatch["kind"].as_str().unwrap_or_default() {
        "fault.hang" => tokio::time::sleep(Duration::from_secs(600)).await,
        "fault.crash" => {}
        "fault.cut" => {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\nconnection: close\r\n\r\n{\"outcome\": \"succ";
            let _ = socket.write_all(head.as_bytes()).await;
        }
        "fault.garbage" => {
            let _ = socket
                .write_all(answer("200 OK", "<html>surely not JSON").as_bytes())
                .await;
        }
        "fault.shape" => {
            let _ = socket
                .write_all(answer("200 OK", r#"{"hello": "world"}"#).as_bytes())
                .await;
        }
        "fault.flood" => {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
            if socket.write_all(head.as_bytes()).await.is_ok() {
                let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "[".repeat(64 * 1024));
                while socket.write_all(chunk.as_bytes()).await.is_ok() {}
            }
        }
        "fault.silent" => {
            let _ = socket
                .write_all(answer("202 Accepted", "{}").as_bytes())
                .await;
        }
        "fault.die" => dead.notify_one(),
        _ => {
            let _ = socket
                .write_all(answer("422 Unprocessable Entity", "{}").as_bytes())
                .await;
        }
    }
    let _ = socket.flush().await;
}

/// The body of one HTTP/1.1 request with a `content-length`.
async fn read_request(socket: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    Some(buffer[head_end..head_end + length].to_vec())
}

async fn register(
    http: &reqwest::Client,
    orchestrator: &str,
    name: &str,
    url: &str,
    kinds: &[&str],
) {
    let kinds: Vec<Value> = kinds
        .iter()
        .map(|kind| json!({"kind": kind, "payloadSchema": {"type": "object"}}))
        .collect();
    let response = http
        .post(format!("{orchestrator}/agents"))
        .header("x-internal-key", KEY)
        .json(&json!({"name": name, "transport": "http", "baseUrl": url, "kinds": kinds}))
        .send()
        .await
        .expect("registering");
    assert_eq!(
        response.status(),
        200,
        "{}",
        response.text().await.unwrap_or_default()
    );
}

async fn create(http: &reqwest::Client, orchestrator: &str, body: Value) -> Uuid {
    let response = http
        .post(format!("{orchestrator}/task"))
        .header("x-internal-key", KEY)
        .json(&body)
        .send()
        .await
        .expect("creating a task");
    assert_eq!(
        response.status(),
        201,
        "{}",
        response.text().await.unwrap_or_default()
    );
    let task: Value = response.json().await.expect("task");
    Uuid::parse_str(task["id"].as_str().expect("id")).expect("uuid")
}

async fn get(http: &reqwest::Client, url: String) -> Result<Value, String> {
    http.get(url)
        .header("x-internal-key", KEY)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())
}

async fn wait_final(
    http: &reqwest::Client,
    orchestrator: &str,
    id: Uuid,
    within: Duration,
) -> Value {
    wait_for(
        &format!("task {id} final"),
        within,
        Duration::from_millis(100),
        || async {
            let task = get(http, format!("{orchestrator}/task/{id}")).await?;
            match task["status"].as_str() {
                Some("succeeded" | "failed" | "cancelled" | "dead") => Ok(task),
                _ => Err(task.to_string()),
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_that_hang_crash_or_answer_garbage_fail_their_tasks_cleanly() {
    prebuild(&["orchestrator", "echo-agent"]);
    let _turn = take_turn().await;
    let started = Instant::now();
    let db = test_db().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut env = orchestrator_env(&db.url, port);
    // The flooding agent's answer is cut at this size.
    env.push(("REQUEST_BODY_LIMIT", "1048576".to_owned()));
    let mut orchestrator = spawn_healthy("orchestrator", &env).await;
    let echo = spawn_healthy("echo-agent", &echo_env(&base, free_port())).await;
    let http = http();
    wait_registered(&http, &base, "echo-agent").await;

    let faulty = FaultAgent::start().await;
    let kinds: Vec<&str> = FAULTS.iter().map(|(kind, _)| *kind).collect();
    register(&http, &base, "fault-agent", &faulty.base_url, &kinds).await;
    let dying = FaultAgent::start().await;
    register(&http, &base, "dying-agent", &dying.base_url, &["fault.die"]).await;

    // Readiness and memory, watched for the whole scenario.
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (http, base, watching) = (http.clone(), base.clone(), watching.clone());
        let pid = orchestrator.pid();
        tokio::spawn(async move {
            let mut not_ready = Vec::new();
            let mut peak_rss = 0;
            while watching.load(Ordering::Relaxed) {
                match ready_status(&http, &base).await {
                    Ok(200) => {}
                    other => not_ready.push(format!("{other:?}")),
                }
                peak_rss = peak_rss.max(rss_kib(pid));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (not_ready, peak_rss)
        })
    };
    let rss_before = rss_kib(orchestrator.pid());

    let mut tasks = HashMap::new();
    for (kind, _) in FAULTS
        .iter()
        .copied()
        .chain([("fault.die", "dies mid-task")])
    {
        let id = create(
            &http,
            &base,
            json!({"kind": kind, "payload": {}, "maxAttempts": 3, "timeoutSecs": 2}),
        )
        .await;
        tasks.insert(kind, id);
    }
    // Echo tasks beside the faulty ones succeed, and promptly.
    let mut echo_latencies = Vec::new();
    for i in 0..5 {
        let sent = Instant::now();
        let id = create(&http, &base, json!({"kind": "echo", "payload": {"i": i}})).await;
        let task = wait_final(&http, &base, id, Duration::from_secs(10)).await;
        assert_eq!(task["status"], "succeeded", "{task}");
        echo_latencies.push(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // What each task's error must say, and the event that ended each attempt.
    let expected: &[(&str, &str, &str)] = &[
        (
            "fault.hang",
            "no answer within the timeout of 2s",
            "timed_out",
        ),
        (
            "fault.crash",
            "the agent took the request but gave no answer",
            "attempt_failed",
        ),
        (
            "fault.cut",
            "the agent's answer was cut off",
            "attempt_failed",
        ),
        (
            "fault.garbage",
            "unreadable answer from the agent",
            "attempt_failed",
        ),
        (
            "fault.shape",
            "unreadable answer from the agent",
            "attempt_failed",
        ),
        ("fault.flood", "larger than 1048576 bytes", "attempt_failed"),
        (
            "fault.silent",
            "no result before the attempt's lease expired",
            "lease_expired",
        ),
        ("fault.die", "agent unreachable", "attempt_failed"),
    ];
    let mut report = Vec::new();
    for (kind, says, attempt_event) in expected {
        let id = tasks[kind];
        let task = wait_final(&http, &base, id, Duration::from_secs(60)).await;
        assert_eq!(task["status"], "failed", "{kind}: {task}");
        assert_eq!(
            task["attempts"], 3,
            "{kind}: retried up to maxAttempts: {task}"
        );
        let message = task["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(says),
            "{kind}: the error should say {says:?}: {}",
            task["error"]
        );
        let events = get(&http, format!("{base}/task/{id}/events"))
            .await
            .expect("events");
        let types: Vec<&str> = events
            .as_array()
            .expect("events")
            .iter()
            .filter_map(|e| e["type"].as_str())
            .collect();
        assert_eq!(
            types,
            [
                "created",
                "dispatched",
                attempt_event,
                "dispatched",
                attempt_event,
                "dispatched",
                "failed"
            ],
            "{kind}"
        );
        report.push(format!("{kind}: {message}"));
    }

    watching.store(false, Ordering::Relaxed);
    let (not_ready, peak_rss) = watcher.await.expect("watcher");
    assert!(
        not_ready.is_empty(),
        "/health/ready failed while agents misbehaved: {not_ready:?}"
    );
    assert!(
        orchestrator.try_wait().expect("status").is_none(),
        "the orchestrator exited"
    );
    // The endless answer is dropped at 1 MiB per attempt, so memory barely moves.
    assert!(
        peak_rss < rss_before + 64 * 1024,
        "orchestrator RSS grew from {rss_before} KiB to {peak_rss} KiB"
    );
    // The dying agent took its first dispatch and was never reached again.
    assert_eq!(dying.dispatches.load(Ordering::Relaxed), 1);
    drop(echo);
    eprintln!(
        "misbehaving agents, {:.1}s: every fault failed its task after 3 attempts; echo tasks \
         meanwhile took {echo_latencies:?}; orchestrator RSS {rss_before} KiB before, peak \
         {peak_rss} KiB; final errors:\n  {}",
        started.elapsed().as_secs_f64(),
        report.join("\n  ")
    );
}
