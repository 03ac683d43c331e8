//! The mail servers of the portal's browser test (`e2e/portal.test.mjs`): a source and
//! a destination Dovecot with seven mailbox pairs, seeded, then driven over stdin.
//!
//! `cargo run -p mailmove-testkit --example e2e_servers -- DIR [BIG]` writes
//! `DIR/servers.json` (ports, users, passwords, the combined CA at `DIR/ca.pem`), prints
//! `ready DIR/servers.json` and then answers one line per command read on stdin:
//!
//! - `append USER N`: N new messages in the source INBOX of USER → `ok appended N`
//! - `count USER`: the destination mailbox of USER, per folder → `ok {"INBOX":5,...}`
//! - `quit` (or the end of stdin, so a test that dies takes the servers with it) → exits.
//!
//! The first pair's source holds BIG messages (default 20000), so a migration of it lasts
//! long enough to be watched; the others a few messages in INBOX and Archive.

use std::fmt::Write as _;
use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use mailmove_testkit::{Checker, DnsRecord, DnsServer, Dovecot, messages};

/// Mailbox pairs, numbered from 1.
const USERS: usize = 7;
/// Messages seeded over one connection.
const SEED_CHUNK: usize = 1_000;

struct Pair {
    source_email: String,
    source_password: String,
    dest_email: String,
    dest_password: String,
    inbox: usize,
    archive: usize,
}

fn pairs(big: usize) -> Vec<Pair> {
    (1..=USERS)
        .map(|n| Pair {
            source_email: format!("user{n}@old.example"),
            source_password: format!("source-pw-{n}"),
            dest_email: format!("user{n}@new.example"),
            dest_password: format!("dest-pw-{n}"),
            inbox: if n == 1 { big } else { 3 + n },
            archive: if n == 1 { 0 } else { n % 3 },
        })
        .collect()
}

fn main() -> Result<()> {
    let mut args = std::env::args_os().skip(1);
    let dir = PathBuf::from(args.next().context("usage: e2e_servers DIR [BIG]")?);
    let big: usize = match args.next() {
        Some(text) => text
            .to_str()
            .and_then(|t| t.parse().ok())
            .context("BIG must be a number of messages")?,
        None => 20_000,
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    let source = Dovecot::start_default().context("starting the source Dovecot")?;
    let dest = Dovecot::start_default().context("starting the destination Dovecot")?;
    let pairs = pairs(big);
    for pair in &pairs {
        source.add_user(&pair.source_email, &pair.source_password)?;
        dest.add_user(&pair.dest_email, &pair.dest_password)?;
    }
    // Seeded over many connections at once: each mailbox's INBOX in chunks.
    std::thread::scope(|scope| -> Result<()> {
        let mut seeding = Vec::new();
        for pair in &pairs {
            for start in (0..pair.inbox.max(1)).step_by(SEED_CHUNK) {
                let end = (start + SEED_CHUNK).min(pair.inbox);
                let source = &source;
                seeding.push(scope.spawn(move || seed(source, pair, start..end)));
            }
        }
        for handle in seeding {
            handle
                .join()
                .map_err(|_| anyhow::anyhow!("a seeding thread panicked"))??;
        }
        Ok(())
    })?;

    let ca = dir.join("ca.pem");
    let mut pem = std::fs::read(source.ca_pem())?;
    pem.extend(std::fs::read(dest.ca_pem())?);
    std::fs::write(&ca, pem)?;
    // The source domain's SRV record, for the portal's "Find my settings".
    let dns = DnsServer::start(&[DnsRecord::srv(
        "_imaps._tcp.old.example",
        "localhost",
        source.imaps_port(),
        0,
    )])
    .context("starting the DNS server")?;
    let json_path = dir.join("servers.json");
    std::fs::write(&json_path, describe(&source, &dest, &pairs, &ca, &dns))?;

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "ready {}", json_path.display())?;
    out.flush()?;

    let mut appended = vec![0usize; pairs.len()];
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words.as_slice() {
            ["quit"] => break,
            ["append", user, n] => n
                .parse::<usize>()
                .context("append USER N: N is a number")
                .and_then(|n| append(&source, &pairs, &mut appended, user, n))
                .map(|n| format!("appended {n}")),
            ["count", user] => count(&dest, &pairs, user),
            [] => continue,
            _ => Err(anyhow::anyhow!("unknown command {line:?}")),
        };
        match answer {
            Ok(text) => writeln!(out, "ok {text}")?,
            // One line, so the reader's protocol stays line-based.
            Err(e) => writeln!(out, "error {}", format!("{e:#}").replace('\n', " "))?,
        }
        out.flush()?;
    }
    // Dropping the servers kills the daemons and removes their directories.
    drop(source);
    drop(dest);
    Ok(())
}

/// Seeds INBOX messages `inbox` of the pair (and its Archive with the first chunk).
fn seed(source: &Dovecot, pair: &Pair, inbox: std::ops::Range<usize>) -> Result<()> {
    let mut checker = source.checker(&pair.source_email, &pair.source_password)?;
    let user = pair.source_email.split('@').next().unwrap_or("user");
    let first_chunk = inbox.start == 0;
    for i in inbox {
        let flags: &[&str] = if i % 2 == 0 { &["\\Seen"] } else { &[] };
        checker.append(
            "INBOX",
            flags,
            None,
            &messages::simple(
                &format!("{user}-inbox-{i}@old.example"),
                &format!("Inbox message {i} of {user}"),
                1_500 + (i % 7) * 400,
            ),
        )?;
    }
    if first_chunk && pair.archive > 0 {
        checker.create("Archive")?;
        for i in 0..pair.archive {
            checker.append(
                "Archive",
                &["\\Seen"],
                Some("15-Mar-2021 09:30:00 +0000"),
                &messages::simple(
                    &format!("{user}-archive-{i}@old.example"),
                    &format!("Archived message {i} of {user}"),
                    3_000,
                ),
            )?;
        }
    }
    Ok(())
}

fn find<'a>(pairs: &'a [Pair], user: &str) -> Result<(usize, &'a Pair)> {
    pairs
        .iter()
        .enumerate()
        .find(|(_, p)| p.source_email == user || p.dest_email == user)
        .with_context(|| format!("no mailbox pair has the user {user}"))
}

fn append(
    source: &Dovecot,
    pairs: &[Pair],
    appended: &mut [usize],
    user: &str,
    n: usize,
) -> Result<usize> {
    let (index, pair) = find(pairs, user)?;
    let mut checker = source.checker(&pair.source_email, &pair.source_password)?;
    let name = pair.source_email.split('@').next().unwrap_or("user");
    for _ in 0..n {
        let k = appended[index];
        appended[index] += 1;
        checker.append(
            "INBOX",
            &[],
            None,
            &messages::simple(
                &format!("{name}-new-{k}@old.example"),
                &format!("New message {k} of {name}"),
                2_000,
            ),
        )?;
    }
    Ok(n)
}

/// `{"INBOX":5,"Archive":2,...}`: the messages in each folder of the destination mailbox.
fn count(dest: &Dovecot, pairs: &[Pair], user: &str) -> Result<String> {
    let (_, pair) = find(pairs, user)?;
    let mut checker = dest.checker(&pair.dest_email, &pair.dest_password)?;
    let mut json = String::from("{");
    for (i, folder) in checker.list()?.iter().enumerate() {
        let n = messages_in(&mut checker, &folder.name)?;
        let comma = if i > 0 { "," } else { "" };
        let _ = write!(json, "{comma}{}:{n}", quoted(&folder.name));
    }
    json.push('}');
    Ok(json)
}

fn messages_in(checker: &mut Checker, folder: &str) -> Result<u64> {
    let raw = checker.raw(&format!("STATUS {} (MESSAGES)", quoted(folder)))?;
    let text = String::from_utf8_lossy(&raw);
    let Some(after) = text.split("MESSAGES ").nth(1) else {
        bail!("STATUS {folder} gave no MESSAGES: {text}");
    };
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits
        .parse()
        .with_context(|| format!("STATUS {folder}: {text}"))
}

fn describe(
    source: &Dovecot,
    dest: &Dovecot,
    pairs: &[Pair],
    ca: &std::path::Path,
    dns: &DnsServer,
) -> String {
    let server = |d: &Dovecot| {
        format!(
            "{{\"host\":{},\"imap_port\":{},\"imaps_port\":{}}}",
            quoted(d.host()),
            d.imap_port(),
            d.imaps_port()
        )
    };
    let users: Vec<String> = pairs
        .iter()
        .map(|p| {
            format!(
                "{{\"source_email\":{},\"source_password\":{},\"dest_email\":{},\"dest_password\":{},\"inbox\":{},\"archive\":{}}}",
                quoted(&p.source_email),
                quoted(&p.source_password),
                quoted(&p.dest_email),
                quoted(&p.dest_password),
                p.inbox,
                p.archive
            )
        })
        .collect();
    format!(
        "{{\"source\":{},\"dest\":{},\"ca_pem\":{},\"dns\":{},\"users\":[{}]}}\n",
        server(source),
        server(dest),
        quoted(&ca.display().to_string()),
        quoted(&dns.addr().to_string()),
        users.join(",")
    )
}

/// A JSON (and IMAP quoted) string: the names here are plain ASCII, so escaping `"` and
/// `\` is enough.
fn quoted(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}
