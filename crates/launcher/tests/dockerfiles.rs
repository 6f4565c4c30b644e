//! The services' Dockerfiles: generated from infra/docker/Dockerfile.template by `autonoma
//! dockerfiles`, shaped the way Render and Compose run them, and their HEALTHCHECK command
//! working against a real service.

mod support;

use std::path::Path;
use std::time::Duration;

use autonoma_common::config::service_names;
use autonoma_testkit::{ServiceProcess, free_port, run_to_exit_with_args, workspace_binary};
use support::{exec_form, final_stage, instructions, only, read, render_yaml, workspace_root};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_autonoma"))
}

async fn dockerfiles(args: &[&str]) -> (bool, String) {
    let output = run_to_exit_with_args(bin(), args, &[], Duration::from_secs(30))
        .await
        .expect("runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test]
async fn committed_dockerfiles_are_the_generated_ones() {
    let (ok, output) = dockerfiles(&["dockerfiles", "--check"]).await;
    assert!(
        ok,
        "the Dockerfiles are stale: run `cargo autonoma dockerfiles`\n{output}"
    );
}

/// The check fails on a Dockerfile that was edited by hand and on one that is missing, naming
/// both; writing them makes it pass, with the same files as the repository's.
#[tokio::test]
async fn the_check_fails_on_a_stale_or_missing_dockerfile_and_writing_fixes_it() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let root = scratch.path();
    std::fs::create_dir_all(root.join("infra/docker")).expect("mkdir");
    std::fs::write(
        root.join("infra/docker/Dockerfile.template"),
        read("infra/docker/Dockerfile.template"),
    )
    .expect("template");
    let services = service_names().expect("schema");
    for service in &services {
        let dir = root.join("services").join(service);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(
            dir.join("Dockerfile"),
            read(&format!("services/{service}/Dockerfile")),
        )
        .expect("copy");
    }
    let edited = root.join("services/logging/Dockerfile");
    let text = std::fs::read_to_string(&edited).expect("read");
    std::fs::write(&edited, text.replace("USER 1000:1000", "USER root")).expect("edit");
    std::fs::remove_file(root.join("services/sandbox/Dockerfile")).expect("remove");

    let root_arg = root.to_str().expect("utf-8");
    let (ok, output) = dockerfiles(&["dockerfiles", "--check", "--root", root_arg]).await;
    assert!(!ok, "{output}");
    assert!(
        output.contains("services/logging/Dockerfile differs"),
        "{output}"
    );
    assert!(output.contains("services/sandbox/Dockerfile"), "{output}");
    assert!(
        !output.contains("services/orchestrator/Dockerfile"),
        "{output}"
    );

    let (ok, output) = dockerfiles(&["dockerfiles", "--root", root_arg]).await;
    assert!(ok, "{output}");
    let (ok, output) = dockerfiles(&["dockerfiles", "--check", "--root", root_arg]).await;
    assert!(ok, "{output}");
    for service in &services {
        let path = format!("services/{service}/Dockerfile");
        assert_eq!(
            std::fs::read_to_string(root.join(&path)).expect("written"),
            read(&path),
            "{path}"
        );
    }
}

/// What Render and Compose rely on, for every service: the image runs as a non-root user,
/// listens where it says, checks its own health, stops on SIGTERM sent to the binary itself,
/// and render.yaml builds it from this very file.
#[test]
fn every_service_image_runs_unprivileged_and_checks_its_health() {
    let render = render_yaml();
    let mut problems = Vec::new();
    for service in service_names().expect("schema") {
        let path = format!("services/{service}/Dockerfile");
        let Ok(text) = std::fs::read_to_string(workspace_root().join(&path)) else {
            problems.push(format!("{path} is missing"));
            continue;
        };
        let all = instructions(&text);
        let runtime = final_stage(&all);
        let mut check = |what: &str, result: Result<(), String>| {
            if let Err(reason) = result {
                problems.push(format!("{path}: {what}: {reason}"));
            }
        };
        let binary = format!("/usr/local/bin/{service}");

        check(
            "the build",
            if all.iter().any(|(k, args)| {
                k == "RUN"
                    && args.contains("cargo build --release --locked")
                    && args.contains(&format!("--package {service} --bin {service}"))
            }) {
                Ok(())
            } else {
                Err("no `cargo build --release --locked` of the service's package".into())
            },
        );
        check(
            "FROM",
            only(runtime, "FROM").and_then(|from| match from.starts_with("debian:bookworm-slim") {
                true => Ok(()),
                false => Err(format!("the runtime stage is {from}")),
            }),
        );
        check(
            "USER",
            only(runtime, "USER").and_then(|user| {
                let name = user.split(':').next().unwrap_or_default();
                match name {
                    "" | "0" | "root" => Err(format!("runs as {user}")),
                    _ => Ok(()),
                }
            }),
        );
        check(
            "ENTRYPOINT",
            only(runtime, "ENTRYPOINT")
                .and_then(exec_form)
                .and_then(|args| match args.as_slice() {
                    [only] if *only == binary => Ok(()),
                    _ => Err(format!("{args:?} is not [\"{binary}\"]")),
                }),
        );
        check(
            "HEALTHCHECK",
            only(runtime, "HEALTHCHECK").and_then(|args| {
                let (_, command) = args.split_once("CMD ").ok_or("no CMD")?;
                let command = exec_form(command)?;
                match command.as_slice() {
                    [bin, arg] if *bin == binary && arg == "healthcheck" => Ok(()),
                    _ => Err(format!("{command:?} is not the binary's healthcheck")),
                }
            }),
        );
        check(
            "STOPSIGNAL",
            only(runtime, "STOPSIGNAL").and_then(|signal| match signal {
                "SIGTERM" => Ok(()),
                other => Err(other.to_owned()),
            }),
        );
        check(
            "EXPOSE and PORT",
            only(runtime, "EXPOSE").and_then(|port| {
                let env = only(runtime, "ENV")?;
                let wanted = ["HOST=0.0.0.0".to_owned(), format!("PORT={port}")];
                match wanted
                    .iter()
                    .all(|w| env.split_whitespace().any(|e| e == w))
                {
                    true => Ok(()),
                    false => Err(format!("ENV {env} does not set {wanted:?}")),
                }
            }),
        );

        let name = format!("autonoma-{service}");
        let entry = render["services"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["name"] == name.as_str());
        match entry {
            None => problems.push(format!("render.yaml has no service {name}")),
            Some(entry) => {
                let dockerfile = entry["dockerfilePath"].as_str().unwrap_or_default();
                if dockerfile.trim_start_matches("./") != path {
                    problems.push(format!(
                        "render.yaml: {name}: dockerfilePath {dockerfile} is not ./{path}"
                    ));
                }
                let context = entry["dockerContext"].as_str().unwrap_or_default();
                if !matches!(context, "." | "./") {
                    problems.push(format!(
                        "render.yaml: {name}: dockerContext {context} is not the repository root"
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The images' HEALTHCHECK command, run as written against a real service: healthy while it
/// serves, unhealthy once it is gone. renderctl parses its own command line first, so its
/// binary is asked too.
#[tokio::test]
async fn the_healthcheck_command_tells_a_serving_service_from_a_stopped_one() {
    let dockerfile = read("services/echo-agent/Dockerfile");
    let all = instructions(&dockerfile);
    let healthcheck = only(final_stage(&all), "HEALTHCHECK").expect("a HEALTHCHECK");
    let command = exec_form(healthcheck.split_once("CMD ").expect("CMD").1).expect("exec form");
    let args: Vec<&str> = command[1..].iter().map(String::as_str).collect();

    let port = free_port();
    // As in the image: bound to every address, the probe asks on loopback.
    let env = vec![
        ("HOST", "0.0.0.0".to_owned()),
        ("PORT", port.to_string()),
        ("INTERNAL_API_KEYS", "a-test-key-0123456789".to_owned()),
        ("BASIC_AUTH_USER", "operator".to_owned()),
        ("BASIC_AUTH_PASS", "correct-horse-battery".to_owned()),
        // Unreachable: the agent serves anyway and keeps retrying its registration.
        ("ORCHESTRATOR_URL", "http://127.0.0.1:9".to_owned()),
    ];
    let probe_env: Vec<(&str, String)> = env[..2].to_vec();
    let echo_agent = workspace_binary("echo-agent");
    let renderctl = workspace_binary("renderctl");

    let mut agent = ServiceProcess::spawn(&echo_agent, &env).expect("spawn");
    agent
        .wait_healthy(Duration::from_secs(30))
        .await
        .expect("serves");
    for binary in [&echo_agent, &renderctl] {
        let output = run_to_exit_with_args(binary, &args, &probe_env, Duration::from_secs(10))
            .await
            .expect("the probe exits");
        assert!(
            output.status.success(),
            "{}: {}",
            binary.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    agent.kill().expect("stopped");
    let output = run_to_exit_with_args(&echo_agent, &args, &probe_env, Duration::from_secs(10))
        .await
        .expect("the probe exits");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unhealthy") && stderr.contains(&format!("127.0.0.1:{port}")),
        "{stderr}"
    );
}
