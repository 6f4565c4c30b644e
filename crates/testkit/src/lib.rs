//! Test support shared by every crate: a fresh database per test on a real PostgreSQL, the
//! service router served in-process, and service binaries run as real processes.

mod db;
mod http;
mod process;

pub use db::{TestDb, empty_db, test_db, try_empty_db, try_test_db};
pub use http::{TestServer, serve_router};
pub use process::{ServiceProcess, run_to_exit, run_to_exit_with_args};

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    autonoma_localpg::free_port().unwrap_or_else(|err| panic!("finding a free port: {err:#}"))
}
