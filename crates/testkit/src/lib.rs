//! Test support shared by every crate: a fresh database per test on a real PostgreSQL, the
//! SQS-compatible server of the test run, the service router served in-process, and service
//! binaries run as real processes.

mod bins;
mod db;
mod http;
mod process;

pub use bins::{try_workspace_binary, workspace_binary};
pub use db::{TestDb, empty_db, test_db, try_empty_db, try_test_db};
pub use http::{TestServer, serve_router};
pub use process::{ServiceProcess, run_to_exit, run_to_exit_with_args};

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    autonoma_localpg::free_port().unwrap_or_else(|err| panic!("finding a free port: {err:#}"))
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
