//! Every server misbehaviour mailmove tolerates, by name, with the servers known to
//! need it. The parser refers to these names where it bends.
//!
//! - `EXTRA_SPACES`: two spaces between tokens (`* CAPABILITY IMAP4rev1  IDLE`):
//!   Telekom (Hungary) mail, some Zimbra versions.
//! - `STATUS_WITHOUT_TEXT`: `A1 OK` with nothing after the status word: older Kerio,
//!   Exchange 2007 after some commands.
//! - `FLAGS_TRAILING_SPACE`: `FLAGS (\Seen )`: SurgeMail (also in PERMANENTFLAGS), iCloud
//!   in FETCH FLAGS.
//! - `QUOTED_FLAGS`: a quoted string in a flag list, `FLAGS ("\\Deleted" \Seen)`: InterMail
//!   (Road Runner's wi.rr.com); read as the flag it quotes.
//! - `NEGATIVE_SIZE`: `RFC822.SIZE -1` for a message whose size the server cannot
//!   compute: reported against Exchange and some Domino versions.
//! - `EIGHT_BIT_ATOMS`: raw UTF-8 in mailbox names instead of modified UTF-7: Gmail
//!   after `ENABLE UTF8=ACCEPT`, some Exchange versions.
//! - `BARE_LF`: lines ending in LF alone: seen from small embedded servers; the
//!   framing layer accepts both.
//! - `QUOTA_WITHOUT_RESOURCES`: `* QUOTA "ROOT"` with no resource list at all, for a
//!   root without limits: Courier-IMAP 5.0 (Debian 12); read as an empty list.
//! - `UNPARSEABLE_TAGGED`: a tagged completion whose text the grammar rejects (for
//!   example a response code with an unbalanced bracket): its status word is still
//!   found by [`salvage_tagged_status`], so the command completes instead of hanging.

use crate::response::{Status, StatusKind};

/// Reads `TAG OK|NO|BAD ...` by hand when the parser failed on the rest of the line.
pub fn salvage_tagged_status(text: &[u8], tag_len: usize) -> Option<Status> {
    let rest = text.get(tag_len..)?;
    let rest = String::from_utf8_lossy(rest);
    let rest = rest.trim();
    let (word, text) = rest.split_once(' ').unwrap_or((rest, ""));
    let kind = match word.to_ascii_uppercase().as_str() {
        "OK" => StatusKind::Ok,
        "NO" => StatusKind::No,
        "BAD" => StatusKind::Bad,
        "BYE" => StatusKind::Bye,
        _ => return None,
    };
    Some(Status {
        kind,
        code: None,
        text: text.trim().to_string(),
    })
}
