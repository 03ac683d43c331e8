//! What discovery starts from: an email address or a bare domain, checked once.

use serde::Serialize;

/// A mailbox address (`alice@example.com`) or a domain (`example.com`), validated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Target {
    /// The whole address, when one was given.
    pub address: Option<String>,
    /// The domain in its ASCII form (`bücher.example` → `xn--bcher-kva.example`).
    pub domain: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("type an email address such as alice@example.com, or its domain")]
    Empty,
    #[error("`{0}` is not an email address or a domain: {1}")]
    Invalid(String, &'static str),
}

impl Target {
    pub fn parse(input: &str) -> Result<Target, TargetError> {
        let text = input.trim();
        if text.is_empty() {
            return Err(TargetError::Empty);
        }
        let invalid = |why| TargetError::Invalid(shown(text), why);
        if text.len() > 320 || text.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(invalid("too long, or it has spaces"));
        }
        let (local, domain) = match text.rsplit_once('@') {
            Some((local, domain)) => (Some(local), domain),
            None => (None, text),
        };
        if local.is_some_and(|l| l.is_empty() || l.len() > 64) {
            return Err(invalid("the part before @ is empty or too long"));
        }
        let domain = ascii_domain(domain.trim_end_matches('.'))
            .ok_or_else(|| invalid("the domain must be a name with a dot, such as example.com"))?;
        Ok(Target {
            address: local.map(|l| format!("{l}@{domain}")),
            domain,
        })
    }

    /// The address, or the domain when none was given.
    pub fn shown(&self) -> &str {
        self.address.as_deref().unwrap_or(&self.domain)
    }
}

/// The domain in ASCII, lower case, when it is a host name with at least two labels.
fn ascii_domain(text: &str) -> Option<String> {
    let host = url::Host::parse(text).ok()?;
    let url::Host::Domain(name) = host else {
        return None;
    };
    let name = name.to_ascii_lowercase();
    let labels_ok = name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    (name.len() <= 253 && name.contains('.') && labels_ok).then_some(name)
}

/// At most 80 characters of what was typed, for an error message.
fn shown(text: &str) -> String {
    text.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_domains() {
        let alice = Target::parse(" alice@Example.COM ").unwrap();
        assert_eq!(alice.address.as_deref(), Some("alice@example.com"));
        assert_eq!(alice.domain, "example.com");
        let domain = Target::parse("example.org.").unwrap();
        assert_eq!(domain.address, None);
        assert_eq!(domain.domain, "example.org");
        let idn = Target::parse("bob@bücher.example").unwrap();
        assert_eq!(idn.domain, "xn--bcher-kva.example");
    }

    #[test]
    fn what_is_refused() {
        for bad in [
            "",
            "   ",
            "alice@",
            "@example.com",
            "alice@localhost",
            "alice@127.0.0.1",
            "alice@[::1]",
            "a b@example.com",
            "alice@exa mple.com",
            "alice@example..com",
            "alice@example.com/path",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad:?}");
        }
        let long = format!("{}@example.com", "a".repeat(400));
        assert!(Target::parse(&long).is_err());
    }
}
