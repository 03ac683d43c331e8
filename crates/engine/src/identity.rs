//! How a message is recognised at the destination when the ledger cannot say:
//! by its Message-ID and size, or, without a Message-ID, by a hash of its Date,
//! From and Subject headers and its size. Two different messages that share a
//! Message-ID almost always differ in size; identical ones are matched one to one.
//!
//! Servers do not always keep the bytes they are given: Courier adds a final line
//! break and turns bare LFs into CRLFs, Cyrus turns 8-bit header bytes into `X`,
//! Exchange renders the message again. So a destination message matches a source
//! message when their identities are equal and their sizes are equal or close
//! ([`sizes_match`]), exact sizes taken first ([`Unmatched`]); and the header hash
//! treats every 8-bit byte alike. The collisions accepted: two source messages with
//! the same Message-ID (or, without one, the same Date, From and Subject) whose sizes
//! are within 5% of each other, when one of them is not at the destination, may be
//! taken for each other.

use std::collections::HashMap;

/// The header fields fetched for identity and reports.
pub const HEADER_FIELDS: &str = "MESSAGE-ID DATE FROM SUBJECT";

/// What the header fields of one message say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    pub message_id: Option<String>,
    pub date: Option<String>,
    pub from: Option<String>,
    pub subject: Option<String>,
    /// A hash of the Date, From and Subject fields' bytes, each 8-bit byte (and `X`)
    /// counted alike: Cyrus stores raw 8-bit header bytes as `X`, byte for byte, and
    /// a message must keep its key there. `None` when built by hand.
    pub fingerprint: Option<u64>,
}

impl Headers {
    /// Reads unfolded header fields from the bytes of a `BODY[HEADER.FIELDS (...)]`.
    pub fn parse(raw: &[u8]) -> Headers {
        let [message_id, date, from, subject] = fields(&String::from_utf8_lossy(raw));
        let folded: Vec<u8> = raw
            .iter()
            .map(|&b| if b >= 0x80 || b == b'X' { b'?' } else { b })
            .collect();
        let [_, f_date, f_from, f_subject] = fields(&String::from_utf8_lossy(&folded));
        let mut hash = Fnv64::new();
        for part in [f_date, f_from, f_subject] {
            hash.write(part.as_deref().unwrap_or("").as_bytes());
            hash.write(&[0]);
        }
        Headers {
            message_id,
            date,
            from,
            subject,
            fingerprint: Some(hash.finish()),
        }
    }

    /// The key POP3 messages without UIDL were numbered by before 8-bit bytes were
    /// folded: kept as it was, so a maildrop's numbers never change meaning.
    pub fn numbering_key(&self, size: u64) -> String {
        Headers {
            fingerprint: None,
            ..self.clone()
        }
        .content_key(size)
    }

    /// The identity key: `mid:<id>:size` or `hdr:<hash>:size`.
    pub fn content_key(&self, size: u64) -> String {
        match &self.message_id {
            Some(id) => format!("mid:{}:{size}", id.trim()),
            None => {
                let mut hash = Fnv64::new();
                for part in [&self.date, &self.from, &self.subject] {
                    hash.write(part.as_deref().unwrap_or("").as_bytes());
                    hash.write(&[0]);
                }
                let hash = self.fingerprint.unwrap_or(hash.finish());
                format!("hdr:{hash:016x}:{size}")
            }
        }
    }
}

/// The first non-empty Message-ID, Date, From and Subject of unfolded header text.
fn fields(text: &str) -> [Option<String>; 4] {
    let mut lines: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = lines.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            lines.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let mut found: [Option<String>; 4] = Default::default();
    for (name, value) in lines {
        let slot = match name.as_str() {
            "message-id" => 0,
            "date" => 1,
            "from" => 2,
            "subject" => 3,
            _ => continue,
        };
        let value = value.trim();
        if found[slot].is_none() && !value.is_empty() {
            found[slot] = Some(value.to_string());
        }
    }
    found
}

/// A content key's identity (`mid:<id>` or `hdr:<hash>`) and the size it names; a
/// key of another form is all identity.
pub fn split_key(key: &str) -> (&str, Option<u64>) {
    if (key.starts_with("mid:") || key.starts_with("hdr:"))
        && let Some((identity, size)) = key.rsplit_once(':')
        && let Ok(size) = size.parse()
    {
        return (identity, Some(size));
    }
    (key, None)
}

/// Whether a destination message of size `found` can be the copy of one of size
/// `sent` that the server changed: up to 5% apart, and at least 2 bytes (a final
/// line break added).
pub fn sizes_match(sent: u64, found: u64) -> bool {
    sent.abs_diff(found) <= (sent / 20).max(2)
}

/// Destination messages not yet accounted for, each to be matched at most once: by
/// equal identity and size first ([`Unmatched::take_exact`]), then by equal identity
/// and the nearest size that [`sizes_match`] ([`Unmatched::take_near`]).
#[derive(Debug, Default)]
pub struct Unmatched<'k> {
    by_identity: HashMap<&'k str, Vec<(Option<u64>, u32)>>,
}

impl<'k> Unmatched<'k> {
    /// From (content key, UID) pairs.
    pub fn new(messages: impl IntoIterator<Item = (&'k str, u32)>) -> Unmatched<'k> {
        let mut by_identity: HashMap<&str, Vec<(Option<u64>, u32)>> = HashMap::new();
        for (key, uid) in messages {
            let (identity, size) = split_key(key);
            by_identity.entry(identity).or_default().push((size, uid));
        }
        for candidates in by_identity.values_mut() {
            candidates.sort_by_key(|(_, uid)| *uid);
        }
        Unmatched { by_identity }
    }

    /// Takes a message out of the running (one a confirmed ledger row accounts for).
    pub fn remove(&mut self, key: &str, uid: u32) {
        if let Some(candidates) = self.by_identity.get_mut(split_key(key).0) {
            candidates.retain(|(_, u)| *u != uid);
        }
    }

    /// The lowest UID with this key's identity and exactly its size.
    pub fn take_exact(&mut self, key: &str) -> Option<u32> {
        let (identity, size) = split_key(key);
        let candidates = self.by_identity.get_mut(identity)?;
        let at = candidates.iter().position(|(s, _)| *s == size)?;
        Some(candidates.remove(at).1)
    }

    /// The UID with this key's identity whose size is nearest, if close enough.
    pub fn take_near(&mut self, key: &str) -> Option<u32> {
        let (identity, Some(size)) = split_key(key) else {
            return self.take_exact(key);
        };
        let candidates = self.by_identity.get_mut(identity)?;
        let at = candidates
            .iter()
            .enumerate()
            .filter_map(|(i, (found, _))| {
                let found = (*found)?;
                sizes_match(size, found).then_some((size.abs_diff(found), i))
            })
            .min()?
            .1;
        Some(candidates.remove(at).1)
    }
}

/// Whether a destination message's key can be a copy of a message sent under `sent`.
pub fn keys_match(sent: &str, found: &str) -> bool {
    match (split_key(sent), split_key(found)) {
        ((a, Some(x)), (b, Some(y))) => a == b && sizes_match(x, y),
        ((a, x), (b, y)) => a == b && x == y,
    }
}

/// FNV-1a: stable across Rust versions and machines, unlike `DefaultHasher`; keys
/// are stored in the ledger and compared in later runs.
struct Fnv64(u64);

impl Fnv64 {
    fn new() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_folded_fields_in_any_case() {
        let raw = b"Message-ID:\r\n <abc@example.com>\r\nsubject: Hello\r\n world\r\nFROM: A <a@x>\r\n\r\n";
        let headers = Headers::parse(raw);
        assert_eq!(headers.message_id.as_deref(), Some("<abc@example.com>"));
        assert_eq!(headers.subject.as_deref(), Some("Hello world"));
        assert_eq!(headers.from.as_deref(), Some("A <a@x>"));
        assert_eq!(headers.date, None);
    }

    #[test]
    fn eight_bit_header_bytes_give_the_key_cyrus_keeps() {
        let sent = Headers::parse("Subject: J\u{fc}rgen\r\nFrom: a@x\r\n\r\n".as_bytes());
        let stored = Headers::parse(b"Subject: JXXrgen\r\nFrom: a@x\r\n\r\n");
        assert_eq!(sent.content_key(100), stored.content_key(100));
        // Raw Latin-1, one byte, stored as one X.
        let latin1 = Headers::parse(b"Subject: J\xfcrgen\r\nFrom: a@x\r\n\r\n");
        let stored = Headers::parse(b"Subject: JXrgen\r\nFrom: a@x\r\n\r\n");
        assert_eq!(latin1.content_key(100), stored.content_key(100));
        let other = Headers::parse(b"Subject: Jorgen\r\nFrom: a@x\r\n\r\n");
        assert_ne!(sent.content_key(100), other.content_key(100));
    }

    #[test]
    fn copies_a_server_changed_are_matched_by_the_nearest_size_after_exact_ones() {
        assert_eq!(split_key("mid:<a@x>:535"), ("mid:<a@x>", Some(535)));
        assert_eq!(split_key("mid:<a:b@x>:9"), ("mid:<a:b@x>", Some(9)));
        assert_eq!(split_key("plain"), ("plain", None));
        assert!(sizes_match(535, 537) && sizes_match(10, 12) && !sizes_match(10, 13));
        assert!(sizes_match(10_000, 10_500) && !sizes_match(10_000, 10_501));
        // Two list copies of one message (same Message-ID, 5000 and 5200 bytes), stored
        // with a final CRLF added: each finds its own.
        let keys = ["mid:<l@x>:5202", "mid:<l@x>:5002", "mid:<other@x>:5000"];
        let mut unmatched = Unmatched::new(keys.iter().copied().zip([7, 8, 9]));
        assert_eq!(unmatched.take_exact("mid:<l@x>:5000"), None);
        assert_eq!(unmatched.take_near("mid:<l@x>:5000"), Some(8));
        assert_eq!(unmatched.take_near("mid:<l@x>:5200"), Some(7));
        assert_eq!(unmatched.take_near("mid:<l@x>:5200"), None);
        // An exact size is preferred to a nearer-looking one taken first.
        let mut unmatched = Unmatched::new([("mid:<a@x>:100", 1), ("mid:<a@x>:102", 2)]);
        assert_eq!(unmatched.take_exact("mid:<a@x>:102"), Some(2));
        assert_eq!(unmatched.take_near("mid:<a@x>:101"), Some(1));
        assert!(keys_match("mid:<a@x>:535", "mid:<a@x>:537"));
        assert!(!keys_match("mid:<a@x>:535", "mid:<b@x>:535"));
    }

    #[test]
    fn keys_tell_sizes_and_headers_apart() {
        let with_id = Headers::parse(b"Message-ID: <1@x>\r\n\r\n");
        assert_eq!(with_id.content_key(10), "mid:<1@x>:10");
        assert_ne!(with_id.content_key(10), with_id.content_key(11));
        let a = Headers::parse(b"Subject: a\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n");
        let b = Headers::parse(b"Subject: b\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n");
        assert_ne!(a.content_key(5), b.content_key(5));
        assert_eq!(a.content_key(5), a.clone().content_key(5));
        assert!(a.content_key(5).starts_with("hdr:"));
    }
}
