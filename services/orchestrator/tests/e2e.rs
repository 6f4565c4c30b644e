//! The task lifecycle end to end with the real binaries as processes: logging, orchestrator
//! (one or two replicas) and echo-agent, over HTTP and over SQS (moto).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use autonoma_common::auth::encode_basic;
use autonoma_protocol::{Page, TaskOut, TaskStatus};
use autonoma_testkit::{ServiceProcess, TestDb, free_port, test_db, workspace_binary};
use futures::StreamExt;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use uuid::Uuid;

const KEY: &str = "e2e-internal-key-0123456789";
const USER: &str = "operator";
const PASS: &str = "correct-horse-battery";
const ORIGIN: &str = "http://localhost:5173";
const HOOK_SECRET: &str = "an-e2e-webhook-secret-of-some-length";

fn common_env() -> Vec<(&'static str, String)> {
    vec![
        ("INTERNAL_API_KEYS", KEY.into()),
        ("BASIC_AUTH_USER", USER.into()),
        ("BASIC_AUTH_PASS", PASS.into()),
        ("WS_ALLOWED_ORIGINS", ORIGIN.into()),
        ("LOG_FORMAT", "json".into()),
    ]
}

struct Stack {
    db: TestDb,
    logging: ServiceProcess,
    orchestrators: Vec<ServiceProcess>,
    agent: Option<ServiceProcess>,
    agent_env: Vec<(&'static str, String)>,
    http: reqwest::Client,
}

impl Stack {
    async fn start(
        replicas: usize,
        agent_extra: &[(&'static str, String)],
        orchestrator_extra: &[(&'static str, String)],
    ) -> Stack {
        let db = test_db().await;
        let mut env = common_env();
        env.push(("DATABASE_URL", db.url.clone()));
        let mut logging =
            ServiceProcess::spawn(&workspace_binary("logging"), &env).expect("logging starts");
        logging
            .wait_healthy(Duration::from_secs(60))
            .await
            .expect("logging healthy");

        let mut orchestrators = Vec::new();
        for _ in 0..replicas {
            let mut env = env.clone();
            env.extend([
                ("LOGGING_URL", logging.base_url()),
                ("RETRY_BACKOFF_BASE", "100ms".into()),
                ("RETRY_BACKOFF_MAX", "500ms".into()),
                ("LEASE_GRACE", "1s".into()),
                ("AGENT_LIVENESS", "5s".into()),
            ]);
            env.extend(orchestrator_extra.iter().cloned());
            let mut orchestrator =
                ServiceProcess::spawn(Path::new(env!("CARGO_BIN_EXE_orchestrator")), &env)
                    .expect("orchestrator starts");
            orchestrator
                .wait_healthy(Duration::from_secs(60))
                .await
                .expect("orchestrator healthy");
            orchestrators.push(orchestrator);
        }

        let port = free_port();
        let mut agent_env = common_env();
        agent_env.extend([
            ("PORT", port.to_string()),
            ("ORCHESTRATOR_URL", orchestrators[0].base_url()),
            ("AGENT_PUBLIC_URL", format!("http://127.0.0.1:{port}")),
            ("LOGGING_URL", logging.base_url()),
            ("HEARTBEAT_INTERVAL", "1s".into()),
        ]);
        agent_env.extend(agent_extra.iter().cloned());
        let mut stack = Stack {
            db,
            logging,
            orchestrators,
            agent: None,
            agent_env,
            http: reqwest::Client::new(),
        };
        stack.start_agent().await;
        stack
    }

    async fn start_agent(&mut self) {
        let mut agent = ServiceProcess::spawn(&workspace_binary("echo-agent"), &self.agent_env)
            .expect("agent starts");
        agent
            .wait_healthy(Duration::from_secs(60))
            .await
            .expect("agent healthy");
        self.agent = Some(agent);
        // Registered once the orchestrator lists it as live.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let agents: Value = self.get("/agents").await;
            if agents.as_array().is_some_and(|a| {
                a.iter()
                    .any(|a| a["name"] == "echo-agent" && a["live"] == true)
            }) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the agent never registered: {agents}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn orchestrator(&self) -> &ServiceProcess {
        &self.orchestrators[0]
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        self.http
            .get(self.orchestrator().url(path))
            .basic_auth(USER, Some(PASS))
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json")
    }

    async fn create(&self, body: Value) -> TaskOut {
        let response = self
            .http
            .post(self.orchestrator().url("/task"))
            .basic_auth(USER, Some(PASS))
            .json(&body)
            .send()
            .await
            .expect("request");
        assert_eq!(
            response.status(),
            201,
            "{}",
            response.text().await.unwrap_or_default()
        );
        response.json().await.expect("task")
    }

    async fn wait_final(&self, id: Uuid, within: Duration) -> TaskOut {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let task: TaskOut = self.get(&format!("/task/{id}")).await;
            if task.status.is_final() {
                return task;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "task {id} still {:?}",
                task.status
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn event_types(&self, id: Uuid) -> Vec<String> {
        let events: Vec<Value> = self.get(&format!("/task/{id}/events")).await;
        events
            .iter()
            .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

fn sse_events(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str(data.trim()).ok())
        .collect()
}

#[tokio::test]
async fn two_hundred_echo_tasks_succeed_stream_live_and_are_logged() {
    let stack = Stack::start(1, &[], &[]).await;
    let auth = encode_basic(USER, PASS);

    let (mut socket, _) = tokio_tungstenite::connect_async(ws_upgrade(
        &stack,
        &format!("auth={auth}&kind=echo&logs=false"),
        ORIGIN,
    ))
    .await
    .expect("ws connects");
    socket.next().await.expect("hello").expect("frame");

    // The SSE stream of the logging service, read in the background.
    let sse = stack
        .http
        .get(stack.logging.url("/logs/stream"))
        .basic_auth(USER, Some(PASS))
        .send()
        .await
        .expect("sse");
    assert_eq!(sse.status(), 200);
    let (sse_tx, mut sse_rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let sse_reader = tokio::spawn(async move {
        let mut sse = sse;
        let mut buffer = String::new();
        while let Ok(Some(chunk)) = sse.chunk().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let event: String = buffer.drain(..end + 2).collect();
                for value in sse_events(&event) {
                    let _ = sse_tx.send(value);
                }
            }
        }
    });

    let tasks: Vec<TaskOut> = futures::stream::iter(0..200)
        .map(|i| stack.create(json!({"kind": "echo", "payload": {"message": format!("task {i}")}, "correlationId": format!("batch-{}", i % 10)})))
        .buffer_unordered(16)
        .collect()
        .await;
    let ids: HashSet<Uuid> = tasks.iter().map(|t| t.id).collect();
    assert_eq!(ids.len(), 200);

    // Every transition of every task arrives on the WebSocket, in order per task.
    let mut frames: HashMap<Uuid, Vec<(i64, String)>> = HashMap::new();
    let mut finished = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while finished.len() < ids.len() {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "only {} of 200 tasks finished on the WebSocket",
                    finished.len()
                )
            })
            .expect("open")
            .expect("frame");
        let Message::Text(text) = message else {
            continue;
        };
        let frame: Value = serde_json::from_str(&text).expect("json");
        if frame["type"] != "task" {
            continue;
        }
        let id: Uuid = serde_json::from_value(frame["task"]["id"].clone()).expect("id");
        let status = frame["event"]["toStatus"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if status == "succeeded" {
            finished.insert(id);
        }
        frames
            .entry(id)
            .or_default()
            .push((frame["event"]["version"].as_i64().expect("version"), status));
    }
    for task in &tasks {
        let seen = &frames[&task.id];
        let statuses: Vec<&str> = seen.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(
            statuses,
            ["queued", "running", "succeeded"],
            "task {}",
            task.id
        );
        let versions: Vec<i64> = seen.iter().map(|(v, _)| *v).collect();
        assert_eq!(versions, [1, 2, 3], "task {}", task.id);
    }
    let succeeded: Page<TaskOut> = stack.get("/tasks?status=succeeded&limit=500").await;
    assert_eq!(succeeded.items.len(), 200);

    // Each task's logs are found by its trace id, and they came through the SSE stream too.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut missing: Vec<&TaskOut> = tasks.iter().collect();
    while !missing.is_empty() {
        let mut still = Vec::new();
        for task in missing {
            let page: Value = stack
                .http
                .get(
                    stack
                        .logging
                        .url(&format!("/logs?traceId={}", task.trace_id)),
                )
                .basic_auth(USER, Some(PASS))
                .send()
                .await
                .expect("request")
                .json()
                .await
                .expect("json");
            let services: HashSet<&str> = page["items"]
                .as_array()
                .map(|items| items.iter().filter_map(|l| l["service"].as_str()).collect())
                .unwrap_or_default();
            if !(services.contains("orchestrator") && services.contains("echo-agent")) {
                still.push(task);
            }
        }
        missing = still;
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} tasks lack logs from both services",
            missing.len()
        );
        if !missing.is_empty() {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let mut streamed = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let traces: HashSet<String> = tasks.iter().map(|t| t.trace_id.clone()).collect();
    while !traces.iter().all(|t| streamed.contains(t)) {
        let event = tokio::time::timeout_at(deadline, sse_rx.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} traces never streamed",
                    traces.iter().filter(|t| !streamed.contains(*t)).count()
                )
            })
            .expect("stream open");
        if let Some(trace) = event["traceId"].as_str() {
            streamed.insert(trace.to_owned());
        }
    }
    sse_reader.abort();
}

/// Whether an attempt's error says it ran out of time: the agent's own deadline, the
/// dispatcher's HTTP timeout, or the lease that recovers an attempt nobody reported on.
fn is_timeout(error: &Value) -> bool {
    let text = error.to_string();
    text.contains("timed out") || text.contains("timeout") || text.contains("lease expired")
}

/// Fail-first-2 succeeds on attempt 3, fail-always ends failed after maxAttempts, and a hang is
/// timed out and retried, each with the events to prove it, whatever the agent's transport.
async fn assert_retries_failures_and_timeouts(stack: &Stack) {
    let flaky = stack
        .create(json!({"kind": "echo", "payload": {"failTimes": 2}, "maxAttempts": 3}))
        .await;
    let always = stack
        .create(json!({"kind": "echo", "payload": {"failAlways": true}, "maxAttempts": 2}))
        .await;
    let hang = stack
        .create(json!({"kind": "echo", "payload": {"hangMs": 20000}, "timeoutSecs": 1, "maxAttempts": 2}))
        .await;

    let flaky = stack.wait_final(flaky.id, Duration::from_secs(30)).await;
    assert_eq!(flaky.status, TaskStatus::Succeeded, "{flaky:?}");
    assert_eq!(flaky.attempts, 3);
    assert_eq!(
        flaky.result.as_ref().map(|r| r["attempt"].clone()),
        Some(json!(3))
    );
    assert_eq!(
        stack.event_types(flaky.id).await,
        [
            "created",
            "dispatched",
            "attempt_failed",
            "dispatched",
            "attempt_failed",
            "dispatched",
            "succeeded"
        ]
    );

    let always = stack.wait_final(always.id, Duration::from_secs(30)).await;
    assert_eq!(always.status, TaskStatus::Failed, "{always:?}");
    assert_eq!(always.attempts, 2);
    assert!(always.error.is_some());
    assert_eq!(
        stack.event_types(always.id).await,
        [
            "created",
            "dispatched",
            "attempt_failed",
            "dispatched",
            "failed"
        ]
    );

    let hang = stack.wait_final(hang.id, Duration::from_secs(60)).await;
    assert_eq!(hang.status, TaskStatus::Failed, "{hang:?}");
    assert_eq!(hang.attempts, 2, "the timed-out attempt was retried");
    let error = hang.error.clone().unwrap_or_default();
    assert!(is_timeout(&error), "{error}");
    let events: Vec<Value> = stack.get(&format!("/task/{}/events", hang.id)).await;
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(types.len(), 5, "{types:?}");
    assert_eq!(
        [types[0], types[1], types[3], types[4]],
        ["created", "dispatched", "dispatched", "failed"],
        "{types:?}"
    );
    // The first attempt ended by running out of time (and only then was the second sent).
    assert!(
        ["timed_out", "attempt_failed", "lease_expired"].contains(&types[2]),
        "{types:?}"
    );
    assert_eq!(events[2]["changes"]["attempt"], 1, "{}", events[2]);
    assert!(is_timeout(&events[2]["changes"]["error"]), "{}", events[2]);
}

#[tokio::test]
async fn retries_failures_and_timeouts_with_the_real_agent() {
    let stack = Stack::start(1, &[], &[]).await;
    assert_retries_failures_and_timeouts(&stack).await;
}

#[tokio::test]
async fn killing_the_agent_mid_task_is_recovered() {
    let mut stack = Stack::start(1, &[], &[]).await;
    let task = stack
        .create(json!({"kind": "echo", "payload": {"delayMs": 4000}, "timeoutSecs": 30, "maxAttempts": 10}))
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let current: TaskOut = stack.get(&format!("/task/{}", task.id)).await;
        if current.status == TaskStatus::Running {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never dispatched");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stack
        .agent
        .as_mut()
        .expect("agent")
        .kill()
        .expect("kill -9");
    stack.start_agent().await;
    let done = stack.wait_final(task.id, Duration::from_secs(60)).await;
    assert_eq!(done.status, TaskStatus::Succeeded);
    assert!(
        done.attempts >= 2,
        "the killed attempt was not counted: {done:?}"
    );
}

#[tokio::test]
async fn two_replicas_never_run_an_attempt_twice() {
    // Each replica holds at most 4 attempts at once and each attempt takes a while, so one
    // replica cannot take all the work: both must dispatch, and never the same attempt.
    let stack = Stack::start(2, &[], &[("DISPATCH_CONCURRENCY", "4".into())]).await;
    let tasks: Vec<TaskOut> = futures::stream::iter(0..80)
        .map(|i| stack.create(json!({"kind": "echo", "payload": {"i": i, "delayMs": 100}})))
        .buffer_unordered(10)
        .collect()
        .await;
    for task in &tasks {
        let done = stack.wait_final(task.id, Duration::from_secs(60)).await;
        assert_eq!(done.status, TaskStatus::Succeeded);
        assert_eq!(done.attempts, 1, "{done:?}");
    }
    let duplicates: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT task_id, changes->>'attempt' FROM task_events
         WHERE event_type = 'dispatched' GROUP BY 1, 2 HAVING count(*) > 1) d",
    )
    .fetch_one(&stack.db.pool)
    .await
    .expect("query");
    assert_eq!(duplicates, 0);
    // Each dispatch names its replica as `dispatcher:<pid>-<nonce>`: both processes took work.
    let dispatchers: Vec<(String, i64)> = sqlx::query_as(
        "SELECT actor, count(*) FROM task_events WHERE event_type = 'dispatched' GROUP BY actor",
    )
    .fetch_all(&stack.db.pool)
    .await
    .expect("query");
    assert_eq!(
        dispatchers.iter().map(|(_, n)| n).sum::<i64>(),
        80,
        "one dispatch per task: {dispatchers:?}"
    );
    let pids: HashSet<u32> = dispatchers
        .iter()
        .filter_map(|(actor, _)| {
            actor
                .strip_prefix("dispatcher:")?
                .split('-')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    let replicas: HashSet<u32> = stack.orchestrators.iter().map(|o| o.pid()).collect();
    assert_eq!(dispatchers.len(), 2, "{dispatchers:?}");
    assert_eq!(pids, replicas, "both replicas dispatched: {dispatchers:?}");
}

/// A stack whose echo-agent consumes a fresh queue of its own on moto, the orchestrator
/// sending its attempts there.
async fn start_over_sqs() -> Stack {
    let endpoint = autonoma_testkit::sqs_endpoint();
    let queue = format!("echo-{}", Uuid::new_v4().simple());
    let aws = [
        ("AWS_ENDPOINT_URL", endpoint.clone()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
    ];
    let mut agent_env: Vec<(&'static str, String)> = aws.to_vec();
    agent_env.extend([
        ("AGENT_TRANSPORT", "sqs".to_owned()),
        ("AGENT_QUEUE_NAME", queue),
    ]);
    let stack = Stack::start(1, &agent_env, &aws).await;
    let agents: Value = stack.get("/agents").await;
    assert_eq!(agents[0]["transport"], "sqs", "{agents}");
    stack
}

#[tokio::test]
async fn the_same_tasks_pass_over_sqs_and_a_killed_agent_is_recovered_through_the_lease() {
    let mut stack = start_over_sqs().await;

    let plain: Vec<TaskOut> = futures::stream::iter(0..20)
        .map(|i| stack.create(json!({"kind": "echo", "payload": {"i": i}})))
        .buffer_unordered(5)
        .collect()
        .await;
    let flaky = stack
        .create(json!({"kind": "echo", "payload": {"failTimes": 1}, "maxAttempts": 2}))
        .await;
    for task in plain.iter().chain([&flaky]) {
        let done = stack.wait_final(task.id, Duration::from_secs(60)).await;
        assert_eq!(done.status, TaskStatus::Succeeded, "{done:?}");
    }
    assert_eq!(
        stack
            .wait_final(flaky.id, Duration::from_secs(5))
            .await
            .attempts,
        2
    );

    // kill -9 while the attempt runs: no report ever comes; the lease brings the task back.
    let task = stack
        .create(json!({"kind": "echo", "payload": {"delayMs": 3000}, "timeoutSecs": 6, "maxAttempts": 3}))
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let current: TaskOut = stack.get(&format!("/task/{}", task.id)).await;
        if current.status == TaskStatus::Running {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never dispatched");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stack
        .agent
        .as_mut()
        .expect("agent")
        .kill()
        .expect("kill -9");
    // With the agent gone, the lease (6 s + 1 s grace) expires and the task is queued again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !stack
        .event_types(task.id)
        .await
        .contains(&"lease_expired".to_owned())
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stack.start_agent().await;
    let done = stack.wait_final(task.id, Duration::from_secs(90)).await;
    assert_eq!(done.status, TaskStatus::Succeeded, "{done:?}");
    assert!(done.attempts >= 2);
}

#[tokio::test]
async fn retries_failures_and_timeouts_over_sqs() {
    let stack = start_over_sqs().await;
    assert_retries_failures_and_timeouts(&stack).await;
}

#[tokio::test]
async fn websocket_clients_receive_the_logs_of_the_traces_they_follow() {
    let stack = Stack::start(1, &[], &[]).await;
    let trace = Uuid::new_v4().simple().to_string();
    let auth = encode_basic(USER, PASS);
    let (mut socket, _) = tokio_tungstenite::connect_async(ws_upgrade(
        &stack,
        &format!("auth={auth}&traceId={trace}&logs=true"),
        ORIGIN,
    ))
    .await
    .expect("ws connects");
    socket.next().await.expect("hello").expect("frame");

    let created = stack
        .http
        .post(stack.orchestrator().url("/task"))
        .basic_auth(USER, Some(PASS))
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .json(&json!({"kind": "echo", "payload": {"message": "follow me"}}))
        .send()
        .await
        .expect("request");
    assert_eq!(created.status(), 201);

    let mut succeeded = false;
    let mut log_services = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !(succeeded
        && log_services.contains("orchestrator")
        && log_services.contains("echo-agent"))
    {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .unwrap_or_else(|_| panic!("succeeded: {succeeded}, logs from {log_services:?}"))
            .expect("open")
            .expect("frame");
        let Message::Text(text) = message else {
            continue;
        };
        let frame: Value = serde_json::from_str(&text).expect("json");
        match frame["type"].as_str() {
            Some("task") => {
                assert_eq!(frame["task"]["traceId"], trace.as_str());
                succeeded |= frame["event"]["toStatus"] == "succeeded";
            }
            Some("log") => {
                assert_eq!(
                    frame["log"]["traceId"],
                    trace.as_str(),
                    "only the followed trace: {frame}"
                );
                if let Some(service) = frame["log"]["service"].as_str() {
                    log_services.insert(service.to_owned());
                }
            }
            _ => {}
        }
    }
}

/// A problem response: its status, its content type, and the problem JSON.
async fn problem_of(response: reqwest::Response) -> (u16, String, Value) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let problem = response.json().await.unwrap_or(Value::Null);
    (status, content_type, problem)
}

fn fields_of(problem: &Value) -> Vec<&str> {
    problem["errors"]
        .as_array()
        .map(|errors| errors.iter().filter_map(|e| e["field"].as_str()).collect())
        .unwrap_or_default()
}

/// The upgrade request of `GET /ws?{query}` on the stack's orchestrator, sent from `origin`.
fn ws_upgrade(
    stack: &Stack,
    query: &str,
    origin: &str,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let url = format!(
        "{}/ws?{query}",
        stack.orchestrator().base_url().replace("http://", "ws://")
    );
    let mut request = url.into_client_request().expect("request");
    request
        .headers_mut()
        .insert("origin", origin.parse().expect("header"));
    request
}

/// The status and problem JSON of a refused WebSocket upgrade.
async fn ws_refusal(stack: &Stack, query: &str, origin: &str) -> (u16, Value) {
    match tokio_tungstenite::connect_async(ws_upgrade(stack, query, origin)).await {
        Ok(_) => panic!("the upgrade with {query:?} from {origin} was accepted"),
        Err(WsError::Http(response)) => {
            let problem = response
                .body()
                .as_deref()
                .and_then(|body| serde_json::from_slice(body).ok())
                .unwrap_or(Value::Null);
            (response.status().as_u16(), problem)
        }
        Err(error) => panic!("the upgrade failed without an HTTP answer: {error}"),
    }
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(HOOK_SECRET.as_bytes()).expect("key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn the_binary_refuses_conflicts_bad_payloads_bad_signatures_and_foreign_websockets() {
    let stack = Stack::start(
        1,
        &[],
        &[
            ("WEBHOOK_SECRETS", format!("github:{HOOK_SECRET}")),
            ("WEBHOOK_ROUTES", "github/push=echo".into()),
        ],
    )
    .await;
    let pool = &stack.db.pool;
    let count_tasks = || async move {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM tasks")
            .fetch_one(pool)
            .await
            .expect("count")
    };
    let patch = |id: Uuid, body: Value| {
        stack
            .http
            .patch(stack.orchestrator().url(&format!("/task/{id}")))
            .basic_auth(USER, Some(PASS))
            .json(&body)
            .send()
    };

    // A payload that breaks the schema echo-agent registered: 422 naming each field.
    let response = stack
        .http
        .post(stack.orchestrator().url("/task"))
        .basic_auth(USER, Some(PASS))
        .json(&json!({"kind": "echo", "payload": {"message": 42, "delayMs": "soon"}}))
        .send()
        .await
        .expect("request");
    let (status, content_type, problem) = problem_of(response).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(problem["type"], "urn:autonoma:problem:validation-failed");
    let mut fields = fields_of(&problem);
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["/payload/delayMs", "/payload/message"],
        "{problem}"
    );
    assert_eq!(count_tasks().await, 0, "an invalid task creates nothing");

    // The same idempotency key returns the first task, whatever the second body says. Due far
    // in the future, so the dispatcher leaves it (and its version) alone.
    let key = format!("e2e-{}", Uuid::new_v4().simple());
    let first = stack
        .create(
            json!({"kind": "echo", "payload": {"message": "first"}, "idempotencyKey": key,
                       "runAt": "2999-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!((first.status, first.version), (TaskStatus::Queued, 1));
    let again = stack
        .http
        .post(stack.orchestrator().url("/task"))
        .basic_auth(USER, Some(PASS))
        .json(&json!({"kind": "echo", "payload": {"message": "second"}, "idempotencyKey": key}))
        .send()
        .await
        .expect("request");
    assert_eq!(again.status(), 200, "the key is reused, nothing is created");
    assert_eq!(
        again.headers()["location"],
        format!("/task/{}", first.id).as_str()
    );
    let again: TaskOut = again.json().await.expect("task");
    assert_eq!(again.id, first.id);
    assert_eq!(again.payload, json!({"message": "first"}));
    assert_eq!(count_tasks().await, 1);

    // A change based on a version that is no longer current: 409 with the current version.
    let patched = patch(first.id, json!({"ifVersion": 1, "priority": 5}))
        .await
        .expect("request");
    assert_eq!(patched.status(), 200);
    assert_eq!(patched.json::<TaskOut>().await.expect("task").version, 2);
    let (status, content_type, problem) = problem_of(
        patch(first.id, json!({"ifVersion": 1, "priority": 7}))
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(problem["type"], "urn:autonoma:problem:version-conflict");
    assert_eq!(problem["currentVersion"], 2, "{problem}");

    // A transition the table does not allow, at the current version: 409 naming it.
    let (status, content_type, problem) = problem_of(
        patch(first.id, json!({"ifVersion": 2, "status": "succeeded"}))
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(problem["type"], "urn:autonoma:problem:illegal-transition");
    assert_eq!(problem["transition"], "queued -> succeeded", "{problem}");
    let task: TaskOut = stack.get(&format!("/task/{}", first.id)).await;
    assert_eq!(
        (task.status, task.version, task.priority),
        (TaskStatus::Queued, 2, 5),
        "the refused changes left the task alone"
    );
    assert_eq!(stack.event_types(first.id).await, ["created", "patched"]);

    // A webhook with a missing or forged signature: 401, and no task.
    let body = serde_json::to_vec(&json!({"ref": "refs/heads/main"})).expect("json");
    let hook = |signature: Option<String>| {
        let mut request = stack
            .http
            .post(stack.orchestrator().url("/hooks/github"))
            .header("content-type", "application/json")
            .header("x-github-delivery", "e2e-delivery-1")
            .header("x-github-event", "push")
            .body(body.clone());
        if let Some(signature) = signature {
            request = request.header("x-hub-signature-256", signature);
        }
        request.send()
    };
    for (signature, reason) in [
        (None, "missing"),
        (Some(sign(b"another body")), "does not match"),
    ] {
        let (status, content_type, problem) =
            problem_of(hook(signature).await.expect("request")).await;
        assert_eq!(status, 401, "{problem}");
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(problem["type"], "urn:autonoma:problem:bad-signature");
        assert_eq!(problem["errors"][0]["field"], "x-hub-signature-256");
        assert_eq!(problem["errors"][0]["message"], reason);
    }
    assert_eq!(count_tasks().await, 1, "a bad signature creates nothing");
    // The same delivery, signed: accepted, so the refusals were the signature's doing.
    let accepted = hook(Some(sign(&body))).await.expect("request");
    assert_eq!(accepted.status(), 202);
    assert_eq!(count_tasks().await, 2);

    // WebSockets: no credentials (or wrong ones) 401, a foreign Origin 403.
    let auth = encode_basic(USER, PASS);
    let (status, problem) = ws_refusal(&stack, "logs=false", ORIGIN).await;
    assert_eq!(status, 401, "{problem}");
    assert_eq!(
        problem["type"],
        "urn:autonoma:problem:authentication-required"
    );
    assert_eq!(problem["errors"][0]["field"], "authorization", "{problem}");
    assert_eq!(problem["errors"][0]["message"], "missing", "{problem}");
    let wrong = encode_basic(USER, "not-the-password");
    let (status, problem) = ws_refusal(&stack, &format!("auth={wrong}"), ORIGIN).await;
    assert_eq!(status, 401, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "authorization", "{problem}");
    assert_eq!(
        problem["errors"][0]["message"], "credentials not accepted",
        "{problem}"
    );
    let (status, problem) =
        ws_refusal(&stack, &format!("auth={auth}"), "https://evil.example").await;
    assert_eq!(status, 403, "{problem}");
    assert_eq!(problem["type"], "urn:autonoma:problem:origin-not-allowed");
    assert_eq!(problem["errors"][0]["field"], "origin", "{problem}");
    // The same upgrade with credentials from an allowed Origin is taken.
    let (mut socket, _) = tokio_tungstenite::connect_async(ws_upgrade(
        &stack,
        &format!("auth={auth}&logs=false"),
        ORIGIN,
    ))
    .await
    .expect("ws connects");
    let hello = socket.next().await.expect("hello").expect("frame");
    assert!(
        hello.to_text().expect("text").contains("\"hello\""),
        "{hello}"
    );
}
