//! Lenient parsing of one framed response into the few shapes mailmove needs.
//!
//! Real servers are sloppy; each tolerance is named in [`crate::quirks`]. What cannot
//! be understood becomes [`Response::Unparsed`], never a lost connection: a tagged
//! completion is always recognised, because losing one would hang the command.

use crate::framing::Frame;
use crate::quirks;
use mailmove_net::Body;

#[derive(Debug)]
pub enum Response {
    /// `+ ...`: the server waits for a literal or a SASL answer.
    Continue(String),
    Tagged {
        tag: String,
        status: Status,
    },
    Untagged(Untagged),
    /// A response that could not be understood; kept for the log.
    Unparsed {
        tag: Option<String>,
        text: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusKind {
    Ok,
    No,
    Bad,
    Bye,
    Preauth,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub kind: StatusKind,
    pub code: Option<Code>,
    pub text: String,
}

impl Status {
    /// The text as a person reads it: `[LIMIT] Mail size is too large`.
    pub fn describe(&self) -> String {
        match &self.code {
            Some(code) => format!("[{}] {}", code.name(), self.text)
                .trim_end()
                .to_string(),
            None => self.text.clone(),
        }
    }
}

/// Response codes (the bracketed part of a status response).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Code {
    /// UIDPLUS: where APPEND put its message(s), in the order they were sent (several
    /// after a MULTIAPPEND).
    AppendUid {
        uidvalidity: u32,
        uids: Vec<u32>,
    },
    UidValidity(u32),
    UidNext(u32),
    PermanentFlags(Vec<String>),
    Capability(Vec<String>),
    ReadOnly,
    ReadWrite,
    /// Any other code, with its name upper-cased (`LIMIT`, `OVERQUOTA`, `ALERT`,
    /// `AUTHENTICATIONFAILED`, `THROTTLED`, ...) and its raw arguments.
    Other(String, String),
}

impl Code {
    pub fn name(&self) -> &str {
        match self {
            Code::AppendUid { .. } => "APPENDUID",
            Code::UidValidity(_) => "UIDVALIDITY",
            Code::UidNext(_) => "UIDNEXT",
            Code::PermanentFlags(_) => "PERMANENTFLAGS",
            Code::Capability(_) => "CAPABILITY",
            Code::ReadOnly => "READ-ONLY",
            Code::ReadWrite => "READ-WRITE",
            Code::Other(name, _) => name,
        }
    }
}

#[derive(Debug)]
pub enum Untagged {
    Status(Status),
    Capability(Vec<String>),
    List(ListEntry),
    Lsub(ListEntry),
    Namespace(Namespaces),
    MailboxStatus {
        mailbox: Vec<u8>,
        items: Vec<(String, u64)>,
    },
    Search(Vec<u32>),
    Exists(u32),
    Recent(u32),
    Expunge(u32),
    Flags(Vec<String>),
    Fetch(Box<Fetch>),
    Quota {
        root: Vec<u8>,
        resources: Vec<QuotaResource>,
    },
    QuotaRoot {
        mailbox: Vec<u8>,
        roots: Vec<Vec<u8>>,
    },
    Other(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListEntry {
    pub attributes: Vec<String>,
    pub delimiter: Option<char>,
    /// The raw name as the server sent it (modified UTF-7 or, from some servers, UTF-8).
    pub name: Vec<u8>,
}

impl ListEntry {
    pub fn has_attribute(&self, attribute: &str) -> bool {
        self.attributes
            .iter()
            .any(|a| a.eq_ignore_ascii_case(attribute))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Namespaces {
    /// (prefix, delimiter) of each personal namespace.
    pub personal: Vec<(Vec<u8>, Option<char>)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaResource {
    pub name: String,
    pub usage: u64,
    pub limit: u64,
}

/// The items of one FETCH response that mailmove asks for.
#[derive(Debug, Default)]
pub struct Fetch {
    pub seq: u32,
    pub uid: Option<u32>,
    pub flags: Option<Vec<String>>,
    pub internal_date: Option<String>,
    pub size: Option<u64>,
    /// `BODY[]` / `RFC822`: the whole message.
    pub body: Option<Body>,
    /// `BODY[HEADER.FIELDS (...)]` / `BODY[HEADER]`.
    pub header: Option<Vec<u8>>,
    /// A literal of this response was over its bound and thrown away (see
    /// [`crate::framing::Oversized`]): `body` and `header` are then `None`.
    pub oversized: Option<crate::framing::Oversized>,
}

pub fn parse(frame: Frame) -> Response {
    let Frame { text, literals, .. } = frame;
    let mut cursor = Cursor {
        text: &text,
        pos: 0,
        literals: literals.into_iter(),
    };
    let fallback_tag = first_word(&text);
    match cursor.response() {
        Some(response) => response,
        None => {
            let printable = String::from_utf8_lossy(&text).trim_end().to_string();
            let tag = fallback_tag.filter(|t| t != "*" && t != "+");
            // A tagged completion must never be lost: find its status word by hand.
            if let Some(tag) = &tag
                && let Some(status) = quirks::salvage_tagged_status(&text, tag.len())
            {
                return Response::Tagged {
                    tag: tag.clone(),
                    status,
                };
            }
            Response::Unparsed {
                tag,
                text: printable,
            }
        }
    }
}

fn first_word(text: &[u8]) -> Option<String> {
    let end = text
        .iter()
        .position(|&b| b == b' ' || b == b'\r' || b == b'\n')?;
    Some(String::from_utf8_lossy(&text[..end]).into_owned())
}

struct Cursor<'a> {
    text: &'a [u8],
    pos: usize,
    literals: std::vec::IntoIter<Body>,
}

impl Cursor<'_> {
    fn response(&mut self) -> Option<Response> {
        if self.eat(b"+") {
            self.eat(b" ");
            return Some(Response::Continue(self.rest_text()));
        }
        if self.eat(b"* ") {
            return self.untagged().map(Response::Untagged);
        }
        let tag = self.atom()?;
        self.spaces();
        let status = self.status()?;
        Some(Response::Tagged { tag, status })
    }

    fn untagged(&mut self) -> Option<Untagged> {
        self.spaces();
        if self.peek().is_some_and(|b| b.is_ascii_digit()) {
            let number = self.number()? as u32;
            self.spaces();
            let word = self.atom()?.to_ascii_uppercase();
            return match word.as_str() {
                "EXISTS" => Some(Untagged::Exists(number)),
                "RECENT" => Some(Untagged::Recent(number)),
                "EXPUNGE" => Some(Untagged::Expunge(number)),
                "FETCH" => {
                    self.spaces();
                    self.fetch(number).map(|f| Untagged::Fetch(Box::new(f)))
                }
                _ => Some(Untagged::Other(self.whole_text())),
            };
        }
        let save = self.pos;
        let word = self.atom()?.to_ascii_uppercase();
        match word.as_str() {
            "OK" | "NO" | "BAD" | "BYE" | "PREAUTH" => {
                self.pos = save;
                self.status().map(Untagged::Status)
            }
            "CAPABILITY" => Some(Untagged::Capability(self.words())),
            "LIST" => self.list_entry().map(Untagged::List),
            "LSUB" => self.list_entry().map(Untagged::Lsub),
            "NAMESPACE" => self.namespace().map(Untagged::Namespace),
            "STATUS" => self.mailbox_status(),
            "SEARCH" => {
                let mut uids = Vec::new();
                loop {
                    self.spaces();
                    match self.peek() {
                        Some(b) if b.is_ascii_digit() => uids.push(self.number()? as u32),
                        // `(MODSEQ n)` after the numbers (CONDSTORE) is not needed.
                        _ => break,
                    }
                }
                Some(Untagged::Search(uids))
            }
            "FLAGS" => {
                self.spaces();
                self.flag_list().map(Untagged::Flags)
            }
            "QUOTA" => {
                self.spaces();
                let root = self.astring()?;
                self.spaces();
                let mut resources = Vec::new();
                // quirks::QUOTA_WITHOUT_RESOURCES
                if self.at_end() {
                    return Some(Untagged::Quota { root, resources });
                }
                self.expect(b'(')?;
                loop {
                    self.spaces();
                    if self.eat(b")") {
                        break;
                    }
                    let name = self.atom()?.to_ascii_uppercase();
                    self.spaces();
                    let usage = self.number()?;
                    self.spaces();
                    let limit = self.number()?;
                    resources.push(QuotaResource { name, usage, limit });
                }
                Some(Untagged::Quota { root, resources })
            }
            "QUOTAROOT" => {
                self.spaces();
                let mailbox = self.astring()?;
                let mut roots = Vec::new();
                loop {
                    self.spaces();
                    if self.at_end() {
                        break;
                    }
                    roots.push(self.astring()?);
                }
                Some(Untagged::QuotaRoot { mailbox, roots })
            }
            _ => Some(Untagged::Other(self.whole_text())),
        }
    }

    fn status(&mut self) -> Option<Status> {
        let kind = match self.atom()?.to_ascii_uppercase().as_str() {
            "OK" => StatusKind::Ok,
            "NO" => StatusKind::No,
            "BAD" => StatusKind::Bad,
            "BYE" => StatusKind::Bye,
            "PREAUTH" => StatusKind::Preauth,
            _ => return None,
        };
        self.spaces();
        let code = if self.eat(b"[") { self.code() } else { None };
        self.spaces();
        // quirks::STATUS_WITHOUT_TEXT: `A1 OK` with no text at all.
        let text = self.rest_text();
        Some(Status { kind, code, text })
    }

    fn code(&mut self) -> Option<Code> {
        let name = self.atom_until(b"] ")?.to_ascii_uppercase();
        let code = match name.as_str() {
            "APPENDUID" => {
                self.spaces();
                let uidvalidity = self.number()? as u32;
                self.spaces();
                let set = self.atom_until(b"] ")?;
                Code::AppendUid {
                    uidvalidity,
                    uids: uid_set(&set)?,
                }
            }
            "UIDVALIDITY" => {
                self.spaces();
                Code::UidValidity(self.number()? as u32)
            }
            "UIDNEXT" => {
                self.spaces();
                Code::UidNext(self.number()? as u32)
            }
            "PERMANENTFLAGS" => {
                self.spaces();
                Code::PermanentFlags(self.flag_list()?)
            }
            "CAPABILITY" => Code::Capability(self.words_until(b']')),
            "READ-ONLY" => Code::ReadOnly,
            "READ-WRITE" => Code::ReadWrite,
            _ => {
                let start = self.pos;
                while self
                    .peek()
                    .is_some_and(|b| b != b']' && b != b'\r' && b != b'\n')
                {
                    self.pos += 1;
                }
                let args = String::from_utf8_lossy(&self.text[start..self.pos])
                    .trim()
                    .to_string();
                Code::Other(name, args)
            }
        };
        self.spaces();
        self.eat(b"]");
        Some(code)
    }

    fn fetch(&mut self, seq: u32) -> Option<Fetch> {
        let mut fetch = Fetch {
            seq,
            ..Fetch::default()
        };
        self.expect(b'(')?;
        loop {
            self.spaces();
            if self.eat(b")") {
                return Some(fetch);
            }
            let name = self.fetch_item_name()?.to_ascii_uppercase();
            self.spaces();
            match name.as_str() {
                "UID" => fetch.uid = Some(self.number()? as u32),
                "FLAGS" => fetch.flags = Some(self.flag_list()?),
                "INTERNALDATE" => fetch.internal_date = self.nstring().map(|b| lossy(&b)),
                "RFC822.SIZE" => fetch.size = Some(self.size_number()?),
                "BODY[]" | "RFC822" | "BINARY[]" => fetch.body = self.nstring_literal(),
                n if n.starts_with("BODY[HEADER") || n == "RFC822.HEADER" => {
                    fetch.header = self.nstring_literal().and_then(|l| l.into_vec().ok());
                }
                _ => self.skip_value()?,
            }
        }
    }

    /// `BODY[HEADER.FIELDS (MESSAGE-ID)]<0>` as one name: brackets may hold spaces and lists.
    fn fetch_item_name(&mut self) -> Option<String> {
        let start = self.pos;
        let mut depth = 0usize;
        while let Some(b) = self.peek() {
            match b {
                b'[' => depth += 1,
                b']' => depth = depth.saturating_sub(1),
                b' ' | b'(' | b')' if depth == 0 => break,
                b'\r' | b'\n' => break,
                _ => {}
            }
            self.pos += 1;
        }
        if self.pos == start {
            return None;
        }
        let mut name = String::from_utf8_lossy(&self.text[start..self.pos]).into_owned();
        // Drop a partial-fetch origin `<0>` and the field list: callers match on the prefix.
        if let Some(angle) = name.find(']').map(|i| i + 1) {
            name.truncate(angle);
        }
        if name.starts_with("BODY[HEADER.FIELDS") || name.starts_with("body[header.fields") {
            return Some("BODY[HEADER.FIELDS]".to_string());
        }
        Some(name)
    }

    fn list_entry(&mut self) -> Option<ListEntry> {
        self.spaces();
        let attributes = self.flag_list()?;
        self.spaces();
        let delimiter = if self.eat_word_ci(b"NIL") {
            None
        } else {
            self.quoted()?.first().map(|&b| b as char)
        };
        self.spaces();
        let name = self.astring()?;
        Some(ListEntry {
            attributes,
            delimiter,
            name,
        })
    }

    fn namespace(&mut self) -> Option<Namespaces> {
        self.spaces();
        let mut namespaces = Namespaces::default();
        if self.eat_word_ci(b"NIL") {
            return Some(namespaces);
        }
        self.expect(b'(')?;
        loop {
            self.spaces();
            if self.eat(b")") {
                break;
            }
            self.expect(b'(')?;
            self.spaces();
            let prefix = self.astring()?;
            self.spaces();
            let delimiter = if self.eat_word_ci(b"NIL") {
                None
            } else {
                self.quoted().and_then(|d| d.first().map(|&b| b as char))
            };
            // Namespace extensions (RFC 2342 §5) are skipped.
            loop {
                self.spaces();
                if self.eat(b")") {
                    break;
                }
                self.skip_value()?;
            }
            namespaces.personal.push((prefix, delimiter));
        }
        Some(namespaces)
    }

    fn mailbox_status(&mut self) -> Option<Untagged> {
        self.spaces();
        let mailbox = self.astring()?;
        self.spaces();
        self.expect(b'(')?;
        let mut items = Vec::new();
        loop {
            self.spaces();
            if self.eat(b")") {
                break;
            }
            let name = self.atom()?.to_ascii_uppercase();
            self.spaces();
            let value = self.number()?;
            items.push((name, value));
        }
        Some(Untagged::MailboxStatus { mailbox, items })
    }

    // ---- tokens ----

    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        matches!(self.peek(), None | Some(b'\r') | Some(b'\n'))
    }

    fn eat(&mut self, token: &[u8]) -> bool {
        if self.text[self.pos..].starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn eat_word_ci(&mut self, word: &[u8]) -> bool {
        let end = self.pos + word.len();
        if end <= self.text.len()
            && self.text[self.pos..end].eq_ignore_ascii_case(word)
            && !self.text.get(end).is_some_and(|b| is_atom_char(*b))
        {
            self.pos = end;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Some(())
        } else {
            None
        }
    }

    /// quirks::EXTRA_SPACES: several spaces where one belongs.
    fn spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    fn atom(&mut self) -> Option<String> {
        let start = self.pos;
        while self.peek().is_some_and(is_atom_char) {
            self.pos += 1;
        }
        (self.pos > start).then(|| lossy(&self.text[start..self.pos]))
    }

    fn atom_until(&mut self, stops: &[u8]) -> Option<String> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|b| !stops.contains(&b) && b != b'\r' && b != b'\n')
        {
            self.pos += 1;
        }
        (self.pos > start).then(|| lossy(&self.text[start..self.pos]))
    }

    fn number(&mut self) -> Option<u64> {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        std::str::from_utf8(&self.text[start..self.pos])
            .ok()?
            .parse()
            .ok()
    }

    /// quirks::NEGATIVE_SIZE: some servers report RFC822.SIZE -1; read it as 0.
    fn size_number(&mut self) -> Option<u64> {
        if self.eat(b"-") {
            self.number()?;
            return Some(0);
        }
        self.number()
    }

    fn quoted(&mut self) -> Option<Vec<u8>> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    return Some(out);
                }
                b'\\' => {
                    self.pos += 1;
                    out.push(self.peek()?);
                    self.pos += 1;
                }
                b'\r' | b'\n' => return None,
                other => {
                    out.push(other);
                    self.pos += 1;
                }
            }
        }
    }

    /// At a `{n}` marker (or `~{n}`, the binary literal of RFC 3516): consume it and the
    /// line break, hand out the next literal.
    fn literal(&mut self) -> Option<Body> {
        self.eat(b"~");
        self.expect(b'{')?;
        while self.peek().is_some_and(|b| b != b'}') {
            self.pos += 1;
        }
        self.expect(b'}')?;
        self.eat(b"\r");
        self.expect(b'\n')?;
        self.literals.next()
    }

    fn at_literal(&self) -> bool {
        self.text[self.pos..].starts_with(b"{") || self.text[self.pos..].starts_with(b"~{")
    }

    fn nstring_literal(&mut self) -> Option<Body> {
        match self.peek()? {
            _ if self.at_literal() => self.literal(),
            b'"' => self.quoted().map(Body::Memory),
            _ if self.eat_word_ci(b"NIL") => None,
            _ => None,
        }
    }

    fn nstring(&mut self) -> Option<Vec<u8>> {
        self.nstring_literal().and_then(|l| l.into_vec().ok())
    }

    fn astring(&mut self) -> Option<Vec<u8>> {
        match self.peek()? {
            b'"' => self.quoted(),
            b'{' => self.literal().and_then(|l| l.into_vec().ok()),
            _ => {
                let start = self.pos;
                while self.peek().is_some_and(is_astring_char) {
                    self.pos += 1;
                }
                (self.pos > start).then(|| self.text[start..self.pos].to_vec())
            }
        }
    }

    /// `(\Seen $Forwarded)`; quirks::FLAGS_TRAILING_SPACE tolerated.
    fn flag_list(&mut self) -> Option<Vec<String>> {
        self.expect(b'(')?;
        let mut flags = Vec::new();
        loop {
            self.spaces();
            if self.eat(b")") {
                return Some(flags);
            }
            // quirks::QUOTED_FLAGS: `("\\Deleted" \Answered)` is the flag \Deleted.
            if self.peek() == Some(b'"') {
                flags.push(lossy(&self.quoted()?));
                continue;
            }
            let start = self.pos;
            while self
                .peek()
                .is_some_and(|b| b != b' ' && b != b')' && b != b'\r' && b != b'\n')
            {
                self.pos += 1;
            }
            if self.pos == start {
                return None;
            }
            flags.push(lossy(&self.text[start..self.pos]));
        }
    }

    fn words(&mut self) -> Vec<String> {
        self.words_until(b'\r')
    }

    fn words_until(&mut self, stop: u8) -> Vec<String> {
        let mut words = Vec::new();
        loop {
            self.spaces();
            let start = self.pos;
            while self
                .peek()
                .is_some_and(|b| b != b' ' && b != stop && b != b'\r' && b != b'\n')
            {
                self.pos += 1;
            }
            if self.pos == start {
                return words;
            }
            words.push(lossy(&self.text[start..self.pos]));
        }
    }

    /// Skips one value of any shape (for FETCH items mailmove did not ask for). Nesting is
    /// counted, not recursed into: a line of a million `(` must not overflow the stack.
    fn skip_value(&mut self) -> Option<()> {
        let mut depth = 0usize;
        loop {
            match self.peek()? {
                b'(' => {
                    self.pos += 1;
                    depth += 1;
                }
                b')' if depth > 0 => {
                    self.pos += 1;
                    depth -= 1;
                }
                b'"' => self.quoted().map(drop)?,
                _ if self.at_literal() => self.literal().map(drop)?,
                b'\r' | b'\n' => return None,
                _ => {
                    let start = self.pos;
                    let mut brackets = 0usize;
                    while let Some(b) = self.peek() {
                        match b {
                            b'[' => brackets += 1,
                            b']' => brackets = brackets.saturating_sub(1),
                            b' ' | b')' | b'\r' | b'\n' if brackets == 0 => break,
                            _ => {}
                        }
                        self.pos += 1;
                    }
                    if self.pos == start {
                        return None;
                    }
                }
            }
            if depth == 0 {
                return Some(());
            }
            self.spaces();
        }
    }

    fn rest_text(&mut self) -> String {
        let start = self.pos;
        while !self.at_end() {
            self.pos += 1;
        }
        lossy(&self.text[start..self.pos]).trim().to_string()
    }

    fn whole_text(&self) -> String {
        lossy(self.text).trim_end().to_string()
    }
}

fn is_atom_char(b: u8) -> bool {
    b > b' '
        && b < 0x7f
        && !matches!(
            b,
            b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']' | b'['
        )
}

fn is_astring_char(b: u8) -> bool {
    // quirks::EIGHT_BIT_ATOMS: raw UTF-8 mailbox names from servers with UTF8=ACCEPT.
    b > b' ' && b != 0x7f && !matches!(b, b'(' | b')' | b'{' | b'"')
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A UID set as APPENDUID gives it (`418`, `3955:3957`, `7,9:10`), expanded in order.
/// Ranges are capped so a hostile answer cannot make us allocate without bound.
fn uid_set(text: &str) -> Option<Vec<u32>> {
    const MAX: usize = 100_000;
    let mut uids = Vec::new();
    for part in text.split(',') {
        let (first, last) = match part.split_once(':') {
            Some((a, b)) => (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?),
            None => {
                let n = part.parse::<u32>().ok()?;
                (n, n)
            }
        };
        let (low, high) = (first.min(last), first.max(last));
        if (high - low) as usize + uids.len() >= MAX {
            return None;
        }
        uids.extend(low..=high);
    }
    Some(uids)
}

#[cfg(test)]
mod tests {
    //! What the transcript corpus (tests/corpus.rs) cannot show: no public log has these.

    use super::*;

    fn frame(text: &[u8], literals: &[&[u8]]) -> Frame {
        Frame {
            text: text.to_vec(),
            literals: literals.iter().map(|l| Body::Memory(l.to_vec())).collect(),
            oversized: Vec::new(),
        }
    }

    fn fetch(response: Response) -> Fetch {
        match response {
            Response::Untagged(Untagged::Fetch(fetch)) => *fetch,
            other => panic!("not a FETCH: {other:?}"),
        }
    }

    #[test]
    fn appenduid_after_multiappend_lists_every_uid_in_order() {
        let tagged = |text: &[u8]| match parse(frame(text, &[])) {
            Response::Tagged { status, .. } => status.code,
            other => panic!("not tagged: {other:?}"),
        };
        assert_eq!(
            tagged(b"A1 OK [APPENDUID 38505 3955:3957] done\r\n"),
            Some(Code::AppendUid {
                uidvalidity: 38505,
                uids: vec![3955, 3956, 3957]
            })
        );
        assert_eq!(
            tagged(b"A2 OK [APPENDUID 7 4,9:10] done\r\n"),
            Some(Code::AppendUid {
                uidvalidity: 7,
                uids: vec![4, 9, 10]
            })
        );
        // A range no mailbox holds is not believed.
        assert!(!matches!(
            tagged(b"A3 OK [APPENDUID 7 1:4000000000] done\r\n"),
            Some(Code::AppendUid { .. })
        ));
    }

    #[test]
    fn binary_literals_are_read_and_skipped() {
        // RFC 3516 literal8: the body of BINARY[] is kept, an unasked BINARY[1] skipped.
        let got = fetch(parse(frame(
            b"* 1 FETCH (UID 5 BINARY[] ~{3}\r\n)\r\n",
            &[b"a\0c"],
        )));
        assert_eq!(got.uid, Some(5));
        assert_eq!(got.body.unwrap().into_vec().unwrap(), b"a\0c");
        let got = fetch(parse(frame(
            b"* 2 FETCH (BINARY[1] ~{2}\r\n FLAGS (\\Seen) UID 6)\r\n",
            &[b"\0\0"],
        )));
        assert_eq!(
            (got.uid, got.flags),
            (Some(6), Some(vec!["\\Seen".to_string()]))
        );
    }

    #[test]
    fn deep_nesting_neither_overflows_nor_desynchronises() {
        let mut text = b"* 1 FETCH (UID 5 X-DEEP ".to_vec();
        text.extend(std::iter::repeat_n(b'(', 1_000_000));
        text.extend_from_slice(b"\r\n");
        assert!(matches!(
            parse(frame(&text, &[])),
            Response::Unparsed { tag: None, .. }
        ));

        let mut text = b"* 1 FETCH (X-DEEP ".to_vec();
        text.extend(std::iter::repeat_n(b'(', 10_000));
        text.extend(std::iter::repeat_n(b')', 10_000));
        text.extend_from_slice(b" UID 7)\r\n");
        assert_eq!(fetch(parse(frame(&text, &[]))).uid, Some(7));
    }
}
