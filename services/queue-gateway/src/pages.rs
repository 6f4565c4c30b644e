//! The per-page ordered message log: tables `pages` and `page_messages` (migration
//! `..._pages.sql`).
//!
//! Every directive to a page gets the page's next sequence number, without gaps, so a browser
//! that reconnects asks for what follows the last number it saw, and every browser on a page
//! sees the same messages in the same order. A browser that joins late starts from the page's
//! [`PageState`]: the latest directive of each live component and the number to continue after.
//!
//! Waiting reads sleep until a trigger's NOTIFY on `autonoma_pages` (payload `<page>:<seq>`)
//! names their page, or their wait runs out. One LISTEN connection per [`PageLog`] serves all
//! its waiting reads.

use std::sync::Arc;
use std::time::Duration;

use autonoma_common::problem::FieldError;
use autonoma_common::wakeups::Wakeups;
use serde::Serialize;
use sqlx::PgPool;
use sqlx::types::Json;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::time::Instant;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::envelope::{Address, Body, Envelope, PageId};

const CHANNEL: &str = "autonoma_pages";
/// The directive that takes a component off the page; sent to `layout-manager`.
pub const REMOVE_DIRECTIVE: &str = "component.remove";
/// Most messages one read returns; a reader continues after the last one it got.
pub const MAX_BATCH: i64 = 1000;

/// id, address, directive, sender, body, seq, sent_at, traceparent.
type Row = (
    Uuid,
    String,
    String,
    String,
    Json<Body>,
    i64,
    OffsetDateTime,
    Option<String>,
);
/// The page's last seq, then one component's [`Row`] (all null when the page has none).
type StateRow = (
    i64,
    Option<Uuid>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<Json<Body>>,
    Option<i64>,
    Option<OffsetDateTime>,
    Option<String>,
);

pub type Result<T, E = PageError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("page {0} does not exist")]
    UnknownPage(PageId),
    #[error("message {0} is already in a page's log")]
    DuplicateId(Uuid),
    #[error("invalid message: {}", describe(.0))]
    Invalid(Vec<FieldError>),
    /// A stored row that no longer reads as an envelope, e.g. after a manual edit.
    #[error("stored message {id} is unreadable: {reason}")]
    Unreadable { id: Uuid, reason: String },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

fn describe(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A message to append; the log assigns its `seq` and `sent_at`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    /// A UUIDv7; appending the same id twice is refused.
    pub id: Uuid,
    pub page: PageId,
    pub to: Address,
    /// `ai`, or `browser:<session>`.
    pub from: String,
    pub directive: String,
    pub body: Body,
    pub traceparent: Option<String>,
}

impl NewMessage {
    /// A message from the AI with a fresh id and an inline body.
    pub fn from_ai(
        page: PageId,
        to: Address,
        directive: impl Into<String>,
        body: serde_json::Value,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            page,
            to,
            from: "ai".into(),
            directive: directive.into(),
            body: Body::Inline(body),
            traceparent: None,
        }
    }

    fn into_envelope(self, seq: i64, sent_at: OffsetDateTime) -> Envelope {
        Envelope {
            id: self.id,
            page: self.page,
            to: self.to,
            from: self.from,
            directive: self.directive,
            body: self.body,
            seq,
            sent_at,
            traceparent: self.traceparent,
        }
    }
}

/// What a browser that joins late needs to show the page as it is now.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PageState {
    /// The page's latest sequence number: continue with the messages after it.
    pub seq: i64,
    /// The latest directive to each component still on the page, in sequence order.
    /// `component.remove` directives themselves are not listed; a removed component is
    /// absent until a later directive addresses it again.
    pub components: Vec<Envelope>,
}

/// The ordered message logs of all pages, on a database with the pages migration applied.
#[derive(Clone)]
pub struct PageLog {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    wakeups: Wakeups,
}

impl PageLog {
    /// A log on `pool`. Starts listening at once, so no message appended after this returns can
    /// be missed by a waiting read.
    pub async fn new(pool: PgPool) -> Result<Self> {
        // The payload is `<page>:<seq>`.
        let wakeups = Wakeups::listen(&pool, CHANNEL, |payload| {
            payload.rsplit_once(':').map_or(payload, |(page, _)| page)
        })
        .await?;
        Ok(Self {
            inner: Arc::new(Inner { pool, wakeups }),
        })
    }

    fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// Creates the page if it does not exist; true if it was created now.
    pub async fn create_page(&self, page: &PageId) -> Result<bool> {
        let created = sqlx::query("INSERT INTO pages (id) VALUES ($1) ON CONFLICT (id) DO NOTHING")
            .bind(page.as_str())
            .execute(self.pool())
            .await?
            .rows_affected();
        Ok(created == 1)
    }

    /// Checks the message against its directive's schema and appends it to its page's log
    /// under the page's next sequence number.
    pub async fn append(&self, message: NewMessage) -> Result<Envelope> {
        check(&message)?;
        // One statement: the increment and the insert commit or roll back together, and the
        // page row stays locked until then, so numbers are handed out in commit order.
        let stored: Option<(i64, OffsetDateTime)> = sqlx::query_as(
            "WITH next AS (
                 UPDATE pages SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq
             )
             INSERT INTO page_messages
                 (page, seq, id, address, directive, sender, body, traceparent)
             SELECT $1, next.last_seq, $2, $3, $4, $5, $6, $7 FROM next
             RETURNING seq, sent_at",
        )
        .bind(message.page.as_str())
        .bind(message.id)
        .bind(message.to.as_str())
        .bind(&message.directive)
        .bind(&message.from)
        .bind(Json(&message.body))
        .bind(&message.traceparent)
        .fetch_optional(self.pool())
        .await
        .map_err(|err| match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                PageError::DuplicateId(message.id)
            }
            _ => PageError::Database(err),
        })?;
        match stored {
            Some((seq, sent_at)) => Ok(message.into_envelope(seq, sent_at)),
            None => Err(PageError::UnknownPage(message.page)),
        }
    }

    /// Up to `limit` (at most [`MAX_BATCH`]) messages of the page with a sequence number above
    /// `seq`, in order. Removed components' messages are included, so every reader sees the
    /// same history.
    pub async fn after(&self, page: &PageId, seq: i64, limit: i64) -> Result<Vec<Envelope>> {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, address, directive, sender, body, seq, sent_at, traceparent
             FROM page_messages
             WHERE page = $1 AND seq > $2
             ORDER BY seq
             LIMIT $3",
        )
        .bind(page.as_str())
        .bind(seq)
        .bind(limit.clamp(1, MAX_BATCH))
        .fetch_all(self.pool())
        .await?;
        if rows.is_empty() && !self.exists(page).await? {
            return Err(PageError::UnknownPage(page.clone()));
        }
        rows.into_iter().map(|row| envelope(page, row)).collect()
    }

    /// Like [`after`](Self::after) with [`MAX_BATCH`], but when nothing follows `seq` yet,
    /// waits up to `wait` for a message; empty if none came.
    pub async fn wait_after(
        &self,
        page: &PageId,
        seq: i64,
        wait: Duration,
    ) -> Result<Vec<Envelope>> {
        let deadline = Instant::now() + wait;
        // Subscribed before the first look, so an append between the look and the wait wakes it.
        let mut woken = self.subscribe(page);
        loop {
            let found = self.after(page, seq, MAX_BATCH).await?;
            if !found.is_empty() {
                return Ok(found);
            }
            match tokio::time::timeout_at(deadline, woken.changed()).await {
                Ok(Ok(())) => {}
                Err(_elapsed) => return Ok(Vec::new()),
                // The listener is gone (the log is being dropped): wait out the time unwoken.
                Ok(Err(_closed)) => {
                    tokio::time::sleep_until(deadline).await;
                    return self.after(page, seq, MAX_BATCH).await;
                }
            }
        }
    }

    /// The page's current state: its sequence number and the latest directive of every
    /// component that is on the page, read in one snapshot.
    pub async fn state(&self, page: &PageId) -> Result<PageState> {
        // A component is live when its latest directive follows the latest
        // `component.remove` naming it, if any.
        let rows: Vec<StateRow> = sqlx::query_as(
            "WITH latest AS (
                 SELECT DISTINCT ON (address)
                        id, address, directive, sender, body, seq, sent_at, traceparent
                 FROM page_messages
                 WHERE page = $1 AND directive <> $2
                 ORDER BY address, seq DESC
             ),
             removed AS (
                 SELECT body #>> '{inline,component}' AS address, max(seq) AS seq
                 FROM page_messages
                 WHERE page = $1 AND directive = $2
                 GROUP BY 1
             ),
             live AS (
                 SELECT latest.*
                 FROM latest LEFT JOIN removed USING (address)
                 WHERE removed.seq IS NULL OR latest.seq > removed.seq
             )
             SELECT pages.last_seq, live.id, live.address, live.directive, live.sender,
                    live.body, live.seq, live.sent_at, live.traceparent
             FROM pages LEFT JOIN live ON true
             WHERE pages.id = $1
             ORDER BY live.seq",
        )
        .bind(page.as_str())
        .bind(REMOVE_DIRECTIVE)
        .fetch_all(self.pool())
        .await?;
        let Some(last_seq) = rows.first().map(|row| row.0) else {
            return Err(PageError::UnknownPage(page.clone()));
        };
        let mut components = Vec::with_capacity(rows.len());
        for row in rows {
            if let (
                _,
                Some(id),
                Some(address),
                Some(directive),
                Some(sender),
                Some(body),
                Some(seq),
                Some(sent_at),
                traceparent,
            ) = row
            {
                components.push(envelope(
                    page,
                    (
                        id,
                        address,
                        directive,
                        sender,
                        body,
                        seq,
                        sent_at,
                        traceparent,
                    ),
                )?);
            }
        }
        Ok(PageState {
            seq: last_seq,
            components,
        })
    }

    /// Whether the page has been created.
    pub async fn exists(&self, page: &PageId) -> Result<bool> {
        let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pages WHERE id = $1")
            .bind(page.as_str())
            .fetch_optional(self.pool())
            .await?;
        Ok(found.is_some())
    }

    fn subscribe(&self, page: &PageId) -> watch::Receiver<()> {
        self.inner.wakeups.subscribe(page.as_str())
    }
}

/// The message is valid for its address, and a `component.remove` body is inline, since the
/// page state reads the component it names.
fn check(message: &NewMessage) -> Result<()> {
    crate::directives::accepts(&message.to, &message.directive).map_err(PageError::Invalid)?;
    match &message.body {
        Body::Inline(body) => {
            crate::directives::validate_at(&message.to, &message.directive, body, "/body/inline")
                .map_err(PageError::Invalid)
        }
        Body::Blob(_) if message.directive == REMOVE_DIRECTIVE => {
            Err(PageError::Invalid(vec![FieldError {
                field: "/body".into(),
                message: format!("{REMOVE_DIRECTIVE} must have an inline body"),
            }]))
        }
        Body::Blob(_) => Ok(()),
    }
}

fn envelope(page: &PageId, row: Row) -> Result<Envelope> {
    let (id, address, directive, from, Json(body), seq, sent_at, traceparent) = row;
    let to = address
        .parse()
        .map_err(|e: crate::AddressError| PageError::Unreadable {
            id,
            reason: e.to_string(),
        })?;
    Ok(Envelope {
        id,
        page: page.clone(),
        to,
        from,
        directive,
        body,
        seq,
        sent_at,
        traceparent,
    })
}
