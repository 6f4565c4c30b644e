//! A session's MCP endpoint driven by the official Python MCP client (`tests/mcp_client.py`,
//! run with `TEST_MCP_PYTHON`) over streamable HTTP with the internal key as bearer token:
//! the tools are listed with schemas, a file is written, run and read back, bad calls are tool
//! errors carrying the problem, checkpoints are taken, and every call is recorded `via: mcp`.
//! Then the endpoint's own answers: no credentials, an unknown session, a deleted one.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{KEY, Service};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

/// Bounds the whole scripted run of the client; its own calls are bounded at 60 s each.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);
const TOOLS: [&str; 12] = [
    "checkpoint",
    "dev_start",
    "dev_stop",
    "exec",
    "fs_list",
    "fs_read",
    "fs_write",
    "http_fetch",
    "install",
    "list_checkpoints",
    "restore_checkpoint",
    "session_state",
];

/// Runs the client's scenario against the session and returns what it saw.
async fn run_client(service: &Service, session: &str) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp_client.py");
    let mut child = tokio::process::Command::new(autonoma_testkit::mcp_python())
        .arg(script)
        .arg(service.url(&format!("/api/sessions/{session}/mcp")))
        .arg(KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the MCP client");
    let stdout = read_to_end(child.stdout.take().expect("stdout"));
    let stderr = read_to_end(child.stderr.take().expect("stderr"));
    let status = match tokio::time::timeout(CLIENT_TIMEOUT, child.wait()).await {
        Ok(status) => status.expect("wait for the MCP client"),
        Err(_) => {
            child.kill().await.expect("kill the MCP client");
            let stderr = stderr.await.expect("the client's stderr");
            panic!(
                "the MCP client did not finish within {CLIENT_TIMEOUT:?}; its stderr:\n{stderr}"
            );
        }
    };
    let stdout = stdout.await.expect("the client's stdout");
    let stderr = stderr.await.expect("the client's stderr");
    assert!(
        status.success(),
        "the MCP client failed ({status}):\n{stderr}\nstdout: {stdout}"
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("the MCP client printed no JSON ({e}): {stdout}\nstderr:\n{stderr}")
    })
}

/// Reads a pipe of the client to its end, as text.
fn read_to_end(
    mut pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static,
) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let mut bytes = Vec::new();
        // A read error leaves what was read so far, which is all a failure message can show.
        let _ = pipe.read_to_end(&mut bytes).await;
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// The structured content of a successful call.
fn structured<'a>(seen: &'a Value, call: &str) -> &'a Value {
    let result = &seen[call];
    assert!(result.is_object(), "no result for {call}: {seen}");
    assert_ne!(result["isError"], json!(true), "{call} failed: {result}");
    &result["structuredContent"]
}

/// The problem of a failed call (its structured content).
fn problem<'a>(seen: &'a Value, call: &str) -> &'a Value {
    let result = &seen[call];
    assert_eq!(
        result["isError"],
        json!(true),
        "{call} should be a tool error: {result}"
    );
    &result["structuredContent"]
}

#[tokio::test]
async fn the_python_client_writes_runs_reads_and_checkpoints_a_session() {
    let (_env, service) = common::start().await;
    let id = service.create("empty").await;

    let seen = run_client(&service, &id).await;

    assert_eq!(seen["tools"], json!(TOOLS), "{}", seen["tools"]);
    assert_eq!(seen["serverInfo"]["name"], sandbox::SERVICE, "{seen}");
    assert!(
        seen["instructions"]
            .as_str()
            .is_some_and(|text| text.contains(&id)),
        "{}",
        seen["instructions"]
    );
    let schema = &seen["schemas"]["exec"];
    assert_eq!(schema["type"], "object", "{schema}");
    assert_eq!(schema["required"], json!(["cmd"]), "{schema}");
    assert_eq!(
        schema["properties"]["timeoutSec"]["minimum"],
        json!(1),
        "{schema}"
    );
    assert_eq!(
        schema["properties"]["timeoutSec"]["maximum"],
        json!(120),
        "{schema}"
    );
    assert!(schema["properties"]["cwd"].is_object(), "{schema}");
    assert_eq!(schema["additionalProperties"], json!(false), "{schema}");

    let written = structured(&seen, "write");
    assert_eq!(written["path"], "app/hello.sh", "{written}");
    assert_eq!(written["created"], true, "{written}");

    let exec = structured(&seen, "exec");
    assert_eq!(
        exec["stdout"], "hello from /workspace\nhello.sh\n",
        "{exec}"
    );
    assert_eq!(exec["exitCode"], 0, "{exec}");
    assert_eq!(exec["timedOut"], false, "{exec}");

    let read = structured(&seen, "read");
    assert_eq!(read["path"], "app/hello.sh", "{read}");
    assert_eq!(read["content"], r#"echo "hello from $(pwd)""#, "{read}");
    assert_eq!(read["truncated"], false, "{read}");

    let bad = problem(&seen, "badRead");
    assert_eq!(bad["status"], 422, "{bad}");
    assert!(
        bad["type"]
            .as_str()
            .is_some_and(|kind| kind.ends_with("path-parent")),
        "{bad}"
    );

    let timeout = problem(&seen, "badTimeout");
    assert_eq!(timeout["status"], 422, "{timeout}");
    assert_eq!(timeout["errors"][0]["field"], "/timeoutSec", "{timeout}");

    let checkpoint = &structured(&seen, "checkpoint")["checkpoint"];
    assert_eq!(checkpoint["message"], "from mcp", "{checkpoint}");
    let checkpoints = &structured(&seen, "checkpoints")["checkpoints"];
    assert_eq!(checkpoints[0]["id"], checkpoint["id"], "{checkpoints}");

    // Every call is recorded as made over MCP, failures included.
    let (status, calls) = service.get(&format!("/api/sessions/{id}/tool-calls")).await;
    assert_eq!(status, StatusCode::OK, "{calls}");
    let recorded: Vec<(&str, &str, bool)> = calls
        .as_array()
        .expect("a list of calls")
        .iter()
        .map(|call| {
            (
                call["tool"].as_str().expect("tool"),
                call["via"].as_str().expect("via"),
                call["ok"].as_bool().expect("ok"),
            )
        })
        .collect();
    assert_eq!(
        recorded,
        [
            ("fs_write", "mcp", true),
            ("exec", "mcp", true),
            ("fs_read", "mcp", true),
            ("fs_read", "mcp", false),
            ("exec", "mcp", false),
            ("checkpoint", "mcp", true),
            ("list_checkpoints", "mcp", true),
        ],
        "{calls:#}"
    );
    assert_eq!(calls[3]["arguments"]["path"], "../etc/passwd", "{calls:#}");
    assert_eq!(
        calls[1]["arguments"]["cmd"], "sh app/hello.sh && ls app",
        "{calls:#}"
    );
}

/// A JSON-RPC request to an MCP endpoint, with the internal key unless `key` is None.
async fn rpc(
    service: &Service,
    path: &str,
    key: Option<&str>,
    mcp_session: Option<&str>,
    body: Value,
) -> (StatusCode, HeaderMap, String) {
    let mut request = service
        .http
        .post(service.url(path))
        .header(ACCEPT, "application/json, text/event-stream")
        .json(&body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(mcp_session) = mcp_session {
        request = request.header("mcp-session-id", mcp_session);
    }
    let response = request.send().await.expect("POST to the MCP endpoint");
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    (status, headers, text)
}

fn initialize() -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "sandbox-test", "version": "0"},
        },
    })
}

/// A problem response: its content type and parsed body.
fn problem_body(status: StatusCode, headers: &HeaderMap, text: &str) -> Value {
    assert_eq!(
        headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()),
        Some("application/problem+json"),
        "{status} {text}"
    );
    let body: Value = serde_json::from_str(text).expect("problem JSON");
    assert_eq!(body["status"], status.as_u16(), "{body}");
    body
}

#[tokio::test]
async fn the_endpoint_wants_the_key_a_known_session_and_a_live_one() {
    let (_env, service) = common::start().await;
    let id = service.create("empty").await;
    let path = format!("/api/sessions/{id}/mcp");

    let (status, headers, text) = rpc(&service, &path, None, None, initialize()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");
    problem_body(status, &headers, &text);
    let (status, _, text) = rpc(&service, &path, Some("wrong-key"), None, initialize()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");

    let unknown = uuid::Uuid::new_v4();
    let (status, headers, text) = rpc(
        &service,
        &format!("/api/sessions/{unknown}/mcp"),
        Some(KEY),
        None,
        initialize(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{text}");
    let body = problem_body(status, &headers, &text);
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|kind| kind.ends_with("session-not-found")),
        "{body}"
    );

    // The live session answers an initialize with an MCP session...
    let (status, headers, text) = rpc(&service, &path, Some(KEY), None, initialize()).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("\"serverInfo\""), "{text}");
    let mcp_session = headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("an mcp-session-id")
        .to_owned();

    // ...which ends with the sandbox session: a tool call and a new initialize are 410.
    assert_eq!(
        service.delete(&format!("/api/sessions/{id}")).await,
        StatusCode::NO_CONTENT
    );
    let call = json!({
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "session_state", "arguments": {}},
    });
    let (status, headers, text) = rpc(&service, &path, Some(KEY), Some(&mcp_session), call).await;
    assert_eq!(status, StatusCode::GONE, "{text}");
    let body = problem_body(status, &headers, &text);
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|kind| kind.ends_with("session-ended")),
        "{body}"
    );
    let (status, headers, text) = rpc(&service, &path, Some(KEY), None, initialize()).await;
    assert_eq!(status, StatusCode::GONE, "{text}");
    problem_body(status, &headers, &text);
}
