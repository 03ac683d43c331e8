//! One side of a migration, parsed once from the URL form of SPEC §5
//! (`imaps://alice%40example.com@mail.example.com:993`) into validated settings.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The protocol an endpoint speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Imap,
    Pop3,
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
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EndpointError {
    #[error("`{0}` is not a URL such as imaps://alice%40example.com@mail.example.com:993")]
    NotAUrl(String),
    #[error("unsupported scheme `{0}`: use imap, imaps, pop3 or pop3s")]
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
    /// Parses `SCHEME://[LOGIN@]HOST[:PORT]`.
    pub fn parse(text: &str) -> Result<Endpoint, EndpointError> {
        let url = url::Url::parse(text).map_err(|_| EndpointError::NotAUrl(text.to_string()))?;
        let (kind, security, default_port) = match url.scheme() {
            "imap" => (Kind::Imap, Security::StartTls, 143),
            "imaps" => (Kind::Imap, Security::Tls, 993),
            "pop3" | "pop" => (Kind::Pop3, Security::StartTls, 110),
            "pop3s" | "pops" => (Kind::Pop3, Security::Tls, 995),
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
        Ok(Endpoint {
            kind,
            host,
            port: url.port().unwrap_or(default_port),
            security,
            login,
        })
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
        match (self.kind, self.security) {
            (Kind::Imap, Security::Tls) => "imaps",
            (Kind::Imap, _) => "imap",
            (Kind::Pop3, Security::Tls) => "pop3s",
            (Kind::Pop3, _) => "pop3",
        }
    }
}

/// The URL form, as reports show it: never a password (an endpoint has none).
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme())?;
        if let Some(login) = &self.login {
            write!(f, "{}@", login.replace('%', "%25").replace('@', "%40"))?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
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
    fn display_round_trips() {
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
