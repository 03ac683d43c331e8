//! `verify --content`: the bytes of every message found at the destination read back
//! from both sides and compared, so a person can see which copies the destination
//! keeps byte for byte and what it changed in the others (a final line break added,
//! line endings, 8-bit header bytes, header fields, or the whole message rendered
//! again).

use std::collections::HashMap;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::connector::{Destination, FetchedMessage, SideError, Sink, Source};
use crate::plan::SourceMessage;

/// Messages read back at once from each side.
const CHUNK: usize = 32;
/// What the messages read back at once may hold in memory.
const BUDGET: u64 = 64 * 1024 * 1024;

/// What the comparison found, over every folder.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ContentReport {
    /// Copies byte for byte the source's.
    pub identical: u64,
    /// Copies the destination changed.
    pub changed: Vec<Changed>,
}

/// One copy the destination changed.
#[derive(Clone, Debug, Serialize)]
pub struct Changed {
    pub folder: String,
    pub uid: u32,
    pub message_id: Option<String>,
    /// How, in words: see [`difference`].
    pub how: &'static str,
}

/// One folder's comparisons: (source UID, how it differs, `None` when identical).
pub type Compared = Vec<(u32, Option<&'static str>)>;

impl ContentReport {
    pub fn add(&mut self, folder: &str, compared: Compared, by_uid: &HashMap<u32, &SourceMessage>) {
        for (uid, how) in compared {
            match how {
                None => self.identical += 1,
                Some(how) => self.changed.push(Changed {
                    folder: folder.to_string(),
                    uid,
                    message_id: by_uid.get(&uid).and_then(|m| m.message_id.clone()),
                    how,
                }),
            }
        }
    }
}

/// Reads each pair's bytes from both open folders and compares them. A message one
/// side no longer returns is left out.
pub(crate) async fn compare<S: Source, D: Destination>(
    src: &mut S,
    dst: &mut D,
    pairs: &[(u32, u32)],
) -> Result<Compared, SideError> {
    let mut compared = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(CHUNK) {
        let source_uids: Vec<u32> = chunk.iter().map(|(s, _)| *s).collect();
        let dest_uids: Vec<u32> = chunk.iter().map(|(_, d)| *d).collect();
        let (src, dst) = (&mut *src, &mut *dst);
        let sent = read(|sink| async move { src.fetch(&source_uids, &sink).await }).await?;
        let stored = read(|sink| async move { dst.read_back(&dest_uids, &sink).await }).await?;
        for (source_uid, dest_uid) in chunk {
            if let (Some(a), Some(b)) = (sent.get(source_uid), stored.get(dest_uid)) {
                compared.push((*source_uid, difference(a, b)));
            }
        }
    }
    Ok(compared)
}

/// One side's bytes of the messages `fetch` streams into the sink it is given: UID ->
/// bytes. The fetch owns the sink, so the queue ends when the fetch does.
async fn read<F, Fut>(fetch: F) -> Result<HashMap<u32, Vec<u8>>, SideError>
where
    F: FnOnce(Sink) -> Fut,
    Fut: std::future::Future<Output = Result<(), SideError>>,
{
    let (sender, queue) = mpsc::channel(CHUNK);
    let (fetched, bodies) = tokio::join!(fetch(Sink::new(sender, BUDGET)), collect(queue));
    fetched.map(|()| bodies)
}

async fn collect(mut queue: mpsc::Receiver<FetchedMessage>) -> HashMap<u32, Vec<u8>> {
    let mut bodies = HashMap::new();
    while let Some(message) = queue.recv().await {
        // A spooled body that cannot be read back compares as empty: "changed".
        bodies.insert(message.uid, message.body.into_vec().unwrap_or_default());
    }
    bodies
}

/// How a stored copy differs from the bytes sent; `None` when identical.
pub fn difference(sent: &[u8], stored: &[u8]) -> Option<&'static str> {
    if sent == stored {
        return None;
    }
    if stored.len() == sent.len() + 2 && stored.starts_with(sent) && stored.ends_with(b"\r\n") {
        return Some("a final line break added");
    }
    if crlf(sent) == crlf(stored) {
        return Some("line endings changed");
    }
    let (sent_head, sent_body) = split(sent);
    let (stored_head, stored_body) = split(stored);
    if crlf(sent_body) == crlf(stored_body) {
        let only_8bit = sent_head.len() == stored_head.len()
            && sent_head
                .iter()
                .zip(stored_head)
                .all(|(a, b)| a == b || *a >= 0x80);
        return Some(if only_8bit {
            "8-bit header bytes rewritten"
        } else {
            "header fields changed"
        });
    }
    Some("rendered again (other bytes)")
}

/// Line endings made CRLF throughout.
fn crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32);
    let mut previous = 0u8;
    for &b in bytes {
        if b == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        previous = b;
    }
    out
}

/// Header and body, at the first empty line.
fn split(bytes: &[u8]) -> (&[u8], &[u8]) {
    let at = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .or_else(|| bytes.windows(2).position(|w| w == b"\n\n").map(|p| p + 2))
        .unwrap_or(bytes.len());
    bytes.split_at(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_named_for_what_servers_do() {
        let sent = b"Subject: Gr\xfc\xdfe\r\nFrom: a@x\r\n\r\nline one\r\nline two";
        assert_eq!(difference(sent, sent), None);
        let mut courier = sent.to_vec();
        courier.extend_from_slice(b"\r\n");
        assert_eq!(difference(sent, &courier), Some("a final line break added"));
        let bare = b"Subject: a\n\nbody\nmore\n";
        assert_eq!(
            difference(bare, b"Subject: a\r\n\r\nbody\r\nmore\r\n"),
            Some("line endings changed")
        );
        let cyrus = b"Subject: GrXXe\r\nFrom: a@x\r\n\r\nline one\r\nline two";
        assert_eq!(
            difference(sent, cyrus),
            Some("8-bit header bytes rewritten")
        );
        let added = b"Subject: Gr\xfc\xdfe\r\nFrom: a@x\r\nX-Seen: 1\r\n\r\nline one\r\nline two";
        assert_eq!(difference(sent, added), Some("header fields changed"));
        let other = b"Subject: Gr\xfc\xdfe\r\nFrom: a@x\r\n\r\n--b\r\nline one";
        assert_eq!(
            difference(sent, other),
            Some("rendered again (other bytes)")
        );
    }
}
