//! A message queue with Amazon SQS semantics on two backends: SQS itself (any SQS-compatible
//! endpoint) and a queue kept in the shared Postgres, the embedded default (`BUS_BACKEND`).
//!
//! Both backends behave alike: a received message stays hidden for its queue's visibility
//! timeout and comes back with a higher receive count unless it is deleted; a receive waits up
//! to 20 s and returns as soon as a message is available; after `max_receives` receives a
//! message moves to the queue's dead-letter queue, `<name>-dlq`, instead of being delivered.
//!
//! Receipts follow SQS: deleting with a receipt that is no longer current (the message was
//! received again since, or is already deleted) succeeds and does nothing on Postgres; changing
//! the visibility of a message that is not in flight under that receipt is
//! [`Error::StaleReceipt`]. Limits are SQS's and are checked before anything is sent.

mod pg;
mod sqs;

use std::collections::BTreeMap;
use std::time::Duration;

use autonoma_aws::AwsConfig;
use serde::Deserialize;

pub use pg::PgBus;
pub use sqs::SqsBus;

/// Largest message: body plus attribute names and values, in bytes (SQS's limit).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Most attributes on one message (SQS's limit).
pub const MAX_ATTRIBUTES: usize = 10;
/// Most messages one receive returns (SQS's limit).
pub const MAX_RECEIVE: usize = 10;
/// Longest wait of one receive (SQS's limit).
pub const MAX_WAIT: Duration = Duration::from_secs(20);
/// Longest visibility timeout (SQS's limit).
pub const MAX_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(12 * 60 * 60);
/// Most receives before dead-lettering that SQS accepts.
pub const MAX_MAX_RECEIVES: u32 = 1000;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "invalid queue name {0:?}: 1 to 80 characters of A-Z, a-z, 0-9, '-' and '_' \
         (76 when it has a dead-letter queue, which adds \"-dlq\")"
    )]
    InvalidQueueName(String),
    #[error("queue {0:?} does not exist")]
    QueueNotFound(String),
    #[error("the message is {size} bytes; the limit is {limit} bytes (body plus attributes)")]
    TooLarge { size: usize, limit: usize },
    #[error("invalid message: {0}")]
    InvalidMessage(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("the receipt is not current: the message is no longer in flight under it")]
    StaleReceipt,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("SQS {operation}: {message}")]
    Sqs {
        operation: &'static str,
        message: String,
    },
    #[error("bus configuration: {0}")]
    Config(String),
}

/// A queue as returned by [`Bus::ensure_queue`] or [`Bus::open_queue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRef {
    name: String,
    /// The queue URL on SQS, the name on Postgres.
    locator: String,
}

impl QueueRef {
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Opaque handle of one delivery of a message, for [`Bus::delete`] and
/// [`Bus::change_visibility`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt(String);

impl Receipt {
    /// The handle as a string, e.g. to hand to another process.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A handle received as a string from [`Receipt::as_str`].
    pub fn from_string(handle: String) -> Self {
        Receipt(handle)
    }
}

#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    pub body: String,
    pub attributes: BTreeMap<String, String>,
    /// How many times the message has been received, this delivery included.
    pub receive_count: u32,
    pub receipt: Receipt,
}

#[derive(Debug, Clone, Default)]
pub struct OutgoingMessage {
    pub body: String,
    pub attributes: BTreeMap<String, String>,
}

impl OutgoingMessage {
    pub fn new(body: impl Into<String>) -> Self {
        OutgoingMessage {
            body: body.into(),
            attributes: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueOptions {
    /// How long a received message stays hidden; whole seconds (sub-second parts round up).
    pub visibility_timeout: Duration,
    /// Receives after which a message moves to `<name>-dlq` instead of being delivered.
    pub max_receives: Option<u32>,
}

impl Default for QueueOptions {
    /// SQS's defaults: 30 s visibility, no dead-letter queue.
    fn default() -> Self {
        QueueOptions {
            visibility_timeout: Duration::from_secs(30),
            max_receives: None,
        }
    }
}

/// The name of the dead-letter queue of queue `name`.
pub fn dlq_name(name: &str) -> String {
    format!("{name}-dlq")
}

/// `BUS_BACKEND` of `infra/config.schema.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusBackend {
    #[default]
    Postgres,
    Sqs,
}

/// The bus variables. Flatten it into a service's config type next to `AwsConfig`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct BusConfig {
    #[serde(default)]
    pub bus_backend: BusBackend,
}

/// A queue on one of the two backends.
#[derive(Clone)]
pub enum Bus {
    Postgres(PgBus),
    Sqs(SqsBus),
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bus::Postgres(_) => f.write_str("Bus::Postgres"),
            Bus::Sqs(_) => f.write_str("Bus::Sqs"),
        }
    }
}

impl Bus {
    /// The backend `config` names: Postgres on `pool` (migrated), or SQS as `aws` configures
    /// it. Only the chosen backend's argument is needed.
    pub async fn connect(
        config: &BusConfig,
        pool: Option<&sqlx::PgPool>,
        aws: Option<&AwsConfig>,
    ) -> Result<Bus> {
        match config.bus_backend {
            BusBackend::Postgres => {
                let pool = pool.ok_or_else(|| {
                    Error::Config("BUS_BACKEND=postgres needs the database".into())
                })?;
                Ok(Bus::Postgres(PgBus::new(pool.clone()).await?))
            }
            BusBackend::Sqs => {
                let aws = aws.ok_or_else(|| {
                    Error::Config("BUS_BACKEND=sqs needs the AWS configuration".into())
                })?;
                Ok(Bus::Sqs(SqsBus::new(autonoma_aws::sqs_client(aws).await)))
            }
        }
    }

    pub fn backend(&self) -> BusBackend {
        match self {
            Bus::Postgres(_) => BusBackend::Postgres,
            Bus::Sqs(_) => BusBackend::Sqs,
        }
    }

    /// Creates the queue, and its dead-letter queue when `max_receives` is set, or gives the
    /// existing one these options. Calling it again with the same options changes nothing.
    pub async fn ensure_queue(&self, name: &str, options: &QueueOptions) -> Result<QueueRef> {
        check_queue_name(name, options.max_receives.is_some())?;
        check_options(options)?;
        match self {
            Bus::Postgres(bus) => bus.ensure_queue(name, options).await,
            Bus::Sqs(bus) => bus.ensure_queue(name, options).await,
        }
    }

    /// An existing queue, e.g. a dead-letter queue; [`Error::QueueNotFound`] otherwise.
    pub async fn open_queue(&self, name: &str) -> Result<QueueRef> {
        check_queue_name(name, false)?;
        match self {
            Bus::Postgres(bus) => bus.open_queue(name).await,
            Bus::Sqs(bus) => bus.open_queue(name).await,
        }
    }

    /// Sends one message; returns its id.
    pub async fn send(
        &self,
        queue: &QueueRef,
        body: &str,
        attributes: &BTreeMap<String, String>,
    ) -> Result<String> {
        check_message(body, attributes)?;
        match self {
            Bus::Postgres(bus) => bus.send(queue, body, attributes).await,
            Bus::Sqs(bus) => bus.send(queue, body, attributes).await,
        }
    }

    /// Sends every entry and returns their ids in order. On SQS the entries go in requests of
    /// up to ten, so a failure part-way leaves the earlier requests sent; on Postgres the
    /// whole batch is one statement.
    pub async fn send_batch(
        &self,
        queue: &QueueRef,
        entries: &[OutgoingMessage],
    ) -> Result<Vec<String>> {
        for entry in entries {
            check_message(&entry.body, &entry.attributes)?;
        }
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Bus::Postgres(bus) => bus.send_batch(queue, entries).await,
            Bus::Sqs(bus) => bus.send_batch(queue, entries).await,
        }
    }

    /// Up to `max` (1 to 10) messages. Waits up to `wait` (at most 20 s, whole seconds) for the
    /// first one and returns as soon as any is available; an empty result means the wait ran
    /// out.
    pub async fn receive(
        &self,
        queue: &QueueRef,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Message>> {
        if !(1..=MAX_RECEIVE).contains(&max) {
            return Err(Error::InvalidArgument(format!(
                "a receive takes 1 to {MAX_RECEIVE} messages, not {max}"
            )));
        }
        if wait > MAX_WAIT {
            return Err(Error::InvalidArgument(format!(
                "a receive waits at most {} s, not {wait:?}",
                MAX_WAIT.as_secs()
            )));
        }
        let wait = Duration::from_secs(whole_seconds(wait));
        match self {
            Bus::Postgres(bus) => bus.receive(queue, max, wait).await,
            Bus::Sqs(bus) => bus.receive(queue, max, wait).await,
        }
    }

    /// Deletes the message received with `receipt`. A receipt that is no longer current is
    /// accepted and does nothing (SQS's behaviour).
    pub async fn delete(&self, queue: &QueueRef, receipt: &Receipt) -> Result<()> {
        match self {
            Bus::Postgres(bus) => bus.delete(queue, receipt).await,
            Bus::Sqs(bus) => bus.delete(queue, receipt).await,
        }
    }

    /// Hides the in-flight message for `timeout` from now (zero makes it visible at once).
    /// [`Error::StaleReceipt`] when it is not in flight under `receipt`.
    pub async fn change_visibility(
        &self,
        queue: &QueueRef,
        receipt: &Receipt,
        timeout: Duration,
    ) -> Result<()> {
        if timeout > MAX_VISIBILITY_TIMEOUT {
            return Err(Error::InvalidArgument(format!(
                "a visibility timeout is at most 12 h, not {timeout:?}"
            )));
        }
        let seconds = whole_seconds(timeout);
        match self {
            Bus::Postgres(bus) => bus.change_visibility(queue, receipt, seconds).await,
            Bus::Sqs(bus) => bus.change_visibility(queue, receipt, seconds).await,
        }
    }
}

/// Both backends count in whole seconds, as SQS does; sub-second parts round up.
fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

fn check_queue_name(name: &str, with_dlq: bool) -> Result<()> {
    let max = if with_dlq { 76 } else { 80 };
    let valid = !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidQueueName(name.to_owned()))
    }
}

fn check_options(options: &QueueOptions) -> Result<()> {
    if options.visibility_timeout > MAX_VISIBILITY_TIMEOUT {
        return Err(Error::InvalidArgument(format!(
            "a visibility timeout is at most 12 h, not {:?}",
            options.visibility_timeout
        )));
    }
    if let Some(max) = options.max_receives
        && !(1..=MAX_MAX_RECEIVES).contains(&max)
    {
        return Err(Error::InvalidArgument(format!(
            "max_receives is 1 to {MAX_MAX_RECEIVES}, not {max}"
        )));
    }
    Ok(())
}

/// SQS's rules for a message, so that what one backend takes the other takes too.
fn check_message(body: &str, attributes: &BTreeMap<String, String>) -> Result<()> {
    let size = message_size(body, attributes);
    if size > MAX_MESSAGE_BYTES {
        return Err(Error::TooLarge {
            size,
            limit: MAX_MESSAGE_BYTES,
        });
    }
    if body.is_empty() {
        return Err(Error::InvalidMessage("the body is empty".into()));
    }
    if let Some(c) = body.chars().find(|c| !sqs_allows(*c)) {
        return Err(Error::InvalidMessage(format!(
            "the body contains U+{:04X}, which SQS does not allow",
            u32::from(c)
        )));
    }
    if attributes.len() > MAX_ATTRIBUTES {
        return Err(Error::InvalidMessage(format!(
            "{} attributes; the limit is {MAX_ATTRIBUTES}",
            attributes.len()
        )));
    }
    for (name, value) in attributes {
        let lower = name.to_ascii_lowercase();
        let valid_name = !name.is_empty()
            && name.len() <= 256
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && !name.starts_with('.')
            && !name.ends_with('.')
            && !name.contains("..")
            && !lower.starts_with("aws.")
            && !lower.starts_with("amazon.");
        if !valid_name {
            return Err(Error::InvalidMessage(format!(
                "invalid attribute name {name:?}: up to 256 of A-Z, a-z, 0-9, '-', '_' and '.' \
                 (no leading, trailing or doubled '.', no AWS. or Amazon. prefix)"
            )));
        }
        if value.is_empty() || value.chars().any(|c| !sqs_allows(c)) {
            return Err(Error::InvalidMessage(format!(
                "attribute {name:?} has an empty value or characters SQS does not allow"
            )));
        }
    }
    Ok(())
}

/// SQS's size of a message: the body, each attribute's name and value, and the data type
/// (`String`) it is sent with.
fn message_size(body: &str, attributes: &BTreeMap<String, String>) -> usize {
    body.len()
        + attributes
            .iter()
            .map(|(name, value)| name.len() + value.len() + "String".len())
            .sum::<usize>()
}

/// The characters SQS accepts in a body or attribute value.
fn sqs_allows(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_seconds_round_up() {
        assert_eq!(whole_seconds(Duration::ZERO), 0);
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_secs(2)), 2);
        assert_eq!(whole_seconds(Duration::from_millis(2001)), 3);
    }

    #[test]
    fn queue_names_follow_sqs() {
        assert!(check_queue_name("page-1_a", false).is_ok());
        assert!(check_queue_name(&"a".repeat(80), false).is_ok());
        assert!(check_queue_name(&"a".repeat(77), true).is_err());
        assert!(check_queue_name("", false).is_err());
        assert!(check_queue_name("a.fifo", false).is_err());
    }

    #[test]
    fn messages_follow_sqs() {
        let none = BTreeMap::new();
        assert!(check_message("x", &none).is_ok());
        assert!(check_message("", &none).is_err());
        assert!(check_message("a\u{0}b", &none).is_err());
        let mut attributes = BTreeMap::new();
        attributes.insert("AWS.trace".to_owned(), "1".to_owned());
        assert!(check_message("x", &attributes).is_err());
        let many: BTreeMap<_, _> = (0..11).map(|i| (format!("a{i}"), "v".to_owned())).collect();
        assert!(check_message("x", &many).is_err());
    }
}
