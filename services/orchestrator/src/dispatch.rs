//! The dispatcher: claims due tasks under a lease and sends each attempt to its agent.
//!
//! Claims use `FOR UPDATE SKIP LOCKED`, so any number of replicas share one database without
//! ever claiming the same attempt twice. A replica sleeps until the next task is due or a
//! lease expires, and wakes early on the `autonoma_task_events` notification that a task was
//! queued. Every outcome is written only if the task is still in the attempt that produced it
//! (same version, still running): a cancel or a lease recovered elsewhere wins over a late
//! result. An attempt that cannot be put on an agent's queue is taken back without counting,
//! and attempts for that queue wait, backing off, until it takes messages again.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use autonoma_common::auth::INTERNAL_KEY_HEADER;
use autonoma_common::config::ServerConfig;
use autonoma_common::trace::{TRACEPARENT, TraceContext};
use autonoma_protocol::{ATTEMPT_HEADER, DispatchIn, DispatchOut, TASK_ID_HEADER, TaskStatus};
use rand::RngExt;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};
use sqlx::postgres::PgListener;
use sqlx::{FromRow, PgConnection, PgPool};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::OrchestratorConfig;
use crate::tasks::{NewEvent, TASK_COLUMNS, TaskRow, append_event, set_status};

pub const TASK_EVENTS_CHANNEL: &str = "autonoma_task_events";
const CLAIM_BATCH: usize = 128;
const MAX_SLEEP: Duration = Duration::from_secs(5);
const RECOVER_BATCH: i64 = 100;
const RECOVERY_EVERY: Duration = Duration::from_secs(1);
/// Longest wait before sending to a queue that failed again, in seconds: attempts resume
/// within this of the queue's recovery, however long it was down.
const QUEUE_BACKOFF_MAX: f64 = 30.0;

/// Whether a task event notification means something may have become due.
fn makes_work_due(payload: &str) -> bool {
    match serde_json::from_str::<Value>(payload) {
        Ok(event) => {
            event.get("id").is_none()
                || event.get("toStatus").and_then(Value::as_str) == Some("queued")
        }
        Err(_) => true,
    }
}

/// Delay before the attempt after `attempts` failed ones: base × 2^(attempts-1), capped,
/// with "equal jitter" (between half and all of it) so retries of many tasks spread out.
pub fn backoff_secs(config: &OrchestratorConfig, attempts: i32) -> f64 {
    let base = config.retry_backoff_base.as_secs_f64();
    let max = config.retry_backoff_max.as_secs_f64();
    let exponent = attempts.saturating_sub(1).clamp(0, 30);
    let full = (base * 2f64.powi(exponent)).min(max);
    full * rand::rng().random_range(0.5..=1.0)
}

/// Outgoing calls to agents: dispatches and cancellations.
pub struct AgentCalls {
    http: reqwest::Client,
    key: SecretString,
    sqs: autonoma_aws::aws_sdk_sqs::Client,
}

impl AgentCalls {
    pub async fn new(server: &ServerConfig, aws: &autonoma_aws::AwsConfig) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(256)
            .user_agent(concat!("autonoma-orchestrator/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(AgentCalls {
            http,
            key: server.outbound_internal_key(),
            sqs: autonoma_aws::sqs_client(aws).await,
        })
    }

    /// Tells the agent running `task` to stop (best effort: the task is cancelled either way).
    pub fn cancel_in_background(self: &Arc<Self>, pool: &PgPool, task: &TaskRow) {
        let (calls, pool, id, agent) =
            (self.clone(), pool.clone(), task.id, task.agent_name.clone());
        tokio::spawn(async move {
            let Some(agent) = agent else { return };
            let base_url: Option<String> =
                match sqlx::query_scalar("SELECT base_url FROM agents WHERE name = $1")
                    .bind(&agent)
                    .fetch_optional(&pool)
                    .await
                {
                    Ok(url) => url.flatten(),
                    Err(error) => {
                        tracing::warn!(%error, task_id = %id, "cannot look up the agent to cancel");
                        None
                    }
                };
            let Some(base_url) = base_url else { return };
            let url = format!("{}/tasks/{id}/cancel", base_url.trim_end_matches('/'));
            let sent = calls
                .http
                .post(&url)
                .header(INTERNAL_KEY_HEADER, calls.key.expose_secret())
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            match sent {
                Ok(response) => {
                    tracing::info!(task_id = %id, %agent, status = %response.status(), "cancellation sent to agent")
                }
                Err(error) => {
                    tracing::info!(task_id = %id, %agent, %error, "agent not reachable for cancellation; the task stays cancelled")
                }
            }
        });
    }
}

#[derive(Debug, FromRow)]
struct Claimed {
    #[sqlx(flatten)]
    task: TaskRow,
    transport: String,
    base_url: Option<String>,
    queue_url: Option<String>,
}

pub struct Dispatcher {
    pool: PgPool,
    config: Arc<OrchestratorConfig>,
    agents: Arc<AgentCalls>,
    replica: String,
    permits: Arc<Semaphore>,
    /// Signalled when an attempt ends and frees a permit.
    capacity: Notify,
    /// Agents' queues that refused the last message, by queue URL.
    failing_queues: std::sync::Mutex<HashMap<String, QueueBackoff>>,
}

/// A queue that cannot be sent to: attempts for it wait until `until`, which moves away
/// exponentially while it keeps failing.
struct QueueBackoff {
    failures: i32,
    until: Instant,
}

impl Dispatcher {
    pub fn new(pool: PgPool, config: Arc<OrchestratorConfig>, agents: Arc<AgentCalls>) -> Self {
        let replica = format!("{}-{:04x}", std::process::id(), rand::rng().random::<u16>());
        let permits = Arc::new(Semaphore::new(config.dispatch_concurrency));
        Dispatcher {
            pool,
            config,
            agents,
            replica,
            permits,
            capacity: Notify::new(),
            failing_queues: std::sync::Mutex::default(),
        }
    }

    pub fn start(self, shutdown: CancellationToken) {
        tokio::spawn(async move {
            let this = Arc::new(self);
            this.run(shutdown).await;
        });
    }

    async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        tracing::info!(replica = %self.replica, "dispatcher started");
        let mut listener = loop {
            match self.listen().await {
                Ok(listener) => break listener,
                Err(error) => {
                    tracing::warn!(%error, "dispatcher cannot listen for task events yet; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        let mut last_recovery: Option<Instant> = None;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let pause = match self.round(&mut last_recovery).await {
                Ok(pause) => pause,
                Err(error) => {
                    tracing::warn!(%error, "dispatch round failed; retrying");
                    Duration::from_millis(500)
                }
            };
            let until = tokio::time::Instant::now() + pause;
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep_until(until) => break,
                    () = self.capacity.notified() => break,
                    // After a lost connection `try_recv` says so (None), where `recv` would
                    // reconnect silently: a round then covers what was missed meanwhile.
                    notification = listener.try_recv() => match notification {
                        Ok(None) => break,
                        Ok(Some(first)) => {
                            // Only a newly queued task (or a registration) makes work due;
                            // the other events of a task's life do not.
                            let mut due = makes_work_due(first.payload());
                            while let Some(next) = listener.next_buffered() {
                                due |= makes_work_due(next.payload());
                            }
                            if due {
                                break;
                            }
                        }
                        Err(error) => {
                            tracing::warn!(%error, "task event listener failed; reconnecting");
                            break;
                        }
                    },
                }
            }
        }
        tracing::info!(replica = %self.replica, "dispatcher stopped");
    }

    async fn listen(&self) -> Result<PgListener, sqlx::Error> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(TASK_EVENTS_CHANNEL).await?;
        Ok(listener)
    }

    /// Recovers expired leases (at most every second, or when one is due), claims and starts
    /// what is due, and says how long to sleep.
    async fn round(
        self: &Arc<Self>,
        last_recovery: &mut Option<Instant>,
    ) -> Result<Duration, sqlx::Error> {
        if last_recovery.is_none_or(|at| at.elapsed() >= RECOVERY_EVERY) {
            self.recover_expired().await?;
            *last_recovery = Some(Instant::now());
        }
        loop {
            let available = self.permits.available_permits().min(CLAIM_BATCH);
            if available == 0 {
                // A finished attempt signals `capacity` and wakes the loop.
                return Ok(MAX_SLEEP);
            }
            let claimed = self.claim(available).await?;
            tracing::debug!(claimed = claimed.len(), "claimed due tasks");
            let full = claimed.len() == available;
            for claim in claimed {
                let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                    break;
                };
                let this = self.clone();
                let task = &claim.task;
                // Instrumented, never entered: a guard held across awaits corrupts the span stack.
                let span = tracing::info_span!("attempt", task_id = %task.id, trace_id = %task.trace_id,
                    correlation_id = task.correlation_id.as_deref(), attempt = task.attempts);
                tokio::spawn(async move {
                    this.attempt(claim).instrument(span).await;
                    drop(permit);
                    this.capacity.notify_one();
                });
            }
            if !full {
                break;
            }
        }
        self.until_next_due().await
    }

    async fn claim(&self, limit: usize) -> Result<Vec<Claimed>, sqlx::Error> {
        let sql = "WITH due AS (
                SELECT t.id FROM tasks t
                WHERE t.status = 'queued' AND t.run_at <= now()
                  AND EXISTS (SELECT 1 FROM agent_kinds k WHERE k.kind = t.kind)
                ORDER BY t.priority DESC, t.run_at, t.id
                LIMIT $1
                FOR UPDATE OF t SKIP LOCKED
            ), claimed AS (
                UPDATE tasks t SET status = 'running', attempts = t.attempts + 1, version = t.version + 1,
                       agent_name = k.agent_name, lease_owner = $2,
                       lease_expires_at = now() + make_interval(secs => t.timeout_secs + $3),
                       started_at = coalesce(t.started_at, now()), updated_at = now()
                FROM due, agent_kinds k
                WHERE t.id = due.id AND k.kind = t.kind
                RETURNING t.*
            ), events AS (
                INSERT INTO task_events (task_id, event_type, actor, from_status, to_status, version, changes, trace_id)
                SELECT id, 'dispatched', $4, 'queued', 'running', version,
                       jsonb_build_object('attempt', attempts, 'agent', agent_name), trace_id
                FROM claimed
            )
            SELECT c.*, a.transport, a.base_url, a.queue_url
            FROM claimed c JOIN agents a ON a.name = c.agent_name";
        sqlx::query_as::<_, Claimed>(sql)
            .bind(limit as i64)
            .bind(&self.replica)
            .bind(self.config.lease_grace.as_secs_f64())
            .bind(format!("dispatcher:{}", self.replica))
            .fetch_all(&self.pool)
            .await
    }

    /// Time until the next queued task is due or the next lease expires (capped).
    async fn until_next_due(&self) -> Result<Duration, sqlx::Error> {
        let seconds: Option<f64> = sqlx::query_scalar(
            // Each side reads its partial index in order (tasks_next_due, tasks_leased).
            "SELECT extract(epoch FROM least(
                 (SELECT run_at FROM tasks t WHERE status = 'queued'
                    AND EXISTS (SELECT 1 FROM agent_kinds k WHERE k.kind = t.kind)
                  ORDER BY run_at LIMIT 1),
                 (SELECT lease_expires_at FROM tasks
                  WHERE lease_owner IS NOT NULL AND status = 'running'
                  ORDER BY lease_expires_at LIMIT 1)) - now())::float8",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(match seconds {
            None => MAX_SLEEP,
            // Due now but not claimed (another replica holds it, or a lease awaits recovery):
            // look again shortly.
            Some(s) if s <= 0.0 => Duration::from_millis(20),
            Some(s) => Duration::from_secs_f64(s).min(MAX_SLEEP),
        })
    }

    /// Running tasks whose lease expired (the agent died, hung, or never reported) get a
    /// failed attempt: retried with backoff while attempts remain.
    async fn recover_expired(&self) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks
             WHERE lease_owner IS NOT NULL AND status = 'running' AND lease_expires_at < now()
             ORDER BY lease_expires_at LIMIT $1 FOR UPDATE SKIP LOCKED"
        );
        let expired = sqlx::query_as::<_, TaskRow>(sqlx::AssertSqlSafe(sql))
            .bind(RECOVER_BATCH)
            .fetch_all(&mut *tx)
            .await?;
        for task in &expired {
            tracing::warn!(task_id = %task.id, attempt = task.attempts, "lease expired; recovering the task");
            let error = json!({
                "message": "no result before the attempt's lease expired",
                "attempt": task.attempts,
            });
            fail_locked(
                &mut tx,
                task,
                error,
                true,
                "lease_expired",
                &format!("dispatcher:{}", self.replica),
                &self.config,
            )
            .await?;
        }
        tx.commit().await
    }

    async fn attempt(&self, claim: Claimed) {
        let task = &claim.task;
        let ctx = trace_of(&task.trace_id);
        let timeout = Duration::from_secs(task.timeout_secs.max(1) as u64);
        let dispatch = DispatchIn {
            task_id: task.id,
            kind: task.kind.clone(),
            payload: task.payload.clone(),
            attempt: task.attempts,
            version: task.version,
            trace_id: task.trace_id.clone(),
            traceparent: ctx.traceparent(),
            correlation_id: task.correlation_id.clone(),
            deadline: time::OffsetDateTime::now_utc() + timeout,
        };
        let outcome = match claim.transport.as_str() {
            "sqs" => match claim
                .queue_url
                .as_deref()
                .and_then(|url| self.queue_paused(url))
            {
                Some(after) => Outcome::Undelivered {
                    error: json!({"message": "the agent's queue refused the last message; waiting before sending again"}),
                    after,
                },
                None => self.send_sqs(claim.queue_url.as_deref(), &dispatch).await,
            },
            _ => {
                self.send_http(claim.base_url.as_deref(), &dispatch, &ctx, timeout)
                    .await
            }
        };
        let actor = format!("agent:{}", task.agent_name.as_deref().unwrap_or("unknown"));
        let written = match outcome {
            Outcome::Reported => return,
            Outcome::Undelivered { error, after } => {
                defer(
                    &self.pool,
                    task,
                    error,
                    after,
                    &format!("dispatcher:{}", self.replica),
                )
                .await
            }
            Outcome::Succeeded(result) => {
                complete(&self.pool, task.id, task.version, result, &actor).await
            }
            Outcome::Failed {
                error,
                retryable,
                event,
            } => {
                fail(
                    &self.pool,
                    task.id,
                    task.version,
                    error,
                    retryable,
                    event,
                    &actor,
                    &self.config,
                )
                .await
            }
        };
        if let Err(error) = written {
            tracing::error!(%error, "recording the attempt's outcome failed; the lease will recover the task");
        }
    }

    /// Puts the attempt on the agent's queue; the agent reports through PATCH, and the lease
    /// recovers the task if it never does.
    async fn send_sqs(&self, queue_url: Option<&str>, dispatch: &DispatchIn) -> Outcome {
        use autonoma_aws::aws_sdk_sqs::types::MessageAttributeValue;
        let Some(queue_url) = queue_url else {
            return Outcome::failed(json!({"message": "the agent has no queueUrl"}), false);
        };
        let body = match serde_json::to_string(dispatch) {
            Ok(body) => body,
            Err(error) => {
                return Outcome::failed(
                    json!({"message": format!("cannot encode the dispatch: {error}")}),
                    false,
                );
            }
        };
        let attribute = |value: String| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
        };
        let mut send = self
            .agents
            .sqs
            .send_message()
            .queue_url(queue_url)
            .message_body(body);
        for (name, value) in [
            ("traceparent", dispatch.traceparent.clone()),
            ("taskId", dispatch.task_id.to_string()),
            ("attempt", dispatch.attempt.to_string()),
        ] {
            match attribute(value) {
                Ok(value) => send = send.message_attributes(name, value),
                Err(error) => tracing::warn!(%error, name, "message attribute dropped"),
            }
        }
        match send.send().await {
            Ok(_) => {
                self.queue_answered(queue_url);
                Outcome::Reported
            }
            // The attempt never reached the agent: it is held back, not counted.
            Err(error) => Outcome::Undelivered {
                error: json!({"message": format!("cannot enqueue on the agent's queue: {}", autonoma_aws::aws_sdk_sqs::error::DisplayErrorContext(&error))}),
                after: self.queue_failed(queue_url),
            },
        }
    }

    /// How long attempts for `queue_url` still wait, if it failed recently.
    fn queue_paused(&self, queue_url: &str) -> Option<Duration> {
        let failing = self
            .failing_queues
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        failing
            .get(queue_url)
            .map(|backoff| backoff.until.saturating_duration_since(Instant::now()))
            .filter(|wait| !wait.is_zero())
    }

    /// Records a failed send; says how long attempts for the queue wait now. Sends that fail
    /// together (already waiting) do not lengthen the wait.
    fn queue_failed(&self, queue_url: &str) -> Duration {
        let mut failing = self
            .failing_queues
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let backoff = failing.entry(queue_url.to_owned()).or_insert(QueueBackoff {
            failures: 0,
            until: now,
        });
        if backoff.until <= now {
            backoff.failures = backoff.failures.saturating_add(1);
            let wait = backoff_secs(&self.config, backoff.failures).min(QUEUE_BACKOFF_MAX);
            backoff.until = now + Duration::from_secs_f64(wait);
            tracing::warn!(
                queue_url,
                failures = backoff.failures,
                wait_ms = backoff.until.saturating_duration_since(now).as_millis() as u64,
                "the agent's queue refused a message; holding its attempts back"
            );
        }
        backoff.until.saturating_duration_since(now)
    }

    fn queue_answered(&self, queue_url: &str) {
        let mut failing = self
            .failing_queues
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if failing.remove(queue_url).is_some() {
            tracing::info!(queue_url, "the agent's queue takes messages again");
        }
    }

    async fn send_http(
        &self,
        base_url: Option<&str>,
        dispatch: &DispatchIn,
        ctx: &TraceContext,
        timeout: Duration,
    ) -> Outcome {
        let Some(base_url) = base_url else {
            return Outcome::failed(json!({"message": "the agent has no baseUrl"}), false);
        };
        let url = format!("{}/tasks/dispatch", base_url.trim_end_matches('/'));
        let sent = self
            .agents
            .http
            .post(&url)
            .header(INTERNAL_KEY_HEADER, self.agents.key.expose_secret())
            .header(TRACEPARENT, ctx.traceparent())
            .header(TASK_ID_HEADER, dispatch.task_id.to_string())
            .header(ATTEMPT_HEADER, dispatch.attempt.to_string())
            .timeout(timeout)
            .json(dispatch)
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(error) if error.is_timeout() => return timed_out(timeout),
            Err(error) if error.is_connect() => {
                return Outcome::failed(
                    json!({"message": format!("agent unreachable: {}", causes(&error))}),
                    true,
                );
            }
            Err(error) => {
                return Outcome::failed(
                    json!({"message": format!("the agent took the request but gave no answer: {}", causes(&error))}),
                    true,
                );
            }
        };
        let status = response.status();
        if status == reqwest::StatusCode::ACCEPTED {
            return Outcome::Reported;
        }
        // The answer is read whole before it is parsed, so its size is bounded like the
        // result an agent may report through PATCH.
        let limit = self.config.server.request_body_limit;
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) if body.len() + chunk.len() > limit => {
                    return Outcome::failed(
                        json!({"message": format!("the agent's answer is larger than {limit} bytes (REQUEST_BODY_LIMIT)"), "status": status.as_u16()}),
                        true,
                    );
                }
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(error) if error.is_timeout() => return timed_out(timeout),
                Err(error) => {
                    return Outcome::failed(
                        json!({"message": format!("the agent's answer was cut off: {}", causes(&error)), "status": status.as_u16()}),
                        true,
                    );
                }
            }
        }
        if !status.is_success() {
            let body = serde_json::from_slice::<Value>(&body)
                .unwrap_or_else(|_| Value::String(preview(&body)));
            // A 4xx says this payload will never work there; retrying cannot help.
            let retryable =
                !status.is_client_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
            return Outcome::failed(
                json!({"message": format!("agent answered {status}"), "status": status.as_u16(), "body": body}),
                retryable,
            );
        }
        match serde_json::from_slice::<DispatchOut>(&body) {
            Ok(DispatchOut::Succeeded { result }) => Outcome::Succeeded(result),
            Ok(DispatchOut::Failed { error, retryable }) => Outcome::failed(error, retryable),
            Err(error) => Outcome::failed(
                json!({
                    "message": format!("unreadable answer from the agent (expected {{\"outcome\": \"succeeded\"|\"failed\", …}}): {error}"),
                    "body": preview(&body),
                }),
                true,
            ),
        }
    }
}

/// An error and its causes, `: `-separated (reqwest's own message leaves out why).
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The start of an answer's body, as text, for the task's error.
fn preview(body: &[u8]) -> String {
    const MAX: usize = 500;
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX)]);
    if body.len() > MAX {
        format!("{text}…")
    } else {
        text.into_owned()
    }
}

fn timed_out(timeout: Duration) -> Outcome {
    Outcome::Failed {
        error: json!({"message": format!("no answer within the timeout of {}s", timeout.as_secs())}),
        retryable: true,
        event: "timed_out",
    }
}

enum Outcome {
    Succeeded(Value),
    Failed {
        error: Value,
        retryable: bool,
        event: &'static str,
    },
    /// The agent accepted the attempt and reports through PATCH.
    Reported,
    /// The attempt could not be handed to the agent's queue; it is queued again after `after`
    /// without counting as an attempt.
    Undelivered {
        error: Value,
        after: Duration,
    },
}

impl Outcome {
    fn failed(error: Value, retryable: bool) -> Self {
        Outcome::Failed {
            error,
            retryable,
            event: "attempt_failed",
        }
    }
}

fn trace_of(trace_id: &str) -> TraceContext {
    TraceContext::parse(&format!("00-{trace_id}-0000000000000001-01"))
        .map(|ctx| TraceContext {
            parent_span_id: None,
            ..ctx
        })
        .unwrap_or_else(TraceContext::new_root)
}

async fn lock_running(
    conn: &mut PgConnection,
    id: Uuid,
    version: i32,
) -> Result<Option<TaskRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1 AND version = $2 AND status = 'running' FOR UPDATE"
    );
    sqlx::query_as::<_, TaskRow>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(version)
        .fetch_optional(conn)
        .await
}

/// Records a successful attempt, if the task is still in it (one statement, so the task
/// row and its event commit together).
async fn complete(
    pool: &PgPool,
    id: Uuid,
    version: i32,
    result: Value,
    actor: &str,
) -> Result<(), sqlx::Error> {
    let recorded: Option<i32> = sqlx::query_scalar(
        "WITH done AS (
             UPDATE tasks SET status = 'succeeded', result = $3, error = NULL, version = version + 1,
                    updated_at = now(), lease_owner = NULL, lease_expires_at = NULL, finished_at = now()
             WHERE id = $1 AND version = $2 AND status = 'running'
             RETURNING id, version, attempts, trace_id)
         INSERT INTO task_events (task_id, event_type, actor, from_status, to_status, version, changes, trace_id)
         SELECT id, 'succeeded', $4, 'running', 'succeeded', version, jsonb_build_object('attempt', attempts), trace_id
         FROM done
         RETURNING (changes->>'attempt')::int",
    )
    .bind(id)
    .bind(version)
    .bind(result)
    .bind(actor)
    .fetch_optional(pool)
    .await?;
    match recorded {
        Some(attempt) => tracing::info!(task_id = %id, attempt, "task succeeded"),
        None => tracing::info!(task_id = %id, "result arrived after the task moved on; ignored"),
    }
    Ok(())
}

/// Takes back an attempt that never reached the agent, if the task is still in it: queued
/// again after `after`, its attempt count as before the claim.
async fn defer(
    pool: &PgPool,
    task: &TaskRow,
    error: Value,
    after: Duration,
    actor: &str,
) -> Result<(), sqlx::Error> {
    let retry_in = after.as_secs_f64();
    let deferred: Option<i32> = sqlx::query_scalar(
        "WITH deferred AS (
             UPDATE tasks SET status = 'queued', attempts = attempts - 1, version = version + 1,
                    updated_at = now(), lease_owner = NULL, lease_expires_at = NULL,
                    started_at = CASE WHEN attempts = 1 THEN NULL ELSE started_at END,
                    run_at = now() + make_interval(secs => $3)
             WHERE id = $1 AND version = $2 AND status = 'running'
             RETURNING id, version, attempts, trace_id)
         INSERT INTO task_events (task_id, event_type, actor, from_status, to_status, version, changes, trace_id)
         SELECT id, 'dispatch_deferred', $4, 'running', 'queued', version,
                jsonb_build_object('attempt', attempts + 1, 'error', $5::jsonb, 'retryInSecs', round($3::numeric, 3)),
                trace_id
         FROM deferred
         RETURNING version",
    )
    .bind(task.id)
    .bind(task.version)
    .bind(retry_in)
    .bind(actor)
    .bind(&error)
    .fetch_optional(pool)
    .await?;
    if deferred.is_some() {
        tracing::info!(task_id = %task.id, retry_in, "attempt not delivered; queued again");
    }
    Ok(())
}

/// Records a failed attempt, if the task is still in it.
#[allow(clippy::too_many_arguments)]
async fn fail(
    pool: &PgPool,
    id: Uuid,
    version: i32,
    error: Value,
    retryable: bool,
    event: &str,
    actor: &str,
    config: &OrchestratorConfig,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let Some(task) = lock_running(&mut tx, id, version).await? else {
        tracing::info!(task_id = %id, "failure arrived after the task moved on; ignored");
        return Ok(());
    };
    fail_locked(&mut tx, &task, error, retryable, event, actor, config).await?;
    tx.commit().await
}

/// A failed attempt of a locked running task: queued again after a backoff while attempts
/// remain (and the failure is retryable), else failed for good with the last error.
pub(crate) async fn fail_locked(
    conn: &mut PgConnection,
    task: &TaskRow,
    error: Value,
    retryable: bool,
    event: &str,
    actor: &str,
    config: &OrchestratorConfig,
) -> Result<TaskRow, sqlx::Error> {
    let retry = retryable && task.attempts < task.max_attempts;
    let (to, delay, event) = if retry {
        (
            TaskStatus::Queued,
            Some(backoff_secs(config, task.attempts)),
            event,
        )
    } else {
        (TaskStatus::Failed, None, "failed")
    };
    let mut fields = Map::new();
    fields.insert("error".into(), error.clone());
    let updated = set_status(conn, task.id, to, &fields, delay).await?;
    let mut changes = json!({"attempt": task.attempts, "error": error});
    if let Some(delay) = delay {
        changes["retryInSecs"] = json!((delay * 1000.0).round() / 1000.0);
    }
    append_event(
        conn,
        NewEvent {
            task_id: task.id,
            event_type: event,
            actor,
            from: Some(TaskStatus::Running),
            to: Some(to),
            version: updated.version,
            changes,
            trace_id: &task.trace_id,
        },
    )
    .await?;
    if to == TaskStatus::Failed {
        tracing::warn!(task_id = %task.id, attempt = task.attempts, "task failed");
    } else {
        tracing::info!(task_id = %task.id, attempt = task.attempts, "attempt failed; retrying");
    }
    Ok(updated)
}
