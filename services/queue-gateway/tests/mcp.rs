//! The MCP endpoint driven by the official Python MCP client (`tests/mcp_client.py`, run with
//! `TEST_MCP_PYTHON`) over streamable HTTP with the internal key as bearer token, while the
//! test plays the browser over HTTP: tools are listed with schemas, directives reach a polling
//! browser, user input comes back to a waiting tool with progress on the way, blobs round-trip,
//! bad calls are tool errors that write nothing, and `/mcp` wants credentials.

mod common;

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use common::{Backends, Gateway, KEY, PASS, USER};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// Bounds every exchange with the client; its own calls are bounded at 60 s.
const LINE_TIMEOUT: Duration = Duration::from_secs(90);

async fn start() -> Gateway {
    start_with(&[]).await
}

/// The gateway on the embedded backends with `extra` variables over the test defaults.
async fn start_with(extra: &[(&str, &str)]) -> Gateway {
    // Long enough that only the MCP streams ending lets the server stop in time.
    let mut env = vec![("SHUTDOWN_GRACE", "120s".to_owned())];
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    common::start_with(Backends::Embedded, &env).await
}

/// The Python MCP client, connected and initialised.
struct Client {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    next_id: u64,
    /// The `ready` line: protocol version, server info, instructions.
    ready: Value,
}

/// One call's result and the progress notifications that came before it.
struct Called {
    result: Value,
    progress: Vec<Value>,
}

impl Called {
    fn structured(&self) -> &Value {
        assert_ne!(
            self.result["isError"],
            json!(true),
            "tool failed: {}",
            self.result
        );
        &self.result["structuredContent"]
    }

    /// The problem of a failed call, parsed from its text content.
    fn problem(&self) -> Value {
        assert_eq!(
            self.result["isError"],
            json!(true),
            "expected a tool error: {}",
            self.result
        );
        let text = self.result["content"][0]["text"]
            .as_str()
            .expect("error text");
        serde_json::from_str(text).expect("the error text is problem JSON")
    }
}

impl Client {
    async fn connect(gateway: &Gateway) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp_client.py");
        let mut child = tokio::process::Command::new(autonoma_testkit::mcp_python())
            .arg(script)
            .arg(format!("{}/mcp", gateway.base))
            .arg(KEY)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the MCP client");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let mut client = Self {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            next_id: 0,
            ready: Value::Null,
        };
        let ready = client.line().await;
        assert_eq!(ready["event"], "ready", "{ready}");
        client.ready = ready;
        client
    }

    async fn line(&mut self) -> Value {
        let line = tokio::time::timeout(LINE_TIMEOUT, self.lines.next_line())
            .await
            .expect("the MCP client answers in time")
            .expect("read the MCP client");
        let Some(line) = line else {
            let status = self.child.wait().await;
            panic!("the MCP client exited ({status:?}); its stderr is above");
        };
        let value: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not JSON from the MCP client ({e}): {line}"));
        assert_ne!(
            value["event"], "error",
            "the MCP client failed: {}",
            value["error"]
        );
        value
    }

    async fn command(&mut self, mut command: Value) -> u64 {
        self.next_id += 1;
        command["id"] = json!(self.next_id);
        let mut line = command.to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("write to the MCP client");
        self.next_id
    }

    /// Starts a tool call; its progress and result are read with [`Self::next_progress`] and
    /// [`Self::finish`].
    async fn start_call(&mut self, tool: &str, args: Value, progress: bool) -> u64 {
        self.command(json!({"op": "call", "tool": tool, "args": args, "progress": progress}))
            .await
    }

    /// The next progress notification of call `id`; panics if it finished first.
    async fn next_progress(&mut self, id: u64) -> Value {
        let line = self.line().await;
        assert_eq!(line["id"], id, "{line}");
        assert_eq!(line["event"], "progress", "expected progress first: {line}");
        line
    }

    /// Call `id`'s result, with the progress notifications still to come before it.
    async fn finish(&mut self, id: u64) -> Called {
        let mut progress = Vec::new();
        loop {
            let line = self.line().await;
            assert_eq!(line["id"], id, "{line}");
            match line["event"].as_str() {
                Some("progress") => progress.push(line),
                Some("result") => {
                    return Called {
                        result: line["result"].clone(),
                        progress,
                    };
                }
                _ => panic!("unexpected line: {line}"),
            }
        }
    }

    async fn call(&mut self, tool: &str, args: Value) -> Called {
        let id = self.start_call(tool, args, false).await;
        self.finish(id).await
    }

    async fn list_tools(&mut self) -> Vec<Value> {
        let id = self.command(json!({"op": "list_tools"})).await;
        let line = self.line().await;
        assert_eq!(line["id"], id);
        line["result"].as_array().expect("tools").clone()
    }
}

#[tokio::test]
async fn every_tool_is_listed_with_a_documented_input_schema() {
    let gateway = start().await;
    let mut client = Client::connect(&gateway).await;

    let instructions = client.ready["instructions"].as_str().expect("instructions");
    for needle in [
        "layout-manager",
        "dataset-router",
        "plotly-panel-{id}",
        "text-component-{id}",
        "text.set",
        "plotly.figure",
    ] {
        assert!(instructions.contains(needle), "instructions lack {needle}");
    }

    let tools = client.list_tools().await;
    let by_name: HashMap<&str, &Value> = tools
        .iter()
        .map(|tool| (tool["name"].as_str().expect("name"), tool))
        .collect();
    let expected = [
        ("wait_for_user_input", &["page", "timeoutSecs"][..]),
        (
            "send_response_to_browser",
            &["page", "to", "directive", "body", "traceparent"],
        ),
        (
            "put_blob",
            &["kind", "name", "contentType", "tags", "text", "base64"],
        ),
        ("get_blob", &["id", "maxBytes"]),
        (
            "list_blobs",
            &["kind", "namePrefix", "tags", "limit", "cursor"],
        ),
        ("create_page", &["page"]),
        ("remove_component", &["page", "address"]),
        ("share_page", &["page", "ttlSecs"]),
    ];
    for (name, arguments) in expected {
        let tool = by_name
            .get(name)
            .unwrap_or_else(|| panic!("no tool {name}"));
        assert!(
            tool["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{name} has no description"
        );
        let schema = &tool["inputSchema"];
        assert_eq!(schema["type"], "object", "{name}: {schema}");
        let properties = schema["properties"].as_object().expect("properties");
        let mut names: Vec<&str> = properties.keys().map(String::as_str).collect();
        names.sort_unstable();
        let mut want = arguments.to_vec();
        want.sort_unstable();
        assert_eq!(names, want, "{name}'s arguments");
        if name == "wait_for_user_input" {
            assert_eq!(properties["timeoutSecs"]["maximum"], 600, "{schema}");
        }
        for (argument, property) in properties {
            assert!(
                property["description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()),
                "{name}.{argument} is not documented: {property}"
            );
        }
    }
}

#[tokio::test]
async fn a_directive_reaches_a_polling_browser_and_input_comes_back_to_a_waiting_tool() {
    let gateway = start().await;
    let mut client = Client::connect(&gateway).await;

    let created = client
        .call("create_page", json!({"page": "mcp-demo"}))
        .await;
    assert_eq!(
        created.structured(),
        &json!({"page": "mcp-demo", "created": true})
    );

    // A browser long-polls while the AI sends.
    let browser = tokio::spawn({
        let http = gateway.http.clone();
        let url = format!("{}/pages/mcp-demo/poll?after=0&wait=10", gateway.base);
        async move {
            let response = http.get(url).basic_auth(USER, Some(PASS)).send().await;
            response.expect("poll").json::<Value>().await.expect("json")
        }
    });
    let body = json!({"text": "What should we chart?", "format": "markdown"});
    let sent = client
        .call(
            "send_response_to_browser",
            json!({
                "page": "mcp-demo",
                "to": "text-component-question",
                "directive": "text.set",
                "body": body,
            }),
        )
        .await;
    let envelope = sent.structured().clone();
    assert_eq!(envelope["seq"], 1, "{envelope}");
    assert_eq!(envelope["body"], json!({"inline": body}));
    assert!(envelope["id"].is_string(), "{envelope}");

    let polled = browser.await.expect("browser");
    let messages = polled["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 1, "{polled}");
    assert_eq!(messages[0]["id"], envelope["id"]);
    assert_eq!(messages[0]["to"], "text-component-question");
    assert_eq!(messages[0]["directive"], "text.set");
    assert_eq!(messages[0]["body"], json!({"inline": body}));

    // The AI waits; the person answers a couple of seconds into the wait.
    let wait = client
        .start_call(
            "wait_for_user_input",
            json!({"page": "mcp-demo", "timeoutSecs": 60}),
            true,
        )
        .await;
    let first = client.next_progress(wait).await;
    assert_eq!(first["total"], 60.0, "{first}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let answer = json!({"chart": "sales by region"});
    gateway
        .post_event(
            "mcp-demo",
            json!({"component": "text-component-question", "kind": "submit", "value": answer}),
        )
        .await;
    let waited = client.finish(wait).await;
    let input = waited.structured();
    assert_eq!(input["timedOut"], false, "{input}");
    let events = input["events"].as_array().expect("events");
    assert_eq!(events.len(), 1, "{input}");
    assert_eq!(events[0]["component"], "text-component-question");
    assert_eq!(events[0]["kind"], "submit");
    assert_eq!(events[0]["value"], answer);
    // The first progress notification came before the input was even sent (read above); any
    // later ones arrived before the result.
    assert!(waited.progress.iter().all(|p| p["total"] == 60.0));

    // Nothing more: the wait runs out and says so.
    let quiet = client
        .call(
            "wait_for_user_input",
            json!({"page": "mcp-demo", "timeoutSecs": 1}),
        )
        .await;
    assert_eq!(quiet.structured()["events"], json!([]), "{}", quiet.result);
    assert_eq!(quiet.structured()["timedOut"], true);
    let said = quiet.result["content"]
        .as_array()
        .expect("content")
        .iter()
        .filter_map(|c| c["text"].as_str())
        .any(|text| text.starts_with("No input arrived on page mcp-demo within 1 s"));
    assert!(said, "{}", quiet.result);

    // Removing the component appends its removal for the browser.
    let removed = client
        .call(
            "remove_component",
            json!({"page": "mcp-demo", "address": "text-component-question"}),
        )
        .await;
    assert_eq!(removed.structured()["seq"], 2);
    assert_eq!(removed.structured()["directive"], "component.remove");

    let shared = client
        .call("share_page", json!({"page": "mcp-demo", "ttlSecs": 600}))
        .await;
    assert_eq!(shared.structured()["page"], "mcp-demo");
    assert!(shared.structured()["token"].is_string());
}

#[tokio::test]
async fn blobs_put_over_mcp_come_back_identical_and_are_found_by_tag() {
    let gateway = start().await;
    let mut client = Client::connect(&gateway).await;

    let csv = "region,sales\nnorth,12\nsouth,7\nünïcode,1\n";
    let put = client
        .call(
            "put_blob",
            json!({
                "kind": "dataset",
                "name": "mcp/sales",
                "contentType": "text/csv",
                "tags": ["mcp-test", "q1"],
                "text": csv,
            }),
        )
        .await;
    let entry = put.structured().clone();
    assert_eq!(entry["size"], csv.len());
    assert_eq!(entry["contentType"], "text/csv");
    let id = entry["id"].as_str().expect("id").to_owned();

    let got = client.call("get_blob", json!({"id": id})).await;
    assert_eq!(got.structured()["blob"]["id"], id.as_str());
    assert_eq!(
        got.structured()["content"],
        json!({"encoding": "text", "text": csv})
    );

    // Binary content travels as base64 both ways.
    let put = client
        .call(
            "put_blob",
            json!({
                "kind": "other",
                "contentType": "application/octet-stream",
                "base64": "AP8BAgP+",
            }),
        )
        .await;
    let binary = put.structured()["id"].as_str().expect("id").to_owned();
    let got = client.call("get_blob", json!({"id": binary})).await;
    assert_eq!(
        got.structured()["content"],
        json!({"encoding": "base64", "base64": "AP8BAgP+"})
    );

    let listed = client
        .call("list_blobs", json!({"tags": ["mcp-test"]}))
        .await;
    let ids: Vec<&str> = listed.structured()["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|item| item["id"].as_str())
        .collect();
    assert_eq!(ids, [id.as_str()]);

    // Larger than asked for: an error that says where to read it instead.
    let capped = client
        .call("get_blob", json!({"id": id, "maxBytes": 4}))
        .await;
    let problem = capped.problem();
    assert_eq!(problem["status"], 413, "{problem}");
    let detail = problem["detail"].as_str().expect("detail");
    assert!(detail.contains(&format!("/blobs/{id}/content")), "{detail}");
}

#[tokio::test]
async fn bad_calls_are_tool_errors_naming_the_field_and_write_nothing() {
    let gateway = start().await;
    let mut client = Client::connect(&gateway).await;
    client.call("create_page", json!({"page": "strict"})).await;

    let cases = [
        (
            "send_response_to_browser",
            json!({"page": "strict", "to": "sidebar", "directive": "text.set", "body": {"text": "x"}}),
            422,
            "/to",
        ),
        (
            "send_response_to_browser",
            json!({"page": "strict", "to": "text-component-a", "directive": "text.set", "body": {"text": 5}}),
            422,
            "/body/text",
        ),
        (
            "send_response_to_browser",
            json!({"page": "strict", "to": "text-component-a", "directive": "plotly.figure", "body": {}}),
            422,
            "/directive",
        ),
        (
            "remove_component",
            json!({"page": "strict", "address": "sidebar"}),
            422,
            "address",
        ),
        (
            "put_blob",
            json!({"kind": "dataset", "contentType": "text/csv", "text": "a", "base64": "YQ=="}),
            422,
            "/base64",
        ),
        (
            "put_blob",
            json!({"kind": "spreadsheet", "contentType": "text/csv", "text": "a"}),
            422,
            "/kind",
        ),
        (
            "wait_for_user_input",
            json!({"page": "strict", "timeoutSecs": 0}),
            422,
            "/timeoutSecs",
        ),
        ("create_page", json!({}), 422, "/page"),
        (
            "create_page",
            json!({"page": "strict", "name": "x"}),
            422,
            "/name",
        ),
    ];
    for (tool, args, status, field) in cases {
        let called = client.call(tool, args.clone()).await;
        let problem = called.problem();
        assert_eq!(problem["status"], status, "{tool} {args}: {problem}");
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("{tool} {args}: no errors in {problem}"))
            .iter()
            .filter_map(|e| e["field"].as_str())
            .collect();
        assert!(
            fields.iter().any(|f| f.starts_with(field)),
            "{tool} {args}: {field} not among {fields:?}"
        );
    }

    // An unknown page is a 404 that says how to make one.
    for (tool, args) in [
        (
            "send_response_to_browser",
            json!({"page": "nowhere", "to": "text-component-a", "directive": "text.set", "body": {"text": "x"}}),
        ),
        (
            "wait_for_user_input",
            json!({"page": "nowhere", "timeoutSecs": 1}),
        ),
    ] {
        let problem = client.call(tool, args).await.problem();
        assert_eq!(problem["status"], 404, "{tool}: {problem}");
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|d| d.contains("create it")),
            "{problem}"
        );
    }

    let log = gateway.poll("strict", 0, 0).await;
    assert_eq!(log["messages"], json!([]), "nothing was appended: {log}");
}

#[tokio::test]
async fn mcp_wants_the_internal_key() {
    let gateway = start().await;
    let initialize = json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "test", "version": "0"},
        },
    });
    for authorization in [None, Some("Bearer wrong-key")] {
        let mut request = gateway
            .http
            .post(format!("{}/mcp", gateway.base))
            .header("accept", "application/json, text/event-stream")
            .json(&initialize);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.expect("mcp");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: Value = response.json().await.expect("problem");
        assert_eq!(problem["status"], 401);
    }
}

#[tokio::test]
async fn a_wait_outlasts_the_request_timeout() {
    // Each receive is cut to about a second; the tool's answer streams past the 3 s timeout.
    let gateway = start_with(&[("REQUEST_TIMEOUT", "3s")]).await;
    let mut client = Client::connect(&gateway).await;
    client.call("create_page", json!({"page": "slow"})).await;
    let quiet = client
        .call(
            "wait_for_user_input",
            json!({"page": "slow", "timeoutSecs": 5}),
        )
        .await;
    assert_eq!(quiet.structured()["events"], json!([]), "{}", quiet.result);
    assert_eq!(quiet.structured()["timedOut"], true);
}

#[tokio::test]
async fn shutdown_ends_a_waiting_tool_and_the_server_stops() {
    let mut gateway = start().await;
    let mut client = Client::connect(&gateway).await;
    client.call("create_page", json!({"page": "closing"})).await;
    let wait = client
        .start_call(
            "wait_for_user_input",
            json!({"page": "closing", "timeoutSecs": 600}),
            true,
        )
        .await;
    client.next_progress(wait).await;

    gateway.shutdown.cancel();
    // The grace is 120 s: the server stops well before only if the open MCP streams end.
    let stopped = tokio::time::timeout(Duration::from_secs(60), &mut gateway.server)
        .await
        .expect("the server stops once its MCP streams end");
    stopped.expect("server task").expect("server run");
}
