//! Registration, heartbeats and the HTTP transport, against a fake orchestrator.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use autonoma_agent_kit::{Agent, DispatchIn, DispatchOut, TaskContext, TaskError};
use autonoma_common::trace::TraceContext;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use support::{FakeOrchestrator, KEY, RunningAgent, client, eventually};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[derive(Debug, Deserialize)]
struct Greeting {
    name: String,
}

#[derive(Debug, Serialize)]
struct Greeted {
    greeting: String,
    attempt: i32,
    trace_id: String,
    current_trace_id: Option<String>,
}

async fn greet(ctx: TaskContext, payload: Greeting) -> Result<Greeted, TaskError> {
    if payload.name == "nobody" {
        return Err(TaskError::permanent("nobody to greet").detail("name", payload.name));
    }
    if payload.name == "flaky" {
        return Err(TaskError::new("try again"));
    }
    Ok(Greeted {
        greeting: format!("hello {}", payload.name),
        attempt: ctx.attempt,
        trace_id: ctx.trace.trace_id_hex(),
        current_trace_id: TraceContext::current().map(|c| c.trace_id_hex()),
    })
}

fn greet_schema() -> Value {
    json!({
        "type": "object",
        "properties": { "name": { "type": "string", "minLength": 1 } },
        "required": ["name"]
    })
}

/// An agent with `greet`, `stubborn` (sleeps without watching cancellation) and `patient`
/// (waits for cancellation, recording that it saw it).
fn test_agent(saw_cancel: Arc<AtomicBool>) -> Agent {
    Agent::builder("test-agent")
        .kind("greet", greet_schema(), greet)
        .kind(
            "stubborn",
            json!({"type": "object"}),
            |_ctx: TaskContext, _payload: Value| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok::<_, TaskError>(json!({}))
            },
        )
        .kind(
            "patient",
            json!({"type": "object"}),
            move |ctx: TaskContext, _payload: Value| {
                let saw_cancel = saw_cancel.clone();
                async move {
                    ctx.cancelled.cancelled().await;
                    saw_cancel.store(true, Ordering::SeqCst);
                    Err::<Value, _>(TaskError::cancelled())
                }
            },
        )
        .build()
        .expect("agent")
}

fn dispatch(kind: &str, payload: Value, deadline_in: Duration) -> DispatchIn {
    DispatchIn {
        task_id: Uuid::new_v4(),
        kind: kind.into(),
        payload,
        attempt: 2,
        version: 5,
        trace_id: TRACE_ID.into(),
        traceparent: format!("00-{TRACE_ID}-00f067aa0ba902b7-01"),
        correlation_id: Some("order-17".into()),
        deadline: OffsetDateTime::now_utc() + deadline_in,
    }
}

async fn post_dispatch(agent: &RunningAgent, body: &DispatchIn) -> reqwest::Response {
    client()
        .post(agent.url("/tasks/dispatch"))
        .header("x-internal-key", KEY)
        .json(body)
        .send()
        .await
        .expect("dispatch request")
}

async fn outcome(agent: &RunningAgent, body: &DispatchIn) -> DispatchOut {
    let response = post_dispatch(agent, body).await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("DispatchOut")
}

#[tokio::test]
async fn registers_once_the_orchestrator_answers_then_heartbeats_and_says_goodbye() {
    let port = autonoma_testkit::free_port();
    let agent = test_agent(Arc::default());
    let running =
        RunningAgent::start(&agent, &format!("http://{}", support::local(port)), &[]).await;

    // Nothing listens yet: the agent serves regardless.
    let health = client()
        .get(running.url("/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200);
    tokio::time::sleep(Duration::from_millis(600)).await;

    // Then the orchestrator comes up, refusing twice before it accepts.
    let fake = FakeOrchestrator::new();
    fake.register_answers(&[503, 500]);
    let _served = fake.serve_on(port).await;

    let heartbeats = eventually("two heartbeats", Duration::from_secs(30), || async {
        let beats = fake.calls_to("POST", "/agents/test-agent/heartbeat");
        (beats.len() >= 2).then_some(beats)
    })
    .await;
    let registrations = fake.calls_to("POST", "/agents");
    let registrations: Vec<_> = registrations
        .iter()
        .filter(|c| c.path == "/agents")
        .collect();
    assert_eq!(registrations.len(), 3, "two refused, one accepted");
    let registration = &registrations[2];
    assert_eq!(registration.internal_key.as_deref(), Some(KEY));
    assert_eq!(registration.body["name"], "test-agent");
    assert_eq!(registration.body["baseUrl"], running.base_url.as_str());
    assert_eq!(registration.body["transport"], "http");
    assert!(registration.body.get("queueUrl").is_none());
    let kinds = registration.body["kinds"].as_array().expect("kinds");
    assert_eq!(kinds.len(), 3);
    let greet = kinds.iter().find(|k| k["kind"] == "greet").expect("greet");
    assert_eq!(greet["payloadSchema"], greet_schema());
    assert_eq!(heartbeats[0].body["status"], "ok");
    assert_eq!(heartbeats[0].internal_key.as_deref(), Some(KEY));

    running.stop().await;
    let last = fake
        .calls_to("POST", "/agents/test-agent/heartbeat")
        .pop()
        .expect("a last heartbeat");
    assert_eq!(last.body["status"], "draining");
}

#[tokio::test]
async fn dispatch_runs_the_kind_under_the_task_trace_and_answers_succeeded() {
    let fake = FakeOrchestrator::new();
    let orchestrator = fake.serve().await;
    let agent = test_agent(Arc::default());
    let running = RunningAgent::start(&agent, &orchestrator.base_url, &[]).await;

    let body = dispatch("greet", json!({"name": "ada"}), Duration::from_secs(30));
    let DispatchOut::Succeeded { result } = outcome(&running, &body).await else {
        panic!("expected success");
    };
    assert_eq!(result["greeting"], "hello ada");
    assert_eq!(result["attempt"], 2);
    assert_eq!(result["trace_id"], TRACE_ID);
    assert_eq!(result["current_trace_id"], TRACE_ID);
    assert_eq!(agent.running(), 0);
    running.stop().await;
}

#[tokio::test]
async fn handler_errors_answer_failed_with_their_retryability() {
    let fake = FakeOrchestrator::new();
    let orchestrator = fake.serve().await;
    let agent = test_agent(Arc::default());
    let running = RunningAgent::start(&agent, &orchestrator.base_url, &[]).await;

    let permanent = dispatch("greet", json!({"name": "nobody"}), Duration::from_secs(30));
    assert_eq!(
        outcome(&running, &permanent).await,
        DispatchOut::Failed {
            error: json!({"message": "nobody to greet", "name": "nobody"}),
            retryable: false,
        }
    );
    let transient = dispatch("greet", json!({"name": "flaky"}), Duration::from_secs(30));
    assert_eq!(
        outcome(&running, &transient).await,
        DispatchOut::Failed {
            error: json!({"message": "try again"}),
            retryable: true,
        }
    );
    // A payload outside the kind's schema never reaches the handler.
    let invalid = dispatch("greet", json!({"name": ""}), Duration::from_secs(30));
    let DispatchOut::Failed { error, retryable } = outcome(&running, &invalid).await else {
        panic!("expected failure");
    };
    assert!(!retryable);
    assert_eq!(error["violations"][0]["field"], "/name", "{error}");
    running.stop().await;
}

#[tokio::test]
async fn a_handler_still_running_at_the_deadline_is_stopped_and_answered_timed_out() {
    let fake = FakeOrchestrator::new();
    let orchestrator = fake.serve().await;
    let agent = test_agent(Arc::default());
    let running = RunningAgent::start(&agent, &orchestrator.base_url, &[]).await;

    let started = Instant::now();
    let body = dispatch("stubborn", json!({}), Duration::from_millis(800));
    let DispatchOut::Failed { error, retryable } = outcome(&running, &body).await else {
        panic!("expected failure");
    };
    assert_eq!(error["message"], "timed out");
    assert_eq!(error["limit"], "deadline");
    assert!(retryable);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered at the deadline"
    );
    assert_eq!(agent.running(), 0, "the handler was stopped");

    // A dispatch whose deadline has already passed is not run at all.
    let late = dispatch("greet", json!({"name": "ada"}), Duration::ZERO);
    let DispatchOut::Failed { error, .. } = outcome(&running, &late).await else {
        panic!("expected failure");
    };
    assert_eq!(error["message"], "timed out");
    running.stop().await;
}

#[tokio::test]
async fn cancel_reaches_a_running_handler_and_only_a_running_one() {
    let fake = FakeOrchestrator::new();
    let orchestrator = fake.serve().await;
    let saw_cancel = Arc::new(AtomicBool::new(false));
    let agent = test_agent(saw_cancel.clone());
    let running = RunningAgent::start(&agent, &orchestrator.base_url, &[]).await;

    let body = dispatch("patient", json!({}), Duration::from_secs(60));
    let task_id = body.task_id;
    let url = running.url("/tasks/dispatch");
    let in_flight = tokio::spawn(async move {
        client()
            .post(url)
            .header("x-internal-key", KEY)
            .json(&body)
            .send()
            .await
    });
    let cancel_url = running.url(&format!("/tasks/{task_id}/cancel"));
    eventually(
        "the cancel to find the task",
        Duration::from_secs(10),
        || {
            let cancel_url = cancel_url.clone();
            async move {
                let response = client()
                    .post(cancel_url)
                    .header("x-internal-key", KEY)
                    .send()
                    .await
                    .ok()?;
                (response.status() == 204).then_some(())
            }
        },
    )
    .await;

    let response = in_flight.await.expect("join").expect("answered");
    assert_eq!(response.status(), 200);
    let out: DispatchOut = response.json().await.expect("json");
    assert_eq!(
        out,
        DispatchOut::Failed {
            error: json!({"message": "cancelled"}),
            retryable: false
        }
    );
    assert!(saw_cancel.load(Ordering::SeqCst), "the handler saw it");

    // Nothing runs under that id any more, nor under an unknown one.
    for id in [task_id, Uuid::new_v4()] {
        let response = client()
            .post(running.url(&format!("/tasks/{id}/cancel")))
            .header("x-internal-key", KEY)
            .send()
            .await
            .expect("cancel");
        assert_eq!(response.status(), 404);
        let problem: Value = response.json().await.expect("problem");
        assert_eq!(problem["type"], "urn:autonoma:problem:not-running");
    }
    running.stop().await;
}

#[tokio::test]
async fn unknown_kinds_bad_bodies_and_missing_keys_are_refused() {
    let fake = FakeOrchestrator::new();
    let orchestrator = fake.serve().await;
    let agent = test_agent(Arc::default());
    let running = RunningAgent::start(&agent, &orchestrator.base_url, &[]).await;

    let response = post_dispatch(
        &running,
        &dispatch("paint", json!({}), Duration::from_secs(30)),
    )
    .await;
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await.expect("problem");
    assert_eq!(problem["type"], "urn:autonoma:problem:unknown-kind");
    assert_eq!(problem["errors"][0]["field"], "/kind");

    let response = client()
        .post(running.url("/tasks/dispatch"))
        .header("x-internal-key", KEY)
        .json(&json!({"kind": "greet"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 422);

    let body = dispatch("greet", json!({"name": "ada"}), Duration::from_secs(30));
    let response = client()
        .post(running.url("/tasks/dispatch"))
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401);
    let response = client()
        .post(running.url("/tasks/dispatch"))
        .header("x-internal-key", "not-the-key-0123456789")
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401);
    let response = client()
        .post(running.url(&format!("/tasks/{}/cancel", Uuid::new_v4())))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401);

    // The kit's endpoints are in the agent's OpenAPI document.
    let openapi: Value = client()
        .get(running.url("/openapi.json"))
        .header("x-internal-key", KEY)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert!(openapi["paths"]["/tasks/dispatch"]["post"].is_object());
    assert!(openapi["paths"]["/tasks/{id}/cancel"]["post"].is_object());
    running.stop().await;
}

#[test]
fn building_refuses_duplicate_kinds_and_invalid_schemas() {
    let handler = |_ctx: TaskContext, payload: Value| async move { Ok::<_, TaskError>(payload) };
    let duplicate = Agent::builder("a")
        .kind("k", json!({}), handler)
        .kind("k", json!({}), handler)
        .build();
    assert!(duplicate.is_err());
    let invalid = Agent::builder("a")
        .kind("k", json!({"type": "no-such-type"}), handler)
        .build();
    assert!(invalid.is_err());
    assert!(Agent::builder("a").build().is_err());
}
