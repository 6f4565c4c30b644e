//! The queue gateway carries declarative directives from an AI to the components of a web page
//! and user input back. This crate holds its message model: the [`Envelope`] every message
//! travels in, the [`Address`] grammar of page components, and the directive types each kind of
//! address accepts, each with a JSON Schema its body is checked against on send. [`PageLog`] is
//! the ordered log of each page's messages, which every browser showing the page replays.

pub mod directives;
pub mod envelope;
pub mod pages;

pub use directives::{DIRECTIVES, DirectiveSpec, validate};
pub use envelope::{Address, AddressError, AddressKind, BlobRef, Body, Envelope, IdError, PageId};
pub use pages::{NewMessage, PageError, PageLog, PageState};
