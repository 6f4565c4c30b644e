//! The process's own secrets, masked wherever text leaves the process and could carry one by
//! accident: problem responses (a handler or a library echoing what it was sent), MCP tool
//! errors, and log lines (a dependency logging a request at debug level).
//!
//! The secrets are the values of the configuration's `writeOnly` variables, registered when the
//! configuration loads: each value, each item of a list, the secret of a `source:secret` pair
//! and the password of a URL, each also as JSON and Rust debug output escape it.

use std::borrow::Cow;
use std::sync::{LazyLock, RwLock};

use serde_json::Value;

pub const REDACTED: &str = "[REDACTED]";

/// Shorter values are not masked: they would mask ordinary words.
const MIN_LEN: usize = 8;

static SECRETS: LazyLock<RwLock<Vec<String>>> = LazyLock::new(RwLock::default);

/// Adds `value` (a secret variable's value, or one item of it) to what is masked.
pub fn register(value: &str) {
    let mut found = vec![value.trim().to_owned()];
    if let Some((source, secret)) = value.split_once(':')
        && !source.is_empty()
        && source.len() <= 32
        && source
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        found.push(secret.to_owned());
    }
    if let Ok(url) = url::Url::parse(value)
        && let Some(password) = url.password()
    {
        found.push(password.to_owned());
        found.push(
            percent_encoding::percent_decode_str(password)
                .decode_utf8_lossy()
                .into_owned(),
        );
    }
    let mut escaped = Vec::new();
    for secret in &found {
        let json = serde_json::to_string(secret).unwrap_or_default();
        let json = json.trim_matches('"').to_owned();
        let twice = serde_json::to_string(&json).unwrap_or_default();
        escaped.push(twice.trim_matches('"').to_owned());
        escaped.push(json);
    }
    found.extend(escaped);
    let mut secrets = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    for secret in found {
        if secret.len() >= MIN_LEN && !secrets.contains(&secret) {
            secrets.push(secret);
        }
    }
    // Longest first, so that a secret containing another is masked whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// `text` with every registered secret replaced by [`REDACTED`].
pub fn redact(text: &str) -> Cow<'_, str> {
    let secrets = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    let mut out = Cow::Borrowed(text);
    for secret in secrets.iter() {
        if out.contains(secret.as_str()) {
            out = Cow::Owned(out.replace(secret.as_str(), REDACTED));
        }
    }
    out
}

/// Masks every string (and object key) of `value` in place.
pub fn redact_json(value: &mut Value) {
    match value {
        Value::String(text) => {
            if let Cow::Owned(masked) = redact(text) {
                *text = masked;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_json),
        Value::Object(map) => {
            if map.keys().any(|key| matches!(redact(key), Cow::Owned(_))) {
                let entries = std::mem::take(map);
                for (key, value) in entries {
                    map.insert(redact(&key).into_owned(), value);
                }
            }
            map.values_mut().for_each(redact_json);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_are_masked_in_every_form() {
        register("github:a-webhook-secret-of-some-length");
        register("postgres://autonoma:db-pass%2Fword-123@127.0.0.1/autonoma");
        register("key-with-\"quote\"-0123456789");
        register("short");
        assert_eq!(
            redact("sig a-webhook-secret-of-some-length"),
            "sig [REDACTED]"
        );
        assert_eq!(
            redact("db-pass/word-123 db-pass%2Fword-123"),
            "[REDACTED] [REDACTED]"
        );
        let json = serde_json::to_string("key-with-\"quote\"-0123456789").expect("json");
        assert_eq!(redact(&json), "\"[REDACTED]\"");
        assert_eq!(redact("short and sweet"), "short and sweet");
        let mut value = serde_json::json!({"detail": ["x a-webhook-secret-of-some-length"]});
        redact_json(&mut value);
        assert_eq!(value, serde_json::json!({"detail": ["x [REDACTED]"]}));
    }
}
