//! The big providers' settings, shipped as data: matched by the address's domain, and
//! by the domain's MX host, which is how a company's own domain hosted by Google or
//! Microsoft is recognised (Thunderbird does the same). Each entry names the public page
//! its settings come from.

use mailmove_model::{EWS_PATH, Kind, Security};

use crate::{Candidate, Context, Found, Origin, Service, SignIn, Source};

/// One provider.
#[derive(Clone, Copy, Debug)]
pub struct Provider {
    pub id: &'static str,
    pub name: &'static str,
    /// The name when recognised by MX (a custom domain): "Google Workspace".
    pub hosted_name: &'static str,
    pub service: Service,
    /// Its own mail domains (`gmail.com`).
    pub domains: &'static [&'static str],
    /// MX host suffixes that mean "hosted here" (`.google.com`).
    pub mx_suffixes: &'static [&'static str],
    /// IMAP and POP servers, TLS from the first byte on 993 and 995.
    pub imap: Option<&'static str>,
    pub pop: Option<&'static str>,
    /// An EWS server with the usual path, for Exchange services.
    pub ews: Option<&'static str>,
    pub sign_in: SignIn,
    /// The public page the settings come from.
    pub source: &'static str,
}

pub const PROVIDERS: &[Provider] = &[
    Provider {
        id: "google",
        name: "Gmail",
        hosted_name: "Google Workspace",
        service: Service::Google,
        domains: &["gmail.com", "googlemail.com"],
        mx_suffixes: &[".google.com", ".googlemail.com"],
        imap: Some("imap.gmail.com"),
        pop: Some("pop.gmail.com"),
        ews: None,
        sign_in: SignIn::OauthGoogle,
        source: "https://support.google.com/mail/answer/7126229",
    },
    Provider {
        id: "microsoft365",
        name: "Outlook.com",
        hosted_name: "Microsoft 365",
        service: Service::Microsoft365,
        domains: &["outlook.com", "hotmail.com", "live.com", "msn.com"],
        mx_suffixes: &[".mail.protection.outlook.com"],
        imap: Some("outlook.office365.com"),
        pop: Some("outlook.office365.com"),
        ews: Some("outlook.office365.com"),
        sign_in: SignIn::OauthMicrosoft,
        source: "https://support.microsoft.com/office/pop-imap-and-smtp-settings-for-outlook-com-d088b986-291d-42b8-9564-9c414e2aa040",
    },
    Provider {
        id: "yahoo",
        name: "Yahoo Mail",
        hosted_name: "Yahoo Mail",
        service: Service::Imap,
        domains: &["yahoo.com", "ymail.com", "rocketmail.com"],
        mx_suffixes: &[".yahoodns.net"],
        imap: Some("imap.mail.yahoo.com"),
        pop: Some("pop.mail.yahoo.com"),
        ews: None,
        sign_in: SignIn::Password,
        source: "https://help.yahoo.com/kb/SLN4075.html",
    },
    Provider {
        id: "icloud",
        name: "iCloud Mail",
        hosted_name: "iCloud Mail",
        service: Service::Imap,
        domains: &["icloud.com", "me.com", "mac.com"],
        mx_suffixes: &[".mail.icloud.com"],
        imap: Some("imap.mail.me.com"),
        pop: None,
        ews: None,
        sign_in: SignIn::Password,
        source: "https://support.apple.com/102525",
    },
    Provider {
        id: "fastmail",
        name: "Fastmail",
        hosted_name: "Fastmail",
        service: Service::Imap,
        domains: &["fastmail.com", "fastmail.fm"],
        mx_suffixes: &[".messagingengine.com"],
        imap: Some("imap.fastmail.com"),
        pop: Some("pop.fastmail.com"),
        ews: None,
        sign_in: SignIn::Password,
        source: "https://www.fastmail.help/hc/en-us/articles/1500000278342",
    },
    Provider {
        id: "zoho",
        name: "Zoho Mail",
        hosted_name: "Zoho Mail",
        service: Service::Imap,
        domains: &["zoho.com", "zohomail.com"],
        mx_suffixes: &[".zoho.com"],
        imap: Some("imap.zoho.com"),
        pop: Some("pop.zoho.com"),
        ews: None,
        sign_in: SignIn::Password,
        source: "https://www.zoho.com/mail/help/imap-access.html",
    },
    Provider {
        id: "rackspace-email",
        name: "Rackspace Email",
        hosted_name: "Rackspace Email",
        service: Service::Imap,
        domains: &[],
        mx_suffixes: &[".emailsrvr.com"],
        imap: Some("secure.emailsrvr.com"),
        pop: Some("secure.emailsrvr.com"),
        ews: None,
        sign_in: SignIn::Password,
        source: "https://docs.rackspace.com/docs/email-server-settings",
    },
];

/// The provider whose own domain this is.
pub(crate) fn by_domain(target: &crate::Target) -> Found {
    match PROVIDERS
        .iter()
        .find(|p| p.domains.contains(&target.domain.as_str()))
    {
        Some(p) => candidates_of(
            p,
            p.name,
            Origin {
                source: Source::Provider,
                detail: format!("{} is {}'s domain (provider table)", target.domain, p.name),
            },
        ),
        None => Found::default(),
    }
}

/// The provider the domain's MX points to.
pub(crate) async fn by_mx(context: &Context<'_>) -> Found {
    let domain = &context.target.domain;
    let hosts = match context.dns.mx(domain).await {
        Ok(hosts) => hosts,
        Err(e) => return Found::said(Source::Mx, format!("MX of {domain}: {e}")),
    };
    if hosts.is_empty() {
        return Found::said(Source::Mx, format!("{domain} has no MX record"));
    }
    let matched = hosts.iter().find_map(|host| {
        PROVIDERS
            .iter()
            .find(|p| p.mx_suffixes.iter().any(|s| host.ends_with(s)))
            .map(|p| (p, host))
    });
    match matched {
        Some((p, host)) => {
            let mut found = candidates_of(
                p,
                p.hosted_name,
                Origin {
                    source: Source::Mx,
                    detail: format!("MX points to {} ({host})", p.hosted_name),
                },
            );
            found.reports.push(crate::SourceReport {
                source: Source::Mx,
                said: format!("MX {host}: {}", p.hosted_name),
            });
            found
        }
        None => Found::said(
            Source::Mx,
            format!("MX {}: no provider recognised", hosts[0]),
        ),
    }
}

fn candidates_of(p: &Provider, name: &str, origin: Origin) -> Found {
    let mut candidates = Vec::new();
    let mut add = |kind: Kind, host: &str, port: u16, path: Option<&str>| {
        let mut c = Candidate::new(kind, host, port, Security::Tls, origin.clone());
        if kind != Kind::Pop3 {
            c.service = p.service;
        }
        if kind == Kind::Ews && p.service != Service::Microsoft365 {
            c.service = Service::Exchange;
        }
        c.sign_in = p.sign_in;
        c.provider = Some(name.to_string());
        c.path = path.map(str::to_string);
        candidates.push(c);
    };
    if let Some(host) = p.imap {
        add(Kind::Imap, host, 993, None);
    }
    if let Some(host) = p.ews {
        add(Kind::Ews, host, 443, Some(EWS_PATH));
    }
    if let Some(host) = p.pop {
        add(Kind::Pop3, host, 995, None);
    }
    Found {
        candidates,
        reports: Vec::new(),
    }
}

/// The provider whose servers these are, for a candidate another source found
/// (`imap.gmail.com` named by autoconfig signs in like Gmail).
pub(crate) fn by_server(host: &str) -> Option<&'static Provider> {
    PROVIDERS
        .iter()
        .find(|p| [p.imap, p.pop, p.ews].contains(&Some(host)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_names_its_source_and_a_server() {
        for p in PROVIDERS {
            assert!(p.source.starts_with("https://"), "{}", p.id);
            assert!(p.imap.is_some() || p.pop.is_some() || p.ews.is_some());
            for suffix in p.mx_suffixes {
                assert!(suffix.starts_with('.'), "{suffix} must match whole labels");
            }
        }
    }

    #[test]
    fn a_providers_own_domain() {
        let target = crate::Target::parse("someone@gmail.com").unwrap();
        let found = by_domain(&target);
        let imap = &found.candidates[0];
        assert_eq!(imap.host, "imap.gmail.com");
        assert_eq!(imap.sign_in, SignIn::OauthGoogle);
        assert_eq!(imap.service, Service::Google);
        let pop = found
            .candidates
            .iter()
            .find(|c| c.kind == Kind::Pop3)
            .unwrap();
        assert_eq!(pop.service, Service::Pop);
        assert!(
            by_domain(&crate::Target::parse("a@example.com").unwrap())
                .candidates
                .is_empty()
        );
    }
}
