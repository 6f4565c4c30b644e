//! A stateful contract fake of Render's public REST API.
//!
//! [`RenderFake`] serves, on a loopback port, the part of the API that Autonoma uses: owners,
//! services, environment variables, deploys, build logs, Postgres databases and environment
//! groups. It checks every request it receives and every response it sends against Render's
//! published OpenAPI document ([`Contract`]) and records whatever does not conform, so that tests
//! catch both client mistakes and drift of the fake itself.
//!
//! Build logs (`GET /logs`) carry the labels `resource` (the service ID), `instance` (the deploy
//! ID: the contract's label names are a closed set without `deploy`), `type` (`build`) and
//! `level` (`info`). Filtering `/logs` by `instance=<deployId>` selects one deploy's build log.
#![warn(clippy::unwrap_used)]

pub mod contract;
mod fake;
mod state;

pub use contract::{Contract, OperationRef};
pub use fake::{DeployResponse, Options, Recorded, RenderFake};
