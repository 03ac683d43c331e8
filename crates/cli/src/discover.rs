//! `mailmove discover ADDRESS` and the `auto:ADDRESS` endpoints of migrate, check and
//! verify: the settings found for an address, printed with where each came from; the
//! best one used in place of a URL, and said so.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use mailmove_discover::{Candidate, Check, Discovery, Ports, Settings, discover};
use mailmove_engine::TlsOptions;
use mailmove_model::{Kind, Secret};

use crate::args::Servers;

/// How discovery asks, for `discover` and for `auto:` endpoints.
#[derive(Debug, Args)]
pub struct DiscoveryArgs {
    /// Ask this DNS server (IP:PORT, or IP for port 53) instead of the system's, when finding settings from an address
    #[arg(long, value_name = "ADDR", env = "MAILMOVE_DNS_SERVER")]
    pub dns_server: Option<String>,
    /// Seconds each discovery step (a DNS question, an HTTP request, a connection check) may take
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    pub discovery_timeout: u64,
    /// Ports used in place of the conventional ones by discovery, e.g. https=8443,imaps=10993 (for tests)
    #[arg(
        long,
        value_name = "LIST",
        env = "MAILMOVE_DISCOVERY_PORTS",
        hide = true
    )]
    pub discovery_ports: Option<String>,
}

impl DiscoveryArgs {
    pub fn settings(&self, tls: TlsOptions) -> Result<Settings> {
        Ok(Settings {
            dns_server: self
                .dns_server
                .as_deref()
                .map(parse_dns_server)
                .transpose()?,
            tls,
            timeout: Duration::from_secs(self.discovery_timeout.clamp(1, 60)),
            ports: match &self.discovery_ports {
                Some(text) => parse_ports(text)?,
                None => Ports::default(),
            },
            policy: mailmove_net::NetworkPolicy::Anywhere,
            conventional_ports_only: false,
        })
    }
}

#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// The mailbox address (alice@example.com) or its domain
    pub address: String,
    /// Print the findings as JSON
    #[arg(long)]
    pub json: bool,
    /// Also trust the certificate authorities in this PEM file
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    #[command(flatten)]
    pub discovery: DiscoveryArgs,
}

/// `mailmove discover`: exit 0 when a server to use was found, 1 when none was (only
/// servers that cannot be chosen, plaintext or unverified, or nothing at all).
pub async fn run(args: DiscoverArgs) -> Result<u8> {
    let tls = TlsOptions {
        extra_ca: args.tls_ca.clone(),
        accept_invalid_certs: false,
    };
    let settings = args.discovery.settings(tls)?;
    let found = discover(&args.address, &settings, None).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&found)?);
    } else {
        print_findings(&found);
    }
    Ok(if found.best.is_some() {
        crate::OK
    } else {
        crate::ITEM_ERRORS
    })
}

fn print_findings(found: &Discovery) {
    let shown = found.address.as_deref().unwrap_or(&found.domain);
    match found.best() {
        Some(best) => println!("Best for {shown}: {}", describe(best)),
        None => println!(
            "No settings to use were found for {shown}: type the server in (imaps://LOGIN@HOST)."
        ),
    }
    for (i, candidate) in found.candidates.iter().enumerate() {
        let mark = if Some(i) == found.best { "*" } else { " " };
        println!(" {mark} {}", describe(candidate));
        println!("     found via: {}", candidate.found_via_text());
        println!("     check: {}", check_text(&candidate.check));
    }
    println!("What each source said:");
    for report in &found.sources {
        println!("   {}", report.said);
    }
}

/// "IMAP imaps://imap.example.com:993, sign-in: password"
fn describe(candidate: &Candidate) -> String {
    let provider = candidate
        .provider
        .as_deref()
        .map(|p| format!(" ({p})"))
        .unwrap_or_default();
    format!(
        "{}{provider} {}, sign-in: {}",
        candidate.service.label(),
        candidate.url(None),
        candidate.sign_in.label()
    )
}

fn check_text(check: &Check) -> String {
    match check {
        Check::Verified { capabilities } if capabilities.is_empty() => {
            "connected, TLS verified".into()
        }
        Check::Verified { capabilities } => format!(
            "connected, TLS verified; offers {}",
            capabilities
                .iter()
                .take(12)
                .cloned()
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Check::PlaintextOnly { .. } => {
            "answers without encryption only: not chosen (passwords would go in clear)".into()
        }
        Check::Failed { reason } => format!("failed: {reason}"),
        Check::NotChecked { reason } => format!("not checked: {reason}"),
    }
}

/// Replaces `auto:ADDRESS` in `--source` and `--dest` with the best discovered
/// settings, and says on stderr what was chosen and why.
pub async fn resolve_auto(servers: &mut Servers) -> Result<()> {
    let tls = servers.connection.options().tls;
    for side in ["source", "destination"] {
        let text = if side == "source" {
            &servers.source
        } else {
            &servers.dest
        };
        let Some(address) = text.strip_prefix("auto:") else {
            continue;
        };
        let address = address.to_string();
        let password = if side == "source" {
            servers.passwords.source()
        } else {
            servers.passwords.dest()
        }
        .ok()
        .flatten();
        let settings = servers.discovery.settings(tls.clone())?;
        let url = chosen_url(side, &address, &settings, password.as_ref()).await?;
        if side == "source" {
            servers.source = url;
        } else {
            servers.dest = url;
        }
    }
    Ok(())
}

async fn chosen_url(
    side: &str,
    address: &str,
    settings: &Settings,
    password: Option<&Secret<String>>,
) -> Result<String> {
    let found = discover(address, settings, password)
        .await
        .with_context(|| format!("finding the {side} settings for {address}"))?;
    let best = if side == "source" {
        found.best()
    } else {
        found.best_for_destination()
    };
    let Some(best) = best else {
        let said: Vec<&str> = found.sources.iter().map(|r| r.said.as_str()).collect();
        bail!(
            "no {side} settings could be found for {address} ({}); give the server as a URL \
             such as imaps://LOGIN@HOST instead",
            said.join("; ")
        );
    };
    let login = best.login.clone().or_else(|| found.address.clone());
    let url = best.url(login.as_deref());
    eprintln!(
        "{side}: auto:{address} → {url} ({}, found via {}; {})",
        best.service.label(),
        best.found_via_text(),
        check_text(&best.check)
    );
    if best.sign_in != mailmove_discover::SignIn::Password {
        let flag = if side == "source" {
            "--source-oauth"
        } else {
            "--dest-oauth"
        };
        eprintln!(
            "note: {} signs in with {}: pass {flag} PROFILE (a profile of that provider, see \
             mailmove auth login)",
            best.host,
            best.sign_in.label()
        );
    }
    if best.kind == Kind::Pop3 && side == "source" {
        eprintln!("note: only POP was found: the source's INBOX alone will be copied");
    }
    Ok(url)
}

fn parse_dns_server(text: &str) -> Result<SocketAddr> {
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(address);
    }
    match text.parse::<std::net::IpAddr>() {
        Ok(ip) => Ok(SocketAddr::new(ip, 53)),
        Err(_) => bail!(
            "--dns-server `{text}` is not an IP address with an optional port, such as 192.0.2.53 or 127.0.0.1:5353"
        ),
    }
}

fn parse_ports(text: &str) -> Result<Ports> {
    let mut ports = Ports::default();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = part
            .split_once('=')
            .with_context(|| format!("`{part}` is not NAME=PORT"))?;
        let port: u16 = value
            .parse()
            .with_context(|| format!("`{value}` is not a port"))?;
        match name {
            "https" => ports.https = port,
            "http" => ports.http = port,
            "imaps" => ports.imaps = port,
            "imap" => ports.imap = port,
            "pop3s" => ports.pop3s = port,
            "pop3" => ports.pop3 = port,
            other => {
                bail!("unknown port name `{other}`: use https, http, imaps, imap, pop3s or pop3")
            }
        }
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_server_and_ports() {
        assert_eq!(parse_dns_server("127.0.0.1:5353").unwrap().port(), 5353);
        assert_eq!(parse_dns_server("192.0.2.1").unwrap().port(), 53);
        assert!(parse_dns_server("dns.example").is_err());
        let ports = parse_ports("https=8443, imaps=10993").unwrap();
        assert_eq!((ports.https, ports.imaps, ports.imap), (8443, 10993, 143));
        assert!(parse_ports("smtp=25").is_err());
    }
}
