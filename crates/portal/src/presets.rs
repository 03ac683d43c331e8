//! The servers people pick by name instead of typing them, and the rules that turn a
//! source or destination form (kind, preset or server address, port, security) into
//! the server-only endpoint URL a project stores (`imaps://imap.gmail.com:993`).

use mailmove_model::{Endpoint, Kind, Security};

/// A well-known mail service.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Preset {
    pub id: &'static str,
    pub name: &'static str,
    /// Its IMAP server (TLS, port 993).
    pub imap: Option<&'static str>,
    /// Its POP server (TLS, port 995).
    pub pop: Option<&'static str>,
    /// An Exchange service: offered once the EWS connector exists.
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
        "ews" => {
            return Err(format!(
                "Exchange (EWS) is not available yet as a {name}: choose IMAP (for Microsoft 365, \
                 the Microsoft 365 preset)"
            ));
        }
        other => return Err(format!("unknown {name} kind `{other}`")),
    };
    let (host, port, security) = match form.preset.as_str() {
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
                None if preset.exchange => {
                    return Err(format!(
                        "{} is an Exchange service, which is not available yet as a {name}",
                        preset.name
                    ));
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
    let scheme = match (kind, security) {
        (Kind::Imap, Security::Tls) => "imaps",
        (Kind::Imap, _) => "imap",
        (Kind::Pop3, Security::Tls) => "pop3s",
        (Kind::Pop3, _) => "pop3",
        (Kind::Ews, Security::Tls) => "ews+https",
        (Kind::Ews, _) => "ews+http",
    };
    let shown_host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    Endpoint::parse(&format!("{scheme}://{shown_host}:{port}"))
        .map(|endpoint| endpoint.to_string())
        .map_err(|_| format!("the {name} server address `{host}` is not a host name or IP address"))
}

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
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let valid = host.parse::<std::net::IpAddr>().is_ok()
        || (host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            }));
    if !valid {
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
        text => text
            .parse::<u16>()
            .ok()
            .filter(|port| *port > 0)
            .ok_or_else(|| format!("the {name} port must be a number from 1 to 65535"))?,
    };
    Ok((host.to_lowercase(), port, security))
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
    fn what_cannot_be_done_says_why() {
        let cases = [
            (
                Side::Destination,
                form("pop3", "", "x.example", "", ""),
                "POP can only be a source",
            ),
            (
                Side::Source,
                form("ews", "", "x.example", "", ""),
                "not available yet",
            ),
            (
                Side::Source,
                form("imap", "rackspace-exchange", "", "", ""),
                "Exchange service",
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
    fn stored_urls_read_like_the_form() {
        assert_eq!(
            describe("imaps://imap.gmail.com:993"),
            "IMAP, imap.gmail.com port 993, TLS (Gmail)"
        );
        assert_eq!(
            describe("imap://mail.old.example:143"),
            "IMAP, mail.old.example port 143, STARTTLS"
        );
    }
}
