//! The few HTTPS requests OAuth needs (a GET for discovery, form POSTs for the rest),
//! one connection per request over `mailmove-net`'s TCP and verified TLS, bounded in
//! time and in the size of the answer.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{ACCEPT, AUTHORIZATION, CONNECTION, CONTENT_TYPE, HOST, HeaderValue};
use hyper_util::rt::TokioIo;
use mailmove_model::Secret;
use mailmove_net::{NetError, NetworkPolicy, TlsOptions, connect_tcp, tls_handshake_within};
use tracing::debug;
use url::Url;

use crate::error::Error;

/// How requests to a provider are made.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// Which certificates are trusted: the system's, plus an extra CA (a private
    /// identity provider, the tests' provider).
    pub tls: TlsOptions,
    /// The whole request: connect, TLS, send, and the answer read to its end.
    pub timeout: Duration,
    /// The largest answer read; a provider's answers are a few kilobytes.
    pub max_answer_bytes: usize,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            tls: TlsOptions::default(),
            timeout: Duration::from_secs(30),
            max_answer_bytes: 256 * 1024,
        }
    }
}

/// An answer read whole.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self, url: &Url) -> Result<serde_json::Value, Error> {
        serde_json::from_slice(&self.body).map_err(|e| Error::BadAnswer {
            url: url.to_string(),
            reason: format!("the answer (HTTP {}) is not JSON: {e}", self.status),
        })
    }
}

/// A request to send: an `Authorization` header (a secret) and a form body, whose
/// values may be secrets too. Nothing secret ever goes into the URL.
pub(crate) struct Post<'a> {
    pub authorization: Option<Secret<String>>,
    pub form: Vec<(&'a str, Field<'a>)>,
}

/// A form value, plain or secret (`expose`d only to encode the body).
pub(crate) enum Field<'a> {
    Plain(&'a str),
    Secret(&'a Secret<String>),
    /// A secret made for this request (a signed assertion).
    Owned(Secret<String>),
}

impl Post<'_> {
    /// Every secret value of the request, to scrub from anything the provider
    /// sends back.
    pub fn secrets(&self) -> Vec<&str> {
        let mut secrets: Vec<&str> = self
            .form
            .iter()
            .filter_map(|(_, value)| match value {
                Field::Secret(secret) => Some(secret.expose().as_str()),
                Field::Owned(secret) => Some(secret.expose().as_str()),
                Field::Plain(_) => None,
            })
            .collect();
        if let Some(header) = &self.authorization {
            secrets.push(header.expose());
        }
        secrets
    }

    fn encoded(&self) -> String {
        let mut serializer = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in &self.form {
            let value = match value {
                Field::Plain(text) => text,
                Field::Secret(secret) => secret.expose().as_str(),
                Field::Owned(secret) => secret.expose().as_str(),
            };
            serializer.append_pair(name, value);
        }
        serializer.finish()
    }
}

/// Refuses anything but an `https` URL with a host.
pub(crate) fn https_url(text: &str, what: &str) -> Result<Url, Error> {
    let url = Url::parse(text)
        .map_err(|e| Error::Configuration(format!("the {what} {text:?} is not a URL: {e}")))?;
    if url.scheme() != "https" || url.host_str().is_none() {
        return Err(Error::Configuration(format!(
            "the {what} {url} is not an https:// URL; tokens travel only over TLS"
        )));
    }
    Ok(url)
}

pub(crate) async fn get(options: &HttpOptions, url: &Url) -> Result<Answer, Error> {
    let request = Request::get(url.as_str()).header(ACCEPT, "application/json");
    send(options, url, request, Bytes::new()).await
}

pub(crate) async fn post(
    options: &HttpOptions,
    url: &Url,
    post: &Post<'_>,
) -> Result<Answer, Error> {
    let mut request = Request::post(url.as_str())
        .header(ACCEPT, "application/json")
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(authorization) = &post.authorization {
        let mut value = HeaderValue::from_str(authorization.expose()).map_err(|_| {
            Error::Configuration("the client credentials cannot go into an HTTP header".into())
        })?;
        value.set_sensitive(true);
        request = request.header(AUTHORIZATION, value);
    }
    send(options, url, request, Bytes::from(post.encoded())).await
}

/// `text` with every secret replaced: what a provider sends back may quote the
/// request.
pub(crate) fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut text = text.to_string();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(secret, "[redacted]");
    }
    text
}

async fn send(
    options: &HttpOptions,
    url: &Url,
    request: http::request::Builder,
    body: Bytes,
) -> Result<Answer, Error> {
    match tokio::time::timeout(options.timeout, exchange(options, url, request, body)).await {
        Ok(answer) => answer,
        Err(_) => Err(Error::Unreachable {
            url: url.to_string(),
            reason: format!("no complete answer within {:?}", options.timeout),
            net: None,
        }),
    }
}

async fn exchange(
    options: &HttpOptions,
    url: &Url,
    request: http::request::Builder,
    body: Bytes,
) -> Result<Answer, Error> {
    let unreachable = |net: NetError| Error::Unreachable {
        url: url.to_string(),
        reason: net.to_string(),
        net: Some(net),
    };
    let lost = |reason: String| Error::Unreachable {
        url: url.to_string(),
        reason,
        net: None,
    };
    if url.scheme() != "https" {
        return Err(Error::Configuration(format!(
            "{url} is not an https:// URL; tokens travel only over TLS"
        )));
    }
    let host = match url.host() {
        Some(url::Host::Domain(name)) => name.to_string(),
        Some(url::Host::Ipv4(address)) => address.to_string(),
        Some(url::Host::Ipv6(address)) => address.to_string(),
        None => return Err(Error::Configuration(format!("{url} has no host"))),
    };
    let port = url.port_or_known_default().unwrap_or(443);
    let tcp = connect_tcp(&host, port, options.timeout, &NetworkPolicy::Anywhere)
        .await
        .map_err(unreachable)?;
    let tls = tls_handshake_within(tcp, &host, &options.tls, options.timeout)
        .await
        .map_err(unreachable)?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| lost(format!("HTTP set-up failed: {e}")))?;
    let driver = tokio::spawn(async move {
        if let Err(error) = connection.await {
            debug!("provider connection ended: {error}");
        }
    });
    let authority = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    };
    let request = request
        .uri(request_target(url))
        .header(HOST, authority)
        .header(CONNECTION, "close")
        .body(Full::new(body))
        .map_err(|e| Error::Configuration(format!("cannot make a request to {url}: {e}")))?;
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| lost(format!("the request failed: {e}")))?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut read = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| lost(format!("the answer was cut: {e}")))?;
            if let Some(data) = frame.data_ref() {
                if read.len() + data.len() > options.max_answer_bytes {
                    return Err(Error::BadAnswer {
                        url: url.to_string(),
                        reason: format!(
                            "the answer is larger than {} bytes",
                            options.max_answer_bytes
                        ),
                    });
                }
                read.extend_from_slice(data);
            }
        }
        Ok(Answer {
            status,
            body: Bytes::from(read),
        })
    }
    .await;
    driver.abort();
    result
}

/// The path and query, which is all an HTTP/1.1 request line carries.
fn request_target(url: &Url) -> String {
    match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_urls_are_taken() {
        assert!(https_url("https://login.example.test/token", "token endpoint").is_ok());
        let refused = https_url("http://login.example.test/token", "token endpoint")
            .unwrap_err()
            .to_string();
        assert!(refused.contains("not an https:// URL"), "{refused}");
        assert!(https_url("login.example.test", "token endpoint").is_err());
    }

    #[test]
    fn scrub_removes_every_secret() {
        let text = scrub(
            "bad token abc123 for abc123 and xyz",
            &["abc123", "", "xyz"],
        );
        assert_eq!(text, "bad token [redacted] for [redacted] and [redacted]");
    }

    #[test]
    fn form_encodes_secrets_only_in_the_body() {
        let secret = Secret::new("s3cr&t=".to_string());
        let post = Post {
            authorization: None,
            form: vec![
                ("grant_type", Field::Plain("refresh_token")),
                ("refresh_token", Field::Secret(&secret)),
            ],
        };
        assert_eq!(
            post.encoded(),
            "grant_type=refresh_token&refresh_token=s3cr%26t%3D"
        );
        assert_eq!(post.secrets(), vec!["s3cr&t="]);
    }
}
