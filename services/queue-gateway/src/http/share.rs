//! Sharing a page: `POST /pages/{page}/tokens` (AI) makes a token that opens one page's
//! browser side, `DELETE /pages/{page}/tokens/{id}` revokes it. Browsers present it as
//! `Authorization: Bearer <token>` or, where they cannot set headers (EventSource, `<img>`,
//! links), as `?token=`. Only the token's SHA-256 is stored.

use std::time::Duration;

use autonoma_common::Problem;
use autonoma_common::auth::{INTERNAL_KEY_HEADER, auth_of, bearer_token, query_param};
use autonoma_common::extract::Json;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{Gateway, parse_page};

/// Largest `POST /pages/{page}/tokens` body.
const SHARE_BODY_LIMIT: usize = 1024;
/// Lifetime of a token when the AI names none.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// Longest lifetime of a token.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Tokens start with this, so they are recognisable in a leaked log or URL.
const TOKEN_PREFIX: &str = "apt_";

pub fn ai_router(gateway: Gateway) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(post_token))
        .routes(routes!(delete_token))
        .layer(DefaultBodyLimit::max(SHARE_BODY_LIMIT))
        .with_state(gateway)
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenIn {
    /// Seconds the token stays valid, 60 to 2592000 (30 days); default 86400 (a day).
    pub ttl_secs: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenOut {
    /// Names the token for revocation.
    pub id: Uuid,
    pub page: String,
    /// The secret; shown only in this answer.
    pub token: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
}

/// Makes a token that opens this page's browser side (poll, stream, state, events, blobs)
/// and nothing else, until it expires or is revoked.
#[utoipa::path(post, path = "/pages/{page}/tokens", tag = "pages",
    security(("internalKey" = [])),
    params(("page" = String, Path, description = "Page id")),
    request_body = TokenIn,
    responses(
        (status = 201, body = TokenOut),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such page", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`ttlSecs` out of range", body = Problem, content_type = "application/problem+json"),
    ))]
async fn post_token(
    State(gateway): State<Gateway>,
    Path(page): Path<String>,
    Json(input): Json<TokenIn>,
) -> Result<(StatusCode, Json<TokenOut>), Problem> {
    let ttl = input.ttl_secs.map(Duration::from_secs);
    Ok((
        StatusCode::CREATED,
        Json(gateway.share_page(&page, ttl).await?),
    ))
}

/// Revokes a token at once; browsers holding it get 401 from then on.
#[utoipa::path(delete, path = "/pages/{page}/tokens/{id}", tag = "pages",
    security(("internalKey" = [])),
    params(
        ("page" = String, Path, description = "Page id"),
        ("id" = Uuid, Path, description = "The token's id"),
    ),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The page has no such token", body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_token(
    State(gateway): State<Gateway>,
    Path((page, id)): Path<(String, String)>,
) -> Result<StatusCode, Problem> {
    let page = parse_page(&page)?;
    let not_found =
        || Problem::not_found(format!("Page {page} has no token {id:?}.")).kind("unknown-token");
    let id = id.parse::<Uuid>().map_err(|_| not_found())?;
    let revoked = sqlx::query(
        "UPDATE page_tokens SET revoked_at = coalesce(revoked_at, now())
         WHERE id = $1 AND page = $2",
    )
    .bind(id)
    .bind(page.as_str())
    .execute(&gateway.pool)
    .await?
    .rows_affected();
    if revoked == 0 {
        return Err(not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

impl Gateway {
    /// A new sharing token for `page`, valid for `ttl` (default a day, at most 30 days).
    pub async fn share_page(&self, page: &str, ttl: Option<Duration>) -> Result<TokenOut, Problem> {
        let ttl = ttl.unwrap_or(DEFAULT_TOKEN_TTL);
        if ttl < Duration::from_secs(60) || ttl > MAX_TOKEN_TTL {
            return Err(Problem::validation(
                "The token's lifetime is out of range.",
                [autonoma_common::problem::FieldError {
                    field: "/ttlSecs".into(),
                    message: format!("expected 60 to {}", MAX_TOKEN_TTL.as_secs()),
                }],
            ));
        }
        let page = parse_page(page)?;
        self.require_page(&page).await?;
        let secret: [u8; 32] = rand::random();
        let token = format!(
            "{TOKEN_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
        );
        let id = Uuid::now_v7();
        let ttl_secs = i64::try_from(ttl.as_secs()).map_err(Problem::internal)?;
        let expires_at: OffsetDateTime = sqlx::query_scalar(
            "INSERT INTO page_tokens (id, page, token_sha256, expires_at)
             VALUES ($1, $2, $3, now() + make_interval(secs => $4))
             RETURNING expires_at",
        )
        .bind(id)
        .bind(page.as_str())
        .bind(Sha256::digest(token.as_bytes()).as_slice())
        .bind(ttl_secs as f64)
        .fetch_one(&self.pool)
        .await?;
        Ok(TokenOut {
            id,
            page: page.to_string(),
            token,
            expires_at,
        })
    }

    /// True when `token` is a live token of `page`.
    async fn token_opens(&self, token: &str, page: &str) -> Result<bool, Problem> {
        let found: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM page_tokens
             WHERE token_sha256 = $1 AND page = $2
               AND revoked_at IS NULL AND expires_at > now()",
        )
        .bind(Sha256::digest(token.as_bytes()).as_slice())
        .bind(page)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }
}

/// The browser side's guard: an operator (Basic Auth, `?auth=` on streams, or an internal key)
/// or a sharing token of the page in the path (`Authorization: Bearer` or `?token=`).
pub async fn require_page_access(
    State(gateway): State<Gateway>,
    request: Request,
    next: Next,
) -> Response {
    let verdict = match presented(&request) {
        Presented::Token { token, page } => match gateway.token_opens(&token, &page).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Problem::unauthorized(
                "The token does not open this page, or has expired.",
            )
            .kind("page-token-invalid")
            .field("token", "not accepted for this page")),
            Err(problem) => Err(problem),
        },
        Presented::Operator => {
            auth_of(&request).and_then(|auth| auth.check_operator(&request, true))
        }
        Presented::Nothing => Err(Problem::unauthorized(
            "Sign in with Basic Auth, or open the page with its sharing token.",
        )
        .kind("authentication-required")
        .field("authorization", "missing")),
    };
    match verdict {
        Ok(()) => next.run(request).await,
        Err(problem) => problem.into_response(),
    }
}

/// The credentials a browser-side request carries.
enum Presented {
    Token { token: String, page: String },
    Operator,
    Nothing,
}

fn presented(request: &Request) -> Presented {
    let query = request.uri().query().unwrap_or_default();
    let token = bearer_token(request.headers())
        .map(str::to_owned)
        .or_else(|| query_param(query, "token"));
    match token {
        Some(token) if token.starts_with(TOKEN_PREFIX) => Presented::Token {
            token,
            // Every browser route is /pages/{page}/...
            page: request
                .uri()
                .path()
                .split('/')
                .nth(2)
                .unwrap_or_default()
                .to_owned(),
        },
        _ if request.headers().contains_key(INTERNAL_KEY_HEADER)
            || request.headers().contains_key(header::AUTHORIZATION)
            || query_param(query, "auth").is_some() =>
        {
            Presented::Operator
        }
        _ => Presented::Nothing,
    }
}
