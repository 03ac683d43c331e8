//! HTTP/1.1 for the EWS server: one hyper service per accepted connection (NTLM
//! authenticates connections, not requests), authentication, the injected faults, and
//! routing to the SOAP and autodiscover handlers.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;

use super::{AuthScheme, Shared, autodiscover, lock, ntlm, soap, xml};

/// Accepts connections until `shutdown` fires.
pub(crate) async fn serve(
    listener: std::net::TcpListener,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("ews server: cannot listen: {e}");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = shared.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                serve_connection(stream, shared).await;
                            }
                        }
                        None => serve_connection(stream, shared).await,
                    }
                });
            }
        }
    }
}

/// Where a connection stands in NTLM.
#[derive(Debug, Default)]
enum ConnectionAuth {
    #[default]
    None,
    Challenged([u8; 8]),
    Authenticated(String),
}

async fn serve_connection<S>(stream: S, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = Arc::new(Mutex::new(ConnectionAuth::None));
    let service = service_fn(move |request: Request<Incoming>| {
        let shared = shared.clone();
        let connection = connection.clone();
        async move { Ok::<_, Infallible>(handle(request, &shared, &connection).await) }
    });
    let _ = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

type HttpResponse = Response<Full<Bytes>>;

async fn handle(
    request: Request<Incoming>,
    shared: &Shared,
    connection: &Mutex<ConnectionAuth>,
) -> HttpResponse {
    let method = request.method().clone();
    let path = request.uri().path().to_ascii_lowercase();
    let headers = request.headers().clone();
    // The body is always read in full, so the connection stays usable after any answer.
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return plain(StatusCode::BAD_REQUEST, "unreadable body"),
    };

    let path = path.trim_end_matches('/');
    match (&method, path) {
        (&Method::GET, "/owa") => html(
            StatusCode::OK,
            "<!DOCTYPE html><html><head><title>Outlook</title></head><body><p>mailmove test Exchange: Outlook on the web is not served here.</p></body></html>",
        ),
        (&Method::POST, "/ews/exchange.asmx") => {
            let user = match authenticate(shared, connection, &headers) {
                Ok(user) => user,
                Err(response) => return *response,
            };
            ews(shared, &user, &body).await
        }
        (&Method::GET, "/ews/exchange.asmx") => match authenticate(shared, connection, &headers) {
            Ok(_) => html(
                StatusCode::OK,
                "<html><body>You have created a service.</body></html>",
            ),
            Err(response) => *response,
        },
        (&Method::POST, "/autodiscover/autodiscover.xml") => {
            let user = match authenticate(shared, connection, &headers) {
                Ok(user) => user,
                Err(response) => return *response,
            };
            let (status, text) = autodiscover::pox(shared, &user, &body);
            xml_response(status, text)
        }
        (&Method::POST, "/autodiscover/autodiscover.svc") => {
            let user = match authenticate(shared, connection, &headers) {
                Ok(user) => user,
                Err(response) => return *response,
            };
            let (status, text) = autodiscover::soap(shared, &user, &body);
            xml_response(status, text)
        }
        (
            _,
            "/owa"
            | "/ews/exchange.asmx"
            | "/autodiscover/autodiscover.xml"
            | "/autodiscover/autodiscover.svc",
        ) => plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        _ => plain(StatusCode::NOT_FOUND, "not found"),
    }
}

/// One authenticated EWS request: counted, then delayed, throttled or answered.
async fn ews(shared: &Shared, user: &str, body: &[u8]) -> HttpResponse {
    let text = String::from_utf8_lossy(body);
    let envelope = xml::parse(&text);
    let operation = envelope
        .as_ref()
        .ok()
        .and_then(soap::operation_name)
        .unwrap_or_default()
        .to_string();
    *lock(&shared.counts).entry(operation).or_default() += 1;

    let delay = shared.faults().delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }

    {
        let mut faults = shared.faults();
        if faults.throttle > 0 {
            faults.throttle -= 1;
            let status = StatusCode::from_u16(faults.throttle_status)
                .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let mut response = plain(status, "Too many requests; retry later.");
            if let Ok(value) = HeaderValue::from_str(&faults.throttle_retry_after.to_string()) {
                response.headers_mut().insert(RETRY_AFTER, value);
            }
            return response;
        }
        if faults.busy > 0 {
            faults.busy -= 1;
            let backoff = faults.busy_backoff_ms;
            return xml_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                soap::server_busy(backoff),
            );
        }
    }

    let (status, text) = match envelope {
        Ok(envelope) => soap::handle(shared, user, &envelope),
        Err(e) => soap::schema_fault(&format!("The request is not well-formed XML: {e}")),
    };
    xml_response(status, text)
}

/// The mailbox the request is authenticated as, or the 401 to answer (boxed: a response
/// is much larger than an address).
fn authenticate(
    shared: &Shared,
    connection: &Mutex<ConnectionAuth>,
    headers: &HeaderMap,
) -> Result<String, Box<HttpResponse>> {
    let offers_ntlm = shared.auth.contains(&AuthScheme::Ntlm);
    let Some(authorization) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        if let ConnectionAuth::Authenticated(user) = &*lock(connection) {
            return Ok(user.clone());
        }
        return Err(Box::new(unauthorized(shared, None)));
    };
    let (scheme, credentials) = authorization.split_once(' ').unwrap_or((authorization, ""));
    let credentials = credentials.trim();

    match scheme.to_ascii_lowercase().as_str() {
        "basic" if shared.auth.contains(&AuthScheme::Basic) => {
            let Ok(bytes) = STANDARD.decode(credentials) else {
                return Err(Box::new(unauthorized(shared, None)));
            };
            // RFC 7617 leaves the charset open: clients send UTF-8 or Latin-1 (Python's
            // requests does), and IIS reads the ANSI code page, so both are tried.
            let mut readings = Vec::new();
            if let Ok(utf8) = String::from_utf8(bytes.clone()) {
                readings.push(utf8);
            }
            readings.push(bytes.iter().map(|&b| b as char).collect());
            let store = shared.store();
            for reading in &readings {
                let Some((login, password)) = reading.split_once(':') else {
                    continue;
                };
                if let Some(email) = store.user_for_login(login)
                    && store.users[&email].password == password
                {
                    return Ok(email);
                }
            }
            Err(Box::new(unauthorized(shared, None)))
        }
        "ntlm" | "negotiate" if offers_ntlm => {
            let Ok(token) = STANDARD.decode(credentials) else {
                return Err(Box::new(unauthorized(shared, None)));
            };
            match ntlm::message_type(&token) {
                Some(1) => {
                    let mut challenge = [0u8; 8];
                    if getrandom::fill(&mut challenge).is_err() {
                        return Err(Box::new(plain(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "no randomness",
                        )));
                    }
                    *lock(connection) = ConnectionAuth::Challenged(challenge);
                    let message =
                        ntlm::challenge_message(&token, challenge, &shared.names, filetime_now());
                    let header = format!("{} {}", scheme, STANDARD.encode(message));
                    Err(Box::new(unauthorized(shared, Some(header))))
                }
                Some(3) => {
                    let state = std::mem::take(&mut *lock(connection));
                    let ConnectionAuth::Challenged(challenge) = state else {
                        return Err(Box::new(unauthorized(shared, None)));
                    };
                    let Some(message) = ntlm::parse_authenticate(&token) else {
                        return Err(Box::new(unauthorized(shared, None)));
                    };
                    let store = shared.store();
                    let email = store.user_for_login(&message.user);
                    match email {
                        Some(email)
                            if message.verify(&store.users[&email].password, &challenge) =>
                        {
                            *lock(connection) = ConnectionAuth::Authenticated(email.clone());
                            Ok(email)
                        }
                        _ => Err(Box::new(unauthorized(shared, None))),
                    }
                }
                _ => Err(Box::new(unauthorized(shared, None))),
            }
        }
        "bearer" => {
            let accepted = shared
                .auth
                .iter()
                .any(|a| matches!(a, AuthScheme::Bearer(token) if token == credentials));
            if !accepted {
                return Err(Box::new(unauthorized(shared, None)));
            }
            let store = shared.store();
            let anchor = headers
                .get("x-anchormailbox")
                .and_then(|v| v.to_str().ok())
                .and_then(|a| store.user_for_login(a));
            match anchor {
                Some(email) => Ok(email),
                None if store.users.len() == 1 => {
                    Ok(store.users.keys().next().cloned().unwrap_or_default())
                }
                None => Err(Box::new(unauthorized(shared, None))),
            }
        }
        _ => Err(Box::new(unauthorized(shared, None))),
    }
}

/// 401 with one `WWW-Authenticate` per offered scheme, or only the NTLM challenge.
fn unauthorized(shared: &Shared, ntlm_challenge: Option<String>) -> HttpResponse {
    let mut response = html(
        StatusCode::UNAUTHORIZED,
        "<html><body>401 - Unauthorized: Access is denied due to invalid credentials.</body></html>",
    );
    let values: Vec<String> = match ntlm_challenge {
        Some(challenge) => vec![challenge],
        None => shared
            .auth
            .iter()
            .map(|scheme| match scheme {
                AuthScheme::Basic => "Basic realm=\"127.0.0.1\"".to_string(),
                AuthScheme::Ntlm => "NTLM".to_string(),
                AuthScheme::Bearer(_) => {
                    "Bearer client_id=\"00000002-0000-0ff1-ce00-000000000000\", error=\"invalid_token\""
                        .to_string()
                }
            })
            .collect(),
    };
    for value in values {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().append(WWW_AUTHENTICATE, value);
        }
    }
    response
}

/// Now as a Windows FILETIME (100 ns since 1601), for the NTLM timestamp.
fn filetime_now() -> u64 {
    let since_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (since_unix.as_nanos() / 100) as u64 + 116_444_736_000_000_000
}

fn plain(status: StatusCode, text: &str) -> HttpResponse {
    with_type(status, text.to_string(), "text/plain; charset=utf-8")
}

fn html(status: StatusCode, text: &str) -> HttpResponse {
    with_type(status, text.to_string(), "text/html; charset=utf-8")
}

fn xml_response(status: StatusCode, text: String) -> HttpResponse {
    with_type(status, text, "text/xml; charset=utf-8")
}

fn with_type(status: StatusCode, text: String, content_type: &'static str) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
