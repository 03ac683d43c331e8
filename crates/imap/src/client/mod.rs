//! The async IMAP client: connection set-up (TLS, STARTTLS, login), simple commands,
//! a streaming UID FETCH and pipelined APPENDs.

use std::collections::VecDeque;
use std::time::Duration;

use base64::Engine;
use mailmove_model::{Endpoint, Secret};
use mailmove_net::{
    BeforeLogin, Body, CompressMode, ConnectOptions, Stream, before_login, open, upgrade,
};
use tokio::io::{AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tracing::{debug, trace, warn};

use crate::compress::Deflated;
use crate::error::Error;
use crate::framing::{FrameLimits, FrameReader};
use crate::response::{
    Code, Fetch, ListEntry, Namespaces, QuotaResource, Response, Status, StatusKind, Untagged,
    parse,
};

/// Commands and APPEND literals gather here and go out in one write when the client
/// is about to wait for the server (or the buffer is full), not one per piece.
const WRITE_BUFFER: usize = 64 * 1024;

/// A spooled body is read back from its file in chunks of this size: each read is a
/// hand-off to tokio's blocking pool.
const SPOOL_READ_CHUNK: usize = 256 * 1024;

/// The connection as the client uses it: responses are framed out of the read side;
/// writes are buffered until [`Client::flush`].
type Connection = FrameReader<BufWriter<Box<dyn Stream>>>;

fn buffered_connection(stream: Box<dyn Stream>, limits: FrameLimits) -> Connection {
    FrameReader::new(BufWriter::with_capacity(WRITE_BUFFER, stream), limits)
}

/// The framing limits for these options: their spill threshold, the default line cap.
fn frame_limits(options: &ConnectOptions) -> FrameLimits {
    FrameLimits {
        spill_threshold: options.spill_threshold,
        ..FrameLimits::default()
    }
}

/// What EXAMINE or SELECT said about a mailbox.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailboxInfo {
    pub exists: u32,
    pub uidvalidity: Option<u32>,
    pub uidnext: Option<u32>,
    /// `None` when the server sent no PERMANENTFLAGS: then FLAGS is the limit.
    pub permanent_flags: Option<Vec<String>>,
    pub flags: Vec<String>,
}

impl MailboxInfo {
    /// Whether a flag stored by APPEND will be kept.
    pub fn accepts_flag(&self, flag: &str) -> bool {
        let allowed = self.permanent_flags.as_ref().unwrap_or(&self.flags);
        if allowed.iter().any(|f| f.eq_ignore_ascii_case(flag)) {
            return true;
        }
        !flag.starts_with('\\') && allowed.iter().any(|f| f == "\\*")
    }
}

/// A quota root's storage figures, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StorageQuota {
    pub used: u64,
    pub limit: u64,
}

pub struct Client {
    connection: Connection,
    host: String,
    next_tag: u64,
    capabilities: Vec<String>,
    response_timeout: Duration,
    /// Set after a lost connection or a protocol error: the session is unusable.
    broken: bool,
    /// The server's address is this machine's or a private network's.
    peer_local: bool,
}

impl Client {
    /// Connects, reads the greeting and secures the connection as the endpoint says:
    /// TLS from the first byte for `imaps://`, STARTTLS for `imap://` when offered.
    /// Without encryption the password may only go to a loopback host or where
    /// `allow_plaintext` says so; otherwise this fails before any login.
    pub async fn connect(endpoint: &Endpoint, options: &ConnectOptions) -> Result<Client, Error> {
        let opened = open(endpoint, options).await?;
        let mut client = Client {
            connection: buffered_connection(opened.stream, frame_limits(options)),
            host: endpoint.host.clone(),
            next_tag: 1,
            capabilities: Vec::new(),
            response_timeout: options.response_timeout,
            broken: false,
            peer_local: opened.peer_local,
        };
        client.read_greeting().await?;
        if client.capabilities.is_empty() {
            client.refresh_capabilities().await?;
        }
        let offered = client.has_capability("STARTTLS");
        if before_login(endpoint, options, "STARTTLS", offered)? == BeforeLogin::Upgrade {
            client = client.starttls(options).await?;
        }
        Ok(client)
    }

    pub fn capabilities(&self) -> &[String] {
        &self.capabilities
    }

    pub fn has_capability(&self, name: &str) -> bool {
        self.capabilities
            .iter()
            .any(|c| c.eq_ignore_ascii_case(name))
    }

    /// Logs in with AUTHENTICATE PLAIN when offered, else LOGIN.
    pub async fn login(&mut self, login: &str, password: &Secret<String>) -> Result<(), Error> {
        let result = if self.has_capability("AUTH=PLAIN") {
            let token = base64::engine::general_purpose::STANDARD
                .encode(format!("\0{login}\0{}", password.expose()));
            if self.has_capability("SASL-IR") {
                self.command_status(&format!("AUTHENTICATE PLAIN {token}"), "AUTHENTICATE")
                    .await
            } else {
                let tag = self.send_line("AUTHENTICATE PLAIN").await?;
                self.wait_continuation(&tag).await?;
                self.write_raw(format!("{token}\r\n").as_bytes()).await?;
                self.finish(&tag).await
            }
        } else {
            let command = format!(
                "LOGIN {} {}",
                quote(login.as_bytes()),
                quote(password.expose().as_bytes())
            );
            self.command_status(&command, "LOGIN").await
        };
        let (untagged, status) = result?;
        if status.kind != StatusKind::Ok {
            return Err(Error::AuthFailed {
                login: login.to_string(),
                text: status.describe(),
            });
        }
        self.capabilities.clear();
        if let Some(Code::Capability(caps)) = status.code {
            self.capabilities = caps;
        }
        for response in untagged {
            if let Untagged::Capability(caps) = response {
                self.capabilities = caps;
            }
        }
        if self.capabilities.is_empty() {
            self.refresh_capabilities().await?;
        }
        Ok(())
    }

    /// Sends ID (RFC 2971) when offered; some servers log it, none needs it.
    pub async fn identify(&mut self) -> Result<(), Error> {
        if self.has_capability("ID") {
            let version = env!("CARGO_PKG_VERSION");
            self.run(&format!(
                "ID (\"name\" \"mailmove\" \"version\" \"{version}\")"
            ))
            .await?;
        }
        Ok(())
    }

    pub async fn namespace(&mut self) -> Result<Namespaces, Error> {
        if !self.has_capability("NAMESPACE") {
            return Ok(Namespaces::default());
        }
        let untagged = self.run("NAMESPACE").await?;
        Ok(untagged
            .into_iter()
            .find_map(|u| match u {
                Untagged::Namespace(n) => Some(n),
                _ => None,
            })
            .unwrap_or_default())
    }

    /// Every folder, with special-use attributes where the server has them.
    pub async fn list(&mut self) -> Result<Vec<ListEntry>, Error> {
        let command = if self.has_capability("SPECIAL-USE") && self.has_capability("LIST-EXTENDED")
        {
            "LIST \"\" \"*\" RETURN (SPECIAL-USE)"
        } else {
            "LIST \"\" \"*\""
        };
        let untagged = self.run(command).await?;
        Ok(untagged
            .into_iter()
            .filter_map(|u| match u {
                Untagged::List(entry) => Some(entry),
                _ => None,
            })
            .collect())
    }

    /// The subscribed folders' raw names.
    pub async fn subscriptions(&mut self) -> Result<Vec<Vec<u8>>, Error> {
        let untagged = self.run("LSUB \"\" \"*\"").await?;
        Ok(untagged
            .into_iter()
            .filter_map(|u| match u {
                Untagged::Lsub(entry) => Some(entry.name),
                _ => None,
            })
            .collect())
    }

    /// Opens a mailbox read-only: the source is never changed.
    pub async fn examine(&mut self, mailbox: &[u8]) -> Result<MailboxInfo, Error> {
        self.open("EXAMINE", mailbox).await
    }

    /// Opens a mailbox read-write, to learn its PERMANENTFLAGS. mailmove never sends
    /// CLOSE or EXPUNGE, so nothing selected this way is ever removed.
    pub async fn select(&mut self, mailbox: &[u8]) -> Result<MailboxInfo, Error> {
        self.open("SELECT", mailbox).await
    }

    async fn open(&mut self, verb: &str, mailbox: &[u8]) -> Result<MailboxInfo, Error> {
        let (untagged, status) = self
            .command_status(&format!("{verb} {}", quote(mailbox)), verb)
            .await?;
        let status = self.require_ok(
            status,
            &format!("{verb} {}", String::from_utf8_lossy(mailbox)),
        )?;
        let mut info = MailboxInfo::default();
        let apply = |code: &Code, info: &mut MailboxInfo| match code {
            Code::UidValidity(v) => info.uidvalidity = Some(*v),
            Code::UidNext(n) => info.uidnext = Some(*n),
            Code::PermanentFlags(f) => info.permanent_flags = Some(f.clone()),
            _ => {}
        };
        for response in &untagged {
            match response {
                Untagged::Exists(n) => info.exists = *n,
                Untagged::Flags(f) => info.flags = f.clone(),
                Untagged::Status(s) => {
                    if let Some(code) = &s.code {
                        apply(code, &mut info);
                    }
                }
                _ => {}
            }
        }
        if let Some(code) = &status.code {
            apply(code, &mut info);
        }
        Ok(info)
    }

    /// STATUS items (MESSAGES, UIDNEXT, UIDVALIDITY, SIZE ...) without selecting.
    pub async fn status(
        &mut self,
        mailbox: &[u8],
        items: &str,
    ) -> Result<Vec<(String, u64)>, Error> {
        let untagged = self
            .run(&format!("STATUS {} ({items})", quote(mailbox)))
            .await?;
        Ok(untagged
            .into_iter()
            .find_map(|u| match u {
                Untagged::MailboxStatus { items, .. } => Some(items),
                _ => None,
            })
            .unwrap_or_default())
    }

    /// Creates a folder; one that already exists is not an error.
    pub async fn create(&mut self, mailbox: &[u8]) -> Result<(), Error> {
        let command = format!("CREATE {}", quote(mailbox));
        let (_, status) = self.command_status(&command, "CREATE").await?;
        match status.kind {
            StatusKind::Ok => Ok(()),
            _ if matches!(&status.code, Some(Code::Other(name, _)) if name == "ALREADYEXISTS") => {
                Ok(())
            }
            _ if status.text.to_ascii_lowercase().contains("exist") => Ok(()),
            _ => self.require_ok(status, &command).map(drop),
        }
    }

    pub async fn subscribe(&mut self, mailbox: &[u8]) -> Result<(), Error> {
        self.run(&format!("SUBSCRIBE {}", quote(mailbox)))
            .await
            .map(drop)
    }

    /// UID SEARCH with the given criteria (e.g. `ALL`, `UNDELETED`).
    pub async fn uid_search(&mut self, criteria: &str) -> Result<Vec<u32>, Error> {
        let untagged = self.run(&format!("UID SEARCH {criteria}")).await?;
        let mut uids: Vec<u32> = untagged
            .into_iter()
            .flat_map(|u| match u {
                Untagged::Search(uids) => uids,
                _ => Vec::new(),
            })
            .collect();
        uids.sort_unstable();
        Ok(uids)
    }

    /// The storage quota of the root that holds `mailbox`, when the server has QUOTA.
    pub async fn storage_quota(&mut self, mailbox: &[u8]) -> Result<Option<StorageQuota>, Error> {
        if !self.has_capability("QUOTA") {
            return Ok(None);
        }
        let (untagged, status) = self
            .command_status(&format!("GETQUOTAROOT {}", quote(mailbox)), "GETQUOTAROOT")
            .await?;
        if status.kind != StatusKind::Ok {
            return Ok(None);
        }
        let storage = untagged.into_iter().find_map(|u| match u {
            Untagged::Quota { resources, .. } => resources
                .into_iter()
                .find(|r: &QuotaResource| r.name == "STORAGE"),
            _ => None,
        });
        // QUOTA counts STORAGE in units of 1024 octets (RFC 9208).
        Ok(storage.map(|r| StorageQuota {
            used: r.usage * 1024,
            limit: r.limit * 1024,
        }))
    }

    /// Starts `UID FETCH set (items)`; read the answers with [`FetchStream::next`].
    pub async fn uid_fetch(&mut self, set: &str, items: &str) -> Result<FetchStream<'_>, Error> {
        let tag = self
            .send_line(&format!("UID FETCH {set} ({items})"))
            .await?;
        Ok(FetchStream {
            client: self,
            tag,
            done: false,
        })
    }

    /// A pipeline of APPENDs on this connection.
    pub fn appender(&mut self, window: usize) -> Appender<'_> {
        let literal_plus = self.has_capability("LITERAL+");
        // Groups are written without waiting for the server, so they need LITERAL+.
        let multi = literal_plus && self.has_capability("MULTIAPPEND") && window > 1;
        Appender {
            client: self,
            in_flight: VecDeque::new(),
            window: window.max(1),
            literal_plus,
            multi,
            open: None,
            again: VecDeque::new(),
        }
    }

    /// Closes the connection at once, without LOGOUT: for a session that failed.
    pub async fn shutdown(&mut self) {
        self.broken = true;
        let _ = self.connection.get_mut().shutdown().await;
    }

    pub async fn logout(mut self) {
        if !self.broken {
            let _ = tokio::time::timeout(Duration::from_secs(5), self.run("LOGOUT")).await;
        }
    }

    /// Runs a command; NO and BAD are errors.
    pub async fn run(&mut self, command: &str) -> Result<Vec<Untagged>, Error> {
        let (untagged, status) = self.command_status(command, verb(command)).await?;
        self.require_ok(status, command)?;
        Ok(untagged)
    }

    /// Runs a command and returns its status, whatever it is.
    pub async fn command_status(
        &mut self,
        command: &str,
        _verb: &str,
    ) -> Result<(Vec<Untagged>, Status), Error> {
        let tag = self.send_line(command).await?;
        self.collect(&tag).await
    }

    // ---- internals ----

    fn require_ok(&self, status: Status, command: &str) -> Result<Status, Error> {
        let command = redact(command);
        match status.kind {
            StatusKind::Ok => Ok(status),
            StatusKind::No => Err(Error::No { command, status }),
            _ => Err(Error::Bad { command, status }),
        }
    }

    async fn read_greeting(&mut self) -> Result<(), Error> {
        match self.read_response().await? {
            Response::Untagged(Untagged::Status(status)) => match status.kind {
                StatusKind::Ok | StatusKind::Preauth => {
                    if let Some(Code::Capability(caps)) = status.code {
                        self.capabilities = caps;
                    }
                    Ok(())
                }
                _ => Err(Error::Net(mailmove_net::NetError::Unreachable {
                    address: self.host.clone(),
                    reason: format!("the server refused the connection: {}", status.describe()),
                })),
            },
            other => Err(Error::Protocol(format!("unexpected greeting {other:?}"))),
        }
    }

    async fn refresh_capabilities(&mut self) -> Result<(), Error> {
        let untagged = self.run("CAPABILITY").await?;
        for response in untagged {
            if let Untagged::Capability(caps) = response {
                self.capabilities = caps;
            }
        }
        Ok(())
    }

    async fn starttls(mut self, options: &ConnectOptions) -> Result<Client, Error> {
        self.run("STARTTLS").await?;
        let buffered = self.connection.buffered();
        let limits = self.connection.limits();
        let host = self.host.clone();
        // Nothing is left to write: the STARTTLS command was flushed before its answer
        // was read.
        let mut client = self
            .rebuilt(|connection| async move {
                let plain = connection.into_inner().into_inner();
                let secured = upgrade(plain, buffered, &host, options).await?;
                Ok(buffered_connection(secured, limits))
            })
            .await?;
        // What was learnt before the handshake cannot be trusted (RFC 2595 §4).
        client.capabilities.clear();
        client.refresh_capabilities().await?;
        Ok(client)
    }

    /// Turns on COMPRESS=DEFLATE after login when `mode` asks for it and the server
    /// offers it. A server that refuses leaves the session as it was.
    pub async fn compress(mut self, mode: CompressMode) -> Result<Client, Error> {
        let wanted = match mode {
            CompressMode::Never => false,
            CompressMode::Always => true,
            CompressMode::Auto => !self.peer_local,
        };
        // A second COMPRESS is refused by the server ([COMPRESSIONACTIVE]), which
        // leaves the session as it is.
        if !wanted || !self.has_capability("COMPRESS=DEFLATE") {
            return Ok(self);
        }
        let (_, status) = self.command_status("COMPRESS DEFLATE", "COMPRESS").await?;
        if status.kind != StatusKind::Ok {
            debug!(host = %self.host, "COMPRESS refused: {}", status.describe());
            return Ok(self);
        }
        // Nothing is left to write (the command was flushed before its answer was
        // read); anything read past the answer is already compressed.
        let limits = self.connection.limits();
        let client = self
            .rebuilt(|connection| async move {
                let (writer, already_read) = connection.into_parts();
                let stream = Deflated::new(writer.into_inner(), already_read);
                Ok(buffered_connection(Box::new(stream), limits))
            })
            .await?;
        debug!(host = %client.host, "compression on");
        Ok(client)
    }

    /// The same session over a new connection made from the old one (TLS put under
    /// it, or compression): tags and what the session knows carry over.
    async fn rebuilt<F, Fut>(self, make: F) -> Result<Client, Error>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: std::future::Future<Output = Result<Connection, Error>>,
    {
        let Client {
            connection,
            host,
            next_tag,
            capabilities,
            response_timeout,
            peer_local,
            ..
        } = self;
        Ok(Client {
            connection: make(connection).await?,
            host,
            next_tag,
            capabilities,
            response_timeout,
            broken: false,
            peer_local,
        })
    }

    fn tag(&mut self) -> String {
        let tag = format!("m{}", self.next_tag);
        self.next_tag += 1;
        tag
    }

    async fn send_line(&mut self, command: &str) -> Result<String, Error> {
        let tag = self.tag();
        trace!(host = %self.host, "C: {tag} {}", redact(command));
        let line = format!("{tag} {command}\r\n");
        self.write_raw(line.as_bytes()).await?;
        Ok(tag)
    }

    async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), Error> {
        if self.broken {
            return Err(Error::ConnectionLost(
                "the connection was already lost".into(),
            ));
        }
        let result = self.connection.get_mut().write_all(bytes).await;
        result.map_err(|e| {
            self.broken = true;
            Error::ConnectionLost(e.to_string())
        })
    }

    /// Sends what the write buffer holds. Every read flushes first, so the server
    /// always has what it is being waited for.
    async fn flush(&mut self) -> Result<(), Error> {
        let stream = self.connection.get_mut();
        if stream.buffer().is_empty() {
            return Ok(());
        }
        stream.flush().await.map_err(|e| {
            self.broken = true;
            Error::ConnectionLost(e.to_string())
        })
    }

    async fn write_literal(&mut self, body: &Body) -> Result<(), Error> {
        if self.broken {
            return Err(Error::ConnectionLost(
                "the connection was already lost".into(),
            ));
        }
        let stream = self.connection.get_mut();
        if let Err(e) = write_body(body, stream).await {
            self.broken = true;
            return Err(Error::ConnectionLost(e.to_string()));
        }
        Ok(())
    }

    async fn read_response(&mut self) -> Result<Response, Error> {
        if self.broken {
            return Err(Error::ConnectionLost(
                "the connection was already lost".into(),
            ));
        }
        self.flush().await?;
        let frame = tokio::time::timeout(self.response_timeout, self.connection.read_frame()).await;
        let frame = match frame {
            Ok(Ok(frame)) => frame,
            Ok(Err(e)) => {
                self.broken = true;
                return Err(e.into());
            }
            Err(_) => {
                self.broken = true;
                return Err(Error::ConnectionLost(format!(
                    "no answer from {} for {} s",
                    self.host,
                    self.response_timeout.as_secs()
                )));
            }
        };
        let response = parse(frame);
        match &response {
            Response::Unparsed { text, .. } => {
                warn!(host = %self.host, "dropped a response that could not be parsed: {}", truncate(text));
            }
            Response::Untagged(Untagged::Status(status)) if status.kind == StatusKind::Bye => {
                debug!(host = %self.host, "server says BYE: {}", status.describe());
            }
            _ => trace!(host = %self.host, "S: {response:?}"),
        }
        Ok(response)
    }

    /// Reads until the tagged completion of `tag`, keeping untagged data.
    async fn collect(&mut self, tag: &str) -> Result<(Vec<Untagged>, Status), Error> {
        let mut untagged = Vec::new();
        loop {
            match self.read_response().await? {
                Response::Tagged { tag: t, status } if t == tag => return Ok((untagged, status)),
                Response::Untagged(Untagged::Status(status)) if status.kind == StatusKind::Bye => {
                    self.broken = true;
                    return Err(Error::ConnectionLost(format!(
                        "the server ended the session: {}",
                        status.describe()
                    )));
                }
                Response::Untagged(u) => untagged.push(u),
                _ => {}
            }
        }
    }

    async fn finish(&mut self, tag: &str) -> Result<(Vec<Untagged>, Status), Error> {
        self.collect(tag).await
    }

    async fn wait_continuation(&mut self, tag: &str) -> Result<(), Error> {
        loop {
            match self.read_response().await? {
                Response::Continue(_) => return Ok(()),
                Response::Tagged { tag: t, status } if t == tag => {
                    return Err(self.require_ok(status, "command").err().unwrap_or_else(|| {
                        Error::Protocol("completed without asking for the literal".into())
                    }));
                }
                _ => {}
            }
        }
    }
}

/// The answers of one UID FETCH, one message at a time.
pub struct FetchStream<'a> {
    client: &'a mut Client,
    tag: String,
    done: bool,
}

impl FetchStream<'_> {
    /// The next FETCH answer that carries a UID; `None` once the command completed.
    pub async fn next(&mut self) -> Result<Option<Fetch>, Error> {
        while !self.done {
            match self.client.read_response().await? {
                Response::Untagged(Untagged::Fetch(fetch)) if fetch.uid.is_some() => {
                    return Ok(Some(*fetch));
                }
                Response::Tagged { tag, status } if tag == self.tag => {
                    self.done = true;
                    self.client.require_ok(status, "UID FETCH")?;
                }
                Response::Untagged(Untagged::Status(status)) if status.kind == StatusKind::Bye => {
                    self.client.broken = true;
                    return Err(Error::ConnectionLost(status.describe()));
                }
                _ => {}
            }
        }
        Ok(None)
    }
}

/// One message to append.
#[derive(Debug)]
pub struct AppendRequest {
    pub mailbox: Vec<u8>,
    pub flags: Vec<String>,
    /// `dd-Mon-yyyy hh:mm:ss +zzzz`, as FETCH INTERNALDATE gave it.
    pub internal_date: Option<String>,
    pub body: Body,
    /// The caller's handle, returned with the outcome.
    pub token: u64,
}

/// How one APPEND ended.
#[derive(Debug)]
pub struct AppendOutcome {
    pub token: u64,
    /// `Ok(Some((uidvalidity, uid)))` with UIDPLUS, `Ok(None)` without.
    pub result: Result<Option<(u32, u32)>, Status>,
}

/// Messages one MULTIAPPEND command carries at most, and the bytes held in memory by
/// its messages (they are kept until the command completes, to be sent again one by
/// one if the server refuses the group; spooled bodies count nothing).
const GROUP_MESSAGES: usize = 32;
const GROUP_BYTES: u64 = 512 * 1024;
/// MULTIAPPEND commands in flight at once.
const GROUPS_IN_FLIGHT: usize = 2;

/// Pipelined APPENDs: with LITERAL+ commands go out back to back and answers are
/// matched by tag as they come; without it each literal waits for its `+`, while
/// earlier commands still complete in the background.
///
/// With MULTIAPPEND (RFC 3502) as well, consecutive messages for one mailbox go out
/// as one command: the server stores them in one transaction, which costs it much less
/// per message. The group is atomic: if the server refuses it, every message of it is
/// sent again alone, so a refusal is still reported for the one message it concerns.
pub struct Appender<'a> {
    client: &'a mut Client,
    in_flight: VecDeque<InFlight>,
    window: usize,
    literal_plus: bool,
    multi: bool,
    /// The MULTIAPPEND command being written: its tag, mailbox, messages and bytes.
    open: Option<(String, Vec<u8>, Vec<AppendRequest>, u64)>,
    /// Messages of refused groups, to send again alone.
    again: VecDeque<AppendRequest>,
}

/// A command in flight: one APPEND (its token), or a group (its messages).
enum InFlight {
    One {
        tag: String,
        token: u64,
    },
    Group {
        tag: String,
        messages: Vec<AppendRequest>,
    },
}

impl InFlight {
    fn tag(&self) -> &str {
        match self {
            InFlight::One { tag, .. } | InFlight::Group { tag, .. } => tag,
        }
    }
}

impl Appender<'_> {
    /// Sends one message; returns the outcomes of earlier ones that completed meanwhile.
    pub async fn send(&mut self, request: AppendRequest) -> Result<Vec<AppendOutcome>, Error> {
        let mut done = self.send_again().await?;
        if self.multi {
            done.extend(self.add_to_group(request).await?);
        } else {
            done.extend(self.send_one(request).await?);
        }
        Ok(done)
    }

    /// Ends the MULTIAPPEND being written, so its outcome can come: for a caller about
    /// to wait (for the source) before sending more.
    pub async fn idle(&mut self) -> Result<(), Error> {
        if let Some((tag, _, messages, _)) = self.open.take() {
            self.client.write_raw(b"\r\n").await?;
            self.client.flush().await?;
            self.in_flight.push_back(InFlight::Group { tag, messages });
        }
        Ok(())
    }

    /// Waits for every APPEND still in flight.
    pub async fn finish(&mut self) -> Result<Vec<AppendOutcome>, Error> {
        let mut done = Vec::new();
        loop {
            self.idle().await?;
            done.extend(self.send_again().await?);
            self.idle().await?;
            if self.in_flight.is_empty() {
                return Ok(done);
            }
            done.extend(self.read_one().await?);
        }
    }

    /// Sends alone the messages of groups the server refused.
    async fn send_again(&mut self) -> Result<Vec<AppendOutcome>, Error> {
        let mut done = Vec::new();
        while let Some(request) = self.again.pop_front() {
            self.idle().await?;
            done.extend(self.send_one(request).await?);
        }
        Ok(done)
    }

    async fn add_to_group(&mut self, request: AppendRequest) -> Result<Vec<AppendOutcome>, Error> {
        let mut done = Vec::new();
        if self
            .open
            .as_ref()
            .is_some_and(|(_, mailbox, _, _)| *mailbox != request.mailbox)
        {
            self.idle().await?;
        }
        if self.open.is_none() {
            while self.in_flight.len() >= GROUPS_IN_FLIGHT {
                done.extend(self.read_one().await?);
            }
            let tag = self.client.tag();
            let line = format!("{tag} APPEND {}", quote(&request.mailbox));
            trace!(host = %self.client.host, "C: {line} ...");
            self.client.write_raw(line.as_bytes()).await?;
            self.open = Some((tag, request.mailbox.clone(), Vec::new(), 0));
        }
        let line = format!(
            " ({}){} {{{}+}}\r\n",
            request.flags.join(" "),
            date_argument(&request),
            request.body.len()
        );
        self.client.write_raw(line.as_bytes()).await?;
        self.client.write_literal(&request.body).await?;
        let in_memory = match &request.body {
            Body::Memory(bytes) => bytes.len() as u64,
            Body::File { .. } => 0,
        };
        let full = {
            let (_, _, messages, bytes) = self.open.as_mut().expect("a group is open");
            messages.push(request);
            *bytes += in_memory;
            messages.len() >= GROUP_MESSAGES || *bytes >= GROUP_BYTES
        };
        if full {
            self.idle().await?;
        } else {
            // On the wire when `send` returns, so the server stores while we fetch.
            self.client.flush().await?;
        }
        Ok(done)
    }

    /// One APPEND command for one message.
    async fn send_one(&mut self, request: AppendRequest) -> Result<Vec<AppendOutcome>, Error> {
        let mut done = Vec::new();
        while self.in_flight.len() >= self.window {
            done.extend(self.read_one().await?);
        }
        let tag = self.client.tag();
        let len = request.body.len();
        let plus = if self.literal_plus { "+" } else { "" };
        let line = format!(
            "{tag} APPEND {} ({}){} {{{len}{plus}}}\r\n",
            quote(&request.mailbox),
            request.flags.join(" "),
            date_argument(&request),
        );
        trace!(host = %self.client.host, "C: {}", line.trim_end());
        self.client.write_raw(line.as_bytes()).await?;
        self.in_flight.push_back(InFlight::One {
            tag: tag.clone(),
            token: request.token,
        });
        if !self.literal_plus {
            // Earlier APPENDs may complete while this one waits for its `+`.
            loop {
                match self.client.read_response().await? {
                    Response::Continue(_) => break,
                    Response::Tagged { tag: t, status } => {
                        let refused_now = t == tag;
                        done.extend(self.complete(&t, status)?);
                        if refused_now {
                            return Ok(done);
                        }
                    }
                    Response::Untagged(Untagged::Status(s)) if s.kind == StatusKind::Bye => {
                        self.client.broken = true;
                        return Err(Error::ConnectionLost(s.describe()));
                    }
                    _ => {}
                }
            }
        }
        self.client.write_literal(&request.body).await?;
        self.client.write_raw(b"\r\n").await?;
        // On the wire when `send` returns: the caller may wait for the source next.
        self.client.flush().await?;
        Ok(done)
    }

    async fn read_one(&mut self) -> Result<Vec<AppendOutcome>, Error> {
        loop {
            match self.client.read_response().await? {
                Response::Tagged { tag, status } => return self.complete(&tag, status),
                Response::Untagged(Untagged::Status(s)) if s.kind == StatusKind::Bye => {
                    self.client.broken = true;
                    return Err(Error::ConnectionLost(s.describe()));
                }
                Response::Continue(_) => {
                    return Err(Error::Protocol(
                        "the server asked for a literal nobody announced".into(),
                    ));
                }
                _ => {}
            }
        }
    }

    fn complete(&mut self, tag: &str, status: Status) -> Result<Vec<AppendOutcome>, Error> {
        let position = self
            .in_flight
            .iter()
            .position(|f| f.tag() == tag)
            .ok_or_else(|| Error::Protocol(format!("completion for unknown tag {tag}")))?;
        let command = self
            .in_flight
            .remove(position)
            .expect("position was just found in the queue");
        let ok = status.kind == StatusKind::Ok;
        let uids = match &status.code {
            Some(Code::AppendUid { uidvalidity, uids }) if ok => Some((*uidvalidity, uids.clone())),
            _ => None,
        };
        Ok(match command {
            InFlight::One { token, .. } => vec![AppendOutcome {
                token,
                result: if ok {
                    Ok(uids.and_then(|(v, uids)| Some((v, *uids.first()?))))
                } else {
                    Err(status)
                },
            }],
            InFlight::Group { messages, .. } if ok => {
                // UIDs pair with messages in order when the server gave one for each.
                let by_order = uids.filter(|(_, u)| u.len() == messages.len());
                messages
                    .iter()
                    .enumerate()
                    .map(|(i, m)| AppendOutcome {
                        token: m.token,
                        result: Ok(by_order.as_ref().map(|(v, u)| (*v, u[i]))),
                    })
                    .collect()
            }
            InFlight::Group { messages, .. } => {
                debug!(
                    host = %self.client.host,
                    "a MULTIAPPEND of {} messages was refused ({}); sending them one by one",
                    messages.len(),
                    status.describe()
                );
                self.again.extend(messages);
                Vec::new()
            }
        })
    }
}

/// The date argument of an APPEND, with its leading space, or nothing.
fn date_argument(request: &AppendRequest) -> String {
    request
        .internal_date
        .as_deref()
        .map(|d| format!(" \"{d}\""))
        .unwrap_or_default()
}

/// Writes a literal's bytes: from memory as they are, from a spooled file in large
/// chunks (each read of a tokio file is a trip to the blocking pool).
async fn write_body<W: AsyncWrite + Unpin>(body: &Body, out: &mut W) -> std::io::Result<()> {
    match body {
        Body::Memory(bytes) => out.write_all(bytes).await,
        Body::File { file, len } => {
            use std::io::{Seek, SeekFrom};
            use tokio::io::AsyncReadExt;
            let mut file = file.try_clone()?;
            file.seek(SeekFrom::Start(0))?;
            let file = tokio::fs::File::from_std(file).take(*len);
            let mut reader = BufReader::with_capacity(SPOOL_READ_CHUNK, file);
            let copied = tokio::io::copy_buf(&mut reader, out).await?;
            if copied != *len {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("spooled body shorter than announced ({copied} of {len} bytes)"),
                ));
            }
            Ok(())
        }
    }
}

/// Quotes a mailbox name or string for the wire; a literal where quoting cannot work.
pub fn quote(raw: &[u8]) -> String {
    if raw.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
        // Not representable as a quoted string; never valid in a mailbox name either.
        return "\"\"".into();
    }
    let mut out = String::with_capacity(raw.len() + 2);
    out.push('"');
    for ch in String::from_utf8_lossy(raw).chars() {
        if ch == '"' || ch == '\\' {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('"');
    out
}

fn verb(command: &str) -> &str {
    command.split(' ').next().unwrap_or(command)
}

/// Keeps passwords out of traces and error messages.
fn redact(command: &str) -> String {
    let upper = command.to_ascii_uppercase();
    if upper.starts_with("LOGIN ") {
        let user = command.split(' ').nth(1).unwrap_or("");
        format!("LOGIN {user} [redacted]")
    } else if upper.starts_with("AUTHENTICATE ") {
        "AUTHENTICATE [redacted]".into()
    } else {
        command.to_string()
    }
}

fn truncate(text: &str) -> &str {
    match text.char_indices().nth(200) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}
