//! Opening a connection, with failures worded for the person who must fix them.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::tls::{TlsOptions, TlsSetupError, client_config};

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot reach {address}: {reason}")]
    Unreachable { address: String, reason: String },
    #[error(
        "certificate for {host} is not trusted: {reason}; pass --tls-ca FILE with the CA that signed it"
    )]
    UntrustedCertificate { host: String, reason: String },
    #[error("TLS with {host} failed: {reason}")]
    Tls { host: String, reason: String },
    #[error(transparent)]
    Setup(#[from] TlsSetupError),
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

pub async fn tls_handshake<S: AsyncRead + AsyncWrite + Unpin>(
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
