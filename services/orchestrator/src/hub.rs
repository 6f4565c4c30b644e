//! The live feed behind `GET /ws`. One listener per replica turns Postgres notifications
//! (task events from any replica, log batches from the logging service) into frames, each
//! serialised once and broadcast to every connected client. The broadcast buffer is bounded:
//! a client that falls behind it is disconnected instead of buffering without end.
//!
//! Changes committed while the feed is not listening (before its first `LISTEN`, or while it
//! reconnects to Postgres) reach no one, so clients are never left believing they saw
//! everything: new clients wait for the feed to be live, and connected ones are told to
//! reconnect and refetch when it is interrupted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use autonoma_protocol::LogOut;
use axum::extract::ws::Utf8Bytes;
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::dispatch::TASK_EVENTS_CHANNEL;
use crate::tasks::{EVENT_COLUMNS, EventRow, TASK_COLUMNS, TaskRow};

pub const LOGS_CHANNEL: &str = "autonoma_logs";
/// Log ids up to this are committed or never will be: the logging service's writers run side
/// by side, so a larger id may commit before a smaller one (see that service's `writer`).
const LOGS_SETTLED: &str = "SELECT logs_settled_id()";
const NOTIFICATION_BATCH: usize = 1000;
const LOG_BATCH: i64 = 1000;

/// A frame as sent, with what subscriptions filter on.
#[derive(Debug)]
pub struct Frame {
    pub is_log: bool,
    pub task_id: Option<Uuid>,
    pub kind: Option<String>,
    pub trace_id: Option<String>,
    pub correlation_id: Option<String>,
    /// Serialised once; every client's send shares it.
    pub text: Utf8Bytes,
    /// Not a frame to send: the feed lost its listener, so what follows may have gaps.
    pub interrupted: bool,
}

impl Frame {
    fn interruption() -> Frame {
        Frame {
            is_log: false,
            task_id: None,
            kind: None,
            trace_id: None,
            correlation_id: None,
            text: Utf8Bytes::default(),
            interrupted: true,
        }
    }
}

#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<Arc<Frame>>,
    live: watch::Receiver<bool>,
}

impl Hub {
    pub fn start(pool: PgPool, capacity: usize, shutdown: CancellationToken) -> Hub {
        let (tx, _) = broadcast::channel(capacity);
        let (live_tx, live) = watch::channel(false);
        let hub = Hub {
            tx: tx.clone(),
            live,
        };
        tokio::spawn(async move {
            let mut feed = Feed {
                pool,
                tx,
                live: live_tx,
                last_log_id: None,
            };
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = feed.run() => {}
            }
        });
        hub
    }

    /// Frames from now on, once the feed is listening; `None` if it is not within `wait`.
    pub async fn subscribe(&self, wait: Duration) -> Option<broadcast::Receiver<Arc<Frame>>> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut live = self.live.clone();
        loop {
            // Subscribed before the flag is read: if the feed is interrupted after a read that
            // says live, the interruption reaches this receiver.
            let frames = self.tx.subscribe();
            if *live.borrow_and_update() {
                return Some(frames);
            }
            match tokio::time::timeout_at(deadline, live.changed()).await {
                Ok(Ok(())) => {}
                _ => return None,
            }
        }
    }
}

struct Feed {
    pool: PgPool,
    tx: broadcast::Sender<Arc<Frame>>,
    live: watch::Sender<bool>,
    last_log_id: Option<i64>,
}

impl Feed {
    async fn run(&mut self) {
        loop {
            match self.listen().await {
                Ok(listener) => {
                    let result = self.pump(listener).await;
                    self.live.send_replace(false);
                    let _ = self.tx.send(Arc::new(Frame::interruption()));
                    if let Err(error) = result {
                        tracing::warn!(%error, "live feed interrupted; reconnecting");
                    }
                }
                Err(error) => tracing::warn!(%error, "live feed cannot listen yet; retrying"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn listen(&self) -> Result<PgListener, sqlx::Error> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener
            .listen_all([TASK_EVENTS_CHANNEL, LOGS_CHANNEL])
            .await?;
        Ok(listener)
    }

    async fn pump(&mut self, mut listener: PgListener) -> Result<(), sqlx::Error> {
        // Logs written while nobody listened are not replayed: the feed is live.
        self.last_log_id = sqlx::query_scalar(LOGS_SETTLED)
            .fetch_one(&self.pool)
            .await?;
        self.live.send_replace(true);
        loop {
            // `recv` would reconnect by itself and say nothing of what it missed meanwhile.
            let Some(first) = listener.try_recv().await? else {
                tracing::warn!("live feed lost its database connection; reconnecting");
                return Ok(());
            };
            let mut event_ids = Vec::new();
            let mut logs = false;
            let mut take = |channel: &str, payload: &str, event_ids: &mut Vec<i64>| {
                if channel == LOGS_CHANNEL {
                    logs = true;
                } else if let Some(id) = serde_json::from_str::<Value>(payload)
                    .ok()
                    .and_then(|v| v.get("id").and_then(Value::as_i64))
                {
                    event_ids.push(id);
                }
            };
            take(first.channel(), first.payload(), &mut event_ids);
            while event_ids.len() < NOTIFICATION_BATCH {
                match listener.next_buffered() {
                    Some(next) => take(next.channel(), next.payload(), &mut event_ids),
                    None => break,
                }
            }
            if self.tx.receiver_count() == 0 {
                if logs {
                    self.last_log_id = sqlx::query_scalar(LOGS_SETTLED)
                        .fetch_one(&self.pool)
                        .await?;
                }
                continue;
            }
            if !event_ids.is_empty() {
                self.send_events(&event_ids).await?;
            }
            if logs {
                self.send_logs().await?;
            }
        }
    }

    async fn send_events(&self, ids: &[i64]) -> Result<(), sqlx::Error> {
        let events: Vec<EventRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM task_events WHERE id = ANY($1) ORDER BY id"
        )))
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        let task_ids: Vec<Uuid> = events.iter().map(|e| e.task_id).collect();
        let tasks: HashMap<Uuid, TaskRow> = sqlx::query_as::<_, TaskRow>(sqlx::AssertSqlSafe(
            format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ANY($1)"),
        ))
        .bind(&task_ids)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|task| (task.id, task))
        .collect();
        for event in events {
            // The task as it is now: its latest state follows its latest event.
            let Some(task) = tasks.get(&event.task_id) else {
                continue;
            };
            let frame = Frame {
                is_log: false,
                task_id: Some(task.id),
                kind: Some(task.kind.clone()),
                trace_id: Some(task.trace_id.clone()),
                correlation_id: task.correlation_id.clone(),
                text: json!({"type": "task", "event": event.into_out(), "task": task.to_out()})
                    .to_string()
                    .into(),
                interrupted: false,
            };
            let _ = self.tx.send(Arc::new(frame));
        }
        Ok(())
    }

    async fn send_logs(&mut self) -> Result<(), sqlx::Error> {
        // Its own statement, before the reads: they see every write settled up to it.
        let settled: Option<i64> = sqlx::query_scalar(LOGS_SETTLED)
            .fetch_one(&self.pool)
            .await?;
        loop {
            let rows: Vec<LogOut> = sqlx::query_as(
                "SELECT id, ts, received_at, level, service, message, trace_id, correlation_id, task_id, fields
                 FROM logs WHERE id > coalesce($1, 0) AND id <= $2 ORDER BY id LIMIT $3",
            )
            .bind(self.last_log_id)
            .bind(settled)
            .bind(LOG_BATCH)
            .fetch_all(&self.pool)
            .await?;
            let count = rows.len() as i64;
            for row in rows {
                self.last_log_id = Some(row.id);
                let frame = Frame {
                    is_log: true,
                    task_id: row.task_id,
                    kind: None,
                    trace_id: row.trace_id.clone(),
                    correlation_id: row.correlation_id.clone(),
                    text: json!({"type": "log", "log": row}).to_string().into(),
                    interrupted: false,
                };
                let _ = self.tx.send(Arc::new(frame));
            }
            if count < LOG_BATCH {
                self.last_log_id = self.last_log_id.max(settled);
                return Ok(());
            }
        }
    }
}
