//! `/task` and `/tasks`: create, read, list, patch, cancel, retry.

use autonoma_common::Problem;
use autonoma_common::auth::require_operator;
use autonoma_common::extract::Json;
use autonoma_common::problem::FieldError;
use autonoma_common::trace::TraceContext;
use autonoma_protocol::{Page, TaskEventOut, TaskIn, TaskOut, TaskPatch, TaskStatus};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::from_fn;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};
use sqlx::{FromRow, PgConnection, Postgres, QueryBuilder};
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::actor::Actor;
use crate::schemas;

pub const TASK_COLUMNS: &str = "id, kind, status, payload, result, error, version, correlation_id, \
     trace_id, idempotency_key, agent_name, priority, attempts, max_attempts, timeout_secs, run_at, \
     created_at, updated_at, started_at, finished_at";

pub const EVENT_COLUMNS: &str = "id, task_id, event_type, actor, from_status, to_status, version, changes, trace_id, created_at";

const MAX_PAGE: i64 = 500;
const DEFAULT_PAGE: i64 = 100;

pub fn router(state: AppState) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(post_task))
        .routes(routes!(get_task, patch_task))
        .routes(routes!(get_task_events))
        .routes(routes!(list_tasks))
        .routes(routes!(cancel_task))
        .routes(routes!(retry_task))
        .route_layer(from_fn(require_operator))
        .with_state(state)
}

#[derive(Debug, FromRow)]
pub struct TaskRow {
    pub id: Uuid,
    pub kind: String,
    pub status: String,
    pub payload: Value,
    pub result: Option<Value>,
    pub error: Option<Value>,
    pub version: i32,
    pub correlation_id: Option<String>,
    pub trace_id: String,
    pub idempotency_key: Option<String>,
    pub agent_name: Option<String>,
    pub priority: i16,
    pub attempts: i32,
    pub max_attempts: i32,
    pub timeout_secs: i32,
    pub run_at: OffsetDateTime,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub started_at: Option<OffsetDateTime>,
    pub finished_at: Option<OffsetDateTime>,
}

impl TaskRow {
    pub fn status(&self) -> TaskStatus {
        TaskStatus::parse(&self.status).unwrap_or(TaskStatus::Failed)
    }

    pub fn to_out(&self) -> TaskOut {
        TaskOut {
            status: self.status(),
            id: self.id,
            kind: self.kind.clone(),
            payload: self.payload.clone(),
            result: self.result.clone(),
            error: self.error.clone(),
            version: self.version,
            correlation_id: self.correlation_id.clone(),
            trace_id: self.trace_id.clone(),
            idempotency_key: self.idempotency_key.clone(),
            agent: self.agent_name.clone(),
            priority: self.priority,
            attempts: self.attempts,
            max_attempts: self.max_attempts,
            timeout_secs: self.timeout_secs,
            run_at: self.run_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
        }
    }

    pub fn into_out(self) -> TaskOut {
        self.to_out()
    }
}

#[derive(Debug, FromRow)]
pub struct EventRow {
    pub id: i64,
    pub task_id: Uuid,
    pub event_type: String,
    pub actor: String,
    pub from_status: Option<String>,
    pub to_status: Option<String>,
    pub version: i32,
    pub changes: Value,
    pub trace_id: Option<String>,
    pub created_at: OffsetDateTime,
}

impl EventRow {
    pub fn into_out(self) -> TaskEventOut {
        TaskEventOut {
            id: self.id,
            task_id: self.task_id,
            event_type: self.event_type,
            actor: self.actor,
            from_status: self.from_status.as_deref().and_then(TaskStatus::parse),
            to_status: self.to_status.as_deref().and_then(TaskStatus::parse),
            version: self.version,
            changes: self.changes,
            trace_id: self.trace_id,
            created_at: self.created_at,
        }
    }
}

/// One row of the audit trail, written in the transaction that made the change.
pub struct NewEvent<'a> {
    pub task_id: Uuid,
    pub event_type: &'a str,
    pub actor: &'a str,
    pub from: Option<TaskStatus>,
    pub to: Option<TaskStatus>,
    pub version: i32,
    pub changes: Value,
    pub trace_id: &'a str,
}

pub async fn append_event(conn: &mut PgConnection, event: NewEvent<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO task_events (task_id, event_type, actor, from_status, to_status, version, changes, trace_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(event.task_id)
    .bind(event.event_type)
    .bind(event.actor)
    .bind(event.from.map(TaskStatus::as_str))
    .bind(event.to.map(TaskStatus::as_str))
    .bind(event.version)
    .bind(event.changes)
    .bind(event.trace_id)
    .execute(conn)
    .await
    .map(|_| ())
}

pub async fn fetch_task(conn: &mut PgConnection, id: Uuid, lock: bool) -> Result<TaskRow, Problem> {
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    sqlx::query_as::<_, TaskRow>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| Problem::not_found(format!("No task {id}.")).kind("task-not-found"))
}

fn task_response(status: StatusCode, task: TaskOut) -> Response {
    let location = format!("/task/{}", task.id);
    let etag = format!("\"{}\"", task.version);
    let mut response = (status, Json(task)).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, value);
    }
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    response
}

fn parse_id(id: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(id).map_err(|_| {
        Problem::bad_request(format!("{id:?} is not a task id."))
            .kind("invalid-task-id")
            .field("id", "expected a UUID")
    })
}

fn check_input(input: &TaskIn) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut bad = |field: &str, message: &str| {
        errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        })
    };
    let kind_ok = !input.kind.is_empty()
        && input.kind.len() <= 128
        && input.kind.starts_with(|c: char| c.is_ascii_lowercase())
        && input
            .kind
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c));
    if !kind_ok {
        bad("/kind", "1-128 characters: a-z first, then a-z 0-9 _ . -");
    }
    if input
        .correlation_id
        .as_ref()
        .is_some_and(|c| c.is_empty() || c.len() > 200)
    {
        bad("/correlationId", "1-200 characters");
    }
    if input
        .idempotency_key
        .as_ref()
        .is_some_and(|k| k.is_empty() || k.len() > 200)
    {
        bad("/idempotencyKey", "1-200 characters");
    }
    if input.priority.is_some_and(|p| !(-100..=100).contains(&p)) {
        bad("/priority", "between -100 and 100");
    }
    if input.max_attempts.is_some_and(|m| !(1..=100).contains(&m)) {
        bad("/maxAttempts", "between 1 and 100");
    }
    if input
        .timeout_secs
        .is_some_and(|t| !(1..=86_400).contains(&t))
    {
        bad("/timeoutSecs", "between 1 and 86400");
    }
    errors
}

/// Creates a task (or returns the one already created with the same idempotency key).
/// Returns the task and whether it was created now.
pub(crate) async fn create(
    state: &AppState,
    input: TaskIn,
    actor: &Actor,
    trace: &TraceContext,
) -> Result<(TaskOut, bool), Problem> {
    let mut errors = check_input(&input);
    let schema: Option<Value> = if errors.is_empty() {
        sqlx::query_scalar("SELECT payload_schema FROM agent_kinds WHERE kind = $1")
            .bind(&input.kind)
            .fetch_optional(&state.pool)
            .await?
    } else {
        None
    };
    if errors.is_empty() {
        match &schema {
            None => errors.push(FieldError {
                field: "/kind".into(),
                message: format!("no agent serves kind {:?}", input.kind),
            }),
            Some(schema) => match state.schemas.validator(&input.kind, schema) {
                Ok(validator) => {
                    errors.extend(schemas::violations(&validator, &input.payload, "/payload"))
                }
                Err(error) => {
                    return Err(Problem::internal(format!(
                        "stored schema of {}: {error}",
                        input.kind
                    )));
                }
            },
        }
    }
    if !errors.is_empty() {
        return Err(Problem::validation("The task is not valid.", errors));
    }

    let id = Uuid::now_v7();
    let trace_id = trace.trace_id_hex();
    // The task and its `created` event in one statement, hence one transaction.
    let sql = format!(
        "WITH inserted AS (
             INSERT INTO tasks (id, kind, payload, correlation_id, trace_id, idempotency_key, priority,
                                max_attempts, timeout_secs, run_at)
             VALUES ($1, $2, $3, $4, $5, $6, coalesce($7, 0), coalesce($8, 3), coalesce($9, 300), coalesce($10, now()))
             ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
             RETURNING {TASK_COLUMNS}
         ), created AS (
             INSERT INTO task_events (task_id, event_type, actor, to_status, version, changes, trace_id)
             SELECT id, 'created', $11, 'queued', version,
                    jsonb_build_object('kind', kind, 'priority', priority, 'maxAttempts', max_attempts), trace_id
             FROM inserted
         )
         SELECT {TASK_COLUMNS} FROM inserted"
    );
    let inserted = sqlx::query_as::<_, TaskRow>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(&input.kind)
        .bind(&input.payload)
        .bind(&input.correlation_id)
        .bind(&trace_id)
        .bind(&input.idempotency_key)
        .bind(input.priority)
        .bind(input.max_attempts)
        .bind(input.timeout_secs)
        .bind(input.run_at)
        .bind(actor.label())
        .fetch_optional(&state.pool)
        .await?;
    let Some(task) = inserted else {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE idempotency_key = $1");
        let existing = sqlx::query_as::<_, TaskRow>(sqlx::AssertSqlSafe(sql))
            .bind(&input.idempotency_key)
            .fetch_one(&state.pool)
            .await?;
        return Ok((existing.into_out(), false));
    };
    tracing::info!(task_id = %task.id, kind = %task.kind, correlation_id = task.correlation_id.as_deref(), "task created");
    Ok((task.into_out(), true))
}

/// Creates a task. The payload must satisfy the JSON Schema its kind's agent registered.
#[utoipa::path(post, path = "/task", tag = "tasks",
    security(("basicAuth" = []), ("internalKey" = [])),
    request_body = TaskIn,
    responses(
        (status = 201, description = "Created", body = TaskOut),
        (status = 200, description = "A task with this idempotency key exists already", body = TaskOut),
        (status = 422, description = "Invalid task, unknown kind, or payload against the kind's schema", body = Problem, content_type = "application/problem+json"),
    ))]
async fn post_task(
    State(state): State<AppState>,
    actor: Actor,
    trace: TraceContext,
    Json(input): Json<TaskIn>,
) -> Result<Response, Problem> {
    let (task, created) = create(&state, input, &actor, &trace).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(task_response(status, task))
}

#[utoipa::path(get, path = "/task/{id}", tag = "tasks",
    security(("basicAuth" = []), ("internalKey" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = TaskOut), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = parse_id(&id)?;
    let mut conn = state.pool.acquire().await?;
    let task = fetch_task(&mut conn, id, false).await?;
    Ok(task_response(StatusCode::OK, task.into_out()))
}

/// The task's audit trail, oldest first.
#[utoipa::path(get, path = "/task/{id}/events", tag = "tasks",
    security(("basicAuth" = []), ("internalKey" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Vec<TaskEventOut>), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_task_events(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<TaskEventOut>>, Problem> {
    let id = parse_id(&id)?;
    let mut conn = state.pool.acquire().await?;
    fetch_task(&mut conn, id, false).await?;
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM task_events WHERE task_id = $1 ORDER BY id LIMIT 10000"
    );
    let events = sqlx::query_as::<_, EventRow>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
    Ok(Json(events.into_iter().map(EventRow::into_out).collect()))
}

/// Filters of `GET /tasks`. `status` may repeat or be comma-separated.
#[derive(Debug, Default)]
struct TaskFilter {
    statuses: Vec<TaskStatus>,
    kind: Option<String>,
    agent: Option<String>,
    correlation_id: Option<String>,
    trace_id: Option<String>,
    since: Option<OffsetDateTime>,
    until: Option<OffsetDateTime>,
    limit: i64,
    cursor: Option<Uuid>,
}

/// Names the statuses, not the value that is none of them (it may be a secret sent by mistake).
fn unknown_status() -> String {
    let all: Vec<&str> = TaskStatus::ALL.iter().map(|s| s.as_str()).collect();
    format!("expected one of {}", all.join(", "))
}

fn parse_filter(query: &str) -> Result<TaskFilter, Problem> {
    let mut filter = TaskFilter {
        limit: DEFAULT_PAGE,
        ..TaskFilter::default()
    };
    let invalid = |field: &str, message: String| {
        Problem::bad_request(format!("Query parameter {field} is not valid: {message}."))
            .kind("invalid-query")
            .field(field, message)
    };
    let timestamp = |field: &str, value: &str| {
        OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
            .map_err(|_| invalid(field, "expected an RFC 3339 timestamp".into()))
    };
    // PostgreSQL text cannot hold U+0000, so such a filter could match nothing anyway.
    let text = |field: &str, value: std::borrow::Cow<'_, str>| {
        if value.contains('\0') {
            return Err(invalid(field, "must not contain U+0000".into()));
        }
        Ok(value.into_owned())
    };
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "status" => {
                for part in value.split(',').filter(|p| !p.is_empty()) {
                    let status = TaskStatus::parse(part)
                        .ok_or_else(|| invalid("status", unknown_status()))?;
                    filter.statuses.push(status);
                }
            }
            "kind" => filter.kind = Some(text("kind", value)?),
            "agent" => filter.agent = Some(text("agent", value)?),
            "correlationId" => filter.correlation_id = Some(text("correlationId", value)?),
            "traceId" => {
                // Trace ids are stored as W3C writes them: an uppercase or short one would
                // match nothing, so it is refused rather than answered with an empty page.
                if value.len() != 32
                    || !value
                        .bytes()
                        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                {
                    return Err(invalid(
                        "traceId",
                        "expected 32 lowercase hex digits".into(),
                    ));
                }
                filter.trace_id = Some(value.into_owned());
            }
            "since" => filter.since = Some(timestamp("since", &value)?),
            "until" => filter.until = Some(timestamp("until", &value)?),
            "limit" => {
                filter.limit = value
                    .parse::<i64>()
                    .ok()
                    .filter(|l| (1..=MAX_PAGE).contains(l))
                    .ok_or_else(|| invalid("limit", format!("expected 1 to {MAX_PAGE}")))?;
            }
            "cursor" => {
                filter.cursor =
                    Some(decode_cursor(&value).ok_or_else(|| {
                        invalid("cursor", "not a cursor from a previous page".into())
                    })?)
            }
            _ => {}
        }
    }
    if let (Some(since), Some(until)) = (filter.since, filter.until)
        && until <= since
    {
        return Err(invalid("until", "must be later than since".into()));
    }
    Ok(filter)
}

fn encode_cursor(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("task:{id}"))
}

fn decode_cursor(cursor: &str) -> Option<Uuid> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    Uuid::parse_str(text.strip_prefix("task:")?).ok()
}

/// Tasks, newest first, filtered, a page at a time (pass `nextCursor` back as `cursor`).
#[utoipa::path(get, path = "/tasks", tag = "tasks",
    security(("basicAuth" = []), ("internalKey" = [])),
    params(
        ("status" = Option<String>, Query, description = "queued, running, succeeded, failed, cancelled; repeat or comma-separate"),
        ("kind" = Option<String>, Query),
        ("agent" = Option<String>, Query, description = "the agent that took the task (tasks never dispatched have none)"),
        ("correlationId" = Option<String>, Query),
        ("traceId" = Option<String>, Query, description = "32 lowercase hex digits"),
        ("since" = Option<String>, Query, description = "created at or after (RFC 3339)"),
        ("until" = Option<String>, Query, description = "created before (RFC 3339)"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 500, description = "1..=500, default 100"),
        ("cursor" = Option<String>, Query),
    ),
    responses((status = 200, body = Page<TaskOut>), (status = 400, body = Problem, content_type = "application/problem+json")))]
async fn list_tasks(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Page<TaskOut>>, Problem> {
    let filter = parse_filter(query.as_deref().unwrap_or_default())?;
    let mut sql =
        QueryBuilder::<Postgres>::new(format!("SELECT {TASK_COLUMNS} FROM tasks WHERE true"));
    if !filter.statuses.is_empty() {
        let statuses: Vec<&str> = filter.statuses.iter().map(|s| s.as_str()).collect();
        sql.push(" AND status = ANY(").push_bind(statuses).push(")");
    }
    if let Some(kind) = &filter.kind {
        sql.push(" AND kind = ").push_bind(kind);
    }
    if let Some(agent) = &filter.agent {
        sql.push(" AND agent_name = ").push_bind(agent);
    }
    if let Some(correlation_id) = &filter.correlation_id {
        sql.push(" AND correlation_id = ").push_bind(correlation_id);
    }
    if let Some(trace_id) = &filter.trace_id {
        sql.push(" AND trace_id = ").push_bind(trace_id);
    }
    if let Some(since) = filter.since {
        sql.push(" AND created_at >= ").push_bind(since);
    }
    if let Some(until) = filter.until {
        sql.push(" AND created_at < ").push_bind(until);
    }
    if let Some(cursor) = filter.cursor {
        sql.push(" AND id < ").push_bind(cursor);
    }
    sql.push(" ORDER BY id DESC LIMIT ")
        .push_bind(filter.limit + 1);
    let mut rows: Vec<TaskRow> = sql.build_query_as().fetch_all(&state.pool).await?;
    let next_cursor = if rows.len() as i64 > filter.limit {
        rows.truncate(filter.limit as usize);
        rows.last().map(|row| encode_cursor(row.id))
    } else {
        None
    };
    Ok(Json(Page {
        items: rows.into_iter().map(TaskRow::into_out).collect(),
        next_cursor,
    }))
}

/// The version precondition: `ifVersion` in the body, else `If-Match: "N"`.
fn required_version(patch: &TaskPatch, headers: &HeaderMap) -> Result<i32, Problem> {
    if let Some(version) = patch.if_version {
        return Ok(version);
    }
    let from_header = headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim()
                .trim_start_matches("W/")
                .trim_matches('"')
                .to_owned()
        });
    match from_header {
        Some(text) => text.parse().map_err(|_| {
            Problem::bad_request("If-Match must hold the task's version.")
                .field("if-match", "expected \"<version>\"")
        }),
        None => Err(Problem::new(StatusCode::PRECONDITION_REQUIRED)
            .kind("version-required")
            .detail("Send the version you based the change on as ifVersion (or If-Match).")
            .field("/ifVersion", "required")),
    }
}

fn version_conflict(current: &TaskRow, expected: i32) -> Problem {
    Problem::conflict(format!(
        "The task is at version {}, not {expected}; read it again and reapply the change.",
        current.version
    ))
    .kind("version-conflict")
    .extension("currentVersion", current.version)
    .extension("currentStatus", current.status.clone())
}

fn illegal_transition(from: TaskStatus, to: TaskStatus) -> Problem {
    Problem::conflict(format!("A task cannot go from {from} to {to}."))
        .kind("illegal-transition")
        .extension("transition", format!("{from} -> {to}"))
        .extension("from", from.as_str())
        .extension("to", to.as_str())
}

/// The statement that moves a task to a new status and bumps its version. Leases are released
/// and `finished_at` follows the status, as the table's constraints require.
pub(crate) async fn set_status(
    conn: &mut PgConnection,
    id: Uuid,
    to: TaskStatus,
    fields: &Map<String, Value>,
    run_in_secs: Option<f64>,
) -> Result<TaskRow, sqlx::Error> {
    let sql = format!(
        "UPDATE tasks SET status = $2, version = version + 1, updated_at = now(),
                lease_owner = NULL, lease_expires_at = NULL,
                finished_at = CASE WHEN $2 IN ('succeeded','failed','cancelled') THEN now() END,
                result = CASE WHEN $3::jsonb ? 'result' THEN $3::jsonb -> 'result' ELSE result END,
                error = CASE WHEN $3::jsonb ? 'error' THEN $3::jsonb -> 'error' ELSE error END,
                attempts = CASE WHEN $3::jsonb ? 'resetAttempts' THEN 0 ELSE attempts END,
                run_at = CASE WHEN $4::float8 IS NOT NULL THEN now() + make_interval(secs => $4) ELSE run_at END
         WHERE id = $1
         RETURNING {TASK_COLUMNS}"
    );
    sqlx::query_as::<_, TaskRow>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(to.as_str())
        .bind(Value::Object(fields.clone()))
        .bind(run_in_secs)
        .fetch_one(conn)
        .await
}

/// Changes a task under an optimistic version check. Agents report results this way; an
/// agent's `failed` on a running task is a failed attempt, retried while attempts remain.
#[utoipa::path(patch, path = "/task/{id}", tag = "tasks",
    security(("basicAuth" = []), ("internalKey" = [])),
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header, description = "\"<version>\" when ifVersion is not in the body")),
    request_body = TaskPatch,
    responses(
        (status = 200, body = TaskOut),
        (status = 409, description = "Stale version (currentVersion given) or illegal transition", body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "No version precondition", body = Problem, content_type = "application/problem+json"),
    ))]
async fn patch_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
    actor: Actor,
    headers: HeaderMap,
    Json(patch): Json<TaskPatch>,
) -> Result<Response, Problem> {
    let id = parse_id(&id)?;
    let expected = required_version(&patch, &headers)?;
    let mut errors = Vec::new();
    if patch.priority.is_some_and(|p| !(-100..=100).contains(&p)) {
        errors.push(FieldError {
            field: "/priority".into(),
            message: "between -100 and 100".into(),
        });
    }
    if patch.max_attempts.is_some_and(|m| !(1..=100).contains(&m)) {
        errors.push(FieldError {
            field: "/maxAttempts".into(),
            message: "between 1 and 100".into(),
        });
    }
    if !errors.is_empty() {
        return Err(Problem::validation("The change is not valid.", errors));
    }

    let mut tx = state.pool.begin().await?;
    let current = fetch_task(&mut tx, id, true).await?;
    if current.version != expected {
        return Err(version_conflict(&current, expected));
    }
    let from = current.status();

    // Plain field changes first (they bump the version with the status change, if any).
    let mut changes = Map::new();
    if let Some(priority) = patch.priority {
        changes.insert("priority".into(), json!(priority));
    }
    if let Some(max_attempts) = patch.max_attempts {
        if max_attempts < current.attempts {
            return Err(Problem::validation(
                "maxAttempts cannot be below the attempts already made.",
                [FieldError {
                    field: "/maxAttempts".into(),
                    message: format!("at least {}", current.attempts),
                }],
            ));
        }
        changes.insert("maxAttempts".into(), json!(max_attempts));
    }
    if let Some(run_at) = patch.run_at {
        changes.insert("runAt".into(), json!(run_at.unix_timestamp()));
    }
    if !changes.is_empty() {
        sqlx::query(
            "UPDATE tasks SET priority = coalesce($2, priority), max_attempts = coalesce($3, max_attempts),
                    run_at = coalesce($4, run_at) WHERE id = $1",
        )
        .bind(id)
        .bind(patch.priority)
        .bind(patch.max_attempts)
        .bind(patch.run_at)
        .execute(&mut *tx)
        .await?;
    }
    if let Some(note) = &patch.note {
        changes.insert("note".into(), json!(note));
    }

    let mut fields = Map::new();
    if let Some(result) = &patch.result {
        fields.insert("result".into(), result.clone());
        changes.insert("result".into(), result.clone());
    }
    if let Some(error) = &patch.error {
        fields.insert("error".into(), error.clone());
        changes.insert("error".into(), error.clone());
    }

    let agent_failure = actor.is_service()
        && from == TaskStatus::Running
        && patch.status == Some(TaskStatus::Failed);
    if agent_failure {
        let error = patch
            .error
            .clone()
            .unwrap_or_else(|| json!({"message": "the agent reported a failure"}));
        // Agents say a failure will not improve with another attempt as `retryable: false`.
        let retryable = error.get("retryable") != Some(&Value::Bool(false));
        let task = crate::dispatch::fail_locked(
            &mut tx,
            &current,
            error,
            retryable,
            "attempt_failed",
            &actor.label(),
            &state.config,
        )
        .await?;
        tx.commit().await?;
        return Ok(task_response(StatusCode::OK, task.into_out()));
    }
    let (event_type, task) = match patch.status {
        Some(to) if to != from => {
            if !from.can_become(to) {
                return Err(illegal_transition(from, to));
            }
            if to == TaskStatus::Queued {
                fields.insert("resetAttempts".into(), Value::Bool(from.is_final()));
            }
            let delay = (to == TaskStatus::Queued && patch.run_at.is_none()).then_some(0.0);
            let task = set_status(&mut tx, id, to, &fields, delay).await?;
            (to.as_str(), task)
        }
        _ => {
            if changes.is_empty() && fields.is_empty() {
                return Err(Problem::validation(
                    "The patch changes nothing.",
                    [FieldError {
                        field: "/".into(),
                        message: "set status, result, error, priority, maxAttempts or runAt".into(),
                    }],
                ));
            }
            let sql = format!(
                "UPDATE tasks SET version = version + 1, updated_at = now(),
                        result = CASE WHEN $2::jsonb ? 'result' THEN $2::jsonb -> 'result' ELSE result END,
                        error = CASE WHEN $2::jsonb ? 'error' THEN $2::jsonb -> 'error' ELSE error END
                 WHERE id = $1 RETURNING {TASK_COLUMNS}"
            );
            let task = sqlx::query_as::<_, TaskRow>(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .bind(Value::Object(fields.clone()))
                .fetch_one(&mut *tx)
                .await?;
            ("patched", task)
        }
    };
    let to = task.status();
    append_event(
        &mut tx,
        NewEvent {
            task_id: id,
            event_type,
            actor: &actor.label(),
            from: Some(from),
            to: Some(to),
            version: task.version,
            changes: Value::Object(changes),
            trace_id: &task.trace_id,
        },
    )
    .await?;
    tx.commit().await?;
    if from == TaskStatus::Running && to == TaskStatus::Cancelled {
        state.agents.cancel_in_background(&state.pool, &task);
    }
    Ok(task_response(StatusCode::OK, task.into_out()))
}

/// Cancels a queued or running task. A result the agent reports later is refused, and the
/// task is not dispatched again, whether or not the agent is reachable now.
#[utoipa::path(post, path = "/task/{id}/cancel", tag = "tasks",
    security(("basicAuth" = []), ("internalKey" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = TaskOut), (status = 409, body = Problem, content_type = "application/problem+json")))]
async fn cancel_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
    actor: Actor,
) -> Result<Response, Problem> {
    transition(&state, &id, &actor, TaskStatus::Cancelled, "cancelled").await
}

/// Runs a failed or cancelled task again, with a fresh set of attempts.
#[utoipa::path(post, path = "/task/{id}/retry", tag = "tasks",
    security(("basicAuth" = []), ("internalKey" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = TaskOut), (status = 409, body = Problem, content_type = "application/problem+json")))]
async fn retry_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
    actor: Actor,
) -> Result<Response, Problem> {
    transition(&state, &id, &actor, TaskStatus::Queued, "retried").await
}

async fn transition(
    state: &AppState,
    id: &str,
    actor: &Actor,
    to: TaskStatus,
    event_type: &str,
) -> Result<Response, Problem> {
    let id = parse_id(id)?;
    let mut tx = state.pool.begin().await?;
    let current = fetch_task(&mut tx, id, true).await?;
    let from = current.status();
    if from == to {
        return Ok(task_response(StatusCode::OK, current.into_out()));
    }
    let allowed = match to {
        TaskStatus::Queued => from.is_final() && from != TaskStatus::Succeeded,
        _ => from.can_become(to),
    };
    if !allowed {
        return Err(illegal_transition(from, to));
    }
    let mut fields = Map::new();
    if to == TaskStatus::Queued {
        fields.insert("resetAttempts".into(), Value::Bool(true));
    }
    let delay = (to == TaskStatus::Queued).then_some(0.0);
    let task = set_status(&mut tx, id, to, &fields, delay).await?;
    append_event(
        &mut tx,
        NewEvent {
            task_id: id,
            event_type,
            actor: &actor.label(),
            from: Some(from),
            to: Some(to),
            version: task.version,
            changes: json!({}),
            trace_id: &task.trace_id,
        },
    )
    .await?;
    tx.commit().await?;
    if from == TaskStatus::Running && to == TaskStatus::Cancelled {
        state.agents.cancel_in_background(&state.pool, &task);
    }
    Ok(task_response(StatusCode::OK, task.into_out()))
}
