//! Who is asking, and may they: random tokens and their stored hashes, the session
//! cookie (ended by its lifetime or an idle time, whichever comes first), the CSRF check
//! that every state-changing request passes before any handler runs, the client's
//! address (from `X-Forwarded-For` only when the peer is a trusted proxy), and the rate
//! limit on login requests, counted in the database.
//!
//! CSRF: a session carries a random token, rendered into every form as the hidden field
//! `csrf` and into htmx requests as the `X-CSRF-Token` header. Before a session exists
//! (the login form) the same check runs against a random cookie set with the form (the
//! double-submit pattern), so a forged login request is refused too.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Multipart, Request, State};
use axum::http::header::{CONTENT_TYPE, COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use mailmove_net::Cidr;
use mailmove_store::{StoreError, now};

use crate::AppState;
use crate::routes::PageError;

pub(crate) const SESSION_COOKIE: &str = "mailmove_session";
pub(crate) const LOGIN_CSRF_COOKIE: &str = "mailmove_login_csrf";
pub(crate) const CSRF_FIELD: &str = "csrf";
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";
const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// 256 random bits, URL-safe base64 (43 characters).
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    // The operating system's generator failing leaves no safe way to go on.
    getrandom::fill(&mut bytes).expect("the operating system's random generator");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What the store keeps instead of a token: its SHA-256, in hex.
pub(crate) fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A signed-in user, put into the request by [`load_session`].
#[derive(Clone, Debug)]
pub(crate) struct Session {
    pub user_id: i64,
    pub email: String,
    pub csrf: String,
    /// The hash the store knows this session by (for logging out).
    pub hash: String,
}

/// Handlers that need a signed-in user take this; without one they redirect to login.
#[derive(Clone, Debug)]
pub(crate) struct CurrentUser(pub Session);

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Session>() {
            Some(session) => Ok(CurrentUser(session.clone())),
            None => Err(Redirect::to("/login").into_response()),
        }
    }
}

/// The session of the request, if any (pages that look different when signed in).
#[derive(Clone, Debug)]
pub(crate) struct MaybeUser(pub Option<Session>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeUser {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(MaybeUser(parts.extensions.get::<Session>().cloned()))
    }
}

/// The client's IP address: the TCP peer, or, when the peer is one of the operator's
/// trusted proxies, the address that proxy says it forwarded for. `None` when the server
/// recorded no peer (the handler tests).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientAddress(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip());
        Ok(ClientAddress(peer.map(|peer| {
            client_address(peer, &parts.headers, &state.config().trusted_proxies)
        })))
    }
}

/// Walks `X-Forwarded-For` from the right (each proxy appends the address it heard
/// from) while the hop is a trusted proxy, and stops at the first address that is not
/// one: addresses left of it were written by the client and prove nothing. A peer that
/// is not a trusted proxy is the client, whatever it sends.
pub(crate) fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|cidr| cidr.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            // Garbage from the client's side: the last good hop is the client.
            break;
        };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    client
}

/// How often a session's use is written down, at most (its idle time moves in steps of
/// this, or of a quarter of the idle time if that is shorter).
const TOUCH_EVERY_SECONDS: i64 = 60;

/// Finds the session named by the cookie and puts it into the request, unless it has
/// expired or gone idle.
pub(crate) async fn load_session(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Some(id) = cookie(request.headers(), SESSION_COOKIE) {
        let hash = token_hash(&id);
        let config = state.config();
        match state.db().session(&hash, config.session_idle_seconds).await {
            Ok(Some(record)) => {
                // A live-progress stream is no sign of the person: it does not keep the
                // session from going idle. Other requests move the idle time, at most
                // once a minute (one write per minute, not per request), and often
                // enough for a short idle time.
                let activity = !request.uri().path().ends_with("/events");
                let every = TOUCH_EVERY_SECONDS.min(config.session_idle_seconds / 4);
                if activity
                    && now() - record.last_seen_at >= every
                    && let Err(e) = state.db().touch_session(&hash, now()).await
                {
                    return PageError::Store(e).into_response();
                }
                request.extensions_mut().insert(Session {
                    user_id: record.user_id,
                    email: record.email,
                    csrf: record.csrf_token,
                    hash,
                });
            }
            Ok(None) => {}
            Err(e) => return PageError::Store(e).into_response(),
        }
    }
    next.run(request).await
}

/// Refuses every request that may change something (anything but GET, HEAD and
/// OPTIONS) unless it carries the CSRF token of its session, or, without a session,
/// the token of the login form's cookie.
pub(crate) async fn require_csrf(request: Request, next: Next) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    let expected = match request.extensions().get::<Session>() {
        Some(session) => Some(session.csrf.clone()),
        None => cookie(request.headers(), LOGIN_CSRF_COOKIE),
    };
    let Some(expected) = expected else {
        return PageError::Csrf.into_response();
    };
    let (parts, body) = request.into_parts();
    let header = parts
        .headers
        .get(CSRF_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    let (presented, body) = match header {
        Some(token) => (Some(token), body),
        None => {
            let bytes = match axum::body::to_bytes(body, crate::body_limit(parts.uri.path())).await
            {
                Ok(bytes) => bytes,
                Err(_) => return PageError::TooLarge.into_response(),
            };
            (
                token_in_body(&parts.headers, &bytes).await,
                Body::from(bytes),
            )
        }
    };
    match presented {
        Some(token) if same(&token, &expected) => next.run(Request::from_parts(parts, body)).await,
        _ => PageError::Csrf.into_response(),
    }
}

/// The `csrf` field of a URL-encoded or multipart form body.
async fn token_in_body(headers: &HeaderMap, bytes: &Bytes) -> Option<String> {
    let content_type = headers.get(CONTENT_TYPE)?.to_str().ok()?.to_string();
    if content_type.starts_with("application/x-www-form-urlencoded") {
        return url::form_urlencoded::parse(bytes)
            .find(|(name, _)| name == CSRF_FIELD)
            .map(|(_, value)| value.into_owned());
    }
    if content_type.starts_with("multipart/form-data") {
        let request = Request::builder()
            .header(CONTENT_TYPE, content_type)
            .body(Body::from(bytes.clone()))
            .ok()?;
        let mut multipart = Multipart::from_request(request, &()).await.ok()?;
        while let Ok(Some(field)) = multipart.next_field().await {
            if field.name() == Some(CSRF_FIELD) {
                return field.text().await.ok();
            }
        }
    }
    None
}

/// Compares two tokens in time that depends only on their lengths.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

/// The value of cookie `name` in the request's Cookie headers.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax (Strict would drop the cookie on the
/// first navigation from an emailed link), `Secure` when the portal is served over
/// HTTPS or beyond loopback. `max_age` 0 removes the cookie.
pub(crate) fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> HeaderValue {
    let text = format!(
        "{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{}",
        if secure { "; Secure" } else { "" }
    );
    // Names are constants and values are URL-safe base64: always a valid header.
    HeaderValue::from_str(&text).expect("a cookie of URL-safe characters")
}

/// Whether one more login link may be sent for `email` (validated and lower-cased; `None`
/// for a request that will send none) to a client at `address`. Each key is counted in the database, so every portal process
/// sharing it applies one limit, and each key is bounded in size: the email by its
/// SHA-256, the address as text (an IPv6 client by its /64, which one subscriber
/// usually holds whole). The address is counted first and the email only when the
/// address is within its limit. Only sending is limited: links already sent keep
/// working, so requests from someone else for a victim's email cannot lock the victim
/// out (they fill the victim's inbox with links that work).
pub(crate) async fn login_allowed(
    state: &AppState,
    email: Option<&str>,
    address: Option<IpAddr>,
) -> Result<bool, StoreError> {
    let config = state.config();
    let window = config.login_window.as_secs() as i64;
    let address = address.map_or_else(|| "unknown".to_string(), |ip| network_key(ip).to_string());
    let db = state.db();
    if db
        .count_login_request(&format!("address:{address}"), window)
        .await?
        > config.logins_per_address as u64
    {
        return Ok(false);
    }
    let Some(email) = email else {
        return Ok(true);
    };
    let email_key = format!("email:{}", token_hash(email));
    Ok(db.count_login_request(&email_key, window).await? <= config.logins_per_email as u64)
}

/// What a client address is counted under: IPv4 as it is, IPv6 by its /64.
fn network_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !(u128::MAX >> 64))),
        },
        v4 => v4,
    }
}

/// The answer to a refused login request.
pub(crate) fn too_many_requests() -> Response {
    PageError::TooManyRequests.into_response()
}

/// 303 to `location`, with cookies.
pub(crate) fn redirect_with_cookies(location: &str, cookies: Vec<HeaderValue>) -> Response {
    let mut response = Redirect::to(location).into_response();
    for value in cookies {
        response
            .headers_mut()
            .append(axum::http::header::SET_COOKIE, value);
    }
    *response.status_mut() = StatusCode::SEE_OTHER;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bits_and_hashed() {
        let token = random_token();
        assert_eq!(token.len(), 43);
        assert_eq!(URL_SAFE_NO_PAD.decode(&token).unwrap().len(), 32);
        assert_ne!(token, random_token());
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            COOKIE,
            HeaderValue::from_static("a=1; mailmove_session=xyz"),
        );
        headers.append(COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&headers, SESSION_COOKIE).as_deref(), Some("xyz"));
        assert_eq!(cookie(&headers, "b").as_deref(), Some("2"));
        assert_eq!(cookie(&headers, "c"), None);
        let set = set_cookie(SESSION_COOKIE, "v", 60, true);
        let set = set.to_str().unwrap();
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.contains("Secure"));
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        let proxies: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        let forwarded = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(X_FORWARDED_FOR, HeaderValue::from_str(value).unwrap());
            headers
        };
        let table = [
            // (peer, X-Forwarded-For, client)
            ("203.0.113.7", "198.51.100.1", "203.0.113.7"), // not a proxy: ignored
            ("10.0.0.2", "198.51.100.1", "198.51.100.1"),
            ("10.0.0.2", "6.6.6.6, 198.51.100.1", "198.51.100.1"), // forged left part
            ("10.0.0.2", "198.51.100.1, 10.0.0.9", "198.51.100.1"), // two proxies
            ("10.0.0.2", "garbage, 198.51.100.1", "198.51.100.1"),
            ("10.0.0.2", "198.51.100.1, garbage", "10.0.0.2"),
            ("10.0.0.2", "", "10.0.0.2"),
        ];
        for (peer, header, client) in table {
            assert_eq!(
                client_address(ip(peer), &forwarded(header), &proxies),
                ip(client),
                "{peer} {header}"
            );
        }
        assert_eq!(
            client_address(ip("10.0.0.2"), &forwarded("198.51.100.1"), &[]),
            ip("10.0.0.2"),
            "no trusted proxy: the header is never read"
        );
        assert_eq!(
            client_address(ip("10.0.0.2"), &HeaderMap::new(), &proxies),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_network() {
        let key = |text: &str| network_key(text.parse().unwrap()).to_string();
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2:bbbb::9"), "2001:db8:1:2::");
        assert_eq!(key("::ffff:192.0.2.1"), "192.0.2.1");
        assert_eq!(key("192.0.2.1"), "192.0.2.1");
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
    }
}
