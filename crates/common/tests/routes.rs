//! The route table is the OpenAPI document, and the server answers nothing it does not list.

mod support;

use autonoma_common::config;
use autonoma_common::server::{HttpMethod, listed_route, route_as};
use autonoma_common::{Problem, ServerBuilder};
use axum::extract::Path;
use axum::routing::{get, post};
use reqwest::StatusCode;
use support::{KEY_NEW, TestConfig, env, http, start};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// A documented route.
#[utoipa::path(get, path = "/documented", responses((status = 200, body = String)))]
async fn get_documented() -> &'static str {
    "documented"
}

/// A wildcard route, documented as `{rest}`.
#[utoipa::path(get, path = "/files/{rest}",
    params(("rest" = String, Path)),
    responses((status = 200, body = String), (status = 404, body = Problem)))]
async fn get_file(Path(rest): Path<String>) -> String {
    rest
}

fn routes() -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(get_documented))
        .merge(route_as("/files/{*rest}", routes!(get_file)))
        .merge(listed_route(
            "/listed",
            &[HttpMethod::Get],
            get(|| async { "listed" }).post(|| async { "post is not listed" }),
        ))
        // What a route added without its OpenAPI operation looks like.
        .route("/hidden", get(|| async { "hidden" }))
}

const METHODS: [&str; 8] = [
    "GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE",
];

async fn problem_type(response: reqwest::Response) -> String {
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: serde_json::Value = response.json().await.expect("problem JSON");
    body["type"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_route_missing_from_the_openapi_document_is_refused() {
    let server = start(routes(), &[]).await;
    let response = http()
        .get(server.url("/hidden"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        problem_type(response).await,
        "urn:autonoma:problem:unlisted-route"
    );

    for (path, body) in [
        ("/documented", "documented"),
        ("/listed", "listed"),
        ("/files/a/b.css", "a/b.css"),
    ] {
        let response = http().get(server.url(path)).send().await.expect("request");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.text().await.expect("body"), body);
        let head = http().head(server.url(path)).send().await.expect("HEAD");
        assert_eq!(head.status(), StatusCode::OK, "HEAD {path} follows GET");
    }

    // The method router serves POST, the table does not list it.
    let response = http()
        .post(server.url("/listed"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "GET");

    // Unknown paths stay the router's 404.
    let response = http()
        .get(server.url("/nowhere"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_route_table_is_the_openapi_document() {
    let loaded = config::load_from::<TestConfig>("echo-agent", &env(&[])).expect("config");
    let server = ServerBuilder::new(&loaded)
        .routes(
            OpenApiRouter::new()
                .routes(routes!(get_documented))
                .merge(route_as("/files/{*rest}", routes!(get_file)))
                .merge(listed_route(
                    "/things",
                    &[HttpMethod::Get, HttpMethod::Post],
                    get(|| async { "[]" }).post(|| async { "{}" }),
                )),
        )
        .bind()
        .await
        .expect("bind");
    let table: Vec<(String, String)> = server
        .routes()
        .iter()
        .map(|(path, method)| (path.to_owned(), method.to_owned()))
        .collect();
    for expected in [
        ("/documented", "GET"),
        ("/files/{rest}", "GET"),
        ("/things", "GET"),
        ("/things", "POST"),
        ("/health", "GET"),
        ("/health/ready", "GET"),
        ("/config/validate", "GET"),
        ("/config/validate", "POST"),
        ("/metrics", "GET"),
        ("/openapi.json", "GET"),
    ] {
        assert!(
            table.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} missing from {table:?}"
        );
    }

    let base = format!("http://{}", server.local_addr());
    let shutdown = server.shutdown_token();
    let handle = tokio::spawn(server.run());
    let openapi: serde_json::Value = http()
        .get(format!("{base}/openapi.json"))
        .header("x-internal-key", KEY_NEW)
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("JSON");
    let mut documented = Vec::new();
    for (path, item) in openapi["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            let method = method.to_ascii_uppercase();
            if METHODS.contains(&method.as_str()) {
                documented.push((path.clone(), method));
            }
        }
    }
    documented.sort();
    let mut table = table;
    table.sort();
    assert_eq!(documented, table, "GET /openapi.json lists the route table");
    shutdown.cancel();
    handle.await.expect("task").expect("clean stop");
}

#[tokio::test]
async fn post_routes_stay_listed_through_the_helpers() {
    let server = start(
        listed_route("/items", &[HttpMethod::Post], post(|| async { "made" })),
        &[],
    )
    .await;
    let response = http()
        .post(server.url("/items"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    let response = http()
        .get(server.url("/items"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}
