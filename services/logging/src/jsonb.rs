//! What PostgreSQL's `jsonb` refuses although JSON allows it, found in the JSON text itself.
//!
//! `fields` is stored as the text the client sent (parsing it into a tree and printing it
//! again cost a fifth of the service's CPU while ingesting). Everything acknowledged must be
//! storable, so before a frame is accepted its text is checked for the three things the
//! database would refuse (PostgreSQL 14 and later):
//! - the escape `\u0000`: no text type can hold U+0000;
//! - a UTF-16 surrogate escape that is not part of a high–low pair;
//! - a number `numeric` cannot hold: more than 131,072 digits before the decimal point, more
//!   than 16,383 after it, or an exponent beyond ±1,073,741,822 (checked even for zero).

/// Where the text breaks a rule, and which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// JSON pointer to the value (or, for a key, to the member) holding the problem.
    pub pointer: String,
    pub message: &'static str,
}

const NUL: &str = "must not contain U+0000 (PostgreSQL jsonb cannot store it)";
const SURROGATE: &str = "holds an unpaired UTF-16 surrogate escape, which PostgreSQL jsonb refuses";
const NUMBER: &str = "a number PostgreSQL's numeric cannot hold (at most 131072 digits before \
                      the decimal point and 16383 after it)";

/// `numeric`'s limits: NUMERIC_WEIGHT_MAX base-10000 digits, NUMERIC_DSCALE_MAX, and the
/// exponent bound of `numeric_in`.
const MAX_INTEGER_DIGITS: i64 = 131_072;
const MAX_SCALE: i64 = 16_383;
const MAX_EXPONENT: i64 = 1_073_741_822;

/// Checks `json`, a JSON text that a JSON parser has already accepted (its syntax is not
/// checked again: malformed text gives no refusal, or a meaningless one).
pub fn check(json: &str) -> Result<(), Refusal> {
    let mut walker = Walker {
        bytes: json.as_bytes(),
        pos: 0,
        path: Vec::new(),
    };
    walker.value().map_err(|(message, key)| {
        let mut pointer = String::new();
        for segment in walker.path.iter().chain(key.as_ref()) {
            pointer.push('/');
            match segment {
                Segment::Index(index) => pointer.push_str(&index.to_string()),
                Segment::Key(raw) => pointer.push_str(
                    &decode_key(json.get(raw.clone()).unwrap_or_default())
                        .replace('~', "~0")
                        .replace('/', "~1"),
                ),
            }
        }
        Refusal { pointer, message }
    })
}

/// A key by its decoded text; one whose escapes do not decode is shown as written.
fn decode_key(quoted: &str) -> String {
    serde_json::from_str(quoted).unwrap_or_else(|_| quoted.trim_matches('"').to_owned())
}

enum Segment {
    /// A member, by the byte range of its quoted key.
    Key(std::ops::Range<usize>),
    Index(usize),
}

/// A refusal's message, and the key it is in when the key itself is refused.
type Found = (&'static str, Option<Segment>);

struct Walker<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Where the value being walked is; left as it is when a refusal is found.
    path: Vec<Segment>,
}

impl<'a> Walker<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Steps past `byte` (and the whitespace before it) if it comes next.
    fn eat(&mut self, byte: u8) -> bool {
        self.skip_whitespace();
        let next = self.peek() == Some(byte);
        if next {
            self.pos += 1;
        }
        next
    }

    fn value(&mut self) -> Result<(), Found> {
        self.skip_whitespace();
        match self.peek() {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => self.string().map_err(|message| (message, None)),
            Some(b'-' | b'0'..=b'9') => self.number().map_err(|message| (message, None)),
            // true, false, null
            _ => {
                while self.peek().is_some_and(|b| b.is_ascii_alphabetic()) {
                    self.pos += 1;
                }
                Ok(())
            }
        }
    }

    fn object(&mut self) -> Result<(), Found> {
        self.pos += 1;
        if self.eat(b'}') {
            return Ok(());
        }
        loop {
            self.skip_whitespace();
            let start = self.pos;
            let key = self.string();
            let segment = Segment::Key(start..self.pos);
            if let Err(message) = key {
                return Err((message, Some(segment)));
            }
            self.eat(b':');
            self.path.push(segment);
            self.value()?;
            self.path.pop();
            if !self.eat(b',') {
                self.eat(b'}');
                return Ok(());
            }
        }
    }

    fn array(&mut self) -> Result<(), Found> {
        self.pos += 1;
        if self.eat(b']') {
            return Ok(());
        }
        for index in 0.. {
            self.path.push(Segment::Index(index));
            self.value()?;
            self.path.pop();
            if !self.eat(b',') {
                break;
            }
        }
        self.eat(b']');
        Ok(())
    }

    /// A string, from its opening quote to past its closing one (also when it is refused,
    /// so that a refused key can be named whole).
    fn string(&mut self) -> Result<(), &'static str> {
        self.pos += 1;
        let mut refused = None;
        // Set by a high surrogate escape: a low one must follow at once.
        let mut awaiting_low = false;
        loop {
            let rest = self.bytes.get(self.pos..).unwrap_or_default();
            let Some(offset) = memchr::memchr2(b'"', b'\\', rest) else {
                self.pos = self.bytes.len();
                break;
            };
            let at = self.pos + offset;
            self.pos = at + 1;
            let unit = match (self.bytes.get(at), self.peek()) {
                (Some(b'\\'), Some(b'u')) => {
                    let unit = self
                        .bytes
                        .get(self.pos + 1..self.pos + 5)
                        .and_then(|hex| std::str::from_utf8(hex).ok())
                        .and_then(|hex| u16::from_str_radix(hex, 16).ok());
                    self.pos += 5;
                    unit
                }
                (Some(b'\\'), _) => {
                    self.pos += 1;
                    None
                }
                // The closing quote.
                _ => {
                    if awaiting_low {
                        refused.get_or_insert(SURROGATE);
                    }
                    break;
                }
            };
            let follows = offset == 0;
            let problem = match unit {
                Some(0) => Some(NUL),
                Some(0xDC00..=0xDFFF) if awaiting_low && follows => None,
                Some(0xD800..=0xDFFF) if awaiting_low => Some(SURROGATE),
                Some(0xD800..=0xDBFF) => None,
                Some(0xDC00..=0xDFFF) => Some(SURROGATE),
                _ if awaiting_low => Some(SURROGATE),
                _ => None,
            };
            awaiting_low = matches!(unit, Some(0xD800..=0xDBFF)) && problem.is_none();
            if let Some(problem) = problem {
                refused.get_or_insert(problem);
            }
        }
        refused.map_or(Ok(()), Err)
    }

    fn number(&mut self) -> Result<(), &'static str> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let integer = self.digits();
        let fraction = if self.peek() == Some(b'.') {
            self.pos += 1;
            self.digits()
        } else {
            &[]
        };
        let mut exponent: i64 = 0;
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            let negative = self.peek() == Some(b'-');
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            for digit in self.digits() {
                // Saturates far beyond the limit, which is all that matters past it.
                exponent = (exponent * 10 + i64::from(digit - b'0')).min(i64::from(u32::MAX));
            }
            if negative {
                exponent = -exponent;
            }
        }
        if exponent.abs() > MAX_EXPONENT {
            return Err(NUMBER);
        }
        let length = |digits: &[u8]| i64::try_from(digits.len()).unwrap_or(i64::MAX);
        if length(fraction).saturating_sub(exponent) > MAX_SCALE {
            return Err(NUMBER);
        }
        let leading_zeros = integer
            .iter()
            .chain(fraction)
            .take_while(|&&digit| digit == b'0')
            .count();
        let all_zero = leading_zeros == integer.len() + fraction.len();
        let integer_digits = length(integer)
            .saturating_sub(length(&integer[..leading_zeros.min(integer.len())]))
            .saturating_sub(length(
                &fraction[..leading_zeros
                    .saturating_sub(integer.len())
                    .min(fraction.len())],
            ))
            .saturating_add(exponent);
        if !all_zero && integer_digits > MAX_INTEGER_DIGITS {
            return Err(NUMBER);
        }
        Ok(())
    }

    fn digits(&mut self) -> &'a [u8] {
        let bytes = self.bytes;
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        bytes.get(start..self.pos).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(json: &str) -> Option<(String, &'static str)> {
        check(json).err().map(|r| (r.pointer, r.message))
    }

    #[test]
    fn accepts_what_jsonb_stores() {
        for json in [
            r#"{}"#,
            r#"{"a": [1, -2.5e3, 0, true, null, "x\"y\\z\n"], "b": {"c": "\u00e9 \ud83d\ude00"}}"#,
            r#"{"big": 123456789012345678901234567890, "tiny": 1e-16383, "huge": 9e131071}"#,
            r#"{"zero": 0e1073741822, "frac": 0.0001e131075, "scale": 0.00000e4}"#,
            r#"{"ctl": "a\u0001", "slash": "\/"}"#,
        ] {
            assert_eq!(check(json), Ok(()), "{json}");
        }
    }

    #[test]
    fn points_at_the_first_refused_value() {
        assert_eq!(
            refusal(r#"{"a": [1, {"b/c": "x\u0000"}], "d": "\u0000"}"#),
            Some(("/a/1/b~1c".into(), NUL))
        );
        assert_eq!(
            refusal(r#"{"ok": 1, "k\u0000": 2}"#),
            Some(("/k\u{0}".into(), NUL))
        );
        assert_eq!(
            refusal(r#"{"a~b": "\\u0000 is only text", "n": 1e131072}"#),
            Some(("/n".into(), NUMBER))
        );
    }

    #[test]
    fn refuses_unpaired_surrogates() {
        for json in [
            r#"{"s": "\ud800"}"#,
            r#"{"s": "\udc00"}"#,
            r#"{"s": "\ud800x"}"#,
            r#"{"s": "\ud800\u0041"}"#,
            r#"{"s": "\ud800\n"}"#,
            r#"{"s": "\ud800\ud800"}"#,
        ] {
            assert_eq!(refusal(json), Some(("/s".into(), SURROGATE)), "{json}");
        }
    }

    #[test]
    fn refuses_numbers_beyond_numeric() {
        for number in [
            "1e131072",
            "100000e131067",
            "0.0001e131076",
            "1e-16384",
            "1.5e-16383",
            "0.0e-20000",
            "0e1073741823",
            "0e-1073741823",
            "1e99999999999999999999",
        ] {
            let json = format!(r#"{{"n": [{number}]}}"#);
            assert_eq!(refusal(&json), Some(("/n/0".into(), NUMBER)), "{json}");
        }
        let scale = format!(r#"{{"n": 1.{}}}"#, "0".repeat(16_384));
        assert_eq!(refusal(&scale), Some(("/n".into(), NUMBER)));
        let scale = format!(r#"{{"n": 1.{}}}"#, "0".repeat(16_383));
        assert_eq!(refusal(&scale), None);
    }
}
