//! Logs and traces of a service process.
//!
//! - `tracing-subscriber` prints events as JSON (`LOG_FORMAT=json`) or readable text.
//! - With `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are exported over OTLP/HTTP and request
//!   spans continue the caller's W3C trace.
//! - With `LOGGING_URL` set, events are shipped to the logging service in batches. The layer
//!   only `try_send`s into a bounded buffer: a slow or absent logging service never blocks a
//!   request; what does not fit is dropped and counted (`log_events_dropped` in `/metrics`).
//! - Both mask the service's secrets ([`crate::redact`]) in every event.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TraceState, TracerProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use prometheus_client::metrics::counter::Counter;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, ServerConfig};
use crate::trace::TraceContext;

/// Events from these targets are never shipped: shipping itself produces them, so shipping
/// them would feed back into the buffer.
const UNSHIPPED_TARGETS: &[&str] = &[
    "autonoma_common::telemetry",
    "hyper",
    "h2",
    "reqwest",
    "rustls",
    "tower",
    "opentelemetry",
];
const SHIP_BATCH: usize = 500;
const SHIP_INTERVAL: Duration = Duration::from_millis(500);
const SHIP_ATTEMPTS: u32 = 3;
/// The logging service stores messages of at most this many characters.
const MAX_MESSAGE_CHARS: usize = 65_536;

fn truncate_chars(mut text: String, max: usize) -> String {
    if let Some((index, _)) = text.char_indices().nth(max) {
        text.truncate(index);
    }
    text
}

static OTEL_ENABLED: AtomicBool = AtomicBool::new(false);

/// Counters shared by the shipping layer and every metrics registry of the process.
#[derive(Clone, Default)]
pub struct ShippingCounters {
    pub shipped: Counter,
    pub dropped: Counter,
}

static COUNTERS: LazyLock<ShippingCounters> = LazyLock::new(ShippingCounters::default);

pub fn shipping_counters() -> &'static ShippingCounters {
    &COUNTERS
}

/// Keeps exporters alive; flushes traces and pending log batches when dropped.
pub struct TelemetryGuard {
    tracer_provider: Option<SdkTracerProvider>,
    shipper: Option<tokio::task::JoinHandle<()>>,
    shipper_closed: Option<tokio_util::sync::CancellationToken>,
}

impl TelemetryGuard {
    /// Flushes what is buffered (bounded by `deadline`).
    pub async fn shutdown(mut self, deadline: Duration) {
        if let Some(token) = self.shipper_closed.take() {
            token.cancel();
        }
        if let Some(handle) = self.shipper.take() {
            let _ = tokio::time::timeout(deadline, handle).await;
        }
        if let Some(provider) = self.tracer_provider.take() {
            let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(token) = self.shipper_closed.take() {
            token.cancel();
        }
    }
}

/// Installs the process-wide subscriber. Call once, inside the Tokio runtime, before serving.
pub fn init(service: &str, config: &ServerConfig) -> anyhow::Result<TelemetryGuard> {
    let filter = EnvFilter::try_new(&config.log_level).map_err(|e| {
        anyhow::anyhow!(
            "LOG_LEVEL {:?} is not a valid filter: {e}",
            config.log_level
        )
    })?;
    let fmt_layer = match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(|| Redacting(std::io::stdout()))
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .with_target(true)
            .with_writer(|| Redacting(std::io::stdout()))
            .boxed(),
    };

    let tracer_provider = match &config.otel_exporter_otlp_endpoint {
        Some(endpoint) => Some(otlp_provider(service, endpoint)?),
        None => None,
    };
    let otel_layer = tracer_provider.as_ref().map(|provider| {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        tracing_opentelemetry::layer().with_tracer(provider.tracer(service.to_owned()))
    });
    OTEL_ENABLED.store(tracer_provider.is_some(), Ordering::Relaxed);

    let (ship_layer, shipper, shipper_closed) = match &config.logging_url {
        Some(url) => {
            let (tx, rx) = mpsc::channel(config.log_ship_buffer);
            let closed = tokio_util::sync::CancellationToken::new();
            let shipper = tokio::spawn(ship(
                rx,
                closed.clone(),
                ShipTarget {
                    url: format!("{}/log", url.as_str().trim_end_matches('/')),
                    key: config.outbound_internal_key(),
                },
            ));
            let layer = ShipLayer {
                service: service.to_owned(),
                tx,
            };
            (Some(layer), Some(shipper), Some(closed))
        }
        None => (None, None, None),
    };

    // The MCP library logs every tool call's arguments and result at debug level: what an AI
    // sends (file contents, tokens of its own) stays out of the logs unless LOG_LEVEL names
    // `rmcp`.
    let mcp_payloads = config.log_level.contains("rmcp");
    let mcp_filter = tracing_subscriber::filter::filter_fn(move |metadata| {
        mcp_payloads
            || !metadata.target().starts_with("rmcp")
            || *metadata.level() <= tracing::Level::INFO
    });

    tracing_subscriber::registry()
        .with(filter)
        .with(mcp_filter)
        .with(fmt_layer)
        .with(otel_layer)
        .with(ship_layer)
        .try_init()
        .map_err(|e| anyhow::anyhow!("a tracing subscriber is already installed: {e}"))?;
    Ok(TelemetryGuard {
        tracer_provider,
        shipper,
        shipper_closed,
    })
}

/// Writes each formatted event (one `write` per event) with the service's secrets masked.
struct Redacting<W>(W);

impl<W: std::io::Write> std::io::Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) => self.0.write_all(crate::redact::redact(text).as_bytes())?,
            Err(_) => self.0.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

fn otlp_provider(service: &str, endpoint: &url::Url) -> anyhow::Result<SdkTracerProvider> {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!(
            "{}/v1/traces",
            endpoint.as_str().trim_end_matches('/')
        ))
        .with_timeout(Duration::from_secs(10))
        .build()?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service.to_owned())
                .build(),
        )
        .build())
}

/// Makes `span` part of the trace in `ctx` when traces are exported, so the exported trace id
/// is the one on tasks and log lines. Returns the context the request should carry.
pub fn link_span(span: &tracing::Span, ctx: TraceContext) -> TraceContext {
    if !OTEL_ENABLED.load(Ordering::Relaxed) {
        return ctx;
    }
    if let Some(parent) = ctx.parent_span_id {
        let remote = SpanContext::new(
            opentelemetry::trace::TraceId::from_bytes(ctx.trace_id),
            opentelemetry::trace::SpanId::from_bytes(parent),
            if ctx.sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            },
            true,
            TraceState::default(),
        );
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
    let otel = span.context();
    let assigned = otel.span().span_context().clone();
    if !assigned.is_valid() {
        return ctx;
    }
    TraceContext {
        trace_id: assigned.trace_id().to_bytes(),
        span_id: assigned.span_id().to_bytes(),
        ..ctx
    }
}

/// One log frame as the logging service's `POST /log` accepts it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogFrame {
    #[serde(with = "time::serde::rfc3339")]
    pub ts: time::OffsetDateTime,
    pub level: &'static str,
    pub service: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    pub fields: Map<String, Value>,
}

struct ShipLayer {
    service: String,
    tx: mpsc::Sender<LogFrame>,
}

/// Identifiers found on an event or its spans that the logging service indexes.
#[derive(Default, Clone)]
struct Ids {
    trace_id: Option<String>,
    correlation_id: Option<String>,
    task_id: Option<String>,
}

#[derive(Default)]
struct FieldVisitor {
    message: Option<String>,
    fields: Map<String, Value>,
    ids: Ids,
}

impl FieldVisitor {
    fn put(&mut self, field: &Field, value: Value) {
        let name = field.name();
        let as_text = || match &value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match name {
            "message" => self.message = Some(as_text()),
            "trace_id" => self.ids.trace_id = Some(as_text()),
            "correlation_id" => self.ids.correlation_id = Some(as_text()),
            "task_id" => self.ids.task_id = Some(as_text()),
            _ if name.starts_with("log.") => {}
            _ => {
                self.fields.insert(name.to_owned(), value);
            }
        }
    }
}

impl Visit for FieldVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }
}

impl<S> Layer<S> for ShipLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut visitor = FieldVisitor::default();
        attrs.record(&mut visitor);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(visitor.ids);
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        let mut visitor = FieldVisitor::default();
        values.record(&mut visitor);
        if let Some(span) = ctx.span(id) {
            let mut extensions = span.extensions_mut();
            if let Some(ids) = extensions.get_mut::<Ids>() {
                let new = visitor.ids;
                ids.trace_id = new.trace_id.or(ids.trace_id.take());
                ids.correlation_id = new.correlation_id.or(ids.correlation_id.take());
                ids.task_id = new.task_id.or(ids.task_id.take());
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let target = event.metadata().target();
        if UNSHIPPED_TARGETS
            .iter()
            .any(|prefix| target.starts_with(prefix))
        {
            return;
        }
        let mut visitor = FieldVisitor::default();
        event.record(&mut visitor);
        let mut ids = visitor.ids.clone();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                if let Some(span_ids) = span.extensions().get::<Ids>() {
                    ids.trace_id = ids.trace_id.or_else(|| span_ids.trace_id.clone());
                    ids.correlation_id = ids
                        .correlation_id
                        .or_else(|| span_ids.correlation_id.clone());
                    ids.task_id = ids.task_id.or_else(|| span_ids.task_id.clone());
                }
            }
        }
        if ids.trace_id.is_none() {
            ids.trace_id = TraceContext::current().map(|c| c.trace_id_hex());
        }
        let mut fields = visitor.fields;
        fields.values_mut().for_each(crate::redact::redact_json);
        fields.insert("target".into(), Value::String(target.to_owned()));
        let frame = LogFrame {
            ts: time::OffsetDateTime::now_utc(),
            level: match *event.metadata().level() {
                tracing::Level::ERROR => "error",
                tracing::Level::WARN => "warn",
                tracing::Level::INFO => "info",
                tracing::Level::DEBUG => "debug",
                tracing::Level::TRACE => "trace",
            },
            service: self.service.clone(),
            message: truncate_chars(
                crate::redact::redact(&visitor.message.unwrap_or_default()).into_owned(),
                MAX_MESSAGE_CHARS,
            ),
            trace_id: ids
                .trace_id
                .filter(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()))
                .map(|t| t.to_ascii_lowercase()),
            correlation_id: None,
            task_id: None,
            fields,
        };
        // What the logging service would refuse stays in `fields` instead of costing the
        // whole batch.
        let mut frame = frame;
        match ids
            .correlation_id
            .map(|c| crate::redact::redact(&c).into_owned())
        {
            Some(c) if (1..=200).contains(&c.chars().count()) => frame.correlation_id = Some(c),
            Some(c) => {
                frame
                    .fields
                    .insert("correlation_id".into(), Value::String(c));
            }
            None => {}
        }
        match ids.task_id {
            Some(t) if uuid::Uuid::parse_str(&t).is_ok() => frame.task_id = Some(t),
            Some(t) => {
                frame.fields.insert("task_id".into(), Value::String(t));
            }
            None => {}
        }
        if self.tx.try_send(frame).is_err() {
            COUNTERS.dropped.inc();
        }
    }
}

struct ShipTarget {
    url: String,
    key: SecretString,
}

/// Sends buffered frames in batches until `closed`, then flushes what is left.
async fn ship(
    mut rx: mpsc::Receiver<LogFrame>,
    closed: tokio_util::sync::CancellationToken,
    target: ShipTarget,
) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "log shipping disabled: cannot build an HTTP client");
            return;
        }
    };
    let mut batch = Vec::with_capacity(SHIP_BATCH);
    loop {
        let first = tokio::select! {
            frame = rx.recv() => frame,
            () = closed.cancelled() => None,
        };
        let Some(first) = first else { break };
        batch.push(first);
        let deadline = tokio::time::sleep(SHIP_INTERVAL);
        tokio::pin!(deadline);
        while batch.len() < SHIP_BATCH {
            tokio::select! {
                frame = rx.recv() => match frame {
                    Some(frame) => batch.push(frame),
                    None => break,
                },
                () = &mut deadline => break,
                () = closed.cancelled() => break,
            }
        }
        send_batch(&client, &target, &mut batch).await;
    }
    rx.close();
    while let Ok(frame) = rx.try_recv() {
        batch.push(frame);
        if batch.len() == SHIP_BATCH {
            send_batch(&client, &target, &mut batch).await;
        }
    }
    send_batch(&client, &target, &mut batch).await;
}

async fn send_batch(client: &reqwest::Client, target: &ShipTarget, batch: &mut Vec<LogFrame>) {
    if batch.is_empty() {
        return;
    }
    let count = batch.len() as u64;
    let mut delay = Duration::from_millis(200);
    for attempt in 1..=SHIP_ATTEMPTS {
        let sent = client
            .post(&target.url)
            .header(crate::auth::INTERNAL_KEY_HEADER, target.key.expose_secret())
            .json(&*batch)
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {
                COUNTERS.shipped.inc_by(count);
                batch.clear();
                return;
            }
            Ok(response) if response.status().is_client_error() => {
                tracing::warn!(status = %response.status(), count, "logging service refused a batch; dropped");
                break;
            }
            Ok(response) => {
                tracing::debug!(status = %response.status(), attempt, "log batch not accepted");
            }
            Err(error) => tracing::debug!(%error, attempt, "log batch not delivered"),
        }
        if attempt < SHIP_ATTEMPTS {
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
    COUNTERS.dropped.inc_by(count);
    batch.clear();
}
