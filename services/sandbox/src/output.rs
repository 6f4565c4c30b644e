//! Output limits and secret redaction: every byte a tool returns or the log stream carries
//! goes through here.

use regex::Regex;
use secrecy::{ExposeSecret, SecretString};

/// Bytes kept past a limit, so that a secret the cut falls in is still recognised, and masked
/// whole, before the cut is made.
pub const LOOKAHEAD: usize = 4096;

/// Keeps the first `limit` bytes of a stream (and [`LOOKAHEAD`] more) and counts the rest.
#[derive(Debug, Clone)]
pub struct Capture {
    buf: Vec<u8>,
    limit: usize,
    total: u64,
}

impl Capture {
    pub fn new(limit: usize) -> Self {
        Self {
            buf: Vec::new(),
            limit,
            total: 0,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let room = self
            .limit
            .saturating_add(LOOKAHEAD)
            .saturating_sub(self.buf.len());
        self.buf.extend_from_slice(&bytes[..room.min(bytes.len())]);
    }

    pub fn truncated(&self) -> bool {
        self.total > self.limit as u64
    }

    /// Whether more bytes would change nothing of what [`Capture::finish`] returns.
    pub fn full(&self) -> bool {
        self.buf.len() >= self.limit.saturating_add(LOOKAHEAD)
    }

    /// The kept text (invalid UTF-8 replaced, secrets masked), at most `limit` bytes, ending
    /// with a marker when bytes were cut.
    pub fn finish(self, redactor: &Redactor) -> String {
        let mut text = redactor.redact(&String::from_utf8_lossy(&self.buf));
        if self.truncated() {
            cut(&mut text, self.limit);
            let cut = self.total - self.limit as u64;
            text.push_str(&format!("\n…[truncated: {cut} more bytes]"));
        }
        text
    }
}

/// Cuts `text` to at most `limit` bytes, on a character boundary.
pub fn cut(text: &mut String, limit: usize) {
    if text.len() > limit {
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

/// Masks secrets: the service's own (internal keys, Basic Auth password, database password,
/// `SANDBOX_REDACT`) and common token shapes.
#[derive(Debug, Clone)]
pub struct Redactor {
    literals: Vec<String>,
    patterns: Vec<Regex>,
}

pub const REDACTED: &str = "[REDACTED]";

/// Shapes of credentials that should never reach a log or a model.
const PATTERNS: &[&str] = &[
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    r"\bgh[pousr]_[A-Za-z0-9]{36,}\b",
    r"\bsk-[A-Za-z0-9_-]{20,}\b",
    r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b",
    r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{16,}",
    r"(?i)\b((?:aws_secret_access_key|secret|password|passwd|token|api_key|apikey)\s*[=:]\s*)[^\s'\x22]{8,}",
    r"(?i)(postgres(?:ql)?://[^:/\s]+:)[^@\s]+(@)",
];

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut literals: Vec<String> = secrets.into_iter().filter(|s| s.len() >= 4).collect();
        // Longest first, so a secret containing another is masked whole.
        literals.sort_by_key(|s| std::cmp::Reverse(s.len()));
        literals.dedup();
        let patterns = PATTERNS
            .iter()
            .filter_map(|pattern| Regex::new(pattern).ok())
            .collect();
        Self { literals, patterns }
    }

    pub fn from_secrets<'a>(secrets: impl IntoIterator<Item = &'a SecretString>) -> Self {
        Self::new(secrets.into_iter().map(|s| s.expose_secret().to_owned()))
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for literal in &self.literals {
            if out.contains(literal.as_str()) {
                out = out.replace(literal.as_str(), REDACTED);
            }
        }
        for pattern in &self.patterns {
            if pattern.is_match(&out) {
                out = pattern
                    // What is captured around the secret (a key name, a URL's user) stays.
                    .replace_all(&out, |caps: &regex::Captures<'_>| match caps.len() {
                        3 => format!("{}{REDACTED}{}", &caps[1], &caps[2]),
                        2 => format!("{}{REDACTED}", &caps[1]),
                        _ => REDACTED.to_owned(),
                    })
                    .into_owned();
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_keeps_the_head_and_marks_the_cut() {
        let mut capture = Capture::new(5);
        capture.push(b"abc");
        capture.push(b"defgh");
        assert!(capture.truncated());
        let text = capture.finish(&Redactor::new([]));
        assert_eq!(text, "abcde\n…[truncated: 3 more bytes]");
    }

    #[test]
    fn a_secret_across_the_cut_is_masked_whole() {
        let redactor = Redactor::new(["internal-key-0123456789".to_owned()]);
        for at in 0..30 {
            let mut capture = Capture::new(20);
            capture.push(&vec![b'a'; at]);
            capture.push(b"internal-key-0123456789 and more");
            let text = capture.finish(&redactor);
            assert!(!text.contains("internal"), "{at}: {text}");
            assert!(
                text.len() <= 20 + "\n…[truncated: 99 more bytes]".len(),
                "{text}"
            );
        }
        let mut text = "aé".to_owned();
        cut(&mut text, 2);
        assert_eq!(text, "a");
    }

    #[test]
    fn secrets_and_token_shapes_are_masked() {
        let redactor = Redactor::new(["internal-key-0123456789".to_owned()]);
        let text = "key=internal-key-0123456789 aws AKIAABCDEFGHIJKLMNOP \
                    Authorization: Bearer abcdefghijklmnopqrstuvwxyz \
                    postgres://app:hunter2secret@db:5432/x password=supersecret1 ok";
        let out = redactor.redact(text);
        for secret in [
            "internal-key-0123456789",
            "AKIAABCDEFGHIJKLMNOP",
            "abcdefghijklmnopqrstuvwxyz",
            "hunter2secret",
            "supersecret1",
        ] {
            assert!(!out.contains(secret), "{secret} leaked: {out}");
        }
        assert!(out.contains("postgres://app:[REDACTED]@db"), "{out}");
        assert!(out.contains("password=[REDACTED]"), "{out}");
        assert!(out.ends_with(" ok"), "{out}");
    }
}
