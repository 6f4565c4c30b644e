//! The dispatcher against agents that succeed, fail, hang, or never report.

mod support;

use std::time::Duration;

use autonoma_protocol::{TaskOut, TaskStatus};
use reqwest::Method;
use serde_json::{Value, json};
use support::{any_payload, fake_agent, start};

fn event_types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test]
async fn a_task_is_dispatched_and_succeeds() {
    let orch = start(&[]).await;
    let agent = fake_agent().await;
    orch.register("echo-agent", &agent.server.base_url, any_payload())
        .await;
    let task: TaskOut = orch
        .create(json!({"kind": "echo", "payload": {"message": "hi"}}))
        .await
        .json()
        .await
        .expect("task");
    let done = orch
        .wait_for(task.id, TaskStatus::Succeeded, Duration::from_secs(10))
        .await;
    assert_eq!(
        done.result,
        Some(json!({"echo": {"message": "hi"}, "attempt": 1}))
    );
    assert_eq!(done.attempts, 1);
    assert_eq!(done.agent.as_deref(), Some("echo-agent"));
    assert!(done.finished_at.is_some());
    assert_eq!(
        event_types(&orch.events(task.id).await),
        ["created", "dispatched", "succeeded"]
    );

    let received = agent.received.lock().expect("lock").clone();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].trace_id, task.trace_id);
    assert!(received[0].traceparent.contains(&task.trace_id));
    assert_eq!(received[0].version, 2);
}

#[tokio::test]
async fn failing_first_two_attempts_succeeds_on_the_third() {
    let orch = start(&[]).await;
    let agent = fake_agent().await;
    orch.register("echo-agent", &agent.server.base_url, any_payload())
        .await;
    let task: TaskOut = orch
        .create(json!({"kind": "echo", "payload": {"failTimes": 2}, "maxAttempts": 3}))
        .await
        .json()
        .await
        .expect("task");
    let done = orch
        .wait_for(task.id, TaskStatus::Succeeded, Duration::from_secs(15))
        .await;
    assert_eq!(done.attempts, 3);
    assert_eq!(
        event_types(&orch.events(task.id).await),
        [
            "created",
            "dispatched",
            "attempt_failed",
            "dispatched",
            "attempt_failed",
            "dispatched",
            "succeeded"
        ]
    );
}

#[tokio::test]
async fn always_failing_ends_failed_after_max_attempts_with_the_last_error() {
    let orch = start(&[]).await;
    let agent = fake_agent().await;
    orch.register("echo-agent", &agent.server.base_url, any_payload())
        .await;
    let task: TaskOut = orch
        .create(json!({"kind": "echo", "payload": {"mode": "fail"}, "maxAttempts": 2}))
        .await
        .json()
        .await
        .expect("task");
    let done = orch
        .wait_for(task.id, TaskStatus::Failed, Duration::from_secs(15))
        .await;
    assert_eq!(done.attempts, 2);
    assert_eq!(done.error, Some(json!({"message": "always fails"})));
    assert_eq!(
        event_types(&orch.events(task.id).await),
        [
            "created",
            "dispatched",
            "attempt_failed",
            "dispatched",
            "failed"
        ]
    );
    assert_eq!(agent.received.lock().expect("lock").len(), 2);
}

#[tokio::test]
async fn a_hang_is_timed_out_and_retried() {
    let orch = start(&[]).await;
    let agent = fake_agent().await;
    orch.register("echo-agent", &agent.server.base_url, any_payload())
        .await;
    let task: TaskOut = orch
        .create(json!({"kind": "echo", "payload": {"mode": "hang"}, "timeoutSecs": 1}))
        .await
        .json()
        .await
        .expect("task");
    let done = orch
        .wait_for(task.id, TaskStatus::Succeeded, Duration::from_secs(20))
        .await;
    assert_eq!(done.attempts, 2);
    let types = event_types(&orch.events(task.id).await);
    assert_eq!(
        types,
        [
            "created",
            "dispatched",
            "timed_out",
            "dispatched",
            "succeeded"
        ]
    );
}

#[tokio::test]
async fn an_attempt_never_reported_is_recovered_through_its_lease() {
    let orch = start(&[]).await;
    let agent = fake_agent().await;
    orch.register("echo-agent", &agent.server.base_url, any_payload())
        .await;
    // "accept": the agent answers 202 and then never reports.
    let task: TaskOut = orch
        .create(json!({"kind": "echo", "payload": {"mode": "accept"}, "timeoutSecs": 1, "maxAttempts": 2}))
        .await
        .json()
        .await
        .expect("task");
    let done = orch
        .wait_for(task.id, TaskStatus::Failed, Duration::from_secs(30))
        .await;
    assert_eq!(done.attempts, 2);
    let types = event_types(&orch.events(task.id).await);
    assert_eq!(
        types,
        [
            "created",
            "dispatched",
            "lease_expired",
            "dispatched",
            "failed"
        ]
    );
}

#[tokio::test]
async fn an_agent_reports_through_patch_and_a_cancel_wins_over_a_late_result() {
    let orch = start(&[]).await;
    let agent = fake_agent().await;
    orch.register("echo-agent", &agent.server.base_url, any_payload())
        .await;

    let reported: TaskOut = orch
        .create(json!({"kind": "echo", "payload": {"mode": "accept"}, "timeoutSecs": 60}))
        .await
        .json()
        .await
        .expect("task");
    let running = orch
        .wait_for(reported.id, TaskStatus::Running, Duration::from_secs(10))
        .await;
    let ok = orch
        .internal(Method::PATCH, &format!("/task/{}", reported.id))
        .header("x-autonoma-actor", "agent:echo-agent")
        .json(
            &json!({"ifVersion": running.version, "status": "succeeded", "result": {"done": true}}),
        )
        .send()
        .await
        .expect("request");
    assert_eq!(ok.status(), 200);
    let done = orch.task(reported.id).await;
    assert_eq!(done.status, TaskStatus::Succeeded);
    assert_eq!(done.result, Some(json!({"done": true})));

    let cancelled: TaskOut = orch
        .create(json!({"kind": "echo", "payload": {"mode": "accept"}, "timeoutSecs": 60}))
        .await
        .json()
        .await
        .expect("task");
    let running = orch
        .wait_for(cancelled.id, TaskStatus::Running, Duration::from_secs(10))
        .await;
    let cancel = orch
        .operator(Method::POST, &format!("/task/{}/cancel", cancelled.id))
        .send()
        .await
        .expect("request");
    assert_eq!(cancel.status(), 200);
    let late = orch
        .internal(Method::PATCH, &format!("/task/{}", cancelled.id))
        .json(
            &json!({"ifVersion": running.version, "status": "succeeded", "result": {"late": true}}),
        )
        .send()
        .await
        .expect("request");
    assert_eq!(late.status(), 409, "the late result is refused");
    let task = orch.task(cancelled.id).await;
    assert_eq!(task.status, TaskStatus::Cancelled);
    assert_eq!(task.result, None);
}

#[tokio::test]
async fn cancelled_tasks_are_never_dispatched_even_with_the_agent_down() {
    let orch = start(&[]).await;
    // Nothing listens here: the agent is down.
    let down = format!("http://127.0.0.1:{}", autonoma_testkit::free_port());
    orch.register("echo-agent", &down, any_payload()).await;
    let task: TaskOut = orch
        .create(json!({"kind": "echo", "payload": {}, "runAt": "2999-01-01T00:00:00Z"}))
        .await
        .json()
        .await
        .expect("task");
    orch.operator(Method::POST, &format!("/task/{}/cancel", task.id))
        .send()
        .await
        .expect("request");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let task = orch.task(task.id).await;
    assert_eq!(task.status, TaskStatus::Cancelled);
    assert_eq!(task.attempts, 0);
}

#[tokio::test]
async fn re_registering_swaps_the_agent_without_losing_queued_tasks() {
    let orch = start(&[]).await;
    let old = fake_agent().await;
    let new = fake_agent().await;
    orch.register("echo-agent", &old.server.base_url, any_payload())
        .await;
    let soon = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let run_at = soon
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    let task: TaskOut = orch
        .create(json!({"kind": "echo", "payload": {}, "runAt": run_at}))
        .await
        .json()
        .await
        .expect("task");
    // Hot swap before it is due: the queued task goes to the new registration.
    orch.register("echo-agent", &new.server.base_url, any_payload())
        .await;
    let done = orch
        .wait_for(task.id, TaskStatus::Succeeded, Duration::from_secs(15))
        .await;
    assert_eq!(done.attempts, 1);
    assert_eq!(new.received.lock().expect("lock").len(), 1);
    assert!(old.received.lock().expect("lock").is_empty());

    // A kind belongs to one agent at a time.
    let taken = orch
        .internal(Method::POST, "/agents")
        .json(&json!({"name": "other-agent", "baseUrl": "http://127.0.0.1:9", "transport": "http", "kinds": any_payload()}))
        .send()
        .await
        .expect("request");
    assert_eq!(taken.status(), 409);
    let bad = orch
        .internal(Method::POST, "/agents")
        .json(&json!({"name": "Bad Name", "transport": "sqs", "kinds": [{"kind": "x", "payloadSchema": {"type": 7}}]}))
        .send()
        .await
        .expect("request");
    assert_eq!(bad.status(), 422);
    let problem: Value = bad.json().await.expect("problem");
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert!(
        fields.contains(&"/name")
            && fields.contains(&"/queueUrl")
            && fields.contains(&"/kinds/0/payloadSchema"),
        "{problem}"
    );
    let anonymous = orch
        .http
        .post(orch.url("/agents"))
        .json(&json!({}))
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status(), 401);
}
