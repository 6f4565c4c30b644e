//! Everything an Autonoma agent needs besides its own work.
//!
//! An agent is a set of task kinds, each a JSON Schema for its payload and an async handler:
//!
//! ```no_run
//! # use autonoma_agent_kit::{Agent, TaskContext, TaskError};
//! # use serde_json::{Value, json};
//! async fn shout(_ctx: TaskContext, payload: Value) -> Result<Value, TaskError> {
//!     let text = payload["text"].as_str().unwrap_or_default();
//!     Ok(json!({ "text": text.to_uppercase() }))
//! }
//! # fn main() -> anyhow::Result<()> {
//! let agent = Agent::builder("shout-agent")
//!     .kind("shout", json!({"type": "object", "properties": {"text": {"type": "string"}}}), shout)
//!     .build()?;
//! # Ok(()) }
//! ```
//!
//! The service merges [`Agent::routes`] into its server and calls [`Agent::start`] once the
//! server is bound. The kit then:
//!
//! - registers the agent with the orchestrator (`POST /agents`, retried with backoff until the
//!   orchestrator answers), heartbeats every `HEARTBEAT_INTERVAL`, registers again if the
//!   orchestrator forgot it, and sends a last `draining` heartbeat on shutdown;
//! - over HTTP, serves `POST /tasks/dispatch` (runs the handler and answers with the outcome)
//!   and `POST /tasks/{id}/cancel`;
//! - over SQS, consumes the agent's queue and reports each outcome with `PATCH /task/{id}`.
//!
//! Each attempt runs in a span carrying `task_id`, `correlation_id` and `trace_id` with the
//! task's trace current, until the task's deadline or its cancellation.
//!
//! An HTTP dispatch is one request, so the server's `REQUEST_TIMEOUT` bounds it too: the kit
//! answers `Failed` ("timed out", `limit: REQUEST_TIMEOUT`) just before that timeout would cut
//! the request. Agents with tasks longer than `REQUEST_TIMEOUT` raise it or use SQS.

mod config;
mod context;
mod http;
mod lifecycle;
mod run;
mod sqs;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use anyhow::{Context, bail};
use autonoma_aws::AwsConfig;
use autonoma_common::Server;
use autonoma_common::client::InternalClient;
use autonoma_common::config::ServerConfig;
use autonoma_protocol::{KindIn, Transport};
use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

pub use autonoma_protocol::{DispatchIn, DispatchOut};
pub use config::AgentConfig;
pub use context::{TaskContext, TaskError};

/// Tag of the kit's endpoints in the agent's OpenAPI document.
pub const AGENT_TAG: &str = "agent";

/// Each call to the orchestrator (registration, heartbeat, report) gives up after this.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP dispatch is answered this long before the server's `REQUEST_TIMEOUT` would cut it.
const HTTP_ANSWER_MARGIN: Duration = Duration::from_millis(500);

type Handler =
    Arc<dyn Fn(TaskContext, Value) -> BoxFuture<'static, Result<Value, TaskError>> + Send + Sync>;

struct Kind {
    schema: Value,
    validator: jsonschema::Validator,
    handler: Handler,
}

/// Collects an agent's kinds; see [`Agent::builder`].
pub struct AgentBuilder {
    name: String,
    kinds: Vec<(String, Value, Handler)>,
}

impl AgentBuilder {
    /// Serves tasks of `kind`, whose payloads satisfy `payload_schema` (a JSON Schema the
    /// orchestrator checks every new task against; the kit checks it again before running).
    /// The payload is deserialised into `P` and the result serialised from `R`;
    /// `serde_json::Value` works for both.
    pub fn kind<P, R, F, Fut>(mut self, kind: &str, payload_schema: Value, handler: F) -> Self
    where
        P: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(TaskContext, P) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, TaskError>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |ctx, payload| {
            let started = serde_json::from_value::<P>(payload)
                .map(|payload| handler(ctx, payload))
                .map_err(|error| {
                    TaskError::permanent(format!("the payload cannot be read: {error}"))
                });
            Box::pin(async move {
                let result = started?.await?;
                serde_json::to_value(result).map_err(|error| {
                    TaskError::permanent(format!("the result cannot be serialised: {error}"))
                })
            })
        });
        self.kinds.push((kind.to_owned(), payload_schema, handler));
        self
    }

    /// Checks the kinds (at least one, names unique, schemas valid) and builds the agent.
    pub fn build(self) -> anyhow::Result<Agent> {
        if self.kinds.is_empty() {
            bail!("agent {} serves no kind", self.name);
        }
        let mut kinds = BTreeMap::new();
        for (name, schema, handler) in self.kinds {
            if name.trim().is_empty() {
                bail!("agent {}: a kind needs a name", self.name);
            }
            let validator = jsonschema::options()
                .build(&schema)
                .map_err(|error| anyhow::anyhow!("kind {name}: invalid payload schema: {error}"))?;
            let kind = Kind {
                schema,
                validator,
                handler,
            };
            if kinds.insert(name.clone(), kind).is_some() {
                bail!("agent {}: kind {name} is declared twice", self.name);
            }
        }
        Ok(Agent {
            inner: Arc::new(Inner {
                name: self.name,
                kinds,
                running: Running::default(),
                http_limit: OnceLock::new(),
            }),
        })
    }
}

/// An agent: its kinds, and the attempts running right now. Cheap to clone.
#[derive(Clone)]
pub struct Agent {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    kinds: BTreeMap<String, Kind>,
    running: Running,
    /// Longest an HTTP dispatch may run before it must be answered (from `REQUEST_TIMEOUT`).
    http_limit: OnceLock<Duration>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("name", &self.inner.name)
            .field("kinds", &self.inner.kinds.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Agent {
    pub fn builder(name: &str) -> AgentBuilder {
        AgentBuilder {
            name: name.to_owned(),
            kinds: Vec::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The kinds and payload schemas, as registered with the orchestrator.
    pub fn kinds(&self) -> Vec<KindIn> {
        self.inner
            .kinds
            .iter()
            .map(|(kind, k)| KindIn {
                kind: kind.clone(),
                payload_schema: k.schema.clone(),
            })
            .collect()
    }

    /// How many attempts are running here now.
    pub fn running(&self) -> usize {
        self.inner.running.len()
    }

    /// Cancels every attempt of `task_id` running here; false if none is.
    pub fn cancel(&self, task_id: Uuid) -> bool {
        self.inner.running.cancel(task_id)
    }

    /// `POST /tasks/dispatch` and `POST /tasks/{id}/cancel` (internal key), to merge into the
    /// service's `ServerBuilder`.
    pub fn routes(&self) -> OpenApiRouter {
        http::routes(self.clone())
    }

    /// Starts the background work tied to `server`'s shutdown: resolving the queue (SQS),
    /// registration and heartbeats, and the queue consumer (SQS). Call it once the server is
    /// bound; it returns at once, and the orchestrator may come up later.
    pub fn start(
        &self,
        config: &AgentConfig,
        aws: &AwsConfig,
        server_config: &ServerConfig,
        server: &Server,
    ) -> anyhow::Result<AgentHandle> {
        if config.agent_transport == Transport::Sqs
            && config.agent_queue_url.is_none()
            && config.agent_queue_name.is_none()
        {
            bail!("AGENT_TRANSPORT=sqs needs AGENT_QUEUE_URL or AGENT_QUEUE_NAME");
        }
        let _ = self.inner.http_limit.set(
            server_config
                .request_timeout
                .saturating_sub(HTTP_ANSWER_MARGIN)
                .max(HTTP_ANSWER_MARGIN),
        );
        let client = InternalClient::new(server_config.outbound_internal_key(), CALL_TIMEOUT)
            .context("building the client for the orchestrator")?
            .with_retries(0);
        let setup = lifecycle::Setup {
            agent: self.clone(),
            config: config.clone(),
            aws: aws.clone(),
            public_url: config.public_url(server.local_addr()),
            client,
            shutdown: server.shutdown_token(),
        };
        Ok(AgentHandle {
            task: tokio::spawn(lifecycle::run(setup)),
        })
    }

    fn kind(&self, kind: &str) -> Option<&Kind> {
        self.inner.kinds.get(kind)
    }

    fn http_limit(&self) -> Option<Duration> {
        self.inner.http_limit.get().copied()
    }
}

/// The agent's background work. It ends after the server's shutdown token is cancelled.
#[derive(Debug)]
pub struct AgentHandle {
    task: JoinHandle<()>,
}

impl AgentHandle {
    /// Waits until the background work has stopped: the last heartbeat is sent and the queue
    /// consumer has finished the attempts it had started.
    pub async fn stopped(self) {
        if let Err(error) = self.task.await {
            tracing::error!(error = %error, "agent background work failed");
        }
    }
}

/// The cancellation tokens of the attempts running here, by task.
#[derive(Default)]
struct Running {
    next: AtomicU64,
    tasks: Mutex<HashMap<Uuid, Vec<(u64, CancellationToken)>>>,
}

impl Running {
    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, Vec<(u64, CancellationToken)>>> {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn insert(agent: &Agent, task_id: Uuid, token: CancellationToken) -> RunningEntry {
        let running = &agent.inner.running;
        let id = running.next.fetch_add(1, Ordering::Relaxed);
        running.lock().entry(task_id).or_default().push((id, token));
        RunningEntry {
            agent: agent.clone(),
            task_id,
            id,
        }
    }

    fn cancel(&self, task_id: Uuid) -> bool {
        match self.lock().get(&task_id) {
            Some(tokens) if !tokens.is_empty() => {
                tokens.iter().for_each(|(_, token)| token.cancel());
                true
            }
            _ => false,
        }
    }

    fn len(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }
}

/// Removes an attempt from [`Running`] when it ends, however it ends.
struct RunningEntry {
    agent: Agent,
    task_id: Uuid,
    id: u64,
}

impl Drop for RunningEntry {
    fn drop(&mut self) {
        let mut tasks = self.agent.inner.running.lock();
        if let Some(tokens) = tasks.get_mut(&self.task_id) {
            tokens.retain(|(id, _)| *id != self.id);
            if tokens.is_empty() {
                tasks.remove(&self.task_id);
            }
        }
    }
}
