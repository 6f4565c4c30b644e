//! Kind `echo`: the payload back as a task result, with knobs that make attempts slow, fail
//! or hang, for testing retries, timeouts and cancellation.

use std::time::Duration;

use autonoma_agent_kit::{TaskContext, TaskError};
use serde::Deserialize;
use serde_json::{Value, json};

pub const KIND: &str = "echo";

/// The payload schema registered for kind `echo`.
pub fn payload_schema() -> Value {
    json!({
        "type": "object",
        "description": "Any object; these members change how the attempt behaves.",
        "properties": {
            "message": { "type": "string", "description": "Echoed like everything else." },
            "delayMs": {
                "type": "integer", "minimum": 0, "maximum": 600000,
                "description": "Wait this long before answering."
            },
            "failTimes": {
                "type": "integer", "minimum": 0,
                "description": "Fail attempts 1..=failTimes (retryable), succeed after."
            },
            "failAlways": { "type": "boolean", "description": "Fail every attempt (retryable)." },
            "hangMs": {
                "type": "integer", "minimum": 0, "maximum": 86400000,
                "description": "Sleep this long, e.g. past the task's timeout; cancellation ends it."
            }
        },
        "additionalProperties": true
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Knobs {
    delay_ms: Option<u64>,
    fail_times: Option<u32>,
    fail_always: Option<bool>,
    hang_ms: Option<u64>,
}

/// `{echo: payload, attempt}` after the knobs had their say.
pub async fn echo(ctx: TaskContext, payload: Value) -> Result<Value, TaskError> {
    let knobs: Knobs = serde_json::from_value(payload.clone())
        .map_err(|error| TaskError::permanent(format!("unreadable knobs: {error}")))?;
    if let Some(ms) = knobs.delay_ms {
        ctx.sleep(Duration::from_millis(ms)).await?;
    }
    if let Some(ms) = knobs.hang_ms {
        tracing::info!(hang_ms = ms, "hanging as asked");
        ctx.sleep(Duration::from_millis(ms)).await?;
    }
    if knobs.fail_always == Some(true) {
        return Err(TaskError::new("failing as asked (failAlways)").detail("attempt", ctx.attempt));
    }
    if let Some(times) = knobs.fail_times
        && i64::from(ctx.attempt) <= i64::from(times)
    {
        return Err(TaskError::new(format!(
            "failing attempt {} as asked (failTimes {times})",
            ctx.attempt
        ))
        .detail("attempt", ctx.attempt));
    }
    tracing::info!("echoing");
    Ok(json!({ "echo": payload, "attempt": ctx.attempt }))
}
