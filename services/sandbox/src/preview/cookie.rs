//! The preview cookie: what lets a browser load a preview's own files once the first request
//! has authenticated. The dashboard shows a preview in an iframe at `<previewUrl>?auth=…`, but
//! the page's stylesheets, scripts and fetches come without `?auth=`; the response to any
//! authenticated preview request therefore sets a cookie, scoped to that session's preview
//! path, that the later requests carry instead.
//!
//! Its value is `<expiry>.<signature>`: the Unix time it stops being accepted and the
//! HMAC-SHA256 of the session id and that time, under a key derived from the service's first
//! internal key. It opens that one session's preview until then and nothing else, and carries
//! no credential: the password cannot be read or guessed from it.
//!
//! Its attributes are `HttpOnly` (the code in the session cannot read it), `Secure;
//! SameSite=None` (the dashboard embeds the preview from another site on Render, so the cookie
//! must be sent in a cross-site iframe) and `Partitioned` (browsers that block third-party
//! cookies, as headless Chromium does, still keep one partitioned by the embedding site).
//! Chromium treats `http://127.0.0.1` and `http://localhost` as secure and keeps `Secure`
//! cookies from them; a plain-http sandbox on any other host gets no cookie, and its previews
//! ask for Basic Auth as before.

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// The cookie's name (one per session, told apart by its path).
pub const NAME: &str = "autonoma_preview";
/// How long a cookie opens its preview.
pub const LIFETIME: Duration = Duration::hours(12);
/// What the signing key is derived for, so the internal key signs nothing else directly.
const KEY_LABEL: &[u8] = b"autonoma sandbox preview cookie v1";

/// Issues and checks preview cookies.
#[derive(Clone)]
pub struct PreviewCookies {
    key: [u8; 32],
}

impl std::fmt::Debug for PreviewCookies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreviewCookies").finish_non_exhaustive()
    }
}

impl PreviewCookies {
    /// Cookies signed with a key derived from `secret` (the first internal key): they survive
    /// restarts, and stop working once another key is listed first.
    pub fn new(secret: &[u8]) -> Self {
        // HMAC takes keys of any length: `mac` cannot fail here.
        let key =
            mac(secret, &[KEY_LABEL]).map_or([0; 32], |mac| mac.finalize().into_bytes().into());
        Self { key }
    }

    /// The token for `session`, valid until `now` + [`LIFETIME`].
    pub fn issue(&self, session: Uuid, now: OffsetDateTime) -> String {
        let expires = (now + LIFETIME).unix_timestamp().to_string();
        let signature = self.sign(session, &expires).unwrap_or_default();
        format!("{expires}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// Whether `token` was issued for `session` and has not expired at `now`. The signature is
    /// compared in constant time.
    pub fn verify(&self, token: &str, session: Uuid, now: OffsetDateTime) -> bool {
        let Some((expires, signature)) = token.split_once('.') else {
            return false;
        };
        let Ok(expires_at) = expires.parse::<i64>() else {
            return false;
        };
        let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
            return false;
        };
        let Some(mac) = self.mac(session, expires) else {
            return false;
        };
        // The signature first, so a forged expiry costs the same as a forged signature.
        mac.verify_slice(&signature).is_ok() && now.unix_timestamp() < expires_at
    }

    /// Whether the request carries a valid cookie for `session` (any of the cookies of that
    /// name: a page may have set one of its own).
    pub fn admits(&self, headers: &HeaderMap, session: Uuid, now: OffsetDateTime) -> bool {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(|(name, _)| *name == NAME)
            .any(|(_, token)| self.verify(token.trim_matches('"'), session, now))
    }

    /// The `Set-Cookie` value that opens `session`'s preview from `now` on.
    pub fn set_cookie(&self, session: Uuid, now: OffsetDateTime) -> Option<HeaderValue> {
        HeaderValue::from_str(&format!(
            "{NAME}={}; Path={}; Max-Age={}; HttpOnly; Secure; SameSite=None; Partitioned",
            self.issue(session, now),
            path(session),
            LIFETIME.whole_seconds(),
        ))
        .ok()
    }

    fn sign(&self, session: Uuid, expires: &str) -> Option<Vec<u8>> {
        Some(self.mac(session, expires)?.finalize().into_bytes().to_vec())
    }

    fn mac(&self, session: Uuid, expires: &str) -> Option<Hmac<Sha256>> {
        mac(
            &self.key,
            &[b"preview\0", session.as_bytes(), b"\0", expires.as_bytes()],
        )
    }
}

fn mac(key: &[u8], parts: &[&[u8]]) -> Option<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
    for part in parts {
        mac.update(part);
    }
    Some(mac)
}

/// The path the cookie is sent on: the session's preview, `/api/sessions/{id}/preview/`.
pub fn path(session: Uuid) -> String {
    format!("/api/sessions/{session}/preview/")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(NOW).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    fn cookies() -> PreviewCookies {
        PreviewCookies::new(b"sandbox-test-key-0123456789")
    }

    #[test]
    fn a_token_opens_its_session_until_it_expires() {
        let session = Uuid::new_v4();
        let token = cookies().issue(session, now());
        assert!(
            token.starts_with(&format!("{}.", NOW + 12 * 3600)),
            "{token}"
        );
        assert!(cookies().verify(&token, session, now()));
        assert!(cookies().verify(&token, session, now() + Duration::hours(11)));
        assert!(!cookies().verify(&token, session, now() + LIFETIME));
    }

    #[test]
    fn a_token_does_not_open_another_session_or_survive_changes() {
        let session = Uuid::new_v4();
        let token = cookies().issue(session, now());
        assert!(!cookies().verify(&token, Uuid::new_v4(), now()));
        assert!(!PreviewCookies::new(b"another-key-0123456789").verify(&token, session, now()));
        let (expires, signature) = token.split_once('.').unwrap_or_default();
        let later: i64 = expires.parse::<i64>().unwrap_or_default() + 3600;
        assert!(!cookies().verify(&format!("{later}.{signature}"), session, now()));
        let mut flipped = signature.to_owned().into_bytes();
        flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap_or_default();
        assert!(!cookies().verify(&format!("{expires}.{flipped}"), session, now()));
        for junk in ["", ".", "x.y", &format!("{expires}."), expires, "1.AAAA"] {
            assert!(!cookies().verify(junk, session, now()), "{junk:?}");
        }
    }

    #[test]
    fn the_cookie_is_found_among_others_and_scoped_to_the_preview() {
        let session = Uuid::new_v4();
        let set = cookies().set_cookie(session, now()).expect("header value");
        let set = set.to_str().unwrap_or_default();
        assert!(
            set.contains(&format!("; Path=/api/sessions/{session}/preview/;")),
            "{set}"
        );
        for attribute in [
            "HttpOnly",
            "Secure",
            "SameSite=None",
            "Partitioned",
            "Max-Age=43200",
        ] {
            assert!(set.contains(attribute), "{attribute} missing: {set}");
        }
        let pair = set.split(';').next().unwrap_or_default();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("theme=dark; {NAME}=stale; {pair}")).expect("value"),
        );
        assert!(cookies().admits(&headers, session, now()));
        assert!(!cookies().admits(&headers, Uuid::new_v4(), now()));
        assert!(!cookies().admits(&HeaderMap::new(), session, now()));
    }
}
