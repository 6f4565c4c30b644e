//! Where the workspace is and where cargo puts its binaries.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, bail};

/// The workspace root: the directory of the top-level `Cargo.toml`.
pub fn root() -> anyhow::Result<PathBuf> {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .ancestors()
        .nth(2)
        .context("the launcher lives at crates/launcher of the workspace")?;
    if !root.join("Cargo.toml").is_file() {
        bail!("workspace not found at {}", root.display());
    }
    Ok(root.to_path_buf())
}

/// cargo's target directory (honours `CARGO_TARGET_DIR` and config).
pub fn target_dir(root: &Path) -> anyhow::Result<PathBuf> {
    let output = std::process::Command::new(cargo())
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(root)
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!("cargo metadata failed");
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("reading cargo metadata")?;
    metadata["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("cargo metadata has no target_directory")
}

pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Paths of already built binaries.
pub fn binaries<'a>(
    root: &Path,
    release: bool,
    names: impl IntoIterator<Item = &'a str>,
) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let dir = target_dir(root)?.join(if release { "release" } else { "debug" });
    names
        .into_iter()
        .map(|name| {
            let path = dir.join(name);
            if path.is_file() {
                Ok((name.to_owned(), path))
            } else {
                bail!("{} is not built; run without --no-build", path.display())
            }
        })
        .collect()
}

/// `cargo build` of the given binaries, then their paths.
pub async fn build<'a>(
    root: &Path,
    release: bool,
    names: impl IntoIterator<Item = &'a str> + Clone,
) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut command = tokio::process::Command::new(cargo());
    command.arg("build").current_dir(root);
    if release {
        command.arg("--release");
    }
    for name in names.clone() {
        command.args(["--package", name, "--bin", name]);
    }
    let status = command.status().await.context("running cargo build")?;
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    binaries(root, release, names)
}
