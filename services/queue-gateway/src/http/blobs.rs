//! Blobs. The AI's side (internal key): `POST /blobs` stores a body streamed as it arrives,
//! `GET /blobs` lists the registry, `GET /blobs/{id}` is one entry and
//! `GET /blobs/{id}/content` its bytes. The browser's side: `GET /pages/{page}/blobs/{id}`, the
//! bytes of a blob one of the page's messages refers to.

use autonoma_blobs::{BlobBody, BlobFilter, BlobKind, BlobMeta, NewBlob};
use autonoma_common::Problem;
use autonoma_common::extract::Query;
use axum::Json;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{Gateway, blob_problem, parse_page};

pub fn ai_router(gateway: Gateway) -> OpenApiRouter {
    // `POST /blobs` reads its body as a stream and enforces GATEWAY_BLOB_LIMIT itself.
    let put = OpenApiRouter::new()
        .routes(routes!(post_blob))
        .layer(DefaultBodyLimit::disable());
    let read = OpenApiRouter::new()
        .routes(routes!(list_blobs))
        .routes(routes!(get_blob))
        .routes(routes!(get_blob_content))
        .layer(DefaultBodyLimit::max(0));
    put.merge(read).with_state(gateway)
}

pub fn browser_router(gateway: Gateway) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(get_page_blob))
        .layer(DefaultBodyLimit::max(0))
        .with_state(gateway)
}

/// A registry entry.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlobOut {
    pub id: Uuid,
    /// Lowercase hex sha256 of the content.
    pub sha256: String,
    /// `layout`, `plotly`, `dataset`, `html` or `other`.
    pub kind: String,
    pub name: Option<String>,
    pub content_type: String,
    pub size: i64,
    pub tags: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

impl From<BlobMeta> for BlobOut {
    fn from(meta: BlobMeta) -> Self {
        Self {
            id: meta.id,
            sha256: meta.sha256,
            kind: meta.kind.to_string(),
            name: meta.name,
            content_type: meta.content_type,
            size: meta.size,
            tags: meta.tags,
            created_at: meta.created_at,
        }
    }
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct BlobQuery {
    /// `layout`, `plotly`, `dataset`, `html` or `other`.
    pub kind: Option<String>,
    /// `POST`: the entry's name (1–256 characters). `GET`: entries whose name starts with it.
    pub name: Option<String>,
    /// Comma-separated tags. `POST`: tags to give the entry. `GET`: entries with every one.
    pub tags: Option<String>,
    /// `GET`: page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// `GET`: `nextCursor` of the previous page.
    pub cursor: Option<Uuid>,
}

impl BlobQuery {
    fn kind(&self) -> Result<Option<BlobKind>, Problem> {
        self.kind
            .as_deref()
            .map(|kind| {
                kind.parse::<BlobKind>().map_err(|_| {
                    Problem::bad_request(format!("There is no blob kind {kind:?}.")).field(
                        "kind",
                        "expected one of layout, plotly, dataset, html, other",
                    )
                })
            })
            .transpose()
    }

    /// `name` and `tags` as the registry can store and match them: PostgreSQL text cannot
    /// hold U+0000.
    fn check_text(&self) -> Result<(), Problem> {
        for (parameter, value) in [("name", &self.name), ("tags", &self.tags)] {
            if value.as_deref().is_some_and(|v| v.contains('\0')) {
                return Err(
                    Problem::bad_request(format!("{parameter} must not contain U+0000."))
                        .field(parameter, "must not contain U+0000"),
                );
            }
        }
        Ok(())
    }

    fn tags(&self) -> Vec<String> {
        self.tags
            .as_deref()
            .map(|tags| {
                tags.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlobsOut {
    pub items: Vec<BlobOut>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<Uuid>,
}

/// Stores the request body, streamed to the store as it arrives (never held whole), under
/// its `Content-Type`. Identical content is stored once; storing it again under the same
/// kind, name and content type returns the existing entry with the new tags added.
#[utoipa::path(post, path = "/blobs", tag = "blobs",
    security(("internalKey" = [])),
    params(BlobQuery),
    request_body(content = Vec<u8>, description = "The bytes, of any media type", content_type = "*/*"),
    responses(
        (status = 201, description = "Stored (or found already stored)", body = BlobOut),
        (status = 400, description = "A parameter is not valid; the error names it", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body exceeds GATEWAY_BLOB_LIMIT", body = Problem, content_type = "application/problem+json"),
    ))]
async fn post_blob(
    State(gateway): State<Gateway>,
    Query(query): Query<BlobQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<BlobOut>), Problem> {
    query.check_text()?;
    let kind = query.kind()?.ok_or_else(|| {
        Problem::bad_request("Say what the blob is with ?kind=.").field(
            "kind",
            "missing; one of layout, plotly, dataset, html, other",
        )
    })?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream");
    let mut meta = NewBlob::new(kind, content_type);
    meta.name = query.name.clone();
    meta.tags = query.tags();
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let stored = gateway.put_blob(meta, stream).await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

/// Registry entries, newest first, filtered by kind, name prefix and tags.
#[utoipa::path(get, path = "/blobs", tag = "blobs",
    security(("internalKey" = [])),
    params(BlobQuery),
    responses(
        (status = 200, body = BlobsOut),
        (status = 400, description = "A parameter is not valid; the error names it", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_blobs(
    State(gateway): State<Gateway>,
    Query(query): Query<BlobQuery>,
) -> Result<Json<BlobsOut>, Problem> {
    Ok(Json(gateway.list_blobs(&query).await?))
}

/// One registry entry.
#[utoipa::path(get, path = "/blobs/{id}", tag = "blobs",
    security(("internalKey" = [])),
    params(("id" = Uuid, Path, description = "Blob id")),
    responses(
        (status = 200, body = BlobOut),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_blob(
    State(gateway): State<Gateway>,
    Path(id): Path<String>,
) -> Result<Json<BlobOut>, Problem> {
    Ok(Json(gateway.blob(&id).await?))
}

/// The blob's bytes (directory backend) or a 307 redirect to a presigned URL (S3 backend).
#[utoipa::path(get, path = "/blobs/{id}/content", tag = "blobs",
    security(("internalKey" = [])),
    params(("id" = Uuid, Path, description = "Blob id")),
    responses(
        (status = 200, description = "The stored bytes"),
        (status = 307, description = "Fetch the bytes from the `Location` URL"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_blob_content(
    State(gateway): State<Gateway>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let not_found = || unknown_blob(&id);
    let blob_id = id.parse::<Uuid>().map_err(|_| not_found())?;
    let blob = gateway
        .blobs
        .open(blob_id)
        .await
        .map_err(blob_problem)?
        .ok_or_else(not_found)?;
    blob_response(blob)
}

/// The blob's bytes (directory backend) or a 307 redirect to a presigned URL (S3 backend).
#[utoipa::path(get, path = "/pages/{page}/blobs/{id}", tag = "blobs",
    security(("basicAuth" = []), ("internalKey" = []), ("bearerAuth" = [])),
    params(
        ("page" = String, Path, description = "Page id"),
        ("id" = Uuid, Path, description = "A blob one of the page's messages refers to"),
    ),
    responses(
        (status = 200, description = "The stored bytes"),
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
    // A claim-checked body, or a dataset a `dataset.route` hands to the page's panels.
    let referenced: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM page_messages
         WHERE page = $1
           AND (body #>> '{blob,blobId}' = $2 OR body #>> '{inline,dataset,blobId}' = $2)
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
    blob_response(blob)
}

fn unknown_blob(id: &str) -> Problem {
    Problem::not_found(format!("There is no blob {id:?}.")).kind("unknown-blob")
}

fn blob_response(blob: autonoma_blobs::Blob) -> Result<Response, Problem> {
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

impl Gateway {
    /// Stores `body` as it arrives, up to GATEWAY_BLOB_LIMIT bytes.
    pub async fn put_blob<S>(&self, meta: NewBlob, body: S) -> Result<BlobOut, Problem>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send,
    {
        let limit = u64::try_from(self.limits.blob).unwrap_or(u64::MAX);
        self.blobs
            .put_stream(meta, Box::pin(body), limit)
            .await
            .map(BlobOut::from)
            .map_err(blob_problem)
    }

    /// The registry entry `id`.
    pub async fn blob(&self, id: &str) -> Result<BlobOut, Problem> {
        let blob_id = id.parse::<Uuid>().map_err(|_| unknown_blob(id))?;
        self.blobs
            .get(blob_id)
            .await
            .map_err(blob_problem)?
            .map(BlobOut::from)
            .ok_or_else(|| unknown_blob(id))
    }

    /// Blob `id`'s entry and bytes, for readers that need the content itself; a blob larger
    /// than `max` bytes is a 413 naming its size.
    pub async fn read_blob(&self, id: &str, max: usize) -> Result<(BlobOut, Bytes), Problem> {
        let blob_id = id.parse::<Uuid>().map_err(|_| unknown_blob(id))?;
        let (meta, mut stream) = self
            .blobs
            .read(blob_id)
            .await
            .map_err(blob_problem)?
            .ok_or_else(|| unknown_blob(id))?;
        if usize::try_from(meta.size).map_or(true, |size| size > max) {
            return Err(Problem::new(StatusCode::PAYLOAD_TOO_LARGE).detail(format!(
                "Blob {id} is {} bytes, more than the {max} bytes read here; fetch it from \
                 GET /blobs/{id}/content instead.",
                meta.size
            )));
        }
        let mut bytes = BytesMut::with_capacity(usize::try_from(meta.size).unwrap_or(0));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| blob_problem(e.into()))?;
            if bytes.len() + chunk.len() > max {
                return Err(Problem::internal(format!(
                    "blob {id} holds more bytes than its registered size"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok((meta.into(), bytes.freeze()))
    }

    /// Registry entries matching `query`, newest first.
    pub async fn list_blobs(&self, query: &BlobQuery) -> Result<BlobsOut, Problem> {
        if let Some(limit) = query.limit
            && !(1..=1000).contains(&limit)
        {
            return Err(
                Problem::bad_request("limit is 1 to 1000.").field("limit", "expected 1 to 1000")
            );
        }
        query.check_text()?;
        let filter = BlobFilter {
            kind: query.kind()?,
            name_prefix: query.name.clone(),
            tags: query.tags(),
            limit: query.limit,
            cursor: query.cursor,
        };
        let page = self.blobs.list(filter).await.map_err(blob_problem)?;
        Ok(BlobsOut {
            items: page.items.into_iter().map(BlobOut::from).collect(),
            next_cursor: page.next_cursor,
        })
    }
}
