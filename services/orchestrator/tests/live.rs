//! `GET /ws` and `POST /hooks/{source}` on a real server.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use autonoma_common::auth::encode_basic;
use autonoma_protocol::{TaskOut, TaskStatus};
use futures::{SinkExt, StreamExt};
use hmac::{Hmac, KeyInit, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;
use support::{HOOK_SECRET, ORIGIN, PASS, USER, any_payload, fake_agent, start};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

fn ws_url(base: &str, query: &str) -> String {
    format!("{}/ws?{query}", base.replace("http://", "ws://"))
}

async fn connect(
    url: &str,
    origin: &str,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    WsError,
> {
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert("origin", origin.parse().expect("header"));
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(socket, _)| socket)
}

fn status_of(error: &WsError) -> Option<u16> {
    match error {
        WsError::Http(response) => Some(response.status().as_u16()),
        _ => None,
    }
}

#[tokio::test]
async fn websocket_refuses_missing_credentials_and_foreign_origins() {
    let orch = start(&[]).await;
    let anonymous = connect(&ws_url(&orch.base, ""), ORIGIN)
        .await
        .expect_err("no credentials");
    assert_eq!(status_of(&anonymous), Some(401));
    let auth = encode_basic(USER, PASS);
    let foreign = connect(
        &ws_url(&orch.base, &format!("auth={auth}")),
        "https://evil.example",
    )
    .await
    .expect_err("foreign origin");
    assert_eq!(status_of(&foreign), Some(403));
    connect(&ws_url(&orch.base, &format!("auth={auth}")), ORIGIN)
        .await
        .expect("allowed");
}

#[tokio::test]
async fn websocket_streams_every_transition_in_order() {
    let orch = start(&[]).await;
    let agent = fake_agent().await;
    orch.register("echo-agent", &agent.server.base_url, any_payload())
        .await;
    let auth = encode_basic(USER, PASS);
    let mut socket = connect(
        &ws_url(&orch.base, &format!("auth={auth}&kind=echo&logs=false")),
        ORIGIN,
    )
    .await
    .expect("connect");
    let hello = socket.next().await.expect("hello").expect("frame");
    assert!(hello.to_text().expect("text").contains("\"hello\""));

    let mut ids = Vec::new();
    for i in 0..10 {
        let task: TaskOut = orch
            .create(json!({"kind": "echo", "payload": {"i": i, "failTimes": i % 2}}))
            .await
            .json()
            .await
            .expect("task");
        ids.push(task.id);
    }
    let mut seen: HashMap<uuid::Uuid, Vec<(i64, String)>> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let done = |seen: &HashMap<uuid::Uuid, Vec<(i64, String)>>, id: &uuid::Uuid| {
        seen.get(id)
            .and_then(|e| e.last())
            .is_some_and(|(_, s)| s == "succeeded")
    };
    while !ids.iter().all(|id| done(&seen, id)) {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .expect("frames keep coming")
            .expect("open")
            .expect("frame");
        let Message::Text(text) = message else {
            continue;
        };
        let frame: Value = serde_json::from_str(&text).expect("json");
        if frame["type"] != "task" {
            continue;
        }
        let id: uuid::Uuid = serde_json::from_value(frame["task"]["id"].clone()).expect("id");
        let version = frame["event"]["version"].as_i64().expect("version");
        let status = frame["event"]["toStatus"].as_str().unwrap_or("").to_owned();
        seen.entry(id).or_default().push((version, status));
    }
    for id in ids {
        let frames = &seen[&id];
        let versions: Vec<i64> = frames.iter().map(|(v, _)| *v).collect();
        let expected: Vec<i64> = (1..=frames.len() as i64).collect();
        assert_eq!(versions, expected, "every version of {id}, in order");
        let events = orch.events(id).await;
        assert_eq!(events.len(), frames.len(), "one frame per event of {id}");
        assert_eq!(orch.task(id).await.status, TaskStatus::Succeeded);
    }
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(HOOK_SECRET.as_bytes()).expect("key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn webhooks_need_a_valid_signature_and_are_deduplicated() {
    let orch = start(&[]).await;
    orch.register("echo-agent", "http://127.0.0.1:9", any_payload())
        .await;
    let body = serde_json::to_vec(&json!({"ref": "refs/heads/main"})).expect("json");
    let post = |signature: Option<String>, delivery: &str, event: &str| {
        let mut request = orch
            .http
            .post(orch.url("/hooks/github"))
            .header("content-type", "application/json")
            .header("x-github-delivery", delivery)
            .header("x-github-event", event)
            .body(body.clone());
        if let Some(signature) = signature {
            request = request.header("x-hub-signature-256", signature);
        }
        request.send()
    };

    let unsigned = post(None, "d-1", "push").await.expect("request");
    assert_eq!(unsigned.status(), 401);
    let forged = post(Some(sign(b"something else")), "d-1", "push")
        .await
        .expect("request");
    assert_eq!(forged.status(), 401);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks")
        .fetch_one(&orch.db.pool)
        .await
        .expect("count");
    assert_eq!(count, 0, "a bad signature creates nothing");

    let accepted = post(Some(sign(&body)), "d-1", "push")
        .await
        .expect("request");
    assert_eq!(accepted.status(), 202);
    let first: Value = accepted.json().await.expect("json");
    assert_eq!(first["duplicate"], false);
    let again: Value = post(Some(sign(&body)), "d-1", "push")
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["taskId"], first["taskId"]);

    let ignored: Value = post(Some(sign(&body)), "d-2", "issues")
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert!(ignored["ignored"].is_string(), "{ignored}");

    let task: TaskOut = serde_json::from_value(
        orch.operator(
            reqwest::Method::GET,
            &format!("/task/{}", first["taskId"].as_str().expect("id")),
        )
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("task"),
    )
    .expect("task");
    assert_eq!(task.kind, "echo");
    assert_eq!(task.correlation_id.as_deref(), Some("github:d-1"));
    assert_eq!(task.payload, json!({"ref": "refs/heads/main"}));
    let unknown = orch
        .http
        .post(orch.url("/hooks/gitlab"))
        .header("x-hub-signature-256", sign(b"{}"))
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(
        unknown.status(),
        401,
        "an unknown source looks like a bad signature"
    );
}

#[tokio::test]
async fn a_client_that_does_not_keep_up_is_disconnected() {
    let orch = start(&[("WS_CLIENT_BUFFER", "16")]).await;
    orch.register("echo-agent", "http://127.0.0.1:9", any_payload())
        .await;
    let auth = encode_basic(USER, PASS);
    // A small receive window: left to autotuning, loopback buffers can absorb every frame
    // this test sends and the server would never fall behind.
    let mut request = ws_url(&orch.base, &format!("auth={auth}&logs=false"))
        .into_client_request()
        .expect("request");
    request
        .headers_mut()
        .insert("origin", ORIGIN.parse().expect("header"));
    let tcp = tokio::net::TcpSocket::new_v4().expect("socket");
    tcp.set_recv_buffer_size(16 * 1024).expect("SO_RCVBUF");
    let address = orch
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("address");
    let stream = tcp.connect(address).await.expect("tcp connect");
    let (mut socket, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("connect");
    // Big frames the client does not read: the server's buffers fill and it falls behind.
    let filler = "x".repeat(64 * 1024);
    for i in 0..200 {
        let response = orch
            .create(json!({"kind": "echo", "payload": {"i": i, "filler": filler}, "runAt": "2999-01-01T00:00:00Z"}))
            .await;
        assert_eq!(response.status(), 201);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The server either notices the lag and closes with 1008, or its bounded write times out
    // and it drops the connection; both end the stream within the write bound.
    let mut frames = 0;
    let mut close_code = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(Message::Text(_)))) => frames += 1,
            Ok(Some(Ok(Message::Close(frame)))) => {
                close_code = frame.map(|f| u16::from(f.code));
                break;
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => break,
            Err(_) => panic!("the slow client was never disconnected ({frames} frames read)"),
        }
    }
    assert!(
        frames < 201,
        "all {frames} frames were buffered for the slow client"
    );
    assert!(
        close_code.is_none_or(|code| code == 1008),
        "closed with {close_code:?} instead of the too-slow code after {frames} frames"
    );
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Never due: only the test's own changes make frames.
const NEVER: &str = "2999-01-01T00:00:00Z";

/// A WebSocket on the orchestrator at `base` with `query` as its subscription, and its hello.
async fn subscribe(base: &str, query: &str) -> (Socket, Value) {
    let auth = encode_basic(USER, PASS);
    let mut socket = connect(&ws_url(base, &format!("auth={auth}&{query}")), ORIGIN)
        .await
        .expect("connect");
    let hello = next_frame(&mut socket, Duration::from_secs(10))
        .await
        .expect("hello");
    assert_eq!(hello["type"], "hello", "{hello}");
    (socket, hello)
}

/// The next text frame, parsed; `None` if none comes within `within`.
async fn next_frame(socket: &mut Socket, within: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .ok()?
            .expect("open")
            .expect("frame");
        if let Message::Text(text) = message {
            return Some(serde_json::from_str(&text).expect("json"));
        }
    }
}

/// Every frame up to and including the first one `last` picks.
async fn frames_until(socket: &mut Socket, last: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut frames = Vec::new();
    loop {
        let Some(frame) = next_frame(socket, Duration::from_secs(15)).await else {
            panic!("the awaited frame never came; these did: {frames:#?}");
        };
        let done = last(&frame);
        frames.push(frame);
        if done {
            return frames;
        }
    }
}

/// Whether `frame` is the frame of `id`'s event at `version`.
fn is_event(frame: &Value, id: uuid::Uuid, version: i32) -> bool {
    frame["type"] == "task"
        && frame["task"]["id"] == id.to_string()
        && frame["event"]["version"] == version
}

/// An operator's request to the orchestrator at `base`, which must succeed.
async fn operator_call(base: &str, method: Method, path: &str, body: Option<Value>) -> TaskOut {
    let mut request = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .basic_auth(USER, Some(PASS));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let text = response.text().await.expect("body");
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).expect("task")
}

async fn new_task(base: &str, body: Value) -> TaskOut {
    operator_call(base, Method::POST, "/task", Some(body)).await
}

/// A change that only bumps the version (and records the note).
async fn touch(base: &str, id: uuid::Uuid) -> TaskOut {
    let current = operator_call(base, Method::GET, &format!("/task/{id}"), None).await;
    operator_call(
        base,
        Method::PATCH,
        &format!("/task/{id}"),
        Some(json!({"ifVersion": current.version, "note": "touched"})),
    )
    .await
}

/// Touches `id` through `base` until its frame arrives on `socket` (whose subscription must
/// let it through). From then on the replica's live feed is listening: a later change cannot
/// go missing because its listener was still connecting.
async fn until_live(base: &str, socket: &mut Socket, id: uuid::Uuid) {
    for _ in 0..20 {
        let touched = touch(base, id).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while let Some(frame) = next_frame(
            socket,
            deadline.saturating_duration_since(tokio::time::Instant::now()),
        )
        .await
        {
            if is_event(&frame, id, touched.version) {
                return;
            }
        }
    }
    panic!("no frame of {id} ever arrived: the live feed does not listen");
}

fn two_kinds() -> Value {
    json!([{"kind": "echo", "payloadSchema": {"type": "object"}},
           {"kind": "other", "payloadSchema": {"type": "object"}}])
}

#[tokio::test]
async fn websocket_subscriptions_deliver_only_the_tasks_they_select() {
    let orch = start(&[]).await;
    orch.register("echo-agent", "http://127.0.0.1:9", two_kinds())
        .await;
    let base = orch.base.as_str();

    // taskId: the changes of another task, made first, never arrive.
    let decoy = new_task(base, json!({"kind": "echo", "payload": {}, "runAt": NEVER})).await;
    let wanted = new_task(base, json!({"kind": "echo", "payload": {}, "runAt": NEVER})).await;
    let (mut socket, hello) = subscribe(base, &format!("taskId={}&logs=false", wanted.id)).await;
    assert_eq!(hello["subscription"]["taskId"], wanted.id.to_string());
    until_live(base, &mut socket, wanted.id).await;
    touch(base, decoy.id).await;
    operator_call(
        base,
        Method::POST,
        &format!("/task/{}/cancel", decoy.id),
        None,
    )
    .await;
    let last = touch(base, wanted.id).await;
    let frames = frames_until(&mut socket, |f| is_event(f, wanted.id, last.version)).await;
    for frame in &frames {
        assert_eq!(frame["task"]["id"], wanted.id.to_string(), "{frame}");
    }
    drop(socket);

    // correlationId: exactly that one, not a longer one or none.
    let (mut socket, hello) = subscribe(base, "correlationId=order-7&logs=false").await;
    assert_eq!(hello["subscription"]["correlationId"], "order-7");
    let mut decoys = Vec::new();
    for correlation in [json!("order-8"), json!("order-70"), Value::Null] {
        let task = new_task(
            base,
            json!({"kind": "echo", "payload": {}, "runAt": NEVER, "correlationId": correlation}),
        )
        .await;
        decoys.push(task.id.to_string());
    }
    let wanted = new_task(
        base,
        json!({"kind": "echo", "payload": {}, "runAt": NEVER, "correlationId": "order-7"}),
    )
    .await;
    let frames = frames_until(&mut socket, |f| is_event(f, wanted.id, 1)).await;
    for frame in &frames {
        assert_eq!(frame["type"], "task", "{frame}");
        assert_eq!(frame["task"]["correlationId"], "order-7", "{frame}");
        assert!(!decoys.contains(&frame["task"]["id"].as_str().unwrap_or("").to_owned()));
    }
    drop(socket);

    // kind, then a subscribe message that replaces it.
    let (mut socket, _) = subscribe(base, "kind=other&logs=false").await;
    let echo = new_task(base, json!({"kind": "echo", "payload": {}, "runAt": NEVER})).await;
    let other = new_task(
        base,
        json!({"kind": "other", "payload": {}, "runAt": NEVER}),
    )
    .await;
    let frames = frames_until(&mut socket, |f| is_event(f, other.id, 1)).await;
    for frame in &frames {
        assert_eq!(frame["task"]["kind"], "other", "{frame}");
        assert_ne!(frame["task"]["id"], echo.id.to_string(), "{frame}");
    }
    socket
        .send(Message::Text(
            json!({"type": "subscribe", "kind": "echo", "logs": false})
                .to_string()
                .into(),
        ))
        .await
        .expect("send");
    let frames = frames_until(&mut socket, |f| f["type"] == "subscribed").await;
    let (ack, before) = frames.split_last().expect("ack");
    assert_eq!(ack["subscription"]["kind"], "echo", "{ack}");
    assert!(before.is_empty(), "nothing changed meanwhile: {before:#?}");
    let other = new_task(
        base,
        json!({"kind": "other", "payload": {}, "runAt": NEVER}),
    )
    .await;
    let echo = new_task(base, json!({"kind": "echo", "payload": {}, "runAt": NEVER})).await;
    let frames = frames_until(&mut socket, |f| is_event(f, echo.id, 1)).await;
    for frame in &frames {
        assert_eq!(frame["task"]["kind"], "echo", "{frame}");
        assert_ne!(frame["task"]["id"], other.id.to_string(), "{frame}");
    }

    // A misspelt filter is refused by name, and the subscription stays as it was (ignored,
    // it would have widened the subscription to every task).
    socket
        .send(Message::Text(
            json!({"type": "subscribe", "task_id": other.id})
                .to_string()
                .into(),
        ))
        .await
        .expect("send");
    let frames = frames_until(&mut socket, |f| f["type"] == "error").await;
    let (error, before) = frames.split_last().expect("error");
    assert!(before.is_empty(), "{before:#?}");
    assert!(
        error["message"]
            .as_str()
            .unwrap_or("")
            .contains("`task_id`"),
        "{error}"
    );
    let other = new_task(
        base,
        json!({"kind": "other", "payload": {}, "runAt": NEVER}),
    )
    .await;
    let echo = new_task(base, json!({"kind": "echo", "payload": {}, "runAt": NEVER})).await;
    let frames = frames_until(&mut socket, |f| is_event(f, echo.id, 1)).await;
    for frame in &frames {
        assert_ne!(frame["task"]["id"], other.id.to_string(), "{frame}");
    }
}

#[tokio::test]
async fn an_interrupted_live_feed_sends_clients_away_to_refetch() {
    let orch = start(&[]).await;
    orch.register("echo-agent", "http://127.0.0.1:9", two_kinds())
        .await;
    let base = orch.base.as_str();
    let (mut socket, _) = subscribe(base, "logs=false").await;
    let probe = new_task(base, json!({"kind": "echo", "payload": {}, "runAt": NEVER})).await;
    until_live(base, &mut socket, probe.id).await;

    // The feed's Postgres connection goes away (a failover, a restart): changes committed
    // until it listens again reach no one, so its clients are told to reconnect and refetch.
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND query ILIKE 'LISTEN%'",
    )
    .fetch_all(&orch.db.pool)
    .await
    .expect("terminate the listeners");
    assert!(!ended.is_empty(), "no listening connection found");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let close = loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(error))) => panic!("the connection failed instead of closing: {error}"),
            Ok(None) => panic!("the connection ended without a close frame"),
            Err(_) => panic!("the client was not told about the interruption"),
        }
    };
    let close = close.expect("a close frame with a code");
    assert_eq!(u16::from(close.code), 1012, "{close:?}");
    assert!(close.reason.contains("refetch"), "{close:?}");

    // A client that comes back is served once the feed listens again, and sees new changes.
    let (mut socket, _) = subscribe(base, "logs=false").await;
    let after = new_task(base, json!({"kind": "echo", "payload": {}, "runAt": NEVER})).await;
    frames_until(&mut socket, |f| is_event(f, after.id, 1)).await;
}

/// (version, event type) of the frames of `id`.
fn history(frames: &[Value], id: uuid::Uuid) -> Vec<(i64, String)> {
    frames
        .iter()
        .filter(|f| f["type"] == "task" && f["task"]["id"] == id.to_string())
        .map(|f| {
            (
                f["event"]["version"].as_i64().unwrap_or(0),
                f["event"]["type"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn every_replica_streams_the_changes_made_through_another() {
    let orch = start(&[]).await;
    let (other_base, other_shutdown) = support::serve(&orch.db.url, &[]).await;
    orch.register("echo-agent", "http://127.0.0.1:9", any_payload())
        .await;
    let (a, b) = (orch.base.as_str(), other_base.as_str());
    let (mut on_a, _) = subscribe(a, "kind=echo&logs=false").await;
    let (mut on_b, _) = subscribe(b, "kind=echo&logs=false").await;
    // Each replica's feed is listening, shown through that replica alone.
    let probe_a = new_task(a, json!({"kind": "echo", "payload": {}, "runAt": NEVER})).await;
    until_live(a, &mut on_a, probe_a.id).await;
    let probe_b = new_task(b, json!({"kind": "echo", "payload": {}, "runAt": NEVER})).await;
    until_live(b, &mut on_b, probe_b.id).await;

    // Created and changed through B: a client of A sees every change.
    let task = new_task(b, json!({"kind": "echo", "payload": {}, "runAt": NEVER})).await;
    operator_call(
        b,
        Method::PATCH,
        &format!("/task/{}", task.id),
        Some(json!({"ifVersion": 1, "priority": 5})),
    )
    .await;
    operator_call(b, Method::POST, &format!("/task/{}/cancel", task.id), None).await;
    let frames = frames_until(&mut on_a, |f| is_event(f, task.id, 3)).await;
    assert_eq!(
        history(&frames, task.id),
        [
            (1, "created".to_owned()),
            (2, "patched".to_owned()),
            (3, "cancelled".to_owned())
        ]
    );
    let last = frames.last().expect("frame");
    assert_eq!(last["task"]["status"], "cancelled");
    assert_eq!(last["task"]["priority"], 5);

    // And the other way round.
    let task = new_task(a, json!({"kind": "echo", "payload": {}, "runAt": NEVER})).await;
    operator_call(a, Method::POST, &format!("/task/{}/cancel", task.id), None).await;
    let frames = frames_until(&mut on_b, |f| is_event(f, task.id, 2)).await;
    assert_eq!(
        history(&frames, task.id),
        [(1, "created".to_owned()), (2, "cancelled".to_owned())]
    );
    other_shutdown.cancel();
}
