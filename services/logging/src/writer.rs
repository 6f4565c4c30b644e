//! The writer: takes queued records in chunks and copies each chunk into the table at once.
//!
//! Every insert runs in a transaction that first takes a fixed advisory lock, so writers of
//! all replicas take turns: ids are assigned only while the lock is held and the lock is
//! released at commit, hence a record becomes visible only after every record with a smaller
//! id. Readers resume "after id N" and can never skip a row that commits late.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::PgArgumentBuffer;
use sqlx::{Encode, Postgres};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ingest::{Batch, BatchReceiver};
use crate::metrics::{LogMetrics, Reason};
use crate::model::Record;

/// Most records copied by one statement. Large chunks amortise the work of each transaction
/// (the lock, the statement, the notification, the commit).
pub const WRITE_CHUNK: usize = 10_000;

/// Held (per transaction) by every writer of the `logs` table.
pub const ADVISORY_LOCK_KEY: i64 = 0x6175_746f_6c6f_6773; // "autologs"

/// Notified with the newest id after every commit.
pub const CHANNEL: &str = "autonoma_logs";

/// Ingestion is bound by the database, and binary `COPY` costs it less per row than a
/// multi-row `INSERT … SELECT FROM UNNEST` of the same rows (10–20% less Postgres CPU per line
/// in the ingest bench, `services/logging/benches/ingest.rs`).
pub const COPY: &str = "COPY logs (ts, received_at, level, service, message, trace_id, correlation_id, \
                    task_id, fields) FROM STDIN (FORMAT binary)";

/// The id of the last copied row is the session's last value of the table's id sequence.
const NOTIFY_NEWEST: &str =
    "SELECT pg_notify($1, currval(pg_get_serial_sequence('logs', 'id'))::text)";

const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(5);

pub struct Writer {
    rx: BatchReceiver,
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
        rx: BatchReceiver,
        pool: PgPool,
        metrics: LogMetrics,
        stop: CancellationToken,
        patience: Duration,
    ) -> Self {
        Writer {
            rx,
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
        loop {
            let first = tokio::select! {
                biased;
                batch = self.rx.recv() => batch,
                () = self.stop.cancelled() => None,
            };
            let Some(first) = first else { break };
            let mut taken = vec![first];
            let mut count = taken[0].records.len();
            while count < WRITE_CHUNK {
                match self.rx.try_recv() {
                    Ok(batch) => {
                        count += batch.records.len();
                        taken.push(batch);
                    }
                    Err(_) => break,
                }
            }
            self.store(taken).await;
        }

        // A send that succeeded before `close` is still in the channel and is drained below;
        // any later send fails, and its request is answered 503 instead of 202.
        self.rx.close();
        self.stopped_at.get_or_insert_with(Instant::now);
        let mut taken = Vec::new();
        let mut count = 0;
        let mut drained = 0;
        while let Some(batch) = self.rx.recv().await {
            count += batch.records.len();
            taken.push(batch);
            if count >= WRITE_CHUNK {
                drained += count;
                self.store(std::mem::take(&mut taken)).await;
                count = 0;
            }
        }
        drained += count;
        self.store(taken).await;
        tracing::info!(
            records = drained,
            "log writer drained the queue and stopped"
        );
        self.lost
    }

    /// Stores the batches, then releases their queue places.
    async fn store(&mut self, batches: Vec<Batch>) {
        let records: Vec<&Record> = batches.iter().flat_map(|b| &b.records).collect();
        for chunk in records.chunks(WRITE_CHUNK) {
            self.store_chunk(chunk).await;
        }
        self.metrics.dequeued(records.len());
    }

    async fn store_chunk(&mut self, chunk: &[&Record]) {
        match self.insert_with_retry(chunk).await {
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
                    match self.insert_with_retry(std::slice::from_ref(record)).await {
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
    async fn insert_with_retry(&mut self, records: &[&Record]) -> Result<(), Failure> {
        let mut delay = FIRST_RETRY;
        loop {
            let error = match insert(&self.pool, records).await {
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

/// One transaction: the writers' lock, the copy, the notification of the newest id.
pub async fn insert(pool: &PgPool, records: &[&Record]) -> Result<(), sqlx::Error> {
    if records.is_empty() {
        return Ok(());
    }
    // One message: sqlx 0.9.0 leaves Nagle's algorithm on (transact-rs/sqlx#4335), so a small
    // write right after a large one can wait ~40 ms for the server's delayed ACK.
    let mut data = COPY_HEADER.to_vec();
    data.extend(copy_rows(records.iter().copied()).map_err(sqlx::Error::Encode)?);
    data.extend_from_slice(COPY_TRAILER);
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(ADVISORY_LOCK_KEY)
        .execute(&mut *tx)
        .await?;
    let mut copy = tx.copy_in_raw(COPY).await?;
    copy.send(data).await?;
    copy.finish().await?;
    sqlx::query(NOTIFY_NEWEST)
        .bind(CHANNEL)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// Starts `COPY … (FORMAT binary)` data: signature, flags, header extension length.
pub const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// Ends `COPY … (FORMAT binary)` data.
pub const COPY_TRAILER: &[u8] = b"\xff\xff";

/// `records` as rows of `COPY … (FORMAT binary)` data (no header or trailer). Each value is
/// encoded by sqlx's own encoder, exactly as when it is bound to a statement.
pub fn copy_rows<'r>(
    records: impl IntoIterator<Item = &'r Record>,
) -> Result<Vec<u8>, BoxDynError> {
    let mut out = PgArgumentBuffer::default();
    for record in records {
        out.extend_from_slice(&COLUMN_COUNT.to_be_bytes());
        field(&mut out, &record.ts)?;
        field(&mut out, &record.received_at)?;
        field(&mut out, &record.level.as_str())?;
        field(&mut out, &record.service)?;
        field(&mut out, &record.message)?;
        field(&mut out, &record.trace_id)?;
        field(&mut out, &record.correlation_id)?;
        field(&mut out, &record.task_id)?;
        // A `serde_json::Value` is encoded as jsonb: a format version, then the text.
        field(&mut out, &record.fields)?;
    }
    Ok(std::mem::take(&mut *out))
}

/// The columns `COPY` names, in order.
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
