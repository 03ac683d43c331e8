//! The OAuth 2.0 test servers proved with independent clients: the testkit's
//! `OidcProvider` (oidc-provider from npm) issues tokens through every grant mailmove
//! will use, and a private Dovecot validates them by introspection for SASL XOAUTH2
//! and OAUTHBEARER, which the testkit's own `Checker` speaks; a master user logs in
//! as a mailbox both ways administrators do.
//!
//! Needs node with `npm ci` run in crates/testkit/oidc (scripts/test does it), and
//! Dovecot (root).

use std::thread::sleep;
use std::time::{Duration, Instant};

use mailmove_testkit::oidc::{
    self, CONFIDENTIAL_CLIENT, DEVICE_CODE, JWT_CLIENT, OAuthError, OidcOptions, OidcProvider,
    PUBLIC_CLIENT, SERVICE_ACCOUNT,
};
use mailmove_testkit::{Checker, Dovecot, DovecotOAuth2, DovecotOptions, MasterUser, Sasl};
use serde_json::Value;

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";
const MAIL_SCOPE: &str = "openid offline_access https://mail.google.com/";

fn oauth_error(error: &anyhow::Error) -> &OAuthError {
    error
        .downcast_ref::<OAuthError>()
        .unwrap_or_else(|| panic!("not an OAuth error answer: {error:#}"))
}

/// A Dovecot that validates `provider`'s tokens, with `alice` and `bob` as mailboxes.
fn dovecot_for(provider: &OidcProvider, master: Option<MasterUser>) -> Dovecot {
    let dovecot = Dovecot::start(DovecotOptions {
        oauth2: Some(provider.dovecot_oauth2()),
        master_user: master,
        ..DovecotOptions::default()
    })
    .unwrap();
    dovecot.add_user(ALICE, "alice-password").unwrap();
    dovecot.add_user(BOB, "bob-password").unwrap();
    dovecot
}

fn xoauth2(user: &str, token: &str) -> Sasl {
    Sasl::XOAuth2 {
        user: user.to_string(),
        token: token.to_string(),
    }
}

fn oauthbearer(dovecot: &Dovecot, user: &str, token: &str) -> Sasl {
    Sasl::OAuthBearer {
        user: user.to_string(),
        host: dovecot.host().to_string(),
        port: dovecot.imap_port(),
        token: token.to_string(),
    }
}

fn logs_in(dovecot: &Dovecot, sasl: &Sasl) -> bool {
    match Checker::try_authenticate(dovecot.host(), dovecot.imap_port(), sasl).unwrap() {
        Ok(mut checker) => {
            // Really in: the mailbox is there to look at.
            assert!(checker.list().unwrap().iter().any(|f| f.name == "INBOX"));
            true
        }
        Err(_) => false,
    }
}

/// The JSON error challenge Dovecot sends before refusing an OAuth login.
fn refusal_status(dovecot: &Dovecot, sasl: &Sasl) -> Value {
    let refusal = Checker::try_authenticate(dovecot.host(), dovecot.imap_port(), sasl)
        .unwrap()
        .err()
        .unwrap_or_else(|| panic!("{} login was accepted", sasl.mechanism()));
    assert!(
        refusal.tagged.contains(" NO "),
        "refusal {}; log:\n{}",
        refusal.tagged,
        dovecot.log()
    );
    let challenge = refusal
        .challenges
        .first()
        .unwrap_or_else(|| panic!("no error challenge before {}", refusal.tagged));
    serde_json::from_slice(challenge).unwrap_or_else(|e| {
        panic!(
            "challenge {:?} is not JSON: {e}",
            String::from_utf8_lossy(challenge)
        )
    })
}

#[test]
fn discovery_is_served_over_https_and_http() {
    let provider = OidcProvider::start_default().unwrap();
    for endpoints in [provider.endpoints(), provider.http_endpoints()] {
        let document = provider.get(&endpoints.discovery).unwrap().json().unwrap();
        assert_eq!(document["issuer"], provider.issuer());
        let grants: Vec<&str> = document["grant_types_supported"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for grant in [
            "authorization_code",
            "refresh_token",
            "client_credentials",
            DEVICE_CODE,
            oidc::JWT_BEARER,
        ] {
            assert!(grants.contains(&grant), "{grant} missing from {grants:?}");
        }
        let jwks = provider.get(&endpoints.jwks).unwrap().json().unwrap();
        assert_eq!(jwks["keys"][0]["kty"], "RSA");
    }
    assert!(provider.endpoints().token.starts_with("https://127.0.0.1:"));
    assert!(
        provider
            .http_endpoints()
            .token
            .starts_with("http://127.0.0.1:")
    );
}

#[test]
fn client_credentials_with_a_secret_and_with_a_signed_assertion() {
    let provider = OidcProvider::start_default().unwrap();
    let token = provider
        .client_credentials_token("https://outlook.office365.com/.default")
        .unwrap();
    assert_eq!(token.token_type, "Bearer");
    assert_eq!(token.expires_in, 20);
    assert!(token.refresh_token.is_none());
    let claims = provider.introspect(&token.access_token).unwrap();
    assert_eq!(claims["active"], true);
    assert_eq!(claims["client_id"], CONFIDENTIAL_CLIENT);
    assert_eq!(claims["scope"], "https://outlook.office365.com/.default");

    // private_key_jwt (RFC 7523 §2.2): the client proves itself with an RS256 JWT.
    let token = provider
        .token_request(
            JWT_CLIENT,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "https://mail.google.com/"),
            ],
        )
        .unwrap();
    assert_eq!(
        provider.introspect(&token.access_token).unwrap()["client_id"],
        JWT_CLIENT
    );

    // A wrong secret is an invalid_client.
    let error = provider
        .token_request("nobody", &[("grant_type", "client_credentials")])
        .unwrap_err();
    assert_eq!(oauth_error(&error).error, "invalid_client");
}

#[test]
fn device_flow_waits_for_approval_and_honours_a_denial() {
    let provider = OidcProvider::start_default().unwrap();
    let device = provider
        .device_authorization(PUBLIC_CLIENT, MAIL_SCOPE)
        .unwrap();
    assert!(device.verification_uri.ends_with("/device"));
    let poll = || {
        provider.token_request(
            PUBLIC_CLIENT,
            &[
                ("grant_type", DEVICE_CODE),
                ("device_code", &device.device_code),
            ],
        )
    };
    assert_eq!(
        oauth_error(&poll().unwrap_err()).error,
        "authorization_pending"
    );
    provider
        .approve_device_code(&device.user_code, ALICE)
        .unwrap();
    let token = poll().unwrap();
    assert!(token.refresh_token.is_some());
    assert_eq!(token.scope.as_deref(), Some(MAIL_SCOPE));
    let id_token = oidc::jwt::decode_claims(token.id_token.as_deref().unwrap()).unwrap();
    assert_eq!(id_token["sub"], ALICE);
    assert_eq!(id_token["iss"], provider.issuer());
    // A device code is used once.
    assert_eq!(oauth_error(&poll().unwrap_err()).error, "invalid_grant");

    // The same through the pages a person would use.
    let device = provider
        .device_authorization(PUBLIC_CLIENT, MAIL_SCOPE)
        .unwrap();
    provider
        .sign_in_device(&device.user_code.to_lowercase(), BOB)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", provider.log()));
    let token = provider
        .token_request(
            PUBLIC_CLIENT,
            &[
                ("grant_type", DEVICE_CODE),
                ("device_code", &device.device_code),
            ],
        )
        .unwrap();
    assert_eq!(
        provider.introspect(&token.access_token).unwrap()["sub"],
        BOB
    );
    assert!(token.refresh_token.is_some());

    let denied = provider
        .device_authorization(PUBLIC_CLIENT, MAIL_SCOPE)
        .unwrap();
    provider.deny_device_code(&denied.user_code).unwrap();
    let error = provider
        .token_request(
            PUBLIC_CLIENT,
            &[
                ("grant_type", DEVICE_CODE),
                ("device_code", &denied.device_code),
            ],
        )
        .unwrap_err();
    assert_eq!(oauth_error(&error).error, "access_denied");
}

#[test]
fn the_authorization_code_flow_with_pkce_signs_in_through_the_pages() {
    let provider = OidcProvider::start_default().unwrap();
    for client in [PUBLIC_CLIENT, CONFIDENTIAL_CLIENT, JWT_CLIENT] {
        let token = provider
            .authorization_code_token(client, ALICE, MAIL_SCOPE)
            .unwrap_or_else(|e| panic!("{client}: {e:#}\n{}", provider.log()));
        assert!(token.refresh_token.is_some(), "{client}");
        let claims = provider.introspect(&token.access_token).unwrap();
        assert_eq!(claims["sub"], ALICE);
        assert_eq!(claims["client_id"], client);
        let id_token = oidc::jwt::decode_claims(token.id_token.as_deref().unwrap()).unwrap();
        assert_eq!(id_token["aud"], client);
    }

    // The pages a browser sees fetch nothing from elsewhere.
    let url = format!(
        "{}?client_id={PUBLIC_CLIENT}&response_type=code&scope=openid&redirect_uri=http%3A%2F%2F127.0.0.1%2Fcallback&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
        provider.endpoints().authorization
    );
    let response = provider.get(&url).unwrap();
    assert_eq!(response.status, 303);
    let location = response.header("location").unwrap();
    assert!(location.starts_with("/interaction/"), "{location}");
    let origin = format!("https://127.0.0.1:{}", provider.https_port());
    // The device page, and the sign-in page opened without its cookie (an error
    // page of ours).
    for path in ["/device", location] {
        let page = provider.get(&format!("{origin}{path}")).unwrap();
        let html = String::from_utf8_lossy(&page.body).replace(&origin, "");
        assert!(html.contains("<h1>"), "{html}");
        assert!(
            !html.contains("http") && !html.contains("@import") && !html.contains("<script"),
            "{html}"
        );
    }
    // A public client without PKCE is sent back with an error.
    let response = provider
        .get(&url.replace("&code_challenge=", "&x="))
        .unwrap();
    let location = response.header("location").unwrap();
    assert!(
        location.starts_with("http://127.0.0.1/callback?error=invalid_request"),
        "{location}"
    );
}

#[test]
fn a_device_flow_token_logs_in_over_xoauth2_and_oauthbearer() {
    let provider = OidcProvider::start_default().unwrap();
    let dovecot = dovecot_for(&provider, None);
    let token = provider.device_flow_token(ALICE, MAIL_SCOPE).unwrap();

    assert!(
        logs_in(&dovecot, &xoauth2(ALICE, &token.access_token)),
        "{}",
        dovecot.log()
    );
    assert!(logs_in(
        &dovecot,
        &oauthbearer(&dovecot, ALICE, &token.access_token)
    ));
    // Passwords still work beside tokens.
    Checker::connect(dovecot.host(), dovecot.imap_port(), ALICE, "alice-password").unwrap();
    // Alice's token does not open Bob's mailbox.
    assert!(!logs_in(&dovecot, &xoauth2(BOB, &token.access_token)));
}

#[test]
fn wrong_and_revoked_tokens_are_refused_with_an_error_challenge() {
    let provider = OidcProvider::start_default().unwrap();
    let dovecot = dovecot_for(&provider, None);

    let status = refusal_status(&dovecot, &oauthbearer(&dovecot, ALICE, "not-a-token"));
    assert!(status.get("status").is_some(), "{status}");
    let status = refusal_status(&dovecot, &xoauth2(ALICE, "not-a-token"));
    assert!(status.get("status").is_some(), "{status}");

    let token = provider.device_flow_token(ALICE, MAIL_SCOPE).unwrap();
    assert!(logs_in(&dovecot, &xoauth2(ALICE, &token.access_token)));
    assert!(provider.revoke_account(ALICE).unwrap() > 0);
    assert_eq!(
        provider.introspect(&token.access_token).unwrap()["active"],
        false
    );
    let status = refusal_status(&dovecot, &oauthbearer(&dovecot, ALICE, &token.access_token));
    assert!(status.get("status").is_some(), "{status}");
    // The refresh token went with the account's grants.
    let error = provider
        .refresh(PUBLIC_CLIENT, token.refresh_token.as_deref().unwrap())
        .unwrap_err();
    assert_eq!(oauth_error(&error).error, "invalid_grant");

    // RFC 7009 revocation of one token by its client.
    let token = provider.device_flow_token(ALICE, MAIL_SCOPE).unwrap();
    provider
        .revoke_token(PUBLIC_CLIENT, &token.access_token)
        .unwrap();
    assert!(!logs_in(&dovecot, &xoauth2(ALICE, &token.access_token)));
}

#[test]
fn a_token_is_refused_once_its_lifetime_is_over_and_a_refresh_brings_a_new_one() {
    // Long enough for the first login on a loaded two-core machine, short enough
    // that the test waits a few seconds only.
    const LIFETIME: Duration = Duration::from_secs(4);
    let provider = OidcProvider::start(OidcOptions {
        access_token_lifetime: LIFETIME,
        ..OidcOptions::default()
    })
    .unwrap();
    let dovecot = dovecot_for(&provider, None);
    let issued = Instant::now();
    let token = provider.device_flow_token(ALICE, MAIL_SCOPE).unwrap();
    assert_eq!(token.expires_in, LIFETIME.as_secs());
    assert!(logs_in(&dovecot, &xoauth2(ALICE, &token.access_token)));
    assert!(
        issued.elapsed() < LIFETIME,
        "the first login came too late to tell"
    );

    // One second more for the provider's clock tolerance.
    sleep((LIFETIME + Duration::from_secs(1)).saturating_sub(issued.elapsed()));
    assert_eq!(
        provider.introspect(&token.access_token).unwrap()["active"],
        false
    );
    assert!(!logs_in(&dovecot, &xoauth2(ALICE, &token.access_token)));
    assert!(!logs_in(
        &dovecot,
        &oauthbearer(&dovecot, ALICE, &token.access_token)
    ));

    let refreshed = provider
        .refresh(PUBLIC_CLIENT, token.refresh_token.as_deref().unwrap())
        .unwrap();
    assert!(logs_in(&dovecot, &xoauth2(ALICE, &refreshed.access_token)));
}

#[test]
fn refresh_tokens_rotate_and_a_reused_one_revokes_the_grant() {
    let provider = OidcProvider::start_default().unwrap();
    let first = provider.device_flow_token(ALICE, MAIL_SCOPE).unwrap();
    let old = first.refresh_token.clone().unwrap();

    let second = provider.refresh(PUBLIC_CLIENT, &old).unwrap();
    let new = second.refresh_token.clone().unwrap();
    assert_ne!(new, old, "the refresh token was not rotated");
    assert_ne!(second.access_token, first.access_token);
    assert_eq!(
        provider.introspect(&second.access_token).unwrap()["sub"],
        ALICE
    );

    // The old one is spent; presenting it again is taken as theft and ends the
    // grant, so the new tokens stop working too.
    let error = provider.refresh(PUBLIC_CLIENT, &old).unwrap_err();
    assert_eq!(oauth_error(&error).error, "invalid_grant");
    assert_eq!(
        provider.introspect(&second.access_token).unwrap()["active"],
        false
    );
    assert_eq!(
        oauth_error(&provider.refresh(PUBLIC_CLIENT, &new).unwrap_err()).error,
        "invalid_grant"
    );

    // Without reuse, rotation goes on indefinitely.
    let mut refresh = provider
        .device_flow_token(ALICE, MAIL_SCOPE)
        .unwrap()
        .refresh_token
        .unwrap();
    for _ in 0..3 {
        let next = provider.refresh(PUBLIC_CLIENT, &refresh).unwrap();
        refresh = next.refresh_token.unwrap();
    }
}

#[test]
fn the_jwt_bearer_grant_issues_a_token_for_the_assertions_subject() {
    let provider = OidcProvider::start_default().unwrap();
    let dovecot = dovecot_for(&provider, None);

    let token = provider
        .jwt_bearer_token(BOB, "https://mail.google.com/")
        .unwrap();
    assert!(token.refresh_token.is_none());
    let claims = provider.introspect(&token.access_token).unwrap();
    assert_eq!(claims["active"], true);
    assert_eq!(claims["sub"], BOB);
    assert_eq!(claims["client_id"], SERVICE_ACCOUNT);
    assert_eq!(claims["scope"], "https://mail.google.com/");
    assert!(
        logs_in(&dovecot, &xoauth2(BOB, &token.access_token)),
        "{}",
        dovecot.log()
    );

    // An assertion signed with another key is refused.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let forged = oidc::jwt::sign_rs256(
        provider.client_key_pem(),
        Some("service-account-key"),
        &serde_json::json!({
            "iss": SERVICE_ACCOUNT,
            "sub": BOB,
            "aud": provider.endpoints().token,
            "scope": "https://mail.google.com/",
            "iat": now,
            "exp": now + 600,
        }),
    )
    .unwrap();
    let error = provider.jwt_bearer_with(&forged).unwrap_err();
    assert_eq!(oauth_error(&error).error, "invalid_grant");

    // So are a properly signed one for another audience, an expired one, and one
    // without a subject.
    let sign = |claims: serde_json::Value| {
        oidc::jwt::sign_rs256(
            provider.service_account_key_pem(),
            Some("service-account-key"),
            &claims,
        )
        .unwrap()
    };
    for claims in [
        serde_json::json!({"iss": SERVICE_ACCOUNT, "sub": BOB, "aud": "https://elsewhere.example/token", "iat": now, "exp": now + 600}),
        serde_json::json!({"iss": SERVICE_ACCOUNT, "sub": BOB, "aud": provider.endpoints().token, "iat": now - 7200, "exp": now - 3600}),
        serde_json::json!({"iss": SERVICE_ACCOUNT, "aud": provider.endpoints().token, "iat": now, "exp": now + 600}),
    ] {
        let error = provider.jwt_bearer_with(&sign(claims.clone())).unwrap_err();
        assert_eq!(oauth_error(&error).error, "invalid_grant", "{claims}");
    }
}

#[test]
fn a_master_user_logs_in_as_a_mailbox_with_login_and_with_plain() {
    let provider = OidcProvider::start_default().unwrap();
    let master = MasterUser {
        name: "admin".to_string(),
        password: "admin-password".to_string(),
    };
    let dovecot = dovecot_for(&provider, Some(master));
    let mut checker = Checker::connect(
        dovecot.host(),
        dovecot.imap_port(),
        &format!("{ALICE}*admin"),
        "admin-password",
    )
    .unwrap();
    let uid = checker
        .append(
            "INBOX",
            &[],
            None,
            b"Subject: seeded by the admin\r\n\r\nhi\r\n",
        )
        .unwrap();

    // PLAIN with an authorization identity lands in the same mailbox.
    let plain = Sasl::Plain {
        authzid: ALICE.to_string(),
        authcid: "admin".to_string(),
        password: "admin-password".to_string(),
    };
    let mut checker = Checker::authenticate(dovecot.host(), dovecot.imap_port(), &plain).unwrap();
    assert_eq!(checker.fetch_all("INBOX").unwrap()[0].uid, uid);
    // So does Alice herself.
    let mut own = dovecot.checker(ALICE, "alice-password").unwrap();
    assert_eq!(own.fetch_all("INBOX").unwrap().len(), 1);

    // A wrong master password, and a mailbox that does not exist, are refused.
    let wrong = Sasl::Plain {
        authzid: ALICE.to_string(),
        authcid: "admin".to_string(),
        password: "guess".to_string(),
    };
    assert!(!logs_in(&dovecot, &wrong));
    assert!(
        Checker::connect(
            dovecot.host(),
            dovecot.imap_port(),
            "nobody@example.test*admin",
            "admin-password"
        )
        .is_err()
    );
    // A mailbox's own password does not make it a master.
    let not_master = Sasl::Plain {
        authzid: BOB.to_string(),
        authcid: ALICE.to_string(),
        password: "alice-password".to_string(),
    };
    assert!(!logs_in(&dovecot, &not_master));
}

#[test]
fn a_required_scope_refuses_tokens_without_it() {
    let provider = OidcProvider::start_default().unwrap();
    let dovecot = Dovecot::start(DovecotOptions {
        oauth2: Some(DovecotOAuth2 {
            required_scope: Some("https://mail.google.com/".to_string()),
            ..provider.dovecot_oauth2()
        }),
        ..DovecotOptions::default()
    })
    .unwrap();
    dovecot.add_user(ALICE, "alice-password").unwrap();
    let with = provider.device_flow_token(ALICE, MAIL_SCOPE).unwrap();
    assert!(
        logs_in(&dovecot, &xoauth2(ALICE, &with.access_token)),
        "{}",
        dovecot.log()
    );
    let without = provider.device_flow_token(ALICE, "openid").unwrap();
    assert!(!logs_in(&dovecot, &xoauth2(ALICE, &without.access_token)));
}

#[test]
fn pop3_takes_the_same_tokens() {
    use base64::Engine as _;
    use std::io::{BufRead, BufReader, Write};

    let provider = OidcProvider::start_default().unwrap();
    let dovecot = dovecot_for(&provider, None);
    let token = provider.device_flow_token(ALICE, MAIL_SCOPE).unwrap();
    let auth = |token: &str| {
        let stream = std::net::TcpStream::connect((dovecot.host(), dovecot.pop3_port())).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.starts_with("+OK"), "{line}");
        let response = base64::engine::general_purpose::STANDARD
            .encode(format!("user={ALICE}\x01auth=Bearer {token}\x01\x01"));
        writer
            .write_all(format!("AUTH XOAUTH2 {response}\r\n").as_bytes())
            .unwrap();
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line.starts_with("+ ") {
            // The error challenge; an empty answer ends the exchange.
            writer.write_all(b"\r\n").unwrap();
            line.clear();
            reader.read_line(&mut line).unwrap();
        }
        line
    };
    assert!(auth(&token.access_token).starts_with("+OK"));
    assert!(auth("wrong").starts_with("-ERR"));
}
