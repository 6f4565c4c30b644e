//! Extractors whose rejections are problems that name the offending field.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::problem::Problem;

/// A JSON body. Malformed JSON is a 400; well-formed JSON of the wrong shape is a 422 whose
/// `errors[].field` is a JSON pointer to the bad value; a non-JSON content type is a 415.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<mime_type::Essence>().ok())
            .is_some_and(|essence| essence.is_json());
        if !is_json {
            return Err(Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE)
                .detail("Send the body as JSON with Content-Type: application/json.")
                .field("content-type", "expected application/json"));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| Problem::new(rejection.status()).detail(rejection.body_text()))?;
        parse_json(&bytes).map(Json)
    }
}

/// Deserialises a JSON document, with errors shaped like [`Json`]'s.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize(&mut deserializer) {
        Ok(value) => Ok(value),
        Err(error) => {
            let pointer = json_pointer(error.path());
            let inner = error.into_inner();
            if inner.is_syntax() || inner.is_eof() || inner.is_io() {
                Err(
                    Problem::bad_request(format!("The body is not valid JSON: {inner}."))
                        .kind("malformed-json")
                        .field("/", inner.to_string()),
                )
            } else {
                let message = without_value(&strip_position(&inner.to_string()));
                Err(Problem::validation(
                    "The body does not have the expected shape.",
                    [crate::problem::FieldError {
                        field: point_at_missing_field(pointer, &message),
                        message,
                    }],
                ))
            }
        }
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Query parameters; a bad one is a 400 naming the parameter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Problem> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(Query)
            .map_err(|error| {
                let field = error.path().to_string();
                let message = without_value(&error.into_inner().to_string());
                let field = if field == "." {
                    // Missing fields are reported at the root; serde names them in the message.
                    message
                        .split('`')
                        .nth(1)
                        .map(str::to_owned)
                        .unwrap_or_else(|| "query".into())
                } else {
                    field
                };
                Problem::bad_request(format!("Query parameter {field} is not valid: {message}."))
                    .kind("invalid-query")
                    .field(field, message)
            })
    }
}

/// The JSON pointer of the first key or string in `value` that holds U+0000, which PostgreSQL
/// can store neither as text nor in jsonb (`""` when `value` is such a string itself).
pub fn nul_pointer(value: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    match value {
        Value::String(text) => text.contains('\0').then(String::new),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(index, item)| nul_pointer(item).map(|rest| format!("/{index}{rest}"))),
        Value::Object(object) => object.iter().find_map(|(key, item)| {
            let escaped = key.replace('~', "~0").replace('/', "~1");
            if key.contains('\0') {
                return Some(format!("/{escaped}"));
            }
            nul_pointer(item).map(|rest| format!("/{escaped}{rest}"))
        }),
        _ => None,
    }
}

fn json_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut pointer = String::new();
    for segment in path.iter() {
        pointer.push('/');
        match segment {
            Segment::Seq { index } => pointer.push_str(&index.to_string()),
            Segment::Map { key } => pointer.push_str(&key.replace('~', "~0").replace('/', "~1")),
            Segment::Enum { variant } => pointer.push_str(variant),
            Segment::Unknown => pointer.push('?'),
        }
    }
    pointer
}

/// serde reports a missing field at its parent; point at the field itself.
fn point_at_missing_field(parent: String, message: &str) -> String {
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    match missing {
        Some(field) => format!("{parent}/{}", field.replace('~', "~0").replace('/', "~1")),
        None if parent.is_empty() => "/".into(),
        None => parent,
    }
}

/// serde_json appends " at line 1 column 9" to messages; the pointer says where already.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

/// serde's message without the value it quotes (`invalid type: string "…"`, `unknown variant
/// `…``): the field is named already, and what was sent where it does not belong may be a
/// secret, which an error must not echo.
fn without_value(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown variant `")
        && let Some(end) = rest.find("`, ")
    {
        return format!("unknown variant{}", &rest[end + 1..]);
    }
    let Some(start) = message.find("string \"") else {
        return message.to_owned();
    };
    let quoted = &message[start + "string ".len()..];
    // The value is written as a Rust string literal: find its unescaped closing quote.
    let mut escaped = false;
    for (index, c) in quoted.char_indices().skip(1) {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => {
                let after = &quoted[index + 1..];
                return format!("{}string{after}", &message[..start]);
            }
            _ => {}
        }
    }
    format!("{}string", &message[..start])
}

mod mime_type {
    /// The `type/subtype` of a Content-Type, lower-cased, parameters dropped.
    pub struct Essence(String);

    impl std::str::FromStr for Essence {
        type Err = ();
        fn from_str(value: &str) -> Result<Self, ()> {
            let essence = value
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            if essence.contains('/') {
                Ok(Essence(essence))
            } else {
                Err(())
            }
        }
    }

    impl Essence {
        /// application/json, or any application/*+json.
        pub fn is_json(&self) -> bool {
            self.0 == "application/json"
                || (self.0.starts_with("application/") && self.0.ends_with("+json"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_pointer_names_the_first_key_or_string_with_u0000() {
        let clean = serde_json::json!({"a": ["x", {"b": 1}], "c": null});
        assert_eq!(nul_pointer(&clean), None);
        let in_string = serde_json::json!({"a": ["x", {"b/c": "y\u{0}"}]});
        assert_eq!(nul_pointer(&in_string).as_deref(), Some("/a/1/b~1c"));
        let in_key = serde_json::json!({"k\u{0}": 1});
        assert_eq!(nul_pointer(&in_key).as_deref(), Some("/k\u{0}"));
        assert_eq!(
            nul_pointer(&serde_json::json!("\u{0}")).as_deref(),
            Some("")
        );
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        Merge,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Body {
        count: Option<u32>,
        mode: Option<Mode>,
    }

    #[test]
    fn a_value_that_does_not_fit_is_not_echoed() {
        for body in [
            r#"{"count": "sec\"ret-0123456789"}"#,
            r#"{"mode": "secret-0123456789"}"#,
        ] {
            let problem = parse_json::<Body>(body.as_bytes()).expect_err("refused");
            let text = serde_json::to_string(&problem).expect("json");
            assert!(!text.contains("ret-0123456789"), "{text}");
            assert!(
                text.contains("expected u32") || text.contains("expected `merge`"),
                "{text}"
            );
        }
    }
}
