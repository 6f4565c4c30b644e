//! A typed client of Render's public REST API (`infra/specs/render-openapi.json`): bearer
//! `RENDER_API_TOKEN`, cursor pagination, and Render's rate limits honoured. A 429 is waited
//! out (`Retry-After`, else `Ratelimit-Reset`, else jittered backoff) and holds back every
//! other request of this client until the limit resets, so concurrent callers do not storm;
//! `Ratelimit-Remaining: 0` does the same before a 429 happens. Server errors and transport
//! failures are retried with jittered exponential backoff for idempotent methods only.

pub mod types;

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method, StatusCode};
use rand::RngExt;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

pub use types::*;

/// The most items Render returns per page.
pub const PAGE_LIMIT: u32 = 100;
/// Pages followed by one `list_all_*` call (at 100 a page, 10,000 items) before it stops.
const MAX_PAGES: usize = 100;
const BACKOFF_BASE: Duration = Duration::from_millis(250);
const BACKOFF_CAP: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("RENDER_API_TOKEN is not set, so renderctl cannot call Render's API")]
    NoToken,
    #[error("Render answered {status} to {method} {path}: {message}")]
    Api {
        method: Method,
        path: String,
        status: StatusCode,
        /// Render's error `id`, when its body had one.
        id: Option<String>,
        message: String,
    },
    #[error("Render is rate-limiting {method} {path}; gave up after {attempts} attempts")]
    RateLimited {
        method: Method,
        path: String,
        attempts: u32,
        retry_after: Option<Duration>,
    },
    #[error("Render could not be reached for {method} {path}: {cause}")]
    Transport {
        method: Method,
        path: String,
        cause: String,
    },
    #[error("Render's answer to {method} {path} did not parse: {cause}")]
    Decode {
        method: Method,
        path: String,
        cause: String,
    },
}

impl RenderError {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(StatusCode::NOT_FOUND)
    }
}

/// How the client calls Render.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub base_url: Url,
    pub token: Option<SecretString>,
    pub timeout: Duration,
    /// Attempts after the first for a rate-limited or failed request.
    pub max_retries: u32,
    /// The longest single wait for a rate limit to reset; a longer `Retry-After` fails at once.
    pub max_wait: Duration,
}

/// A successful answer: the status and the body (empty for 202/204).
struct Answer {
    status: StatusCode,
    body: bytes::Bytes,
}

#[derive(Clone)]
pub struct RenderClient {
    http: reqwest::Client,
    base: Url,
    token: Option<SecretString>,
    max_retries: u32,
    max_wait: Duration,
    /// No request leaves before this instant (set by a 429 or an exhausted limit).
    not_before: Arc<Mutex<Option<Instant>>>,
}

impl RenderClient {
    pub fn new(options: ClientOptions) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            .user_agent(concat!("autonoma-renderctl/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let mut base = options.base_url;
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        Ok(Self {
            http,
            base,
            token: options.token,
            max_retries: options.max_retries,
            max_wait: options.max_wait,
            not_before: Arc::default(),
        })
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    // ---- services ----------------------------------------------------------------------

    pub async fn list_services(
        &self,
        filter: &ServiceFilter,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Service>, RenderError> {
        let mut query = filter.query();
        page_query(&mut query, cursor, limit);
        self.page("services", &query, "service").await
    }

    /// Every service matching `filter`, following Render's cursors.
    pub async fn list_all_services(
        &self,
        filter: &ServiceFilter,
    ) -> Result<Vec<Service>, RenderError> {
        let query = filter.query();
        self.all_pages("services", &query, "service").await
    }

    pub async fn get_service(&self, id: &str) -> Result<Service, RenderError> {
        self.json(
            Method::GET,
            &format!("services/{}", seg(id)),
            &[],
            None::<&()>,
        )
        .await
    }

    pub async fn create_service(
        &self,
        body: &ServicePost,
    ) -> Result<ServiceAndDeploy, RenderError> {
        self.json(Method::POST, "services", &[], Some(body)).await
    }

    pub async fn update_service(
        &self,
        id: &str,
        patch: &ServicePatch,
    ) -> Result<Service, RenderError> {
        self.json(
            Method::PATCH,
            &format!("services/{}", seg(id)),
            &[],
            Some(patch),
        )
        .await
    }

    // ---- env vars ----------------------------------------------------------------------

    pub async fn list_env_vars(&self, service_id: &str) -> Result<Vec<EnvVar>, RenderError> {
        let path = format!("services/{}/env-vars", seg(service_id));
        self.all_pages(&path, &[], "envVar").await
    }

    /// Replaces every env var of the service (Render's PUT semantics).
    pub async fn replace_env_vars(
        &self,
        service_id: &str,
        vars: &[EnvVarInput],
    ) -> Result<Vec<EnvVar>, RenderError> {
        let path = format!("services/{}/env-vars", seg(service_id));
        let items: Vec<Value> = self.json(Method::PUT, &path, &[], Some(&vars)).await?;
        items_of(&Method::PUT, &path, items, "envVar")
    }

    pub async fn put_env_var(
        &self,
        service_id: &str,
        key: &str,
        value: &EnvVarValue,
    ) -> Result<EnvVar, RenderError> {
        let path = format!("services/{}/env-vars/{}", seg(service_id), seg(key));
        self.json(Method::PUT, &path, &[], Some(value)).await
    }

    pub async fn delete_env_var(&self, service_id: &str, key: &str) -> Result<(), RenderError> {
        let path = format!("services/{}/env-vars/{}", seg(service_id), seg(key));
        self.call(Method::DELETE, &path, &[], None::<&()>)
            .await
            .map(drop)
    }

    // ---- deploys -----------------------------------------------------------------------

    /// Triggers a deploy. Render answers 201 with the deploy, or 202 with no body when it
    /// queued one; then the newest deploy of the service is looked up, if there is one.
    pub async fn trigger_deploy(
        &self,
        service_id: &str,
        clear_cache: bool,
    ) -> Result<Triggered, RenderError> {
        let path = format!("services/{}/deploys", seg(service_id));
        let body = serde_json::json!({
            "clearCache": if clear_cache { "clear" } else { "do_not_clear" }
        });
        let answer = self.call(Method::POST, &path, &[], Some(&body)).await?;
        if answer.status == StatusCode::ACCEPTED || answer.body.is_empty() {
            let newest = self.list_deploys(service_id, None, 1).await?.items.pop();
            return Ok(Triggered {
                queued: true,
                deploy: newest,
            });
        }
        Ok(Triggered {
            queued: false,
            deploy: Some(decode(&Method::POST, &path, &answer.body)?),
        })
    }

    pub async fn list_deploys(
        &self,
        service_id: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Deploy>, RenderError> {
        let mut query = Vec::new();
        page_query(&mut query, cursor, limit);
        let path = format!("services/{}/deploys", seg(service_id));
        self.page(&path, &query, "deploy").await
    }

    pub async fn get_deploy(
        &self,
        service_id: &str,
        deploy_id: &str,
    ) -> Result<Deploy, RenderError> {
        let path = format!("services/{}/deploys/{}", seg(service_id), seg(deploy_id));
        self.json(Method::GET, &path, &[], None::<&()>).await
    }

    /// The build log lines of a service (newest last), at most `limit`.
    pub async fn build_logs(
        &self,
        owner_id: &str,
        service_id: &str,
        limit: u32,
    ) -> Result<Vec<LogLine>, RenderError> {
        let query = vec![
            ("ownerId", owner_id.to_owned()),
            ("resource", service_id.to_owned()),
            ("type", "build".to_owned()),
            ("direction", "backward".to_owned()),
            ("limit", limit.clamp(1, PAGE_LIMIT).to_string()),
        ];
        let page: LogsPage = self.json(Method::GET, "logs", &query, None::<&()>).await?;
        let mut logs = page.logs;
        logs.sort_by(|a, b| a.timestamp.cmp(&b.timestamp));
        Ok(logs)
    }

    // ---- workspace, databases, env groups ----------------------------------------------

    pub async fn owners(&self) -> Result<Vec<Owner>, RenderError> {
        self.all_pages("owners", &[], "owner").await
    }

    pub async fn list_postgres(&self, name: &str) -> Result<Vec<Postgres>, RenderError> {
        let query = vec![("name", name.to_owned())];
        self.all_pages("postgres", &query, "postgres").await
    }

    pub async fn create_postgres(&self, body: &PostgresPost) -> Result<Postgres, RenderError> {
        self.json(Method::POST, "postgres", &[], Some(body)).await
    }

    pub async fn postgres_connection_info(
        &self,
        id: &str,
    ) -> Result<PostgresConnectionInfo, RenderError> {
        let path = format!("postgres/{}/connection-info", seg(id));
        self.json(Method::GET, &path, &[], None::<&()>).await
    }

    pub async fn list_env_groups(&self, name: &str) -> Result<Vec<EnvGroupMeta>, RenderError> {
        let query = vec![("name", name.to_owned()), ("limit", PAGE_LIMIT.to_string())];
        self.json(Method::GET, "env-groups", &query, None::<&()>)
            .await
    }

    pub async fn get_env_group(&self, id: &str) -> Result<EnvGroup, RenderError> {
        let path = format!("env-groups/{}", seg(id));
        self.json(Method::GET, &path, &[], None::<&()>).await
    }

    pub async fn create_env_group(&self, body: &EnvGroupPost) -> Result<EnvGroup, RenderError> {
        self.json(Method::POST, "env-groups", &[], Some(body)).await
    }

    pub async fn put_env_group_var(
        &self,
        group_id: &str,
        key: &str,
        value: &EnvVarValue,
    ) -> Result<(), RenderError> {
        let path = format!("env-groups/{}/env-vars/{}", seg(group_id), seg(key));
        self.call(Method::PUT, &path, &[], Some(value))
            .await
            .map(drop)
    }

    pub async fn delete_env_group_var(&self, group_id: &str, key: &str) -> Result<(), RenderError> {
        let path = format!("env-groups/{}/env-vars/{}", seg(group_id), seg(key));
        self.call(Method::DELETE, &path, &[], None::<&()>)
            .await
            .map(drop)
    }

    pub async fn link_env_group(
        &self,
        group_id: &str,
        service_id: &str,
    ) -> Result<(), RenderError> {
        let path = format!("env-groups/{}/services/{}", seg(group_id), seg(service_id));
        self.call(Method::POST, &path, &[], None::<&()>)
            .await
            .map(drop)
    }

    // ---- transport ---------------------------------------------------------------------

    async fn page<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        key: &str,
    ) -> Result<Page<T>, RenderError> {
        let items: Vec<Value> = self.json(Method::GET, path, query, None::<&()>).await?;
        let cursor = items
            .last()
            .and_then(|item| item.get("cursor"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let items = items_of(&Method::GET, path, items, key)?;
        Ok(Page { items, cursor })
    }

    async fn all_pages<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        key: &str,
    ) -> Result<Vec<T>, RenderError> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut page_query_ = query.to_vec();
            page_query(&mut page_query_, cursor.as_deref(), PAGE_LIMIT);
            let page: Page<T> = self.page(path, &page_query_, key).await?;
            let full = page.items.len() as u32 >= PAGE_LIMIT;
            all.extend(page.items);
            match page.cursor {
                Some(next) if full => cursor = Some(next),
                _ => return Ok(all),
            }
        }
        tracing::warn!(
            path,
            pages = MAX_PAGES,
            "stopped following Render's cursors"
        );
        Ok(all)
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, RenderError> {
        let answer = self.call(method.clone(), path, query, body).await?;
        decode(&method, path, &answer.body)
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<Answer, RenderError> {
        let Some(token) = &self.token else {
            return Err(RenderError::NoToken);
        };
        let url = self.url(path, query);
        let idempotent = matches!(method, Method::GET | Method::PUT | Method::DELETE);
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            self.wait_for_limit().await;
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(token.expose_secret())
                .header(http::header::ACCEPT, "application/json");
            if let Some(body) = body {
                request = request.json(body);
            }
            let retries_left = attempt <= self.max_retries;
            let response = match request.send().await {
                Ok(response) => response,
                Err(error) if idempotent && retries_left => {
                    let wait = backoff(attempt);
                    tracing::warn!(%method, path, attempt, error = %error, wait_ms = wait.as_millis() as u64, "Render unreachable; retrying");
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Err(error) => {
                    return Err(RenderError::Transport {
                        method,
                        path: path.to_owned(),
                        cause: error.to_string(),
                    });
                }
            };
            let status = response.status();
            let headers = response.headers().clone();
            self.note_limit(&headers).await;
            let body = response
                .bytes()
                .await
                .map_err(|error| RenderError::Transport {
                    method: method.clone(),
                    path: path.to_owned(),
                    cause: error.to_string(),
                })?;
            if status.is_success() {
                return Ok(Answer { status, body });
            }
            if status == StatusCode::TOO_MANY_REQUESTS {
                let retry_after = retry_after(&headers);
                let wait = retry_after.unwrap_or_else(|| backoff(attempt)) + jitter();
                if !retries_left || wait > self.max_wait {
                    return Err(RenderError::RateLimited {
                        method,
                        path: path.to_owned(),
                        attempts: attempt,
                        retry_after,
                    });
                }
                tracing::warn!(%method, path, attempt, wait_ms = wait.as_millis() as u64, "Render rate limit reached; waiting");
                self.hold_until(Instant::now() + wait).await;
                continue;
            }
            if status.is_server_error() && idempotent && retries_left {
                let wait = backoff(attempt);
                tracing::warn!(%method, path, attempt, %status, wait_ms = wait.as_millis() as u64, "Render failed; retrying");
                tokio::time::sleep(wait).await;
                continue;
            }
            let (id, message) = render_error_body(&body, status);
            return Err(RenderError::Api {
                method,
                path: path.to_owned(),
                status,
                id,
                message,
            });
        }
    }

    fn url(&self, path: &str, query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        url.set_path(&format!("{}{}", self.base.path(), path));
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        url
    }

    async fn wait_for_limit(&self) {
        let until = *self.not_before.lock().await;
        if let Some(until) = until {
            tokio::time::sleep_until(until).await;
        }
    }

    async fn hold_until(&self, until: Instant) {
        let mut not_before = self.not_before.lock().await;
        if not_before.is_none_or(|current| current < until) {
            *not_before = Some(until);
        }
    }

    /// `Ratelimit-Remaining: 0` holds requests back until `Ratelimit-Reset` (seconds).
    async fn note_limit(&self, headers: &HeaderMap) {
        let remaining = header_u64(headers, "ratelimit-remaining");
        if remaining == Some(0) {
            let reset = header_u64(headers, "ratelimit-reset").unwrap_or(1);
            let wait = Duration::from_secs(reset).min(self.max_wait);
            self.hold_until(Instant::now() + wait + jitter()).await;
        }
    }
}

/// A triggered deploy: created at once (201), or queued (202) behind one in progress, in
/// which case `deploy` is the newest deploy Render lists, if any.
#[derive(Debug, Clone)]
pub struct Triggered {
    pub queued: bool,
    pub deploy: Option<Deploy>,
}

impl Triggered {
    pub fn deploy_id(&self) -> Option<String> {
        self.deploy.as_ref().map(|deploy| deploy.id.clone())
    }
}

/// One page of a list and the cursor to pass for the next one.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub cursor: Option<String>,
}

/// Filters of `GET /services`.
#[derive(Debug, Clone, Default)]
pub struct ServiceFilter {
    pub names: Vec<String>,
    pub types: Vec<ServiceType>,
    pub owner_id: Option<String>,
}

impl ServiceFilter {
    /// Render declares these lists `explode: false`: one parameter, comma-separated.
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        if !self.names.is_empty() {
            query.push(("name", self.names.join(",")));
        }
        if !self.types.is_empty() {
            let types: Vec<&str> = self.types.iter().map(|kind| kind.as_str()).collect();
            query.push(("type", types.join(",")));
        }
        if let Some(owner) = &self.owner_id {
            query.push(("ownerId", owner.clone()));
        }
        query
    }
}

fn page_query(query: &mut Vec<(&str, String)>, cursor: Option<&str>, limit: u32) {
    query.push(("limit", limit.clamp(1, PAGE_LIMIT).to_string()));
    if let Some(cursor) = cursor {
        query.push(("cursor", cursor.to_owned()));
    }
}

/// A path segment, percent-encoded (ids and env keys come from callers).
fn seg(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

fn items_of<T: DeserializeOwned>(
    method: &Method,
    path: &str,
    items: Vec<Value>,
    key: &str,
) -> Result<Vec<T>, RenderError> {
    items
        .into_iter()
        .map(|mut item| {
            let inner = item.get_mut(key).map(Value::take).unwrap_or(Value::Null);
            serde_json::from_value(inner).map_err(|error| RenderError::Decode {
                method: method.clone(),
                path: path.to_owned(),
                cause: format!("{key}: {error}"),
            })
        })
        .collect()
}

fn decode<T: DeserializeOwned>(method: &Method, path: &str, body: &[u8]) -> Result<T, RenderError> {
    serde_json::from_slice(body).map_err(|error| RenderError::Decode {
        method: method.clone(),
        path: path.to_owned(),
        cause: error.to_string(),
    })
}

/// Render's error body is `{id, message}`; anything else is summarised.
fn render_error_body(body: &[u8], status: StatusCode) -> (Option<String>, String) {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|value| value.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let message = field("message").unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() {
            status.canonical_reason().unwrap_or("no message").to_owned()
        } else {
            text.chars().take(300).collect()
        }
    });
    (field("id"), message)
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// `Retry-After` in seconds, or as an HTTP date; else `Ratelimit-Reset` in seconds.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(value) = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
    {
        if let Ok(seconds) = value.trim().parse::<u64>() {
            return Some(Duration::from_secs(seconds));
        }
        if let Ok(when) = httpdate(value) {
            return Some(when);
        }
    }
    header_u64(headers, "ratelimit-reset").map(Duration::from_secs)
}

fn httpdate(value: &str) -> Result<Duration, ()> {
    let format = time::format_description::well_known::Rfc2822;
    let when = time::OffsetDateTime::parse(value.trim(), &format).map_err(drop)?;
    let delta = when - time::OffsetDateTime::now_utc();
    Ok(delta.try_into().unwrap_or(Duration::ZERO))
}

/// Exponential backoff with full jitter: a random wait up to `base * 2^(attempt-1)`, capped.
fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(BACKOFF_CAP);
    let millis =
        rand::rng().random_range(ceiling.as_millis() as u64 / 2..=ceiling.as_millis() as u64);
    Duration::from_millis(millis)
}

fn jitter() -> Duration {
    Duration::from_millis(rand::rng().random_range(0..250))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..30 {
            let wait = backoff(attempt);
            assert!(wait <= BACKOFF_CAP, "attempt {attempt}: {wait:?}");
        }
        assert!(backoff(1) <= BACKOFF_BASE);
        assert!(backoff(8) >= BACKOFF_CAP / 2);
    }

    #[test]
    fn retry_after_reads_seconds_dates_and_reset() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "7".parse().expect("header"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        let mut headers = HeaderMap::new();
        headers.insert("ratelimit-reset", "3".parse().expect("header"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        let mut headers = HeaderMap::new();
        headers.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().expect("header"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
    }

    #[test]
    fn render_errors_keep_id_and_message() {
        let (id, message) = render_error_body(
            br#"{"id":"not_found","message":"service not found"}"#,
            StatusCode::NOT_FOUND,
        );
        assert_eq!(id.as_deref(), Some("not_found"));
        assert_eq!(message, "service not found");
        let (id, message) = render_error_body(b"", StatusCode::BAD_GATEWAY);
        assert_eq!((id, message.as_str()), (None, "Bad Gateway"));
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(seg("srv-1"), "srv-1");
        assert_eq!(seg("a/b c"), "a%2Fb%20c");
    }
}
