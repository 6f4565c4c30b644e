//! Migrations against a real Postgres, the constraints they create, and readiness.

mod support;

use std::time::Duration;

use autonoma_common::config::DatabaseConfig;
use autonoma_common::db;
use autonoma_testkit::{empty_db, test_db};
use secrecy::SecretString;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};
use support::{http, start_with_database};
use utoipa_axum::router::OpenApiRouter;

const TABLES: [&str; 6] = [
    "agents",
    "agent_kinds",
    "agent_heartbeats",
    "tasks",
    "task_events",
    "logs",
];

async fn table_exists(pool: &PgPool, table: &str) -> bool {
    sqlx::query_scalar::<_, bool>("SELECT to_regclass($1) IS NOT NULL")
        .bind(format!("public.{table}"))
        .fetch_one(pool)
        .await
        .expect("query")
}

async fn applied(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(pool)
        .await
        .expect("query")
}

#[tokio::test]
async fn migrations_apply_to_an_empty_database_and_again_as_a_no_op() {
    let db = empty_db().await;
    for table in TABLES {
        assert!(
            !table_exists(&db.pool, table).await,
            "{table} exists before migrating"
        );
    }
    db::migrate(&db.pool).await.expect("first run");
    for table in TABLES {
        assert!(
            table_exists(&db.pool, table).await,
            "{table} missing after migrating"
        );
    }
    let count = applied(&db.pool).await;
    assert_eq!(count as usize, autonoma_migrations::MIGRATOR.iter().count());
    db::migrate(&db.pool).await.expect("second run");
    assert_eq!(applied(&db.pool).await, count);
}

#[tokio::test]
async fn concurrent_migrators_apply_each_migration_once() {
    let db = empty_db().await;
    let pools: Vec<PgPool> = futures::future::join_all(
        (0..4).map(|_| PgPoolOptions::new().max_connections(2).connect(&db.url)),
    )
    .await
    .into_iter()
    .collect::<Result<_, _>>()
    .expect("pools");
    let results = futures::future::join_all(pools.iter().map(db::migrate)).await;
    for result in results {
        result.expect("every migrator succeeds");
    }
    assert_eq!(
        applied(&db.pool).await as usize,
        autonoma_migrations::MIGRATOR.iter().count()
    );
    assert!(table_exists(&db.pool, "tasks").await);
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

async fn insert_task(
    pool: &PgPool,
    status: &str,
    key: Option<&str>,
) -> Result<uuid::Uuid, sqlx::Error> {
    let id = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO tasks (id, kind, status, trace_id, idempotency_key, finished_at)
         VALUES ($1, 'echo', $2, $3, $4,
                 CASE WHEN $2 IN ('succeeded','failed','cancelled','dead') THEN now() END)",
    )
    .bind(id)
    .bind(status)
    .bind(TRACE)
    .bind(key)
    .execute(pool)
    .await?;
    Ok(id)
}

fn constraint_of(error: sqlx::Error) -> String {
    error
        .as_database_error()
        .and_then(|e| {
            e.constraint()
                .map(str::to_owned)
                .or_else(|| Some(e.message().to_owned()))
        })
        .unwrap_or_else(|| panic!("expected a database error, got {error}"))
}

#[tokio::test]
async fn the_database_refuses_what_the_services_must_never_store() {
    let db = test_db().await;
    let pool = &db.pool;

    insert_task(pool, "queued", Some("order-1"))
        .await
        .expect("a valid task");
    let error = insert_task(pool, "queued", Some("order-1"))
        .await
        .expect_err("duplicate idempotency key");
    assert_eq!(constraint_of(error), "tasks_idempotency_key");

    let error = insert_task(pool, "exploded", None)
        .await
        .expect_err("unknown status");
    assert_eq!(constraint_of(error), "tasks_status_check");

    let error =
        sqlx::query("INSERT INTO tasks (id, kind, trace_id) VALUES ($1, 'echo', 'not-hex')")
            .bind(uuid::Uuid::now_v7())
            .execute(pool)
            .await
            .expect_err("bad trace id");
    assert_eq!(constraint_of(error), "tasks_trace_id_check");

    let error = sqlx::query(
        "INSERT INTO tasks (id, kind, trace_id, attempts, max_attempts) VALUES ($1, 'echo', $2, 4, 3)",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(TRACE)
    .execute(pool)
    .await
    .expect_err("attempts over max");
    assert_eq!(constraint_of(error), "tasks_attempts_within_max");

    let error = sqlx::query(
        "INSERT INTO tasks (id, kind, status, trace_id) VALUES ($1, 'echo', 'succeeded', $2)",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(TRACE)
    .execute(pool)
    .await
    .expect_err("final status without finished_at");
    assert_eq!(constraint_of(error), "tasks_finished_only_when_final");

    let error = sqlx::query("INSERT INTO agents (name, transport) VALUES ('mailer', 'http')")
        .execute(pool)
        .await
        .expect_err("http agent without base url");
    assert_eq!(constraint_of(error), "agents_http_needs_base_url");

    let error = sqlx::query(
        "INSERT INTO logs (ts, level, service, message) VALUES (now(), 'loud', 'x', 'm')",
    )
    .execute(pool)
    .await
    .expect_err("unknown log level");
    assert_eq!(constraint_of(error), "logs_level_check");

    let long_name = "x".repeat(65);
    for (service, trace_id, constraint) in [
        ("Orchestrator", None, "logs_service_check"),
        ("-orchestrator", None, "logs_service_check"),
        ("9lives", None, "logs_service_check"),
        ("", None, "logs_service_check"),
        ("has space", None, "logs_service_check"),
        (long_name.as_str(), None, "logs_service_check"),
        (
            "ok",
            Some("4BF92F3577B34DA6A3CE929D0E0E4736"),
            "logs_trace_id_check",
        ),
        (
            "ok",
            Some("4bf92f3577b34da6a3ce929d0e0e473"),
            "logs_trace_id_check",
        ),
        (
            "ok",
            Some("4bf92f3577b34da6a3ce929d0e0e473g"),
            "logs_trace_id_check",
        ),
    ] {
        let error = sqlx::query(
            "INSERT INTO logs (ts, level, service, message, trace_id) VALUES (now(), 'info', $1, 'm', $2)",
        )
        .bind(service)
        .bind(trace_id)
        .execute(pool)
        .await
        .expect_err(service);
        assert_eq!(constraint_of(error), constraint, "{service:?} {trace_id:?}");
    }
    sqlx::query(
        "INSERT INTO logs (ts, level, service, message, trace_id) VALUES (now(), 'info', 'echo-agent2', 'm', $1)",
    )
    .bind(TRACE)
    .execute(pool)
    .await
    .expect("a valid row");
}

/// The task and event checks run on every dispatch and completion without the regex engine;
/// they must still admit exactly what their original patterns (kept here) admit.
#[tokio::test]
async fn task_checks_admit_exactly_what_their_patterns_admit() {
    let db = test_db().await;
    let pool = &db.pool;
    let task = insert_task(pool, "queued", None).await.expect("task");
    let matches = |text: String, pattern: &'static str| async move {
        sqlx::query_scalar::<_, bool>("SELECT $1 ~ $2")
            .bind(text)
            .bind(pattern)
            .fetch_one(pool)
            .await
            .expect("regex")
    };

    let longest = format!("a{}", "b".repeat(127));
    let names: Vec<String> = [
        "echo", "a", "a-b_c.d9", "", "A", "Echo", "9a", "-a", "_a", ".a", "a b", "a\n", "é", "aé",
        "a/b", "run_once",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain([
        longest.clone(),
        format!("{longest}c"),
        "a".repeat(64),
        "a".repeat(65),
    ])
    .collect();
    for name in &names {
        let kind = sqlx::query("INSERT INTO tasks (id, kind, trace_id) VALUES ($1, $2, $3)")
            .bind(uuid::Uuid::now_v7())
            .bind(name)
            .bind(TRACE)
            .execute(pool)
            .await;
        let expected = matches(name.clone(), "^[a-z][a-z0-9_.-]{0,127}$").await;
        assert_eq!(kind.is_ok(), expected, "kind {name:?}: {kind:?}");

        let event = sqlx::query(
            "INSERT INTO task_events (task_id, event_type, actor, version) VALUES ($1, $2, 'test', 1)",
        )
        .bind(task)
        .bind(name)
        .execute(pool)
        .await;
        let expected = matches(name.clone(), "^[a-z][a-z_]{0,63}$").await;
        assert_eq!(event.is_ok(), expected, "event type {name:?}: {event:?}");
    }

    for trace in [
        TRACE,
        "4BF92F3577B34DA6A3CE929D0E0E4736",
        "4bf92f3577b34da6a3ce929d0e0e473",
        "4bf92f3577b34da6a3ce929d0e0e47366",
        "4bf92f3577b34da6a3ce929d0e0e473g",
        "4bf92f3577b34da6a3ce929d0e0e473é",
        "00000000000000000000000000000000",
        "",
    ] {
        let valid = matches(trace.to_owned(), "^[0-9a-f]{32}$").await;
        let in_task = sqlx::query("INSERT INTO tasks (id, kind, trace_id) VALUES ($1, 'echo', $2)")
            .bind(uuid::Uuid::now_v7())
            .bind(trace)
            .execute(pool)
            .await;
        assert_eq!(
            in_task.is_ok(),
            valid && trace != "0".repeat(32),
            "task trace id {trace:?}: {in_task:?}"
        );
        let in_event = sqlx::query(
            "INSERT INTO task_events (task_id, event_type, actor, version, trace_id) VALUES ($1, 'created', 'test', 1, $2)",
        )
        .bind(task)
        .bind(trace)
        .execute(pool)
        .await;
        assert_eq!(
            in_event.is_ok(),
            valid,
            "event trace id {trace:?}: {in_event:?}"
        );
    }
    sqlx::query(
        "INSERT INTO task_events (task_id, event_type, actor, version, trace_id) VALUES ($1, 'created', 'test', 1, NULL)",
    )
    .bind(task)
    .execute(pool)
    .await
    .expect("an event without a trace id");
}

#[tokio::test]
async fn task_events_are_append_only() {
    let db = test_db().await;
    let task = insert_task(&db.pool, "queued", None).await.expect("task");
    sqlx::query(
        "INSERT INTO task_events (task_id, event_type, actor, to_status, version) VALUES ($1, 'created', 'test', 'queued', 1)",
    )
    .bind(task)
    .execute(&db.pool)
    .await
    .expect("append");

    for statement in [
        "UPDATE task_events SET actor = 'someone else'",
        "DELETE FROM task_events",
        "TRUNCATE task_events",
    ] {
        let error = sqlx::query(statement)
            .execute(&db.pool)
            .await
            .expect_err(statement);
        let message = error
            .as_database_error()
            .map(|e| e.message().to_owned())
            .unwrap_or_default();
        assert!(message.contains("append-only"), "{statement}: {message}");
    }
    let error = sqlx::query("DELETE FROM tasks WHERE id = $1")
        .bind(task)
        .execute(&db.pool)
        .await
        .expect_err("a task with history cannot be deleted");
    assert!(error.as_database_error().is_some());

    let row = sqlx::query("SELECT count(*) AS n FROM task_events WHERE task_id = $1")
        .bind(task)
        .fetch_one(&db.pool)
        .await
        .expect("count");
    assert_eq!(row.get::<i64, _>("n"), 1);
}

fn database_config(url: &str, migrate: bool) -> DatabaseConfig {
    DatabaseConfig {
        database_url: SecretString::from(url.to_owned()),
        database_max_connections: 3,
        database_acquire_timeout: Duration::from_secs(2),
        database_statement_timeout: Duration::from_millis(500),
        migrate_on_start: migrate,
    }
}

#[tokio::test]
async fn open_migrates_when_asked_and_sets_the_statement_timeout() {
    let db = empty_db().await;
    let pool = db::open("test", &database_config(&db.url, true))
        .await
        .expect("open");
    assert!(table_exists(&pool, "tasks").await);
    let timeout: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(&pool)
        .await
        .expect("show");
    assert_eq!(timeout, "500ms");
    let error = sqlx::query("SELECT pg_sleep(2)")
        .execute(&pool)
        .await
        .expect_err("statement timeout");
    assert!(error.to_string().contains("statement timeout"), "{error}");
}

#[tokio::test]
async fn readiness_follows_the_database() {
    let db = test_db().await;
    let pool = db::connect("test", &database_config(&db.url, false)).expect("pool");
    let server = start_with_database(OpenApiRouter::new(), &[], Some(pool)).await;
    let ready = http()
        .get(server.url("/health/ready"))
        .send()
        .await
        .expect("request");
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.expect("json");
    assert_eq!(body["database"], "ok");

    // Nothing listens on this port: the pool cannot connect.
    let dead_url = format!(
        "postgres://postgres@127.0.0.1:{}/nowhere",
        autonoma_testkit::free_port()
    );
    let dead = db::connect("test", &database_config(&dead_url, false)).expect("lazy pool");
    let server = start_with_database(OpenApiRouter::new(), &[], Some(dead)).await;
    let not_ready = http()
        .get(server.url("/health/ready"))
        .send()
        .await
        .expect("request");
    assert_eq!(not_ready.status(), 503);
    let body: serde_json::Value = not_ready.json().await.expect("json");
    assert_eq!(body["type"], "urn:autonoma:problem:database-unreachable");
    // Liveness does not depend on the database.
    let live = http()
        .get(server.url("/health"))
        .send()
        .await
        .expect("request");
    assert_eq!(live.status(), 200);
}
