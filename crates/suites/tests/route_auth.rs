//! Every route of every service refuses missing and wrong credentials.
//!
//! The routes are not listed here: they are read from each running service's OpenAPI document,
//! which is its route table (the server bootstrap refuses to serve any route the document does
//! not list). So a new route is checked the moment it exists, and fails this suite unless it
//! refuses every request below with 401 or 403 and a problem document. The only exceptions are
//! [`PUBLIC`], each with its reason.

#[path = "security/stack.rs"]
mod stack;

use reqwest::{Method, RequestBuilder, StatusCode};
use stack::{
    HOOK_SOURCE, KEY, NO_RATE_LIMITS, PASS, SERVICES, Service, USER, basic, concrete, http,
};

/// Routes answered without credentials, and why.
const PUBLIC: [(&str, &str, &str); 2] = [
    (
        "GET",
        "/health",
        "liveness: Render and the container runtime probe it without credentials",
    ),
    (
        "GET",
        "/health/ready",
        "readiness: probed without credentials; it tells only whether the database answers",
    ),
];

/// One way of asking without the right credentials.
struct Attempt {
    name: &'static str,
    apply: fn(RequestBuilder) -> RequestBuilder,
    /// Query string appended to the path.
    query: Option<fn() -> String>,
}

fn attempts() -> Vec<Attempt> {
    vec![
        Attempt {
            name: "no credentials",
            apply: |request| request,
            query: None,
        },
        Attempt {
            name: "Basic Auth with a wrong password",
            apply: |request| {
                request.header(
                    "authorization",
                    format!("Basic {}", basic(USER, "not-the-password")),
                )
            },
            query: None,
        },
        Attempt {
            name: "Basic Auth with a wrong user",
            apply: |request| {
                request.header(
                    "authorization",
                    format!("Basic {}", basic("intruder", PASS)),
                )
            },
            query: None,
        },
        Attempt {
            name: "malformed Basic Auth",
            apply: |request| request.header("authorization", "Basic %%%"),
            query: None,
        },
        Attempt {
            name: "a wrong X-INTERNAL-KEY",
            apply: |request| request.header("x-internal-key", "not-an-internal-key-0123456789"),
            query: None,
        },
        Attempt {
            name: "an empty X-INTERNAL-KEY",
            apply: |request| request.header("x-internal-key", ""),
            query: None,
        },
        Attempt {
            name: "a wrong bearer token",
            apply: |request| {
                request.header(
                    "authorization",
                    "Bearer apt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                )
            },
            query: None,
        },
        Attempt {
            name: "a wrong password in ?auth=",
            apply: |request| request,
            query: Some(|| format!("auth={}", basic(USER, "not-the-password"))),
        },
        Attempt {
            name: "a wrong sharing token in ?token=",
            apply: |request| request,
            query: Some(|| "token=apt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned()),
        },
        Attempt {
            name: "a wrong webhook signature",
            apply: |request| {
                request.header("x-hub-signature-256", format!("sha256={}", "0".repeat(64)))
            },
            query: None,
        },
        Attempt {
            name: "a forged preview cookie",
            apply: |request| {
                request.header(
                    "cookie",
                    "autonoma_preview=v1.1800000000.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                )
            },
            query: None,
        },
    ]
}

/// What is wrong with the answer to one attempt, if anything.
async fn judge(method: &Method, response: reqwest::Response) -> Option<String> {
    let status = response.status();
    if status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN {
        let body = response.text().await.unwrap_or_default();
        return Some(format!("answered {status}: {:.300}", body));
    }
    if *method == Method::HEAD {
        let content_type = response.headers().get("content-type");
        return (content_type.is_none_or(|v| v != "application/problem+json"))
            .then(|| format!("answered {status} as {content_type:?}, not problem JSON"));
    }
    match stack::problem_document(response).await {
        Ok((_, problem))
            if problem["status"] == status.as_u16() && problem["title"].is_string() =>
        {
            None
        }
        Ok((_, problem)) => Some(format!("answered {status} with {problem}")),
        Err(error) => Some(error),
    }
}

#[tokio::test]
async fn every_route_of_every_service_refuses_missing_and_wrong_credentials() {
    let services =
        futures::future::join_all(SERVICES.map(|name| Service::start(name, &NO_RATE_LIMITS))).await;
    let http = http();
    let attempts = attempts();
    let mut checked = 0;
    let mut failures = Vec::new();

    for service in &services {
        let routes = stack::routes(&service.openapi(&http).await);
        assert!(
            routes.len() > PUBLIC.len() + 4,
            "{}: only {} routes read from its OpenAPI document",
            service.name,
            routes.len()
        );
        for (method, path, reason) in PUBLIC {
            assert!(
                routes
                    .iter()
                    .any(|r| r.method.as_str() == method && r.path == path),
                "{}: the public route {method} {path} ({reason}) is not in its table",
                service.name
            );
            // Readiness may be 503 (renderctl's Render API is unreachable here), but it answers.
            let response = http.get(service.url(path)).send().await.expect("request");
            assert!(
                [StatusCode::OK, StatusCode::SERVICE_UNAVAILABLE].contains(&response.status()),
                "{}: {method} {path} answers without credentials ({reason}), not {}",
                service.name,
                response.status()
            );
        }

        // CORS preflights carry no credentials by design: `OPTIONS` on any path is answered by
        // the CORS layer, headers only, before any route runs.
        let mut paths: Vec<&str> = routes.iter().map(|r| r.path.as_str()).collect();
        paths.dedup();
        for path in paths {
            let response = http
                .request(Method::OPTIONS, service.url(&concrete(path)))
                .send()
                .await
                .expect("OPTIONS");
            let status = response.status();
            let body = response.bytes().await.expect("body");
            if status != StatusCode::OK || !body.is_empty() {
                failures.push(format!(
                    "{} OPTIONS {path}: answered {status} with {} bytes, not the bare CORS preflight",
                    service.name,
                    body.len()
                ));
            }
        }

        for route in routes {
            if PUBLIC
                .iter()
                .any(|(method, path, _)| route.method.as_str() == *method && route.path == *path)
            {
                continue;
            }
            // Right credentials of a kind the route does not take are wrong credentials too: the
            // operator's password opens no service-to-service route, an internal key no webhook.
            let mut wrong_kind = Vec::new();
            if !route.declares("basicAuth") {
                wrong_kind.push(Attempt {
                    name: "the right Basic Auth, which the route does not take",
                    apply: |request| {
                        request.header("authorization", format!("Basic {}", basic(USER, PASS)))
                    },
                    query: None,
                });
            }
            if !route.declares("internalKey") {
                wrong_kind.push(Attempt {
                    name: "the right internal key, which the route does not take",
                    apply: |request| request.header("x-internal-key", KEY),
                    query: None,
                });
            }
            for attempt in attempts.iter().chain(&wrong_kind) {
                let mut url = service.url(&concrete(&route.path));
                if let Some(query) = attempt.query {
                    url = format!("{url}?{}", query());
                }
                let mut request = http.request(route.method.clone(), &url);
                if let Some(content_type) = route.body_type() {
                    request = request.header("content-type", content_type).body("{}");
                }
                let request = (attempt.apply)(request);
                let outcome = match request.send().await {
                    Ok(response) => judge(&route.method, response).await,
                    Err(error) => Some(format!("failed: {error}")),
                };
                checked += 1;
                if let Some(problem) = outcome {
                    failures.push(format!(
                        "{} {}, {}: {problem}",
                        service.name,
                        route.name(),
                        attempt.name
                    ));
                }
            }
        }
    }
    eprintln!("route_auth: {checked} refused requests checked");
    assert!(
        failures.is_empty(),
        "{} of {checked} attempts were not refused with 401/403 problem JSON:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The webhook source is real, so a hook's 401 is its signature check, not an unknown source.
    assert_eq!(concrete("/hooks/{source}"), format!("/hooks/{HOOK_SOURCE}"));
}
