//! Records older than `LOG_RETENTION_DAYS` are deleted (at start, then hourly); newer ones stay.

mod support;

use std::time::Duration;

use autonoma_testkit::test_db;
use logging::retention::{PURGE_BATCH, purge};
use sqlx::PgPool;
use support::start_on;
use tokio_util::sync::CancellationToken;

/// `count` rows whose `ts` is `age_days` days ago.
async fn insert_aged(pool: &PgPool, count: i64, age_days: i32, message: &str) {
    sqlx::query(
        "INSERT INTO logs (ts, level, service, message)
         SELECT now() - make_interval(days => $1), 'info', 'api', $2
         FROM generate_series(1, $3)",
    )
    .bind(age_days)
    .bind(message)
    .bind(count)
    .execute(pool)
    .await
    .expect("insert");
}

async fn count_of(pool: &PgPool, message: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM logs WHERE message = $1")
        .bind(message)
        .fetch_one(pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn the_service_deletes_expired_records_when_it_starts() {
    let db = test_db().await;
    insert_aged(&db.pool, 30, 20, "expired").await;
    insert_aged(&db.pool, 20, 6, "kept").await;
    insert_aged(&db.pool, 10, 0, "fresh").await;

    let service = start_on(db, &[("LOG_RETENTION_DAYS", "7")]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while count_of(&service.db.pool, "expired").await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "expired records still there"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(count_of(&service.db.pool, "kept").await, 20);
    assert_eq!(count_of(&service.db.pool, "fresh").await, 10);
    service.stop().await;
}

#[tokio::test]
async fn purging_works_through_a_backlog_in_batches() {
    let db = test_db().await;
    insert_aged(&db.pool, PURGE_BATCH * 2 + 7, 15, "expired").await;
    insert_aged(&db.pool, 5, 13, "kept").await;

    let deleted = purge(&db.pool, 14, &CancellationToken::new())
        .await
        .expect("purge");
    assert_eq!(deleted, (PURGE_BATCH * 2 + 7) as u64);
    assert_eq!(count_of(&db.pool, "expired").await, 0);
    assert_eq!(count_of(&db.pool, "kept").await, 5);

    let again = purge(&db.pool, 14, &CancellationToken::new())
        .await
        .expect("purge");
    assert_eq!(again, 0);
}
