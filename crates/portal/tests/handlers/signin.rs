//! A mailbox user's own sign-in through a link, against a real OpenID provider: the
//! owner gets the link, the user (no portal account) opens it, signs in at the
//! provider and consents, and the sign-in is kept sealed for the passes; a link for
//! another mailbox, a forged link and a callback without its cookie are refused. And
//! the new-migration form, which offers the operator's profiles.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use mailmove_oauth::Profiles;
use mailmove_projects::{Grants, ProjectSettings, SignInMethod};
use mailmove_store::{NewMailbox, NewProject};
use mailmove_testkit::oidc::{CONFIDENTIAL_CLIENT, OidcOptions, OidcProvider};

use crate::harness::{Client, Portal, test_keyring};

const CALLBACK: &str = "http://127.0.0.1:8080/oauth/callback";

fn provider() -> OidcProvider {
    OidcProvider::start(OidcOptions {
        redirect_uris: vec![CALLBACK.to_string()],
        access_token_lifetime: Duration::from_secs(60),
        ..OidcOptions::default()
    })
    .unwrap()
}

/// A portal whose operator configured the profile `lab` for `provider`'s web client.
async fn portal(provider: &OidcProvider, dir: &std::path::Path) -> Portal {
    std::fs::write(dir.join("web.secret"), provider.confidential_secret()).unwrap();
    let text = format!(
        "[profile.lab]\nprovider = \"{}\"\nclient_id = \"{CONFIDENTIAL_CLIENT}\"\n\
         client_secret_file = \"web.secret\"\n\
         scopes = [\"openid\", \"offline_access\", \"email\", \"https://mail.google.com/\"]\n\
         tls_ca = \"{}\"\n",
        provider.issuer(),
        provider.ca_pem().display()
    );
    let profiles = Profiles::parse(&text, &dir.join("oauth.toml")).unwrap();
    Portal::with(|config| config.sign_in_profiles = Arc::new(profiles)).await
}

/// A project of `owner` whose source signs in with `lab`, with alice's and bob's
/// mailboxes; their ids.
async fn project(portal: &Portal, owner: &str) -> (i64, Vec<i64>) {
    let settings = ProjectSettings {
        source_sign_in: SignInMethod::OAuth {
            profile: "lab".into(),
        },
        ..ProjectSettings::default()
    };
    let (record, ids) = portal
        .db()
        .create_project_with_mailboxes(
            &NewProject {
                owner_email: owner,
                name: "Moving",
                source: "imaps://mail.old.example",
                dest: "imaps://mail.new.example",
                settings: &settings.to_json(),
            },
            |_| {
                ["alice", "bob"]
                    .iter()
                    .map(|who| NewMailbox {
                        source_email: format!("{who}@example.test"),
                        source_login: format!("{who}@example.test"),
                        source_secret: None,
                        dest_email: format!("{who}@new.example"),
                        dest_login: format!("{who}@new.example"),
                        dest_secret: Some(vec![1]),
                    })
                    .collect()
            },
        )
        .await
        .unwrap();
    (record.id, ids)
}

/// The sign-in link the owner's page shows for a mailbox.
async fn link(portal: &Portal, owner: &Client, project: i64, mailbox: i64) -> String {
    let page = portal
        .get(
            owner,
            &format!("/projects/{project}/mailboxes/{mailbox}/signin-link"),
        )
        .await;
    page.assert_ok();
    let start = page
        .body
        .find("http://127.0.0.1:8080/signin/")
        .expect(&page.body);
    let rest = &page.body[start..];
    let end = rest.find(|c: char| c == '<' || c.is_whitespace()).unwrap();
    rest[..end]
        .trim_start_matches("http://127.0.0.1:8080")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailbox_user_signs_in_through_the_link_and_the_sign_in_is_kept() {
    let provider = provider();
    let dir = tempfile::tempdir().unwrap();
    let portal = portal(&provider, dir.path()).await;
    let owner = portal.login("owner@example.com").await;
    let (project, ids) = project(&portal, "owner@example.com").await;
    let page = portal.get(&owner, &format!("/projects/{project}")).await;
    assert!(
        page.body.contains(&format!(
            "/projects/{project}/mailboxes/{}/signin-link",
            ids[0]
        )),
        "each row links to its sign-in link"
    );
    let alice_link = link(&portal, &owner, project, ids[0]).await;

    // The user, without a portal account, opens the link.
    let mut user = Client::at("203.0.113.9:40000");
    let page = portal.get(&user, &alice_link).await;
    page.assert_ok();
    assert!(
        page.body.contains("Sign in alice@example.test"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("Moving"), "the project stays private");

    let started = portal.get(&user, &format!("{alice_link}/start")).await;
    assert_eq!(started.status, StatusCode::SEE_OTHER);
    user.keep_cookies(&started);
    let to_provider = started.location().to_string();
    assert!(to_provider.starts_with(provider.issuer()), "{to_provider}");
    assert!(to_provider.contains("code_challenge_method=S256"));

    // A callback without the cookie (another browser) is refused.
    let back = {
        let provider_url = to_provider.clone();
        let account = "alice@example.test";
        let provider = &provider;
        std::thread::scope(|s| {
            s.spawn(|| provider.sign_in_browser(&provider_url, account).unwrap())
                .join()
                .unwrap()
        })
    };
    let path = back.trim_start_matches("http://127.0.0.1:8080");
    let stranger = portal.get(&Client::at("198.51.100.7:40000"), path).await;
    assert_eq!(
        stranger.status,
        StatusCode::BAD_REQUEST,
        "{}",
        stranger.body
    );

    let done = portal.get(&user, path).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.body.contains("Signed in"), "{}", done.body);
    let grants = Grants::new(portal.db().clone(), test_keyring());
    let kept = grants
        .refresh_token("lab", "alice@example.test")
        .await
        .unwrap()
        .expect("the sign-in is kept");
    // The refresh token works at the provider, and is stored sealed only.
    let refreshed = provider.refresh(CONFIDENTIAL_CLIENT, kept.expose());
    assert!(refreshed.is_ok(), "{refreshed:?}");
    assert!(!done.body.contains(kept.expose().as_str()));

    // Bob's link, signed in as alice: refused, nothing kept for bob.
    let bob_link = link(&portal, &owner, project, ids[1]).await;
    let mut other = Client::at("203.0.113.10:40000");
    let started = portal.get(&other, &format!("{bob_link}/start")).await;
    other.keep_cookies(&started);
    let to_provider = started.location().to_string();
    let back = std::thread::scope(|s| {
        s.spawn(|| {
            provider
                .sign_in_browser(&to_provider, "alice@example.test")
                .unwrap()
        })
        .join()
        .unwrap()
    });
    let wrong = portal
        .get(&other, back.trim_start_matches("http://127.0.0.1:8080"))
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN, "{}", wrong.body);
    assert!(
        wrong.body.contains("sign in as bob@example.test"),
        "{}",
        wrong.body
    );
    assert!(
        grants
            .refresh_token("lab", "bob@example.test")
            .await
            .unwrap()
            .is_none()
    );

    // A forged or altered link is not one.
    let forged = portal.get(&user, "/signin/AAAA").await;
    assert_eq!(forged.status, StatusCode::NOT_FOUND);
    let mut altered = alice_link.clone();
    altered.pop();
    altered.push(if alice_link.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(
        portal.get(&user, &altered).await.status,
        StatusCode::NOT_FOUND
    );

    // Another user cannot get the owner's links.
    let intruder = portal.login("intruder@example.com").await;
    let refused = portal
        .get(
            &intruder,
            &format!("/projects/{project}/mailboxes/{}/signin-link", ids[0]),
        )
        .await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_new_migration_signs_in_as_its_preset_needs_or_as_chosen() {
    let profiles = Profiles::parse(
        "[profile.contoso]\nprovider = \"microsoft\"\ntenant = \"contoso.example\"\n\
         client_id = \"app\"\n\
         [profile.workspace]\nprovider = \"google\"\nclient_id = \"app\"\n",
        std::path::Path::new("/etc/mailmove/oauth.toml"),
    )
    .unwrap();
    let portal = Portal::with(|config| config.sign_in_profiles = Arc::new(profiles)).await;
    let client = portal.login("ann@example.com").await;
    let form = portal.get(&client, "/migrations/new").await;
    for text in [
        r#"<label for="source_sign_in">How source mailboxes sign in</label>"#,
        r#"<option value="password" selected>Each mailbox&#39;s password</option>"#,
        r#"<option value="contoso">Each user signs in (contoso: microsoft)</option>"#,
    ] {
        assert!(form.body.contains(text), "{text}\n{}", form.body);
    }

    // Microsoft 365 refuses passwords: its preset signs in with the Microsoft profile
    // unless the form says otherwise; a typed server keeps passwords.
    let created = portal
        .post(
            &client,
            "/migrations",
            &[
                ("name", "To Microsoft"),
                ("source_host", "mail.old.example"),
                ("dest_preset", "microsoft365"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let chosen = portal
        .post(
            &client,
            "/migrations",
            &[
                ("name", "From Gmail"),
                ("source_preset", "gmail"),
                ("source_sign_in", "password"),
                ("dest_host", "mail.new.example"),
                ("dest_sign_in", "workspace"),
            ],
        )
        .await;
    assert_eq!(chosen.status, StatusCode::SEE_OTHER, "{}", chosen.body);
    let projects = portal.db().projects(Some("ann@example.com")).await.unwrap();
    let settings: Vec<ProjectSettings> = projects
        .iter()
        .map(|p| ProjectSettings::from_json(&p.settings).unwrap())
        .collect();
    let oauth = |name: &str| SignInMethod::OAuth {
        profile: name.into(),
    };
    assert_eq!(
        (&settings[0].source_sign_in, &settings[0].dest_sign_in),
        (&SignInMethod::Password, &oauth("contoso"))
    );
    assert_eq!(
        (&settings[1].source_sign_in, &settings[1].dest_sign_in),
        (&SignInMethod::Password, &oauth("workspace"))
    );

    // A method the operator does not offer is refused with what to do.
    let refused = portal
        .post(
            &client,
            "/migrations",
            &[
                ("name", "Odd"),
                ("source_host", "mail.old.example"),
                ("dest_host", "mail.new.example"),
                ("dest_sign_in", "someone-elses"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused
            .body
            .contains("Choose how the mailboxes sign in from the list."),
        "{}",
        refused.body
    );
}
