//! The kinds of pass over a mailbox pair (SPEC §2): one type for the store, the
//! workers, the portal and the command line.

use std::fmt;

/// What a pass does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PassKind {
    /// The trial: connect, log in, pre-flight.
    Verify,
    Full,
    /// "Migrate new items".
    Delta,
    /// Only the items that failed.
    Retry,
}

impl PassKind {
    pub const ALL: [PassKind; 4] = [
        PassKind::Verify,
        PassKind::Full,
        PassKind::Delta,
        PassKind::Retry,
    ];

    /// The word the command line, the database and the JSON status use.
    pub fn as_str(self) -> &'static str {
        match self {
            PassKind::Verify => "verify",
            PassKind::Full => "full",
            PassKind::Delta => "delta",
            PassKind::Retry => "retry",
        }
    }

    pub fn parse(text: &str) -> Option<PassKind> {
        PassKind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// Whether the pass copies messages (every kind but the trial).
    pub fn copies(self) -> bool {
        self != PassKind::Verify
    }
}

impl fmt::Display for PassKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_words() {
        for kind in PassKind::ALL {
            assert_eq!(PassKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(PassKind::parse("Full"), None);
        assert_eq!(PassKind::parse(""), None);
    }
}
