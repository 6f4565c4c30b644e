//! Every endpoint bounds what a request may make it do: each route that takes a body refuses
//! one over its limit with 413, each list refuses a page size over its maximum with a problem
//! naming the parameter, and people (Basic Auth) are rate-limited per client while services
//! (internal key) are not.
//!
//! Routes come from each running service's OpenAPI document (its route table), so a new route
//! is checked as soon as it exists. A route whose body limit differs from REQUEST_BODY_LIMIT
//! is listed in [`body_limit`]; a page-size parameter must declare its `maximum` in the
//! document.

#[path = "security/stack.rs"]
mod stack;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use stack::{KEY, PASS, Route, SERVICES, Service, USER, basic, concrete, http, problem_document};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// REQUEST_BODY_LIMIT of the services under test.
const REQUEST_BODY_LIMIT: usize = 64 * KIB;
/// GATEWAY_DIRECTIVE_LIMIT, GATEWAY_BLOB_LIMIT and SANDBOX_FILE_LIMIT under test.
const DIRECTIVE_LIMIT: usize = 8 * KIB;
const BLOB_LIMIT: usize = 128 * KIB;
const FILE_LIMIT: usize = 4 * KIB;

/// Query parameters that size a page of a list.
const PAGE_SIZE_PARAMETERS: [&str; 4] = ["limit", "pageSize", "perPage", "maxItems"];

/// What a route needs in its query to read its body at all.
fn query_for_body(service: &str, route: &Route) -> &'static [(&'static str, &'static str)] {
    match (service, route.path.as_str()) {
        ("queue-gateway", "/blobs") => &[("kind", "other")],
        _ => &[],
    }
}

/// Whether a body at the limit is read by this service (the preview hands it to the session's
/// dev server, whose answer the suite does not judge).
fn read_here(service: &str, route: &Route) -> bool {
    !(service == "sandbox" && route.path.contains("/preview/"))
}

/// The largest body `route` of `service` takes with the configuration under test.
fn body_limit(service: &str, route: &Route) -> usize {
    match (service, route.path.as_str()) {
        // A batch of log frames (logging's MAX_BODY_BYTES).
        ("logging", "/log") => 8 * MIB,
        ("queue-gateway", "/pages") => 4 * KIB,
        // GATEWAY_DIRECTIVE_LIMIT plus room for the envelope.
        ("queue-gateway", "/pages/{page}/messages") => DIRECTIVE_LIMIT + 64 * KIB,
        ("queue-gateway", "/pages/{page}/events") => 64 * KIB,
        ("queue-gateway", "/pages/{page}/tokens") => KIB,
        // Streamed to the blob store.
        ("queue-gateway", "/blobs") => BLOB_LIMIT,
        // An 8 MiB put_blob as base64 in its JSON-RPC message.
        ("queue-gateway", "/mcp") => 12 * MIB,
        // The largest file as JSON-escaped text (2 × SANDBOX_FILE_LIMIT + 1 MiB).
        ("sandbox", "/api/sessions/{id}/fs/write" | "/api/sessions/{id}/mcp") => {
            2 * FILE_LIMIT + MIB
        }
        _ => REQUEST_BODY_LIMIT,
    }
}

/// Tight rate limits, so a few requests show them; the body and page-size checks use the
/// internal key (never limited) or, for the webhook, a couple of requests.
const RATE_LIMITS: [(&str, &str); 4] = [
    ("RATE_LIMIT_PER_SECOND", "1"),
    ("RATE_LIMIT_BURST", "3"),
    ("RATE_LIMIT_AUTH_FAILURES_PER_MINUTE", "1"),
    ("RATE_LIMIT_AUTH_FAILURE_BURST", "2"),
];

fn limits_env(service: &str) -> Vec<(&'static str, String)> {
    let mut env: Vec<(&str, String)> = RATE_LIMITS
        .iter()
        .map(|(k, v)| (*k, (*v).to_owned()))
        .collect();
    env.push(("REQUEST_BODY_LIMIT", REQUEST_BODY_LIMIT.to_string()));
    match service {
        "queue-gateway" => {
            env.push(("GATEWAY_DIRECTIVE_LIMIT", DIRECTIVE_LIMIT.to_string()));
            env.push(("GATEWAY_BLOB_LIMIT", BLOB_LIMIT.to_string()));
        }
        "sandbox" => env.push(("SANDBOX_FILE_LIMIT", FILE_LIMIT.to_string())),
        _ => {}
    }
    env
}

async fn start(name: &'static str) -> Service {
    let env = limits_env(name);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Service::start(name, &env).await
}

/// A request to `route` with credentials it takes (none for a webhook, which the signature
/// check would refuse only after reading the body). MCP endpoints read a body only from
/// clients that accept both of their answer types.
fn authorized(http: &reqwest::Client, route: &Route, url: &str) -> reqwest::RequestBuilder {
    let request = http
        .request(route.method.clone(), url)
        .header("accept", "application/json, text/event-stream");
    if route.declares("internalKey") {
        request.header("x-internal-key", KEY)
    } else if route.declares("basicAuth") {
        request.header("authorization", format!("Basic {}", basic(USER, PASS)))
    } else {
        request
    }
}

/// A body of exactly `size` bytes of `content_type` (JSON is a string padded to size).
fn body_of(content_type: &str, size: usize) -> Vec<u8> {
    if content_type.contains("json") && size >= 10 {
        let mut body = b"{\"pad\":\"".to_vec();
        body.resize(size - 2, b'x');
        body.extend_from_slice(b"\"}");
        body
    } else {
        vec![b'x'; size]
    }
}

/// A session of the sandbox, so routes that look up their session first reach their body.
async fn sandbox_session(http: &reqwest::Client, sandbox: &Service) -> String {
    let response = http
        .post(sandbox.url("/api/sessions"))
        .header("x-internal-key", KEY)
        .json(&json!({"template": "empty"}))
        .send()
        .await
        .expect("POST /api/sessions");
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "a session is created"
    );
    let created: Value = response.json().await.expect("JSON");
    created["sessionId"].as_str().expect("sessionId").to_owned()
}

#[tokio::test]
async fn every_endpoint_caps_bodies_and_page_sizes_and_rate_limits_people() {
    let services = futures::future::join_all(SERVICES.map(start)).await;
    bodies_and_page_sizes_are_capped(&services).await;
    people_are_rate_limited_per_client_and_services_are_not(&services).await;
}

async fn bodies_and_page_sizes_are_capped(services: &[Service]) {
    let http = http();
    let mut failures = Vec::new();
    let mut report = Vec::new();
    let mut session = None;

    for service in services {
        let routes = stack::routes(&service.openapi(&http).await);
        if service.name == "sandbox" {
            session = Some(sandbox_session(&http, service).await);
        }
        let url_of = |path: &str| {
            let path = match &session {
                Some(id) if service.name == "sandbox" => path.replace("{id}", id),
                _ => path.to_owned(),
            };
            service.url(&concrete(&path))
        };

        for route in &routes {
            let Some(content_type) = route.body_type() else {
                continue;
            };
            let content_type = if content_type == "*/*" {
                "application/octet-stream".to_owned()
            } else {
                content_type
            };
            let query = query_for_body(service.name, route);
            let limit = body_limit(service.name, route);
            report.push(format!(
                "{} {}: body ≤ {limit} bytes",
                service.name,
                route.name()
            ));
            let url = url_of(&route.path);
            let over = authorized(&http, route, &url)
                .query(query)
                .header("content-type", &content_type)
                .body(body_of(&content_type, limit + 1))
                .send()
                .await;
            match over {
                Ok(response) if route.method == Method::HEAD => {
                    if response.status() != StatusCode::PAYLOAD_TOO_LARGE {
                        failures.push(format!(
                            "{} {}: a body of {} bytes was answered {}, not 413",
                            service.name,
                            route.name(),
                            limit + 1,
                            response.status()
                        ));
                    }
                }
                Ok(response) => match problem_document(response).await {
                    Ok((StatusCode::PAYLOAD_TOO_LARGE, _)) => {}
                    Ok((status, body)) => failures.push(format!(
                        "{} {}: a body of {} bytes was answered {status}, not 413: {body}",
                        service.name,
                        route.name(),
                        limit + 1
                    )),
                    Err(error) => failures.push(format!(
                        "{} {}: over the limit, {error}",
                        service.name,
                        route.name()
                    )),
                },
                Err(error) => failures.push(format!(
                    "{} {}: a body of {} bytes failed: {error}",
                    service.name,
                    route.name(),
                    limit + 1
                )),
            }
            // At the limit the body is read (and then judged on its content, not its size).
            if !read_here(service.name, route) {
                continue;
            }
            let at = authorized(&http, route, &url)
                .query(query)
                .header("content-type", &content_type)
                .body(body_of(&content_type, limit))
                .send()
                .await;
            match at {
                Ok(response) if response.status() == StatusCode::PAYLOAD_TOO_LARGE => failures
                    .push(format!(
                        "{} {}: a body of {limit} bytes is refused as too large; the limit is lower",
                        service.name,
                        route.name()
                    )),
                Ok(_) => {}
                Err(error) => failures.push(format!(
                    "{} {}: a body of {limit} bytes failed: {error}",
                    service.name,
                    route.name()
                )),
            }
        }

        for route in routes.iter().filter(|r| r.method == Method::GET) {
            for (name, schema) in route.query_parameters() {
                if !PAGE_SIZE_PARAMETERS.contains(&name.as_str()) {
                    continue;
                }
                let Some(maximum) = schema["maximum"].as_u64() else {
                    failures.push(format!(
                        "{} {}: page size `{name}` declares no maximum",
                        service.name,
                        route.name()
                    ));
                    continue;
                };
                report.push(format!(
                    "{} {}: {name} ≤ {maximum}",
                    service.name,
                    route.name()
                ));
                let url = url_of(&route.path);
                for over in [maximum + 1, 1_000_000_000_000] {
                    let response = authorized(&http, route, &url)
                        .query(&[(name.as_str(), over.to_string())])
                        .send()
                        .await
                        .expect("request");
                    match problem_document(response).await {
                        Ok((status, body))
                            if (status == StatusCode::BAD_REQUEST
                                || status == StatusCode::UNPROCESSABLE_ENTITY)
                                && body["errors"]
                                    .as_array()
                                    .into_iter()
                                    .flatten()
                                    .any(|e| e["field"] == name.as_str()) => {}
                        Ok((status, body)) => failures.push(format!(
                            "{} {}: {name}={over} answered {status}, not 400/422 naming {name}: {body}",
                            service.name,
                            route.name()
                        )),
                        Err(error) => failures.push(format!(
                            "{} {}: {name}={over} {error}",
                            service.name,
                            route.name()
                        )),
                    }
                }
                let response = authorized(&http, route, &url)
                    .query(&[(name.as_str(), maximum.to_string())])
                    .send()
                    .await
                    .expect("request");
                let status = response.status();
                if status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY {
                    failures.push(format!(
                        "{} {}: {name}={maximum}, its declared maximum, is refused ({status}): {}",
                        service.name,
                        route.name(),
                        response.text().await.unwrap_or_default()
                    ));
                }
            }
        }
    }

    if let (Some(id), Some(sandbox)) = (&session, services.iter().find(|s| s.name == "sandbox")) {
        let deleted = http
            .request(Method::DELETE, sandbox.url(&format!("/api/sessions/{id}")))
            .header("x-internal-key", KEY)
            .send()
            .await
            .expect("DELETE the session");
        assert!(deleted.status().is_success(), "the session is deleted");
    }
    eprintln!("limits:\n{}", report.join("\n"));
    assert!(
        failures.is_empty(),
        "{} limits not enforced:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A client whose requests come from 127.0.0.`n`, so each is a client of its own.
fn client_from(n: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

/// The status, and for a 429 its problem type after checking `Retry-After`.
async fn outcome(request: reqwest::RequestBuilder) -> (StatusCode, String) {
    let response = request.send().await.expect("request");
    let status = response.status();
    if status != StatusCode::TOO_MANY_REQUESTS {
        return (status, String::new());
    }
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    assert!(
        retry_after.is_some_and(|secs| secs >= 1),
        "a 429 says when to retry: {retry_after:?}"
    );
    match problem_document(response).await {
        Ok((_, body)) => (status, body["type"].as_str().unwrap_or_default().to_owned()),
        Err(error) => panic!("a 429 is a problem document: {error}"),
    }
}

async fn people_are_rate_limited_per_client_and_services_are_not(services: &[Service]) {
    let operator = format!("Basic {}", basic(USER, PASS));
    let guess = format!("Basic {}", basic(USER, "not-the-password"));
    for service in services {
        let name = service.name;
        // An operator route of every service (Basic Auth or the internal key).
        let url = service.url("/config/validate");
        let person = client_from(41);
        for n in 1..=3 {
            let (status, _) = outcome(person.get(&url).header("authorization", &operator)).await;
            assert_eq!(
                status,
                StatusCode::OK,
                "{name}: request {n} is within the burst"
            );
        }
        let (status, kind) = outcome(person.get(&url).header("authorization", &operator)).await;
        assert_eq!(
            status,
            StatusCode::TOO_MANY_REQUESTS,
            "{name}: past the burst"
        );
        assert_eq!(kind, "urn:autonoma:problem:rate-limited", "{name}");

        // The same address with the internal key is a service, never limited; nor are the
        // health checks.
        for _ in 0..30 {
            let (status, _) = outcome(person.get(&url).header("x-internal-key", KEY)).await;
            assert_eq!(
                status,
                StatusCode::OK,
                "{name}: internal-key traffic is not limited"
            );
        }
        for _ in 0..10 {
            let (status, _) = outcome(person.get(service.url("/health"))).await;
            assert_eq!(status, StatusCode::OK, "{name}: /health is not limited");
        }
        // Another client has its own allowance.
        let (status, _) =
            outcome(client_from(42).get(&url).header("authorization", &operator)).await;
        assert_eq!(status, StatusCode::OK, "{name}: limits are per client");

        // Refused credentials: two are judged, then the client is refused everything, the
        // right password included, while a service from the same address still passes.
        let guesser = client_from(43);
        for _ in 0..2 {
            let (status, _) = outcome(guesser.get(&url).header("authorization", &guess)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}");
        }
        let (status, kind) = outcome(guesser.get(&url).header("authorization", &guess)).await;
        assert_eq!(
            status,
            StatusCode::TOO_MANY_REQUESTS,
            "{name}: the third guess"
        );
        assert_eq!(
            kind, "urn:autonoma:problem:too-many-auth-failures",
            "{name}"
        );
        let (status, _) = outcome(guesser.get(&url).header("authorization", &operator)).await;
        assert_eq!(
            status,
            StatusCode::TOO_MANY_REQUESTS,
            "{name}: a locked-out client is refused even with the right password"
        );
        let (status, _) = outcome(guesser.get(&url).header("x-internal-key", KEY)).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{name}: services are never locked out"
        );
    }
}
