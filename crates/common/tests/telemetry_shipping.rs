//! Log events reach the logging service in batches, with their trace and task ids.
//! (A test binary of its own: the tracing subscriber is process-wide.)

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use autonoma_common::config;
use autonoma_common::telemetry;
use autonoma_common::trace::TraceContext;
use axum::Router;
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::Value;
use support::{KEY_NEW, TestConfig, env};

#[tokio::test]
async fn events_are_shipped_with_ids_and_the_internal_key() {
    let received: Arc<Mutex<Vec<(HeaderMap, Value)>>> = Arc::default();
    let sink = received.clone();
    let router = Router::new().route(
        "/log",
        post(
            move |headers: HeaderMap, axum::Json(body): axum::Json<Value>| {
                let sink = sink.clone();
                async move {
                    sink.lock().expect("lock").push((headers, body));
                    axum::http::StatusCode::ACCEPTED
                }
            },
        ),
    );
    let logging = autonoma_testkit::serve_router(router).await;

    let loaded = config::load_from::<TestConfig>(
        "echo-agent",
        &env(&[("LOGGING_URL", &logging.base_url), ("LOG_LEVEL", "info")]),
    )
    .expect("config");
    let guard = telemetry::init("echo-agent", &loaded.config.server).expect("telemetry");

    let ctx = TraceContext::new_root();
    ctx.scope(async {
        let span = tracing::info_span!(
            "job",
            task_id = "0190a5d2-0000-7000-8000-000000000001",
            correlation_id = "order-7"
        );
        let _entered = span.enter();
        tracing::info!(attempt = 2, "working on it");
        tracing::debug!("below the level, never shipped");
    })
    .await;
    guard.shutdown(Duration::from_secs(5)).await;

    let received = received.lock().expect("lock");
    let frames: Vec<&Value> = received
        .iter()
        .flat_map(|(_, body)| body.as_array().expect("a batch"))
        .collect();
    let frame = frames
        .iter()
        .find(|f| f["message"] == "working on it")
        .unwrap_or_else(|| panic!("event not shipped: {frames:?}"));
    assert_eq!(frame["service"], "echo-agent");
    assert_eq!(frame["level"], "info");
    assert_eq!(frame["traceId"], ctx.trace_id_hex().as_str());
    assert_eq!(frame["taskId"], "0190a5d2-0000-7000-8000-000000000001");
    assert_eq!(frame["correlationId"], "order-7");
    assert_eq!(frame["fields"]["attempt"], 2);
    assert!(frame["ts"].as_str().is_some_and(|ts| ts.contains('T')));
    assert!(
        !frames
            .iter()
            .any(|f| f["message"] == "below the level, never shipped")
    );
    for (headers, _) in received.iter() {
        assert_eq!(headers["x-internal-key"], KEY_NEW);
    }
    assert!(telemetry::shipping_counters().shipped.get() >= 1);
}
