//! The live preview: `/api/sessions/{id}/preview/proxy/*` forwards each request to the
//! session's dev server over a connection the driver opens inside the container (sessions
//! have no network the service could reach). WebSocket upgrades are carried through, so hot
//! reload works; `Host` is rewritten to `localhost:<port>`, which dev servers with host checks
//! accept. The operator's credentials (`?auth=`, `Authorization`, the internal key, the
//! preview cookie of [`cookie`]) stay with the sandbox: the code in the session never sees them.

pub mod cookie;

use std::time::Duration;

use autonoma_common::Problem;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::sandbox::{Live, Sandbox, preview_prefix};

/// How long the dev server may take to answer with headers.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// Headers that describe one hop and are not forwarded.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Sends `request` to `port` inside the session's container on a fresh connection.
/// With `upgrade`, the connection stays usable after a `101 Switching Protocols`.
pub async fn send(
    sandbox: &Sandbox,
    live: &Live,
    port: u16,
    request: Request<Body>,
    upgrade: bool,
) -> Result<Response<Incoming>, Problem> {
    let stream = {
        let _quiet = live.quiet.read().await;
        sandbox
            .driver()
            .connect(&live.container_id, port)
            .await
            .map_err(crate::sandbox::driver_problem)?
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable_dev(port, &e))?;
    tokio::spawn(async move {
        let result = if upgrade {
            connection.with_upgrades().await
        } else {
            connection.await
        };
        if let Err(error) = result {
            tracing::debug!(%error, "preview connection ended");
        }
    });
    match tokio::time::timeout(RESPONSE_TIMEOUT, sender.send_request(request)).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(error)) if body_too_large(&error) => Err(too_large(sandbox.limits().body)),
        Ok(Err(error)) => Err(unreachable_dev(port, &error)),
        Err(_) => Err(Problem::new(StatusCode::GATEWAY_TIMEOUT)
            .kind("dev-server-timeout")
            .title("Dev server timeout")
            .detail(format!(
                "The dev server on port {port} did not answer within {} s.",
                RESPONSE_TIMEOUT.as_secs()
            ))),
    }
}

/// Whether sending failed because the request body passed its limit.
fn body_too_large(error: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(error) = source {
        if error.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = error.source();
    }
    false
}

pub fn too_large(limit: usize) -> Problem {
    Problem::new(StatusCode::PAYLOAD_TOO_LARGE)
        .detail(format!("The body exceeds the limit of {limit} bytes."))
}

fn unreachable_dev(port: u16, error: &hyper::Error) -> Problem {
    Problem::new(StatusCode::BAD_GATEWAY)
        .kind("dev-server-unreachable")
        .title("Dev server unreachable")
        .detail(format!(
            "Nothing answered on port {port} in the session ({error}). Is the dev server \
             listening there? Its output is in the session's log."
        ))
}

/// Forwards one preview request (any method, WebSocket upgrades included).
pub async fn proxy(sandbox: &Sandbox, live: &Live, mut request: Request) -> Response {
    let target = match sandbox.preview_target(live).await {
        Ok(target) => target,
        Err(problem) => return problem.into_response(),
    };
    let prefix = preview_prefix(live.id);
    let original = request.uri().clone();
    let path = original.path();
    let forwarded_path = if target.keep_prefix {
        path.to_owned()
    } else {
        match path.strip_prefix(&prefix) {
            Some("") | None => "/".to_owned(),
            Some(rest) => rest.to_owned(),
        }
    };
    // `?auth=` carries the operator's credentials; the code in the session never sees them.
    let query = original.query().and_then(without_auth);
    let path_and_query = match &query {
        Some(query) => format!("{forwarded_path}?{query}"),
        None => forwarded_path,
    };
    let Ok(uri) = path_and_query.parse::<Uri>() else {
        return Problem::bad_request("The preview path is not valid.").into_response();
    };
    let original_uri = match &query {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };

    let wants_upgrade = request.headers().contains_key(header::UPGRADE);
    let client_upgrade = wants_upgrade.then(|| hyper::upgrade::on(&mut request));
    let (mut parts, body) = request.into_parts();
    parts.uri = uri;
    rewrite_request_headers(
        &mut parts.headers,
        target.port,
        &prefix,
        &original_uri,
        wants_upgrade,
    );
    let upstream = Request::from_parts(parts, body);

    let mut response = match send(sandbox, live, target.port, upstream, wants_upgrade).await {
        Ok(response) => response,
        Err(problem) => return problem.into_response(),
    };

    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return Problem::new(StatusCode::BAD_GATEWAY)
                .detail("The dev server switched protocols without being asked.")
                .into_response();
        };
        let server_upgrade = hyper::upgrade::on(&mut response);
        let (mut parts, _) = response.into_parts();
        tokio::spawn(async move {
            match tokio::try_join!(client_upgrade, server_upgrade) {
                Ok((client, server)) => {
                    let (mut client, mut server) = (TokioIo::new(client), TokioIo::new(server));
                    if let Err(error) =
                        tokio::io::copy_bidirectional(&mut client, &mut server).await
                    {
                        tracing::debug!(%error, "preview WebSocket ended");
                    }
                }
                Err(error) => tracing::debug!(%error, "preview upgrade failed"),
            }
        });
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::empty());
    }

    let (mut parts, body) = response.into_parts();
    for name in &HOP_BY_HOP {
        parts.headers.remove(name);
    }
    rewrite_location(&mut parts.headers, &prefix, target.keep_prefix);
    Response::from_parts(parts, Body::new(body))
}

/// The query without its `auth` parameters, `None` when nothing else is left.
pub fn without_auth(query: &str) -> Option<String> {
    let kept = query
        .split('&')
        .filter(|pair| !pair.is_empty() && *pair != "auth" && !pair.starts_with("auth="))
        .collect::<Vec<_>>()
        .join("&");
    (!kept.is_empty()).then_some(kept)
}

fn rewrite_request_headers(
    headers: &mut HeaderMap,
    port: u16,
    prefix: &str,
    original: &str,
    upgrade: bool,
) {
    let client_host = headers.get(header::HOST).cloned();
    for name in &HOP_BY_HOP {
        if !(upgrade && name == header::CONNECTION) {
            headers.remove(name);
        }
    }
    // The operator's credentials are for the sandbox, not for the code in the session.
    headers.remove(header::AUTHORIZATION);
    headers.remove(HeaderName::from_static("x-internal-key"));
    headers.remove(header::COOKIE);
    if let Ok(host) = HeaderValue::from_str(&format!("localhost:{port}")) {
        headers.insert(header::HOST, host);
    }
    if let Some(host) = client_host {
        headers.insert(HeaderName::from_static("x-forwarded-host"), host);
    }
    if let Ok(prefix) = HeaderValue::from_str(prefix) {
        headers.insert(HeaderName::from_static("x-forwarded-prefix"), prefix);
    }
    if let Ok(uri) = HeaderValue::from_str(original) {
        headers.insert(HeaderName::from_static("x-original-uri"), uri);
    }
    // A page opened at `…?auth=` names it in the Referer of what it loads.
    let referer = headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once('?'))
        .map(|(base, query)| match without_auth(query) {
            Some(query) => format!("{base}?{query}"),
            None => base.to_owned(),
        });
    if let Some(referer) = referer {
        match HeaderValue::from_str(&referer) {
            Ok(value) => headers.insert(header::REFERER, value),
            Err(_) => headers.remove(header::REFERER),
        };
    }
    // Dev servers that check Origin on their WebSocket see their own.
    if upgrade
        && headers.contains_key(header::ORIGIN)
        && let Ok(origin) = HeaderValue::from_str(&format!("http://localhost:{port}"))
    {
        headers.insert(header::ORIGIN, origin);
    }
}

/// A redirect to an absolute path of the dev server stays inside the preview.
fn rewrite_location(headers: &mut HeaderMap, prefix: &str, keep_prefix: bool) {
    let Some(location) = headers.get(header::LOCATION).and_then(|v| v.to_str().ok()) else {
        return;
    };
    if keep_prefix || !location.starts_with('/') || location.starts_with("//") {
        return;
    }
    if let Ok(value) = HeaderValue::from_str(&format!("{prefix}{location}")) {
        headers.insert(header::LOCATION, value);
    }
}
