//! What a service binary does instead of serving, when its first argument asks for it.
//!
//! - `<service> healthcheck`: asks `GET /health` of the server this environment configures and
//!   exits 0 when it answers 200, 1 otherwise. It is the images' `HEALTHCHECK`, so they need no
//!   curl.
//! - `<service> migrate`: validates the service's configuration like a boot does, applies the
//!   pending migrations to its database (waiting up to a minute for it to answer) and exits: the
//!   one-shot step that migrates once before the services start.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use crate::config::{self, Loaded, ServiceConfig, Spec};

/// The first argument that makes a service binary probe its own `/health`.
pub const HEALTHCHECK_ARG: &str = "healthcheck";

/// The first argument that makes a service binary apply its database's migrations and exit.
pub const MIGRATE_ARG: &str = "migrate";

/// How long the probe waits to connect, and then for the answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// How long `migrate` waits for the database to answer.
const MIGRATE_PATIENCE: Duration = Duration::from_secs(60);

/// A command other than serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Healthcheck,
    Migrate,
}

impl Command {
    /// The command the process's first argument names, if any.
    pub fn from_args() -> Option<Command> {
        Command::parse(std::env::args_os().nth(1))
    }

    fn parse(arg: Option<OsString>) -> Option<Command> {
        match arg?.to_str()? {
            HEALTHCHECK_ARG => Some(Command::Healthcheck),
            MIGRATE_ARG => Some(Command::Migrate),
            _ => None,
        }
    }
}

/// `<service> healthcheck`: `GET /health` at `HOST:PORT` as the service reads them (the
/// environment, `.env`, the schema's defaults; a wildcard `HOST` is asked on loopback).
pub fn health_probe(service: &str) -> ExitCode {
    let result = config::process_env()
        .map_err(|e| e.to_string())
        .and_then(|env| probe_address(service, &env))
        .and_then(|address| probe_health(address, PROBE_TIMEOUT));
    match result {
        Ok(status) => {
            println!("{service}: healthy ({status})");
            ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("{service}: unhealthy: {reason}");
            ExitCode::FAILURE
        }
    }
}

/// Where the server of `service` answers under `env`: `HOST` and `PORT` (or their defaults),
/// with an unspecified `HOST` (`0.0.0.0`, `::`) replaced by the loopback address of its family.
pub fn probe_address(service: &str, env: &HashMap<String, String>) -> Result<SocketAddr, String> {
    let spec = Spec::for_service(service).map_err(|e| e.to_string())?;
    let value = |name: &str| -> Result<Value, String> {
        let var = spec
            .var(name)
            .ok_or_else(|| format!("the {service} section of the schema has no {name}"))?;
        match env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
            Some(raw) => config::coerce(raw, &var.kind).map_err(|e| format!("{name}: {e}")),
            None => var
                .default
                .clone()
                .ok_or_else(|| format!("{name} is not set")),
        }
    };
    let host = value("HOST")?;
    let host: IpAddr = host
        .as_str()
        .and_then(|h| h.parse().ok())
        .ok_or_else(|| format!("HOST: {host} is not an IP address"))?;
    let port = value("PORT")?;
    let port = port
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("PORT: {port} is not a port a probe can reach"))?;
    let host = match host {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    };
    Ok(SocketAddr::new(host, port))
}

/// `GET /health` at `address`: the status line when the answer is 200, the reason otherwise.
pub fn probe_health(address: SocketAddr, timeout: Duration) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&address, timeout)
        .map_err(|e| format!("cannot connect to {address}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET /health HTTP/1.1\r\nHost: {address}\r\nUser-Agent: autonoma-healthcheck\r\n\
         Connection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("sending to {address}: {e}"))?;
    // Only the status line matters; it fits in the first kilobyte.
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 1024 {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("reading from {address}: {e}")),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let status_line = head.lines().next().unwrap_or_default().trim().to_owned();
    match status_line.split_whitespace().nth(1) {
        Some("200") => Ok(format!("{address}: {status_line}")),
        Some(_) => Err(format!("{address} answered {status_line:?}")),
        None => Err(format!("{address} sent no HTTP status line")),
    }
}

/// `<service> migrate`, once the configuration has been loaded and validated.
pub async fn migrate<C: ServiceConfig>(loaded: &Loaded<C>) -> ExitCode {
    let Some(database) = loaded.config.database() else {
        eprintln!(
            "{}: keeps no state in the database; nothing to migrate",
            C::SERVICE
        );
        return ExitCode::FAILURE;
    };
    let result = async {
        let pool = crate::db::connect(C::SERVICE, database)?;
        crate::db::migrate_when_reachable(&pool, MIGRATE_PATIENCE).await?;
        let applied: i64 =
            sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(&pool)
                .await?;
        pool.close().await;
        anyhow::Ok(applied)
    }
    .await;
    match result {
        Ok(applied) => {
            println!("{}: migrations applied: {applied}", C::SERVICE);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{}: {error:#}", C::SERVICE);
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn only_the_first_argument_names_a_command() {
        assert_eq!(
            Command::parse(Some("healthcheck".into())),
            Some(Command::Healthcheck)
        );
        assert_eq!(
            Command::parse(Some("migrate".into())),
            Some(Command::Migrate)
        );
        assert_eq!(Command::parse(Some("serve".into())), None);
        assert_eq!(Command::parse(None), None);
    }

    #[test]
    fn the_probe_asks_where_the_server_listens() {
        let address = |pairs| probe_address("logging", &env(pairs));
        assert_eq!(
            address(&[("HOST", "0.0.0.0"), ("PORT", "7101")]),
            Ok("127.0.0.1:7101".parse().expect("address"))
        );
        assert_eq!(
            address(&[("HOST", "::"), ("PORT", "7101")]),
            Ok("[::1]:7101".parse().expect("address"))
        );
        assert_eq!(
            address(&[("HOST", "10.1.2.3"), ("PORT", "80")]),
            Ok("10.1.2.3:80".parse().expect("address"))
        );
        // The schema's defaults: 0.0.0.0:8080.
        assert_eq!(address(&[]), Ok("127.0.0.1:8080".parse().expect("address")));
        assert!(address(&[("PORT", "0")]).is_err());
        assert!(address(&[("PORT", "http")]).is_err());
        assert!(address(&[("HOST", "localhost")]).is_err());
    }

    /// A one-connection server that answers `response` to whatever it is sent.
    fn answer_once(response: &'static str) -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        std::thread::spawn(move || {
            if let Ok((mut stream, _)) = listener.accept() {
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request);
                let _ = stream.write_all(response.as_bytes());
            }
        });
        address
    }

    #[test]
    fn healthy_only_on_200() {
        let ok = answer_once("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        assert!(probe_health(ok, PROBE_TIMEOUT).is_ok());
        let draining = answer_once("HTTP/1.1 503 Service Unavailable\r\n\r\n");
        let reason = probe_health(draining, PROBE_TIMEOUT).expect_err("503 is unhealthy");
        assert!(reason.contains("503"), "{reason}");
        let garbage = answer_once("hello");
        assert!(probe_health(garbage, PROBE_TIMEOUT).is_err());
        // Nothing listens on a port that was just free.
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("address")
        };
        let reason = probe_health(closed, PROBE_TIMEOUT).expect_err("nothing listens");
        assert!(reason.contains("cannot connect"), "{reason}");
    }
}
