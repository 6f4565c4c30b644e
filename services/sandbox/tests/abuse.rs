//! Escape and abuse attempts against the real engine: each fails cleanly, names what was
//! wrong, and leaves the session and the service working.

mod common;

use std::time::Duration;

use autonoma_common::auth::encode_basic;
use common::{PASS, Service, USER, start, start_with};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

async fn problem(service: &Service, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
    match method {
        "GET" => service.get(path).await,
        _ => service.post(path, body).await,
    }
}

/// The service and the session still answer. Readiness gives each dependency 2 s, which a
/// loaded machine may miss once: it is asked again for a while.
async fn still_healthy(service: &Service, id: &str) {
    let out = service.exec(id, "echo still here").await;
    assert_eq!(out["stdout"], "still here\n", "{out}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ready = service
            .http
            .get(service.url("/health/ready"))
            .send()
            .await
            .expect("ready");
        let status = ready.status();
        if status == StatusCode::OK {
            return;
        }
        let body = ready.text().await.unwrap_or_default();
        assert!(
            tokio::time::Instant::now() < deadline,
            "not ready: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
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

// ---------------------------------------------------------------------------------------
// Path tricks, symbolic links, device files, secrets, and other sessions' files.

/// `value` with every byte but the unreserved ones percent-encoded, so the service decodes
/// exactly `value` from a query string.
fn query(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

async fn fs_read(service: &Service, id: &str, path: &str) -> (StatusCode, Value) {
    service
        .get(&format!("/api/sessions/{id}/fs/read?path={}", query(path)))
        .await
}

async fn fs_list(service: &Service, id: &str, path: &str) -> (StatusCode, Value) {
    service
        .get(&format!("/api/sessions/{id}/fs/list?path={}", query(path)))
        .await
}

async fn fs_write(service: &Service, id: &str, path: &str, content: &str) -> (StatusCode, Value) {
    service
        .post(
            &format!("/api/sessions/{id}/fs/write"),
            json!({"path": path, "content": content}),
        )
        .await
}

async fn exec_in(service: &Service, id: &str, cwd: &str, cmd: &str) -> (StatusCode, Value) {
    service
        .post(
            &format!("/api/sessions/{id}/exec"),
            json!({"cmd": cmd, "cwd": cwd}),
        )
        .await
}

/// Asserts a problem answer: its status, the end of its type, and the field it names.
#[track_caller]
fn assert_problem(what: &str, answer: &(StatusCode, Value), status: u16, kind: &str, field: &str) {
    let (got, body) = answer;
    assert_eq!(got.as_u16(), status, "{what}: {body}");
    assert!(
        body["type"].as_str().is_some_and(|t| t.ends_with(kind)),
        "{what}: expected a {kind} problem: {body}"
    );
    assert_eq!(body["errors"][0]["field"], field, "{what}: {body}");
}

/// The workspace of a session on the host.
fn workspace_of(env: &common::Env, id: &str) -> std::path::PathBuf {
    env.workspaces().join(id).join("workspace")
}

/// A directory of the host beside the workspaces, with a marker file, that nothing may read or
/// write through the sandbox.
fn outside_dir(env: &common::Env) -> (std::path::PathBuf, String) {
    let dir = env.dir.path().join("outside");
    let marker = format!("HOST-MARKER-{}", uuid::Uuid::new_v4());
    std::fs::create_dir_all(&dir).expect("outside dir");
    std::fs::write(dir.join("secret"), &marker).expect("outside secret");
    std::fs::write(dir.join("host-only.txt"), &marker).expect("outside file");
    (dir, marker)
}

/// The names in a host directory, sorted.
fn names_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn path_tricks_on_every_file_tool_are_refused_or_stay_inside() {
    let (env, service) = start().await;
    let id = service.create("empty").await;
    let root = workspace_of(&env, &id);
    service.write(&id, "sub/f.txt", "inside\n").await;
    let host_passwd = std::fs::read("/etc/passwd").expect("host passwd");

    // Refused by fs_read, fs_list, fs_write and exec's cwd alike, naming the field.
    let long_name = "n".repeat(256);
    let refused: Vec<(String, &str)> = [
        ("//etc/passwd", "path-absolute"),
        ("/", "path-absolute"),
        ("/workspace/sub/f.txt", "path-absolute"),
        ("/../etc", "path-absolute"),
        ("..", "path-parent"),
        ("../", "path-parent"),
        ("./..", "path-parent"),
        ("sub/..", "path-parent"),
        ("sub/../..", "path-parent"),
        ("sub/../../x", "path-parent"),
        ("a/b/../../../etc/passwd", "path-parent"),
        ("sub//..//..//etc", "path-parent"),
        ("sub/./../../etc", "path-parent"),
        ("sub/f.txt/..", "path-parent"),
        ("..//..//..//..//etc/passwd", "path-parent"),
        ("\0", "path-invalid"),
        ("sub/f.txt\0", "path-invalid"),
        ("sub/f.txt\0/../../etc", "path-invalid"),
        ("../\0", "path-invalid"),
        (&"x".repeat(4097), "path-invalid"),
        (&long_name, "path-invalid"),
        (&format!("sub/{long_name}/x"), "path-invalid"),
    ]
    .into_iter()
    .map(|(path, kind)| (path.to_owned(), kind))
    .collect();
    for (path, kind) in &refused {
        let shown = format!("{:?}", path.chars().take(40).collect::<String>());
        let answer = fs_read(&service, &id, path).await;
        assert_problem(&format!("fs_read {shown}"), &answer, 422, kind, "/path");
        let answer = fs_list(&service, &id, path).await;
        assert_problem(&format!("fs_list {shown}"), &answer, 422, kind, "/path");
        let answer = fs_write(&service, &id, path, "pwned").await;
        assert_problem(&format!("fs_write {shown}"), &answer, 422, kind, "/path");
        let answer = exec_in(&service, &id, path, "pwd").await;
        assert_problem(&format!("exec cwd {shown}"), &answer, 422, kind, "/cwd");
    }

    // Query strings as a client might send them: decoded once, then judged like any path.
    for (raw, status, kind) in [
        ("%2e%2e%2fetc%2fpasswd", 422, "path-parent"),
        ("..%2F..%2Fetc%2Fpasswd", 422, "path-parent"),
        ("%2E%2E", 422, "path-parent"),
        (".%2E/x", 422, "path-parent"),
        ("%2Fetc%2Fpasswd", 422, "path-absolute"),
        ("%00", 422, "path-invalid"),
        ("sub%2Ff.txt%00", 422, "path-invalid"),
        ("%252e%252e%252fetc%252fpasswd", 404, "not-found"),
        ("..%5C..%5Cetc%5Cpasswd", 404, "not-found"),
        ("%C0%AE%C0%AE%2Fetc%2Fpasswd", 404, "not-found"),
        ("%EF%BC%8E%EF%BC%8E%2Fetc%2Fpasswd", 404, "not-found"),
        ("%FF", 404, "not-found"),
    ] {
        for tool in ["read", "list"] {
            let answer = service
                .get(&format!("/api/sessions/{id}/fs/{tool}?path={raw}"))
                .await;
            assert_problem(
                &format!("fs/{tool}?path={raw}"),
                &answer,
                status,
                kind,
                "/path",
            );
        }
    }
    let (status, body) = service
        .get(&format!("/api/sessions/{id}/fs/read?path=sub%2Ff.txt"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["content"], "inside\n", "{body}");
    // Names that only look like a way out are plain names inside the workspace: missing until
    // written, then written and read back exactly there.
    let literal = [
        "....",
        ".../x",
        "..a",
        "a..",
        ".. ",
        " ..",
        "..\t",
        "..\n",
        "%2e%2e",
        "%2e%2e%2fetc%2fpasswd",
        "..%2f..%2fetc%2fpasswd",
        "%252e%252e%252f",
        "..\\..\\etc\\passwd",
        "sub\\..\\..\\x",
        "\\etc\\passwd",
        "\u{ff0e}\u{ff0e}/etc/passwd",
        "\u{2024}\u{2024}/x",
        "\u{2025}/x",
        "..\u{2215}..\u{2215}etc\u{2215}passwd",
        "..\u{2044}etc",
        "\u{ff0f}etc\u{ff0f}passwd",
        ".\u{200b}./x",
        "..\u{338}/x",
        "\u{202e}txt.exe",
        "\u{fffd}",
        "caf\u{e9}",
        "~/x",
        "~root",
        "$HOME",
        "-rf",
        "*",
        " ",
        &"y".repeat(255),
    ];
    for path in literal {
        let shown = format!("{:?}", path.chars().take(40).collect::<String>());
        let answer = fs_read(&service, &id, path).await;
        assert_problem(
            &format!("fs_read {shown}"),
            &answer,
            404,
            "not-found",
            "/path",
        );
        let answer = exec_in(&service, &id, path, "pwd").await;
        assert_problem(
            &format!("exec cwd {shown}"),
            &answer,
            404,
            "not-found",
            "/cwd",
        );
        let (status, body) = fs_write(&service, &id, path, path).await;
        assert_eq!(status, StatusCode::OK, "fs_write {shown}: {body}");
        assert_eq!(body["path"], path, "{body}");
        let on_host = root.join(path);
        assert_eq!(
            std::fs::read_to_string(&on_host).expect("the written file, on the host"),
            path
        );
        let real = on_host.canonicalize().expect("canonical path");
        assert!(
            real.starts_with(root.canonicalize().expect("canonical root")),
            "{shown} was written at {}",
            real.display()
        );
        let (status, body) = fs_read(&service, &id, path).await;
        assert_eq!(status, StatusCode::OK, "fs_read {shown}: {body}");
        assert_eq!(body["content"], path, "{body}");
    }
    // No Unicode normalisation: the decomposed spelling is another, missing, name.
    let answer = fs_read(&service, &id, "cafe\u{301}").await;
    assert_problem("decomposed café", &answer, 404, "not-found", "/path");

    // Spellings of a path inside are the path itself.
    for path in [
        "sub/f.txt/",
        "./sub/f.txt",
        "sub//f.txt",
        "sub/./f.txt",
        ".//sub///./f.txt//",
    ] {
        let (status, body) = fs_read(&service, &id, path).await;
        assert_eq!(status, StatusCode::OK, "fs_read {path:?}: {body}");
        assert_eq!(body["path"], "sub/f.txt", "{body}");
        assert_eq!(body["content"], "inside\n", "{body}");
    }
    // The root is a directory to list and run in, never a file to read or write.
    for path in ["", ".", "./", "./.", ".//./"] {
        let answer = fs_read(&service, &id, path).await;
        assert_problem(
            &format!("fs_read {path:?}"),
            &answer,
            422,
            "path-invalid",
            "/path",
        );
        let answer = fs_write(&service, &id, path, "pwned").await;
        assert_problem(
            &format!("fs_write {path:?}"),
            &answer,
            422,
            "path-invalid",
            "/path",
        );
        let (status, body) = fs_list(&service, &id, path).await;
        assert_eq!(status, StatusCode::OK, "fs_list {path:?}: {body}");
        assert!(body.to_string().contains("\"sub\""), "{body}");
        let (status, out) = exec_in(&service, &id, path, "pwd -P").await;
        assert_eq!(status, StatusCode::OK, "exec cwd {path:?}: {out}");
        assert_eq!(out["stdout"], "/workspace\n", "{out}");
    }
    // A path just short of the limit resolves to nothing, or is too long for the kernel.
    let deep = format!(
        "{}{}",
        format!("{}/", "d".repeat(254)).repeat(16),
        "e".repeat(16)
    );
    assert_eq!(deep.len(), 4096);
    let (status, body) = fs_read(&service, &id, &deep).await;
    assert!(
        status == StatusCode::NOT_FOUND || status == StatusCode::UNPROCESSABLE_ENTITY,
        "{status} {body}"
    );
    assert_eq!(body["errors"][0]["field"], "/path", "{body}");

    for (raw, field) in [
        ("path=sub/f.txt&path=../x", "path"),
        ("path=x&follow=1", "follow"),
        ("path[]=x", "path[]"),
    ] {
        let answer = service
            .get(&format!("/api/sessions/{id}/fs/read?{raw}"))
            .await;
        assert_problem(raw, &answer, 400, "invalid-query", field);
    }
    let answer = service.get(&format!("/api/sessions/{id}/fs/read")).await;
    assert_problem(
        "fs_read without a path",
        &answer,
        422,
        "path-invalid",
        "/path",
    );

    // JSON escapes are decoded before the path is judged; a path that is not a string is named.
    let response = service
        .http
        .post(service.url(&format!("/api/sessions/{id}/fs/write")))
        .header("x-internal-key", common::KEY)
        .header("content-type", "application/json")
        .body(r#"{"path": "\u002e\u002e/\u002e\u002e/escaped", "content": "pwned"}"#)
        .send()
        .await
        .expect("POST");
    let answer = common::read(response).await;
    assert_problem("JSON-escaped dots", &answer, 422, "path-parent", "/path");
    for body in [
        json!({"path": 5, "content": "x"}),
        json!({"path": null, "content": "x"}),
        json!({"path": ["..", "etc"], "content": "x"}),
        json!({"path": {"..": 1}, "content": "x"}),
        json!({"content": "x"}),
    ] {
        let (status, problem) = service
            .post(&format!("/api/sessions/{id}/fs/write"), body.clone())
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {problem}"
        );
        assert_eq!(problem["errors"][0]["field"], "/path", "{body}: {problem}");
    }

    // Checkpoint ids are commit ids, never paths or revisions.
    for checkpoint in [
        "..%2F..%2Fetc",
        "HEAD",
        "HEAD~1",
        "--help",
        "refs%2Fheads%2Fx",
        "%2e%2e",
    ] {
        let (status, body) = raw_request(
            &service,
            "POST",
            &format!("/api/sessions/{id}/checkpoints/{checkpoint}/restore"),
        )
        .await;
        let body: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
        let answer = (StatusCode::from_u16(status).expect("a status"), body);
        assert_problem(checkpoint, &answer, 422, "validation-failed", "/id");
    }

    // A tree deeper than the kernel's longest path, made in the container: the tools and a
    // checkpoint (taken before a file is replaced) get through it.
    let out = service
        .exec(
            &id,
            "d=$(printf 'd%.0s' $(seq 200)); mkdir $d && echo bottom > $d/f || exit 1; \
             for i in $(seq 24); do mkdir t && mv $d t/$d && mv t $d || exit 1; done; \
             mv $d deep && echo made",
        )
        .await;
    assert_eq!(out["stdout"], "made\n", "{out}");
    let (status, listing) = fs_list(&service, &id, "deep").await;
    assert_eq!(status, StatusCode::OK, "{listing}");
    let answer = fs_read(
        &service,
        &id,
        &format!("deep/{}", format!("{}/", "d".repeat(200)).repeat(25)),
    )
    .await;
    assert_eq!(answer.1["errors"][0]["field"], "/path", "{}", answer.1);
    let (status, written) = fs_write(&service, &id, "sub/f.txt", "replaced\n").await;
    assert_eq!(status, StatusCode::OK, "{written}");
    assert!(written["checkpoint"]["id"].is_string(), "{written}");

    // Nothing was written anywhere but the workspace.
    assert_eq!(names_in(env.dir.path()), ["sandbox"]);
    assert_eq!(names_in(&env.workspaces()), [id.as_str()]);
    for name in names_in(&env.workspaces().join(&id)) {
        assert!(
            ["checkpoints.git", "workspace"].contains(&name.as_str()),
            "{name}"
        );
    }
    assert_eq!(
        std::fs::read("/etc/passwd").expect("host passwd"),
        host_passwd
    );
    still_healthy(&service, &id).await;
}

#[tokio::test]
async fn symlinks_to_secrets_proc_and_the_host_never_lead_the_tools_out() {
    let (env, service) = start().await;
    let id = service.create("empty").await;
    let root = workspace_of(&env, &id);
    let (outside, marker) = outside_dir(&env);
    let host_shadow = std::fs::read("/etc/shadow").ok();
    let script = format!(
        "ln -s /etc/shadow shadow && ln -s /proc/self/root procroot && \
         ln -s /proc/self/environ environ && ln -s /proc/1/environ environ1 && \
         ln -s /proc/self/cwd cwd && ln -s {outside} hostdir && ln -s {outside}/secret hostfile && \
         ln -s ../../../outside/secret relout && ln -s ../../../outside reloutdir && \
         ln -s shadow chain1 && ln -s chain1 chain2 && ln -s chain2 chain3 && ln -s relout chain4 && \
         mkdir -p inner/deeper && echo inside > inner/real.txt && ln -s inner/real.txt in1 && \
         ln -s in1 in2 && ln -s ../../in2 inner/deeper/up && ln -s inner indir && \
         ln -s loop2 loop1 && ln -s loop1 loop2 && ln -s self self && \
         i=0; while [ $i -lt 45 ]; do ln -s c$((i+1)) c$i; i=$((i+1)); done; echo end > c45; \
         echo t > /tmp/t; ln /etc/hostname hard1; echo hard1=$?; ln /etc/passwd hard2; \
         echo hard2=$?; ln /tmp/t hard3; echo hard3=$?",
        outside = outside.display()
    );
    let out = service.exec(&id, &script).await;
    let stdout = out["stdout"].as_str().unwrap_or_default();
    for hard in ["hard1", "hard2", "hard3"] {
        // A hard link to a file outside the workspace cannot be made: another mount.
        assert!(
            stdout.contains(&format!("{hard}=1")),
            "{hard} was made: {out}"
        );
        assert!(!root.join(hard).exists(), "{hard} exists");
    }
    let leaked = |body: &Value| {
        let text = body.to_string();
        text.contains(&marker)
            || ["root:x:0", "root:*", "root:!", "root:$"]
                .iter()
                .any(|line| text.contains(line))
            || text.contains("DATABASE_URL")
            || text.contains(common::KEY)
            || text.contains("[package]")
    };

    for path in [
        "shadow",
        "procroot/etc/passwd",
        "procroot/etc/shadow",
        "environ",
        "environ1",
        "cwd/Cargo.toml",
        "hostdir/secret",
        "hostfile",
        "relout",
        "reloutdir/secret",
        "chain3",
        "chain4",
    ] {
        let answer = fs_read(&service, &id, path).await;
        assert!(!leaked(&answer.1), "fs_read {path} leaked: {}", answer.1);
        assert_problem(
            &format!("fs_read {path}"),
            &answer,
            403,
            "path-escapes",
            "/path",
        );
    }
    for path in ["procroot", "procroot/etc", "hostdir", "reloutdir", "cwd"] {
        let answer = fs_list(&service, &id, path).await;
        assert!(!leaked(&answer.1), "fs_list {path} leaked: {}", answer.1);
        assert!(
            !answer.1.to_string().contains("host-only.txt"),
            "{}",
            answer.1
        );
        assert_problem(
            &format!("fs_list {path}"),
            &answer,
            403,
            "path-escapes",
            "/path",
        );
        let answer = exec_in(&service, &id, path, "pwd").await;
        assert_problem(
            &format!("exec cwd {path}"),
            &answer,
            403,
            "path-escapes",
            "/cwd",
        );
    }
    for path in [
        "hostdir/new.txt",
        "reloutdir/new.txt",
        "procroot/tmp/new.txt",
        "cwd/new.txt",
        "shadow",
        "hostfile",
        "relout",
        "chain3",
        "environ",
    ] {
        let (status, body) = fs_write(&service, &id, path, "pwned").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "fs_write {path}: {body}");
        assert_eq!(body["errors"][0]["field"], "/path", "{body}");
    }
    assert_eq!(names_in(&outside), ["host-only.txt", "secret"]);
    assert_eq!(
        std::fs::read_to_string(outside.join("secret")).expect("secret"),
        marker
    );
    assert_eq!(std::fs::read("/etc/shadow").ok(), host_shadow);
    assert!(!std::path::Path::new("/tmp/new.txt").exists());
    assert!(
        !std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("new.txt")
            .exists()
    );

    // Loops and chains longer than the kernel follows are refused, not failures.
    for path in ["loop1", "self", "c0", "loop1/x"] {
        let answer = fs_read(&service, &id, path).await;
        assert_problem(
            &format!("fs_read {path}"),
            &answer,
            422,
            "path-invalid",
            "/path",
        );
        let answer = fs_write(&service, &id, path, "x").await;
        assert_problem(
            &format!("fs_write {path}"),
            &answer,
            422,
            "path-invalid",
            "/path",
        );
    }
    let answer = fs_list(&service, &id, "loop1").await;
    assert_problem("fs_list loop1", &answer, 422, "path-invalid", "/path");
    let answer = exec_in(&service, &id, "loop1", "pwd").await;
    assert_problem("exec cwd loop1", &answer, 422, "path-invalid", "/cwd");

    // Links that stay inside work like the paths they name.
    for path in ["in2", "inner/deeper/up", "indir/real.txt"] {
        let (status, body) = fs_read(&service, &id, path).await;
        assert_eq!(status, StatusCode::OK, "fs_read {path}: {body}");
        assert_eq!(body["content"], "inside\n", "{body}");
    }
    let (status, body) = fs_list(&service, &id, "indir").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.to_string().contains("real.txt"), "{body}");
    service.write(&id, "indir/w.txt", "via a link").await;
    assert_eq!(
        std::fs::read_to_string(root.join("inner/w.txt")).expect("written through the link"),
        "via a link"
    );
    let (status, out) = exec_in(&service, &id, "indir", "pwd -P").await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["stdout"], "/workspace/inner\n", "{out}");
    // The links themselves are listed as links, never followed.
    let (status, listing) = fs_list(&service, &id, "").await;
    assert_eq!(status, StatusCode::OK, "{listing}");
    let entries = listing["entries"].as_array().expect("entries");
    for name in ["shadow", "procroot", "hostdir", "relout", "loop1", "in2"] {
        let entry = entries
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name} listed: {listing}"));
        assert_eq!(entry["type"], "symlink", "{entry}");
    }

    // The same tools over MCP refuse the same way, naming their own arguments.
    let mcp = mcp_open(&service, &id).await;
    for (tool, arguments, kind, field) in [
        (
            "fs_read",
            json!({"path": "hostfile"}),
            "path-escapes",
            "/path",
        ),
        (
            "fs_read",
            json!({"path": "environ"}),
            "path-escapes",
            "/path",
        ),
        (
            "fs_read",
            json!({"path": "procroot/etc/shadow"}),
            "path-escapes",
            "/path",
        ),
        ("fs_read", json!({"path": "loop1"}), "path-invalid", "/path"),
        (
            "fs_read",
            json!({"path": "..\u{0}"}),
            "path-invalid",
            "/path",
        ),
        (
            "fs_write",
            json!({"path": "hostdir/mcp.txt", "content": "pwned"}),
            "path-escapes",
            "/path",
        ),
        (
            "fs_write",
            json!({"path": "/etc/passwd", "content": "pwned"}),
            "path-absolute",
            "/path",
        ),
        (
            "fs_list",
            json!({"dir": "procroot"}),
            "path-escapes",
            "/dir",
        ),
        ("fs_list", json!({"dir": "../.."}), "path-parent", "/dir"),
        (
            "exec",
            json!({"cmd": "pwd", "cwd": "hostdir"}),
            "path-escapes",
            "/cwd",
        ),
    ] {
        let result = mcp_call(&service, &id, &mcp, tool, arguments.clone()).await;
        let what = format!("MCP {tool} {arguments}");
        assert!(!leaked(&result), "{what} leaked: {result}");
        assert_eq!(result["isError"], true, "{what}: {result}");
        let problem = &result["structuredContent"];
        assert!(
            problem["type"].as_str().is_some_and(|t| t.ends_with(kind)),
            "{what}: {result}"
        );
        assert_eq!(problem["errors"][0]["field"], field, "{what}: {result}");
    }
    let result = mcp_call(&service, &id, &mcp, "fs_read", json!({"path": "in2"})).await;
    assert_eq!(
        result["structuredContent"]["content"], "inside\n",
        "{result}"
    );
    assert_eq!(names_in(&outside), ["host-only.txt", "secret"]);
    still_healthy(&service, &id).await;
}

/// A JSON-RPC message to a session's MCP endpoint; the answer's JSON-RPC message, if any.
async fn mcp_post(service: &Service, id: &str, mcp: Option<&str>, body: Value) -> (Value, String) {
    let mut request = service
        .http
        .post(service.url(&format!("/api/sessions/{id}/mcp")))
        .header("accept", "application/json, text/event-stream")
        .bearer_auth(common::KEY)
        .json(&body);
    if let Some(mcp) = mcp {
        request = request.header("mcp-session-id", mcp);
    }
    let response = tokio::time::timeout(Duration::from_secs(60), request.send())
        .await
        .expect("the MCP endpoint answers in time")
        .expect("POST to the MCP endpoint");
    let session = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.expect("body");
    // JSON, or server-sent events whose data is JSON.
    let message = serde_json::from_str(&text).unwrap_or_else(|_| {
        text.lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
            .find(|message| message.get("id").is_some())
            .unwrap_or(Value::Null)
    });
    (message, session)
}

/// Opens an MCP session on a sandbox session's endpoint.
async fn mcp_open(service: &Service, id: &str) -> String {
    let initialize = json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "abuse", "version": "0"},
        },
    });
    let (answer, mcp) = mcp_post(service, id, None, initialize).await;
    assert!(answer["result"]["serverInfo"].is_object(), "{answer}");
    assert!(!mcp.is_empty(), "no MCP session: {answer}");
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    mcp_post(service, id, Some(&mcp), initialized).await;
    mcp
}

/// Calls a tool and returns its result.
async fn mcp_call(service: &Service, id: &str, mcp: &str, tool: &str, arguments: Value) -> Value {
    let call = json!({
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    });
    let (answer, _) = mcp_post(service, id, Some(mcp), call).await;
    answer["result"].clone()
}

/// Swaps `x` between a file, links out (absolute, relative, to the process environment) and a
/// FIFO, and `d` between a directory and a link to the host directory, as fast as it can.
const FLIPPER: &str = r#"cd /workspace
while :; do
  [ -d d.real ] || { rm -rf d.real; mkdir d.real; echo inside > d.real/secret; }
  echo inside > x.f; mv -f x.f x
  ln -s OUTSIDE/secret x.l; mv -f x.l x
  rm -rf d; mv -T d.real d
  ln -s ../../../outside/secret x.r; mv -f x.r x
  ln -s /proc/self/environ x.e; mv -f x.e x
  mv -T d d.real; ln -s OUTSIDE d
  mkfifo x.p; mv -f x.p x
  rm -rf d; mv -T d.real d
  ln -s /proc/self/root/etc/passwd x.h; mv -f x.h x
  mv -T d d.real; ln -s ../../../outside d
  touch flipping
done
"#;

#[tokio::test]
async fn paths_swapped_between_check_and_use_never_lead_out() {
    let (env, service) = start().await;
    let id = service.create("empty").await;
    let (outside, marker) = outside_dir(&env);
    service
        .write(
            &id,
            "flip.sh",
            &FLIPPER.replace("OUTSIDE", &outside.display().to_string()),
        )
        .await;
    let (status, dev) = service
        .post(
            &format!("/api/sessions/{id}/dev/start"),
            json!({"cmd": "sh flip.sh", "port": 9}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{dev}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while fs_read(&service, &id, "flipping").await.0 != StatusCode::OK {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the flipper did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let leaked = |body: &Value| {
        let text = body.to_string();
        text.contains(&marker)
            || text.contains("host-only.txt")
            || text.contains("DATABASE_URL")
            || text.contains("root:x:0:0")
    };
    // Every answer is the file inside, or a refusal: never what is outside, never a failure.
    let allowed = |status: StatusCode| {
        status == StatusCode::OK
            || status == StatusCode::FORBIDDEN
            || status == StatusCode::NOT_FOUND
            || status == StatusCode::CONFLICT
            || status == StatusCode::UNPROCESSABLE_ENTITY
    };
    let started = std::time::Instant::now();
    let readers = async {
        let mut seen = std::collections::BTreeMap::<String, u32>::new();
        for _ in 0..150 {
            for path in ["x", "d/secret"] {
                let (status, body) = fs_read(&service, &id, path).await;
                assert!(!leaked(&body), "fs_read {path} leaked: {body}");
                assert!(allowed(status), "fs_read {path}: {status} {body}");
                if status == StatusCode::OK {
                    assert_eq!(body["content"], "inside\n", "{body}");
                }
                *seen.entry(format!("read {path} {status}")).or_default() += 1;
            }
            let (status, body) = fs_list(&service, &id, "d").await;
            assert!(!leaked(&body), "fs_list d leaked: {body}");
            assert!(allowed(status), "fs_list d: {status} {body}");
            *seen.entry(format!("list d {status}")).or_default() += 1;
        }
        seen
    };
    let writers = async {
        let mut seen = std::collections::BTreeMap::<String, u32>::new();
        for i in 0..60 {
            let (status, body) = fs_write(&service, &id, &format!("d/new-{i}"), "new").await;
            assert!(allowed(status), "fs_write d/new-{i}: {status} {body}");
            *seen.entry(format!("write d/new {status}")).or_default() += 1;
            if i % 6 == 0 {
                // Replacing a file takes a checkpoint, with the container paused.
                for path in ["x", "d/secret"] {
                    let (status, body) = fs_write(&service, &id, path, "inside\n").await;
                    assert!(allowed(status), "fs_write {path}: {status} {body}");
                    *seen.entry(format!("write {path} {status}")).or_default() += 1;
                }
            }
        }
        seen
    };
    let (mut seen, written) = tokio::join!(readers, writers);
    seen.extend(written);
    let elapsed = started.elapsed();
    let (status, body) = service
        .post(&format!("/api/sessions/{id}/dev/stop"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Both sides of the race were met, so the checks above saw it.
    for key in [
        "read x 200 OK",
        "read x 403 Forbidden",
        "read d/secret 200 OK",
    ] {
        assert!(seen.contains_key(key), "never saw {key}: {seen:?}");
    }
    assert!(
        seen.keys()
            .any(|k| k.starts_with("read d/secret 403") || k.starts_with("read d/secret 404")),
        "{seen:?}"
    );
    assert_eq!(names_in(&outside), ["host-only.txt", "secret"], "{seen:?}");
    assert_eq!(
        std::fs::read_to_string(outside.join("secret")).expect("secret"),
        marker
    );
    assert!(elapsed < Duration::from_secs(90), "{elapsed:?}");
    eprintln!("swapped paths, {elapsed:?}: {seen:?}");
    still_healthy(&service, &id).await;
}

/// Character devices a container may have (major:minor in hex, as `stat` prints them): null,
/// zero, full, random, urandom, tty, console and ptmx.
const HARMLESS_DEVICES: [&str; 8] = ["1:3", "1:5", "1:7", "1:8", "1:9", "5:0", "5:1", "5:2"];

#[tokio::test]
async fn device_files_fifos_and_sockets_are_neither_made_nor_served() {
    let (env, service) = start().await;
    let id = service.create("empty").await;
    let root = workspace_of(&env, &id);

    let out = service
        .exec(
            &id,
            "mknod /workspace/mem c 1 1; echo mknod-c=$?; mknod /tmp/disk b 8 0; echo mknod-b=$?; \
             echo blocks=$(find /dev -type b | wc -l); \
             for f in $(find /dev -type c); do echo \"dev $(stat -c %t:%T $f) $f\"; done; \
             echo x > /dev/sda; echo sda=$?; echo x > /dev/vda; echo vda=$?; \
             head -c 1 /dev/mem; echo mem=$?; head -c 1 /dev/kmsg; echo kmsg=$?; \
             echo c > /proc/sysrq-trigger; echo sysrq=$?; \
             echo kcore-bytes=$(head -c 16 /proc/kcore 2>/dev/null | wc -c); \
             touch /sys/x; echo sys=$?; echo 1 > /proc/sys/kernel/panic; echo panic=$?; \
             mkfifo fifo; echo fifo=$?; \
             mount -t tmpfs none /tmp; echo mount=$?; chroot / true; echo chroot=$?; \
             nsenter -t 1 -m true; echo nsenter=$?",
        )
        .await;
    let stdout = out["stdout"].as_str().unwrap_or_default().to_owned();
    for line in [
        "mknod-c=1",
        "mknod-b=1",
        "blocks=0",
        "fifo=0",
        "kcore-bytes=0",
    ] {
        assert!(stdout.lines().any(|l| l == line), "{line}: {out}");
    }
    for name in [
        "sda", "vda", "mem", "kmsg", "sysrq", "sys", "panic", "mount", "chroot", "nsenter",
    ] {
        let code = stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name}: {out}"));
        assert_ne!(code, "0", "{name} worked: {out}");
    }
    let devices: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("dev "))
        .collect();
    assert!(devices.iter().any(|d| d.ends_with("/dev/null")), "{out}");
    for device in &devices {
        let number = device.split(' ').next().unwrap_or_default();
        assert!(
            HARMLESS_DEVICES.contains(&number),
            "an unexpected device in /dev: {device}: {out}"
        );
    }
    assert!(!root.join("mem").exists());

    // What the host (or an image) may leave in a workspace: a socket and a device. The
    // container made the FIFO.
    let socket = std::os::unix::net::UnixListener::bind(root.join("sock")).expect("socket");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("zero"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 5),
    )
    .expect("mknod");
    for path in ["fifo", "sock", "zero"] {
        let started = std::time::Instant::now();
        let answer = fs_read(&service, &id, path).await;
        assert_problem(
            &format!("fs_read {path}"),
            &answer,
            422,
            "path-invalid",
            "/path",
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{path} hung the read"
        );
        let answer = fs_write(&service, &id, path, "pwned").await;
        assert_problem(
            &format!("fs_write {path}"),
            &answer,
            422,
            "path-invalid",
            "/path",
        );
        let answer = fs_list(&service, &id, path).await;
        assert_problem(
            &format!("fs_list {path}"),
            &answer,
            409,
            "not-a-directory",
            "/path",
        );
        let answer = exec_in(&service, &id, path, "pwd").await;
        assert_problem(
            &format!("exec cwd {path}"),
            &answer,
            409,
            "not-a-directory",
            "/cwd",
        );
    }
    use std::os::unix::fs::FileTypeExt as _;
    let kind = |name: &str| {
        std::fs::symlink_metadata(root.join(name))
            .expect("metadata")
            .file_type()
    };
    assert!(kind("fifo").is_fifo());
    assert!(kind("sock").is_socket());
    assert!(kind("zero").is_char_device());
    let (status, listing) = fs_list(&service, &id, "").await;
    assert_eq!(status, StatusCode::OK, "{listing}");
    for entry in listing["entries"].as_array().expect("entries") {
        assert_eq!(entry["type"], "other", "{entry}");
    }

    // A FIFO a writer holds open, swapped in for a file, does not hang a read either.
    let out = service
        .exec(
            &id,
            "echo text > f && mkfifo held && (exec 2>/dev/null; sleep 20 > held &) && mv -f held f \
             && echo swapped",
        )
        .await;
    assert_eq!(out["stdout"], "swapped\n", "{out}");
    let started = std::time::Instant::now();
    let answer = fs_read(&service, &id, "f").await;
    assert_problem(
        "fs_read of a held FIFO",
        &answer,
        422,
        "path-invalid",
        "/path",
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // A checkpoint (taken before a file is replaced) passes over all of them.
    service.write(&id, "plain.txt", "one").await;
    let written = service.write(&id, "plain.txt", "two").await;
    assert!(written["checkpoint"]["id"].is_string(), "{written}");
    drop(socket);
    still_healthy(&service, &id).await;
}

/// Decodes `od -An -tx1` output.
fn from_hex(dump: &str) -> String {
    let bytes: Vec<u8> = dump
        .split_whitespace()
        .filter_map(|pair| u8::from_str_radix(pair, 16).ok())
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The service's secrets, which output masks: its internal key, its Basic Auth password and
/// its database password.
fn service_secrets(env: &common::Env) -> Vec<String> {
    let mut secrets = vec![common::KEY.to_owned(), PASS.to_owned()];
    if let Ok(url) = url::Url::parse(&env.db.url)
        && let Some(password) = url.password()
    {
        secrets.push(password.to_owned());
    }
    secrets
}

#[tokio::test]
async fn the_container_holds_none_of_the_services_secrets() {
    let (env, service) = start().await;
    let id = service.create("empty").await;
    let mut secrets = service_secrets(&env);
    secrets.push(env.db.url.clone());
    let variables = env.variables();

    // Hex, so the masking of output cannot hide a leak from this test.
    let out = service
        .exec(
            &id,
            "{ env; echo; cat /proc/1/environ; echo; cat /proc/self/environ; echo; \
             for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do cat $f; echo; done; } \
             2>/dev/null | od -An -v -tx1",
        )
        .await;
    assert_eq!(out["truncated"], false, "{out}");
    let seen = from_hex(out["stdout"].as_str().unwrap_or_default());
    assert!(seen.contains("HOME=/tmp"), "nothing was read: {seen}");
    for secret in &secrets {
        assert!(
            !seen.contains(secret.as_str()),
            "{secret} is in the container: {seen}"
        );
    }
    for line in seen.split(['\n', '\0']) {
        let key = line.split('=').next().unwrap_or_default();
        assert!(
            !variables.contains_key(key),
            "the service's {key} is in the container: {line}"
        );
    }

    // No engine socket, nor any other.
    let host = autonoma_testkit::docker_host();
    let socket = host.trim_start_matches("unix://");
    let out = service
        .exec(
            &id,
            &format!(
                "find / \\( -path /proc -o -path /sys \\) -prune -o -type s -print 2>/dev/null; \
                 for p in {socket} /var/run/docker.sock /run/docker.sock /run/podman/podman.sock \
                 /var/run/podman/podman.sock /run/user/0/podman/podman.sock; do \
                 [ -e $p ] && echo present $p; done; echo end"
            ),
        )
        .await;
    assert_eq!(
        out["stdout"], "end\n",
        "a socket or the engine is reachable: {out}"
    );
    // None of the host's processes.
    let out = service
        .exec(
            &id,
            "echo processes=$(ls -d /proc/[0-9]* | wc -l); cat /proc/[0-9]*/cmdline | tr '\\0' ' '",
        )
        .await;
    let stdout = out["stdout"].as_str().unwrap_or_default();
    let processes: u32 = stdout
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("processes="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(u32::MAX);
    assert!(processes < 20, "the host's processes are visible: {out}");
    let test_binary = std::env::current_exe().expect("current exe");
    let test_binary = test_binary
        .file_name()
        .expect("file name")
        .to_string_lossy();
    for name in ["podman", "conmon", "postgres", "moto", test_binary.as_ref()] {
        assert!(!stdout.contains(name), "{name} is visible: {out}");
    }

    // Nothing the API answers reaches the service's own environment, or the host's network.
    let port = service.base.rsplit(':').next().expect("port").to_owned();
    for url in [
        "file:///proc/self/environ",
        "file:///etc/passwd",
        &format!("http://0.0.0.0:{port}/config/validate"),
        &format!("http://127.0.0.2:{port}/config/validate"),
        &format!("http://localhost.:{port}/config/validate"),
        &format!("http://[::ffff:127.0.0.1]:{port}/config/validate"),
        &format!("https://localhost:{port}/config/validate"),
        &format!("http://evil.example@localhost.example:{port}/"),
        "gopher://localhost:70/",
    ] {
        let answer = service
            .post(
                &format!("/api/sessions/{id}/http/fetch"),
                json!({ "url": url }),
            )
            .await;
        assert_problem(url, &answer, 422, "validation-failed", "/url");
    }
    // localhost is the container's own: the service's port is not there.
    for url in [
        format!("http://localhost:{port}/config/validate"),
        format!("http://127.0.0.1:{port}/api/sessions"),
        format!("http://[::1]:{port}/config/validate"),
    ] {
        let (status, body) = service
            .post(
                &format!("/api/sessions/{id}/http/fetch"),
                json!({ "url": url }),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{url}: {body}");
    }
    let (_, state) = service.get(&format!("/api/sessions/{id}/state")).await;
    let (_, calls) = service.get(&format!("/api/sessions/{id}/tool-calls")).await;
    let (_, sessions) = service.get("/api/sessions").await;
    for answer in [&state, &calls, &sessions] {
        let text = answer.to_string();
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "{secret} in {text}");
        }
    }
    still_healthy(&service, &id).await;
}

#[tokio::test]
async fn secrets_are_masked_where_output_is_cut_and_in_the_log() {
    let (env, service) = start_with(&[
        ("SANDBOX_OUTPUT_LIMIT", "1024"),
        ("SANDBOX_REDACT", "sk-test-very-secret-value"),
    ])
    .await;
    let id = service.create("empty").await;
    let mut secrets = service_secrets(&env);
    secrets.push("sk-test-very-secret-value".to_owned());
    for secret in &secrets {
        // A secret that straddles the cut: its head would be the last thing kept.
        let head = 1024 - 8;
        let out = service
            .exec(
                &id,
                &format!("head -c {head} /dev/zero | tr '\\0' a; echo '{secret}'; echo more"),
            )
            .await;
        let stdout = out["stdout"].as_str().unwrap_or_default();
        assert_eq!(out["truncated"], true, "{out}");
        assert!(
            !stdout.contains(&secret[..6]),
            "the head of {secret} was kept: {}",
            &stdout[stdout.len().saturating_sub(80)..]
        );
        let content = format!("{}{secret}\nmore\n", "a".repeat(head));
        std::fs::write(workspace_of(&env, &id).join("cut.txt"), &content).expect("write");
        let (status, file) = fs_read(&service, &id, "cut.txt").await;
        assert_eq!(status, StatusCode::OK, "{file}");
        assert_eq!(file["truncated"], true, "{file}");
        assert_eq!(file["size"], content.len(), "{file}");
        let kept = file["content"].as_str().unwrap_or_default();
        assert!(kept.len() <= 1024, "{} bytes", kept.len());
        assert!(
            !kept.contains(&secret[..6]),
            "the head of {secret} was read: {}",
            &kept[kept.len().saturating_sub(80)..]
        );
        // The tool-call record shortens long arguments: a secret across that cut is masked
        // whole too.
        let content = format!("{}{secret}", "a".repeat(200 - 4));
        let (status, written) = fs_write(&service, &id, "record.txt", &content).await;
        assert_eq!(status, StatusCode::OK, "{written}");
    }
    let (_, calls) = service.get(&format!("/api/sessions/{id}/tool-calls")).await;
    let calls = calls.to_string();
    for secret in &secrets {
        assert!(
            !calls.contains(&format!("aaaa{}", &secret[..4])),
            "the head of {secret} was recorded: {calls}"
        );
    }
    let out = service
        .exec(&id, &format!("echo '{}' >&2", common::KEY))
        .await;
    assert_eq!(out["stderr"], "[REDACTED]\n", "{out}");

    // The log stream replays the same output, masked.
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
    let mut replay = String::new();
    use futures::StreamExt as _;
    while let Ok(Some(Ok(message))) =
        tokio::time::timeout(Duration::from_secs(2), logs.next()).await
    {
        replay.push_str(message.to_text().unwrap_or_default());
        replay.push('\n');
    }
    assert!(replay.contains("[REDACTED]"), "{replay}");
    for secret in &secrets {
        assert!(
            !replay.contains(secret.as_str()),
            "{secret} in the log: {replay}"
        );
    }
}

/// Sends a request exactly as written (no normalisation of `..` or percent-escapes on the way)
/// and returns the status and body.
async fn raw_request(service: &Service, method: &str, target: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let addr = service.base.trim_start_matches("http://");
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!(
            "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n",
            encode_basic(USER, PASS)
        );
        stream
            .write_all(request.as_bytes())
            .await
            .expect("write request");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.expect("read answer");
        String::from_utf8_lossy(&answer).into_owned()
    };
    let answer = tokio::time::timeout(Duration::from_secs(20), exchange)
        .await
        .unwrap_or_else(|_| panic!("{method} {target} hung"));
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn another_sessions_files_are_out_of_reach() {
    let (env, service) = start().await;
    let first = service.create("empty").await;
    let second = service.create("empty").await;
    let secret = format!("first's secret {}", uuid::Uuid::new_v4());
    service.write(&first, "secret.txt", &secret).await;
    let out = service
        .exec(
            &first,
            &format!("echo '{secret}' > /tmp/first-tmp && echo '{secret}' > /dev/shm/first-shm"),
        )
        .await;
    assert_eq!(out["exitCode"], 0, "{out}");
    let (status, dev) = service
        .post(
            &format!("/api/sessions/{first}/dev/start"),
            json!({"cmd": "httpd -f -p 8080 -h /workspace", "port": 8080}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{dev}");
    let page = service.preview_when_up(&first, "/secret.txt").await;
    assert_eq!(page, secret);
    let first_state = service.state(&first).await;
    let container = first_state["container"]["id"]
        .as_str()
        .expect("container id")
        .to_owned();
    let first_workspace = workspace_of(&env, &first);

    // From inside the second container: its own /tmp and /dev/shm, its own processes, no trace
    // of the first session; links to its workspace (host path or relative) lead nowhere.
    let out = service
        .exec(
            &second,
            "cat /tmp/first-tmp /dev/shm/first-shm 2>&1; ls -a /tmp /dev/shm; \
             cat /proc/[0-9]*/cmdline | tr '\\0' ' '; echo; \
             ls /proc/[0-9]*/root/tmp /proc/[0-9]*/root/workspace 2>&1; \
             cat /proc/self/mountinfo; wget -q -O - http://127.0.0.1:8080/secret.txt 2>&1; true",
        )
        .await;
    let seen = out.to_string();
    assert!(
        !seen.contains(&secret),
        "the second session saw the first's: {out}"
    );
    assert!(
        !seen.contains(&first),
        "the first session's id is visible: {out}"
    );
    assert!(!seen.contains(&container[..12]), "{out}");
    let out = service
        .exec(
            &second,
            &format!(
                "ln -s {ws}/secret.txt abs && ln -s ../../{first}/workspace/secret.txt rel && \
                 ln -s ../../{first}/workspace firstdir && cat abs rel firstdir/secret.txt 2>&1; \
                 nc -w 1 {short} 8080 </dev/null 2>&1; true",
                ws = first_workspace.display(),
                short = &container[..12],
            ),
        )
        .await;
    assert!(!out.to_string().contains(&secret), "{out}");
    for path in ["abs", "rel", "firstdir/secret.txt"] {
        let answer = fs_read(&service, &second, path).await;
        assert!(
            !answer.1.to_string().contains(&secret),
            "{path}: {}",
            answer.1
        );
        assert_problem(
            &format!("fs_read {path}"),
            &answer,
            403,
            "path-escapes",
            "/path",
        );
    }
    let answer = fs_write(&service, &second, "firstdir/secret.txt", "overwritten").await;
    assert_problem(
        "fs_write firstdir/secret.txt",
        &answer,
        403,
        "path-escapes",
        "/path",
    );
    let answer = fs_list(&service, &second, "firstdir").await;
    assert_problem("fs_list firstdir", &answer, 403, "path-escapes", "/path");

    // Through the API with the first session's paths, container name or id, in every spelling.
    let name = format!("autonoma-sandbox-{first}");
    let probes = [
        format!("/api/sessions/{second}/fs/read?path=..%2F{first}%2Fworkspace%2Fsecret.txt"),
        format!("/api/sessions/{second}/fs/read?path=%2E%2E/%2E%2E/{first}/workspace/secret.txt"),
        format!(
            "/api/sessions/{second}/fs/read?path=/workspace/../../{first}/workspace/secret.txt"
        ),
        format!("/api/sessions/{second}/fs/../../{first}/fs/read?path=secret.txt"),
        format!("/api/sessions/{second}/fs/%2E%2E/%2E%2E/{first}/fs/read?path=secret.txt"),
        format!("/api/sessions/{second}%2F..%2F{first}/fs/read?path=secret.txt"),
        format!("/api/sessions/{second}/..%2F{first}/fs/read?path=secret.txt"),
        format!("/api/sessions/{name}/fs/read?path=secret.txt"),
        format!("/api/sessions/{container}/fs/read?path=secret.txt"),
        format!("/api/sessions/{}/fs/read?path=secret.txt", &container[..12]),
        format!("/api/sessions/..%2F{first}/fs/read?path=secret.txt"),
        format!("/api/sessions/%2E%2E/sessions/{first}/fs/read?path=secret.txt"),
        format!("/api/sessions/{second}/preview/proxy/..%2F..%2F{first}/preview/proxy/secret.txt"),
        format!("/api/sessions/{second}/preview/proxy/../../{first}/preview/proxy/secret.txt"),
        format!(
            "/api/sessions/{second}/preview/proxy/%2E%2E/%2E%2E/{first}/fs/read?path=secret.txt"
        ),
        format!("/api/sessions/{name}/preview/proxy/secret.txt"),
        format!("/api/sessions/{container}/state"),
        format!("/api/sessions/{name}/mcp"),
    ];
    for target in &probes {
        let (status, body) = raw_request(&service, "GET", target).await;
        assert!(
            !body.contains(&secret),
            "GET {target} answered the secret: {body}"
        );
        assert!(
            (400..500).contains(&status) || status == 502,
            "GET {target}: {status} {body}"
        );
    }
    for target in [
        format!("/api/sessions/{name}"),
        format!("/api/sessions/{container}"),
        format!("/api/sessions/{second}%2F..%2F{first}"),
    ] {
        let (status, body) = raw_request(&service, "DELETE", &target).await;
        assert!(
            (400..500).contains(&status),
            "DELETE {target}: {status} {body}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(first_workspace.join("secret.txt")).expect("first's secret"),
        secret
    );

    // The first session's preview cookie does not open the second's preview, nor the other way.
    let response = service
        .http
        .get(service.url(&format!("/api/sessions/{first}/preview/proxy/secret.txt")))
        .basic_auth(USER, Some(PASS))
        .send()
        .await
        .expect("preview");
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("autonoma_preview="))
        .and_then(|v| v.split(';').next())
        .expect("a preview cookie")
        .to_owned();
    for target in [
        format!("/api/sessions/{second}/preview/proxy/secret.txt"),
        format!("/api/sessions/{second}/fs/read?path=secret.txt"),
        format!("/api/sessions/{first}/fs/read?path=secret.txt"),
    ] {
        let response = service
            .http
            .get(service.url(&target))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{target}");
    }
    still_healthy(&service, &second).await;
}
