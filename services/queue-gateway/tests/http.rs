//! The queue gateway in-process on a fresh database, driven over HTTP as the AI and as
//! browsers: long polls wake on a send, replays are exact, input reaches the AI, large bodies
//! become blobs, and bad input is refused without writing anything.

mod common;

use std::time::Duration;

use common::{INLINE_LIMIT, PASS, USER, fields, problem, send, seqs, start};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::time::Instant;

#[tokio::test]
async fn a_waiting_poll_wakes_on_send_and_an_empty_one_waits_out() {
    let gateway = start().await;
    gateway.create_page("wake").await;

    let started = Instant::now();
    let empty = gateway.poll("wake", 0, 1).await;
    let waited = started.elapsed();
    assert_eq!(seqs(&empty), Vec::<i64>::new());
    assert_eq!(empty["next"], 0);
    assert!(
        waited >= Duration::from_millis(900),
        "returned after {waited:?}"
    );

    let poller = {
        let http = gateway.http.clone();
        let url = format!("{}/pages/wake/poll?after=0&wait=10", gateway.base);
        tokio::spawn(async move {
            let started = Instant::now();
            let body: Value = http
                .get(url)
                .basic_auth(USER, Some(PASS))
                .send()
                .await
                .expect("poll")
                .json()
                .await
                .expect("json");
            (body, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent_at = Instant::now();
    gateway.text("wake", "intro", "hello").await;
    let (body, _) = poller.await.expect("poller");
    let woke_after = sent_at.elapsed();
    assert_eq!(seqs(&body), [1]);
    assert_eq!(body["next"], 1);
    assert_eq!(
        body["messages"][0]["body"],
        json!({"inline": {"text": "hello"}})
    );
    assert!(
        woke_after < Duration::from_secs(2),
        "woke {woke_after:?} after the send"
    );
}

#[tokio::test]
async fn browsers_see_the_same_messages_once_and_late_joiners_rebuild_from_state() {
    let gateway = start().await;
    gateway.create_page("sync").await;

    let first = tokio::spawn({
        let http = gateway.http.clone();
        let url = format!("{}/pages/sync/poll?after=0&wait=10", gateway.base);
        async move {
            let response = http.get(url).basic_auth(USER, Some(PASS)).send().await;
            response.expect("poll").json::<Value>().await.expect("json")
        }
    });
    let second = tokio::spawn({
        let http = gateway.http.clone();
        let url = format!("{}/pages/sync/poll?after=0&wait=10", gateway.base);
        async move {
            let response = http.get(url).basic_auth(USER, Some(PASS)).send().await;
            response.expect("poll").json::<Value>().await.expect("json")
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    gateway.text("sync", "a", "one").await;
    let (first, second) = (first.await.expect("first"), second.await.expect("second"));
    // Each may wake before or after later sends; both start with the same first message.
    assert_eq!(first["messages"][0], second["messages"][0]);

    gateway.text("sync", "b", "two").await;
    gateway.text("sync", "a", "three").await;

    // Reconnecting after what it saw, a browser gets each later message exactly once.
    let mut seen = seqs(&first);
    let mut next = first["next"].as_i64().expect("next");
    loop {
        let more = gateway.poll("sync", next, 0).await;
        let got = seqs(&more);
        if got.is_empty() {
            break;
        }
        seen.extend(got);
        next = more["next"].as_i64().expect("next");
    }
    assert_eq!(seen, [1, 2, 3]);
    let whole = gateway.poll("sync", 0, 0).await;
    assert_eq!(seqs(&whole), [1, 2, 3]);
    let other = gateway.poll("sync", 0, 0).await;
    assert_eq!(whole, other, "two browsers get identical messages");

    // A late joiner: the state, then what follows it.
    let response = send(gateway.browser(reqwest::Method::GET, "/pages/sync/state")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let state: Value = response.json().await.expect("state");
    assert_eq!(state["seq"], 3);
    let components: Vec<(&str, &Value)> = state["components"]
        .as_array()
        .expect("components")
        .iter()
        .map(|c| (c["to"].as_str().expect("to"), &c["body"]["inline"]["text"]))
        .collect();
    assert_eq!(
        components,
        [
            ("text-component-b", &json!("two")),
            ("text-component-a", &json!("three"))
        ]
    );
    gateway.text("sync", "b", "four").await;
    let after_state = gateway.poll("sync", 3, 0).await;
    assert_eq!(seqs(&after_state), [4]);

    // Removing a component takes it out of the state.
    let response = send(gateway.ai(
        reqwest::Method::DELETE,
        "/pages/sync/components/text-component-a",
    ))
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let removal: Value = response.json().await.expect("envelope");
    assert_eq!(removal["directive"], "component.remove");
    assert_eq!(removal["to"], "layout-manager");
    let state: Value = send(gateway.browser(reqwest::Method::GET, "/pages/sync/state"))
        .await
        .json()
        .await
        .expect("state");
    let addresses: Vec<&str> = state["components"]
        .as_array()
        .expect("components")
        .iter()
        .map(|c| c["to"].as_str().expect("to"))
        .collect();
    assert_eq!(addresses, ["text-component-b"]);
}

#[tokio::test]
async fn browser_events_reach_the_ai_once() {
    let gateway = start().await;
    gateway.create_page("input").await;

    let response = send(
        gateway
            .browser(reqwest::Method::POST, "/pages/input/events")
            .json(&json!({"component": "text-component-form", "kind": "submit", "value": {"name": "Ada"}})),
    )
    .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);

    let response = send(gateway.ai(reqwest::Method::GET, "/pages/input/input?wait=5")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let input: Value = response.json().await.expect("input");
    let events = input["events"].as_array().expect("events");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["page"], "input");
    assert_eq!(events[0]["component"], "text-component-form");
    assert_eq!(events[0]["kind"], "submit");
    assert_eq!(events[0]["value"], json!({"name": "Ada"}));

    // Taken events are gone; an empty take waits out its time.
    let started = Instant::now();
    let again: Value = send(gateway.ai(reqwest::Method::GET, "/pages/input/input?wait=1"))
        .await
        .json()
        .await
        .expect("input");
    assert_eq!(again["events"], json!([]));
    assert!(started.elapsed() >= Duration::from_millis(900));

    // The browser cannot read the AI's side, nor the AI's key be skipped.
    let response = send(gateway.browser(reqwest::Method::GET, "/pages/input/input")).await;
    problem(response, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn a_large_body_travels_as_a_blob_and_reads_back_identically() {
    let gateway = start().await;
    gateway.create_page("big").await;
    let ys: Vec<f64> = (0..500).map(|i| f64::from(i) * 1.5).collect();
    let figure = json!({
        "data": [{"type": "scatter", "y": ys}],
        "layout": {"title": {"text": "large"}},
    });
    let encoded = serde_json::to_vec(&figure).expect("encode");
    assert!(encoded.len() > INLINE_LIMIT);

    let response = gateway
        .send_message("big", "plotly-panel-main", "plotly.figure", figure.clone())
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let envelope: Value = response.json().await.expect("envelope");
    let blob = &envelope["body"]["blob"];
    assert_eq!(blob["size"], encoded.len());
    assert_eq!(blob["contentType"], "application/json");
    let id = blob["blobId"].as_str().expect("blob id");

    // Browsers see the reference, then fetch the bytes.
    let polled = gateway.poll("big", 0, 0).await;
    assert_eq!(polled["messages"][0]["body"], envelope["body"]);
    let response =
        send(gateway.browser(reqwest::Method::GET, &format!("/pages/big/blobs/{id}"))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.bytes().await.expect("bytes");
    assert_eq!(bytes.as_ref(), encoded.as_slice());
    let read_back: Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(read_back, figure);

    // Another page does not serve it; a small body stays inline.
    gateway.create_page("other").await;
    let response =
        send(gateway.browser(reqwest::Method::GET, &format!("/pages/other/blobs/{id}"))).await;
    problem(response, StatusCode::NOT_FOUND).await;
    let small = gateway.text("big", "note", "small").await;
    assert_eq!(small["body"], json!({"inline": {"text": "small"}}));
}

#[tokio::test]
async fn bad_input_is_refused_with_a_problem_and_nothing_appended() {
    let gateway = start().await;
    gateway.create_page("strict").await;

    let response = gateway
        .send_message("strict", "chart-7", "text.set", json!({"text": "x"}))
        .await;
    let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(fields(&body), ["/to"]);

    let response = gateway
        .send_message(
            "strict",
            "text-component-a",
            "plotly.figure",
            json!({"data": [], "layout": {}}),
        )
        .await;
    let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(fields(&body), ["/directive"]);

    let response = gateway
        .send_message(
            "strict",
            "text-component-a",
            "text set",
            json!({"text": "x"}),
        )
        .await;
    let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(fields(&body), ["/directive"]);

    let response = gateway
        .send_message(
            "strict",
            "text-component-a",
            "text.set",
            json!({"txt": "x"}),
        )
        .await;
    let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(
        fields(&body).iter().any(|f| f.starts_with("/body/")),
        "{body}"
    );

    let response = gateway
        .send_message(
            "missing",
            "text-component-a",
            "text.set",
            json!({"text": "x"}),
        )
        .await;
    problem(response, StatusCode::NOT_FOUND).await;

    let response = send(
        gateway
            .http
            .post(format!("{}/pages/strict/messages", gateway.base))
            .json(
                &json!({"to": "text-component-a", "directive": "text.set", "body": {"text": "x"}}),
            ),
    )
    .await;
    problem(response, StatusCode::UNAUTHORIZED).await;

    let response = send(
        gateway
            .http
            .get(format!("{}/pages/strict/poll", gateway.base)),
    )
    .await;
    problem(response, StatusCode::UNAUTHORIZED).await;

    let response = send(
        gateway
            .browser(reqwest::Method::POST, "/pages/strict/events")
            .json(&json!({"component": "nowhere", "kind": "Click!"})),
    )
    .await;
    let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(fields(&body), ["/component", "/kind"]);

    let response = send(
        gateway
            .browser(reqwest::Method::POST, "/pages/missing/events")
            .json(&json!({"component": "text-component-a", "kind": "click"})),
    )
    .await;
    problem(response, StatusCode::NOT_FOUND).await;

    let response = send(gateway.browser(reqwest::Method::GET, "/pages/strict/poll?wait=31")).await;
    let body = problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(fields(&body), ["wait"]);

    let response = send(gateway.ai(
        reqwest::Method::DELETE,
        "/pages/strict/components/layout-manager",
    ))
    .await;
    problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;

    let response = send(
        gateway
            .ai(reqwest::Method::POST, "/pages")
            .json(&json!({"page": "Bad Page"})),
    )
    .await;
    let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(fields(&body), ["/page"]);

    assert_eq!(gateway.message_count().await, 0, "nothing appended");
    let blobs: i64 = sqlx::query_scalar("SELECT count(*) FROM blobs")
        .fetch_one(&gateway.db.pool)
        .await
        .expect("count");
    assert_eq!(blobs, 0, "nothing stored");
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let gateway = start().await;
    let response = send(gateway.ai(reqwest::Method::GET, "/openapi.json")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let document: Value = response.json().await.expect("openapi");
    for path in [
        "/pages",
        "/pages/{page}/messages",
        "/pages/{page}/components/{address}",
        "/pages/{page}/input",
        "/pages/{page}/poll",
        "/pages/{page}/state",
        "/pages/{page}/events",
        "/pages/{page}/blobs/{id}",
        "/pages/{page}/stream",
        "/pages/{page}/tokens",
        "/pages/{page}/tokens/{id}",
        "/blobs",
        "/blobs/{id}",
        "/blobs/{id}/content",
    ] {
        assert!(document["paths"][path].is_object(), "{path} missing");
    }
}

/// Reads the stream until `count` more events have arrived; returns their ids and data.
async fn read_events(response: &mut Response, count: usize) -> Vec<(i64, Value)> {
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events: Vec<(i64, Value)> = text
            .split("\n\n")
            .filter(|block| block.contains("event: message"))
            .filter_map(|block| {
                let id = block.lines().find_map(|l| l.strip_prefix("id: "))?;
                let data = block.lines().find_map(|l| l.strip_prefix("data: "))?;
                Some((id.parse().ok()?, serde_json::from_str(data).ok()?))
            })
            .collect();
        if events.len() >= count {
            return events;
        }
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .unwrap_or_else(|_| panic!("{count} events in time; got {text:?}"))
            .expect("chunk")
            .expect("stream open");
        text.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
    }
}

#[tokio::test]
async fn the_stream_replays_follows_and_resumes_after_the_last_event_id() {
    let gateway = start().await;
    gateway.create_page("live").await;
    gateway.text("live", "a", "one").await;

    // EventSource sends its credentials as ?auth=.
    let auth = autonoma_common::auth::encode_basic(USER, PASS);
    let mut response = send(
        gateway
            .http
            .get(format!("{}/pages/live/stream?auth={auth}", gateway.base)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let first = read_events(&mut response, 1).await;
    assert_eq!(first[0].0, 1);
    assert_eq!(first[0].1["body"], json!({"inline": {"text": "one"}}));

    gateway.text("live", "a", "two").await;
    let next = read_events(&mut response, 1).await;
    assert_eq!(next[0].0, 2);
    assert_eq!(next[0].1["body"], json!({"inline": {"text": "two"}}));
    drop(response);

    gateway.text("live", "b", "three").await;
    let mut resumed = send(
        gateway
            .browser(reqwest::Method::GET, "/pages/live/stream")
            .header("last-event-id", "2"),
    )
    .await;
    assert_eq!(resumed.status(), StatusCode::OK);
    let after = read_events(&mut resumed, 1).await;
    assert_eq!(after[0].0, 3);
    assert_eq!(after[0].1["to"], "text-component-b");

    let response = send(
        gateway
            .http
            .get(format!("{}/pages/live/stream", gateway.base)),
    )
    .await;
    problem(response, StatusCode::UNAUTHORIZED).await;
    let response = send(gateway.browser(reqwest::Method::GET, "/pages/nowhere/stream")).await;
    problem(response, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn a_sharing_token_opens_its_page_and_nothing_else() {
    let gateway = start().await;
    gateway.create_page("shared").await;
    gateway.create_page("private").await;
    gateway.text("shared", "a", "hello").await;

    let response = send(
        gateway
            .ai(reqwest::Method::POST, "/pages/shared/tokens")
            .json(&json!({"ttlSecs": 600})),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let share: Value = response.json().await.expect("token");
    let token = share["token"].as_str().expect("token").to_owned();
    let id = share["id"].as_str().expect("id").to_owned();
    assert_eq!(share["page"], "shared");

    // As a bearer token, and as ?token= where a browser cannot set headers.
    let response = send(
        gateway
            .anonymous(reqwest::Method::GET, "/pages/shared/poll?after=0")
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let polled: Value = response.json().await.expect("poll");
    assert_eq!(seqs(&polled), [1]);
    let response = send(gateway.anonymous(
        reqwest::Method::GET,
        &format!("/pages/shared/state?token={token}"),
    ))
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = send(
        gateway
            .anonymous(reqwest::Method::POST, "/pages/shared/events")
            .bearer_auth(&token)
            .json(&json!({"component": "text-component-a", "kind": "click"})),
    )
    .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);

    // Not another page, not the AI's side.
    let response = send(
        gateway
            .anonymous(reqwest::Method::GET, "/pages/private/poll")
            .bearer_auth(&token),
    )
    .await;
    let body = problem(response, StatusCode::UNAUTHORIZED).await;
    assert_eq!(fields(&body), ["token"]);
    let response = send(
        gateway
            .anonymous(reqwest::Method::GET, "/pages/shared/input")
            .bearer_auth(&token),
    )
    .await;
    problem(response, StatusCode::UNAUTHORIZED).await;
    let response = send(
        gateway
            .anonymous(reqwest::Method::GET, "/pages/shared/poll")
            .bearer_auth("apt_not-a-real-token"),
    )
    .await;
    problem(response, StatusCode::UNAUTHORIZED).await;

    // Revoked: refused from then on. Only the token's digest was ever stored.
    let response = send(gateway.ai(
        reqwest::Method::DELETE,
        &format!("/pages/shared/tokens/{id}"),
    ))
    .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = send(
        gateway
            .anonymous(reqwest::Method::GET, "/pages/shared/poll")
            .bearer_auth(&token),
    )
    .await;
    problem(response, StatusCode::UNAUTHORIZED).await;
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM page_tokens WHERE position(convert_to($1, 'UTF8') IN token_sha256) > 0",
    )
    .bind(&token)
    .fetch_one(&gateway.db.pool)
    .await
    .expect("count");
    assert_eq!(stored, 0);

    // Lifetimes out of range and unknown pages are refused.
    let response = send(
        gateway
            .ai(reqwest::Method::POST, "/pages/shared/tokens")
            .json(&json!({"ttlSecs": 5})),
    )
    .await;
    let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(fields(&body), ["/ttlSecs"]);
    let response = send(
        gateway
            .ai(reqwest::Method::POST, "/pages/nowhere/tokens")
            .json(&json!({})),
    )
    .await;
    problem(response, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn blobs_are_stored_once_found_by_kind_name_and_tag_and_read_back() {
    let gateway = start().await;
    let store = |query: &str, content_type: &str, body: &'static str| {
        gateway
            .ai(reqwest::Method::POST, &format!("/blobs?{query}"))
            .header("content-type", content_type)
            .body(body)
    };
    let response = send(store(
        "kind=html&name=report%2Fintro.html&tags=report,draft",
        "text/html",
        "<h1>Intro</h1>",
    ))
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let html: Value = response.json().await.expect("blob");
    assert_eq!(html["kind"], "html");
    assert_eq!(html["name"], "report/intro.html");
    assert_eq!(html["size"], 14);

    // The same content under the same kind, name and type is the same entry, tags merged.
    let again: Value = send(store(
        "kind=html&name=report%2Fintro.html&tags=final",
        "text/html",
        "<h1>Intro</h1>",
    ))
    .await
    .json()
    .await
    .expect("blob");
    assert_eq!(again["id"], html["id"]);
    assert_eq!(again["tags"], json!(["draft", "final", "report"]));
    send(store(
        "kind=layout&name=grid",
        "application/json",
        "{\"rows\":2}",
    ))
    .await;

    let listed: Value = send(gateway.ai(reqwest::Method::GET, "/blobs?tags=report"))
        .await
        .json()
        .await
        .expect("list");
    assert_eq!(listed["items"].as_array().expect("items").len(), 1);
    let listed: Value = send(gateway.ai(reqwest::Method::GET, "/blobs?name=report%2F"))
        .await
        .json()
        .await
        .expect("list");
    assert_eq!(listed["items"][0]["id"], html["id"]);
    let first: Value = send(gateway.ai(reqwest::Method::GET, "/blobs?limit=1"))
        .await
        .json()
        .await
        .expect("list");
    assert_eq!(first["items"].as_array().expect("items").len(), 1);
    let cursor = first["nextCursor"].as_str().expect("a next page");
    let second: Value = send(gateway.ai(
        reqwest::Method::GET,
        &format!("/blobs?limit=1&cursor={cursor}"),
    ))
    .await
    .json()
    .await
    .expect("list");
    assert_ne!(second["items"][0]["id"], first["items"][0]["id"]);
    assert_eq!(second["nextCursor"], Value::Null);

    let id = html["id"].as_str().expect("id");
    let meta: Value = send(gateway.ai(reqwest::Method::GET, &format!("/blobs/{id}")))
        .await
        .json()
        .await
        .expect("meta");
    assert_eq!(meta["sha256"], html["sha256"]);
    let response = send(gateway.ai(reqwest::Method::GET, &format!("/blobs/{id}/content"))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"].to_str().expect("type"),
        "text/html"
    );
    assert_eq!(response.text().await.expect("text"), "<h1>Intro</h1>");

    // Bad input names what is wrong and stores nothing.
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM blobs")
        .fetch_one(&gateway.db.pool)
        .await
        .expect("count");
    let body = problem(
        send(store("name=x", "text/plain", "x")).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(fields(&body), ["kind"]);
    let body = problem(
        send(store("kind=spreadsheet", "text/plain", "x")).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(fields(&body), ["kind"]);
    problem(
        send(store("kind=other", "not a media type", "x")).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    let body = problem(
        send(gateway.ai(reqwest::Method::GET, "/blobs?limit=5000")).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(fields(&body), ["limit"]);
    let body = problem(
        send(gateway.ai(reqwest::Method::GET, "/blobs?name=a%00")).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(fields(&body), ["name"]);
    let body = problem(
        send(store("kind=other&tags=a%00", "text/plain", "x")).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(fields(&body), ["tags"]);
    problem(
        send(gateway.ai(
            reqwest::Method::GET,
            "/blobs/0190a5d2-0000-7000-8000-000000000001",
        ))
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM blobs")
        .fetch_one(&gateway.db.pool)
        .await
        .expect("count");
    assert_eq!(after, before);
}

#[tokio::test]
async fn bodies_over_the_limits_are_refused_and_leave_nothing_behind() {
    let gateway = common::start_with(
        common::Backends::Embedded,
        &[
            ("GATEWAY_DIRECTIVE_LIMIT", "4096".to_owned()),
            ("GATEWAY_BLOB_LIMIT", "8192".to_owned()),
        ],
    )
    .await;
    gateway.create_page("limits").await;

    // A directive body over GATEWAY_DIRECTIVE_LIMIT (but within the request body limit).
    let text = "x".repeat(6000);
    let response = gateway
        .send_message(
            "limits",
            "text-component-a",
            "text.set",
            json!({"text": text}),
        )
        .await;
    let body = problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("POST /blobs"),
        "{body}"
    );
    // A request body far over the route's limit is cut off before it is read.
    let response = gateway
        .send_message(
            "limits",
            "text-component-a",
            "text.set",
            json!({"text": "y".repeat(200_000)}),
        )
        .await;
    problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;
    // A blob over GATEWAY_BLOB_LIMIT, streamed in.
    let response = send(
        gateway
            .ai(reqwest::Method::POST, "/blobs?kind=dataset")
            .header("content-type", "text/csv")
            .body("z".repeat(10_000)),
    )
    .await;
    problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;

    assert_eq!(gateway.message_count().await, 0);
    let blobs: i64 = sqlx::query_scalar("SELECT count(*) FROM blobs")
        .fetch_one(&gateway.db.pool)
        .await
        .expect("count");
    assert_eq!(blobs, 0);
}
