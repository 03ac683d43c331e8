//! HTTP/1.1 to one EWS (or autodiscover) URL: our own small pool of keep-alive
//! connections over hyper's connection API, TCP and TLS from `mailmove_net` (verified
//! certificates, errors that name the address), and the login.
//!
//! Why not a general HTTP client: NTLM authenticates a connection, not a request. The
//! NEGOTIATE, CHALLENGE and AUTHENTICATE messages must travel on one connection, and
//! later requests must reuse that same connection to stay logged in. Owning the pool
//! makes that a property of the code instead of a hope about someone else's pool.
//!
//! Basic and Bearer send their header on every request. NTLM runs its handshake once
//! per connection, on an empty POST, then sends the real request with the
//! AUTHENTICATE message; a connection that has done so is marked and reused without a
//! header. A 401 on such a connection (the server forgot it) is answered by a fresh
//! connection and a new handshake, once.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::{Buf, Bytes};
use http::header::{
    AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST, USER_AGENT, WWW_AUTHENTICATE,
};
use http::{HeaderMap, HeaderValue, Method, Request};
use http_body_util::Full;
use hyper::body::{Body as _, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use mailmove_model::Secret;
use mailmove_net::{NetworkPolicy, Stream, TlsOptions, connect_tcp, tls_handshake_within};
use tokio::io::{AsyncBufRead, AsyncRead, AsyncReadExt, ReadBuf};
use tracing::debug;
use url::{Host, Position, Url};

use crate::error::Error;
use crate::ntlm;
use crate::types::{AuthKind, Options};

/// Idle connections kept per URL.
const MAX_IDLE: usize = 16;
/// An error page is read this far for its text.
const MAX_ERROR_BODY: usize = 4 * 1024 * 1024;

/// The login scheme in use, once known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// The server asked for none.
    Anonymous,
    Basic,
    /// NTLM tokens, under the header word the server offered (`NTLM`, or `Negotiate`,
    /// which accepts raw NTLM tokens).
    Ntlm(&'static str),
    Bearer,
}

struct PooledConnection {
    sender: SendRequest<Full<Bytes>>,
    /// NTLM has logged this connection in.
    authenticated: bool,
}

type Pool = Arc<Mutex<Vec<PooledConnection>>>;

pub(crate) struct Transport {
    url: Url,
    host: String,
    port: u16,
    tls: bool,
    /// The `Host` header.
    authority: String,
    /// The request target: path and query.
    target: String,
    tls_options: TlsOptions,
    connect_timeout: Duration,
    /// Which addresses connections may go to.
    network: NetworkPolicy,
    /// The most MIME content kept for one item.
    max_message_size: u64,
    /// The wait for response headers, and between two reads of a body.
    timeout: Duration,
    login: String,
    password: Secret<String>,
    bearer: Option<Secret<String>>,
    requested: AuthKind,
    scheme: Mutex<Option<Scheme>>,
    idle: Pool,
}

/// Checks an EWS or autodiscover URL before anything is sent: https, or http only to a
/// loopback host or when plaintext is allowed.
pub(crate) fn check_url(url: &Url, login: &str, options: &Options) -> Result<(), Error> {
    let bad = |reason: &str| Error::BadUrl {
        url: url.to_string(),
        reason: reason.into(),
    };
    if url.host().is_none() {
        return Err(bad("it has no host"));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(url) || options.connect.allow_plaintext => Ok(()),
        "http" => Err(Error::PlaintextRefused {
            login: login.to_string(),
            url: url.to_string(),
        }),
        _ => Err(bad(
            "only https:// (or http:// to this machine) is supported",
        )),
    }
}

pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

impl Transport {
    /// Prepares connections to `url`; nothing is sent yet. Call [`check_url`] first.
    pub(crate) fn new(
        url: &Url,
        login: &str,
        password: &Secret<String>,
        options: &Options,
    ) -> Result<Transport, Error> {
        let host = match url.host() {
            Some(Host::Domain(name)) => name.to_string(),
            Some(Host::Ipv4(ip)) => ip.to_string(),
            Some(Host::Ipv6(ip)) => ip.to_string(),
            None => {
                return Err(Error::BadUrl {
                    url: url.to_string(),
                    reason: "it has no host".into(),
                });
            }
        };
        let port = url.port_or_known_default().unwrap_or(443);
        if options.auth == AuthKind::Bearer && options.bearer_token.is_none() {
            return Err(Error::AuthFailed {
                login: login.to_string(),
                text: "Bearer login was chosen but no token was given".into(),
            });
        }
        Ok(Transport {
            host,
            port,
            tls: url.scheme() == "https",
            authority: url[Position::BeforeHost..Position::AfterPort].to_string(),
            target: url[Position::BeforePath..Position::AfterQuery].to_string(),
            url: url.clone(),
            tls_options: options.connect.tls.clone(),
            connect_timeout: options.connect.connect_timeout,
            network: options.connect.network.clone(),
            max_message_size: options.connect.max_message_size,
            timeout: options.connect.response_timeout,
            login: login.to_string(),
            password: password.clone(),
            bearer: options.bearer_token.clone(),
            requested: options.auth,
            scheme: Mutex::new(None),
            idle: Arc::new(Mutex::new(Vec::new())),
        })
    }

    pub(crate) fn url(&self) -> &Url {
        &self.url
    }

    pub(crate) fn max_message_size(&self) -> u64 {
        self.max_message_size
    }

    pub(crate) fn login(&self) -> &str {
        &self.login
    }

    /// The login in use is a bearer token.
    pub(crate) fn uses_bearer(&self) -> bool {
        *lock(&self.scheme) == Some(Scheme::Bearer)
    }

    /// POSTs `body` logged in, and returns the answer with its body unread. A 401 is
    /// returned like any other status; the caller decides what it means.
    pub(crate) async fn post(&self, body: Bytes) -> Result<Response, Error> {
        let scheme = self.scheme().await?;
        // Each retry is for a pooled connection that turned out closed or forgotten;
        // the pool holds at most MAX_IDLE of them, and a fresh one is not retried.
        for _ in 0..=MAX_IDLE {
            let (mut connection, reused) = self.checkout().await?;
            match self.exchange(&mut connection, scheme, &body).await {
                Ok(response) => return Ok(self.wrap(response, connection)),
                Err(Failure::Retry(why)) if reused => {
                    debug!(url = %self.url, "pooled connection unusable ({why}), opening another");
                }
                Err(Failure::Retry(why)) => return Err(Error::ConnectionLost(why)),
                Err(Failure::Fatal(error)) => return Err(error),
            }
        }
        Err(Error::ConnectionLost(
            "every pooled connection was closed by the server".into(),
        ))
    }

    async fn scheme(&self) -> Result<Scheme, Error> {
        if let Some(scheme) = *lock(&self.scheme) {
            return Ok(scheme);
        }
        let scheme = match self.requested {
            AuthKind::Basic => Scheme::Basic,
            AuthKind::Ntlm => Scheme::Ntlm("NTLM"),
            AuthKind::Bearer => Scheme::Bearer,
            AuthKind::Auto if self.bearer.is_some() => Scheme::Bearer,
            AuthKind::Auto => self.probe().await?,
        };
        debug!(url = %self.url, ?scheme, "login scheme");
        *lock(&self.scheme) = Some(scheme);
        Ok(scheme)
    }

    /// An empty POST without credentials, to read what the 401 offers.
    async fn probe(&self) -> Result<Scheme, Error> {
        let (mut connection, _) = self.checkout().await?;
        let request = self.request(Bytes::new(), None)?;
        let response = match send_on(&mut connection, request, self.timeout).await {
            Ok(response) => response,
            Err(Failure::Retry(why)) => return Err(Error::ConnectionLost(why)),
            Err(Failure::Fatal(error)) => return Err(error),
        };
        let status = response.status().as_u16();
        let offered = offers(response.headers());
        let mut wrapped = self.wrap(response, connection);
        wrapped.body.drain().await;
        if status != 401 {
            return Ok(Scheme::Anonymous);
        }
        let has = |word: &str| offered.iter().any(|o| o.eq_ignore_ascii_case(word));
        if has("NTLM") {
            Ok(Scheme::Ntlm("NTLM"))
        } else if has("Negotiate") {
            Ok(Scheme::Ntlm("Negotiate"))
        } else if has("Basic") {
            // `check_url` let plain http through only to loopback or with
            // allow_plaintext, so Basic goes in clear only where the user accepted it.
            Ok(Scheme::Basic)
        } else {
            Err(Error::AuthFailed {
                login: self.login.clone(),
                text: format!(
                    "Exchange offers no login mailmove speaks (it offers: {})",
                    if offered.is_empty() {
                        "nothing".to_string()
                    } else {
                        offered.join(", ")
                    }
                ),
            })
        }
    }

    async fn exchange(
        &self,
        connection: &mut PooledConnection,
        scheme: Scheme,
        body: &Bytes,
    ) -> Result<http::Response<Incoming>, Failure> {
        let header = match scheme {
            Scheme::Anonymous => None,
            Scheme::Basic => {
                let pair = format!("{}:{}", self.login, self.password.expose());
                Some(format!("Basic {}", BASE64.encode(pair)))
            }
            Scheme::Bearer => self
                .bearer
                .as_ref()
                .map(|token| format!("Bearer {}", token.expose())),
            Scheme::Ntlm(word) if !connection.authenticated => {
                return self.ntlm_handshake(connection, word, body).await;
            }
            Scheme::Ntlm(_) => None,
        };
        let request = self.request(body.clone(), header).map_err(Failure::Fatal)?;
        let response = send_on(connection, request, self.timeout).await?;
        if response.status() == 401 && matches!(scheme, Scheme::Ntlm(_)) {
            // The server no longer knows this connection: log in again on a new one.
            drain_incoming(response).await;
            return Err(Failure::Retry(
                "the NTLM login of the connection expired".into(),
            ));
        }
        Ok(response)
    }

    async fn ntlm_handshake(
        &self,
        connection: &mut PooledConnection,
        word: &'static str,
        body: &Bytes,
    ) -> Result<http::Response<Incoming>, Failure> {
        let negotiate = format!("{word} {}", BASE64.encode(ntlm::negotiate_message()));
        let request = self
            .request(Bytes::new(), Some(negotiate))
            .map_err(Failure::Fatal)?;
        let response = send_on(connection, request, self.timeout).await?;
        let status = response.status().as_u16();
        let token = challenge_token(response.headers(), word);
        drain_incoming(response).await;
        if status != 401 {
            // No login needed after all: send the request as it is.
            connection.authenticated = true;
            let request = self.request(body.clone(), None).map_err(Failure::Fatal)?;
            return send_on(connection, request, self.timeout).await;
        }
        let refused = |text: &str| {
            Failure::Fatal(Error::AuthFailed {
                login: self.login.clone(),
                text: text.into(),
            })
        };
        let Some(token) = token else {
            return Err(refused("Exchange did not answer the NTLM negotiation"));
        };
        let challenge = BASE64
            .decode(token.trim())
            .map_err(|_| refused("Exchange sent an unreadable NTLM challenge"))
            .and_then(|bytes| {
                ntlm::parse_challenge(&bytes)
                    .map_err(|e| refused(&format!("Exchange sent a bad NTLM challenge: {e}")))
            })?;
        if connection.sender.is_closed() {
            return Err(Failure::Fatal(Error::AuthFailed {
                login: self.login.clone(),
                text: "the server closed the connection in the middle of the NTLM handshake \
                       (a proxy between mailmove and Exchange may not keep connections)"
                    .into(),
            }));
        }
        let mut client_challenge = [0u8; 8];
        getrandom::fill(&mut client_challenge)
            .map_err(|e| Failure::Fatal(Error::Protocol(format!("no random numbers: {e}"))))?;
        let identity = ntlm::Identity::from_login(&self.login);
        let authenticate = ntlm::authenticate_message(
            &challenge,
            &identity,
            self.password.expose(),
            client_challenge,
            ntlm::filetime_now(),
        );
        let header = format!("{word} {}", BASE64.encode(authenticate));
        let request = self
            .request(body.clone(), Some(header))
            .map_err(Failure::Fatal)?;
        let response = send_on(connection, request, self.timeout).await?;
        if response.status() != 401 {
            connection.authenticated = true;
        }
        Ok(response)
    }

    fn request(
        &self,
        body: Bytes,
        authorization: Option<String>,
    ) -> Result<Request<Full<Bytes>>, Error> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.target.as_str())
            .header(HOST, self.authority.as_str())
            .header(CONTENT_TYPE, "text/xml; charset=utf-8")
            .header(CONTENT_LENGTH, body.len())
            .header(USER_AGENT, concat!("mailmove/", env!("CARGO_PKG_VERSION")));
        if authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Bearer "))
        {
            // Routes the request to the mailbox when a token, not a login, names it.
            request = request.header("X-AnchorMailbox", self.login.as_str());
        }
        if let Some(value) = authorization {
            let mut value = HeaderValue::try_from(value).map_err(|_| Error::AuthFailed {
                login: self.login.clone(),
                text: "the login or password holds characters HTTP cannot carry".into(),
            })?;
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        request.body(Full::new(body)).map_err(|e| Error::BadUrl {
            url: self.url.to_string(),
            reason: e.to_string(),
        })
    }

    /// An idle connection from the pool (`true`), or a new one (`false`).
    async fn checkout(&self) -> Result<(PooledConnection, bool), Error> {
        loop {
            let candidate = lock(&self.idle).pop();
            match candidate {
                Some(connection) if !connection.sender.is_closed() => {
                    return Ok((connection, true));
                }
                Some(_) => continue,
                None => break,
            }
        }
        Ok((self.open().await?, false))
    }

    async fn open(&self) -> Result<PooledConnection, Error> {
        let tcp = connect_tcp(&self.host, self.port, self.connect_timeout, &self.network).await?;
        let stream: Box<dyn Stream> = if self.tls {
            let host = &self.host;
            Box::new(
                tls_handshake_within(tcp, host, &self.tls_options, self.connect_timeout).await?,
            )
        } else {
            Box::new(tcp)
        };
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| Error::ConnectionLost(e.to_string()))?;
        let url = self.url.to_string();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                debug!(%url, "connection ended: {error}");
            }
        });
        Ok(PooledConnection {
            sender,
            authenticated: false,
        })
    }

    fn wrap(&self, response: http::Response<Incoming>, connection: PooledConnection) -> Response {
        let (parts, body) = response.into_parts();
        Response {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: BodyReader {
                body,
                chunk: Bytes::new(),
                done: false,
                idle: self.timeout,
                deadline: Box::pin(tokio::time::sleep(self.timeout)),
                release: Some((connection, Arc::clone(&self.idle))),
            },
        }
    }
}

enum Failure {
    /// The request did not reach the server (or the login of a reused connection was
    /// forgotten): another connection may succeed.
    Retry(String),
    Fatal(Error),
}

async fn send_on(
    connection: &mut PooledConnection,
    request: Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<http::Response<Incoming>, Failure> {
    if connection.sender.ready().await.is_err() {
        return Err(Failure::Retry("the connection was closed".into()));
    }
    match tokio::time::timeout(timeout, connection.sender.try_send_request(request)).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(mut error)) => {
            if error.take_message().is_some() {
                Err(Failure::Retry(error.error().to_string()))
            } else {
                Err(Failure::Fatal(Error::ConnectionLost(
                    error.error().to_string(),
                )))
            }
        }
        Err(_) => Err(Failure::Fatal(Error::ConnectionLost(format!(
            "no answer within {} s",
            timeout.as_secs()
        )))),
    }
}

async fn drain_incoming(response: http::Response<Incoming>) {
    let mut body = response.into_body();
    let mut read = 0usize;
    while let Some(Ok(frame)) = http_body_util::BodyExt::frame(&mut body).await {
        if let Some(data) = frame.data_ref() {
            read += data.len();
        }
        if read > MAX_ERROR_BODY {
            break;
        }
    }
}

/// The schemes offered by `WWW-Authenticate` headers (first word of each).
pub(crate) fn offers(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|part| part.split_whitespace().next())
        // `realm="x"` continues the previous challenge, it is no scheme.
        .filter(|word| !word.contains('='))
        .map(str::to_string)
        .collect()
}

fn challenge_token(headers: &HeaderMap, word: &str) -> Option<String> {
    headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case(word)
                .then(|| token.trim().to_string())
        })
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these short locks leaves consistent data.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// An answer with its body still on the wire.
pub(crate) struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: BodyReader,
}

/// The body of an answer as a byte stream. Each read waits at most the timeout for
/// more bytes. Read to the end, it gives its connection back to the pool; dropped
/// before, the connection is closed.
pub(crate) struct BodyReader {
    body: Incoming,
    chunk: Bytes,
    done: bool,
    idle: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
    release: Option<(PooledConnection, Pool)>,
}

impl BodyReader {
    /// Reads the body, at most [`MAX_ERROR_BODY`] bytes.
    pub(crate) async fn bytes(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = (&mut *self)
            .take(MAX_ERROR_BODY as u64)
            .read_to_end(&mut out)
            .await;
        out
    }

    /// Reads and drops the rest, so the connection can be used again.
    pub(crate) async fn drain(&mut self) {
        let _ = self.bytes().await;
    }

    fn finish(&mut self) {
        self.done = true;
        if let Some((connection, pool)) = self.release.take() {
            if connection.sender.is_closed() {
                return;
            }
            let mut idle = lock(&pool);
            if idle.len() < MAX_IDLE {
                idle.push(connection);
            }
        }
    }
}

impl AsyncBufRead for BodyReader {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        loop {
            if !this.chunk.is_empty() || this.done {
                return Poll::Ready(Ok(&this.chunk));
            }
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        this.chunk = data;
                    }
                    let next = tokio::time::Instant::now() + this.idle;
                    this.deadline.as_mut().reset(next);
                }
                Poll::Ready(Some(Err(error))) => {
                    return Poll::Ready(Err(io::Error::other(error)));
                }
                Poll::Ready(None) => this.finish(),
                Poll::Pending => {
                    ready!(this.deadline.as_mut().poll(cx));
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no data for {} s", this.idle.as_secs()),
                    )));
                }
            }
        }
    }

    fn consume(self: Pin<&mut Self>, amount: usize) {
        self.get_mut().chunk.advance(amount);
    }
}

impl AsyncRead for BodyReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let data = ready!(self.as_mut().poll_fill_buf(cx))?;
        let n = data.len().min(buf.remaining());
        buf.put_slice(&data[..n]);
        self.consume(n);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_only_to_loopback_unless_allowed() {
        let options = Options::default();
        let check =
            |url: &str, options: &Options| check_url(&Url::parse(url).unwrap(), "a", options);
        assert!(check("https://mail.example.com/EWS/Exchange.asmx", &options).is_ok());
        assert!(check("http://127.0.0.1:8080/EWS/Exchange.asmx", &options).is_ok());
        assert!(check("http://[::1]/EWS/Exchange.asmx", &options).is_ok());
        assert!(check("http://localhost/EWS/Exchange.asmx", &options).is_ok());
        assert!(matches!(
            check("http://mail.example.com/EWS/Exchange.asmx", &options),
            Err(Error::PlaintextRefused { .. })
        ));
        let allowed = Options {
            connect: mailmove_net::ConnectOptions {
                allow_plaintext: true,
                ..mailmove_net::ConnectOptions::default()
            },
            ..Options::default()
        };
        assert!(check("http://mail.example.com/EWS/Exchange.asmx", &allowed).is_ok());
        assert!(matches!(
            check("ftp://mail.example.com/", &options),
            Err(Error::BadUrl { .. })
        ));
    }

    #[test]
    fn offered_schemes() {
        let mut headers = HeaderMap::new();
        headers.append(WWW_AUTHENTICATE, HeaderValue::from_static("Negotiate"));
        headers.append(WWW_AUTHENTICATE, HeaderValue::from_static("NTLM"));
        headers.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"mail.example.com\", charset=\"UTF-8\""),
        );
        assert_eq!(offers(&headers), vec!["Negotiate", "NTLM", "Basic"]);
        let mut headers = HeaderMap::new();
        headers.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("NTLM TlRMTVNTUAACAAAA"),
        );
        assert_eq!(
            challenge_token(&headers, "ntlm").as_deref(),
            Some("TlRMTVNTUAACAAAA")
        );
        assert_eq!(challenge_token(&headers, "Negotiate"), None);
    }

    #[test]
    fn host_header_and_target() {
        let url = Url::parse("https://mail.example.com:8443/EWS/Exchange.asmx?x=1").unwrap();
        let transport =
            Transport::new(&url, "a", &Secret::new("p".into()), &Options::default()).unwrap();
        assert_eq!(transport.authority, "mail.example.com:8443");
        assert_eq!(transport.target, "/EWS/Exchange.asmx?x=1");
        assert_eq!(transport.port, 8443);
        let url = Url::parse("http://[::1]/EWS/Exchange.asmx").unwrap();
        let transport =
            Transport::new(&url, "a", &Secret::new("p".into()), &Options::default()).unwrap();
        assert_eq!(transport.host, "::1");
        assert_eq!(transport.port, 80);
    }
}
