//! Seeds the source and judges each copy: after every tool run the destination is
//! compared with the source message by message (bytes, flags and keywords,
//! INTERNALDATE), through the testkit's independent checker.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};

use anyhow::{Context, Result};
use mailmove_testkit::{CheckedMessage, Dovecot};

use crate::corpus::Mailbox;

/// Appends every planned message (flags, keywords, date) and returns the bytes
/// appended (the sum of RFC822.SIZE, since the bodies are CRLF).
pub fn seed(server: &Dovecot, user: &str, password: &str, mailbox: &Mailbox) -> Result<u64> {
    let mut checker = server.checker(user, password)?;
    for folder in &mailbox.folders {
        if folder.raw != "INBOX" {
            checker.create(folder.raw)?;
        }
    }
    let mut bytes = 0;
    for message in &mailbox.messages {
        let body = message.body();
        bytes += body.len() as u64;
        checker
            .append(
                mailbox.folders[message.folder].raw,
                &message.flags,
                Some(&message.date),
                &body,
            )
            .with_context(|| format!("seeding {user}"))?;
    }
    Ok(bytes)
}

/// What the comparison keeps of one message: the header block as is (to name a
/// header a tool added) and a digest of the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    message_id: String,
    header: Vec<u8>,
    rest_digest: u64,
    flags: BTreeSet<String>,
    date: String,
    size: u64,
}

impl Summary {
    /// The message's size in bytes (RFC822.SIZE).
    pub fn size(&self) -> u64 {
        self.size
    }

    fn of(message: &CheckedMessage) -> Summary {
        let split = message
            .body
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(message.body.len(), |at| at + 4);
        let (header, rest) = message.body.split_at(split);
        let mut hasher = DefaultHasher::new();
        rest.hash(&mut hasher);
        Summary {
            message_id: header_value(header, "message-id").unwrap_or_default(),
            header: header.to_vec(),
            rest_digest: hasher.finish(),
            flags: message.flags.iter().cloned().collect(),
            date: message.internal_date.clone(),
            size: message.body.len() as u64,
        }
    }
}

/// A mailbox as seen by the checker: raw folder name to its messages.
pub type Snapshot = BTreeMap<String, Vec<Summary>>;

/// Reads the given folders of one user; a folder that does not exist is left out.
pub fn snapshot(
    server: &Dovecot,
    user: &str,
    password: &str,
    folders: &[&str],
) -> Result<Snapshot> {
    let mut checker = server.checker(user, password)?;
    let existing: BTreeSet<String> = checker.list()?.into_iter().map(|f| f.name).collect();
    let mut snapshot = Snapshot::new();
    for &folder in folders {
        if !existing.contains(folder) {
            continue;
        }
        let messages = checker
            .fetch_all(folder)
            .with_context(|| format!("reading {folder} of {user}"))?;
        snapshot.insert(
            folder.to_string(),
            messages.iter().map(Summary::of).collect(),
        );
    }
    Ok(snapshot)
}

/// Differences found, in a few words each, with how many messages show them.
pub type Problems = BTreeMap<String, usize>;

/// "yes", or the differences with counts, e.g.
/// "adds X-TUID header (2000); drops keywords (231)".
pub fn describe(problems: &Problems) -> String {
    if problems.is_empty() {
        return "yes".into();
    }
    problems
        .iter()
        .map(|(what, count)| format!("{what} ({count})"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Adds the differences between a source mailbox and its copy to `problems`.
pub fn compare(source: &Snapshot, dest: &Snapshot, problems: &mut Problems) {
    let mut note = |what: String| *problems.entry(what).or_default() += 1;
    for (folder, wanted) in source {
        let Some(found) = dest.get(folder) else {
            if !wanted.is_empty() {
                note(format!("folder {folder} missing"));
            }
            continue;
        };
        let mut by_id: HashMap<&str, Vec<&Summary>> = HashMap::new();
        for message in found {
            by_id.entry(&message.message_id).or_default().push(message);
        }
        for want in wanted {
            let Some(copy) = by_id.get_mut(want.message_id.as_str()).and_then(Vec::pop) else {
                note("missing".into());
                continue;
            };
            for problem in differences(want, copy) {
                note(problem);
            }
        }
        let extra: usize = by_id.values().map(Vec::len).sum();
        for _ in 0..extra {
            note("extra messages".into());
        }
    }
}

fn differences(want: &Summary, copy: &Summary) -> Vec<String> {
    let mut problems = Vec::new();
    if want.rest_digest != copy.rest_digest {
        problems.push("changes body bytes".into());
    }
    if want.header != copy.header {
        problems.push(header_change(&want.header, &copy.header));
    }
    let dropped: Vec<&String> = want.flags.difference(&copy.flags).collect();
    if dropped.iter().any(|f| !f.starts_with('\\')) {
        problems.push("drops keywords".into());
    }
    for flag in dropped.iter().filter(|f| f.starts_with('\\')) {
        problems.push(format!("drops {flag}"));
    }
    if copy.flags.difference(&want.flags).next().is_some() {
        problems.push("adds flags".into());
    }
    if want.date != copy.date {
        problems.push("changes INTERNALDATE".into());
    }
    problems
}

/// Names the header a tool added when that is all it did.
fn header_change(want: &[u8], copy: &[u8]) -> String {
    let want_lines: Vec<&[u8]> = want.split(|&b| b == b'\n').collect();
    let mut remaining = want_lines.clone();
    let mut added = Vec::new();
    for line in copy.split(|&b| b == b'\n') {
        match remaining.iter().position(|l| *l == line) {
            Some(at) => {
                remaining.remove(at);
            }
            None => added.push(line),
        }
    }
    if remaining.is_empty() && !added.is_empty() {
        let names: BTreeSet<String> = added
            .iter()
            .map(|line| {
                let name = line.split(|&b| b == b':').next().unwrap_or(line);
                String::from_utf8_lossy(name).trim().to_string()
            })
            .collect();
        let names: Vec<String> = names.into_iter().collect();
        return format!("adds {} header", names.join(", "));
    }
    "changes headers".into()
}

/// The first value of a header field (unfolded lines are enough for the corpus).
fn header_value(header: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(header);
    text.split("\r\n").find_map(|line| {
        let (field, value) = line.split_once(':')?;
        field
            .trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body: &[u8], flags: &[&str], date: &str) -> Summary {
        Summary::of(&CheckedMessage {
            uid: 1,
            flags: flags.iter().map(|f| f.to_string()).collect(),
            internal_date: date.into(),
            body: body.to_vec(),
        })
    }

    fn verdict(source: &Snapshot, dest: &Snapshot) -> String {
        let mut problems = Problems::new();
        compare(source, dest, &mut problems);
        describe(&problems)
    }

    fn snapshot_of(messages: Vec<Summary>) -> Snapshot {
        Snapshot::from([("INBOX".to_string(), messages)])
    }

    const BODY: &[u8] = b"Message-ID: <a@x>\r\nSubject: s\r\n\r\nhello\r\n";
    const DATE: &str = "01-Jan-2020 10:00:00 +0000";

    #[test]
    fn identical_copy_is_faithful() {
        let source = snapshot_of(vec![message(BODY, &["\\Seen", "ProjectX"], DATE)]);
        assert_eq!(verdict(&source, &source.clone()), "yes");
    }

    #[test]
    fn differences_are_named_and_counted() {
        let source = snapshot_of(vec![
            message(BODY, &["\\Seen", "ProjectX"], DATE),
            message(b"Message-ID: <b@x>\r\n\r\nx\r\n", &[], DATE),
        ]);
        let tuid = b"Message-ID: <a@x>\r\nSubject: s\r\nX-TUID: abc\r\n\r\nhello\r\n";
        let dest = snapshot_of(vec![message(tuid, &["\\Seen"], DATE)]);
        assert_eq!(
            verdict(&source, &dest),
            "adds X-TUID header (1); drops keywords (1); missing (1)"
        );
    }

    #[test]
    fn date_and_body_changes_are_seen() {
        let source = snapshot_of(vec![message(BODY, &[], DATE)]);
        let changed = b"Message-ID: <a@x>\r\nSubject: s\r\n\r\nhellO\r\n";
        let dest = snapshot_of(vec![message(changed, &[], "02-Jan-2020 10:00:00 +0000")]);
        assert_eq!(
            verdict(&source, &dest),
            "changes INTERNALDATE (1); changes body bytes (1)"
        );
    }
}
