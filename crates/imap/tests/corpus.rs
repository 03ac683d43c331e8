//! Replays real server transcripts (tests/fixtures/*.txt) through `FrameReader` and
//! `parse`, and checks every response that comes out against a table of expected values,
//! so a parser change that misreads any server we have a transcript of fails here.
//!
//! Fixture format, line by line:
//! - `## name` starts a block; each block is replayed on its own.
//! - `S: text` is one line the server sent (`S:` alone is an empty line). Lines are joined
//!   with CRLF, or with LF alone in a block that has a `# bare-lf` line. A trailing `␠`
//!   stands for a space, so that editors cannot trim it.
//! - `{n}` counts are the real octet counts of what follows on the wire (with the block's
//!   line ends); the loader checks that each literal ends at a line end.
//! - `C: ...` (what the client sent) and `# ...` (sources, notes) are not sent.
//!
//! Each block's responses are consumed in order by a [`Script`]; a test that forgets a
//! response, or a fixture block that no test reads, fails.

use std::collections::{BTreeMap, VecDeque};

use mailmove_imap::framing::{FrameError, FrameLimits, FrameReader};
use mailmove_imap::is_throttled;
use mailmove_imap::mutf7;
use mailmove_imap::response::{
    Code, Fetch, ListEntry, Namespaces, QuotaResource, Response, Status, StatusKind, Untagged,
    parse,
};

const FILES: &[&str] = &[
    "dovecot.txt",
    "cyrus.txt",
    "courier.txt",
    "exchange.txt",
    "gmail.txt",
    "quirks.txt",
    "rfc.txt",
];

// ---- loading ----

struct Block {
    name: String,
    wire: Vec<u8>,
}

fn load_blocks(file: &str) -> Vec<Block> {
    let path = format!("{}/tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut blocks: Vec<(String, bool, Vec<String>)> = Vec::new();
    for (number, line) in source.lines().enumerate() {
        let at = || format!("{file}:{}", number + 1);
        if let Some(name) = line.strip_prefix("## ") {
            blocks.push((name.trim().to_string(), false, Vec::new()));
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        if line.trim_end() == "# bare-lf" {
            let block = blocks
                .last_mut()
                .unwrap_or_else(|| panic!("{}: bare-lf outside a block", at()));
            block.1 = true;
            continue;
        }
        if line.starts_with('#') || line.starts_with("C:") {
            continue;
        }
        let wire = if line == "S:" {
            ""
        } else if let Some(rest) = line.strip_prefix("S: ") {
            rest
        } else {
            panic!("{}: not a fixture line: {line:?}", at());
        };
        let block = blocks
            .last_mut()
            .unwrap_or_else(|| panic!("{}: S: line outside a block", at()));
        let wire = match wire.strip_suffix('␠') {
            Some(stem) => format!("{stem} "),
            None => wire.to_string(),
        };
        block.2.push(wire);
    }
    let mut seen = BTreeMap::new();
    blocks
        .into_iter()
        .map(|(name, bare_lf, lines)| {
            assert!(
                seen.insert(name.clone(), ()).is_none(),
                "{file}: block {name} twice"
            );
            assert!(!lines.is_empty(), "{file}: block {name} sends nothing");
            let eol = if bare_lf { "\n" } else { "\r\n" };
            let wire: Vec<u8> = lines
                .iter()
                .flat_map(|l| format!("{l}{eol}").into_bytes())
                .collect();
            check_literal_counts(file, &name, &wire);
            Block { name, wire }
        })
        .collect()
}

/// Every `{n}` at a line end must be followed by exactly n octets that end a line: a
/// miscounted fixture fails here, not as a confusing parser failure.
fn check_literal_counts(file: &str, block: &str, wire: &[u8]) {
    let mut pos = 0;
    while pos < wire.len() {
        let end = wire[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|i| pos + i + 1)
            .unwrap();
        let line = &wire[pos..end];
        pos = end;
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end();
        if let Some(open) = text.rfind('{').filter(|_| text.ends_with('}'))
            && let Ok(n) = text[open + 1..text.len() - 1]
                .trim_end_matches('+')
                .parse::<usize>()
        {
            let literal_end = pos + n;
            assert!(
                literal_end <= wire.len() && wire[literal_end - 1] == b'\n',
                "{file}/{block}: the literal {{{n}}} does not end at a line end"
            );
            pos = literal_end;
        }
    }
}

struct Replay {
    /// The first word of each frame, to check tagged completions by.
    first_words: Vec<String>,
    responses: Vec<Response>,
}

async fn replay(file: &str, block: &Block) -> Replay {
    let mut reader = FrameReader::new(&block.wire[..], FrameLimits::default());
    let mut first_words = Vec::new();
    let mut responses = Vec::new();
    let mut consumed = 0u64;
    loop {
        match reader.read_frame().await {
            Ok(frame) => {
                consumed +=
                    frame.text.len() as u64 + frame.literals.iter().map(|l| l.len()).sum::<u64>();
                let word = frame
                    .text
                    .split(|&b| b == b' ' || b == b'\r' || b == b'\n')
                    .next()
                    .unwrap();
                first_words.push(String::from_utf8_lossy(word).into_owned());
                responses.push(parse(frame));
            }
            Err(FrameError::Closed) => break,
            Err(other) => panic!("{file}/{}: {other}", block.name),
        }
    }
    assert_eq!(
        consumed,
        block.wire.len() as u64,
        "{file}/{}: framing did not consume the block exactly",
        block.name
    );
    Replay {
        first_words,
        responses,
    }
}

struct Corpus {
    file: &'static str,
    blocks: BTreeMap<String, Replay>,
}

impl Corpus {
    async fn load(file: &'static str) -> Corpus {
        let mut blocks = BTreeMap::new();
        for block in load_blocks(file) {
            let replayed = replay(file, &block).await;
            blocks.insert(block.name, replayed);
        }
        Corpus { file, blocks }
    }

    fn script(&mut self, name: &str) -> Script {
        let replay = self
            .blocks
            .remove(name)
            .unwrap_or_else(|| panic!("{}: no block {name} (or it was read twice)", self.file));
        Script {
            name: format!("{}/{name}", self.file),
            items: replay.responses.into(),
        }
    }

    /// Every block was checked by some test.
    fn finish(self) {
        let left: Vec<_> = self.blocks.keys().collect();
        assert!(
            left.is_empty(),
            "{}: blocks no test checks: {left:?}",
            self.file
        );
    }
}

// ---- expectations ----

fn words(text: &str) -> Vec<String> {
    text.split(' ').map(str::to_string).collect()
}

fn caps(text: &str) -> Option<Code> {
    Some(Code::Capability(words(text)))
}

fn flags(list: &[&str]) -> Vec<String> {
    list.iter().map(|f| f.to_string()).collect()
}

fn other(name: &str, args: &str) -> Option<Code> {
    Some(Code::Other(name.into(), args.into()))
}

fn quota(name: &str, usage: u64, limit: u64) -> QuotaResource {
    QuotaResource {
        name: name.into(),
        usage,
        limit,
    }
}

use StatusKind::{Bad, Bye, No, Ok as OK, Preauth};

/// What one FETCH must hold; every field is compared, so an item the parser invents or
/// loses fails.
#[derive(Default)]
struct F<'a> {
    seq: u32,
    uid: Option<u32>,
    flags: Option<&'a [&'a str]>,
    date: Option<&'a str>,
    size: Option<u64>,
    body: Option<&'a [u8]>,
    header: Option<&'a [u8]>,
}

struct Script {
    name: String,
    items: VecDeque<Response>,
}

macro_rules! untagged {
    ($script:expr, $pattern:pat => $out:expr) => {{
        let name = $script.name.clone();
        match $script.untagged(stringify!($pattern)) {
            $pattern => $out,
            other => panic!("{name}: expected {}, got {other:?}", stringify!($pattern)),
        }
    }};
}

impl Script {
    fn next(&mut self, what: &str) -> Response {
        self.items.pop_front().unwrap_or_else(|| {
            panic!(
                "{}: expected {what}, the block has no more responses",
                self.name
            )
        })
    }

    fn untagged(&mut self, what: &str) -> Untagged {
        match self.next(what) {
            Response::Untagged(untagged) => untagged,
            other => panic!("{}: expected untagged {what}, got {other:?}", self.name),
        }
    }

    fn tagged(&mut self, tag: &str, kind: StatusKind, code: Option<Code>, text: &str) -> Status {
        match self.next("a tagged completion") {
            Response::Tagged { tag: got, status } => {
                let want = Status {
                    kind,
                    code,
                    text: text.into(),
                };
                assert_eq!((got.as_str(), &status), (tag, &want), "{}", self.name);
                status
            }
            other => panic!("{}: expected tagged {tag}, got {other:?}", self.name),
        }
    }

    fn status(&mut self, kind: StatusKind, code: Option<Code>, text: &str) {
        let status = untagged!(self, Untagged::Status(s) => s);
        let want = Status {
            kind,
            code,
            text: text.into(),
        };
        assert_eq!(status, want, "{}", self.name);
    }

    fn cont(&mut self, text: &str) {
        match self.next("a continuation") {
            Response::Continue(got) => assert_eq!(got, text, "{}", self.name),
            other => panic!("{}: expected a continuation, got {other:?}", self.name),
        }
    }

    fn capability(&mut self, text: &str) {
        let got = untagged!(self, Untagged::Capability(c) => c);
        assert_eq!(got, words(text), "{}", self.name);
    }

    fn list(&mut self, attributes: &[&str], delimiter: Option<char>, name: &str) -> ListEntry {
        let entry = untagged!(self, Untagged::List(e) => e);
        self.check_entry(&entry, attributes, delimiter, name);
        entry
    }

    fn lsub(&mut self, attributes: &[&str], delimiter: Option<char>, name: &str) {
        let entry = untagged!(self, Untagged::Lsub(e) => e);
        self.check_entry(&entry, attributes, delimiter, name);
    }

    fn check_entry(
        &self,
        entry: &ListEntry,
        attributes: &[&str],
        delimiter: Option<char>,
        name: &str,
    ) {
        let want = ListEntry {
            attributes: flags(attributes),
            delimiter,
            name: name.as_bytes().to_vec(),
        };
        assert_eq!(entry, &want, "{}", self.name);
    }

    fn namespace(&mut self, personal: &[(&str, Option<char>)]) {
        let got = untagged!(self, Untagged::Namespace(n) => n);
        let want = Namespaces {
            personal: personal
                .iter()
                .map(|(p, d)| (p.as_bytes().to_vec(), *d))
                .collect(),
        };
        assert_eq!(got, want, "{}", self.name);
    }

    fn mailbox_status(&mut self, mailbox: &str, items: &[(&str, u64)]) {
        let (got_mailbox, got_items) =
            untagged!(self, Untagged::MailboxStatus { mailbox, items } => (mailbox, items));
        let want: Vec<(String, u64)> = items.iter().map(|(n, v)| (n.to_string(), *v)).collect();
        assert_eq!(
            (got_mailbox, got_items),
            (mailbox.as_bytes().to_vec(), want),
            "{}",
            self.name
        );
    }

    fn search(&mut self, numbers: &[u32]) {
        let got = untagged!(self, Untagged::Search(n) => n);
        assert_eq!(got, numbers, "{}", self.name);
    }

    fn exists(&mut self, n: u32) {
        let got = untagged!(self, Untagged::Exists(n) => n);
        assert_eq!(got, n, "{}", self.name);
    }

    fn recent(&mut self, n: u32) {
        let got = untagged!(self, Untagged::Recent(n) => n);
        assert_eq!(got, n, "{}", self.name);
    }

    fn flags(&mut self, list: &[&str]) {
        let got = untagged!(self, Untagged::Flags(f) => f);
        assert_eq!(got, flags(list), "{}", self.name);
    }

    fn other(&mut self, line: &str) {
        let got = untagged!(self, Untagged::Other(text) => text);
        assert_eq!(got, line, "{}", self.name);
    }

    fn quota(&mut self, root: &str, resources: &[QuotaResource]) {
        let (got_root, got) =
            untagged!(self, Untagged::Quota { root, resources } => (root, resources));
        assert_eq!(
            (got_root, got),
            (root.as_bytes().to_vec(), resources.to_vec()),
            "{}",
            self.name
        );
    }

    fn quota_root(&mut self, mailbox: &str, roots: &[&str]) {
        let (got_mailbox, got_roots) =
            untagged!(self, Untagged::QuotaRoot { mailbox, roots } => (mailbox, roots));
        let want: Vec<Vec<u8>> = roots.iter().map(|r| r.as_bytes().to_vec()).collect();
        assert_eq!(
            (got_mailbox, got_roots),
            (mailbox.as_bytes().to_vec(), want),
            "{}",
            self.name
        );
    }

    fn fetch(&mut self, want: F) {
        let fetch: Fetch = *untagged!(self, Untagged::Fetch(f) => f);
        let name = &self.name;
        let seq = fetch.seq;
        assert_eq!(seq, want.seq, "{name}: FETCH sequence number");
        assert_eq!(fetch.uid, want.uid, "{name}: UID of FETCH {seq}");
        assert_eq!(
            fetch.flags,
            want.flags.map(flags),
            "{name}: FLAGS of FETCH {seq}"
        );
        assert_eq!(
            fetch.internal_date.as_deref(),
            want.date,
            "{name}: INTERNALDATE of FETCH {seq}"
        );
        assert_eq!(fetch.size, want.size, "{name}: RFC822.SIZE of FETCH {seq}");
        let body = fetch.body.map(|b| b.into_vec().unwrap());
        assert_eq!(body.as_deref(), want.body, "{name}: BODY[] of FETCH {seq}");
        assert_eq!(
            fetch.header.as_deref(),
            want.header,
            "{name}: header of FETCH {seq}"
        );
    }

    fn done(self) {
        assert!(
            self.items.is_empty(),
            "{}: responses left unchecked: {:?}",
            self.name,
            self.items
        );
    }
}

// ---- the corpus as a whole ----

/// Whatever the server, framing consumes each block exactly, no response is dropped as
/// unparseable, and every frame that starts with a tag is recognised as that tag's
/// completion.
#[tokio::test]
async fn every_response_parses_and_every_completion_is_recognised() {
    let mut frames = 0;
    for file in FILES {
        for block in load_blocks(file) {
            let replayed = replay(file, &block).await;
            for (word, response) in replayed.first_words.iter().zip(&replayed.responses) {
                frames += 1;
                let at = format!("{file}/{}", block.name);
                match response {
                    Response::Unparsed { text, .. } => panic!("{at}: could not parse {text:?}"),
                    Response::Tagged { tag, .. } => assert_eq!(tag, word, "{at}"),
                    _ if word != "*" && word != "+" => {
                        panic!("{at}: tagged {word} not recognised: {response:?}")
                    }
                    _ => {}
                }
            }
        }
    }
    assert!(frames > 300, "the corpus shrank to {frames} responses");
}

// ---- one test per server ----

const DOVECOT_LOGIN_CAPS: &str = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY \
THREAD=REFERENCES THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN \
NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN \
CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY LITERAL+ NOTIFY SPECIAL-USE";

const FIVE_FLAGS: &[&str] = &["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"];

#[tokio::test]
async fn dovecot() {
    let mut corpus = Corpus::load("dovecot.txt").await;

    let mut s = corpus.script("greeting-and-login");
    s.status(
        OK,
        caps("IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN AUTH=LOGIN"),
        "Dovecot (Ubuntu) ready.",
    );
    s.tagged("1", OK, caps(DOVECOT_LOGIN_CAPS), "Logged in");
    s.done();

    let mut s = corpus.script("enable-and-examine");
    s.other("* ENABLED QRESYNC");
    s.tagged("2", OK, None, "Enabled (0.001 + 0.000 secs).");
    s.flags(FIVE_FLAGS);
    s.status(OK, Some(Code::PermanentFlags(vec![])), "Read-only mailbox.");
    s.exists(64);
    s.recent(0);
    s.status(OK, Some(Code::UidValidity(1_560_264_817)), "UIDs valid");
    s.status(OK, Some(Code::UidNext(86)), "Predicted next UID");
    s.status(OK, other("HIGHESTMODSEQ", "3"), "Highest");
    s.tagged(
        "3",
        OK,
        Some(Code::ReadOnly),
        "Examine completed (0.014 + 0.000 + 0.013 secs).",
    );
    s.done();

    let mut s = corpus.script("namespace-inbox-prefix");
    s.status(
        OK,
        caps("IMAP4 IMAP4REV1 STARTTLS"),
        "perdition ready on mvlsmtp003.sidi.mpi.it 0002ed12",
    );
    s.tagged("A00000000", OK, None, "Begin TLS negotiation now");
    s.capability("IMAP4 IMAP4REV1");
    s.tagged("A00000001", OK, None, "CAPABILITY");
    s.capability(
        "IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES \
THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS \
LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS \
BINARY MOVE NOTIFY SPECIAL-USE QUOTA",
    );
    s.tagged(
        "A00000002",
        OK,
        None,
        "Ministero dell'Istruzione, dell'Universita' e della Ricerca - Servizio di Posta Elettronica. \
Ogni accesso e' registrato.",
    );
    s.namespace(&[("INBOX.", Some('.'))]);
    s.tagged(
        "A00000003",
        OK,
        None,
        "Namespace completed (0.000 + 0.041 + 0.040 secs).",
    );
    s.list(&["\\HasChildren"], Some('.'), "INBOX");
    s.tagged(
        "A00000004",
        OK,
        None,
        "List completed (0.000 + 0.040 + 0.039 secs).",
    );
    let sent = s.list(&["\\UnMarked", "\\Sent"], Some('.'), "INBOX.Sent");
    assert!(sent.has_attribute("\\sent") && !sent.has_attribute("\\Trash"));
    s.done();

    let mut s = corpus.script("login-capability-code-and-list");
    s.tagged(
        "A100",
        OK,
        caps("IMAP4rev1 IDLE MOVE QUOTA CONDSTORE"),
        "Logged in",
    );
    s.list(&["\\HasNoChildren"], Some('.'), "INBOX");
    s.done();

    let mut s = corpus.script("append-uidplus");
    s.status(OK, Some(Code::PermanentFlags(vec![])), "Read-only mailbox.");
    s.exists(13);
    s.recent(7);
    s.status(OK, other("UNSEEN", "1"), "First unseen.");
    s.status(OK, Some(Code::UidValidity(1_631_928_677)), "UIDs valid");
    s.status(OK, Some(Code::UidNext(418)), "Predicted next UID");
    s.status(OK, other("HIGHESTMODSEQ", "843"), "Highest");
    s.tagged(
        "JOEF15",
        OK,
        Some(Code::ReadOnly),
        "Examine completed (0.001 + 0.000 secs).",
    );
    s.cont("OK");
    s.exists(14);
    s.recent(8);
    s.tagged(
        "JOEF16",
        OK,
        Some(Code::AppendUid {
            uidvalidity: 1_631_928_677,
            uids: vec![418],
        }),
        "Append completed (0.003 + 0.001 + 0.002 secs).",
    );
    s.done();

    // The 98-octet MIME header is skipped whole: the completion after it is still found.
    let mut s = corpus.script("fetch-mime-part-literal");
    s.fetch(F {
        seq: 1,
        uid: Some(1870),
        ..F::default()
    });
    s.tagged("A0005", OK, None, "Fetch completed (0.001 + 0.000 secs).");
    s.done();

    corpus.finish();
}

const CYRUS_LOGIN_CAPS: &str = "IMAP4rev1 LITERAL+ ID ENABLE ACL RIGHTS=kxte QUOTA MAILBOX-REFERRALS \
NAMESPACE UIDPLUS NO_ATOMIC_RENAME UNSELECT CHILDREN MULTIAPPEND BINARY CATENATE CONDSTORE ESEARCH SORT \
SORT=MODSEQ SORT=DISPLAY THREAD=ORDEREDSUBJECT THREAD=REFERENCES ANNOTATEMORE LIST-EXTENDED WITHIN \
QRESYNC SCAN XLIST";

#[tokio::test]
async fn cyrus() {
    let mut corpus = Corpus::load("cyrus.txt").await;

    let mut s = corpus.script("greeting-and-login");
    s.status(
        OK,
        caps("IMAP4rev1 LITERAL+ ID ENABLE AUTH=GSSAPI AUTH=PLAIN AUTH=LOGIN SASL-IR"),
        "mailbox1.caesar.elte.hu Cyrus IMAP git2.4.17+0-Debian-2.4.17+nocaldav-0+deb8u2+iig1 server ready",
    );
    s.tagged(
        "$",
        OK,
        caps(&format!(
            "{CYRUS_LOGIN_CAPS} URLAUTH URLAUTH=BINARY LOGINDISABLED AUTH=GSSAPI AUTH=PLAIN AUTH=LOGIN \
COMPRESS=DEFLATE IDLE"
        )),
        "User logged in SESSIONID=<cyrus-25655-1557749176-1>",
    );
    s.tagged("$", OK, None, "Completed (0.078 secs)");
    s.tagged("$", No, None, "Mailbox does not exist");
    s.done();

    let mut s = corpus.script("admin-session");
    s.status(
        OK,
        caps("IMAP4rev1 LITERAL+ ID ENABLE AUTH=PLAIN SASL-IR"),
        "test Cyrus IMAP v2.4.17-caldav-beta10-Debian-2.4.17+caldav~beta10-18 server ready",
    );
    s.tagged(
        ".",
        OK,
        caps(&format!(
            "{CYRUS_LOGIN_CAPS} X-REPLICATION URLAUTH URLAUTH=BINARY LOGINDISABLED COMPRESS=DEFLATE IDLE"
        )),
        "User logged in SESSIONID=<cyrus-18-1432282885-1>",
    );
    for tag in ["A", "B", "C"] {
        s.tagged(tag, OK, None, "Completed");
    }
    for name in ["INBOX", "user.alice", "user.bob"] {
        s.list(&["\\HasNoChildren"], Some('.'), name);
    }
    s.tagged("D", OK, None, "Completed (0.000 secs 4 calls)");
    s.done();

    let mut s = corpus.script("list-subscribed-mutf7");
    s.list(&["\\Noinferiors", "\\Subscribed"], Some('/'), "INBOX");
    for name in ["Archive", "Drafts", "Junk", "Sent", "Spam"] {
        s.list(&["\\Subscribed"], Some('/'), name);
    }
    // The name stays modified UTF-7 on the wire side; decoding is the caller's business.
    let greek = s.list(
        &["\\Subscribed"],
        Some('/'),
        "Test-&A5EDwAOsA70DxAO3A8MDtw-",
    );
    assert_eq!(mutf7::decode(&greek.name).unwrap(), "Test-Απάντηση");
    s.list(&["\\Subscribed"], Some('/'), "Trash");
    s.list(
        &["\\Subscribed"],
        Some('/'),
        "Shared Folders/shared/Project Planning",
    );
    s.list(
        &["\\Subscribed"],
        Some('/'),
        "Shared Folders/shared/testing",
    );
    s.tagged("A0005", OK, None, "Completed");
    s.done();

    let mut s = corpus.script("quotaroot-user-root");
    s.quota_root("inbox", &["user/<username>@<domain>.com"]);
    s.quota(
        "user/<username>@<domain>.com",
        &[quota("STORAGE", 747, 102_400)],
    );
    s.done();

    // Debian 12's Cyrus 3.6 with its defaults: what mailmove meets there. A refused
    // name and a refused message are plain NOs (no response code) that mailmove must
    // read as refusals, not as reasons to retry; the day of INTERNALDATE is padded with
    // a space, which APPEND accepts back as it is.
    let mut s = corpus.script("debian-3.6-quota-refusals-dates");
    s.quota_root("INBOX", &["INBOX"]);
    s.quota("INBOX", &[]);
    s.tagged("C3", OK, None, "Completed");
    let refused = s.tagged("C4", No, None, "Invalid mailbox name");
    assert!(!is_throttled(&refused));
    s.tagged("C5", No, None, "Invalid mailbox name");
    s.tagged("C6", No, None, "Message contains bare newlines");
    s.tagged("C7", No, None, "Message contains NUL characters");
    s.fetch(F {
        seq: 1,
        uid: Some(1),
        date: Some(" 1-Jan-2020 10:00:00 +0000"),
        size: Some(18),
        ..F::default()
    });
    s.tagged("C8", OK, None, "Completed (0.000 sec)");
    s.done();

    corpus.finish();
}

const COURIER_CAPS: &str = "IMAP4rev1 UIDPLUS CHILDREN NAMESPACE THREAD=ORDEREDSUBJECT THREAD=REFERENCES \
SORT QUOTA IDLE AUTH=PLAIN ACL ACL2=UNION";

#[tokio::test]
async fn courier() {
    let mut corpus = Corpus::load("courier.txt").await;

    let mut s = corpus.script("greeting-login-list");
    s.status(
        OK,
        caps(COURIER_CAPS),
        "Courier-IMAP ready. Copyright 1998-2011 Double Precision, Inc.  See COPYING for distribution \
information.",
    );
    s.cont("");
    s.tagged("1", OK, None, "LOGIN Ok.");
    s.capability(COURIER_CAPS);
    s.tagged("2", OK, None, "CAPABILITY completed");
    let expected = [
        ("\\HasNoChildren", "INBOX.Sent.2012"),
        (
            "\\HasNoChildren",
            "INBOX.Archive.Bruiloft Ruud &- Manon.Aanzoek",
        ),
        ("\\HasChildren", "INBOX.Twinklemedia.Oude correspondentie"),
        ("\\HasNoChildren", "INBOX.Drafts"),
        ("\\HasChildren", "INBOX.NVKI.Administratie ALG"),
        ("\\HasNoChildren", "INBOX.Archive.Vakantie NZ"),
        (
            "\\HasNoChildren",
            "INBOX.Twinklemedia.Oude correspondentie.Charles Poelmans",
        ),
        ("\\HasNoChildren", "INBOX.Twinklemedia.Belasting_KvK_Bank"),
        ("\\HasChildren", "INBOX.NVKI.Bestuur"),
        ("\\HasNoChildren", "INBOX.Sent.2013"),
    ];
    for (attribute, name) in expected {
        s.list(&[attribute], Some('.'), name);
    }
    s.done();

    let mut s = corpus.script("namespace-status-select");
    s.status(
        OK,
        caps(COURIER_CAPS),
        "Courier-IMAP ready. Copyright 1998-2008 Double Precision, Inc.  See COPYING for distribution \
information.",
    );
    s.tagged("1000", OK, None, "NOOP completed");
    s.capability(COURIER_CAPS);
    s.tagged("1001", OK, None, "CAPABILITY completed");
    s.tagged("1002", OK, None, "LOGIN Ok.");
    s.namespace(&[("INBOX.", Some('.'))]);
    s.tagged("1003", OK, None, "NAMESPACE completed.");
    s.mailbox_status(
        "INBOX",
        &[
            ("MESSAGES", 4756),
            ("RECENT", 0),
            ("UIDNEXT", 750_138),
            ("UNSEEN", 4685),
        ],
    );
    s.tagged("1004", OK, None, "STATUS Completed.");
    s.flags(&[
        "Junk",
        "NonJunk",
        "$label3",
        "\\Draft",
        "\\Answered",
        "\\Flagged",
        "\\Deleted",
        "\\Seen",
        "\\Recent",
    ]);
    s.status(
        OK,
        Some(Code::PermanentFlags(flags(&[
            "Junk",
            "NonJunk",
            "$label3",
            "\\*",
            "\\Draft",
            "\\Answered",
            "\\Flagged",
            "\\Deleted",
            "\\Seen",
        ]))),
        "Limited",
    );
    s.exists(4756);
    s.recent(0);
    s.done();

    // Debian 12's Courier 5.0 with its defaults: a quota root with no resource list at
    // all (quirks::QUOTA_WITHOUT_RESOURCES), the two refusals mailmove falls back from,
    // and the ALERT that comes with a message carrying raw 8-bit headers.
    let mut s = corpus.script("debian-5.0-quota-refusals-alert");
    s.quota_root("INBOX", &["ROOT"]);
    s.quota("ROOT", &[]);
    s.tagged("C2", OK, None, "GETQUOTAROOT Ok.");
    let refused = s.tagged("C3", No, None, "Invalid mailbox name.");
    assert!(!is_throttled(&refused));
    s.tagged("C4", No, None, "Cannot create this folder.");
    s.status(
        OK,
        other("ALERT", ""),
        "Your IMAP client does not appear to correctly implement Unicode messages, see \
https://tools.ietf.org/html/rfc6855.html",
    );
    s.tagged(
        "C5",
        OK,
        Some(Code::AppendUid {
            uidvalidity: 796_348_179,
            uids: vec![1],
        }),
        "APPEND Ok.",
    );
    s.done();

    corpus.finish();
}

#[tokio::test]
async fn exchange() {
    let mut corpus = Corpus::load("exchange.txt").await;

    let mut s = corpus.script("office365-greeting-namespace-list");
    // The bracket at the end of the greeting is text, not a response code.
    s.status(
        OK,
        None,
        "The Microsoft Exchange IMAP4 service is ready. \
[UABSADMAUAAxADkAMQBDAEEAMAAwADEAMQAuAEUAVQBSAFAAMQA5ADEALgBQAFIATwBEAC4ATwBVAFQATABPAE8ASwAuAEMATwBNAA==]",
    );
    s.capability("IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS ID UNSELECT CHILDREN IDLE NAMESPACE LITERAL+");
    s.tagged("A00000000", OK, None, "CAPABILITY completed.");
    s.tagged("A00000001", OK, None, "AUTHENTICATE completed.");
    s.capability(
        "IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS MOVE ID UNSELECT CLIENTACCESSRULES \
CLIENTNETWORKPRESENCELOCATION BACKENDAUTHENTICATE CHILDREN IDLE NAMESPACE LITERAL+",
    );
    s.tagged("A00000002", OK, None, "CAPABILITY completed.");
    s.namespace(&[("", Some('/'))]);
    s.tagged("A00000003", OK, None, "NAMESPACE completed.");
    s.list(&["\\Marked", "\\HasNoChildren"], Some('/'), "Inbox");
    s.tagged("A00000004", OK, None, "LIST completed.");
    s.list(&["\\Marked", "\\HasNoChildren"], Some('/'), "app");
    s.list(&["\\HasNoChildren"], Some('/'), "Archive");
    s.list(
        &["\\Marked", "\\HasNoChildren", "\\Trash"],
        Some('/'),
        "Deleted",
    );
    s.list(
        &["\\Marked", "\\HasNoChildren", "\\Drafts"],
        Some('/'),
        "Drafts",
    );
    s.list(&["\\Marked", "\\HasNoChildren"], Some('/'), "Inbox");
    s.list(
        &["\\Marked", "\\HasNoChildren", "\\Junk"],
        Some('/'),
        "Junk",
    );
    s.list(&["\\HasNoChildren"], Some('/'), "Notes");
    s.list(&["\\HasNoChildren"], Some('/'), "Outbox");
    s.done();

    let mut s = corpus.script("exchange2010-select-empty-fetch");
    let exchange_flags = [
        "\\Seen",
        "\\Answered",
        "\\Flagged",
        "\\Deleted",
        "\\Draft",
        "$MDNSent",
    ];
    s.exists(2556);
    s.recent(0);
    s.flags(&exchange_flags);
    s.status(
        OK,
        Some(Code::PermanentFlags(flags(&exchange_flags))),
        "Permanent flags",
    );
    s.status(OK, other("UNSEEN", "1"), "Is the first unseen message");
    s.status(OK, Some(Code::UidValidity(170_535)), "UIDVALIDITY value");
    s.status(
        OK,
        Some(Code::UidNext(23072)),
        "The next unique identifier value",
    );
    s.tagged("00004", OK, Some(Code::ReadWrite), "SELECT completed.");
    s.tagged("00005", OK, None, "FETCH completed.");
    s.done();

    let mut s = corpus.script("exchange2019-fetch-size-uid");
    s.fetch(F {
        seq: 1,
        uid: Some(133),
        size: Some(19140),
        ..F::default()
    });
    s.tagged("9", OK, None, "FETCH completed.");
    s.done();

    let mut s = corpus.script("outlook-com-login");
    s.status(
        OK,
        None,
        "Outlook.com IMAP4rev1 server version 17.4.0.0 ready (BLU451-IMAP82)",
    );
    s.capability(
        "IMAP4rev1 CHILDREN ID NAMESPACE UIDPLUS UNSELECT AUTH=PLAIN AUTH=XOAUTH2 SASL-IR",
    );
    s.tagged("A0", OK, None, "CAPABILITY completed");
    s.tagged("A1", OK, None, "AUTHENTICATE completed.");
    s.done();

    // Microsoft 365 refusing a message too large for it, with BAD and no code.
    let mut s = corpus.script("append-limits");
    let first = s.tagged("B1", Bad, None, "command line limit exceeded");
    let second = s.tagged("B2", Bad, None, "Command Error. 10");
    assert!(!is_throttled(&first) && !is_throttled(&second));
    s.done();

    corpus.finish();
}

#[tokio::test]
async fn gmail() {
    let mut corpus = Corpus::load("gmail.txt").await;

    let mut s = corpus.script("login-namespace-special-use");
    s.status(
        OK,
        None,
        "Gimap ready for requests from 189.32.189.109 t133mb268923674vkb",
    );
    s.capability(
        "IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID XLIST CHILDREN X-GM-EXT-1 XYZZY SASL-IR AUTH=XOAUTH2 \
AUTH=PLAIN AUTH=PLAIN-CLIENTTOKEN AUTH=OAUTHBEARER AUTH=XOAUTH",
    );
    s.tagged(
        "B00000000",
        OK,
        None,
        "Thats all she wrote! t133mb268923674vkb",
    );
    s.capability(
        "IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID XLIST CHILDREN X-GM-EXT-1 UIDPLUS COMPRESS=DEFLATE \
ENABLE MOVE CONDSTORE ESEARCH UTF8=ACCEPT LIST-EXTENDED LIST-STATUS LITERAL- SPECIAL-USE APPENDLIMIT=35651584",
    );
    s.tagged(
        "B00000001",
        OK,
        None,
        "testswdg@gmail.com authenticated (Success)",
    );
    s.namespace(&[("", Some('/'))]);
    s.tagged("B00000002", OK, None, "Success");
    s.list(&["\\HasNoChildren"], Some('/'), "INBOX");
    s.tagged("B00000003", OK, None, "Success");
    s.list(
        &["\\Flagged", "\\HasNoChildren"],
        Some('/'),
        "[Gmail]/Com estrela",
    );
    let sent = s.list(
        &["\\HasNoChildren", "\\Sent"],
        Some('/'),
        "[Gmail]/E-mails enviados",
    );
    assert!(sent.has_attribute("\\Sent"));
    s.list(
        &["\\HasNoChildren", "\\Trash"],
        Some('/'),
        "[Gmail]/Lixeira",
    );
    s.list(
        &["\\Drafts", "\\HasNoChildren"],
        Some('/'),
        "[Gmail]/Rascunhos",
    );
    s.list(&["\\HasNoChildren", "\\Junk"], Some('/'), "[Gmail]/Spam");
    s.list(
        &["\\All", "\\HasNoChildren"],
        Some('/'),
        "[Gmail]/Todos os e-mails",
    );
    s.tagged("B00000004", OK, None, "Success");
    s.done();

    let mut s = corpus.script("list-subscribed-mutf7");
    s.list(&["\\HasNoChildren", "\\Subscribed"], Some('/'), "INBOX");
    s.tagged("B00000003", OK, None, "Success");
    s.list(
        &["\\Drafts", "\\HasNoChildren", "\\Subscribed"],
        Some('/'),
        "[Gmail]/Brouillons",
    );
    s.list(
        &["\\HasNoChildren", "\\Subscribed", "\\Trash"],
        Some('/'),
        "[Gmail]/Corbeille",
    );
    let sent = s.list(
        &["\\HasNoChildren", "\\Sent", "\\Subscribed"],
        Some('/'),
        "[Gmail]/Messages envoy&AOk-s",
    );
    assert_eq!(
        mutf7::decode(&sent.name).unwrap(),
        "[Gmail]/Messages envoyés"
    );
    s.done();

    let mut s = corpus.script("standalone-capability-after-login");
    s.capability(
        "IMAP4rev1 CHILDREN UNSELECT LITERAL+ NAMESPACE XLIST UIDPLUS ENABLE ID IDLE MOVE",
    );
    s.tagged("T2", OK, None, "LOGIN Completed.");
    s.done();

    let mut s = corpus.script("id-handshake");
    s.status(
        OK,
        None,
        "Gimap ready for requests from 127.0.0.1 k2if6111336rvb.0",
    );
    s.tagged(
        "a001",
        OK,
        None,
        "username@gmail.com authenticated (Success)",
    );
    s.tagged("a001", OK, None, "Login successful");
    s.capability("IMAP4rev1 UNSELECT LITERAL+ IDLE NAMESPACE QUOTA ID XLIST CHILDREN X-GM-EXT-1");
    s.tagged("a002", OK, None, "Success");
    s.other(
        "* ID (\"name\" \"GImap\" \"vendor\" \"Google, Inc.\" \"support-url\" \
\"http://mail.google.com/support\" \"remote-host\" \"127.0.0.1\")",
    );
    s.tagged("a003", OK, None, "Success");
    s.done();

    // Unknown items (X-GM-MSGID, X-GM-LABELS with quoted labels) are skipped whole.
    let mut s = corpus.script("x-gm-fetch-items");
    for seq in [1, 1, 2, 3, 4] {
        s.fetch(F {
            seq,
            ..F::default()
        });
    }
    s.tagged("a011", OK, None, "FETCH (Success)");
    s.done();

    let mut s = corpus.script("highestmodseq-without-text");
    s.status(OK, other("HIGHESTMODSEQ", "13637"), "");
    s.done();

    let mut s = corpus.script("appenduid-glued-to-text");
    s.tagged(
        "A8",
        OK,
        Some(Code::AppendUid {
            uidvalidity: 641_429_830,
            uids: vec![111],
        }),
        "(Success)",
    );
    s.done();

    let mut s = corpus.script("paren-in-text-and-throttled");
    s.tagged(
        "2",
        OK,
        Some(Code::ReadWrite),
        "mailbox) selected. (Success)",
    );
    s.exists(16);
    let idle = s.tagged("IDLE", OK, None, "IDLE terminated (Success) [THROTTLED]");
    assert!(
        is_throttled(&idle),
        "a trailing [THROTTLED] still means slow down"
    );
    s.done();

    // What Gmail says to a folder name or a message it will not take: a refusal of
    // that folder or that message, never a reason to slow down.
    let mut s = corpus.script("refused-names-and-sizes");
    let name = s.tagged("A1", No, None, "Folder name is not allowed. (Failure)");
    let size = s.tagged(
        "A2",
        Bad,
        other("TOOBIG", ""),
        "Message too large. https://support.google.com/mail/answer/6584#limit",
    );
    assert!(!is_throttled(&name) && !is_throttled(&size));
    s.done();

    corpus.finish();
}

#[tokio::test]
async fn quirks() {
    let mut corpus = Corpus::load("quirks.txt").await;

    let mut s = corpus.script("surgemail-flags-trailing-space");
    let surge = [
        "\\Answered",
        "\\Flagged",
        "\\Deleted",
        "\\Draft",
        "\\Seen",
        "$Forwarded",
    ];
    s.exists(1);
    s.recent(0);
    s.status(OK, other("UNSEEN", "1"), "first unseen message");
    s.status(OK, Some(Code::UidValidity(1_754_171_061)), "Uid epoch");
    s.status(OK, Some(Code::UidNext(2)), "Predicted next uid");
    s.flags(&surge);
    s.status(OK, Some(Code::PermanentFlags(flags(&surge))), "Limited");
    s.tagged("A0002", OK, Some(Code::ReadWrite), "SELECT completed");
    s.done();

    let mut s = corpus.script("icloud-fetch-flags-trailing-space");
    s.fetch(F {
        seq: 114_905,
        uid: Some(1),
        flags: Some(&["\\Seen", "$NotJunk"]),
        date: Some("12-Dec-2020 02:18:21 +0000"),
        size: Some(35943),
        ..F::default()
    });
    s.done();

    let mut s = corpus.script("permanentflags-leading-space");
    s.flags(&[
        "\\Seen",
        "\\Answered",
        "\\Flagged",
        "$Completed",
        "\\Deleted",
        "\\Draft",
        "\\Recent",
        "$Forwarded",
        "$Redirected",
        "Junk",
        "NonJunk",
    ]);
    s.exists(119);
    s.recent(119);
    s.status(OK, Some(Code::UidValidity(1_421_117_124)), "UID validity");
    s.status(OK, other("UNSEEN", "111"), "Message 111 is first unseen");
    s.status(OK, Some(Code::UidNext(246)), "Predicted next UID");
    s.status(OK, Some(Code::PermanentFlags(flags(&["\\*"]))), "");
    s.tagged("a", OK, Some(Code::ReadOnly), "EXAMINE Completed");
    s.done();

    let mut s = corpus.script("davmail-double-space");
    s.status(
        OK,
        caps("IMAP4REV1 AUTH=LOGIN IDLE MOVE SPECIAL-USE UIDPLUS"),
        "IMAP4rev1 DavMail 6.3.0-3627 server ready",
    );
    s.tagged("0.0", OK, None, "Authenticated");
    s.capability("IMAP4REV1 AUTH=LOGIN IDLE MOVE SPECIAL-USE UIDPLUS");
    s.tagged("0.1", OK, None, "CAPABILITY completed");
    s.exists(522);
    s.done();

    let mut s = corpus.script("extra-spaces-described");
    s.capability("IMAP4rev1 IDLE");
    s.quota("", &[quota("STORAGE", 10, 512)]);
    s.done();

    let mut s = corpus.script("trailing-spaces");
    s.capability("IMAP4rev1");
    s.fetch(F {
        seq: 11487,
        uid: Some(19436),
        ..F::default()
    });
    s.mailbox_status("INBOX", &[("MESSAGES", 0)]);
    s.done();

    let mut s = corpus.script("qqmail-codes-without-text");
    s.status(
        OK,
        caps("IMAP4 IMAP4rev1 ID AUTH=PLAIN AUTH=LOGIN NAMESPACE"),
        "QQMail IMAP4Server ready",
    );
    for line in [
        r#"* XLIST (\NoSelect \HasChildren) "/" "&UXZO1mWHTvZZOQ-""#,
        r#"* XLIST (\HasNoChildren \Drafts) "/" "Drafts""#,
        r#"* XLIST (\HasNoChildren \Junk) "/" "Junk""#,
        r#"* XLIST (\HasNoChildren \Trash) "/" "Deleted Messages""#,
        r#"* XLIST (\HasNoChildren \Sent) "/" "Sent Messages""#,
        r#"* XLIST (\HasNoChildren \Inbox) "/" "INBOX""#,
    ] {
        s.other(line);
    }
    s.tagged("A00000004", OK, None, "XLIST completed");
    s.exists(65);
    s.recent(0);
    s.status(OK, other("UNSEEN", "1"), "");
    s.status(
        OK,
        Some(Code::UidValidity(1_628_767_717)),
        "UID validity status",
    );
    s.status(OK, Some(Code::UidNext(68)), "Predicted next UID");
    s.flags(&["\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "\\Seen"]);
    s.status(
        OK,
        Some(Code::PermanentFlags(flags(&[
            "\\*",
            "\\Answered",
            "\\Flagged",
            "\\Deleted",
            "\\Draft",
            "\\Seen",
        ]))),
        "Permanent flags",
    );
    s.tagged("A00000005", OK, Some(Code::ReadWrite), "SELECT complete");
    s.search(&[62]);
    s.done();

    let mut s = corpus.script("icloud-select-codes-only");
    let icloud = [
        "\\Answered",
        "\\Flagged",
        "\\Draft",
        "\\Deleted",
        "\\Seen",
        "\\Recent",
        "$MailFlagBit0",
        "$MailFlagBit1",
        "$MailFlagBit2",
        "$Forwarded",
        "Redirected",
        "$NotJunk",
        "NotJunk",
    ];
    s.tagged("E00000132", OK, None, "UNSELECT completed (took 1 ms)");
    s.exists(2937);
    s.recent(0);
    s.status(OK, other("UNSEEN", "17"), "");
    s.status(OK, Some(Code::UidValidity(1_475_179_112)), "");
    s.status(OK, Some(Code::UidNext(8870)), "");
    s.flags(&icloud);
    let mut permanent = flags(&icloud);
    permanent.push("\\*".into());
    s.status(OK, Some(Code::PermanentFlags(permanent)), "");
    s.status(OK, other("HIGHESTMODSEQ", "393317264036880"), "");
    s.tagged(
        "E00000133",
        OK,
        Some(Code::ReadWrite),
        "SELECT completed (took 30 ms)",
    );
    s.other(r#"* ESEARCH (TAG "E00000134")"#);
    s.done();

    let mut s = corpus.script("bare-ok-and-bye");
    s.tagged("A6", OK, None, "");
    s.status(Bye, None, "");
    s.done();

    let mut s = corpus.script("yahoo-examine-and-fetch");
    s.status(
        OK,
        caps(
            "IMAP4rev1 ID MOVE NAMESPACE X-ID-ACLID UIDPLUS LITERAL+ CHILDREN XAPPLEPUSHSERVICE XYMHIGHESTMODSEQ \
AUTH=PLAIN AUTH=LOGIN AUTH=XOAUTH2 AUTH=XYMCOOKIE AUTH=XYMECOOKIE AUTH=XYMCOOKIEB64 AUTH=XYMPKI",
        ),
        "IMAP4rev1 imapgate-1.8.1_01.20166",
    );
    s.cont("");
    s.tagged(
        "A00000000",
        OK,
        None,
        "AUTHENTICATE completed - Mailbox size in bytes is 7150780663",
    );
    s.exists(23992);
    s.recent(0);
    s.status(OK, Some(Code::UidValidity(1)), "UIDs valid");
    s.status(OK, Some(Code::UidNext(333_878)), "Predicted next UID");
    s.flags(&[
        "\\Answered",
        "\\Deleted",
        "\\Draft",
        "\\Flagged",
        "\\Seen",
        "$Forwarded",
        "$Junk",
        "$NotJunk",
    ]);
    s.status(
        OK,
        Some(Code::PermanentFlags(vec![])),
        "No permanent flags permitted",
    );
    s.status(OK, other("HIGHESTMODSEQ", "102784"), "");
    s.tagged(
        "A00000004",
        OK,
        Some(Code::ReadOnly),
        "EXAMINE completed; now in selected state",
    );
    s.fetch(F {
        seq: 9978,
        uid: Some(140_292),
        flags: Some(&["\\Seen"]),
        date: Some("17-Feb-2014 13:10:20 +0000"),
        size: Some(7534),
        ..F::default()
    });
    s.done();

    // quirks::QUOTED_FLAGS: the quoted "\\Deleted" is read as the flag \Deleted.
    let mut s = corpus.script("intermail-quoted-flag");
    s.status(
        OK,
        None,
        "IMAP4 server (InterMail vM.8.04.03.24.03 201-2389-100-175-1-20180223) ready Mon, 15 Oct 2018 \
13:29:27 +0000 (UTC)",
    );
    s.exists(7892);
    s.status(OK, other("UNSEEN", "1"), "First unseen message");
    s.status(OK, Some(Code::UidValidity(1_402_704_534)), "UIDs valid");
    s.status(OK, Some(Code::UidNext(39731)), "Predicted next UID");
    s.flags(&[
        "\\Deleted",
        "\\Answered",
        "\\Flagged",
        "\\Deleted",
        "\\Draft",
        "\\Seen",
    ]);
    s.status(OK, Some(Code::PermanentFlags(vec![])), "Permanent flags");
    s.recent(25);
    s.tagged("A00000005", OK, Some(Code::ReadOnly), "EXAMINE completed");
    s.done();

    let mut s = corpus.script("body-lines-negative");
    s.fetch(F {
        seq: 32,
        uid: Some(389),
        size: Some(27824),
        ..F::default()
    });
    s.done();

    // quirks::NEGATIVE_SIZE: an unknown size reads as 0, and the items after it survive.
    let mut s = corpus.script("negative-size");
    s.fetch(F {
        seq: 7,
        uid: Some(4711),
        flags: Some(&["\\Seen"]),
        size: Some(0),
        ..F::default()
    });
    s.done();

    // Not codes by the grammar; kept as named codes with no arguments, the text after them
    // intact, and nothing swallowed from the next response.
    let mut s = corpus.script("odd-response-codes");
    s.status(No, other("UNSEEN", ""), "");
    s.status(No, other("TRYCREATE", ""), "");
    s.status(No, other("FOO(BAR)", ""), "");
    s.done();

    let mut s = corpus.script("odd-delimiter-and-unknown-responses");
    s.list(&["\\HasNoChildren", "\\Marked"], Some('|'), "INBOX");
    s.other(r#"* XLIST (\HasNoChildren \Inbox) "/" "Inbox""#);
    s.other(r#"* XLIST (\Noinferiors \Drafts) "/" "Drafts""#);
    s.other("* VANISHED (EARLIER) 300:310,405,411");
    s.done();

    let mut s = corpus.script("bare-lf");
    s.fetch(F {
        seq: 12,
        header: Some(RFC3501_HEADER.replace("\r\n", "\n").as_bytes()),
        ..F::default()
    });
    s.tagged("a004", OK, None, "FETCH completed");
    s.done();

    let mut s = corpus.script("eight-bit-names");
    s.tagged(
        "v5",
        No,
        other("NONEXISTENT", ""),
        "Unknown Mailbox: [Gmail]/Gönderilmiş Postalar",
    );
    s.list(
        &["\\HasNoChildren", "\\Sent"],
        Some('/'),
        "[Gmail]/Gönderilmiş Postalar",
    );
    s.list(
        &["\\All", "\\HasNoChildren"],
        Some('/'),
        "[Gmail]/Tüm Postalar",
    );
    s.list(&["\\HasNoChildren", "\\Trash"], Some('/'), "[Gmail]/Çöp");
    s.done();

    corpus.finish();
}

const RFC3501_HEADER: &str = "Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n\
From: Terry Gray <gray@cac.washington.edu>\r\n\
Subject: IMAP4rev1 WG mtg summary and minutes\r\n\
To: imap@cac.washington.edu\r\n\
cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\r\n\
Message-Id: <B27397-0100000@cac.washington.edu>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\
\r\n";

const RFC3501_MESSAGE: &str = "Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n\
From: Fred Foobar <foobar@Blurdybloop.COM>\r\n\
Subject: afternoon meeting\r\n\
To: mooch@owatagu.siam.edu\r\n\
Message-Id: <B27397-0100000@Blurdybloop.COM>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\
\r\n\
Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n";

#[tokio::test]
async fn rfc_examples() {
    let mut corpus = Corpus::load("rfc.txt").await;
    assert_eq!(RFC3501_HEADER.len(), 342);
    assert_eq!(RFC3501_MESSAGE.len(), 310);

    let mut s = corpus.script("rfc3501-session");
    s.status(OK, None, "IMAP4rev1 Service Ready");
    s.tagged("a001", OK, None, "LOGIN completed");
    s.exists(18);
    s.flags(FIVE_FLAGS);
    s.recent(2);
    s.status(
        OK,
        other("UNSEEN", "17"),
        "Message 17 is the first unseen message",
    );
    s.status(OK, Some(Code::UidValidity(3_857_529_045)), "UIDs valid");
    s.tagged("a002", OK, Some(Code::ReadWrite), "SELECT completed");
    s.fetch(F {
        seq: 12,
        flags: Some(&["\\Seen"]),
        date: Some("17-Jul-1996 02:44:25 -0700"),
        size: Some(4286),
        ..F::default()
    });
    s.tagged("a003", OK, None, "FETCH completed");
    s.fetch(F {
        seq: 12,
        header: Some(RFC3501_HEADER.as_bytes()),
        ..F::default()
    });
    s.tagged("a004", OK, None, "FETCH completed");
    s.fetch(F {
        seq: 12,
        flags: Some(&["\\Seen", "\\Deleted"]),
        ..F::default()
    });
    s.tagged("a005", OK, None, "+FLAGS completed");
    s.status(Bye, None, "IMAP4rev1 server terminating connection");
    s.tagged("a006", OK, None, "LOGOUT completed");
    s.done();

    let mut s = corpus.script("rfc3501-select");
    s.exists(172);
    s.recent(1);
    s.status(OK, other("UNSEEN", "12"), "Message 12 is first unseen");
    s.status(OK, Some(Code::UidValidity(3_857_529_045)), "UIDs valid");
    s.status(OK, Some(Code::UidNext(4392)), "Predicted next UID");
    s.flags(FIVE_FLAGS);
    s.status(
        OK,
        Some(Code::PermanentFlags(flags(&["\\Deleted", "\\Seen", "\\*"]))),
        "Limited",
    );
    s.tagged("A142", OK, Some(Code::ReadWrite), "SELECT completed");
    s.done();

    let mut s = corpus.script("rfc3501-examine");
    s.exists(17);
    s.recent(2);
    s.status(OK, other("UNSEEN", "8"), "Message 8 is first unseen");
    s.status(OK, Some(Code::UidValidity(3_857_529_045)), "UIDs valid");
    s.status(OK, Some(Code::UidNext(4392)), "Predicted next UID");
    s.flags(FIVE_FLAGS);
    s.status(
        OK,
        Some(Code::PermanentFlags(vec![])),
        "No permanent flags permitted",
    );
    s.tagged("A932", OK, Some(Code::ReadOnly), "EXAMINE completed");
    s.done();

    let mut s = corpus.script("rfc3501-list");
    s.list(&["\\Noselect"], Some('/'), "");
    s.tagged("A101", OK, None, "LIST Completed");
    s.list(&["\\Noselect"], Some('.'), "#news.");
    s.tagged("A102", OK, None, "LIST Completed");
    s.list(&["\\Noselect"], Some('/'), "/");
    s.tagged("A103", OK, None, "LIST Completed");
    s.list(&["\\Noselect"], Some('/'), "~/Mail/foo");
    s.list(&[], Some('/'), "~/Mail/meetings");
    s.tagged("A202", OK, None, "LIST completed");
    s.lsub(&[], Some('.'), "#news.comp.mail.mime");
    s.lsub(&[], Some('.'), "#news.comp.mail.misc");
    s.tagged("A002", OK, None, "LSUB completed");
    s.done();

    let mut s = corpus.script("rfc3501-status-search");
    s.mailbox_status("blurdybloop", &[("MESSAGES", 231), ("UIDNEXT", 44292)]);
    s.tagged("A042", OK, None, "STATUS completed");
    s.search(&[2, 84, 882]);
    s.tagged("A282", OK, None, "SEARCH completed");
    s.search(&[]);
    s.tagged("A283", OK, None, "SEARCH completed");
    s.done();

    let mut s = corpus.script("rfc3501-status-responses");
    s.status(OK, None, "IMAP4rev1 server ready");
    s.tagged("A001", OK, None, "LOGIN completed");
    s.status(No, None, "Disk is 98% full, please delete unnecessary data");
    s.tagged("A222", No, None, "COPY failed: disk is full");
    s.status(Bad, None, "Command line too long");
    s.tagged("A443", Bad, None, "Empty command line");
    s.status(Preauth, None, "IMAP4rev1 server logged in as Smith");
    s.status(Bye, None, "Autologout; idle for too long");
    s.cont("Ready for additional command text");
    s.done();

    let mut s = corpus.script("rfc3501-append-then-fetch-body");
    s.cont("Ready for literal data");
    s.tagged("A003", OK, None, "APPEND completed");
    s.fetch(F {
        seq: 1,
        uid: Some(1),
        flags: Some(&["\\Seen"]),
        date: Some("07-Feb-1994 21:52:25 -0800"),
        size: Some(310),
        body: Some(RFC3501_MESSAGE.as_bytes()),
        ..F::default()
    });
    s.tagged("A004", OK, None, "UID FETCH completed");
    s.done();

    let mut s = corpus.script("rfc4315-uidplus");
    s.tagged(
        "A003",
        OK,
        Some(Code::AppendUid {
            uidvalidity: 38505,
            uids: vec![3955],
        }),
        "APPEND completed",
    );
    s.tagged(
        "A003",
        OK,
        other("COPYUID", "38505 304,319:320 3956:3958"),
        "Done",
    );
    s.done();

    let mut s = corpus.script("rfc2342-namespace");
    s.namespace(&[("", Some('/'))]);
    s.namespace(&[]);
    s.namespace(&[("", Some('/'))]);
    s.namespace(&[("", Some('/'))]);
    s.namespace(&[("INBOX.", Some('.'))]);
    s.namespace(&[("", Some('/')), ("#mh/", Some('/'))]);
    s.done();

    let mut s = corpus.script("rfc6154-special-use");
    s.list(&["\\Marked"], Some('/'), "Inbox");
    s.list(&[], Some('/'), "ToDo");
    s.list(&[], Some('/'), "Projects");
    s.list(&["\\Sent"], Some('/'), "SentMail");
    s.list(&["\\Marked", "\\Drafts"], Some('/'), "MyDrafts");
    s.list(&["\\Trash"], Some('/'), "Trash");
    s.tagged("t1", OK, None, "done");
    s.done();

    let mut s = corpus.script("rfc9208-quota");
    s.quota("!partition/sda4", &[quota("STORAGE", 104, 10_923_847)]);
    s.tagged("G0001", OK, None, "Getquota complete");
    s.quota_root("INBOX", &["#user/alice", "!partition/sda4"]);
    s.quota("#user/alice", &[quota("MESSAGE", 42, 1000)]);
    s.quota("!partition/sda4", &[quota("STORAGE", 104, 10_923_847)]);
    s.tagged("G0002", OK, None, "Getquotaroot complete");
    s.done();

    let mut s = corpus.script("rfc7162-condstore");
    s.status(OK, other("HIGHESTMODSEQ", "715194045007"), "");
    s.fetch(F {
        seq: 1,
        uid: Some(4),
        flags: Some(&["\\Seen"]),
        ..F::default()
    });
    s.fetch(F {
        seq: 2,
        uid: Some(6),
        flags: Some(&["\\Deleted"]),
        ..F::default()
    });
    s.fetch(F {
        seq: 4,
        uid: Some(8),
        flags: Some(&["$NoJunk", "$AutoJunk", "$MDNSent"]),
        ..F::default()
    });
    s.tagged("s100", OK, None, "FETCH completed");
    s.search(&[2, 5, 6, 7, 11, 12, 18, 19, 20, 23]);
    s.tagged("a", OK, None, "Search complete");
    s.mailbox_status(
        "blurdybloop",
        &[
            ("MESSAGES", 231),
            ("UIDNEXT", 44292),
            ("HIGHESTMODSEQ", 7_011_231_777),
        ],
    );
    s.tagged("A042", OK, None, "STATUS completed");
    s.done();

    corpus.finish();
}
