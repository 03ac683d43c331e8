//! Checking candidates by connecting, without logging in: verified TLS (from the first
//! byte, or after STARTTLS/STLS), then the capabilities; for Exchange, the sign-in
//! methods EWS asks for. And, last, the conventional names `imap.DOMAIN` and
//! `mail.DOMAIN`, kept only when TLS verified. Every line read is capped, every
//! exchange has a deadline.

use std::net::SocketAddr;

use http::Method;
use mailmove_model::{EWS_PATH, Kind, Security};
use mailmove_net::{Stream, connect_tcp, nothing_buffered, tls_handshake_within};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::{Candidate, Check, Context, Origin, Source, SourceReport};

/// The most candidates checked at once by one discovery.
const MAX_CHECKED: usize = 12;
/// The longest line read from a server.
const MAX_LINE: u64 = 8 * 1024;
/// The most lines read for one answer.
const MAX_LINES: usize = 64;

pub(crate) async fn check_all(context: &Context<'_>, candidates: &mut [Candidate]) {
    let count = candidates.len().min(MAX_CHECKED);
    let checks =
        futures_util::future::join_all(candidates[..count].iter().map(|c| check(context, c))).await;
    for (candidate, (check, upgraded)) in candidates.iter_mut().zip(checks) {
        if upgraded && candidate.security == Security::None {
            candidate.security = Security::StartTls;
        }
        candidate.check = check;
    }
    for candidate in candidates.iter_mut().skip(count) {
        candidate.check = Check::NotChecked {
            reason: format!("only the first {MAX_CHECKED} candidates are checked"),
        };
    }
}

/// `imap.DOMAIN` and `mail.DOMAIN` on the IMAP ports: kept only when TLS verified.
pub(crate) async fn conventional_names(
    context: &Context<'_>,
    known: &[Candidate],
) -> (Vec<Candidate>, SourceReport) {
    let domain = &context.target.domain;
    let ports = context.settings.ports;
    let mut tried = Vec::new();
    for name in ["imap", "mail"] {
        let host = format!("{name}.{domain}");
        for (port, security) in [
            (ports.imaps, Security::Tls),
            (ports.imap, Security::StartTls),
        ] {
            let already = known.iter().any(|c| c.host == host && c.port == port);
            if !already {
                let origin = Origin {
                    source: Source::Probe,
                    detail: format!("{host} answered with verified TLS"),
                };
                tried.push(Candidate::new(Kind::Imap, &host, port, security, origin));
            }
        }
    }
    let checks = futures_util::future::join_all(tried.iter().map(|c| check(context, c))).await;
    let mut kept = Vec::new();
    for (mut candidate, (check, _)) in tried.into_iter().zip(checks) {
        if matches!(check, Check::Verified { .. }) {
            candidate.check = check;
            kept.push(candidate);
        }
    }
    let said = if kept.is_empty() {
        format!("neither imap.{domain} nor mail.{domain} answered with verified TLS")
    } else {
        format!("{} answered with verified TLS", kept[0].host)
    };
    (
        kept,
        SourceReport {
            source: Source::Probe,
            said,
        },
    )
}

/// The check, and whether a plain connection was upgraded.
async fn check(context: &Context<'_>, candidate: &Candidate) -> (Check, bool) {
    let settings = context.settings;
    if settings.conventional_ports_only && !settings.ports.conventional(candidate.port) {
        return (
            Check::NotChecked {
                reason: format!(
                    "port {} is not a mail port; it is not checked here",
                    candidate.port
                ),
            },
            false,
        );
    }
    let addresses = match context
        .dns
        .socket_addresses(&candidate.host, candidate.port)
        .await
    {
        Ok(addresses) => addresses,
        Err(reason) => return (Check::Failed { reason }, false),
    };
    let limit = settings.timeout * 3;
    let outcome = tokio::time::timeout(limit, async {
        match candidate.kind {
            Kind::Imap | Kind::Pop3 => line_protocol(context, candidate, &addresses).await,
            Kind::Ews => ews(context, candidate).await.map(|c| (c, false)),
        }
    })
    .await;
    match outcome {
        Ok(Ok(checked)) => checked,
        Ok(Err(reason)) => (Check::Failed { reason }, false),
        Err(_) => (
            Check::Failed {
                reason: format!("no answer within {} s", limit.as_secs()),
            },
            false,
        ),
    }
}

/// A TCP connection to the first of (at most three of) `addresses` that accepts one:
/// `localhost` is `::1` and `127.0.0.1`, and a server may listen on one only.
pub(crate) async fn connect_any(
    context: &Context<'_>,
    addresses: &[SocketAddr],
) -> Result<tokio::net::TcpStream, String> {
    let settings = context.settings;
    let mut last = String::from("no address");
    for address in addresses.iter().take(3) {
        let ip = address.ip().to_string();
        match connect_tcp(&ip, address.port(), settings.timeout, &settings.policy).await {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// What differs between IMAP and POP3 here.
struct Dialect {
    greeting: &'static [&'static str],
    capability: &'static str,
    upgrade: &'static str,
}

const IMAP: Dialect = Dialect {
    greeting: &["* OK", "* PREAUTH"],
    capability: "CAPABILITY",
    upgrade: "STARTTLS",
};

const POP3: Dialect = Dialect {
    greeting: &["+OK"],
    capability: "CAPA",
    upgrade: "STLS",
};

async fn line_protocol(
    context: &Context<'_>,
    candidate: &Candidate,
    addresses: &[SocketAddr],
) -> Result<(Check, bool), String> {
    let settings = context.settings;
    let dialect = if candidate.kind == Kind::Pop3 {
        &POP3
    } else {
        &IMAP
    };
    let tcp = connect_any(context, addresses).await?;
    let stream: Box<dyn Stream> = match candidate.security {
        Security::Tls => Box::new(
            tls_handshake_within(tcp, &candidate.host, &settings.tls, settings.timeout)
                .await
                .map_err(|e| e.to_string())?,
        ),
        Security::StartTls | Security::None => Box::new(tcp),
    };
    let mut session = Session::new(stream, dialect);
    session.greeting().await?;
    let capabilities = session.capabilities().await?;
    if candidate.security == Security::Tls {
        return Ok((Check::Verified { capabilities }, false));
    }
    let offered = capabilities
        .iter()
        .any(|c| c.eq_ignore_ascii_case(dialect.upgrade));
    if !offered {
        return Ok((Check::PlaintextOnly { capabilities }, false));
    }
    let stream = session.upgrade(&candidate.host, context).await?;
    let mut session = Session::new(stream, dialect);
    let capabilities = session.capabilities().await?;
    Ok((Check::Verified { capabilities }, true))
}

struct Session {
    reader: BufReader<Box<dyn Stream>>,
    dialect: &'static Dialect,
    tag: u32,
}

impl Session {
    fn new(stream: Box<dyn Stream>, dialect: &'static Dialect) -> Session {
        Session {
            reader: BufReader::new(stream),
            dialect,
            tag: 0,
        }
    }

    async fn line(&mut self) -> Result<String, String> {
        let mut line = Vec::new();
        let read = (&mut self.reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| e.to_string())?;
        if read == 0 {
            return Err("the server closed the connection".into());
        }
        if !line.ends_with(b"\n") {
            return Err(format!("a line longer than {} KiB", MAX_LINE / 1024));
        }
        Ok(String::from_utf8_lossy(&line).trim_end().to_string())
    }

    async fn greeting(&mut self) -> Result<(), String> {
        let line = self.line().await?;
        if self.dialect.greeting.iter().any(|g| line.starts_with(g)) {
            Ok(())
        } else {
            Err(format!("not a mail server's greeting: {}", cut(&line)))
        }
    }

    /// Sends a command; returns the untagged (IMAP) or listed (POP3) lines and whether
    /// the server said OK.
    async fn command(&mut self, verb: &str, listing: bool) -> Result<(Vec<String>, bool), String> {
        self.tag += 1;
        let imap = self.dialect.capability == "CAPABILITY";
        let tag = format!("d{}", self.tag);
        let text = if imap {
            format!("{tag} {verb}\r\n")
        } else {
            format!("{verb}\r\n")
        };
        let stream = self.reader.get_mut();
        stream
            .write_all(text.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        stream.flush().await.map_err(|e| e.to_string())?;
        let mut lines = Vec::new();
        for _ in 0..MAX_LINES {
            let line = self.line().await?;
            if imap {
                if let Some(rest) = line.strip_prefix(&format!("{tag} ")) {
                    return Ok((lines, rest.starts_with("OK")));
                }
                lines.push(line);
            } else if lines.is_empty() && !line.starts_with("+OK") {
                return Ok((lines, false));
            } else if !listing || line == "." {
                return Ok((lines.split_off(lines.len().min(1)), true));
            } else {
                lines.push(line);
            }
        }
        Err(format!("more than {MAX_LINES} lines in one answer"))
    }

    async fn capabilities(&mut self) -> Result<Vec<String>, String> {
        let (lines, _) = self.command(self.dialect.capability, true).await?;
        let words: Vec<String> = if self.dialect.capability == "CAPABILITY" {
            lines
                .iter()
                .filter_map(|l| l.strip_prefix("* CAPABILITY "))
                .flat_map(|l| l.split_ascii_whitespace())
                .map(str::to_string)
                .collect()
        } else {
            lines
                .iter()
                .filter_map(|l| l.split_ascii_whitespace().next())
                .map(str::to_string)
                .collect()
        };
        Ok(words.into_iter().take(MAX_LINES).map(|w| cut(&w)).collect())
    }

    /// STARTTLS or STLS, then verified TLS.
    async fn upgrade(
        mut self,
        host: &str,
        context: &Context<'_>,
    ) -> Result<Box<dyn Stream>, String> {
        let (_, ok) = self.command(self.dialect.upgrade, false).await?;
        if !ok {
            return Err(format!("the server refused {}", self.dialect.upgrade));
        }
        nothing_buffered(self.reader.buffer().len(), host).map_err(|e| e.to_string())?;
        let stream = self.reader.into_inner();
        let settings = context.settings;
        let tls = tls_handshake_within(stream, host, &settings.tls, settings.timeout)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Box::new(tls))
    }
}

/// EWS: an unauthenticated request; Exchange asks to sign in and names its methods.
async fn ews(context: &Context<'_>, candidate: &Candidate) -> Result<Check, String> {
    if candidate.security != Security::Tls {
        return Ok(Check::PlaintextOnly {
            capabilities: Vec::new(),
        });
    }
    let path = candidate.path.as_deref().unwrap_or(EWS_PATH);
    let url = url::Url::parse(&format!(
        "https://{}:{}{path}",
        candidate.host, candidate.port
    ))
    .map_err(|e| e.to_string())?;
    let answer = crate::http::request(context, Method::GET, &url, None, 64 * 1024).await?;
    let methods: Vec<String> = answer
        .headers
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .take(8)
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split_ascii_whitespace().next())
        .map(cut)
        .collect();
    match answer.status {
        401 if !methods.is_empty() => Ok(Check::Verified {
            capabilities: methods,
        }),
        200 | 401 | 405 => Ok(Check::Verified {
            capabilities: methods,
        }),
        status => Err(format!("EWS answered HTTP {status}")),
    }
}

fn cut(text: &str) -> String {
    text.chars().take(100).collect()
}
