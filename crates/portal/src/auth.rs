//! Who is asking, and may they: random tokens and their stored hashes, the session
//! cookie, the CSRF check that every state-changing request passes before any handler
//! runs, and the rate limit on login requests.
//!
//! CSRF: a session carries a random token, rendered into every form as the hidden field
//! `csrf` and into htmx requests as the `X-CSRF-Token` header. Before a session exists
//! (the login form) the same check runs against a random cookie set with the form (the
//! double-submit pattern), so a forged login request is refused too.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

use crate::AppState;
use crate::routes::PageError;

pub(crate) const SESSION_COOKIE: &str = "mailmove_session";
pub(crate) const LOGIN_CSRF_COOKIE: &str = "mailmove_login_csrf";
pub(crate) const CSRF_FIELD: &str = "csrf";
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

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

/// The client's IP address (the TCP peer), when the server recorded it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientAddress(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip()),
        ))
    }
}

/// Finds the session named by the cookie and puts it into the request.
pub(crate) async fn load_session(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Some(id) = cookie(request.headers(), SESSION_COOKIE) {
        let hash = token_hash(&id);
        match state.db().session(&hash).await {
            Ok(Some(record)) => {
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

/// Login requests counted per key (an email, a client address) in a sliding window.
/// Kept in memory: several portal processes each apply the limit.
#[derive(Default)]
pub(crate) struct RateLimiter {
    hits: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl RateLimiter {
    /// Records one request for every key and returns true if each key is within its
    /// limit; a refused request is not counted.
    pub fn allow(&self, keys: &[(String, usize)], window: Duration) -> bool {
        let now = Instant::now();
        // A poisoned lock only means another request panicked mid-count: keep counting.
        let mut hits = self.hits.lock().unwrap_or_else(|e| e.into_inner());
        for (key, _) in keys {
            if let Some(times) = hits.get_mut(key) {
                while times
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= window)
                {
                    times.pop_front();
                }
            }
        }
        let within = keys
            .iter()
            .all(|(key, limit)| hits.get(key).map_or(0, VecDeque::len) < *limit);
        if within {
            for (key, _) in keys {
                hits.entry(key.clone()).or_default().push_back(now);
            }
        }
        within
    }

    /// Forgets keys with no request in the window, so the map stays small.
    pub fn prune(&self, window: Duration) {
        let now = Instant::now();
        let mut hits = self.hits.lock().unwrap_or_else(|e| e.into_inner());
        hits.retain(|_, times| {
            times
                .back()
                .is_some_and(|t| now.duration_since(*t) < window)
        });
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
    fn the_limiter_counts_each_key_in_its_window() {
        let limiter = RateLimiter::default();
        let window = Duration::from_secs(60);
        let keys = |email: &str| vec![(format!("email:{email}"), 2), ("ip:1".to_string(), 3)];
        assert!(limiter.allow(&keys("a"), window));
        assert!(limiter.allow(&keys("a"), window));
        assert!(!limiter.allow(&keys("a"), window), "email limit");
        assert!(limiter.allow(&keys("b"), window));
        assert!(!limiter.allow(&keys("c"), window), "address limit");
        assert!(limiter.allow(&keys("a"), Duration::ZERO), "window passed");
        limiter.prune(Duration::ZERO);
        assert!(limiter.hits.lock().unwrap().is_empty());
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
    }
}
