//! `/api/sessions/{id}/preview/proxy/*`: the live preview ([`crate::preview`]), behind
//! [`require_preview_auth`].

use autonoma_common::Problem;
use autonoma_common::auth::{INTERNAL_KEY_HEADER, auth_of};
use autonoma_common::server::route_as;
use axum::RequestExt;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{TAG, parse_session};
use crate::Sandbox;
use crate::preview::without_auth;

pub fn router(sandbox: Sandbox) -> OpenApiRouter<Sandbox> {
    OpenApiRouter::new()
        .routes(routes!(proxy_root))
        .routes(routes!(proxy_index))
        .merge(route_as(
            "/api/sessions/{id}/preview/proxy/{*rest}",
            routes!(proxy_path),
        ))
        .route_layer(from_fn_with_state(sandbox, require_preview_auth))
}

/// The live preview: the dev server's answer to the same request (WebSocket upgrades
/// included; `OPTIONS` is the CORS preflight, which the server answers itself). Basic Auth (`Authorization` or `?auth=`), an internal key, or the
/// session's preview cookie, which an authenticated request gets.
#[utoipa::path(method(get, head, post, put, patch, delete),
    path = "/api/sessions/{id}/preview/proxy", tag = TAG,
    security(("basicAuth" = []), ("internalKey" = [])),
    params(("id" = String, Path, description = "Session id")),
    request_body(content = Object, description = "Forwarded to the dev server as it is"),
    responses(
        (status = 200, description = "The dev server's answer"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "No dev server answered", body = Problem, content_type = "application/problem+json"),
    ))]
async fn proxy_root(
    state: State<Sandbox>,
    params: Path<Vec<(String, String)>>,
    request: Request,
) -> Response {
    proxy(state, params, request).await
}

/// The dev server's root page (see `/api/sessions/{id}/preview/proxy`).
#[utoipa::path(method(get, head, post, put, patch, delete),
    path = "/api/sessions/{id}/preview/proxy/", tag = TAG,
    security(("basicAuth" = []), ("internalKey" = [])),
    params(("id" = String, Path, description = "Session id")),
    request_body(content = Object, description = "Forwarded to the dev server as it is"),
    responses(
        (status = 200, description = "The dev server's answer"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "No dev server answered", body = Problem, content_type = "application/problem+json"),
    ))]
async fn proxy_index(
    state: State<Sandbox>,
    params: Path<Vec<(String, String)>>,
    request: Request,
) -> Response {
    proxy(state, params, request).await
}

/// Any path of the dev server (see `/api/sessions/{id}/preview/proxy`).
#[utoipa::path(method(get, head, post, put, patch, delete),
    path = "/api/sessions/{id}/preview/proxy/{rest}", tag = TAG,
    security(("basicAuth" = []), ("internalKey" = [])),
    params(
        ("id" = String, Path, description = "Session id"),
        ("rest" = String, Path, description = "The path on the dev server (may hold `/`)"),
    ),
    request_body(content = Object, description = "Forwarded to the dev server as it is"),
    responses(
        (status = 200, description = "The dev server's answer"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "No dev server answered", body = Problem, content_type = "application/problem+json"),
    ))]
async fn proxy_path(
    state: State<Sandbox>,
    params: Path<Vec<(String, String)>>,
    request: Request,
) -> Response {
    proxy(state, params, request).await
}

async fn proxy(
    State(sandbox): State<Sandbox>,
    Path(params): Path<Vec<(String, String)>>,
    request: Request,
) -> Response {
    // REQUEST_BODY_LIMIT holds for forwarded bodies too: announced ones are refused here,
    // streamed ones are cut when they pass it (`crate::preview::send` answers 413).
    let limit = sandbox.limits().body;
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if announced.is_some_and(|length| length > limit as u64) {
        // Read what a body within the limit would have been, as the JSON routes do, so the
        // client is not cut off mid-send before it reads the answer.
        let _ = axum::body::to_bytes(request.into_body(), limit).await;
        return crate::preview::too_large(limit).into_response();
    }
    let request = request.with_limited_body();
    let id = params
        .iter()
        .find(|(name, _)| name == "id")
        .map(|(_, value)| value.as_str())
        .unwrap_or_default();
    let live = match parse_session(id) {
        Ok(id) => sandbox.live(id).await,
        Err(problem) => Err::<_, Problem>(problem),
    };
    match live {
        Ok(live) => crate::preview::proxy(&sandbox, &live, request).await,
        Err(problem) => problem.into_response(),
    }
}

/// Who may use a preview: what the log stream accepts (Basic Auth in `Authorization` or as
/// `?auth=<base64(user:pass)>`, or an internal key), or the preview cookie of that session
/// ([`crate::preview::cookie`]). A request that authenticates the first way gets a fresh
/// cookie, so the page's own files and fetches, which come without `?auth=`, pass too. A
/// browser navigating to `…?auth=` is sent on to the same address without it (303), so the
/// credentials stay out of the page's address, where its scripts could read them.
pub async fn require_preview_auth(
    State(sandbox): State<Sandbox>,
    request: Request,
    next: Next,
) -> Response {
    let auth = match auth_of(&request) {
        Ok(auth) => auth,
        Err(problem) => return problem.into_response(),
    };
    let session = session_in_path(request.uri().path());
    let now = OffsetDateTime::now_utc();
    if let Err(problem) = auth.check_operator(&request, true) {
        let cookies = sandbox.preview_cookies();
        return match session {
            Some(session) if cookies.admits(request.headers(), session, now) => {
                next.run(request).await
            }
            _ => problem.into_response(),
        };
    }
    let Some(session) = session else {
        return next.run(request).await;
    };
    let cookie = sandbox.preview_cookies().set_cookie(session, now);
    let mut response = match navigation_with_auth_in_query(&request) {
        Some(location) => see_other(&location),
        None => next.run(request).await,
    };
    if let Some(cookie) = cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// The session a preview path names (`/api/sessions/{id}/preview/…`).
fn session_in_path(path: &str) -> Option<Uuid> {
    let id = path.strip_prefix("/api/sessions/")?.split('/').next()?;
    Uuid::parse_str(id).ok()
}

/// Where to send a browser that navigated here with its credentials in `?auth=` (and nowhere
/// else): the same address without them. `None` for every other request.
fn navigation_with_auth_in_query(request: &Request) -> Option<String> {
    let headers = request.headers();
    let navigating = headers
        .get("sec-fetch-mode")
        .is_some_and(|mode| mode.as_bytes().eq_ignore_ascii_case(b"navigate"));
    let query = request.uri().query()?;
    let auth_in_query = query
        .split('&')
        .any(|pair| pair == "auth" || pair.starts_with("auth="));
    let other_credentials =
        headers.contains_key(header::AUTHORIZATION) || headers.contains_key(INTERNAL_KEY_HEADER);
    let method = request.method();
    if !navigating
        || !auth_in_query
        || other_credentials
        || !(method == Method::GET || method == Method::HEAD)
    {
        return None;
    }
    let path = request.uri().path();
    Some(match without_auth(query) {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    })
}

fn see_other(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(location) => (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, location),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
        )
            .into_response(),
        Err(_) => Problem::bad_request("The preview path is not valid.").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_is_read_from_the_preview_path() {
        let id = Uuid::new_v4();
        assert_eq!(
            session_in_path(&format!("/api/sessions/{id}/preview/proxy/a/b.css")),
            Some(id)
        );
        assert_eq!(session_in_path("/api/sessions/nope/preview/proxy/"), None);
        assert_eq!(session_in_path("/elsewhere"), None);
    }

    #[test]
    fn only_a_navigation_with_credentials_in_the_query_is_redirected() {
        let request = |uri: &str, headers: &[(&str, &str)]| {
            let mut builder = Request::builder().uri(uri);
            for (name, value) in headers {
                builder = builder.header(*name, *value);
            }
            builder.body(axum::body::Body::empty()).unwrap_or_default()
        };
        let navigate = [("sec-fetch-mode", "navigate")];
        assert_eq!(
            navigation_with_auth_in_query(&request("/p/?auth=abc", &navigate)),
            Some("/p/".to_owned())
        );
        assert_eq!(
            navigation_with_auth_in_query(&request("/p/x?a=1&auth=abc&b=2", &navigate)),
            Some("/p/x?a=1&b=2".to_owned())
        );
        assert_eq!(
            navigation_with_auth_in_query(&request("/p/?a=1", &navigate)),
            None
        );
        assert_eq!(
            navigation_with_auth_in_query(&request("/p/?auth=abc", &[])),
            None
        );
        assert_eq!(
            navigation_with_auth_in_query(&request(
                "/p/?auth=abc",
                &[
                    ("sec-fetch-mode", "navigate"),
                    ("authorization", "Basic abc")
                ]
            )),
            None
        );
    }
}
