//! End-to-end: `mailmove discover` and `auto:ADDRESS` endpoints, with the binary's
//! resolver pointed at a private dnsmasq, autoconfig served over HTTPS by the test, and
//! the testkit's Dovecot servers as what is found.

mod common;

use std::process::Command;

use common::{DEST_PASSWORD, SOURCE_PASSWORD, Setup, finish};
use mailmove_testkit::{DnsRecord, DnsServer, WebAnswer, WebSite, free_port, messages};

const AUTOCONFIG: &str = r#"<?xml version="1.0"?>
<clientConfig version="1.1"><emailProvider id="example.test">
<incomingServer type="imap"><hostname>localhost</hostname><port>PORT</port>
<socketType>SSL</socketType><username>%EMAILLOCALPART%</username>
<authentication>password-cleartext</authentication></incomingServer>
</emailProvider></clientConfig>"#;

/// The source found by autoconfig (login: the address's local part, as the source
/// Dovecot's user is `alice`), the destination by an SRV record.
struct World {
    setup: Setup,
    site: WebSite,
    dns: DnsServer,
    ca: std::path::PathBuf,
}

fn world() -> World {
    let setup = Setup::new();
    let xml = AUTOCONFIG.replace("PORT", &setup.source.imaps_port().to_string());
    let site = WebSite::start(
        &["autoconfig.example.test"],
        &[("/mail/config-v1.1.xml", WebAnswer::Xml(xml))],
    )
    .unwrap();
    let dns = DnsServer::start(&[
        DnsRecord::loopback("autoconfig.example.test"),
        DnsRecord::srv(
            "_imaps._tcp.new.example",
            "localhost",
            setup.dest.imaps_port(),
            0,
        ),
    ])
    .unwrap();
    let ca = setup.dir.path().join("all-cas.pem");
    let mut pem = std::fs::read(&setup.ca).unwrap();
    pem.extend(std::fs::read(site.ca_pem()).unwrap());
    std::fs::write(&ca, pem).unwrap();
    World {
        setup,
        site,
        dns,
        ca,
    }
}

impl World {
    fn command(&self, subcommand: &str) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mailmove"));
        command
            .arg(subcommand)
            .arg("--tls-ca")
            .arg(&self.ca)
            .env("MAILMOVE_DNS_SERVER", self.dns.addr().to_string())
            .env(
                "MAILMOVE_DISCOVERY_PORTS",
                format!(
                    "https={},http={},imaps={},imap={}",
                    self.site.port(),
                    free_port(),
                    free_port(),
                    free_port()
                ),
            )
            .env_remove("MAILMOVE_LOG");
        command
    }
}

#[test]
fn discover_prints_the_settings_and_where_they_came_from_as_json() {
    let world = world();
    let output = world
        .command("discover")
        .args(["alice@example.test", "--json"])
        .output()
        .unwrap();
    let run = finish(output, None);
    assert_eq!(run.code, 0, "{}", run.everything());
    let found: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let best = &found["candidates"][found["best"].as_u64().unwrap() as usize];
    assert_eq!(best["kind"], "imap");
    assert_eq!(best["service"], "imap");
    assert_eq!(best["host"], "localhost");
    assert_eq!(best["port"], world.setup.source.imaps_port());
    assert_eq!(best["security"], "tls");
    assert_eq!(best["sign_in"], "password");
    assert_eq!(best["login"], "alice");
    assert_eq!(best["check"]["status"], "verified");
    assert_eq!(
        best["found_via"][0]["detail"],
        "autoconfig at autoconfig.example.test"
    );
    assert!(
        world
            .site
            .requests()
            .iter()
            .any(|r| r.contains("emailaddress=alice%40example.test")),
        "{:?}",
        world.site.requests()
    );
}

#[test]
fn discover_says_plainly_when_nothing_is_found() {
    let world = world();
    let output = world
        .command("discover")
        .arg("zoe@nothing.test")
        .output()
        .unwrap();
    let run = finish(output, None);
    assert_eq!(run.code, 1, "{}", run.everything());
    assert!(
        run.stdout
            .contains("No settings to use were found for zoe@nothing.test: type the server in"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("no SRV records for nothing.test"),
        "{}",
        run.stdout
    );
}

#[test]
fn migrate_with_auto_endpoints_uses_the_discovered_servers_and_says_so() {
    let world = world();
    let mut src = world.setup.src();
    for i in 0..3 {
        let body = messages::simple(&format!("auto{i}@example.test"), "auto", 500);
        src.append("INBOX", &[], None, &body).unwrap();
    }
    let report = world.setup.dir.path().join("auto-report.json");
    let output = world
        .command("migrate")
        .args(["--source", "auto:alice@example.test"])
        .args(["--dest", "auto:bob@new.example"])
        .arg("--state")
        .arg(world.setup.state())
        .arg("--report")
        .arg(&report)
        .env("MAILMOVE_SOURCE_PASSWORD", SOURCE_PASSWORD)
        .env("MAILMOVE_DEST_PASSWORD", DEST_PASSWORD)
        .output()
        .unwrap();
    let run = finish(output, Some(report));
    assert_eq!(run.code, 0, "{}", run.everything());
    let source_port = world.setup.source.imaps_port();
    let dest_port = world.setup.dest.imaps_port();
    assert!(
        run.stderr.contains(&format!(
            "source: auto:alice@example.test → imaps://alice@localhost:{source_port} (IMAP, found via autoconfig at autoconfig.example.test; connected, TLS verified"
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!(
            "destination: auto:bob@new.example → imaps://bob%40new.example@localhost:{dest_port} (IMAP, found via SRV record _imaps._tcp.new.example"
        )),
        "{}",
        run.stderr
    );
    assert_eq!(run.counts(), (3, 0, 0, 0));
    assert_eq!(world.setup.dst().fetch_all("INBOX").unwrap().len(), 3);
}

#[test]
fn an_auto_endpoint_that_finds_nothing_is_a_usage_error_naming_the_url_form() {
    let world = world();
    let output = world
        .command("check")
        .args(["--source", "auto:zoe@nothing.test"])
        .args(["--dest", &world.setup.dest_url()])
        .env("MAILMOVE_SOURCE_PASSWORD", SOURCE_PASSWORD)
        .env("MAILMOVE_DEST_PASSWORD", DEST_PASSWORD)
        .output()
        .unwrap();
    let run = finish(output, None);
    assert_eq!(run.code, 2, "{}", run.everything());
    assert!(
        run.stderr
            .contains("no source settings could be found for zoe@nothing.test"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("imaps://LOGIN@HOST"), "{}", run.stderr);
}
