//! Binaries of other workspace packages, for tests that run several services as processes.
//! (`CARGO_BIN_EXE_*` only names the test's own package's binaries.)

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, Result, bail};

static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();

/// The path of workspace binary `name` (package of the same name), built first with
/// `cargo build` in the profile the tests were built in (a no-op when it is up to date).
pub fn workspace_binary(name: &str) -> PathBuf {
    try_workspace_binary(name).unwrap_or_else(|err| panic!("building {name}: {err:#}"))
}

pub fn try_workspace_binary(name: &str) -> Result<PathBuf> {
    let built = BUILT.get_or_init(Mutex::default);
    let mut built = built
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(path) = built.get(name) {
        return Ok(path.clone());
    }
    // Test executables live in <target>/<profile>/deps/.
    let exe = std::env::current_exe().context("locating the test executable")?;
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("the test executable is not under <target>/<profile>/deps")?
        .to_path_buf();
    let release = profile_dir.file_name().is_some_and(|p| p == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["build", "--quiet", "--package", name, "--bin", name])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if release {
        command.arg("--release");
    }
    if let Some(target_dir) = profile_dir.parent() {
        command.env("CARGO_TARGET_DIR", target_dir);
    }
    let status = command.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build of {name} failed ({status})");
    }
    let path = profile_dir.join(name);
    if !path.is_file() {
        bail!("{} was not built", path.display());
    }
    built.insert(name.to_owned(), path.clone());
    Ok(path)
}
