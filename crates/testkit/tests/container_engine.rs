//! The container engine of the test run (`TEST_DOCKER_HOST`: Podman's Docker-compatible API,
//! started by `cargo autonoma test`) runs a hardened container from the base test image,
//! with a host directory bind-mounted at `/workspace`, through the Docker API the sandbox
//! service uses.

use std::collections::HashMap;

use autonoma_testkit::SANDBOX_TEST_IMAGE;
use bollard::Docker;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, ExecConfig, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder, StatsOptionsBuilder,
};
use futures::StreamExt;

const SANDBOX_UID: u32 = 1000;

fn docker() -> Docker {
    let host = autonoma_testkit::docker_host();
    Docker::connect_with_unix(&host, 120, bollard::API_DEFAULT_VERSION)
        .unwrap_or_else(|err| panic!("connecting to {host}: {err}"))
}

#[tokio::test]
async fn a_hardened_container_runs_a_command_in_a_bind_mounted_workspace() {
    let docker = docker()
        .negotiate_version()
        .await
        .expect("negotiating the Docker API version");

    let workspace = tempfile::tempdir().expect("creating the workspace");
    std::os::unix::fs::chown(workspace.path(), Some(SANDBOX_UID), Some(SANDBOX_UID))
        .expect("giving the workspace to the sandbox user");

    let name = format!("autonoma-testkit-{}", uuid::Uuid::new_v4());
    let host_config = HostConfig {
        binds: Some(vec![format!(
            "{}:/workspace:rw",
            workspace.path().display()
        )]),
        cap_drop: Some(vec!["ALL".to_owned()]),
        security_opt: Some(vec!["no-new-privileges".to_owned()]),
        memory: Some(256 * 1024 * 1024),
        nano_cpus: Some(500_000_000),
        pids_limit: Some(64),
        network_mode: Some("none".to_owned()),
        readonly_rootfs: Some(true),
        tmpfs: Some(HashMap::from([(
            "/tmp".to_owned(),
            "rw,size=16m".to_owned(),
        )])),
        ..Default::default()
    };
    let config = ContainerCreateBody {
        image: Some(SANDBOX_TEST_IMAGE.to_owned()),
        cmd: Some(vec!["sleep".to_owned(), "300".to_owned()]),
        user: Some(format!("{SANDBOX_UID}:{SANDBOX_UID}")),
        working_dir: Some("/workspace".to_owned()),
        host_config: Some(host_config),
        ..Default::default()
    };
    let created = docker
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(&name).build()),
            config,
        )
        .await
        .unwrap_or_else(|err| {
            panic!(
                "creating a container from {SANDBOX_TEST_IMAGE} (`cargo autonoma test` builds it): \
                 {err}"
            )
        });

    let outcome = run_in(&docker, &created.id).await;
    let removed = docker
        .remove_container(
            &created.id,
            Some(RemoveContainerOptionsBuilder::new().force(true).build()),
        )
        .await;
    let (stdout, stderr, exit_code, memory_limit) = outcome;
    removed.expect("removing the container");

    assert_eq!(exit_code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some("hi"),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert_eq!(lines.next(), Some("uid=1000(sandbox) gid=1000(sandbox)"));
    assert_eq!(lines.next(), Some("CapEff:\t0000000000000000"));
    assert_eq!(lines.next(), Some("NoNewPrivs:\t1"));
    assert_eq!(
        lines.next(),
        Some("lo"),
        "network none leaves only loopback"
    );
    assert_eq!(lines.next(), None, "stdout: {stdout}");
    assert!(
        stderr.contains("Read-only file system"),
        "the root filesystem is read-only: {stderr}"
    );
    assert_eq!(memory_limit, Some(256 * 1024 * 1024));

    let written = std::fs::read_to_string(workspace.path().join("x"))
        .expect("reading the file the container wrote");
    assert_eq!(written, "hi\n");
    let owner = std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata(workspace.path().join("x")).expect("stat"),
    );
    assert_eq!(owner, SANDBOX_UID);
}

/// Starts the container, runs the command in it through an attached exec, and reads its
/// stats: stdout, stderr, exit code and memory limit.
async fn run_in(docker: &Docker, id: &str) -> (String, String, i64, Option<u64>) {
    docker
        .start_container(id, None)
        .await
        .expect("starting the container");
    let exec = docker
        .create_exec(
            id,
            ExecConfig {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(
                    [
                        "sh",
                        "-c",
                        "echo hi > /workspace/x && cat /workspace/x && id \
                         && grep -E '^(CapEff|NoNewPrivs):' /proc/self/status \
                         && ls /sys/class/net && touch /x; echo scratch > /tmp/t",
                    ]
                    .map(str::to_owned)
                    .to_vec(),
                ),
                ..Default::default()
            },
        )
        .await
        .expect("creating the exec");
    let StartExecResults::Attached { mut output, .. } = docker
        .start_exec(&exec.id, None::<StartExecOptions>)
        .await
        .expect("starting the exec")
    else {
        panic!("the exec started detached");
    };
    let (mut stdout, mut stderr) = (String::new(), String::new());
    while let Some(chunk) = output.next().await {
        match chunk.expect("reading the exec's output") {
            bollard::container::LogOutput::StdOut { message } => {
                stdout.push_str(&String::from_utf8_lossy(&message));
            }
            bollard::container::LogOutput::StdErr { message } => {
                stderr.push_str(&String::from_utf8_lossy(&message));
            }
            _ => {}
        }
    }
    let inspected = docker
        .inspect_exec(&exec.id)
        .await
        .expect("inspecting the exec");
    let stats = docker
        .stats(id, Some(StatsOptionsBuilder::new().stream(false).build()))
        .next()
        .await
        .expect("one stats sample")
        .expect("reading the container's stats");
    (
        stdout,
        stderr,
        inspected.exit_code.expect("the exec's exit code"),
        stats.memory_stats.and_then(|memory| memory.limit),
    )
}
