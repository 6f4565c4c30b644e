//! A logging service that is down never blocks the service: events beyond the buffer are
//! dropped and counted. (A test binary of its own: the tracing subscriber is process-wide.)

mod support;

use std::time::Duration;

use autonoma_common::config;
use autonoma_common::metrics::Metrics;
use autonoma_common::telemetry;
use support::{TestConfig, env};

#[tokio::test]
async fn overflowing_events_are_dropped_and_counted() {
    let nowhere = format!("http://127.0.0.1:{}", autonoma_testkit::free_port());
    let loaded = config::load_from::<TestConfig>(
        "echo-agent",
        &env(&[("LOGGING_URL", &nowhere), ("LOG_SHIP_BUFFER", "16")]),
    )
    .expect("config");
    let guard = telemetry::init("echo-agent", &loaded.config.server).expect("telemetry");

    for i in 0..2_000 {
        tracing::info!(i, "an event the logging service will never see");
    }
    let dropped = telemetry::shipping_counters().dropped.get();
    assert!(dropped >= 2_000 - 16 - 500, "only {dropped} dropped");
    assert_eq!(telemetry::shipping_counters().shipped.get(), 0);

    let metrics = Metrics::new("echo-agent").render().expect("metrics render");
    let line = metrics
        .lines()
        .find(|l| l.starts_with("log_events_dropped_total"))
        .unwrap_or_else(|| panic!("no dropped counter in {metrics}"));
    let value: f64 = line
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("a number");
    assert!(value >= dropped as f64, "{line}");
    guard.shutdown(Duration::from_secs(1)).await;
}
