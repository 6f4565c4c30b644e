//! A session's whole life against the real engine: create, write, run, serve, preview, watch
//! the log, stop, delete; the preview carrying a WebSocket; the preview's cookie opening a
//! page's own files; the list of sessions; the cap on sessions; the reaper.

mod common;

use std::time::Duration;

use autonoma_common::auth::encode_basic;
use common::{KEY, PASS, USER, container_exists, read, start, start_with};
use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use sandbox::preview::cookie::{self, PreviewCookies};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[tokio::test]
async fn a_session_is_written_run_served_watched_and_deleted() {
    let (_env, service) = start().await;
    let (status, created) = service
        .post("/api/sessions", json!({"template": "static"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["sessionId"].as_str().expect("sessionId").to_owned();
    assert!(
        created["previewUrl"]
            .as_str()
            .is_some_and(|url| url.ends_with(&format!("/api/sessions/{id}/preview/proxy/"))),
        "{created}"
    );

    let state = service.state(&id).await;
    assert_eq!(state["status"], "ready", "{state}");
    assert_eq!(state["template"], "static");
    assert_eq!(state["snapshot"]["framework"], "static", "{state}");
    let container = state["container"]["id"]
        .as_str()
        .expect("container id")
        .to_owned();
    assert!(container_exists(&container).await);
    assert_eq!(
        state["resources"]["memoryLimit"],
        256 * 1024 * 1024,
        "{state}"
    );

    // The log stream, opened before anything runs, with browser-style credentials.
    let mut request = service
        .url(&format!(
            "/api/sessions/{id}/logs?auth={}",
            encode_basic(USER, PASS)
        ))
        .replace("http://", "ws://")
        .into_client_request()
        .expect("ws request");
    request.headers_mut().remove("authorization");
    let (mut logs, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("opening the log stream");

    let written = service
        .write(&id, "site/hello.txt", "hello, sandbox\n")
        .await;
    assert_eq!(written["created"], true, "{written}");
    let (status, listing) = service
        .get(&format!("/api/sessions/{id}/fs/list?path=site"))
        .await;
    assert_eq!(status, StatusCode::OK, "{listing}");
    assert_eq!(
        listing["entries"],
        json!([{"name": "hello.txt", "path": "site/hello.txt", "type": "file", "size": 15}])
    );
    let (status, file) = service
        .get(&format!("/api/sessions/{id}/fs/read?path=site/hello.txt"))
        .await;
    assert_eq!(status, StatusCode::OK, "{file}");
    assert_eq!(file["content"], "hello, sandbox\n");

    let out = service
        .exec_with(
            &id,
            json!({"cmd": "cat hello.txt; echo oops >&2; id -u; exit 3", "cwd": "site"}),
        )
        .await;
    assert_eq!(out["exitCode"], 3, "{out}");
    assert_eq!(out["stdout"], "hello, sandbox\n1000\n", "{out}");
    assert_eq!(out["stderr"], "oops\n", "{out}");
    assert_eq!(out["timedOut"], false);

    let (status, dev) = service
        .post(
            &format!("/api/sessions/{id}/dev/start"),
            json!({"cmd": "httpd -f -v -p 8080 -h /workspace", "port": 8080}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{dev}");
    let page = service.preview_when_up(&id, "/site/hello.txt").await;
    assert_eq!(page, "hello, sandbox\n");
    let index = service.preview_when_up(&id, "/").await;
    assert!(index.contains("Hello from the sandbox"), "{index}");
    let state = service.state(&id).await;
    assert_eq!(state["container"]["port"], 8080, "{state}");
    assert_eq!(state["dev"]["running"], true, "{state}");

    let (status, fetched) = service
        .post(
            &format!("/api/sessions/{id}/http/fetch"),
            json!({"url": "http://localhost:8080/site/hello.txt"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{fetched}");
    assert_eq!(fetched["status"], 200);
    assert_eq!(fetched["body"], "hello, sandbox\n");
    let (status, refused) = service
        .post(
            &format!("/api/sessions/{id}/http/fetch"),
            json!({"url": "http://example.com/"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["errors"][0]["field"], "/url", "{refused}");

    // The stream carried the command's output, the dev server's request log and the tools.
    let mut seen: Vec<Value> = Vec::new();
    let wanted = |seen: &[Value]| {
        let has = |stream: &str, text: &str| {
            seen.iter().any(|l| {
                l["stream"] == stream && l["line"].as_str().is_some_and(|s| s.contains(text))
            })
        };
        has("stdout", "hello, sandbox")
            && has("stderr", "oops")
            && has("stderr", "response:200")
            && has("tool", "exec")
            && has("tool", "dev_start")
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !wanted(&seen) {
        let frame = tokio::time::timeout_at(deadline, logs.next())
            .await
            .unwrap_or_else(|_| panic!("log lines missing; got {seen:#?}"))
            .expect("stream open")
            .expect("frame");
        if let Message::Text(text) = frame {
            seen.push(serde_json::from_str(&text).expect("JSON line"));
        }
    }
    assert!(
        seen.iter()
            .all(|l| l["ts"].is_string() && l["seq"].is_u64())
    );

    let (status, stopped) = service
        .post(&format!("/api/sessions/{id}/dev/stop"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{stopped}");
    assert_eq!(stopped["ok"], true);
    let (status, body) = service
        .get(&format!("/api/sessions/{id}/preview/proxy/"))
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(
        body["type"].as_str().map(|t| t.ends_with("no-dev-server")),
        Some(true),
        "{body}"
    );

    let (status, calls) = service.get(&format!("/api/sessions/{id}/tool-calls")).await;
    assert_eq!(status, StatusCode::OK, "{calls}");
    let tools: Vec<&str> = calls
        .as_array()
        .expect("calls")
        .iter()
        .filter_map(|c| c["tool"].as_str())
        .collect();
    for tool in [
        "fs_write",
        "fs_list",
        "fs_read",
        "exec",
        "dev_start",
        "http_fetch",
        "dev_stop",
    ] {
        assert!(tools.contains(&tool), "{tool} not recorded: {calls}");
    }
    let exec = calls
        .as_array()
        .and_then(|c| c.iter().find(|c| c["tool"] == "exec"))
        .expect("exec call");
    assert_eq!(exec["via"], "http");
    assert_eq!(exec["ok"], true);
    assert_eq!(exec["summary"], "exit 3", "{exec}");

    assert_eq!(
        service.delete(&format!("/api/sessions/{id}")).await,
        StatusCode::NO_CONTENT
    );
    assert!(
        !container_exists(&container).await,
        "the container outlived its session"
    );
    let state = service.state(&id).await;
    assert_eq!(state["status"], "deleted", "{state}");
    let (status, gone) = service.get(&format!("/api/sessions/{id}/fs/list")).await;
    assert_eq!(status, StatusCode::GONE, "{gone}");
    // The log stream ends with the session.
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(frame)) = logs.next().await {
            if matches!(frame, Message::Close(_)) {
                return;
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the log stream stayed open after the delete"
    );
}

/// A WebSocket server in the container, reached through the preview proxy: busybox `nc`
/// hands each connection to a script that answers the handshake, sends `hello`, waits for
/// the client's frame and sends `bye`.
const WS_SERVER: &str = r#"#!/bin/sh
while IFS= read -r line; do
  line=$(printf '%s' "$line" | tr -d '\r')
  [ -z "$line" ] && break
  case "$line" in
    [Ss]ec-[Ww]eb[Ss]ocket-[Kk]ey:*) key=$(printf '%s' "${line#*:}" | tr -d ' ') ;;
  esac
done
hex=$(printf '%s' "${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11" | sha1sum | cut -d' ' -f1)
accept=$(printf "$(printf '%s' "$hex" | sed 's/../\\x&/g')" | base64)
printf 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n' "$accept"
printf '\201\005hello'
head -c 2 > /dev/null
printf '\201\003bye'
sleep 1
"#;

#[tokio::test]
async fn a_websocket_goes_through_the_preview() {
    let (_env, service) = start().await;
    let id = service.create("empty").await;
    service.write(&id, "ws.sh", WS_SERVER).await;
    let out = service.exec(&id, "chmod +x ws.sh").await;
    assert_eq!(out["exitCode"], 0, "{out}");
    let (status, dev) = service
        .post(
            &format!("/api/sessions/{id}/dev/start"),
            json!({"cmd": "nc -ll -p 9000 -e /workspace/ws.sh", "port": 9000}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{dev}");

    let url = service
        .url(&format!(
            "/api/sessions/{id}/preview/proxy/socket?auth={}",
            encode_basic(USER, PASS)
        ))
        .replace("http://", "ws://");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut socket = loop {
        match tokio_tungstenite::connect_async(url.as_str()).await {
            Ok((socket, response)) => {
                assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
                break socket;
            }
            Err(error) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no WebSocket through the preview within 15 s: {error}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let first = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .expect("a frame in time")
        .expect("open")
        .expect("frame");
    assert_eq!(first, Message::text("hello"));
    socket
        .send(Message::text("hi from the browser"))
        .await
        .expect("sending");
    let second = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .expect("a frame in time")
        .expect("open")
        .expect("frame");
    assert_eq!(second, Message::text("bye"));
}

#[tokio::test]
async fn sessions_beyond_the_cap_are_refused_with_429() {
    let (_env, service) = start_with(&[("SANDBOX_MAX_SESSIONS", "1")]).await;
    let first = service.create("empty").await;
    let (status, problem) = service.post("/api/sessions", json!({})).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{problem}");
    assert!(
        problem["type"]
            .as_str()
            .is_some_and(|t| t.ends_with("too-many-sessions")),
        "{problem}"
    );
    assert_eq!(problem["limit"], 1);
    let (status, problem) = service
        .post("/api/sessions", json!({"template": "nextjs"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "/template", "{problem}");
    assert_eq!(
        service.delete(&format!("/api/sessions/{first}")).await,
        StatusCode::NO_CONTENT
    );
    service.create("empty").await;
}

#[tokio::test]
async fn idle_sessions_are_reaped() {
    let (_env, service) = start_with(&[("SANDBOX_IDLE_TIMEOUT", "2s")]).await;
    let id = service.create("empty").await;
    let container = service.state(&id).await["container"]["id"]
        .as_str()
        .expect("container")
        .to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let state = service.state(&id).await;
        if state["status"] == "deleted" {
            assert!(
                state["statusReason"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("idle for")),
                "{state}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not reaped: {state}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(!container_exists(&container).await);
}

#[tokio::test]
async fn replacing_a_file_takes_a_checkpoint_that_restores_it() {
    let (_env, service) = start().await;
    let id = service.create("static").await;
    let first = service.write(&id, "notes.txt", "first draft\n").await;
    assert_eq!(
        first["checkpoint"],
        Value::Null,
        "a new file needs no checkpoint"
    );
    let second = service.write(&id, "notes.txt", "second draft\n").await;
    let checkpoint = second["checkpoint"]["id"]
        .as_str()
        .expect("a checkpoint before the replace")
        .to_owned();
    assert!(
        second["checkpoint"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("notes.txt")),
        "{second}"
    );
    let out = service.exec(&id, "echo stray > stray.txt").await;
    assert_eq!(out["exitCode"], 0, "{out}");

    let (status, list) = service
        .get(&format!("/api/sessions/{id}/checkpoints"))
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list[0]["id"], checkpoint.as_str(), "{list}");

    let (status, restored) = service
        .post(
            &format!("/api/sessions/{id}/checkpoints/{checkpoint}/restore"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{restored}");
    let (_, file) = service
        .get(&format!("/api/sessions/{id}/fs/read?path=notes.txt"))
        .await;
    assert_eq!(file["content"], "first draft\n", "{file}");
    // Files added since are gone, and what was restored still belongs to the session's user.
    let out = service
        .exec(
            &id,
            "test -e stray.txt && echo stray; echo more >> notes.txt && echo appended",
        )
        .await;
    assert_eq!(out["stdout"], "appended\n", "{out}");

    let (status, problem) = service
        .post(
            &format!("/api/sessions/{id}/checkpoints/not-a-sha/restore"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let (status, problem) = service
        .post(
            &format!("/api/sessions/{id}/checkpoints/{}/restore", "ab".repeat(20)),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
}

#[tokio::test]
async fn sessions_are_listed_newest_first_a_page_at_a_time() {
    let (_env, service) = start().await;
    let first = service.create("empty").await;
    let second = service.create("static").await;

    let (status, page) = service.get("/api/sessions").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let ids: Vec<&str> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|s| s["sessionId"].as_str())
        .collect();
    assert_eq!(ids, [second.as_str(), first.as_str()], "{page}");
    assert_eq!(page["nextCursor"], Value::Null, "{page}");
    let newest = &page["items"][0];
    assert_eq!(newest["template"], "static", "{newest}");
    assert_eq!(newest["status"], "ready", "{newest}");
    assert_eq!(newest["statusReason"], Value::Null, "{newest}");
    assert_eq!(newest["deletedAt"], Value::Null, "{newest}");
    assert!(
        newest["previewUrl"]
            .as_str()
            .is_some_and(|url| url.ends_with(&format!("/api/sessions/{second}/preview/proxy/"))),
        "{newest}"
    );
    for field in ["createdAt", "lastActiveAt"] {
        let text = newest[field].as_str().unwrap_or_default();
        assert!(
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .is_ok(),
            "{field} is not RFC 3339: {newest}"
        );
    }

    // One at a time: the cursor leads to the older session, and that page is the last.
    let (status, one) = service.get("/api/sessions?limit=1").await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["items"].as_array().map(Vec::len), Some(1), "{one}");
    assert_eq!(one["items"][0]["sessionId"], second.as_str(), "{one}");
    let cursor = one["nextCursor"].as_str().expect("a next page").to_owned();
    let (status, two) = service
        .get(&format!("/api/sessions?limit=1&cursor={cursor}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{two}");
    assert_eq!(two["items"].as_array().map(Vec::len), Some(1), "{two}");
    assert_eq!(two["items"][0]["sessionId"], first.as_str(), "{two}");
    assert_eq!(two["nextCursor"], Value::Null, "{two}");

    // Filtered by status once one is deleted; an internal key works as well as Basic Auth.
    assert_eq!(
        service.delete(&format!("/api/sessions/{first}")).await,
        StatusCode::NO_CONTENT
    );
    let response = service
        .http
        .get(service.url("/api/sessions?status=deleted"))
        .header("x-internal-key", KEY)
        .send()
        .await
        .expect("GET");
    let (status, deleted) = read(response).await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert_eq!(
        deleted["items"].as_array().map(Vec::len),
        Some(1),
        "{deleted}"
    );
    let gone = &deleted["items"][0];
    assert_eq!(gone["sessionId"], first.as_str(), "{deleted}");
    assert_eq!(gone["status"], "deleted", "{deleted}");
    assert_eq!(gone["statusReason"], "deleted through the API", "{deleted}");
    assert!(gone["deletedAt"].is_string(), "{deleted}");
    let (status, ready) = service.get("/api/sessions?status=ready").await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    let ids: Vec<&str> = ready["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|s| s["sessionId"].as_str())
        .collect();
    assert_eq!(ids, [second.as_str()], "{ready}");
    let (_, failed) = service.get("/api/sessions?status=failed").await;
    assert_eq!(failed["items"], json!([]), "{failed}");

    // Bad input names the parameter.
    for (query, field) in [
        ("status=gone", "status"),
        ("status=", "status"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=ten", "limit"),
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=dGFzazox", "cursor"),
    ] {
        let (status, problem) = service.get(&format!("/api/sessions?{query}")).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query}: {problem}"
        );
        assert_eq!(problem["errors"][0]["field"], field, "{query}: {problem}");
    }
    let (status, problem) = service.get("/api/sessions?colour=red").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    let response = service
        .http
        .get(service.url("/api/sessions"))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // Documented in the OpenAPI document.
    let (status, openapi) = service.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let list = &openapi["paths"]["/api/sessions"]["get"];
    let params: Vec<&str> = list["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(params, ["status", "limit", "cursor"], "{list}");
    assert!(list["responses"]["200"].is_object(), "{list}");
}

/// A client that keeps no cookies and follows no redirects, so the test sees each answer.
fn bare_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The `name=value` of the preview cookie a response sets.
fn preview_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{}=", cookie::NAME)))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn the_preview_cookie_opens_the_pages_own_files_of_that_session_only() {
    let (_env, service) = start().await;
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let id = service.create("static").await;
        let (status, dev) = service
            .post(
                &format!("/api/sessions/{id}/dev/start"),
                json!({"cmd": "httpd -f -p 8080 -h /workspace", "port": 8080}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{dev}");
        service.preview_when_up(&id, "/style.css").await;
        sessions.push(id);
    }
    let (a, b) = (&sessions[0], &sessions[1]);
    let preview =
        |id: &str, path: &str| service.url(&format!("/api/sessions/{id}/preview/proxy{path}"));
    let http = bare_client();
    let auth = encode_basic(USER, PASS);

    // The first request, as the dashboard's iframe makes it, authenticates with ?auth= and
    // gets the cookie: for this session's preview only, out of the page's reach, no secret.
    let response = http
        .get(format!("{}?auth={auth}", preview(a, "/")))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::OK);
    let set_cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    for attribute in [
        format!("Path=/api/sessions/{a}/preview/"),
        "HttpOnly".to_owned(),
        "Secure".to_owned(),
        "SameSite=None".to_owned(),
        "Partitioned".to_owned(),
        "Max-Age=43200".to_owned(),
    ] {
        assert!(set_cookie.contains(&attribute), "{attribute}: {set_cookie}");
    }
    assert!(
        !set_cookie.contains(PASS) && !set_cookie.contains(&auth),
        "{set_cookie}"
    );
    let cookie_a = preview_cookie(&response).expect("the preview cookie");
    let page = response.text().await.expect("body");
    assert!(page.contains("Hello from the sandbox"), "{page}");

    // The page's stylesheet comes with the cookie alone, and needs nothing else.
    let response = http
        .get(preview(a, "/style.css"))
        .header("cookie", format!("theme=dark; {cookie_a}"))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        preview_cookie(&response),
        None,
        "no new cookie for a cookie"
    );
    assert!(response.text().await.expect("body").contains("font-family"));

    // Session A's cookie does not open session B, nor does a tampered or expired one, nor
    // nothing at all: each is the usual Basic Auth challenge.
    let (expires, signature) = cookie_a
        .split_once('=')
        .and_then(|(_, token)| token.split_once('.'))
        .expect("<expiry>.<signature>");
    let later: i64 = expires.parse::<i64>().expect("expiry") + 3600;
    let first = if signature.starts_with('A') { "B" } else { "A" };
    let flipped = format!("{first}{}", &signature[1..]);
    let keys = PreviewCookies::new(common::KEY.as_bytes());
    let expired = keys.issue(
        a.parse().expect("uuid"),
        time::OffsetDateTime::now_utc() - cookie::LIFETIME - time::Duration::minutes(1),
    );
    let refused = [
        (b.as_str(), cookie_a.clone()),
        (a.as_str(), format!("{}={later}.{signature}", cookie::NAME)),
        (a.as_str(), format!("{}={expires}.{flipped}", cookie::NAME)),
        (a.as_str(), format!("{}={expired}", cookie::NAME)),
        (a.as_str(), format!("{}=", cookie::NAME)),
    ];
    for (id, cookie) in refused {
        let response = http
            .get(preview(id, "/style.css"))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{id} {cookie}");
        assert!(response.headers().contains_key("www-authenticate"));
    }
    let response = http
        .get(preview(a, "/style.css"))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().contains_key("www-authenticate"));
    // The cookie opens nothing but the preview.
    let response = http
        .get(service.url(&format!("/api/sessions/{a}/state")))
        .header("cookie", &cookie_a)
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // Basic Auth in the header gets a cookie too, its own.
    let response = http
        .get(preview(b, "/"))
        .basic_auth(USER, Some(PASS))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::OK);
    let cookie_b = preview_cookie(&response).expect("a cookie");
    assert_ne!(cookie_a, cookie_b);

    // A browser navigating with ?auth= is sent on to the address without it, cookie in hand,
    // so the page's own address never holds the credentials.
    let response = http
        .get(format!("{}?x=1&auth={auth}", preview(a, "/index.html")))
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok()),
        Some(format!("/api/sessions/{a}/preview/proxy/index.html?x=1").as_str())
    );
    let cookie = preview_cookie(&response).expect("the cookie with the redirect");
    let response = http
        .get(preview(a, "/index.html?x=1"))
        .header("sec-fetch-mode", "navigate")
        .header("cookie", &cookie)
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::OK);
}
