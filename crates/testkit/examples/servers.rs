//! Starts two private Dovecot servers (source with a few folders and messages, empty
//! destination) and waits, so mailmove can be tried by hand:
//! `cargo run -p mailmove-testkit --example servers`.

use mailmove_testkit::{Dovecot, DovecotOptions, messages};

fn main() -> anyhow::Result<()> {
    let source = Dovecot::start(DovecotOptions {
        separator: '.',
        inbox_prefix: true,
        special_use: vec![("Sent Messages".into(), "\\Sent".into())],
        ..DovecotOptions::default()
    })?;
    let dest = Dovecot::start(DovecotOptions {
        max_mail_size: Some(1_000_000),
        ..DovecotOptions::default()
    })?;
    source.add_user("alice", "alice-password")?;
    dest.add_user("alice@new.example", "dest-password")?;
    let mut checker = source.checker("alice", "alice-password")?;
    for folder in [
        "INBOX.Archive",
        "INBOX.Archive.2023",
        "INBOX.Donn&AOk-es clients",
        "INBOX.Empty",
    ] {
        checker.create(folder)?;
    }
    for i in 0..40 {
        let folder = [
            "INBOX",
            "INBOX.Archive.2023",
            "INBOX.Donn&AOk-es clients",
            "INBOX.Sent Messages",
        ][i % 4];
        let flags: &[&str] = if i % 3 == 0 {
            &["\\Seen", "$Forwarded"]
        } else {
            &[]
        };
        checker.append(
            folder,
            flags,
            None,
            &messages::simple(
                &format!("m{i}@old.example"),
                &format!("Message {i}"),
                2_000 + i * 300,
            ),
        )?;
    }
    checker.append(
        "INBOX",
        &[],
        None,
        &messages::with_attachment("too-big@old.example", 2_000_000, 9),
    )?;
    let ca = std::env::temp_dir().join("mailmove-servers-ca.pem");
    let mut pem = std::fs::read(source.ca_pem())?;
    pem.extend(std::fs::read(dest.ca_pem())?);
    std::fs::write(&ca, pem)?;
    println!("export MAILMOVE_SOURCE_PASSWORD=alice-password MAILMOVE_DEST_PASSWORD=dest-password");
    println!(
        "mailmove migrate --source imap://alice@127.0.0.1:{} --dest imap://alice%40new.example@127.0.0.1:{} --tls-ca {}",
        source.imap_port(),
        dest.imap_port(),
        ca.display()
    );
    println!("(Ctrl-C to stop the servers)");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
