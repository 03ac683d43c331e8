//! Finding a mailbox's servers from its address, as mail clients do: every source asked
//! at once with short time limits, the answers merged and ranked, each candidate checked
//! by connecting (verified TLS, capabilities read, no login) and each one saying where it
//! came from.
//!
//! The sources: Mozilla autoconfig (`autoconfig.rs`), the provider table shipped with
//! mailmove matched by domain and by MX host (`providers.rs`), RFC 6186 SRV records
//! (`srv.rs`), Exchange Autodiscover (`exchange.rs`, through `mailmove-ews`), and last
//! the conventional names `imap.DOMAIN` and `mail.DOMAIN` (`probe.rs`). Names are
//! resolved through one resolver (`dns.rs`): the system's, or a DNS server the caller
//! names. Everything DNS and remote servers send is hostile: answers are counted,
//! documents capped and read with limits, every step has a deadline.

mod address;
mod autoconfig;
mod dns;
mod exchange;
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod probe;
mod providers;
mod rank;
mod srv;

use std::net::SocketAddr;
use std::time::Duration;

use mailmove_model::{Kind, Secret, Security};
use mailmove_net::{NetworkPolicy, TlsOptions};
use serde::Serialize;

pub use address::{Target, TargetError};
pub use providers::{PROVIDERS, Provider};

/// The most candidates kept from all sources together.
pub const MAX_CANDIDATES: usize = 24;

/// How discovery runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The DNS server asked instead of the system's resolvers.
    pub dns_server: Option<SocketAddr>,
    /// Trust for HTTPS and mail servers: the system's roots and an extra CA.
    pub tls: TlsOptions,
    /// The longest each step may take: one DNS question, one HTTP exchange, one
    /// connection check. Sources run at once, so discovery takes a few of these.
    pub timeout: Duration,
    /// The ports used where a source names none.
    pub ports: Ports,
    /// Where discovery may connect: anywhere from the command line (the user's own
    /// network); from the portal, public addresses and the operator's `--allow-network`
    /// networks, as for its passes. Checked on each resolved address before connecting
    /// to that very address.
    pub policy: NetworkPolicy,
    /// Check only candidates on the conventional ports (or those in `ports`): a server
    /// that makes requests for strangers (the portal) is then no port scanner.
    pub conventional_ports_only: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            dns_server: None,
            tls: TlsOptions::default(),
            timeout: Duration::from_secs(5),
            ports: Ports::default(),
            policy: NetworkPolicy::Anywhere,
            conventional_ports_only: false,
        }
    }
}

/// The conventional ports, each replaceable (tests cannot count on binding 443 or 993).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    /// Autoconfig and Autodiscover over HTTPS.
    pub https: u16,
    /// Autodiscover's redirect method, over plain HTTP.
    pub http: u16,
    pub imaps: u16,
    pub imap: u16,
    pub pop3s: u16,
    pub pop3: u16,
}

impl Default for Ports {
    fn default() -> Self {
        Ports {
            https: 443,
            http: 80,
            imaps: 993,
            imap: 143,
            pop3s: 995,
            pop3: 110,
        }
    }
}

impl Ports {
    fn conventional(&self, port: u16) -> bool {
        [443, 80, 993, 143, 995, 110].contains(&port)
            || [
                self.https, self.http, self.imaps, self.imap, self.pop3s, self.pop3,
            ]
            .contains(&port)
    }
}

/// What kind of service a candidate is, as a person would name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    Imap,
    Pop,
    Exchange,
    Microsoft365,
    Google,
}

impl Service {
    pub fn label(self) -> &'static str {
        match self {
            Service::Imap => "IMAP",
            Service::Pop => "POP",
            Service::Exchange => "Exchange",
            Service::Microsoft365 => "Microsoft 365",
            Service::Google => "Google",
        }
    }
}

/// How a mailbox on a candidate signs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignIn {
    Password,
    /// OAuth2 with Google's accounts.
    OauthGoogle,
    /// OAuth2 with Microsoft Entra ID.
    OauthMicrosoft,
}

impl SignIn {
    pub fn label(self) -> &'static str {
        match self {
            SignIn::Password => "password",
            SignIn::OauthGoogle => "OAuth (Google)",
            SignIn::OauthMicrosoft => "OAuth (Microsoft)",
        }
    }
}

/// Which source proposed a candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The provider table, by the address's domain.
    Provider,
    /// The provider table, by the domain's MX host.
    Mx,
    Autoconfig,
    Srv,
    Autodiscover,
    /// A conventional name that answered with verified TLS.
    Probe,
}

/// Where a candidate came from, in words ("MX points to Google").
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Origin {
    pub source: Source,
    pub detail: String,
}

/// What connecting to a candidate showed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Check {
    /// Connected with verified TLS (from the first byte or after STARTTLS/STLS) and
    /// read the server's capabilities (for Exchange: its sign-in methods).
    Verified {
        capabilities: Vec<String>,
    },
    /// The server answered but offers no encryption: shown, never chosen.
    PlaintextOnly {
        capabilities: Vec<String>,
    },
    Failed {
        reason: String,
    },
    NotChecked {
        reason: String,
    },
}

/// One way to reach the mailbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Candidate {
    pub service: Service,
    /// The protocol mailmove speaks to it.
    pub kind: Kind,
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// The EWS path, for Exchange.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub sign_in: SignIn,
    /// The login the source suggests (autoconfig's username), when it names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
    /// A provider's name, when the provider table recognised it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    pub found_via: Vec<Origin>,
    pub check: Check,
}

impl Candidate {
    fn new(kind: Kind, host: &str, port: u16, security: Security, origin: Origin) -> Candidate {
        Candidate {
            service: match kind {
                Kind::Imap => Service::Imap,
                Kind::Pop3 => Service::Pop,
                Kind::Ews => Service::Exchange,
            },
            kind,
            host: host.trim_end_matches('.').to_ascii_lowercase(),
            port,
            security,
            path: None,
            sign_in: SignIn::Password,
            login: None,
            provider: None,
            found_via: vec![origin],
            check: Check::NotChecked {
                reason: "not checked yet".into(),
            },
        }
    }

    /// The endpoint URL mailmove takes (`imaps://imap.example.com:993`), with a login.
    pub fn url(&self, login: Option<&str>) -> String {
        let scheme = mailmove_model::Endpoint::scheme_of(self.kind, self.security);
        let user = login
            .map(|l| format!("{}@", l.replace('%', "%25").replace('@', "%40")))
            .unwrap_or_default();
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!(
            "{scheme}://{user}{host}:{}{}",
            self.port,
            self.path.as_deref().unwrap_or("")
        )
    }

    /// Where it came from, in one line: "SRV record; autoconfig at autoconfig.example.com".
    pub fn found_via_text(&self) -> String {
        let details: Vec<&str> = self.found_via.iter().map(|o| o.detail.as_str()).collect();
        details.join("; ")
    }

    pub fn is_verified(&self) -> bool {
        matches!(self.check, Check::Verified { .. })
    }
}

/// What one source said, found or not: "SRV: no records", "autoconfig at …: HTTP 404".
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SourceReport {
    pub source: Source,
    pub said: String,
}

/// The answer: ranked candidates, the one to use, and what every source said.
#[derive(Clone, Debug, Serialize)]
pub struct Discovery {
    pub address: Option<String>,
    pub domain: String,
    pub candidates: Vec<Candidate>,
    /// The candidate to use: verified and encrypted, or the provider table's own
    /// settings; `None` means the settings must be typed in.
    pub best: Option<usize>,
    pub sources: Vec<SourceReport>,
}

impl Discovery {
    pub fn best(&self) -> Option<&Candidate> {
        self.best.and_then(|i| self.candidates.get(i))
    }

    /// The best candidate that a destination can be (POP3 is read-only).
    pub fn best_for_destination(&self) -> Option<&Candidate> {
        self.candidates
            .iter()
            .find(|c| c.kind != Kind::Pop3 && rank::choosable(c))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("cannot set up the DNS resolver: {0}")]
    Resolver(String),
}

/// Finds the servers of `input` (an address or a bare domain). `password`, when
/// given, lets Exchange Autodiscover sign in and name the exact EWS address; nothing
/// else logs in.
pub async fn discover(
    input: &str,
    settings: &Settings,
    password: Option<&Secret<String>>,
) -> Result<Discovery, DiscoverError> {
    let target = Target::parse(input)?;
    let dns = dns::Dns::new(settings)?;
    let context = Context {
        target: &target,
        settings,
        dns: &dns,
    };
    let (mx, srv, autoconfig, exchange) = tokio::join!(
        providers::by_mx(&context),
        srv::find(&context),
        autoconfig::find(&context),
        exchange::find(&context, password),
    );
    let mut found = Found::default();
    found.add(providers::by_domain(&target));
    for part in [mx, srv, autoconfig, exchange] {
        found.add(part);
    }
    let mut candidates = rank::merge(found.candidates);
    probe::check_all(&context, &mut candidates).await;
    if !candidates.iter().any(rank::choosable) {
        let (probed, report) = probe::conventional_names(&context, &candidates).await;
        candidates.extend(rank::merge(probed));
        found.reports.push(report);
    }
    rank::sort(&mut candidates);
    candidates.truncate(MAX_CANDIDATES);
    let best = candidates.iter().position(rank::choosable);
    Ok(Discovery {
        address: target.address.clone(),
        domain: target.domain.clone(),
        candidates,
        best,
        sources: found.reports,
    })
}

/// What every source reads.
pub(crate) struct Context<'a> {
    pub target: &'a Target,
    pub settings: &'a Settings,
    pub dns: &'a dns::Dns,
}

/// What one source found and said.
#[derive(Default)]
pub(crate) struct Found {
    pub candidates: Vec<Candidate>,
    pub reports: Vec<SourceReport>,
}

impl Found {
    pub fn said(source: Source, said: impl Into<String>) -> Found {
        Found {
            candidates: Vec::new(),
            reports: vec![SourceReport {
                source,
                said: said.into(),
            }],
        }
    }

    fn add(&mut self, other: Found) {
        self.candidates.extend(other.candidates);
        self.reports.extend(other.reports);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(kind: Kind, host: &str, port: u16, security: Security) -> Candidate {
        let origin = Origin {
            source: Source::Srv,
            detail: "SRV record".into(),
        };
        Candidate::new(kind, host, port, security, origin)
    }

    #[test]
    fn urls_name_the_login_escaped_and_ipv6_in_brackets() {
        let imap = candidate(Kind::Imap, "Mail.Example.COM.", 993, Security::Tls);
        assert_eq!(
            imap.url(Some("alice@example.com")),
            "imaps://alice%40example.com@mail.example.com:993"
        );
        let pop = candidate(Kind::Pop3, "2001:db8::1", 110, Security::StartTls);
        assert_eq!(pop.url(Some("50%off")), "pop3://50%25off@[2001:db8::1]:110");
        let mut ews = candidate(Kind::Ews, "ex.example.com", 443, Security::Tls);
        ews.path = Some("/EWS/Exchange.asmx".into());
        assert_eq!(
            ews.url(None),
            "ews+https://ex.example.com:443/EWS/Exchange.asmx"
        );
        for url in [imap.url(Some("a@b.example")), pop.url(None), ews.url(None)] {
            mailmove_model::Endpoint::parse(&url).unwrap_or_else(|e| panic!("{url}: {e}"));
        }
    }

    #[test]
    fn a_destination_is_never_pop() {
        let verified = |mut c: Candidate| {
            c.check = Check::Verified {
                capabilities: Vec::new(),
            };
            c
        };
        let found = Discovery {
            address: Some("a@example.com".into()),
            domain: "example.com".into(),
            candidates: vec![
                verified(candidate(Kind::Pop3, "pop.example.com", 995, Security::Tls)),
                verified(candidate(
                    Kind::Imap,
                    "imap.example.com",
                    143,
                    Security::StartTls,
                )),
            ],
            best: Some(0),
            sources: Vec::new(),
        };
        assert_eq!(found.best().unwrap().kind, Kind::Pop3);
        assert_eq!(
            found.best_for_destination().unwrap().host,
            "imap.example.com"
        );
    }
}
