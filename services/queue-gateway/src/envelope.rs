//! The message envelope and the names it routes by: page ids and component addresses.

use std::fmt;
use std::str::FromStr;

use autonoma_common::problem::FieldError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

/// Longest page or component id.
pub const MAX_ID_LEN: usize = 64;

/// Why a string is not a valid id: 1–64 characters of `[a-z0-9_-]`, starting with `[a-z0-9]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("is empty")]
    Empty,
    #[error("is {0} characters long, at most {MAX_ID_LEN} are allowed")]
    TooLong(usize),
    #[error("must start with a lowercase letter or a digit, not {0:?}")]
    BadStart(char),
    #[error("has {found:?} at position {position}; only a-z, 0-9, '_' and '-' are allowed")]
    BadChar { found: char, position: usize },
}

fn check_id(id: &str) -> Result<(), IdError> {
    let Some(first) = id.chars().next() else {
        return Err(IdError::Empty);
    };
    let len = id.chars().count();
    if len > MAX_ID_LEN {
        return Err(IdError::TooLong(len));
    }
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(IdError::BadStart(first));
    }
    if let Some((position, found)) = id
        .chars()
        .enumerate()
        .find(|(_, c)| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-'))
    {
        return Err(IdError::BadChar { found, position });
    }
    Ok(())
}

/// A page: the unit whose directives are kept in order and replayed to every browser showing it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PageId(String);

impl PageId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PageId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        check_id(s)?;
        Ok(Self(s.to_owned()))
    }
}

impl TryFrom<String> for PageId {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        check_id(&s).map_err(|e| format!("page id {e}"))?;
        Ok(Self(s))
    }
}

impl From<PageId> for String {
    fn from(page: PageId) -> Self {
        page.0
    }
}

impl fmt::Display for PageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The kinds of page component an address can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressKind {
    /// `layout-manager`: the page's layout, one per page.
    LayoutManager,
    /// `plotly-panel-{id}`: one Plotly chart.
    PlotlyPanel,
    /// `dataset-router`: hands datasets to Plotly panels, one per page.
    DatasetRouter,
    /// `text-component-{id}`: text, labels and forms.
    TextComponent,
}

impl AddressKind {
    /// The address as written, with `{id}` for the id of kinds that have one.
    pub fn template(self) -> &'static str {
        match self {
            Self::LayoutManager => "layout-manager",
            Self::PlotlyPanel => "plotly-panel-{id}",
            Self::DatasetRouter => "dataset-router",
            Self::TextComponent => "text-component-{id}",
        }
    }
}

/// Why a string is not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error(
        "unknown address {0:?}: expected layout-manager, dataset-router, plotly-panel-{{id}} or text-component-{{id}}"
    )]
    UnknownKind(String),
    #[error("the {{id}} of {kind} {error}", kind = .kind.template())]
    Id { kind: AddressKind, error: IdError },
}

/// Where a message goes: `layout-manager`, `dataset-router`, `plotly-panel-{id}` or
/// `text-component-{id}`. Serialized as that string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Address {
    raw: String,
    kind: AddressKind,
}

impl Address {
    pub fn kind(&self) -> AddressKind {
        self.kind
    }

    /// The component id of a `plotly-panel-{id}` or `text-component-{id}`.
    pub fn id(&self) -> Option<&str> {
        match self.kind {
            AddressKind::PlotlyPanel => self.raw.strip_prefix("plotly-panel-"),
            AddressKind::TextComponent => self.raw.strip_prefix("text-component-"),
            AddressKind::LayoutManager | AddressKind::DatasetRouter => None,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let kind = match s {
            "layout-manager" => AddressKind::LayoutManager,
            "dataset-router" => AddressKind::DatasetRouter,
            _ => {
                let (kind, id) = if let Some(id) = s.strip_prefix("plotly-panel") {
                    (AddressKind::PlotlyPanel, id)
                } else if let Some(id) = s.strip_prefix("text-component") {
                    (AddressKind::TextComponent, id)
                } else {
                    return Err(AddressError::UnknownKind(s.to_owned()));
                };
                // `plotly-panel` alone lacks its id; `plotly-panelx` is some other name.
                let id = match id.strip_prefix('-') {
                    Some(id) => id,
                    None if id.is_empty() => "",
                    None => return Err(AddressError::UnknownKind(s.to_owned())),
                };
                check_id(id).map_err(|error| AddressError::Id { kind, error })?;
                kind
            }
        };
        Ok(Self {
            raw: s.to_owned(),
            kind,
        })
    }
}

impl TryFrom<String> for Address {
    type Error = AddressError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Address> for String {
    fn from(address: Address) -> Self {
        address.raw
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// A claim check: the directive body is in blob storage, not on the bus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BlobRef {
    pub blob_id: Uuid,
    /// Hex sha256 of the stored bytes, so a reader can verify what it fetched.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    pub content_type: String,
}

/// A directive's body: small JSON carried inline, or a reference to a stored blob.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum Body {
    #[schema(value_type = Object)]
    Inline(Value),
    Blob(BlobRef),
}

/// One message on the bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// A UUIDv7, so ids sort by creation time.
    pub id: Uuid,
    #[schema(value_type = String, pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
    pub page: PageId,
    #[schema(
        value_type = String,
        pattern = "^(layout-manager|dataset-router|(plotly-panel|text-component)-[a-z0-9][a-z0-9_-]{0,63})$"
    )]
    pub to: Address,
    /// Who sent it: `ai`, or `browser:<session>` for user input.
    pub from: String,
    /// The directive type, e.g. `plotly.figure`; which ones an address accepts is in
    /// [`crate::directives::DIRECTIVES`].
    pub directive: String,
    pub body: Body,
    /// Position in the page's ordered history, assigned by the gateway.
    pub seq: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub sent_at: OffsetDateTime,
    /// W3C trace context of the sender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl Envelope {
    /// Checks that the address accepts the directive and, for an inline body, that the body
    /// matches the directive's schema. Fields are JSON pointers into the envelope
    /// (`/body/inline/...`). A blob body is checked only once its content is read.
    pub fn check(&self) -> Result<(), Vec<FieldError>> {
        match &self.body {
            Body::Inline(body) => {
                crate::directives::validate_at(&self.to, &self.directive, body, "/body/inline")
            }
            Body::Blob(_) => crate::directives::accepts(&self.to, &self.directive).map(|_| ()),
        }
    }
}
