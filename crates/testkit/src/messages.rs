//! Deterministic test messages, so a test can rebuild the exact bytes it expects to
//! find on the destination and compare them byte for byte.
//!
//! Every generator uses CRLF line endings (IMAP servers hand messages back with CRLF,
//! so only CRLF input round-trips exactly) and a fixed Date header.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

const DATE: &str = "Wed, 01 Jan 2020 10:00:00 +0000";
const FROM: &str = "Alice Example <alice@example.com>";
const TO: &str = "Bob Example <bob@example.com>";
/// Lines stay well under the 78-character recommendation of RFC 5322.
const TEXT_LINE: usize = 72;

const WORDS: &[&str] = &[
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "incididunt",
    "ut",
    "labore",
    "et",
    "dolore",
    "magna",
    "aliqua",
    "mailbox",
    "folder",
    "message",
    "migration",
    "server",
];

/// A plain text/plain message with From, To, Date, Subject and Message-ID headers and
/// a body of exactly `body_len` bytes of printable text in CRLF-terminated lines.
/// The text depends on `message_id`, so two messages never share a body.
/// `message_id` may be given with or without angle brackets.
pub fn simple(message_id: &str, subject: &str, body_len: usize) -> Vec<u8> {
    let mut message = headers(Some(message_id), subject, FROM);
    message.extend_from_slice(b"MIME-Version: 1.0\r\n");
    message.extend_from_slice(b"Content-Type: text/plain; charset=us-ascii\r\n");
    message.extend_from_slice(b"\r\n");
    message.extend_from_slice(&text_body(seed_of(message_id), body_len));
    message
}

/// Raw (unencoded) UTF-8 in Subject and From, and 8-bit Latin-1 bytes (e.g. 0xE9) in
/// the body: what old or careless clients produce and servers must store untouched.
pub fn eight_bit_headers(message_id: &str) -> Vec<u8> {
    let mut message = headers(
        Some(message_id),
        "Grüße aus Köln – naïve café ✓",
        "Jérôme Müller <jerome@example.com>",
    );
    message.extend_from_slice(b"MIME-Version: 1.0\r\n");
    message.extend_from_slice(b"Content-Type: text/plain; charset=iso-8859-1\r\n");
    message.extend_from_slice(b"Content-Transfer-Encoding: 8bit\r\n");
    message.extend_from_slice(b"\r\n");
    // "Café crème brûlée à volonté" and "Ærø Øst" in Latin-1.
    message.extend_from_slice(b"Caf\xe9 cr\xe8me br\xfbl\xe9e \xe0 volont\xe9\r\n");
    message.extend_from_slice(b"\xc6r\xf8 \xd8st\r\n");
    message
}

/// A message whose body holds one line of exactly `line_len` printable bytes without
/// any line break (between a short first and last line).
pub fn long_lines(message_id: &str, line_len: usize) -> Vec<u8> {
    let mut message = headers(Some(message_id), "A very long line", FROM);
    message.extend_from_slice(b"MIME-Version: 1.0\r\n");
    message.extend_from_slice(b"Content-Type: text/plain; charset=us-ascii\r\n");
    message.extend_from_slice(b"\r\n");
    message.extend_from_slice(b"The next line is long.\r\n");
    let pattern = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    message.extend(pattern.iter().cycle().take(line_len));
    message.extend_from_slice(b"\r\nThat was the long line.\r\n");
    message
}

/// multipart/mixed: a short text part and an `application/octet-stream` attachment
/// of `attachment_len` pseudo-random bytes, base64 in 76-character lines. The same
/// arguments always give the same bytes.
pub fn with_attachment(message_id: &str, attachment_len: usize, seed: u64) -> Vec<u8> {
    let boundary = format!("=_mailmove_boundary_{seed:016x}");
    let mut message = headers(Some(message_id), "A message with an attachment", FROM);
    message.extend_from_slice(b"MIME-Version: 1.0\r\n");
    message.extend_from_slice(
        format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n").as_bytes(),
    );
    message.extend_from_slice(b"\r\n");
    message.extend_from_slice(b"This is a multi-part message in MIME format.\r\n");
    message.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
    message.extend_from_slice(b"Content-Type: text/plain; charset=us-ascii\r\n\r\n");
    message.extend_from_slice(b"The attachment holds pseudo-random bytes.\r\n");
    message.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
    message.extend_from_slice(b"Content-Type: application/octet-stream\r\n");
    message.extend_from_slice(
        format!("Content-Disposition: attachment; filename=\"data-{seed}.bin\"\r\n").as_bytes(),
    );
    message.extend_from_slice(b"Content-Transfer-Encoding: base64\r\n\r\n");

    let mut rng = SplitMix64(seed);
    let data: Vec<u8> = (0..attachment_len).map(|_| rng.next() as u8).collect();
    let encoded = STANDARD.encode(data);
    for line in encoded.as_bytes().chunks(76) {
        message.extend_from_slice(line);
        message.extend_from_slice(b"\r\n");
    }
    message.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    message
}

/// Like [`simple`] (a 200-byte body) but without a Message-ID header, as some
/// drafts and old mail have; the body depends on `subject`.
pub fn without_message_id(subject: &str) -> Vec<u8> {
    let mut message = headers(None, subject, FROM);
    message.extend_from_slice(b"MIME-Version: 1.0\r\n");
    message.extend_from_slice(b"Content-Type: text/plain; charset=us-ascii\r\n");
    message.extend_from_slice(b"\r\n");
    message.extend_from_slice(&text_body(seed_of(subject), 200));
    message
}

fn headers(message_id: Option<&str>, subject: &str, from: &str) -> Vec<u8> {
    let mut header = format!("From: {from}\r\nTo: {TO}\r\nDate: {DATE}\r\nSubject: {subject}\r\n");
    if let Some(id) = message_id {
        if id.starts_with('<') {
            header.push_str(&format!("Message-ID: {id}\r\n"));
        } else {
            header.push_str(&format!("Message-ID: <{id}>\r\n"));
        }
    }
    header.into_bytes()
}

/// Exactly `len` bytes of words in CRLF-terminated lines. Lengths 1 and 2 are dots
/// without a line break, the only way to hit them exactly without a bare CR.
fn text_body(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = SplitMix64(seed);
    let mut body = Vec::with_capacity(len);
    while body.len() < len {
        let remaining = len - body.len();
        if remaining < 3 {
            body.extend(std::iter::repeat_n(b'.', remaining));
            break;
        }
        let mut text_len = (remaining - 2).min(TEXT_LINE);
        // Never leave 1 or 2 bytes for the next round, which could not end in CRLF.
        let after = remaining - text_len - 2;
        if (1..3).contains(&after) {
            text_len -= 3;
        }
        body.extend_from_slice(&text_line(&mut rng, text_len));
        body.extend_from_slice(b"\r\n");
    }
    body
}

/// `len` bytes of space-separated words, starting with a letter (so no line ever
/// begins with "." or "From ").
fn text_line(rng: &mut SplitMix64, len: usize) -> Vec<u8> {
    let mut line = Vec::with_capacity(len + 12);
    while line.len() < len {
        if !line.is_empty() {
            line.push(b' ');
        }
        let word = WORDS[(rng.next() % WORDS.len() as u64) as usize];
        line.extend_from_slice(word.as_bytes());
    }
    line.truncate(len);
    // A trailing space would be a line that some software trims.
    if let Some(last) = line.last_mut()
        && *last == b' '
    {
        *last = b'x';
    }
    line
}

/// FNV-1a, to turn an id into a seed.
fn seed_of(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A tiny, well-known generator: deterministic across platforms and versions, which
/// a library RNG does not promise.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(message: &[u8]) -> &[u8] {
        let at = message.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        &message[at + 4..]
    }

    fn has_bare_line_endings(bytes: &[u8]) -> bool {
        bytes.iter().enumerate().any(|(i, &b)| {
            (b == b'\n' && (i == 0 || bytes[i - 1] != b'\r'))
                || (b == b'\r' && bytes.get(i + 1) != Some(&b'\n'))
        })
    }

    #[test]
    fn simple_body_has_exact_length_and_crlf_only() {
        for len in [0, 1, 2, 3, 4, 5, 73, 74, 75, 76, 77, 78, 1000, 4096] {
            let message = simple("id@example.com", "Hello", len);
            assert_eq!(body_of(&message).len(), len, "body_len {len}");
            assert!(!has_bare_line_endings(&message), "body_len {len}");
            assert!(
                body_of(&message)
                    .iter()
                    .all(|&b| b == b'\r' || b == b'\n' || (0x20..0x7f).contains(&b))
            );
        }
    }

    #[test]
    fn generators_are_deterministic_and_distinct() {
        assert_eq!(simple("a@x", "s", 500), simple("a@x", "s", 500));
        assert_ne!(
            body_of(&simple("a@x", "s", 500)),
            body_of(&simple("b@x", "s", 500))
        );
        assert_eq!(
            with_attachment("a@x", 1000, 7),
            with_attachment("a@x", 1000, 7)
        );
        assert_ne!(
            with_attachment("a@x", 1000, 7),
            with_attachment("a@x", 1000, 8)
        );
    }

    #[test]
    fn message_id_gets_angle_brackets_once() {
        let message = String::from_utf8(simple("a@x", "s", 10)).unwrap();
        assert!(message.contains("Message-ID: <a@x>\r\n"));
        let message = String::from_utf8(simple("<a@x>", "s", 10)).unwrap();
        assert!(message.contains("Message-ID: <a@x>\r\n"));
        let message = String::from_utf8(without_message_id("s")).unwrap();
        assert!(!message.contains("Message-ID"));
    }

    #[test]
    fn attachment_decodes_to_the_requested_length() {
        let message = with_attachment("a@x", 10_000, 1);
        let text = String::from_utf8(message).unwrap();
        let start = text.find("base64\r\n\r\n").unwrap() + "base64\r\n\r\n".len();
        let end = text.rfind("--=_mailmove").unwrap();
        let lines: Vec<&str> = text[start..end]
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .collect();
        assert!(lines.iter().all(|l| l.len() <= 76));
        assert!(lines[..lines.len() - 1].iter().all(|l| l.len() == 76));
        let decoded = STANDARD.decode(lines.concat()).unwrap();
        assert_eq!(decoded.len(), 10_000);
    }

    #[test]
    fn long_line_is_unbroken() {
        let message = long_lines("a@x", 20_000);
        let longest = message
            .split(|&b| b == b'\n')
            .map(<[u8]>::len)
            .max()
            .unwrap();
        assert_eq!(longest, 20_001); // the line plus its CR
    }

    #[test]
    fn eight_bit_message_has_raw_utf8_and_latin1() {
        let message = eight_bit_headers("a@x");
        let header_end = message.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        assert!(
            std::str::from_utf8(&message[..header_end])
                .unwrap()
                .contains("Grüße")
        );
        assert!(body_of(&message).contains(&0xe9));
    }
}
