//! Graceful shutdown: in-flight requests finish, new ones are refused, readiness says draining.

mod support;

use std::time::Duration;

use autonoma_common::server::{HttpMethod, listed_route};
use axum::routing::get;
use support::{http, start};
use utoipa_axum::router::OpenApiRouter;

fn slow_routes() -> OpenApiRouter {
    OpenApiRouter::new().merge(listed_route(
        "/slow",
        &[HttpMethod::Get],
        get(|| async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            "finished"
        }),
    ))
}

#[tokio::test]
async fn in_flight_requests_finish_after_shutdown_begins() {
    let server = start(slow_routes(), &[]).await;
    let in_flight = tokio::spawn(http().get(server.url("/slow")).send());
    tokio::time::sleep(Duration::from_millis(300)).await;

    let ready = http()
        .get(server.url("/health/ready"))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), 200);
    server.shutdown.cancel();

    let response = in_flight
        .await
        .expect("task")
        .expect("the in-flight request completes");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("body"), "finished");

    let health = server.url("/health");
    server
        .handle
        .await
        .expect("task")
        .expect("server stops cleanly");
    let refused = http().get(health).send().await;
    assert!(
        refused.is_err(),
        "a stopped server accepts no new connection"
    );
}

#[tokio::test]
async fn shutdown_gives_up_on_requests_past_the_grace_period() {
    let server = start(
        OpenApiRouter::new().merge(listed_route(
            "/stuck",
            &[HttpMethod::Get],
            get(|| async {
                tokio::time::sleep(Duration::from_secs(20)).await;
                "too late"
            }),
        )),
        &[("SHUTDOWN_GRACE", "300ms")],
    )
    .await;
    let stuck = tokio::spawn(http().get(server.url("/stuck")).send());
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(10), server.handle)
        .await
        .expect("the server stops once the grace period is over");
    stopped.expect("task").expect("clean stop");
    stuck.abort();
}
