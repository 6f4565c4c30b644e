//! Kind `echo` through the agent kit, served in-process: the knobs that make attempts fail,
//! hang and honour cancellation.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use autonoma_common::config::load_from;
use autonoma_protocol::{DispatchIn, DispatchOut};
use echo_agent::EchoConfig;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use support::Recorder;

const KEY: &str = "echo-task-test-key-0123456789";

/// echo-agent served in-process against a recording orchestrator; dropping it shuts it down.
struct Echo {
    base_url: String,
    shutdown: CancellationToken,
    orchestrator: Recorder,
    _orchestrator_server: autonoma_testkit::TestServer,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn echo_agent() -> Echo {
    let orchestrator = Recorder::default();
    let orchestrator_server = orchestrator.serve().await;
    let env: HashMap<String, String> = [
        ("INTERNAL_API_KEYS", KEY),
        ("BASIC_AUTH_USER", "operator"),
        ("BASIC_AUTH_PASS", "correct-horse-battery"),
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("ORCHESTRATOR_URL", orchestrator_server.base_url.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let loaded = load_from::<EchoConfig>("echo-agent", &env).expect("valid configuration");
    let server = echo_agent::build(loaded).await.expect("bind");
    let base_url = format!("http://{}", server.local_addr());
    let shutdown = server.shutdown_token();
    tokio::spawn(server.run());
    Echo {
        base_url,
        shutdown,
        orchestrator,
        _orchestrator_server: orchestrator_server,
    }
}

fn dispatch(payload: Value, attempt: i32, deadline_in: Duration) -> DispatchIn {
    DispatchIn {
        task_id: Uuid::new_v4(),
        kind: "echo".into(),
        payload,
        attempt,
        version: attempt,
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
        correlation_id: None,
        deadline: OffsetDateTime::now_utc() + deadline_in,
    }
}

impl Echo {
    async fn run(&self, body: &DispatchIn) -> DispatchOut {
        let response = reqwest::Client::new()
            .post(format!("{}/tasks/dispatch", self.base_url))
            .header("x-internal-key", KEY)
            .json(body)
            .send()
            .await
            .expect("dispatch");
        assert_eq!(response.status(), 200);
        response.json().await.expect("DispatchOut")
    }
}

#[tokio::test]
async fn registers_kind_echo_with_its_payload_schema() {
    let echo = echo_agent().await;
    let registration = echo
        .orchestrator
        .wait_for("POST", "/agents", Duration::from_secs(30))
        .await;
    assert_eq!(registration.body["name"], "echo-agent");
    assert_eq!(registration.body["transport"], "http");
    assert_eq!(registration.body["baseUrl"], echo.base_url.as_str());
    assert_eq!(registration.body["kinds"][0]["kind"], "echo");
    assert_eq!(
        registration.body["kinds"][0]["payloadSchema"],
        echo_agent::task::payload_schema()
    );
}

#[tokio::test]
async fn echoes_the_payload_with_the_attempt() {
    let echo = echo_agent().await;
    let payload = json!({"message": "hi", "extra": [1, 2]});
    assert_eq!(
        echo.run(&dispatch(payload.clone(), 1, Duration::from_secs(30)))
            .await,
        DispatchOut::Succeeded {
            result: json!({"echo": payload, "attempt": 1})
        }
    );
}

#[tokio::test]
async fn fail_times_fails_the_first_attempts_then_succeeds() {
    let echo = echo_agent().await;
    let payload = json!({"failTimes": 2});
    for attempt in 1..=2 {
        let DispatchOut::Failed { error, retryable } = echo
            .run(&dispatch(payload.clone(), attempt, Duration::from_secs(30)))
            .await
        else {
            panic!("attempt {attempt} should fail");
        };
        assert!(retryable);
        assert_eq!(error["attempt"], attempt);
    }
    assert_eq!(
        echo.run(&dispatch(payload.clone(), 3, Duration::from_secs(30)))
            .await,
        DispatchOut::Succeeded {
            result: json!({"echo": payload, "attempt": 3})
        }
    );
}

#[tokio::test]
async fn fail_always_fails_every_attempt() {
    let echo = echo_agent().await;
    for attempt in [1, 7] {
        let outcome = echo
            .run(&dispatch(
                json!({"failAlways": true}),
                attempt,
                Duration::from_secs(30),
            ))
            .await;
        assert!(
            matches!(
                outcome,
                DispatchOut::Failed {
                    retryable: true,
                    ..
                }
            ),
            "{outcome:?}"
        );
    }
}

#[tokio::test]
async fn hang_ms_ends_at_the_deadline_or_on_cancellation() {
    let echo = echo_agent().await;

    let started = Instant::now();
    let DispatchOut::Failed { error, .. } = echo
        .run(&dispatch(
            json!({"hangMs": 60000}),
            1,
            Duration::from_millis(700),
        ))
        .await
    else {
        panic!("a hang past the deadline fails");
    };
    assert_eq!(error["message"], "timed out");
    assert!(started.elapsed() < Duration::from_secs(5));

    let body = dispatch(json!({"hangMs": 60000}), 1, Duration::from_secs(120));
    let task_id = body.task_id;
    let url = format!("{}/tasks/dispatch", echo.base_url);
    let started = Instant::now();
    let in_flight = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .header("x-internal-key", KEY)
            .json(&body)
            .send()
            .await
    });
    let cancel_url = format!("{}/tasks/{task_id}/cancel", echo.base_url);
    loop {
        let status = reqwest::Client::new()
            .post(&cancel_url)
            .header("x-internal-key", KEY)
            .send()
            .await
            .expect("cancel")
            .status();
        if status == 204 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out: DispatchOut = in_flight
        .await
        .expect("join")
        .expect("answered")
        .json()
        .await
        .expect("json");
    assert_eq!(
        out,
        DispatchOut::Failed {
            error: json!({"message": "cancelled"}),
            retryable: false
        }
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the hang ended early"
    );
}

#[tokio::test]
async fn knobs_outside_the_schema_are_refused_without_running() {
    let echo = echo_agent().await;
    for payload in [
        json!({"delayMs": 600001}),
        json!({"failTimes": -1}),
        json!("not an object"),
    ] {
        let DispatchOut::Failed { error, retryable } = echo
            .run(&dispatch(payload.clone(), 1, Duration::from_secs(30)))
            .await
        else {
            panic!("{payload} should be refused");
        };
        assert!(!retryable, "{payload}");
        assert!(error["violations"].is_array(), "{error}");
    }
}
