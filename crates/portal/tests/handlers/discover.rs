//! "Find my settings": the JSON the new-migration page's script reads, against a private
//! dnsmasq and a real Dovecot; who may ask, how often, and what it refuses to reach.

use std::time::Duration;

use axum::http::StatusCode;
use mailmove_discover::Ports;
use mailmove_net::NetworkPolicy;
use mailmove_testkit::{DnsRecord, DnsServer, Dovecot, free_port};
use serde_json::Value;

use crate::harness::{Client, Portal};

/// A portal whose discovery asks `dns`, where nothing listens on the conventional
/// ports, and whose operator allowed loopback (the test servers are there).
async fn portal(dns: &DnsServer, ca: Option<&std::path::Path>, allow_private: bool) -> Portal {
    let dns_server = dns.addr();
    let ca = ca.map(|p| p.to_path_buf());
    Portal::with(move |config| {
        config.tls_ca = ca;
        config.discovery.dns_server = Some(dns_server);
        config.discovery.timeout = Duration::from_secs(3);
        config.discovery.policy = if allow_private {
            NetworkPolicy::public_only(vec![
                "127.0.0.0/8".parse().unwrap(),
                "::1/128".parse().unwrap(),
            ])
        } else {
            NetworkPolicy::public_only(Vec::new())
        };
        // The test servers' ports are no mail ports; the policy is tested on its own.
        config.discovery.conventional_ports_only = false;
        config.discovery.ports = Ports {
            https: free_port(),
            http: free_port(),
            imaps: free_port(),
            imap: free_port(),
            pop3s: free_port(),
            pop3: free_port(),
        };
        config.discoveries_per_user = 3;
    })
    .await
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test]
async fn a_signed_in_user_gets_the_form_values_and_where_they_came_from() {
    let dovecot = Dovecot::start_default().unwrap();
    let dns = DnsServer::start(&[DnsRecord::srv(
        "_imaps._tcp.portal.test",
        "localhost",
        dovecot.imaps_port(),
        0,
    )])
    .unwrap();
    let portal = portal(&dns, Some(dovecot.ca_pem()), true).await;
    let client = portal.login("owner@example.com").await;
    let answer = portal
        .get(&client, "/discover?side=source&address=alice%40portal.test")
        .await;
    answer.assert_ok();
    assert_eq!(
        answer.headers["content-type"].to_str().unwrap(),
        "application/json"
    );
    let found = json(&answer.body);
    assert_eq!(found["found"], true);
    assert_eq!(found["kind"], "imap");
    assert_eq!(found["preset"], "");
    assert_eq!(found["host"], "localhost");
    assert_eq!(found["port"], dovecot.imaps_port().to_string());
    assert_eq!(found["security"], "tls");
    let message = found["message"].as_str().unwrap();
    assert!(
        message.contains(
            "via SRV record _imaps._tcp.portal.test (checked: it answers with verified TLS)"
        ),
        "{message}"
    );
}

#[tokio::test]
async fn a_custom_domain_on_google_fills_the_gmail_preset_with_its_oauth_sign_in() {
    let dns = DnsServer::start(&[DnsRecord::mx("corp.test", "aspmx.l.google.com")]).unwrap();
    let portal = portal(&dns, None, false).await;
    let client = portal.login("owner@example.com").await;
    let answer = portal
        .get(&client, "/discover?side=destination&address=corp.test")
        .await;
    let found = json(&answer.body);
    assert_eq!(found["found"], true, "{found}");
    assert_eq!(
        (found["kind"].as_str(), found["preset"].as_str()),
        (Some("imap"), Some("gmail"))
    );
    let message = found["message"].as_str().unwrap();
    assert!(
        message.contains("MX points to Google Workspace"),
        "{message}"
    );
    assert!(
        message.ends_with("signs in with OAuth (Google)."),
        "{message}"
    );
}

#[tokio::test]
async fn the_new_migration_page_offers_it_and_serves_its_script() {
    let dns = DnsServer::start(&[]).unwrap();
    let portal = portal(&dns, None, false).await;
    let client = portal.login("owner@example.com").await;
    let page = portal.get(&client, "/migrations/new").await;
    page.assert_ok();
    for needle in [
        r#"data-discover="source""#,
        r#"data-discover="dest""#,
        r#"id="source_found""#,
        "/assets/discover.js",
    ] {
        assert!(page.body.contains(needle), "{needle}");
    }
    let script = portal.get(&client, "/assets/discover.js").await;
    script.assert_ok();
    assert!(script.body.contains("/discover?side="));
}

#[tokio::test]
async fn strangers_are_sent_to_log_in_and_nothing_is_looked_up() {
    let dns = DnsServer::start(&[]).unwrap();
    let portal = portal(&dns, None, true).await;
    let answer = portal
        .get(
            &Client::default(),
            "/discover?address=alice%40stranger.test",
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(answer.location(), "/login");
    assert!(!dns.log().contains("stranger.test"), "{}", dns.log());
}

#[tokio::test]
async fn private_addresses_are_not_reached_unless_the_operator_allows_it() {
    let dovecot = Dovecot::start_default().unwrap();
    let dns = DnsServer::start(&[DnsRecord::srv(
        "_imaps._tcp.inside.test",
        "localhost",
        dovecot.imaps_port(),
        0,
    )])
    .unwrap();
    let portal = portal(&dns, Some(dovecot.ca_pem()), false).await;
    let client = portal.login("owner@example.com").await;
    let answer = portal
        .get(&client, "/discover?address=alice%40inside.test")
        .await;
    let found = json(&answer.body);
    assert_eq!(found["found"], false, "{found}");
    assert_eq!(
        found["message"],
        "No settings were found for alice@inside.test: fill in the server below."
    );
}

#[tokio::test]
async fn each_user_may_ask_a_few_times_in_a_window() {
    let dns = DnsServer::start(&[]).unwrap();
    let portal = portal(&dns, None, true).await;
    let client = portal.login("owner@example.com").await;
    for _ in 0..3 {
        let answer = portal.get(&client, "/discover?address=nothing.test").await;
        answer.assert_ok();
        assert_eq!(json(&answer.body)["found"], false);
    }
    let refused = portal.get(&client, "/discover?address=nothing.test").await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        json(&refused.body)["message"]
            .as_str()
            .unwrap()
            .contains("wait a few minutes")
    );
    // Another user has a count of their own.
    let other = portal.login("other@example.com").await;
    portal
        .get(&other, "/discover?address=nothing.test")
        .await
        .assert_ok();
}

#[tokio::test]
async fn what_is_not_an_address_is_refused_with_the_reason_and_costs_nothing() {
    let dns = DnsServer::start(&[]).unwrap();
    let portal = portal(&dns, None, true).await;
    let client = portal.login("owner@example.com").await;
    let long = "a".repeat(5000);
    for address in ["", "not an address", "alice@127.0.0.1", long.as_str()] {
        let path = format!("/discover?address={}", address.replace(' ', "%20"));
        let answer = portal.get(&client, &path).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{address}");
        let found = json(&answer.body);
        assert_eq!(found["found"], false);
        assert!(!found["message"].as_str().unwrap().is_empty());
    }
    // None of those counted against the user's few discoveries.
    portal
        .get(&client, "/discover?address=nothing.test")
        .await
        .assert_ok();
}
