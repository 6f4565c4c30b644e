//! The Postgres backend: tables `bus_queues` and `bus_messages` (migration `..._bus.sql`).
//!
//! A receive claims visible messages with `FOR UPDATE SKIP LOCKED`, so any number of
//! receivers (in any number of processes) share a queue without taking the same message.
//! A waiting receive sleeps until a trigger's NOTIFY on `autonoma_bus` names its queue, the
//! next hidden message of the queue becomes visible, or its wait runs out. One LISTEN
//! connection per [`PgBus`] serves all its waiting receives.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use autonoma_common::wakeups::Wakeups;
use sqlx::PgPool;
use sqlx::types::Json;
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use crate::{Error, Message, OutgoingMessage, QueueOptions, QueueRef, Receipt, Result, dlq_name};

const CHANNEL: &str = "autonoma_bus";
/// Pause before looking again when visible messages exist but other receivers hold them all.
const BUSY_RETRY: Duration = Duration::from_millis(20);
/// id, body, attributes, receive_count, receipt.
type Row = (Uuid, String, Json<BTreeMap<String, String>>, i32, Uuid);

#[derive(Clone)]
pub struct PgBus {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    wakeups: Wakeups,
}

impl PgBus {
    /// A bus on `pool`, whose database has the bus migration applied. Starts listening at once,
    /// so no message sent after this returns can be missed by a waiting receive.
    pub async fn new(pool: PgPool) -> Result<Self> {
        // The payload is the queue's name.
        let wakeups = Wakeups::listen(&pool, CHANNEL, |queue| queue).await?;
        Ok(PgBus {
            inner: Arc::new(Inner { pool, wakeups }),
        })
    }

    fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    fn subscribe(&self, queue: &str) -> watch::Receiver<()> {
        self.inner.wakeups.subscribe(queue)
    }

    pub(crate) async fn ensure_queue(
        &self,
        name: &str,
        options: &QueueOptions,
    ) -> Result<QueueRef> {
        let seconds = i64::try_from(crate::whole_seconds(options.visibility_timeout))
            .map_err(|_| Error::InvalidArgument("visibility timeout out of range".into()))?;
        let max_receives = options.max_receives.map(i64::from);
        let dlq = options.max_receives.map(|_| dlq_name(name));
        let mut tx = self.pool().begin().await?;
        if let Some(dlq) = &dlq {
            // An existing dead-letter queue keeps its own options.
            sqlx::query(
                "INSERT INTO bus_queues (name, visibility_timeout)
                 VALUES ($1, interval '30 seconds')
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(dlq)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO bus_queues (name, visibility_timeout, max_receives, dlq)
             VALUES ($1, $2 * interval '1 second', $3, $4)
             ON CONFLICT (name) DO UPDATE
             SET visibility_timeout = excluded.visibility_timeout,
                 max_receives = excluded.max_receives,
                 dlq = excluded.dlq",
        )
        .bind(name)
        .bind(seconds)
        .bind(max_receives)
        .bind(&dlq)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(queue_ref(name))
    }

    pub(crate) async fn open_queue(&self, name: &str) -> Result<QueueRef> {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM bus_queues WHERE name = $1)")
                .bind(name)
                .fetch_one(self.pool())
                .await?;
        if exists {
            Ok(queue_ref(name))
        } else {
            Err(Error::QueueNotFound(name.to_owned()))
        }
    }

    pub(crate) async fn send(
        &self,
        queue: &QueueRef,
        body: &str,
        attributes: &BTreeMap<String, String>,
    ) -> Result<String> {
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO bus_messages (id, queue, body, attributes) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(&queue.locator)
        .bind(body)
        .bind(Json(attributes))
        .execute(self.pool())
        .await
        .map_err(|err| missing_queue(err, queue))?;
        Ok(id.to_string())
    }

    pub(crate) async fn send_batch(
        &self,
        queue: &QueueRef,
        entries: &[OutgoingMessage],
    ) -> Result<Vec<String>> {
        let ids: Vec<Uuid> = entries.iter().map(|_| Uuid::now_v7()).collect();
        let bodies: Vec<&str> = entries.iter().map(|e| e.body.as_str()).collect();
        let attributes = entries
            .iter()
            .map(|e| serde_json::to_value(&e.attributes))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| Error::InvalidMessage(err.to_string()))?;
        sqlx::query(
            "INSERT INTO bus_messages (id, queue, body, attributes)
             SELECT id, $1, body, attributes
             FROM unnest($2::uuid[], $3::text[], $4::jsonb[]) AS m (id, body, attributes)",
        )
        .bind(&queue.locator)
        .bind(&ids)
        .bind(&bodies)
        .bind(&attributes)
        .execute(self.pool())
        .await
        .map_err(|err| missing_queue(err, queue))?;
        Ok(ids.iter().map(Uuid::to_string).collect())
    }

    pub(crate) async fn receive(
        &self,
        queue: &QueueRef,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Message>> {
        let deadline = Instant::now() + wait;
        // Subscribed before the first look, so a send between the look and the wait still
        // wakes this receive.
        let mut wake = self.subscribe(&queue.locator);
        loop {
            wake.borrow_and_update();
            let messages = self.take(queue, max).await?;
            if !messages.is_empty() {
                return Ok(messages);
            }
            // Also how a missing queue is noticed, so it is an error even without a wait.
            let next = self.next_visible_in(queue).await?;
            let now = Instant::now();
            if now >= deadline {
                return Ok(messages);
            }
            let mut pause = deadline - now;
            if let Some(next) = next {
                pause = pause.min(next.max(BUSY_RETRY));
            }
            tokio::select! {
                changed = wake.changed() => {
                    if changed.is_err() {
                        tokio::time::sleep(pause).await;
                    }
                }
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Claims up to `max` visible messages; those received `max_receives` times already move
    /// to the dead-letter queue instead (as SQS's redrive does).
    async fn take(&self, queue: &QueueRef, max: usize) -> Result<Vec<Message>> {
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let rows: Vec<Row> = sqlx::query_as(
            "WITH q AS (
                     SELECT visibility_timeout, max_receives, dlq FROM bus_queues WHERE name = $1
                 ),
                 picked AS (
                     SELECT m.id,
                            q.max_receives IS NOT NULL AND m.receive_count >= q.max_receives
                                AS dead
                     FROM bus_messages m CROSS JOIN q
                     WHERE m.queue = $1 AND m.visible_at <= now()
                     ORDER BY m.visible_at, m.id
                     LIMIT $2
                     FOR UPDATE OF m SKIP LOCKED
                 ),
                 moved AS (
                     UPDATE bus_messages m
                     SET queue = q.dlq, visible_at = now(), receipt = NULL
                     FROM picked CROSS JOIN q
                     WHERE m.id = picked.id AND picked.dead
                     RETURNING m.id
                 )
                 UPDATE bus_messages m
                 SET visible_at = now() + q.visibility_timeout,
                     receive_count = m.receive_count + 1,
                     receipt = gen_random_uuid()
                 FROM picked CROSS JOIN q
                 WHERE m.id = picked.id AND NOT picked.dead
                 RETURNING m.id, m.body, m.attributes, m.receive_count, m.receipt",
        )
        .bind(&queue.locator)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let mut messages: Vec<Message> = rows
            .into_iter()
            .map(|(id, body, Json(attributes), count, receipt)| Message {
                id: id.to_string(),
                body,
                attributes,
                receive_count: u32::try_from(count).unwrap_or(0),
                receipt: Receipt(format!("{id}:{receipt}")),
            })
            .collect();
        messages.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(messages)
    }

    /// How long until the queue's next message is visible (zero when one is visible now but
    /// held by another receiver); `None` when the queue is empty.
    async fn next_visible_in(&self, queue: &QueueRef) -> Result<Option<Duration>> {
        let (exists, seconds): (bool, Option<f64>) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM bus_queues WHERE name = $1),
                    (SELECT EXTRACT(EPOCH FROM min(visible_at) - now())::float8
                     FROM bus_messages WHERE queue = $1)",
        )
        .bind(&queue.locator)
        .fetch_one(self.pool())
        .await?;
        if !exists {
            return Err(Error::QueueNotFound(queue.name.clone()));
        }
        Ok(seconds.map(|s| Duration::try_from_secs_f64(s).unwrap_or(Duration::ZERO)))
    }

    pub(crate) async fn delete(&self, queue: &QueueRef, receipt: &Receipt) -> Result<()> {
        let (id, handle) = parse_receipt(receipt)?;
        sqlx::query("DELETE FROM bus_messages WHERE id = $1 AND queue = $2 AND receipt = $3")
            .bind(id)
            .bind(&queue.locator)
            .bind(handle)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub(crate) async fn change_visibility(
        &self,
        queue: &QueueRef,
        receipt: &Receipt,
        seconds: u64,
    ) -> Result<()> {
        let (id, handle) = parse_receipt(receipt)?;
        let seconds = i64::try_from(seconds)
            .map_err(|_| Error::InvalidArgument("visibility timeout out of range".into()))?;
        let changed = sqlx::query(
            "UPDATE bus_messages SET visible_at = now() + $4 * interval '1 second'
             WHERE id = $1 AND queue = $2 AND receipt = $3 AND visible_at > now()",
        )
        .bind(id)
        .bind(&queue.locator)
        .bind(handle)
        .bind(seconds)
        .execute(self.pool())
        .await?;
        if changed.rows_affected() == 0 {
            return Err(Error::StaleReceipt);
        }
        Ok(())
    }
}

fn queue_ref(name: &str) -> QueueRef {
    QueueRef {
        name: name.to_owned(),
        locator: name.to_owned(),
    }
}

fn parse_receipt(receipt: &Receipt) -> Result<(Uuid, Uuid)> {
    receipt
        .0
        .split_once(':')
        .and_then(|(id, handle)| Some((Uuid::parse_str(id).ok()?, Uuid::parse_str(handle).ok()?)))
        .ok_or_else(|| Error::InvalidArgument("not a receipt of the Postgres bus".into()))
}

fn missing_queue(err: sqlx::Error, queue: &QueueRef) -> Error {
    match &err {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
            Error::QueueNotFound(queue.name.clone())
        }
        _ => Error::Database(err),
    }
}
