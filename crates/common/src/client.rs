//! The HTTP client services use to call each other: it sends `X-INTERNAL-KEY` and the current
//! `traceparent`, has timeouts, and retries with jittered exponential backoff only what is safe
//! to repeat (idempotent methods failing with a connection error, a timeout, 502/503/504 or 429).

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::auth::INTERNAL_KEY_HEADER;
use crate::problem::Problem;
use crate::trace::{TRACEPARENT, TraceContext};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("request to {url} failed: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The peer answered with an error; its problem document when it sent one.
    #[error("{url} answered {status}: {}", .problem.as_ref().map(ToString::to_string).unwrap_or_default())]
    Status {
        url: String,
        status: StatusCode,
        problem: Option<Box<Problem>>,
    },
    #[error("request to {url} cannot be built: {reason}")]
    Build { url: String, reason: String },
}

#[derive(Clone)]
pub struct InternalClient {
    http: reqwest::Client,
    key: SecretString,
    retries: usize,
}

impl std::fmt::Debug for InternalClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalClient")
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

impl InternalClient {
    /// `key` is sent as `X-INTERNAL-KEY`; `timeout` bounds each attempt.
    pub fn new(key: SecretString, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("autonoma/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(InternalClient {
            http,
            key,
            retries: 3,
        })
    }

    /// How many times an idempotent request is retried (default 3).
    pub fn with_retries(mut self, retries: usize) -> Self {
        self.retries = retries;
        self
    }

    /// Sends a request (with a JSON body if given) and returns the response, whatever its status.
    pub async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        url: &str,
        body: Option<&B>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut builder = self
            .http
            .request(method.clone(), url)
            .header(INTERNAL_KEY_HEADER, self.key.expose_secret());
        if let Some(ctx) = TraceContext::current() {
            builder = builder.header(TRACEPARENT, ctx.child().traceparent());
        }
        if let Some(body) = body {
            builder = builder.json(body);
        }
        let request = builder.build().map_err(|e| ClientError::Build {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;

        let idempotent = matches!(
            method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::PUT
                | Method::DELETE
                | Method::TRACE
        );
        let retries = if idempotent { self.retries } else { 0 };
        let backoff = ExponentialBuilder::new()
            .with_jitter()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(5))
            .with_max_times(retries);

        let attempt = || async {
            let request = request.try_clone().ok_or_else(|| {
                Attempt::Final(ClientError::Build {
                    url: url.to_owned(),
                    reason: "streaming bodies cannot be sent".into(),
                })
            })?;
            match self.http.execute(request).await {
                Ok(response) if is_retryable_status(response.status()) => {
                    let wait = retry_after(&response);
                    Err(Attempt::Retry(response, wait))
                }
                Ok(response) => Ok(response),
                Err(error) if error.is_connect() || error.is_timeout() => {
                    Err(Attempt::Transport(error))
                }
                Err(error) => Err(Attempt::Final(ClientError::Transport {
                    url: url.to_owned(),
                    source: error,
                })),
            }
        };
        let result = attempt
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(|e| !matches!(e, Attempt::Final(_)))
            .adjust(|e, delay| match e {
                Attempt::Retry(_, Some(wait)) => delay.map(|d| d.max(*wait)),
                _ => delay,
            })
            .notify(|e, delay| tracing::debug!(url, ?delay, error = %e, "retrying internal call"))
            .await;
        match result {
            Ok(response) | Err(Attempt::Retry(response, _)) => Ok(response),
            Err(Attempt::Transport(error)) => Err(ClientError::Transport {
                url: url.to_owned(),
                source: error,
            }),
            Err(Attempt::Final(error)) => Err(error),
        }
    }

    /// Sends a request and decodes a successful JSON answer; an error status becomes
    /// [`ClientError::Status`] carrying the peer's problem document.
    pub async fn json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        url: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let response = self.send(method, url, body).await?;
        let status = response.status();
        if !status.is_success() {
            let problem = response.json::<Problem>().await.ok().map(Box::new);
            return Err(ClientError::Status {
                url: url.to_owned(),
                status,
                problem,
            });
        }
        response
            .json()
            .await
            .map_err(|source| ClientError::Transport {
                url: url.to_owned(),
                source,
            })
    }

    pub async fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T, ClientError> {
        self.json::<(), T>(Method::GET, url, None).await
    }

    pub async fn post_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        url: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.json(Method::POST, url, Some(body)).await
    }
}

enum Attempt {
    Retry(reqwest::Response, Option<Duration>),
    Transport(reqwest::Error),
    Final(ClientError),
}

impl std::fmt::Display for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Attempt::Retry(response, _) => write!(f, "status {}", response.status()),
            Attempt::Transport(error) => write!(f, "{error}"),
            Attempt::Final(error) => write!(f, "{error}"),
        }
    }
}

fn is_retryable_status(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT
    )
}

/// `Retry-After` in seconds (capped at a minute; dates are not worth honouring between services).
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|secs| Duration::from_secs(secs.min(60)))
}
