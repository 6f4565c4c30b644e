//! `POST /log` and `GET /logs` against a real database: what is accepted is stored and found
//! by every filter, pages walk every record once, and bad input is refused precisely.

mod support;

use std::collections::HashSet;

use serde_json::{Value, json};
use support::{KEY, PASS, USER, frame, start};

const TRACE_A: &str = "0af7651916cd43dd8448eb211c80319c";
const TRACE_B: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TASK: &str = "0192f0c1-7e4a-7cde-8a3b-1d2e3f405162";

fn messages(items: &[Value]) -> Vec<&str> {
    items
        .iter()
        .map(|item| item["message"].as_str().expect("message"))
        .collect()
}

#[tokio::test]
async fn frames_are_stored_and_found_by_every_filter() {
    let service = start(&[]).await;

    let single = json!({
        "ts": "2026-11-20T10:00:00Z",
        "level": "info",
        "service": "orchestrator",
        "message": "task created for the payment flow",
        "traceId": TRACE_A,
        "correlationId": "order-17",
        "taskId": TASK,
        "fields": {"attempt": 1, "nested": {"ok": true}},
    });
    let response = service.post(&single).await;
    assert_eq!(response.status(), 202);
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({"accepted": 1})
    );

    let batch = json!([
        {"ts": "2026-11-20T11:00:00Z", "level": "debug", "service": "orchestrator", "message": "dispatching", "traceId": TRACE_A},
        {"ts": "2026-11-20T12:00:00Z", "level": "warn", "service": "echo-agent", "message": "slow payment answer", "traceId": TRACE_B, "correlationId": "order-17"},
        {"ts": "2026-11-20T13:00:00Z", "level": "error", "service": "echo-agent", "message": "payment failed", "taskId": TASK},
        {"ts": "2026-11-20T14:00:00Z", "level": "trace", "service": "renderctl", "message": "deploy polled"},
    ]);
    let response = service.post(&batch).await;
    assert_eq!(response.status(), 202);
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({"accepted": 4})
    );
    service.wait_for_rows(5).await;

    let all = service.items("").await;
    assert_eq!(
        messages(&all),
        [
            "deploy polled",
            "payment failed",
            "slow payment answer",
            "dispatching",
            "task created for the payment flow"
        ],
        "newest first"
    );
    let first = &all[4];
    assert_eq!(first["ts"], "2026-11-20T10:00:00Z");
    assert_eq!(first["level"], "info");
    assert_eq!(first["service"], "orchestrator");
    assert_eq!(first["traceId"], TRACE_A);
    assert_eq!(first["correlationId"], "order-17");
    assert_eq!(first["taskId"], TASK);
    assert_eq!(
        first["fields"],
        json!({"attempt": 1, "nested": {"ok": true}})
    );
    assert!(first["id"].as_i64().is_some_and(|id| id > 0));
    assert!(first["receivedAt"].is_string());
    assert_eq!(all[0]["traceId"], Value::Null);
    assert_eq!(all[0]["fields"], json!({}));

    let cases: &[(&str, &[&str])] = &[
        (
            "?service=echo-agent",
            &["payment failed", "slow payment answer"],
        ),
        ("?level=warn", &["payment failed", "slow payment answer"]),
        (
            "?level=info",
            &[
                "payment failed",
                "slow payment answer",
                "task created for the payment flow",
            ],
        ),
        (
            &format!("?traceId={TRACE_A}"),
            &["dispatching", "task created for the payment flow"],
        ),
        (
            "?correlationId=order-17",
            &["slow payment answer", "task created for the payment flow"],
        ),
        (
            &format!("?taskId={TASK}"),
            &["payment failed", "task created for the payment flow"],
        ),
        (
            "?since=2026-11-20T11:00:00Z&until=2026-11-20T13:00:00Z",
            &["slow payment answer", "dispatching"],
        ),
        (
            "?since=2026-11-20T13:00:00%2B01:00",
            &["slow payment answer", "payment failed", "deploy polled"],
        ),
        (
            "?q=payment",
            &[
                "payment failed",
                "slow payment answer",
                "task created for the payment flow",
            ],
        ),
        ("?q=payment%20failed", &["payment failed"]),
        (
            "?q=payment%20-failed&service=echo-agent",
            &["slow payment answer"],
        ),
        ("?service=echo-agent&level=error", &["payment failed"]),
        ("?service=nobody", &[]),
    ];
    for (query, expected) in cases {
        let items = service.items(query).await;
        let mut found = messages(&items);
        let mut expected = expected.to_vec();
        found.sort_unstable();
        expected.sort_unstable();
        assert_eq!(found, expected, "GET /logs{query}");
    }
    service.stop().await;
}

#[tokio::test]
async fn keyset_pages_walk_every_record_exactly_once() {
    let service = start(&[]).await;
    let total = 53;
    let batch: Vec<Value> = (0..total)
        .map(|i| {
            let level = if i % 3 == 0 { "error" } else { "info" };
            frame("api", level, &format!("record {i}"))
        })
        .collect();
    assert_eq!(service.post(&Value::Array(batch)).await.status(), 202);
    service.wait_for_rows(total).await;

    for (filter, expected) in [("", total), ("&level=error", 18)] {
        let mut seen = HashSet::new();
        let mut previous = i64::MAX;
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut query = format!("?limit=10{filter}");
            if let Some(cursor) = &cursor {
                query.push_str(&format!("&cursor={cursor}"));
            }
            let response = service.get(&query).await;
            assert_eq!(response.status(), 200);
            let page: Value = response.json().await.expect("json");
            pages += 1;
            for item in page["items"].as_array().expect("items") {
                let id = item["id"].as_i64().expect("id");
                assert!(id < previous, "ids descend across pages");
                previous = id;
                assert!(seen.insert(id), "id {id} served twice");
            }
            match page["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
            assert!(pages < 20, "paging does not end");
        }
        assert_eq!(seen.len() as i64, expected, "filter {filter:?}");
        assert_eq!(pages, (expected + 9) / 10, "filter {filter:?}");
    }

    // A page that ends exactly at the last record says so.
    let page: Value = service.get("?limit=53").await.json().await.expect("json");
    assert_eq!(page["items"].as_array().map(Vec::len), Some(53));
    assert_eq!(page["nextCursor"], Value::Null);
    service.stop().await;
}

#[tokio::test]
async fn bad_query_parameters_are_refused_naming_the_parameter() {
    let service = start(&[]).await;
    for (query, parameter) in [
        ("?limit=501", "limit"),
        ("?limit=0", "limit"),
        ("?limit=many", "limit"),
        ("?cursor=not-a-cursor", "cursor"),
        ("?cursor=NDI", "cursor"),
        ("?level=loud", "level"),
        ("?since=yesterday", "since"),
        ("?until=2026-13-01T00:00:00Z", "until"),
        (
            "?since=2026-11-20T00:00:00Z&until=2026-11-19T00:00:00Z",
            "until",
        ),
        ("?traceId=xyz", "traceId"),
        ("?taskId=nope", "taskId"),
        ("?service=a%00b", "service"),
        ("?correlationId=%00", "correlationId"),
        ("?q=a%00", "q"),
    ] {
        let response = service.get(query).await;
        assert_eq!(response.status(), 400, "GET /logs{query}");
        let problem: Value = response.json().await.expect("problem");
        assert_eq!(
            problem["errors"][0]["field"], parameter,
            "GET /logs{query}: {problem}"
        );
    }
    assert_eq!(service.get("?limit=500").await.status(), 200);
    service.stop().await;
}

#[tokio::test]
async fn invalid_frames_are_refused_with_pointers_and_nothing_is_stored() {
    let service = start(&[]).await;

    let batch = json!([
        frame("api", "info", "fine"),
        {"level": "info", "service": "api", "message": "bad trace", "traceId": "XYZ"},
        frame("api", "info", "fine too"),
        {"level": "fatal", "service": "Api_Server", "message": "two problems"},
        {"level": "info", "service": "api", "message": "nul in fields", "fields": {"k": "a\u{0}b"}},
        {"level": "info", "service": "api", "message": "bad task", "taskId": "42", "ts": "2026-11-20"},
    ]);
    let response = service.post(&batch).await;
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await.expect("problem");
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["field"].as_str().expect("field"))
        .collect();
    assert_eq!(
        fields,
        [
            "/1/traceId",
            "/3/level",
            "/3/service",
            "/4/fields/k",
            "/5/ts",
            "/5/taskId"
        ],
        "{problem}"
    );

    // Shape errors point at the frame too.
    let response = service
        .post(&json!([frame("api", "info", "ok"), {"level": "info", "service": "api"}]))
        .await;
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await.expect("problem");
    assert_eq!(problem["errors"][0]["field"], "/1/message", "{problem}");

    let response = service
        .post(&json!({"level": "info", "service": "api", "message": 7}))
        .await;
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await.expect("problem");
    assert_eq!(problem["errors"][0]["field"], "/message", "{problem}");

    let response = service.post(&json!("just text")).await;
    assert_eq!(response.status(), 422);

    let long = "x".repeat(65_537);
    let response = service.post(&frame("api", "info", &long)).await;
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await.expect("problem");
    assert_eq!(problem["errors"][0]["field"], "/message");

    // Nothing of the refused batches was stored; a valid post afterwards is.
    assert_eq!(
        service.post(&frame("api", "info", "valid")).await.status(),
        202
    );
    service.wait_for_rows(1).await;
    assert_eq!(messages(&service.items("").await), ["valid"]);
    service.stop().await;
}

/// `fields` is stored as the text received, so what `jsonb` would refuse must be refused
/// before the 202: on every edge below, the service accepts exactly what this database stores,
/// and a refused frame names the value.
#[tokio::test]
async fn fields_are_stored_as_sent_and_only_what_jsonb_holds_is_accepted() {
    let service = start(&[]).await;
    let zeros = |n: usize| "0".repeat(n);
    let values: Vec<String> = [
        "123456789012345678901234567890",
        "1e131071",
        "1e131072",
        "9.99e131071",
        "0.0001e131075",
        "0.0001e131076",
        "-1e-16383",
        "1e-16384",
        "1.5e-16383",
        "0e1073741822",
        "0e1073741823",
        "0.0e-20000",
        "1e400",
        r#""caf\u00e9 \ud83d\ude00""#,
        r#""\ud800""#,
        r#""\udc00 low first""#,
        r#""\ud83d\u0041""#,
        r#""\\u0000 is text""#,
        r#""\u0000""#,
        r#"{"deep": [{"x": "\u0001"}]}"#,
    ]
    .into_iter()
    .map(str::to_owned)
    .chain([
        format!("1.{}", zeros(16_383)),
        format!("1.{}", zeros(16_384)),
    ])
    .collect();

    let mut accepted = Vec::new();
    for value in &values {
        let fields = format!(r#"{{"v": {value}}}"#);
        let stores = sqlx::query("SELECT $1::text::jsonb")
            .bind(&fields)
            .execute(&service.db.pool)
            .await
            .is_ok();
        let response = service
            .post_text(format!(
                r#"{{"level": "info", "service": "api", "message": "edge {}", "fields": {fields}}}"#,
                accepted.len()
            ))
            .await;
        let status = response.status();
        let problem: Value = response.json().await.expect("json");
        let shown = &value[..value.len().min(40)];
        if stores {
            assert_eq!(status, 202, "jsonb stores {shown}: {problem}");
            accepted.push(value);
        } else {
            assert_eq!(status, 422, "jsonb refuses {shown}: {problem}");
            assert_eq!(problem["errors"][0]["field"], "/fields/v", "{problem}");
        }
    }
    // Both outcomes occur, so the comparison above decided something.
    assert!(accepted.len() > 5 && accepted.len() < values.len() - 5);

    service.wait_for_rows(accepted.len() as i64).await;
    let big: String = sqlx::query_scalar("SELECT fields->>'v' FROM logs WHERE message = 'edge 0'")
        .fetch_one(&service.db.pool)
        .await
        .expect("stored");
    assert_eq!(
        big, "123456789012345678901234567890",
        "stored exactly, not as f64"
    );

    for (fields, pointer) in [
        (r#""text""#, "/fields"),
        ("[1]", "/fields"),
        (r#"{"a": {"k\u0000": 1}}"#, "/fields/a/k\u{0}"),
    ] {
        let response = service
            .post_text(format!(
                r#"[{{"level": "info", "service": "api", "message": "x", "fields": {fields}}}]"#
            ))
            .await;
        assert_eq!(response.status(), 422, "{fields}");
        let problem: Value = response.json().await.expect("problem");
        assert_eq!(
            problem["errors"][0]["field"],
            format!("/0{pointer}"),
            "{problem}"
        );
    }
    let response = service
        .post(&json!({"level": "info", "service": "api", "message": "no fields", "fields": null}))
        .await;
    assert_eq!(response.status(), 202);
    service.wait_for_rows(accepted.len() as i64 + 1).await;
    let items = service.items("?q=fields").await;
    assert_eq!(items[0]["fields"], json!({}));
    service.stop().await;
}

#[tokio::test]
async fn oversize_batches_and_bodies_are_refused() {
    let service = start(&[("LOG_MAX_BATCH", "10")]).await;

    let eleven: Vec<Value> = (0..11)
        .map(|i| frame("api", "info", &i.to_string()))
        .collect();
    let response = service.post(&Value::Array(eleven)).await;
    assert_eq!(response.status(), 413);
    let problem: Value = response.json().await.expect("problem");
    assert_eq!(problem["maxBatch"], 10, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("at most 10")),
        "{problem}"
    );

    let ten: Vec<Value> = (0..10)
        .map(|i| frame("api", "info", &i.to_string()))
        .collect();
    assert_eq!(service.post(&Value::Array(ten)).await.status(), 202);

    // Over the 8 MiB body limit, whatever the frame count.
    let huge = frame("api", "info", &"x".repeat(9 * 1024 * 1024));
    let response = service.post(&huge).await;
    assert_eq!(response.status(), 413);

    // Over the global 1 MiB default but under 8 MiB: accepted on this route.
    let messages: Vec<Value> = (0..10)
        .map(|i| {
            json!({
                "level": "info", "service": "api", "message": format!("{i}{}", "y".repeat(60_000)),
                "fields": {"blob": "z".repeat(60_000)},
            })
        })
        .collect();
    assert_eq!(service.post(&Value::Array(messages)).await.status(), 202);
    service.wait_for_rows(20).await;
    service.stop().await;
}

#[tokio::test]
async fn every_route_requires_credentials() {
    let service = start(&[]).await;
    let http = &service.http;

    let no_key = http
        .post(service.url("/log"))
        .json(&frame("api", "info", "x"))
        .send()
        .await
        .expect("request");
    assert_eq!(no_key.status(), 401);
    let wrong_key = http
        .post(service.url("/log"))
        .header("x-internal-key", "wrong-key-0123456789")
        .json(&frame("api", "info", "x"))
        .send()
        .await
        .expect("request");
    assert_eq!(wrong_key.status(), 401);
    // Basic Auth is for people, not for shipping logs.
    let basic = http
        .post(service.url("/log"))
        .basic_auth(USER, Some(PASS))
        .json(&frame("api", "info", "x"))
        .send()
        .await
        .expect("request");
    assert_eq!(basic.status(), 401);

    let anonymous = http
        .get(service.url("/logs"))
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers().contains_key("www-authenticate"));
    let wrong = http
        .get(service.url("/logs"))
        .basic_auth(USER, Some("wrong"))
        .send()
        .await
        .expect("request");
    assert_eq!(wrong.status(), 401);
    let by_key = http
        .get(service.url("/logs"))
        .header("x-internal-key", KEY)
        .send()
        .await
        .expect("request");
    assert_eq!(by_key.status(), 200);

    let stream = http
        .get(service.url("/logs/stream"))
        .send()
        .await
        .expect("request");
    assert_eq!(stream.status(), 401);
    let auth = autonoma_common::auth::encode_basic(USER, PASS);
    let stream = http
        .get(service.url(&format!("/logs/stream?auth={auth}")))
        .send()
        .await
        .expect("request");
    assert_eq!(stream.status(), 200);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .is_ok_and(|v| v.starts_with("text/event-stream"))
    );
    drop(stream);

    // Nothing refused was stored.
    assert_eq!(service.count().await, 0);
    service.stop().await;
}

#[tokio::test]
async fn the_openapi_document_describes_the_routes() {
    let service = start(&[]).await;
    let openapi: Value = service
        .http
        .get(service.url("/openapi.json"))
        .basic_auth(USER, Some(PASS))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert!(openapi["paths"]["/log"]["post"].is_object(), "{openapi}");
    assert!(openapi["paths"]["/logs"]["get"].is_object());
    assert!(openapi["paths"]["/logs/stream"]["get"].is_object());
    let schemas = &openapi["components"]["schemas"];
    for schema in [
        "FrameIn",
        "FramesIn",
        "LogOut",
        "LogsOut",
        "AcceptedOut",
        "Level",
    ] {
        assert!(schemas[schema].is_object(), "{schema} missing: {schemas}");
    }
    let parameters: Vec<&str> = openapi["paths"]["/logs"]["get"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    for name in [
        "service",
        "level",
        "traceId",
        "correlationId",
        "taskId",
        "since",
        "until",
        "q",
        "limit",
        "cursor",
    ] {
        assert!(parameters.contains(&name), "{name} not documented");
    }
    service.stop().await;
}
