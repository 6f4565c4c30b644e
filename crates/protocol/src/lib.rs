//! What crosses the wire between the orchestrator, agents and clients. Request bodies are
//! `*In`, responses `*Out`, partial updates `*Patch`; JSON is camelCase.

mod agent;
mod log;
mod task;

pub use agent::*;
pub use log::*;
pub use task::*;

/// Header carrying the task id on dispatches and in SQS message attributes.
pub const TASK_ID_HEADER: &str = "x-autonoma-task-id";
/// Header carrying the attempt number on dispatches.
pub const ATTEMPT_HEADER: &str = "x-autonoma-attempt";
