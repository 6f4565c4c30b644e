//! The logging service in-process on a fresh database, and helpers to talk to it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::time::Duration;

use autonoma_common::config;
use autonoma_testkit::{TestDb, test_db};
use logging::LoggingConfig;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub const KEY: &str = "logging-test-key-0123456789";
pub const USER: &str = "operator";
pub const PASS: &str = "correct-horse-battery";

pub fn env(database_url: &str, extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = [
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("INTERNAL_API_KEYS", KEY),
        ("BASIC_AUTH_USER", USER),
        ("BASIC_AUTH_PASS", PASS),
        ("DATABASE_URL", database_url),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in extra {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    env
}

pub struct Running {
    pub base: String,
    pub db: TestDb,
    pub shutdown: CancellationToken,
    pub handle: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub http: reqwest::Client,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST /log` with the internal key.
    pub async fn post(&self, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url("/log"))
            .header("x-internal-key", KEY)
            .json(body)
            .send()
            .await
            .expect("POST /log")
    }

    /// `POST /log` of a JSON text that a `Value` cannot hold (numbers beyond `f64`, lone
    /// surrogate escapes).
    pub async fn post_text(&self, body: String) -> reqwest::Response {
        self.http
            .post(self.url("/log"))
            .header("x-internal-key", KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST /log")
    }

    /// `GET /logs` with Basic Auth; `query` is appended as is.
    pub async fn get(&self, query: &str) -> reqwest::Response {
        self.http
            .get(self.url(&format!("/logs{query}")))
            .basic_auth(USER, Some(PASS))
            .send()
            .await
            .expect("GET /logs")
    }

    /// The items of `GET /logs{query}`, which must answer 200.
    pub async fn items(&self, query: &str) -> Vec<Value> {
        let response = self.get(query).await;
        assert_eq!(response.status(), 200, "GET /logs{query}");
        let body: Value = response.json().await.expect("json");
        body["items"].as_array().expect("items").clone()
    }

    pub async fn count(&self) -> i64 {
        count(&self.db.pool).await
    }

    /// Waits until the table holds `expected` rows.
    pub async fn wait_for_rows(&self, expected: i64) {
        wait_for_rows(&self.db.pool, expected, Duration::from_secs(30)).await;
    }

    /// Shuts down as SIGTERM would and waits for the drain.
    pub async fn stop(self) -> TestDb {
        self.shutdown.cancel();
        self.handle
            .await
            .expect("server task")
            .expect("clean shutdown");
        self.db
    }
}

pub async fn count(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM logs")
        .fetch_one(pool)
        .await
        .expect("count logs")
}

pub async fn wait_for_rows(pool: &sqlx::PgPool, expected: i64, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let rows = count(pool).await;
        if rows == expected {
            return;
        }
        assert!(
            rows < expected,
            "{rows} rows, more than the {expected} expected"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "{rows} rows after {timeout:?}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn start(extra: &[(&str, &str)]) -> Running {
    start_on(test_db().await, extra).await
}

pub async fn start_on(db: TestDb, extra: &[(&str, &str)]) -> Running {
    let loaded = config::load_from::<LoggingConfig>("logging", &env(&db.url, extra))
        .expect("test configuration is valid");
    let app = logging::build(loaded).await.expect("service builds");
    let base = format!("http://{}", app.local_addr());
    let shutdown = app.shutdown_token();
    let handle = tokio::spawn(app.run());
    Running {
        base,
        db,
        shutdown,
        handle,
        http: reqwest::Client::new(),
    }
}

/// A minimal valid frame.
pub fn frame(service: &str, level: &str, message: &str) -> Value {
    json!({ "level": level, "service": service, "message": message })
}
