//! The HTTP API. The AI's side (internal key): `POST /pages`, `POST /pages/{page}/messages`,
//! `DELETE /pages/{page}/components/{address}`, `GET /pages/{page}/input`. The browser's side
//! (Basic Auth, an internal key, or the page's sharing token): `GET /pages/{page}/poll`,
//! `GET /pages/{page}/state`, `POST /pages/{page}/events`, `GET /pages/{page}/blobs/{id}`, and
//! the Server-Sent Events `GET /pages/{page}/stream`.
//! [`router`] also mounts the same AI operations as MCP tools at `/mcp` ([`crate::mcp`]).

pub mod blobs;
pub mod events;
pub mod messages;
pub mod pages;
pub mod share;
pub mod stream;

use std::time::Duration;

use autonoma_blobs::BlobStore;
use autonoma_bus::{Bus, QueueOptions, QueueRef};
use autonoma_common::Problem;
use autonoma_common::auth::require_internal_key;
use axum::http::StatusCode;
use axum::middleware::{from_fn, from_fn_with_state};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;

use crate::GatewayConfig;
use crate::envelope::PageId;
use crate::pages::{PageError, PageLog};

/// Sizes and waits the routes enforce.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bodies up to this many bytes of JSON travel inline.
    pub inline: usize,
    /// Largest directive body accepted on a send.
    pub directive: usize,
    /// Largest blob stored.
    pub blob: usize,
    /// Longest browser poll, kept below the request timeout so a poll answers before it.
    pub poll_wait: Duration,
}

/// Longest browser long poll.
pub const MAX_POLL_WAIT: Duration = Duration::from_secs(30);
/// Room left between the longest wait and the request timeout, for the reads around it.
const TIMEOUT_MARGIN: Duration = Duration::from_secs(2);

impl Limits {
    pub fn from_config(config: &GatewayConfig) -> Self {
        Self {
            inline: config.gateway_inline_limit,
            directive: config.gateway_directive_limit,
            blob: config.gateway_blob_limit,
            poll_wait: MAX_POLL_WAIT
                .min(config.server.request_timeout.saturating_sub(TIMEOUT_MARGIN)),
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct Gateway {
    limits: Limits,
    log: PageLog,
    bus: Bus,
    blobs: BlobStore,
    pool: PgPool,
    /// Cancelled when the server shuts down; ends open streams.
    shutdown: CancellationToken,
}

impl Gateway {
    pub fn new(
        limits: Limits,
        log: PageLog,
        bus: Bus,
        blobs: BlobStore,
        pool: PgPool,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            limits,
            log,
            bus,
            blobs,
            pool,
            shutdown,
        }
    }

    pub(crate) fn bus(&self) -> &Bus {
        &self.bus
    }

    /// The queue that carries a page's browser input to the AI; created with the page.
    async fn input_queue(&self, page: &PageId, create: bool) -> Result<QueueRef, Problem> {
        let name = input_queue_name(page);
        let opened = if create {
            self.bus.ensure_queue(&name, &QueueOptions::default()).await
        } else {
            match self.bus.open_queue(&name).await {
                // A page created by other means than `POST /pages` gets its queue now.
                Err(autonoma_bus::Error::QueueNotFound(_)) => {
                    self.bus.ensure_queue(&name, &QueueOptions::default()).await
                }
                other => other,
            }
        };
        opened.map_err(bus_problem)
    }

    /// Cancelled when the server shuts down.
    pub(crate) fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// 404 unless the page exists.
    async fn require_page(&self, page: &PageId) -> Result<(), Problem> {
        if self.log.exists(page).await.map_err(page_problem)? {
            Ok(())
        } else {
            Err(page_problem(PageError::UnknownPage(page.clone())))
        }
    }
}

/// `page-input-<page>`: at most 75 characters, within the bus's queue name rules.
pub fn input_queue_name(page: &PageId) -> String {
    format!("page-input-{page}")
}

pub fn router(gateway: Gateway) -> OpenApiRouter {
    let ai = OpenApiRouter::new()
        .merge(pages::ai_router(gateway.clone()))
        .merge(messages::ai_router(gateway.clone()))
        .merge(events::ai_router(gateway.clone()))
        .merge(blobs::ai_router(gateway.clone()))
        .merge(share::ai_router(gateway.clone()))
        .route_layer(from_fn(require_internal_key));
    // Browsers cannot set headers on EventSource, `<img>` or links: the browser side also
    // takes `?auth=` and `?token=`.
    let browser = OpenApiRouter::new()
        .merge(pages::browser_router(gateway.clone()))
        .merge(messages::browser_router(gateway.clone()))
        .merge(events::browser_router(gateway.clone()))
        .merge(blobs::browser_router(gateway.clone()))
        .merge(stream::browser_router(gateway.clone()))
        .route_layer(from_fn_with_state(
            gateway.clone(),
            share::require_page_access,
        ));
    ai.merge(browser).merge(crate::mcp::router(gateway))
}

/// The page id of a path, or a 404 that says why it cannot be one.
fn parse_page(raw: &str) -> Result<PageId, Problem> {
    raw.parse()
        .map_err(|e| Problem::not_found(format!("There is no page {raw:?}: its id {e}.")))
}

pub(crate) fn page_problem(error: PageError) -> Problem {
    match error {
        PageError::UnknownPage(page) => Problem::not_found(format!(
            "Page {page} does not exist; create it with POST /pages."
        ))
        .kind("unknown-page"),
        PageError::Invalid(errors) => {
            Problem::validation("The message is not valid for its address.", errors)
        }
        PageError::DuplicateId(id) => {
            Problem::conflict(format!("Message {id} is already in a page's log."))
                .kind("duplicate-message")
        }
        other => Problem::internal(other),
    }
}

pub(crate) fn bus_problem(error: autonoma_bus::Error) -> Problem {
    match error {
        autonoma_bus::Error::TooLarge { .. } => {
            Problem::new(StatusCode::PAYLOAD_TOO_LARGE).detail(error.to_string())
        }
        autonoma_bus::Error::InvalidMessage(message) => Problem::validation(
            "The event cannot travel on the bus.",
            [autonoma_common::problem::FieldError {
                field: "/value".into(),
                message,
            }],
        ),
        other => Problem::internal(other),
    }
}

pub(crate) fn blob_problem(error: autonoma_blobs::Error) -> Problem {
    match error {
        autonoma_blobs::Error::TooLarge { limit } => Problem::new(StatusCode::PAYLOAD_TOO_LARGE)
            .detail(format!("The body exceeds the limit of {limit} bytes.")),
        autonoma_blobs::Error::Invalid(message) => {
            Problem::bad_request(format!("The blob is not valid: {message}."))
        }
        other => Problem::internal(other),
    }
}
