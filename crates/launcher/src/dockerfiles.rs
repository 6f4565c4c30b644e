//! `autonoma dockerfiles`: writes `services/<name>/Dockerfile` for every service from
//! `infra/docker/Dockerfile.template`. Render builds each service from its own Dockerfile and a
//! Blueprint has no build arguments, so the per-service values (package, binary, port, what the
//! image needs at run time) are written into each file; a test keeps the files current.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use autonoma_common::commands::HEALTHCHECK_ARG;

use crate::services::{SERVICES, ServiceSpec};

/// The template, relative to the workspace root.
pub const TEMPLATE: &str = "infra/docker/Dockerfile.template";

/// The launcher's default `--base-port`: each image listens on its service's local port, so a
/// container and `cargo autonoma up` answer at the same addresses.
pub const BASE_PORT: u16 = 7100;

#[derive(Debug, clap::Args)]
pub struct DockerfilesArgs {
    /// Write nothing; exit 1 naming every Dockerfile that is missing or differs from the
    /// template's.
    #[arg(long)]
    check: bool,
    /// The workspace whose template is read and whose services/ is written (default: this one).
    #[arg(long)]
    root: Option<PathBuf>,
}

/// What one service's image holds beyond its binary and the CA certificates.
struct Extras {
    /// Debian packages the binary needs at run time.
    packages: &'static [&'static str],
    /// Files of the repository the service reads at run time: (source, path in the image).
    files: &'static [(&'static str, &'static str)],
}

fn extras(service: &str) -> Extras {
    match service {
        // Checkpoints are git commits the service makes of each session's workspace.
        "sandbox" => Extras {
            packages: &["git"],
            files: &[],
        },
        // The Blueprint that POST /render/blueprint/apply reconciles (RENDER_BLUEPRINT_PATH's
        // default is relative to the working directory).
        "renderctl" => Extras {
            packages: &[],
            files: &[("render.yaml", "/app/render.yaml")],
        },
        _ => Extras {
            packages: &[],
            files: &[],
        },
    }
}

/// The port `service` listens on in its image.
pub fn port_of(service: &ServiceSpec) -> u16 {
    BASE_PORT + service.port_offset
}

/// Where a service's Dockerfile lives, relative to the workspace root.
pub fn path_of(service: &str) -> String {
    format!("services/{service}/Dockerfile")
}

/// Every service's Dockerfile: (path relative to the root, text).
pub fn render_all(template: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut names: Vec<&str> = SERVICES.iter().map(|s| s.name).collect();
    names.sort_unstable();
    let mut in_schema = autonoma_common::config::service_names()?;
    in_schema.sort_unstable();
    if names != in_schema {
        bail!("the launcher's services {names:?} are not the schema's {in_schema:?}");
    }
    SERVICES
        .iter()
        .map(|service| Ok((path_of(service.name), render(template, service)?)))
        .collect()
}

/// One service's Dockerfile. Every service binary has its package's name.
fn render(template: &str, service: &ServiceSpec) -> anyhow::Result<String> {
    let extras = extras(service.name);
    let packages: String = extras.packages.iter().map(|p| format!(" {p}")).collect();
    let files: Vec<String> = extras
        .files
        .iter()
        .map(|(source, target)| format!("COPY {source} {target}"))
        .collect();
    let mut out = String::with_capacity(template.len() + 256);
    for line in template.split_inclusive('\n') {
        if line.trim() == "{{runtime_files}}" {
            for file in &files {
                out.push_str(file);
                out.push('\n');
            }
            continue;
        }
        out.push_str(line);
    }
    let out = out
        .replace("{{service}}", service.name)
        .replace("{{package}}", service.name)
        .replace("{{bin}}", service.name)
        .replace("{{port}}", &port_of(service).to_string())
        .replace("{{healthcheck}}", HEALTHCHECK_ARG)
        .replace("{{runtime_packages}}", &packages);
    if let Some(at) = out.find("{{") {
        let placeholder: String = out[at..].chars().take_while(|c| *c != '\n').collect();
        bail!("{TEMPLATE} has an unknown placeholder: {placeholder}");
    }
    Ok(out)
}

pub fn run(args: DockerfilesArgs) -> anyhow::Result<ExitCode> {
    let root = match args.root {
        Some(root) => root,
        None => crate::workspace::root()?,
    };
    let template_path = root.join(TEMPLATE);
    let template = std::fs::read_to_string(&template_path)
        .with_context(|| format!("reading {}", template_path.display()))?;
    let files = render_all(&template)?;
    if args.check {
        return check(&root, &files);
    }
    for (path, text) in &files {
        let target = root.join(path);
        let current = std::fs::read_to_string(&target).ok();
        if current.as_deref() == Some(text.as_str()) {
            println!("{path}: up to date");
            continue;
        }
        std::fs::write(&target, text).with_context(|| format!("writing {}", target.display()))?;
        println!("{path}: written");
    }
    Ok(ExitCode::SUCCESS)
}

fn check(root: &Path, files: &[(String, String)]) -> anyhow::Result<ExitCode> {
    let mut stale = Vec::new();
    for (path, text) in files {
        match std::fs::read_to_string(root.join(path)) {
            Ok(current) if current == *text => {}
            Ok(_) => stale.push(format!("{path} differs from {TEMPLATE}'s")),
            Err(error) => stale.push(format!("{path}: {error}")),
        }
    }
    if stale.is_empty() {
        println!("every Dockerfile is current");
        return Ok(ExitCode::SUCCESS);
    }
    for problem in &stale {
        eprintln!("{problem}");
    }
    eprintln!("run `cargo autonoma dockerfiles` to write them");
    Ok(ExitCode::FAILURE)
}
