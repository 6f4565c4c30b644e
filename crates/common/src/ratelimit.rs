//! Rate limits on what people send, kept per client address (GCRA, [`governor`]):
//!
//! - every request to a route that needs credentials draws on the client's allowance
//!   (`RATE_LIMIT_PER_SECOND`, bursts of `RATE_LIMIT_BURST`);
//! - every refused credential (a wrong Basic Auth password, internal key or token) draws on a
//!   much smaller one (`RATE_LIMIT_AUTH_FAILURES_PER_MINUTE`, `RATE_LIMIT_AUTH_FAILURE_BURST`).
//!   A client that exhausts it is refused everything, right credentials included, until it
//!   refills: otherwise a 429 for a wrong password and a 200 for the right one would let the
//!   guessing go on.
//!
//! Requests with a valid internal key (service to service) and the public health checks are
//! never limited. Basic Auth and internal keys are judged here, before the request runs, so
//! parallel guesses cannot outrun the count; credentials only the route can judge (sharing
//! tokens) count when the route answers 401. A request without credentials is not a guess and
//! does not count as a failure.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::auth::{Presented, auth_of};
use crate::problem::Problem;

/// How often idle clients are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The `RATE_LIMIT_*` variables of the `server` group.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct RateLimitConfig {
    pub rate_limit_per_second: u32,
    pub rate_limit_burst: u32,
    pub rate_limit_auth_failures_per_minute: u32,
    pub rate_limit_auth_failure_burst: u32,
    pub rate_limit_proxy_hops: usize,
}

/// The allowances of every client of one server.
pub struct Limiter {
    requests: DefaultKeyedRateLimiter<IpAddr>,
    failures: DefaultKeyedRateLimiter<IpAddr>,
    /// Clients refused until the given instant for exhausting their failure allowance.
    lockouts: Mutex<HashMap<IpAddr, Instant>>,
    proxy_hops: usize,
    public: BTreeSet<String>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("clients", &self.requests.len())
            .field("proxy_hops", &self.proxy_hops)
            .finish_non_exhaustive()
    }
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

impl Limiter {
    /// `public` are the matched paths (axum syntax) that are never limited.
    pub fn new<'a>(
        config: &RateLimitConfig,
        public: impl IntoIterator<Item = &'a str>,
    ) -> Arc<Self> {
        let requests = Quota::per_second(nonzero(config.rate_limit_per_second))
            .allow_burst(nonzero(config.rate_limit_burst));
        let failures = Quota::per_minute(nonzero(config.rate_limit_auth_failures_per_minute))
            .allow_burst(nonzero(config.rate_limit_auth_failure_burst));
        Arc::new(Limiter {
            requests: RateLimiter::keyed(requests),
            failures: RateLimiter::keyed(failures),
            lockouts: Mutex::default(),
            proxy_hops: config.rate_limit_proxy_hops,
            public: public.into_iter().map(str::to_owned).collect(),
        })
    }

    fn lockouts(&self) -> MutexGuard<'_, HashMap<IpAddr, Instant>> {
        self.lockouts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How much longer `client` is refused, if it is.
    fn locked_for(&self, client: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let mut lockouts = self.lockouts();
        match lockouts.get(&client) {
            Some(until) if *until > now => Some(*until - now),
            Some(_) => {
                lockouts.remove(&client);
                None
            }
            None => None,
        }
    }

    /// Counts a refused credential; `Err` with the wait once the allowance is spent, from when
    /// on the client is refused everything.
    fn fail(&self, client: IpAddr) -> Result<(), Duration> {
        let Err(not_until) = self.failures.check_key(&client) else {
            return Ok(());
        };
        let wait = not_until.wait_time_from(self.failures.clock().now());
        self.lockouts().insert(client, Instant::now() + wait);
        tracing::warn!(
            client = %client,
            wait_secs = wait.as_secs_f64(),
            "too many refused credentials from one client; refusing it for a while"
        );
        Err(wait)
    }

    /// Draws one request from `client`'s allowance; `Err` with the wait when it is spent.
    fn draw(&self, client: IpAddr) -> Result<(), Duration> {
        self.requests
            .check_key(&client)
            .map_err(|not_until| not_until.wait_time_from(self.requests.clock().now()))
    }

    /// Forgets clients whose allowances are full again.
    fn prune(&self) {
        self.requests.retain_recent();
        self.failures.retain_recent();
        self.requests.shrink_to_fit();
        self.failures.shrink_to_fit();
        let now = Instant::now();
        let mut lockouts = self.lockouts();
        lockouts.retain(|_, until| *until > now);
        lockouts.shrink_to_fit();
    }

    /// The address limits are kept for: the TCP peer, or with `RATE_LIMIT_PROXY_HOPS` = n the
    /// n-th address from the right of `X-Forwarded-For` (what the last n proxies appended;
    /// anything further left the client wrote itself). IPv6 clients are kept per /64, the
    /// block one host is usually given.
    fn client(&self, request: &Request) -> IpAddr {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
        let address = if self.proxy_hops == 0 {
            peer
        } else {
            let forwarded: Vec<&str> = request
                .headers()
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(','))
                .map(str::trim)
                .collect();
            forwarded
                .len()
                .checked_sub(self.proxy_hops)
                .and_then(|at| forwarded[at].parse().ok())
                .unwrap_or(peer)
        };
        bucket(address)
    }
}

fn bucket(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(Ipv6Addr::from(segments))
            }
        },
        v4 => v4,
    }
}

/// Forgets idle clients every minute until `shutdown` (or until the server is dropped).
pub fn spawn_pruning(limiter: &Arc<Limiter>, shutdown: CancellationToken) {
    let limiter = Arc::downgrade(limiter);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PRUNE_EVERY);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => return,
            }
            match limiter.upgrade() {
                Some(limiter) => limiter.prune(),
                None => return,
            }
        }
    });
}

/// Whole seconds to wait, at least 1 (`Retry-After` takes no fractions).
fn whole_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

fn too_many_requests(wait: Duration) -> Response {
    let secs = whole_secs(wait);
    Problem::new(StatusCode::TOO_MANY_REQUESTS)
        .kind("rate-limited")
        .detail(format!(
            "Too many requests from this client; retry in {secs} s."
        ))
        .header(header::RETRY_AFTER, HeaderValue::from(secs))
        .into_response()
}

fn too_many_failures(wait: Duration) -> Response {
    let secs = whole_secs(wait);
    Problem::new(StatusCode::TOO_MANY_REQUESTS)
        .kind("too-many-auth-failures")
        .detail(format!(
            "Too many refused credentials from this client; every request is refused for {secs} s."
        ))
        .header(header::RETRY_AFTER, HeaderValue::from(secs))
        .into_response()
}

/// The middleware (installed by the server bootstrap, inside the [`crate::auth::Auth`]
/// extension).
pub async fn limit(State(limiter): State<Arc<Limiter>>, request: Request, next: Next) -> Response {
    let public = request
        .extensions()
        .get::<MatchedPath>()
        .is_some_and(|path| limiter.public.contains(path.as_str()));
    if public {
        return next.run(request).await;
    }
    let presented = match auth_of(&request) {
        Ok(auth) => auth.presented(&request),
        Err(problem) => return problem.into_response(),
    };
    if presented == Presented::InternalKey {
        return next.run(request).await;
    }
    let client = limiter.client(&request);
    if let Some(wait) = limiter.locked_for(client) {
        return too_many_failures(wait);
    }
    if presented == Presented::Refused
        && let Err(wait) = limiter.fail(client)
    {
        return too_many_failures(wait);
    }
    if let Err(wait) = limiter.draw(client) {
        return too_many_requests(wait);
    }
    let response = next.run(request).await;
    if presented == Presented::Other && response.status() == StatusCode::UNAUTHORIZED {
        // The route refused a credential only it could judge; the 401 stands either way.
        let _ = limiter.fail(client);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_kept_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("address");
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("address");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("address");
        assert_eq!(bucket(a), bucket(b));
        assert_ne!(bucket(a), bucket(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("address");
        assert_eq!(
            bucket(mapped),
            "192.0.2.7".parse::<IpAddr>().expect("address")
        );
    }
}
