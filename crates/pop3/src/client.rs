//! The async POP3 client: connection set-up (implicit TLS, STLS, login) and the few
//! commands a migration source needs, with RETR streamed through the dot-unstuffer
//! into a [`Body`] that spills to disk when large.
//!
//! The source is never changed: [`Command`] has no DELE and no RSET, so no code path
//! can send them. QUIT after no DELE deletes nothing. One side effect is the server's
//! own: Dovecot (with its default `pop3_no_flag_updates = no`) marks a message
//! `\Seen` once RETR has sent it, QUIT or not; TOP leaves the flags alone.

use std::time::Duration;

use mailmove_model::{Endpoint, Secret};
use mailmove_net::{AdminForm, OAuthMechanism, SignIn};
use mailmove_net::{
    BeforeLogin, Body, BodySink, ConnectOptions, NetError, Stream, before_login, open, upgrade,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tracing::{debug, trace, warn};

use crate::error::{Error, is_temporary};
use crate::response::{
    Status, StatusKind, listing_lines, parse_octets, parse_scan_listing, parse_stat, parse_status,
    parse_unique_id_listing,
};
use crate::unstuff::{DotUnstuffer, Feed, server_added_line_break};

/// RFC 1939 caps a status line at 512 octets; this leaves room for sloppy servers and
/// still stops one that never sends a line end.
const MAX_STATUS_LINE: usize = 64 * 1024;
/// CAPA, LIST, UIDL and TOP answers are kept in memory; a server that sends more than
/// this for one of them is broken.
const MAX_IN_MEMORY_ANSWER: usize = 64 * 1024 * 1024;
const READ_BUFFER: usize = 64 * 1024;
/// QUIT is a courtesy: a server slow to answer it does not hold the caller up.
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);

/// One POP3 session, from the greeting to QUIT.
pub struct Client {
    reader: BufReader<Box<dyn Stream>>,
    host: String,
    /// The server's port, which OAUTHBEARER names.
    port: u16,
    capabilities: Vec<String>,
    response_timeout: Duration,
    spill_threshold: u64,
    max_message_size: u64,
    /// Set after a lost connection or a protocol error: the session is unusable.
    broken: bool,
}

impl Client {
    /// Connects, reads the greeting and CAPA, and secures the connection as the
    /// endpoint says: TLS from the first byte for `pop3s://`, STLS for `pop3://` when
    /// offered. Without encryption the password may only go to a loopback host or
    /// where `allow_plaintext` says so; otherwise this fails before any login.
    pub async fn connect(endpoint: &Endpoint, options: &ConnectOptions) -> Result<Client, Error> {
        let opened = open(endpoint, options).await?;
        let mut client = Client {
            reader: BufReader::with_capacity(READ_BUFFER, opened.stream),
            host: endpoint.host.clone(),
            port: endpoint.port,
            capabilities: Vec::new(),
            response_timeout: options.response_timeout,
            spill_threshold: options.spill_threshold,
            max_message_size: options.max_message_size,
            broken: false,
        };
        // A server that accepts and never greets is held to the connect timeout, not
        // to the far longer wait allowed for an answer to a command.
        tokio::time::timeout(options.connect_timeout, client.read_greeting())
            .await
            .map_err(|_| mailmove_net::no_greeting(endpoint, options.connect_timeout))??;
        client.refresh_capabilities().await?;
        let offered = client.has_capability("STLS");
        if before_login(endpoint, options, "STLS", offered)? == BeforeLogin::Upgrade {
            client = client.stls(options).await?;
        }
        Ok(client)
    }

    /// The CAPA lines (RFC 2449) as the server sent them, e.g. `TOP`, `UIDL`,
    /// `SASL PLAIN LOGIN`; empty when the server has no CAPA.
    pub fn capabilities(&self) -> &[String] {
        &self.capabilities
    }

    /// Whether a CAPA line starts with the word `name` (case-insensitive).
    pub fn has_capability(&self, name: &str) -> bool {
        self.capabilities.iter().any(|line| {
            line.split_ascii_whitespace()
                .next()
                .is_some_and(|word| word.eq_ignore_ascii_case(name))
        })
    }

    /// Logs in with AUTH PLAIN and an initial response (RFC 5034) when CAPA lists
    /// `SASL PLAIN`, else with USER and PASS. A refusal is [`Error::AuthFailed`],
    /// except the RFC 3206 codes that blame the server (`[SYS/TEMP]`, `[IN-USE]`,
    /// `[LOGIN-DELAY]`, `[SYS/PERM]`), which come back as [`Error::Err`].
    /// Signs in as `sign_in` says: a password (see [`Client::login`]), an
    /// administrator acting for a mailbox, or an OAuth2 token over OAUTHBEARER (where
    /// offered) or XOAUTH2 (RFC 5034's AUTH).
    pub async fn sign_in(&mut self, sign_in: &SignIn) -> Result<(), Error> {
        match sign_in {
            SignIn::Password { login, password } => return self.login(login, password).await,
            SignIn::Admin {
                mailbox,
                admin,
                password,
                form: AdminForm::Separator(separator),
            } => {
                return self
                    .login(&format!("{mailbox}{separator}{admin}"), password)
                    .await;
            }
            SignIn::Admin {
                mailbox,
                admin,
                password,
                form: AdminForm::AuthorizationIdentity,
            } => {
                if !self.offers_sasl("PLAIN") {
                    return Err(Error::CannotSignIn {
                        needed: "AUTH PLAIN (an administrator acting for a mailbox)".into(),
                    });
                }
                let message = mailmove_net::sasl::plain(mailbox, admin, password);
                if let Some(text) = self.authenticate("PLAIN", &message, "*").await? {
                    return Err(refusal(mailbox, "AUTH PLAIN", text));
                }
            }
            SignIn::Token { user, token } => {
                let offered: Vec<&str> = self
                    .capabilities
                    .iter()
                    .filter(|line| line.to_ascii_uppercase().starts_with("SASL "))
                    .flat_map(|line| line.split_ascii_whitespace().skip(1))
                    .collect();
                let Some(mechanism) = OAuthMechanism::choose(offered) else {
                    return Err(Error::CannotSignIn {
                        needed: "OAuth sign-in (SASL OAUTHBEARER or XOAUTH2)".into(),
                    });
                };
                let message = match mechanism {
                    OAuthMechanism::XOAuth2 => mailmove_net::sasl::xoauth2(user, token),
                    OAuthMechanism::OAuthBearer => {
                        mailmove_net::sasl::oauthbearer(user, &self.host, self.port, token)
                    }
                };
                let answer = mailmove_net::sasl::after_oauth_error(mechanism);
                if let Some(text) = self
                    .authenticate(mechanism.name(), &message, answer)
                    .await?
                {
                    return Err(Error::TokenRefused {
                        user: user.clone(),
                        text,
                    });
                }
            }
        }
        debug!(host = %self.host, user = sign_in.user(), "signed in");
        self.refresh_capabilities().await
    }

    /// One SASL exchange with an initial response. An empty `+` asks for that response
    /// again (a server that ignored it); a `+` with text is the server's error report
    /// (OAuth's JSON), answered with `answer` so that the server ends the exchange.
    /// `None` when signed in, else the refusal in the server's words.
    async fn authenticate(
        &mut self,
        mechanism: &'static str,
        message: &Secret<String>,
        answer: &str,
    ) -> Result<Option<String>, Error> {
        let mut status = self.command(&Command::Auth(mechanism, message)).await?;
        let mut reported = None;
        for _ in 0..2 {
            if status.kind != StatusKind::Continue {
                break;
            }
            let challenge = status.text.trim().to_string();
            status = if challenge.is_empty() {
                self.command(&Command::SaslResponse(message)).await?
            } else {
                reported = Some(mailmove_net::sasl::oauth_error(&challenge));
                self.command(&Command::SaslAnswer(answer)).await?
            };
        }
        match status.kind {
            StatusKind::Ok => Ok(None),
            StatusKind::Err => Ok(Some(match reported {
                Some(reported) => format!("{}; {reported}", status.text),
                None => status.text,
            })),
            StatusKind::Continue => {
                // Cancel an exchange that will not end (RFC 5034 §4).
                self.command(&Command::SaslCancel).await?;
                self.broken = true;
                Err(Error::Protocol(format!(
                    "the server kept asking for more during AUTH {mechanism}"
                )))
            }
        }
    }

    pub async fn login(&mut self, login: &str, password: &Secret<String>) -> Result<(), Error> {
        if self.offers_sasl("PLAIN") {
            self.auth_plain(login, password).await?;
        } else {
            self.user_pass(login, password).await?;
        }
        debug!(host = %self.host, login, "logged in");
        // Capabilities may change with the state (RFC 2449 §5).
        self.refresh_capabilities().await
    }

    /// STAT: the number of messages and their total size in octets.
    pub async fn stat(&mut self) -> Result<(u32, u64), Error> {
        let status = self.run(&Command::Stat).await?;
        parse_stat(&status.text).ok_or_else(|| {
            Error::Protocol(format!("a STAT answer without counts: {:?}", status.text))
        })
    }

    /// LIST: every message's number and size in octets, in the server's order.
    /// Lines that cannot be read are left out with a warning.
    pub async fn list(&mut self) -> Result<Vec<(u32, u64)>, Error> {
        self.run(&Command::List).await?;
        let answer = self.read_answer_in_memory().await?;
        Ok(listing_lines(&answer)
            .filter_map(|line| {
                let entry = parse_scan_listing(line);
                if entry.is_none() {
                    let line = String::from_utf8_lossy(line);
                    warn!(host = %self.host, "skipped a LIST line: {line:?}");
                }
                entry
            })
            .collect())
    }

    /// UIDL: every message's number and unique id, stable across sessions; `None` when
    /// the server has no UIDL (answers `-ERR`). Lines that cannot be read are left out
    /// with a warning.
    pub async fn uidl(&mut self) -> Result<Option<Vec<(u32, String)>>, Error> {
        let status = self.command(&Command::Uidl).await?;
        if status.kind == StatusKind::Err {
            debug!(host = %self.host, "no UIDL: {}", status.text);
            return Ok(None);
        }
        self.require_ok(status, &Command::Uidl)?;
        let answer = self.read_answer_in_memory().await?;
        Ok(Some(
            listing_lines(&answer)
                .filter_map(|line| {
                    let entry = parse_unique_id_listing(line);
                    if entry.is_none() {
                        let line = String::from_utf8_lossy(line);
                        warn!(host = %self.host, "skipped a UIDL line: {line:?}");
                    }
                    entry
                })
                .collect(),
        ))
    }

    /// `TOP msgno 0`: the message's header section and the blank line after it,
    /// dot-unstuffed, as the server stores them. TOP is optional (CAPA lists `TOP`);
    /// without it this is [`Error::Err`].
    pub async fn top_headers(&mut self, msgno: u32) -> Result<Vec<u8>, Error> {
        self.run(&Command::Top(msgno)).await?;
        self.read_answer_in_memory().await
    }

    /// RETR: the whole message, streamed into memory or, above the spill threshold,
    /// into an anonymous temporary file, so a large message is never whole in memory.
    /// Some servers flag what RETR sent as read (Dovecot sets `\Seen`); see the crate
    /// documentation.
    ///
    /// Byte-exact for every message that ends with a line break. For one that does
    /// not, the server adds CRLF before the terminator (RFC 1939); when it announced
    /// the size (`+OK n octets`, as Dovecot does) and received is exactly two more
    /// and ends with CRLF, that CRLF is removed again, so the message comes back as
    /// the server stores it. Without an announced size it keeps the added CRLF.
    pub async fn retr(&mut self, msgno: u32) -> Result<Body, Error> {
        self.read_message(&Command::Retr(msgno), None, None).await
    }

    /// The whole message without marking it read where the server would (Dovecot
    /// flags what RETR sent as `\Seen`): `TOP msgno <all lines>` when TOP is offered
    /// and gives back exactly `size` octets (the LIST size), else RETR.
    ///
    /// A message far larger than `size` ([`mailmove_net::tolerated`]) or than the
    /// maximum message size is [`Error::TooLarge`], and none of it is kept.
    pub async fn retrieve_unflagged(&mut self, msgno: u32, size: u64) -> Result<Body, Error> {
        if self.has_capability("TOP") {
            let body = self
                .read_message(
                    &Command::TopLines(msgno, i32::MAX as u32),
                    Some(size),
                    Some(size),
                )
                .await?;
            if body.len() == size {
                return Ok(body);
            }
            debug!(host = %self.host, msgno, size, got = body.len(), "TOP gave another size; using RETR");
        }
        self.read_message(&Command::Retr(msgno), None, Some(size))
            .await
    }

    /// Reads a dot-stuffed message answer; `expected` stands in for the size the
    /// server did not announce (TOP answers carry none). `listed` is the size LIST
    /// gave: more than [`mailmove_net::tolerated`] of it is not kept, nor more than
    /// the maximum message size. Past its bound the answer is read to its end and
    /// thrown away, up to the maximum; past the maximum the connection is dropped.
    async fn read_message(
        &mut self,
        command: &Command<'_>,
        expected: Option<u64>,
        listed: Option<u64>,
    ) -> Result<Body, Error> {
        let status = self.run(command).await?;
        let announced = parse_octets(&status.text).or(expected);
        let msgno = match command {
            Command::Retr(n) | Command::TopLines(n, _) => *n,
            _ => 0,
        };
        let maximum = self.max_message_size;
        let bound = listed.map_or(maximum, |l| mailmove_net::tolerated(l).min(maximum));
        let mut sink = BodySink::new(self.spill_threshold, announced.unwrap_or(0).min(bound));
        let mut discarded: u64 = 0;
        let mut tail = [0u8; 2];
        let read = self
            .read_multiline(|bytes| {
                if discarded > 0 || sink.len() + bytes.len() as u64 > bound {
                    discarded += bytes.len() as u64;
                    let seen = sink.len() + discarded;
                    if seen > maximum {
                        return Err(Error::TooLarge {
                            received: seen,
                            announced: listed,
                            bound,
                            whole: false,
                        });
                    }
                    return Ok(());
                }
                sink.write(bytes).map_err(spool_failed)?;
                match bytes {
                    [.., a, b] => tail = [*a, *b],
                    [b] => tail = [tail[1], *b],
                    [] => {}
                }
                Ok(())
            })
            .await;
        read?;
        if discarded > 0 {
            return Err(Error::TooLarge {
                received: sink.len() + discarded,
                announced: listed,
                bound,
                whole: true,
            });
        }
        let received = sink.len();
        // The answer was read whole: a failure from here on leaves the session usable.
        let body = sink.finish().map_err(spool_failed)?;
        let ends_with_crlf = received >= 2 && tail == *b"\r\n";
        if server_added_line_break(announced, received, ends_with_crlf) {
            return drop_final_line_break(body);
        }
        if let Some(announced) = announced.filter(|&a| a != received) {
            debug!(host = %self.host, msgno, announced, received, "RETR size differs from +OK");
        }
        Ok(body)
    }

    /// NOOP: keeps an idle session alive.
    pub async fn noop(&mut self) -> Result<(), Error> {
        self.run(&Command::Noop).await.map(drop)
    }

    /// QUIT, ending the session politely. Since no DELE was ever sent, nothing is
    /// deleted. Errors are ignored: the session is over either way.
    pub async fn quit(mut self) {
        if self.broken {
            return;
        }
        let _ = tokio::time::timeout(QUIT_TIMEOUT, self.command(&Command::Quit)).await;
    }

    // ---- set-up ----

    async fn read_greeting(&mut self) -> Result<(), Error> {
        // Another service's banner is not repeated in the error (see the IMAP client's
        // greeting): portal users read it.
        let status = self.read_status().await.map_err(|e| match e {
            Error::Protocol(reason) => {
                tracing::debug!(host = %self.host, "not a POP3 greeting: {reason}");
                Error::Protocol(format!(
                    "{} did not greet as a POP3 server does: is the port right?",
                    self.host
                ))
            }
            other => other,
        })?;
        match status.kind {
            StatusKind::Ok => Ok(()),
            _ => Err(Error::Net(NetError::Unreachable {
                address: self.host.clone(),
                reason: format!("the server refused the connection: {}", status.text),
            })),
        }
    }

    async fn refresh_capabilities(&mut self) -> Result<(), Error> {
        let status = self.command(&Command::Capa).await?;
        self.capabilities.clear();
        if status.kind != StatusKind::Ok {
            // An RFC 1939-only server: no extensions known.
            return Ok(());
        }
        let answer = self.read_answer_in_memory().await?;
        self.capabilities = listing_lines(&answer)
            .map(|line| String::from_utf8_lossy(line).trim().to_string())
            .collect();
        Ok(())
    }

    async fn stls(mut self, options: &ConnectOptions) -> Result<Client, Error> {
        let status = self.command(&Command::Stls).await?;
        if status.kind != StatusKind::Ok {
            return Err(Error::Net(NetError::Tls {
                host: self.host.clone(),
                reason: format!("the server refused STLS: {}", status.text),
            }));
        }
        let buffered = self.reader.buffer().len();
        let Client {
            reader,
            host,
            port,
            response_timeout,
            spill_threshold,
            max_message_size,
            ..
        } = self;
        let secured = upgrade(reader.into_inner(), buffered, &host, options).await?;
        let mut client = Client {
            reader: BufReader::with_capacity(READ_BUFFER, secured),
            host,
            port,
            capabilities: Vec::new(),
            response_timeout,
            spill_threshold,
            max_message_size,
            broken: false,
        };
        // What was learnt before the handshake cannot be trusted (RFC 2595 §4).
        client.refresh_capabilities().await?;
        Ok(client)
    }

    /// Whether CAPA lists `SASL` with `mechanism`.
    fn offers_sasl(&self, mechanism: &str) -> bool {
        self.capabilities.iter().any(|line| {
            let mut words = line.split_ascii_whitespace();
            words.next().is_some_and(|w| w.eq_ignore_ascii_case("SASL"))
                && words.any(|w| w.eq_ignore_ascii_case(mechanism))
        })
    }

    async fn auth_plain(&mut self, login: &str, password: &Secret<String>) -> Result<(), Error> {
        if login.contains('\0') || password.expose().contains('\0') {
            return Err(Error::AuthFailed {
                login: login.to_string(),
                text: "the login or password contains a NUL byte, which PLAIN cannot carry".into(),
            });
        }
        let token = mailmove_net::sasl::plain("", login, password);
        let mut status = self.command(&Command::Auth("PLAIN", &token)).await?;
        if status.kind == StatusKind::Continue {
            // A server that ignored the initial response asks for it again.
            status = self.command(&Command::SaslResponse(&token)).await?;
        }
        match status.kind {
            StatusKind::Ok => Ok(()),
            StatusKind::Err => Err(refusal(login, "AUTH PLAIN", status.text)),
            StatusKind::Continue => {
                // PLAIN has one step; cancel the exchange (RFC 5034 §4).
                self.command(&Command::SaslCancel).await?;
                self.broken = true;
                Err(Error::Protocol(
                    "the server asked for a second step of AUTH PLAIN".into(),
                ))
            }
        }
    }

    async fn user_pass(&mut self, login: &str, password: &Secret<String>) -> Result<(), Error> {
        let breaks_the_line = |text: &str| text.contains(['\r', '\n', '\0']);
        if breaks_the_line(login) || breaks_the_line(password.expose()) {
            return Err(Error::AuthFailed {
                login: login.to_string(),
                text: "the login or password contains a line break or NUL, \
                       which USER/PASS cannot carry"
                    .into(),
            });
        }
        for command in [Command::User(login), Command::Pass(password)] {
            let status = self.command(&command).await?;
            match status.kind {
                StatusKind::Ok => {}
                StatusKind::Err => return Err(refusal(login, &command.describe(), status.text)),
                StatusKind::Continue => return Err(self.unexpected_continuation(&command)),
            }
        }
        Ok(())
    }

    // ---- the wire ----

    /// Sends a command and reads its status line; `-ERR` is an error.
    async fn run(&mut self, command: &Command<'_>) -> Result<Status, Error> {
        let status = self.command(command).await?;
        self.require_ok(status, command)
    }

    /// Sends a command and reads its status line, whatever it says.
    async fn command(&mut self, command: &Command<'_>) -> Result<Status, Error> {
        self.send(command).await?;
        self.read_status().await
    }

    fn require_ok(&mut self, status: Status, command: &Command<'_>) -> Result<Status, Error> {
        match status.kind {
            StatusKind::Ok => Ok(status),
            StatusKind::Err => Err(Error::Err {
                command: command.describe(),
                text: status.text,
            }),
            StatusKind::Continue => Err(self.unexpected_continuation(command)),
        }
    }

    fn unexpected_continuation(&mut self, command: &Command<'_>) -> Error {
        self.broken = true;
        Error::Protocol(format!(
            "the server answered {} with a SASL continuation",
            command.describe()
        ))
    }

    async fn send(&mut self, command: &Command<'_>) -> Result<(), Error> {
        if self.broken {
            return Err(lost_already());
        }
        trace!(host = %self.host, "C: {}", command.describe());
        let mut line = command.wire();
        line.push_str("\r\n");
        let stream = self.reader.get_mut();
        let result = async {
            stream.write_all(line.as_bytes()).await?;
            stream.flush().await
        }
        .await;
        result.map_err(|e| {
            self.broken = true;
            Error::ConnectionLost(e.to_string())
        })
    }

    async fn read_status(&mut self) -> Result<Status, Error> {
        if self.broken {
            return Err(lost_already());
        }
        let mut line = Vec::new();
        let limit = MAX_STATUS_LINE as u64 + 1;
        let read = tokio::time::timeout(
            self.response_timeout,
            (&mut self.reader).take(limit).read_until(b'\n', &mut line),
        )
        .await;
        let result = match read {
            Err(_) => Err(self.silence()),
            Ok(Err(e)) => Err(Error::ConnectionLost(e.to_string())),
            Ok(Ok(0)) => Err(Error::ConnectionLost(
                "the server closed the connection".into(),
            )),
            Ok(Ok(_)) if !line.ends_with(b"\n") => Err(if line.len() > MAX_STATUS_LINE {
                Error::Protocol(format!("a status line longer than {MAX_STATUS_LINE} bytes"))
            } else {
                Error::ConnectionLost("the server closed the connection".into())
            }),
            Ok(Ok(_)) => parse_status(&line).ok_or_else(|| {
                Error::Protocol(format!(
                    "expected +OK or -ERR, got {:?}",
                    truncate(&String::from_utf8_lossy(&line))
                ))
            }),
        };
        match result {
            Ok(status) => {
                trace!(host = %self.host, "S: {:?} {}", status.kind, status.text);
                Ok(status)
            }
            Err(error) => {
                self.broken = true;
                Err(error)
            }
        }
    }

    /// Reads a multi-line answer into memory, up to [`MAX_IN_MEMORY_ANSWER`] bytes.
    async fn read_answer_in_memory(&mut self) -> Result<Vec<u8>, Error> {
        let mut answer = Vec::new();
        self.read_multiline(|bytes| {
            if answer.len() + bytes.len() > MAX_IN_MEMORY_ANSWER {
                return Err(Error::Protocol(format!(
                    "an answer longer than {MAX_IN_MEMORY_ANSWER} bytes where a short one was due"
                )));
            }
            answer.extend_from_slice(bytes);
            Ok(())
        })
        .await?;
        Ok(answer)
    }

    /// Streams the body of a multi-line answer, dot-unstuffed, into `emit`, and leaves
    /// whatever follows the terminator buffered for the next answer.
    async fn read_multiline(
        &mut self,
        mut emit: impl FnMut(&[u8]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        if self.broken {
            return Err(lost_already());
        }
        let mut decoder = DotUnstuffer::new();
        let mut decoded = Vec::with_capacity(READ_BUFFER);
        loop {
            let chunk =
                match tokio::time::timeout(self.response_timeout, self.reader.fill_buf()).await {
                    Ok(Ok([])) => Err(Error::ConnectionLost(
                        "the server closed the connection in the middle of an answer".into(),
                    )),
                    Ok(Ok(chunk)) => Ok(chunk),
                    Ok(Err(e)) => Err(Error::ConnectionLost(e.to_string())),
                    Err(_) => Err(Error::ConnectionLost(format!(
                        "no answer from {} for {} s",
                        self.host,
                        self.response_timeout.as_secs()
                    ))),
                };
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(error) => {
                    self.broken = true;
                    return Err(error);
                }
            };
            decoded.clear();
            let feed = decoder.feed(chunk, &mut decoded);
            let used = match feed {
                Feed::NeedMore => chunk.len(),
                Feed::Ended { surplus } => chunk.len() - surplus,
            };
            self.reader.consume(used);
            if let Err(error) = emit(&decoded) {
                self.broken = true;
                return Err(error);
            }
            if feed != Feed::NeedMore {
                return Ok(());
            }
        }
    }

    fn silence(&self) -> Error {
        Error::ConnectionLost(format!(
            "no answer from {} for {} s",
            self.host,
            self.response_timeout.as_secs()
        ))
    }
}

/// Every command this client can send. There is deliberately no DELE and no RSET:
/// the source is never changed.
enum Command<'a> {
    Capa,
    Stls,
    User(&'a str),
    Pass(&'a Secret<String>),
    /// `AUTH mechanism` with the base64 message as initial response.
    Auth(&'static str, &'a Secret<String>),
    /// The base64 token alone, when the server asks for it with `+`.
    SaslResponse(&'a Secret<String>),
    /// A client's fixed answer in a SASL exchange (OAuth's reply to an error report).
    SaslAnswer(&'a str),
    SaslCancel,
    Stat,
    List,
    Uidl,
    Top(u32),
    /// `TOP msgno lines`: the whole message when `lines` exceeds its body's lines.
    TopLines(u32, u32),
    Retr(u32),
    Noop,
    Quit,
}

impl Command<'_> {
    /// The line to send, without CRLF: the only place a password is exposed.
    fn wire(&self) -> String {
        match self {
            Command::User(login) => format!("USER {login}"),
            Command::Pass(password) => format!("PASS {}", password.expose()),
            Command::Auth(mechanism, message) => format!("AUTH {mechanism} {}", message.expose()),
            Command::SaslResponse(token) => token.expose().clone(),
            Command::SaslAnswer(answer) => (*answer).to_string(),
            _ => self.describe(),
        }
    }

    /// The line as logs and errors show it: secrets redacted.
    fn describe(&self) -> String {
        match self {
            Command::Capa => "CAPA".into(),
            Command::Stls => "STLS".into(),
            Command::User(login) => format!("USER {login}"),
            Command::Pass(_) => "PASS [redacted]".into(),
            Command::Auth(mechanism, _) => format!("AUTH {mechanism} [redacted]"),
            Command::SaslResponse(_) => "[redacted SASL response]".into(),
            Command::SaslAnswer(answer) => (*answer).to_string(),
            Command::SaslCancel => "*".into(),
            Command::Stat => "STAT".into(),
            Command::List => "LIST".into(),
            Command::Uidl => "UIDL".into(),
            Command::Top(msgno) => format!("TOP {msgno} 0"),
            Command::TopLines(msgno, lines) => format!("TOP {msgno} {lines}"),
            Command::Retr(msgno) => format!("RETR {msgno}"),
            Command::Noop => "NOOP".into(),
            Command::Quit => "QUIT".into(),
        }
    }
}

/// A refused login: the password's fault unless the server says otherwise.
fn refusal(login: &str, command: &str, text: String) -> Error {
    if is_temporary(&text) || text.to_ascii_uppercase().starts_with("[SYS/PERM") {
        Error::Err {
            command: command.to_string(),
            text,
        }
    } else {
        Error::AuthFailed {
            login: login.to_string(),
            text,
        }
    }
}

/// Removes the CRLF the server added to a message without a final line break.
fn drop_final_line_break(body: Body) -> Result<Body, Error> {
    match body {
        Body::Memory(mut bytes) => {
            bytes.truncate(bytes.len().saturating_sub(2));
            Ok(Body::Memory(bytes))
        }
        Body::File { file, len } => {
            let len = len.saturating_sub(2);
            file.set_len(len).map_err(spool_failed)?;
            Ok(Body::File { file, len })
        }
    }
}

fn spool_failed(error: std::io::Error) -> Error {
    Error::ConnectionLost(format!(
        "cannot spool the message to a temporary file: {error}"
    ))
}

fn lost_already() -> Error {
    Error::ConnectionLost("the connection was already lost".into())
}

fn truncate(text: &str) -> &str {
    match text.char_indices().nth(200) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_command(secret: &Secret<String>) -> Vec<Command<'_>> {
        vec![
            Command::Capa,
            Command::Stls,
            Command::User("alice"),
            Command::Pass(secret),
            Command::Auth("PLAIN", secret),
            Command::SaslResponse(secret),
            Command::SaslCancel,
            Command::Stat,
            Command::List,
            Command::Uidl,
            Command::Top(3),
            Command::Retr(3),
            Command::Noop,
            Command::Quit,
        ]
    }

    /// The engine runs sessions on tokio's multi-threaded runtime.
    #[test]
    fn the_client_and_its_futures_are_send() {
        fn is_send<T: Send>(_: &T) {}
        let _never_called = |mut client: Client, secret: Secret<String>| async move {
            is_send(&client);
            is_send(&client.login("a", &secret));
            is_send(&client.list());
            is_send(&client.uidl());
            is_send(&client.top_headers(1));
            is_send(&client.retr(1));
            is_send(&client.quit());
        };
    }

    #[test]
    fn no_command_deletes_or_undeletes() {
        let secret = Secret::new("hunter2".to_string());
        for command in every_command(&secret) {
            let verb = command.wire().to_ascii_uppercase();
            assert!(
                !verb.starts_with("DELE") && !verb.starts_with("RSET"),
                "{verb}"
            );
        }
    }

    #[test]
    fn descriptions_never_show_the_password() {
        let secret = Secret::new("hunter2".to_string());
        for command in every_command(&secret) {
            assert!(!command.describe().contains("hunter2"));
        }
        assert_eq!(Command::Pass(&secret).wire(), "PASS hunter2");
        assert_eq!(Command::Top(7).wire(), "TOP 7 0");
    }

    #[test]
    fn refusals_blame_the_password_unless_the_server_says_otherwise() {
        assert!(matches!(
            refusal("a", "PASS", "[AUTH] Authentication failed.".into()),
            Error::AuthFailed { .. }
        ));
        assert!(matches!(
            refusal("a", "PASS", "Authentication failed.".into()),
            Error::AuthFailed { .. }
        ));
        let busy = refusal("a", "PASS", "[IN-USE] Mailbox is locked".into());
        assert!(matches!(busy, Error::Err { .. }) && busy.is_transient());
        let broken = refusal("a", "PASS", "[SYS/PERM] Disk broken".into());
        assert!(matches!(broken, Error::Err { .. }) && !broken.is_transient());
    }

    #[test]
    fn the_added_line_break_is_dropped_from_memory_and_from_a_spooled_file() {
        let body = drop_final_line_break(Body::Memory(b"abc\r\n".to_vec())).unwrap();
        assert!(matches!(body, Body::Memory(ref b) if b == b"abc"));

        let mut sink = BodySink::new(2, 0);
        sink.write(b"abcdef\r\n").unwrap();
        let body = drop_final_line_break(sink.finish().unwrap()).unwrap();
        assert!(matches!(body, Body::File { len: 6, .. }));
        assert_eq!(body.into_vec().unwrap(), b"abcdef");
    }
}
