//! The servers people pick by name instead of typing them, and the rules that turn a
//! source or destination form (kind, preset or server address, port, security) into
//! the server-only endpoint URL a project stores (`imaps://imap.gmail.com:993`).

use mailmove_model::{EWS_PATH, Endpoint, Kind, Security};

/// A well-known mail service.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Preset {
    pub id: &'static str,
    pub name: &'static str,
    /// Its IMAP server (TLS, port 993).
    pub imap: Option<&'static str>,
    /// Its POP server (TLS, port 995).
    pub pop: Option<&'static str>,
    /// An Exchange service whose server is not the same for every customer: chosen with
    /// the Exchange kind and the server address (or Outlook on the web address) the
    /// customer was given.
    pub exchange: bool,
}

pub(crate) const PRESETS: &[Preset] = &[
    Preset {
        id: "gmail",
        name: "Gmail",
        imap: Some("imap.gmail.com"),
        pop: Some("pop.gmail.com"),
        exchange: false,
    },
    Preset {
        id: "microsoft365",
        name: "Microsoft 365",
        imap: Some("outlook.office365.com"),
        pop: Some("outlook.office365.com"),
        exchange: false,
    },
    Preset {
        id: "yahoo",
        name: "Yahoo Mail",
        imap: Some("imap.mail.yahoo.com"),
        pop: Some("pop.mail.yahoo.com"),
        exchange: false,
    },
    Preset {
        id: "icloud",
        name: "iCloud Mail",
        imap: Some("imap.mail.me.com"),
        pop: None,
        exchange: false,
    },
    Preset {
        id: "fastmail",
        name: "Fastmail",
        imap: Some("imap.fastmail.com"),
        pop: Some("pop.fastmail.com"),
        exchange: false,
    },
    Preset {
        id: "zoho",
        name: "Zoho Mail",
        imap: Some("imap.zoho.com"),
        pop: Some("pop.zoho.com"),
        exchange: false,
    },
    Preset {
        id: "rackspace-email",
        name: "Rackspace Email",
        imap: Some("secure.emailsrvr.com"),
        pop: Some("secure.emailsrvr.com"),
        exchange: false,
    },
    Preset {
        id: "rackspace-exchange",
        name: "Rackspace Hosted Exchange",
        imap: None,
        pop: None,
        exchange: true,
    },
];

pub(crate) fn preset(id: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.id == id)
}

/// Which end of a migration a form describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Source,
    Destination,
}

impl Side {
    pub fn label(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Destination => "destination",
        }
    }
}

/// One side of the new-migration form, as typed.
#[derive(Clone, Debug, Default)]
pub(crate) struct EndpointForm {
    /// `imap`, `pop3` or `ews`.
    pub kind: String,
    /// A preset id, or empty for a server typed in.
    pub preset: String,
    pub host: String,
    pub port: String,
    /// `tls` or `starttls`.
    pub security: String,
}

/// The server-only URL for one side of the form, or what to fix, written for the person
/// filling it in.
pub(crate) fn resolve(side: Side, form: &EndpointForm) -> Result<String, String> {
    let name = side.label();
    let kind = match form.kind.as_str() {
        "imap" | "" => Kind::Imap,
        "pop3" if side == Side::Source => Kind::Pop3,
        "pop3" => return Err("POP can only be a source: choose IMAP for the destination".into()),
        "ews" => Kind::Ews,
        other => return Err(format!("unknown {name} kind `{other}`")),
    };
    let (host, port, security) = match form.preset.as_str() {
        "" if kind == Kind::Ews => exchange_server(name, form, None)?,
        "" => typed_server(name, kind, form)?,
        id => {
            let preset = preset(id).ok_or_else(|| format!("unknown {name} preset `{id}`"))?;
            let host = match kind {
                Kind::Imap => preset.imap,
                Kind::Pop3 => preset.pop,
                Kind::Ews => None,
            };
            match host {
                Some(host) => (
                    host.to_string(),
                    default_port(kind, Security::Tls),
                    Security::Tls,
                ),
                None if preset.exchange && kind == Kind::Ews => {
                    exchange_server(name, form, Some(preset))?
                }
                None if preset.exchange => {
                    return Err(format!(
                        "{} is an Exchange service: choose the Exchange kind for the {name}, \
                         and type its server address",
                        preset.name
                    ));
                }
                None if kind == Kind::Ews && preset.id == "microsoft365" => {
                    return Err(MICROSOFT_365_THROUGH_IMAP.to_string());
                }
                None => {
                    return Err(format!(
                        "{} has no {} server: choose another kind or preset",
                        preset.name,
                        kind_name(kind)
                    ));
                }
            }
        }
    };
    let scheme = Endpoint::scheme_of(kind, security);
    // Every Exchange server since 2007 serves EWS at the same path; the portal stores
    // it rather than leaving the worker to autodiscover it.
    let path = match kind {
        Kind::Ews => EWS_PATH,
        Kind::Imap | Kind::Pop3 => "",
    };
    let shown_host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    Endpoint::parse(&format!("{scheme}://{shown_host}:{port}{path}"))
        .map(|endpoint| endpoint.to_string())
        .map_err(|_| format!("the {name} server address `{host}` is not a host name or IP address"))
}

const MICROSOFT_365_THROUGH_IMAP: &str =
    "Microsoft 365 is migrated through IMAP here: choose IMAP and the Microsoft 365 preset";

/// The hosts of Microsoft 365 and Outlook.com's web mail, whose EWS refuses the
/// password logins the portal has.
const MICROSOFT_365_WEB_HOSTS: &[&str] = &[
    "outlook.office365.com",
    "outlook.office.com",
    "outlook.live.com",
    "outlook.com",
];

fn typed_server(
    name: &str,
    kind: Kind,
    form: &EndpointForm,
) -> Result<(String, u16, Security), String> {
    let host = form.host.trim();
    if host.is_empty() {
        return Err(format!(
            "enter the {name} server address, or choose a preset"
        ));
    }
    if host.contains('/') {
        return Err(format!(
            "the {name} server address must be a host name (mail.example.com), not a web \
             address: a web address such as https://mail.example.com/owa is for the Exchange kind"
        ));
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if !is_host(host) {
        return Err(format!(
            "the {name} server address must be a host name (mail.example.com) or an IP address"
        ));
    }
    let security = match form.security.as_str() {
        "tls" | "" => Security::Tls,
        "starttls" => Security::StartTls,
        other => return Err(format!("unknown {name} security `{other}`")),
    };
    let port = match form.port.trim() {
        "" => default_port(kind, security),
        text => typed_port(name, text)?,
    };
    Ok((host.to_lowercase(), port, security))
}

/// An Exchange server typed in: its host name or IP address, or the address of its
/// Outlook on the web (`https://mail.example.com/owa`, what people open in a browser)
/// or of its EWS. Always HTTPS: the portal offers no clear-text Exchange.
fn exchange_server(
    name: &str,
    form: &EndpointForm,
    preset: Option<&Preset>,
) -> Result<(String, u16, Security), String> {
    let text = form.host.trim();
    if text.is_empty() {
        return Err(match preset {
            Some(preset) => format!(
                "{} has no fixed server: type the {name} server address your provider gave \
                 you, or the address of its Outlook on the web (https://…/owa)",
                preset.name
            ),
            None => format!(
                "enter the {name} Exchange server address (mail.example.com), or the address \
                 of its Outlook on the web (https://mail.example.com/owa)"
            ),
        });
    }
    match form.security.as_str() {
        "tls" | "" => {}
        "starttls" => {
            return Err(format!(
                "Exchange is reached over TLS (HTTPS) only: choose TLS for the {name} security"
            ));
        }
        other => return Err(format!("unknown {name} security `{other}`")),
    }
    let (host, address_port) = if text.contains('/') {
        web_address(name, text)?
    } else {
        let host = text.trim_start_matches('[').trim_end_matches(']');
        if !is_host(host) {
            return Err(format!(
                "the {name} server address must be a host name (mail.example.com), an IP \
                 address, or the address of Outlook on the web (https://mail.example.com/owa)"
            ));
        }
        (host.to_lowercase(), None)
    };
    if MICROSOFT_365_WEB_HOSTS.contains(&host.as_str()) {
        return Err(MICROSOFT_365_THROUGH_IMAP.to_string());
    }
    let port = match (form.port.trim(), address_port) {
        ("", None) => default_port(Kind::Ews, Security::Tls),
        ("", Some(port)) => port,
        (text, None) => typed_port(name, text)?,
        (text, Some(port)) => {
            if typed_port(name, text)? != port {
                return Err(format!(
                    "the {name} port and the port in the {name} address differ: leave the \
                     port empty or make them the same"
                ));
            }
            port
        }
    };
    Ok((host, port, Security::Tls))
}

/// The host and port of an Outlook on the web or EWS address (`https://` may be left
/// out, as browsers show it). The text is not echoed: it may hold a password.
fn web_address(name: &str, text: &str) -> Result<(String, Option<u16>), String> {
    let with_scheme = if text.contains("://") {
        text.to_string()
    } else {
        format!("https://{text}")
    };
    let not_exchange = || {
        format!(
            "the {name} address is not the address of Outlook on the web \
             (https://mail.example.com/owa) nor of an Exchange server: type the address you \
             open to read mail in a browser, or the server's host name"
        )
    };
    let url = url::Url::parse(&with_scheme).map_err(|_| not_exchange())?;
    match url.scheme() {
        "https" => {}
        "http" => {
            return Err(format!(
                "the {name} address starts with http://: the portal reaches Exchange over \
                 HTTPS only, so type https://"
            ));
        }
        _ => return Err(not_exchange()),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "leave the login and password out of the {name} address: each mailbox brings its own"
        ));
    }
    let host = match url.host() {
        Some(url::Host::Domain(domain)) if is_host(domain) => domain.to_lowercase(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        _ => return Err(not_exchange()),
    };
    let path = url.path().to_ascii_lowercase();
    let path = path.trim_end_matches('/');
    let exchange = path.is_empty()
        || path == "/owa"
        || path.starts_with("/owa/")
        || path == "/ews/exchange.asmx";
    if !exchange {
        return Err(not_exchange());
    }
    Ok((host, url.port()))
}

fn is_host(host: &str) -> bool {
    host.parse::<std::net::IpAddr>().is_ok()
        || (host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            }))
}

fn typed_port(name: &str, text: &str) -> Result<u16, String> {
    text.parse::<u16>()
        .ok()
        .filter(|port| *port > 0)
        .ok_or_else(|| format!("the {name} port must be a number from 1 to 65535"))
}

fn default_port(kind: Kind, security: Security) -> u16 {
    match (kind, security) {
        (Kind::Imap, Security::Tls) => 993,
        (Kind::Imap, _) => 143,
        (Kind::Pop3, Security::Tls) => 995,
        (Kind::Pop3, _) => 110,
        (Kind::Ews, Security::Tls) => 443,
        (Kind::Ews, _) => 80,
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Imap => "IMAP",
        Kind::Pop3 => "POP",
        Kind::Ews => "Exchange",
    }
}

/// A stored endpoint URL as people read it: "IMAP, imap.gmail.com port 993, TLS (Gmail)".
pub(crate) fn describe(url: &str) -> String {
    let Ok(endpoint) = Endpoint::parse(url) else {
        return url.to_string();
    };
    let security = match endpoint.security {
        Security::Tls => "TLS",
        Security::StartTls => "STARTTLS",
        Security::None => "no encryption",
    };
    let known = PRESETS
        .iter()
        .find(|p| {
            let host = match endpoint.kind {
                Kind::Imap => p.imap,
                Kind::Pop3 => p.pop,
                Kind::Ews => None,
            };
            host == Some(endpoint.host.as_str())
                && endpoint.port == default_port(endpoint.kind, Security::Tls)
        })
        .map(|p| format!(" ({})", p.name))
        .unwrap_or_default();
    format!(
        "{}, {} port {}, {security}{known}",
        kind_name(endpoint.kind),
        endpoint.host,
        endpoint.port
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(kind: &str, preset: &str, host: &str, port: &str, security: &str) -> EndpointForm {
        EndpointForm {
            kind: kind.into(),
            preset: preset.into(),
            host: host.into(),
            port: port.into(),
            security: security.into(),
        }
    }

    #[test]
    fn presets_and_typed_servers_become_urls() {
        let cases = [
            (
                Side::Source,
                form("imap", "gmail", "", "", ""),
                "imaps://imap.gmail.com:993",
            ),
            (
                Side::Source,
                form("pop3", "gmail", "", "", ""),
                "pop3s://pop.gmail.com:995",
            ),
            (
                Side::Destination,
                form("imap", "rackspace-email", "ignored", "1", "starttls"),
                "imaps://secure.emailsrvr.com:993",
            ),
            (
                Side::Source,
                form("imap", "", "Mail.Old.Example", "", "starttls"),
                "imap://mail.old.example:143",
            ),
            (
                Side::Source,
                form("pop3", "", "10.0.0.5", "", "tls"),
                "pop3s://10.0.0.5:995",
            ),
            (
                Side::Source,
                form("pop3", "", "10.0.0.5", "", "starttls"),
                "pop3://10.0.0.5:110",
            ),
            (
                Side::Destination,
                form("imap", "", "::1", "1993", "tls"),
                "imaps://[::1]:1993",
            ),
        ];
        for (side, form, expected) in cases {
            assert_eq!(resolve(side, &form).as_deref(), Ok(expected), "{form:?}");
        }
    }

    #[test]
    fn exchange_servers_are_typed_or_pasted_from_outlook_on_the_web() {
        let ews = "ews+https://mail.corp.example:443/EWS/Exchange.asmx";
        let cases = [
            (
                Side::Destination,
                form("ews", "", "mail.corp.example", "", ""),
                ews,
            ),
            (
                Side::Source,
                form("ews", "", "Mail.Corp.Example", "", "tls"),
                ews,
            ),
            (
                Side::Source,
                form("ews", "", "https://mail.corp.example/owa", "", ""),
                ews,
            ),
            (
                Side::Source,
                form("ews", "", " https://MAIL.corp.example/OWA/ ", "", ""),
                ews,
            ),
            (
                Side::Source,
                form("ews", "", "mail.corp.example/owa/", "", ""),
                ews,
            ),
            (
                Side::Source,
                form(
                    "ews",
                    "",
                    "https://mail.corp.example/owa/#path=/mail/inbox",
                    "",
                    "",
                ),
                ews,
            ),
            (
                Side::Source,
                form(
                    "ews",
                    "",
                    "https://mail.corp.example/owa/auth/logon.aspx?replaceCurrent=1",
                    "",
                    "",
                ),
                ews,
            ),
            (
                Side::Destination,
                form(
                    "ews",
                    "",
                    "https://mail.corp.example/EWS/Exchange.asmx",
                    "",
                    "",
                ),
                ews,
            ),
            (
                Side::Destination,
                form("ews", "", "https://mail.corp.example/", "", ""),
                ews,
            ),
            (
                Side::Destination,
                form("ews", "rackspace-exchange", "mail.corp.example", "", ""),
                ews,
            ),
            (
                Side::Source,
                form("ews", "", "https://mail.corp.example:8443/owa", "", ""),
                "ews+https://mail.corp.example:8443/EWS/Exchange.asmx",
            ),
            (
                Side::Source,
                form("ews", "", "https://mail.corp.example:8443/owa", "8443", ""),
                "ews+https://mail.corp.example:8443/EWS/Exchange.asmx",
            ),
            (
                Side::Source,
                form("ews", "", "10.0.0.9", "4443", ""),
                "ews+https://10.0.0.9:4443/EWS/Exchange.asmx",
            ),
            (
                Side::Source,
                form("ews", "", "https://[::1]/owa", "", ""),
                "ews+https://[::1]:443/EWS/Exchange.asmx",
            ),
        ];
        for (side, form, expected) in cases {
            assert_eq!(resolve(side, &form).as_deref(), Ok(expected), "{form:?}");
        }
    }

    #[test]
    fn what_cannot_be_done_says_why() {
        let cases = [
            (
                Side::Destination,
                form("pop3", "", "x.example", "", ""),
                "POP can only be a source",
            ),
            (
                Side::Source,
                form("imap", "rackspace-exchange", "", "", ""),
                "is an Exchange service: choose the Exchange kind",
            ),
            (
                Side::Source,
                form("ews", "rackspace-exchange", "", "", ""),
                "has no fixed server: type the source server address",
            ),
            (
                Side::Destination,
                form("ews", "", "", "", ""),
                "enter the destination Exchange server address",
            ),
            (
                Side::Destination,
                form("ews", "", "http://mail.corp.example/owa", "", ""),
                "HTTPS only",
            ),
            (
                Side::Destination,
                form("ews", "", "https://www.corp.example/intranet", "", ""),
                "not the address of Outlook on the web",
            ),
            (
                Side::Destination,
                form("ews", "", "ftp://mail.corp.example/owa", "", ""),
                "not the address of Outlook on the web",
            ),
            (
                Side::Destination,
                form("ews", "", "mail corp example", "", ""),
                "must be a host name",
            ),
            (
                Side::Destination,
                form("ews", "", "mail.corp.example", "", "starttls"),
                "TLS (HTTPS) only",
            ),
            (
                Side::Destination,
                form("ews", "", "https://mail.corp.example:8443/owa", "443", ""),
                "differ",
            ),
            (
                Side::Destination,
                form("ews", "", "https://outlook.office365.com/owa/", "", ""),
                "Microsoft 365 is migrated through IMAP",
            ),
            (
                Side::Destination,
                form("ews", "microsoft365", "", "", ""),
                "Microsoft 365 is migrated through IMAP",
            ),
            (
                Side::Destination,
                form("ews", "gmail", "", "", ""),
                "Gmail has no Exchange server",
            ),
            (
                Side::Destination,
                form("imap", "", "https://mail.corp.example/owa", "", ""),
                "is for the Exchange kind",
            ),
            (
                Side::Source,
                form("pop3", "icloud", "", "", ""),
                "has no POP server",
            ),
            (
                Side::Source,
                form("imap", "", "", "", ""),
                "enter the source server address",
            ),
            (
                Side::Source,
                form("imap", "", "mail example", "", ""),
                "host name",
            ),
            (
                Side::Source,
                form("imap", "", "a.example", "99999", ""),
                "port must be",
            ),
            (
                Side::Source,
                form("imap", "nope", "", "", ""),
                "unknown source preset",
            ),
        ];
        for (side, form, expected) in cases {
            let error = resolve(side, &form).unwrap_err();
            assert!(error.contains(expected), "{form:?}: {error}");
        }
    }

    #[test]
    fn a_password_in_an_outlook_address_is_refused_and_not_repeated() {
        let error = resolve(
            Side::Source,
            &form(
                "ews",
                "",
                "https://alice:hunter2@mail.corp.example/owa",
                "",
                "",
            ),
        )
        .unwrap_err();
        assert!(
            error.contains("leave the login and password out"),
            "{error}"
        );
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn stored_urls_read_like_the_form() {
        assert_eq!(
            describe("imaps://imap.gmail.com:993"),
            "IMAP, imap.gmail.com port 993, TLS (Gmail)"
        );
        assert_eq!(
            describe("imap://mail.old.example:143"),
            "IMAP, mail.old.example port 143, STARTTLS"
        );
        assert_eq!(
            describe("ews+https://mail.corp.example:443/EWS/Exchange.asmx"),
            "Exchange, mail.corp.example port 443, TLS"
        );
    }
}
