//! The whole product as real processes on one database, configured with distinctive random
//! secrets, and a client that keeps every answer it gets.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use autonoma_render_fake::RenderFake;
use autonoma_testkit::{
    SANDBOX_TEST_IMAGE, ServiceProcess, TestDb, docker_host, free_port, sqs_endpoint, test_db,
    workspace_binary,
};
use base64::Engine;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;

use super::sweep::{Evidence, Secret};

pub const USER: &str = "operator";
pub const ORIGIN: &str = "http://localhost:5173";
const START_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// A long random token nothing else in the run could contain by chance.
fn random() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// `secret` with its last character changed: what a person who mistyped it sends.
fn near(secret: &str) -> String {
    let mut near = secret.to_owned();
    let last = near.pop().unwrap_or('x');
    near.push(if last == 'Z' { 'Y' } else { 'Z' });
    near
}

/// Every secret of the run, and the near misses of them that the run sends.
#[derive(Debug, Clone)]
pub struct Secrets {
    /// `INTERNAL_API_KEYS` is `new,old`: services send `new`, and the old one is still accepted.
    /// `+`, `/` and `=` make their URL-encoded forms differ from them.
    pub key_new: String,
    pub key_old: String,
    pub pass: String,
    pub db_pass: String,
    pub render_token: String,
    pub hook_github: String,
    pub hook_gitlab: String,
    pub aws_secret: String,
    pub redact: [String; 2],
    pub key_near: String,
    pub pass_near: String,
    pub render_near: String,
    pub hook_near: String,
}

impl Secrets {
    pub fn generate() -> Self {
        let key_new = format!("ik-new-{}+{}/=", random(), random());
        let pass = format!("pw-{}+{}", random(), random());
        let render_token = format!("rnd_{}", random());
        let hook_github = format!("hook-gh-{}", random());
        Secrets {
            key_near: near(&key_new),
            pass_near: near(&pass),
            render_near: near(&render_token),
            hook_near: near(&hook_github),
            key_new,
            key_old: format!("ik-old-{}/{}+", random(), random()),
            pass,
            db_pass: format!("db-{}", random()),
            render_token,
            hook_github,
            hook_gitlab: format!("hook-gl-{}", random()),
            aws_secret: format!("aws/{}+{}", random(), random()),
            redact: [format!("sbx-a-{}", random()), format!("sbx-b-{}", random())],
        }
    }

    /// What the sweep looks for, each under a name that says what it is.
    pub fn list(&self) -> Vec<Secret> {
        vec![
            Secret::new("INTERNAL_API_KEYS[0]", &self.key_new),
            Secret::new("INTERNAL_API_KEYS[1]", &self.key_old),
            Secret::new("BASIC_AUTH_PASS", &self.pass),
            Secret::new("Basic Auth user:password", format!("{USER}:{}", self.pass)),
            Secret::new("DATABASE_URL password", &self.db_pass),
            Secret::new("RENDER_API_TOKEN", &self.render_token),
            Secret::new("WEBHOOK_SECRETS github", &self.hook_github),
            Secret::new("WEBHOOK_SECRETS gitlab", &self.hook_gitlab),
            Secret::new("AWS_SECRET_ACCESS_KEY", &self.aws_secret),
            Secret::new("SANDBOX_REDACT[0]", &self.redact[0]),
            Secret::new("SANDBOX_REDACT[1]", &self.redact[1]),
            Secret::new("near miss of INTERNAL_API_KEYS[0]", &self.key_near),
            Secret::new("near miss of BASIC_AUTH_PASS", &self.pass_near),
            Secret::new("near miss of RENDER_API_TOKEN", &self.render_near),
            Secret::new("near miss of WEBHOOK_SECRETS github", &self.hook_near),
        ]
    }

    pub fn basic(&self) -> String {
        basic(USER, &self.pass)
    }
}

pub fn basic(user: &str, pass: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
}

/// One service process and the environment it was started with.
pub struct Running {
    pub process: ServiceProcess,
    pub env: Vec<(&'static str, String)>,
}

/// The six services, the Render fake renderctl talks to, and their shared database.
pub struct Stack {
    pub secrets: Secrets,
    pub services: BTreeMap<&'static str, Running>,
    pub fake: RenderFake,
    pub db: TestDb,
    /// `DATABASE_URL` with the run's password in it.
    pub db_url: String,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// The test database's URL with `password` set (the test cluster trusts local connections, so
/// any password is accepted and the services really connect with it).
fn with_password(url: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (user, host) = match authority.rsplit_once('@') {
        Some((userinfo, host)) => (userinfo.split(':').next().unwrap_or("postgres"), host),
        None => ("postgres", authority),
    };
    format!("{scheme}://{user}:{password}@{host}{path}")
}

impl Stack {
    pub async fn start(secrets: Secrets) -> Stack {
        let db = test_db().await;
        let db_url = with_password(&db.url, &secrets.db_pass);
        let fake = RenderFake::start_with(autonoma_render_fake::Options {
            port: 0,
            token: Some(secrets.render_token.clone()),
        })
        .await
        .expect("the Render fake starts");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = |sub: &str| dir.path().join(sub).display().to_string();
        let suffix = &random()[..12];

        let common = |format: &str| -> Vec<(&'static str, String)> {
            vec![
                (
                    "INTERNAL_API_KEYS",
                    format!("{},{}", secrets.key_new, secrets.key_old),
                ),
                ("BASIC_AUTH_USER", USER.to_owned()),
                ("BASIC_AUTH_PASS", secrets.pass.clone()),
                ("WS_ALLOWED_ORIGINS", ORIGIN.to_owned()),
                ("LOG_LEVEL", "debug".to_owned()),
                ("LOG_FORMAT", format.to_owned()),
                ("RATE_LIMIT_PER_SECOND", "1000000".to_owned()),
                ("RATE_LIMIT_BURST", "1000000".to_owned()),
                ("RATE_LIMIT_AUTH_FAILURES_PER_MINUTE", "1000000".to_owned()),
                ("RATE_LIMIT_AUTH_FAILURE_BURST", "1000000".to_owned()),
            ]
        };
        let aws = |env: &mut Vec<(&'static str, String)>| {
            env.extend([
                ("AWS_ENDPOINT_URL", sqs_endpoint()),
                ("AWS_REGION", "us-east-1".to_owned()),
                ("AWS_ACCESS_KEY_ID", "secrets-suite".to_owned()),
                ("AWS_SECRET_ACCESS_KEY", secrets.aws_secret.clone()),
            ]);
        };

        let mut services = BTreeMap::new();
        let mut env = common("json");
        env.push(("DATABASE_URL", db_url.clone()));
        let logging = spawn("logging", env).await;
        let logging_url = logging.process.base_url();
        services.insert("logging", logging);

        let mut planned: Vec<(&'static str, Vec<(&'static str, String)>)> = Vec::new();
        let mut env = common("text");
        env.extend([
            ("DATABASE_URL", db_url.clone()),
            (
                "WEBHOOK_SECRETS",
                format!(
                    "github:{},gitlab:{}",
                    secrets.hook_github, secrets.hook_gitlab
                ),
            ),
            ("WEBHOOK_ROUTES", "github/*=echo".to_owned()),
            ("RETRY_BACKOFF_BASE", "100ms".to_owned()),
            ("RETRY_BACKOFF_MAX", "500ms".to_owned()),
            ("AGENT_LIVENESS", "5s".to_owned()),
        ]);
        aws(&mut env);
        planned.push(("orchestrator", env));

        let mut env = common("json");
        env.extend([
            ("DATABASE_URL", db_url.clone()),
            ("RENDER_API_BASE_URL", fake.base_url()),
            ("RENDER_API_TOKEN", secrets.render_token.clone()),
            ("RENDER_REPO", "https://github.com/acme/autonoma".to_owned()),
            ("RENDER_BLUEPRINT_PATH", product_blueprint()),
            ("RENDER_API_MAX_RETRIES", "2".to_owned()),
            ("RENDER_RATE_LIMIT_MAX_WAIT", "2s".to_owned()),
        ]);
        planned.push(("renderctl", env));

        let mut env = common("text");
        env.extend([
            ("DATABASE_URL", db_url.clone()),
            ("DOCKER_HOST", docker_host()),
            ("SANDBOX_IMAGE", SANDBOX_TEST_IMAGE.to_owned()),
            ("SANDBOX_WORKSPACE_DIR", path("sandbox")),
            ("SANDBOX_MEMORY_MB", "256".to_owned()),
            ("SANDBOX_PIDS_LIMIT", "128".to_owned()),
            ("SANDBOX_TMPFS_MB", "16".to_owned()),
            (
                "SANDBOX_REDACT",
                format!("{},{}", secrets.redact[0], secrets.redact[1]),
            ),
        ]);
        planned.push(("sandbox", env));

        let mut env = common("json");
        env.extend([
            ("DATABASE_URL", db_url.clone()),
            ("BUS_BACKEND", "sqs".to_owned()),
            ("BLOB_BACKEND", "s3".to_owned()),
            ("BLOB_BUCKET", format!("secrets-{suffix}")),
            (
                "GATEWAY_DIRECTIVE_QUEUE",
                format!("secrets-directives-{suffix}"),
            ),
        ]);
        aws(&mut env);
        planned.push(("queue-gateway", env));

        for (_, env) in &mut planned {
            env.push(("LOGGING_URL", logging_url.clone()));
        }
        let mut started = Vec::new();
        for (name, env) in planned {
            started.push((name, spawn_only(name, env)));
        }
        for (name, running) in &mut started {
            running
                .process
                .wait_healthy(START_TIMEOUT)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        }
        let orchestrator_url = started
            .iter()
            .find(|(name, _)| *name == "orchestrator")
            .map(|(_, running)| running.process.base_url())
            .expect("the orchestrator");
        services.extend(started);

        // The agent presents the older key: rotation in progress.
        let port = free_port();
        let mut env = common("text");
        env[0].1 = format!("{},{}", secrets.key_old, secrets.key_new);
        env.extend([
            ("PORT", port.to_string()),
            ("ORCHESTRATOR_URL", orchestrator_url),
            ("AGENT_PUBLIC_URL", format!("http://127.0.0.1:{port}")),
            ("HEARTBEAT_INTERVAL", "1s".to_owned()),
            ("LOGGING_URL", logging_url),
        ]);
        aws(&mut env);
        services.insert("echo-agent", spawn("echo-agent", env).await);

        Stack {
            secrets,
            services,
            fake,
            db,
            db_url,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("HTTP client"),
            _dir: dir,
        }
    }

    pub fn url(&self, service: &str, path: &str) -> String {
        self.services
            .get(service)
            .unwrap_or_else(|| panic!("no service {service}"))
            .process
            .url(path)
    }

    /// A request with Basic Auth.
    pub fn operator(&self, method: Method, service: &str, path: &str) -> RequestBuilder {
        self.http
            .request(method, self.url(service, path))
            .basic_auth(USER, Some(&self.secrets.pass))
    }

    /// A request with the internal key services send (the first of the list).
    pub fn internal(&self, method: Method, service: &str, path: &str) -> RequestBuilder {
        self.http
            .request(method, self.url(service, path))
            .header("x-internal-key", &self.secrets.key_new)
    }

    /// A request with the older internal key, still accepted while it rotates out.
    pub fn internal_old(&self, method: Method, service: &str, path: &str) -> RequestBuilder {
        self.http
            .request(method, self.url(service, path))
            .header("x-internal-key", &self.secrets.key_old)
    }

    pub fn anonymous(&self, method: Method, service: &str, path: &str) -> RequestBuilder {
        self.http.request(method, self.url(service, path))
    }

    /// Stops every service but the logging service with SIGTERM (each ships its last log batch
    /// as it stops), killing any that has not exited in time.
    pub async fn stop_all_but_logging(&mut self) {
        for (name, running) in &self.services {
            if *name != "logging" {
                running.process.terminate().expect("SIGTERM");
            }
        }
        for (name, running) in &mut self.services {
            if *name != "logging" && running.process.wait(STOP_TIMEOUT).await.is_err() {
                let _ = running.process.kill();
            }
        }
    }

    pub async fn stop_logging(&mut self) {
        if let Some(running) = self.services.get_mut("logging") {
            running.process.terminate().expect("SIGTERM");
            if running.process.wait(STOP_TIMEOUT).await.is_err() {
                let _ = running.process.kill();
            }
        }
    }
}

pub fn product_blueprint() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../render.yaml")
        .display()
        .to_string()
}

fn spawn_only(name: &'static str, env: Vec<(&'static str, String)>) -> Running {
    let process = ServiceProcess::spawn(&workspace_binary(name), &env).expect("the service starts");
    Running { process, env }
}

async fn spawn(name: &'static str, env: Vec<(&'static str, String)>) -> Running {
    let mut running = spawn_only(name, env);
    running
        .process
        .wait_healthy(START_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    running
}

/// An answer the run received, already kept as evidence.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub text: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
}

/// Keeps everything the run received.
#[derive(Clone, Default)]
pub struct Recorder {
    evidence: Arc<Mutex<Vec<Evidence>>>,
    ports: Arc<Mutex<BTreeMap<u16, String>>>,
}

impl Recorder {
    pub fn new(stack: &Stack) -> Self {
        let recorder = Recorder::default();
        let mut ports = recorder
            .ports
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (name, running) in &stack.services {
            ports.insert(running.process.port(), (*name).to_owned());
        }
        drop(ports);
        recorder
    }

    pub fn keep(&self, source: impl Into<String>, text: impl Into<String>) {
        self.evidence
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Evidence {
                source: source.into(),
                text: text.into(),
            });
    }

    pub fn evidence(&self) -> Vec<Evidence> {
        self.evidence
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sends `request` and keeps its status, headers and body. `what` says why it was sent.
    pub async fn send(&self, what: &str, request: RequestBuilder) -> Answer {
        let (client, request) = request.build_split();
        let request = request.expect("a well-formed request");
        let port = request.url().port().unwrap_or_default();
        let service = self
            .ports
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&port)
            .cloned()
            .unwrap_or_else(|| format!("port {port}"));
        // The path only: a query string may carry credentials.
        let label = format!(
            "{service} {} {} ({what})",
            request.method(),
            request.url().path()
        );
        let response = client
            .execute(request)
            .await
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        let status = response.status();
        let mut kept = format!("{status}\n");
        for (name, value) in response.headers() {
            kept.push_str(&format!(
                "{name}: {}\n",
                String::from_utf8_lossy(value.as_bytes())
            ));
        }
        let text = response.text().await.unwrap_or_default();
        kept.push('\n');
        kept.push_str(&text);
        self.keep(format!("the answer to {label}, {status}"), kept);
        Answer { status, text }
    }
}
