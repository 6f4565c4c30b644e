//! Serving a service: one call wraps the service's routes with everything every Autonoma
//! service has in common.
//!
//! - `GET /health` (liveness) and `GET /health/ready` (database reachable, not draining), both
//!   public; `GET /config/validate`, `POST /config/validate`, `GET /metrics` and
//!   `GET /openapi.json` for operators (Basic Auth or an internal key).
//! - Request ids (`x-request-id`, generated when absent), W3C trace context, request metrics,
//!   a body-size limit, a request timeout, CORS and the Origin check, problem+json errors.
//! - Graceful shutdown on SIGTERM/SIGINT: stop accepting, let in-flight requests finish for up
//!   to `SHUTDOWN_GRACE`, then exit.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
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
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{self, Auth};
use crate::config::{ConfigReport, Loaded, ServerConfig, ServiceConfig, Spec};
use crate::extract::Json;
use crate::metrics::{self, Metrics};
use crate::problem::{self, Problem};
use crate::trace;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Tag of the endpoints every service shares, in each OpenAPI document.
pub const OPS_TAG: &str = "operations";

/// Security scheme names used in `#[utoipa::path(security(...))]`.
pub const BASIC_AUTH: &str = "basicAuth";
pub const INTERNAL_KEY: &str = "internalKey";
pub const BEARER_AUTH: &str = "bearerAuth";

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
        let openapi_json = serde_json::to_value(&openapi)?;

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
            .layer(DefaultBodyLimit::max(config.request_body_limit))
            .layer(CatchPanicLayer::custom(problem::panic_to_problem))
            .layer(TimeoutLayer::with_status_code(
                StatusCode::SERVICE_UNAVAILABLE,
                config.request_timeout,
            ))
            .layer(auth::cors_layer(&config.ws_allowed_origins))
            .layer(from_fn(auth::check_origin))
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
        let serve = axum::serve(
            self.listener,
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
