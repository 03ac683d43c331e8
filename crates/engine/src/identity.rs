//! How a message is recognised at the destination when the ledger cannot say:
//! by its Message-ID and size, or, without a Message-ID, by a hash of its Date,
//! From and Subject headers and its size. Two different messages that share a
//! Message-ID almost always differ in size; identical ones are matched one to one.

/// The header fields fetched for identity and reports.
pub const HEADER_FIELDS: &str = "MESSAGE-ID DATE FROM SUBJECT";

/// What the header fields of one message say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    pub message_id: Option<String>,
    pub date: Option<String>,
    pub from: Option<String>,
    pub subject: Option<String>,
}

impl Headers {
    /// Reads unfolded header fields from the bytes of a `BODY[HEADER.FIELDS (...)]`.
    pub fn parse(raw: &[u8]) -> Headers {
        let mut headers = Headers::default();
        let text = String::from_utf8_lossy(raw);
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in text.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.starts_with([' ', '\t']) {
                if let Some((_, value)) = fields.last_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
                continue;
            }
            if let Some((name, value)) = line.split_once(':') {
                fields.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
        for (name, value) in fields {
            let slot = match name.as_str() {
                "message-id" => &mut headers.message_id,
                "date" => &mut headers.date,
                "from" => &mut headers.from,
                "subject" => &mut headers.subject,
                _ => continue,
            };
            let value = value.trim();
            if slot.is_none() && !value.is_empty() {
                *slot = Some(value.to_string());
            }
        }
        headers
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
                format!("hdr:{:016x}:{size}", hash.finish())
            }
        }
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
