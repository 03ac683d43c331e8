//! The mailboxes behind the EWS server: folders, messages kept as the exact MIME bytes
//! they were given, their properties, and the change numbers that synchronization states
//! are made of.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use time::OffsetDateTime;

use super::FlagStatus;

/// PR_MESSAGE_FLAGS bits this server gives meaning to.
pub(crate) const MSGFLAG_READ: i32 = 0x1;
pub(crate) const MSGFLAG_UNSENT: i32 = 0x8;

/// The folders every new mailbox has: (distinguished id, display name, class, parent's
/// distinguished id). `root` and `msgfolderroot` come first and are created apart.
const DEFAULT_FOLDERS: &[(&str, &str, &str)] = &[
    ("inbox", "Inbox", "IPF.Note"),
    ("sentitems", "Sent Items", "IPF.Note"),
    ("drafts", "Drafts", "IPF.Note"),
    ("deleteditems", "Deleted Items", "IPF.Note"),
    ("junkemail", "Junk Email", "IPF.Note"),
    ("calendar", "Calendar", "IPF.Appointment"),
    ("contacts", "Contacts", "IPF.Contact"),
    ("tasks", "Tasks", "IPF.Task"),
];

/// Every user's mailbox, and the counter that keeps keys unique across them.
#[derive(Debug, Default)]
pub(crate) struct Store {
    pub users: BTreeMap<String, Mailbox>,
    /// Users holding the ApplicationImpersonation role: they may act for any mailbox.
    pub impersonators: std::collections::BTreeSet<String>,
    next_key: u64,
}

impl Store {
    /// Creates a mailbox with the default folders; an existing one only gets its password
    /// replaced.
    pub fn add_user(&mut self, email: &str, password: &str) {
        let lower = email.to_lowercase();
        if let Some(existing) = self.users.get_mut(&lower) {
            existing.password = password.to_string();
            return;
        }
        let tag = self.users.len() as u32 + 1;
        let mut mailbox = Mailbox {
            email: email.to_string(),
            password: password.to_string(),
            tag,
            folders: Vec::new(),
            items: BTreeMap::new(),
            tombstones: Vec::new(),
            change: 0,
        };
        let root = mailbox.push_folder(self.key(), None, "", None, Some("root"));
        let top = mailbox.push_folder(
            self.key(),
            Some(root),
            "Top of Information Store",
            None,
            Some("msgfolderroot"),
        );
        for (distinguished, name, class) in DEFAULT_FOLDERS {
            mailbox.push_folder(
                self.key(),
                Some(top),
                name,
                Some(class.to_string()),
                Some(distinguished),
            );
        }
        self.users.insert(lower, mailbox);
    }

    /// A fresh key for a folder or item, unique in the whole server.
    pub fn key(&mut self) -> u64 {
        self.next_key += 1;
        self.next_key
    }

    /// The mailbox of this address.
    pub fn mailbox(&mut self, email: &str) -> Option<&mut Mailbox> {
        self.users.get_mut(&email.to_lowercase())
    }

    /// The mailbox a login names: its address, or the part before `@` (as a down-level
    /// `DOMAIN\user` login carries it, the domain being ignored).
    pub fn user_for_login(&self, login: &str) -> Option<String> {
        let login = login.rsplit('\\').next().unwrap_or(login).to_lowercase();
        if self.users.contains_key(&login) {
            return Some(login);
        }
        self.users
            .keys()
            .find(|email| email.split('@').next() == Some(login.as_str()))
            .cloned()
    }
}

/// One folder. Its index in `Mailbox::folders` is its handle inside the server.
#[derive(Debug, Clone)]
pub(crate) struct Folder {
    pub key: u64,
    pub parent: Option<usize>,
    pub name: String,
    pub class: Option<String>,
    pub distinguished: Option<&'static str>,
    /// Change number of the folder's creation (or last rename).
    pub change: u64,
}

/// An extended MAPI property's identity as EWS names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PropKey {
    /// `PropertyTag`: the 16-bit property id.
    Tag(u16),
    /// `PropertySetId` / `DistinguishedPropertySetId` (as a lowercase GUID) with a
    /// `PropertyName`.
    Name { set: String, name: String },
    /// The same with a numeric `PropertyId`.
    Id { set: String, id: u32 },
}

/// A stored extended property: type name as EWS spells it (`Integer`, `StringArray`, …)
/// and its values (one unless the type is an array).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExtendedValue {
    pub key: PropKey,
    pub property_type: String,
    pub values: Vec<String>,
}

/// One message.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub key: u64,
    pub folder: usize,
    pub mime: Vec<u8>,
    pub item_class: String,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub from: Option<String>,
    pub sent: Option<OffsetDateTime>,
    pub received: OffsetDateTime,
    pub created: OffsetDateTime,
    pub modified: OffsetDateTime,
    pub message_flags: i32,
    pub flag: FlagStatus,
    pub categories: Vec<String>,
    pub extended: Vec<ExtendedValue>,
    /// Change number of the creation.
    pub created_change: u64,
    /// Change number of the last change of anything but the read state.
    pub content_change: u64,
    /// Change number of the last change of any kind.
    pub change: u64,
}

impl Item {
    pub fn is_read(&self) -> bool {
        self.message_flags & MSGFLAG_READ != 0
    }

    pub fn is_draft(&self) -> bool {
        self.message_flags & MSGFLAG_UNSENT != 0
    }

    pub fn set_read(&mut self, read: bool) {
        if read {
            self.message_flags |= MSGFLAG_READ;
        } else {
            self.message_flags &= !MSGFLAG_READ;
        }
    }

    /// A stored extended property by key.
    pub fn extended(&self, key: &PropKey) -> Option<&ExtendedValue> {
        self.extended.iter().find(|e| &e.key == key)
    }

    /// Stores or replaces an extended property.
    pub fn set_extended(&mut self, value: ExtendedValue) {
        match self.extended.iter_mut().find(|e| e.key == value.key) {
            Some(existing) => *existing = value,
            None => self.extended.push(value),
        }
    }
}

/// A deleted item, remembered for SyncFolderItems.
#[derive(Debug, Clone)]
pub(crate) struct Tombstone {
    pub key: u64,
    pub folder: usize,
    pub created_change: u64,
    pub change: u64,
}

/// One user's mailbox.
#[derive(Debug)]
pub(crate) struct Mailbox {
    pub email: String,
    pub password: String,
    /// Distinguishes this mailbox's ids from another's.
    pub tag: u32,
    pub folders: Vec<Folder>,
    pub items: BTreeMap<u64, Item>,
    pub tombstones: Vec<Tombstone>,
    /// The last change number handed out.
    pub change: u64,
}

/// Why a folder could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CreateFolderError {
    Exists,
    InvalidName,
}

impl Mailbox {
    /// A fresh change number.
    pub fn bump(&mut self) -> u64 {
        self.change += 1;
        self.change
    }

    fn push_folder(
        &mut self,
        key: u64,
        parent: Option<usize>,
        name: &str,
        class: Option<String>,
        distinguished: Option<&'static str>,
    ) -> usize {
        let change = self.bump();
        self.folders.push(Folder {
            key,
            parent,
            name: name.to_string(),
            class,
            distinguished,
            change,
        });
        self.folders.len() - 1
    }

    /// Creates a folder under `parent`; names are unique among siblings, ignoring case.
    pub fn create_folder(
        &mut self,
        key: u64,
        parent: usize,
        name: &str,
        class: Option<String>,
    ) -> Result<usize, CreateFolderError> {
        if name.trim().is_empty() {
            return Err(CreateFolderError::InvalidName);
        }
        if self.child_named(parent, name).is_some() {
            return Err(CreateFolderError::Exists);
        }
        Ok(self.push_folder(key, Some(parent), name, class, None))
    }

    /// The child of `parent` with this display name, ignoring case.
    pub fn child_named(&self, parent: usize, name: &str) -> Option<usize> {
        self.children(parent)
            .into_iter()
            .find(|&ix| self.folders[ix].name.to_lowercase() == name.to_lowercase())
    }

    /// Direct children, in creation order.
    pub fn children(&self, parent: usize) -> Vec<usize> {
        (0..self.folders.len())
            .filter(|&ix| self.folders[ix].parent == Some(parent))
            .collect()
    }

    /// All descendants, depth first, each folder before its children.
    pub fn descendants(&self, parent: usize) -> Vec<usize> {
        let mut out = Vec::new();
        for child in self.children(parent) {
            out.push(child);
            out.extend(self.descendants(child));
        }
        out
    }

    /// The folder with this distinguished id.
    pub fn distinguished(&self, id: &str) -> Option<usize> {
        self.folders
            .iter()
            .position(|f| f.distinguished.is_some_and(|d| d.eq_ignore_ascii_case(id)))
    }

    /// `msgfolderroot`, under which display-name paths start.
    pub fn top(&self) -> usize {
        // Every mailbox is created with it (see `Store::add_user`).
        self.distinguished("msgfolderroot")
            .expect("every mailbox has msgfolderroot")
    }

    /// The folder at this display-name path under `msgfolderroot`.
    pub fn folder_at(&self, path: &[&str]) -> Option<usize> {
        let mut here = self.top();
        for name in path {
            here = self.child_named(here, name)?;
        }
        Some(here)
    }

    /// Display names from `msgfolderroot` down to this folder (empty for it and above).
    pub fn path_of(&self, folder: usize) -> Vec<String> {
        let top = self.top();
        let mut names = Vec::new();
        let mut here = Some(folder);
        while let Some(ix) = here {
            if ix == top || self.folders[ix].distinguished == Some("root") {
                break;
            }
            names.push(self.folders[ix].name.clone());
            here = self.folders[ix].parent;
        }
        names.reverse();
        names
    }

    /// The opaque EWS id of a folder.
    pub fn folder_id(&self, folder: usize) -> String {
        encode_id(b'F', self.tag, self.folders[folder].key)
    }

    /// The folder an EWS id names, if it is this mailbox's.
    pub fn folder_by_id(&self, id: &str) -> Option<usize> {
        let (kind, tag, key) = decode_id(id)?;
        if kind != b'F' || tag != self.tag {
            return None;
        }
        self.folders.iter().position(|f| f.key == key)
    }

    /// The opaque EWS id of an item.
    pub fn item_id(&self, key: u64) -> String {
        encode_id(b'I', self.tag, key)
    }

    /// The item key an EWS id names, if it is this mailbox's and still exists.
    pub fn item_by_id(&self, id: &str) -> Option<u64> {
        let (kind, tag, key) = decode_id(id)?;
        (kind == b'I' && tag == self.tag && self.items.contains_key(&key)).then_some(key)
    }

    /// Messages in a folder, in creation order.
    pub fn items_in(&self, folder: usize) -> Vec<u64> {
        self.items
            .values()
            .filter(|i| i.folder == folder)
            .map(|i| i.key)
            .collect()
    }

    /// (total, unread) message counts of a folder.
    pub fn counts(&self, folder: usize) -> (usize, usize) {
        let mut total = 0;
        let mut unread = 0;
        for item in self.items.values().filter(|i| i.folder == folder) {
            total += 1;
            if !item.is_read() {
                unread += 1;
            }
        }
        (total, unread)
    }

    /// Removes an item, leaving a tombstone for synchronization.
    pub fn delete_item(&mut self, key: u64) -> bool {
        let Some(item) = self.items.remove(&key) else {
            return false;
        };
        let change = self.bump();
        self.tombstones.push(Tombstone {
            key,
            folder: item.folder,
            created_change: item.created_change,
            change,
        });
        true
    }
}

/// The change key of something last changed at `change`.
pub(crate) fn change_key(change: u64) -> String {
    let mut bytes = b"CQAAABYAAAC".to_vec();
    bytes.extend_from_slice(&change.to_be_bytes());
    STANDARD.encode(bytes)
}

/// Ids look like Exchange's: base64 of a binary entry id. Ours carry a kind byte, the
/// mailbox tag and the key.
fn encode_id(kind: u8, tag: u32, key: u64) -> String {
    let mut bytes = vec![0x00, 0x00, 0x03, 0x24, b'M', kind];
    bytes.extend_from_slice(&tag.to_be_bytes());
    bytes.extend_from_slice(&key.to_be_bytes());
    bytes.extend_from_slice(b"\x00\x01\x2e\x00mailmove");
    STANDARD.encode(bytes)
}

fn decode_id(id: &str) -> Option<(u8, u32, u64)> {
    let bytes = STANDARD.decode(id.trim()).ok()?;
    if bytes.len() != 30 || bytes[..5] != [0x00, 0x00, 0x03, 0x24, b'M'] {
        return None;
    }
    let tag = u32::from_be_bytes(bytes[6..10].try_into().ok()?);
    let key = u64::from_be_bytes(bytes[10..18].try_into().ok()?);
    Some((bytes[5], tag, key))
}

/// Whether a string has the shape of one of this server's ids (so a wrong one is
/// "not found" rather than "malformed").
pub(crate) fn is_well_formed_id(id: &str) -> bool {
    decode_id(id).is_some()
}

/// What the server reads from a message's header: Subject, Message-ID, From and Date.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MimeSummary {
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub from: Option<String>,
    pub date: Option<OffsetDateTime>,
}

/// Reads the header fields the item properties come from. Unparseable values are left
/// out, as Exchange leaves the property unset.
pub(crate) fn summarize_mime(mime: &[u8]) -> MimeSummary {
    let header_end = find(mime, b"\r\n\r\n")
        .or_else(|| find(mime, b"\n\n"))
        .unwrap_or(mime.len());
    let header = String::from_utf8_lossy(&mime[..header_end]);
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in header.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            fields.push((name.trim().to_lowercase(), value.trim().to_string()));
        }
    }
    let field = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    MimeSummary {
        subject: field("subject").map(decode_encoded_words),
        message_id: field("message-id").map(|v| v.trim().to_string()),
        from: field("from").map(decode_encoded_words),
        date: field("date").and_then(parse_date),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// RFC 5322 dates, also with a trailing comment such as `(UTC)`.
fn parse_date(value: &str) -> Option<OffsetDateTime> {
    let without_comment = match value.find('(') {
        Some(at) => value[..at].trim(),
        None => value.trim(),
    };
    OffsetDateTime::parse(
        without_comment,
        &time::format_description::well_known::Rfc2822,
    )
    .ok()
}

/// Decodes RFC 2047 encoded words in UTF-8, US-ASCII or ISO-8859-1 (others are decoded
/// as UTF-8, lossily).
pub(crate) fn decode_encoded_words(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut last_was_word = false;
    while let Some(start) = rest.find("=?") {
        let before = &rest[..start];
        let Some(word) = parse_encoded_word(&rest[start..]) else {
            out.push_str(&rest[..start + 2]);
            rest = &rest[start + 2..];
            last_was_word = false;
            continue;
        };
        // Whitespace between two adjacent encoded words is not part of the text.
        if !(last_was_word && before.trim().is_empty()) {
            out.push_str(before);
        }
        out.push_str(&word.0);
        rest = &rest[start + word.1..];
        last_was_word = true;
    }
    out.push_str(rest);
    out
}

/// Decodes one `=?charset?enc?text?=` at the start; returns the text and its length.
fn parse_encoded_word(text: &str) -> Option<(String, usize)> {
    let inner = text.strip_prefix("=?")?;
    let (charset, inner) = inner.split_once('?')?;
    let (encoding, inner) = inner.split_once('?')?;
    let end = inner.find("?=")?;
    let payload = &inner[..end];
    let consumed = 2 + charset.len() + 1 + encoding.len() + 1 + end + 2;
    let bytes = match encoding {
        "B" | "b" => STANDARD.decode(payload).ok()?,
        "Q" | "q" => {
            let mut bytes = Vec::new();
            let raw = payload.as_bytes();
            let mut i = 0;
            while i < raw.len() {
                match raw[i] {
                    b'_' => bytes.push(b' '),
                    b'=' if i + 2 < raw.len() => {
                        let hex = std::str::from_utf8(&raw[i + 1..i + 3]).ok()?;
                        bytes.push(u8::from_str_radix(hex, 16).ok()?);
                        i += 2;
                    }
                    b => bytes.push(b),
                }
                i += 1;
            }
            bytes
        }
        _ => return None,
    };
    let charset = charset.split('*').next().unwrap_or(charset).to_lowercase();
    let decoded = if charset == "iso-8859-1" || charset == "latin1" {
        bytes.iter().map(|&b| b as char).collect()
    } else {
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Some((decoded, consumed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_stay_in_their_mailbox() {
        let mut store = Store::default();
        store.add_user("a@example.com", "pw");
        store.add_user("b@example.com", "pw");
        let a = &store.users["a@example.com"];
        let inbox = a.distinguished("inbox").unwrap();
        let id = a.folder_id(inbox);
        assert_eq!(a.folder_by_id(&id), Some(inbox));
        assert!(is_well_formed_id(&id));
        assert_eq!(store.users["b@example.com"].folder_by_id(&id), None);
        assert!(!is_well_formed_id("AAAA"));
    }

    #[test]
    fn default_tree_has_paths_under_msgfolderroot() {
        let mut store = Store::default();
        store.add_user("a@example.com", "pw");
        let a = store.mailbox("A@example.com").unwrap();
        let inbox = a.folder_at(&["inbox"]).unwrap();
        assert_eq!(a.path_of(inbox), vec!["Inbox".to_string()]);
        let sub = a.create_folder(99, inbox, "Sub", None).unwrap();
        assert_eq!(a.path_of(sub), vec!["Inbox".to_string(), "Sub".to_string()]);
        assert_eq!(
            a.create_folder(100, inbox, "sub", None),
            Err(CreateFolderError::Exists)
        );
        assert_eq!(
            store.user_for_login("MAILMOVE\\a").as_deref(),
            Some("a@example.com")
        );
    }

    #[test]
    fn summarizes_headers() {
        let mime = b"From: =?utf-8?Q?J=C3=B6rg?= <j@example.com>\r\nSubject: =?UTF-8?B?SMOpbGxv?=\r\n =?UTF-8?B?IHdvcmxk?=\r\nMessage-ID: <m1@example.com>\r\nDate: Tue, 1 Jul 2003 10:52:37 +0200 (CEST)\r\n\r\nSubject: not this\r\n";
        let summary = summarize_mime(mime);
        assert_eq!(summary.subject.as_deref(), Some("Héllo world"));
        assert_eq!(summary.from.as_deref(), Some("Jörg <j@example.com>"));
        assert_eq!(summary.message_id.as_deref(), Some("<m1@example.com>"));
        assert_eq!(summary.date.unwrap().unix_timestamp(), 1_057_049_557);
    }
}
