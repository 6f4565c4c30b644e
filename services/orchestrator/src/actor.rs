//! Who is making a change, as recorded on task events.

use autonoma_common::auth::{INTERNAL_KEY_HEADER, decode_basic};
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

/// Services calling with an internal key may name themselves (`agent:echo-agent`).
pub const ACTOR_HEADER: &str = "x-autonoma-actor";

/// The authenticated caller. Routes using it sit behind the auth middlewares, so the
/// credentials it reads have already been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A person signed in with Basic Auth.
    Operator(String),
    /// A service or agent holding an internal key.
    Service(String),
}

impl Actor {
    pub fn label(&self) -> String {
        match self {
            Actor::Operator(user) => format!("operator:{user}"),
            Actor::Service(name) => name.clone(),
        }
    }

    pub fn is_service(&self) -> bool {
        matches!(self, Actor::Service(_))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if parts.headers.contains_key(INTERNAL_KEY_HEADER) {
            let name = parts
                .headers
                .get(ACTOR_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(|v| {
                    v.chars()
                        .filter(|c| !c.is_control())
                        .take(100)
                        .collect::<String>()
                })
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "service".into());
            return Ok(Actor::Service(name));
        }
        let user = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .and_then(|(_, token)| decode_basic(token.trim()))
            .map(|(user, _)| user)
            .unwrap_or_else(|| "unknown".into());
        Ok(Actor::Operator(user))
    }
}
