//! Serving a service: one call wraps the service's routes with everything every Autonoma
//! service has in common.
//!
//! - `GET /health` (liveness) and `GET /health/ready` (database reachable, not draining), both
//!   public; `GET /config/validate`, `POST /config/validate`, `GET /metrics` and
//!   `GET /openapi.json` for operators (Basic Auth or an internal key).
//! - Request ids (`x-request-id`, generated when absent), W3C trace context, request metrics,
//!   a body-size limit, a request timeout, CORS and the Origin check, rate limits on what people
//!   send ([`crate::ratelimit`]), problem+json errors.
//! - The route table: every route is listed in the OpenAPI document, and a route that is not
//!   (a plain `.route(...)` without `#[utoipa::path]`) is refused with 500, so no route escapes
//!   the audit of the table's credentials. [`route_as`] and [`listed_route`] list the routes
//!   `routes!` cannot take.
//! - Graceful shutdown on SIGTERM/SIGINT: stop accepting, let in-flight requests finish for up
//!   to `SHUTDOWN_GRACE`, then exit.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::serve::ListenerExt as _;
use axum::{Extension, Router};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use utoipa::ToSchema;
pub use utoipa::openapi::path::HttpMethod;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

use crate::auth::{self, Auth};
use crate::config::{ConfigReport, Loaded, ServerConfig, ServiceConfig, Spec};
use crate::extract::Json;
use crate::metrics::{self, Metrics};
use crate::problem::{self, Problem};
use crate::ratelimit::{self, Limiter};
use crate::trace;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Tag of the endpoints every service shares, in each OpenAPI document.
pub const OPS_TAG: &str = "operations";

/// Security scheme names used in `#[utoipa::path(security(...))]`.
pub const BASIC_AUTH: &str = "basicAuth";
pub const INTERNAL_KEY: &str = "internalKey";
pub const BEARER_AUTH: &str = "bearerAuth";

/// The routes every service answers without credentials: liveness and readiness, which the
/// platform probes unauthenticated.
pub const PUBLIC_PATHS: [&str; 2] = ["/health", "/health/ready"];

#[derive(Clone)]
struct Ops {
    service: &'static str,
    report: Arc<ConfigReport>,
    spec: Arc<Spec>,
    pool: Option<PgPool>,
    metrics: Metrics,
    shutdown: CancellationToken,
    openapi: Arc<serde_json::Value>,
    checks: Arc<Vec<ReadyCheck>>,
}

/// A dependency beside the database that `/health/ready` asks about: `Ok` with a short
/// description when usable, `Err` with the reason when not.
type CheckFn = dyn Fn() -> BoxFuture<'static, Result<String, String>> + Send + Sync;

#[derive(Clone)]
struct ReadyCheck {
    name: &'static str,
    check: Arc<CheckFn>,
}

/// Collects what a service serves, then binds.
pub struct ServerBuilder {
    service: &'static str,
    config: ServerConfig,
    report: ConfigReport,
    spec: Arc<Spec>,
    pool: Option<PgPool>,
    routes: OpenApiRouter,
    metrics: Metrics,
    shutdown: CancellationToken,
    checks: Vec<ReadyCheck>,
}

impl ServerBuilder {
    pub fn new<C: ServiceConfig>(loaded: &Loaded<C>) -> Self {
        ServerBuilder {
            service: C::SERVICE,
            config: loaded.config.server().clone(),
            report: loaded.report.clone(),
            spec: loaded.spec.clone(),
            pool: None,
            routes: OpenApiRouter::new(),
            metrics: Metrics::new(C::SERVICE),
            shutdown: CancellationToken::new(),
            checks: Vec::new(),
        }
    }

    /// Another dependency `/health/ready` reports under `name` (the service is unready while it
    /// fails, with its reason); each check gets 2 s.
    pub fn ready_check<F, Fut>(mut self, name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, String>> + Send + 'static,
    {
        self.checks.push(ReadyCheck {
            name,
            check: Arc::new(move || Box::pin(check())),
        });
        self
    }

    /// The pool whose health `/health/ready` reports.
    pub fn database(mut self, pool: PgPool) -> Self {
        self.pool = Some(pool);
        self
    }

    /// The service's own routes (state already applied), with their OpenAPI operations.
    pub fn routes(mut self, routes: OpenApiRouter) -> Self {
        self.routes = self.routes.merge(routes);
        self
    }

    /// The registry the service adds its own metrics to.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Cancelled when the server starts shutting down; background work should stop with it.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Binds `HOST:PORT` (port 0 picks a free one) and assembles the router.
    pub async fn bind(self) -> anyhow::Result<Server> {
        let config = self.config;
        let address = SocketAddr::new(config.host, config.port);
        let listener = TcpListener::bind(address)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {address}: {e}"))?;
        let local_addr = listener.local_addr()?;

        let (service_router, service_api) = self.routes.split_for_parts();
        let mut openapi = base_openapi(self.service);
        openapi.merge(service_api);
        let (ops_router, ops_api) = ops_routes().split_for_parts();
        openapi.merge(ops_api);
        let table = Arc::new(RouteTable::from_openapi(&openapi));
        let openapi_json = serde_json::to_value(&openapi)?;
        let limiter = Limiter::new(&config.rate_limit, PUBLIC_PATHS);
        ratelimit::spawn_pruning(&limiter, self.shutdown.clone());

        let ops = Ops {
            service: self.service,
            report: Arc::new(self.report),
            spec: self.spec,
            pool: self.pool,
            metrics: self.metrics.clone(),
            shutdown: self.shutdown.clone(),
            openapi: Arc::new(openapi_json),
            checks: Arc::new(self.checks),
        };
        // Layers run outermost last-added: ids and the trace span first, so every log line and
        // metric of the request carries them; error normalisation sees every error below it.
        let router = Router::new()
            .merge(service_router)
            .merge(ops_router.with_state(ops))
            .layer(from_fn_with_state(table.clone(), refuse_unlisted))
            .layer(DefaultBodyLimit::max(config.request_body_limit))
            .layer(CatchPanicLayer::custom(problem::panic_to_problem))
            .layer(TimeoutLayer::with_status_code(
                StatusCode::SERVICE_UNAVAILABLE,
                config.request_timeout,
            ))
            .layer(auth::cors_layer(&config.ws_allowed_origins))
            .layer(from_fn(auth::check_origin))
            .layer(from_fn_with_state(limiter, ratelimit::limit))
            .layer(Extension(Arc::new(Auth::from_config(&config))))
            .layer(from_fn(problem::normalize_errors))
            .layer(from_fn_with_state(self.metrics.clone(), metrics::record))
            .layer(from_fn(trace::propagate))
            .layer(PropagateRequestIdLayer::new(HeaderName::from_static(
                REQUEST_ID_HEADER,
            )))
            .layer(SetRequestIdLayer::new(
                HeaderName::from_static(REQUEST_ID_HEADER),
                MakeRequestUuid,
            ));

        tracing::info!(service = self.service, address = %local_addr, "listening");
        Ok(Server {
            service: self.service,
            listener,
            local_addr,
            router,
            table,
            shutdown: self.shutdown,
            grace: config.shutdown_grace,
        })
    }
}

/// A bound server, ready to run.
pub struct Server {
    service: &'static str,
    listener: TcpListener,
    local_addr: SocketAddr,
    router: Router,
    table: Arc<RouteTable>,
    shutdown: CancellationToken,
    grace: Duration,
}

impl Server {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    /// Every route this server answers (the paths and methods of its OpenAPI document).
    pub fn routes(&self) -> &RouteTable {
        &self.table
    }

    /// Cancel it to shut the server down as SIGTERM would.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until SIGTERM or SIGINT (or the shutdown token), then drains.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let token = self.shutdown.clone();
        let service = self.service;
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!(
                service,
                "shutdown signal received; draining in-flight requests"
            );
            token.cancel();
        });
        self.run().await
    }

    /// Serves until the shutdown token is cancelled, then drains (no signal handling).
    pub async fn run(self) -> anyhow::Result<()> {
        let token = self.shutdown.clone();
        let grace = self.grace;
        // Streamed responses (SSE, WebSocket frames, long polls) write small pieces one after
        // another: without TCP_NODELAY each can wait ~40 ms for the client's delayed ACK.
        let listener = self.listener.tap_io(|tcp| {
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::debug!(%error, "TCP_NODELAY not set on a connection");
            }
        });
        let serve = axum::serve(
            listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(token.clone().cancelled_owned());
        let serve = async move { serve.await };
        tokio::select! {
            result = serve => result.map_err(|e| anyhow::anyhow!("server failed: {e}"))?,
            () = async { token.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!(service = self.service, ?grace, "shutdown grace elapsed; exiting with requests still in flight");
            }
        }
        tracing::info!(service = self.service, "stopped");
        Ok(())
    }
}

async fn wait_for_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// Every route a server answers, as its OpenAPI document lists them: path (OpenAPI syntax,
/// `{param}`) → methods.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: BTreeMap<String, BTreeSet<String>>,
}

impl RouteTable {
    fn from_openapi(openapi: &utoipa::openapi::OpenApi) -> Self {
        let routes = openapi
            .paths
            .paths
            .iter()
            .map(|(path, item)| (path.clone(), methods_of(item)))
            .collect();
        RouteTable { routes }
    }

    /// (path, method) of every route, methods upper-case (`GET`).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.routes.iter().flat_map(|(path, methods)| {
            methods
                .iter()
                .map(move |method| (path.as_str(), method.as_str()))
        })
    }

    fn methods(&self, path: &str) -> Option<&BTreeSet<String>> {
        self.routes.get(path)
    }
}

fn methods_of(item: &PathItem) -> BTreeSet<String> {
    [
        ("GET", &item.get),
        ("PUT", &item.put),
        ("POST", &item.post),
        ("DELETE", &item.delete),
        ("OPTIONS", &item.options),
        ("HEAD", &item.head),
        ("PATCH", &item.patch),
        ("TRACE", &item.trace),
    ]
    .into_iter()
    .filter(|(_, operation)| operation.is_some())
    .map(|(method, _)| method.to_owned())
    .collect()
}

/// The OpenAPI form of an axum path: a wildcard `{*rest}` is written `{rest}`.
fn openapi_path(axum_path: &str) -> String {
    axum_path.replace("{*", "{")
}

/// Answers only what the route table lists. A route the table does not know was added without
/// its OpenAPI operation, so no audit of the table has seen its credentials: it is refused
/// (500) until it is listed. A method the table does not list for the path is 405.
async fn refuse_unlisted(
    State(table): State<Arc<RouteTable>>,
    request: Request,
    next: Next,
) -> Response {
    // Without a matched route the router answers 404 itself.
    let Some(matched) = request.extensions().get::<MatchedPath>() else {
        return next.run(request).await;
    };
    let path = openapi_path(matched.as_str());
    let Some(methods) = table.methods(&path) else {
        tracing::error!(
            route = %path,
            "route missing from the OpenAPI document; refused until it is documented"
        );
        return Problem::new(StatusCode::INTERNAL_SERVER_ERROR)
            .kind("unlisted-route")
            .detail(format!(
                "The route {path} is not in this service's OpenAPI document, so it is not served."
            ))
            .into_response();
    };
    let method = request.method();
    let listed = methods.contains(method.as_str())
        || (method == Method::HEAD && methods.contains(Method::GET.as_str()));
    if listed {
        return next.run(request).await;
    }
    let allow = methods.iter().cloned().collect::<Vec<_>>().join(", ");
    let mut problem = Problem::new(StatusCode::METHOD_NOT_ALLOWED)
        .detail(format!("{path} accepts {allow}, not {method}."));
    if let Ok(allow) = HeaderValue::from_str(&allow) {
        problem = problem.header(header::ALLOW, allow);
    }
    problem.into_response()
}

/// Serves a documented route at `axum_path`, for routes whose axum path cannot be their
/// OpenAPI path: a wildcard `{*rest}`, documented as `{rest}` by the handler's
/// `#[utoipa::path]` and passed here as `routes!(handler)`.
pub fn route_as<S>(axum_path: &str, documented: UtoipaMethodRouter<S>) -> OpenApiRouter<S>
where
    S: Send + Sync + Clone + 'static,
{
    let (schemas, paths, method_router) = documented;
    let mut router = OpenApiRouter::default().route(axum_path, method_router);
    let openapi = router.get_openapi_mut();
    openapi.paths.merge(paths);
    openapi
        .components
        .get_or_insert_with(Default::default)
        .schemas
        .extend(schemas);
    router
}

/// Serves `method_router` at `path` and lists it in the OpenAPI document with a bare operation
/// for each of `methods`, for handlers without `#[utoipa::path]` (and tower services). A method
/// the method router serves but `methods` omits is refused (405).
pub fn listed_route<S>(
    path: &str,
    methods: &[HttpMethod],
    method_router: MethodRouter<S>,
) -> OpenApiRouter<S>
where
    S: Send + Sync + Clone + 'static,
{
    let mut router = OpenApiRouter::default().route(path, method_router);
    let mut paths = utoipa::openapi::path::Paths::new();
    paths.paths.insert(
        openapi_path(path),
        PathItem::from_http_methods(methods.iter().cloned(), Operation::new()),
    );
    router.get_openapi_mut().paths.merge(paths);
    router
}

fn base_openapi(service: &str) -> utoipa::openapi::OpenApi {
    let mut openapi = utoipa::openapi::OpenApiBuilder::new()
        .info(
            utoipa::openapi::InfoBuilder::new()
                .title(format!("Autonoma {service}"))
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(format!(
                    "HTTP API of the {service} service. Errors are RFC 9457 problem details."
                )))
                .build(),
        )
        .build();
    let components = openapi.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BASIC_AUTH,
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
    );
    components.add_security_scheme(
        INTERNAL_KEY,
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-INTERNAL-KEY"))),
    );
    components.add_security_scheme(
        BEARER_AUTH,
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    openapi
}

fn ops_routes() -> OpenApiRouter<Ops> {
    let public = OpenApiRouter::new()
        .routes(routes!(get_health))
        .routes(routes!(get_ready));
    let operator = OpenApiRouter::new()
        .routes(routes!(get_config_report, post_config_candidate))
        .routes(routes!(get_metrics))
        .routes(routes!(get_openapi))
        .route_layer(from_fn(auth::require_operator));
    public.merge(operator)
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HealthOut {
    pub status: String,
    pub service: String,
    pub version: String,
}

/// Liveness: the process is up and serving.
#[utoipa::path(get, path = "/health", tag = OPS_TAG, responses((status = 200, body = HealthOut)))]
async fn get_health(State(ops): State<Ops>) -> Json<HealthOut> {
    Json(HealthOut {
        status: "ok".into(),
        service: ops.service.into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReadyOut {
    pub status: String,
    /// `ok`, `unreachable: …` or `not used`.
    pub database: String,
    /// The service's other dependencies, each with what it reported.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checks: BTreeMap<String, String>,
}

/// Readiness: the database answers and the service is not shutting down.
#[utoipa::path(get, path = "/health/ready", tag = OPS_TAG, responses(
    (status = 200, body = ReadyOut),
    (status = 503, body = Problem, content_type = "application/problem+json"),
))]
async fn get_ready(State(ops): State<Ops>) -> Result<Json<ReadyOut>, Problem> {
    if ops.shutdown.is_cancelled() {
        return Err(Problem::unavailable("The service is shutting down.").kind("draining"));
    }
    let database = match &ops.pool {
        None => "not used".to_owned(),
        Some(pool) => {
            let ping = tokio::time::timeout(Duration::from_secs(2), crate::db::ping(pool)).await;
            match ping {
                Ok(Ok(())) => "ok".to_owned(),
                Ok(Err(error)) => {
                    return Err(Problem::unavailable(format!(
                        "The database is unreachable: {error}"
                    ))
                    .kind("database-unreachable"));
                }
                Err(_) => {
                    return Err(
                        Problem::unavailable("The database did not answer within 2s.")
                            .kind("database-unreachable"),
                    );
                }
            }
        }
    };
    let mut checks = BTreeMap::new();
    for ReadyCheck { name, check } in ops.checks.iter() {
        let reason = match tokio::time::timeout(Duration::from_secs(2), check()).await {
            Ok(Ok(detail)) => {
                checks.insert((*name).to_owned(), detail);
                continue;
            }
            Ok(Err(reason)) => reason,
            Err(_) => "no answer within 2s".to_owned(),
        };
        return Err(
            Problem::unavailable(format!("The {name} is unavailable: {reason}"))
                .kind("dependency-unavailable")
                .extension("dependency", *name),
        );
    }
    Ok(Json(ReadyOut {
        status: "ready".into(),
        database,
        checks,
    }))
}

/// The configuration this process runs with, key by key (secret values are never shown).
#[utoipa::path(get, path = "/config/validate", tag = OPS_TAG,
    security(("basicAuth" = []), ("internalKey" = [])),
    responses((status = 200, body = ConfigReport)))]
async fn get_config_report(State(ops): State<Ops>) -> Json<ConfigReport> {
    Json((*ops.report).clone())
}

/// An environment to judge against this service's section of the schema.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ConfigCandidateIn {
    /// Variable name → value, as they would be set in the environment.
    pub env: HashMap<String, String>,
}

/// Judges a candidate environment (for example before applying it on Render) without
/// changing anything. Answers 200 with `valid: false` and the problems when it would not boot.
#[utoipa::path(post, path = "/config/validate", tag = OPS_TAG,
    security(("basicAuth" = []), ("internalKey" = [])),
    request_body = ConfigCandidateIn,
    responses((status = 200, body = ConfigReport)))]
async fn post_config_candidate(
    State(ops): State<Ops>,
    Json(candidate): Json<ConfigCandidateIn>,
) -> Json<ConfigReport> {
    Json(ops.spec.evaluate(&candidate.env).report)
}

/// Prometheus metrics in the OpenMetrics text format.
#[utoipa::path(get, path = "/metrics", tag = OPS_TAG,
    security(("basicAuth" = []), ("internalKey" = [])),
    responses((status = 200, body = String, content_type = "application/openmetrics-text")))]
async fn get_metrics(State(ops): State<Ops>) -> Response {
    metrics::serve(&ops.metrics).await
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = OPS_TAG,
    security(("basicAuth" = []), ("internalKey" = [])),
    responses((status = 200, body = Object)))]
async fn get_openapi(State(ops): State<Ops>) -> Response {
    axum::Json((*ops.openapi).clone()).into_response()
}
