//! The queue gateway carries declarative directives from an AI to the components of a web page
//! and user input back. This crate holds its message model: the [`Envelope`] every message
//! travels in, the [`Address`] grammar of page components, and the directive types each kind of
//! address accepts, each with a JSON Schema its body is checked against on send. [`PageLog`] is
//! the ordered log of each page's messages, which every browser showing the page replays.
//!
//! The service ([`build`]) serves the AI's side with an internal key (create pages, send
//! directives, remove components, take user input) and the browser's side with Basic Auth
//! (long-poll or stream the page log, read the page state, send events, read blobs). Bodies larger than
//! `GATEWAY_INLINE_LIMIT` go to the blob store and travel as a [`BlobRef`] (claim check).
//! Directives also arrive on the bus queue `GATEWAY_DIRECTIVE_QUEUE` ([`consumer`]).
//! The AI's side is also served as MCP tools at `/mcp` ([`mcp`], internal key as bearer token).

pub mod consumer;
pub mod directives;
pub mod envelope;
pub mod http;
pub mod mcp;
pub mod pages;

use autonoma_aws::AwsConfig;
use autonoma_blobs::{BlobConfig, BlobStore};
use autonoma_bus::{Bus, BusConfig};
use autonoma_common::config::{DatabaseConfig, ServerConfig, ServiceConfig};
use autonoma_common::{Loaded, Server, ServerBuilder, db};
use serde::Deserialize;

pub use directives::{DIRECTIVES, DirectiveSpec, validate};
pub use envelope::{Address, AddressError, AddressKind, BlobRef, Body, Envelope, IdError, PageId};
pub use pages::{NewMessage, PageError, PageLog, PageState};

pub const SERVICE: &str = "queue-gateway";

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct GatewayConfig {
    #[serde(flatten)]
    pub server: ServerConfig,
    #[serde(flatten)]
    pub database: DatabaseConfig,
    #[serde(flatten)]
    pub aws: AwsConfig,
    #[serde(flatten)]
    pub bus: BusConfig,
    #[serde(flatten)]
    pub blobs: BlobConfig,
    /// Directive bodies up to this many bytes of JSON travel inline; larger ones as blobs.
    pub gateway_inline_limit: usize,
    /// Largest directive body accepted on a send, in bytes of JSON.
    pub gateway_directive_limit: usize,
    /// Largest blob stored, in bytes.
    pub gateway_blob_limit: usize,
    /// The bus queue the gateway takes the AI's directives from.
    pub gateway_directive_queue: String,
}

impl ServiceConfig for GatewayConfig {
    const SERVICE: &'static str = SERVICE;

    fn server(&self) -> &ServerConfig {
        &self.server
    }

    fn database(&self) -> Option<&DatabaseConfig> {
        Some(&self.database)
    }
}

/// Opens the database, the page log, the bus and the blob store, and binds the server.
pub async fn build(loaded: Loaded<GatewayConfig>) -> anyhow::Result<Server> {
    let config = &loaded.config;
    let pool = db::open(SERVICE, &config.database).await?;
    let log = PageLog::new(pool.clone()).await?;
    let bus = Bus::connect(&config.bus, Some(&pool), Some(&config.aws)).await?;
    let blobs = BlobStore::from_config(&config.blobs, &config.aws, pool.clone()).await?;
    let builder = ServerBuilder::new(&loaded).database(pool.clone());
    let gateway = http::Gateway::new(
        http::Limits::from_config(config),
        log,
        bus,
        blobs,
        pool,
        builder.shutdown_token(),
    );
    let queue = consumer::open(&gateway, &config.gateway_directive_queue).await?;
    tokio::spawn(consumer::run(
        gateway.clone(),
        queue,
        builder.shutdown_token(),
    ));
    builder.routes(http::router(gateway)).bind().await
}
