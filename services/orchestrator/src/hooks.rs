//! `POST /hooks/{source}`: webhook intake. The body must carry an HMAC-SHA256 signature made
//! with the source's secret, in GitHub's format (`X-Hub-Signature-256: sha256=<hex>`); the
//! event maps to a task kind through `WEBHOOK_ROUTES`; the delivery id makes redeliveries
//! return the task already created instead of a second one.

use std::collections::HashMap;

use autonoma_common::Problem;
use autonoma_common::trace::TraceContext;
use autonoma_protocol::TaskIn;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::Value;
use sha2::Sha256;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::actor::Actor;
use crate::{AppState, OrchestratorConfig, tasks};

const SIGNATURE_HEADER: &str = "x-hub-signature-256";
const EVENT_HEADERS: [&str; 2] = ["x-github-event", "x-event-type"];
const DELIVERY_HEADERS: [&str; 2] = ["x-github-delivery", "x-delivery-id"];

/// Webhook secrets and routes, parsed once from the configuration.
pub struct HookConfig {
    secrets: HashMap<String, SecretString>,
    /// (source, event or "*", kind), in configuration order.
    routes: Vec<(String, String, String)>,
}

impl HookConfig {
    pub fn from_config(config: &OrchestratorConfig) -> anyhow::Result<Self> {
        let mut secrets = HashMap::new();
        for entry in &config.webhook_secrets {
            let (source, secret) = entry
                .expose_secret()
                .split_once(':')
                .ok_or_else(|| anyhow::anyhow!("WEBHOOK_SECRETS entries are source:secret"))?;
            secrets.insert(source.to_owned(), SecretString::from(secret.to_owned()));
        }
        let mut routes = Vec::new();
        for rule in &config.webhook_routes {
            let (left, kind) = rule
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("WEBHOOK_ROUTES entries are source/event=kind"))?;
            let (source, event) = left
                .split_once('/')
                .ok_or_else(|| anyhow::anyhow!("WEBHOOK_ROUTES entries are source/event=kind"))?;
            routes.push((source.to_owned(), event.to_owned(), kind.to_owned()));
        }
        Ok(HookConfig { secrets, routes })
    }

    fn kind_for(&self, source: &str, event: &str) -> Option<&str> {
        self.routes
            .iter()
            .find(|(s, e, _)| s == source && (e == event || e == "*"))
            .map(|(_, _, kind)| kind.as_str())
    }
}

pub fn router(state: AppState) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(post_hook))
        .with_state(state)
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HookOut {
    /// The task the delivery became (absent when no route matched the event).
    task_id: Option<Uuid>,
    /// True when this delivery was seen before and its first task is returned.
    duplicate: bool,
    /// Why nothing was created, when nothing was.
    #[serde(skip_serializing_if = "Option::is_none")]
    ignored: Option<String>,
}

fn header<'a>(headers: &'a HeaderMap, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()))
}

/// Constant-time check of `sha256=<hex>` over the raw body.
fn signature_valid(secret: &SecretString, body: &[u8], signature: &str) -> bool {
    let Some(hex_digest) = signature.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_digest) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// Turns a signed webhook delivery into a task (202), or answers 202 with `ignored` when no
/// route matches its event. A bad or missing signature, or a source that is not configured, is
/// 401 and creates nothing.
#[utoipa::path(post, path = "/hooks/{source}", tag = "webhooks",
    params(("source" = String, Path), ("X-Hub-Signature-256" = String, Header), ("X-GitHub-Delivery" = String, Header), ("X-GitHub-Event" = String, Header)),
    request_body(content = Object, description = "The source's event payload"),
    responses(
        (status = 202, body = HookOut),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ))]
async fn post_hook(
    State(state): State<AppState>,
    Path(source): Path<String>,
    trace: TraceContext,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, autonoma_common::extract::Json<HookOut>), Problem> {
    let signature = header(&headers, &[SIGNATURE_HEADER]).unwrap_or_default();
    // An unknown source is refused like a bad signature, so that callers without a secret
    // cannot learn which sources are configured.
    let verified = match state.hooks.secrets.get(&source) {
        Some(secret) => signature_valid(secret, &body, signature),
        None => {
            tracing::warn!(%source, "webhook for a source that is not configured");
            false
        }
    };
    if !verified {
        return Err(
            Problem::unauthorized("The webhook signature does not match the body.")
                .kind("bad-signature")
                .field(
                    SIGNATURE_HEADER,
                    if signature.is_empty() {
                        "missing"
                    } else {
                        "does not match"
                    },
                ),
        );
    }
    let delivery = header(&headers, &DELIVERY_HEADERS).ok_or_else(|| {
        Problem::bad_request("A delivery id is required to recognise redeliveries.")
            .field("x-github-delivery", "missing")
    })?;
    let event = header(&headers, &EVENT_HEADERS).unwrap_or("*");
    let Some(kind) = state.hooks.kind_for(&source, event) else {
        return Ok((
            StatusCode::ACCEPTED,
            autonoma_common::extract::Json(HookOut {
                task_id: None,
                duplicate: false,
                ignored: Some(format!("no route for {source}/{event}")),
            }),
        ));
    };
    let payload: Value = autonoma_common::extract::parse_json(&body)?;
    let input = TaskIn {
        kind: kind.to_owned(),
        payload,
        correlation_id: Some(format!("{source}:{delivery}")),
        idempotency_key: Some(format!("hook:{source}:{delivery}")),
        priority: None,
        max_attempts: None,
        timeout_secs: None,
        run_at: None,
    };
    let actor = Actor::Service(format!("webhook:{source}"));
    let (task, created) = tasks::create(&state, input, &actor, &trace).await?;
    tracing::info!(task_id = %task.id, %source, %event, delivery, created, "webhook accepted");
    Ok((
        StatusCode::ACCEPTED,
        autonoma_common::extract::Json(HookOut {
            task_id: Some(task.id),
            duplicate: !created,
            ignored: None,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_signature_is_checked_over_the_raw_body() {
        // From GitHub's documentation on validating webhook deliveries.
        let secret = SecretString::from("It's a Secret to Everybody".to_owned());
        let body = b"Hello, World!";
        let good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(signature_valid(&secret, body, good));
        assert!(!signature_valid(&secret, b"Hello, World?", good));
        assert!(!signature_valid(&secret, body, "sha256=00"));
        assert!(!signature_valid(&secret, body, "sha1=757107ea"));
        assert!(!signature_valid(&secret, body, ""));
    }
}
