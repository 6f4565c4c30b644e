//! Internal key, Basic Auth, `?auth=` on WebSocket upgrades, Origin and CORS, on a real server.

mod support;

use autonoma_common::auth::{
    encode_basic, require_basic_auth, require_internal_key, require_stream_auth,
};
use autonoma_common::server::{HttpMethod, listed_route};
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::middleware::from_fn;
use axum::routing::get;
use futures::StreamExt;
use reqwest::StatusCode;
use support::{KEY_NEW, KEY_OLD, ORIGIN, PASS, USER, http, start};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use utoipa_axum::router::OpenApiRouter;

fn routes() -> OpenApiRouter {
    let internal = OpenApiRouter::new()
        .merge(listed_route(
            "/internal",
            &[HttpMethod::Get],
            get(|| async { "internal ok" }),
        ))
        .route_layer(from_fn(require_internal_key));
    let human = OpenApiRouter::new()
        .merge(listed_route(
            "/human",
            &[HttpMethod::Get],
            get(|| async { "human ok" }),
        ))
        .route_layer(from_fn(require_basic_auth));
    let ws = OpenApiRouter::new()
        .merge(listed_route(
            "/ws",
            &[HttpMethod::Get],
            get(|upgrade: WebSocketUpgrade| async move {
                upgrade.on_upgrade(|mut socket| async move {
                    let _ = socket.send(Message::Text("hello".into())).await;
                })
            }),
        ))
        .route_layer(from_fn(require_stream_auth));
    internal.merge(human).merge(ws)
}

async fn problem(response: reqwest::Response) -> serde_json::Value {
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "errors are problem documents"
    );
    response.json().await.expect("problem body is JSON")
}

#[tokio::test]
async fn internal_key_missing_wrong_right_and_rotated() {
    let server = start(routes(), &[]).await;
    let url = server.url("/internal");

    let missing = http().get(&url).send().await.expect("request");
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    let body = problem(missing).await;
    assert_eq!(body["type"], "urn:autonoma:problem:internal-key-required");
    assert_eq!(body["errors"][0]["field"], "x-internal-key");

    for wrong in [
        "nope",
        "new-key-0123456789abcdeX",
        "",
        &format!("{KEY_NEW},{KEY_OLD}"),
    ] {
        let response = http()
            .get(&url)
            .header("x-internal-key", wrong)
            .send()
            .await
            .expect("request");
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "key {wrong:?} must be refused"
        );
        assert_eq!(
            problem(response).await["type"],
            "urn:autonoma:problem:internal-key-invalid"
        );
    }

    for right in [KEY_NEW, KEY_OLD] {
        let response = http()
            .get(&url)
            .header("x-internal-key", right)
            .send()
            .await
            .expect("request");
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "configured key {right} is accepted"
        );
        assert_eq!(response.text().await.expect("body"), "internal ok");
    }

    // Basic Auth credentials do not open internal routes.
    let response = http()
        .get(&url)
        .basic_auth(USER, Some(PASS))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn rotation_drops_the_old_key_once_removed() {
    let server = start(routes(), &[("INTERNAL_API_KEYS", KEY_NEW)]).await;
    let url = server.url("/internal");
    let old = http()
        .get(&url)
        .header("x-internal-key", KEY_OLD)
        .send()
        .await
        .expect("request");
    assert_eq!(old.status(), StatusCode::UNAUTHORIZED);
    let new = http()
        .get(&url)
        .header("x-internal-key", KEY_NEW)
        .send()
        .await
        .expect("request");
    assert_eq!(new.status(), StatusCode::OK);
}

#[tokio::test]
async fn basic_auth_challenges_and_accepts() {
    let server = start(routes(), &[]).await;
    let url = server.url("/human");

    let anonymous = http().get(&url).send().await.expect("request");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let challenge = anonymous.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        challenge.starts_with("Basic realm="),
        "challenge was {challenge}"
    );
    assert_eq!(problem(anonymous).await["status"], 401);

    let wrong_pass = http()
        .get(&url)
        .basic_auth(USER, Some("wrong-password"))
        .send()
        .await
        .expect("request");
    assert_eq!(wrong_pass.status(), StatusCode::UNAUTHORIZED);
    let wrong_user = http()
        .get(&url)
        .basic_auth("intruder", Some(PASS))
        .send()
        .await
        .expect("request");
    assert_eq!(wrong_user.status(), StatusCode::UNAUTHORIZED);
    let malformed = http()
        .get(&url)
        .header("authorization", "Basic !!!not-base64!!!")
        .send()
        .await
        .expect("request");
    assert_eq!(malformed.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        problem(malformed).await["errors"][0]["message"],
        "malformed"
    );

    let right = http()
        .get(&url)
        .basic_auth(USER, Some(PASS))
        .send()
        .await
        .expect("request");
    assert_eq!(right.status(), StatusCode::OK);
    assert_eq!(right.text().await.expect("body"), "human ok");

    // `?auth=` is only for streams; plain routes want the header.
    let query = http()
        .get(format!("{url}?auth={}", encode_basic(USER, PASS)))
        .send()
        .await
        .expect("request");
    assert_eq!(query.status(), StatusCode::UNAUTHORIZED);
}

async fn ws_connect(
    url: &str,
    origin: Option<&str>,
) -> Result<String, tokio_tungstenite::tungstenite::Error> {
    let mut request = url.into_client_request()?;
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().expect("header value"));
    }
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
    let message = socket.next().await.expect("a message")?;
    Ok(message.into_text()?.to_string())
}

fn http_status(error: &tokio_tungstenite::tungstenite::Error) -> Option<u16> {
    match error {
        tokio_tungstenite::tungstenite::Error::Http(response) => Some(response.status().as_u16()),
        _ => None,
    }
}

#[tokio::test]
async fn websocket_auth_by_query_or_header_and_origin_check() {
    let server = start(routes(), &[]).await;
    let ws_base = server.url("/ws").replace("http://", "ws://");
    let token = encode_basic(USER, PASS);

    let anonymous = ws_connect(&ws_base, Some(ORIGIN))
        .await
        .expect_err("no credentials");
    assert_eq!(http_status(&anonymous), Some(401));

    let wrong = ws_connect(
        &format!("{ws_base}?auth={}", encode_basic(USER, "nope-nope")),
        Some(ORIGIN),
    )
    .await
    .expect_err("wrong credentials");
    assert_eq!(http_status(&wrong), Some(401));

    let hello = ws_connect(&format!("{ws_base}?auth={token}"), Some(ORIGIN))
        .await
        .expect("query credentials from an allowed origin");
    assert_eq!(hello, "hello");

    let mut request = ws_base.as_str().into_client_request().expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Basic {token}").parse().expect("header"),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("header credentials");
    let first = socket.next().await.expect("message").expect("frame");
    assert_eq!(first.into_text().expect("text").as_str(), "hello");

    let evil = ws_connect(
        &format!("{ws_base}?auth={token}"),
        Some("https://evil.example"),
    )
    .await
    .expect_err("disallowed origin");
    assert_eq!(http_status(&evil), Some(403));
}

#[tokio::test]
async fn disallowed_origin_is_refused_and_cors_allows_the_configured_one() {
    let server = start(routes(), &[]).await;
    let url = server.url("/human");

    let evil = http()
        .get(&url)
        .basic_auth(USER, Some(PASS))
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("request");
    assert_eq!(evil.status(), StatusCode::FORBIDDEN);
    let body = problem(evil).await;
    assert_eq!(body["type"], "urn:autonoma:problem:origin-not-allowed");
    assert_eq!(body["errors"][0]["field"], "origin");

    let preflight = http()
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", ORIGIN)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .expect("preflight");
    assert!(
        preflight.status().is_success(),
        "preflight answered {}",
        preflight.status()
    );
    assert_eq!(preflight.headers()["access-control-allow-origin"], ORIGIN);

    let allowed = http()
        .get(&url)
        .basic_auth(USER, Some(PASS))
        .header("origin", ORIGIN)
        .send()
        .await
        .expect("request");
    assert_eq!(allowed.status(), StatusCode::OK);
    assert_eq!(allowed.headers()["access-control-allow-origin"], ORIGIN);

    // A page the service serves itself (the sandbox's preview) calls it from its own origin;
    // its credentials are still checked.
    let own_origin = url.split("/human").next().expect("base URL").to_owned();
    let own = http()
        .get(&url)
        .basic_auth(USER, Some(PASS))
        .header("origin", &own_origin)
        .send()
        .await
        .expect("request");
    assert_eq!(own.status(), StatusCode::OK);
    let own_without_credentials = http()
        .get(&url)
        .header("origin", &own_origin)
        .send()
        .await
        .expect("request");
    assert_eq!(own_without_credentials.status(), StatusCode::UNAUTHORIZED);
    let lookalike = http()
        .get(&url)
        .basic_auth(USER, Some(PASS))
        .header("origin", format!("{own_origin}.evil.example"))
        .send()
        .await
        .expect("request");
    assert_eq!(lookalike.status(), StatusCode::FORBIDDEN);

    // Clients that are not browsers send no Origin and are judged by credentials alone.
    let cli = http()
        .get(&url)
        .basic_auth(USER, Some(PASS))
        .send()
        .await
        .expect("request");
    assert_eq!(cli.status(), StatusCode::OK);
}
