//! The gateway in-process on a fresh database, on either set of backends, and the requests an
//! AI and a browser make of it. Each test binary uses part of this.
#![allow(dead_code)]

use std::collections::HashMap;

use autonoma_common::config;
use autonoma_testkit::{TestDb, sqs_endpoint, test_db};
use queue_gateway::GatewayConfig;
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const KEY: &str = "gateway-test-key-0123456789";
pub const USER: &str = "operator";
pub const PASS: &str = "correct-horse-battery";
/// A small inline limit, so a modest figure already travels as a blob.
pub const INLINE_LIMIT: usize = 1024;

/// Where the gateway keeps its queues and blobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backends {
    /// The embedded defaults: the Postgres queue and a blob directory.
    Embedded,
    /// SQS and S3 on the moto server of `TEST_SQS_ENDPOINT`.
    Aws,
}

pub struct Gateway {
    pub base: String,
    pub db: TestDb,
    pub http: reqwest::Client,
    pub backends: Backends,
    /// Makes page ids unique on a moto server that other tests share.
    suffix: String,
    /// Stops the server; cancelled when the test ends.
    pub shutdown: CancellationToken,
    /// The server's task, which ends once it has stopped.
    pub server: JoinHandle<anyhow::Result<()>>,
    _blobs: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn start() -> Gateway {
    start_with(Backends::Embedded, &[]).await
}

/// The gateway on `backends`, with `extra` variables over the test defaults.
pub async fn start_with(backends: Backends, extra: &[(&str, String)]) -> Gateway {
    let db = test_db().await;
    let blobs = tempfile::tempdir().expect("tempdir");
    let suffix = format!("{:08x}", rand::random::<u32>());
    let mut env: HashMap<String, String> = [
        ("HOST", "127.0.0.1".to_owned()),
        ("PORT", "0".to_owned()),
        ("INTERNAL_API_KEYS", KEY.to_owned()),
        ("BASIC_AUTH_USER", USER.to_owned()),
        ("BASIC_AUTH_PASS", PASS.to_owned()),
        ("DATABASE_URL", db.url.clone()),
        ("BLOB_DIR", blobs.path().display().to_string()),
        ("GATEWAY_INLINE_LIMIT", INLINE_LIMIT.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if backends == Backends::Aws {
        env.extend(
            [
                ("BUS_BACKEND", "sqs".to_owned()),
                ("BLOB_BACKEND", "s3".to_owned()),
                ("BLOB_BUCKET", format!("gateway-test-{suffix}")),
                // Gateways of other tests share the moto server.
                (
                    "GATEWAY_DIRECTIVE_QUEUE",
                    format!("page-directives-{suffix}"),
                ),
                ("AWS_ENDPOINT_URL", sqs_endpoint()),
                ("AWS_REGION", "us-east-1".to_owned()),
                ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
                ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
    }
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    let loaded = config::load_from::<GatewayConfig>(queue_gateway::SERVICE, &env)
        .unwrap_or_else(|e| panic!("config: {e}"));
    let server = queue_gateway::build(loaded).await.expect("build");
    let base = format!("http://{}", server.local_addr());
    let shutdown = server.shutdown_token();
    let server = tokio::spawn(server.run());
    Gateway {
        base,
        db,
        // Redirects are the answer under test for S3 blobs, not something to follow.
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        backends,
        suffix,
        shutdown,
        server,
        _blobs: blobs,
    }
}

impl Gateway {
    /// The gateway's directive queue.
    pub fn directive_queue(&self) -> String {
        match self.backends {
            Backends::Embedded => "page-directives".to_owned(),
            Backends::Aws => format!("page-directives-{}", self.suffix),
        }
    }

    /// A client of the bus the gateway uses, as the AI would have.
    pub async fn bus(&self) -> autonoma_bus::Bus {
        let (backend, aws) = match self.backends {
            Backends::Embedded => ("postgres", json!({"AWS_REGION": "us-east-1"})),
            Backends::Aws => (
                "sqs",
                json!({
                    "AWS_ENDPOINT_URL": sqs_endpoint(),
                    "AWS_REGION": "us-east-1",
                    "AWS_ACCESS_KEY_ID": "testing",
                    "AWS_SECRET_ACCESS_KEY": "testing",
                }),
            ),
        };
        let config: autonoma_bus::BusConfig =
            serde_json::from_value(json!({"BUS_BACKEND": backend})).expect("bus config");
        let aws: autonoma_aws::AwsConfig = serde_json::from_value(aws).expect("aws config");
        autonoma_bus::Bus::connect(&config, Some(&self.db.pool), Some(&aws))
            .await
            .expect("bus")
    }

    /// A page id of this test's own.
    pub fn page(&self, name: &str) -> String {
        format!("{name}-{}", self.suffix)
    }

    pub fn ai(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("x-internal-key", KEY)
    }

    pub fn browser(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .basic_auth(USER, Some(PASS))
    }

    pub fn anonymous(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    pub async fn create_page(&self, page: &str) {
        let response = send(
            self.ai(reqwest::Method::POST, "/pages")
                .json(&json!({"page": page})),
        )
        .await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }

    pub async fn send_message(
        &self,
        page: &str,
        to: &str,
        directive: &str,
        body: Value,
    ) -> Response {
        send(
            self.ai(reqwest::Method::POST, &format!("/pages/{page}/messages"))
                .json(&json!({"to": to, "directive": directive, "body": body})),
        )
        .await
    }

    pub async fn text(&self, page: &str, id: &str, text: &str) -> Value {
        let response = self
            .send_message(
                page,
                &format!("text-component-{id}"),
                "text.set",
                json!({"text": text}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.expect("envelope")
    }

    pub async fn poll(&self, page: &str, after: i64, wait: u64) -> Value {
        let response = send(self.browser(
            reqwest::Method::GET,
            &format!("/pages/{page}/poll?after={after}&wait={wait}"),
        ))
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("poll")
    }

    /// A browser sending user input.
    pub async fn post_event(&self, page: &str, event: Value) {
        let response = send(
            self.browser(reqwest::Method::POST, &format!("/pages/{page}/events"))
                .json(&event),
        )
        .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }

    pub async fn message_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM page_messages")
            .fetch_one(&self.db.pool)
            .await
            .expect("count")
    }
}

pub async fn send(request: RequestBuilder) -> Response {
    request.send().await.expect("request")
}

/// A problem body, checked for its content type and status.
pub async fn problem(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    response.json().await.expect("problem")
}

pub fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

pub fn seqs(poll: &Value) -> Vec<i64> {
    poll["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["seq"].as_i64().expect("seq"))
        .collect()
}
