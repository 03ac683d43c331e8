//! Opening a connection, with failures worded for the person who must fix them.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

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
            NetError::Unreachable { .. }
            | NetError::Tls { .. }
            | NetError::DataBeforeTls { .. } => None,
        }
    }
}

pub async fn connect_tcp(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, NetError> {
    let address = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let stream = tokio::time::timeout(timeout, TcpStream::connect((host, port)))
        .await
        .map_err(|_| NetError::Unreachable {
            address: address.clone(),
            reason: "connection timed out".into(),
        })?
        .map_err(|e| NetError::Unreachable {
            address: address.clone(),
            reason: describe_io(&e),
        })?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
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
}
