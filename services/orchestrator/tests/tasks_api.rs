//! The task API against a real Postgres: validation, idempotency, versions, transitions,
//! listing, events, cancel and retry.

mod support;

use std::time::Duration;

use autonoma_protocol::{Page, TaskOut, TaskStatus};
use reqwest::Method;
use serde_json::{Value, json};
use support::{Orchestrator, any_payload, fake_agent, start};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

/// Never due: no dispatch changes these tasks while a test looks.
const NEVER: &str = "2999-01-01T00:00:00Z";

async fn created(orch: &Orchestrator, body: Value) -> TaskOut {
    let response = orch.create(body).await;
    assert_eq!(response.status(), 201);
    response.json().await.expect("task")
}

async fn cancelled(orch: &Orchestrator, id: Uuid) -> TaskOut {
    let response = orch
        .operator(Method::POST, &format!("/task/{id}/cancel"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    response.json().await.expect("task")
}

/// The ids a query must list, newest first.
type Expected = Vec<Uuid>;
/// A `GET /tasks` query and what it must list.
type Case<'a> = (&'a [(&'a str, &'a str)], Expected);

/// The ids `GET /tasks` lists for `query` (all on one page), newest first.
async fn listed(orch: &Orchestrator, query: &[(&str, &str)]) -> Vec<Uuid> {
    let response = orch
        .operator(Method::GET, "/tasks")
        .query(&[("limit", "500")])
        .query(query)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200, "{query:?}");
    let page: Page<TaskOut> = response.json().await.expect("page");
    assert!(page.next_cursor.is_none(), "{query:?}");
    page.items.into_iter().map(|t| t.id).collect()
}

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
        // An empty window is a mistake, not a question with an empty answer.
        (
            "since=2026-11-21T10:00:00Z&until=2026-11-21T10:00:00Z",
            "until",
        ),
        (
            "since=2026-11-21T10:00:00Z&until=2026-11-21T09:00:00Z",
            "until",
        ),
        // Stored trace ids are 32 lowercase hex digits; anything else could never match.
        ("traceId=0AF7651916CD43DD8448EB211C80319C", "traceId"),
        ("traceId=0af7651916cd43dd", "traceId"),
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

#[tokio::test]
async fn lists_filter_by_the_agent_that_took_the_task() {
    let orch = start(&[]).await;
    let agent = fake_agent().await;
    let open = json!({"type": "object"});
    orch.register(
        "alpha",
        &agent.server.base_url,
        json!([{"kind": "alpha-work", "payloadSchema": open}]),
    )
    .await;
    orch.register(
        "beta",
        &agent.server.base_url,
        json!([{"kind": "beta-work", "payloadSchema": open}]),
    )
    .await;
    let alpha_ok = created(&orch, json!({"kind": "alpha-work", "payload": {}})).await;
    let alpha_failed = created(
        &orch,
        json!({"kind": "alpha-work", "payload": {"mode": "fail"}, "maxAttempts": 1}),
    )
    .await;
    let beta_ok = created(&orch, json!({"kind": "beta-work", "payload": {}})).await;
    // Of a kind alpha serves, but never dispatched: no agent has taken it.
    let alpha_waiting = created(
        &orch,
        json!({"kind": "alpha-work", "payload": {}, "runAt": NEVER}),
    )
    .await;
    let within = Duration::from_secs(30);
    let done = orch
        .wait_for(alpha_ok.id, TaskStatus::Succeeded, within)
        .await;
    assert_eq!(done.agent.as_deref(), Some("alpha"));
    orch.wait_for(alpha_failed.id, TaskStatus::Failed, within)
        .await;
    let done = orch
        .wait_for(beta_ok.id, TaskStatus::Succeeded, within)
        .await;
    assert_eq!(done.agent.as_deref(), Some("beta"));
    assert_eq!(orch.task(alpha_waiting.id).await.agent, None);

    let cases: &[Case] = &[
        // The agent that took the task, not the one serving its kind.
        (&[("agent", "alpha")], vec![alpha_failed.id, alpha_ok.id]),
        (&[("agent", "beta")], vec![beta_ok.id]),
        (&[("agent", "alph")], vec![]),
        (&[("agent", "gamma")], vec![]),
        (
            &[("kind", "alpha-work")],
            vec![alpha_waiting.id, alpha_failed.id, alpha_ok.id],
        ),
        (
            &[("agent", "alpha"), ("status", "failed")],
            vec![alpha_failed.id],
        ),
        (
            &[("agent", "alpha"), ("status", "succeeded,queued")],
            vec![alpha_ok.id],
        ),
        (&[("status", "queued"), ("agent", "alpha")], vec![]),
        (&[("agent", "beta"), ("status", "failed")], vec![]),
        (
            &[("agent", "alpha"), ("kind", "alpha-work")],
            vec![alpha_failed.id, alpha_ok.id],
        ),
    ];
    for (query, expected) in cases {
        assert_eq!(&listed(&orch, query).await, expected, "{query:?}");
    }
}

#[tokio::test]
async fn lists_filter_by_trace_id() {
    let orch = start(&[]).await;
    orch.register("echo-agent", "http://127.0.0.1:9", any_payload())
        .await;
    let trace_a = "4bf92f3577b34da6a3ce929d0e0e4736";
    let trace_b = "0af7651916cd43dd8448eb211c80319c";
    let traced = |trace: Option<&str>| {
        let mut request = orch
            .operator(Method::POST, "/task")
            .json(&json!({"kind": "echo", "payload": {}, "runAt": NEVER}));
        if let Some(trace) = trace {
            request = request.header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"));
        }
        async move {
            let response = request.send().await.expect("request");
            assert_eq!(response.status(), 201);
            response.json::<TaskOut>().await.expect("task")
        }
    };
    let first_a = traced(Some(trace_a)).await;
    let only_b = traced(Some(trace_b)).await;
    let untraced = traced(None).await;
    let second_a = traced(Some(trace_a)).await;
    assert_eq!(first_a.trace_id, trace_a);
    assert_eq!(second_a.trace_id, trace_a);
    assert_eq!(only_b.trace_id, trace_b);
    assert!(![trace_a, trace_b].contains(&untraced.trace_id.as_str()));
    cancelled(&orch, first_a.id).await;

    let cases: &[Case] = &[
        (&[("traceId", trace_a)], vec![second_a.id, first_a.id]),
        (&[("traceId", trace_b)], vec![only_b.id]),
        // A trace the orchestrator started itself is as good a filter.
        (
            &[("traceId", untraced.trace_id.as_str())],
            vec![untraced.id],
        ),
        (&[("traceId", "ffffffffffffffffffffffffffffffff")], vec![]),
        (
            &[("traceId", trace_a), ("status", "queued")],
            vec![second_a.id],
        ),
        (
            &[("status", "cancelled"), ("traceId", trace_a)],
            vec![first_a.id],
        ),
        (&[("traceId", trace_b), ("status", "cancelled")], vec![]),
    ];
    for (query, expected) in cases {
        assert_eq!(&listed(&orch, query).await, expected, "{query:?}");
    }
}

#[tokio::test]
async fn lists_filter_by_creation_time_since_inclusive_until_exclusive() {
    let orch = start(&[]).await;
    orch.register("echo-agent", "http://127.0.0.1:9", any_payload())
        .await;
    let mut tasks = Vec::new();
    for i in 0..3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        tasks.push(
            created(
                &orch,
                json!({"kind": "echo", "payload": {"i": i}, "runAt": NEVER}),
            )
            .await,
        );
    }
    let [first, second, third] = [&tasks[0], &tasks[1], &tasks[2]];
    assert!(first.created_at < second.created_at && second.created_at < third.created_at);
    // Changed after the third was created: a filter on anything but the creation time would
    // move it.
    let first_cancelled = cancelled(&orch, first.id).await;
    assert!(first_cancelled.updated_at > third.created_at);

    let at = |t: OffsetDateTime| t.format(&Rfc3339).expect("RFC 3339");
    let micro = time::Duration::microseconds(1);
    let (t1, t2, t3) = (first.created_at, second.created_at, third.created_at);
    let plus_two = time::UtcOffset::from_hms(2, 0, 0).expect("offset");
    let cases: Vec<(Vec<(&str, String)>, Expected)> = vec![
        // since is inclusive to the microsecond the API reports.
        (vec![("since", at(t2))], vec![third.id, second.id]),
        (vec![("since", at(t2 + micro))], vec![third.id]),
        (vec![("since", at(t2 - micro))], vec![third.id, second.id]),
        (vec![("since", at(t3))], vec![third.id]),
        (vec![("since", at(t3 + micro))], vec![]),
        // until is exclusive.
        (vec![("until", at(t2))], vec![first.id]),
        (vec![("until", at(t2 + micro))], vec![second.id, first.id]),
        (vec![("until", at(t1))], vec![]),
        (
            vec![("since", at(t2)), ("until", at(t2 + micro))],
            vec![second.id],
        ),
        (
            vec![("since", at(t1)), ("until", at(t3))],
            vec![second.id, first.id],
        ),
        // The same instant in another offset.
        (
            vec![("since", at(t2.to_offset(plus_two)))],
            vec![third.id, second.id],
        ),
        (vec![("until", at(t2.to_offset(plus_two)))], vec![first.id]),
        // Combined with status.
        (
            vec![("status", "queued".into()), ("since", at(t1))],
            vec![third.id, second.id],
        ),
        (
            vec![("status", "cancelled".into()), ("since", at(t2))],
            vec![],
        ),
        (
            vec![("until", at(t2)), ("status", "cancelled".into())],
            vec![first.id],
        ),
        (
            vec![
                ("status", "queued,cancelled".into()),
                ("since", at(t1)),
                ("until", at(t3)),
            ],
            vec![second.id, first.id],
        ),
    ];
    for (query, expected) in cases {
        let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(listed(&orch, &query).await, expected, "{query:?}");
    }
}
