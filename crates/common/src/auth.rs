//! Who may call a service: `X-INTERNAL-KEY` between services, Basic Auth for people, and the
//! browser origins allowed to talk to it at all.
//!
//! Secrets are compared as SHA-256 digests with constant-time equality, and every configured
//! key is compared on every request, so timing reveals neither a key's prefix nor which of
//! several keys matched.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::ServerConfig;
use crate::problem::Problem;

pub const INTERNAL_KEY_HEADER: &str = "x-internal-key";
const REALM: &str = r#"Basic realm="autonoma", charset="UTF-8""#;

type Digest32 = [u8; 32];

fn digest(bytes: &[u8]) -> Digest32 {
    Sha256::digest(bytes).into()
}

/// The credentials and origins a service accepts. Installed by the server bootstrap as a
/// request extension, where the middlewares below find it.
pub struct Auth {
    internal_keys: Vec<Digest32>,
    basic_user: Digest32,
    basic_pass: Digest32,
    allowed_origins: Vec<String>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("internal_keys", &self.internal_keys.len())
            .field("allowed_origins", &self.allowed_origins)
            .finish_non_exhaustive()
    }
}

impl Auth {
    pub fn new<K: AsRef<[u8]>>(
        internal_keys: impl IntoIterator<Item = K>,
        basic_user: &str,
        basic_pass: &str,
        allowed_origins: impl IntoIterator<Item = String>,
    ) -> Self {
        Auth {
            internal_keys: internal_keys
                .into_iter()
                .map(|k| digest(k.as_ref()))
                .collect(),
            basic_user: digest(basic_user.as_bytes()),
            basic_pass: digest(basic_pass.as_bytes()),
            allowed_origins: allowed_origins
                .into_iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
        }
    }

    pub fn from_config(config: &ServerConfig) -> Self {
        Auth::new(
            config
                .internal_api_keys
                .iter()
                .map(|k| k.expose_secret().as_bytes().to_vec()),
            &config.basic_auth_user,
            config.basic_auth_pass.expose_secret(),
            config.ws_allowed_origins.clone(),
        )
    }

    /// Whether `presented` is one of the configured internal keys.
    pub fn internal_key_matches(&self, presented: &[u8]) -> bool {
        let presented = digest(presented);
        self.internal_keys
            .iter()
            .fold(subtle::Choice::from(0), |found, key| {
                found | key.ct_eq(&presented)
            })
            .into()
    }

    pub fn basic_matches(&self, user: &str, pass: &str) -> bool {
        let user_ok = self.basic_user.ct_eq(&digest(user.as_bytes()));
        let pass_ok = self.basic_pass.ct_eq(&digest(pass.as_bytes()));
        (user_ok & pass_ok).into()
    }

    pub fn origin_allowed(&self, origin: &str) -> bool {
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        self.allowed_origins.contains(&origin)
    }

    pub fn allowed_origins(&self) -> &[String] {
        &self.allowed_origins
    }

    /// The internal key check: `Ok` or the problem to answer.
    pub fn check_internal_key(&self, headers: &HeaderMap) -> Result<(), Problem> {
        match headers.get(INTERNAL_KEY_HEADER) {
            None => Err(
                Problem::unauthorized("This endpoint requires the X-INTERNAL-KEY header.")
                    .kind("internal-key-required")
                    .field("x-internal-key", "missing"),
            ),
            Some(value) if self.internal_key_matches(value.as_bytes()) => Ok(()),
            Some(_) => Err(
                Problem::unauthorized("The X-INTERNAL-KEY header is not a valid key.")
                    .kind("internal-key-invalid")
                    .field("x-internal-key", "not accepted"),
            ),
        }
    }

    /// The Basic Auth check on the `Authorization` header (and on `?auth=` when `allow_query`).
    pub fn check_basic(&self, request: &Request, allow_query: bool) -> Result<(), Problem> {
        let from_header = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("basic")
                    .then(|| token.trim().to_owned())
            });
        let token = from_header.or_else(|| {
            allow_query
                .then(|| query_param(request.uri().query().unwrap_or_default(), "auth"))
                .flatten()
        });
        let Some(token) = token else {
            return Err(
                basic_challenge("Sign in with Basic Auth.").field("authorization", "missing")
            );
        };
        match decode_basic(&token) {
            Some((user, pass)) if self.basic_matches(&user, &pass) => Ok(()),
            Some(_) => Err(basic_challenge("The user name or password is wrong.")
                .field("authorization", "credentials not accepted")),
            None => Err(
                basic_challenge("The credentials are not base64(user:password).")
                    .field("authorization", "malformed"),
            ),
        }
    }
}

impl Auth {
    /// An internal key in `X-INTERNAL-KEY` or as `Authorization: Bearer <key>`, the form MCP
    /// clients and other HTTP tooling send.
    pub fn check_internal_key_or_bearer(&self, headers: &HeaderMap) -> Result<(), Problem> {
        if headers.contains_key(INTERNAL_KEY_HEADER) {
            return self.check_internal_key(headers);
        }
        match bearer_token(headers) {
            Some(token) if self.internal_key_matches(token.as_bytes()) => Ok(()),
            Some(_) => Err(
                Problem::unauthorized("The bearer token is not a valid key.")
                    .kind("internal-key-invalid")
                    .field("authorization", "not accepted"),
            ),
            None => Err(Problem::unauthorized(
                "This endpoint requires an internal key in X-INTERNAL-KEY or as a bearer token.",
            )
            .kind("internal-key-required")
            .field("authorization", "missing")),
        }
    }

    /// Basic Auth (`?auth=` too when `allow_query`), or an internal key when the request
    /// carries `X-INTERNAL-KEY`.
    pub fn check_operator(&self, request: &Request, allow_query: bool) -> Result<(), Problem> {
        if request.headers().contains_key(INTERNAL_KEY_HEADER) {
            self.check_internal_key(request.headers())
        } else {
            self.check_basic(request, allow_query)
        }
    }
}

/// The credentials a request carries, judged before its route is known (by the rate limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented {
    /// None at all.
    Nothing,
    /// A valid internal key, in `X-INTERNAL-KEY` or as a bearer token.
    InternalKey,
    /// The right Basic Auth user and password, in `Authorization` or `?auth=`.
    Operator,
    /// A wrong key in `X-INTERNAL-KEY`, or wrong or malformed Basic Auth.
    Refused,
    /// Credentials only the route can judge: a bearer token that is not an internal key (a
    /// sharing token), `?token=`, or another scheme.
    Other,
}

impl Auth {
    /// What `request` presents, in the order the guards look: `X-INTERNAL-KEY`, then
    /// `Authorization`, then `?auth=` and `?token=`.
    pub fn presented(&self, request: &Request) -> Presented {
        let headers = request.headers();
        if let Some(key) = headers.get(INTERNAL_KEY_HEADER) {
            return if self.internal_key_matches(key.as_bytes()) {
                Presented::InternalKey
            } else {
                Presented::Refused
            };
        }
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            let value = value.to_str().unwrap_or_default();
            let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
            let token = token.trim();
            if scheme.eq_ignore_ascii_case("basic") {
                return self.judge_basic(token);
            }
            if scheme.eq_ignore_ascii_case("bearer") && self.internal_key_matches(token.as_bytes())
            {
                return Presented::InternalKey;
            }
            return Presented::Other;
        }
        let query = request.uri().query().unwrap_or_default();
        if let Some(token) = query_param(query, "auth") {
            return self.judge_basic(&token);
        }
        if query_param(query, "token").is_some() {
            return Presented::Other;
        }
        Presented::Nothing
    }

    fn judge_basic(&self, token: &str) -> Presented {
        match decode_basic(token) {
            Some((user, pass)) if self.basic_matches(&user, &pass) => Presented::Operator,
            _ => Presented::Refused,
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn basic_challenge(detail: &str) -> Problem {
    Problem::unauthorized(detail)
        .kind("authentication-required")
        .header(header::WWW_AUTHENTICATE, HeaderValue::from_static(REALM))
}

const BASE64_LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);

/// `base64(user:pass)` → (user, pass); standard or URL-safe alphabet, padding optional.
pub fn decode_basic(token: &str) -> Option<(String, String)> {
    let standard = GeneralPurpose::new(&base64::alphabet::STANDARD, BASE64_LENIENT);
    let url_safe = GeneralPurpose::new(&base64::alphabet::URL_SAFE, BASE64_LENIENT);
    let bytes = standard
        .decode(token)
        .or_else(|_| url_safe.decode(token))
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

/// `base64(user:pass)` as sent in `Authorization: Basic …` and `?auth=`.
pub fn encode_basic(user: &str, pass: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
}

/// A query parameter, percent-decoded but with `+` kept (base64 uses it).
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| {
            percent_encoding::percent_decode_str(value)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// The [`Auth`] the server bootstrap installed on the request.
pub fn auth_of(request: &Request) -> Result<Arc<Auth>, Problem> {
    request
        .extensions()
        .get::<Arc<Auth>>()
        .cloned()
        .ok_or_else(|| Problem::internal("auth middleware used without the server bootstrap"))
}

/// Which credentials a route accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accepts {
    InternalKey,
    /// An internal key in `X-INTERNAL-KEY` or as a bearer token.
    InternalKeyOrBearer,
    Basic,
    /// An internal key, or Basic Auth (`?auth=` too when `query` is set).
    Either {
        query: bool,
    },
}

async fn guard(accepts: Accepts, request: Request, next: Next) -> Response {
    let verdict = auth_of(&request).and_then(|auth| match accepts {
        Accepts::InternalKey => auth.check_internal_key(request.headers()),
        Accepts::InternalKeyOrBearer => auth.check_internal_key_or_bearer(request.headers()),
        Accepts::Either { query } => auth.check_operator(&request, query),
        Accepts::Basic => auth.check_basic(&request, false),
    });
    match verdict {
        Ok(()) => next.run(request).await,
        Err(problem) => problem.into_response(),
    }
}

/// Service-to-service routes: a valid `X-INTERNAL-KEY`.
pub async fn require_internal_key(request: Request, next: Next) -> Response {
    guard(Accepts::InternalKey, request, next).await
}

/// Routes called by AI clients and tooling that send keys as bearer tokens (MCP): an internal
/// key in `X-INTERNAL-KEY` or `Authorization: Bearer`.
pub async fn require_internal_key_or_bearer(request: Request, next: Next) -> Response {
    guard(Accepts::InternalKeyOrBearer, request, next).await
}

/// Human-facing routes: Basic Auth in the `Authorization` header.
pub async fn require_basic_auth(request: Request, next: Next) -> Response {
    guard(Accepts::Basic, request, next).await
}

/// Operational routes read by people and by services: Basic Auth or an internal key.
pub async fn require_operator(request: Request, next: Next) -> Response {
    guard(Accepts::Either { query: false }, request, next).await
}

/// Streaming routes opened by browsers (WebSocket upgrades, EventSource), which cannot set
/// headers: Basic Auth in `Authorization` or as `?auth=<base64(user:pass)>`, or an internal key.
pub async fn require_stream_auth(request: Request, next: Next) -> Response {
    guard(Accepts::Either { query: true }, request, next).await
}

/// Refuses any request whose `Origin` is neither in `WS_ALLOWED_ORIGINS` nor the service's
/// own. Browsers always send `Origin` on WebSocket upgrades and cross-origin requests (and on
/// module scripts and POSTs of a page the service serves itself, such as the sandbox's
/// preview); clients that are not browsers send none and are judged by their credentials alone.
/// Either way the route's credentials are still required.
pub async fn check_origin(request: Request, next: Next) -> Response {
    let Some(origin) = request.headers().get(header::ORIGIN) else {
        return next.run(request).await;
    };
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    let verdict = auth_of(&request).and_then(|auth| {
        let origin = origin.to_str().unwrap_or_default();
        if auth.origin_allowed(origin) || host.is_some_and(|host| same_origin(origin, host)) {
            Ok(())
        } else {
            Err(Problem::forbidden(format!(
                "Origin {origin} is not allowed; add it to WS_ALLOWED_ORIGINS."
            ))
            .kind("origin-not-allowed")
            .field("origin", "not in WS_ALLOWED_ORIGINS"))
        }
    });
    match verdict {
        Ok(()) => next.run(request).await,
        Err(problem) => problem.into_response(),
    }
}

/// Whether `origin` (`scheme://host[:port]`) names the host the request was sent to. The scheme
/// is not compared: behind a TLS-terminating proxy the service sees plain HTTP.
fn same_origin(origin: &str, host: &str) -> bool {
    origin
        .split_once("://")
        .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
}

/// CORS for the allowed origins, exposing what the dashboard reads.
pub fn cors_layer(allowed_origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            HeaderName::from_static("last-event-id"),
            HeaderName::from_static("traceparent"),
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            header::LOCATION,
            header::ETAG,
            header::RETRY_AFTER,
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("traceparent"),
        ])
        .max_age(std::time::Duration::from_secs(600))
}
