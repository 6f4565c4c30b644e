use autonoma_testkit::{empty_db, test_db};

async fn table_exists(pool: &sqlx::PgPool, table: &str) -> bool {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(table)
        .fetch_one(pool)
        .await
        .expect("query to_regclass")
}

#[tokio::test]
async fn each_test_db_is_fresh_and_migrated() {
    let a = test_db().await;
    let b = test_db().await;
    assert_ne!(a.name, b.name);
    assert_ne!(a.url, b.url);
    assert!(a.name.starts_with("test_"), "{}", a.name);

    let expected = i64::try_from(autonoma_migrations::MIGRATOR.iter().count()).expect("count");
    assert!(expected > 0);
    for db in [&a, &b] {
        let current: String = sqlx::query_scalar("SELECT current_database()")
            .fetch_one(&db.pool)
            .await
            .expect("current_database");
        assert_eq!(current, db.name);
        let applied: i64 =
            sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(&db.pool)
                .await
                .expect("count migrations");
        assert_eq!(applied, expected);
        assert!(table_exists(&db.pool, "tasks").await);
    }

    sqlx::query("CREATE TABLE only_in_a (v int)")
        .execute(&a.pool)
        .await
        .expect("create table");
    assert!(table_exists(&a.pool, "only_in_a").await);
    assert!(!table_exists(&b.pool, "only_in_a").await);
}

#[tokio::test]
async fn empty_db_has_no_schema() {
    let db = empty_db().await;
    assert!(!table_exists(&db.pool, "tasks").await);
    assert!(!table_exists(&db.pool, "_sqlx_migrations").await);

    autonoma_migrations::MIGRATOR
        .run(&db.pool)
        .await
        .expect("migrations apply to an empty database");
    assert!(table_exists(&db.pool, "tasks").await);
}

#[tokio::test]
async fn dropping_a_test_db_drops_its_database() {
    let observer = empty_db().await;
    let doomed = empty_db().await;
    let name = doomed.name.clone();
    // An open connection must not keep the database alive.
    let mut held = doomed.pool.acquire().await.expect("acquire");
    sqlx::query("SELECT 1")
        .execute(&mut *held)
        .await
        .expect("use connection");

    let exists = || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
        )
        .bind(&name)
        .fetch_one(&observer.pool)
        .await
        .expect("query pg_database")
    };
    assert!(exists().await);
    drop(doomed);
    assert!(!exists().await);
    drop(held);
}
