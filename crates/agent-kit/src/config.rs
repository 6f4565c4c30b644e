//! The `agent` group of `infra/config.schema.json`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use autonoma_protocol::Transport;
use serde::Deserialize;
use url::Url;

/// How an agent finds the orchestrator and receives its tasks. Flatten it into the agent's
/// config type next to `ServerConfig` and `AwsConfig`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct AgentConfig {
    pub orchestrator_url: Url,
    #[serde(default)]
    pub agent_public_url: Option<Url>,
    pub agent_transport: Transport,
    #[serde(default)]
    pub agent_queue_url: Option<Url>,
    #[serde(default)]
    pub agent_queue_name: Option<String>,
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    pub agent_concurrency: usize,
}

impl AgentConfig {
    /// `ORCHESTRATOR_URL` joined with `path` (which starts with `/`).
    pub fn orchestrator(&self, path: &str) -> String {
        format!(
            "{}{path}",
            self.orchestrator_url.as_str().trim_end_matches('/')
        )
    }

    /// The base URL the orchestrator reaches this agent at: `AGENT_PUBLIC_URL`, else derived
    /// from the address the server is bound to (loopback for a wildcard or loopback bind).
    pub fn public_url(&self, bound: SocketAddr) -> String {
        if let Some(url) = &self.agent_public_url {
            return url.as_str().trim_end_matches('/').to_owned();
        }
        let host = match bound.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() || ip.is_loopback() => {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            }
            IpAddr::V6(ip) if ip.is_unspecified() || ip.is_loopback() => {
                IpAddr::V6(Ipv6Addr::LOCALHOST)
            }
            other => other,
        };
        format!("http://{}", SocketAddr::new(host, bound.port()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(public: Option<&str>) -> AgentConfig {
        AgentConfig {
            orchestrator_url: Url::parse("http://orchestrator:7100/").expect("url"),
            agent_public_url: public.map(|u| Url::parse(u).expect("url")),
            agent_transport: Transport::Http,
            agent_queue_url: None,
            agent_queue_name: None,
            heartbeat_interval: Duration::from_secs(10),
            agent_concurrency: 32,
        }
    }

    #[test]
    fn public_url_defaults_to_loopback_for_wildcard_and_loopback_binds() {
        let c = config(None);
        let at = |addr: &str| c.public_url(addr.parse().expect("socket address"));
        assert_eq!(at("0.0.0.0:7102"), "http://127.0.0.1:7102");
        assert_eq!(at("127.0.0.1:7102"), "http://127.0.0.1:7102");
        assert_eq!(at("[::]:7102"), "http://[::1]:7102");
        assert_eq!(at("10.1.2.3:80"), "http://10.1.2.3:80");
    }

    #[test]
    fn explicit_public_url_wins_without_trailing_slash() {
        let c = config(Some("http://echo-agent:10000/"));
        assert_eq!(
            c.public_url("0.0.0.0:1".parse().expect("addr")),
            "http://echo-agent:10000"
        );
        assert_eq!(c.orchestrator("/agents"), "http://orchestrator:7100/agents");
    }
}
