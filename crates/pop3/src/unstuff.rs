//! Undoing dot-stuffing without I/O, so the decoder can be property-tested and fuzzed
//! apart from any socket, and a multi-line response of any size streams through it in
//! chunks split anywhere (even inside the terminating `CRLF.CRLF`).
//!
//! RFC 1939 §3: a multi-line response ends with a line holding a single `.`; a line of
//! the message that begins with `.` is sent with one more `.` in front. The line break
//! before the terminator belongs to the message: a server adds CRLF before `.` when
//! the message did not end with a line break, so the decoded bytes always end with one.
//!
//! A line starts at the beginning of the response and after every LF, CRLF or bare.
//! Dovecot turns stored bare LFs into CRLF before stuffing, so the question does not
//! arise there; a server that sends bare LF lines is taken to stuff after them too,
//! and may end the response with `.` + LF (quirk `BARE_LF`, see the crate
//! documentation). A server that passed bare LFs through but stuffed only after CRLF
//! would have a `.` after a bare LF read as stuffing or, as `LF . CRLF`, as the end.

/// What [`DotUnstuffer::feed`] found in one chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feed {
    /// The whole chunk was message bytes (or part of a possible terminator, held back):
    /// feed the next chunk.
    NeedMore,
    /// The terminator ended within this chunk; the last `surplus` bytes of the chunk
    /// come after it and belong to the next response.
    Ended { surplus: usize },
}

/// Decodes one multi-line response body, chunk by chunk.
///
/// ```
/// use mailmove_pop3::unstuff::{DotUnstuffer, Feed};
///
/// let mut decoder = DotUnstuffer::new();
/// let mut message = Vec::new();
/// assert_eq!(decoder.feed(b"a\r\n..b\r\n.\r", &mut message), Feed::NeedMore);
/// assert_eq!(decoder.feed(b"\n+OK", &mut message), Feed::Ended { surplus: 3 });
/// assert_eq!(message, b"a\r\n.b\r\n");
/// ```
#[derive(Clone, Debug, Default)]
pub struct DotUnstuffer {
    state: State,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum State {
    /// At the start of a line: a `.` here is either stuffing or the terminator.
    #[default]
    LineStart,
    /// Inside a line.
    Middle,
    /// A `.` at the start of a line, held back.
    Dot,
    /// `.` + CR at the start of a line, held back: LF next ends the response.
    DotCr,
    /// The terminator was seen; nothing more belongs to this response.
    Ended,
}

impl DotUnstuffer {
    pub fn new() -> DotUnstuffer {
        DotUnstuffer::default()
    }

    /// Whether the terminator has been seen.
    pub fn is_ended(&self) -> bool {
        self.state == State::Ended
    }

    /// Appends the message bytes found in `input` to `out`. After the terminator every
    /// byte is surplus, including in later calls.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Feed {
        let mut i = 0;
        while i < input.len() {
            let byte = input[i];
            match self.state {
                State::Ended => break,
                State::Middle => {
                    // The bulk of a message: copy up to and including the next LF.
                    match input[i..].iter().position(|&b| b == b'\n') {
                        Some(offset) => {
                            out.extend_from_slice(&input[i..=i + offset]);
                            i += offset + 1;
                            self.state = State::LineStart;
                        }
                        None => {
                            out.extend_from_slice(&input[i..]);
                            i = input.len();
                        }
                    }
                    continue;
                }
                State::LineStart => match byte {
                    b'.' => self.state = State::Dot,
                    b'\n' => out.push(byte),
                    _ => {
                        out.push(byte);
                        self.state = State::Middle;
                    }
                },
                State::Dot => match byte {
                    b'\r' => self.state = State::DotCr,
                    // Quirk BARE_LF: `.` + LF ends the response too.
                    b'\n' => self.state = State::Ended,
                    // Stuffing: `..` stands for `.`.
                    b'.' => {
                        out.push(b'.');
                        self.state = State::Middle;
                    }
                    // Quirk UNSTUFFED_DOT: a server forgot to stuff; RFC 1939 would
                    // drop the dot, but keeping it keeps the line as that server has it.
                    _ => {
                        out.extend_from_slice(&[b'.', byte]);
                        self.state = State::Middle;
                    }
                },
                State::DotCr => {
                    if byte == b'\n' {
                        self.state = State::Ended;
                    } else {
                        // Quirk UNSTUFFED_DOT again (`.` CR then something else). The
                        // byte is seen again in the middle of the line.
                        out.extend_from_slice(b".\r");
                        self.state = State::Middle;
                        continue;
                    }
                }
            }
            i += 1;
        }
        if self.state == State::Ended {
            Feed::Ended {
                surplus: input.len() - i,
            }
        } else {
            Feed::NeedMore
        }
    }
}

/// What a server sends for `message` after its `+OK` line: a `.` before every line
/// that begins with one, CRLF appended when the message does not end with LF (and is
/// not empty), then the terminator `.` CRLF. The model the decoder is tested and
/// fuzzed against; the client never sends multi-line data.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 5);
    let mut at_line_start = true;
    for &byte in message {
        if at_line_start && byte == b'.' {
            out.push(b'.');
        }
        out.push(byte);
        at_line_start = byte == b'\n';
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Whether the CRLF that ends a retrieved message was added by the server because the
/// message had no final line break, judged by the size the server announced with
/// `+OK n octets`.
///
/// Servers that announce an exact size (RFC 1939 asks for it, Dovecot does it) count
/// the message without the added CRLF, so exactly two bytes more than announced, ending
/// in CRLF, means the CRLF is not the message's. Without an announced size nothing can
/// be told apart, and the message keeps the CRLF. A server whose count is inexact by
/// exactly two bytes would lose a real final CRLF here; no such server is known.
pub fn server_added_line_break(
    announced: Option<u64>,
    received: u64,
    ends_with_crlf: bool,
) -> bool {
    ends_with_crlf && announced.is_some_and(|size| size.checked_add(2) == Some(received))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `input` in pieces cut at `cuts`; returns the message and how many input
    /// bytes the response used.
    fn decode_in_pieces(input: &[u8], cuts: &[usize]) -> (Vec<u8>, Option<usize>) {
        let mut decoder = DotUnstuffer::new();
        let mut message = Vec::new();
        let mut bounds: Vec<usize> = cuts.iter().map(|&c| c % (input.len() + 1)).collect();
        bounds.push(0);
        bounds.push(input.len());
        bounds.sort_unstable();
        bounds.dedup();
        for pair in bounds.windows(2) {
            let chunk = &input[pair[0]..pair[1]];
            if let Feed::Ended { surplus } = decoder.feed(chunk, &mut message) {
                assert!(decoder.is_ended());
                return (message, Some(pair[1] - surplus));
            }
        }
        (message, None)
    }

    fn decode(input: &[u8]) -> (Vec<u8>, Option<usize>) {
        decode_in_pieces(input, &[])
    }

    #[test]
    fn hand_written_cases() {
        let cases: &[(&[u8], &[u8], Option<usize>)] = &[
            (b".\r\n", b"", Some(3)),
            (b"a\r\n.\r\n", b"a\r\n", Some(6)),
            (b"..a\r\n.\r\n", b".a\r\n", Some(8)),
            (b"...\r\n..\r\n.\r\n", b"..\r\n.\r\n", Some(12)),
            (b"a\r\n.\r\n+OK\r\n", b"a\r\n", Some(6)),
            (b"a\r\nb.\r\n.\r\n", b"a\r\nb.\r\n", Some(10)),
            // 8-bit bytes and NUL pass untouched.
            (b"\xe9\x00\xff\r\n.\r\n", b"\xe9\x00\xff\r\n", Some(8)),
            // Bare LF: lines start after it, and `.` LF ends the response.
            (b"a\n..b\n.\n", b"a\n.b\n", Some(8)),
            (b"a\n\n.\r\n", b"a\n\n", Some(6)),
            // Quirk UNSTUFFED_DOT: a lone dot that is not a terminator is kept.
            (b".a\r\n.\r\n", b".a\r\n", Some(7)),
            (b".\rx\r\n.\r\n", b".\rx\r\n", Some(8)),
            (b".\r\r\n.\r\n", b".\r\r\n", Some(7)),
            // CR inside a line is just a byte.
            (b"a\rb\r\n.\r\n", b"a\rb\r\n", Some(8)),
            // Not finished yet.
            (b"a\r\n.\r", b"a\r\n", None),
            (b"a\r\n.", b"a\r\n", None),
            (b"a\r\n", b"a\r\n", None),
        ];
        for (input, message, used) in cases {
            let (got, got_used) = decode(input);
            assert_eq!(
                (&got[..], got_used),
                (*message, *used),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn every_split_of_the_terminator_gives_the_same_answer() {
        let input = b"x\r\n..y\r\n.\r\n+OK next\r\n";
        for cut in 0..=input.len() {
            for second in cut..=input.len() {
                let (message, used) = decode_in_pieces(input, &[cut, second]);
                assert_eq!(message, b"x\r\n.y\r\n", "cuts at {cut} and {second}");
                assert_eq!(used, Some(11), "cuts at {cut} and {second}");
            }
        }
    }

    #[test]
    fn after_the_end_everything_is_surplus() {
        let mut decoder = DotUnstuffer::new();
        let mut message = Vec::new();
        assert_eq!(
            decoder.feed(b".\r\nab", &mut message),
            Feed::Ended { surplus: 2 }
        );
        assert_eq!(
            decoder.feed(b"cd", &mut message),
            Feed::Ended { surplus: 2 }
        );
        assert!(message.is_empty());
    }

    #[test]
    fn stuffing_known_answers() {
        assert_eq!(dot_stuff(b""), b".\r\n");
        assert_eq!(dot_stuff(b"a"), b"a\r\n.\r\n");
        assert_eq!(dot_stuff(b"a\r\n"), b"a\r\n.\r\n");
        assert_eq!(dot_stuff(b".a\r\n."), b"..a\r\n..\r\n.\r\n");
        assert_eq!(dot_stuff(b"a\n.b\n"), b"a\n..b\n.\r\n");
        assert_eq!(dot_stuff(b"a\r"), b"a\r\r\n.\r\n");
    }

    #[test]
    fn the_added_line_break_is_recognised_by_the_announced_size() {
        assert!(server_added_line_break(Some(27), 29, true));
        assert!(!server_added_line_break(Some(27), 27, true));
        assert!(!server_added_line_break(Some(27), 29, false));
        assert!(!server_added_line_break(None, 29, true));
        assert!(!server_added_line_break(Some(u64::MAX), 1, true));
    }

    /// Bytes that matter to the decoder, often, and any byte now and then.
    fn message_bytes() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            4 => Just(b'.'),
            4 => Just(b'\r'),
            4 => Just(b'\n'),
            2 => Just(b'a'),
            1 => Just(0xe9u8),
            1 => any::<u8>(),
        ];
        let fragment = prop_oneof![
            3 => proptest::collection::vec(byte, 0..8),
            1 => Just(b"\r\n.\r\n".to_vec()),
            1 => Just(b"\r\n..\r\n".to_vec()),
            1 => Just(b"\n.\n".to_vec()),
        ];
        proptest::collection::vec(fragment, 0..24).prop_map(|parts| parts.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn stuffed_then_unstuffed_in_any_chunks_is_the_message(
            message in message_bytes(),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
            trailer in proptest::collection::vec(any::<u8>(), 0..6),
        ) {
            let mut wire = dot_stuff(&message);
            let response_len = wire.len();
            wire.extend_from_slice(&trailer);
            let (decoded, used) = decode_in_pieces(&wire, &cuts);
            // The documented rule: a message without a final LF gains the CRLF the
            // server added before the terminator.
            let mut expected = message.clone();
            if !message.is_empty() && !message.ends_with(b"\n") {
                expected.extend_from_slice(b"\r\n");
            }
            prop_assert_eq!(&decoded, &expected);
            prop_assert_eq!(used, Some(response_len));

            // With the size an exact server announces, even that CRLF is undone.
            let added = server_added_line_break(
                Some(message.len() as u64),
                decoded.len() as u64,
                decoded.ends_with(b"\r\n"),
            );
            let restored = if added { &decoded[..decoded.len() - 2] } else { &decoded[..] };
            prop_assert_eq!(restored, &message[..]);
        }

        #[test]
        fn arbitrary_input_never_yields_more_than_it_got(
            input in proptest::collection::vec(any::<u8>(), 0..256),
            cuts in proptest::collection::vec(any::<usize>(), 0..6),
        ) {
            let (decoded, used) = decode_in_pieces(&input, &cuts);
            prop_assert!(decoded.len() <= input.len());
            if let Some(used) = used {
                prop_assert!(used <= input.len());
                prop_assert!(input[..used].ends_with(b"\n"));
            }
        }
    }
}
