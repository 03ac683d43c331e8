//! Framing: finds where one server response ends (lines and `{n}` literals) before
//! anything tries to understand it. A response that later fails to parse is dropped
//! as one unit and the connection stays in step.
//!
//! Literals are read as they arrive; one larger than the spill threshold goes to an
//! anonymous temporary file, so a 40 MB message never sits whole in memory.
//!
//! Whatever a server sends, one response costs bounded memory and disk: its text (every
//! line outside literals, together) is capped, so is the number of its literals, and a
//! literal over its bound (the configured maximum, or what the server announced for
//! that message) is read and thrown away, never kept, and reported in
//! [`Frame::oversized`].

use mailmove_net::{Body, BodySink};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

/// One complete server response: its text with every literal cut out, and the
/// literals in order. The text keeps each `{n}` marker, so the parser knows where
/// the next literal belongs.
#[derive(Debug)]
pub struct Frame {
    pub text: Vec<u8>,
    pub literals: Vec<Body>,
    /// Literals over their bound, read and discarded: each stands in `literals` as an
    /// empty body, at `index`.
    pub oversized: Vec<Oversized>,
}

/// A literal the framing layer refused to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Oversized {
    /// Its place among the frame's literals.
    pub index: usize,
    /// The size its `{n}` marker announced (and that was read past).
    pub len: u64,
    /// The most it was allowed.
    pub bound: u64,
    /// What the server had said this message's size was (RFC822.SIZE in the listing),
    /// when the bound came from it.
    pub announced: Option<u64>,
}

/// Limits that keep a misbehaving server from exhausting memory.
#[derive(Clone, Copy, Debug)]
pub struct FrameLimits {
    /// Literals above this many bytes go to a temporary file.
    pub spill_threshold: u64,
    /// A response whose text (its lines outside literals, together) is longer than
    /// this is a protocol error.
    pub max_line: usize,
    /// The largest literal kept: a message larger than this is not copied.
    pub max_literal: u64,
    /// A response with more literals than this is a protocol error.
    pub max_literals: usize,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            spill_threshold: 2 * 1024 * 1024,
            max_line: 64 * 1024 * 1024,
            max_literal: 512 * 1024 * 1024,
            max_literals: 1024,
        }
    }
}

pub use mailmove_net::tolerated;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("the server closed the connection")]
    Closed,
    #[error("the server sent a line longer than {0} bytes")]
    LineTooLong(usize),
    #[error("the server sent a response with more than {0} literals")]
    TooManyLiterals(usize),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub struct FrameReader<R> {
    inner: BufReader<R>,
    limits: FrameLimits,
    bound: LiteralBound,
}

/// What bounds the literals of the responses being read, beside
/// [`FrameLimits::max_literal`].
#[derive(Clone, Debug, Default)]
pub enum LiteralBound {
    /// The maximum alone.
    #[default]
    Maximum,
    /// A FETCH response's literal, by [`tolerated`] of the size the server announced
    /// for its UID (seen before the literal).
    Announced(std::sync::Arc<std::collections::HashMap<u32, u64>>),
    /// Every literal, by this many bytes (header fields: a few KiB are expected).
    AtMost(u64),
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R, limits: FrameLimits) -> Self {
        FrameReader {
            inner: BufReader::with_capacity(64 * 1024, inner),
            limits,
            bound: LiteralBound::Maximum,
        }
    }

    /// Bounds the literals of the responses read from now on (see [`LiteralBound`]).
    pub fn bound_literals(&mut self, bound: LiteralBound) {
        self.bound = bound;
    }

    /// Bytes already received but not yet framed. After a STARTTLS answer this must be
    /// empty: anything there was injected before the handshake.
    pub fn buffered(&self) -> usize {
        self.inner.buffer().len()
    }

    pub fn into_inner(self) -> R {
        self.inner.into_inner()
    }

    pub fn limits(&self) -> FrameLimits {
        self.limits
    }

    /// The reader, and the bytes read from it but not yet framed.
    pub fn into_parts(self) -> (R, Vec<u8>) {
        let rest = self.inner.buffer().to_vec();
        (self.inner.into_inner(), rest)
    }

    pub fn get_mut(&mut self) -> &mut R {
        self.inner.get_mut()
    }

    /// Reads one whole response.
    pub async fn read_frame(&mut self) -> Result<Frame, FrameError> {
        let mut text = Vec::new();
        let mut literals = Vec::new();
        let mut oversized = Vec::new();
        loop {
            let start = text.len();
            // The cap is on the whole response's text, so a server cannot grow it
            // without end in lines cut by small literals.
            let room = self.limits.max_line - start.min(self.limits.max_line);
            let read = (&mut self.inner)
                .take(room as u64 + 1)
                .read_until(b'\n', &mut text)
                .await?;
            if read == 0 {
                return Err(FrameError::Closed);
            }
            if !text.ends_with(b"\n") {
                if read > room {
                    return Err(FrameError::LineTooLong(self.limits.max_line));
                }
                return Err(FrameError::Closed);
            }
            let Some(len) = literal_announced(&text[start..]) else {
                return Ok(Frame {
                    text,
                    literals,
                    oversized,
                });
            };
            if literals.len() >= self.limits.max_literals {
                return Err(FrameError::TooManyLiterals(self.limits.max_literals));
            }
            let (announced, bound) = match &self.bound {
                LiteralBound::Maximum => (None, u64::MAX),
                LiteralBound::AtMost(bound) => (None, *bound),
                LiteralBound::Announced(sizes) => {
                    let announced = uid_before_literal(&text).and_then(|uid| sizes.get(&uid));
                    (
                        announced.copied(),
                        announced.map_or(u64::MAX, |&a| tolerated(a)),
                    )
                }
            };
            let bound = bound.min(self.limits.max_literal);
            if len > bound {
                self.discard(len).await?;
                oversized.push(Oversized {
                    index: literals.len(),
                    len,
                    bound,
                    announced,
                });
                literals.push(Body::Memory(Vec::new()));
            } else {
                literals.push(self.read_literal(len).await?);
            }
        }
    }

    /// Reads `len` bytes and keeps none: the connection stays in step with the server
    /// without storing a literal that is over its bound.
    async fn discard(&mut self, len: u64) -> Result<(), FrameError> {
        let mut remaining = len;
        while remaining > 0 {
            let chunk = self.inner.fill_buf().await?;
            if chunk.is_empty() {
                return Err(FrameError::Closed);
            }
            let take = chunk
                .len()
                .min(usize::try_from(remaining).unwrap_or(usize::MAX));
            self.inner.consume(take);
            remaining -= take as u64;
        }
        Ok(())
    }

    async fn read_literal(&mut self, len: u64) -> Result<Body, FrameError> {
        if len <= self.limits.spill_threshold {
            // Read into the spare capacity: zeroing it first would cost a pass over
            // every byte of mail.
            let mut bytes = Vec::with_capacity(len as usize);
            while (bytes.len() as u64) < len {
                let remaining = len - bytes.len() as u64;
                let read = (&mut self.inner)
                    .take(remaining)
                    .read_buf(&mut bytes)
                    .await?;
                if read == 0 {
                    return Err(FrameError::Closed);
                }
            }
            return Ok(Body::Memory(bytes));
        }
        let mut sink = BodySink::new(0, 0);
        let mut remaining = len;
        while remaining > 0 {
            let chunk = self.inner.fill_buf().await?;
            if chunk.is_empty() {
                return Err(FrameError::Closed);
            }
            let take = chunk.len().min(remaining as usize);
            sink.write(&chunk[..take])?;
            self.inner.consume(take);
            remaining -= take as u64;
        }
        Ok(sink.finish()?)
    }
}

/// The UID of a FETCH response whose text so far is `text` (`* 5 FETCH (UID 12 ...`),
/// when the UID came before the literal. Servers send the items in the order asked
/// (mailmove asks for UID first); one that does not gets the maximum alone as bound.
fn uid_before_literal(text: &[u8]) -> Option<u32> {
    let at = text
        .windows(5)
        .position(|w| w.eq_ignore_ascii_case(b"(UID ") || w.eq_ignore_ascii_case(b" UID "))?;
    let digits: Vec<u8> = text[at + 5..]
        .iter()
        .copied()
        .take_while(u8::is_ascii_digit)
        .take(10)
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// `Some(n)` when a line ends with `{n}` or `{n+}` (a literal of n bytes follows).
pub fn literal_announced(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.strip_suffix(b"}")?;
    let line = line.strip_suffix(b"+").unwrap_or(line);
    let open = line.iter().rposition(|&b| b == b'{')?;
    let digits = &line[open + 1..];
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn frames(input: &[u8], limits: FrameLimits) -> Vec<Frame> {
        let mut reader = FrameReader::new(input, limits);
        let mut out = Vec::new();
        loop {
            match reader.read_frame().await {
                Ok(frame) => out.push(frame),
                Err(FrameError::Closed) => return out,
                Err(other) => panic!("{other}"),
            }
        }
    }

    #[test]
    fn literal_markers() {
        assert_eq!(literal_announced(b"* 1 FETCH (BODY[] {12}\r\n"), Some(12));
        assert_eq!(literal_announced(b"A1 APPEND x {3+}\r\n"), Some(3));
        assert_eq!(literal_announced(b"* 1 FETCH (BODY[] {12}\n"), Some(12));
        assert_eq!(literal_announced(b"* OK done\r\n"), None);
        assert_eq!(literal_announced(b"* OK {}\r\n"), None);
        assert_eq!(literal_announced(b"* OK {1a}\r\n"), None);
    }

    #[tokio::test]
    async fn splits_lines_and_literals() {
        let input = b"* 1 FETCH (UID 5 BODY[] {8}\r\nab\r\ncd\r\n)\r\nA1 OK done\r\n";
        let got = frames(input, FrameLimits::default()).await;
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].text, b"* 1 FETCH (UID 5 BODY[] {8}\r\n)\r\n");
        assert!(matches!(&got[0].literals[0], Body::Memory(b) if b == b"ab\r\ncd\r\n"));
        assert_eq!(got[1].text, b"A1 OK done\r\n");
    }

    #[tokio::test]
    async fn large_literals_spill_to_a_file_byte_exact() {
        let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut input = format!("* 1 FETCH (BODY[] {{{}}}\r\n", body.len()).into_bytes();
        input.extend_from_slice(&body);
        input.extend_from_slice(b")\r\n");
        let limits = FrameLimits {
            spill_threshold: 1000,
            ..FrameLimits::default()
        };
        let mut got = frames(&input, limits).await;
        let literal = got[0].literals.pop().unwrap();
        assert!(matches!(literal, Body::File { len: 100_000, .. }));
        assert_eq!(literal.into_vec().unwrap(), body);
    }

    #[tokio::test]
    async fn a_cut_literal_is_a_closed_connection() {
        let mut reader = FrameReader::new(
            &b"* 1 FETCH (BODY[] {70}\r\nshort"[..],
            FrameLimits::default(),
        );
        assert!(matches!(reader.read_frame().await, Err(FrameError::Closed)));
    }

    #[tokio::test]
    async fn a_literal_over_the_size_announced_for_its_uid_is_read_past_and_not_kept() {
        let big = vec![b'x'; 200_000];
        let mut input = b"* 1 FETCH (UID 7 BODY[] {200000}\r\n".to_vec();
        input.extend_from_slice(&big);
        input.extend_from_slice(b")\r\n* 2 FETCH (UID 8 BODY[] {5}\r\nhello)\r\n");
        let mut reader = FrameReader::new(&input[..], FrameLimits::default());
        let sizes = std::collections::HashMap::from([(7, 10_000), (8, 5)]);
        reader.bound_literals(LiteralBound::Announced(std::sync::Arc::new(sizes)));
        let first = reader.read_frame().await.unwrap();
        assert_eq!(
            first.oversized,
            vec![Oversized {
                index: 0,
                len: 200_000,
                bound: tolerated(10_000),
                announced: Some(10_000),
            }]
        );
        assert!(matches!(&first.literals[0], Body::Memory(b) if b.is_empty()));
        // In step: the next response is read whole.
        let second = reader.read_frame().await.unwrap();
        assert!(second.oversized.is_empty());
        assert!(matches!(&second.literals[0], Body::Memory(b) if b == b"hello"));
    }

    #[tokio::test]
    async fn the_maximum_bounds_every_literal_and_tolerance_allows_small_differences() {
        assert_eq!(tolerated(10_000), 10_000 + 64 * 1024);
        assert_eq!(tolerated(80 * 1024 * 1024), 90 * 1024 * 1024);
        let limits = FrameLimits {
            max_literal: 4,
            ..FrameLimits::default()
        };
        let mut reader = FrameReader::new(&b"* LIST () \"/\" {5}\r\nINBOX\r\n"[..], limits);
        let frame = reader.read_frame().await.unwrap();
        assert_eq!(frame.oversized[0].bound, 4);
        assert_eq!(frame.oversized[0].announced, None);
    }

    #[tokio::test]
    async fn a_response_cut_by_small_literals_is_still_bounded() {
        // Each line is short; together they pass the cap on the response's text.
        let input = b"* 1 FETCH (X {1}\r\na".repeat(100);
        let limits = FrameLimits {
            max_line: 500,
            ..FrameLimits::default()
        };
        let mut reader = FrameReader::new(&input[..], limits);
        assert!(matches!(
            reader.read_frame().await,
            Err(FrameError::LineTooLong(500))
        ));
        let limits = FrameLimits {
            max_literals: 10,
            ..FrameLimits::default()
        };
        let mut reader = FrameReader::new(&input[..], limits);
        assert!(matches!(
            reader.read_frame().await,
            Err(FrameError::TooManyLiterals(10))
        ));
    }

    #[test]
    fn the_uid_is_found_before_the_literal() {
        assert_eq!(
            uid_before_literal(b"* 1 FETCH (UID 17 BODY[] {3}\r\n"),
            Some(17)
        );
        assert_eq!(
            uid_before_literal(b"* 1 FETCH (FLAGS (\\Seen) UID 4294967295 BODY[] {3}\r\n"),
            Some(u32::MAX)
        );
        assert_eq!(uid_before_literal(b"* 1 FETCH (BODY[] {3}\r\n"), None);
    }
}
