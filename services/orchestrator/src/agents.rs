//! `/agents`: the registry of agents, the kinds they serve and their heartbeats.

use autonoma_common::Problem;
use autonoma_common::auth::{require_internal_key, require_operator};
use autonoma_common::extract::{Json, nul_pointer};
use autonoma_common::problem::FieldError;
use autonoma_protocol::{AgentIn, AgentOut, HeartbeatIn, KindIn, Transport};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::middleware::from_fn;
use serde_json::Value;
use sqlx::FromRow;
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::schemas;

const HEARTBEAT_HISTORY: &str = "1 hour";

pub fn router(state: AppState) -> OpenApiRouter {
    let internal = OpenApiRouter::new()
        .routes(routes!(post_agent))
        .routes(routes!(post_heartbeat))
        .route_layer(from_fn(require_internal_key));
    let operator = OpenApiRouter::new()
        .routes(routes!(list_agents))
        .route_layer(from_fn(require_operator));
    internal.merge(operator).with_state(state)
}

fn valid_name(name: &str, max: usize, extra: &str) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || extra.contains(c))
}

fn check_agent(agent: &AgentIn) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut bad = |field: String, message: String| errors.push(FieldError { field, message });
    if !valid_name(&agent.name, 63, "-") {
        bad(
            "/name".into(),
            "1-63 characters: a-z first, then a-z 0-9 -".into(),
        );
    }
    let base_url_ok = agent.base_url.as_deref().map(url_is_http);
    match (agent.transport, base_url_ok) {
        (Transport::Http, None) => bad("/baseUrl".into(), "required for the http transport".into()),
        (_, Some(false)) => bad("/baseUrl".into(), "expected an http(s) URL".into()),
        _ => {}
    }
    if agent.transport == Transport::Sqs && agent.queue_url.as_deref().is_none_or(str::is_empty) {
        bad("/queueUrl".into(), "required for the sqs transport".into());
    }
    if agent.kinds.is_empty() {
        bad("/kinds".into(), "an agent serves at least one kind".into());
    }
    let mut seen = std::collections::HashSet::new();
    for (i, kind) in agent.kinds.iter().enumerate() {
        if !valid_name(&kind.kind, 128, "_.-") {
            bad(
                format!("/kinds/{i}/kind"),
                "1-128 characters: a-z first, then a-z 0-9 _ . -".into(),
            );
        }
        if !seen.insert(kind.kind.as_str()) {
            bad(format!("/kinds/{i}/kind"), "listed twice".into());
        }
        if !matches!(kind.payload_schema, Value::Object(_) | Value::Bool(_)) {
            bad(
                format!("/kinds/{i}/payloadSchema"),
                "a JSON Schema is an object or a boolean".into(),
            );
        } else if let Err(error) = schemas::compile(&kind.payload_schema) {
            bad(
                format!("/kinds/{i}/payloadSchema"),
                format!("not a valid JSON Schema: {error}"),
            );
        }
    }
    errors
}

fn url_is_http(url: &str) -> bool {
    reqwest::Url::parse(url)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

/// Registers an agent and the kinds it serves, or replaces its registration (hot swap):
/// queued tasks of its kinds stay queued and go to the new registration.
#[utoipa::path(post, path = "/agents", tag = "agents",
    security(("internalKey" = [])),
    request_body = AgentIn,
    responses(
        (status = 200, body = AgentOut),
        (status = 409, description = "A kind is served by another agent", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn post_agent(
    State(state): State<AppState>,
    Json(agent): Json<AgentIn>,
) -> Result<Json<AgentOut>, Problem> {
    let errors = check_agent(&agent);
    if !errors.is_empty() {
        return Err(Problem::validation(
            "The registration is not valid.",
            errors,
        ));
    }
    let kinds: Vec<String> = agent.kinds.iter().map(|k| k.kind.clone()).collect();
    let mut tx = state.pool.begin().await?;
    let taken: Vec<(String, String)> = sqlx::query_as(
        "SELECT kind, agent_name FROM agent_kinds WHERE kind = ANY($1) AND agent_name <> $2",
    )
    .bind(&kinds)
    .bind(&agent.name)
    .fetch_all(&mut *tx)
    .await?;
    if !taken.is_empty() {
        let listed: Vec<String> = taken
            .iter()
            .map(|(kind, owner)| format!("{kind} ({owner})"))
            .collect();
        return Err(Problem::conflict(format!(
            "Kinds already served by another agent: {}.",
            listed.join(", ")
        ))
        .kind("kind-taken"));
    }
    sqlx::query(
        "INSERT INTO agents (name, transport, base_url, queue_url) VALUES ($1, $2, $3, $4)
         ON CONFLICT (name) DO UPDATE SET transport = EXCLUDED.transport, base_url = EXCLUDED.base_url,
                queue_url = EXCLUDED.queue_url, updated_at = now()",
    )
    .bind(&agent.name)
    .bind(agent.transport.as_str())
    .bind(&agent.base_url)
    .bind(&agent.queue_url)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM agent_kinds WHERE agent_name = $1 AND NOT (kind = ANY($2))")
        .bind(&agent.name)
        .bind(&kinds)
        .execute(&mut *tx)
        .await?;
    for kind in &agent.kinds {
        sqlx::query(
            "INSERT INTO agent_kinds (kind, agent_name, payload_schema) VALUES ($1, $2, $3)
             ON CONFLICT (kind) DO UPDATE SET payload_schema = EXCLUDED.payload_schema",
        )
        .bind(&kind.kind)
        .bind(&agent.name)
        .bind(&kind.payload_schema)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    tracing::info!(agent = %agent.name, transport = agent.transport.as_str(), kinds = ?kinds, "agent registered");
    let mut agents = load_agents(&state, Some(&agent.name)).await?;
    agents
        .pop()
        .map(Json)
        .ok_or_else(|| Problem::internal("registered agent vanished"))
}

/// Records that an agent is alive.
#[utoipa::path(post, path = "/agents/{name}/heartbeat", tag = "agents",
    security(("internalKey" = [])),
    params(("name" = String, Path)),
    request_body = HeartbeatIn,
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn post_heartbeat(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Json(beat): Json<HeartbeatIn>,
) -> Result<StatusCode, Problem> {
    let status = beat.status.unwrap_or_else(|| "ok".into());
    if !matches!(status.as_str(), "ok" | "degraded" | "draining") {
        return Err(Problem::validation(
            "Unknown heartbeat status.",
            [FieldError {
                field: "/status".into(),
                message: "ok, degraded or draining".into(),
            }],
        ));
    }
    let details = match beat.details {
        None => Value::Object(Default::default()),
        Some(details @ Value::Object(_)) => match nul_pointer(&details) {
            None => details,
            Some(at) => {
                return Err(Problem::validation(
                    "Heartbeat details must not contain U+0000.",
                    [FieldError {
                        field: format!("/details{at}"),
                        message: "must not contain U+0000".into(),
                    }],
                ));
            }
        },
        Some(_) => {
            return Err(Problem::validation(
                "Heartbeat details must be an object.",
                [FieldError {
                    field: "/details".into(),
                    message: "expected an object".into(),
                }],
            ));
        }
    };
    let recorded = sqlx::query(
        "INSERT INTO agent_heartbeats (agent_name, status, details)
         SELECT name, $2, $3 FROM agents WHERE name = $1",
    )
    .bind(&name)
    .bind(&status)
    .bind(&details)
    .execute(&state.pool)
    .await?;
    if recorded.rows_affected() == 0 {
        return Err(
            Problem::not_found(format!("No agent named {name}; register it first."))
                .kind("agent-not-found"),
        );
    }
    sqlx::query(
        "DELETE FROM agent_heartbeats WHERE agent_name = $1 AND received_at < now() - $2::interval",
    )
    .bind(&name)
    .bind(HEARTBEAT_HISTORY)
    .execute(&state.pool)
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The registered agents with their kinds, last heartbeat and liveness.
#[utoipa::path(get, path = "/agents", tag = "agents",
    security(("basicAuth" = []), ("internalKey" = [])),
    responses((status = 200, body = Vec<AgentOut>)))]
async fn list_agents(State(state): State<AppState>) -> Result<Json<Vec<AgentOut>>, Problem> {
    load_agents(&state, None).await.map(Json)
}

#[derive(FromRow)]
struct AgentRow {
    name: String,
    transport: String,
    base_url: Option<String>,
    queue_url: Option<String>,
    registered_at: OffsetDateTime,
    last_heartbeat: Option<OffsetDateTime>,
    heartbeat_status: Option<String>,
    kinds: Value,
}

async fn load_agents(state: &AppState, only: Option<&str>) -> Result<Vec<AgentOut>, Problem> {
    let rows: Vec<AgentRow> = sqlx::query_as(
        "SELECT a.name, a.transport, a.base_url, a.queue_url, a.registered_at,
                h.received_at AS last_heartbeat, h.status AS heartbeat_status,
                coalesce((SELECT jsonb_agg(jsonb_build_object('kind', k.kind, 'payloadSchema', k.payload_schema) ORDER BY k.kind)
                          FROM agent_kinds k WHERE k.agent_name = a.name), '[]') AS kinds
         FROM agents a
         LEFT JOIN LATERAL (SELECT received_at, status FROM agent_heartbeats
                            WHERE agent_name = a.name ORDER BY received_at DESC LIMIT 1) h ON true
         WHERE $1::text IS NULL OR a.name = $1
         ORDER BY a.name",
    )
    .bind(only)
    .fetch_all(&state.pool)
    .await?;
    let liveness = time::Duration::try_from(state.config.agent_liveness)
        .unwrap_or(time::Duration::seconds(30));
    let now = OffsetDateTime::now_utc();
    Ok(rows
        .into_iter()
        .map(|row| AgentOut {
            live: row.last_heartbeat.is_some_and(|at| now - at < liveness),
            transport: if row.transport == "sqs" {
                Transport::Sqs
            } else {
                Transport::Http
            },
            kinds: serde_json::from_value::<Vec<KindIn>>(row.kinds).unwrap_or_default(),
            name: row.name,
            base_url: row.base_url,
            queue_url: row.queue_url,
            registered_at: row.registered_at,
            last_heartbeat: row.last_heartbeat,
            heartbeat_status: row.heartbeat_status,
        })
        .collect())
}
