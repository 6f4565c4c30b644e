//! The AI's side over MCP: `/mcp`, the streamable HTTP transport (stateful sessions), guarded by
//! an internal key in `X-INTERNAL-KEY` or `Authorization: Bearer`. Each tool calls the same
//! [`Gateway`] operation as its HTTP route; a [`Problem`] comes back as a tool result with
//! `isError: true` whose text is the problem JSON, so the model can correct its call.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use autonoma_blobs::{BlobKind, NewBlob};
use autonoma_common::Problem;
use autonoma_common::auth::require_internal_key_or_bearer;
use autonoma_common::mcp::{Args, input_schema, invalid, problem_result, tool_result};
use autonoma_common::problem::FieldError;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::from_fn;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, ProgressNotificationParam, ProgressToken,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{RoleServer, ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::directives::DIRECTIVES;
use crate::http::Gateway;
use crate::http::blobs::BlobQuery;
use crate::http::events::EventOut;
use crate::http::messages::MessageIn;

/// Where the MCP endpoint is mounted.
pub const MCP_PATH: &str = "/mcp";
/// Longest `wait_for_user_input`.
pub const MAX_INPUT_WAIT: Duration = Duration::from_secs(600);
const DEFAULT_INPUT_WAIT: Duration = Duration::from_secs(60);
/// One `take_input` turn of a wait; the bus waits at most 20 s per receive.
const INPUT_STEP: Duration = autonoma_bus::MAX_WAIT;
/// How often a waiting `wait_for_user_input` reports progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Largest decoded `put_blob` content; larger content goes through `POST /blobs`.
pub const PUT_BLOB_MAX: usize = 8 * 1024 * 1024;
/// Largest `get_blob` content; larger content is read from `GET /blobs/{id}/content`.
pub const GET_BLOB_MAX: usize = 4 * 1024 * 1024;
/// `get_blob`'s default `maxBytes`: the result carries the content twice (structured and as
/// text), and the Python SDK refuses SSE events over 1 MiB by default.
const GET_BLOB_DEFAULT: usize = 256 * 1024;
/// Room for an 8 MiB `put_blob` as base64 plus the JSON-RPC envelope around it.
const MAX_REQUEST_BODY: usize = 12 * 1024 * 1024;
/// Longer than the longest wait, which may send nothing (no progress token) while it runs.
const SESSION_IDLE: Duration = Duration::from_secs(900);

/// `/mcp`, for merging into the service's router (it gets the server's shared layers there).
pub fn router(gateway: Gateway) -> OpenApiRouter {
    let config = StreamableHttpServerConfig::default()
        // Cancelled when the server drains: open sessions, streams and waits end with it.
        .with_cancellation_token(gateway.shutdown_token())
        // Every request carries the internal key, which a DNS-rebinding page cannot know; the
        // default loopback-only Host check would refuse the deployed hostname.
        .disable_allowed_hosts()
        .with_max_request_body_bytes(MAX_REQUEST_BODY);
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(SESSION_IDLE);
    let service = StreamableHttpService::new(
        move || Ok(GatewayTools::new(gateway.clone())),
        Arc::new(sessions),
        config,
    );
    OpenApiRouter::new()
        .routes(routes!(post_mcp, stream_mcp))
        .route_layer(from_fn(require_internal_key_or_bearer))
        .with_state(Arc::new(service))
}

type McpService = StreamableHttpService<GatewayTools, LocalSessionManager>;

/// The AI's side as MCP tools over the streamable HTTP transport: a JSON-RPC message, answered
/// as JSON or as an event stream.
#[utoipa::path(post, path = "/mcp", tag = "mcp",
    security(("internalKey" = []), ("bearerAuth" = [])),
    request_body(content = Object, description = "A JSON-RPC message"),
    responses(
        (status = 200, description = "The JSON-RPC answer, or an event stream"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
    ))]
async fn post_mcp(State(service): State<Arc<McpService>>, request: Request) -> Response {
    service.handle(request).await.into_response()
}

/// `GET`: the MCP session's event stream; `DELETE`: ends the MCP session.
#[utoipa::path(method(get, delete), path = "/mcp", tag = "mcp",
    security(("internalKey" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The event stream (GET), or the session ended (DELETE)"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ))]
async fn stream_mcp(State(service): State<Arc<McpService>>, request: Request) -> Response {
    service.handle(request).await.into_response()
}

/// The MCP server of one session: the gateway's operations as tools.
#[derive(Clone)]
pub struct GatewayTools {
    gateway: Gateway,
    tool_router: ToolRouter<Self>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PageArgs {
    /// The page id: 1–64 characters of `[a-z0-9_-]`, starting with a letter or digit.
    page: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WaitArgs {
    /// The page whose user input to wait for.
    page: String,
    /// Seconds to wait for the first input, 1 to 600 (default 60).
    #[serde(default)]
    #[schemars(range(min = 1, max = 600))]
    timeout_secs: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SendArgs {
    /// The page to send to.
    page: String,
    /// The component address: `layout-manager`, `dataset-router`, `plotly-panel-{id}` or
    /// `text-component-{id}`.
    to: String,
    /// A directive type the address accepts, e.g. `text.set` for a `text-component-{id}`.
    directive: String,
    /// The directive's body, checked against the directive's JSON Schema.
    body: Value,
    /// W3C trace context to keep with the message.
    #[serde(default)]
    traceparent: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RemoveArgs {
    /// The page to remove the component from.
    page: String,
    /// The component: a `plotly-panel-{id}` or `text-component-{id}`.
    address: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PutBlobArgs {
    /// What the blob is: `layout`, `plotly`, `dataset`, `html` or `other`.
    #[schemars(extend("enum" = ["layout", "plotly", "dataset", "html", "other"]))]
    kind: String,
    /// A name to find it by later (1–256 characters), e.g. `sales/2025-q1`.
    #[serde(default)]
    name: Option<String>,
    /// Its media type, e.g. `application/json` or `text/csv`.
    content_type: String,
    /// Tags to find it by later.
    #[serde(default)]
    tags: Vec<String>,
    /// The content as text (stored as UTF-8). Give exactly one of `text` and `base64`.
    #[serde(default)]
    text: Option<String>,
    /// The content as standard base64. Give exactly one of `text` and `base64`.
    #[serde(default)]
    base64: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GetBlobArgs {
    /// The blob id.
    id: String,
    /// Largest content to return, 1 to 4194304 bytes (default 262144); a larger blob is an
    /// error naming its size.
    #[serde(default)]
    #[schemars(range(min = 1, max = 4_194_304))]
    max_bytes: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListBlobsArgs {
    /// Only blobs of this kind: `layout`, `plotly`, `dataset`, `html` or `other`.
    #[serde(default)]
    kind: Option<String>,
    /// Only blobs whose name starts with this.
    #[serde(default)]
    name_prefix: Option<String>,
    /// Only blobs that have every one of these tags.
    #[serde(default)]
    tags: Vec<String>,
    /// Page size, 1 to 1000 (default 100).
    #[serde(default)]
    #[schemars(range(min = 1, max = 1000))]
    limit: Option<u32>,
    /// `nextCursor` of the previous page.
    #[serde(default)]
    cursor: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ShareArgs {
    /// The page to share.
    page: String,
    /// The token's lifetime in seconds, 60 to the gateway's maximum (default: the gateway's).
    #[serde(default)]
    #[schemars(range(min = 60))]
    ttl_secs: Option<u64>,
}

#[tool_router]
impl GatewayTools {
    pub fn new(gateway: Gateway) -> Self {
        Self {
            gateway,
            tool_router: Self::tool_router(),
        }
    }

    /// Creates a page and the queue its user input arrives on; creating an existing page
    /// changes nothing (`created: false`).
    #[tool(input_schema = input_schema::<PageArgs>())]
    async fn create_page(&self, Args(args): Args<PageArgs>) -> CallToolResult {
        let run = async { self.gateway.create_page(&args?.page).await };
        tool_result(run.await)
    }

    /// Sends a directive to a component of the page: checks the address, the directive and
    /// its body against the directive's JSON Schema, and appends it to the page's log, which
    /// every browser on the page receives in order. Returns the envelope (id, seq, and the
    /// body inline or as a blob reference). Nothing is written when a check fails.
    #[tool(input_schema = input_schema::<SendArgs>())]
    async fn send_response_to_browser(&self, Args(args): Args<SendArgs>) -> CallToolResult {
        let run = async {
            let args = args?;
            let message = MessageIn {
                to: args.to,
                directive: args.directive,
                body: args.body,
                traceparent: args.traceparent,
                id: None,
            };
            self.gateway.send_message(&args.page, message).await
        };
        tool_result(run.await)
    }

    /// Waits for the person's input on the page (clicks, form submissions, ...) and returns
    /// the events, oldest first; an empty list when the timeout passes first. Reports
    /// progress while it waits when the call carries a progress token.
    #[tool(input_schema = input_schema::<WaitArgs>())]
    async fn wait_for_user_input(
        &self,
        Args(args): Args<WaitArgs>,
        context: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let args = match args {
            Ok(args) => args,
            Err(problem) => return problem_result(&problem),
        };
        let timeout = match args.timeout_secs.map(Duration::from_secs) {
            None => DEFAULT_INPUT_WAIT,
            Some(wait) if (1..=MAX_INPUT_WAIT.as_secs()).contains(&wait.as_secs()) => wait,
            Some(_) => {
                return problem_result(&invalid(
                    "The wait is out of range.",
                    "/timeoutSecs",
                    format!("expected 1 to {}", MAX_INPUT_WAIT.as_secs()),
                ));
            }
        };
        let events = match self.wait_for_input(&args.page, timeout, &context).await {
            Ok(events) => events,
            Err(problem) => return problem_result(&problem),
        };
        let timed_out = events.is_empty();
        let mut result = CallToolResult::structured(json!({
            "page": args.page,
            "events": events,
            "timedOut": timed_out,
        }));
        if timed_out {
            result.content.push(ContentBlock::text(format!(
                "No input arrived on page {} within {} s; call wait_for_user_input again to \
                 keep waiting.",
                args.page,
                timeout.as_secs()
            )));
        }
        result
    }

    /// Takes a component off the page (appends a `component.remove` to `layout-manager`).
    #[tool(input_schema = input_schema::<RemoveArgs>())]
    async fn remove_component(&self, Args(args): Args<RemoveArgs>) -> CallToolResult {
        let run = async {
            let args = args?;
            self.gateway
                .remove_component(&args.page, &args.address)
                .await
        };
        tool_result(run.await)
    }

    /// Stores content in the blob registry (deduplicated by content) and returns its entry;
    /// refer to it by id, e.g. in a `dataset.route`. At most 8 MiB; larger content goes
    /// through `POST /blobs`.
    #[tool(input_schema = input_schema::<PutBlobArgs>())]
    async fn put_blob(&self, Args(args): Args<PutBlobArgs>) -> CallToolResult {
        let run = async {
            let args = args?;
            let kind = args.kind.parse::<BlobKind>().map_err(|_| {
                invalid(
                    "There is no such blob kind.",
                    "/kind",
                    "expected one of layout, plotly, dataset, html, other",
                )
            })?;
            let content = blob_content(args.text, args.base64)?;
            let mut meta = NewBlob::new(kind, args.content_type);
            meta.name = args.name;
            meta.tags = args.tags;
            let body = futures::stream::once(std::future::ready(Ok(content)));
            self.gateway.put_blob(meta, body).await
        };
        tool_result(run.await)
    }

    /// A blob's registry entry and its content: as `text` when it is textual (text/*, JSON,
    /// XML) and UTF-8, else as `base64`. At most 4 MiB; larger blobs are read from
    /// `GET /blobs/{id}/content`.
    #[tool(input_schema = input_schema::<GetBlobArgs>())]
    async fn get_blob(&self, Args(args): Args<GetBlobArgs>) -> CallToolResult {
        let run = async {
            let args = args?;
            let max = match args.max_bytes.map(usize::try_from) {
                None => GET_BLOB_DEFAULT,
                Some(Ok(max)) if (1..=GET_BLOB_MAX).contains(&max) => max,
                Some(_) => {
                    return Err(invalid(
                        "maxBytes is out of range.",
                        "/maxBytes",
                        format!(
                            "expected 1 to {GET_BLOB_MAX}; read larger blobs from \
                             GET /blobs/{{id}}/content"
                        ),
                    ));
                }
            };
            let (blob, bytes) = self.gateway.read_blob(&args.id, max).await?;
            let content = if is_textual(&blob.content_type)
                && let Ok(text) = std::str::from_utf8(&bytes)
            {
                json!({"encoding": "text", "text": text})
            } else {
                json!({"encoding": "base64", "base64": BASE64.encode(&bytes)})
            };
            Ok(json!({"blob": blob, "content": content}))
        };
        tool_result(run.await)
    }

    /// Blob registry entries, newest first, filtered by kind, name prefix and tags; pass
    /// `nextCursor` as `cursor` for the next page.
    #[tool(input_schema = input_schema::<ListBlobsArgs>())]
    async fn list_blobs(&self, Args(args): Args<ListBlobsArgs>) -> CallToolResult {
        let run = async {
            let args = args?;
            let cursor = args
                .cursor
                .map(|cursor| {
                    cursor.parse().map_err(|_| {
                        invalid(
                            "The cursor is not valid.",
                            "/cursor",
                            "expected the nextCursor of a previous list_blobs",
                        )
                    })
                })
                .transpose()?;
            if let Some(tag) = args.tags.iter().find(|tag| tag.contains(',')) {
                return Err(invalid(
                    "A tag is not valid.",
                    "/tags",
                    format!("{tag:?}: tags contain no commas"),
                ));
            }
            let query = BlobQuery {
                kind: args.kind,
                name: args.name_prefix,
                tags: (!args.tags.is_empty()).then(|| args.tags.join(",")),
                limit: args.limit,
                cursor,
            };
            self.gateway.list_blobs(&query).await
        };
        tool_result(run.await)
    }

    /// Makes a token that opens only this page's browser side (poll, stream, state, events,
    /// blobs) until it expires; give it to whoever should see the page.
    #[tool(input_schema = input_schema::<ShareArgs>())]
    async fn share_page(&self, Args(args): Args<ShareArgs>) -> CallToolResult {
        let run = async {
            let args = args?;
            let ttl = args.ttl_secs.map(Duration::from_secs);
            self.gateway.share_page(&args.page, ttl).await
        };
        tool_result(run.await)
    }
}

impl GatewayTools {
    /// Takes input off the page's queue in turns of at most 20 s until some arrives or
    /// `timeout` passes, reporting progress every few seconds. The client's cancellation and
    /// the server's shutdown end the wait; input not yet returned stays queued.
    async fn wait_for_input(
        &self,
        page: &str,
        timeout: Duration,
        context: &RequestContext<RoleServer>,
    ) -> Result<Vec<EventOut>, Problem> {
        let mut waiting = Waiting::new(page, timeout, context, self.gateway.shutdown_token());
        let deadline = waiting.started + timeout;
        loop {
            let turn = Instant::now();
            let step = deadline.saturating_duration_since(turn).min(INPUT_STEP);
            let events = waiting.run(self.gateway.take_input(page, step)).await??;
            if !events.is_empty() || Instant::now() >= deadline {
                return Ok(events);
            }
            // A short REQUEST_TIMEOUT shortens each receive to nothing; do not spin on it.
            waiting
                .run(tokio::time::sleep_until(turn + MIN_TURN))
                .await?;
        }
    }
}

/// Shortest turn of a `wait_for_user_input` that found nothing.
const MIN_TURN: Duration = Duration::from_secs(1);

/// One `wait_for_user_input` in progress: what it reports and what ends it early.
struct Waiting<'a> {
    page: &'a str,
    timeout: Duration,
    context: &'a RequestContext<RoleServer>,
    shutdown: CancellationToken,
    progress: Option<ProgressToken>,
    started: Instant,
    ticker: tokio::time::Interval,
}

impl<'a> Waiting<'a> {
    fn new(
        page: &'a str,
        timeout: Duration,
        context: &'a RequestContext<RoleServer>,
        shutdown: CancellationToken,
    ) -> Self {
        let mut ticker = tokio::time::interval(PROGRESS_EVERY);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self {
            page,
            timeout,
            context,
            shutdown,
            progress: context.meta.get_progress_token(),
            started: Instant::now(),
            ticker,
        }
    }

    /// Runs `step` to its end, sending progress meanwhile, unless the client cancels the call
    /// or the server shuts down first.
    async fn run<F: Future>(&mut self, step: F) -> Result<F::Output, Problem> {
        tokio::pin!(step);
        loop {
            tokio::select! {
                output = &mut step => return Ok(output),
                _ = self.ticker.tick(), if self.progress.is_some() => self.report().await,
                () = self.context.ct.cancelled() => {
                    return Err(Problem::unavailable(
                        "The wait was cancelled; input that arrived stays queued for the next call.",
                    ));
                }
                () = self.shutdown.cancelled() => {
                    return Err(Problem::unavailable(
                        "The gateway is shutting down; call wait_for_user_input again once it is back.",
                    ));
                }
            }
        }
    }

    async fn report(&self) {
        let Some(token) = self.progress.clone() else {
            return;
        };
        let waited = self.started.elapsed().as_secs();
        let total = self.timeout.as_secs();
        let param = ProgressNotificationParam::new(token, waited as f64)
            .with_total(total as f64)
            .with_message(format!(
                "waiting for input on page {}: {waited} s of {total} s",
                self.page
            ));
        if let Err(error) = self.context.peer.notify_progress(param).await {
            tracing::debug!(%error, "progress notification not sent");
        }
    }
}

/// The decoded content of exactly one of `text` and `base64`, at most [`PUT_BLOB_MAX`] bytes.
fn blob_content(text: Option<String>, base64: Option<String>) -> Result<Bytes, Problem> {
    let too_large = |size: usize| {
        Problem::new(StatusCode::PAYLOAD_TOO_LARGE).detail(format!(
            "The content is {size} bytes; put_blob takes at most {PUT_BLOB_MAX}. Store larger \
             content with POST /blobs (the body streamed, ?kind=, Content-Type)."
        ))
    };
    match (text, base64) {
        (Some(text), None) if text.len() > PUT_BLOB_MAX => Err(too_large(text.len())),
        (Some(text), None) => Ok(Bytes::from(text)),
        (None, Some(encoded)) => {
            // Checked before decoding, so an oversized argument is never decoded whole.
            let estimate = encoded.len() / 4 * 3;
            if estimate > PUT_BLOB_MAX + 2 {
                return Err(too_large(estimate));
            }
            let bytes = BASE64.decode(encoded.trim()).map_err(|e| {
                invalid("The content is not valid base64.", "/base64", e.to_string())
            })?;
            if bytes.len() > PUT_BLOB_MAX {
                return Err(too_large(bytes.len()));
            }
            Ok(Bytes::from(bytes))
        }
        (text, _) => {
            let message = if text.is_some() {
                "give either text or base64, not both"
            } else {
                "give the content as text or as base64"
            };
            Err(Problem::validation(
                "Give exactly one of text and base64.",
                ["/text", "/base64"].map(|field| FieldError {
                    field: field.into(),
                    message: message.into(),
                }),
            ))
        }
    }
}

/// Whether content of this media type is meant to be read as text.
fn is_textual(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence.starts_with("text/")
        || matches!(
            essence.as_str(),
            "application/json"
                | "application/xml"
                | "application/javascript"
                | "application/x-ndjson"
                | "image/svg+xml"
        )
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for GatewayTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                crate::SERVICE,
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(INSTRUCTIONS.as_str())
    }
}

/// What the model is told about pages, addresses and directives; the directive list comes
/// from the schemas themselves.
static INSTRUCTIONS: LazyLock<String> = LazyLock::new(|| {
    let mut text = String::from(
        "Drive web pages through addressed components. create_page makes a page (id: 1-64 of \
         [a-z0-9_-]); every browser showing it replays its ordered log of directives. Send a \
         directive to a component with send_response_to_browser {page, to, directive, body}; \
         bodies are checked against the directive's JSON Schema and large ones travel as blob \
         references by themselves. Then call wait_for_user_input to receive what the person \
         clicked, typed or submitted; call it again after each answer.\n\
         Addresses: layout-manager (one per page, the layout), dataset-router (one per page, \
         hands datasets to charts), plotly-panel-{id} (one Plotly chart), text-component-{id} \
         (text, labels, forms); {id} is 1-64 of [a-z0-9_-].\nDirectives:\n",
    );
    for spec in DIRECTIVES {
        let schema: Value = serde_json::from_str(spec.schema).unwrap_or(Value::Null);
        let required = schema["required"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        text.push_str(&format!(
            "- {} to {}: {} Required: {}.\n",
            spec.name,
            spec.to.template(),
            schema["description"].as_str().unwrap_or(""),
            required,
        ));
    }
    text.push_str(
        "Store datasets, figures and layouts for reuse with put_blob and refer to them by id \
         (e.g. dataset.route {dataset: {blobId}}); find them again with list_blobs. A failed \
         call returns isError with an RFC 9457 problem whose `errors` name the fields to fix; \
         nothing is written then.",
    );
    text
});
