//! Discovery against real servers on this machine: a private dnsmasq serving the test
//! domains' MX, SRV and address records, HTTPS sites with their own CA for autoconfig
//! and Autodiscover, private Dovecot instances and the testkit's EWS server as the
//! servers found. Nothing leaves loopback: dnsmasq knows only `.test` and forwards
//! nothing, so the providers' real hosts have no address here.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use mailmove_discover::{Check, Discovery, Ports, Service, Settings, SignIn, Source, discover};
use mailmove_model::{Kind, Secret, Security};
use mailmove_net::{NetworkPolicy, TlsOptions};
use mailmove_testkit::ews::{EwsConfig, EwsServer};
use mailmove_testkit::{
    DnsRecord, DnsServer, Dovecot, DovecotOptions, WebAnswer, WebSite, free_port,
};

/// A port nothing listens on: the conventional sources fail at once there.
fn closed_port() -> u16 {
    free_port()
}

fn settings(dns: &DnsServer, cas: &[&std::path::Path], dir: &tempfile::TempDir) -> Settings {
    let mut pem = String::new();
    for ca in cas {
        pem.push_str(&std::fs::read_to_string(ca).unwrap());
    }
    let ca_file: PathBuf = dir.path().join("cas.pem");
    std::fs::write(&ca_file, pem).unwrap();
    Settings {
        dns_server: Some(dns.addr()),
        tls: TlsOptions {
            extra_ca: Some(ca_file),
            accept_invalid_certs: false,
        },
        timeout: Duration::from_secs(3),
        ports: Ports {
            https: closed_port(),
            http: closed_port(),
            imaps: closed_port(),
            imap: closed_port(),
            pop3s: closed_port(),
            pop3: closed_port(),
        },
        policy: NetworkPolicy::Anywhere,
        conventional_ports_only: false,
    }
}

fn said(found: &Discovery, source: Source) -> String {
    found
        .sources
        .iter()
        .filter(|r| r.source == source)
        .map(|r| r.said.clone())
        .collect::<Vec<_>>()
        .join(" | ")
}

#[tokio::test]
async fn srv_records_only_implicit_tls_first_and_checked() {
    let dovecot = Dovecot::start_default().unwrap();
    let dns = DnsServer::start(&[
        DnsRecord::srv("_imap._tcp.srv.test", "localhost", dovecot.imap_port(), 0),
        DnsRecord::srv("_imaps._tcp.srv.test", "localhost", dovecot.imaps_port(), 0),
        DnsRecord::srv("_pop3s._tcp.srv.test", "localhost", dovecot.pop3s_port(), 0),
    ])
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(&dns, &[dovecot.ca_pem()], &dir);
    let found = discover("alice@srv.test", &settings, None).await.unwrap();

    let best = found.best().expect("a server was found");
    assert_eq!(
        best.url(None),
        format!("imaps://localhost:{}", dovecot.imaps_port())
    );
    assert_eq!(best.found_via_text(), "SRV record _imaps._tcp.srv.test");
    let Check::Verified { capabilities } = &best.check else {
        panic!("{:?}", best.check)
    };
    assert!(
        capabilities.iter().any(|c| c == "IMAP4rev1"),
        "{capabilities:?}"
    );
    let second = &found.candidates[1];
    assert_eq!(second.security, Security::StartTls);
    assert_eq!(second.port, dovecot.imap_port());
    assert!(
        second.is_verified(),
        "STARTTLS was upgraded and verified: {:?}",
        second.check
    );
    let pop = &found.candidates[2];
    assert_eq!((pop.kind, pop.service), (Kind::Pop3, Service::Pop));
    let Check::Verified { capabilities } = &pop.check else {
        panic!("{:?}", pop.check)
    };
    assert!(capabilities.iter().any(|c| c == "UIDL"), "{capabilities:?}");
    assert!(said(&found, Source::Autoconfig).contains("autoconfig at autoconfig.srv.test"));
}

const AUTOCONFIG: &str = r#"<?xml version="1.0"?>
<clientConfig version="1.1"><emailProvider id="ac.test"><domain>ac.test</domain>
<incomingServer type="imap"><hostname>localhost</hostname><port>PORT</port>
<socketType>SSL</socketType><username>%EMAILADDRESS%</username>
<authentication>password-cleartext</authentication></incomingServer>
</emailProvider></clientConfig>"#;

#[tokio::test]
async fn autoconfig_only() {
    let dovecot = Dovecot::start_default().unwrap();
    let xml = AUTOCONFIG.replace("PORT", &dovecot.imaps_port().to_string());
    let site = WebSite::start(
        &["autoconfig.ac.test"],
        &[("/mail/config-v1.1.xml", WebAnswer::Xml(xml))],
    )
    .unwrap();
    let dns = DnsServer::start(&[DnsRecord::loopback("autoconfig.ac.test")]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(&dns, &[dovecot.ca_pem(), site.ca_pem()], &dir);
    settings.ports.https = site.port();
    let found = discover("alice@ac.test", &settings, None).await.unwrap();

    let best = found.best().expect("autoconfig named a server");
    assert_eq!(
        best.url(best.login.as_deref()),
        format!("imaps://alice%40ac.test@localhost:{}", dovecot.imaps_port())
    );
    assert_eq!(best.found_via_text(), "autoconfig at autoconfig.ac.test");
    assert!(best.is_verified(), "{:?}", best.check);
    let requests = site.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.ends_with("/mail/config-v1.1.xml?emailaddress=alice%40ac.test")),
        "{requests:?}"
    );
}

#[tokio::test]
async fn autoconfig_over_plain_http_names_only_the_domains_servers_and_only_verified() {
    let dovecot = Dovecot::start(DovecotOptions {
        tls_names: vec!["imap.ac.test".into()],
        ..DovecotOptions::default()
    })
    .unwrap();
    let port = dovecot.imaps_port().to_string();
    let xml = AUTOCONFIG.replace("PORT", &port).replace(
        "<hostname>localhost</hostname>",
        "<hostname>imap.%EMAILDOMAIN%</hostname>",
    );
    let plain = WebSite::start_plain(&[("/mail/config-v1.1.xml", WebAnswer::Xml(xml))]).unwrap();
    let dns = DnsServer::start(&[
        DnsRecord::loopback("autoconfig.ac.test"),
        DnsRecord::loopback("imap.ac.test"),
    ])
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(&dns, &[dovecot.ca_pem()], &dir);
    settings.ports.http = plain.port();
    let found = discover("alice@ac.test", &settings, None).await.unwrap();
    let best = found.best().expect("the server verified");
    assert_eq!(best.url(None), format!("imaps://imap.ac.test:{port}"));
    assert_eq!(
        best.found_via_text(),
        "autoconfig at http://autoconfig.ac.test (plain HTTP)"
    );
    assert!(
        plain.requests().iter().all(|r| !r.contains("alice")),
        "the address does not travel in clear: {:?}",
        plain.requests()
    );

    // The same document, the server's certificate not trusted here: not chosen.
    let untrusted = Settings {
        tls: TlsOptions::default(),
        ..settings.clone()
    };
    let found = discover("alice@ac.test", &untrusted, None).await.unwrap();
    assert!(found.best().is_none(), "{:?}", found.best());
    let Check::Failed { reason } = &found.candidates[0].check else {
        panic!("{:?}", found.candidates[0].check)
    };
    assert!(reason.contains("not trusted"), "{reason}");

    // A document sent in clear that names another domain's server is ignored.
    let elsewhere = WebSite::start_plain(&[(
        "/mail/config-v1.1.xml",
        WebAnswer::Xml(AUTOCONFIG.replace("PORT", &port)),
    )])
    .unwrap();
    settings.ports.http = elsewhere.port();
    let found = discover("alice@ac.test", &settings, None).await.unwrap();
    assert!(found.candidates.iter().all(|c| c.host != "localhost"));
    assert!(
        said(&found, Source::Autoconfig).contains("names localhost, outside ac.test: ignored"),
        "{}",
        said(&found, Source::Autoconfig)
    );
}

#[tokio::test]
async fn mx_on_a_known_provider_is_recognised_with_its_oauth_sign_in() {
    let dns = DnsServer::start(&[
        DnsRecord::mx("corp.test", "aspmx.l.google.com"),
        DnsRecord::mx("contoso.test", "contoso-test.mail.protection.outlook.com"),
    ])
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(&dns, &[], &dir);

    let google = discover("bob@corp.test", &settings, None).await.unwrap();
    let best = google.best().expect("the provider table's settings");
    assert_eq!(best.service, Service::Google);
    assert_eq!(best.url(None), "imaps://imap.gmail.com:993");
    assert_eq!(best.sign_in, SignIn::OauthGoogle);
    assert_eq!(best.provider.as_deref(), Some("Google Workspace"));
    assert_eq!(
        best.found_via_text(),
        "MX points to Google Workspace (aspmx.l.google.com)"
    );
    // This machine cannot reach Google: the check says so, and nothing left loopback.
    assert!(
        matches!(best.check, Check::Failed { .. }),
        "{:?}",
        best.check
    );

    let microsoft = discover("carol@contoso.test", &settings, None)
        .await
        .unwrap();
    let best = microsoft.best().unwrap();
    assert_eq!(best.service, Service::Microsoft365);
    assert_eq!(best.sign_in, SignIn::OauthMicrosoft);
    assert_eq!(best.url(None), "imaps://outlook.office365.com:993");
    assert!(
        microsoft
            .candidates
            .iter()
            .any(|c| c.kind == Kind::Ews && c.service == Service::Microsoft365),
        "{:?}",
        microsoft.candidates
    );
}

#[tokio::test]
async fn autodiscover_through_srv_and_through_a_redirect() {
    let ews = EwsServer::start(EwsConfig::basic().with_https()).unwrap();
    ews.add_user("dave@ex.test", "s3cret");
    let ews_port = ews.addr().port();
    let site = WebSite::start(
        &["autodiscover.redir.test"],
        &[(
            "/autodiscover/autodiscover.xml",
            WebAnswer::Redirect(format!(
                "https://localhost:{ews_port}/autodiscover/autodiscover.xml"
            )),
        )],
    )
    .unwrap();
    let dns = DnsServer::start(&[
        DnsRecord::srv("_autodiscover._tcp.ex.test", "localhost", ews_port, 0),
        DnsRecord::loopback("autodiscover.redir.test"),
    ])
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(&dns, &[ews.ca_pem().unwrap(), site.ca_pem()], &dir);

    // Without a password: Autodiscover asks to sign in; EWS answers with its methods.
    let found = discover("dave@ex.test", &settings, None).await.unwrap();
    let best = found.best().expect("Exchange found");
    assert_eq!(best.kind, Kind::Ews);
    assert_eq!(
        best.url(None),
        format!("ews+https://localhost:{ews_port}/EWS/Exchange.asmx")
    );
    assert!(
        best.found_via_text()
            .starts_with("SRV record _autodiscover._tcp.ex.test → localhost")
    );
    let Check::Verified { capabilities } = &best.check else {
        panic!("{:?}", best.check)
    };
    assert_eq!(capabilities, &["Basic"]);

    // With the password, Autodiscover names the exact EWS address.
    let password = Secret::new("s3cret".to_string());
    let found = discover("dave@ex.test", &settings, Some(&password))
        .await
        .unwrap();
    let best = found.best().unwrap();
    assert!(
        best.found_via_text()
            .starts_with("Autodiscover (signed in) named"),
        "{}",
        best.found_via_text()
    );
    assert_eq!(best.path.as_deref(), Some("/EWS/Exchange.asmx"));

    // autodiscover.DOMAIN redirects (HTTPS only) to the server that answers.
    settings.ports.https = site.port();
    let found = discover("erin@redir.test", &settings, None).await.unwrap();
    let best = found.best().expect("followed the redirect");
    assert_eq!((best.host.as_str(), best.port), ("localhost", ews_port));
    assert!(
        site.requests()
            .iter()
            .any(|r| r.starts_with("POST autodiscover.redir.test"))
    );
}

#[tokio::test]
async fn autodiscover_by_the_http_redirect_method_follows_only_https() {
    let ews = EwsServer::start(EwsConfig::basic().with_https()).unwrap();
    let ews_port = ews.addr().port();
    let plain = WebSite::start_plain(&[(
        "/autodiscover/autodiscover.xml",
        WebAnswer::Redirect(format!(
            "https://localhost:{ews_port}/autodiscover/autodiscover.xml"
        )),
    )])
    .unwrap();
    let dns = DnsServer::start(&[DnsRecord::loopback("autodiscover.plain.test")]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(&dns, &[ews.ca_pem().unwrap()], &dir);
    settings.ports.http = plain.port();
    let found = discover("kim@plain.test", &settings, None).await.unwrap();
    let best = found.best().expect("the redirect was followed");
    assert_eq!(
        (best.kind, best.host.as_str(), best.port),
        (Kind::Ews, "localhost", ews_port)
    );
    assert!(
        best.found_via_text()
            .starts_with("HTTP redirect at autodiscover.plain.test → localhost"),
        "{}",
        best.found_via_text()
    );
    assert!(best.is_verified(), "{:?}", best.check);

    // A redirection to plain HTTP is not followed.
    let to_plain = WebSite::start_plain(&[(
        "/autodiscover/autodiscover.xml",
        WebAnswer::Redirect(format!(
            "http://localhost:{ews_port}/autodiscover/autodiscover.xml"
        )),
    )])
    .unwrap();
    settings.ports.http = to_plain.port();
    let found = discover("kim@plain.test", &settings, None).await.unwrap();
    assert!(found.best().is_none(), "{:?}", found.best());
    assert!(
        said(&found, Source::Autodiscover).contains("which is not https://"),
        "{}",
        said(&found, Source::Autodiscover)
    );
}

#[tokio::test]
async fn nothing_found_is_a_clear_answer() {
    let dns = DnsServer::start(&[]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(&dns, &[], &dir);
    let found = discover("nobody@nothing.test", &settings, None)
        .await
        .unwrap();
    assert!(found.best().is_none());
    assert!(found.candidates.is_empty(), "{:?}", found.candidates);
    assert_eq!(said(&found, Source::Srv), "no SRV records for nothing.test");
    assert_eq!(said(&found, Source::Mx), "nothing.test has no MX record");
    assert_eq!(
        said(&found, Source::Probe),
        "neither imap.nothing.test nor mail.nothing.test answered with verified TLS"
    );
}

/// A server that greets and offers no STARTTLS, as an old IMAP server configured for
/// plaintext only would (Dovecot's test instances always offer it).
fn plaintext_imap_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.write_all(b"* OK plain server ready\r\n");
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                let tag = line.split_whitespace().next().unwrap_or("*").to_string();
                let _ = stream.write_all(
                    format!("* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n{tag} OK done\r\n").as_bytes(),
                );
                line.clear();
            }
        }
    });
    port
}

#[tokio::test]
async fn a_plaintext_only_server_is_shown_and_not_chosen() {
    let port = plaintext_imap_server();
    let dns = DnsServer::start(&[DnsRecord::srv(
        "_imap._tcp.plain.test",
        "localhost",
        port,
        0,
    )])
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(&dns, &[], &dir);
    let found = discover("frank@plain.test", &settings, None).await.unwrap();
    assert!(found.best().is_none(), "{:?}", found.best());
    let shown = &found.candidates[0];
    assert_eq!(shown.port, port);
    assert!(
        matches!(shown.check, Check::PlaintextOnly { .. }),
        "{:?}",
        shown.check
    );
}

/// A hostile server on loopback: `greeting`, then `answer` to anything.
fn hostile_server(greeting: Vec<u8>, answer: Vec<u8>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.write_all(&greeting);
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) > 0 {
                let _ = stream.write_all(&answer);
            }
        }
    });
    port
}

#[tokio::test]
async fn what_a_hostile_server_sends_is_bounded() {
    let endless_line = hostile_server(vec![b'*'; 100_000], Vec::new());
    let endless_answer = hostile_server(
        b"* OK hello\r\n".to_vec(),
        b"* CAPABILITY IMAP4rev1\r\n".repeat(1_000),
    );
    let dns = DnsServer::start(&[
        DnsRecord::srv("_imap._tcp.hostile.test", "localhost", endless_line, 0),
        DnsRecord::srv("_imap._tcp.hostile.test", "localhost", endless_answer, 1),
    ])
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(&dns, &[], &dir);
    let found = discover("lee@hostile.test", &settings, None).await.unwrap();
    assert!(found.best().is_none());
    let reason = |port: u16| match &found
        .candidates
        .iter()
        .find(|c| c.port == port)
        .unwrap()
        .check
    {
        Check::Failed { reason } => reason.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(reason(endless_line), "a line longer than 8 KiB");
    assert_eq!(reason(endless_answer), "more than 64 lines in one answer");
}

#[tokio::test]
async fn a_source_that_never_answers_does_not_hold_the_others() {
    let dovecot = Dovecot::start_default().unwrap();
    let site = WebSite::start(
        &["autoconfig.slow.test"],
        &[("/mail/config-v1.1.xml", WebAnswer::Silent)],
    )
    .unwrap();
    let dns = DnsServer::start(&[
        DnsRecord::loopback("autoconfig.slow.test"),
        DnsRecord::srv(
            "_imaps._tcp.slow.test",
            "localhost",
            dovecot.imaps_port(),
            0,
        ),
    ])
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(&dns, &[dovecot.ca_pem(), site.ca_pem()], &dir);
    settings.ports.https = site.port();
    settings.timeout = Duration::from_secs(1);
    let found = discover("gina@slow.test", &settings, None).await.unwrap();
    assert!(found.best().is_some_and(|b| b.port == dovecot.imaps_port()));
    assert!(
        said(&found, Source::Autoconfig)
            .contains("autoconfig at autoconfig.slow.test: no answer within 1 s"),
        "{}",
        said(&found, Source::Autoconfig)
    );
}

#[tokio::test]
async fn conventional_names_are_kept_only_with_verified_tls() {
    let dovecot = Dovecot::start(DovecotOptions {
        tls_names: vec!["imap.probe.test".into()],
        ..DovecotOptions::default()
    })
    .unwrap();
    let dns = DnsServer::start(&[
        DnsRecord::loopback("imap.probe.test"),
        DnsRecord::loopback("mail.probe.test"),
    ])
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(&dns, &[dovecot.ca_pem()], &dir);
    settings.ports.imaps = dovecot.imaps_port();
    settings.ports.imap = dovecot.imap_port();
    let found = discover("hank@probe.test", &settings, None).await.unwrap();
    let best = found.best().expect("imap.probe.test answered");
    assert_eq!(
        best.url(None),
        format!("imaps://imap.probe.test:{}", dovecot.imaps_port())
    );
    assert_eq!(
        best.found_via_text(),
        "imap.probe.test answered with verified TLS"
    );
    // mail.probe.test reaches the same server, whose certificate does not name it.
    assert!(
        found.candidates.iter().all(|c| c.host != "mail.probe.test"),
        "{:?}",
        found.candidates
    );
}

#[tokio::test]
async fn private_addresses_are_not_reached_unless_allowed() {
    let dovecot = Dovecot::start_default().unwrap();
    let dns = DnsServer::start(&[DnsRecord::srv(
        "_imaps._tcp.inside.test",
        "localhost",
        dovecot.imaps_port(),
        0,
    )])
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(&dns, &[dovecot.ca_pem()], &dir);
    settings.policy = NetworkPolicy::public_only(Vec::new());
    let found = discover("ivy@inside.test", &settings, None).await.unwrap();
    assert!(found.best().is_none());
    let Check::Failed { reason } = &found.candidates[0].check else {
        panic!("{:?}", found.candidates[0].check)
    };
    assert!(reason.contains("private or local network"), "{reason}");
    // The operator's allowed networks are reached, but a port that is no mail port is
    // not even tried where only those are allowed.
    settings.policy = NetworkPolicy::public_only(vec![
        "127.0.0.0/8".parse().unwrap(),
        "::1/128".parse().unwrap(),
    ]);
    settings.conventional_ports_only = true;
    let found = discover("ivy@inside.test", &settings, None).await.unwrap();
    assert!(matches!(
        found.candidates[0].check,
        Check::NotChecked { .. }
    ));
}
