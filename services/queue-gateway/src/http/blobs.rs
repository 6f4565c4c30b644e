//! `GET /pages/{page}/blobs/{id}` (browser): the body of a directive that travelled as a blob.
//! A page serves only the blobs its own messages refer to.

use autonoma_blobs::BlobBody;
use autonoma_common::Problem;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{Gateway, blob_problem, parse_page};

pub fn browser_router(gateway: Gateway) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(get_page_blob))
        .layer(DefaultBodyLimit::max(0))
        .with_state(gateway)
}

/// The blob's bytes (directory backend) or a 307 redirect to a presigned URL (S3 backend).
#[utoipa::path(get, path = "/pages/{page}/blobs/{id}", tag = "blobs",
    security(("basicAuth" = []), ("internalKey" = [])),
    params(
        ("page" = String, Path, description = "Page id"),
        ("id" = Uuid, Path, description = "`blobId` of the message's body"),
    ),
    responses(
        (status = 200, description = "The stored bytes", content_type = "application/json"),
        (status = 307, description = "Fetch the bytes from the `Location` URL"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such page, or no message of the page refers to the blob", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_page_blob(
    State(gateway): State<Gateway>,
    Path((page, id)): Path<(String, String)>,
) -> Result<Response, Problem> {
    let page = parse_page(&page)?;
    let not_found =
        || Problem::not_found(format!("Page {page} has no blob {id}.")).kind("unknown-blob");
    let Ok(blob_id) = id.parse::<Uuid>() else {
        return Err(not_found());
    };
    let referenced: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM page_messages
         WHERE page = $1 AND body #>> '{blob,blobId}' = $2
         LIMIT 1",
    )
    .bind(page.as_str())
    .bind(blob_id.to_string())
    .fetch_optional(&gateway.pool)
    .await?;
    if referenced.is_none() {
        return Err(not_found());
    }
    let Some(blob) = gateway.blobs.open(blob_id).await.map_err(blob_problem)? else {
        return Err(not_found());
    };
    match blob.body {
        BlobBody::Stream(stream) => {
            let content_type = HeaderValue::from_str(&blob.meta.content_type)
                .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
            Ok((
                [
                    (header::CONTENT_TYPE, content_type),
                    (header::CONTENT_LENGTH, HeaderValue::from(blob.meta.size)),
                    // Content-addressed: the bytes behind an id never change.
                    (
                        header::CACHE_CONTROL,
                        HeaderValue::from_static("private, max-age=31536000, immutable"),
                    ),
                ],
                Body::from_stream(stream),
            )
                .into_response())
        }
        BlobBody::Redirect { url, .. } => {
            let location = HeaderValue::from_str(&url).map_err(Problem::internal)?;
            Ok((
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, location)],
            )
                .into_response())
        }
    }
}
