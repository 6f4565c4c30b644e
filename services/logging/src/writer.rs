//! The writers: [`WRITERS`] tasks take queued records in chunks and copy each chunk into the
//! table at once, side by side (one Postgres backend per chunk in flight, so ingestion is not
//! bound to one core of the database).
//!
//! Ids still follow the queue: a writer reserves its chunk's block of ids (`logs_begin_write`,
//! see the migration that defines it) in the order the chunks were taken. Chunks in flight
//! commit in any order, though, so a record can become visible before one with a smaller id.
//! The reservation therefore also announces the write until it has committed; readers that
//! resume "after id N" only ever read up to `logs_settled_id()`, below which no write is in
//! flight, and so can never skip a row that commits late.

use std::sync::Arc;
use std::time::Duration;

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::PgArgumentBuffer;
use sqlx::{Encode, Postgres};
use sqlx::{PgConnection, PgPool};
use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ingest::{Batch, BatchReceiver};
use crate::metrics::{LogMetrics, Reason};
use crate::model::Record;

/// Records a writer takes at once (it stops taking batches once it has this many). Large
/// chunks amortise the work of each write (the reservation, the statement, the notification).
pub const WRITE_CHUNK: usize = 10_000;

/// Writes in flight at once, each on a connection of its own.
pub const WRITERS: usize = 3;

/// Notified after every write has settled; listeners then ask for `logs_settled_id()`.
pub const CHANNEL: &str = "autonoma_logs";

/// The readers' bound: every id up to it is committed or will never be.
pub const SETTLED_ID: &str = "SELECT logs_settled_id()";

/// Ingestion is bound by the database, and binary `COPY` costs it less per row than a
/// multi-row `INSERT … SELECT FROM UNNEST` of the same rows (10–20% less Postgres CPU per line
/// in the ingest bench, `services/logging/benches/ingest.rs`).
pub const COPY: &str = "COPY logs (id, ts, received_at, level, service, message, trace_id, \
                    correlation_id, task_id, fields) FROM STDIN (FORMAT binary)";

/// [`COPY`] for rows without ids, which the table's identity column numbers.
pub const COPY_NUMBERED_BY_TABLE: &str = "COPY logs (ts, received_at, level, service, message, \
                    trace_id, correlation_id, task_id, fields) FROM STDIN (FORMAT binary)";

const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// Starts [`WRITERS`] writers on the queue. The handle resolves, once all have drained the
/// queue after `stop`, to how many acknowledged records they gave up on because the database
/// kept failing while stopping.
pub fn spawn(
    rx: BatchReceiver,
    pool: PgPool,
    metrics: LogMetrics,
    stop: CancellationToken,
    patience: Duration,
) -> JoinHandle<usize> {
    let rx = Arc::new(Mutex::new(rx));
    let turn = Arc::new(Mutex::new(()));
    let writers: Vec<JoinHandle<usize>> = (0..WRITERS)
        .map(|_| {
            let writer = Writer::new(
                rx.clone(),
                turn.clone(),
                pool.clone(),
                metrics.clone(),
                stop.clone(),
                patience,
            );
            tokio::spawn(writer.run())
        })
        .collect();
    tokio::spawn(async move {
        let mut lost = 0;
        for writer in writers {
            match writer.await {
                Ok(count) => lost += count,
                Err(error) => tracing::error!(%error, "a log writer failed"),
            }
        }
        lost
    })
}

pub struct Writer {
    /// Shared by the writers: one takes a chunk at a time.
    rx: Arc<Mutex<BatchReceiver>>,
    /// Taken (fairly, so in turn) with a chunk and held until its ids are reserved: ids then
    /// follow the order in which records were queued.
    turn: Arc<Mutex<()>>,
    pool: PgPool,
    metrics: LogMetrics,
    /// Cancelled once the server has stopped: nothing new can be queued, so drain and stop.
    stop: CancellationToken,
    /// How long, once stopping, to keep retrying a database that keeps failing.
    patience: Duration,
    stopped_at: Option<Instant>,
    failing_since: Option<Instant>,
    /// Acknowledged records given up on while stopping.
    lost: usize,
}

impl Writer {
    pub fn new(
        rx: Arc<Mutex<BatchReceiver>>,
        turn: Arc<Mutex<()>>,
        pool: PgPool,
        metrics: LogMetrics,
        stop: CancellationToken,
        patience: Duration,
    ) -> Self {
        Writer {
            rx,
            turn,
            pool,
            metrics,
            stop,
            patience,
            stopped_at: None,
            failing_since: None,
            lost: 0,
        }
    }

    /// Writes until `stop`, then writes everything still queued. Returns how many acknowledged
    /// records it gave up on because the database kept failing while stopping.
    pub async fn run(mut self) -> usize {
        while let Some((taken, turn)) = self.take().await {
            self.store(taken, turn).await;
        }

        // A send that succeeded before `close` is still in the channel and is drained below;
        // any later send fails, and its request is answered 503 instead of 202.
        self.rx.lock().await.close();
        self.stopped_at.get_or_insert_with(Instant::now);
        let mut drained = 0;
        loop {
            let (taken, turn) = {
                let mut rx = self.rx.lock().await;
                let turn = self.turn.clone().lock_owned().await;
                let mut taken = Vec::new();
                let mut count = 0;
                while count < WRITE_CHUNK {
                    match rx.recv().await {
                        Some(batch) => {
                            count += batch.records.len();
                            taken.push(batch);
                        }
                        None => break,
                    }
                }
                (taken, turn)
            };
            if taken.is_empty() {
                break;
            }
            drained += taken.iter().map(|b| b.records.len()).sum::<usize>();
            self.store(taken, turn).await;
        }
        tracing::info!(
            records = drained,
            "log writer drained the queue and stopped"
        );
        self.lost
    }

    /// The next chunk: what is queued up to [`WRITE_CHUNK`] records, once there is something,
    /// with this chunk's turn to reserve ids; `None` once stopping.
    async fn take(&self) -> Option<(Vec<Batch>, OwnedMutexGuard<()>)> {
        let mut rx = tokio::select! {
            biased;
            () = self.stop.cancelled() => return None,
            rx = self.rx.lock() => rx,
        };
        let first = tokio::select! {
            biased;
            batch = rx.recv() => batch,
            () = self.stop.cancelled() => None,
        }?;
        let mut count = first.records.len();
        let mut taken = vec![first];
        while count < WRITE_CHUNK {
            match rx.try_recv() {
                Ok(batch) => {
                    count += batch.records.len();
                    taken.push(batch);
                }
                Err(_) => break,
            }
        }
        // Queued behind the writer before this one: taken while the queue is still held.
        let turn = self.turn.clone().lock_owned().await;
        Some((taken, turn))
    }

    /// Stores the batches in one write, then releases their queue places.
    async fn store(&mut self, batches: Vec<Batch>, turn: OwnedMutexGuard<()>) {
        let records: Vec<&Record> = batches.iter().flat_map(|b| &b.records).collect();
        if !records.is_empty() {
            self.store_chunk(&records, turn).await;
        }
        self.metrics.dequeued(records.len());
    }

    async fn store_chunk(&mut self, chunk: &[&Record], turn: OwnedMutexGuard<()>) {
        match self.insert_with_retry(chunk, Some(turn)).await {
            Ok(()) => {}
            Err(Failure::Refused(error)) => {
                // Validation mirrors the table's constraints, so this is rare: find the
                // records the database refuses and keep the others.
                tracing::warn!(
                    error = %error,
                    records = chunk.len(),
                    "the database refused a chunk of log records; writing them one by one"
                );
                for record in chunk {
                    match self
                        .insert_with_retry(std::slice::from_ref(record), None)
                        .await
                    {
                        Ok(()) => {}
                        Err(Failure::Refused(error)) => {
                            self.metrics.rejected(Reason::Database, 1);
                            tracing::error!(
                                error = %error,
                                service = %record.service,
                                level = record.level.as_str(),
                                ts = %record.ts,
                                message = %preview(&record.message),
                                "the database refused an acknowledged log record; it is lost"
                            );
                        }
                        Err(Failure::GaveUp(_)) => self.unwritten(1),
                    }
                }
            }
            Err(Failure::GaveUp(error)) => {
                tracing::error!(error = %error, "database unreachable while shutting down");
                self.unwritten(chunk.len());
            }
        }
    }

    fn unwritten(&mut self, count: usize) {
        self.lost += count;
        self.metrics.rejected(Reason::Unwritten, count);
        tracing::error!(
            records = count,
            "acknowledged log records could not be written before shutdown; they are lost"
        );
    }

    /// Retries transient failures with backoff: forever while serving; once stopping, until
    /// the database has failed for `patience` without a success (counted from the stop at
    /// the earliest).
    async fn insert_with_retry(
        &mut self,
        records: &[&Record],
        mut turn: Option<OwnedMutexGuard<()>>,
    ) -> Result<(), Failure> {
        let mut delay = FIRST_RETRY;
        loop {
            // A retry reserves its ids whenever it can: the turn is passed on after one try.
            let error = match insert(&self.pool, records, turn.take()).await {
                Ok(()) => {
                    self.failing_since = None;
                    self.metrics.written(records.len());
                    return Ok(());
                }
                Err(error) if is_refusal(&error) => return Err(Failure::Refused(error)),
                Err(error) => error,
            };
            let failing_since = *self.failing_since.get_or_insert_with(Instant::now);
            if self.stop.is_cancelled() {
                let stopped_at = *self.stopped_at.get_or_insert_with(Instant::now);
                if Instant::now() >= failing_since.max(stopped_at) + self.patience {
                    return Err(Failure::GaveUp(error));
                }
            }
            tracing::warn!(
                error = %error,
                records = records.len(),
                retry_in = ?delay,
                "writing log records failed; retrying"
            );
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_RETRY);
        }
    }
}

enum Failure {
    /// The database rejects the data itself; retrying cannot help.
    Refused(sqlx::Error),
    /// Still failing when the shutdown patience ran out.
    GaveUp(sqlx::Error),
}

/// One write: ids reserved and the write announced (then `turn`, if given, is passed on),
/// copied in one statement (atomic), withdrawn with a notification.
pub async fn insert(
    pool: &PgPool,
    records: &[&Record],
    turn: Option<OwnedMutexGuard<()>>,
) -> Result<(), sqlx::Error> {
    if records.is_empty() {
        return Ok(());
    }
    let mut conn = pool.acquire().await?;
    let written = announced_copy(&mut conn, records, turn).await;
    if written.is_err() {
        // The session may still hold its announcement, which would hold every reader back:
        // ending the session releases it.
        conn.close_on_drop();
    }
    written
}

async fn announced_copy(
    conn: &mut PgConnection,
    records: &[&Record],
    turn: Option<OwnedMutexGuard<()>>,
) -> Result<(), sqlx::Error> {
    let count = i64::try_from(records.len()).map_err(|e| sqlx::Error::Encode(e.into()))?;
    let (floor, first): (i64, i64) =
        sqlx::query_as("SELECT floor, first FROM logs_begin_write($1)")
            .bind(count)
            .fetch_one(&mut *conn)
            .await?;
    drop(turn);
    // One message: sqlx 0.9.0 leaves Nagle's algorithm on (transact-rs/sqlx#4335), so a small
    // write right after a large one can wait ~40 ms for the server's delayed ACK.
    let mut data = COPY_HEADER.to_vec();
    data.extend(copy_rows(records.iter().copied(), Some(first)).map_err(sqlx::Error::Encode)?);
    data.extend_from_slice(COPY_TRAILER);
    let mut copy = conn.copy_in_raw(COPY).await?;
    copy.send(data).await?;
    copy.finish().await?;
    // Withdrawn before the notification is delivered (at the end of this statement), so a
    // reader it wakes finds these rows settled.
    sqlx::query("SELECT pg_advisory_unlock_shared($1), pg_notify($2, '')")
        .bind(floor)
        .bind(CHANNEL)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Starts `COPY … (FORMAT binary)` data: signature, flags, header extension length.
pub const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// Ends `COPY … (FORMAT binary)` data.
pub const COPY_TRAILER: &[u8] = b"\xff\xff";

/// `records` as rows of `COPY … (FORMAT binary)` data (no header or trailer): numbered from
/// `first_id` on for [`COPY`], or without ids for [`COPY_NUMBERED_BY_TABLE`]. Each value is
/// encoded by sqlx's own encoder, exactly as when it is bound to a statement.
pub fn copy_rows<'r>(
    records: impl IntoIterator<Item = &'r Record>,
    first_id: Option<i64>,
) -> Result<Vec<u8>, BoxDynError> {
    let mut out = PgArgumentBuffer::default();
    let columns = COLUMN_COUNT + i16::from(first_id.is_some());
    for (offset, record) in (0_i64..).zip(records) {
        out.extend_from_slice(&columns.to_be_bytes());
        if let Some(first) = first_id {
            field(&mut out, &(first + offset))?;
        }
        field(&mut out, &record.ts)?;
        field(&mut out, &record.received_at)?;
        field(&mut out, &record.level.as_str())?;
        field(&mut out, &record.service)?;
        field(&mut out, &record.message)?;
        field(&mut out, &record.trace_id)?;
        field(&mut out, &record.correlation_id)?;
        field(&mut out, &record.task_id)?;
        match &record.fields {
            Some(fields) => field(&mut out, fields)?,
            None => {
                out.extend_from_slice(&i32::try_from(EMPTY_OBJECT.len())?.to_be_bytes());
                out.extend_from_slice(EMPTY_OBJECT);
            }
        }
    }
    Ok(std::mem::take(&mut *out))
}

/// What a record without `fields` stores, in jsonb's binary input form: format version 1,
/// then the text.
const EMPTY_OBJECT: &[u8] = b"\x01{}";

/// The columns [`COPY_NUMBERED_BY_TABLE`] names (and [`COPY`] after the id), in order.
const COLUMN_COUNT: i16 = 9;

/// One value: its length (-1 for NULL), then its binary form.
fn field<'q, T: Encode<'q, Postgres>>(
    out: &mut PgArgumentBuffer,
    value: &T,
) -> Result<(), BoxDynError> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    match value.encode_by_ref(out)? {
        IsNull::Yes => out[start..start + 4].copy_from_slice(&(-1i32).to_be_bytes()),
        IsNull::No => {
            let length = i32::try_from(out.len() - start - 4)?;
            out[start..start + 4].copy_from_slice(&length.to_be_bytes());
        }
    }
    Ok(())
}

/// Data exceptions (22xxx) and constraint violations (23xxx) are about the records, not the
/// database's state.
fn is_refusal(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("22") || code.starts_with("23")),
        sqlx::Error::Encode(_) => true,
        _ => false,
    }
}

fn preview(message: &str) -> &str {
    match message.char_indices().nth(200) {
        Some((index, _)) => &message[..index],
        None => message,
    }
}
