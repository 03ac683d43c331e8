//! The values the client hands out and takes in: identifiers, folders, item summaries,
//! and the connection options.

use std::fmt;
use std::time::Duration;

use mailmove_model::Secret;
use mailmove_net::ConnectOptions;
use time::OffsetDateTime;

/// An EWS folder id (`FolderId/@Id`). The change key is not kept: every operation here
/// accepts the id alone.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FolderId(pub String);

/// An EWS item id (`ItemId/@Id`), without its change key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemId(pub String);

impl FolderId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl ItemId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FolderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The well-known mail folders, found by their distinguished ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Inbox,
    SentItems,
    Drafts,
    DeletedItems,
    JunkEmail,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Inbox,
        Role::SentItems,
        Role::Drafts,
        Role::DeletedItems,
        Role::JunkEmail,
    ];

    /// The `DistinguishedFolderId/@Id` value (MS-OXWSCDATA DistinguishedFolderIdNameType).
    pub fn distinguished_id(self) -> &'static str {
        match self {
            Role::Inbox => "inbox",
            Role::SentItems => "sentitems",
            Role::Drafts => "drafts",
            Role::DeletedItems => "deleteditems",
            Role::JunkEmail => "junkemail",
        }
    }
}

/// A mail folder below the message folder root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Folder {
    pub id: FolderId,
    /// `None` for a folder directly below the message folder root.
    pub parent: Option<FolderId>,
    /// Display names from the top folder down to this one.
    pub path: Vec<String>,
    /// `FolderClass`, e.g. `IPF.Note`; empty when the folder has none.
    pub class: String,
    pub role: Option<Role>,
    pub total_count: u32,
}

/// The follow-up flag (PidTagFlagStatus; `t:FlagStatus`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FlagStatus {
    #[default]
    NotFlagged,
    Flagged,
    Complete,
}

impl FlagStatus {
    /// From PidTagFlagStatus (0x1090): 0 or absent = not flagged, 1 = complete,
    /// 2 = flagged (MS-OXOFLAG 2.2.1.1).
    pub(crate) fn from_property(value: i64) -> FlagStatus {
        match value {
            1 => FlagStatus::Complete,
            2 => FlagStatus::Flagged,
            _ => FlagStatus::NotFlagged,
        }
    }

    pub(crate) fn from_element(text: &str) -> FlagStatus {
        match text.trim() {
            "Flagged" => FlagStatus::Flagged,
            "Complete" => FlagStatus::Complete,
            _ => FlagStatus::NotFlagged,
        }
    }

    pub(crate) fn element_text(self) -> &'static str {
        match self {
            FlagStatus::NotFlagged => "NotFlagged",
            FlagStatus::Flagged => "Flagged",
            FlagStatus::Complete => "Complete",
        }
    }
}

/// What a folder listing says about one item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemSummary {
    pub id: ItemId,
    /// `item:Size`: Exchange's size of the item, not the MIME length.
    pub size: u64,
    pub received: Option<OffsetDateTime>,
    pub sent: Option<OffsetDateTime>,
    pub is_read: bool,
    pub flag: FlagStatus,
    pub categories: Vec<String>,
    pub internet_message_id: Option<String>,
    pub subject: Option<String>,
    /// Our named property, set when mailmove created the item.
    pub source_identity: Option<String>,
}

/// One message read with its MIME content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MimeItem {
    /// The MIME stream, base64-decoded.
    pub mime: Vec<u8>,
    pub is_read: bool,
    pub flag: FlagStatus,
    pub categories: Vec<String>,
    pub received: Option<OffsetDateTime>,
}

/// A message to create from MIME, made to look received.
#[derive(Clone, Copy, Debug)]
pub struct NewItem<'a> {
    pub mime: &'a [u8],
    pub is_read: bool,
    pub flag: FlagStatus,
    pub categories: &'a [String],
    pub received: Option<OffsetDateTime>,
    pub sent: Option<OffsetDateTime>,
    /// Stored in our named property, so the item can be found again after a crash.
    pub source_identity: &'a str,
}

/// One page of an incremental listing (SyncFolderItems).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncPage {
    pub created: Vec<ItemId>,
    pub updated: Vec<ItemId>,
    pub deleted: Vec<ItemId>,
    /// Items whose read state alone changed, with the new state.
    pub read_changed: Vec<(ItemId, bool)>,
    /// Pass it back to continue from here.
    pub state: String,
    /// More changes remain: call again with `state`.
    pub more: bool,
}

/// How to log in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuthKind {
    /// Bearer when a token is configured; otherwise what the server's 401 offers,
    /// NTLM before Basic, Basic only over TLS or to a loopback host.
    #[default]
    Auto,
    Basic,
    Ntlm,
    Bearer,
}

/// How to connect, beyond the URL and the login: the options every connector shares,
/// and what only Exchange needs.
#[derive(Clone, Debug)]
pub struct Options {
    /// TLS, plaintext to a host that is not loopback (http://), and the timeouts: the
    /// connect timeout bounds connecting and the TLS handshake, the response timeout
    /// the wait for response headers and between two reads of a body.
    pub connect: ConnectOptions,
    pub auth: AuthKind,
    pub bearer_token: Option<Secret<String>>,
    /// Act for this mailbox (its SMTP address) through Exchange impersonation: the
    /// login (an administrator with the ApplicationImpersonation role, or an
    /// application's token) is not the mailbox's.
    pub impersonate: Option<String>,
    /// Total sleep allowed per request while Exchange throttles, before giving up with
    /// [`crate::Error::Throttled`].
    pub max_throttle_wait: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            connect: ConnectOptions::default(),
            auth: AuthKind::Auto,
            bearer_token: None,
            impersonate: None,
            max_throttle_wait: Duration::from_secs(300),
        }
    }
}
