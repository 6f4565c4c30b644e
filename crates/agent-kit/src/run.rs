//! One attempt of one task: the handler run under the task's trace and span, until it ends,
//! the deadline passes or the task is cancelled.

use std::time::{Duration, Instant};

use autonoma_common::telemetry;
use autonoma_common::trace::TraceContext;
use autonoma_protocol::{DispatchIn, DispatchOut, Transport};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span};

use crate::context::{TaskContext, TaskError, remaining_until};
use crate::{Agent, Running};

/// How long a cancelled handler may take to wind down before it is stopped.
const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// An attempt about to run: its span and trace are known before the handler starts, so the
/// transport can log and report under them too.
pub(crate) struct Attempt {
    agent: Agent,
    dispatch: DispatchIn,
    transport: Transport,
    pub(crate) span: Span,
    pub(crate) trace: TraceContext,
}

impl Attempt {
    pub(crate) fn new(agent: &Agent, dispatch: DispatchIn, transport: Transport) -> Self {
        let span = tracing::info_span!(
            "task",
            task_id = %dispatch.task_id,
            kind = %dispatch.kind,
            attempt = dispatch.attempt,
            correlation_id = tracing::field::Empty,
            trace_id = tracing::field::Empty,
        );
        if let Some(correlation_id) = &dispatch.correlation_id {
            span.record("correlation_id", correlation_id.as_str());
        }
        let trace = telemetry::link_span(&span, trace_of(&dispatch));
        span.record("trace_id", trace.trace_id_hex());
        Attempt {
            agent: agent.clone(),
            dispatch,
            transport,
            span,
            trace,
        }
    }

    /// Runs the handler for at most `limit` (and never past the deadline).
    pub(crate) async fn run(self, limit: Option<Duration>) -> DispatchOut {
        let span = self.span.clone();
        let started = Instant::now();
        span.in_scope(|| tracing::info!(transport = self.transport.as_str(), "attempt started"));
        let outcome = self.execute(limit).instrument(span.clone()).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        span.in_scope(|| match &outcome {
            DispatchOut::Succeeded { .. } => {
                tracing::info!(outcome = "succeeded", elapsed_ms, "attempt finished")
            }
            DispatchOut::Failed { error, retryable } => tracing::warn!(
                outcome = "failed",
                retryable,
                error = %error,
                elapsed_ms,
                "attempt finished"
            ),
        });
        outcome
    }

    async fn execute(self, limit: Option<Duration>) -> DispatchOut {
        let Attempt {
            agent,
            dispatch,
            transport,
            span,
            trace,
        } = self;
        let Some(kind) = agent.kind(&dispatch.kind) else {
            return failed(
                &TaskError::permanent(format!(
                    "agent {} does not serve kind {}",
                    agent.name(),
                    dispatch.kind
                ))
                .detail("kind", dispatch.kind.clone()),
            );
        };
        let violations: Vec<Value> = kind
            .validator
            .iter_errors(&dispatch.payload)
            .map(|error| {
                json!({
                    "field": error.instance_path().as_str(),
                    "message": error.to_string(),
                })
            })
            .collect();
        if !violations.is_empty() {
            return failed(
                &TaskError::permanent("the payload does not satisfy the kind's schema")
                    .detail("violations", violations),
            );
        }

        let until_deadline = remaining_until(dispatch.deadline);
        if until_deadline.is_zero() {
            return timed_out("deadline");
        }
        let (budget, limited_by) = match limit {
            Some(limit) if limit < until_deadline => (limit, "REQUEST_TIMEOUT"),
            _ => (until_deadline, "deadline"),
        };

        let token = CancellationToken::new();
        let _entry = Running::insert(&agent, dispatch.task_id, token.clone());
        let ctx = TaskContext {
            task_id: dispatch.task_id,
            kind: dispatch.kind.clone(),
            attempt: dispatch.attempt,
            version: dispatch.version,
            trace,
            correlation_id: dispatch.correlation_id.clone(),
            deadline: dispatch.deadline,
            cancelled: token.clone(),
            transport,
        };
        let work = (kind.handler)(ctx, dispatch.payload);
        let mut handler = SpawnedHandler::spawn(trace.scope(work).instrument(span), token.clone());

        tokio::select! {
            biased;
            joined = &mut handler.task => from_join(joined),
            () = token.cancelled() => {
                match tokio::time::timeout(CANCEL_GRACE, &mut handler.task).await {
                    Ok(_) => tracing::info!("handler stopped after cancellation"),
                    Err(_) => tracing::warn!(grace_ms = CANCEL_GRACE.as_millis() as u64, "handler ignored cancellation; stopping it"),
                }
                failed(&TaskError::cancelled())
            }
            () = tokio::time::sleep(budget) => {
                token.cancel();
                timed_out(limited_by)
            }
        }
    }
}

/// The spawned handler. Dropping it (the attempt ended, or nobody waits for it any more)
/// cancels the task's token and stops the handler.
struct SpawnedHandler {
    task: JoinHandle<Result<Value, TaskError>>,
    token: CancellationToken,
}

impl SpawnedHandler {
    fn spawn(
        work: impl Future<Output = Result<Value, TaskError>> + Send + 'static,
        token: CancellationToken,
    ) -> Self {
        SpawnedHandler {
            task: tokio::spawn(work),
            token,
        }
    }
}

impl Drop for SpawnedHandler {
    fn drop(&mut self) {
        self.token.cancel();
        self.task.abort();
    }
}

fn from_join(joined: Result<Result<Value, TaskError>, tokio::task::JoinError>) -> DispatchOut {
    match joined {
        Ok(Ok(result)) => DispatchOut::Succeeded { result },
        Ok(Err(error)) => failed(&error),
        Err(error) => {
            let reason = if error.is_panic() {
                let panic = error.into_panic();
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "unknown panic".into())
            } else {
                "the handler was stopped".into()
            };
            failed(&TaskError::new(format!("the handler panicked: {reason}")))
        }
    }
}

fn failed(error: &TaskError) -> DispatchOut {
    DispatchOut::Failed {
        error: error.to_value(),
        retryable: error.is_retryable(),
    }
}

fn timed_out(limited_by: &str) -> DispatchOut {
    failed(&TaskError::new("timed out").detail("limit", limited_by))
}

/// The dispatch's trace: its `traceparent`, else its trace id with a fresh span, else a new
/// trace.
fn trace_of(dispatch: &DispatchIn) -> TraceContext {
    if let Some(ctx) = TraceContext::parse(&dispatch.traceparent) {
        return ctx;
    }
    let root = TraceContext::new_root();
    match decode_trace_id(&dispatch.trace_id) {
        Some(trace_id) => TraceContext { trace_id, ..root },
        None => root,
    }
}

fn decode_trace_id(hex: &str) -> Option<[u8; 16]> {
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    (out != [0; 16]).then_some(out)
}
