//! Test support shared by every crate: a fresh database per test on a real PostgreSQL, the
//! SQS-compatible server of the test run, the service router served in-process, and service
//! binaries run as real processes.

mod bins;
mod cpu;
mod db;
mod http;
mod process;

pub use bins::{try_workspace_binary, workspace_binary};
pub use cpu::Cpu;
pub use db::{TestDb, empty_db, test_db, try_empty_db, try_test_db};
pub use http::{TestServer, serve_router};
pub use process::{ServiceProcess, run_to_exit, run_to_exit_with_args};

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    autonoma_localpg::free_port().unwrap_or_else(|err| panic!("finding a free port: {err:#}"))
}

/// The first of `count` consecutive ports on 127.0.0.1 that were all free a moment ago, for a
/// process that listens on a block of ports (the launcher's `--base-port`). The block lies
/// below the kernel's ephemeral range: [`free_port`] comes from that range, where the
/// neighbours of a free port can be taken at any moment by another test's listener on port 0
/// or by an outgoing connection.
pub fn free_ports(count: u16) -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let low = 10_000_u16;
    let high = ephemeral_low.saturating_sub(count).max(low + 1);
    for _ in 0..200 {
        // Random, so that concurrent callers rarely try the same block.
        let start = rand::random_range(low..high);
        let listeners: Vec<std::net::TcpListener> = (start..start.saturating_add(count))
            .map_while(|port| std::net::TcpListener::bind(("127.0.0.1", port)).ok())
            .collect();
        if listeners.len() == usize::from(count) {
            return start;
        }
    }
    panic!("no {count} consecutive free ports between {low} and {ephemeral_low}");
}

/// The SQS-compatible endpoint of this test run (`TEST_SQS_ENDPOINT`, a moto server that
/// `cargo autonoma test` starts). Panics with instructions when it is not set.
pub fn sqs_endpoint() -> String {
    match std::env::var("TEST_SQS_ENDPOINT") {
        Ok(endpoint) if !endpoint.trim().is_empty() => {
            endpoint.trim().trim_end_matches('/').to_owned()
        }
        _ => panic!(
            "TEST_SQS_ENDPOINT is not set: run the tests with `cargo autonoma test`, which starts \
             moto for them, or start one yourself (`moto_server -H 127.0.0.1 -p 5000`) and set \
             TEST_SQS_ENDPOINT=http://127.0.0.1:5000"
        ),
    }
}

/// The image `cargo autonoma test` builds in its container engine: static busybox (`sh`,
/// `httpd`, `nc`, `setsid`, …), user `sandbox` (1000:1000), working directory `/workspace`.
pub const SANDBOX_TEST_IMAGE: &str = "localhost/autonoma-sandbox-base:test";

/// The Docker API of this test run's container engine (`TEST_DOCKER_HOST`, Podman's service
/// that `cargo autonoma test` starts). Panics with instructions when it is not set.
pub fn docker_host() -> String {
    match std::env::var("TEST_DOCKER_HOST") {
        Ok(host) if !host.trim().is_empty() => host.trim().to_owned(),
        _ => panic!(
            "TEST_DOCKER_HOST is not set: run the tests with `cargo autonoma test`, which starts \
             a Podman service when podman is installed (`apt-get install -y podman runc \
             busybox-static`), or point TEST_DOCKER_HOST at a Docker API (unix:///…)"
        ),
    }
}

/// How the MCP client the tests drive is installed.
const MCP_INSTALL: &str = "python3 -m venv ~/.cache/autonoma/venv && \
                           ~/.cache/autonoma/venv/bin/pip install 'moto[server]' mcp";

/// The Python interpreter with the MCP SDK; fails the test with install instructions when
/// there is none.
pub fn mcp_python() -> String {
    let python = std::env::var("TEST_MCP_PYTHON").unwrap_or_else(|_| {
        panic!(
            "TEST_MCP_PYTHON is not set. Run the tests with `cargo autonoma test`, which points it \
             at the venv of .ci/run, or install the MCP SDK ({MCP_INSTALL}) and set \
             TEST_MCP_PYTHON=~/.cache/autonoma/venv/bin/python"
        )
    });
    let probe = std::process::Command::new(&python)
        .args(["-c", "import mcp"])
        .output();
    match probe {
        Ok(output) if output.status.success() => python,
        Ok(output) => panic!(
            "`{python} -c 'import mcp'` failed: the MCP SDK is not installed there. Install it \
             with {MCP_INSTALL} (or run .ci/run).\n{}",
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(e) => {
            panic!("TEST_MCP_PYTHON={python} cannot be run ({e}); install with {MCP_INSTALL}")
        }
    }
}
