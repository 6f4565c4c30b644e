//! Pages: `POST /pages` (AI) creates one with its input queue; `GET /pages/{page}/state`
//! (browser) is what a browser that joins late starts from.

use autonoma_common::Problem;
use autonoma_common::extract::Json;
use autonoma_common::problem::FieldError;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Gateway, page_problem, parse_page};
use crate::envelope::PageId;
use crate::pages::PageState;

/// Largest `POST /pages` body.
const CREATE_BODY_LIMIT: usize = 4 * 1024;

pub fn ai_router(gateway: Gateway) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(post_page))
        .layer(DefaultBodyLimit::max(CREATE_BODY_LIMIT))
        .with_state(gateway)
}

pub fn browser_router(gateway: Gateway) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(get_page_state))
        .layer(DefaultBodyLimit::max(0))
        .with_state(gateway)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PageIn {
    /// The page id: 1–64 characters of `[a-z0-9_-]`, starting with a letter or digit.
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
    pub page: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PageOut {
    pub page: String,
    /// False when the page already existed; nothing was changed then.
    pub created: bool,
}

/// Creates a page and the queue its browser input arrives on. Creating an existing page
/// changes nothing and answers 200.
#[utoipa::path(post, path = "/pages", tag = "pages",
    security(("internalKey" = [])),
    request_body = PageIn,
    responses(
        (status = 201, description = "Created", body = PageOut),
        (status = 200, description = "The page already existed", body = PageOut),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The page id is not valid", body = Problem, content_type = "application/problem+json"),
    ))]
async fn post_page(
    State(gateway): State<Gateway>,
    Json(input): Json<PageIn>,
) -> Result<(StatusCode, Json<PageOut>), Problem> {
    let out = gateway.create_page(&input.page).await?;
    let status = if out.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(out)))
}

impl Gateway {
    /// Creates a page and its input queue; an existing page is left as it is.
    pub async fn create_page(&self, page: &str) -> Result<PageOut, Problem> {
        let page: PageId = page.parse().map_err(|e| {
            Problem::validation(
                "The page id is not valid.",
                [FieldError {
                    field: "/page".into(),
                    message: format!("page id {e}"),
                }],
            )
        })?;
        // The queue first: a page that exists always has its input queue.
        self.input_queue(&page, true).await?;
        let created = self.log.create_page(&page).await.map_err(page_problem)?;
        Ok(PageOut {
            page: page.to_string(),
            created,
        })
    }
}

/// The page as it is now: the latest directive of each component on it and the sequence
/// number to poll after.
#[utoipa::path(get, path = "/pages/{page}/state", tag = "pages",
    security(("basicAuth" = []), ("internalKey" = []), ("bearerAuth" = [])),
    params(("page" = String, Path, description = "Page id")),
    responses(
        (status = 200, body = PageState),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such page", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_page_state(
    State(gateway): State<Gateway>,
    Path(page): Path<String>,
) -> Result<Json<PageState>, Problem> {
    let page = parse_page(&page)?;
    let state = gateway.log.state(&page).await.map_err(page_problem)?;
    Ok(Json(state))
}
