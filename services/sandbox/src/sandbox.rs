//! The sessions and their tools: every operation the HTTP routes and the MCP tools call.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use autonoma_common::Problem;
use autonoma_common::problem::FieldError;
use axum::http::StatusCode;
use bytes::Bytes;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use url::Url;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::SandboxConfig;
use crate::driver::{Chunk, ContainerSpec, Driver, DriverError, ExecSpec, Stats};
use crate::logs::{LogHub, Stream};
use crate::output::{Capture, Redactor};
use crate::preview::cookie::PreviewCookies;
use crate::project::{Snapshot, Template};
use crate::store::{self, NewToolCall, SessionRow, SessionSummaryRow};
use crate::workspace::{
    Checkpoint, CheckpointError, Checkpoints, Entry, FileOut, FsError, Workspace,
};

/// Longest command timeout a call may ask for.
pub const MAX_EXEC_TIMEOUT: Duration = Duration::from_secs(120);
/// Room between the longest command and the request timeout, for the work around it.
const TIMEOUT_MARGIN: Duration = Duration::from_secs(5);
/// Most entries `fs_list` returns.
pub const LIST_LIMIT: usize = 5000;
/// How long `http_fetch` waits for the whole answer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the reaper looks for idle sessions (at most).
const REAP_EVERY: Duration = Duration::from_secs(30);
/// Activity is written to the database at most this often per session.
const TOUCH_EVERY: Duration = Duration::from_secs(5);
/// Where the workspace appears inside the container.
pub const WORKSPACE_MOUNT: &str = "/workspace";
/// The label every session container carries: the store it belongs to.
pub const OWNER_LABEL: &str = "autonoma.sandbox.owner";
/// The label naming the session of a container.
pub const SESSION_LABEL: &str = "autonoma.sandbox.session";

/// The sizes and times the tools enforce.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// REQUEST_BODY_LIMIT, which the preview applies to the bodies it forwards.
    pub body: usize,
    pub output: usize,
    pub file: usize,
    pub exec_default: Duration,
    pub exec_max: Duration,
    pub idle: Duration,
    pub max_sessions: u32,
}

impl Limits {
    /// Largest body of an fs_write (HTTP or MCP): the largest file as JSON-escaped text, which
    /// doubles at most for text of quotes, backslashes and newlines, and the fields around it.
    pub fn write_body(&self) -> usize {
        self.file.saturating_mul(2).saturating_add(1024 * 1024)
    }

    pub fn from_config(config: &SandboxConfig) -> Self {
        let exec_max = MAX_EXEC_TIMEOUT.min(
            config
                .server
                .request_timeout
                .saturating_sub(TIMEOUT_MARGIN)
                .max(Duration::from_secs(1)),
        );
        Self {
            body: config.server.request_body_limit,
            output: config.sandbox_output_limit,
            file: config.sandbox_file_limit,
            exec_default: config.sandbox_exec_timeout.min(exec_max),
            exec_max,
            idle: config.sandbox_idle_timeout,
            max_sessions: config.sandbox_max_sessions,
        }
    }
}

/// Everything about the containers that is the same for every session.
#[derive(Debug, Clone)]
struct ContainerPlan {
    image: String,
    user: String,
    owner: Option<(u32, u32)>,
    memory_bytes: i64,
    nano_cpus: i64,
    pids_limit: i64,
    network: Option<String>,
    tmpfs_bytes: u64,
}

#[derive(Clone)]
pub struct Sandbox(Arc<Inner>);

struct Inner {
    pool: PgPool,
    driver: Arc<dyn Driver>,
    limits: Limits,
    plan: ContainerPlan,
    root: PathBuf,
    owner_tag: String,
    redactor: Redactor,
    preview_base: Url,
    preview_cookies: PreviewCookies,
    sessions: RwLock<HashMap<Uuid, Arc<Live>>>,
    shutdown: CancellationToken,
}

/// A session this process serves.
pub struct Live {
    pub id: Uuid,
    pub container_id: String,
    pub workspace: Arc<Workspace>,
    checkpoints: Checkpoints,
    pub logs: LogHub,
    dev: tokio::sync::Mutex<Option<DevServer>>,
    touched: Mutex<Instant>,
    /// Commands and preview connections start under a read guard; checkpoints and restores
    /// hold the write guard while the container is paused, so git on the host never races a
    /// process swapping a directory for a symlink, and no exec meets a paused container.
    pub(crate) quiet: tokio::sync::RwLock<()>,
    /// Cancelled when the session is deleted: its streams end.
    pub ended: CancellationToken,
}

struct DevServer {
    command: String,
    port: u16,
    keep_prefix: bool,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// The dev server the preview proxies to.
#[derive(Debug, Clone, Copy)]
pub struct PreviewTarget {
    pub port: u16,
    /// Forward the full `/api/sessions/{id}/preview/proxy/…` path (servers configured with that
    /// base, like the vite-react template) instead of the part after it.
    pub keep_prefix: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionOut {
    pub session_id: Uuid,
    pub preview_url: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerOut {
    pub id: Option<String>,
    /// The dev server's port inside the container, when one runs.
    pub port: Option<u16>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DevOut {
    pub command: String,
    pub port: u16,
    pub running: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StateOut {
    pub session_id: Uuid,
    /// `creating`, `ready`, `failed` or `deleted`.
    pub status: String,
    /// Why the session failed or ended.
    pub status_reason: Option<String>,
    pub template: String,
    pub preview_url: String,
    pub container: ContainerOut,
    pub snapshot: Snapshot,
    pub dev: Option<DevOut>,
    /// Processes of this session the kernel killed for using too much memory.
    pub oom_kills: i32,
    /// Memory, processes and CPU of the container now (ready sessions whose engine answers).
    pub resources: Option<Stats>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub last_active_at: OffsetDateTime,
}

/// A session as `GET /api/sessions` lists it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionSummaryOut {
    pub session_id: Uuid,
    pub template: String,
    /// `creating`, `ready`, `failed` or `deleted`.
    pub status: String,
    /// Why the session failed or ended.
    pub status_reason: Option<String>,
    pub preview_url: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub last_active_at: OffsetDateTime,
    /// When it was deleted (deleted sessions only).
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub deleted_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecOut {
    pub exit_code: Option<i64>,
    pub stdout: String,
    pub stderr: String,
    /// Output was cut at `SANDBOX_OUTPUT_LIMIT` bytes per stream (the text ends with a marker).
    pub truncated: bool,
    /// The timeout passed; the command and every process it started were killed.
    pub timed_out: bool,
    /// The kernel killed a process of the command for using too much memory.
    pub oom_killed: bool,
    pub duration_ms: u64,
    /// The checkpoint taken before the command ran (install).
    pub checkpoint: Option<Checkpoint>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WriteResult {
    pub ok: bool,
    pub path: String,
    pub bytes: u64,
    pub created: bool,
    /// The checkpoint taken before an existing file was replaced (when anything changed).
    pub checkpoint: Option<Checkpoint>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FetchOut {
    pub url: String,
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
    pub truncated: bool,
    pub duration_ms: u64,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum PackageManager {
    Npm,
    Pnpm,
    Yarn,
    Bun,
    Pip,
}

impl PackageManager {
    fn command(self) -> &'static str {
        match self {
            Self::Npm => "npm install",
            Self::Pnpm => "pnpm add",
            Self::Yarn => "yarn add",
            Self::Bun => "bun add",
            Self::Pip => "pip install --user",
        }
    }
}

/// Which front end a call came through.
#[derive(Debug, Clone, Copy)]
pub enum Via {
    Http,
    Mcp,
}

impl Via {
    fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Mcp => "mcp",
        }
    }
}

impl Sandbox {
    /// Prepares the workspace directory, then adopts the sessions a previous run left whose
    /// containers still run, ends the others, and removes containers no session owns.
    pub async fn open(
        config: &SandboxConfig,
        pool: PgPool,
        driver: Arc<dyn Driver>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let root = absolute(&config.sandbox_workspace_dir)?;
        std::fs::create_dir_all(&root)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", root.display()))?;
        restrict(&root)?;
        let owner = parse_user(&config.sandbox_user)?;
        let mut secrets: Vec<String> = config
            .sandbox_redact
            .iter()
            .chain(&config.server.internal_api_keys)
            .map(|s| s.expose_secret().to_owned())
            .collect();
        secrets.push(config.server.basic_auth_pass.expose_secret().to_owned());
        if let Ok(url) = Url::parse(config.database.database_url.expose_secret())
            && let Some(password) = url.password()
        {
            secrets.push(password.to_owned());
        }
        let network = match config.sandbox_network.as_str() {
            "none" => None,
            name => Some(name.to_owned()),
        };
        let owner_tag = store::owner_tag(&pool).await?.to_string();
        let preview_cookies = match config.server.internal_api_keys.first() {
            Some(key) => PreviewCookies::new(key.expose_secret().as_bytes()),
            // The schema requires a key; without one, cookies last as long as this process.
            None => PreviewCookies::new(
                &[*Uuid::new_v4().as_bytes(), *Uuid::new_v4().as_bytes()].concat(),
            ),
        };
        let sandbox = Self(Arc::new(Inner {
            pool,
            driver,
            limits: Limits::from_config(config),
            plan: ContainerPlan {
                image: config.sandbox_image.clone(),
                user: config.sandbox_user.clone(),
                owner: Some(owner),
                memory_bytes: i64::try_from(config.sandbox_memory_mb * 1024 * 1024)?,
                nano_cpus: (config.sandbox_cpus * 1e9) as i64,
                pids_limit: config.sandbox_pids_limit,
                network,
                tmpfs_bytes: config.sandbox_tmpfs_mb * 1024 * 1024,
            },
            root,
            owner_tag,
            redactor: Redactor::new(secrets),
            preview_base: config.sandbox_preview_base_url.clone(),
            preview_cookies,
            sessions: RwLock::new(HashMap::new()),
            shutdown,
        }));
        sandbox.recover().await?;
        tokio::spawn(sandbox.clone().reap());
        Ok(sandbox)
    }

    pub fn limits(&self) -> Limits {
        self.0.limits
    }

    pub fn pool(&self) -> &PgPool {
        &self.0.pool
    }

    pub fn driver(&self) -> &Arc<dyn Driver> {
        &self.0.driver
    }

    pub fn redactor(&self) -> &Redactor {
        &self.0.redactor
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.0.shutdown.clone()
    }

    pub fn preview_url(&self, id: Uuid) -> String {
        let base = self.0.preview_base.as_str().trim_end_matches('/');
        format!("{base}{}", preview_prefix(id)) + "/"
    }

    /// Signs and checks the cookies that open a session's preview ([`crate::preview::cookie`]).
    pub fn preview_cookies(&self) -> &PreviewCookies {
        &self.0.preview_cookies
    }

    fn session_dir(&self, id: Uuid) -> PathBuf {
        self.0.root.join(id.to_string())
    }

    // ---- sessions ----

    pub async fn create_session(&self, template: Template) -> Result<SessionOut, Problem> {
        let id = Uuid::now_v7();
        let dir = self.session_dir(id);
        let workspace_path = dir.join("workspace");
        let name = format!("autonoma-sandbox-{id}");
        let row = store::insert_capped(
            &self.0.pool,
            id,
            template.as_str(),
            &name,
            &workspace_path.to_string_lossy(),
            self.0.limits.max_sessions,
        )
        .await
        .map_err(Problem::internal)?;
        if row.is_none() {
            return Err(Problem::new(StatusCode::TOO_MANY_REQUESTS)
                .kind("too-many-sessions")
                .title("Too many sessions")
                .detail(format!(
                    "{} sessions are live, the most this sandbox runs at once \
                     (SANDBOX_MAX_SESSIONS). Delete one, or wait for an idle one to be reaped.",
                    self.0.limits.max_sessions
                ))
                .extension("limit", self.0.limits.max_sessions)
                .header(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from_static("30"),
                ));
        }
        match self
            .start_session(id, template, &dir, &workspace_path, &name)
            .await
        {
            Ok(live) => {
                live.logs.line(Stream::System, "session ready");
                Ok(SessionOut {
                    session_id: id,
                    preview_url: self.preview_url(id),
                })
            }
            Err(problem) => {
                let reason = problem
                    .detail
                    .clone()
                    .unwrap_or_else(|| problem.title.clone());
                let _ = store::end(&self.0.pool, id, "failed", &reason).await;
                let _ = remove_dir(&dir).await;
                Err(problem)
            }
        }
    }

    async fn start_session(
        &self,
        id: Uuid,
        template: Template,
        dir: &Path,
        workspace_path: &Path,
        name: &str,
    ) -> Result<Arc<Live>, Problem> {
        let owner = self.0.plan.owner;
        let (workspace_dir, session_dir) = (workspace_path.to_owned(), dir.to_owned());
        let workspace = blocking(move || {
            std::fs::create_dir(&session_dir).map_err(|source| FsError::Io {
                path: session_dir.display().to_string(),
                source,
            })?;
            let workspace = Workspace::create(&workspace_dir, owner)?;
            for (path, content) in template.files() {
                workspace.write(path, content.as_bytes())?;
            }
            Ok::<_, FsError>(workspace)
        })
        .await?
        .map_err(fs_problem)?;
        let workspace = Arc::new(workspace);
        let spec = self.container_spec(id, name, workspace_path);
        let container_id = self.0.driver.create(&spec).await.map_err(driver_problem)?;
        let snapshot = self.read_snapshot(&workspace).await;
        store::mark_ready(&self.0.pool, id, &container_id, &snapshot.to_value())
            .await
            .map_err(Problem::internal)?;
        let live = self.adopt(id, container_id, workspace, dir);
        Ok(live)
    }

    fn container_spec(&self, id: Uuid, name: &str, workspace: &Path) -> ContainerSpec {
        let plan = &self.0.plan;
        ContainerSpec {
            name: name.to_owned(),
            image: plan.image.clone(),
            workspace: workspace.to_owned(),
            user: plan.user.clone(),
            memory_bytes: plan.memory_bytes,
            nano_cpus: plan.nano_cpus,
            pids_limit: plan.pids_limit,
            network: plan.network.clone(),
            read_only_root: true,
            tmpfs_bytes: plan.tmpfs_bytes,
            env: vec![
                "HOME=/tmp".to_owned(),
                "PATH=/usr/local/bin:/usr/bin:/bin".to_owned(),
                format!("AUTONOMA_PREVIEW_BASE={}/", preview_prefix(id)),
                "npm_config_cache=/tmp/.npm".to_owned(),
            ],
            labels: HashMap::from([
                (OWNER_LABEL.to_owned(), self.0.owner_tag.clone()),
                (SESSION_LABEL.to_owned(), id.to_string()),
            ]),
        }
    }

    fn adopt(
        &self,
        id: Uuid,
        container_id: String,
        workspace: Arc<Workspace>,
        dir: &Path,
    ) -> Arc<Live> {
        let live = Arc::new(Live {
            id,
            container_id,
            checkpoints: Checkpoints::new(dir.join("checkpoints.git"), workspace.root().to_owned()),
            workspace,
            logs: LogHub::new(self.0.redactor.clone()),
            dev: tokio::sync::Mutex::new(None),
            touched: Mutex::new(Instant::now()),
            quiet: tokio::sync::RwLock::new(()),
            ended: CancellationToken::new(),
        });
        if let Ok(mut sessions) = self.0.sessions.write() {
            sessions.insert(id, live.clone());
        }
        live
    }

    /// The session, if this process serves it: 404 when unknown, 410 when it ended.
    pub async fn live(&self, id: Uuid) -> Result<Arc<Live>, Problem> {
        let found = self
            .0
            .sessions
            .read()
            .ok()
            .and_then(|sessions| sessions.get(&id).cloned());
        if let Some(live) = found {
            self.touch(&live).await;
            return Ok(live);
        }
        let row = store::get(&self.0.pool, id)
            .await
            .map_err(Problem::internal)?;
        Err(match row {
            None => not_found(id),
            Some(row) if row.status == "creating" => {
                Problem::conflict("The session is still being created; try again in a moment.")
                    .kind("session-creating")
            }
            Some(row) => Problem::new(StatusCode::GONE)
                .kind("session-ended")
                .title("Session ended")
                .detail(format!(
                    "Session {id} is {}: {}",
                    row.status,
                    row.status_reason.as_deref().unwrap_or("no reason recorded")
                )),
        })
    }

    /// Counts as activity for the idle reaper.
    pub async fn touch(&self, live: &Live) {
        let due = match live.touched.lock() {
            Ok(mut touched) if touched.elapsed() >= TOUCH_EVERY => {
                *touched = Instant::now();
                true
            }
            _ => false,
        };
        if due && let Err(error) = store::touch(&self.0.pool, live.id).await {
            tracing::warn!(session = %live.id, %error, "recording activity failed");
        }
    }

    pub async fn state(&self, id: Uuid) -> Result<StateOut, Problem> {
        let row = store::get(&self.0.pool, id)
            .await
            .map_err(Problem::internal)?
            .ok_or_else(|| not_found(id))?;
        let live = self
            .0
            .sessions
            .read()
            .ok()
            .and_then(|sessions| sessions.get(&id).cloned());
        let (dev, resources) = match &live {
            Some(live) => {
                let dev = live.dev.lock().await.as_ref().map(|dev| DevOut {
                    command: dev.command.clone(),
                    port: dev.port,
                    running: !dev.task.is_finished(),
                });
                let stats = tokio::time::timeout(
                    Duration::from_secs(3),
                    self.0.driver.stats(&live.container_id),
                )
                .await;
                (dev, stats.ok().and_then(Result::ok))
            }
            None => (None, None),
        };
        Ok(self.state_of(row, dev, resources))
    }

    fn state_of(&self, row: SessionRow, dev: Option<DevOut>, resources: Option<Stats>) -> StateOut {
        StateOut {
            session_id: row.id,
            preview_url: self.preview_url(row.id),
            status: row.status,
            status_reason: row.status_reason,
            template: row.template,
            container: ContainerOut {
                id: row.container_id,
                port: dev.as_ref().filter(|d| d.running).map(|d| d.port),
            },
            snapshot: serde_json::from_value(row.snapshot).unwrap_or_default(),
            dev,
            oom_kills: row.oom_kills,
            resources,
            created_at: row.created_at,
            last_active_at: row.last_active_at,
        }
    }

    pub fn summary_of(&self, row: SessionSummaryRow) -> SessionSummaryOut {
        SessionSummaryOut {
            session_id: row.id,
            preview_url: self.preview_url(row.id),
            template: row.template,
            status: row.status,
            status_reason: row.status_reason,
            created_at: row.created_at,
            last_active_at: row.last_active_at,
            deleted_at: row.deleted_at,
        }
    }

    /// Stops the session's processes, removes its container, workspace and checkpoints.
    pub async fn delete_session(&self, id: Uuid, reason: &str) -> Result<(), Problem> {
        let live = self
            .0
            .sessions
            .write()
            .ok()
            .and_then(|mut sessions| sessions.remove(&id));
        let row = store::get(&self.0.pool, id)
            .await
            .map_err(Problem::internal)?
            .ok_or_else(|| not_found(id))?;
        if let Some(live) = &live {
            self.stop_dev(live).await;
            live.logs
                .line(Stream::System, &format!("session deleted: {reason}"));
            live.ended.cancel();
        }
        let container = live
            .as_ref()
            .map(|live| live.container_id.clone())
            .or(row.container_id);
        if let Some(container) = container
            && let Err(error) = self.0.driver.remove(&container).await
        {
            // Put it back so a later delete (or the next start's cleanup) retries.
            if let (Some(live), Ok(mut sessions)) = (live, self.0.sessions.write()) {
                sessions.insert(id, live);
            }
            return Err(driver_problem(error));
        }
        remove_dir(&self.session_dir(id))
            .await
            .map_err(Problem::internal)?;
        store::end(&self.0.pool, id, "deleted", reason)
            .await
            .map_err(Problem::internal)?;
        Ok(())
    }

    /// Runs a tool: records the call (arguments, outcome, duration) and logs it.
    pub async fn call<T, F>(
        &self,
        live: &Live,
        via: Via,
        tool: &str,
        arguments: Value,
        run: F,
    ) -> Result<T, Problem>
    where
        T: Serialize,
        F: Future<Output = Result<T, Problem>>,
    {
        let started = Instant::now();
        let result = run.await;
        let elapsed = started.elapsed();
        let summary = match &result {
            Ok(out) => summarize(tool, &serde_json::to_value(out).unwrap_or(Value::Null)),
            Err(problem) => format!(
                "error {}: {}",
                problem.status,
                problem.detail.as_deref().unwrap_or(&problem.title)
            ),
        };
        let summary = self.0.redactor.redact(&summary);
        let arguments = self.shorten_arguments(arguments);
        live.logs.line(
            Stream::Tool,
            &format!(
                "{tool} {arguments} → {summary} ({} ms)",
                elapsed.as_millis()
            ),
        );
        let recorded = store::record_tool_call(
            &self.0.pool,
            NewToolCall {
                session: live.id,
                tool,
                via: via.as_str(),
                arguments: &arguments,
                ok: result.is_ok(),
                summary: &summary,
                duration_ms: i32::try_from(elapsed.as_millis()).unwrap_or(i32::MAX),
            },
        )
        .await;
        if let Err(error) = recorded {
            tracing::warn!(session = %live.id, tool, %error, "recording the tool call failed");
        }
        result
    }

    /// Arguments as recorded: long strings (file contents) shortened, secrets masked.
    fn shorten_arguments(&self, arguments: Value) -> Value {
        const KEEP: usize = 200;
        match arguments {
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(key, value)| (key, self.shorten_arguments(value)))
                    .collect(),
            ),
            Value::Array(items) => Value::Array(
                items
                    .into_iter()
                    .map(|v| self.shorten_arguments(v))
                    .collect(),
            ),
            // Masked before it is cut, so a secret across the cut leaves no part of itself.
            Value::String(text) => {
                let masked = self.0.redactor.redact(&text);
                if masked.len() <= KEEP {
                    return Value::String(masked);
                }
                let mut cut = KEEP;
                while !masked.is_char_boundary(cut) {
                    cut -= 1;
                }
                Value::String(format!("{}…[{} bytes]", &masked[..cut], text.len()))
            }
            other => other,
        }
    }

    // ---- files ----

    pub async fn fs_list(&self, live: &Live, dir: String) -> Result<Vec<Entry>, Problem> {
        let workspace = live.workspace.clone();
        blocking(move || workspace.list(&dir, LIST_LIMIT))
            .await?
            .map_err(fs_problem)
    }

    pub async fn fs_read(&self, live: &Live, path: String) -> Result<FileOut, Problem> {
        let workspace = live.workspace.clone();
        let limit = self.0.limits.output;
        // Read past the limit so that a secret the cut falls in is masked whole; bytes that are
        // not text past the limit are no reason to refuse what the limit keeps.
        let mut file = blocking(move || {
            match workspace.read(&path, limit.saturating_add(crate::output::LOOKAHEAD)) {
                Err(FsError::Binary { .. }) => workspace.read(&path, limit),
                other => other,
            }
        })
        .await?
        .map_err(fs_problem)?;
        let over = file.content.len() > limit;
        file.content = self.0.redactor.redact(&file.content);
        if over {
            crate::output::cut(&mut file.content, limit);
            file.truncated = true;
        }
        Ok(file)
    }

    /// Writes a file; replacing an existing one takes a checkpoint first.
    pub async fn fs_write(
        &self,
        live: &Arc<Live>,
        path: String,
        content: String,
    ) -> Result<WriteResult, Problem> {
        if content.len() > self.0.limits.file {
            return Err(invalid(
                "The file is too large.",
                "/content",
                format!(
                    "{} bytes; the most fs_write takes is {} (SANDBOX_FILE_LIMIT)",
                    content.len(),
                    self.0.limits.file
                ),
            ));
        }
        let workspace = live.workspace.clone();
        let probe = path.clone();
        let exists = blocking(move || workspace.is_file(&probe))
            .await?
            .map_err(fs_problem)?;
        let checkpoint = if exists {
            self.checkpoint(live, &format!("before writing {path}"))
                .await?
        } else {
            None
        };
        let workspace = live.workspace.clone();
        let written = blocking(move || workspace.write(&path, content.as_bytes()))
            .await?
            .map_err(fs_problem)?;
        if is_manifest(&written.path) {
            self.refresh_snapshot(live).await;
        }
        Ok(WriteResult {
            ok: true,
            path: written.path,
            bytes: written.bytes,
            created: written.created,
            checkpoint,
        })
    }

    // ---- commands ----

    /// The container path of a workspace directory (`""` is the root).
    async fn container_dir(&self, live: &Live, cwd: Option<String>) -> Result<String, Problem> {
        let Some(cwd) = cwd.filter(|c| !c.is_empty() && c != ".") else {
            return Ok(WORKSPACE_MOUNT.to_owned());
        };
        let workspace = live.workspace.clone();
        let dir = cwd.clone();
        blocking(move || workspace.list(&dir, usize::MAX))
            .await?
            .map_err(|e| {
                let mut problem = fs_problem(e);
                problem.errors = vec![FieldError {
                    field: "/cwd".into(),
                    message: problem.detail.clone().unwrap_or_default(),
                }];
                problem
            })?;
        Ok(format!("{WORKSPACE_MOUNT}/{}", cwd.trim_end_matches('/')))
    }

    pub fn exec_timeout(&self, seconds: Option<u64>) -> Result<Duration, Problem> {
        let max = self.0.limits.exec_max.as_secs();
        match seconds {
            None => Ok(self.0.limits.exec_default),
            Some(s) if (1..=max).contains(&s) => Ok(Duration::from_secs(s)),
            Some(_) => Err(invalid(
                "The timeout is out of range.",
                "/timeoutSec",
                format!("expected 1 to {max} seconds"),
            )),
        }
    }

    pub async fn exec(
        &self,
        live: &Live,
        cmd: String,
        cwd: Option<String>,
        timeout: Duration,
    ) -> Result<ExecOut, Problem> {
        if cmd.trim().is_empty() {
            return Err(invalid(
                "The command is empty.",
                "/cmd",
                "give a shell command",
            ));
        }
        let cwd = self.container_dir(live, cwd).await?;
        self.run(live, cmd, cwd, timeout).await
    }

    async fn run(
        &self,
        live: &Live,
        cmd: String,
        cwd: String,
        timeout: Duration,
    ) -> Result<ExecOut, Problem> {
        let _quiet = live.quiet.read().await;
        let (sender, mut receiver) = mpsc::channel::<Chunk>(64);
        let limit = self.0.limits.output;
        let collect = async {
            let (mut stdout, mut stderr) = (Capture::new(limit), Capture::new(limit));
            while let Some(chunk) = receiver.recv().await {
                match chunk {
                    Chunk::Stdout(bytes) => {
                        live.logs.output(Stream::Stdout, &bytes);
                        stdout.push(&bytes);
                    }
                    Chunk::Stderr(bytes) => {
                        live.logs.output(Stream::Stderr, &bytes);
                        stderr.push(&bytes);
                    }
                }
            }
            live.logs.flush();
            (stdout, stderr)
        };
        let spec = ExecSpec {
            cmd,
            cwd,
            env: Vec::new(),
            timeout: Some(timeout),
        };
        let cancel = self.0.shutdown.child_token();
        let exec = self.0.driver.exec(&live.container_id, spec, sender, cancel);
        let (outcome, (stdout, stderr)) = tokio::join!(exec, collect);
        let outcome = outcome.map_err(driver_problem)?;
        if outcome.oom_killed {
            self.report_oom(live).await;
        }
        if outcome.timed_out {
            live.logs.line(
                Stream::System,
                &format!(
                    "command timed out after {} s; it and every process it started were killed",
                    timeout.as_secs()
                ),
            );
        }
        let truncated = stdout.truncated() || stderr.truncated();
        Ok(ExecOut {
            exit_code: outcome.exit_code,
            stdout: stdout.finish(&self.0.redactor),
            stderr: stderr.finish(&self.0.redactor),
            truncated,
            timed_out: outcome.timed_out,
            oom_killed: outcome.oom_killed,
            duration_ms: u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX),
            checkpoint: None,
        })
    }

    async fn report_oom(&self, live: &Live) {
        live.logs.line(
            Stream::System,
            &format!(
                "a process was killed for using more than the session's memory limit ({} MiB)",
                self.0.plan.memory_bytes / (1024 * 1024)
            ),
        );
        if let Err(error) = store::count_oom_kill(&self.0.pool, live.id).await {
            tracing::warn!(session = %live.id, %error, "recording an OOM kill failed");
        }
    }

    /// Installs packages with the package manager, after a checkpoint.
    pub async fn install(
        &self,
        live: &Arc<Live>,
        manager: PackageManager,
        args: Vec<String>,
        timeout: Duration,
    ) -> Result<ExecOut, Problem> {
        for (i, arg) in args.iter().enumerate() {
            if arg.is_empty() || arg.len() > 512 || arg.contains('\0') || arg.contains('\n') {
                return Err(invalid(
                    "A package argument is not valid.",
                    &format!("/args/{i}"),
                    "1 to 512 characters on one line",
                ));
            }
        }
        let checkpoint = self
            .checkpoint(
                live,
                &format!("before {} {}", manager.command(), args.join(" ")),
            )
            .await?;
        let quoted: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
        let cmd = format!("{} {}", manager.command(), quoted.join(" "));
        let mut out = self
            .run(live, cmd, WORKSPACE_MOUNT.to_owned(), timeout)
            .await?;
        out.checkpoint = checkpoint;
        self.refresh_snapshot(live).await;
        Ok(out)
    }

    // ---- dev server ----

    pub async fn dev_start(
        &self,
        live: &Arc<Live>,
        cmd: String,
        port: u16,
        keep_prefix: Option<bool>,
    ) -> Result<DevOut, Problem> {
        if cmd.trim().is_empty() {
            return Err(invalid(
                "The command is empty.",
                "/cmd",
                "give a shell command",
            ));
        }
        if port == 0 {
            return Err(invalid(
                "The port is not valid.",
                "/port",
                "expected 1 to 65535",
            ));
        }
        self.stop_dev(live).await;
        let keep_prefix = match keep_prefix {
            Some(keep) => keep,
            None => self.snapshot(live.id).await.framework.as_deref() == Some("vite"),
        };
        let cancel = self.0.shutdown.child_token();
        let task = tokio::spawn(
            self.clone()
                .run_dev(live.clone(), cmd.clone(), cancel.clone()),
        );
        *live.dev.lock().await = Some(DevServer {
            command: cmd.clone(),
            port,
            keep_prefix,
            cancel,
            task,
        });
        store::set_dev(&self.0.pool, live.id, Some(&cmd), Some(port))
            .await
            .map_err(Problem::internal)?;
        live.logs.line(
            Stream::System,
            &format!("dev server started on port {port}: {cmd}"),
        );
        Ok(DevOut {
            command: cmd,
            port,
            running: true,
        })
    }

    async fn run_dev(self, live: Arc<Live>, cmd: String, cancel: CancellationToken) {
        let (sender, mut receiver) = mpsc::channel::<Chunk>(256);
        let spec = ExecSpec {
            cmd,
            cwd: WORKSPACE_MOUNT.to_owned(),
            env: Vec::new(),
            timeout: None,
        };
        let forward = async {
            while let Some(chunk) = receiver.recv().await {
                match chunk {
                    Chunk::Stdout(bytes) => live.logs.output(Stream::Stdout, &bytes),
                    Chunk::Stderr(bytes) => live.logs.output(Stream::Stderr, &bytes),
                }
            }
            live.logs.flush();
        };
        let exec = self
            .0
            .driver
            .exec(&live.container_id, spec, sender, cancel.clone());
        let (outcome, ()) = tokio::join!(exec, forward);
        match outcome {
            Ok(outcome) if outcome.killed && cancel.is_cancelled() => {
                live.logs.line(Stream::System, "dev server stopped");
            }
            Ok(outcome) => {
                if outcome.oom_killed {
                    self.report_oom(&live).await;
                }
                live.logs.line(
                    Stream::System,
                    &format!(
                        "dev server exited{}",
                        outcome
                            .exit_code
                            .map(|c| format!(" with code {c}"))
                            .unwrap_or_default()
                    ),
                );
            }
            Err(error) => {
                live.logs
                    .line(Stream::System, &format!("dev server failed: {error}"));
            }
        }
    }

    async fn stop_dev(&self, live: &Live) -> bool {
        let Some(dev) = live.dev.lock().await.take() else {
            return false;
        };
        dev.cancel.cancel();
        let mut task = dev.task;
        if tokio::time::timeout(Duration::from_secs(10), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
        true
    }

    pub async fn dev_stop(&self, live: &Live) -> Result<Value, Problem> {
        let stopped = self.stop_dev(live).await;
        store::set_dev(&self.0.pool, live.id, None, None)
            .await
            .map_err(Problem::internal)?;
        Ok(json!({ "ok": true, "stopped": stopped }))
    }

    /// Where the preview goes: the running dev server.
    pub async fn preview_target(&self, live: &Live) -> Result<PreviewTarget, Problem> {
        match live.dev.lock().await.as_ref() {
            Some(dev) if !dev.task.is_finished() => Ok(PreviewTarget {
                port: dev.port,
                keep_prefix: dev.keep_prefix,
            }),
            Some(_) => Err(Problem::new(StatusCode::BAD_GATEWAY)
                .kind("dev-server-exited")
                .title("Dev server exited")
                .detail("The dev server has exited; its output is in the session's log. Start it again with dev_start.")),
            None => Err(Problem::new(StatusCode::BAD_GATEWAY)
                .kind("no-dev-server")
                .title("No dev server")
                .detail("No dev server runs in this session; start one with dev_start.")),
        }
    }

    /// GETs a page from a server inside the session (its dev server when the URL is a path).
    pub async fn http_fetch(&self, live: &Live, url: String) -> Result<FetchOut, Problem> {
        let (port, path) = if url.starts_with('/') {
            (self.preview_target(live).await?.port, url.clone())
        } else {
            let parsed = Url::parse(&url)
                .map_err(|e| invalid("The URL is not valid.", "/url", e.to_string()))?;
            let local = matches!(
                parsed.host(),
                Some(url::Host::Domain("localhost"))
                    | Some(url::Host::Ipv4(std::net::Ipv4Addr::LOCALHOST))
                    | Some(url::Host::Ipv6(std::net::Ipv6Addr::LOCALHOST))
            );
            if parsed.scheme() != "http" || !local {
                return Err(invalid(
                    "http_fetch reaches the session's own servers only.",
                    "/url",
                    "expected http://localhost:<port>/… or a path on the dev server; the \
                     session has no outbound network",
                ));
            }
            let mut path = parsed.path().to_owned();
            if let Some(query) = parsed.query() {
                path = format!("{path}?{query}");
            }
            (parsed.port().unwrap_or(80), path)
        };
        let started = Instant::now();
        let request = axum::http::Request::get(&path)
            .header(axum::http::header::HOST, format!("localhost:{port}"))
            .header(
                axum::http::header::USER_AGENT,
                "autonoma-sandbox http_fetch",
            )
            .body(axum::body::Body::empty())
            .map_err(|e| invalid("The URL is not valid.", "/url", e.to_string()))?;
        let fetch = async {
            let response = crate::preview::send(self, live, port, request, false).await?;
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_owned())))
                .collect();
            let mut body = Capture::new(self.0.limits.output);
            let mut stream = response.into_body().into_data_stream();
            use futures::StreamExt;
            use http_body_util::BodyExt;
            while let Some(chunk) = stream.next().await {
                let chunk: Bytes = chunk.map_err(|e| {
                    Problem::new(StatusCode::BAD_GATEWAY)
                        .kind("fetch-failed")
                        .detail(format!("Reading the answer failed: {e}"))
                })?;
                body.push(&chunk);
                if body.full() {
                    break;
                }
            }
            Ok::<_, Problem>((status, headers, body))
        };
        let (status, headers, body) =
            tokio::time::timeout(FETCH_TIMEOUT, fetch)
                .await
                .map_err(|_| {
                    Problem::new(StatusCode::GATEWAY_TIMEOUT)
                        .kind("fetch-timeout")
                        .detail(format!(
                            "No whole answer within {} s.",
                            FETCH_TIMEOUT.as_secs()
                        ))
                })??;
        let truncated = body.truncated();
        Ok(FetchOut {
            url,
            status,
            headers,
            body: body.finish(&self.0.redactor),
            truncated,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }

    // ---- checkpoints ----

    pub async fn checkpoint(
        &self,
        live: &Arc<Live>,
        message: &str,
    ) -> Result<Option<Checkpoint>, Problem> {
        let message = message.to_owned();
        self.paused(
            live,
            |live| async move { live.checkpoints.take(&message).await },
        )
        .await?
        .map_err(checkpoint_problem)
    }

    pub async fn checkpoints(&self, live: &Live) -> Result<Vec<Checkpoint>, Problem> {
        live.checkpoints.list(100).await.map_err(checkpoint_problem)
    }

    pub async fn restore(&self, live: &Arc<Live>, id: &str) -> Result<Checkpoint, Problem> {
        let id = id.to_owned();
        let restored = self
            .paused(live, |live| async move {
                live.checkpoints.restore(&id, &live.workspace).await
            })
            .await?
            .map_err(checkpoint_problem)?;
        self.refresh_snapshot(live).await;
        Ok(restored)
    }

    /// Runs `work` on the workspace while the container is paused. It runs to the end in its
    /// own task even when the caller gives up, so the container is always unpaused.
    async fn paused<T, F, Fut>(&self, live: &Arc<Live>, work: F) -> Result<T, Problem>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Live>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send,
    {
        let driver = self.0.driver.clone();
        let live = live.clone();
        let task = tokio::spawn(async move {
            let _quiet = live.quiet.write().await;
            driver.pause(&live.container_id).await?;
            let out = work(live.clone()).await;
            driver.unpause(&live.container_id).await?;
            Ok::<_, DriverError>(out)
        });
        task.await
            .map_err(Problem::internal)?
            .map_err(driver_problem)
    }

    // ---- snapshot ----

    async fn read_snapshot(&self, workspace: &Arc<Workspace>) -> Snapshot {
        let workspace = workspace.clone();
        match blocking(move || Snapshot::read(&workspace)).await {
            Ok(Ok(snapshot)) => snapshot,
            _ => Snapshot::default(),
        }
    }

    async fn snapshot(&self, id: Uuid) -> Snapshot {
        match store::get(&self.0.pool, id).await {
            Ok(Some(row)) => serde_json::from_value(row.snapshot).unwrap_or_default(),
            _ => Snapshot::default(),
        }
    }

    async fn refresh_snapshot(&self, live: &Live) {
        let snapshot = self.read_snapshot(&live.workspace).await;
        if let Err(error) = store::set_snapshot(&self.0.pool, live.id, &snapshot.to_value()).await {
            tracing::warn!(session = %live.id, %error, "saving the project snapshot failed");
        }
    }

    // ---- restarts and reaping ----

    /// Adopts the sessions whose containers still run (restarting their dev servers), ends
    /// the rest, and removes this store's containers that no live session owns.
    async fn recover(&self) -> anyhow::Result<()> {
        let rows = store::live(&self.0.pool).await?;
        let containers = match self
            .0
            .driver
            .list(&format!("{OWNER_LABEL}={}", self.0.owner_tag))
            .await
        {
            Ok(containers) => containers,
            Err(error) => {
                // Without the engine nothing can be checked; the sessions stay as they are and
                // the next start looks again.
                tracing::warn!(%error, "container engine unreachable; sessions not recovered");
                return Ok(());
            }
        };
        let mut kept = Vec::new();
        for row in rows {
            let container = containers
                .iter()
                .find(|c| Some(&c.id) == row.container_id.as_ref() && c.running);
            let dir = self.session_dir(row.id);
            let workspace = Workspace::open(Path::new(&row.workspace_path), self.0.plan.owner);
            match (row.status.as_str(), container, workspace) {
                ("ready", Some(container), Ok(workspace)) => {
                    let live = self.adopt(row.id, container.id.clone(), Arc::new(workspace), &dir);
                    kept.push(container.id.clone());
                    live.logs
                        .line(Stream::System, "session recovered after a restart");
                    if let (Some(cmd), Some(port)) = (row.dev_command, row.dev_port) {
                        // The old dev server's output went to the previous process; start it
                        // afresh so its log and preview work again.
                        let _ = self
                            .0
                            .driver
                            .exec(
                                &live.container_id,
                                ExecSpec {
                                    cmd: "kill -KILL -1 2>/dev/null; true".into(),
                                    cwd: WORKSPACE_MOUNT.into(),
                                    env: Vec::new(),
                                    timeout: Some(Duration::from_secs(5)),
                                },
                                mpsc::channel(1).0,
                                CancellationToken::new(),
                            )
                            .await;
                        if let Ok(port) = u16::try_from(port) {
                            let _ = self.dev_start(&live, cmd, port, None).await;
                        }
                    }
                }
                (_, container, _) => {
                    let reason = if container.is_none() {
                        "its container was gone when the sandbox restarted"
                    } else {
                        "the sandbox restarted while it was being created"
                    };
                    tracing::info!(session = %row.id, reason, "ending a session");
                    let _ = store::end(&self.0.pool, row.id, "failed", reason).await;
                    if let Some(container) = container {
                        let _ = self.0.driver.remove(&container.id).await;
                    }
                    let _ = remove_dir(&dir).await;
                }
            }
        }
        for container in containers.iter().filter(|c| !kept.contains(&c.id)) {
            tracing::info!(container = %container.name, "removing a container no session owns");
            let _ = self.0.driver.remove(&container.id).await;
        }
        Ok(())
    }

    /// Deletes idle sessions until shutdown.
    async fn reap(self) {
        let every = (self.0.limits.idle / 4).clamp(Duration::from_millis(200), REAP_EVERY);
        let mut ticker = tokio::time::interval(every);
        loop {
            tokio::select! {
                () = self.0.shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let idle = match store::idle(&self.0.pool, self.0.limits.idle.as_secs_f64()).await {
                Ok(idle) => idle,
                Err(error) => {
                    tracing::warn!(%error, "looking for idle sessions failed");
                    continue;
                }
            };
            for id in idle {
                let reason = format!(
                    "idle for {}",
                    humantime::format_duration(self.0.limits.idle)
                );
                if let Err(problem) = self.delete_session(id, &reason).await {
                    tracing::warn!(session = %id, detail = ?problem.detail, "reaping failed");
                }
            }
        }
    }
}

/// `/api/sessions/{id}/preview/proxy`
pub fn preview_prefix(id: Uuid) -> String {
    format!("/api/sessions/{id}/preview/proxy")
}

fn summarize(tool: &str, out: &Value) -> String {
    match tool {
        "exec" | "install" => format!(
            "exit {}{}{}",
            out["exitCode"],
            if out["timedOut"] == true {
                ", timed out"
            } else {
                ""
            },
            if out["oomKilled"] == true {
                ", OOM-killed"
            } else {
                ""
            }
        ),
        "fs_list" => format!("{} entries", out.as_array().map_or(0, Vec::len)),
        "fs_read" => format!("{} bytes", out["size"]),
        "fs_write" => format!("{} bytes written", out["bytes"]),
        "http_fetch" => format!("HTTP {}", out["status"]),
        _ => "ok".to_owned(),
    }
}

fn is_manifest(path: &str) -> bool {
    matches!(
        path,
        "package.json" | "requirements.txt" | "pyproject.toml" | "index.html"
    )
}

/// `'…'` with embedded quotes escaped, for POSIX sh.
fn shell_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

fn parse_user(user: &str) -> anyhow::Result<(u32, u32)> {
    let (uid, gid) = user
        .split_once(':')
        .ok_or_else(|| anyhow::anyhow!("SANDBOX_USER must be uid:gid"))?;
    let (uid, gid) = (uid.parse::<u32>()?, gid.parse::<u32>()?);
    anyhow::ensure!(uid != 0, "SANDBOX_USER must not be root");
    Ok((uid, gid))
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    Ok(if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir()?.join(path)
    })
}

/// Only the service may list the workspaces; each is reached through its own bind mount.
fn restrict(root: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| anyhow::anyhow!("restricting {}: {e}", root.display()))
}

async fn remove_dir(dir: &Path) -> std::io::Result<()> {
    let dir = dir.to_owned();
    let removed = tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    })
    .await;
    removed.unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Problem> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(Problem::internal)
}

pub fn not_found(id: Uuid) -> Problem {
    Problem::not_found(format!("No session {id}.")).kind("session-not-found")
}

pub fn invalid(detail: &str, field: &str, message: impl Into<String>) -> Problem {
    Problem::validation(
        detail,
        [FieldError {
            field: field.into(),
            message: message.into(),
        }],
    )
}

pub fn fs_problem(error: FsError) -> Problem {
    let status = match &error {
        FsError::NotFound { .. } => StatusCode::NOT_FOUND,
        FsError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        FsError::Escapes { .. } | FsError::Symlink { .. } => StatusCode::FORBIDDEN,
        FsError::IsADirectory { .. }
        | FsError::NotADirectory { .. }
        | FsError::Binary { .. }
        | FsError::TooManyEntries { .. } => StatusCode::CONFLICT,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    let detail = error.to_string();
    let mut problem = Problem::new(status)
        .kind(error.kind())
        .detail(detail.clone());
    // Everything but a failure of the host names the path it was about.
    if status != StatusCode::INTERNAL_SERVER_ERROR {
        problem = problem.field("/path", detail);
    }
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(%error, "workspace I/O failed");
    }
    problem
}

fn checkpoint_problem(error: CheckpointError) -> Problem {
    match error {
        CheckpointError::NotFound { id } => {
            Problem::not_found(format!("No checkpoint {id}.")).kind("checkpoint-not-found")
        }
        CheckpointError::InvalidId { id } => invalid(
            "The checkpoint id is not valid.",
            "/id",
            format!("{id:?}: expected 7 to 40 hexadecimal characters"),
        ),
        CheckpointError::Fs(error) => fs_problem(error),
        other => Problem::internal(other),
    }
}

pub fn driver_problem(error: DriverError) -> Problem {
    match error {
        DriverError::Unreachable(reason) => {
            Problem::unavailable(format!("The container engine is unreachable: {reason}"))
                .kind("engine-unreachable")
        }
        DriverError::ImageMissing { image } => Problem::unavailable(format!(
            "The sandbox image {image} is not in the container engine; pull or build it \
             (SANDBOX_IMAGE)."
        ))
        .kind("image-missing"),
        DriverError::NotFound { .. } | DriverError::NotRunning { .. } => Problem::new(
            StatusCode::GONE,
        )
        .kind("container-gone")
        .title("Container gone")
        .detail(format!(
            "The session's container is gone ({error}); delete the session and create another."
        )),
        DriverError::Engine(reason) => Problem::new(StatusCode::BAD_GATEWAY)
            .kind("engine-error")
            .title("Container engine error")
            .detail(reason),
    }
}
