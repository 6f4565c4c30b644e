//! A content-addressed blob store: layouts, Plotly configs and layouts, datasets and HTML that
//! an AI stores once and refers to by id.
//!
//! Bytes live in a backend — a local directory (the default) or an S3 bucket — under their
//! sha256, so identical content is stored once. Postgres keeps the registry (`blobs` table):
//! what each piece is (kind, name, content type, size, tags), so stored pieces can be found and
//! reused. Bodies are streamed in and out in chunks; reading from S3 hands out a presigned URL
//! so browsers fetch the bytes from the bucket directly.
//!
//! Putting content already registered under the same kind, name and content type returns that
//! registry entry (with the new tags added) instead of creating a second one; the same content
//! under another kind, name or content type gets its own entry pointing at the same object.

mod config;
mod dir;
mod s3;
mod stage;

use std::fmt;
use std::io;
use std::str::FromStr;
use std::time::Duration;

use autonoma_aws::AwsConfig;
use bytes::Bytes;
use futures::Stream;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

pub use config::{BlobBackend, BlobConfig};

use dir::DirBackend;
use s3::S3Backend;

/// A blob's bytes, read in chunks.
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

const NAME_MAX: usize = 256;
const CONTENT_TYPE_MAX: usize = 255;
const TAGS_MAX: usize = 32;
const TAG_MAX: usize = 64;
const PAGE_DEFAULT: u32 = 100;
const PAGE_MAX: u32 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("blob exceeds the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("invalid blob: {0}")]
    Invalid(String),
    #[error("blob configuration: {0}")]
    Config(String),
    #[error("blob storage: {0}")]
    Io(#[from] io::Error),
    #[error("blob registry: {0}")]
    Db(#[from] sqlx::Error),
    #[error("S3 {operation}: {message}")]
    S3 {
        operation: &'static str,
        message: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a stored piece is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobKind {
    Layout,
    Plotly,
    Dataset,
    Html,
    Other,
}

impl BlobKind {
    pub const ALL: [BlobKind; 5] = [
        BlobKind::Layout,
        BlobKind::Plotly,
        BlobKind::Dataset,
        BlobKind::Html,
        BlobKind::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BlobKind::Layout => "layout",
            BlobKind::Plotly => "plotly",
            BlobKind::Dataset => "dataset",
            BlobKind::Html => "html",
            BlobKind::Other => "other",
        }
    }
}

impl fmt::Display for BlobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BlobKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        BlobKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| Error::Invalid(format!("unknown blob kind {s:?}")))
    }
}

/// A registry entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobMeta {
    pub id: Uuid,
    /// Lowercase hex sha256 of the content: its address in the backend.
    pub sha256: String,
    pub kind: BlobKind,
    pub name: Option<String>,
    pub content_type: String,
    pub size: i64,
    pub tags: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// What describes a piece being stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewBlob {
    pub kind: BlobKind,
    #[serde(default)]
    pub name: Option<String>,
    pub content_type: String,
    #[serde(default)]
    pub tags: Vec<String>,
}

impl NewBlob {
    pub fn new(kind: BlobKind, content_type: impl Into<String>) -> Self {
        Self {
            kind,
            name: None,
            content_type: content_type.into(),
            tags: Vec::new(),
        }
    }

    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Checks the rules the registry enforces, with messages a caller can act on; tags come
    /// back sorted and without duplicates.
    fn validated(mut self) -> Result<Self> {
        fn printable(s: &str) -> bool {
            !s.chars().any(char::is_control)
        }
        if let Some(name) = &self.name {
            let len = name.chars().count();
            if len == 0 || len > NAME_MAX || !printable(name) {
                return Err(Error::Invalid(format!(
                    "name must be 1 to {NAME_MAX} printable characters"
                )));
            }
        }
        let ct = &self.content_type;
        if ct.is_empty()
            || ct.len() > CONTENT_TYPE_MAX
            || !ct.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
            || !ct.contains('/')
        {
            return Err(Error::Invalid(format!(
                "content type must be a media type such as application/json \
                 (at most {CONTENT_TYPE_MAX} characters)"
            )));
        }
        self.tags.sort();
        self.tags.dedup();
        if self.tags.len() > TAGS_MAX {
            return Err(Error::Invalid(format!("at most {TAGS_MAX} tags")));
        }
        if let Some(tag) = self.tags.iter().find(|tag| {
            let len = tag.chars().count();
            len == 0 || len > TAG_MAX || !printable(tag)
        }) {
            return Err(Error::Invalid(format!(
                "tag {tag:?} must be 1 to {TAG_MAX} printable characters"
            )));
        }
        Ok(self)
    }
}

/// A stored blob opened for reading.
pub struct Blob {
    pub meta: BlobMeta,
    pub body: BlobBody,
}

/// How to hand a blob to a reader.
pub enum BlobBody {
    /// The bytes, read from the backend in chunks.
    Stream(ByteStream),
    /// A presigned GET URL on the bucket that serves the bytes until it expires.
    Redirect { url: String, expires_in: Duration },
}

impl fmt::Debug for BlobBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlobBody::Stream(_) => f.write_str("Stream(..)"),
            // The URL carries a signature: not for logs.
            BlobBody::Redirect { expires_in, .. } => f
                .debug_struct("Redirect")
                .field("expires_in", expires_in)
                .finish_non_exhaustive(),
        }
    }
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Blob")
            .field("meta", &self.meta)
            .field("body", &self.body)
            .finish()
    }
}

/// Which registry entries to list, newest first. Empty filters match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlobFilter {
    pub kind: Option<BlobKind>,
    pub name_prefix: Option<String>,
    /// Entries carrying every one of these tags.
    pub tags: Vec<String>,
    /// Page size: 100 when unset, at most 1000.
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<Uuid>,
}

/// One page of a listing; `next_cursor` is set when more entries follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<Uuid>,
}

#[derive(Debug, Clone)]
enum Backend {
    Dir(DirBackend),
    S3(S3Backend),
}

/// The blob store: a backend for the bytes and the Postgres registry.
#[derive(Debug, Clone)]
pub struct BlobStore {
    backend: Backend,
    pool: PgPool,
}

#[derive(sqlx::FromRow)]
struct BlobRow {
    id: Uuid,
    sha256: String,
    kind: String,
    name: Option<String>,
    content_type: String,
    size: i64,
    tags: Vec<String>,
    created_at: OffsetDateTime,
}

impl TryFrom<BlobRow> for BlobMeta {
    type Error = Error;

    fn try_from(row: BlobRow) -> Result<Self> {
        Ok(BlobMeta {
            id: row.id,
            sha256: row.sha256,
            kind: row.kind.parse()?,
            name: row.name,
            content_type: row.content_type,
            size: row.size,
            tags: row.tags,
            created_at: row.created_at,
        })
    }
}

const COLUMNS: &str = "id, sha256, kind, name, content_type, size, tags, created_at";

impl BlobStore {
    /// The store `config` describes. For S3 the bucket is created if it does not exist yet;
    /// `aws` is only used for S3.
    pub async fn from_config(config: &BlobConfig, aws: &AwsConfig, pool: PgPool) -> Result<Self> {
        match config.blob_backend {
            BlobBackend::Dir => Self::directory(pool, config.blob_dir.clone()).await,
            BlobBackend::S3 => {
                let client = autonoma_aws::s3_client(aws).await;
                Self::s3(
                    pool,
                    client,
                    config.blob_bucket.clone(),
                    config.blob_presign_ttl,
                )
                .await
            }
        }
    }

    /// Blobs in the directory `root` (created if missing).
    pub async fn directory(pool: PgPool, root: impl Into<std::path::PathBuf>) -> Result<Self> {
        let backend = DirBackend::new(root.into());
        tokio::fs::create_dir_all(backend.staging_dir()).await?;
        Ok(Self {
            backend: Backend::Dir(backend),
            pool,
        })
    }

    /// Blobs in `bucket` (created if missing); presigned URLs are valid for `presign_ttl`
    /// (at most 7 days).
    pub async fn s3(
        pool: PgPool,
        client: autonoma_aws::aws_sdk_s3::Client,
        bucket: String,
        presign_ttl: Duration,
    ) -> Result<Self> {
        let backend = S3Backend::new(client, bucket, presign_ttl)?;
        backend.ensure_bucket().await?;
        Ok(Self {
            backend: Backend::S3(backend),
            pool,
        })
    }

    /// Stores `body`, read chunk by chunk and never held whole in memory, and registers it.
    /// A body longer than `limit` bytes is refused with [`Error::TooLarge`] and leaves nothing
    /// behind. Content already registered under the same kind, name and content type returns
    /// that entry, with `meta`'s tags added to it.
    pub async fn put_stream<S>(&self, meta: NewBlob, body: S, limit: u64) -> Result<BlobMeta>
    where
        S: Stream<Item = io::Result<Bytes>> + Send + Unpin,
    {
        let meta = meta.validated()?;
        let staging = match &self.backend {
            Backend::Dir(dir) => dir.staging_dir(),
            Backend::S3(s3) => s3.staging_dir(),
        };
        let staged = stage::stage(&staging, body, limit).await?;
        let sha256 = staged.sha256.clone();
        let size = i64::try_from(staged.size)
            .map_err(|_| Error::Invalid("blob size exceeds i64".to_owned()))?;
        match &self.backend {
            Backend::Dir(dir) => dir.store(staged).await?,
            Backend::S3(s3) => s3.store(staged).await?,
        }
        self.register(meta, sha256, size).await
    }

    /// Stores `bytes` (see [`BlobStore::put_stream`]).
    pub async fn put_bytes(&self, meta: NewBlob, bytes: Bytes) -> Result<BlobMeta> {
        let body = futures::stream::iter([Ok(bytes)]);
        self.put_stream(meta, body, u64::MAX).await
    }

    async fn register(&self, meta: NewBlob, sha256: String, size: i64) -> Result<BlobMeta> {
        let sql = format!(
            "INSERT INTO blobs (id, sha256, kind, name, content_type, size, tags)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (sha256, kind, coalesce(name, ''), content_type) DO UPDATE
                SET tags = ARRAY(SELECT DISTINCT t FROM unnest(blobs.tags || EXCLUDED.tags) t
                                 ORDER BY t)
             RETURNING {COLUMNS}"
        );
        let row: BlobRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(Uuid::now_v7())
            .bind(&sha256)
            .bind(meta.kind.as_str())
            .bind(&meta.name)
            .bind(&meta.content_type)
            .bind(size)
            .bind(&meta.tags)
            .fetch_one(&self.pool)
            .await?;
        row.try_into()
    }

    /// The registry entry `id`.
    pub async fn get(&self, id: Uuid) -> Result<Option<BlobMeta>> {
        let sql = format!("SELECT {COLUMNS} FROM blobs WHERE id = $1");
        let row: Option<BlobRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(BlobMeta::try_from).transpose()
    }

    /// Blob `id` for a browser: streamed from the directory, or a presigned S3 URL.
    pub async fn open(&self, id: Uuid) -> Result<Option<Blob>> {
        let Some(meta) = self.get(id).await? else {
            return Ok(None);
        };
        let body = match &self.backend {
            Backend::Dir(dir) => BlobBody::Stream(dir.read(&meta.sha256).await?),
            Backend::S3(s3) => BlobBody::Redirect {
                url: s3.presign(&meta.sha256, &meta.content_type).await?,
                expires_in: s3.presign_ttl(),
            },
        };
        Ok(Some(Blob { meta, body }))
    }

    /// Blob `id`'s bytes as a stream from either backend, for readers that need the content
    /// itself rather than a URL.
    pub async fn read(&self, id: Uuid) -> Result<Option<(BlobMeta, ByteStream)>> {
        let Some(meta) = self.get(id).await? else {
            return Ok(None);
        };
        let stream = match &self.backend {
            Backend::Dir(dir) => dir.read(&meta.sha256).await?,
            Backend::S3(s3) => s3.read(&meta.sha256).await?,
        };
        Ok(Some((meta, stream)))
    }

    /// Registry entries matching `filter`, newest first.
    pub async fn list(&self, filter: BlobFilter) -> Result<Page<BlobMeta>> {
        let limit = filter.limit.unwrap_or(PAGE_DEFAULT).clamp(1, PAGE_MAX);
        let name_pattern = filter.name_prefix.as_deref().map(|prefix| {
            let escaped = prefix
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("{escaped}%")
        });
        let sql = format!(
            "SELECT {COLUMNS} FROM blobs
             WHERE ($1::text IS NULL OR kind = $1)
               AND ($2::text IS NULL OR name LIKE $2)
               AND (cardinality($3::text[]) = 0 OR tags @> $3)
               AND ($4::uuid IS NULL OR id < $4)
             ORDER BY id DESC
             LIMIT $5"
        );
        let rows: Vec<BlobRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(filter.kind.map(BlobKind::as_str))
            .bind(name_pattern)
            .bind(&filter.tags)
            .bind(filter.cursor)
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        let more = rows.len() > limit as usize;
        let items = rows
            .into_iter()
            .take(limit as usize)
            .map(BlobMeta::try_from)
            .collect::<Result<Vec<_>>>()?;
        let next_cursor = if more {
            items.last().map(|meta| meta.id)
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }
}
