//! With OTEL_EXPORTER_OTLP_ENDPOINT set, request spans are exported over OTLP/HTTP and
//! continue the caller's trace. (A test binary of its own: the subscriber is process-wide.)

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use autonoma_common::server::{HttpMethod, listed_route};
use autonoma_common::{config, telemetry};
use axum::Router;
use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use support::{TestConfig, env, http, start};

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";

#[tokio::test]
async fn request_spans_are_exported_in_the_callers_trace() {
    let received: Arc<Mutex<Vec<(HeaderMap, Bytes)>>> = Arc::default();
    let sink = received.clone();
    let collector = autonoma_testkit::serve_router(Router::new().route(
        "/v1/traces",
        post(move |headers: HeaderMap, body: Bytes| {
            let sink = sink.clone();
            async move {
                sink.lock().expect("lock").push((headers, body));
                axum::http::StatusCode::OK
            }
        }),
    ))
    .await;

    let collector_url = collector.base_url.clone();
    let overrides = [("OTEL_EXPORTER_OTLP_ENDPOINT", collector_url.as_str())];
    let loaded = config::load_from::<TestConfig>("echo-agent", &env(&overrides)).expect("config");
    let guard = telemetry::init("echo-agent", &loaded.config.server).expect("telemetry");

    let server = start(
        listed_route("/work", &[HttpMethod::Get], get(|| async { "done" })),
        &overrides,
    )
    .await;
    let response = http()
        .get(server.url("/work"))
        .header("traceparent", format!("00-{TRACE_ID}-b7ad6b7169203331-01"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let answered = response.headers()["traceparent"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        answered.starts_with(&format!("00-{TRACE_ID}-")),
        "{answered}"
    );

    guard.shutdown(Duration::from_secs(10)).await;

    let received = received.lock().expect("lock");
    assert!(!received.is_empty(), "no OTLP export arrived");
    let trace_bytes: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&TRACE_ID[i * 2..i * 2 + 2], 16).expect("hex"))
        .collect();
    let exported = received.iter().any(|(headers, body)| {
        headers["content-type"] == "application/x-protobuf"
            && body
                .windows(16)
                .any(|window| window == trace_bytes.as_slice())
    });
    assert!(exported, "no exported span carries trace {TRACE_ID}");
}
