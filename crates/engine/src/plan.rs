//! The message plan of one folder: a pure function from what the source holds, what
//! the ledger remembers and (when needed) what the destination holds, to what to do
//! with each message. Resuming a pass is planning it again.

use std::collections::{HashMap, HashSet};

use mailmove_store::{ItemRecord, ItemState};

use crate::identity::Unmatched;
use time::Date;

/// One source message as the metadata fetch described it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceMessage {
    pub uid: u32,
    pub flags: Vec<String>,
    pub internal_date: Option<String>,
    pub size: u64,
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub content_key: String,
}

impl SourceMessage {
    pub fn is_deleted(&self) -> bool {
        self.flags
            .iter()
            .any(|f| f.eq_ignore_ascii_case("\\Deleted"))
    }
}

/// One destination message, for matching by content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestMessage {
    pub uid: u32,
    pub content_key: String,
    /// The source message it was copied from, where the destination keeps that with
    /// the message (an EWS item's property of ours; see [`origin`]). Such a message is
    /// matched only by its origin, never by content.
    pub origin: Option<String>,
}

/// The origin mark a copied message carries where the destination can hold one: the
/// source folder's ledger name, its UIDVALIDITY and the message's UID.
pub fn origin(source_folder: &str, source_uidvalidity: u32, source_uid: u32) -> String {
    format!("mailmove/1/{source_uidvalidity}/{source_uid}/{source_folder}")
}

/// Destination messages that carry the origin of a message of this source folder (at
/// its current UIDVALIDITY): source UID -> destination UID.
pub fn origins_in_dest(
    dest: &[DestMessage],
    source_folder: &str,
    source_uidvalidity: u32,
) -> HashMap<u32, u32> {
    let mut found = HashMap::new();
    for message in dest {
        let Some(mark) = message.origin.as_deref() else {
            continue;
        };
        let mut parts = mark.splitn(5, '/');
        let (Some("mailmove"), Some("1"), Some(validity), Some(uid), Some(folder)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            continue;
        };
        if folder == source_folder
            && validity.parse() == Ok(source_uidvalidity)
            && let Ok(uid) = uid.parse()
        {
            found.entry(uid).or_insert(message.uid);
        }
    }
    found
}

/// Filters that leave messages out on purpose.
#[derive(Clone, Debug, Default)]
pub struct MessageFilter {
    pub since: Option<Date>,
    pub before: Option<Date>,
    pub max_size: Option<u64>,
}

/// What kind of pass: a normal one copies what is new; a retry pass only what failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PassKind {
    Full,
    Retry,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Copy,
    /// The ledger says it is at the destination.
    AlreadyCopied,
    /// Found at the destination by content: record it, do not copy.
    Link {
        dest_uid: u32,
    },
    Skip(SkipReason),
    /// Failed in an earlier pass and not retried in this one.
    PreviouslyFailed {
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    Deleted,
    BeforeSince,
    NotBefore,
    TooLarge { limit: u64 },
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::Deleted => write!(f, "flagged \\Deleted at the source"),
            SkipReason::BeforeSince => write!(f, "arrived before the first day to copy"),
            SkipReason::NotBefore => write!(f, "arrived on or after the day to stop at"),
            SkipReason::TooLarge { limit } => {
                write!(f, "larger than the size limit of {limit} bytes")
            }
        }
    }
}

/// The current identity of both folders.
#[derive(Clone, Copy, Debug)]
pub struct FolderIdentity {
    pub source_uidvalidity: u32,
    pub dest_uidvalidity: u32,
}

/// Rows the ledger trusts as they stand: copied, same UIDVALIDITY on both sides.
fn confirmed(row: &ItemRecord, identity: FolderIdentity) -> bool {
    row.state == ItemState::Copied
        && row.source_uidvalidity == identity.source_uidvalidity
        && row.dest_uidvalidity == Some(identity.dest_uidvalidity)
}

/// Whether the destination folder must be read before planning: on a first pass, after
/// a crash left APPENDs in doubt, or when either side's UIDVALIDITY changed. An
/// ordinary incremental pass does not need it.
pub fn needs_dest_scan(rows: &[ItemRecord], identity: FolderIdentity) -> bool {
    if rows.is_empty() {
        return true;
    }
    rows.iter().any(|row| match row.state {
        ItemState::Appending => true,
        ItemState::Copied => !confirmed(row, identity),
        ItemState::Failed => row.source_uidvalidity != identity.source_uidvalidity,
    })
}

/// Destination UIDs that confirmed rows of this folder account for.
pub fn claimed_uids(rows: &[ItemRecord], identity: FolderIdentity) -> HashSet<u32> {
    rows.iter()
        .filter(|row| confirmed(row, identity))
        .filter_map(|row| row.dest_uid)
        .collect()
}

/// Destination UIDs accounted for in a destination folder: the ledger's claims (those of
/// other source folders, read apart; any of this folder's among them count only if its
/// rows still trust them), and the claims of this folder's confirmed rows. Rows no
/// longer trusted (their source UIDVALIDITY changed) claim nothing, so their messages
/// can be matched again by content.
pub fn claimed_in_dest(
    ledger_claims: &[u32],
    rows: &[ItemRecord],
    identity: FolderIdentity,
) -> HashSet<u32> {
    let stale: HashSet<u32> = rows
        .iter()
        .filter(|row| !confirmed(row, identity))
        .filter_map(|row| row.dest_uid)
        .collect();
    let mut claimed: HashSet<u32> = ledger_claims
        .iter()
        .copied()
        .filter(|uid| !stale.contains(uid))
        .collect();
    claimed.extend(claimed_uids(rows, identity));
    claimed
}

/// Plans every message of a folder, in source order.
///
/// `dest` is the destination's content when [`needs_dest_scan`] said so; `claimed`
/// holds destination UIDs already accounted for by any source folder's confirmed rows;
/// `origins` maps source UIDs to destination messages that carry their origin mark
/// ([`origins_in_dest`]), which wins over any match by content.
#[allow(clippy::too_many_arguments)] // reason: the plan's inputs, each a separate fact
pub fn plan_messages(
    source: &[SourceMessage],
    rows: &[ItemRecord],
    identity: FolderIdentity,
    dest: Option<&[DestMessage]>,
    claimed: &HashSet<u32>,
    origins: &HashMap<u32, u32>,
    filter: &MessageFilter,
    pass: PassKind,
) -> Vec<(u32, Action)> {
    let current: HashMap<u32, &ItemRecord> = rows
        .iter()
        .filter(|row| row.source_uidvalidity == identity.source_uidvalidity)
        .map(|row| (row.source_uid, row))
        .collect();
    // Unclaimed destination messages, each usable once.
    let mut unmatched = Unmatched::new(
        dest.unwrap_or_default()
            .iter()
            .filter(|m| !claimed.contains(&m.uid) && m.origin.is_none())
            .map(|m| (m.content_key.as_str(), m.uid)),
    );
    // Confirmed rows first, so they never lose "their" destination message to a
    // look-alike that is matched by content.
    for message in source {
        if let Some(row) = current.get(&message.uid)
            && confirmed(row, identity)
            && let Some(uid) = row.dest_uid
        {
            unmatched.remove(&message.content_key, uid);
        }
    }
    let mut plan = Vec::with_capacity(source.len());
    // Messages to look for at the destination, with the key to look under.
    let mut look_for: Vec<(usize, &str)> = Vec::new();
    for message in source {
        let row = current.get(&message.uid);
        if pass == PassKind::Retry && !row.is_some_and(|r| r.state == ItemState::Failed) {
            continue;
        }
        // An APPEND in doubt is looked for under the key of the bytes really sent
        // (a source may describe a message differently before reading it).
        let key = match row {
            Some(row) if row.state == ItemState::Appending => row.content_key.as_str(),
            _ => message.content_key.as_str(),
        };
        let found = origins
            .get(&message.uid)
            .copied()
            .filter(|uid| !claimed.contains(uid));
        let action = if row.is_some_and(|row| confirmed(row, identity)) {
            Action::AlreadyCopied
        } else if let Some(reason) = skip_reason(message, filter) {
            Action::Skip(reason)
        } else if let Some(row) = row.filter(|r| r.state == ItemState::Failed)
            && pass == PassKind::Full
        {
            Action::PreviouslyFailed {
                reason: row.reason.clone().unwrap_or_default(),
            }
        } else if let Some(dest_uid) = found {
            Action::Link { dest_uid }
        } else {
            look_for.push((plan.len(), key));
            Action::Copy
        };
        plan.push((message.uid, action));
    }
    // By content, exact sizes before near ones (a copy the server changed).
    for take in [Unmatched::take_exact, Unmatched::take_near] {
        look_for.retain(|(at, key)| match take(&mut unmatched, key) {
            Some(dest_uid) => {
                plan[*at].1 = Action::Link { dest_uid };
                false
            }
            None => true,
        });
    }
    plan
}

pub fn skip_reason(message: &SourceMessage, filter: &MessageFilter) -> Option<SkipReason> {
    if message.is_deleted() {
        return Some(SkipReason::Deleted);
    }
    if let Some(limit) = filter.max_size
        && message.size > limit
    {
        return Some(SkipReason::TooLarge { limit });
    }
    if let Some(date) = message.internal_date.as_deref().and_then(internal_date_day) {
        if filter.since.is_some_and(|since| date < since) {
            return Some(SkipReason::BeforeSince);
        }
        if filter.before.is_some_and(|before| date >= before) {
            return Some(SkipReason::NotBefore);
        }
    }
    None
}

/// The calendar day of an INTERNALDATE (`17-Jul-1996 02:44:25 -0700`), as IMAP's
/// SINCE and BEFORE compare it: in the message's own time zone.
pub fn internal_date_day(text: &str) -> Option<Date> {
    let day_part = text.trim().split(' ').next()?;
    let mut pieces = day_part.split('-');
    let day: u8 = pieces.next()?.trim().parse().ok()?;
    let month = match pieces.next()?.to_ascii_lowercase().as_str() {
        "jan" => time::Month::January,
        "feb" => time::Month::February,
        "mar" => time::Month::March,
        "apr" => time::Month::April,
        "may" => time::Month::May,
        "jun" => time::Month::June,
        "jul" => time::Month::July,
        "aug" => time::Month::August,
        "sep" => time::Month::September,
        "oct" => time::Month::October,
        "nov" => time::Month::November,
        "dec" => time::Month::December,
        _ => return None,
    };
    let year: i32 = pieces.next()?.parse().ok()?;
    Date::from_calendar_date(year, month, day).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ID: FolderIdentity = FolderIdentity {
        source_uidvalidity: 10,
        dest_uidvalidity: 20,
    };

    fn message(uid: u32, key: &str) -> SourceMessage {
        SourceMessage {
            uid,
            flags: Vec::new(),
            internal_date: Some("15-Mar-2023 10:00:00 +0000".into()),
            size: 100,
            message_id: None,
            subject: None,
            content_key: key.into(),
        }
    }

    fn row(uid: u32, state: ItemState, dest_uid: Option<u32>, key: &str) -> ItemRecord {
        ItemRecord {
            source_folder: "INBOX".into(),
            source_uidvalidity: 10,
            source_uid: uid,
            state,
            dest_folder: Some("INBOX".into()),
            dest_uidvalidity: Some(20),
            dest_uid,
            content_key: key.into(),
            message_id: None,
            subject: None,
            size: 100,
            reason: Some("refused".into()),
        }
    }

    fn plan(
        source: &[SourceMessage],
        rows: &[ItemRecord],
        dest: Option<&[DestMessage]>,
        pass: PassKind,
    ) -> Vec<(u32, Action)> {
        let claimed = claimed_uids(rows, ID);
        plan_messages(
            source,
            rows,
            ID,
            dest,
            &claimed,
            &HashMap::new(),
            &MessageFilter::default(),
            pass,
        )
    }

    #[test]
    fn first_pass_copies_everything_and_needs_a_scan() {
        let source = [message(1, "a"), message(2, "b")];
        assert!(needs_dest_scan(&[], ID));
        assert_eq!(
            plan(&source, &[], Some(&[]), PassKind::Full),
            vec![(1, Action::Copy), (2, Action::Copy)]
        );
    }

    #[test]
    fn a_destination_that_keeps_origins_is_matched_by_origin_only() {
        let source = [message(1, "a"), message(2, "b"), message(3, "c")];
        let rows = [
            row(1, ItemState::Appending, None, "a"),
            row(2, ItemState::Appending, None, "b"),
            row(3, ItemState::Appending, None, "c"),
        ];
        let dest = [
            // Message 1's copy, rendered differently (another size): found by origin.
            DestMessage {
                uid: 7,
                content_key: "a-rendered".into(),
                origin: Some(origin("INBOX", 10, 1)),
            },
            // Same content as message 2 but copied from another folder: not ours.
            DestMessage {
                uid: 8,
                content_key: "b".into(),
                origin: Some(origin("Archive", 10, 2)),
            },
            // Same content as message 3, there before us: matched by content.
            DestMessage {
                uid: 9,
                content_key: "c".into(),
                origin: None,
            },
        ];
        let origins = origins_in_dest(&dest, "INBOX", 10);
        assert_eq!(origins, HashMap::from([(1, 7)]));
        assert!(origins_in_dest(&dest, "INBOX", 11).is_empty());
        let actions = plan_messages(
            &source,
            &rows,
            ID,
            Some(&dest),
            &HashSet::new(),
            &origins,
            &MessageFilter::default(),
            PassKind::Full,
        );
        assert_eq!(
            actions,
            vec![
                (1, Action::Link { dest_uid: 7 }),
                (2, Action::Copy),
                (3, Action::Link { dest_uid: 9 })
            ]
        );
    }

    #[test]
    fn an_append_in_doubt_is_looked_for_under_the_key_of_the_bytes_sent() {
        // The listing described the message as "listed"; the bytes sent had key "sent".
        let source = [message(1, "listed")];
        let rows = [row(1, ItemState::Appending, None, "sent")];
        let dest = [DestMessage {
            uid: 4,
            content_key: "sent".into(),
            origin: None,
        }];
        assert_eq!(
            plan(&source, &rows, Some(&dest), PassKind::Full),
            vec![(1, Action::Link { dest_uid: 4 })]
        );
    }

    #[test]
    fn a_rerun_copies_only_what_is_new_without_a_scan() {
        let source = [message(1, "a"), message(2, "b")];
        let rows = [row(1, ItemState::Copied, Some(5), "a")];
        assert!(!needs_dest_scan(&rows, ID));
        assert_eq!(
            plan(&source, &rows, None, PassKind::Full),
            vec![(1, Action::AlreadyCopied), (2, Action::Copy)]
        );
    }

    #[test]
    fn an_append_in_doubt_is_linked_when_found_and_copied_when_not() {
        let source = [message(1, "a"), message(2, "b")];
        let rows = [
            row(1, ItemState::Appending, None, "a"),
            row(2, ItemState::Appending, None, "b"),
        ];
        assert!(needs_dest_scan(&rows, ID));
        let dest = [DestMessage {
            uid: 7,
            content_key: "a".into(),
            origin: None,
        }];
        assert_eq!(
            plan(&source, &rows, Some(&dest), PassKind::Full),
            vec![(1, Action::Link { dest_uid: 7 }), (2, Action::Copy)]
        );
    }

    #[test]
    fn two_messages_with_one_key_need_two_destination_copies() {
        let source = [message(1, "same"), message(2, "same")];
        let dest = [DestMessage {
            uid: 3,
            content_key: "same".into(),
            origin: None,
        }];
        assert_eq!(
            plan(&source, &[], Some(&dest), PassKind::Full),
            vec![(1, Action::Link { dest_uid: 3 }), (2, Action::Copy)]
        );
    }

    #[test]
    fn a_claimed_destination_message_is_not_matched_twice() {
        let source = [message(1, "same"), message(2, "same")];
        let rows = [
            row(1, ItemState::Copied, Some(3), "same"),
            row(2, ItemState::Appending, None, "same"),
        ];
        let dest = [DestMessage {
            uid: 3,
            content_key: "same".into(),
            origin: None,
        }];
        assert_eq!(
            plan(&source, &rows, Some(&dest), PassKind::Full),
            vec![(1, Action::AlreadyCopied), (2, Action::Copy)]
        );
    }

    #[test]
    fn a_destination_uidvalidity_change_relinks_by_content() {
        let source = [message(1, "a"), message(2, "b")];
        let mut rows = vec![
            row(1, ItemState::Copied, Some(5), "a"),
            row(2, ItemState::Copied, Some(6), "b"),
        ];
        for r in &mut rows {
            r.dest_uidvalidity = Some(19);
        }
        assert!(needs_dest_scan(&rows, ID));
        // The folder was recreated: only "a" is there now, under a new UID.
        let dest = [DestMessage {
            uid: 1,
            content_key: "a".into(),
            origin: None,
        }];
        assert_eq!(
            plan(&source, &rows, Some(&dest), PassKind::Full),
            vec![(1, Action::Link { dest_uid: 1 }), (2, Action::Copy)]
        );
    }

    #[test]
    fn a_source_uidvalidity_change_matches_by_content() {
        let mut rows = vec![row(1, ItemState::Copied, Some(5), "a")];
        rows[0].source_uidvalidity = 9;
        let source = [message(100, "a"), message(101, "b")];
        assert!(needs_dest_scan(&rows, ID));
        let claimed = claimed_uids(&rows, ID);
        assert!(claimed.is_empty());
        let dest = [DestMessage {
            uid: 5,
            content_key: "a".into(),
            origin: None,
        }];
        assert_eq!(
            plan(&source, &rows, Some(&dest), PassKind::Full),
            vec![(100, Action::Link { dest_uid: 5 }), (101, Action::Copy)]
        );
    }

    #[test]
    fn failed_items_wait_for_a_retry_pass() {
        let source = [message(1, "a"), message(2, "b")];
        let rows = [
            row(1, ItemState::Failed, None, "a"),
            row(2, ItemState::Copied, Some(4), "b"),
        ];
        assert_eq!(
            plan(&source, &rows, None, PassKind::Full),
            vec![
                (
                    1,
                    Action::PreviouslyFailed {
                        reason: "refused".into()
                    }
                ),
                (2, Action::AlreadyCopied)
            ]
        );
        assert_eq!(
            plan(&source, &rows, None, PassKind::Retry),
            vec![(1, Action::Copy)]
        );
    }

    #[test]
    fn filters_skip_on_purpose() {
        let mut deleted = message(1, "a");
        deleted.flags.push("\\Deleted".into());
        let mut big = message(2, "b");
        big.size = 1_000;
        let mut old = message(3, "c");
        old.internal_date = Some(" 1-Jan-2020 00:00:00 +0000".into());
        let filter = MessageFilter {
            since: Some(Date::from_calendar_date(2021, time::Month::January, 1).unwrap()),
            before: Some(Date::from_calendar_date(2023, time::Month::March, 15).unwrap()),
            max_size: Some(500),
        };
        assert_eq!(skip_reason(&deleted, &filter), Some(SkipReason::Deleted));
        assert_eq!(
            skip_reason(&big, &filter),
            Some(SkipReason::TooLarge { limit: 500 })
        );
        assert_eq!(skip_reason(&old, &filter), Some(SkipReason::BeforeSince));
        assert_eq!(
            skip_reason(&message(4, "d"), &filter),
            Some(SkipReason::NotBefore)
        );
    }

    proptest! {
        /// Planning again after every planned copy succeeded copies nothing.
        #[test]
        fn planning_twice_after_copying_is_a_no_op(keys in proptest::collection::vec(0u8..4, 0..30)) {
            let source: Vec<SourceMessage> = keys
                .iter()
                .enumerate()
                .map(|(i, k)| message(i as u32 + 1, &k.to_string()))
                .collect();
            let first = plan(&source, &[], Some(&[]), PassKind::Full);
            let rows: Vec<ItemRecord> = first
                .iter()
                .filter(|(_, a)| *a == Action::Copy)
                .map(|(uid, _)| row(*uid, ItemState::Copied, Some(uid + 1000), &keys[*uid as usize - 1].to_string()))
                .collect();
            let second = plan(&source, &rows, None, PassKind::Full);
            prop_assert!(second.iter().all(|(_, a)| *a == Action::AlreadyCopied));
        }

        /// Resuming after a crash at any point gives every message exactly one
        /// destination copy.
        #[test]
        fn resume_from_any_point_gives_one_copy_each(keys in proptest::collection::vec(0u8..3, 1..20), cut in 0usize..20, landed in 0usize..20) {
            let source: Vec<SourceMessage> = keys
                .iter()
                .enumerate()
                .map(|(i, k)| message(i as u32 + 1, &k.to_string()))
                .collect();
            let cut = cut.min(source.len());
            // Before the crash: messages [0, cut) confirmed; the next few in doubt,
            // of which the first `landed` actually reached the destination.
            let mut rows = Vec::new();
            let mut dest = Vec::new();
            for (i, m) in source.iter().enumerate() {
                if i < cut {
                    rows.push(row(m.uid, ItemState::Copied, Some(m.uid + 1000), &m.content_key));
                    dest.push(DestMessage { uid: m.uid + 1000, content_key: m.content_key.clone(), origin: None });
                } else if i < cut + 3 {
                    rows.push(row(m.uid, ItemState::Appending, None, &m.content_key));
                    if i < cut + landed.min(3) {
                        dest.push(DestMessage { uid: m.uid + 2000, content_key: m.content_key.clone(), origin: None });
                    }
                }
            }
            let second = plan(&source, &rows, Some(&dest), PassKind::Full);
            let copies = second.iter().filter(|(_, a)| *a == Action::Copy).count();
            let present = dest.len();
            prop_assert_eq!(copies + present, source.len());
        }
    }
}
