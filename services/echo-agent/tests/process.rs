//! The echo-agent binary as a real process: it refuses to start on bad configuration, serves
//! with the bootstrap's endpoints while the orchestrator is still unreachable, takes tasks from
//! its SQS queue, and drains in-flight requests on SIGTERM.

mod support;

use std::path::Path;
use std::time::Duration;

use autonoma_testkit::{ServiceProcess, free_port, run_to_exit};

const KEY: &str = "echo-test-key-0123456789";
const USER: &str = "operator";
const PASS: &str = "correct-horse-battery";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_echo-agent"))
}

/// A valid environment whose orchestrator is not listening (yet): the agent must serve anyway.
fn good_env() -> Vec<(&'static str, String)> {
    vec![
        ("INTERNAL_API_KEYS", KEY.to_owned()),
        ("BASIC_AUTH_USER", USER.to_owned()),
        ("BASIC_AUTH_PASS", PASS.to_owned()),
        ("LOG_FORMAT", "json".to_owned()),
        (
            "ORCHESTRATOR_URL",
            format!("http://127.0.0.1:{}", free_port()),
        ),
    ]
}

#[tokio::test]
async fn bad_configuration_exits_before_binding_and_names_every_variable() {
    let port = free_port();
    let env = vec![
        ("PORT", port.to_string()),
        ("BASIC_AUTH_USER", USER.to_owned()),
        ("BASIC_AUTH_PASS", "p4ss".to_owned()),
        ("LOG_FORMAT", "yaml".to_owned()),
        ("REQUEST_TIMEOUT", "soon".to_owned()),
    ];
    let output = run_to_exit(bin(), &env, Duration::from_secs(30))
        .await
        .expect("it exits");
    assert_eq!(output.status.code(), Some(78), "EX_CONFIG");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for variable in [
        "INTERNAL_API_KEYS",
        "BASIC_AUTH_PASS",
        "LOG_FORMAT",
        "REQUEST_TIMEOUT",
        "ORCHESTRATOR_URL",
    ] {
        assert!(
            stderr.contains(variable),
            "{variable} not named in:\n{stderr}"
        );
    }
    assert!(stderr.contains("5 problems"), "{stderr}");
    assert!(
        !stderr.contains("p4ss"),
        "a secret's value was echoed:\n{stderr}"
    );
    assert!(!stderr.contains("listening"), "it must not bind:\n{stderr}");
    // Nothing was ever bound to the port.
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port is still free");

    // The running service's /config/validate judges the same environment the same way.
    let mut service = ServiceProcess::spawn(bin(), &good_env()).expect("spawn");
    service
        .wait_healthy(Duration::from_secs(30))
        .await
        .expect("healthy");
    let candidate: serde_json::Map<String, serde_json::Value> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), serde_json::Value::String(v.clone())))
        .collect();
    let report: serde_json::Value = reqwest::Client::new()
        .post(service.url("/config/validate"))
        .basic_auth(USER, Some(PASS))
        .json(&serde_json::json!({ "env": candidate }))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("report");
    assert_eq!(report["valid"], false);
    assert_eq!(report["problems"], 5);
    let problems: Vec<&str> = report["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter(|k| k["status"] == "missing" || k["status"] == "invalid")
        .map(|k| k["key"].as_str().expect("name"))
        .collect();
    for variable in [
        "INTERNAL_API_KEYS",
        "BASIC_AUTH_PASS",
        "LOG_FORMAT",
        "REQUEST_TIMEOUT",
        "ORCHESTRATOR_URL",
    ] {
        assert!(
            problems.contains(&variable),
            "{variable} not reported: {report}"
        );
    }
    assert!(
        !report.to_string().contains("p4ss"),
        "secret echoed: {report}"
    );
}

#[tokio::test]
async fn serves_echo_and_the_operational_endpoints() {
    let mut service = ServiceProcess::spawn(bin(), &good_env()).expect("spawn");
    service
        .wait_healthy(Duration::from_secs(30))
        .await
        .expect("healthy");
    let client = reqwest::Client::new();

    let payload =
        serde_json::json!({"message": "hello", "nested": {"list": [1, 2, 3]}, "unicode": "ünï"});
    let echoed: serde_json::Value = client
        .post(service.url("/echo"))
        .header("x-internal-key", KEY)
        .json(&payload)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(echoed, payload);

    let refused = client
        .post(service.url("/echo"))
        .json(&payload)
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status(), 401);

    let report: serde_json::Value = client
        .get(service.url("/config/validate"))
        .basic_auth(USER, Some(PASS))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(report["service"], "echo-agent");
    assert_eq!(report["valid"], true);
    let keys = report["keys"].as_array().expect("keys");
    let status_of = |name: &str| {
        keys.iter()
            .find(|k| k["key"] == name)
            .map(|k| k["status"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(status_of("LOG_FORMAT").as_deref(), Some("ok"));
    assert_eq!(status_of("REQUEST_TIMEOUT").as_deref(), Some("defaulted"));
    assert_eq!(
        status_of("OTEL_EXPORTER_OTLP_ENDPOINT").as_deref(),
        Some("unset")
    );
    assert!(
        !report.to_string().contains(KEY),
        "the internal key was echoed"
    );
    assert!(
        !report.to_string().contains(PASS),
        "the password was echoed"
    );

    let metrics = client
        .get(service.url("/metrics"))
        .header("x-internal-key", KEY)
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(r#"http_requests_total{service="echo-agent",method="POST",route="/echo",status="200"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("http_request_duration_seconds_bucket"),
        "{metrics}"
    );

    let openapi: serde_json::Value = client
        .get(service.url("/openapi.json"))
        .basic_auth(USER, Some(PASS))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert!(
        openapi["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")),
        "{openapi}"
    );
    for path in [
        "/echo",
        "/tasks/dispatch",
        "/tasks/{id}/cancel",
        "/health",
        "/health/ready",
        "/config/validate",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(
            openapi["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(openapi["components"]["schemas"]["Problem"].is_object());
    assert!(openapi["components"]["securitySchemes"]["internalKey"].is_object());

    // A log line per request, as JSON, with the trace id it answered with.
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let traced = client
        .post(service.url("/echo"))
        .header("x-internal-key", KEY)
        .header("traceparent", traceparent)
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("request");
    let echoed_trace = traced.headers()["traceparent"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        echoed_trace.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
        "{echoed_trace}"
    );
}

#[tokio::test]
async fn sigterm_lets_the_in_flight_request_finish_then_exits_zero() {
    let mut service = ServiceProcess::spawn(bin(), &good_env()).expect("spawn");
    service
        .wait_healthy(Duration::from_secs(30))
        .await
        .expect("healthy");
    let url = service.url("/echo");
    let in_flight = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .header("x-internal-key", KEY)
            .json(&serde_json::json!({"delayMs": 1500, "id": 7}))
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    service.terminate().expect("SIGTERM");

    let response = in_flight
        .await
        .expect("task")
        .expect("the request is answered");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["id"], 7);

    let status = service
        .wait(Duration::from_secs(30))
        .await
        .expect("it exits");
    assert!(
        status.success(),
        "exit status {status}; output:\n{}",
        service.output()
    );
    let refused = reqwest::Client::new()
        .get(service.url("/health"))
        .send()
        .await;
    assert!(refused.is_err(), "nothing listens after exit");
}

#[tokio::test]
async fn sqs_transport_without_a_queue_is_refused_naming_the_variable() {
    let mut env = good_env();
    env.push(("AGENT_TRANSPORT", "sqs".to_owned()));
    let output = run_to_exit(bin(), &env, Duration::from_secs(30))
        .await
        .expect("it exits");
    assert_eq!(output.status.code(), Some(78), "EX_CONFIG");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("1 problem"), "{stderr}");
    assert!(
        stderr.contains("AGENT_QUEUE_NAME: missing"),
        "the variable is named:\n{stderr}"
    );
    assert!(
        stderr.contains("AGENT_QUEUE_URL"),
        "the alternative is named:\n{stderr}"
    );

    // /config/validate judges candidates the same way.
    let mut service = ServiceProcess::spawn(bin(), &good_env()).expect("spawn");
    service
        .wait_healthy(Duration::from_secs(30))
        .await
        .expect("healthy");
    let judge = |candidate: Vec<(&str, &str)>| {
        let url = service.url("/config/validate");
        let mut env: serde_json::Map<String, serde_json::Value> = good_env()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), serde_json::Value::String(v)))
            .collect();
        for (k, v) in candidate {
            env.insert(k.to_owned(), serde_json::Value::String(v.to_owned()));
        }
        async move {
            reqwest::Client::new()
                .post(url)
                .header("x-internal-key", KEY)
                .json(&serde_json::json!({ "env": env }))
                .send()
                .await
                .expect("request")
                .json::<serde_json::Value>()
                .await
                .expect("report")
        }
    };
    let report = judge(vec![("AGENT_TRANSPORT", "sqs")]).await;
    assert_eq!(report["valid"], false, "{report}");
    assert_eq!(report["problems"], 1, "{report}");
    assert_eq!(report["keys"][0]["key"], "AGENT_QUEUE_NAME", "{report}");
    assert_eq!(report["keys"][0]["status"], "missing", "{report}");
    for queue in [
        ("AGENT_QUEUE_NAME", "echo-agent"),
        (
            "AGENT_QUEUE_URL",
            "http://127.0.0.1:5000/123456789012/echo-agent",
        ),
    ] {
        let report = judge(vec![("AGENT_TRANSPORT", "sqs"), queue]).await;
        assert_eq!(report["valid"], true, "{queue:?}: {report}");
    }
    let report = judge(vec![("AGENT_TRANSPORT", "carrier-pigeon")]).await;
    assert_eq!(report["keys"][0]["key"], "AGENT_TRANSPORT", "{report}");
}

#[tokio::test]
async fn takes_echo_tasks_from_its_queue_and_reports_them() {
    let orchestrator = support::Recorder::default();
    let orchestrator_server = orchestrator.serve().await;
    let queue = format!("echo-agent-test-{}", uuid::Uuid::new_v4().simple());
    let mut env = good_env();
    env.retain(|(k, _)| *k != "ORCHESTRATOR_URL");
    env.extend([
        ("ORCHESTRATOR_URL", orchestrator_server.base_url.clone()),
        ("AGENT_TRANSPORT", "sqs".to_owned()),
        ("AGENT_QUEUE_NAME", queue.clone()),
        ("HEARTBEAT_INTERVAL", "250ms".to_owned()),
        ("AWS_ENDPOINT_URL", autonoma_testkit::sqs_endpoint()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
    ]);
    let mut service = ServiceProcess::spawn(bin(), &env).expect("spawn");
    service
        .wait_healthy(Duration::from_secs(30))
        .await
        .expect("healthy");

    let registration = orchestrator
        .wait_for("POST", "/agents", Duration::from_secs(30))
        .await;
    assert_eq!(registration.body["transport"], "sqs");
    let queue_url = registration.body["queueUrl"]
        .as_str()
        .expect("queueUrl")
        .to_owned();
    assert!(queue_url.ends_with(&queue), "{queue_url}");

    let aws = autonoma_aws::AwsConfig {
        aws_endpoint_url: Some(autonoma_testkit::sqs_endpoint().parse().expect("url")),
        aws_region: "us-east-1".into(),
        aws_access_key_id: Some("testing".into()),
        aws_secret_access_key: Some("testing".to_owned().into()),
    };
    let sqs = autonoma_aws::sqs_client(&aws).await;
    let dispatch = autonoma_protocol::DispatchIn {
        task_id: uuid::Uuid::new_v4(),
        kind: "echo".into(),
        payload: serde_json::json!({"message": "over the queue"}),
        attempt: 1,
        version: 2,
        trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
        traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
        correlation_id: Some("queue-test".into()),
        deadline: time::OffsetDateTime::now_utc() + Duration::from_secs(60),
    };
    sqs.send_message()
        .queue_url(&queue_url)
        .message_body(serde_json::to_string(&dispatch).expect("json"))
        .send()
        .await
        .expect("SendMessage");

    let path = format!("/task/{}", dispatch.task_id);
    let report = orchestrator
        .wait_for("PATCH", &path, Duration::from_secs(30))
        .await;
    assert_eq!(
        report.body,
        serde_json::json!({
            "ifVersion": 2,
            "status": "succeeded",
            "result": {"echo": {"message": "over the queue"}, "attempt": 1}
        })
    );

    // The attempt's log lines carry the task's ids.
    let logs = service.stdout();
    assert!(
        logs.lines().any(|line| line.contains("echoing")
            && line.contains(&dispatch.task_id.to_string())
            && line.contains("queue-test")
            && line.contains("0af7651916cd43dd8448eb211c80319c")),
        "{logs}"
    );

    service.terminate().expect("SIGTERM");
    let status = service
        .wait(Duration::from_secs(30))
        .await
        .expect("it exits");
    assert!(status.success(), "{}", service.output());
}
