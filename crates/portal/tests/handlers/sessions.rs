//! How sessions end: after an idle time as well as at their expiry, all at once with
//! "Log out everywhere", and with them the live-progress streams they opened; and how
//! many streams one session may hold.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use mailmove_store::now;

use crate::harness::{Client, Portal};
use crate::projects::read_stream;

const IDLE: i64 = 3600;

async fn portal() -> Portal {
    Portal::with(|config| {
        config.session_idle_seconds = IDLE;
        config.streams_per_session = 2;
    })
    .await
}

#[tokio::test]
async fn a_session_unused_for_the_idle_time_ends_and_use_keeps_it_alive() {
    let portal = portal().await;
    let idle = portal.login("ann@example.com").await;
    let used = portal.login("ann@example.com").await;
    let db = portal.db();
    // Last used just within the idle time: a page moves the time on.
    db.touch_session(&used.session_hash(), now() - IDLE + 120)
        .await
        .unwrap();
    portal.get(&used, "/migrations").await.assert_ok();
    let seen = db
        .session(&used.session_hash(), IDLE)
        .await
        .unwrap()
        .unwrap();
    assert!(seen.last_seen_at >= now() - 5, "{seen:?}");
    // Last used longer ago than the idle time, long before its expiry: logged out.
    db.touch_session(&idle.session_hash(), now() - IDLE - 1)
        .await
        .unwrap();
    let page = portal.get(&idle, "/migrations").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/login");
    let post = portal.post(&idle, "/migrations", &[("name", "x")]).await;
    assert_eq!(
        post.status,
        StatusCode::FORBIDDEN,
        "no session: no CSRF token"
    );
    portal.get(&used, "/migrations").await.assert_ok();
}

#[tokio::test]
async fn log_out_everywhere_ends_every_session_of_the_user() {
    let portal = portal().await;
    let laptop = portal.login("ann@example.com").await;
    let phone = portal.login("ann@example.com").await;
    let bob = portal.login("bob@example.com").await;
    let page = portal.get(&laptop, "/migrations").await;
    page.assert_ok();
    assert!(
        page.body.contains(r#"action="/logout/everywhere""#)
            && page.body.contains(">Log out everywhere</button>"),
        "{}",
        page.body
    );
    let out = portal.post(&phone, "/logout/everywhere", &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.location(), "/login");
    assert!(
        out.set_cookies()
            .iter()
            .any(|c| c.starts_with("mailmove_session=;") && c.contains("Max-Age=0"))
    );
    for client in [&laptop, &phone] {
        assert_eq!(portal.get(client, "/migrations").await.location(), "/login");
    }
    portal.get(&bob, "/migrations").await.assert_ok();
    // Without the session's CSRF token the request is refused and nothing ends.
    let forged = Client {
        csrf: String::new(),
        ..bob.clone()
    };
    let refused = portal.post(&forged, "/logout/everywhere", &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    portal.get(&bob, "/migrations").await.assert_ok();
}

/// Opens the live progress of project `id`; the answer's status and its body.
async fn open_stream(portal: &Portal, client: &Client, id: i64) -> (StatusCode, Body) {
    let request = Request::get(format!("/projects/{id}/events"))
        .body(Body::empty())
        .unwrap();
    let response = portal.raw(client, request).await;
    (response.status(), response.into_body())
}

/// Reads `body` until it ends; false if it is still open after `limit`.
async fn ends_within(body: &mut Body, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(None) => return true,
            Ok(Some(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// A signed-in client with a project, and its stream open and flowing.
async fn streaming(portal: &Portal) -> (Client, i64, Body) {
    let client = portal.login("ann@example.com").await;
    let id = portal.create_project(&client, "Acme").await;
    let (status, mut body) = open_stream(portal, &client, id).await;
    assert_eq!(status, StatusCode::OK);
    let mut text = String::new();
    read_stream(&mut body, &mut text, Duration::from_secs(10), |t| {
        t.contains("event: summary")
    })
    .await;
    assert!(text.contains("event: summary"), "{text}");
    (client, id, body)
}

#[tokio::test]
async fn a_stream_ends_when_its_session_is_logged_out() {
    let portal = portal().await;
    let (client, _, mut body) = streaming(&portal).await;
    portal.post(&client, "/logout", &[]).await;
    assert!(ends_within(&mut body, Duration::from_secs(10)).await);
}

#[tokio::test]
async fn a_stream_ends_when_its_user_logs_out_everywhere() {
    let portal = portal().await;
    let (_, _, mut body) = streaming(&portal).await;
    let elsewhere = portal.login("ann@example.com").await;
    portal.post(&elsewhere, "/logout/everywhere", &[]).await;
    assert!(ends_within(&mut body, Duration::from_secs(10)).await);
}

#[tokio::test]
async fn a_stream_does_not_keep_its_session_alive_and_ends_when_it_goes_idle() {
    let portal = portal().await;
    let (client, _, mut body) = streaming(&portal).await;
    portal
        .db()
        .touch_session(&client.session_hash(), now() - IDLE - 1)
        .await
        .unwrap();
    assert!(ends_within(&mut body, Duration::from_secs(10)).await);
    assert_eq!(
        portal.get(&client, "/migrations").await.location(),
        "/login"
    );
}

#[tokio::test]
async fn a_session_holds_a_few_streams_at_once() {
    let portal = portal().await;
    let (client, id, first) = streaming(&portal).await;
    let (status, second) = open_stream(&portal, &client, id).await;
    assert_eq!(status, StatusCode::OK);
    let (status, third) = open_stream(&portal, &client, id).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let refused = String::from_utf8_lossy(&third.collect().await.unwrap().to_bytes()).into_owned();
    assert!(refused.contains("Too many pages open"), "{refused}");
    // Another session of the same user has its own.
    let other = portal.login("ann@example.com").await;
    assert_eq!(open_stream(&portal, &other, id).await.0, StatusCode::OK);
    // A closed stream (the page left) gives its place back.
    drop(first);
    assert_eq!(open_stream(&portal, &client, id).await.0, StatusCode::OK);
    drop(second);
}
