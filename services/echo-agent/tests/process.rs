//! The echo-agent binary as a real process: it refuses to start on bad configuration, serves
//! with the bootstrap's endpoints, and drains in-flight requests on SIGTERM.

use std::path::Path;
use std::time::Duration;

use autonoma_testkit::{ServiceProcess, free_port, run_to_exit};

const KEY: &str = "echo-test-key-0123456789";
const USER: &str = "operator";
const PASS: &str = "correct-horse-battery";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_echo-agent"))
}

fn good_env() -> Vec<(&'static str, String)> {
    vec![
        ("INTERNAL_API_KEYS", KEY.to_owned()),
        ("BASIC_AUTH_USER", USER.to_owned()),
        ("BASIC_AUTH_PASS", PASS.to_owned()),
        ("LOG_FORMAT", "json".to_owned()),
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
    ] {
        assert!(
            stderr.contains(variable),
            "{variable} not named in:\n{stderr}"
        );
    }
    assert!(stderr.contains("4 problems"), "{stderr}");
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
    assert_eq!(report["problems"], 4);
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
