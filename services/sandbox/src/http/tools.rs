//! The tools over HTTP: `GET fs/list`, `GET fs/read`, `POST fs/write`, `POST exec`,
//! `POST install`, `POST dev/start`, `POST dev/stop`, `POST http/fetch`, and checkpoints
//! (`GET`/`POST checkpoints`, `POST checkpoints/{checkpoint}/restore`), all under
//! `/api/sessions/{id}/`. Each call is recorded with its outcome.

use autonoma_common::Problem;
use autonoma_common::extract::{Json, Query};
use axum::extract::{DefaultBodyLimit, Path, State};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{TAG, parse_session};
use crate::Sandbox;
use crate::sandbox::{DevOut, ExecOut, FetchOut, Limits, PackageManager, Via, WriteResult};
use crate::workspace::{Checkpoint, Entry, FileOut};

/// The tools; `fs/write` takes bodies up to [`Limits::write_body`], the others up to
/// REQUEST_BODY_LIMIT.
pub fn router(limits: Limits) -> OpenApiRouter<Sandbox> {
    let write = OpenApiRouter::new()
        .routes(routes!(write_file))
        .layer(DefaultBodyLimit::max(limits.write_body()));
    OpenApiRouter::new()
        .routes(routes!(list_files))
        .routes(routes!(read_file))
        .merge(write)
        .routes(routes!(exec_command))
        .routes(routes!(install_packages))
        .routes(routes!(start_dev))
        .routes(routes!(stop_dev))
        .routes(routes!(fetch_url))
        .routes(routes!(list_checkpoints, create_checkpoint))
        .routes(routes!(restore_checkpoint))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PathQuery {
    /// Relative to the workspace root (`/workspace` in the container); empty is the root.
    #[serde(default)]
    pub path: String,
}

/// The entries of a workspace directory.
#[utoipa::path(get, path = "/api/sessions/{id}/fs/list", tag = TAG,
    security(("basicAuth" = []), ("internalKey" = [])),
    params(("id" = String, Path, description = "Session id"), PathQuery),
    responses(
        (status = 200, body = inline(Object), example = json!({"entries": [{"name": "index.html", "path": "index.html", "type": "file", "size": 120}]})),
        (status = 403, description = "The path leads outside the workspace", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Absolute path or `..`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_files(
    State(sandbox): State<Sandbox>,
    Path(id): Path<String>,
    Query(query): Query<PathQuery>,
) -> Result<Json<Value>, Problem> {
    let live = sandbox.live(parse_session(&id)?).await?;
    let args = json!({"dir": query.path});
    let entries: Vec<Entry> = sandbox
        .call(
            &live,
            Via::Http,
            "fs_list",
            args,
            sandbox.fs_list(&live, query.path),
        )
        .await?;
    Ok(Json(json!({ "entries": entries })))
}

/// A text file of the workspace (cut at `SANDBOX_OUTPUT_LIMIT` bytes, `truncated` then).
#[utoipa::path(get, path = "/api/sessions/{id}/fs/read", tag = TAG,
    security(("basicAuth" = []), ("internalKey" = [])),
    params(("id" = String, Path, description = "Session id"), PathQuery),
    responses(
        (status = 200, body = FileOut),
        (status = 403, description = "The path leads outside the workspace", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A directory, or not UTF-8 text", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Absolute path or `..`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn read_file(
    State(sandbox): State<Sandbox>,
    Path(id): Path<String>,
    Query(query): Query<PathQuery>,
) -> Result<Json<FileOut>, Problem> {
    let live = sandbox.live(parse_session(&id)?).await?;
    let args = json!({"path": query.path});
    let file = sandbox
        .call(
            &live,
            Via::Http,
            "fs_read",
            args,
            sandbox.fs_read(&live, query.path),
        )
        .await?;
    Ok(Json(file))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WriteIn {
    /// Relative to the workspace root; missing directories are created.
    pub path: String,
    /// The whole new content (UTF-8 text).
    pub content: String,
}

/// Creates or replaces a file (a checkpoint is taken first when it replaces one).
#[utoipa::path(post, path = "/api/sessions/{id}/fs/write", tag = TAG,
    security(("basicAuth" = []), ("internalKey" = [])),
    params(("id" = String, Path, description = "Session id")),
    request_body = WriteIn,
    responses(
        (status = 200, body = WriteResult),
        (status = 403, description = "The path leads outside the workspace, or is a symlink", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad path, or content over SANDBOX_FILE_LIMIT", body = Problem, content_type = "application/problem+json"),
    ))]
async fn write_file(
    State(sandbox): State<Sandbox>,
    Path(id): Path<String>,
    Json(input): Json<WriteIn>,
) -> Result<Json<WriteResult>, Problem> {
    let live = sandbox.live(parse_session(&id)?).await?;
    let args = json!({"path": input.path, "content": input.content});
    let written = sandbox
        .call(
            &live,
            Via::Http,
            "fs_write",
            args,
            sandbox.fs_write(&live, input.path, input.content),
        )
        .await?;
    Ok(Json(written))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecIn {
    /// A shell command (`sh -c`), run as the session's user.
    pub cmd: String,
    /// Working directory relative to the workspace root (default the root).
    #[serde(default)]
    pub cwd: Option<String>,
    /// Seconds before the command and every process it started are killed: 1 to 120
    /// (default `SANDBOX_EXEC_TIMEOUT`).
    #[serde(default)]
    pub timeout_sec: Option<u64>,
}

/// Runs a command in the session's container and returns its output and exit code.
#[utoipa::path(post, path = "/api/sessions/{id}/exec", tag = TAG,
    security(("basicAuth" = []), ("internalKey" = [])),
    params(("id" = String, Path, description = "Session id")),
    request_body = ExecIn,
    responses(
        (status = 200, body = ExecOut),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn exec_command(
    State(sandbox): State<Sandbox>,
    Path(id): Path<String>,
    Json(input): Json<ExecIn>,
) -> Result<Json<ExecOut>, Problem> {
    let live = sandbox.live(parse_session(&id)?).await?;
    let args = json!({"cmd": input.cmd, "cwd": input.cwd, "timeoutSec": input.timeout_sec});
    let run = async {
        let timeout = sandbox.exec_timeout(input.timeout_sec)?;
        sandbox.exec(&live, input.cmd, input.cwd, timeout).await
    };
    Ok(Json(
        sandbox.call(&live, Via::Http, "exec", args, run).await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstallIn {
    pub pkg_manager: PackageManager,
    /// Packages and flags, each passed as one argument (e.g. `["react@19", "-D"]`).
    pub args: Vec<String>,
    /// Seconds before the install is killed: 1 to 120 (default `SANDBOX_EXEC_TIMEOUT`).
    #[serde(default)]
    pub timeout_sec: Option<u64>,
}

/// Installs packages (after a checkpoint) and refreshes the project snapshot.
#[utoipa::path(post, path = "/api/sessions/{id}/install", tag = TAG,
    security(("basicAuth" = []), ("internalKey" = [])),
    params(("id" = String, Path, description = "Session id")),
    request_body = InstallIn,
    responses(
        (status = 200, body = ExecOut),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn install_packages(
    State(sandbox): State<Sandbox>,
    Path(id): Path<String>,
    Json(input): Json<InstallIn>,
) -> Result<Json<ExecOut>, Problem> {
    let live = sandbox.live(parse_session(&id)?).await?;
    let args = json!({"pkgManager": input.pkg_manager, "args": input.args});
    let run = async {
        let timeout = sandbox.exec_timeout(input.timeout_sec)?;
        sandbox
            .install(&live, input.pkg_manager, input.args, timeout)
            .await
    };
    Ok(Json(
        sandbox.call(&live, Via::Http, "install", args, run).await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DevIn {
    /// The command that runs the dev server (it keeps running until dev/stop).
    pub cmd: String,
    /// The port it listens on inside the container; the preview proxies to it.
    pub port: u16,
    /// Forward the full `/api/sessions/{id}/preview/proxy/…` path instead of the part after
    /// it, for servers configured with that base path (default: true for Vite projects).
    #[serde(default)]
    pub keep_prefix: Option<bool>,
}

/// Starts the dev server (stopping the one before); its output goes to the log stream.
#[utoipa::path(post, path = "/api/sessions/{id}/dev/start", tag = TAG,
    security(("basicAuth" = []), ("internalKey" = [])),
    params(("id" = String, Path, description = "Session id")),
    request_body = DevIn,
    responses(
        (status = 200, body = DevOut),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn start_dev(
    State(sandbox): State<Sandbox>,
    Path(id): Path<String>,
    Json(input): Json<DevIn>,
) -> Result<Json<DevOut>, Problem> {
    let live = sandbox.live(parse_session(&id)?).await?;
    let args = json!({"cmd": input.cmd, "port": input.port});
    let run = sandbox.dev_start(&live, input.cmd, input.port, input.keep_prefix);
    Ok(Json(
        sandbox
            .call(&live, Via::Http, "dev_start", args, run)
            .await?,
    ))
}

/// Stops the dev server and every process it started.
#[utoipa::path(post, path = "/api/sessions/{id}/dev/stop", tag = TAG,
    security(("basicAuth" = []), ("internalKey" = [])),
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 200, body = inline(Object), example = json!({"ok": true, "stopped": true})),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn stop_dev(
    State(sandbox): State<Sandbox>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let live = sandbox.live(parse_session(&id)?).await?;
    let run = sandbox.dev_stop(&live);
    Ok(Json(
        sandbox
            .call(&live, Via::Http, "dev_stop", json!({}), run)
            .await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FetchIn {
    /// `http://localhost:<port>/…` inside the session, or a path on its dev server.
    pub url: String,
}

/// GETs a page from a server in the session (a preview health check).
#[utoipa::path(post, path = "/api/sessions/{id}/http/fetch", tag = TAG,
    security(("basicAuth" = []), ("internalKey" = [])),
    params(("id" = String, Path, description = "Session id")),
    request_body = FetchIn,
    responses(
        (status = 200, body = FetchOut),
        (status = 422, description = "Not a URL inside the session", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "Nothing answered", body = Problem, content_type = "application/problem+json"),
    ))]
async fn fetch_url(
    State(sandbox): State<Sandbox>,
    Path(id): Path<String>,
    Json(input): Json<FetchIn>,
) -> Result<Json<FetchOut>, Problem> {
    let live = sandbox.live(parse_session(&id)?).await?;
    let args = json!({"url": input.url});
    let run = sandbox.http_fetch(&live, input.url);
    Ok(Json(
        sandbox
            .call(&live, Via::Http, "http_fetch", args, run)
            .await?,
    ))
}

/// The workspace's checkpoints, newest first.
#[utoipa::path(get, path = "/api/sessions/{id}/checkpoints", tag = TAG,
    security(("basicAuth" = []), ("internalKey" = [])),
    params(("id" = String, Path, description = "Session id")),
    responses((status = 200, body = Vec<Checkpoint>)))]
async fn list_checkpoints(
    State(sandbox): State<Sandbox>,
    Path(id): Path<String>,
) -> Result<Json<Vec<Checkpoint>>, Problem> {
    let live = sandbox.live(parse_session(&id)?).await?;
    Ok(Json(sandbox.checkpoints(&live).await?))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckpointIn {
    #[serde(default)]
    pub message: Option<String>,
}

/// Takes a checkpoint of the workspace (`checkpoint` null when nothing changed since the last).
#[utoipa::path(post, path = "/api/sessions/{id}/checkpoints", tag = TAG,
    security(("basicAuth" = []), ("internalKey" = [])),
    params(("id" = String, Path, description = "Session id")),
    request_body = CheckpointIn,
    responses((status = 200, body = inline(Object), example = json!({"checkpoint": null}))))]
async fn create_checkpoint(
    State(sandbox): State<Sandbox>,
    Path(id): Path<String>,
    Json(input): Json<CheckpointIn>,
) -> Result<Json<Value>, Problem> {
    let live = sandbox.live(parse_session(&id)?).await?;
    let message = input.message.unwrap_or_else(|| "checkpoint".to_owned());
    let args = json!({"message": message});
    let run = async { Ok(json!({"checkpoint": sandbox.checkpoint(&live, &message).await?})) };
    Ok(Json(
        sandbox
            .call(&live, Via::Http, "checkpoint", args, run)
            .await?,
    ))
}

/// Makes the workspace equal to the checkpoint (after checkpointing the current state).
#[utoipa::path(post, path = "/api/sessions/{id}/checkpoints/{checkpoint}/restore", tag = TAG,
    security(("basicAuth" = []), ("internalKey" = [])),
    params(("id" = String, Path, description = "Session id"), ("checkpoint" = String, Path, description = "Checkpoint id")),
    responses(
        (status = 200, body = Checkpoint),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn restore_checkpoint(
    State(sandbox): State<Sandbox>,
    Path((id, checkpoint)): Path<(String, String)>,
) -> Result<Json<Checkpoint>, Problem> {
    let live = sandbox.live(parse_session(&id)?).await?;
    let args = json!({"id": checkpoint});
    let run = sandbox.restore(&live, &checkpoint);
    Ok(Json(
        sandbox.call(&live, Via::Http, "restore", args, run).await?,
    ))
}
