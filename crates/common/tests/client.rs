//! The internal client against a real peer: key and traceparent sent, only idempotent
//! requests retried.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use autonoma_common::client::{ClientError, InternalClient};
use autonoma_common::trace::TraceContext;
use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use secrecy::SecretString;

#[derive(Clone, Default)]
struct Peer {
    attempts: Arc<AtomicUsize>,
    seen: Arc<std::sync::Mutex<Vec<HeaderMap>>>,
}

/// Fails twice with 503, then answers.
async fn flaky(peer: axum::extract::State<Peer>, headers: HeaderMap) -> (StatusCode, String) {
    peer.seen.lock().expect("lock").push(headers);
    let attempt = peer.attempts.fetch_add(1, Ordering::SeqCst) + 1;
    if attempt <= 2 {
        (StatusCode::SERVICE_UNAVAILABLE, "busy".into())
    } else {
        (StatusCode::OK, format!("{{\"attempt\":{attempt}}}"))
    }
}

async fn peer() -> (Peer, autonoma_testkit::TestServer) {
    let peer = Peer::default();
    let router = Router::new()
        .route("/flaky", get(flaky).post(flaky))
        .with_state(peer.clone());
    (peer, autonoma_testkit::serve_router(router).await)
}

fn client() -> InternalClient {
    InternalClient::new(
        SecretString::from("the-internal-key-123".to_owned()),
        Duration::from_secs(5),
    )
    .expect("client")
}

#[tokio::test]
async fn idempotent_requests_are_retried_until_they_succeed() {
    let (peer, server) = peer().await;
    let ctx = TraceContext::new_root();
    let answer: serde_json::Value = ctx
        .scope(client().get_json(&server.url("/flaky")))
        .await
        .expect("third attempt succeeds");
    assert_eq!(answer["attempt"], 3);
    assert_eq!(peer.attempts.load(Ordering::SeqCst), 3);

    for headers in peer.seen.lock().expect("lock").iter() {
        assert_eq!(headers["x-internal-key"], "the-internal-key-123");
        let traceparent = headers["traceparent"].to_str().expect("ascii");
        let parsed = TraceContext::parse(traceparent).expect("valid traceparent");
        assert_eq!(parsed.trace_id, ctx.trace_id, "the trace continues");
        assert_eq!(
            parsed.parent_span_id,
            Some(parsed.parent_span_id.expect("parent"))
        );
    }
}

#[tokio::test]
async fn non_idempotent_requests_are_not_retried() {
    let (peer, server) = peer().await;
    let error = client()
        .post_json::<_, serde_json::Value>(&server.url("/flaky"), &serde_json::json!({}))
        .await
        .expect_err("503 surfaces");
    assert!(
        matches!(error, ClientError::Status { status, .. } if status == StatusCode::SERVICE_UNAVAILABLE)
    );
    assert_eq!(peer.attempts.load(Ordering::SeqCst), 1, "POST is sent once");
}

#[tokio::test]
async fn retries_are_bounded() {
    let (peer, server) = peer().await;
    let error = client()
        .with_retries(1)
        .get_json::<serde_json::Value>(&server.url("/flaky"))
        .await
        .expect_err("gives up after one retry");
    assert!(matches!(error, ClientError::Status { .. }), "{error}");
    assert_eq!(peer.attempts.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn unreachable_peers_are_a_transport_error() {
    let url = format!("http://127.0.0.1:{}/nothing", autonoma_testkit::free_port());
    let error = client()
        .with_retries(1)
        .get_json::<serde_json::Value>(&url)
        .await
        .expect_err("nobody listens");
    assert!(matches!(error, ClientError::Transport { .. }), "{error}");
}
