//! The search: every secret, in every form it could be written in, through everything a run
//! produced. A finding names the secret, the form, where it was and a short excerpt in which
//! every secret is replaced by its name, so the report itself leaks nothing.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// A secret the run was configured with, or a near miss of one that the run sent.
#[derive(Debug, Clone)]
pub struct Secret {
    pub name: String,
    pub value: String,
}

impl Secret {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Secret {
            name: name.into(),
            value: value.into(),
        }
    }

    /// The strings that give the secret away: itself, base64 (standard and URL-safe, without
    /// the padding, which depends on what follows), and percent-encoded (both hex cases).
    pub fn forms(&self) -> Vec<(&'static str, String)> {
        let mut forms = vec![("as is", self.value.clone())];
        let standard = STANDARD
            .encode(&self.value)
            .trim_end_matches('=')
            .to_owned();
        let url_safe = URL_SAFE_NO_PAD.encode(&self.value);
        if url_safe != standard {
            forms.push(("base64url", url_safe));
        }
        forms.push(("base64", standard));
        let encoded = percent_encode(&self.value);
        if encoded != self.value {
            let lower = percent_encode_lower(&self.value);
            forms.push(("URL-encoded", encoded));
            forms.push(("URL-encoded", lower));
        }
        forms
    }
}

fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn percent_encode_lower(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02x}"));
        }
    }
    out
}

/// One thing the run produced: a response, a process's output, a table's rows, …
#[derive(Debug, Clone)]
pub struct Evidence {
    pub source: String,
    pub text: String,
}

/// A secret found in the evidence.
#[derive(Debug, Clone)]
pub struct Finding {
    pub secret: String,
    pub form: &'static str,
    pub source: String,
    pub count: usize,
    pub excerpt: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}) found {}× in {}: …{}…",
            self.secret, self.form, self.count, self.source, self.excerpt
        )
    }
}

/// How much text an excerpt shows on each side of the secret.
const EXCERPT_CHARS: usize = 100;

/// Every occurrence of every form of every secret, one finding per secret, form and source.
pub fn sweep(secrets: &[Secret], evidence: &[Evidence]) -> Vec<Finding> {
    let forms: Vec<(&Secret, &'static str, String)> = secrets
        .iter()
        .flat_map(|secret| {
            secret
                .forms()
                .into_iter()
                .map(move |(form, needle)| (secret, form, needle))
        })
        .collect();
    let mut findings = Vec::new();
    for item in evidence {
        for (secret, form, needle) in &forms {
            let count = item.text.matches(needle.as_str()).count();
            if count == 0 {
                continue;
            }
            findings.push(Finding {
                secret: secret.name.clone(),
                form,
                source: item.source.clone(),
                count,
                excerpt: excerpt(&item.text, needle, &secret.name, &forms),
            });
        }
    }
    findings
}

/// The text around the first occurrence of `needle`, with every secret's every form masked.
fn excerpt(
    text: &str,
    needle: &str,
    name: &str,
    forms: &[(&Secret, &'static str, String)],
) -> String {
    let Some(at) = text.find(needle) else {
        return String::new();
    };
    let start = floor_boundary(text, at.saturating_sub(EXCERPT_CHARS * 4));
    let end = floor_boundary(
        text,
        (at + needle.len() + EXCERPT_CHARS * 4).min(text.len()),
    );
    let mut window = text[start..end].to_owned();
    // Longest first, so that a form containing another is masked whole.
    let mut ordered: Vec<&(&Secret, &'static str, String)> = forms.iter().collect();
    ordered.sort_by_key(|(_, _, needle)| std::cmp::Reverse(needle.len()));
    for (secret, _, form) in ordered {
        window = window.replace(form.as_str(), &format!("⟨{}⟩", secret.name));
    }
    let marker = format!("⟨{name}⟩");
    let Some(mark) = window.find(&marker) else {
        return window;
    };
    let chars_before: Vec<char> = window[..mark].chars().collect();
    let before: String = chars_before[chars_before.len().saturating_sub(EXCERPT_CHARS)..]
        .iter()
        .collect();
    let after: String = window[mark..]
        .chars()
        .take(EXCERPT_CHARS + marker.chars().count())
        .collect();
    format!("{before}{after}").replace('\n', "⏎")
}

fn floor_boundary(text: &str, mut index: usize) -> usize {
    while index > 0 && !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}
