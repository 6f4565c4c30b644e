//! The dashboard on the local stack.
//!
//! `dashboard/dist` (built with npm when its sources are newer) served on the stack's base
//! port + 6, with every unknown path answered by `index.html` so the app's own routes
//! (`/tasks/<id>`, `/pages/<page>`) load directly, and `/config.json` telling the app where
//! each service answers.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, bail};
use axum::Router;
use axum::http::{HeaderValue, header};
use axum::routing::get;
use tokio::process::Command;
use tokio::task::JoinHandle;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;

pub const PORT_OFFSET: u16 = 6;

const INSTALL_NODE: &str = "apt-get install -y nodejs npm";

/// `dist`, built first when `build` is set and its sources changed since the last build.
/// `None` (after saying why) when there is no build and npm is missing to make one.
pub async fn prepare(root: &Path, build: bool) -> anyhow::Result<Option<PathBuf>> {
    let dir = root.join("dashboard");
    let dist = dir.join("dist");
    let built = dist.join("index.html");
    let npm_found = which("npm");
    if build && npm_found && is_stale(&dir, &built) {
        if is_stale_install(&dir) {
            npm(&dir, &["ci", "--no-audit", "--no-fund"]).await?;
        }
        npm(&dir, &["run", "build"]).await?;
    }
    if built.is_file() {
        return Ok(Some(dist));
    }
    if !npm_found {
        eprintln!(
            "{} the dashboard is not built and npm is missing, so the stack runs without it. \
             Install Node.js 20+ with npm ({INSTALL_NODE}) and start again.",
            crate::stack::tag("launcher")
        );
    } else {
        eprintln!(
            "{} the dashboard is not built (--no-build); run `npm ci && npm run build` in dashboard/",
            crate::stack::tag("launcher")
        );
    }
    Ok(None)
}

/// Serves `dist` on 127.0.0.1:`port`; the task ends when the launcher does.
pub async fn serve(
    dist: &Path,
    port: u16,
    services: serde_json::Value,
) -> anyhow::Result<(String, JoinHandle<()>)> {
    let config = serde_json::json!({ "services": services });
    let index = ServeFile::new(dist.join("index.html"));
    let app = Router::new()
        .route(
            "/config.json",
            get(move || {
                let config = config.clone();
                async move { axum::Json(config) }
            }),
        )
        .fallback_service(ServeDir::new(dist).fallback(index))
        // Asset names carry content hashes; index.html and config.json must never be stale.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        ));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("binding the dashboard to 127.0.0.1:{port}"))?;
    let url = format!("http://127.0.0.1:{port}");
    let handle = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            eprintln!(
                "{} the dashboard server stopped: {error}",
                crate::stack::tag("launcher")
            );
        }
    });
    Ok((url, handle))
}

async fn npm(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    println!(
        "{} npm {} (dashboard)",
        crate::stack::tag("launcher"),
        args.join(" ")
    );
    let status = Command::new("npm")
        .args(args)
        .current_dir(dir)
        .status()
        .await
        .context("running npm")?;
    if !status.success() {
        bail!(
            "`npm {}` in {} failed ({status})",
            args.join(" "),
            dir.display()
        );
    }
    Ok(())
}

/// Whether anything the build reads is newer than its output.
fn is_stale(dir: &Path, built: &Path) -> bool {
    let Some(built_at) = modified(built) else {
        return true;
    };
    let inputs = [
        "src",
        "public",
        "index.html",
        "package.json",
        "package-lock.json",
        "vite.config.ts",
        "tsconfig.json",
    ];
    inputs
        .iter()
        .filter_map(|input| newest(&dir.join(input)))
        .any(|at| at > built_at)
}

/// Whether `node_modules` is missing or older than the lock file.
fn is_stale_install(dir: &Path) -> bool {
    match (
        modified(&dir.join("node_modules").join(".package-lock.json")),
        modified(&dir.join("package-lock.json")),
    ) {
        (Some(installed), Some(locked)) => locked > installed,
        _ => true,
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    path.metadata().and_then(|m| m.modified()).ok()
}

/// The newest modification time of a file or of anything under a directory.
fn newest(path: &Path) -> Option<SystemTime> {
    let meta = path.metadata().ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| newest(&entry.path()))
        .max()
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// The dashboard's first suites: `npm ci` when needed, type check and unit tests (Vitest),
/// and the production build the browser tests (and the launcher tests) serve. Whether they
/// passed.
pub async fn unit_tests(root: &Path) -> anyhow::Result<bool> {
    let dir = root.join("dashboard");
    if !which("npm") {
        bail!("npm is missing: install Node.js 20+ with npm ({INSTALL_NODE})");
    }
    if is_stale_install(&dir) {
        npm(&dir, &["ci", "--no-audit", "--no-fund"]).await?;
    }
    let mut passed = true;
    for step in [&["test"][..], &["run", "build"]] {
        if let Err(error) = npm(&dir, step).await {
            eprintln!("autonoma test: {error:#}");
            passed = false;
        }
    }
    Ok(passed)
}

/// The browser tests (Chromium via playwright-core) against a stack this launcher starts, with
/// renderctl talking to the Render API fake; `files` narrows them. Whether they passed.
pub async fn browser_tests(
    root: &Path,
    files: &[String],
    docker_host: Option<&str>,
) -> anyhow::Result<bool> {
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| CHROMIUM.to_owned());
    if !Path::new(&chromium).is_file() {
        bail!(
            "Chromium is not at {chromium}: install it with `apt-get install -y chromium` \
             (or set CHROMIUM_PATH)"
        );
    }
    let fake = build_render_fake(root).await?;
    // The launcher as built now: the Rust tests may have rebuilt this very binary (with their
    // dev-dependency features), which leaves the running one's path pointing at a deleted file.
    let built = crate::workspace::target_dir(root)?
        .join("debug")
        .join("autonoma");
    let launcher = if built.is_file() {
        built
    } else {
        std::env::current_exe().context("locating the launcher")?
    };
    let mut command = Command::new("npm");
    command
        .args(["run", "test:e2e", "--"])
        .args(files)
        .current_dir(root.join("dashboard"))
        .env("AUTONOMA_BIN", launcher)
        .env("CHROMIUM_PATH", &chromium)
        .env("RENDER_FAKE_BIN", fake);
    if let Some(host) = docker_host {
        command.env("TEST_DOCKER_HOST", host);
    }
    println!("autonoma test: dashboard browser tests");
    let status = command
        .status()
        .await
        .context("running the browser tests")?;
    Ok(status.success())
}

const CHROMIUM: &str = "/usr/bin/chromium";

/// The Render API fake's binary (Render's API cannot be reached from tests).
async fn build_render_fake(root: &Path) -> anyhow::Result<PathBuf> {
    let status = Command::new(crate::workspace::cargo())
        .args([
            "build",
            "-p",
            "autonoma-render-fake",
            "--bin",
            "render-fake",
        ])
        .current_dir(root)
        .status()
        .await
        .context("running cargo build")?;
    if !status.success() {
        bail!("building render-fake failed ({status})");
    }
    Ok(crate::workspace::target_dir(root)?
        .join("debug")
        .join("render-fake"))
}
