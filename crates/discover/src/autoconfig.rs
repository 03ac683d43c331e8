//! Mozilla autoconfig (the `clientConfig` XML, version 1.1, as Thunderbird reads it):
//! `https://autoconfig.DOMAIN/mail/config-v1.1.xml?emailaddress=ADDRESS`,
//! `https://DOMAIN/.well-known/autoconfig/mail/config-v1.1.xml`, and, as Thunderbird
//! does, `http://autoconfig.DOMAIN/mail/config-v1.1.xml` (without the address, which
//! would travel in clear), all asked at once. Anyone on the path can write a document
//! fetched over plain HTTP, so only the servers it names in the domain itself
//! (`imap.example.com` for `example.com`) are kept, and those are used only when their
//! TLS verifies: a check that fails or finds no encryption leaves them unchosen
//! (`rank::choosable`). The document is hostile:
//! at most 64 KiB, 16 levels, 500 elements and 8 incoming servers are read, and each
//! text at most 255 characters.

use http::Method;
use mailmove_model::{Kind, Security};
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use url::Url;

use crate::{Candidate, Context, Found, Origin, Source, SourceReport, Target};

const MAX_BYTES: usize = 64 * 1024;
const MAX_DEPTH: usize = 16;
const MAX_ELEMENTS: usize = 500;
const MAX_SERVERS: usize = 8;
const MAX_TEXT: usize = 255;

pub(crate) async fn find(context: &Context<'_>) -> Found {
    let ports = context.settings.ports;
    let urls = urls(context.target, ports.https, ports.http);
    let fetched = futures_util::future::join_all(urls.iter().map(|url| fetch(context, url))).await;
    let mut found = Found::default();
    for (url, result) in urls.iter().zip(fetched) {
        let host = match url.scheme() {
            "http" => format!("http://{} (plain HTTP)", url.host_str().unwrap_or_default()),
            _ => url.host_str().unwrap_or_default().to_string(),
        };
        let said = match result {
            Ok(servers) => {
                let count = servers.len();
                for server in servers {
                    let candidate = server.candidate(context.target, &host);
                    if url.scheme() == "http" && !within(&candidate.host, &context.target.domain) {
                        found.reports.push(SourceReport {
                            source: Source::Autoconfig,
                            said: format!(
                                "autoconfig at {host} names {}, outside {}: ignored (a document \
                                 sent in clear may only name the domain's own servers)",
                                candidate.host, context.target.domain
                            ),
                        });
                        continue;
                    }
                    found.candidates.push(candidate);
                }
                let plural = if count == 1 { "" } else { "s" };
                format!("autoconfig at {host}: {count} incoming server{plural}")
            }
            Err(e) => format!("autoconfig at {host}: {e}"),
        };
        found.reports.push(SourceReport {
            source: Source::Autoconfig,
            said,
        });
    }
    found
}

fn urls(target: &Target, https_port: u16, http_port: u16) -> Vec<Url> {
    let domain = &target.domain;
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    let plain_port = if http_port == 80 {
        String::new()
    } else {
        format!(":{http_port}")
    };
    let mut first = format!("https://autoconfig.{domain}{port}/mail/config-v1.1.xml");
    if let Some(address) = &target.address {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("emailaddress", address)
            .finish();
        first = format!("{first}?{query}");
    }
    let second = format!("https://{domain}{port}/.well-known/autoconfig/mail/config-v1.1.xml");
    let plain = format!("http://autoconfig.{domain}{plain_port}/mail/config-v1.1.xml");
    [first, second, plain]
        .iter()
        .filter_map(|u| Url::parse(u).ok())
        .collect()
}

async fn fetch(context: &Context<'_>, url: &Url) -> Result<Vec<Server>, String> {
    let answer = crate::http::request(context, Method::GET, url, None, MAX_BYTES).await?;
    if answer.status != 200 {
        return Err(format!("HTTP {}", answer.status));
    }
    parse(&answer.body)
}

/// One `incomingServer`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Server {
    pub kind: String,
    pub hostname: String,
    pub port: String,
    pub socket_type: String,
    pub username: String,
    pub authentication: Vec<String>,
}

impl Server {
    fn candidate(&self, target: &Target, from_host: &str) -> Candidate {
        let kind = if self.kind == "pop3" {
            Kind::Pop3
        } else {
            Kind::Imap
        };
        let security = match self.socket_type.to_ascii_uppercase().as_str() {
            "SSL" | "TLS" => Security::Tls,
            "STARTTLS" => Security::StartTls,
            _ => Security::None,
        };
        let host = substitute(&self.hostname, target);
        let port = self.port.trim().parse().unwrap_or(match (kind, security) {
            (Kind::Pop3, Security::Tls) => 995,
            (Kind::Pop3, _) => 110,
            (_, Security::Tls) => 993,
            _ => 143,
        });
        let mut candidate = Candidate::new(
            kind,
            &host,
            port,
            security,
            Origin {
                source: Source::Autoconfig,
                detail: format!("autoconfig at {from_host}"),
            },
        );
        let login = substitute(&self.username, target);
        candidate.login = (!login.is_empty() && !login.contains('%')).then_some(login);
        // A provider's server signs in as the provider says (Gmail named by a domain's
        // autoconfig still wants OAuth).
        if let Some(p) = crate::providers::by_server(&candidate.host) {
            candidate.sign_in = p.sign_in;
            candidate.provider = Some(p.name.to_string());
        }
        candidate
    }
}

/// Thunderbird's placeholders: `%EMAILADDRESS%`, `%EMAILLOCALPART%`, `%EMAILDOMAIN%`.
fn substitute(text: &str, target: &Target) -> String {
    let local = target
        .address
        .as_deref()
        .and_then(|a| a.rsplit_once('@'))
        .map(|(l, _)| l)
        .unwrap_or("%EMAILLOCALPART%");
    let address = target.address.as_deref().unwrap_or("%EMAILADDRESS%");
    text.trim()
        .replace("%EMAILADDRESS%", address)
        .replace("%EMAILLOCALPART%", local)
        .replace("%EMAILDOMAIN%", &target.domain)
}

/// Reads the incoming servers of a `clientConfig` document, with the limits above.
pub(crate) fn parse(bytes: &[u8]) -> Result<Vec<Server>, String> {
    if bytes.len() > MAX_BYTES {
        return Err(format!(
            "the document is larger than {} KiB",
            MAX_BYTES / 1024
        ));
    }
    let mut reader = Reader::from_reader(bytes);
    reader.config_mut().trim_text(true);
    let mut buf = Vec::new();
    let mut path: Vec<String> = Vec::new();
    let mut servers: Vec<Server> = Vec::new();
    let mut elements = 0usize;
    let mut text = String::new();
    let mut root_seen = false;
    loop {
        buf.clear();
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| format!("not XML: {e}"))?;
        match event {
            Event::Start(start) => {
                elements += 1;
                if elements > MAX_ELEMENTS || path.len() >= MAX_DEPTH {
                    return Err("the document is too deep or has too many elements".into());
                }
                let name = local_name(&start);
                if path.is_empty() {
                    if name != "clientConfig" {
                        return Err("not a clientConfig document".into());
                    }
                    root_seen = true;
                }
                if name == "incomingServer"
                    && path.last().map(String::as_str) == Some("emailProvider")
                {
                    if servers.len() >= MAX_SERVERS {
                        return Err(format!("more than {MAX_SERVERS} incoming servers"));
                    }
                    servers.push(Server {
                        kind: attribute(&start, "type")?,
                        ..Server::default()
                    });
                }
                path.push(name);
                text.clear();
            }
            Event::Empty(_) => {
                elements += 1;
                if elements > MAX_ELEMENTS {
                    return Err("the document has too many elements".into());
                }
            }
            Event::Text(t) => push_text(&mut text, &t.xml10_content())?,
            Event::CData(t) => push_text(&mut text, &t.xml10_content())?,
            Event::GeneralRef(reference) => {
                let name = reference.xml10_content();
                let reference = format!("&{name};");
                let resolved = quick_xml::escape::unescape(&reference)
                    .map_err(|_| format!("unknown entity {reference}"))?;
                push_text(&mut text, &resolved)?;
            }
            Event::End(_) => {
                let name = path.pop().ok_or("unbalanced end tag")?;
                let in_server = path.last().map(String::as_str) == Some("incomingServer");
                if let (true, Some(server)) = (in_server, servers.last_mut()) {
                    let value = std::mem::take(&mut text);
                    match name.as_str() {
                        "hostname" => server.hostname = value,
                        "port" => server.port = value,
                        "socketType" => server.socket_type = value,
                        "username" => server.username = value,
                        "authentication" if server.authentication.len() < 8 => {
                            server.authentication.push(value)
                        }
                        _ => {}
                    }
                }
                text.clear();
            }
            Event::DocType(_) => return Err("a document type declaration is not accepted".into()),
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }
    if !root_seen || !path.is_empty() {
        return Err("not a complete clientConfig document".into());
    }
    servers.retain(|s| {
        matches!(s.kind.as_str(), "imap" | "pop3") && is_host_name(&s.hostname.replace('%', ""))
    });
    Ok(servers)
}

fn local_name(start: &BytesStart<'_>) -> String {
    start.local_name().as_ref().to_string()
}

fn attribute(start: &BytesStart<'_>, key: &str) -> Result<String, String> {
    for attribute in start.attributes().take(16) {
        let attribute = attribute.map_err(|e| format!("bad attribute: {e}"))?;
        if attribute.key.local_name().as_ref() == key {
            let value = attribute
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| format!("bad attribute: {e}"))?;
            return Ok(value.chars().take(MAX_TEXT).collect());
        }
    }
    Ok(String::new())
}

fn push_text(text: &mut String, more: &str) -> Result<(), String> {
    if text.len() + more.len() > MAX_TEXT {
        return Err(format!("a value is longer than {MAX_TEXT} characters"));
    }
    text.push_str(more);
    Ok(())
}

/// `host` is `domain` or a name under it.
fn within(host: &str, domain: &str) -> bool {
    host == domain || host.ends_with(&format!(".{domain}"))
}

fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const THUNDERBIRD_STYLE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="example.com">
    <domain>example.com</domain>
    <displayName>Example Mail</displayName>
    <incomingServer type="imap">
      <hostname>imap.%EMAILDOMAIN%</hostname>
      <port>993</port>
      <socketType>SSL</socketType>
      <username>%EMAILADDRESS%</username>
      <authentication>password-cleartext</authentication>
    </incomingServer>
    <incomingServer type="pop3">
      <hostname>pop.example.com</hostname>
      <port>110</port>
      <socketType>STARTTLS</socketType>
      <username>%EMAILLOCALPART%</username>
      <authentication>password-cleartext</authentication>
    </incomingServer>
    <outgoingServer type="smtp">
      <hostname>smtp.example.com</hostname>
      <port>465</port>
      <socketType>SSL</socketType>
    </outgoingServer>
  </emailProvider>
</clientConfig>"#;

    #[test]
    fn reads_incoming_servers_with_placeholders() {
        let servers = parse(THUNDERBIRD_STYLE.as_bytes()).unwrap();
        assert_eq!(servers.len(), 2, "the outgoing server is not read");
        let target = Target::parse("alice@example.com").unwrap();
        let imap = servers[0].candidate(&target, "autoconfig.example.com");
        assert_eq!(imap.url(None), "imaps://imap.example.com:993");
        assert_eq!(imap.login.as_deref(), Some("alice@example.com"));
        assert_eq!(
            imap.found_via_text(),
            "autoconfig at autoconfig.example.com"
        );
        let pop = servers[1].candidate(&target, "example.com");
        assert_eq!(pop.url(None), "pop3://pop.example.com:110");
        assert_eq!(pop.login.as_deref(), Some("alice"));
    }

    #[test]
    fn hostile_documents_are_refused() {
        let entity = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><clientConfig><emailProvider><incomingServer type="imap"><hostname>&lol2;</hostname></incomingServer></emailProvider></clientConfig>"#;
        assert!(parse(entity.as_bytes()).is_err(), "DTDs and their entities");
        let deep = format!(
            "<clientConfig>{}{}</clientConfig>",
            "<a>".repeat(100),
            "</a>".repeat(100)
        );
        assert!(parse(deep.as_bytes()).unwrap_err().contains("too deep"));
        let many = format!(
            "<clientConfig><emailProvider>{}</emailProvider></clientConfig>",
            r#"<incomingServer type="imap"><hostname>h.example</hostname></incomingServer>"#
                .repeat(9)
        );
        assert!(parse(many.as_bytes()).unwrap_err().contains("more than 8"));
        let long = format!(
            "<clientConfig><emailProvider><incomingServer type=\"imap\"><hostname>{}</hostname></incomingServer></emailProvider></clientConfig>",
            "a".repeat(300)
        );
        assert!(parse(long.as_bytes()).unwrap_err().contains("longer than"));
        let big = vec![b' '; MAX_BYTES + 1];
        assert!(parse(&big).is_err());
        for bad in [
            "",
            "<html><body>Not found</body></html>",
            "<clientConfig><emailProvider>",
            "\u{0}\u{1}",
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        let odd_host = r#"<clientConfig><emailProvider><incomingServer type="imap"><hostname>evil host/x</hostname></incomingServer><incomingServer type="smtp"><hostname>s.example</hostname></incomingServer></emailProvider></clientConfig>"#;
        assert_eq!(parse(odd_host.as_bytes()).unwrap(), Vec::new());
    }

    #[test]
    fn both_addresses_and_the_port_override() {
        let target = Target::parse("a+b@example.com").unwrap();
        let urls: Vec<String> = urls(&target, 8443, 8080)
            .iter()
            .map(Url::to_string)
            .collect();
        assert_eq!(
            urls,
            [
                "https://autoconfig.example.com:8443/mail/config-v1.1.xml?emailaddress=a%2Bb%40example.com",
                "https://example.com:8443/.well-known/autoconfig/mail/config-v1.1.xml",
                "http://autoconfig.example.com:8080/mail/config-v1.1.xml",
            ]
        );
    }
}
