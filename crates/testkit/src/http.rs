//! A router served in-process on a real loopback socket.

use std::net::{Ipv4Addr, SocketAddr};

use axum::Router;
use tokio::task::JoinHandle;

/// A router being served on 127.0.0.1; dropping it stops the server.
#[derive(Debug)]
pub struct TestServer {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub base_url: String,
    task: JoinHandle<()>,
}

impl TestServer {
    /// `base_url` joined with `path` (which should start with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `router` on a free port of 127.0.0.1 in a task of the current runtime, with the
/// peer address available to handlers as `ConnectInfo<SocketAddr>`.
pub async fn serve_router(router: Router) -> TestServer {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap_or_else(|err| panic!("binding a test server to 127.0.0.1: {err}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|err| panic!("reading the test server's address: {err}"));
    let task = tokio::spawn(async move {
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(err) = axum::serve(listener, service).await {
            eprintln!("testkit: test server on {addr} failed: {err}");
        }
    });
    TestServer {
        addr,
        base_url: format!("http://{addr}"),
        task,
    }
}
