//! End-to-end: `mailmove migrate` between two real Dovecot servers, one test for each
//! promise of SPEC §3.

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use common::{CountingProxy, SOURCE_USER, Setup, bodies};
use mailmove_testkit::{DovecotOptions, messages};

#[test]
fn copies_are_byte_exact_including_8bit_headers_long_lines_and_a_15mb_attachment() {
    let setup = Setup::new();
    let mut src = setup.src();
    let originals = vec![
        messages::simple("plain@example.com", "Plain", 2_000),
        messages::eight_bit_headers("8bit@example.com"),
        messages::long_lines("long@example.com", 20_000),
        messages::with_attachment("big@example.com", 15 * 1024 * 1024, 7),
        messages::without_message_id("No id at all"),
    ];
    for body in &originals {
        src.append("INBOX", &[], None, body).unwrap();
    }
    let run = setup.run("migrate", &[]);
    assert_eq!(run.code, 0, "{}", run.everything());
    assert_eq!(run.counts(), (5, 0, 0, 0));
    let mut expected = originals.clone();
    expected.sort();
    assert_eq!(bodies(&mut setup.dst(), "INBOX"), expected);
    let report = run.report.unwrap();
    let total: u64 = originals.iter().map(|b| b.len() as u64).sum();
    assert_eq!(report["bytes_copied"].as_u64().unwrap(), total);
}

#[test]
fn flags_keywords_and_internal_dates_are_kept() {
    let setup = Setup::new();
    let mut src = setup.src();
    let cases: [(&[&str], &str); 4] = [
        (&["\\Seen", "\\Answered"], "01-Feb-2019 08:30:00 +0000"),
        (&["\\Flagged", "$Forwarded"], "15-Jun-2021 23:59:59 +0000"),
        (&["\\Draft", "ProjectX"], "29-Feb-2024 12:00:00 +0000"),
        (&[], "03-Mar-2003 03:03:03 +0000"),
    ];
    for (i, (flags, date)) in cases.iter().enumerate() {
        let body = messages::simple(&format!("f{i}@example.com"), "flags", 300);
        src.append("INBOX", flags, Some(date), &body).unwrap();
    }
    let run = setup.run("migrate", &[]);
    assert_eq!(run.code, 0, "{}", run.everything());
    let source = src.fetch_all("INBOX").unwrap();
    let dest = setup.dst().fetch_all("INBOX").unwrap();
    assert_eq!(dest.len(), 4);
    for (s, d) in source.iter().zip(&dest) {
        assert_eq!(s.body, d.body);
        assert_eq!(
            s.flags,
            d.flags,
            "flags of {}",
            String::from_utf8_lossy(&s.body[..60])
        );
        assert_eq!(s.internal_date, d.internal_date);
    }
    // The source was only read: its flags did not change (no \Seen from fetching).
    assert!(source[3].flags.is_empty(), "{:?}", source[3].flags);
}

#[test]
fn a_courier_style_tree_lands_on_a_slash_server_with_names_and_subscriptions() {
    let setup = Setup::with(
        DovecotOptions {
            separator: '.',
            inbox_prefix: true,
            special_use: vec![("Sent Messages".into(), "\\Sent".into())],
            ..DovecotOptions::default()
        },
        DovecotOptions::default(),
    );
    let mut src = setup.src();
    let folders = [
        "INBOX.Archive",
        "INBOX.Archive.2023",
        "INBOX.Donn&AOk-es clients",
        "INBOX.R&-D",
        "INBOX.Empty folder",
    ];
    for folder in folders {
        src.create(folder).unwrap();
    }
    src.raw("SUBSCRIBE \"INBOX.Archive\"").unwrap();
    src.append(
        "INBOX.Archive.2023",
        &[],
        None,
        &messages::simple("a@x", "a", 100),
    )
    .unwrap();
    src.append(
        "INBOX.Donn&AOk-es clients",
        &[],
        None,
        &messages::simple("d@x", "d", 100),
    )
    .unwrap();
    src.append("INBOX.R&-D", &[], None, &messages::simple("r@x", "r", 100))
        .unwrap();
    src.append(
        "INBOX.Sent Messages",
        &["\\Seen"],
        None,
        &messages::simple("s@x", "s", 100),
    )
    .unwrap();

    let run = setup.run("migrate", &[]);
    assert_eq!(run.code, 0, "{}", run.everything());
    let mut dst = setup.dst();
    let names: Vec<String> = dst.list().unwrap().into_iter().map(|f| f.name).collect();
    for expected in [
        "Archive",
        "Archive/2023",
        "Donn&AOk-es clients",
        "R&-D",
        "Empty folder",
        "Sent",
    ] {
        assert!(
            names.contains(&expected.to_string()),
            "{expected} missing from {names:?}"
        );
    }
    assert!(
        !names.iter().any(|n| n.contains("Sent Messages")),
        "{names:?}"
    );
    assert_eq!(dst.fetch_all("Archive/2023").unwrap().len(), 1);
    assert_eq!(dst.fetch_all("Donn&AOk-es clients").unwrap().len(), 1);
    assert_eq!(dst.fetch_all("R&-D").unwrap().len(), 1);
    assert!(dst.fetch_all("Empty folder").unwrap().is_empty());
    assert!(dst.subscribed().unwrap().contains(&"Archive".to_string()));
    // The report names folders the way people read them.
    let folders = run.report.unwrap()["folders"].clone();
    assert!(
        folders
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["source"] == "Données clients")
    );
}

#[test]
fn sent_folder_maps_by_role_not_by_name() {
    let setup = Setup::with(
        DovecotOptions {
            special_use: vec![("Sent Messages".into(), "\\Sent".into())],
            ..DovecotOptions::default()
        },
        DovecotOptions {
            special_use: vec![("Sent Items".into(), "\\Sent".into())],
            ..DovecotOptions::default()
        },
    );
    let body = messages::simple("sent@example.com", "sent", 500);
    setup
        .src()
        .append("Sent Messages", &["\\Seen"], None, &body)
        .unwrap();
    let run = setup.run("migrate", &[]);
    assert_eq!(run.code, 0, "{}", run.everything());
    let mut dst = setup.dst();
    assert_eq!(dst.fetch_all("Sent Items").unwrap()[0].body, body);
    assert!(
        !dst.list()
            .unwrap()
            .iter()
            .any(|f| f.name == "Sent Messages")
    );
}

#[test]
fn a_rerun_copies_nothing_and_a_later_run_copies_only_new_messages() {
    let setup = Setup::new();
    let mut src = setup.src();
    src.create("Work").unwrap();
    for i in 0..5 {
        src.append(
            "INBOX",
            &[],
            None,
            &messages::simple(&format!("i{i}@x"), "i", 200),
        )
        .unwrap();
        src.append(
            "Work",
            &[],
            None,
            &messages::simple(&format!("w{i}@x"), "w", 200),
        )
        .unwrap();
    }
    let first = setup.run("migrate", &[]);
    assert_eq!(first.counts(), (10, 0, 0, 0), "{}", first.everything());
    let second = setup.run("migrate", &[]);
    assert_eq!(second.code, 0);
    assert_eq!(second.counts(), (0, 10, 0, 0));
    src.append("Work", &[], None, &messages::simple("new@x", "new", 200))
        .unwrap();
    let third = setup.run("migrate", &[]);
    assert_eq!(third.counts(), (1, 10, 0, 0));
    let mut dst = setup.dst();
    assert_eq!(dst.fetch_all("INBOX").unwrap().len(), 5);
    assert_eq!(dst.fetch_all("Work").unwrap().len(), 6);
}

#[test]
fn two_different_messages_with_one_message_id_both_arrive() {
    let setup = Setup::new();
    let mut src = setup.src();
    let a = messages::simple("same@example.com", "first version", 300);
    let b = messages::simple("same@example.com", "second version, longer", 900);
    let c = messages::simple("same@example.com", "first version", 300);
    src.append("INBOX", &[], None, &a).unwrap();
    src.append("INBOX", &[], None, &b).unwrap();
    // An exact duplicate at the source is two messages there, so two here.
    src.append("INBOX", &[], None, &c).unwrap();
    let run = setup.run("migrate", &[]);
    assert_eq!(run.counts(), (3, 0, 0, 0), "{}", run.everything());
    let mut expected = vec![a, b, c];
    expected.sort();
    assert_eq!(bodies(&mut setup.dst(), "INBOX"), expected);
    // And a rerun keeps it that way.
    assert_eq!(setup.run("migrate", &[]).counts(), (0, 3, 0, 0));
    assert_eq!(setup.dst().fetch_all("INBOX").unwrap().len(), 3);
}

#[test]
fn deleted_messages_are_skipped_and_counted() {
    let setup = Setup::new();
    let mut src = setup.src();
    src.append(
        "INBOX",
        &["\\Deleted"],
        None,
        &messages::simple("gone@x", "gone", 100),
    )
    .unwrap();
    src.append("INBOX", &[], None, &messages::simple("kept@x", "kept", 100))
        .unwrap();
    let run = setup.run("migrate", &[]);
    assert_eq!(run.code, 0);
    assert_eq!(run.counts(), (1, 0, 1, 0));
    assert_eq!(setup.dst().fetch_all("INBOX").unwrap().len(), 1);
}

#[test]
fn date_and_size_filters_skip_on_purpose() {
    let setup = Setup::new();
    let mut src = setup.src();
    src.append(
        "INBOX",
        &[],
        Some("01-Jan-2018 00:00:00 +0000"),
        &messages::simple("old@x", "o", 100),
    )
    .unwrap();
    src.append(
        "INBOX",
        &[],
        Some("01-Jan-2022 00:00:00 +0000"),
        &messages::simple("mid@x", "m", 100),
    )
    .unwrap();
    src.append(
        "INBOX",
        &[],
        Some("01-Jan-2022 00:00:00 +0000"),
        &messages::simple("big@x", "b", 50_000),
    )
    .unwrap();
    src.append(
        "INBOX",
        &[],
        Some("01-Jan-2025 00:00:00 +0000"),
        &messages::simple("new@x", "n", 100),
    )
    .unwrap();
    let run = setup.run(
        "migrate",
        &[
            "--since",
            "2020-01-01",
            "--before",
            "2024-01-01",
            "--max-size",
            "10000",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.everything());
    assert_eq!(run.counts(), (1, 0, 3, 0));
    let dest = setup.dst().fetch_all("INBOX").unwrap();
    assert_eq!(dest.len(), 1);
    assert!(String::from_utf8_lossy(&dest[0].body).contains("mid@x"));
}

#[test]
fn a_dry_run_changes_nothing() {
    let setup = Setup::new();
    let mut src = setup.src();
    src.create("Projects").unwrap();
    src.append("Projects", &[], None, &messages::simple("p@x", "p", 100))
        .unwrap();
    let run = setup.run("migrate", &["--dry-run"]);
    assert_eq!(run.code, 0, "{}", run.everything());
    assert!(run.stdout.contains("would copy 1"), "{}", run.stdout);
    let mut dst = setup.dst();
    assert!(!dst.list().unwrap().iter().any(|f| f.name == "Projects"));
    assert!(dst.fetch_all("INBOX").unwrap().is_empty());
    // A real run afterwards still copies everything.
    assert_eq!(setup.run("migrate", &[]).counts(), (1, 0, 0, 0));
}

#[test]
fn a_message_the_destination_refuses_is_reported_and_the_rest_arrive() {
    let setup = Setup::with(
        DovecotOptions::default(),
        DovecotOptions {
            max_mail_size: Some(100_000),
            ..DovecotOptions::default()
        },
    );
    let mut src = setup.src();
    for i in 0..3 {
        src.append(
            "INBOX",
            &[],
            None,
            &messages::simple(&format!("ok{i}@x"), "ok", 1_000),
        )
        .unwrap();
    }
    src.append(
        "INBOX",
        &[],
        None,
        &messages::with_attachment("huge@example.com", 500_000, 1),
    )
    .unwrap();
    src.append(
        "INBOX",
        &[],
        None,
        &messages::simple("after@x", "after", 1_000),
    )
    .unwrap();
    let run = setup.run("migrate", &[]);
    assert_eq!(run.code, 1, "{}", run.everything());
    assert_eq!(run.counts(), (4, 0, 0, 1));
    let report = run.report.as_ref().unwrap();
    let error = &report["errors"][0];
    assert_eq!(error["folder"], "INBOX");
    assert_eq!(error["uid"], 4);
    assert_eq!(error["message_id"], "<huge@example.com>");
    assert!(error["size"].as_u64().unwrap() > 500_000);
    let reason = error["reason"].as_str().unwrap();
    assert!(
        reason.contains("destination refused message UID 4 in INBOX"),
        "{reason}"
    );
    assert!(reason.contains("[LIMIT]"), "{reason}");
    assert_eq!(setup.dst().fetch_all("INBOX").unwrap().len(), 4);

    // A rerun does not retry it silently: still an error, still exit 1.
    let rerun = setup.run("migrate", &[]);
    assert_eq!(rerun.code, 1);
    assert_eq!(rerun.counts(), (0, 4, 0, 1));
    assert!(rerun.stdout.contains("--retry-failed"), "{}", rerun.stdout);
    // The retry pass tries exactly that message.
    let retry = setup.run("migrate", &["--retry-failed"]);
    assert_eq!(retry.counts(), (0, 0, 0, 1), "{}", retry.everything());
    assert_eq!(retry.report.unwrap()["pass"], "retry");
}

#[test]
fn the_destination_folder_recreated_with_a_new_uidvalidity_gets_neither_duplicates_nor_losses() {
    let setup = Setup::new();
    let mut src = setup.src();
    src.create("Box").unwrap();
    for i in 0..4 {
        src.append(
            "Box",
            &[],
            None,
            &messages::simple(&format!("b{i}@x"), "b", 200),
        )
        .unwrap();
    }
    assert_eq!(setup.run("migrate", &[]).counts(), (4, 0, 0, 0));
    let mut dst = setup.dst();
    let before = dst.uidvalidity("Box").unwrap();
    let kept = dst.fetch_all("Box").unwrap();
    dst.delete_folder("Box").unwrap();
    dst.create("Box").unwrap();
    // Someone put two of the four back by hand.
    for message in &kept[..2] {
        dst.append("Box", &[], None, &message.body).unwrap();
    }
    assert_ne!(dst.uidvalidity("Box").unwrap(), before);
    let run = setup.run("migrate", &[]);
    assert_eq!(run.counts(), (2, 2, 0, 0), "{}", run.everything());
    assert_eq!(bodies(&mut dst, "Box"), bodies(&mut src, "Box"));
}

#[test]
fn a_source_uidvalidity_change_causes_no_duplicates() {
    let setup = Setup::new();
    let mut src = setup.src();
    src.create("Old").unwrap();
    let bodies_in: Vec<Vec<u8>> = (0..3)
        .map(|i| messages::simple(&format!("u{i}@x"), "u", 200))
        .collect();
    for body in &bodies_in {
        src.append("Old", &[], None, body).unwrap();
    }
    assert_eq!(setup.run("migrate", &[]).counts(), (3, 0, 0, 0));
    // The source folder is rebuilt (new UIDVALIDITY) with one more message.
    src.delete_folder("Old").unwrap();
    src.create("Old").unwrap();
    for body in &bodies_in {
        src.append("Old", &[], None, body).unwrap();
    }
    src.append("Old", &[], None, &messages::simple("u3@x", "u", 200))
        .unwrap();
    let run = setup.run("migrate", &[]);
    assert_eq!(run.counts(), (1, 3, 0, 0), "{}", run.everything());
    assert_eq!(setup.dst().fetch_all("Old").unwrap().len(), 4);
}

#[test]
fn implicit_tls_is_verified_against_the_given_ca() {
    let setup = Setup::new();
    setup
        .src()
        .append("INBOX", &[], None, &messages::simple("tls@x", "tls", 100))
        .unwrap();
    let source = format!("imaps://alice@localhost:{}", setup.source.imaps_port());
    let dest = format!(
        "imaps://bob%40new.example@127.0.0.1:{}",
        setup.dest.imaps_port()
    );
    let without_ca = std::process::Command::new(env!("CARGO_BIN_EXE_mailmove"))
        .args(["migrate", "--source", &source, "--dest", &dest, "--state"])
        .arg(setup.state())
        .env("MAILMOVE_SOURCE_PASSWORD", common::SOURCE_PASSWORD)
        .env("MAILMOVE_DEST_PASSWORD", common::DEST_PASSWORD)
        .output()
        .unwrap();
    let refused = common::finish(without_ca, None);
    assert_eq!(refused.code, 3, "{}", refused.everything());
    assert!(
        refused.stderr.contains("is not trusted"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("--tls-ca"), "{}", refused.stderr);

    let with_ca = std::process::Command::new(env!("CARGO_BIN_EXE_mailmove"))
        .args(["migrate", "--source", &source, "--dest", &dest, "--tls-ca"])
        .arg(&setup.ca)
        .arg("--state")
        .arg(setup.state())
        .env("MAILMOVE_SOURCE_PASSWORD", common::SOURCE_PASSWORD)
        .env("MAILMOVE_DEST_PASSWORD", common::DEST_PASSWORD)
        .output()
        .unwrap();
    let ok = common::finish(with_ca, None);
    assert_eq!(ok.code, 0, "{}", ok.everything());
    assert_eq!(setup.dst().fetch_all("INBOX").unwrap().len(), 1);
}

#[test]
fn a_small_mailbox_takes_one_connection_pair_unless_told_to_take_more() {
    let setup = Setup::new();
    let mut src = setup.src();
    for folder in ["Alpha", "Beta", "Gamma"] {
        src.create(folder).unwrap();
        for i in 0..3 {
            let body = messages::simple(&format!("{folder}{i}@example.com"), folder, 900);
            src.append(folder, &[], None, &body).unwrap();
        }
    }
    let proxy = CountingProxy::start(setup.source.imap_port());
    let via_proxy = format!("imap://{SOURCE_USER}@127.0.0.1:{}", proxy.port);

    // Nine messages are far from the 500 that earn a second pair by default.
    let run = setup.run_via(&via_proxy, &setup.dest_url(), "migrate", &[]);
    assert_eq!(run.code, 0, "{}", run.everything());
    assert_eq!(run.counts(), (9, 0, 0, 0));
    assert_eq!(proxy.total.load(Ordering::SeqCst), 1);

    // Asked for, three pairs copy the three folders side by side.
    src.append(
        "Gamma",
        &[],
        None,
        &messages::simple("late@example.com", "late", 900),
    )
    .unwrap();
    let run = setup.run_via(
        &via_proxy,
        &setup.dest_url(),
        "migrate",
        &["--connections", "3"],
    );
    assert_eq!(run.code, 0, "{}", run.everything());
    assert_eq!(run.counts(), (1, 9, 0, 0));
    assert_eq!(proxy.total.load(Ordering::SeqCst), 1 + 3);
    for folder in ["Alpha", "Beta", "Gamma"] {
        assert_eq!(
            bodies(&mut setup.dst(), folder),
            bodies(&mut src, folder),
            "{folder}"
        );
    }
}

#[test]
fn compression_is_off_on_loopback_by_default_and_shrinks_the_wire_when_asked() {
    let offered = DovecotOptions {
        compress: true,
        ..DovecotOptions::default()
    };
    let setup = Setup::with(offered.clone(), offered);
    let mut src = setup.src();
    let mut sizes = HashMap::new();
    for folder in ["Plain", "Squeezed"] {
        src.create(folder).unwrap();
        for i in 0..4 {
            let body = messages::simple(&format!("{folder}{i}@example.com"), folder, 150_000);
            *sizes.entry(folder).or_insert(0u64) += body.len() as u64;
            src.append(folder, &["\\Seen"], None, &body).unwrap();
        }
    }
    let source = CountingProxy::start(setup.source.imap_port());
    let dest = CountingProxy::start(setup.dest.imap_port());
    let source_url = format!("imap://{SOURCE_USER}@127.0.0.1:{}", source.port);
    let dest_url = format!("imap://bob%40new.example@127.0.0.1:{}", dest.port);

    // Loopback: the link is faster than deflating, so auto leaves it off.
    let run = setup.run_via(&source_url, &dest_url, "migrate", &["--include", "^Plain$"]);
    assert_eq!(run.code, 0, "{}", run.everything());
    assert_eq!(run.counts(), (4, 0, 0, 0));
    let (_, fetched) = source.bytes();
    let (appended, _) = dest.bytes();
    assert!(fetched > sizes["Plain"], "{fetched} bytes fetched");
    assert!(appended > sizes["Plain"], "{appended} bytes appended");

    let run = setup.run_via(
        &source_url,
        &dest_url,
        "migrate",
        &["--include", "^Squeezed$", "--compress", "always"],
    );
    assert_eq!(run.code, 0, "{}", run.everything());
    assert_eq!(run.counts(), (4, 0, 0, 0));
    let fetched = source.bytes().1 - fetched;
    let appended = dest.bytes().0 - appended;
    // Text deflates to well under half, TLS records and all.
    assert!(fetched < sizes["Squeezed"] / 2, "{fetched} bytes fetched");
    assert!(
        appended < sizes["Squeezed"] / 2,
        "{appended} bytes appended"
    );
    for folder in ["Plain", "Squeezed"] {
        let (from, to) = (
            src.fetch_all(folder).unwrap(),
            setup.dst().fetch_all(folder).unwrap(),
        );
        assert_eq!(to.len(), 4, "{folder}");
        for (s, d) in from.iter().zip(&to) {
            assert_eq!((&s.body, &s.flags), (&d.body, &d.flags), "{folder}");
        }
    }
}
