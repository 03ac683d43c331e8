//! Texts that come from servers (greetings, refusals, error pages), cut to a length a
//! person can read before they are stored or shown.

use std::borrow::Cow;

/// The most characters of a text a server chose that a page or a report shows: a reason
/// quoting a greeting, a NO or BAD answer or an error page, a folder name, a subject.
/// A hostile server chooses their length: the worker stores them cut, pages show them
/// cut.
pub const SERVER_TEXT_LIMIT: usize = 500;

/// `text` cut to [`SERVER_TEXT_LIMIT`] characters, with an ellipsis when it was longer.
pub fn server_text(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(SERVER_TEXT_LIMIT) {
        None => Cow::Borrowed(text),
        Some((cut, _)) => Cow::Owned(format!("{}…", &text[..cut])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_server_text_is_cut_with_an_ellipsis() {
        assert_eq!(server_text("short"), "short");
        assert!(server_text(&"é".repeat(1_000)).ends_with("é…"));
        let long = "x".repeat(501);
        assert_eq!(server_text(&long).chars().count(), SERVER_TEXT_LIMIT + 1);
        assert_eq!(server_text(&"x".repeat(500)).len(), 500);
    }
}
