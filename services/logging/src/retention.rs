//! Deletes records older than `LOG_RETENTION_DAYS`, at start and every hour.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Rows deleted per statement, so a large backlog never holds long locks or one huge
/// transaction.
pub const PURGE_BATCH: i64 = 10_000;
const INTERVAL: Duration = Duration::from_secs(3600);
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(60);

pub async fn run(pool: PgPool, days: u32, shutdown: CancellationToken) {
    loop {
        let wait = match purge(&pool, days, &shutdown).await {
            Ok(deleted) => {
                if deleted > 0 {
                    tracing::info!(deleted, days, "deleted log records past retention");
                }
                INTERVAL
            }
            Err(error) => {
                tracing::warn!(%error, "deleting log records past retention failed");
                RETRY_AFTER_ERROR
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Deletes every record whose `ts` is more than `days` days old, in batches; returns how many.
pub async fn purge(
    pool: &PgPool,
    days: u32,
    shutdown: &CancellationToken,
) -> Result<u64, sqlx::Error> {
    let days = i32::try_from(days).unwrap_or(i32::MAX);
    let mut total = 0;
    loop {
        let deleted = sqlx::query(
            "DELETE FROM logs WHERE id IN (
                 SELECT id FROM logs WHERE ts < now() - make_interval(days => $1) LIMIT $2
             )",
        )
        .bind(days)
        .bind(PURGE_BATCH)
        .execute(pool)
        .await?
        .rows_affected();
        total += deleted;
        if deleted < PURGE_BATCH as u64 || shutdown.is_cancelled() {
            return Ok(total);
        }
    }
}
