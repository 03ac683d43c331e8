//! One side of a migration, parsed once from the URL form of SPEC §5
//! (`imaps://alice%40example.com@mail.example.com:993`,
//! `ews+https://alice%40example.com@mail.example.com/EWS/Exchange.asmx`) into validated
//! settings.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The protocol an endpoint speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Imap,
    Pop3,
    /// Exchange Web Services (on-premises Exchange).
    Ews,
}

/// How the connection is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// TLS from the first byte (ports 993, 995).
    Tls,
    /// Plain connection upgraded with STARTTLS/STLS when the server offers it. Without
    /// the upgrade a password is only sent to a loopback address or when the user
    /// allowed plaintext.
    StartTls,
    /// Never upgrade (only with an explicit choice, e.g. a portal setting).
    None,
}

/// Where a mailbox lives and who logs in to it. The password travels apart, as a
/// [`crate::Secret`], because this value is printed in reports and logs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub kind: Kind,
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// The login name, decoded (`%40` is `@`). `None` when the URL names only a server,
    /// as with `--mailboxes` where each row brings its own login.
    pub login: Option<String>,
    /// The HTTP path of an EWS endpoint (`/EWS/Exchange.asmx`). `None` for EWS means
    /// "find it": autodiscover from the login's email address. Unused by IMAP and POP3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// The path of the EWS service on every Exchange server since 2007.
pub const EWS_PATH: &str = "/EWS/Exchange.asmx";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EndpointError {
    #[error("`{0}` is not a URL such as imaps://alice%40example.com@mail.example.com:993")]
    NotAUrl(String),
    #[error(
        "unsupported scheme `{0}`: use imap, imaps, pop3, pop3s, ews+https, or the \
         https:// address of Outlook on the web (…/owa)"
    )]
    UnsupportedScheme(String),
    #[error("`{0}` has no host name")]
    NoHost(String),
    #[error(
        "`{0}` contains a password: passwords never go on the command line, use the \
         MAILMOVE_SOURCE_PASSWORD / MAILMOVE_DEST_PASSWORD variables or a password file"
    )]
    PasswordInUrl(String),
}

impl Endpoint {
    /// Parses `SCHEME://[LOGIN@]HOST[:PORT][/PATH]`.
    ///
    /// EWS comes as `ews+https://` (path defaults to autodiscover when absent), or as
    /// the address people know, Outlook on the web's (`https://mail.example.com/owa`),
    /// from which the EWS address is derived; `https://…/EWS/Exchange.asmx` also works.
    pub fn parse(text: &str) -> Result<Endpoint, EndpointError> {
        let url = url::Url::parse(text).map_err(|_| EndpointError::NotAUrl(text.to_string()))?;
        let web_path = url.path().to_ascii_lowercase();
        let (kind, security, default_port) = match url.scheme() {
            "imap" => (Kind::Imap, Security::StartTls, 143),
            "imaps" => (Kind::Imap, Security::Tls, 993),
            "pop3" | "pop" => (Kind::Pop3, Security::StartTls, 110),
            "pop3s" | "pops" => (Kind::Pop3, Security::Tls, 995),
            "ews+https" | "ews" => (Kind::Ews, Security::Tls, 443),
            "ews+http" => (Kind::Ews, Security::None, 80),
            "https" if is_exchange_web_path(&web_path) => (Kind::Ews, Security::Tls, 443),
            "http" if is_exchange_web_path(&web_path) => (Kind::Ews, Security::None, 80),
            other => return Err(EndpointError::UnsupportedScheme(other.to_string())),
        };
        if url.password().is_some() {
            return Err(EndpointError::PasswordInUrl(redact_password(text)));
        }
        let host = match url.host() {
            Some(url::Host::Domain(name)) => name.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(EndpointError::NoHost(text.to_string())),
        };
        if host.is_empty() {
            return Err(EndpointError::NoHost(text.to_string()));
        }
        let login = match url.username() {
            "" => None,
            raw => Some(percent_decode(raw)),
        };
        let path = match kind {
            Kind::Ews if web_path.starts_with("/owa") => Some(EWS_PATH.to_string()),
            Kind::Ews if url.path().is_empty() || url.path() == "/" => None,
            Kind::Ews => Some(url.path().to_string()),
            Kind::Imap | Kind::Pop3 => None,
        };
        Ok(Endpoint {
            kind,
            host,
            port: url.port().unwrap_or(default_port),
            security,
            login,
            path,
        })
    }

    /// The HTTP(S) address of an EWS endpoint whose path is known.
    pub fn web_url(&self) -> Option<String> {
        let path = self.path.as_deref()?;
        Some(format!("{}{path}", self.web_origin()))
    }

    /// `https://HOST:PORT` (or `http://` without TLS): where an EWS server's web
    /// services, autodiscover included, live.
    pub fn web_origin(&self) -> String {
        let scheme = match self.security {
            Security::Tls => "https",
            Security::StartTls | Security::None => "http",
        };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }

    /// True when the host is a loopback address, where a clear-text password never
    /// leaves the machine.
    pub fn is_loopback(&self) -> bool {
        if self.host.eq_ignore_ascii_case("localhost") {
            return true;
        }
        self.host
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
    }

    /// The same server with another login (a spreadsheet row's).
    pub fn with_login(&self, login: &str) -> Endpoint {
        Endpoint {
            login: Some(login.to_string()),
            ..self.clone()
        }
    }

    fn scheme(&self) -> &'static str {
        Endpoint::scheme_of(self.kind, self.security)
    }

    /// The URL scheme for a kind of server and its security (`imaps`, `ews+https`, ...).
    pub fn scheme_of(kind: Kind, security: Security) -> &'static str {
        match (kind, security) {
            (Kind::Imap, Security::Tls) => "imaps",
            (Kind::Imap, _) => "imap",
            (Kind::Pop3, Security::Tls) => "pop3s",
            (Kind::Pop3, _) => "pop3",
            (Kind::Ews, Security::Tls) => "ews+https",
            (Kind::Ews, _) => "ews+http",
        }
    }
}

/// Paths under which Exchange serves Outlook on the web or EWS.
fn is_exchange_web_path(path: &str) -> bool {
    path.starts_with("/owa") || path.starts_with("/ews/")
}

/// The URL form, as reports show it: never a password (an endpoint has none).
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme())?;
        if let Some(login) = &self.login {
            write!(f, "{}@", login.replace('%', "%25").replace('@', "%40"))?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)?;
        } else {
            write!(f, "{}:{}", self.host, self.port)?;
        }
        match &self.path {
            Some(path) => f.write_str(path),
            None => Ok(()),
        }
    }
}

fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(value) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(value);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn redact_password(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut url) => {
            let _ = url.set_password(Some("REDACTED"));
            url.to_string()
        }
        Err(_) => "(the URL)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_of_spec_section_5() {
        let cases = [
            (
                "imaps://alice%40old.example@mail.old.example:993",
                Kind::Imap,
                Security::Tls,
                "mail.old.example",
                993,
                Some("alice@old.example"),
            ),
            (
                "imap://bob@127.0.0.1",
                Kind::Imap,
                Security::StartTls,
                "127.0.0.1",
                143,
                Some("bob"),
            ),
            (
                "imaps://mail.old.example",
                Kind::Imap,
                Security::Tls,
                "mail.old.example",
                993,
                None,
            ),
            (
                "pop3s://carol@pop.example",
                Kind::Pop3,
                Security::Tls,
                "pop.example",
                995,
                Some("carol"),
            ),
            (
                "pop3://carol@pop.example:1110",
                Kind::Pop3,
                Security::StartTls,
                "pop.example",
                1110,
                Some("carol"),
            ),
        ];
        for (text, kind, security, host, port, login) in cases {
            let endpoint = Endpoint::parse(text).unwrap();
            assert_eq!(endpoint.kind, kind, "{text}");
            assert_eq!(endpoint.security, security, "{text}");
            assert_eq!(endpoint.host, host, "{text}");
            assert_eq!(endpoint.port, port, "{text}");
            assert_eq!(endpoint.login.as_deref(), login, "{text}");
        }
    }

    #[test]
    fn exchange_endpoints_come_as_ews_urls_or_the_outlook_web_address() {
        let ews =
            Endpoint::parse("ews+https://alice%40ex.com@mail.ex.com/EWS/Exchange.asmx").unwrap();
        assert_eq!(ews.kind, Kind::Ews);
        assert_eq!(ews.security, Security::Tls);
        assert_eq!(ews.port, 443);
        assert_eq!(ews.login.as_deref(), Some("alice@ex.com"));
        assert_eq!(
            ews.web_url().as_deref(),
            Some("https://mail.ex.com:443/EWS/Exchange.asmx")
        );
        let owa = Endpoint::parse("https://alice%40ex.com@mail.ex.com/owa/").unwrap();
        assert_eq!(owa.kind, Kind::Ews);
        assert_eq!(owa.path.as_deref(), Some(EWS_PATH));
        let plain = Endpoint::parse("ews+http://bob@127.0.0.1:8080/EWS/Exchange.asmx").unwrap();
        assert_eq!(plain.security, Security::None);
        assert_eq!(
            plain.web_url().as_deref(),
            Some("http://127.0.0.1:8080/EWS/Exchange.asmx")
        );
        // No path: found by autodiscover from the login.
        let discover = Endpoint::parse("ews+https://alice%40ex.com@ex.com").unwrap();
        assert_eq!(discover.path, None);
        assert_eq!(discover.web_url(), None);
        // Any other web address is not a mail server.
        assert!(Endpoint::parse("https://www.example.com/").is_err());
    }

    #[test]
    fn display_round_trips() {
        let text = "ews+https://alice%40ex.com@mail.ex.com:443/EWS/Exchange.asmx";
        assert_eq!(Endpoint::parse(text).unwrap().to_string(), text);
        let text = "imaps://alice%40old.example@mail.old.example:993";
        assert_eq!(Endpoint::parse(text).unwrap().to_string(), text);
    }

    #[test]
    fn a_password_in_the_url_is_refused_without_echoing_it() {
        let err = Endpoint::parse("imaps://alice:hunter2@mail.example").unwrap_err();
        assert!(matches!(err, EndpointError::PasswordInUrl(_)));
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn rejects_unknown_schemes_and_missing_hosts() {
        assert!(matches!(
            Endpoint::parse("http://example.com"),
            Err(EndpointError::UnsupportedScheme(_))
        ));
        assert!(Endpoint::parse("mail.example.com").is_err());
    }

    #[test]
    fn loopback_is_recognised() {
        assert!(Endpoint::parse("imap://a@127.0.0.1").unwrap().is_loopback());
        assert!(Endpoint::parse("imap://a@localhost").unwrap().is_loopback());
        assert!(Endpoint::parse("imap://a@[::1]").unwrap().is_loopback());
        assert!(
            !Endpoint::parse("imap://a@mail.example")
                .unwrap()
                .is_loopback()
        );
    }
}
