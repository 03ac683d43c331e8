//! Opening a connection, with failures worded for the person who must fix them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::policy::NetworkPolicy;
use crate::remedy::Remedy;
use crate::tls::{TlsOptions, TlsSetupError, client_config};

/// A failure to set up a connection. The text says what failed, in the user's terms
/// and never in a program's (no command-line flag); [`NetError::remedy`] says which
/// fix applies, for the program that shows it to word.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot reach {address}: {reason}")]
    Unreachable { address: String, reason: String },
    #[error("certificate for {host} is not trusted: {reason}")]
    UntrustedCertificate { host: String, reason: String },
    #[error("TLS with {host} failed: {reason}")]
    Tls { host: String, reason: String },
    #[error(transparent)]
    Setup(#[from] TlsSetupError),
    /// The server's address is on this machine, a private network or a reserved range,
    /// and connections there are not allowed (the portal's passes). The address a name
    /// resolved to is not shown: it may be the operator's internal name's.
    #[error(
        "cannot connect to {address}: this address is not allowed (addresses on this \
         machine, private networks and reserved ranges are refused)"
    )]
    NotAllowed { address: String },
    /// The connection would stay unencrypted and the password would go in clear.
    #[error("refusing to send the password in clear to {host}: {why}")]
    PlaintextRefused { host: String, why: String },
    /// Bytes arrived after the server agreed to STARTTLS/STLS and before the handshake:
    /// they were sent unprotected and would be read as if they came through TLS.
    #[error("{host} sent data before the TLS handshake (possible injection); refusing to continue")]
    DataBeforeTls { host: String },
}

impl NetError {
    /// Which fix applies, when one does.
    pub fn remedy(&self) -> Option<Remedy> {
        match self {
            NetError::UntrustedCertificate { .. } => Some(Remedy::TrustCertificate),
            NetError::Setup(TlsSetupError::CaFile { .. }) => Some(Remedy::ReadableCaFile),
            NetError::PlaintextRefused { .. } => Some(Remedy::EncryptOrAllowPlaintext),
            NetError::NotAllowed { .. } => Some(Remedy::PublicAddress),
            NetError::Unreachable { .. }
            | NetError::Tls { .. }
            | NetError::DataBeforeTls { .. } => None,
        }
    }
}

/// Opens a TCP connection to `host` (a name or an address), within `timeout` for the
/// look-up and the connection together. Every address the name resolves to is checked
/// against `policy` and only the permitted ones are tried: the address checked is the
/// address connected to, whatever the name resolves to next time.
pub async fn connect_tcp(
    host: &str,
    port: u16,
    timeout: Duration,
    policy: &NetworkPolicy,
) -> Result<TcpStream, NetError> {
    let address = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let stream = tokio::time::timeout(timeout, connect_permitted(host, port, policy, &address))
        .await
        .map_err(|_| NetError::Unreachable {
            address: address.clone(),
            reason: "connection timed out".into(),
        })??;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Resolves `host`, keeps the addresses `policy` permits, and connects to the first of
/// them that answers.
async fn connect_permitted(
    host: &str,
    port: u16,
    policy: &NetworkPolicy,
    address: &str,
) -> Result<TcpStream, NetError> {
    let unreachable = |e: &std::io::Error| NetError::Unreachable {
        address: address.to_string(),
        reason: describe_io(e),
    };
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| unreachable(&e))?
        .collect();
    let permitted: Vec<SocketAddr> = resolved
        .iter()
        .copied()
        .filter(|a| policy.permits(a.ip()))
        .collect();
    if permitted.is_empty() && !resolved.is_empty() {
        return Err(NetError::NotAllowed {
            address: address.to_string(),
        });
    }
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "the name has no address");
    for candidate in permitted {
        match TcpStream::connect(candidate).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(unreachable(&last))
}

async fn tls_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    host: &str,
    options: &TlsOptions,
) -> Result<tokio_rustls::client::TlsStream<S>, NetError> {
    let config = client_config(options)?;
    let name =
        rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|_| NetError::Tls {
            host: host.to_string(),
            reason: "not a valid server name".into(),
        })?;
    TlsConnector::from(Arc::clone(&config))
        .connect(name, stream)
        .await
        .map_err(|e| classify_tls_error(host, e))
}

/// [`tls_handshake`] that gives up after `timeout`.
pub async fn tls_handshake_within<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    host: &str,
    options: &TlsOptions,
    timeout: Duration,
) -> Result<tokio_rustls::client::TlsStream<S>, NetError> {
    tokio::time::timeout(timeout, tls_handshake(stream, host, options))
        .await
        .unwrap_or_else(|_| {
            Err(NetError::Tls {
                host: host.to_string(),
                reason: "the TLS handshake timed out".into(),
            })
        })
}

fn classify_tls_error(host: &str, error: std::io::Error) -> NetError {
    let inner = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .cloned();
    match inner {
        Some(rustls::Error::InvalidCertificate(reason)) => NetError::UntrustedCertificate {
            host: host.to_string(),
            reason: describe_certificate_error(&reason),
        },
        Some(other) => NetError::Tls {
            host: host.to_string(),
            reason: other.to_string(),
        },
        None => NetError::Tls {
            host: host.to_string(),
            reason: error.to_string(),
        },
    }
}

fn describe_certificate_error(error: &rustls::CertificateError) -> String {
    use rustls::CertificateError as E;
    match error {
        E::UnknownIssuer => "it was issued by an authority this machine does not trust".into(),
        E::Expired | E::ExpiredContext { .. } => "it has expired".into(),
        E::NotValidYet | E::NotValidYetContext { .. } => "it is not valid yet".into(),
        E::NotValidForName | E::NotValidForNameContext { .. } => {
            "it was issued for another host name".into()
        }
        E::Revoked => "it was revoked".into(),
        other => format!("{other:?}"),
    }
}

fn describe_io(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::TimedOut => "connection timed out".into(),
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_what_failed_and_name_no_flag() {
        let untrusted = NetError::UntrustedCertificate {
            host: "mail.old.example".into(),
            reason: "it has expired".into(),
        };
        assert_eq!(
            untrusted.to_string(),
            "certificate for mail.old.example is not trusted: it has expired"
        );
        assert_eq!(untrusted.remedy(), Some(Remedy::TrustCertificate));
        let ca_file = NetError::Setup(TlsSetupError::CaFile {
            path: "/etc/ca.pem".into(),
            reason: "no PEM certificate in it".into(),
        });
        assert_eq!(ca_file.remedy(), Some(Remedy::ReadableCaFile));
        let unreachable = NetError::Unreachable {
            address: "mail.old.example:993".into(),
            reason: "connection refused".into(),
        };
        assert_eq!(unreachable.remedy(), None);
        for error in [untrusted, ca_file, unreachable] {
            assert!(!error.to_string().contains("--"), "{error}");
        }
    }

    fn public_only(allowed: &[&str]) -> NetworkPolicy {
        NetworkPolicy::public_only(allowed.iter().map(|c| c.parse().unwrap()).collect())
    }

    /// A listener on loopback that accepts (the kernel's backlog does), so a refused
    /// connection is the policy's doing, not the port's.
    async fn loopback_listener() -> (tokio::net::TcpListener, u16) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        (listener, port)
    }

    #[tokio::test]
    async fn loopback_in_every_spelling_is_refused_unless_allowed() {
        let (_listener, port) = loopback_listener().await;
        let timeout = Duration::from_secs(10);
        // `localhost` goes through the system's resolver; `127.1` and `0x7f.1` are the
        // forms the C library's inet_aton reads as 127.0.0.1.
        for host in [
            "127.0.0.1",
            "localhost",
            "127.1",
            "0x7f.1",
            "::ffff:127.0.0.1",
        ] {
            let error = connect_tcp(host, port, timeout, &public_only(&[]))
                .await
                .expect_err(host);
            assert!(
                matches!(error, NetError::NotAllowed { .. }),
                "{host}: {error}"
            );
            assert!(
                error.to_string().contains("this address is not allowed"),
                "{host}: {error}"
            );
            assert!(!error.to_string().contains("--"), "{error}");
            assert_eq!(error.remedy(), Some(Remedy::PublicAddress));
            connect_tcp(host, port, timeout, &public_only(&["127.0.0.0/8"]))
                .await
                .unwrap_or_else(|e| panic!("{host} with 127.0.0.0/8 allowed: {e}"));
            connect_tcp(host, port, timeout, &NetworkPolicy::Anywhere)
                .await
                .unwrap_or_else(|e| panic!("{host} from the command line: {e}"));
        }
    }

    #[tokio::test]
    async fn a_refusal_does_not_say_what_a_name_resolved_to() {
        let (_listener, port) = loopback_listener().await;
        let error = connect_tcp(
            "localhost",
            port,
            Duration::from_secs(10),
            &public_only(&[]),
        )
        .await
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "cannot connect to localhost:{port}: this address is not allowed (addresses on \
                 this machine, private networks and reserved ranges are refused)"
            )
        );
    }

    #[tokio::test]
    async fn an_allowed_address_that_refuses_says_refused() {
        let (listener, port) = loopback_listener().await;
        drop(listener);
        let error = connect_tcp(
            "127.0.0.1",
            port,
            Duration::from_secs(10),
            &public_only(&["127.0.0.1"]),
        )
        .await
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("cannot reach 127.0.0.1:{port}: connection refused")
        );
    }
}
