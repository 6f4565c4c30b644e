//! Rate limits per client address: people's requests and refused credentials are limited,
//! service-to-service traffic and health checks are not, and one client's excess does not
//! touch another. Clients are told apart by their loopback source address (127.0.0.x) or, behind
//! proxies, by `X-Forwarded-For`.

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use autonoma_common::auth::{encode_basic, require_operator};
use autonoma_common::server::{HttpMethod, listed_route};
use axum::middleware::from_fn;
use axum::routing::get;
use reqwest::StatusCode;
use support::{KEY_NEW, PASS, USER, start};
use utoipa_axum::router::OpenApiRouter;

fn routes() -> OpenApiRouter {
    listed_route("/things", &[HttpMethod::Get], get(|| async { "[]" }))
        .route_layer(from_fn(require_operator))
}

/// A client whose requests come from 127.0.0.`n`.
fn client(n: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

fn basic(pass: &str) -> String {
    format!("Basic {}", encode_basic(USER, pass))
}

/// The status, and for a 429 its `Retry-After` and problem type.
async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Option<u64>, String) {
    let response = request.send().await.expect("request");
    let status = response.status();
    if status != StatusCode::TOO_MANY_REQUESTS {
        return (status, None, String::new());
    }
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let retry_after = response.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse::<u64>()
        .expect("Retry-After in whole seconds");
    let body: serde_json::Value = response.json().await.expect("problem JSON");
    assert_eq!(body["status"], 429);
    (
        status,
        Some(retry_after),
        body["type"].as_str().unwrap_or_default().to_owned(),
    )
}

const LIMITS: [(&str, &str); 4] = [
    ("RATE_LIMIT_PER_SECOND", "1"),
    ("RATE_LIMIT_BURST", "5"),
    ("RATE_LIMIT_AUTH_FAILURES_PER_MINUTE", "1"),
    ("RATE_LIMIT_AUTH_FAILURE_BURST", "3"),
];

#[tokio::test]
async fn people_are_limited_per_client_and_services_are_not() {
    let server = start(routes(), &LIMITS).await;
    let url = server.url("/things");
    let person = client(11);

    for n in 1..=5 {
        let (status, ..) = send(person.get(&url).header("authorization", basic(PASS))).await;
        assert_eq!(status, StatusCode::OK, "request {n} is within the burst");
    }
    let (status, retry_after, kind) =
        send(person.get(&url).header("authorization", basic(PASS))).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "the sixth is over it"
    );
    assert_eq!(kind, "urn:autonoma:problem:rate-limited");
    assert_eq!(retry_after, Some(1), "one request refills in a second");

    // The same address with the internal key is a service: never limited.
    for _ in 0..50 {
        let (status, ..) = send(person.get(&url).header("x-internal-key", KEY_NEW)).await;
        assert_eq!(status, StatusCode::OK);
    }
    // Health checks are public and never limited.
    for _ in 0..20 {
        let (status, ..) = send(person.get(server.url("/health"))).await;
        assert_eq!(status, StatusCode::OK);
    }
    // Another client has its own allowance.
    let (status, ..) = send(client(12).get(&url).header("authorization", basic(PASS))).await;
    assert_eq!(status, StatusCode::OK);

    // The allowance refills at RATE_LIMIT_PER_SECOND.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, ..) = send(person.get(&url).header("authorization", basic(PASS))).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn refused_credentials_lock_the_client_out_and_parallel_guesses_do_not_outrun_it() {
    let server = start(routes(), &LIMITS).await;
    let url = server.url("/things");
    let guesser = client(21);

    // Requests without credentials are no guesses.
    for _ in 0..4 {
        let (status, ..) = send(guesser.get(&url)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // RATE_LIMIT_PER_SECOND is 1: wait for the burst to refill before guessing.
    tokio::time::sleep(Duration::from_secs(4)).await;

    // Ten guesses at once: the failure burst (3) is evaluated, the rest refused unseen.
    let guesses = (0..10).map(|n| {
        let request = guesser
            .get(&url)
            .header("authorization", basic(&format!("guess-{n}")));
        tokio::spawn(send(request))
    });
    let mut unauthorized = 0;
    let mut locked = 0;
    for guess in guesses {
        let (status, retry_after, kind) = guess.await.expect("task");
        match status {
            StatusCode::UNAUTHORIZED => unauthorized += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                locked += 1;
                assert_eq!(kind, "urn:autonoma:problem:too-many-auth-failures");
                assert!(retry_after.is_some_and(|secs| secs >= 1));
            }
            other => panic!("a guess was answered {other}"),
        }
    }
    assert_eq!(unauthorized, 3, "only the failure burst is judged");
    assert_eq!(locked, 7);

    // Locked out: the right password is refused too, so a lucky guess tells nothing.
    let (status, retry_after, kind) =
        send(guesser.get(&url).header("authorization", basic(PASS))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(kind, "urn:autonoma:problem:too-many-auth-failures");
    let retry_after = retry_after.expect("Retry-After");
    assert!(
        (1..=60).contains(&retry_after),
        "one failure refills within a minute at 1/min, got {retry_after}"
    );
    // A wrong internal key counts as a guess as well; a right one still passes.
    let (status, ..) = send(guesser.get(&url).header("x-internal-key", "not-a-key")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let (status, ..) = send(guesser.get(&url).header("x-internal-key", KEY_NEW)).await;
    assert_eq!(status, StatusCode::OK);

    // Other clients are not locked out.
    let (status, ..) = send(client(22).get(&url).header("authorization", basic(PASS))).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn behind_proxies_the_client_is_read_from_x_forwarded_for() {
    let mut env = LIMITS.to_vec();
    env.push(("RATE_LIMIT_PROXY_HOPS", "1"));
    let server = start(routes(), &env).await;
    let url = server.url("/things");
    let via_proxy = client(31);
    let from = |address: &str| {
        via_proxy
            .get(&url)
            .header("authorization", basic(PASS))
            .header("x-forwarded-for", address)
    };
    for _ in 0..5 {
        assert_eq!(send(from("198.51.100.7")).await.0, StatusCode::OK);
    }
    assert_eq!(
        send(from("198.51.100.7")).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    // What the client wrote itself (left of what the proxy appended) does not change who it is.
    assert_eq!(
        send(from("203.0.113.1, 198.51.100.7")).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another client behind the same proxy has its own allowance.
    assert_eq!(send(from("198.51.100.8")).await.0, StatusCode::OK);
}
