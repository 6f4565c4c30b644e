//! Every error a service can produce has the same RFC 9457 shape.

mod support;

use std::time::Duration;

use autonoma_common::Problem;
use autonoma_common::extract::{Json, Query};
use autonoma_common::server::{HttpMethod, listed_route};
use axum::routing::{get, post};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use support::{http, start};
use utoipa_axum::router::OpenApiRouter;

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct ThingIn {
    name: String,
    size: u32,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct PageQuery {
    limit: u16,
}

fn routes() -> OpenApiRouter {
    OpenApiRouter::new()
        .merge(listed_route(
            "/things",
            &[HttpMethod::Post],
            post(|Json(thing): Json<ThingIn>| async move { Json(thing.name) }),
        ))
        .merge(listed_route(
            "/page",
            &[HttpMethod::Get],
            get(|Query(q): Query<PageQuery>| async move { q.limit.to_string() }),
        ))
        .merge(listed_route(
            "/conflict",
            &[HttpMethod::Get],
            get(|| async {
                Err::<(), _>(
                    Problem::conflict("Version 3 is stale.")
                        .kind("version-conflict")
                        .extension("currentVersion", 4),
                )
            }),
        ))
        .merge(listed_route(
            "/panic",
            &[HttpMethod::Get],
            get(|| async {
                if std::hint::black_box(true) {
                    panic!("a handler bug");
                }
                "unreachable"
            }),
        ))
        .merge(listed_route(
            "/slow",
            &[HttpMethod::Get],
            get(|| async { tokio::time::sleep(Duration::from_secs(5)).await }),
        ))
}

/// The fields RFC 9457 defines, plus the ones every Autonoma problem carries.
async fn assert_problem(response: reqwest::Response, status: u16, path: &str) -> Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let body: Value = response.json().await.expect("JSON body");
    assert_eq!(body["status"], status, "{body}");
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|t| t == "about:blank" || t.starts_with("urn:autonoma:problem:")),
        "{body}"
    );
    assert!(
        body["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    assert_eq!(body["instance"], path, "{body}");
    assert_eq!(body["requestId"], request_id.as_str(), "{body}");
    body
}

#[tokio::test]
async fn bad_request_unauthorized_not_found_too_large_unprocessable_internal() {
    let server = start(
        routes(),
        &[("REQUEST_BODY_LIMIT", "2048"), ("REQUEST_TIMEOUT", "1s")],
    )
    .await;

    // 400: not JSON at all.
    let response = http()
        .post(server.url("/things"))
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .expect("request");
    let body = assert_problem(response, 400, "/things").await;
    assert_eq!(body["type"], "urn:autonoma:problem:malformed-json");

    // 400: a query parameter of the wrong type, named.
    let response = http()
        .get(server.url("/page?limit=lots"))
        .send()
        .await
        .expect("request");
    let body = assert_problem(response, 400, "/page").await;
    assert_eq!(body["errors"][0]["field"], "limit");

    // 401 from the operator routes of the bootstrap.
    let response = http()
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("request");
    assert_problem(response, 401, "/metrics").await;

    // 404 for an unknown path, 405 for a known path and the wrong method.
    let response = http()
        .get(server.url("/nowhere"))
        .send()
        .await
        .expect("request");
    assert_problem(response, 404, "/nowhere").await;
    let response = http()
        .delete(server.url("/things"))
        .send()
        .await
        .expect("request");
    assert_problem(response, 405, "/things").await;

    // 409 with an extension member, as a handler returns it.
    let response = http()
        .get(server.url("/conflict"))
        .send()
        .await
        .expect("request");
    let body = assert_problem(response, 409, "/conflict").await;
    assert_eq!(body["currentVersion"], 4);

    // 413: over REQUEST_BODY_LIMIT.
    let big = serde_json::json!({"name": "x".repeat(4096), "size": 1}).to_string();
    let response = http()
        .post(server.url("/things"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("request");
    assert_problem(response, 413, "/things").await;

    // 415: not declared as JSON.
    let response = http()
        .post(server.url("/things"))
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_problem(response, 415, "/things").await;

    // 422: well-formed JSON of the wrong shape, each bad field named by a JSON pointer.
    for (payload, field) in [
        (serde_json::json!({"name": "box", "size": "big"}), "/size"),
        (serde_json::json!({"size": 3}), "/name"),
        (serde_json::json!({"name": "box", "size": -1}), "/size"),
    ] {
        let response = http()
            .post(server.url("/things"))
            .json(&payload)
            .send()
            .await
            .expect("request");
        let body = assert_problem(response, 422, "/things").await;
        assert_eq!(body["type"], "urn:autonoma:problem:validation-failed");
        assert_eq!(body["errors"][0]["field"], field, "{body}");
    }

    // 500: a panicking handler; the cause stays in the logs.
    let response = http()
        .get(server.url("/panic"))
        .send()
        .await
        .expect("request");
    let body = assert_problem(response, 500, "/panic").await;
    assert!(
        !body.to_string().contains("handler bug"),
        "panic details must not leak: {body}"
    );

    // 503: over REQUEST_TIMEOUT.
    let response = http()
        .get(server.url("/slow"))
        .send()
        .await
        .expect("request");
    assert_problem(response, 503, "/slow").await;

    // The server survived all of it.
    let health = http()
        .get(server.url("/health"))
        .send()
        .await
        .expect("request");
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test]
async fn problems_round_trip_through_the_type() {
    let server = start(routes(), &[]).await;
    let response = http()
        .get(server.url("/conflict"))
        .send()
        .await
        .expect("request");
    let problem: Problem = response.json().await.expect("a Problem");
    assert_eq!(problem.status, 409);
    assert_eq!(problem.type_uri, "urn:autonoma:problem:version-conflict");
    assert_eq!(problem.extensions["currentVersion"], 4);
}
