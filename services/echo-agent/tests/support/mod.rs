//! A stand-in orchestrator that accepts everything an agent sends it and records it.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use autonoma_testkit::{TestServer, serve_router};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub body: Value,
}

#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<Call>>>);

impl Recorder {
    pub async fn serve(&self) -> TestServer {
        serve_router(Router::new().fallback(record).with_state(self.clone())).await
    }

    pub fn calls(&self, method: &str, path: &str) -> Vec<Call> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|c| c.method == method && c.path == path)
            .cloned()
            .collect()
    }

    /// Waits until a `method path` call arrived, and returns the latest one.
    pub async fn wait_for(&self, method: &str, path: &str, timeout: Duration) -> Call {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(call) = self.calls(method, path).pop() {
                return call;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {method} {path} within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn record(State(recorder): State<Recorder>, request: Request) -> StatusCode {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    recorder
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Call {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        });
    StatusCode::NO_CONTENT
}
