//! The connection set-up the IMAP and POP3 clients share: TCP, then TLS from the first
//! byte or not as the endpoint says; once the server has greeted, the choice between an
//! upgrade (STARTTLS, STLS), going on unencrypted, and refusing to send the password in
//! clear; and the upgrade itself, refused when the server sent anything early.

use mailmove_model::{Endpoint, Security};
use tokio::io::{AsyncRead, AsyncWrite, BufReader};

use crate::connect::{NetError, connect_tcp, tls_handshake_within};
use crate::options::ConnectOptions;

/// A connection of any kind: TCP, TLS, or what a client layers over them.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Under TLS, the socket is read through a buffer of this size: rustls asks for 4 KiB
/// at a time, which would otherwise be one `recvfrom` per 4 KiB of mail.
const TLS_READ_BUFFER: usize = 64 * 1024;

/// A connection as [`open`] left it, before the greeting.
pub struct Opened {
    /// TLS for `Security::Tls`; plain TCP otherwise, until [`upgrade`].
    pub stream: Box<dyn Stream>,
    /// The server's address is this machine's or a private network's.
    pub peer_local: bool,
}

/// Connects to the endpoint, with TLS from the first byte where its security says so.
/// Both steps give up after the connect timeout.
pub async fn open(endpoint: &Endpoint, options: &ConnectOptions) -> Result<Opened, NetError> {
    let tcp = connect_tcp(
        &endpoint.host,
        endpoint.port,
        options.connect_timeout,
        &options.network,
    )
    .await?;
    let peer_local = tcp.peer_addr().is_ok_and(|a| is_local(a.ip()));
    let stream: Box<dyn Stream> = match endpoint.security {
        Security::Tls => Box::new(secure(tcp, &endpoint.host, options).await?),
        Security::StartTls | Security::None => Box::new(tcp),
    };
    Ok(Opened { stream, peer_local })
}

/// The error for a server that accepted the connection and did not greet within
/// `waited` (the connect timeout): such a server would otherwise hold a session, and
/// whatever slots it took, for as long as a command may take.
pub fn no_greeting(endpoint: &Endpoint, waited: std::time::Duration) -> NetError {
    NetError::Unreachable {
        address: format!("{}:{}", endpoint.host, endpoint.port),
        reason: format!(
            "the server accepted the connection but sent no greeting within {} s",
            waited.as_secs_f64()
        ),
    }
}

/// What a client does once the server has greeted it and said what it offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BeforeLogin {
    /// Log in on the connection as it is: encrypted already, or plaintext allowed.
    Proceed,
    /// Send the upgrade command (STARTTLS, STLS), then [`upgrade`].
    Upgrade,
}

/// Decides between upgrading, going on, and refusing: a password is sent unencrypted
/// only to a loopback address or where the user allowed plaintext. `upgrade` names the
/// protocol's command and `offered` says whether the server announced it.
pub fn before_login(
    endpoint: &Endpoint,
    options: &ConnectOptions,
    upgrade: &str,
    offered: bool,
) -> Result<BeforeLogin, NetError> {
    match endpoint.security {
        Security::Tls => Ok(BeforeLogin::Proceed),
        Security::StartTls if offered => Ok(BeforeLogin::Upgrade),
        _ if options.allow_plaintext || endpoint.is_loopback() => Ok(BeforeLogin::Proceed),
        security => Err(NetError::PlaintextRefused {
            host: endpoint.host.clone(),
            why: if security == Security::StartTls {
                format!("it offers no {upgrade}")
            } else {
                "the connection is set to stay unencrypted".into()
            },
        }),
    }
}

/// Puts TLS under a connection whose server has just agreed to STARTTLS or STLS.
/// `buffered` is how many bytes the client had read past that answer: any at all were
/// sent before the handshake, unprotected, and would be read as if they came through
/// TLS, so the upgrade is refused.
pub async fn upgrade(
    stream: Box<dyn Stream>,
    buffered: usize,
    host: &str,
    options: &ConnectOptions,
) -> Result<Box<dyn Stream>, NetError> {
    nothing_buffered(buffered, host)?;
    Ok(Box::new(secure(stream, host, options).await?))
}

/// The injection check of [`upgrade`], alone.
pub fn nothing_buffered(buffered: usize, host: &str) -> Result<(), NetError> {
    if buffered == 0 {
        Ok(())
    } else {
        Err(NetError::DataBeforeTls {
            host: host.to_string(),
        })
    }
}

async fn secure<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    host: &str,
    options: &ConnectOptions,
) -> Result<tokio_rustls::client::TlsStream<BufReader<S>>, NetError> {
    let buffered = BufReader::with_capacity(TLS_READ_BUFFER, stream);
    tls_handshake_within(buffered, host, &options.tls, options.connect_timeout).await
}

/// Loopback, private (RFC 1918, unique local) and link-local addresses.
fn is_local(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        std::net::IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_local(std::net::IpAddr::V4(v4));
            }
            v6.is_loopback() || v6.is_unique_local() || v6.is_unicast_link_local()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Remedy;

    fn endpoint(url: &str) -> Endpoint {
        Endpoint::parse(url).unwrap()
    }

    fn allowing(allow_plaintext: bool) -> ConnectOptions {
        ConnectOptions {
            allow_plaintext,
            ..ConnectOptions::default()
        }
    }

    #[test]
    fn a_password_goes_in_clear_only_to_loopback_or_when_allowed() {
        use BeforeLogin::{Proceed, Upgrade};
        let table = [
            // (url, allow plaintext, upgrade offered, decision)
            ("imaps://a@mail.example", false, false, Some(Proceed)),
            ("imap://a@mail.example", false, true, Some(Upgrade)),
            ("imap://a@mail.example", true, true, Some(Upgrade)),
            ("imap://a@mail.example", false, false, None),
            ("imap://a@mail.example", true, false, Some(Proceed)),
            ("imap://a@127.0.0.1", false, false, Some(Proceed)),
            ("imap://a@localhost", false, true, Some(Upgrade)),
            ("pop3://a@[::1]", false, false, Some(Proceed)),
            ("pop3://a@mail.example", false, false, None),
        ];
        for (url, allow, offered, expected) in table {
            let decided = before_login(&endpoint(url), &allowing(allow), "STARTTLS", offered);
            assert_eq!(
                decided.as_ref().ok().copied(),
                expected,
                "{url} {allow} {offered}"
            );
        }
    }

    #[test]
    fn a_refusal_says_why_and_offers_the_remedy() {
        let error = before_login(
            &endpoint("pop3://a@mail.example"),
            &allowing(false),
            "STLS",
            false,
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "refusing to send the password in clear to mail.example: it offers no STLS"
        );
        assert_eq!(error.remedy(), Some(Remedy::EncryptOrAllowPlaintext));
        assert!(!error.to_string().contains("--"), "no command-line flag");
    }

    #[test]
    fn bytes_read_past_the_upgrade_answer_are_an_injection() {
        assert!(nothing_buffered(0, "mail.example").is_ok());
        let error = nothing_buffered(12, "mail.example").unwrap_err();
        assert!(matches!(error, NetError::DataBeforeTls { ref host } if host == "mail.example"));
        assert!(error.to_string().contains("possible injection"), "{error}");
    }

    #[tokio::test]
    async fn the_upgrade_is_refused_before_any_handshake_when_bytes_wait() {
        // A stream that fails any read or write: the check must come before both.
        let (client, server) = tokio::io::duplex(64);
        drop(server);
        let result = upgrade(Box::new(client), 3, "mail.example", &allowing(false)).await;
        assert!(matches!(result, Err(NetError::DataBeforeTls { .. })));
    }

    #[test]
    fn local_addresses() {
        for (ip, local) in [
            ("127.0.0.1", true),
            ("10.1.2.3", true),
            ("192.168.0.9", true),
            ("169.254.1.1", true),
            ("::1", true),
            ("fd00::1", true),
            ("::ffff:192.168.1.1", true),
            ("8.8.8.8", false),
            ("2001:db8::1", false),
        ] {
            assert_eq!(is_local(ip.parse().unwrap()), local, "{ip}");
        }
    }
}
