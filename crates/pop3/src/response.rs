//! Reading what a POP3 server says, without I/O: status lines (`+OK`, `-ERR`, the SASL
//! `+` continuation) and the lines of STAT, LIST, UIDL and CAPA answers. Lenient where
//! real servers are sloppy (quirks named in the crate documentation), strict where a
//! wrong reading would copy the wrong message.

/// The first word of a status line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusKind {
    Ok,
    Err,
    /// `+ ` during SASL: the server waits for the client's next response.
    Continue,
}

/// One status line: its kind and the text after it, trimmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub kind: StatusKind,
    pub text: String,
}

impl Status {
    /// The RFC 2449 response code at the start of the text (`AUTH`, `SYS/TEMP`,
    /// `IN-USE`, `LOGIN-DELAY`), upper-cased, when there is one.
    pub fn code(&self) -> Option<String> {
        let rest = self.text.strip_prefix('[')?;
        let end = rest.find(']')?;
        let code = rest[..end].split(' ').next()?;
        (!code.is_empty()).then(|| code.to_ascii_uppercase())
    }
}

/// Parses one status line (with or without its CRLF or bare LF). `None` when the line
/// is none of `+OK`, `-ERR` or `+`.
pub fn parse_status(line: &[u8]) -> Option<Status> {
    let line = trim_line_end(line);
    // Quirk LOWERCASE_STATUS: `+ok` and `-err` are read like the upper-case words.
    let (kind, rest) = if starts_with_ignore_case(line, b"+OK") {
        (StatusKind::Ok, &line[3..])
    } else if starts_with_ignore_case(line, b"-ERR") {
        (StatusKind::Err, &line[4..])
    } else if line.first() == Some(&b'+') {
        (StatusKind::Continue, &line[1..])
    } else {
        return None;
    };
    // `+OKAY` or `-ERRATIC` is not a status word followed by text.
    if kind != StatusKind::Continue && rest.first().is_some_and(|b| !b.is_ascii_whitespace()) {
        return None;
    }
    Some(Status {
        kind,
        text: String::from_utf8_lossy(rest).trim().to_string(),
    })
}

/// The message count and total size from the text of a STAT answer (`2 320`).
pub fn parse_stat(text: &str) -> Option<(u32, u64)> {
    let mut words = text.split_ascii_whitespace();
    let count = words.next()?.parse().ok()?;
    let octets = words.next()?.parse().ok()?;
    Some((count, octets))
}

/// One line of a LIST answer (`1 120`): message number and size. Words after the size
/// are extensions (RFC 1939 §7) and ignored.
pub fn parse_scan_listing(line: &[u8]) -> Option<(u32, u64)> {
    let text = std::str::from_utf8(trim_line_end(line)).ok()?;
    let mut words = text.split_ascii_whitespace();
    let number = parse_message_number(words.next()?)?;
    let size = words.next()?.parse().ok()?;
    Some((number, size))
}

/// One line of a UIDL answer (`1 whqtswO00WBw418f9t5JxYwZ`): message number and
/// unique id. RFC 1939 allows 1 to 70 printable ASCII characters; any run of bytes
/// other than space and control characters is accepted, since an id is only ever
/// compared with itself.
pub fn parse_unique_id_listing(line: &[u8]) -> Option<(u32, String)> {
    let line = trim_line_end(line);
    let text = std::str::from_utf8(line).ok()?;
    let mut words = text.split_ascii_whitespace();
    let number = parse_message_number(words.next()?)?;
    let id = words.next()?;
    if id.chars().any(char::is_control) {
        return None;
    }
    Some((number, id.to_string()))
}

/// The size a RETR answer announces (`+OK 120 octets`), when its text starts with a
/// number.
pub fn parse_octets(text: &str) -> Option<u64> {
    text.split_ascii_whitespace().next()?.parse().ok()
}

/// The lines of a decoded multi-line answer, without their line ends; blank lines are
/// left out (they carry nothing in CAPA, LIST or UIDL).
pub fn listing_lines(decoded: &[u8]) -> impl Iterator<Item = &[u8]> {
    decoded
        .split(|&b| b == b'\n')
        .map(trim_line_end)
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
}

/// Strips one LF, CRLF or nothing from the end of a line.
fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn starts_with_ignore_case(line: &[u8], prefix: &[u8]) -> bool {
    line.len() >= prefix.len() && line[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// Message numbers start at 1 (RFC 1939 §3).
fn parse_message_number(word: &str) -> Option<u32> {
    word.parse().ok().filter(|&n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A known-answer row: the line, and what the parser should make of it.
    type Case<T> = (&'static [u8], Option<T>);

    fn status(kind: StatusKind, text: &str) -> Option<Status> {
        Some(Status {
            kind,
            text: text.to_string(),
        })
    }

    #[test]
    fn status_lines() {
        let cases: &[Case<Status>] = &[
            (b"+OK\r\n", status(StatusKind::Ok, "")),
            (b"+OK Logged in.\r\n", status(StatusKind::Ok, "Logged in.")),
            (
                b"+OK mailmove-testkit x ready.\n",
                status(StatusKind::Ok, "mailmove-testkit x ready."),
            ),
            (b"+OK 2 320", status(StatusKind::Ok, "2 320")),
            (b"+ok  spaced  \r\n", status(StatusKind::Ok, "spaced")),
            (
                b"-ERR [AUTH] Authentication failed.\r\n",
                status(StatusKind::Err, "[AUTH] Authentication failed."),
            ),
            (b"-ERR\r\n", status(StatusKind::Err, "")),
            (b"-err no\n", status(StatusKind::Err, "no")),
            (b"+ \r\n", status(StatusKind::Continue, "")),
            (b"+ eyJ4Ijox\r\n", status(StatusKind::Continue, "eyJ4Ijox")),
            (b"+\r\n", status(StatusKind::Continue, "")),
            (
                b"+OK caf\xc3\xa9 \xff\r\n",
                status(StatusKind::Ok, "caf\u{e9} \u{fffd}"),
            ),
            (b"+OKAY\r\n", None),
            (b"-ERRATIC\r\n", None),
            (b"* OK imap\r\n", None),
            (b"\r\n", None),
            (b"", None),
        ];
        for (line, expected) in cases {
            assert_eq!(
                &parse_status(line),
                expected,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn response_codes() {
        let code = |text: &str| {
            Status {
                kind: StatusKind::Err,
                text: text.to_string(),
            }
            .code()
        };
        assert_eq!(code("[AUTH] Authentication failed."), Some("AUTH".into()));
        assert_eq!(code("[sys/temp] try later"), Some("SYS/TEMP".into()));
        assert_eq!(code("[IN-USE]"), Some("IN-USE".into()));
        assert_eq!(code("no code [AUTH]"), None);
        assert_eq!(code("[unclosed"), None);
        assert_eq!(code("[]"), None);
    }

    #[test]
    fn stat_answers() {
        assert_eq!(parse_stat("2 320"), Some((2, 320)));
        assert_eq!(parse_stat("0 0"), Some((0, 0)));
        assert_eq!(parse_stat("7 188 messages"), Some((7, 188)));
        assert_eq!(parse_stat("  3   9000 "), Some((3, 9000)));
        assert_eq!(
            parse_stat("4294967295 18446744073709551615"),
            Some((u32::MAX, u64::MAX))
        );
        assert_eq!(parse_stat("4294967296 1"), None);
        assert_eq!(parse_stat("2"), None);
        assert_eq!(parse_stat("two 320"), None);
        assert_eq!(parse_stat("-1 320"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn scan_listings() {
        let cases: &[Case<(u32, u64)>] = &[
            (b"1 120\r\n", Some((1, 120))),
            (b"2 200", Some((2, 200))),
            (b"3  4\n", Some((3, 4))),
            (b"4 5 extension words\r\n", Some((4, 5))),
            (b"0 120\r\n", None),
            (b"1\r\n", None),
            (b"1 x\r\n", None),
            (b"x 1\r\n", None),
            (b"1 -5\r\n", None),
            (b"\xff 1\r\n", None),
            (b"", None),
        ];
        for (line, expected) in cases {
            assert_eq!(
                &parse_scan_listing(line),
                expected,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn unique_id_listings() {
        let cases: &[Case<(u32, &str)>] = &[
            (
                b"1 whqtswO00WBw418f9t5JxYwZ\r\n",
                Some((1, "whqtswO00WBw418f9t5JxYwZ")),
            ),
            (b"7 000000076b080be0\r\n", Some((7, "000000076b080be0"))),
            (b"2 QhdPYR:00WBw1Ph7x7\n", Some((2, "QhdPYR:00WBw1Ph7x7"))),
            (b"3 id trailing", Some((3, "id"))),
            (b"0 id\r\n", None),
            (b"1\r\n", None),
            (b"1 \r\n", None),
            (b"x id\r\n", None),
            (b"1 a\x01b\r\n", None),
        ];
        for (line, expected) in cases {
            let got = parse_unique_id_listing(line);
            let got = got.as_ref().map(|(n, id)| (*n, id.as_str()));
            assert_eq!(got, *expected, "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn announced_octets() {
        assert_eq!(parse_octets("27 octets"), Some(27));
        assert_eq!(parse_octets("27"), Some(27));
        assert_eq!(parse_octets("message follows"), None);
        assert_eq!(parse_octets(""), None);
    }

    #[test]
    fn lines_of_a_listing() {
        let lines: Vec<&[u8]> = listing_lines(b"TOP\r\nUIDL\n\r\nSASL PLAIN LOGIN\r\n").collect();
        assert_eq!(lines, [&b"TOP"[..], b"UIDL", b"SASL PLAIN LOGIN"]);
        assert_eq!(listing_lines(b"").count(), 0);
    }
}
