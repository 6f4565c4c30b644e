//! A logging service that is down never blocks the service: events beyond the buffer are
//! dropped and counted, in-process and in a running service's `GET /metrics`. (A test binary of
//! its own: the tracing subscriber is process-wide.)

mod support;

use std::time::Duration;

use autonoma_common::config;
use autonoma_common::metrics::Metrics;
use autonoma_common::telemetry;
use autonoma_testkit::{ServiceProcess, workspace_binary};
use support::{KEY_NEW, PASS, TestConfig, USER, env};

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

/// The value of `name` (a counter without other labels than the service's) in `GET /metrics`.
async fn scrape(client: &reqwest::Client, service: &ServiceProcess, name: &str) -> f64 {
    let response = client
        .get(service.url("/metrics"))
        .basic_auth(USER, Some(PASS))
        .send()
        .await
        .expect("scrape");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("metrics text");
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"));
    line.rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number in {line:?}"))
}

#[tokio::test]
async fn a_running_service_reports_overflow_drops_in_its_metrics_endpoint() {
    // A logging service that accepts connections and never answers: the shipper's first batch
    // hangs (for the client's 10 s timeout), so from then on only the buffer holds events, and
    // every drop counted before that timeout is an overflow, not a failed delivery.
    let black_hole = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let logging_url = format!("http://{}", black_hole.local_addr().expect("address"));
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = black_hole.accept().await {
            held.push(stream);
            let _ = accepted_tx.send(());
        }
    });

    let buffer = 16;
    let process_env = vec![
        ("INTERNAL_API_KEYS", KEY_NEW.to_owned()),
        ("BASIC_AUTH_USER", USER.to_owned()),
        ("BASIC_AUTH_PASS", PASS.to_owned()),
        ("LOG_LEVEL", "info".to_owned()),
        ("LOG_FORMAT", "json".to_owned()),
        ("LOGGING_URL", logging_url),
        ("LOG_SHIP_BUFFER", buffer.to_string()),
        (
            "ORCHESTRATOR_URL",
            format!("http://127.0.0.1:{}", autonoma_testkit::free_port()),
        ),
    ];
    let mut service =
        ServiceProcess::spawn(&workspace_binary("echo-agent"), &process_env).expect("spawn");
    service
        .wait_healthy(Duration::from_secs(60))
        .await
        .expect("healthy");
    tokio::time::timeout(Duration::from_secs(10), accepted.recv())
        .await
        .expect("the service ships its startup events within seconds")
        .expect("a connection");
    let stalled_since = std::time::Instant::now();

    let client = reqwest::Client::new();
    let before = scrape(&client, &service, "log_events_dropped_total").await;
    // Each refused request logs one info event ("request refused"), all shippable.
    let requests = 300;
    for _ in 0..requests {
        let refused = client
            .post(service.url("/echo"))
            .json(&serde_json::json!({"n": 1}))
            .send()
            .await
            .expect("request");
        assert!(refused.status().is_client_error(), "{}", refused.status());
    }
    let after = scrape(&client, &service, "log_events_dropped_total").await;
    let elapsed = stalled_since.elapsed();
    assert!(
        after - before >= f64::from(requests - buffer),
        "{requests} events into a buffer of {buffer} behind a stalled shipper, but \
         log_events_dropped_total went only from {before} to {after}"
    );
    assert!(
        elapsed < Duration::from_secs(9),
        "{elapsed:?} since the shipper stalled: its 10 s timeout is near, so some drops may be \
         a failed delivery rather than overflow"
    );
    assert_eq!(
        scrape(&client, &service, "log_events_shipped_total").await,
        0.0
    );
    holder.abort();
}
