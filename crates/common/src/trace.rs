//! W3C Trace Context (`traceparent`): parsed from incoming requests or started fresh, kept for
//! the request's duration, and sent on every outgoing call so one trace id follows a task
//! through every service and log line.

use std::fmt;
use std::future::Future;

use axum::extract::{FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use rand::RngExt;
use tracing::Instrument;

pub const TRACEPARENT: &str = "traceparent";

/// A position in a trace: the trace id, this unit of work's span id, and the caller's span id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub sampled: bool,
}

tokio::task_local! {
    static CURRENT: TraceContext;
}

impl TraceContext {
    /// A new trace with a random trace id.
    pub fn new_root() -> Self {
        let mut rng = rand::rng();
        TraceContext {
            trace_id: nonzero(|| rng.random()),
            span_id: nonzero(|| rng.random()),
            parent_span_id: None,
            sampled: true,
        }
    }

    /// Parses a `traceparent` header (version 00, or a future version read as 00).
    pub fn parse(header: &str) -> Option<Self> {
        let header = header.trim();
        let mut parts = header.split('-');
        let version = parts.next()?;
        let trace_id = parts.next()?;
        let parent_id = parts.next()?;
        let flags = parts.next()?;
        let rest_allowed = version != "00";
        if parts.next().is_some() && !rest_allowed {
            return None;
        }
        if version.len() != 2 || version == "ff" || !is_lower_hex(version) {
            return None;
        }
        let trace_id: [u8; 16] = decode_hex(trace_id)?;
        let parent: [u8; 8] = decode_hex(parent_id)?;
        let flags: [u8; 1] = decode_hex(flags)?;
        if trace_id == [0; 16] || parent == [0; 8] {
            return None;
        }
        Some(TraceContext {
            trace_id,
            span_id: nonzero(|| rand::rng().random()),
            parent_span_id: Some(parent),
            sampled: flags[0] & 1 == 1,
        })
    }

    /// Continues the trace in `traceparent` if it is valid, else starts a new one.
    pub fn from_headers(headers: &axum::http::HeaderMap) -> Self {
        headers
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(TraceContext::parse)
            .unwrap_or_else(TraceContext::new_root)
    }

    /// A child span of this one: same trace, new span id, this span as parent.
    pub fn child(&self) -> Self {
        TraceContext {
            trace_id: self.trace_id,
            span_id: nonzero(|| rand::rng().random()),
            parent_span_id: Some(self.span_id),
            sampled: self.sampled,
        }
    }

    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    pub fn span_id_hex(&self) -> String {
        hex(&self.span_id)
    }

    /// The `traceparent` value naming this span as the parent of the next hop.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            self.trace_id_hex(),
            self.span_id_hex(),
            u8::from(self.sampled)
        )
    }

    /// The context of the request or job being handled on this task, if any.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(|ctx| *ctx).ok()
    }

    /// Runs `future` with this as the current context (see [`TraceContext::current`]).
    pub fn scope<F: Future>(self, future: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(self, future)
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.traceparent())
    }
}

/// Handlers take `TraceContext` as an extractor to learn the request's trace.
impl<S: Send + Sync> FromRequestParts<S> for TraceContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<TraceContext>()
            .copied()
            .unwrap_or_else(|| TraceContext::from_headers(&parts.headers)))
    }
}

/// Reads the incoming `traceparent` (or starts a trace), opens the request's span, makes the
/// context current for the request, echoes it on the response and logs the outcome.
pub async fn propagate(mut request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let request_id = request
        .headers()
        .get(crate::server::REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let method = request.method().clone();
    let span = tracing::info_span!(
        "request",
        %method,
        route = %route,
        request_id = %request_id,
        trace_id = tracing::field::Empty,
    );
    let ctx = crate::telemetry::link_span(&span, TraceContext::from_headers(request.headers()));
    span.record("trace_id", ctx.trace_id_hex());
    request.extensions_mut().insert(ctx);

    let started = std::time::Instant::now();
    let mut response = ctx.scope(next.run(request)).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_millis() as u64;
    span.in_scope(|| {
        if response.status().is_server_error() {
            tracing::error!(status, latency_ms, "request failed");
        } else if response.status().is_client_error() {
            tracing::info!(status, latency_ms, "request refused");
        } else {
            tracing::debug!(status, latency_ms, "request completed");
        }
    });
    if let Ok(value) = ctx.traceparent().parse() {
        response.headers_mut().insert(TRACEPARENT, value);
    }
    response
}

fn nonzero<const N: usize>(mut generate: impl FnMut() -> [u8; N]) -> [u8; N] {
    loop {
        let bytes = generate();
        if bytes != [0; N] {
            return bytes;
        }
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn decode_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 || !is_lower_hex(s) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_traceparent_and_keeps_trace_id() {
        let ctx = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .expect("valid header");
        assert_eq!(ctx.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            ctx.parent_span_id.map(|p| hex(&p)).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert!(ctx.sampled);
        assert_ne!(ctx.span_id_hex(), "00f067aa0ba902b7");
        assert!(
            ctx.traceparent()
                .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-")
        );
    }

    #[test]
    fn rejects_malformed_traceparent() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(
                TraceContext::parse(bad).is_none(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn child_keeps_trace_and_points_at_parent() {
        let root = TraceContext::new_root();
        let child = root.child();
        assert_eq!(child.trace_id, root.trace_id);
        assert_eq!(child.parent_span_id, Some(root.span_id));
        assert_ne!(child.span_id, root.span_id);
    }
}
