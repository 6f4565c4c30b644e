//! One error shape for every service: RFC 9457 problem details (`application/problem+json`).
//!
//! Handlers return `Result<_, Problem>`. Errors produced outside handlers (unknown routes,
//! extractor rejections, body limits, timeouts, panics) are rewritten into the same shape by
//! [`normalize_errors`], so a client never has to parse two kinds of error.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

pub const CONTENT_TYPE: &str = "application/problem+json";

/// Largest non-problem error body that is read to become a problem's `detail`.
const MAX_FOREIGN_ERROR_BODY: usize = 16 * 1024;

/// A field-level violation inside a problem: which input, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// Where the bad value is: a JSON pointer into the body (`/payload/name`), a query or
    /// header name, or an environment variable.
    pub field: String,
    pub message: String,
}

/// An RFC 9457 problem. `type` is `about:blank` for plain HTTP errors and an
/// `urn:autonoma:problem:*` URN for errors with a specific meaning.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The request path the problem occurred on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Problem-specific members, such as `currentVersion` on a version conflict.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extensions: Map<String, Value>,
    #[serde(skip)]
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl Problem {
    pub fn new(status: StatusCode) -> Self {
        Problem {
            type_uri: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail: None,
            instance: None,
            request_id: None,
            errors: Vec::new(),
            extensions: Map::new(),
            headers: Vec::new(),
        }
    }

    /// A problem with a specific meaning, e.g. `kind("version-conflict")`.
    pub fn kind(mut self, slug: &str) -> Self {
        self.type_uri = format!("urn:autonoma:problem:{slug}");
        self
    }

    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn field(mut self, field: impl Into<String>, message: impl Into<String>) -> Self {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
        self
    }

    pub fn fields(mut self, errors: impl IntoIterator<Item = FieldError>) -> Self {
        self.errors.extend(errors);
        self
    }

    pub fn extension(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extensions.insert(key.into(), value.into());
        self
    }

    pub fn header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST).detail(detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::UNAUTHORIZED).detail(detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::FORBIDDEN).detail(detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::NOT_FOUND).detail(detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::CONFLICT).detail(detail)
    }

    /// 422 with one entry per violation.
    pub fn validation(
        detail: impl Into<String>,
        errors: impl IntoIterator<Item = FieldError>,
    ) -> Self {
        Problem::new(StatusCode::UNPROCESSABLE_ENTITY)
            .kind("validation-failed")
            .title("Request is not valid")
            .detail(detail)
            .fields(errors)
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE).detail(detail)
    }

    /// A 500 whose cause is logged with the request's trace but never sent to the client.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR)
            .detail("The service failed to handle the request; the cause is in its logs.")
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.title)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        for (name, value) in self.headers {
            headers.append(name, value);
        }
        response
    }
}

impl From<sqlx::Error> for Problem {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::PoolTimedOut => {
                tracing::warn!("database pool exhausted");
                Problem::unavailable("The database is busy; try again shortly.")
                    .header(header::RETRY_AFTER, HeaderValue::from_static("1"))
            }
            sqlx::Error::RowNotFound => Problem::not_found("No such resource."),
            // Handlers refuse U+0000 where they name the field; this covers any value they miss.
            sqlx::Error::Database(db)
                if matches!(db.code().as_deref(), Some("22021" | "22P05")) =>
            {
                Problem::bad_request(
                    "The request holds U+0000 (a NUL character), which cannot be stored.",
                )
                .kind("nul-character")
            }
            _ if database_unavailable(&error) => {
                tracing::warn!(%error, "database unavailable");
                Problem::unavailable("The database is unavailable; try again shortly.")
                    .kind("database-unreachable")
                    .header(header::RETRY_AFTER, HeaderValue::from_static("1"))
            }
            _ => Problem::internal(error),
        }
    }
}

/// The database is down, restarting or refusing connections, so the same request can succeed
/// later: connection failures, and SQLSTATE classes 08 (connection exception) and 57P
/// (shutdown, crash, starting up), and too many connections (53300).
fn database_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || code.starts_with("57P") || code == "53300"
        }),
        _ => false,
    }
}

impl From<anyhow::Error> for Problem {
    fn from(error: anyhow::Error) -> Self {
        Problem::internal(format!("{error:#}"))
    }
}

/// Rewrites every error response that is not already a problem into one, stamps every
/// problem with the request's path and id, and masks the service's secrets in it.
pub async fn normalize_errors(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let request_id = request
        .headers()
        .get(crate::server::REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }

    let (mut parts, body) = response.into_parts();
    let is_problem = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(CONTENT_TYPE.as_bytes()));
    let bytes = axum::body::to_bytes(body, MAX_FOREIGN_ERROR_BODY)
        .await
        .unwrap_or_default();

    let mut problem = if is_problem {
        match serde_json::from_slice::<Problem>(&bytes) {
            Ok(problem) => problem,
            Err(_) => {
                let body = crate::redact::redact(&String::from_utf8_lossy(&bytes)).into_owned();
                parts.headers.remove(header::CONTENT_LENGTH);
                return Response::from_parts(parts, Body::from(body));
            }
        }
    } else {
        let mut problem = Problem::new(status);
        let text = String::from_utf8_lossy(&bytes).trim().to_owned();
        if !text.is_empty() {
            problem.detail = Some(text);
        } else if status == StatusCode::METHOD_NOT_ALLOWED {
            problem.detail = Some("This path does not accept that method.".into());
        } else if status == StatusCode::NOT_FOUND {
            problem.detail = Some(format!("No route for {path}."));
        }
        problem
    };
    problem.instance.get_or_insert(path);
    if problem.request_id.is_none() {
        problem.request_id = request_id;
    }

    // Whatever a handler or library echoed into the problem, the service's secrets stay out.
    let body = serde_json::to_string(&problem).unwrap_or_default();
    let body = crate::redact::redact(&body).into_owned();
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

/// Turns a panic inside a handler into a 500 problem (the panic message stays in the logs).
pub fn panic_to_problem(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    Problem::internal(format!("handler panicked: {message}")).into_response()
}
