//! The task API against a real Postgres: validation, idempotency, versions, transitions,
//! listing, events, cancel and retry.

mod support;

use autonoma_protocol::{Page, TaskOut, TaskStatus};
use reqwest::Method;
use serde_json::{Value, json};
use support::{any_payload, start};

#[tokio::test]
async fn create_validates_against_the_kinds_schema_and_is_idempotent() {
    let orch = start(&[]).await;
    // No agent serves the kind yet.
    let response = orch.create(json!({"kind": "echo", "payload": {}})).await;
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await.expect("problem");
    assert_eq!(problem["errors"][0]["field"], "/kind");

    orch.register(
        "echo-agent",
        "http://127.0.0.1:9",
        json!([{"kind": "echo", "payloadSchema": {
            "type": "object",
            "required": ["message"],
            "properties": {"message": {"type": "string"}, "count": {"type": "integer", "minimum": 1}}
        }}]),
    )
    .await;

    let response = orch
        .create(json!({"kind": "echo", "payload": {"count": 0}}))
        .await;
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await.expect("problem");
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["field"].as_str().unwrap_or(""))
        .collect();
    assert!(fields.contains(&"/payload/count"), "{problem}");
    assert!(
        fields.contains(&"/payload"),
        "missing message is reported at the payload: {problem}"
    );

    let response = orch
        .create(json!({"kind": "echo", "payload": {"message": "hi"}, "maxAttempts": 0, "priority": 500}))
        .await;
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await.expect("problem");
    assert_eq!(
        problem["errors"].as_array().map(Vec::len),
        Some(2),
        "{problem}"
    );

    // Due far in the future, so no dispatch adds events while the test looks.
    let body = json!({"kind": "echo", "payload": {"message": "hi"}, "idempotencyKey": "order-42",
                      "correlationId": "c-1", "runAt": "2999-01-01T00:00:00Z"});
    let first = orch.create(body.clone()).await;
    assert_eq!(first.status(), 201);
    let location = first.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let first: TaskOut = first.json().await.expect("task");
    assert_eq!(location, format!("/task/{}", first.id));
    assert_eq!(first.status, TaskStatus::Queued);
    assert_eq!(first.version, 1);
    assert_eq!(first.trace_id.len(), 32);

    let again = orch.create(body).await;
    assert_eq!(again.status(), 200);
    let again: TaskOut = again.json().await.expect("task");
    assert_eq!(again.id, first.id, "the same key returns the first task");
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM tasks WHERE idempotency_key = 'order-42'")
            .fetch_one(&orch.db.pool)
            .await
            .expect("count");
    assert_eq!(count, 1);

    let events = orch.events(first.id).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "created");
    assert_eq!(events[0]["actor"], "operator:operator");
}

#[tokio::test]
async fn an_incoming_traceparent_becomes_the_tasks_trace() {
    let orch = start(&[]).await;
    orch.register("echo-agent", "http://127.0.0.1:9", any_payload())
        .await;
    let task: TaskOut = orch
        .operator(Method::POST, "/task")
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .json(&json!({"kind": "echo", "payload": {}}))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("task");
    assert_eq!(task.trace_id, "0af7651916cd43dd8448eb211c80319c");
}

#[tokio::test]
async fn patch_needs_the_current_version_and_follows_the_transition_table() {
    let orch = start(&[]).await;
    orch.register("echo-agent", "http://127.0.0.1:9", any_payload())
        .await;
    // Far in the future, so the dispatcher leaves it alone.
    let task: TaskOut = orch
        .create(json!({"kind": "echo", "payload": {}, "runAt": "2999-01-01T00:00:00Z"}))
        .await
        .json()
        .await
        .expect("task");
    let path = format!("/task/{}", task.id);

    let missing = orch
        .operator(Method::PATCH, &path)
        .json(&json!({"priority": 5}))
        .send()
        .await
        .expect("request");
    assert_eq!(missing.status(), 428);

    let stale = orch
        .operator(Method::PATCH, &path)
        .json(&json!({"ifVersion": 7, "priority": 5}))
        .send()
        .await
        .expect("request");
    assert_eq!(stale.status(), 409);
    let problem: Value = stale.json().await.expect("problem");
    assert_eq!(problem["type"], "urn:autonoma:problem:version-conflict");
    assert_eq!(problem["currentVersion"], 1);

    let patched = orch
        .operator(Method::PATCH, &path)
        .header("if-match", "\"1\"")
        .json(&json!({"priority": 5, "note": "urgent"}))
        .send()
        .await
        .expect("request");
    assert_eq!(patched.status(), 200);
    assert_eq!(patched.headers()["etag"], "\"2\"");
    let patched: TaskOut = patched.json().await.expect("task");
    assert_eq!((patched.priority, patched.version), (5, 2));

    let illegal = orch
        .operator(Method::PATCH, &path)
        .json(&json!({"ifVersion": 2, "status": "succeeded"}))
        .send()
        .await
        .expect("request");
    assert_eq!(illegal.status(), 409);
    let problem: Value = illegal.json().await.expect("problem");
    assert_eq!(problem["type"], "urn:autonoma:problem:illegal-transition");
    assert_eq!(problem["transition"], "queued -> succeeded");

    let cancelled = orch
        .operator(Method::POST, &format!("{path}/cancel"))
        .send()
        .await
        .expect("request");
    assert_eq!(cancelled.status(), 200);
    let cancelled: TaskOut = cancelled.json().await.expect("task");
    assert_eq!(cancelled.status, TaskStatus::Cancelled);
    assert!(cancelled.finished_at.is_some());

    let retried: TaskOut = orch
        .operator(Method::POST, &format!("{path}/retry"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("task");
    assert_eq!(retried.status, TaskStatus::Queued);
    assert_eq!(retried.attempts, 0);

    let events = orch.events(task.id).await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or(""))
        .collect();
    // The retried task is due now, so a dispatch may already follow.
    assert_eq!(kinds[..4], ["created", "patched", "cancelled", "retried"]);
    assert_eq!(events[1]["changes"]["note"], "urgent");
    let versions: Vec<i64> = events
        .iter()
        .map(|e| e["version"].as_i64().unwrap_or(0))
        .collect();
    assert_eq!(versions[..4], [1, 2, 3, 4]);
}

#[tokio::test]
async fn lists_filter_and_page_without_gaps_or_repeats() {
    let orch = start(&[]).await;
    orch.register("echo-agent", "http://127.0.0.1:9", any_payload())
        .await;
    let mut ids = Vec::new();
    for i in 0..23 {
        let task: TaskOut = orch
            .create(json!({"kind": "echo", "payload": {"i": i}, "correlationId": if i % 2 == 0 { "even" } else { "odd" },
                           "runAt": "2999-01-01T00:00:00Z"}))
            .await
            .json()
            .await
            .expect("task");
        ids.push(task.id);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/tasks?limit=5&status=queued,running&kind=echo".to_owned();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page: Page<TaskOut> = orch
            .operator(Method::GET, &path)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("page");
        seen.extend(page.items.iter().map(|t| t.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "newest first, each exactly once");

    let even: Page<TaskOut> = orch
        .operator(Method::GET, "/tasks?correlationId=even&limit=500")
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("page");
    assert_eq!(even.items.len(), 12);
    let none: Page<TaskOut> = orch
        .operator(Method::GET, "/tasks?status=succeeded&status=failed")
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("page");
    assert!(none.items.is_empty());

    for (query, field) in [
        ("limit=501", "limit"),
        ("status=bogus", "status"),
        ("cursor=nope", "cursor"),
        ("since=yesterday", "since"),
    ] {
        let response = orch
            .operator(Method::GET, &format!("/tasks?{query}"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 400, "{query}");
        let problem: Value = response.json().await.expect("problem");
        assert_eq!(problem["errors"][0]["field"], field, "{query}");
    }
    let anonymous = reqwest::get(orch.url("/tasks")).await.expect("request");
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn u0000_is_refused_as_bad_input_not_a_server_error() {
    let orch = start(&[]).await;
    let response = orch
        .operator(Method::GET, "/tasks?correlationId=a%00b")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 400);
    let problem: Value = response.json().await.expect("problem");
    assert_eq!(problem["errors"][0]["field"], "correlationId");

    orch.register(
        "echo-agent",
        "http://127.0.0.1:9",
        json!([{"kind": "echo", "payloadSchema": {"type": "object"}}]),
    )
    .await;
    let response = orch
        .internal(Method::POST, "/agents/echo-agent/heartbeat")
        .json(&json!({"details": {"ok": ["fine", {"k\u{0}": true}]}}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await.expect("problem");
    assert_eq!(problem["errors"][0]["field"], "/details/ok/1/k\u{0}");

    // Values no handler looks at are refused by the database, which is still the client's
    // mistake.
    let response = orch
        .create(json!({"kind": "echo", "payload": {"message": "a\u{0}"}}))
        .await;
    assert_eq!(response.status(), 400);
    let problem: Value = response.json().await.expect("problem");
    assert_eq!(problem["type"], "urn:autonoma:problem:nul-character");
}
