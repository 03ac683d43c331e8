//! A deliberately simple, blocking IMAP client that tests use to seed mailboxes and to
//! check what the code under test did. It shares no code with mailmove's own IMAP
//! client, so a bug there cannot hide itself by also being here.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Long enough for a multi-megabyte FETCH on a loaded CI machine, short enough that
/// a wedged server fails the test instead of hanging it.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// One message as the server has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedMessage {
    pub uid: u32,
    /// Sorted, without `\Recent` (which depends on who looked first).
    pub flags: Vec<String>,
    /// As the server sends it, e.g. `01-Jan-2020 10:00:00 +0000`.
    pub internal_date: String,
    /// The `BODY.PEEK[]` bytes exactly.
    pub body: Vec<u8>,
}

/// One LIST answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedFolder {
    /// The raw (modified UTF-7) name as the server sends it, unquoted.
    pub name: String,
    /// E.g. `\Sent`, `\HasNoChildren`.
    pub attributes: Vec<String>,
}

/// A SASL login (RFC 4422) for [`Checker::authenticate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sasl {
    /// PLAIN (RFC 4616): `authzid NUL authcid NUL password`; an empty `authzid`
    /// logs in as `authcid`, otherwise `authcid` acts for `authzid` (a master user).
    Plain {
        authzid: String,
        authcid: String,
        password: String,
    },
    /// Google's and Microsoft's XOAUTH2: `user=USER ^A auth=Bearer TOKEN ^A ^A`.
    XOAuth2 { user: String, token: String },
    /// OAUTHBEARER (RFC 7628): a GS2 header naming the user, then
    /// `host`, `port` and `auth=Bearer TOKEN`, each ended by ^A.
    OAuthBearer {
        user: String,
        host: String,
        port: u16,
        token: String,
    },
}

impl Sasl {
    pub fn mechanism(&self) -> &'static str {
        match self {
            Sasl::Plain { .. } => "PLAIN",
            Sasl::XOAuth2 { .. } => "XOAUTH2",
            Sasl::OAuthBearer { .. } => "OAUTHBEARER",
        }
    }

    /// The client's first message, before base64.
    pub fn initial_response(&self) -> Vec<u8> {
        match self {
            Sasl::Plain {
                authzid,
                authcid,
                password,
            } => format!("{authzid}\0{authcid}\0{password}").into_bytes(),
            Sasl::XOAuth2 { user, token } => {
                format!("user={user}\x01auth=Bearer {token}\x01\x01").into_bytes()
            }
            Sasl::OAuthBearer {
                user,
                host,
                port,
                token,
            } => {
                // RFC 7628 §3.1: in the GS2 authzid, ',' and '=' are escaped.
                let user = user.replace('=', "=3D").replace(',', "=2C");
                format!("n,a={user},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01")
                    .into_bytes()
            }
        }
    }
}

/// A refused `AUTHENTICATE`: the tagged answer and every challenge the server sent
/// before it (base64-decoded; for OAuth mechanisms a JSON error such as
/// `{"status":"invalid_token",...}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRefusal {
    pub tagged: String,
    pub challenges: Vec<Vec<u8>>,
}

impl std::fmt::Display for AuthRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.tagged)?;
        for challenge in &self.challenges {
            write!(f, " (challenge {})", String::from_utf8_lossy(challenge))?;
        }
        Ok(())
    }
}

/// A logged-in IMAP connection (plaintext, LOGIN or AUTHENTICATE). Every method runs whole commands
/// and fails on any NO or BAD, with the server's text in the error.
#[derive(Debug)]
pub struct Checker {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    next_tag: u32,
}

/// What one command got back.
struct Reply {
    /// Complete untagged responses (`* ...`), literals inline.
    untagged: Vec<Vec<u8>>,
    /// The tagged status line, without CRLF.
    tagged: String,
    /// Everything received, in order, up to and including the tagged line.
    raw: Vec<u8>,
}

impl Checker {
    /// Connects without TLS and logs in with LOGIN.
    pub fn connect(host: &str, port: u16, user: &str, password: &str) -> Result<Checker> {
        let mut checker = Checker::open(host, port)?;
        let reply = checker.run_unchecked(&format!("LOGIN {} {}", quote(user), quote(password)))?;
        if status_of(&reply.tagged) != "OK" {
            // The error names the user but not the password.
            bail!("LOGIN as {user:?} failed: {}", reply.tagged);
        }
        Ok(checker)
    }

    /// Connects without TLS and logs in with `AUTHENTICATE`; fails if the server
    /// refuses, with the refusal (and any challenge) in the error.
    pub fn authenticate(host: &str, port: u16, sasl: &Sasl) -> Result<Checker> {
        match Checker::try_authenticate(host, port, sasl)? {
            Ok(checker) => Ok(checker),
            Err(refusal) => Err(anyhow!(
                "AUTHENTICATE {} refused: {refusal}",
                sasl.mechanism()
            )),
        }
    }

    /// Like [`Checker::authenticate`], but a refusal is an `Ok(Err(..))` carrying
    /// what the server said, so tests can look at it.
    pub fn try_authenticate(
        host: &str,
        port: u16,
        sasl: &Sasl,
    ) -> Result<std::result::Result<Checker, AuthRefusal>> {
        let mut checker = Checker::open(host, port)?;
        let tag = checker.tag();
        // SASL-IR (RFC 4959): the initial response goes with the command; an empty
        // one is sent as "=".
        let initial = sasl.initial_response();
        let initial = if initial.is_empty() {
            "=".to_string()
        } else {
            STANDARD.encode(initial)
        };
        checker
            .writer
            .write_all(format!("{tag} AUTHENTICATE {} {initial}\r\n", sasl.mechanism()).as_bytes())
            .context("sending AUTHENTICATE")?;
        let mut challenges = Vec::new();
        loop {
            let response = checker.read_response()?;
            if is_tagged(&response, &tag) {
                let tagged = String::from_utf8_lossy(trim_crlf(&response)).into_owned();
                if status_of(&tagged) == "OK" {
                    return Ok(Ok(checker));
                }
                return Ok(Err(AuthRefusal { tagged, challenges }));
            }
            if let Some(rest) = response.strip_prefix(b"+") {
                let text = String::from_utf8_lossy(trim_crlf(rest)).trim().to_string();
                challenges.push(STANDARD.decode(&text).unwrap_or_else(|_| text.into_bytes()));
                // After an error challenge the client ends the exchange: OAUTHBEARER
                // with a lone ^A (RFC 7628 §3.2.3), XOAUTH2 with an empty response.
                let answer = match sasl {
                    Sasl::OAuthBearer { .. } => STANDARD.encode([1u8]),
                    _ => String::new(),
                };
                checker
                    .writer
                    .write_all(format!("{answer}\r\n").as_bytes())
                    .context("answering a SASL challenge")?;
            }
        }
    }

    /// Connects without TLS and reads the greeting.
    fn open(host: &str, port: u16) -> Result<Checker> {
        let stream = TcpStream::connect((host, port))
            .with_context(|| format!("connecting to {host}:{port}"))?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        // Commands and literals are small separate writes; without this, Nagle plus
        // delayed ACKs would add ~40 ms to many round trips.
        stream.set_nodelay(true)?;
        let writer = stream.try_clone()?;
        let mut checker = Checker {
            reader: BufReader::new(stream),
            writer,
            next_tag: 1,
        };
        let greeting = checker.read_response()?;
        if !greeting.starts_with(b"* OK") {
            bail!(
                "unexpected greeting: {}",
                String::from_utf8_lossy(&greeting)
            );
        }
        Ok(checker)
    }

    /// CREATE with a raw (modified UTF-7) name; an existing folder is fine.
    pub fn create(&mut self, folder: &str) -> Result<()> {
        let reply = self.run_unchecked(&format!("CREATE {}", quote(folder)))?;
        if status_of(&reply.tagged) == "OK" || reply.tagged.contains("[ALREADYEXISTS]") {
            return Ok(());
        }
        bail!("CREATE {folder:?} failed: {}", reply.tagged)
    }

    /// APPEND with a synchronizing literal; returns the new message's UID from the
    /// APPENDUID response code. `internal_date` is e.g. `01-Jan-2020 10:00:00 +0000`.
    pub fn append(
        &mut self,
        folder: &str,
        flags: &[&str],
        internal_date: Option<&str>,
        body: &[u8],
    ) -> Result<u32> {
        let tag = self.tag();
        let mut command = format!("{tag} APPEND {}", quote(folder));
        if !flags.is_empty() {
            command.push_str(&format!(" ({})", flags.join(" ")));
        }
        if let Some(date) = internal_date {
            command.push_str(&format!(" {}", quote(date)));
        }
        command.push_str(&format!(" {{{}}}\r\n", body.len()));
        self.writer.write_all(command.as_bytes())?;

        // The server may refuse before the literal (e.g. too large) with a tagged NO
        // instead of the continuation; the literal must then not be sent.
        loop {
            let response = self.read_response()?;
            if response.starts_with(b"+") {
                break;
            }
            if is_tagged(&response, &tag) {
                bail!(
                    "APPEND to {folder:?} refused: {}",
                    String::from_utf8_lossy(trim_crlf(&response))
                );
            }
        }
        self.writer.write_all(body)?;
        self.writer.write_all(b"\r\n")?;
        let reply = self.collect(&tag)?;
        if status_of(&reply.tagged) != "OK" {
            bail!("APPEND to {folder:?} failed: {}", reply.tagged);
        }
        parse_appenduid(&reply.tagged)
            .ok_or_else(|| anyhow!("APPEND answer without APPENDUID: {}", reply.tagged))
    }

    /// Every message in the folder (EXAMINE, so nothing changes), sorted by UID.
    pub fn fetch_all(&mut self, folder: &str) -> Result<Vec<CheckedMessage>> {
        self.run(&format!("EXAMINE {}", quote(folder)))?;
        let reply = self.run("UID FETCH 1:* (UID FLAGS INTERNALDATE BODY.PEEK[])")?;
        let mut messages: Vec<CheckedMessage> = Vec::new();
        for response in &reply.untagged {
            let Some(message) = parse_fetch(response)? else {
                continue;
            };
            // An unsolicited FETCH (flag change) has no body; the full one wins.
            messages.retain(|m| m.uid != message.uid);
            messages.push(message);
        }
        messages.sort_by_key(|m| m.uid);
        Ok(messages)
    }

    /// `LIST "" "*"` (Dovecot includes special-use attributes there).
    pub fn list(&mut self) -> Result<Vec<ListedFolder>> {
        let reply = self.run("LIST \"\" \"*\"")?;
        reply
            .untagged
            .iter()
            .filter(|r| r.starts_with(b"* LIST "))
            .map(|r| parse_list(r))
            .collect()
    }

    /// `LSUB "" "*"` names.
    pub fn subscribed(&mut self) -> Result<Vec<String>> {
        let reply = self.run("LSUB \"\" \"*\"")?;
        reply
            .untagged
            .iter()
            .filter(|r| r.starts_with(b"* LSUB "))
            .map(|r| parse_list(r).map(|folder| folder.name))
            .collect()
    }

    /// SELECT, then `UID STORE uid +FLAGS (flags)`.
    pub fn set_flags(&mut self, folder: &str, uid: u32, flags: &[&str]) -> Result<()> {
        self.run(&format!("SELECT {}", quote(folder)))?;
        self.run(&format!("UID STORE {uid} +FLAGS ({})", flags.join(" ")))?;
        Ok(())
    }

    /// SELECT, `UID STORE uid +FLAGS (\Deleted)`, then `UID EXPUNGE uid`, so other
    /// messages already marked \Deleted stay.
    pub fn delete_message(&mut self, folder: &str, uid: u32) -> Result<()> {
        self.run(&format!("SELECT {}", quote(folder)))?;
        self.run(&format!("UID STORE {uid} +FLAGS (\\Deleted)"))?;
        self.run(&format!("UID EXPUNGE {uid}"))?;
        Ok(())
    }

    /// DELETE the folder (e.g. to change its UIDVALIDITY by re-creating it).
    pub fn delete_folder(&mut self, folder: &str) -> Result<()> {
        // Dovecot disconnects a client whose selected mailbox is deleted; leaving
        // the selected state first avoids that. NO/BAD just means nothing was
        // selected.
        self.run_unchecked("UNSELECT")?;
        self.run(&format!("DELETE {}", quote(folder)))?;
        Ok(())
    }

    /// `STATUS folder (UIDVALIDITY)`.
    pub fn uidvalidity(&mut self, folder: &str) -> Result<u32> {
        let reply = self.run(&format!("STATUS {} (UIDVALIDITY)", quote(folder)))?;
        for response in &reply.untagged {
            if !response.starts_with(b"* STATUS ") {
                continue;
            }
            let values = Parser::new(&response[b"* STATUS ".len()..]).values()?;
            if let Some(Value::List(items)) = values.get(1) {
                for pair in items.chunks(2) {
                    if let [Value::Atom(key), Value::Atom(value)] = pair
                        && key.eq_ignore_ascii_case(b"UIDVALIDITY")
                    {
                        return parse_number(value);
                    }
                }
            }
        }
        bail!("STATUS {folder:?} returned no UIDVALIDITY")
    }

    /// Sends `<tag> <command>\r\n` and returns every byte received up to and
    /// including the tagged response; fails on NO or BAD. A literal inside `command`
    /// should be non-synchronizing (`{n+}`, Dovecot has LITERAL+).
    pub fn raw(&mut self, command: &str) -> Result<Vec<u8>> {
        Ok(self.run(command)?.raw)
    }

    /// Runs a command and fails unless it ends in OK.
    fn run(&mut self, command: &str) -> Result<Reply> {
        let reply = self.run_unchecked(command)?;
        if status_of(&reply.tagged) != "OK" {
            bail!("{} failed: {}", shorten(command), reply.tagged);
        }
        Ok(reply)
    }

    fn run_unchecked(&mut self, command: &str) -> Result<Reply> {
        let tag = self.tag();
        self.writer
            .write_all(format!("{tag} {command}\r\n").as_bytes())
            .with_context(|| format!("sending {}", shorten(command)))?;
        self.collect(&tag)
    }

    fn tag(&mut self) -> String {
        let tag = format!("C{}", self.next_tag);
        self.next_tag += 1;
        tag
    }

    /// Reads responses until the one tagged `tag`.
    fn collect(&mut self, tag: &str) -> Result<Reply> {
        let mut untagged = Vec::new();
        let mut raw = Vec::new();
        loop {
            let response = self.read_response()?;
            raw.extend_from_slice(&response);
            if is_tagged(&response, tag) {
                let tagged = String::from_utf8_lossy(trim_crlf(&response)).into_owned();
                return Ok(Reply {
                    untagged,
                    tagged,
                    raw,
                });
            }
            if response.starts_with(b"* ") {
                untagged.push(response);
            }
        }
    }

    /// One complete response: a line, plus every `{n}` literal it announces and the
    /// line parts that follow them.
    fn read_response(&mut self) -> Result<Vec<u8>> {
        let mut response = Vec::new();
        loop {
            let start = response.len();
            let read = self
                .reader
                .read_until(b'\n', &mut response)
                .context("reading from the server")?;
            if read == 0 {
                bail!(
                    "the server closed the connection; partial response: {}",
                    String::from_utf8_lossy(&response)
                );
            }
            match literal_length(&response[start..]) {
                Some(length) => {
                    let offset = response.len();
                    response.resize(offset + length, 0);
                    self.reader
                        .read_exact(&mut response[offset..])
                        .context("reading a literal from the server")?;
                }
                None => return Ok(response),
            }
        }
    }
}

fn is_tagged(response: &[u8], tag: &str) -> bool {
    response.starts_with(tag.as_bytes()) && response.get(tag.len()) == Some(&b' ')
}

/// "OK", "NO" or "BAD" from a tagged line.
fn status_of(tagged: &str) -> &str {
    tagged.split(' ').nth(1).unwrap_or("")
}

fn trim_crlf(bytes: &[u8]) -> &[u8] {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    bytes.strip_suffix(b"\r").unwrap_or(bytes)
}

/// Errors quote the command, but not a whole message body.
fn shorten(command: &str) -> String {
    match command.char_indices().nth(120) {
        Some((at, _)) => format!("{}…", &command[..at]),
        None => command.to_string(),
    }
}

/// The length of the literal a line announces (`... {123}\r\n` or `{123+}`).
fn literal_length(line: &[u8]) -> Option<usize> {
    let line = trim_crlf(line);
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = inner[open + 1..]
        .strip_suffix(b"+")
        .unwrap_or(&inner[open + 1..]);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// A quoted string, escaping the two characters that need it.
fn quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

fn parse_number(bytes: &[u8]) -> Result<u32> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("not a number: {}", String::from_utf8_lossy(bytes)))
}

fn parse_appenduid(tagged: &str) -> Option<u32> {
    let start = tagged.find("[APPENDUID ")? + "[APPENDUID ".len();
    let rest = &tagged[start..];
    let end = rest.find(']')?;
    let mut parts = rest[..end].split(' ');
    let _uidvalidity = parts.next()?;
    parts.next()?.parse().ok()
}

/// `* n FETCH (...)` into a message; `None` for a FETCH without a body (an
/// unsolicited flag update) or for any other response.
fn parse_fetch(response: &[u8]) -> Result<Option<CheckedMessage>> {
    let values = Parser::new(response.strip_prefix(b"* ").unwrap_or(response)).values()?;
    let [Value::Atom(_), Value::Atom(keyword), Value::List(items)] = values.as_slice() else {
        return Ok(None);
    };
    if !keyword.eq_ignore_ascii_case(b"FETCH") {
        return Ok(None);
    }
    let mut uid = None;
    let mut flags = Vec::new();
    let mut internal_date = String::new();
    let mut body = None;
    for pair in items.chunks(2) {
        let [Value::Atom(key), value] = pair else {
            bail!("malformed FETCH: {}", String::from_utf8_lossy(response));
        };
        match (key.to_ascii_uppercase().as_slice(), value) {
            (b"UID", Value::Atom(n)) => uid = Some(parse_number(n)?),
            (b"FLAGS", Value::List(list)) => {
                flags = list
                    .iter()
                    .filter_map(|flag| match flag {
                        Value::Atom(a) => Some(String::from_utf8_lossy(a).into_owned()),
                        _ => None,
                    })
                    .filter(|flag| !flag.eq_ignore_ascii_case("\\Recent"))
                    .collect();
            }
            (b"INTERNALDATE", Value::Str(date)) => {
                internal_date = String::from_utf8_lossy(date).into_owned();
            }
            (b"BODY[]", Value::Str(bytes)) => body = Some(bytes.clone()),
            (b"BODY[]", Value::Nil) => body = Some(Vec::new()),
            _ => {}
        }
    }
    let (Some(uid), Some(body)) = (uid, body) else {
        return Ok(None);
    };
    flags.sort();
    Ok(Some(CheckedMessage {
        uid,
        flags,
        internal_date,
        body,
    }))
}

/// `* LIST (attributes) "sep" name` (or LSUB).
fn parse_list(response: &[u8]) -> Result<ListedFolder> {
    let text = response.strip_prefix(b"* ").unwrap_or(response);
    let values = Parser::new(text).values()?;
    let [_, Value::List(attributes), _, name] = values.as_slice() else {
        bail!("malformed LIST: {}", String::from_utf8_lossy(response));
    };
    let name = match name {
        Value::Atom(bytes) | Value::Str(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::Nil | Value::List(_) => {
            bail!("malformed LIST name: {}", String::from_utf8_lossy(response))
        }
    };
    let attributes = attributes
        .iter()
        .filter_map(|a| match a {
            Value::Atom(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
            _ => None,
        })
        .collect();
    Ok(ListedFolder { name, attributes })
}

/// The few shapes of IMAP data this client needs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    /// An atom or number; `BODY[...]` keeps its brackets.
    Atom(Vec<u8>),
    /// A quoted string (unescaped) or a literal.
    Str(Vec<u8>),
    List(Vec<Value>),
    Nil,
}

/// A tokenizer over one complete response with its literals inline.
struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(bytes: &'a [u8]) -> Parser<'a> {
        Parser { bytes, pos: 0 }
    }

    /// Values up to the end of the response.
    fn values(&mut self) -> Result<Vec<Value>> {
        let mut values = Vec::new();
        loop {
            self.skip_spaces();
            match self.peek() {
                None | Some(b'\r') | Some(b'\n') => return Ok(values),
                Some(_) => values.push(self.value()?),
            }
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    fn value(&mut self) -> Result<Value> {
        match self.peek() {
            Some(b'(') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_spaces();
                    match self.peek() {
                        Some(b')') => {
                            self.pos += 1;
                            return Ok(Value::List(items));
                        }
                        None => bail!("unterminated list"),
                        Some(_) => items.push(self.value()?),
                    }
                }
            }
            Some(b'"') => self.quoted(),
            Some(b'{') => self.literal(),
            Some(_) => {
                let atom = self.atom()?;
                Ok(if atom.eq_ignore_ascii_case(b"NIL") {
                    Value::Nil
                } else {
                    Value::Atom(atom)
                })
            }
            None => bail!("value expected at end of response"),
        }
    }

    fn quoted(&mut self) -> Result<Value> {
        self.pos += 1;
        let mut text = Vec::new();
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Value::Str(text));
                }
                Some(b'\\') => {
                    let escaped = self
                        .bytes
                        .get(self.pos + 1)
                        .ok_or_else(|| anyhow!("unterminated quoted string"))?;
                    text.push(*escaped);
                    self.pos += 2;
                }
                Some(byte) => {
                    text.push(byte);
                    self.pos += 1;
                }
                None => bail!("unterminated quoted string"),
            }
        }
    }

    fn literal(&mut self) -> Result<Value> {
        let rest = &self.bytes[self.pos..];
        let close = rest
            .iter()
            .position(|&b| b == b'}')
            .ok_or_else(|| anyhow!("unterminated literal length"))?;
        let digits = rest[1..close].strip_suffix(b"+").unwrap_or(&rest[1..close]);
        let length = parse_number(digits)? as usize;
        let after = &rest[close + 1..];
        let skip = if after.starts_with(b"\r\n") {
            2
        } else if after.starts_with(b"\n") {
            1
        } else {
            bail!("literal length not followed by a line break");
        };
        let start = self.pos + close + 1 + skip;
        let data = self
            .bytes
            .get(start..start + length)
            .ok_or_else(|| anyhow!("literal longer than the response"))?;
        self.pos = start + length;
        Ok(Value::Str(data.to_vec()))
    }

    /// An atom, with a `[...]` section (as in `BODY[]`) taken whole even if it
    /// contains spaces.
    fn atom(&mut self) -> Result<Vec<u8>> {
        let start = self.pos;
        let mut depth = 0usize;
        while let Some(byte) = self.peek() {
            match byte {
                b'[' => depth += 1,
                b']' => depth = depth.saturating_sub(1),
                b' ' | b'(' | b')' if depth == 0 => break,
                b'\r' | b'\n' => break,
                _ => {}
            }
            self.pos += 1;
        }
        if self.pos == start {
            bail!("unexpected {:?} in response", self.peek().map(char::from));
        }
        Ok(self.bytes[start..self.pos].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_length_is_found_only_at_the_end_of_a_line() {
        assert_eq!(literal_length(b"* 1 FETCH (BODY[] {12}\r\n"), Some(12));
        assert_eq!(literal_length(b"A1 APPEND x {3+}\r\n"), Some(3));
        assert_eq!(literal_length(b"* OK {x}\r\n"), None);
        assert_eq!(literal_length(b"* OK done\r\n"), None);
    }

    #[test]
    fn fetch_with_literal_body_parses() {
        let response = b"* 3 FETCH (UID 7 FLAGS (\\Seen \\Recent $Forwarded) INTERNALDATE \"01-Jan-2020 10:00:00 +0000\" BODY[] {5}\r\nab)\r\n)\r\n";
        let message = parse_fetch(response).unwrap().unwrap();
        assert_eq!(message.uid, 7);
        assert_eq!(message.flags, vec!["$Forwarded", "\\Seen"]);
        assert_eq!(message.internal_date, "01-Jan-2020 10:00:00 +0000");
        assert_eq!(message.body, b"ab)\r\n");
    }

    #[test]
    fn flag_update_without_body_is_skipped() {
        assert_eq!(
            parse_fetch(b"* 3 FETCH (UID 7 FLAGS (\\Seen))\r\n").unwrap(),
            None
        );
    }

    #[test]
    fn list_names_are_unquoted() {
        let folder =
            parse_list(b"* LIST (\\HasNoChildren \\Sent) \".\" \"INBOX.Sent \\\"x\\\"\"\r\n")
                .unwrap();
        assert_eq!(folder.name, "INBOX.Sent \"x\"");
        assert_eq!(folder.attributes, vec!["\\HasNoChildren", "\\Sent"]);
        let folder = parse_list(b"* LIST () \"/\" {3}\r\na/b\r\n").unwrap();
        assert_eq!(folder.name, "a/b");
    }

    #[test]
    fn appenduid_is_read_from_the_response_code() {
        assert_eq!(
            parse_appenduid("C3 OK [APPENDUID 1795687638 42] Append completed."),
            Some(42)
        );
        assert_eq!(parse_appenduid("C3 OK Append completed."), None);
    }

    #[test]
    fn quoting_escapes_backslash_and_quote() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
