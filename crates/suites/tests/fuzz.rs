//! Each service's HTTP API fuzzed from its own OpenAPI document with schemathesis.
//!
//! Every service runs as a real process on a fresh database; schemathesis reads the running
//! service's `GET /openapi.json` and sends each operation schema-valid and invalid requests
//! (boundary values, wrong types, unexpected properties and headers, bad encodings, other
//! methods), then sequences that feed the ids earlier answers returned (tasks, pages, sharing
//! tokens, sandbox sessions) into the operations that take them. Every request carries the
//! internal key, which every route but the webhook takes (where a route also takes Basic Auth
//! the key is what counts, so Basic Auth would reach the same code); webhooks are signed by a
//! schemathesis hook with the configured secret, so their payloads are fuzzed past the
//! signature check. No answer may be a 5xx, none may take longer than [`REQUEST_TIMEOUT`], and
//! afterwards the service must still be running and ready. A failure shows schemathesis's
//! report, with a `curl` line reproducing each failing request.
//!
//! Every operation is fuzzed; the per-service settings below only bound what waits by design
//! (long polls, event streams), give the values that make creation succeed, and say which 5xx
//! is a documented answer (the 502 of the sandbox's gateways to a session's servers).

#[path = "security/stack.rs"]
mod stack;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use autonoma_render_fake::RenderFake;
use stack::{HOOK_SECRET, HOOK_SOURCE, KEY, NO_RATE_LIMITS, Service, http};

/// The schemathesis release the suite is written against (`.ci/run` installs it).
const SCHEMATHESIS_VERSION: &str = "4.32.5";
const INSTALL: &str = "python3 -m venv ~/.cache/autonoma/venv && \
                       ~/.cache/autonoma/venv/bin/pip install 'schemathesis==4.32.5'";

/// Test cases per operation in the fuzzing phase (the coverage phase adds its boundary cases).
const MAX_EXAMPLES: u32 = 25;
/// An answer slower than this is a hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// The whole schemathesis run of one service.
const RUN_TIMEOUT: Duration = Duration::from_secs(420);

/// What one service is fuzzed with beside the shared settings.
struct Target {
    service: &'static str,
    /// schemathesis.toml lines for some of its operations.
    config: &'static str,
}

/// The `schemathesis` executable (`TEST_SCHEMATHESIS`, set by `cargo autonoma test`); fails the
/// test with install instructions when it is missing or another release.
fn schemathesis() -> PathBuf {
    let path = std::env::var_os("TEST_SCHEMATHESIS").unwrap_or_else(|| {
        panic!(
            "TEST_SCHEMATHESIS is not set. Run the tests with `cargo autonoma test`, which points \
             it at the venv of .ci/run, or install schemathesis ({INSTALL}) and set \
             TEST_SCHEMATHESIS=~/.cache/autonoma/venv/bin/schemathesis"
        )
    });
    let path = PathBuf::from(path);
    let version = std::process::Command::new(&path)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "TEST_SCHEMATHESIS={} cannot be run ({e}): install it with {INSTALL} (or run \
                 .ci/run)",
                path.display()
            )
        });
    let text = String::from_utf8_lossy(&version.stdout);
    assert!(
        version.status.success() && text.trim().ends_with(SCHEMATHESIS_VERSION),
        "{} is {:?}, not schemathesis {SCHEMATHESIS_VERSION}: install it with {INSTALL}",
        path.display(),
        text.trim()
    );
    path
}

/// A schemathesis hook that signs each webhook request as its source would (HMAC-SHA256 of the
/// body with the configured secret), so that fuzzing reaches the payload.
fn signing_hook() -> String {
    format!(
        r#"import hashlib, hmac, json
import schemathesis

SECRET = {HOOK_SECRET:?}.encode()


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.operation.path != "/hooks/{{source}}":
        return
    body = case.body
    if isinstance(body, bytes):
        raw = body
    else:
        try:
            raw = json.dumps(body, allow_nan=False).encode()
        except (TypeError, ValueError):
            return
    case.body = raw
    signature = hmac.new(SECRET, raw, hashlib.sha256).hexdigest()
    case.headers = dict(case.headers or {{}})
    case.headers["X-Hub-Signature-256"] = "sha256=" + signature
"#
    )
}

/// The schemathesis.toml of a run.
fn config(target: &Target) -> String {
    format!(
        r#"request-timeout = {timeout}

[headers]
X-INTERNAL-KEY = {KEY:?}

[dictionaries.source]
values = [{HOOK_SOURCE:?}]

# The configured webhook source most of the time, so that the signature is checked.
[parameters]
"path.source" = {{ dictionary = "source", probability = 0.9 }}

{extra}
"#,
        timeout = REQUEST_TIMEOUT.as_secs(),
        extra = target.config
    )
}

async fn fuzz(target: Target) {
    let schemathesis = schemathesis();
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");

    // renderctl talks to the contract fake of Render's API, which checks every request it gets.
    let fake = match target.service {
        "renderctl" => Some(RenderFake::start().await.expect("the Render fake starts")),
        _ => None,
    };
    if let Some(fake) = &fake {
        // Render's own limit (400 a minute) is spent within seconds of fuzzing, after which
        // renderctl rightly waits for it; the fuzzing is about renderctl's input.
        fake.set_rate_limit(1_000_000);
    }
    let mut extra: Vec<(&str, String)> = NO_RATE_LIMITS
        .iter()
        .map(|(k, v)| (*k, (*v).to_owned()))
        .collect();
    if let Some(fake) = &fake {
        extra.extend([
            ("RENDER_API_BASE_URL", fake.base_url()),
            ("RENDER_API_TOKEN", fake.token().to_owned()),
            ("RENDER_REPO", "https://github.com/acme/autonoma".to_owned()),
            (
                "RENDER_BLUEPRINT_PATH",
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../render.yaml")
                    .display()
                    .to_string(),
            ),
        ]);
    }
    // Few sessions (containers) at once, and commands that ask for no timeout stop after 5 s.
    if target.service == "sandbox" {
        extra.extend([
            ("SANDBOX_MAX_SESSIONS", "3".to_owned()),
            ("SANDBOX_EXEC_TIMEOUT", "5s".to_owned()),
        ]);
    }
    let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut service = Service::start(target.service, &extra).await;
    let http = http();
    let ready = |service: &Service| {
        let request = http.get(service.url("/health/ready")).send();
        async move { request.await.map(|r| r.status().as_u16()).ok() }
    };
    let ready_before = ready(&service).await;
    if target.service == "orchestrator" {
        // An agent for the kind the webhook route and the task dictionary name, so that
        // signed webhooks and fuzzed tasks are created and their ids fuzzed in turn.
        let response = http
            .post(service.url("/agents"))
            .header("x-internal-key", KEY)
            .json(&serde_json::json!({
                "name": "echo-agent",
                "transport": "http",
                "baseUrl": "http://127.0.0.1:9",
                "kinds": [{"kind": "echo", "payloadSchema": {"type": "object"}}],
            }))
            .send()
            .await
            .expect("POST /agents");
        assert_eq!(response.status(), 200, "registering the echo agent");
    }

    std::fs::write(dir.path().join("schemathesis.toml"), config(&target)).expect("config");
    std::fs::write(dir.path().join("autonoma_fuzz_hooks.py"), signing_hook()).expect("hooks");
    let log_path = dir.path().join("schemathesis.log");
    let log = std::fs::File::create(&log_path).expect("schemathesis.log");
    let mut command = tokio::process::Command::new(&schemathesis);
    command
        .arg("--config-file")
        .arg(dir.path().join("schemathesis.toml"))
        .arg("run")
        .arg(service.url("/openapi.json"))
        .args(["--checks", "not_a_server_error"])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--max-examples", &MAX_EXAMPLES.to_string()])
        // Shrinking a hang would wait out the request timeout at every step; the reported case
        // reproduces as it is.
        .args(["--generation-database", "none", "--no-shrink"])
        .args(["--no-color", "--output-truncate", "true"]);
    command
        .current_dir(dir.path())
        .env("SCHEMATHESIS_HOOKS", "autonoma_fuzz_hooks")
        .env("PYTHONPATH", dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .kill_on_drop(true);
    let fuzz_started = Instant::now();
    let mut child = command.spawn().expect("schemathesis starts");
    let status = tokio::time::timeout(RUN_TIMEOUT, child.wait()).await;
    let report = std::fs::read_to_string(&log_path).unwrap_or_default();
    let Ok(status) = status else {
        let _ = child.kill().await;
        panic!(
            "{}: schemathesis did not finish within {}s; its output so far:\n{report}",
            target.service,
            RUN_TIMEOUT.as_secs()
        );
    };
    let status = status.expect("schemathesis runs");
    eprintln!(
        "fuzz {}: schemathesis ran {:.0}s ({:.0}s with the start)\n{report}",
        target.service,
        fuzz_started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    let exited = service.process.try_wait().expect("the process state");
    assert!(
        exited.is_none(),
        "{}: the service exited ({exited:?}) while being fuzzed:\n{}\n{report}",
        target.service,
        service.process.output()
    );
    assert!(
        status.success(),
        "{}: schemathesis found failures ({status}):\n{report}",
        target.service
    );
    let ready_after = ready(&service).await;
    assert_eq!(
        ready_after,
        Some(200),
        "{}: not ready after the fuzzing (before: {ready_before:?})",
        target.service
    );
}

/// An event stream stays open: schemathesis reads it until the request timeout and cuts it,
/// which is no failure. Two seconds are plenty to see it start; each case that opens one takes
/// them, hence fewer cases.
const STREAM_LOGS: &str = r#"
[[operations]]
include-name = "GET /logs/stream"
request-timeout = 2
generation.max-examples = 10
"#;

/// The long polls wait up to `wait` seconds (at most 30 and 20) when nothing is there, which
/// is no hang: `wait` comes from a list of short and invalid values instead, and the coverage
/// phase, which would try the documented maximum, is left out for them.
const GATEWAY: &str = r#"
[dictionaries.wait]
values = [0, -1, 31, 99999999999999999999, "x"]

[[operations]]
include-name = ["GET /pages/{page}/poll", "GET /pages/{page}/input"]
parameters = { "query.wait" = { dictionary = "wait" } }
phases.coverage.enabled = false

# MCP clients accept both; anything else is refused with 406 before the protocol is read.
[[operations]]
include-path = "/mcp"
headers = { Accept = "application/json, text/event-stream" }

# An event stream, as GET /logs/stream of the logging service.
[[operations]]
include-name = "GET /pages/{page}/stream"
request-timeout = 2
generation.max-examples = 10
"#;

/// The preview proxy and `http/fetch` are gateways to the session's own servers: 502 is their
/// documented answer when nothing answers (no dev server was started, or nothing listens).
const SANDBOX: &str = r#"
[[operations]]
include-path-regex = "/preview/proxy|/http/fetch$"
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "502"]

[[operations]]
include-path-regex = "/mcp$"
headers = { Accept = "application/json, text/event-stream" }
"#;

/// Half the tasks are of the kind an agent serves, so that they are created.
const ORCHESTRATOR: &str = r#"
[dictionaries.kind]
values = ["echo"]

[[operations]]
include-name = "POST /task"
parameters = { "body.kind" = { dictionary = "kind", probability = 0.5 } }
"#;

#[tokio::test]
async fn fuzz_orchestrator() {
    fuzz(Target {
        service: "orchestrator",
        config: ORCHESTRATOR,
    })
    .await;
}

#[tokio::test]
async fn fuzz_logging() {
    fuzz(Target {
        service: "logging",
        config: STREAM_LOGS,
    })
    .await;
}

#[tokio::test]
async fn fuzz_echo_agent() {
    fuzz(Target {
        service: "echo-agent",
        config: "",
    })
    .await;
}

#[tokio::test]
async fn fuzz_renderctl() {
    fuzz(Target {
        service: "renderctl",
        config: "",
    })
    .await;
}

#[tokio::test]
async fn fuzz_sandbox() {
    fuzz(Target {
        service: "sandbox",
        config: SANDBOX,
    })
    .await;
}

#[tokio::test]
async fn fuzz_queue_gateway() {
    fuzz(Target {
        service: "queue-gateway",
        config: GATEWAY,
    })
    .await;
}
