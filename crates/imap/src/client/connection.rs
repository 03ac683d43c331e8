//! The session's connection: set-up (TLS, STARTTLS, COMPRESS under the buffers), tags,
//! buffered writes, and responses framed, parsed and traced as they are read.

use std::time::Duration;

use mailmove_model::Endpoint;
use mailmove_net::{
    BeforeLogin, Body, CompressMode, ConnectOptions, Stream, Watchdog, before_login, is_silence,
    open, upgrade,
};
use tokio::io::{AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tracing::{debug, trace, warn};

use super::Client;
use crate::compress::Deflated;
use crate::error::Error;
use crate::framing::{FrameError, FrameLimits, FrameReader};
use crate::response::{Code, Response, Status, StatusKind, Untagged, parse};

/// Commands and APPEND literals gather here and go out in one write when the client
/// is about to wait for the server (or the buffer is full), not one per piece.
const WRITE_BUFFER: usize = 64 * 1024;

/// A spooled body is read back from its file in chunks of this size: each read is a
/// hand-off to tokio's blocking pool.
const SPOOL_READ_CHUNK: usize = 256 * 1024;

/// The most untagged responses kept for one command: a LIST of more folders than this
/// is refused (a million LIST lines took 550 MiB, then a million EXAMINEs).
pub const MAX_UNTAGGED: usize = 100_000;

/// The connection as the client uses it: responses are framed out of the read side;
/// writes are buffered until [`Client::flush`]. Under the buffers, above TLS and
/// compression, a [`Watchdog`] gives the connection up when nothing moved for the
/// response timeout: a gap, so a large message arriving slowly is read to its end.
pub(super) type Connection = FrameReader<BufWriter<Watchdog<Box<dyn Stream>>>>;

fn buffered_connection(stream: Box<dyn Stream>, limits: FrameLimits, gap: Duration) -> Connection {
    FrameReader::new(
        BufWriter::with_capacity(WRITE_BUFFER, Watchdog::new(stream, gap)),
        limits,
    )
}

/// The framing limits for these options: their spill threshold, the default line cap.
fn frame_limits(options: &ConnectOptions) -> FrameLimits {
    FrameLimits {
        spill_threshold: options.spill_threshold,
        max_literal: options.max_message_size,
        ..FrameLimits::default()
    }
}

impl Client {
    /// Connects, reads the greeting and secures the connection as the endpoint says:
    /// TLS from the first byte for `imaps://`, STARTTLS for `imap://` when offered.
    /// Without encryption the password may only go to a loopback host or where
    /// `allow_plaintext` says so; otherwise this fails before any login.
    pub async fn connect(endpoint: &Endpoint, options: &ConnectOptions) -> Result<Client, Error> {
        let opened = open(endpoint, options).await?;
        let mut client = Client {
            connection: buffered_connection(
                opened.stream,
                frame_limits(options),
                options.response_timeout,
            ),
            host: endpoint.host.clone(),
            port: endpoint.port,
            next_tag: 1,
            capabilities: Vec::new(),
            response_timeout: options.response_timeout,
            broken: false,
            peer_local: opened.peer_local,
        };
        // A server that accepts and never greets is held to the connect timeout, not
        // to the far longer wait allowed for an answer to a command.
        tokio::time::timeout(options.connect_timeout, client.read_greeting())
            .await
            .map_err(|_| mailmove_net::no_greeting(endpoint, options.connect_timeout))??;
        if client.capabilities.is_empty() {
            client.refresh_capabilities().await?;
        }
        let offered = client.has_capability("STARTTLS");
        if before_login(endpoint, options, "STARTTLS", offered)? == BeforeLogin::Upgrade {
            client = client.starttls(options).await?;
        }
        Ok(client)
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

    pub(super) fn require_ok(&self, status: Status, command: &str) -> Result<Status, Error> {
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
            // What another service sends (an SSH or database banner) is not repeated
            // in the error, which portal users read: it would make the portal a banner
            // grabber. The log keeps it for whoever runs mailmove.
            other => {
                tracing::debug!(host = %self.host, "not an IMAP greeting: {other:?}");
                Err(Error::Protocol(format!(
                    "{} did not greet as an IMAP server does: is the port right?",
                    self.host
                )))
            }
        }
    }

    pub(super) async fn refresh_capabilities(&mut self) -> Result<(), Error> {
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
                let plain = connection.into_inner().into_inner().into_inner();
                let secured = upgrade(plain, buffered, &host, options).await?;
                Ok(buffered_connection(
                    secured,
                    limits,
                    options.response_timeout,
                ))
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
        let gap = self.response_timeout;
        let client = self
            .rebuilt(|connection| async move {
                let (writer, already_read) = connection.into_parts();
                let stream = Deflated::new(writer.into_inner().into_inner(), already_read);
                Ok(buffered_connection(Box::new(stream), limits, gap))
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
            port,
            next_tag,
            capabilities,
            response_timeout,
            peer_local,
            ..
        } = self;
        Ok(Client {
            connection: make(connection).await?,
            host,
            port,
            next_tag,
            capabilities,
            response_timeout,
            broken: false,
            peer_local,
        })
    }

    pub(super) fn tag(&mut self) -> String {
        let tag = format!("m{}", self.next_tag);
        self.next_tag += 1;
        tag
    }

    pub(super) async fn send_line(&mut self, command: &str) -> Result<String, Error> {
        let tag = self.tag();
        trace!(host = %self.host, "C: {tag} {}", redact(command));
        let line = format!("{tag} {command}\r\n");
        self.write_raw(line.as_bytes()).await?;
        Ok(tag)
    }

    pub(super) async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), Error> {
        if self.broken {
            return Err(Error::ConnectionLost(
                "the connection was already lost".into(),
            ));
        }
        let result = self.connection.get_mut().write_all(bytes).await;
        result.map_err(|e| self.lost(e))
    }

    /// Sends what the write buffer holds. Every read flushes first, so the server
    /// always has what it is being waited for.
    pub(super) async fn flush(&mut self) -> Result<(), Error> {
        let stream = self.connection.get_mut();
        if stream.buffer().is_empty() {
            return Ok(());
        }
        stream.flush().await.map_err(|e| self.lost(e))
    }

    pub(super) async fn write_literal(&mut self, body: &Body) -> Result<(), Error> {
        if self.broken {
            return Err(Error::ConnectionLost(
                "the connection was already lost".into(),
            ));
        }
        let stream = self.connection.get_mut();
        if let Err(e) = write_body(body, stream).await {
            return Err(self.lost(e));
        }
        Ok(())
    }

    /// The session is lost: the connection failed, or nothing moved on it for the
    /// response timeout.
    fn lost(&mut self, error: std::io::Error) -> Error {
        self.broken = true;
        Error::ConnectionLost(if is_silence(&error) {
            format!(
                "no answer from {} for {} s",
                self.host,
                self.response_timeout.as_secs()
            )
        } else {
            error.to_string()
        })
    }

    pub(super) async fn read_response(&mut self) -> Result<Response, Error> {
        if self.broken {
            return Err(Error::ConnectionLost(
                "the connection was already lost".into(),
            ));
        }
        self.flush().await?;
        let mut frame = match self.connection.read_frame().await {
            Ok(frame) => frame,
            Err(FrameError::Io(e)) => return Err(self.lost(e)),
            Err(e) => {
                self.broken = true;
                return Err(e.into());
            }
        };
        let oversized = std::mem::take(&mut frame.oversized);
        let mut response = parse(frame);
        if let Some(first) = oversized.first() {
            warn!(
                host = %self.host,
                "discarded a literal of {} bytes (at most {} accepted)",
                first.len,
                first.bound
            );
            if let Response::Untagged(Untagged::Fetch(fetch)) = &mut response {
                fetch.body = None;
                fetch.header = None;
                fetch.oversized = Some(*first);
            }
        }
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

    /// Reads until the tagged completion of `tag`, keeping untagged data: at most
    /// [`MAX_UNTAGGED`] responses, beyond which the server is misbehaving and the
    /// session is dropped rather than memory exhausted.
    pub(super) async fn collect(&mut self, tag: &str) -> Result<(Vec<Untagged>, Status), Error> {
        let mut untagged = Vec::new();
        loop {
            if untagged.len() >= MAX_UNTAGGED {
                self.broken = true;
                return Err(Error::Protocol(format!(
                    "more than {MAX_UNTAGGED} answers to one command (a mailbox with more \
                     than {MAX_UNTAGGED} folders is not supported)"
                )));
            }
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

    pub(super) async fn finish(&mut self, tag: &str) -> Result<(Vec<Untagged>, Status), Error> {
        self.collect(tag).await
    }

    pub(super) async fn wait_continuation(&mut self, tag: &str) -> Result<(), Error> {
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
