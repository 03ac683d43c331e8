//! End-to-end: errors a person can act on, exit codes, secrets kept out of output,
//! and the proof (`verify`) and the trial (`check`).

mod common;

use common::{DEST_PASSWORD, SOURCE_PASSWORD, Setup};
use mailmove_testkit::{DovecotOptions, free_port, messages};

#[test]
fn a_wrong_password_exits_3_and_says_which_side_and_what_to_do() {
    let setup = Setup::new();
    let output = setup
        .command("migrate")
        .env("MAILMOVE_DEST_PASSWORD", "not-the-password")
        .output()
        .unwrap();
    let run = common::finish(output, None);
    assert_eq!(run.code, 3, "{}", run.everything());
    assert!(
        run.stderr
            .contains("destination login refused for bob@new.example: check the password"),
        "{}",
        run.stderr
    );
    assert!(!run.everything().contains("not-the-password"));
}

#[test]
fn a_closed_port_exits_3_and_names_the_server() {
    let setup = Setup::new();
    let port = free_port();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mailmove"))
        .args(["migrate", "--source"])
        .arg(format!("imap://alice@127.0.0.1:{port}"))
        .arg("--dest")
        .arg(setup.dest_url())
        .arg("--state")
        .arg(setup.state())
        .env("MAILMOVE_SOURCE_PASSWORD", SOURCE_PASSWORD)
        .env("MAILMOVE_DEST_PASSWORD", DEST_PASSWORD)
        .output()
        .unwrap();
    let run = common::finish(output, None);
    assert_eq!(run.code, 3, "{}", run.everything());
    assert!(
        run.stderr.contains(&format!(
            "cannot reach the source server 127.0.0.1:{port}: connection refused"
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn usage_errors_exit_2_and_passwords_never_go_on_the_command_line() {
    let setup = Setup::new();
    let no_password = setup
        .command("migrate")
        .env_remove("MAILMOVE_SOURCE_PASSWORD")
        .output()
        .unwrap();
    let run = common::finish(no_password, None);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("MAILMOVE_SOURCE_PASSWORD"),
        "{}",
        run.stderr
    );

    let in_url = std::process::Command::new(env!("CARGO_BIN_EXE_mailmove"))
        .args([
            "check",
            "--source",
            "imaps://alice:hunter2@mail.example",
            "--dest",
            "imaps://b@c.example",
        ])
        .output()
        .unwrap();
    let run = common::finish(in_url, None);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("passwords never go on the command line"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("hunter2"));

    let bad_flag = std::process::Command::new(env!("CARGO_BIN_EXE_mailmove"))
        .args(["migrate", "--nonsense"])
        .output()
        .unwrap();
    assert_eq!(bad_flag.status.code(), Some(2));
}

#[test]
fn passwords_appear_in_no_output_report_or_state_file() {
    let setup = Setup::new();
    setup
        .src()
        .append("INBOX", &[], None, &messages::simple("p@x", "p", 100))
        .unwrap();
    let output = setup
        .command("migrate")
        .env("MAILMOVE_LOG", "trace")
        .arg("--report")
        .arg(setup.dir.path().join("r.json"))
        .output()
        .unwrap();
    let run = common::finish(output, Some(setup.dir.path().join("r.json")));
    assert_eq!(run.code, 0, "{}", run.everything());
    // Trace logging shows the protocol, so this would catch a leak from the client.
    assert!(
        run.stderr.contains("LOGIN") || run.stderr.contains("AUTHENTICATE"),
        "traces are on"
    );
    for secret in [SOURCE_PASSWORD, DEST_PASSWORD] {
        assert!(!run.everything().contains(secret));
        assert!(!run.report.as_ref().unwrap().to_string().contains(secret));
        let state = std::fs::read(setup.state()).unwrap();
        assert!(!String::from_utf8_lossy(&state).contains(secret));
    }
}

#[test]
fn verify_finds_a_message_deleted_at_the_destination() {
    let setup = Setup::new();
    let mut src = setup.src();
    src.create("Archive").unwrap();
    for i in 0..3 {
        src.append(
            "Archive",
            &[],
            None,
            &messages::simple(&format!("v{i}@x"), &format!("v{i}"), 300),
        )
        .unwrap();
    }
    src.append(
        "Archive",
        &["\\Deleted"],
        None,
        &messages::simple("skip@x", "skip", 300),
    )
    .unwrap();
    assert_eq!(setup.run("migrate", &[]).code, 0);

    let clean = setup.run("verify", &[]);
    assert_eq!(clean.code, 0, "{}", clean.everything());
    assert!(clean.stdout.contains("0 unexplained"), "{}", clean.stdout);

    let mut dst = setup.dst();
    let victim = dst.fetch_all("Archive").unwrap()[1].uid;
    dst.delete_message("Archive", victim).unwrap();
    let found = setup.run("verify", &[]);
    assert_eq!(found.code, 1, "{}", found.everything());
    let missing = found.report.unwrap()["missing"].as_array().unwrap().clone();
    let unexplained: Vec<_> = missing.iter().filter(|m| m["explained"] == false).collect();
    assert_eq!(unexplained.len(), 1, "{missing:?}");
    assert_eq!(unexplained[0]["folder"], "Archive");
    assert_eq!(unexplained[0]["uid"], 2);
    assert_eq!(unexplained[0]["message_id"], "<v1@x>");
    assert!(
        unexplained[0]["reason"]
            .as_str()
            .unwrap()
            .contains("no longer at the destination")
    );
    // The \Deleted one is listed, explained.
    assert!(
        missing
            .iter()
            .any(|m| m["message_id"] == "<skip@x>" && m["explained"] == true)
    );

    // A pass copies only what is new at the source; it trusts the ledger and does not
    // bring back what was deleted at the destination. verify keeps saying so.
    assert_eq!(setup.run("migrate", &[]).counts(), (0, 3, 1, 0));
    assert_eq!(setup.run("verify", &[]).code, 1);
}

#[test]
fn verify_without_a_ledger_matches_by_content() {
    let setup = Setup::new();
    let body = messages::simple("manual@x", "manual", 300);
    setup.src().append("INBOX", &[], None, &body).unwrap();
    setup
        .src()
        .append(
            "INBOX",
            &[],
            None,
            &messages::simple("absent@x", "absent", 300),
        )
        .unwrap();
    setup.dst().append("INBOX", &[], None, &body).unwrap();
    let run = setup.run("verify", &[]);
    assert_eq!(run.code, 1);
    let missing = run.report.unwrap()["missing"].as_array().unwrap().clone();
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0]["message_id"], "<absent@x>");
    assert!(
        missing[0]["reason"]
            .as_str()
            .unwrap()
            .contains("never copied")
    );
}

#[test]
fn check_counts_the_source_and_warns_about_the_destination_quota() {
    let setup = Setup::with(
        DovecotOptions::default(),
        DovecotOptions {
            quota_bytes: Some(200_000),
            ..DovecotOptions::default()
        },
    );
    let mut src = setup.src();
    src.create("Big").unwrap();
    src.append("INBOX", &[], None, &messages::simple("c1@x", "c", 20_000))
        .unwrap();
    src.append(
        "Big",
        &[],
        None,
        &messages::with_attachment("c2@x", 150_000, 3),
    )
    .unwrap();
    let run = setup.run("check", &[]);
    assert_eq!(run.code, 0, "{}", run.everything());
    let report = run.report.unwrap();
    assert_eq!(report["source"]["messages"], 2);
    assert!(report["source"]["largest_message"].as_u64().unwrap() > 150_000);
    // QUOTA counts in KiB; Dovecot rounds the limit up.
    assert_eq!(
        report["dest"]["quota_limit"].as_u64(),
        Some(200_000_u64.div_ceil(1024) * 1024)
    );
    assert!(
        report["folders_to_create"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "Big")
    );
    let warnings = report["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("quota would be")),
        "{warnings:?}"
    );
    assert!(
        run.stdout.contains("warning: the destination quota"),
        "{}",
        run.stdout
    );
    // The trial changes nothing.
    assert!(!setup.dst().list().unwrap().iter().any(|f| f.name == "Big"));
}

#[test]
fn an_untrusted_certificate_is_named_and_the_hint_names_the_flag() {
    let setup = Setup::new();
    let source = format!("imaps://alice@localhost:{}", setup.source.imaps_port());
    for command in ["check", "migrate"] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_mailmove"))
            .args([command, "--source", &source, "--dest"])
            .arg(setup.dest_url())
            .args(if command == "migrate" {
                vec!["--state".into(), setup.state().into_os_string()]
            } else {
                Vec::new()
            })
            .env("MAILMOVE_SOURCE_PASSWORD", SOURCE_PASSWORD)
            .env("MAILMOVE_DEST_PASSWORD", DEST_PASSWORD)
            .output()
            .unwrap();
        let run = common::finish(output, None);
        assert_eq!(run.code, 3, "{command}: {}", run.everything());
        // The library's sentence says what failed, with no flag in it; the command
        // line's hint after it names the flag.
        assert!(
            run.stderr.contains(
                "error: source: certificate for localhost is not trusted: it was issued by an \
                 authority this machine does not trust\n\
                 hint: pass --tls-ca FILE with the CA that signed it"
            ),
            "{command}: {}",
            run.stderr
        );
    }
}
