//! A throw-away certificate authority and server certificate per Dovecot instance, so
//! TLS tests can verify the chain and the host name for real instead of turning
//! verification off.

use std::sync::Arc;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// PEM texts: the CA certificate clients trust, and the server's certificate and key.
pub(crate) struct ServerCerts {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
}

pub(crate) fn generate() -> Result<ServerCerts> {
    generate_for(&[])
}

/// A CA and a server certificate for `localhost`, `127.0.0.1` and `extra_names`
/// (discovery tests serve `imap.example.test` and `autoconfig.example.test`).
pub(crate) fn generate_for(extra_names: &[String]) -> Result<ServerCerts> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "mailmove-testkit CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().context("generating the CA key")?;
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .context("self-signing the CA")?;
    let issuer = Issuer::new(ca_params, ca_key);

    // Both SANs, because clients connect by name in some tests and by address in others.
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    names.extend(extra_names.iter().cloned());
    let mut server_params = CertificateParams::new(names)?;
    server_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    server_params.use_authority_key_identifier_extension = true;
    server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate().context("generating the server key")?;
    let server_cert = server_params
        .signed_by(&server_key, &issuer)
        .context("signing the server certificate")?;

    Ok(ServerCerts {
        ca_pem: ca_cert.pem(),
        server_cert_pem: server_cert.pem(),
        server_key_pem: server_key.serialize_pem(),
    })
}

/// A TLS acceptor serving a certificate and its key (PEM): the testkit's HTTPS
/// servers (EWS, web sites) all use it.
pub(crate) fn tls_acceptor(cert_pem: &str, key_pem: &str) -> Result<TlsAcceptor> {
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("reading the certificate")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("reading the key")?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
