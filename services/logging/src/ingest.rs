//! `POST /log`: frames are validated, then queued for the writer.
//!
//! The queue is bounded in records, not requests: a batch reserves one permit per record
//! before it is acknowledged, so it is either queued whole or refused whole, and memory
//! held by accepted-but-unwritten records never exceeds `LOG_INGEST_QUEUE` records.

use std::sync::Arc;

use autonoma_common::Problem;
use autonoma_common::auth::require_internal_key;
use autonoma_common::extract::Json;
use autonoma_common::problem::FieldError;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::from_fn;
use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError, mpsc};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::metrics::{LogMetrics, Reason};
use crate::model::{Level, Record};

/// Largest `POST /log` body. A full batch of typical frames is far below it; a batch of
/// maximal messages is not, and is refused with 413 rather than buffered.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Field errors listed in one 422; the rest are counted.
const MAX_REPORTED_ERRORS: usize = 100;

const MAX_MESSAGE_CHARS: usize = 65_536;
const MAX_CORRELATION_ID_CHARS: usize = 200;

/// Records the writer takes from the queue, with the permits that reserved their place.
pub struct Batch {
    pub records: Vec<Record>,
    pub permit: OwnedSemaphorePermit,
}

pub type BatchReceiver = mpsc::UnboundedReceiver<Batch>;

/// The sending side of the ingest queue.
pub struct Ingest {
    tx: mpsc::UnboundedSender<Batch>,
    permits: Arc<Semaphore>,
    max_batch: usize,
    shutdown: CancellationToken,
    metrics: LogMetrics,
}

impl Ingest {
    /// A queue holding at most `capacity` records. Batches larger than the queue could never
    /// be accepted, so `max_batch` is capped at `capacity`.
    pub fn new(
        capacity: usize,
        max_batch: usize,
        shutdown: CancellationToken,
        metrics: LogMetrics,
    ) -> (Arc<Ingest>, BatchReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        let ingest = Ingest {
            tx,
            permits: Arc::new(Semaphore::new(capacity)),
            max_batch: max_batch.min(capacity),
            shutdown,
            metrics,
        };
        (Arc::new(ingest), rx)
    }

    fn enqueue(&self, records: Vec<Record>) -> Result<(), Problem> {
        let count = records.len();
        let permit = u32::try_from(count)
            .map_err(|_| TryAcquireError::NoPermits)
            .and_then(|n| Arc::clone(&self.permits).try_acquire_many_owned(n));
        let permit = match permit {
            Ok(permit) => permit,
            Err(TryAcquireError::NoPermits) => {
                self.metrics.rejected(Reason::QueueFull, count);
                return Err(Problem::unavailable(
                    "The ingest queue is full; retry the whole batch shortly.",
                )
                .kind("ingest-queue-full")
                .header(header::RETRY_AFTER, HeaderValue::from_static("1")));
            }
            Err(TryAcquireError::Closed) => return Err(self.shutting_down(count)),
        };
        if self.tx.send(Batch { records, permit }).is_err() {
            return Err(self.shutting_down(count));
        }
        self.metrics.accepted(count);
        Ok(())
    }

    fn shutting_down(&self, count: usize) -> Problem {
        self.metrics.rejected(Reason::ShuttingDown, count);
        Problem::unavailable("The logging service is shutting down; send the batch again.")
            .kind("draining")
            .header(header::RETRY_AFTER, HeaderValue::from_static("1"))
    }
}

pub fn router(ingest: Arc<Ingest>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(post_log))
        .route_layer(from_fn(require_internal_key))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(ingest)
}

/// One log frame as services send it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FrameIn {
    /// When the event happened (RFC 3339); the time of receipt when absent.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ts: Option<String>,
    #[schema(value_type = Level)]
    pub level: String,
    /// The emitting service.
    #[schema(pattern = "^[a-z][a-z0-9-]{0,63}$")]
    pub service: String,
    #[schema(max_length = 65536)]
    pub message: String,
    /// W3C trace id: 32 lower-case hex digits.
    #[schema(pattern = "^[0-9a-f]{32}$")]
    pub trace_id: Option<String>,
    #[schema(min_length = 1, max_length = 200)]
    pub correlation_id: Option<String>,
    #[schema(value_type = Option<Uuid>)]
    pub task_id: Option<String>,
    /// Free structured context: a JSON object.
    #[schema(value_type = Option<Object>)]
    pub fields: Option<Box<RawValue>>,
}

/// The body of `POST /log`: one frame, or an array of frames.
#[derive(Debug)]
pub enum FramesIn {
    One(FrameIn),
    Many(Vec<FrameIn>),
}

impl<'de> Deserialize<'de> for FramesIn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FramesVisitor;

        impl<'de> Visitor<'de> for FramesVisitor {
            type Value = FramesIn;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a log frame object or an array of log frames")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FramesIn, A::Error> {
                let mut frames = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
                while let Some(frame) = seq.next_element()? {
                    frames.push(frame);
                }
                Ok(FramesIn::Many(frames))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FramesIn, A::Error> {
                FrameIn::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(FramesIn::One)
            }
        }

        deserializer.deserialize_any(FramesVisitor)
    }
}

impl utoipa::PartialSchema for FramesIn {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, OneOfBuilder};
        let frame = || utoipa::openapi::Ref::from_schema_name("FrameIn");
        OneOfBuilder::new()
            .item(frame())
            .item(ArrayBuilder::new().items(frame()))
            .description(Some("One frame, or an array of frames"))
            .into()
    }
}

impl ToSchema for FramesIn {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        schemas.push((
            FrameIn::name().into_owned(),
            <FrameIn as utoipa::PartialSchema>::schema(),
        ));
        <FrameIn as ToSchema>::schemas(schemas);
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AcceptedOut {
    /// Records queued for writing.
    pub accepted: usize,
}

/// Accepts one frame or a batch for storage. The answer is 202 once the records are queued;
/// they become readable within moments. A batch is accepted or refused as a whole.
#[utoipa::path(post, path = "/log", tag = "logs",
    security(("internalKey" = [])),
    request_body(content = FramesIn, description = "One frame, or an array of at most LOG_MAX_BATCH frames"),
    responses(
        (status = 202, description = "Queued for writing", body = AcceptedOut),
        (status = 400, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "More than LOG_MAX_BATCH frames, or a body over 8 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid frames; each error's field is a JSON pointer such as /3/level", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Queue full or shutting down; retry after Retry-After seconds", body = Problem, content_type = "application/problem+json"),
    ))]
async fn post_log(
    State(ingest): State<Arc<Ingest>>,
    Json(body): Json<FramesIn>,
) -> Result<(StatusCode, Json<AcceptedOut>), Problem> {
    let (frames, single) = match body {
        FramesIn::One(frame) => (vec![frame], true),
        FramesIn::Many(frames) => (frames, false),
    };
    let count = frames.len();
    if ingest.shutdown.is_cancelled() {
        return Err(ingest.shutting_down(count));
    }
    if count > ingest.max_batch {
        ingest.metrics.rejected(Reason::Invalid, count);
        return Err(Problem::new(StatusCode::PAYLOAD_TOO_LARGE)
            .kind("batch-too-large")
            .detail(format!(
                "A batch may hold at most {} frames (LOG_MAX_BATCH); this one has {count}.",
                ingest.max_batch
            ))
            .field("/", format!("at most {} frames", ingest.max_batch))
            .extension("maxBatch", ingest.max_batch));
    }
    let records = validate(frames, single, OffsetDateTime::now_utc()).inspect_err(|_| {
        ingest.metrics.rejected(Reason::Invalid, count);
    })?;
    if !records.is_empty() {
        ingest.enqueue(records)?;
    }
    Ok((StatusCode::ACCEPTED, Json(AcceptedOut { accepted: count })))
}

/// Checks every frame against what the `logs` table accepts, so that a stored batch never
/// fails on one bad record. Reports every violation with a JSON pointer into the body.
pub fn validate(
    frames: Vec<FrameIn>,
    single: bool,
    now: OffsetDateTime,
) -> Result<Vec<Record>, Problem> {
    let mut errors = Errors::default();
    let mut records = Vec::with_capacity(frames.len());
    for (index, frame) in frames.into_iter().enumerate() {
        let prefix = if single {
            String::new()
        } else {
            format!("/{index}")
        };
        if let Some(record) = validate_frame(frame, &prefix, now, &mut errors) {
            records.push(record);
        }
    }
    if errors.count == 0 {
        return Ok(records);
    }
    let detail = if errors.count > errors.list.len() {
        format!(
            "{} problems in the frames; the first {} are listed.",
            errors.count,
            errors.list.len()
        )
    } else {
        "Some frames are not valid; nothing was stored.".to_owned()
    };
    Err(Problem::validation(detail, errors.list))
}

#[derive(Default)]
struct Errors {
    list: Vec<FieldError>,
    count: usize,
}

impl Errors {
    fn add(&mut self, prefix: &str, field: &str, message: impl Into<String>) {
        self.count += 1;
        if self.list.len() < MAX_REPORTED_ERRORS {
            self.list.push(FieldError {
                field: format!("{prefix}/{field}"),
                message: message.into(),
            });
        }
    }
}

fn validate_frame(
    frame: FrameIn,
    prefix: &str,
    now: OffsetDateTime,
    errors: &mut Errors,
) -> Option<Record> {
    let before = errors.count;

    let ts = match frame.ts.as_deref() {
        None => Some(now),
        Some(text) => OffsetDateTime::parse(text, &Rfc3339)
            .inspect_err(|_| errors.add(prefix, "ts", "expected an RFC 3339 timestamp"))
            .ok(),
    };
    let level = Level::parse(&frame.level);
    if level.is_none() {
        errors.add(
            prefix,
            "level",
            "expected one of trace, debug, info, warn, error",
        );
    }
    if !is_service_name(&frame.service) {
        errors.add(
            prefix,
            "service",
            "expected 1 to 64 lower-case letters, digits or dashes, starting with a letter",
        );
    }
    if frame.message.chars().count() > MAX_MESSAGE_CHARS {
        errors.add(
            prefix,
            "message",
            format!("at most {MAX_MESSAGE_CHARS} characters"),
        );
    } else if frame.message.contains('\0') {
        errors.add(prefix, "message", "must not contain U+0000");
    }
    let trace_id = frame.trace_id.map(|id| id.to_ascii_lowercase());
    if let Some(id) = &trace_id
        && !(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        errors.add(prefix, "traceId", "expected 32 hex digits");
    }
    if let Some(id) = &frame.correlation_id {
        let chars = id.chars().count();
        if chars == 0 || chars > MAX_CORRELATION_ID_CHARS {
            errors.add(
                prefix,
                "correlationId",
                format!("expected 1 to {MAX_CORRELATION_ID_CHARS} characters"),
            );
        } else if id.contains('\0') {
            errors.add(prefix, "correlationId", "must not contain U+0000");
        }
    }
    let task_id = match frame.task_id.as_deref() {
        None => None,
        Some(text) => Uuid::parse_str(text)
            .inspect_err(|_| errors.add(prefix, "taskId", "expected a UUID"))
            .ok(),
    };
    if let Some(fields) = &frame.fields {
        if !fields.get().starts_with('{') {
            errors.add(prefix, "fields", "expected a JSON object");
        } else if let Err(refusal) = crate::jsonb::check(fields.get()) {
            errors.add(
                prefix,
                &format!("fields{}", refusal.pointer),
                refusal.message,
            );
        }
    }

    if errors.count > before {
        return None;
    }
    Some(Record {
        ts: ts?,
        received_at: now,
        level: level?,
        service: frame.service,
        message: frame.message,
        trace_id,
        correlation_id: frame.correlation_id,
        task_id,
        fields: frame.fields,
    })
}

fn is_service_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    matches!(bytes.first(), Some(b'a'..=b'z'))
        && bytes.len() <= 64
        && bytes
            .iter()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::Value;

    fn frame(json: Value) -> FrameIn {
        serde_json::from_value(json).expect("frame shape")
    }

    #[test]
    fn reports_every_violation_with_a_pointer() {
        let frames = vec![
            frame(serde_json::json!({"level": "info", "service": "api", "message": "ok"})),
            frame(serde_json::json!({
                "ts": "yesterday", "level": "loud", "service": "Api", "message": "x",
                "traceId": "abc", "correlationId": "", "taskId": "nope",
                "fields": {"a/b": ["fine", "nul\u{0}"]}
            })),
        ];
        let problem = validate(frames, false, OffsetDateTime::now_utc()).expect_err("invalid");
        let fields: Vec<&str> = problem.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "/1/ts",
                "/1/level",
                "/1/service",
                "/1/traceId",
                "/1/correlationId",
                "/1/taskId",
                "/1/fields/a~1b/1",
            ]
        );
    }

    #[test]
    fn a_single_frame_is_pointed_at_from_the_root() {
        let frames = vec![frame(
            serde_json::json!({"level": "INFO", "service": "api", "message": "ok"}),
        )];
        let problem = validate(frames, true, OffsetDateTime::now_utc()).expect_err("invalid");
        assert_eq!(problem.errors[0].field, "/level");
    }

    #[test]
    fn message_length_counts_characters() {
        let at_limit = "é".repeat(MAX_MESSAGE_CHARS);
        let frames = vec![frame(
            serde_json::json!({"level": "info", "service": "api", "message": at_limit}),
        )];
        assert!(validate(frames, true, OffsetDateTime::now_utc()).is_ok());
        let over = "a".repeat(MAX_MESSAGE_CHARS + 1);
        let frames = vec![frame(
            serde_json::json!({"level": "info", "service": "api", "message": over}),
        )];
        assert!(validate(frames, true, OffsetDateTime::now_utc()).is_err());
    }

    #[test]
    fn service_names_follow_the_table_pattern() {
        assert!(is_service_name("echo-agent"));
        assert!(is_service_name(&format!("a{}", "b".repeat(63))));
        assert!(!is_service_name(&format!("a{}", "b".repeat(64))));
        assert!(!is_service_name(""));
        assert!(!is_service_name("9lives"));
        assert!(!is_service_name("under_score"));
    }
}
