//! Logging in and out: the emailed link, its single use and expiry, the terms, the
//! login form's CSRF cookie, rate limits, cookies' flags, and pages that need a session.

use axum::http::StatusCode;

use crate::harness::{Client, Portal};

#[tokio::test]
async fn the_login_page_sets_its_csrf_cookie_and_labels_its_fields() {
    let portal = Portal::new().await;
    let page = portal.get(&Client::default(), "/login").await;
    page.assert_ok();
    let cookie = page.cookie("mailmove_login_csrf").expect("a CSRF cookie");
    assert_eq!(
        page.csrf(),
        cookie,
        "double submit: the form carries the cookie's token"
    );
    let set = page.set_cookies().join("\n");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "plain HTTP on loopback: {set}");
    assert!(
        page.body
            .contains(r#"<label for="email">Contact email</label>"#)
    );
    assert!(
        page.body.contains(
            r#"<label for="terms">I accept the <a href="/terms">terms of use</a></label>"#
        )
    );
    assert!(page.body.contains("Email me a login link"));
    for header in [
        "content-security-policy",
        "x-frame-options",
        "referrer-policy",
    ] {
        assert!(page.headers.contains_key(header), "{header}");
    }
    assert_eq!(page.headers["cache-control"], "no-store");
    portal.get(&Client::default(), "/terms").await.assert_ok();
}

#[tokio::test]
async fn an_emailed_link_opens_a_session_once() {
    let portal = Portal::new().await;
    let mut client = Client::default();
    let sent = portal.request_link(&mut client, "Ann@Example.com").await;
    sent.assert_ok();
    assert!(sent.body.contains("Check your email"));
    assert!(sent.body.contains("ann@example.com"));
    let mails = portal.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, "ann@example.com");
    assert!(mails[0].body.contains("15 minutes"));
    let link = portal.last_link("ann@example.com");
    let token = link.strip_prefix("/login/").unwrap();
    assert_eq!(token.len(), 43, "256 bits in URL-safe base64");

    // Opening the link (as a mail scanner would, any number of times) uses nothing up.
    for _ in 0..2 {
        let page = portal.get(&Client::default(), &link).await;
        page.assert_ok();
        assert!(page.body.contains("ann@example.com"), "{}", page.body);
        assert!(page.cookie("mailmove_session").is_none());
    }
    // The button without the page's CSRF token does nothing either.
    let forged = portal.post(&Client::default(), &link, &[]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.body);
    assert!(forged.cookie("mailmove_session").is_none());

    let opened = portal.open_link(&mut client, &link).await;
    assert_eq!(opened.status, StatusCode::SEE_OTHER);
    assert_eq!(opened.location(), "/migrations");
    let session = opened.cookie("mailmove_session").expect("a session cookie");
    assert_ne!(session, token);
    let set = opened.set_cookies().join("\n");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax"),
        "{set}"
    );
    client.keep_cookies(&opened);
    let home = portal.get(&client, "/migrations").await;
    home.assert_ok();
    assert!(home.body.contains("My Migrations"));
    assert!(home.body.contains("ann@example.com"));
    assert!(home.body.contains("Start a new migration"));

    // The same link again, from anywhere: refused, and says why.
    let again = portal.get(&Client::default(), &link).await;
    assert_eq!(again.status, StatusCode::GONE);
    assert!(again.body.contains("already used"), "{}", again.body);
    assert!(again.cookie("mailmove_session").is_none());
    let pressed = portal.open_link(&mut Client::default(), &link).await;
    assert_eq!(pressed.status, StatusCode::GONE);
}

#[tokio::test]
async fn an_expired_link_is_refused() {
    let portal = Portal::with(|config| config.login_link_seconds = 0).await;
    let mut client = Client::default();
    portal
        .request_link(&mut client, "ann@example.com")
        .await
        .assert_ok();
    let link = portal.last_link("ann@example.com");
    let answer = portal.get(&client, &link).await;
    assert_eq!(answer.status, StatusCode::GONE);
    assert!(answer.body.contains("expired"), "{}", answer.body);
    assert!(answer.cookie("mailmove_session").is_none());
    let unknown = portal
        .get(
            &client,
            "/login/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(unknown.body.contains("not valid"));
}

#[tokio::test]
async fn the_terms_and_a_real_address_are_required() {
    let portal = Portal::new().await;
    let mut client = Client::default();
    let form = portal.get(&client, "/login").await;
    client.keep_cookies(&form);
    client.csrf = form.csrf();
    let no_terms = portal
        .post(&client, "/login", &[("email", "ann@example.com")])
        .await;
    assert_eq!(no_terms.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        no_terms.body.contains("Accept the terms"),
        "{}",
        no_terms.body
    );
    assert!(
        no_terms.body.contains(r#"value="ann@example.com""#),
        "the email stays typed"
    );
    let bad = portal
        .post(
            &client,
            "/login",
            &[("email", "not an email"), ("terms", "accepted")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("Enter your email address"));
    assert!(portal.mails().is_empty());
}

#[tokio::test]
async fn a_login_request_without_its_csrf_token_is_refused() {
    let portal = Portal::new().await;
    let fields = [("email", "ann@example.com"), ("terms", "accepted")];
    // No cookie, no token.
    let bare = portal.post_raw(&Client::default(), "/login", &fields).await;
    assert_eq!(bare.status, StatusCode::FORBIDDEN);
    assert!(bare.body.contains("This form has expired"));
    // The cookie, but another token (a page of another site cannot read the cookie).
    let mut client = Client::default();
    let form = portal.get(&client, "/login").await;
    client.keep_cookies(&form);
    let forged = portal
        .post_raw(
            &client,
            "/login",
            &[("csrf", "forged-token"), fields[0], fields[1]],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let missing = portal.post_raw(&client, "/login", &fields).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    assert!(portal.mails().is_empty(), "no email for a refused request");
}

#[tokio::test]
async fn login_requests_are_limited_per_email_and_per_address() {
    let portal = Portal::with(|config| {
        config.logins_per_email = 5;
        config.logins_per_address = 8;
    })
    .await;
    let mut client = Client::default();
    for _ in 0..5 {
        portal
            .request_link(&mut client, "ann@example.com")
            .await
            .assert_ok();
    }
    let refused = portal.request_link(&mut client, "ANN@example.com").await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        refused.body.contains("Too many login requests"),
        "{}",
        refused.body
    );
    assert!(refused.body.contains("Wait 15 minutes"));
    assert_eq!(portal.mails().len(), 5);

    // Another address from the same network still gets through, up to the network's
    // limit (the refused request counted against the network too).
    for n in 0..2 {
        portal
            .request_link(&mut client, &format!("user{n}@example.com"))
            .await
            .assert_ok();
    }
    let network = portal.request_link(&mut client, "zed@example.com").await;
    assert_eq!(network.status, StatusCode::TOO_MANY_REQUESTS);

    // Another client address is counted apart.
    let mut elsewhere = Client {
        address: Some("192.0.2.7:40000".parse().unwrap()),
        ..Client::default()
    };
    portal
        .request_link(&mut elsewhere, "zed@example.com")
        .await
        .assert_ok();
}

#[tokio::test]
async fn pages_need_a_session_and_logging_out_ends_it() {
    let portal = Portal::new().await;
    let anonymous = Client::default();
    for path in [
        "/",
        "/migrations",
        "/migrations/new",
        "/projects/1",
        "/projects/1/events",
    ] {
        let answer = portal.get(&anonymous, path).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(answer.location(), "/login", "{path}");
    }
    let client = portal.login("ann@example.com").await;
    assert_eq!(portal.get(&client, "/").await.location(), "/migrations");
    assert_eq!(
        portal.get(&client, "/login").await.location(),
        "/migrations"
    );

    let mut after = client.clone();
    let out = portal.post(&client, "/logout", &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.location(), "/login");
    assert!(
        out.set_cookies()
            .iter()
            .any(|c| c.starts_with("mailmove_session=;") && c.contains("Max-Age=0"))
    );
    // Even a browser that kept the old cookie is logged out: the session is gone.
    let stale = portal.get(&client, "/migrations").await;
    assert_eq!(stale.location(), "/login");
    after.keep_cookies(&out);
    assert_eq!(portal.get(&after, "/migrations").await.location(), "/login");
}

#[tokio::test]
async fn cookies_are_secure_beyond_loopback() {
    let portal = Portal::with(|config| config.secure_cookies = true).await;
    let mut client = Client::default();
    portal
        .request_link(&mut client, "ann@example.com")
        .await
        .assert_ok();
    assert!(
        client
            .cookies
            .iter()
            .any(|(k, _)| k == "mailmove_login_csrf")
    );
    let opened = portal
        .open_link(&mut client, &portal.last_link("ann@example.com"))
        .await;
    let session = opened
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("mailmove_session="))
        .unwrap();
    assert!(session.contains("; Secure"), "{session}");
    let config = mailmove_portal::PortalConfig::for_listen("0.0.0.0:8080".parse().unwrap());
    assert!(config.secure_cookies);
    assert_eq!(config.public_url, "http://localhost:8080");
    let config = config.with_public_url("https://migrate.example.com/");
    assert_eq!(config.public_url, "https://migrate.example.com");
}

#[tokio::test]
async fn someone_elses_requests_cannot_lock_a_victim_out() {
    let portal = Portal::with(|config| config.logins_per_email = 5).await;
    // An attacker asks for the victim's login links until the limit, spelling the
    // address every way (one key: the validated, lower-cased address's hash).
    let mut attacker = Client::at("198.51.100.66:40000");
    for spelling in [
        "victim@example.com",
        "VICTIM@example.com",
        " Victim@Example.com ",
        "victim@EXAMPLE.COM",
        "victim@example.com",
    ] {
        portal
            .request_link(&mut attacker, spelling)
            .await
            .assert_ok();
    }
    let refused = portal
        .request_link(&mut attacker, "victim@example.com")
        .await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    // The victim, from elsewhere, is told no new link is sent now...
    let mut victim = Client::at("203.0.113.5:50000");
    let asked = portal.request_link(&mut victim, "victim@example.com").await;
    assert_eq!(asked.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        asked.body.contains("the links already sent still work"),
        "{}",
        asked.body
    );
    // ...and every link the attacker's requests sent went to the victim's inbox, where
    // each one still works: sending is limited, logging in is not.
    let mails = portal.mails();
    assert_eq!(mails.len(), 5);
    assert!(mails.iter().all(|m| m.to == "victim@example.com"));
    let opened = portal
        .open_link(&mut victim, &portal.last_link("victim@example.com"))
        .await;
    assert_eq!(opened.status, StatusCode::SEE_OTHER, "{}", opened.body);
    victim.keep_cookies(&opened);
    portal.get(&victim, "/migrations").await.assert_ok();
}

#[tokio::test]
async fn a_string_that_is_no_email_counts_against_its_sender_only() {
    let portal = Portal::with(|config| {
        config.logins_per_email = 2;
        config.logins_per_address = 4;
    })
    .await;
    let mut client = Client::default();
    let long = format!("{}@example.com", "a".repeat(10_000));
    for _ in 0..4 {
        let answer = portal.request_link(&mut client, &long).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let refused = portal.request_link(&mut client, &long).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    // The sender's limit, not anyone's email's: another client is served.
    portal
        .request_link(&mut Client::at("192.0.2.9:1000"), "ann@example.com")
        .await
        .assert_ok();
}

#[tokio::test]
async fn portal_processes_sharing_a_database_share_the_login_limits() {
    let first = Portal::with(|config| config.logins_per_email = 4).await;
    let second = first.sibling();
    let mut client = Client::default();
    for portal in [&first, &second, &first, &second] {
        portal
            .request_link(&mut client, "ann@example.com")
            .await
            .assert_ok();
    }
    for portal in [&first, &second] {
        let refused = portal.request_link(&mut client, "ann@example.com").await;
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    }
}

#[tokio::test]
async fn forwarded_addresses_are_believed_from_trusted_proxies_only() {
    let limited = |config: &mut mailmove_portal::PortalConfig| {
        config.logins_per_address = 2;
        config.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
    };
    let portal = Portal::with(limited).await;
    // Behind the trusted proxy, each client is counted by the address the proxy saw.
    let behind = |client: &str| Client {
        address: Some("10.0.0.2:443".parse().unwrap()),
        forwarded_for: Some(client.to_string()),
        ..Client::default()
    };
    for n in 0..2 {
        portal
            .request_link(&mut behind("198.51.100.1"), &format!("a{n}@example.com"))
            .await
            .assert_ok();
    }
    let refused = portal
        .request_link(&mut behind("198.51.100.1"), "a9@example.com")
        .await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    portal
        .request_link(&mut behind("198.51.100.2"), "b@example.com")
        .await
        .assert_ok();
    // A client that writes the header itself, left of what the proxy adds, is still
    // counted by the address the proxy saw.
    let refused = portal
        .request_link(&mut behind("6.6.6.6, 198.51.100.1"), "c@example.com")
        .await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    // A client talking to the portal directly cannot escape its limit with the header.
    let direct = |forwarded: &str| Client {
        address: Some("203.0.113.9:5000".parse().unwrap()),
        forwarded_for: Some(forwarded.to_string()),
        ..Client::default()
    };
    for (n, forwarded) in ["1.1.1.1", "2.2.2.2"].iter().enumerate() {
        portal
            .request_link(&mut direct(forwarded), &format!("d{n}@example.com"))
            .await
            .assert_ok();
    }
    let refused = portal
        .request_link(&mut direct("3.3.3.3"), "d9@example.com")
        .await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
}
