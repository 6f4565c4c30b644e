//! Reliability under faults, with the real service binaries as processes on loopback: the
//! orchestrator killed mid-run, agents that hang, crash or answer garbage, Postgres and the SQS
//! endpoint stopped and restarted, and WebSocket clients that stop reading or arrive by the
//! thousand. Every wait is bounded; every scenario asserts that nothing acknowledged is lost.

#[path = "reliability/support.rs"]
mod support;

#[path = "reliability/reliability_bad_agents.rs"]
mod reliability_bad_agents;
#[path = "reliability/reliability_orchestrator_kill.rs"]
mod reliability_orchestrator_kill;
#[path = "reliability/reliability_postgres_restart.rs"]
mod reliability_postgres_restart;
#[path = "reliability/reliability_sqs_restart.rs"]
mod reliability_sqs_restart;
#[path = "reliability/reliability_websocket.rs"]
mod reliability_websocket;
