//! The email address check: strict enough to catch the mistakes people make in a
//! spreadsheet, loose enough never to refuse an address a mail server accepts.

/// Why `text` (already trimmed, not empty) is not an address, or `None` when it is one.
///
/// An address has exactly one `@`, something before it, and after it a domain that
/// contains a dot (or is `localhost`) with no empty label; it has no spaces or control
/// characters. Non-ASCII letters are allowed (internationalised addresses).
pub(crate) fn address_fault(text: &str) -> Option<&'static str> {
    if text.chars().any(char::is_whitespace) {
        return Some("it contains a space (write only the address, without a name)");
    }
    if text.chars().any(char::is_control) {
        return Some("it contains a control character");
    }
    let Some((local, domain)) = text.split_once('@') else {
        return Some("it has no @");
    };
    if domain.contains('@') {
        return Some("it has more than one @ (one address per cell)");
    }
    if local.is_empty() {
        return Some("nothing before the @");
    }
    if domain.is_empty() {
        return Some("no domain after the @");
    }
    if domain.eq_ignore_ascii_case("localhost") {
        return None;
    }
    if !domain.contains('.') {
        return Some("its domain has no dot");
    }
    if domain.split('.').any(str::is_empty) {
        return Some("its domain has an empty part (two dots in a row, or a dot at an end)");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_addresses_servers_accept() {
        for good in [
            "alice@example.com",
            "first.last+tag@mail.example.co.uk",
            "x@localhost",
            "X@LOCALHOST",
            "jörg@bücher.example",
            "12345@example.com",
            "o'brien@example.ie",
        ] {
            assert_eq!(address_fault(good), None, "{good}");
        }
    }

    #[test]
    fn names_the_fault_of_each_bad_address() {
        for (bad, fault) in [
            ("alice.example.com", "it has no @"),
            ("alice@@example.com", "it has more than one @"),
            ("a@example.com;b@example.com", "it has more than one @"),
            ("@example.com", "nothing before the @"),
            ("alice@", "no domain after the @"),
            ("alice@example", "its domain has no dot"),
            ("alice@example..com", "its domain has an empty part"),
            ("alice@.example.com", "its domain has an empty part"),
            ("alice@example.com.", "its domain has an empty part"),
            ("Alice <alice@example.com>", "it contains a space"),
            ("al ice@example.com", "it contains a space"),
            ("alice@exa\u{7}mple.com", "it contains a control character"),
        ] {
            let found = address_fault(bad);
            assert!(
                found.is_some_and(|text| text.starts_with(fault)),
                "{bad}: expected {fault:?}, got {found:?}"
            );
        }
    }
}
