//! A small blocking HTTP/1.1 client for talking to the test authorization server: one
//! request per connection (`Connection: close`), TLS verified against the test CA.
//! Written here rather than taken from an HTTP crate so the testkit stays a witness
//! that depends on nothing mailmove's own code uses for the same job.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

const TIMEOUT: Duration = Duration::from_secs(30);

/// An answer: status, headers (names lowercased) and the body, de-chunked.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header of that (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "HTTP {} answer is not JSON: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Sends HTTP requests to `http://` or `https://` URLs on loopback; `https://` is
/// verified against `ca_pem` (the server's SANs are `localhost` and `127.0.0.1`).
#[derive(Clone)]
pub(crate) struct HttpClient {
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

pub(crate) struct Request<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: Vec<(&'a str, String)>,
    pub body: Vec<u8>,
}

impl HttpClient {
    pub(crate) fn new(ca_pem: Option<&str>) -> Result<HttpClient> {
        let tls = match ca_pem {
            None => None,
            Some(pem) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                    roots
                        .add(cert.context("reading the CA certificate")?)
                        .context("trusting the CA certificate")?;
                }
                let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth();
                Some(Arc::new(config))
            }
        };
        Ok(HttpClient { tls })
    }

    pub(crate) fn send(&self, request: Request<'_>) -> Result<HttpResponse> {
        let target = Target::parse(request.url)?;
        let stream = TcpStream::connect((target.host.as_str(), target.port))
            .with_context(|| format!("connecting to {}", request.url))?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_write_timeout(Some(TIMEOUT))?;

        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
            request.method,
            target.path,
            target.host,
            target.port,
            request.body.len()
        );
        for (name, value) in &request.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&request.body);

        let raw = if target.tls {
            let config = self
                .tls
                .clone()
                .ok_or_else(|| anyhow!("{} needs TLS but no CA was given", request.url))?;
            let name = ServerName::try_from(target.host.clone())
                .with_context(|| format!("{} as a TLS server name", target.host))?;
            let connection = rustls::ClientConnection::new(config, name)?;
            let mut tls = rustls::StreamOwned::new(connection, stream);
            tls.write_all(&bytes)?;
            tls.flush()?;
            read_to_close(&mut tls)?
        } else {
            let mut stream = stream;
            stream.write_all(&bytes)?;
            read_to_close(&mut stream)?
        };
        parse_response(&raw).with_context(|| format!("{} {}", request.method, request.url))
    }

    pub(crate) fn get(&self, url: &str) -> Result<HttpResponse> {
        self.send(Request {
            method: "GET",
            url,
            headers: vec![("Accept", "application/json".to_string())],
            body: Vec::new(),
        })
    }

    /// POSTs a form (`application/x-www-form-urlencoded`), with an optional
    /// `Authorization` header.
    pub(crate) fn post_form(
        &self,
        url: &str,
        authorization: Option<String>,
        form: &[(&str, &str)],
    ) -> Result<HttpResponse> {
        let mut headers = vec![
            (
                "Content-Type",
                "application/x-www-form-urlencoded".to_string(),
            ),
            ("Accept", "application/json".to_string()),
        ];
        if let Some(value) = authorization {
            headers.push(("Authorization", value));
        }
        self.send(Request {
            method: "POST",
            url,
            headers,
            body: form_encode(form).into_bytes(),
        })
    }

    pub(crate) fn post_json(
        &self,
        url: &str,
        authorization: Option<String>,
        body: &serde_json::Value,
    ) -> Result<HttpResponse> {
        let mut headers = vec![("Content-Type", "application/json".to_string())];
        if let Some(value) = authorization {
            headers.push(("Authorization", value));
        }
        self.send(Request {
            method: "POST",
            url,
            headers,
            body: serde_json::to_vec(body)?,
        })
    }
}

/// Reads until the peer closes. A TLS peer that closes without close_notify is
/// accepted: the body length is checked against the headers afterwards.
fn read_to_close(stream: &mut impl Read) -> Result<Vec<u8>> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(raw),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {
                return Ok(raw);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("reading the HTTP answer"),
        }
    }
}

struct Target {
    tls: bool,
    host: String,
    port: u16,
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            bail!("{url} is neither http:// nor https://");
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().context("the URL's port")?),
            None => (authority, if tls { 443 } else { 80 }),
        };
        Ok(Target {
            tls,
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }
}

fn parse_response(raw: &[u8]) -> Result<HttpResponse> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no end of headers in {} bytes", raw.len()))?;
    let head = std::str::from_utf8(&raw[..end]).context("headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body)?;
    } else if let Some((_, length)) = headers.iter().find(|(n, _)| n == "content-length") {
        let length: usize = length.parse().context("Content-Length")?;
        if body.len() < length {
            bail!("body cut short: {} of {length} bytes", body.len());
        }
        body.truncate(length);
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut input: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = input
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("chunk size line without CRLF"))?;
        let size_text = std::str::from_utf8(&input[..line_end])?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("chunk size {size_text:?}"))?;
        input = &input[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if input.len() < size + 2 {
            bail!("chunk cut short");
        }
        out.extend_from_slice(&input[..size]);
        input = &input[size + 2..];
    }
}

/// `application/x-www-form-urlencoded`.
pub(crate) fn form_encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub(crate) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(byte));
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_and_sized_bodies() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\n\r\n";
        let response = parse_response(raw).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.body, b"Wikipedia");

        let raw = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\nX-A: b\r\n\r\n{}";
        let response = parse_response(raw).unwrap();
        assert_eq!(response.status, 400);
        assert_eq!(response.header("x-a"), Some("b"));
        assert_eq!(response.body, b"{}");
    }

    #[test]
    fn forms_are_percent_encoded() {
        assert_eq!(
            form_encode(&[("scope", "openid https://mail.google.com/"), ("a", "b~")]),
            "scope=openid%20https%3A%2F%2Fmail.google.com%2F&a=b~"
        );
    }

    #[test]
    fn urls_split_into_host_port_and_path() {
        let target = Target::parse("https://127.0.0.1:8443/token?x=1").unwrap();
        assert!(target.tls);
        assert_eq!(
            (target.host.as_str(), target.port, target.path.as_str()),
            ("127.0.0.1", 8443, "/token?x=1")
        );
        let target = Target::parse("http://localhost").unwrap();
        assert_eq!((target.port, target.path.as_str()), (80, "/"));
    }
}
