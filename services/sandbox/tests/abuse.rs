//! Escape and abuse attempts against the real engine: each fails cleanly, names what was
//! wrong, and leaves the session and the service working.

mod common;

use std::time::Duration;

use autonoma_common::auth::encode_basic;
use common::{PASS, Service, USER, start, start_with};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn problem(service: &Service, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
    match method {
        "GET" => service.get(path).await,
        _ => service.post(path, body).await,
    }
}

/// The service and the session still answer.
async fn still_healthy(service: &Service, id: &str) {
    let out = service.exec(id, "echo still here").await;
    assert_eq!(out["stdout"], "still here\n", "{out}");
    let ready = service
        .http
        .get(service.url("/health/ready"))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), StatusCode::OK);
}

#[tokio::test]
async fn paths_outside_the_workspace_are_refused() {
    let (_env, service) = start().await;
    let id = service.create("empty").await;
    for (path, status, kind) in [
        ("../x", StatusCode::UNPROCESSABLE_ENTITY, "path-parent"),
        (
            "a/../../etc/passwd",
            StatusCode::UNPROCESSABLE_ENTITY,
            "path-parent",
        ),
        (
            "/etc/passwd",
            StatusCode::UNPROCESSABLE_ENTITY,
            "path-absolute",
        ),
    ] {
        for (method, route, body) in [
            (
                "GET",
                format!("/api/sessions/{id}/fs/read?path={path}"),
                json!({}),
            ),
            (
                "GET",
                format!("/api/sessions/{id}/fs/list?path={path}"),
                json!({}),
            ),
            (
                "POST",
                format!("/api/sessions/{id}/fs/write"),
                json!({"path": path, "content": "pwned"}),
            ),
        ] {
            let (got, body) = problem(&service, method, &route, body).await;
            assert_eq!(got, status, "{method} {route}: {body}");
            assert!(
                body["type"].as_str().is_some_and(|t| t.ends_with(kind)),
                "{method} {route}: {body}"
            );
            assert_eq!(body["errors"][0]["field"], "/path", "{body}");
        }
    }
    let (status, body) = service
        .post(
            &format!("/api/sessions/{id}/exec"),
            json!({"cmd": "pwd", "cwd": "../.."}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["field"], "/cwd", "{body}");
    still_healthy(&service, &id).await;
}

#[tokio::test]
async fn symlinks_made_inside_the_container_do_not_lead_out() {
    let (env, service) = start().await;
    let id = service.create("empty").await;
    let out = service
        .exec(
            &id,
            "ln -s /etc/passwd leak && ln -s / root && ln -s ../.. up && ls",
        )
        .await;
    assert_eq!(out["exitCode"], 0, "{out}");
    let host_passwd = std::fs::read_to_string("/etc/passwd").expect("host passwd");
    for path in ["leak", "root/etc/passwd", "up/sandbox"] {
        let (status, body) = service
            .get(&format!("/api/sessions/{id}/fs/read?path={path}"))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        assert!(
            body["type"]
                .as_str()
                .is_some_and(|t| t.ends_with("path-escapes")),
            "{body}"
        );
        assert!(!body.to_string().contains("root:x:0:0"), "{body}");
    }
    let outside = env.dir.path().join("escaped");
    let (status, body) = service
        .post(
            &format!("/api/sessions/{id}/fs/write"),
            json!({"path": format!("root{}", outside.display()), "content": "pwned"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        !outside.exists(),
        "a write went through a symlink out of the workspace"
    );
    let (status, body) = service
        .post(
            &format!("/api/sessions/{id}/fs/write"),
            json!({"path": "leak", "content": "pwned"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        std::fs::read_to_string("/etc/passwd").expect("host passwd"),
        host_passwd
    );
    // Inside the container the link only reaches the container's own /etc/passwd.
    let out = service.exec(&id, "cat leak").await;
    assert!(
        !out["stdout"]
            .as_str()
            .unwrap_or_default()
            .contains("root:x:0:0:root:/root:/bin/bash")
    );
    still_healthy(&service, &id).await;
}

#[tokio::test]
async fn a_fork_bomb_hits_the_pids_limit_and_is_cleaned_up() {
    let (_env, service) = start().await;
    let id = service.create("empty").await;
    let out = service
        .exec_with(
            &id,
            json!({"cmd": "bomb() { bomb | bomb & }; bomb; sleep 30", "timeoutSec": 5}),
        )
        .await;
    assert_eq!(out["timedOut"], true, "{out}");
    let out = service.exec(&id, "ps | wc -l").await;
    let processes: u32 = out["stdout"]
        .as_str()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(u32::MAX);
    assert!(processes < 10, "the bomb's processes outlived it: {out}");
    still_healthy(&service, &id).await;
}

#[tokio::test]
async fn a_memory_hog_is_oom_killed_and_reported() {
    let (_env, service) = start_with(&[("SANDBOX_MEMORY_MB", "64")]).await;
    let id = service.create("empty").await;
    let out = service
        .exec_with(
            &id,
            json!({"cmd": "head -c 300000000 /dev/zero | tr '\\0' a | sort > /dev/null", "timeoutSec": 60}),
        )
        .await;
    assert_eq!(out["oomKilled"], true, "{out}");
    let state = service.state(&id).await;
    assert!(state["oomKills"].as_i64().unwrap_or(0) >= 1, "{state}");
    still_healthy(&service, &id).await;
}

#[tokio::test]
async fn a_command_past_its_timeout_is_killed_with_its_children() {
    let (_env, service) = start().await;
    let id = service.create("empty").await;
    let started = std::time::Instant::now();
    let out = service
        .exec_with(
            &id,
            json!({"cmd": "sleep 1000 & sleep 1001 & (sleep 1002 &) ; echo started; wait", "timeoutSec": 2}),
        )
        .await;
    assert_eq!(out["timedOut"], true, "{out}");
    assert_eq!(out["stdout"], "started\n", "{out}");
    assert!(started.elapsed() < Duration::from_secs(30));
    let ps = service.exec(&id, "ps -o args").await;
    assert!(
        !ps["stdout"]
            .as_str()
            .unwrap_or_default()
            .contains("sleep 100"),
        "children outlived the timeout: {ps}"
    );
    let (status, body) = service
        .post(
            &format!("/api/sessions/{id}/exec"),
            json!({"cmd": "true", "timeoutSec": 121}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["field"], "/timeoutSec", "{body}");
    still_healthy(&service, &id).await;
}

#[tokio::test]
async fn the_container_has_no_network_out() {
    let listener = std::net::TcpListener::bind("0.0.0.0:0").expect("listener");
    let port = listener.local_addr().expect("addr").port();
    let (_env, service) = start().await;
    let id = service.create("empty").await;
    let out = service.exec(&id, "ls /sys/class/net").await;
    assert_eq!(out["stdout"], "lo\n", "{out}");
    // The host's address on its own network, where the listener above accepts.
    let host = local_address();
    let out = service
        .exec(
            &id,
            &format!("echo hi | nc -w 2 {host} {port}; echo exit=$?"),
        )
        .await;
    assert!(
        out["stdout"].as_str().is_some_and(|s| s.contains("exit=1")),
        "the container reached {host}:{port}: {out}"
    );
    listener.set_nonblocking(true).expect("nonblocking");
    assert!(
        listener.accept().is_err(),
        "a connection from the container arrived"
    );
    still_healthy(&service, &id).await;
}

/// This machine's first non-loopback IPv4 address.
fn local_address() -> String {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").expect("udp");
    // No packet is sent: connecting a UDP socket only picks the route.
    match socket
        .connect("192.0.2.1:9")
        .and_then(|()| socket.local_addr())
    {
        Ok(addr) if !addr.ip().is_loopback() && !addr.ip().is_unspecified() => {
            addr.ip().to_string()
        }
        _ => "10.0.0.1".to_owned(),
    }
}

#[tokio::test]
async fn a_session_cannot_read_another_sessions_workspace() {
    let (env, service) = start().await;
    let first = service.create("empty").await;
    let second = service.create("empty").await;
    service.write(&first, "secret.txt", "first's secret").await;
    let out = service
        .exec(
            &second,
            &format!(
                "cat /workspace/../{first}/workspace/secret.txt; ls /workspace/..; \
                 cat {}/{first}/workspace/secret.txt",
                env.workspaces().display()
            ),
        )
        .await;
    assert!(
        !out.to_string().contains("first's secret"),
        "the second session read the first's file: {out}"
    );
    let (status, body) = service
        .get(&format!(
            "/api/sessions/{second}/fs/read?path=../{first}/workspace/secret.txt"
        ))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    still_healthy(&service, &second).await;
}

#[tokio::test]
async fn output_is_cut_at_the_limit_and_secrets_are_masked() {
    let (_env, service) = start_with(&[
        ("SANDBOX_OUTPUT_LIMIT", "1024"),
        ("SANDBOX_REDACT", "sk-test-very-secret-value"),
    ])
    .await;
    let id = service.create("empty").await;
    let out = service.exec(&id, "yes | head -c 100000").await;
    assert_eq!(out["truncated"], true, "{out}");
    let stdout = out["stdout"].as_str().expect("stdout");
    assert!(stdout.starts_with("y\ny\n"), "{stdout}");
    assert!(
        stdout.ends_with("…[truncated: 98976 more bytes]"),
        "{}",
        &stdout[stdout.len().saturating_sub(80)..]
    );
    assert!(stdout.len() < 1100, "{} bytes came back", stdout.len());

    let secret_cmd = "echo token=sk-test-very-secret-value; echo AKIAABCDEFGHIJKLMNOP >&2";
    let out = service.exec(&id, secret_cmd).await;
    assert!(
        !out.to_string().contains("sk-test-very-secret-value"),
        "{out}"
    );
    assert!(!out.to_string().contains("AKIAABCDEFGHIJKLMNOP"), "{out}");
    assert!(
        out["stdout"]
            .as_str()
            .is_some_and(|s| s.contains("[REDACTED]")),
        "{out}"
    );
    let (_, calls) = service.get(&format!("/api/sessions/{id}/tool-calls")).await;
    assert!(
        !calls.to_string().contains("sk-test-very-secret-value"),
        "the recorded arguments kept the secret: {calls}"
    );
    service
        .write(&id, "config.env", "API_KEY=sk-test-very-secret-value\n")
        .await;
    let (_, file) = service
        .get(&format!("/api/sessions/{id}/fs/read?path=config.env"))
        .await;
    assert_eq!(file["content"], "API_KEY=[REDACTED]\n", "{file}");
}

/// Answers every request with the request head it received, so the test sees what the
/// preview forwarded.
const ECHO_HEAD: &str = r#"#!/bin/sh
head=""
while IFS= read -r line; do
  line=$(printf '%s' "$line" | tr -d '\r')
  [ -z "$line" ] && break
  head="$head$line
"
done
printf 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s' "${#head}" "$head"
"#;

#[tokio::test]
async fn the_preview_rewrites_host_and_keeps_the_operators_credentials() {
    let (_env, service) = start().await;
    let id = service.create("empty").await;
    service.write(&id, "echo-head.sh", ECHO_HEAD).await;
    let out = service.exec(&id, "chmod +x echo-head.sh").await;
    assert_eq!(out["exitCode"], 0, "{out}");
    let (status, dev) = service
        .post(
            &format!("/api/sessions/{id}/dev/start"),
            json!({"cmd": "nc -ll -p 9100 -e /workspace/echo-head.sh", "port": 9100}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{dev}");
    let head = service
        .preview_when_up(&id, "/some/page?x=1&auth=b3BlcmF0b3I6eA")
        .await;
    let lines: Vec<&str> = head.lines().collect();
    assert_eq!(
        lines.first(),
        Some(&"GET /some/page?x=1 HTTP/1.1"),
        "{head}"
    );
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("host: localhost:9100"), "{head}");
    assert!(
        lower.contains(&format!(
            "x-forwarded-prefix: /api/sessions/{id}/preview/proxy"
        )),
        "{head}"
    );
    assert!(
        !lower.contains("authorization"),
        "credentials forwarded: {head}"
    );
    assert!(!lower.contains("x-internal-key"), "{head}");
    assert!(
        !head.contains("b3BlcmF0b3I6eA"),
        "?auth= forwarded (x-original-uri?): {head}"
    );

    // What a page opened at `…?auth=` loads names that address as its Referer; the dev server
    // gets it without the credentials, and never the preview cookie.
    let page = service.url(&format!(
        "/api/sessions/{id}/preview/proxy/?auth={}&tab=2",
        encode_basic(USER, PASS)
    ));
    let response = service
        .http
        .get(service.url(&format!("/api/sessions/{id}/preview/proxy/app.js")))
        .basic_auth(USER, Some(PASS))
        .header("referer", &page)
        .header("cookie", "autonoma_preview=1.abc; theme=dark")
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::OK);
    let head = response.text().await.expect("body");
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains(&format!(
            "referer: {}",
            service
                .url(&format!("/api/sessions/{id}/preview/proxy/?tab=2"))
                .to_ascii_lowercase()
        )),
        "{head}"
    );
    assert!(!head.contains(&encode_basic(USER, PASS)), "{head}");
    assert!(!lower.contains("cookie"), "{head}");
}
