//! A realistic run touching every service: what operators, agents, webhooks, an AI over MCP
//! and renderctl's command line do, the failures they meet, and the mistakes people make with
//! credentials (near misses, and real secrets sent where they do not belong).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::mcp;
use super::run::{Answer, ORIGIN, Recorder, Stack, USER, basic, product_blueprint};
use crate::stack::{concrete, routes};

/// Polls `check` until it returns `Some`, for at most `within`.
async fn until<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

fn assert_status(answer: &Answer, expected: u16, what: &str) {
    assert_eq!(answer.status.as_u16(), expected, "{what}: {}", answer.text);
}

/// A live stream (WebSocket or server-sent events) read in the background; what it carried is
/// kept when it is stopped.
pub struct Tap {
    name: String,
    text: Arc<Mutex<String>>,
    task: JoinHandle<()>,
}

impl Tap {
    /// Stops reading and keeps what the stream carried, which must include `expected`.
    pub fn stop(self, recorder: &Recorder, expected: &str) {
        self.task.abort();
        let text = self
            .text
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        assert!(
            text.contains(expected),
            "{} carried no {expected:?}: {text:.2000}",
            self.name
        );
        recorder.keep(self.name, text);
    }

    fn websocket(name: &str, url: String) -> Tap {
        let text = Arc::new(Mutex::new(String::new()));
        let sink = text.clone();
        let name = name.to_owned();
        let label = name.clone();
        let task = tokio::spawn(async move {
            let mut request = url.into_client_request().expect("a WebSocket request");
            request
                .headers_mut()
                .insert("origin", ORIGIN.parse().expect("header"));
            let (mut socket, _) = tokio_tungstenite::connect_async(request)
                .await
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            while let Some(Ok(message)) = socket.next().await {
                let frame = match message {
                    Message::Text(text) => text.to_string(),
                    Message::Binary(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                    Message::Close(frame) => format!("{frame:?}"),
                    _ => continue,
                };
                let mut kept = sink.lock().unwrap_or_else(PoisonError::into_inner);
                kept.push_str(&frame);
                kept.push('\n');
            }
        });
        Tap { name, text, task }
    }

    fn sse(name: &str, request: reqwest::RequestBuilder) -> Tap {
        let text = Arc::new(Mutex::new(String::new()));
        let sink = text.clone();
        let task = tokio::spawn(async move {
            let Ok(mut response) = request.send().await else {
                return;
            };
            let head = format!("{}\n{:?}\n\n", response.status(), response.headers());
            sink.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push_str(&head);
            while let Ok(Some(chunk)) = response.chunk().await {
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push_str(&String::from_utf8_lossy(&chunk));
            }
        });
        Tap {
            name: name.to_owned(),
            text,
            task,
        }
    }
}

fn ws_base(stack: &Stack, service: &str, path: &str) -> String {
    stack.url(service, path).replace("http://", "ws://")
}

/// The live streams an operator's dashboard keeps open: the orchestrator's WebSocket (task
/// updates and log frames) and the logging service's SSE stream, both authenticated the way
/// browsers do (`?auth=`).
pub fn open_streams(stack: &Stack) -> [Tap; 2] {
    let auth = stack.secrets.basic();
    [
        Tap::websocket(
            "the orchestrator WebSocket",
            format!(
                "{}?auth={auth}&logs=true",
                ws_base(stack, "orchestrator", "/ws")
            ),
        ),
        Tap::sse(
            "the logging SSE stream",
            stack.anonymous(
                Method::GET,
                "logging",
                &format!("/logs/stream?auth={}", urlencode(&auth)),
            ),
        ),
    ]
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `/config/validate` (the running configuration, and candidates with real secrets, valid and
/// not), `/metrics`, `/openapi.json` and readiness of every service.
pub async fn operations(stack: &Stack, rec: &Recorder) {
    let s = &stack.secrets;
    // Each secret-typed variable set to a wrong value that contains the real secret.
    let wrong: Vec<(&str, String)> = vec![
        (
            "INTERNAL_API_KEYS",
            format!("{},{} spaced", s.key_new, s.key_old),
        ),
        ("BASIC_AUTH_PASS", s.pass.repeat(8)),
        (
            "DATABASE_URL",
            format!("mysql://{USER}:{}@127.0.0.1/autonoma", s.db_pass),
        ),
        ("WEBHOOK_SECRETS", format!("GitHub:{}", s.hook_github)),
        ("RENDER_API_TOKEN", s.render_token.repeat(20)),
        ("AWS_SECRET_ACCESS_KEY", s.aws_secret.repeat(8)),
        ("SANDBOX_REDACT", format!("{},abc", s.redact[0])),
    ];
    for (name, running) in &stack.services {
        let answer = rec
            .send(
                "the running configuration",
                stack.operator(Method::GET, name, "/config/validate"),
            )
            .await;
        assert_status(&answer, 200, name);
        assert_eq!(answer.json()["valid"], true, "{name}: {}", answer.text);
        let env: serde_json::Map<String, Value> = running
            .env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String(v.clone())))
            .collect();
        let answer = rec
            .send(
                "a candidate: the running environment",
                stack
                    .internal(Method::POST, name, "/config/validate")
                    .json(&json!({ "env": env })),
            )
            .await;
        assert_status(&answer, 200, name);
        let mut candidate = env.clone();
        for (key, value) in &wrong {
            candidate.insert((*key).to_owned(), Value::String(value.clone()));
        }
        let answer = rec
            .send(
                "a candidate with wrong secret values",
                stack
                    .operator(Method::POST, name, "/config/validate")
                    .json(&json!({ "env": candidate })),
            )
            .await;
        assert_status(&answer, 200, name);
        assert_eq!(answer.json()["valid"], false, "{name}: {}", answer.text);
        let answer = rec
            .send("metrics", stack.internal_old(Method::GET, name, "/metrics"))
            .await;
        assert_status(&answer, 200, name);
        let answer = rec
            .send(
                "the OpenAPI document",
                stack.operator(Method::GET, name, "/openapi.json"),
            )
            .await;
        assert_status(&answer, 200, name);
        rec.send(
            "readiness",
            stack.anonymous(Method::GET, name, "/health/ready"),
        )
        .await;
    }
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("an HMAC key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Tasks created by an operator and by a service, dispatched to the echo agent over HTTP and
/// finished (succeeded, retried, failed, cancelled, retried by hand), webhooks, the task API's
/// bad input.
pub async fn orchestrator(stack: &Stack, rec: &Recorder) {
    let s = &stack.secrets;
    until(
        "the echo agent registers",
        Duration::from_secs(30),
        || async {
            let agents = rec
                .send(
                    "agents",
                    stack.operator(Method::GET, "orchestrator", "/agents"),
                )
                .await
                .json();
            agents
                .as_array()
                .is_some_and(|a| {
                    a.iter()
                        .any(|a| a["name"] == "echo-agent" && a["live"] == true)
                })
                .then_some(())
        },
    )
    .await;

    let bodies = [
        json!({"kind": "echo", "payload": {"message": "hello"}, "correlationId": "secrets-suite"}),
        json!({"kind": "echo", "payload": {"message": "again", "delayMs": 50}}),
        json!({"kind": "echo", "payload": {"failTimes": 1}, "maxAttempts": 2}),
        json!({"kind": "echo", "payload": {"failAlways": true}, "maxAttempts": 1}),
        json!({"kind": "echo", "payload": {"hangMs": 10000}, "timeoutSecs": 1, "maxAttempts": 1}),
    ];
    let mut ids = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let request = if i % 2 == 0 {
            stack.operator(Method::POST, "orchestrator", "/task")
        } else {
            stack.internal_old(Method::POST, "orchestrator", "/task")
        };
        let answer = rec.send("a task", request.json(body)).await;
        assert_status(&answer, 201, "POST /task");
        ids.push(answer.json()["id"].as_str().expect("a task id").to_owned());
    }
    let mut failed = None;
    for id in &ids {
        let task = until("a task finishes", Duration::from_secs(40), || async {
            let task = rec
                .send(
                    "a task",
                    stack.operator(Method::GET, "orchestrator", &format!("/task/{id}")),
                )
                .await
                .json();
            ["succeeded", "failed", "cancelled"]
                .contains(&task["status"].as_str().unwrap_or_default())
                .then_some(task)
        })
        .await;
        if task["status"] == "failed" {
            failed = Some(id.clone());
        }
        rec.send(
            "a task's events",
            stack.operator(Method::GET, "orchestrator", &format!("/task/{id}/events")),
        )
        .await;
    }
    let failed = failed.expect("a task failed");
    let answer = rec
        .send(
            "a manual retry",
            stack.operator(
                Method::POST,
                "orchestrator",
                &format!("/task/{failed}/retry"),
            ),
        )
        .await;
    assert!(answer.status.is_success(), "retry: {}", answer.text);
    let slow = rec
        .send(
            "a task to cancel",
            stack
                .operator(Method::POST, "orchestrator", "/task")
                .json(&json!({"kind": "echo", "payload": {"delayMs": 3000}})),
        )
        .await;
    let slow = slow.json()["id"].as_str().expect("id").to_owned();
    rec.send(
        "a cancellation",
        stack.operator(
            Method::POST,
            "orchestrator",
            &format!("/task/{slow}/cancel"),
        ),
    )
    .await;
    rec.send(
        "tasks",
        stack.operator(Method::GET, "orchestrator", "/tasks?kind=echo&limit=100"),
    )
    .await;

    // Webhooks: signed, and refused with every kind of bad signature.
    let body =
        serde_json::to_vec(&json!({"ref": "refs/heads/main", "after": "abc123"})).expect("JSON");
    let hook = |source: &str, signature: Option<String>, delivery: &str| {
        let mut request = stack
            .anonymous(Method::POST, "orchestrator", &format!("/hooks/{source}"))
            .header("content-type", "application/json")
            .header("x-github-delivery", delivery)
            .header("x-github-event", "push")
            .body(body.clone());
        if let Some(signature) = signature {
            request = request.header("x-hub-signature-256", signature);
        }
        request
    };
    let answer = rec
        .send(
            "a signed webhook",
            hook("github", Some(sign(&s.hook_github, &body)), "d-1"),
        )
        .await;
    assert_status(&answer, 202, "signed webhook");
    let answer = rec
        .send(
            "a webhook signed with a near miss of the secret",
            hook("github", Some(sign(&s.hook_near, &body)), "d-2"),
        )
        .await;
    assert_status(&answer, 401, "badly signed webhook");
    let answer = rec
        .send(
            "a webhook carrying the secret itself as its signature",
            hook("github", Some(format!("sha256={}", s.hook_github)), "d-3"),
        )
        .await;
    assert_status(&answer, 401, "webhook with the secret as signature");
    rec.send("an unsigned webhook", hook("github", None, "d-4"))
        .await;
    let answer = rec
        .send(
            "a signed webhook no route takes",
            hook("gitlab", Some(sign(&s.hook_gitlab, &body)), "d-5"),
        )
        .await;
    assert_status(&answer, 202, "gitlab webhook");

    // Bad input carrying a secret where it does not belong.
    let probes = [
        (
            "a secret as maxAttempts",
            json!({"kind": "echo", "maxAttempts": s.key_new}),
        ),
        (
            "a secret in a payload field of the wrong type",
            json!({"kind": "echo", "payload": {"delayMs": s.pass}}),
        ),
        ("a secret as the kind", json!({"kind": s.key_old})),
        (
            "a secret as the priority",
            json!({"kind": "echo", "priority": s.hook_github}),
        ),
    ];
    for (what, body) in probes {
        let answer = rec
            .send(
                what,
                stack
                    .operator(Method::POST, "orchestrator", "/task")
                    .json(&body),
            )
            .await;
        assert!(answer.status.is_client_error(), "{what}: {}", answer.text);
    }
    rec.send(
        "malformed JSON after a secret",
        stack
            .operator(Method::POST, "orchestrator", "/task")
            .header("content-type", "application/json")
            .body(format!("{{\"kind\": \"{}\" oops", s.key_new)),
    )
    .await;
    rec.send(
        "a secret as a status filter",
        stack.operator(
            Method::GET,
            "orchestrator",
            &format!("/tasks?status={}", urlencode(&s.key_new)),
        ),
    )
    .await;
    rec.send(
        "a secret as a status",
        stack
            .operator(Method::PATCH, "orchestrator", &format!("/task/{}", ids[0]))
            .json(&json!({"ifVersion": 1, "status": s.render_token})),
    )
    .await;
}

/// The logging service: a frame shipped by hand, the query API, and bad input.
pub async fn logging(stack: &Stack, rec: &Recorder) {
    let s = &stack.secrets;
    let answer = rec
        .send(
            "a log frame",
            stack
                .internal(Method::POST, "logging", "/log")
                .json(&json!({
                    "level": "info", "service": "secrets-suite", "message": "a frame sent by hand",
                    "fields": {"suite": "secrets"},
                })),
        )
        .await;
    assert!(answer.status.is_success(), "POST /log: {}", answer.text);
    rec.send(
        "a secret as a level",
        stack
            .internal(Method::POST, "logging", "/log")
            .json(&json!({"level": s.key_new, "service": "x", "message": "m"})),
    )
    .await;
    rec.send(
        "a secret as a timestamp",
        stack
            .internal(Method::POST, "logging", "/log")
            .json(&json!({"level": "info", "service": "x", "message": "m", "ts": s.pass})),
    )
    .await;
    rec.send(
        "a secret as a trace id",
        stack
            .internal(Method::POST, "logging", "/log")
            .json(&json!({"level": "info", "service": "x", "message": "m", "traceId": s.key_old})),
    )
    .await;
    for query in [
        format!("level={}", urlencode(&s.key_new)),
        format!("since={}", urlencode(&s.pass)),
        format!("cursor={}", urlencode(&s.key_old)),
        format!("traceId={}", urlencode(&s.render_token)),
        "service=orchestrator&level=debug&limit=50".to_owned(),
        "q=task&limit=20".to_owned(),
    ] {
        rec.send(
            "a log query",
            stack.operator(Method::GET, "logging", &format!("/logs?{query}")),
        )
        .await;
    }
}

/// The echo agent's own endpoint, called as the orchestrator would.
pub async fn echo_agent(stack: &Stack, rec: &Recorder) {
    let answer = rec
        .send(
            "an echo",
            stack
                .internal_old(Method::POST, "echo-agent", "/echo")
                .json(&json!({"message": "ping"})),
        )
        .await;
    assert_status(&answer, 200, "POST /echo");
    rec.send(
        "an echo with a secret as delay",
        stack
            .internal(Method::POST, "echo-agent", "/echo")
            .json(&json!({"delayMs": stack.secrets.key_new})),
    )
    .await;
}

/// renderctl against the Render fake: services created, listed, env merged (with secrets as
/// values, as deploying the product does), deployed, the Blueprint planned; upstream failures
/// (unknown service, a long rate limit, a failing build); bad input; and the command line, with
/// the right token and a near miss.
pub async fn renderctl(stack: &Stack, rec: &Recorder) {
    let s = &stack.secrets;
    let answer = rec
        .send(
            "a new service",
            stack
                .operator(Method::POST, "renderctl", "/render/services")
                .json(&json!({
                    "name": "autonoma-echo", "healthCheckPath": "/health",
                    "dockerfilePath": "./services/echo-agent/Dockerfile", "dockerContext": ".",
                    "envVars": {
                        "LOG_FORMAT": "json",
                        "INTERNAL_API_KEYS": format!("{},{}", s.key_new, s.key_old),
                        "BASIC_AUTH_PASS": s.pass,
                    },
                })),
        )
        .await;
    assert_status(&answer, 201, "POST /render/services");
    let id = answer.json()["service"]["id"]
        .as_str()
        .expect("a service id")
        .to_owned();
    rec.send(
        "services",
        stack.operator(
            Method::GET,
            "renderctl",
            "/render/services?type=web_service",
        ),
    )
    .await;
    rec.send(
        "a service",
        stack.operator(Method::GET, "renderctl", &format!("/render/services/{id}")),
    )
    .await;
    let answer = rec
        .send(
            "env merged with a secret",
            stack
                .internal(
                    Method::PATCH,
                    "renderctl",
                    &format!("/render/services/{id}/env"),
                )
                .json(&json!({
                    "envVars": {"RENDER_API_TOKEN": s.render_token, "LOG_LEVEL": "info"},
                    "deploy": true,
                })),
        )
        .await;
    assert_status(&answer, 200, "PATCH env");
    let answer = rec
        .send(
            "a deploy",
            stack
                .operator(Method::POST, "renderctl", &format!("/render/deploy/{id}"))
                .json(&json!({})),
        )
        .await;
    assert_status(&answer, 201, "deploy");
    rec.send(
        "deploys",
        stack.operator(
            Method::GET,
            "renderctl",
            &format!("/render/services/{id}/deploys"),
        ),
    )
    .await;
    let answer = rec
        .send(
            "the Blueprint plan",
            stack
                .operator(Method::POST, "renderctl", "/render/blueprint/apply")
                .json(&json!({"dryRun": true})),
        )
        .await;
    assert_status(&answer, 200, "blueprint dry run");
    rec.send(
        "changes",
        stack.operator(Method::GET, "renderctl", "/render/changes"),
    )
    .await;
    rec.send(
        "the monitor",
        stack.operator(Method::GET, "renderctl", "/render/monitor"),
    )
    .await;

    // Render says no.
    let answer = rec
        .send(
            "a deploy of a service Render does not have",
            stack
                .operator(
                    Method::POST,
                    "renderctl",
                    "/render/deploy/srv-doesnotexist0000000",
                )
                .json(&json!({})),
        )
        .await;
    assert_status(&answer, 404, "unknown service");
    let answer = rec
        .send(
            "a name Render already has",
            stack
                .operator(Method::POST, "renderctl", "/render/services")
                .json(&json!({"name": "autonoma-echo", "type": "web_service",
                    "envVars": {"BASIC_AUTH_PASS": s.pass}})),
        )
        .await;
    assert!(answer.status.is_client_error(), "{}", answer.text);
    stack.fake.rate_limit_next(1, Duration::from_secs(60));
    let answer = rec
        .send(
            "services while Render rate-limits for a minute",
            stack.operator(Method::GET, "renderctl", "/render/services"),
        )
        .await;
    assert_status(&answer, 503, "rate limited");

    // Bad input carrying secrets.
    for (what, path, method, body) in [
        (
            "a secret as the service type",
            "/render/services",
            Method::POST,
            json!({"name": "x", "type": s.key_new}),
        ),
        (
            "a secret as the plan",
            "/render/services",
            Method::POST,
            json!({"name": "x", "type": "web_service", "plan": s.render_token}),
        ),
        (
            "a secret as the env mode",
            &format!("/render/services/{id}/env") as &str,
            Method::PATCH,
            json!({"mode": s.pass}),
        ),
        (
            "secrets as env values beside a bad key",
            &format!("/render/services/{id}/env"),
            Method::PATCH,
            json!({"envVars": {"1BAD": s.key_old, "GOOD": s.render_token}}),
        ),
        (
            "a secret as dryRun",
            "/render/blueprint/apply",
            Method::POST,
            json!({"dryRun": s.key_new}),
        ),
    ] {
        let answer = rec
            .send(what, stack.operator(method, "renderctl", path).json(&body))
            .await;
        assert!(answer.status.is_client_error(), "{what}: {}", answer.text);
    }

    // The command line CI runs, with the service's variables.
    let bin = autonoma_testkit::workspace_binary("renderctl");
    let site = stack.fake.seed_service(json!({
        "type": "static_site", "name": "autonoma-dashboard", "repo": "https://github.com/acme/autonoma",
        "serviceDetails": {"buildCommand": "npm run build", "publishPath": "dist"},
    }));
    stack.fake.fail_next_deploy(
        &site,
        vec!["error: publish directory dist not found".into()],
    );
    let env = |token: &str| {
        vec![
            ("RENDER_API_BASE_URL", stack.fake.base_url()),
            ("RENDER_API_TOKEN", token.to_owned()),
            ("RENDER_REPO", "https://github.com/acme/autonoma".to_owned()),
            ("RENDER_BLUEPRINT_PATH", product_blueprint()),
            ("DATABASE_URL", stack.db_url.clone()),
            ("LOG_LEVEL", "debug".to_owned()),
        ]
    };
    for (what, args, token) in [
        (
            "renderctl apply --dry-run",
            vec!["apply", "--dry-run"],
            &s.render_token,
        ),
        (
            "renderctl deploy --wait of a failing build",
            vec![
                "deploy",
                &site,
                "--wait",
                "--poll",
                "50ms",
                "--timeout",
                "30s",
            ],
            &s.render_token,
        ),
        (
            "renderctl deploy of an unknown service",
            vec!["deploy", "no-such-service"],
            &s.render_token,
        ),
        (
            "renderctl deploy with a near miss of the token",
            vec!["deploy", "autonoma-echo"],
            &s.render_near,
        ),
    ] {
        let output = autonoma_testkit::run_to_exit_with_args(
            &bin,
            &args,
            &env(token),
            Duration::from_secs(60),
        )
        .await
        .unwrap_or_else(|e| panic!("{what}: {e:#}"));
        rec.keep(
            format!("the output of {what}"),
            format!(
                "{}\n{}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        );
    }
}

/// A sandbox session used over HTTP and MCP: files holding secrets, commands that print them
/// (on stdout and stderr), a command that fails and one that times out, the session's log
/// stream, its tool-call record; bad input carrying secrets.
pub async fn sandbox(stack: &Stack, rec: &Recorder) -> Tap {
    let s = &stack.secrets;
    let answer = rec
        .send(
            "a session",
            stack
                .internal(Method::POST, "sandbox", "/api/sessions")
                .json(&json!({"template": "empty"})),
        )
        .await;
    assert_status(&answer, 201, "POST /api/sessions");
    let id = answer.json()["sessionId"]
        .as_str()
        .expect("a session id")
        .to_owned();
    let logs = Tap::websocket(
        "the sandbox session's log stream",
        format!(
            "{}?after=0&auth={}",
            ws_base(stack, "sandbox", &format!("/api/sessions/{id}/logs")),
            stack.secrets.basic()
        ),
    );
    let path = |tool: &str| format!("/api/sessions/{id}/{tool}");
    let answer = rec
        .send(
            "a file holding secrets",
            stack.internal(Method::POST, "sandbox", &path("fs/write")).json(&json!({
                "path": "app/.env",
                "content": format!("API_KEY={}\nINTERNAL={}\nPASSWORD={}\n", s.redact[0], s.key_new, s.pass),
            })),
        )
        .await;
    assert_status(&answer, 200, "fs/write");
    let exec = |cmd: String| {
        stack
            .operator(Method::POST, "sandbox", &path("exec"))
            .json(&json!({"cmd": cmd, "timeoutSec": 10}))
    };
    let answer = rec
        .send("cat of the file", exec("cat app/.env".to_owned()))
        .await;
    assert_status(&answer, 200, "exec cat");
    assert!(answer.text.contains("[REDACTED]"), "{}", answer.text);
    let answer = rec
        .send(
            "a command echoing secrets it was given",
            exec(format!(
                "echo {}; echo {} >&2; echo {}",
                s.redact[1], s.key_old, s.db_pass
            )),
        )
        .await;
    assert_status(&answer, 200, "exec echo");
    let answer = rec
        .send(
            "a failing command printing a secret",
            exec(format!(
                "echo {} >&2; cat /no/such/file; exit 3",
                s.redact[0]
            )),
        )
        .await;
    assert_status(&answer, 200, "exec failing");
    assert_eq!(answer.json()["exitCode"], 3, "{}", answer.text);
    rec.send(
        "a command that times out",
        stack
            .operator(Method::POST, "sandbox", &path("exec"))
            .json(&json!({"cmd": format!("echo {}; sleep 30", s.pass), "timeoutSec": 1})),
    )
    .await;
    rec.send(
        "the file read back",
        stack.operator(Method::GET, "sandbox", &path("fs/read?path=app/.env")),
    )
    .await;
    rec.send(
        "the files",
        stack.operator(Method::GET, "sandbox", &path("fs/list?path=app")),
    )
    .await;
    rec.send(
        "a checkpoint",
        stack
            .internal(Method::POST, "sandbox", &path("checkpoints"))
            .json(&json!({"message": "before the secret"})),
    )
    .await;
    rec.send(
        "a fetch of a closed port",
        stack
            .internal(Method::POST, "sandbox", &path("http/fetch"))
            .json(&json!({"url": format!("http://127.0.0.1:9/?token={}", s.redact[1])})),
    )
    .await;

    // The same tools over MCP.
    let mut client = mcp::Client::connect(
        "the sandbox",
        &stack.url("sandbox", &path("mcp")),
        &s.key_old,
        rec,
    )
    .await;
    client.list_tools().await;
    client
        .call(
            "exec",
            json!({"cmd": format!("echo {} {}", s.redact[0], s.key_new)}),
        )
        .await;
    client.call("fs_read", json!({"path": "app/.env"})).await;
    client
        .call("exec", json!({"cmd": format!("echo {}; exit 1", s.pass)}))
        .await;
    client
        .call("fs_read", json!({"path": format!("../{}", s.key_new)}))
        .await;
    client.close().await;

    rec.send(
        "the session's tool calls",
        stack.operator(Method::GET, "sandbox", &path("tool-calls")),
    )
    .await;
    rec.send(
        "the session",
        stack.operator(Method::GET, "sandbox", &path("state")),
    )
    .await;

    // Bad input carrying secrets.
    rec.send(
        "a secret as the template",
        stack
            .internal(Method::POST, "sandbox", "/api/sessions")
            .json(&json!({"template": s.key_new})),
    )
    .await;
    rec.send(
        "a secret as the timeout",
        stack
            .internal(Method::POST, "sandbox", &path("exec"))
            .json(&json!({"cmd": "true", "timeoutSec": s.pass})),
    )
    .await;
    rec.send(
        "a secret as an unknown field",
        stack
            .internal(Method::POST, "sandbox", &path("exec"))
            .json(&json!({"cmd": "true", "token": s.key_old})),
    )
    .await;
    rec.send(
        "a secret as the package manager",
        stack
            .internal(Method::POST, "sandbox", &path("install"))
            .json(&json!({"pkgManager": s.redact[0], "args": []})),
    )
    .await;
    logs
}

/// Ends the run's sandbox sessions so that no container outlives the test.
pub async fn end_sandbox(stack: &Stack, rec: &Recorder) {
    let sessions = rec
        .send(
            "sessions",
            stack.operator(Method::GET, "sandbox", "/api/sessions"),
        )
        .await
        .json();
    for session in sessions["items"].as_array().into_iter().flatten() {
        if let Some(id) = session["sessionId"].as_str().or(session["id"].as_str()) {
            rec.send(
                "the end of a session",
                stack.internal(Method::DELETE, "sandbox", &format!("/api/sessions/{id}")),
            )
            .await;
        }
    }
}

/// The queue gateway: an AI over MCP creating a page, sending directives, waiting for input,
/// storing blobs, sharing the page; a browser polling and answering; bad calls carrying
/// secrets.
pub async fn queue_gateway(stack: &Stack, rec: &Recorder) {
    let s = &stack.secrets;
    let mut client = mcp::Client::connect(
        "the queue gateway",
        &stack.url("queue-gateway", "/mcp"),
        &s.key_new,
        rec,
    )
    .await;
    client.list_tools().await;
    let created = client
        .call("create_page", json!({"page": "secrets-demo"}))
        .await;
    assert_ne!(created["isError"], json!(true), "{created}");
    let sent = client
        .call(
            "send_response_to_browser",
            json!({"page": "secrets-demo", "to": "text-component-q", "directive": "text.set",
                   "body": {"text": "What should we chart?"}}),
        )
        .await;
    assert_ne!(sent["isError"], json!(true), "{sent}");
    rec.send(
        "a browser poll",
        stack.operator(
            Method::GET,
            "queue-gateway",
            "/pages/secrets-demo/poll?after=0&wait=1",
        ),
    )
    .await;
    let answer = rec
        .send(
            "user input",
            stack
                .operator(Method::POST, "queue-gateway", "/pages/secrets-demo/events")
                .json(
                    &json!({"component": "text-component-q", "kind": "submit", "value": "sales"}),
                ),
        )
        .await;
    assert_status(&answer, 202, "POST events");
    client
        .call(
            "wait_for_user_input",
            json!({"page": "secrets-demo", "timeoutSecs": 1}),
        )
        .await;
    let put = client
        .call(
            "put_blob",
            json!({"kind": "dataset", "name": "secrets/sales", "contentType": "text/csv",
                   "tags": ["secrets-suite"], "text": "region,sales\nnorth,1\n".repeat(200)}),
        )
        .await;
    let blob = put["structuredContent"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    client.call("get_blob", json!({"id": blob})).await;
    client
        .call("list_blobs", json!({"tags": ["secrets-suite"]}))
        .await;
    client
        .call("share_page", json!({"page": "secrets-demo", "ttlSecs": 60}))
        .await;
    // Bad calls carrying secrets: each is a tool error.
    for (tool, args) in [
        (
            "send_response_to_browser",
            json!({"page": "secrets-demo", "to": s.key_new, "directive": "text.set", "body": {"text": "x"}}),
        ),
        (
            "send_response_to_browser",
            json!({"page": "secrets-demo", "to": "text-component-q", "directive": s.pass, "body": {}}),
        ),
        (
            "send_response_to_browser",
            json!({"page": "secrets-demo", "to": "text-component-q", "directive": "text.set", "body": {"text": 5, "format": s.key_old}}),
        ),
        (
            "put_blob",
            json!({"kind": s.render_token, "contentType": "text/csv", "text": "a"}),
        ),
        ("get_blob", json!({"id": s.key_new})),
        (
            "send_response_to_browser",
            json!({"page": s.key_old, "to": "text-component-q", "directive": "text.set", "body": {"text": "x"}}),
        ),
        (
            "remove_component",
            json!({"page": "secrets-demo", "address": s.pass}),
        ),
    ] {
        let result = client.call(tool, args).await;
        assert_eq!(result["isError"], json!(true), "{tool}: {result}");
    }
    client.close().await;

    // The same over HTTP.
    for (what, path, body) in [
        (
            "a secret as an address",
            "/pages/secrets-demo/messages",
            json!({"to": s.key_new, "directive": "text.set", "body": {"text": "x"}}),
        ),
        (
            "a secret as a directive",
            "/pages/secrets-demo/messages",
            json!({"to": "text-component-q", "directive": s.key_old, "body": {}}),
        ),
        (
            "a secret as a page id",
            "/pages",
            json!({"page": format!("{} x", s.pass)}),
        ),
    ] {
        let answer = rec
            .send(
                what,
                stack
                    .internal(Method::POST, "queue-gateway", path)
                    .json(&body),
            )
            .await;
        assert!(answer.status.is_client_error(), "{what}: {}", answer.text);
    }
}

/// Every route of every service, asked with near misses of the credentials (a mistyped key,
/// password, bearer token and `?auth=`), and with the real key in the wrong header.
pub async fn wrong_credentials(stack: &Stack, rec: &Recorder) {
    let s = &stack.secrets;
    let near_basic = basic(USER, &s.pass_near);
    for name in stack.services.keys() {
        let openapi = rec
            .send(
                "the OpenAPI document",
                stack.internal(Method::GET, name, "/openapi.json"),
            )
            .await
            .json();
        for route in routes(&openapi) {
            let path = concrete(&route.path);
            if route.path == "/health" || route.path == "/health/ready" {
                continue;
            }
            let attempts = [
                (
                    "a near miss of the internal key",
                    stack
                        .http
                        .request(route.method.clone(), stack.url(name, &path))
                        .header("x-internal-key", &s.key_near),
                ),
                (
                    "the internal key with a character more",
                    stack
                        .http
                        .request(route.method.clone(), stack.url(name, &path))
                        .header("x-internal-key", format!("{}0", s.key_new)),
                ),
                (
                    "a near miss of the password",
                    stack
                        .http
                        .request(route.method.clone(), stack.url(name, &path))
                        .basic_auth(USER, Some(&s.pass_near)),
                ),
                (
                    "a near miss of the key as bearer token",
                    stack
                        .http
                        .request(route.method.clone(), stack.url(name, &path))
                        .bearer_auth(&s.key_near),
                ),
                (
                    "a near miss in ?auth=",
                    stack.http.request(
                        route.method.clone(),
                        stack.url(name, &format!("{path}?auth={}", urlencode(&near_basic))),
                    ),
                ),
                (
                    "the password as a bearer token",
                    stack
                        .http
                        .request(route.method.clone(), stack.url(name, &path))
                        .bearer_auth(&s.pass),
                ),
            ];
            for (what, request) in attempts {
                let answer = rec.send(what, request).await;
                assert!(
                    matches!(
                        answer.status,
                        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
                    ),
                    "{name} {} {path} with {what}: {} {}",
                    route.method,
                    answer.status,
                    answer.text
                );
            }
        }
    }
}

/// Every query parameter of every plain GET route set to a secret, with good credentials: a
/// filter that does not parse must not be echoed.
pub async fn secrets_in_queries(stack: &Stack, rec: &Recorder) {
    let s = &stack.secrets;
    for name in stack.services.keys() {
        let openapi = rec
            .send(
                "the OpenAPI document",
                stack.operator(Method::GET, name, "/openapi.json"),
            )
            .await
            .json();
        for route in routes(&openapi) {
            if route.method != Method::GET
                || ["/ws", "/stream", "/logs", "/mcp", "/preview"]
                    .iter()
                    .any(|live| route.path.contains(live) && route.path != "/logs")
            {
                continue;
            }
            let parameters = route.query_parameters();
            if parameters.is_empty() {
                continue;
            }
            let query: Vec<String> = parameters
                .iter()
                .filter(|(name, _)| name != "auth" && name != "token")
                .map(|(name, _)| format!("{name}={}", urlencode(&s.key_new)))
                .collect();
            let path = format!("{}?{}", concrete(&route.path), query.join("&"));
            rec.send(
                "a secret in every query parameter",
                stack.operator(Method::GET, name, &path),
            )
            .await;
        }
    }
}

/// A service refusing to boot on a configuration whose secrets are wrong: it names the
/// variables, never their values.
pub async fn refused_boot(stack: &Stack, rec: &Recorder) {
    let s = &stack.secrets;
    let env = vec![
        (
            "INTERNAL_API_KEYS",
            format!("{},{} with spaces", s.key_new, s.key_old),
        ),
        ("BASIC_AUTH_USER", USER.to_owned()),
        ("BASIC_AUTH_PASS", s.pass.repeat(8)),
        ("AWS_ACCESS_KEY_ID", "secrets-suite".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", s.aws_secret.repeat(8)),
        (
            "ORCHESTRATOR_URL",
            format!("http://{USER}:{}@127.0.0.1:9", s.pass),
        ),
        ("REQUEST_TIMEOUT", "soon".to_owned()),
    ];
    let output = autonoma_testkit::run_to_exit(
        &autonoma_testkit::workspace_binary("echo-agent"),
        &env,
        Duration::from_secs(30),
    )
    .await
    .expect("the agent exits");
    assert_eq!(output.status.code(), Some(78), "EX_CONFIG");
    rec.keep(
        "the output of echo-agent refusing its configuration",
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    );
}
