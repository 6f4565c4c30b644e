//! The live feed behind `GET /ws`. One listener per replica turns Postgres notifications
//! (task events from any replica, log batches from the logging service) into frames, each
//! serialised once and broadcast to every connected client. The broadcast buffer is bounded:
//! a client that falls behind it is disconnected instead of buffering without end.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use autonoma_protocol::LogOut;
use axum::extract::ws::Utf8Bytes;
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::dispatch::TASK_EVENTS_CHANNEL;
use crate::tasks::{EVENT_COLUMNS, EventRow, TASK_COLUMNS, TaskRow};

pub const LOGS_CHANNEL: &str = "autonoma_logs";
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
}

#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<Arc<Frame>>,
}

impl Hub {
    pub fn start(pool: PgPool, capacity: usize, shutdown: CancellationToken) -> Hub {
        let (tx, _) = broadcast::channel(capacity);
        let hub = Hub { tx: tx.clone() };
        tokio::spawn(async move {
            let mut feed = Feed {
                pool,
                tx,
                last_log_id: None,
            };
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = feed.run() => {}
            }
        });
        hub
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Frame>> {
        self.tx.subscribe()
    }
}

struct Feed {
    pool: PgPool,
    tx: broadcast::Sender<Arc<Frame>>,
    last_log_id: Option<i64>,
}

impl Feed {
    async fn run(&mut self) {
        loop {
            match self.listen().await {
                Ok(listener) => {
                    if let Err(error) = self.pump(listener).await {
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
        self.last_log_id = sqlx::query_scalar("SELECT max(id) FROM logs")
            .fetch_one(&self.pool)
            .await?;
        loop {
            let first = listener.recv().await?;
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
                    self.last_log_id = sqlx::query_scalar("SELECT max(id) FROM logs")
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
            };
            let _ = self.tx.send(Arc::new(frame));
        }
        Ok(())
    }

    async fn send_logs(&mut self) -> Result<(), sqlx::Error> {
        loop {
            let rows: Vec<LogOut> = sqlx::query_as(
                "SELECT id, ts, received_at, level, service, message, trace_id, correlation_id, task_id, fields
                 FROM logs WHERE id > coalesce($1, 0) ORDER BY id LIMIT $2",
            )
            .bind(self.last_log_id)
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
                };
                let _ = self.tx.send(Arc::new(frame));
            }
            if count < LOG_BATCH {
                return Ok(());
            }
        }
    }
}
