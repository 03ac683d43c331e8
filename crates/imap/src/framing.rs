//! Framing: finds where one server response ends (lines and `{n}` literals) before
//! anything tries to understand it. A response that later fails to parse is dropped
//! as one unit and the connection stays in step.
//!
//! Literals are read as they arrive; one larger than the spill threshold goes to an
//! anonymous temporary file, so a 40 MB message never sits whole in memory.

use mailmove_net::{Body, BodySink};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

/// One complete server response: its text with every literal cut out, and the
/// literals in order. The text keeps each `{n}` marker, so the parser knows where
/// the next literal belongs.
#[derive(Debug)]
pub struct Frame {
    pub text: Vec<u8>,
    pub literals: Vec<Body>,
}

/// Limits that keep a misbehaving server from exhausting memory.
#[derive(Clone, Copy, Debug)]
pub struct FrameLimits {
    /// Literals above this many bytes go to a temporary file.
    pub spill_threshold: u64,
    /// A single line (outside literals) longer than this is a protocol error.
    pub max_line: usize,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            spill_threshold: 2 * 1024 * 1024,
            max_line: 64 * 1024 * 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("the server closed the connection")]
    Closed,
    #[error("the server sent a line longer than {0} bytes")]
    LineTooLong(usize),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub struct FrameReader<R> {
    inner: BufReader<R>,
    limits: FrameLimits,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R, limits: FrameLimits) -> Self {
        FrameReader {
            inner: BufReader::with_capacity(64 * 1024, inner),
            limits,
        }
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
        loop {
            let start = text.len();
            let read = (&mut self.inner)
                .take(self.limits.max_line as u64 + 1)
                .read_until(b'\n', &mut text)
                .await?;
            if read == 0 {
                return Err(FrameError::Closed);
            }
            if !text.ends_with(b"\n") {
                if read > self.limits.max_line {
                    return Err(FrameError::LineTooLong(self.limits.max_line));
                }
                return Err(FrameError::Closed);
            }
            match literal_announced(&text[start..]) {
                Some(len) => literals.push(self.read_literal(len).await?),
                None => return Ok(Frame { text, literals }),
            }
        }
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
}
