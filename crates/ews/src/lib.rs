//! An Exchange Web Services client for on-premises Exchange (2013 to Subscription
//! Edition), for a migration source (mail folders, items as MIME with read state, flag,
//! categories and dates) and destination (folders, items created from MIME that look
//! received, not like drafts).
//!
//! Layers, from the wire up:
//!
//! - `transport`: HTTP/1.1 over our own keep-alive pool on hyper's connection API,
//!   TCP and TLS from `mailmove_net`, and the login (Basic, NTLMv2 bound to its
//!   connection, Bearer).
//! - `ntlm`: the NTLMv2 messages and computation, no I/O.
//! - `request`: SOAP requests as text, elements in schema order.
//! - `xml` and `response`: answers read as a stream into a small tree, MIME content
//!   decoded from base64 as it arrives; then into the crate's values.
//! - [`Client`]: the operations, and Exchange's throttling absorbed up to a budget.
//! - [`autodiscover()`] and [`ews_url_from_owa`]: finding the EWS URL.
//!
//! Elements of answers are known by local name, so `m:`/`t:` prefix differences
//! between Exchange versions do not matter.

mod autodiscover;
mod client;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod ntlm;
mod request;
mod response;
mod transport;
mod types;
mod xml;

pub use autodiscover::{autodiscover, autodiscover_at, ews_url_from_owa};
pub use client::Client;
pub use error::{Error, ItemError, MIME_TOO_LARGE};
pub use mailmove_net::{ConnectOptions, Remedy, TlsOptions};
pub use request::{SOURCE_PROPERTY_NAME, SOURCE_PROPERTY_SET};
pub use types::{
    AuthKind, FlagStatus, Folder, FolderId, ItemId, ItemSummary, MimeItem, NewItem, Options, Role,
    SyncPage,
};
