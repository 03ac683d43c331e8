//! A small element tree read from a byte stream, for EWS answers. Every answer but the
//! MIME content is small, so it is kept as a tree; `MimeContent` is decoded from base64
//! as its text streams past and stored once, as bytes, beside the tree.
//!
//! Elements are known by their local names: EWS answers use the `m:`/`t:` prefixes
//! inconsistently between versions, and no two elements read here share a local name
//! in the same place.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// The element whose text is decoded as it streams (MS-OXWSCORE MimeContentType).
const MIME_ELEMENT: &str = "MimeContent";
/// Added to a `MimeContent` node: the index of its bytes in [`Document::blobs`].
pub(crate) const BLOB_INDEX: &str = "mailmove-blob";
/// Added to a `MimeContent` node whose content was over the bound and not kept: how
/// many bytes it decodes to, at least.
pub(crate) const OVERSIZED: &str = "mailmove-oversized";
/// Text, names and attributes outside `MimeContent` above this is not an EWS answer
/// mailmove asked for.
const MAX_TEXT: usize = 64 * 1024 * 1024;
/// Elements above this are not an answer mailmove asked for either (a page of 1,000
/// items is some 30,000).
const MAX_NODES: usize = 1_000_000;
const MAX_DEPTH: usize = 128;
/// Base64 characters gathered before a bulk decode.
const DECODE_CHUNK: usize = 256 * 1024;

const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Node {
    /// The local name, without a namespace prefix.
    pub name: String,
    /// Attributes by local name, values unescaped.
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
    /// The text directly inside this element, unescaped.
    pub text: String,
}

impl Node {
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The descendant reached by following child names.
    pub fn path(&self, names: &[&str]) -> Option<&Node> {
        names.iter().try_fold(self, |node, name| node.child(name))
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The text of a child element, if present.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }
}

#[derive(Debug, Default)]
pub(crate) struct Document {
    /// The document element.
    pub root: Node,
    /// Decoded `MimeContent`, in document order.
    pub blobs: Vec<Vec<u8>>,
}

/// Takes the decoded bytes of a `MimeContent` node out of [`Document::blobs`].
pub(crate) fn take_blob(blobs: &mut [Vec<u8>], node: &Node) -> Option<Vec<u8>> {
    let index: usize = node.attr(BLOB_INDEX)?.parse().ok()?;
    blobs.get_mut(index).map(std::mem::take)
}

/// Why an answer could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The connection failed or went quiet in the middle of the answer.
    Io(String),
    /// The bytes are not the XML expected.
    Malformed(String),
}

impl From<&str> for ReadError {
    fn from(text: &str) -> Self {
        ReadError::Malformed(text.to_string())
    }
}

impl From<String> for ReadError {
    fn from(text: String) -> Self {
        ReadError::Malformed(text)
    }
}

impl From<ReadError> for crate::Error {
    fn from(error: ReadError) -> Self {
        match error {
            ReadError::Io(text) => crate::Error::ConnectionLost(text),
            ReadError::Malformed(text) => crate::Error::Protocol(text),
        }
    }
}

/// Reads a whole document. `MimeContent` is decoded to bytes as it streams, at most
/// the default maximum message size of it (see [`read_document_within`]).
pub(crate) async fn read_document<R: AsyncBufRead + Unpin>(
    input: R,
) -> Result<Document, ReadError> {
    read_document_within(input, mailmove_net::DEFAULT_MAX_MESSAGE_SIZE).await
}

/// [`read_document`], keeping at most `max_mime` bytes of decoded `MimeContent` per
/// element: the content of one that would pass it is read through and thrown away,
/// and the element carries [`OVERSIZED`] instead of bytes. A document whose kept MIME
/// content passes twice that is refused (mailmove asks for a few MiB at a time).
pub(crate) async fn read_document_within<R: AsyncBufRead + Unpin>(
    input: R,
    max_mime: u64,
) -> Result<Document, ReadError> {
    let mut mime_kept: u64 = 0;
    let mut nodes = 0usize;
    let mut reader = Reader::from_reader(input);
    reader.config_mut().check_end_names = true;
    let mut buf = Vec::new();
    let mut stack = vec![Node::default()];
    let mut blobs = Vec::new();
    let mut text_bytes = 0usize;
    loop {
        buf.clear();
        let event = reader
            .read_event_into_async(&mut buf)
            .await
            .map_err(|e| match e {
                quick_xml::Error::Io(io) => ReadError::Io(io.to_string()),
                other => ReadError::Malformed(format!("not XML: {other}")),
            })?;
        if let Event::Start(start) | Event::Empty(start) = &event {
            nodes += 1;
            text_bytes += start.len();
            if nodes > MAX_NODES {
                return Err(format!("more than {MAX_NODES} elements in one answer").into());
            }
        }
        match event {
            Event::Start(start) => {
                if stack.len() > MAX_DEPTH {
                    return Err("elements nested too deeply".into());
                }
                let mut node = element(&start)?;
                if node.name == MIME_ELEMENT {
                    let bytes = match decode_base64_text(&mut reader, max_mime).await? {
                        Decoded::Kept(bytes) => bytes,
                        Decoded::Over { at_least } => {
                            node.attrs.push((OVERSIZED.into(), at_least.to_string()));
                            Vec::new()
                        }
                    };
                    mime_kept += bytes.len() as u64;
                    if mime_kept > max_mime.saturating_mul(2) {
                        return Err("more MIME content in one answer than asked for".into());
                    }
                    node.attrs
                        .push((BLOB_INDEX.into(), blobs.len().to_string()));
                    blobs.push(bytes);
                }
                stack.push(node);
            }
            Event::Empty(start) => {
                let node = element(&start)?;
                last(&mut stack).children.push(node);
            }
            Event::End(_) => {
                let node = stack.pop().ok_or("unbalanced end tag")?;
                if stack.is_empty() {
                    return Err("unbalanced end tag".into());
                }
                last(&mut stack).children.push(node);
            }
            Event::Text(text) => {
                let text = text.xml10_content();
                text_bytes += text.len();
                last(&mut stack).text.push_str(&text);
            }
            Event::CData(data) => {
                let text = data.xml10_content();
                text_bytes += text.len();
                last(&mut stack).text.push_str(&text);
            }
            Event::GeneralRef(reference) => {
                let name = reference.xml10_content();
                let resolved = quick_xml::escape::unescape(&format!("&{name};"))
                    .map_err(|e| format!("bad reference &{name};: {e}"))?
                    .into_owned();
                text_bytes += resolved.len();
                last(&mut stack).text.push_str(&resolved);
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
        if text_bytes > MAX_TEXT {
            return Err("answer too large".into());
        }
    }
    if stack.len() != 1 {
        return Err("the answer ended in the middle of an element".into());
    }
    let document = stack.pop().unwrap_or_default();
    let root = document.children.into_iter().next().ok_or("empty answer")?;
    Ok(Document { root, blobs })
}

fn last(stack: &mut [Node]) -> &mut Node {
    // The stack always holds the document node at the bottom; `End` refuses to pop it.
    stack
        .last_mut()
        .expect("the document node stays on the stack")
}

fn element(start: &BytesStart<'_>) -> Result<Node, ReadError> {
    let name = start.local_name().as_ref().to_string();
    let mut attrs = Vec::new();
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|e| format!("bad attribute in <{name}>: {e}"))?;
        let key = attribute.key.local_name().as_ref().to_string();
        let value = attribute
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| format!("bad attribute value in <{name}>: {e}"))?
            .into_owned();
        attrs.push((key, value));
    }
    Ok(Node {
        name,
        attrs,
        ..Node::default()
    })
}

/// What [`decode_base64_text`] made of a `MimeContent`.
enum Decoded {
    Kept(Vec<u8>),
    /// Over the room it had: read through, nothing kept.
    Over {
        at_least: u64,
    },
}

/// Decodes the base64 text that follows a start tag, up to (not including) the next
/// `<`, straight from the reader's buffer: the text is never held whole. Whitespace
/// and the character references for CR, LF and TAB are skipped. Past `room` decoded
/// bytes, the rest is read through and only counted.
async fn decode_base64_text<R: AsyncBufRead + Unpin>(
    reader: &mut Reader<R>,
    room: u64,
) -> Result<Decoded, ReadError> {
    let mut over: Option<u64> = None;
    let mut decoded = Vec::new();
    let mut pending: Vec<u8> = Vec::with_capacity(DECODE_CHUNK + 4);
    let mut reference: Option<Vec<u8>> = None;
    let mut stream = reader.stream();
    loop {
        let chunk = stream
            .fill_buf()
            .await
            .map_err(|e| ReadError::Io(e.to_string()))?;
        if chunk.is_empty() {
            return Err("the answer ended inside MIME content".into());
        }
        let end = chunk.iter().position(|&b| b == b'<');
        let text = &chunk[..end.unwrap_or(chunk.len())];
        for &byte in text {
            if let Some(name) = &mut reference {
                if byte == b';' {
                    if !is_whitespace_reference(name) {
                        return Err("unexpected character reference in MIME content".into());
                    }
                    reference = None;
                } else if name.len() < 8 {
                    name.push(byte);
                } else {
                    return Err("unexpected reference in MIME content".into());
                }
                continue;
            }
            match byte {
                b' ' | b'\t' | b'\r' | b'\n' => {}
                b'&' => reference = Some(Vec::new()),
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' | b'=' => pending.push(byte),
                other => {
                    return Err(format!("byte 0x{other:02x} in MIME content is not base64").into());
                }
            }
        }
        let consumed = text.len();
        stream.consume(consumed);
        if pending.len() >= DECODE_CHUNK {
            let whole = pending.len() / 4 * 4;
            match &mut over {
                Some(counted) => *counted += whole as u64 / 4 * 3,
                None => {
                    BASE64
                        .decode_vec(&pending[..whole], &mut decoded)
                        .map_err(|e| format!("MIME content is not valid base64: {e}"))?;
                    if decoded.len() as u64 > room {
                        over = Some(decoded.len() as u64);
                        decoded = Vec::new();
                    }
                }
            }
            pending.drain(..whole);
        }
        if end.is_some() {
            break;
        }
    }
    if reference.is_some() {
        return Err("unfinished reference in MIME content".into());
    }
    if let Some(counted) = over {
        return Ok(Decoded::Over {
            at_least: counted + pending.len() as u64 / 4 * 3,
        });
    }
    BASE64
        .decode_vec(&pending, &mut decoded)
        .map_err(|e| format!("MIME content is not valid base64: {e}"))?;
    if decoded.len() as u64 > room {
        return Ok(Decoded::Over {
            at_least: decoded.len() as u64,
        });
    }
    Ok(Decoded::Kept(decoded))
}

fn is_whitespace_reference(name: &[u8]) -> bool {
    matches!(
        name,
        b"#13" | b"#10" | b"#9" | b"#xD" | b"#xd" | b"#xA" | b"#xa" | b"#x9" | b"#x0D" | b"#x0A"
    )
}

/// Escapes text for element content and for double-quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Kept in attribute values, which XML would otherwise normalise to spaces.
            '\r' => out.push_str("&#13;"),
            '\n' => out.push_str("&#10;"),
            '\t' => out.push_str("&#9;"),
            // Not allowed in XML 1.0 at all: dropped rather than sent to fail the request.
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(text: &str) -> Document {
        read_document(text.as_bytes()).await.expect("parses")
    }

    #[tokio::test]
    async fn elements_by_local_name_with_text_and_references() {
        let doc = parse(
            r#"<?xml version="1.0"?><s:Envelope xmlns:s="x"><s:Body><t:Subject>Tom &amp; Jerry &#233;</t:Subject><t:Empty A="1&lt;2"/></s:Body></s:Envelope>"#,
        )
        .await;
        assert_eq!(doc.root.name, "Envelope");
        let body = doc.root.child("Body").unwrap();
        assert_eq!(body.child_text("Subject"), Some("Tom & Jerry é"));
        assert_eq!(body.child("Empty").unwrap().attr("A"), Some("1<2"));
    }

    #[tokio::test]
    async fn mime_content_is_decoded_across_small_reads() {
        let mime = b"From: a@example.com\r\nSubject: x\r\n\r\nbody\xff\x00".repeat(50);
        let encoded = base64::engine::general_purpose::STANDARD.encode(&mime);
        // Line-wrapped, with a character reference, read 7 bytes at a time.
        let wrapped: String = encoded
            .as_bytes()
            .chunks(76)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("&#13;\n");
        let xml = format!(
            r#"<Items><t:Message><t:MimeContent CharacterSet="UTF-8">{wrapped}</t:MimeContent><t:IsRead>true</t:IsRead></t:Message></Items>"#
        );
        let reader = tokio::io::BufReader::with_capacity(7, xml.as_bytes());
        let mut doc = read_document(reader).await.unwrap();
        let message = doc.root.child("Message").unwrap().clone();
        let content = message.child("MimeContent").unwrap();
        assert_eq!(content.attr("CharacterSet"), Some("UTF-8"));
        assert_eq!(take_blob(&mut doc.blobs, content).unwrap(), mime);
        assert_eq!(message.child_text("IsRead"), Some("true"));
    }

    #[tokio::test]
    async fn empty_mime_content_decodes_to_nothing() {
        let mut doc = read_document(&b"<A><MimeContent></MimeContent><B/></A>"[..])
            .await
            .unwrap();
        let node = doc.root.child("MimeContent").unwrap().clone();
        assert_eq!(take_blob(&mut doc.blobs, &node).unwrap(), Vec::<u8>::new());
        assert!(doc.root.child("B").is_some());
    }

    #[tokio::test]
    async fn broken_answers_are_errors() {
        assert!(read_document(&b"<A><B></A>"[..]).await.is_err());
        assert!(
            read_document(&b"<A><MimeContent>AAA*</MimeContent></A>"[..])
                .await
                .is_err()
        );
        assert!(read_document(&b"<A><MimeContent>QUJD"[..]).await.is_err());
        assert!(read_document(&b""[..]).await.is_err());
        assert!(
            read_document(&b"<html><body>Bad gateway"[..])
                .await
                .is_err()
        );
    }

    #[test]
    fn escaping() {
        assert_eq!(escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&apos;");
        assert_eq!(escape("x\u{1}y"), "xy");
    }

    #[tokio::test]
    async fn mime_content_over_the_maximum_is_read_through_and_not_kept() {
        use base64::Engine;
        let big = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 3_000_000]);
        let small = base64::engine::general_purpose::STANDARD.encode(b"hello");
        let text = format!(
            "<A><MimeContent>{big}</MimeContent><MimeContent>{small}</MimeContent><B/></A>"
        );
        let mut doc = read_document_within(text.as_bytes(), 1_000_000)
            .await
            .unwrap();
        let first = &doc.root.children[0];
        let at_least: u64 = first.attr(OVERSIZED).unwrap().parse().unwrap();
        assert!((1_000_000..=3_000_000).contains(&at_least), "{at_least}");
        assert_eq!(take_blob(&mut doc.blobs, first), Some(Vec::new()));
        let second = doc.root.children[1].clone();
        assert_eq!(second.attr(OVERSIZED), None);
        assert_eq!(take_blob(&mut doc.blobs, &second).unwrap(), b"hello");
        assert_eq!(doc.root.children[2].name, "B");
    }

    #[tokio::test]
    async fn an_answer_of_endless_elements_is_refused() {
        let text = format!("<A>{}</A>", "<b x='1'/>".repeat(MAX_NODES + 1));
        let error = read_document(text.as_bytes()).await.unwrap_err();
        assert!(
            format!("{error:?}").contains("elements in one answer"),
            "{error:?}"
        );
    }
}
