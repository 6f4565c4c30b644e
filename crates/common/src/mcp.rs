//! What every service that serves its operations as MCP tools (rmcp) needs: arguments that
//! turn into a [`Problem`] naming the bad field instead of a protocol error, input schemas
//! from the arguments' types, and results (structured content, or the problem as a tool error
//! the model can correct its call from).

use std::sync::Arc;

use axum::http::StatusCode;
use rmcp::ErrorData;
use rmcp::handler::server::common::{FromContextPart, schema_for_input};
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{CallToolResult, JsonObject};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::Problem;
use crate::problem::FieldError;

/// A tool's arguments, or the problem naming the argument that is wrong.
pub struct Args<T>(pub Result<T, Problem>);

impl<S, T: DeserializeOwned> FromContextPart<ToolCallContext<'_, S>> for Args<T> {
    fn from_context_part(context: &mut ToolCallContext<'_, S>) -> Result<Self, ErrorData> {
        let arguments = context.arguments.take().unwrap_or_default();
        let parsed = serde_json::to_vec(&arguments)
            .map_err(Problem::internal)
            .and_then(|bytes| crate::extract::parse_json(&bytes))
            .map_err(|mut problem| {
                if problem.status == StatusCode::UNPROCESSABLE_ENTITY.as_u16() {
                    problem.detail = Some("The tool's arguments are not valid.".into());
                }
                problem
            });
        Ok(Self(parsed))
    }
}

/// A tool's input schema, from its arguments type. The types are fixed at build time (as with
/// rmcp's own `Parameters`, a type without an object schema is a bug a tool listing test
/// catches, not an input error).
pub fn input_schema<T: JsonSchema + 'static>() -> Arc<JsonObject> {
    schema_for_input::<T>().unwrap_or_else(|e| panic!("tool input schema: {e}"))
}

/// The operation's result as structured content (and its JSON as text), or its problem as an
/// error result.
pub fn tool_result<T: serde::Serialize>(result: Result<T, Problem>) -> CallToolResult {
    match result.and_then(|out| serde_json::to_value(out).map_err(Problem::internal)) {
        Ok(value) => CallToolResult::structured(value),
        Err(problem) => problem_result(&problem),
    }
}

/// The problem as a tool error, the service's secrets masked in it.
pub fn problem_result(problem: &Problem) -> CallToolResult {
    let mut value = serde_json::to_value(problem).unwrap_or_else(
        |_| json!({"status": problem.status, "title": problem.title, "detail": problem.detail}),
    );
    crate::redact::redact_json(&mut value);
    CallToolResult::structured_error(value)
}

/// A 422 naming one argument.
pub fn invalid(detail: &str, field: &str, message: impl Into<String>) -> Problem {
    Problem::validation(
        detail,
        [FieldError {
            field: field.into(),
            message: message.into(),
        }],
    )
}
