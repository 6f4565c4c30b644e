//! The tools over MCP: `/api/sessions/{id}/mcp`, the streamable HTTP transport bound to one
//! sandbox session, guarded by an internal key in `X-INTERNAL-KEY` or `Authorization: Bearer`.
//! Each tool calls the same [`Sandbox`] operation as its HTTP route and is recorded the same
//! way (`via: mcp`); a [`Problem`] comes back as a tool result with `isError: true` whose
//! content is the problem JSON, so the model can correct its call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use autonoma_common::Problem;
use autonoma_common::auth::require_internal_key_or_bearer;
use autonoma_common::mcp::{Args, input_schema, problem_result, tool_result};
use axum::extract::{Path, Request, State};
use axum::middleware::from_fn;
use axum::response::{IntoResponse, Response};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{CallToolResult, Implementation, ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::Sandbox;
use crate::http::parse_session;
use crate::sandbox::{PackageManager, Via};

/// An MCP session unused this long is closed (the sandbox session stays).
const SESSION_IDLE: Duration = Duration::from_secs(900);

type Service = StreamableHttpService<SessionTools, LocalSessionManager>;

/// One MCP service per sandbox session, made on its first request.
#[derive(Clone, Default)]
struct Services(Arc<Mutex<HashMap<Uuid, Service>>>);

pub fn router(sandbox: Sandbox) -> OpenApiRouter {
    let state = (sandbox, Services::default());
    OpenApiRouter::new()
        .routes(routes!(post_mcp, stream_mcp))
        .route_layer(from_fn(require_internal_key_or_bearer))
        .with_state(state)
}

/// The session's tools over MCP's streamable HTTP transport: a JSON-RPC message, answered as
/// JSON or as an event stream.
#[utoipa::path(post, path = "/api/sessions/{id}/mcp", tag = "mcp",
    security(("internalKey" = []), ("bearerAuth" = [])),
    params(("id" = String, Path, description = "Session id")),
    request_body(content = Object, description = "A JSON-RPC message"),
    responses(
        (status = 200, description = "The JSON-RPC answer, or an event stream"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn post_mcp(
    state: State<(Sandbox, Services)>,
    id: Path<String>,
    request: Request,
) -> Response {
    serve(state, id, request).await
}

/// `GET`: the MCP session's event stream; `DELETE`: ends the MCP session.
#[utoipa::path(method(get, delete), path = "/api/sessions/{id}/mcp", tag = "mcp",
    security(("internalKey" = []), ("bearerAuth" = [])),
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "The event stream (GET), or the session ended (DELETE)"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn stream_mcp(
    state: State<(Sandbox, Services)>,
    id: Path<String>,
    request: Request,
) -> Response {
    serve(state, id, request).await
}

async fn serve(
    State((sandbox, services)): State<(Sandbox, Services)>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let id = match parse_session(&id) {
        Ok(id) => id,
        Err(problem) => return problem.into_response(),
    };
    if let Err(problem) = sandbox.live(id).await {
        if let Ok(mut services) = services.0.lock() {
            services.remove(&id);
        }
        return problem.into_response();
    }
    let service = match services.0.lock() {
        Ok(mut services) => services
            .entry(id)
            .or_insert_with(|| service_for(&sandbox, id))
            .clone(),
        Err(_) => return Problem::internal("the MCP services lock is poisoned").into_response(),
    };
    service.handle(request).await.into_response()
}

fn service_for(sandbox: &Sandbox, session: Uuid) -> Service {
    let config = StreamableHttpServerConfig::default()
        .with_cancellation_token(sandbox.shutdown_token())
        // Every request carries the internal key, which a DNS-rebinding page cannot know; the
        // default loopback-only Host check would refuse the deployed hostname.
        .disable_allowed_hosts()
        // Room for the largest fs_write, the JSON-RPC envelope included.
        .with_max_request_body_bytes(sandbox.limits().write_body());
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(SESSION_IDLE);
    let sandbox = sandbox.clone();
    StreamableHttpService::new(
        move || Ok(SessionTools::new(sandbox.clone(), session)),
        Arc::new(sessions),
        config,
    )
}

/// The MCP server of one sandbox session.
#[derive(Clone)]
pub struct SessionTools {
    sandbox: Sandbox,
    session: Uuid,
    tool_router: ToolRouter<Self>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListArgs {
    /// Directory relative to the workspace root (`/workspace`); empty or `.` is the root.
    #[serde(default)]
    dir: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReadArgs {
    /// File path relative to the workspace root, e.g. `src/App.jsx`.
    path: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WriteArgs {
    /// File path relative to the workspace root; missing directories are created.
    path: String,
    /// The whole new content of the file (UTF-8 text).
    content: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ExecArgs {
    /// A shell command (`sh -c`), run as the session's non-root user in `/workspace`.
    cmd: String,
    /// Working directory relative to the workspace root.
    #[serde(default)]
    cwd: Option<String>,
    /// Seconds before the command and every process it started are killed, 1 to 120.
    #[serde(default)]
    #[schemars(range(min = 1, max = 120))]
    timeout_sec: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InstallArgs {
    /// `npm`, `pnpm`, `yarn`, `bun` or `pip`.
    pkg_manager: PackageManager,
    /// Packages and flags, each one argument, e.g. `["react@19", "-D"]`.
    args: Vec<String>,
    /// Seconds before the install is killed, 1 to 120.
    #[serde(default)]
    #[schemars(range(min = 1, max = 120))]
    timeout_sec: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DevStartArgs {
    /// The command that runs the dev server, e.g. `npm run dev`.
    cmd: String,
    /// The port it listens on inside the container.
    #[schemars(range(min = 1, max = 65535))]
    port: u16,
    /// Forward the full preview path to the server (for servers configured with the preview
    /// base path, as Vite projects of the vite-react template are; that is the default for
    /// Vite).
    #[serde(default)]
    keep_prefix: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FetchArgs {
    /// `http://localhost:<port>/…` inside the session, or a path (`/`) on its dev server.
    url: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CheckpointArgs {
    /// What the checkpoint is for.
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RestoreArgs {
    /// The checkpoint id (from list_checkpoints).
    id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

#[tool_router]
impl SessionTools {
    pub fn new(sandbox: Sandbox, session: Uuid) -> Self {
        Self {
            sandbox,
            session,
            tool_router: Self::tool_router(),
        }
    }

    /// Runs one tool against the session: checks it is live, records the call.
    async fn run<T, F, Fut>(&self, tool: &str, arguments: Value, op: F) -> CallToolResult
    where
        T: serde::Serialize,
        F: FnOnce(Arc<crate::sandbox::Live>) -> Fut,
        Fut: Future<Output = Result<T, Problem>>,
    {
        let live = match self.sandbox.live(self.session).await {
            Ok(live) => live,
            Err(problem) => return problem_result(&problem),
        };
        let result = self
            .sandbox
            .call(&live, Via::Mcp, tool, arguments, op(live.clone()))
            .await;
        tool_result(result)
    }

    /// Lists a workspace directory: name, path, type (file, dir, symlink) and size of each
    /// entry.
    #[tool(input_schema = input_schema::<ListArgs>())]
    async fn fs_list(&self, Args(args): Args<ListArgs>) -> CallToolResult {
        let args = match args {
            Ok(args) => args,
            Err(problem) => return problem_result(&problem),
        };
        let sandbox = self.sandbox.clone();
        self.run("fs_list", json!({"dir": args.dir}), |live| async move {
            let entries = sandbox
                .fs_list(&live, args.dir)
                .await
                .map_err(|mut problem| {
                    // This tool calls the path `dir`.
                    for error in &mut problem.errors {
                        if error.field == "/path" {
                            error.field = "/dir".into();
                        }
                    }
                    problem
                })?;
            Ok(json!({ "entries": entries }))
        })
        .await
    }

    /// Reads a text file of the workspace (cut at the output limit, `truncated` then).
    #[tool(input_schema = input_schema::<ReadArgs>())]
    async fn fs_read(&self, Args(args): Args<ReadArgs>) -> CallToolResult {
        let args = match args {
            Ok(args) => args,
            Err(problem) => return problem_result(&problem),
        };
        let sandbox = self.sandbox.clone();
        self.run("fs_read", json!({"path": args.path}), |live| async move {
            sandbox.fs_read(&live, args.path).await
        })
        .await
    }

    /// Creates or replaces a file; replacing one takes a checkpoint first.
    #[tool(input_schema = input_schema::<WriteArgs>())]
    async fn fs_write(&self, Args(args): Args<WriteArgs>) -> CallToolResult {
        let args = match args {
            Ok(args) => args,
            Err(problem) => return problem_result(&problem),
        };
        let sandbox = self.sandbox.clone();
        let recorded = json!({"path": args.path, "content": args.content});
        self.run("fs_write", recorded, |live| async move {
            sandbox.fs_write(&live, args.path, args.content).await
        })
        .await
    }

    /// Runs a shell command in the session's container: exit code, stdout, stderr (each cut at
    /// the output limit), whether it timed out or was OOM-killed.
    #[tool(input_schema = input_schema::<ExecArgs>())]
    async fn exec(&self, Args(args): Args<ExecArgs>) -> CallToolResult {
        let args = match args {
            Ok(args) => args,
            Err(problem) => return problem_result(&problem),
        };
        let sandbox = self.sandbox.clone();
        let recorded = json!({"cmd": args.cmd, "cwd": args.cwd, "timeoutSec": args.timeout_sec});
        self.run("exec", recorded, |live| async move {
            let timeout = sandbox.exec_timeout(args.timeout_sec)?;
            sandbox.exec(&live, args.cmd, args.cwd, timeout).await
        })
        .await
    }

    /// Installs packages with a package manager (after a checkpoint).
    #[tool(input_schema = input_schema::<InstallArgs>())]
    async fn install(&self, Args(args): Args<InstallArgs>) -> CallToolResult {
        let args = match args {
            Ok(args) => args,
            Err(problem) => return problem_result(&problem),
        };
        let sandbox = self.sandbox.clone();
        let recorded = json!({"pkgManager": args.pkg_manager, "args": args.args});
        self.run("install", recorded, |live| async move {
            let timeout = sandbox.exec_timeout(args.timeout_sec)?;
            sandbox
                .install(&live, args.pkg_manager, args.args, timeout)
                .await
        })
        .await
    }

    /// Starts the dev server (replacing a running one); the preview proxies to its port and
    /// its output goes to the session's log.
    #[tool(input_schema = input_schema::<DevStartArgs>())]
    async fn dev_start(&self, Args(args): Args<DevStartArgs>) -> CallToolResult {
        let args = match args {
            Ok(args) => args,
            Err(problem) => return problem_result(&problem),
        };
        let sandbox = self.sandbox.clone();
        let recorded = json!({"cmd": args.cmd, "port": args.port});
        self.run("dev_start", recorded, |live| async move {
            sandbox
                .dev_start(&live, args.cmd, args.port, args.keep_prefix)
                .await
        })
        .await
    }

    /// Stops the dev server and every process it started.
    #[tool(input_schema = input_schema::<NoArgs>())]
    async fn dev_stop(&self, Args(args): Args<NoArgs>) -> CallToolResult {
        if let Err(problem) = args {
            return problem_result(&problem);
        }
        let sandbox = self.sandbox.clone();
        self.run("dev_stop", json!({}), |live| async move {
            sandbox.dev_stop(&live).await
        })
        .await
    }

    /// GETs a URL served inside the session (a preview health check): status, headers, body.
    #[tool(input_schema = input_schema::<FetchArgs>())]
    async fn http_fetch(&self, Args(args): Args<FetchArgs>) -> CallToolResult {
        let args = match args {
            Ok(args) => args,
            Err(problem) => return problem_result(&problem),
        };
        let sandbox = self.sandbox.clone();
        self.run("http_fetch", json!({"url": args.url}), |live| async move {
            sandbox.http_fetch(&live, args.url).await
        })
        .await
    }

    /// Takes a git checkpoint of the workspace (null when nothing changed since the last).
    #[tool(input_schema = input_schema::<CheckpointArgs>())]
    async fn checkpoint(&self, Args(args): Args<CheckpointArgs>) -> CallToolResult {
        let args = match args {
            Ok(args) => args,
            Err(problem) => return problem_result(&problem),
        };
        let message = args.message.unwrap_or_else(|| "checkpoint".to_owned());
        let sandbox = self.sandbox.clone();
        self.run("checkpoint", json!({"message": message}), |live| async move {
            Ok(json!({"checkpoint": sandbox.checkpoint(&live, &message).await?}))
        })
        .await
    }

    /// The workspace's checkpoints, newest first.
    #[tool(input_schema = input_schema::<NoArgs>())]
    async fn list_checkpoints(&self, Args(args): Args<NoArgs>) -> CallToolResult {
        if let Err(problem) = args {
            return problem_result(&problem);
        }
        let sandbox = self.sandbox.clone();
        self.run("list_checkpoints", json!({}), |live| async move {
            Ok(json!({"checkpoints": sandbox.checkpoints(&live).await?}))
        })
        .await
    }

    /// Makes the workspace equal to a checkpoint (the current state is checkpointed first).
    #[tool(input_schema = input_schema::<RestoreArgs>())]
    async fn restore_checkpoint(&self, Args(args): Args<RestoreArgs>) -> CallToolResult {
        let args = match args {
            Ok(args) => args,
            Err(problem) => return problem_result(&problem),
        };
        let sandbox = self.sandbox.clone();
        self.run("restore", json!({"id": args.id}), |live| async move {
            sandbox.restore(&live, &args.id).await
        })
        .await
    }

    /// The session: status, preview URL, container, dev server, project snapshot, resources.
    #[tool(input_schema = input_schema::<NoArgs>())]
    async fn session_state(&self, Args(args): Args<NoArgs>) -> CallToolResult {
        if let Err(problem) = args {
            return problem_result(&problem);
        }
        tool_result(self.sandbox.state(self.session).await)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for SessionTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                crate::SERVICE,
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(format!(
                "Sandbox session {}: a container with a workspace at /workspace. Edit files \
                 with fs_write, run commands with exec, start a dev server with dev_start and \
                 check it with http_fetch; the person sees it at {}.",
                self.session,
                self.sandbox.preview_url(self.session)
            ))
    }
}
