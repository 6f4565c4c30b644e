//! The HTTP server of the fake: authentication, rate limiting, contract checks and recording
//! around the resource handlers of [`crate::state`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State as AxumState};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::contract::{Contract, OperationRef};
use crate::state::{ApiError, Query, Reply, SiteExpectation, State, new_id, random_token};

/// Largest request body the fake reads.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// One request the fake answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// The HTTP method, e.g. `PATCH`.
    pub method: String,
    /// The request path as sent, including the `/v1` prefix.
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// The status code of the answer.
    pub status: u16,
}

/// How `POST /services/{serviceId}/deploys` answers; both are declared by the contract.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeployResponse {
    /// `201 Created` with the new `deploy` as the body.
    #[default]
    Created,
    /// `202 Accepted` with no body; the deploy is still created and listed.
    Accepted,
}

/// Options for [`RenderFake::start_with`].
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The loopback port to listen on; 0 picks a free one.
    pub port: u16,
    /// The bearer token to accept; random when `None`.
    pub token: Option<String>,
}

/// A running fake of Render's API on `127.0.0.1`. It stops when dropped.
pub struct RenderFake {
    inner: Arc<Inner>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

struct Inner {
    contract: Arc<Contract>,
    token: String,
    owner_id: String,
    state: Mutex<State>,
    log: Mutex<Log>,
}

/// What the fake saw, kept apart from the resources so that inspecting it never waits on them.
#[derive(Default)]
struct Log {
    requests: Vec<Recorded>,
    violations: Vec<String>,
}

impl RenderFake {
    /// Starts a fake on a free loopback port with a random token.
    pub async fn start() -> anyhow::Result<RenderFake> {
        Self::start_with(Options::default()).await
    }

    /// Starts a fake with the given port and token.
    pub async fn start_with(options: Options) -> anyhow::Result<RenderFake> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", options.port)).await?;
        let addr = listener.local_addr()?;
        let owner_id = new_id("tea");
        let inner = Arc::new(Inner {
            contract: Contract::render(),
            token: options
                .token
                .unwrap_or_else(|| format!("rnd_{}", random_token(32))),
            state: Mutex::new(State::new(&owner_id)),
            owner_id,
            log: Mutex::new(Log::default()),
        });
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "render fake server stopped with an error");
            }
        });
        Ok(RenderFake {
            inner,
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Stops the server and waits (up to five seconds) for open connections to close.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }

    /// The API base URL, `http://127.0.0.1:PORT/v1`, like `https://api.render.com/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The bearer token the fake accepts.
    pub fn token(&self) -> &str {
        &self.inner.token
    }

    /// The ID of the fake's only workspace (`tea-…`).
    pub fn owner_id(&self) -> &str {
        &self.inner.owner_id
    }

    /// Every contract violation seen so far, each prefixed with `METHOD PATH`.
    pub fn violations(&self) -> Vec<String> {
        self.inner.log().violations.clone()
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.log().requests.clone()
    }

    /// The requests other than `GET` that were answered with a 2xx status.
    pub fn mutations(&self) -> Vec<Recorded> {
        self.inner
            .log()
            .requests
            .iter()
            .filter(|r| r.method != "GET" && (200..300).contains(&r.status))
            .cloned()
            .collect()
    }

    /// Answers the next `n` authenticated requests with `429` and `Retry-After` of `retry_after`
    /// (in whole seconds, rounded up, at least one). They still count against the minute's budget.
    pub fn rate_limit_next(&self, n: usize, retry_after: Duration) {
        let mut state = self.inner.state();
        state.forced_limits = n;
        state.forced_retry_after = retry_after;
    }

    /// Sets the per-minute request budget reported in the `Ratelimit-*` headers (default 400).
    /// Once a minute's budget is spent, requests get `429` with `Retry-After` until it refills.
    pub fn set_rate_limit(&self, limit_per_minute: u32) {
        self.inner.state().rate.limit = limit_per_minute;
    }

    /// Chooses how deploy creation answers (default [`DeployResponse::Created`]).
    pub fn set_deploy_response(&self, response: DeployResponse) {
        self.inner.state().deploy_response = response;
    }

    /// Sets how long each deploy status lasts (default 40 ms); applies to deploys created later.
    /// A deploy goes `created` → `build_in_progress` → (web, private and worker services:
    /// `update_in_progress` →) `live`, or from `build_in_progress` to `build_failed`; it gets
    /// `finishedAt` with its final status, and a `live` deploy becomes `deactivated` when a later
    /// deploy of the same service goes live. Databases are `creating` for one step.
    pub fn set_step(&self, step: Duration) {
        self.inner.state().step = step;
    }

    /// Registers what a working build of the static site `name` looks like. A deploy of that site
    /// fails (`build_failed`) when its build command is empty or its root directory or publish
    /// path differ from these (leading `./` and trailing `/` aside); otherwise it goes live. Any
    /// non-empty build command builds: `build_command` documents the working one but is not
    /// compared.
    pub fn expect_static_site(
        &self,
        name: &str,
        root_dir: &str,
        build_command: &str,
        publish_path: &str,
    ) {
        let _ = build_command;
        self.inner.state().expectations.insert(
            name.to_owned(),
            SiteExpectation {
                root_dir: root_dir.to_owned(),
                publish_path: publish_path.to_owned(),
            },
        );
    }

    /// Makes the next deploy of the service end `build_failed` with exactly these build log lines.
    pub fn fail_next_deploy(&self, service_id: &str, log_lines: Vec<String>) {
        self.inner
            .state()
            .fail_next
            .insert(service_id.to_owned(), log_lines);
    }

    /// The service as `GET /services/{id}` returns it.
    pub fn service(&self, id: &str) -> Option<Value> {
        self.inner.state().service_json(id)
    }

    /// The service with this name, as `GET /services/{id}` returns it.
    pub fn service_by_name(&self, name: &str) -> Option<Value> {
        self.inner.state().service_by_name(name)
    }

    /// The service's own environment variables (not those of linked env groups).
    pub fn env_vars(&self, service_id: &str) -> BTreeMap<String, String> {
        self.inner.state().env_vars(service_id)
    }

    /// The service's deploys as the API returns them, newest first.
    pub fn deploys(&self, service_id: &str) -> Vec<Value> {
        self.inner
            .state()
            .deploys_of(service_id, OffsetDateTime::now_utc())
    }

    /// The env group with this name as `GET /env-groups/{id}` returns it.
    pub fn env_group_by_name(&self, name: &str) -> Option<Value> {
        self.inner.state().env_group_by_name(name)
    }

    /// The Postgres database with this name as `GET /postgres/{id}` returns it.
    pub fn postgres_by_name(&self, name: &str) -> Option<Value> {
        self.inner
            .state()
            .postgres_by_name(name, OffsetDateTime::now_utc())
    }

    /// Creates a service from a `servicePOST`-shaped body without HTTP and without a deploy, and
    /// returns its ID. A missing `ownerId` defaults to the fake's workspace.
    ///
    /// # Panics
    ///
    /// When the body is not a valid `servicePOST` or the name is taken: seeding is test setup.
    pub fn seed_service(&self, mut body: Value) -> String {
        if let Some(object) = body.as_object_mut() {
            object
                .entry("ownerId")
                .or_insert_with(|| json!(self.inner.owner_id));
        }
        let violations =
            self.inner
                .contract
                .validate_schema("/components/schemas/servicePOST", &body, "seed");
        assert!(
            violations.is_empty(),
            "invalid seed service: {violations:?}"
        );
        match self
            .inner
            .state()
            .create_service(&body, OffsetDateTime::now_utc())
        {
            Ok(service) => service.id.clone(),
            Err(e) => panic!("cannot seed service: {}", e.message),
        }
    }

    /// Sets an env var as someone would in Render's Dashboard: not a recorded request.
    ///
    /// # Panics
    ///
    /// When the service does not exist: this is test setup.
    pub fn set_env_var(&self, service_id: &str, key: &str, value: &str) {
        if let Err(e) = self
            .inner
            .state()
            .put_env_var(service_id, key, &json!({ "value": value }))
        {
            panic!("cannot set {key} on {service_id}: {}", e.message);
        }
    }

    /// Changes a service as someone would in Render's Dashboard (a `servicePATCH` body): not a
    /// recorded request.
    ///
    /// # Panics
    ///
    /// When the patch is not a valid `servicePATCH` or the service does not exist.
    pub fn patch_service(&self, service_id: &str, patch: Value) {
        let violations =
            self.inner
                .contract
                .validate_schema("/components/schemas/servicePATCH", &patch, "seed");
        assert!(violations.is_empty(), "invalid patch: {violations:?}");
        if let Err(e) =
            self.inner
                .state()
                .update_service(service_id, &patch, OffsetDateTime::now_utc())
        {
            panic!("cannot patch {service_id}: {}", e.message);
        }
    }
}

impl Drop for RenderFake {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Answers one request and records it with every violation it revealed.
    fn process(&self, parts: &Parts, body: &[u8]) -> Response {
        let (method, path, query) = (&parts.method, parts.uri.path(), parts.uri.query());
        let mut violations = Vec::new();
        let mut state = self.state();
        let rate = state.rate.take(Instant::now());
        let (reply, check_against) =
            self.answer(&mut state, parts, body, rate.exhausted, &mut violations);
        drop(state);

        let bytes = reply
            .body
            .as_ref()
            .map(|v| v.to_string().into_bytes())
            .unwrap_or_default();
        if let Some(op) = check_against {
            let content_type = reply.body.as_ref().map(|_| "application/json");
            let found = self
                .contract
                .validate_response(&op, reply.status, content_type, &bytes);
            violations.extend(found);
        }

        let mut log = self.log();
        let prefixed = violations
            .into_iter()
            .map(|v| format!("{method} {path}: {v}"));
        log.violations.extend(prefixed);
        log.requests.push(Recorded {
            method: method.to_string(),
            path: path.to_owned(),
            query: query.map(str::to_owned),
            status: reply.status,
        });
        drop(log);

        let status =
            StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, bytes).into_response();
        let headers = response.headers_mut();
        if reply.body.is_some() {
            let json = HeaderValue::from_static("application/json");
            headers.insert(header::CONTENT_TYPE, json);
        }
        headers.insert("ratelimit-limit", HeaderValue::from(rate.limit));
        headers.insert("ratelimit-remaining", HeaderValue::from(rate.remaining));
        headers.insert("ratelimit-reset", HeaderValue::from(rate.reset_secs));
        if let Some(secs) = reply.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }

    /// Produces the reply, and the operation the reply must conform to (none where the reply is
    /// the fake's own verdict on a non-conforming request rather than Render's behaviour).
    fn answer(
        &self,
        state: &mut State,
        parts: &Parts,
        body: &[u8],
        bucket_exhausted: Option<u64>,
        violations: &mut Vec<String>,
    ) -> (Reply, Option<OperationRef>) {
        let (method, path, query, headers) = (
            &parts.method,
            parts.uri.path(),
            parts.uri.query(),
            &parts.headers,
        );
        let relative = path.strip_prefix("/v1").filter(|r| r.starts_with('/'));
        let op = relative.and_then(|r| self.contract.operation(method, r));
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if bearer != Some(self.token.as_str()) {
            let error = ApiError::new(401, "unauthorized", "missing or invalid bearer token");
            return (error.into(), op);
        }
        let forced = (state.forced_limits > 0).then(|| {
            state.forced_limits -= 1;
            state.forced_retry_after.as_secs_f64().ceil().max(1.0) as u64
        });
        if let Some(secs) = forced.or(bucket_exhausted) {
            let error = ApiError::new(429, "rate_limited", "rate limit exceeded; retry later");
            let mut reply = Reply::from(error);
            reply.retry_after = Some(secs);
            return (reply, op);
        }
        let Some(relative) = relative.filter(|_| op.is_some()) else {
            violations.push(format!(
                "no operation {method} {}",
                relative.unwrap_or(path)
            ));
            return (
                ApiError::new(404, "not_found", "no such route").into(),
                None,
            );
        };
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let op = match self
            .contract
            .validate_request(method, relative, query, content_type, body)
        {
            Ok(op) => op,
            Err(found) => {
                let message = found.join("; ");
                violations.extend(found);
                return (ApiError::new(400, "invalid_request", message).into(), None);
            }
        };
        let body = serde_json::from_slice::<Value>(body).ok();
        let query = Query::parse(query.unwrap_or(""));
        match state.dispatch(&op, &query, body.as_ref(), OffsetDateTime::now_utc()) {
            Some(Ok(reply)) => (reply, Some(op)),
            Some(Err(error)) => (error.into(), Some(op)),
            None => {
                violations.push(format!(
                    "{}: not implemented by the fake",
                    op.operation_id()
                ));
                let error = ApiError::new(501, "not_implemented", "not implemented by the fake");
                (error.into(), None)
            }
        }
    }
}

async fn handle(AxumState(inner): AxumState<Arc<Inner>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) => bytes,
        Err(_) => {
            let body = json!({ "id": "invalid_request", "message": "unreadable request body" });
            return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
        }
    };
    inner.process(&parts, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn responses_that_drift_from_the_contract_are_recorded() {
        let fake = RenderFake::start().await.expect("the fake starts");
        let body = json!({ "type": "web_service", "name": "api", "serviceDetails": { "runtime": "docker" } });
        let id = fake.seed_service(body);
        if let Some(service) = fake.inner.state().service_json_mut(&id) {
            service["suspended"] = json!("sometimes");
        }
        let response = reqwest::Client::new()
            .get(format!("{}/services/{id}", fake.base_url()))
            .bearer_auth(fake.token())
            .send()
            .await
            .expect("the fake answers");
        assert_eq!(response.status(), StatusCode::OK);
        let violations = fake.violations();
        let expected =
            format!("GET /v1/services/{id}: retrieve-service: response 200 body/suspended:");
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].starts_with(&expected), "{violations:?}");
    }
}
