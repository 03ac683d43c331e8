//! The EWS test server validated by exchangelib, a Python EWS client written against
//! real Exchange: if exchangelib can walk, read and write this server, the server speaks
//! EWS as Exchange does, at least as far as an independent client can tell.
//!
//! Needs `python3` with exchangelib (`python3 -m pip install exchangelib`).

use std::collections::BTreeSet;
use std::process::Command;

use mailmove_testkit::ews::{EwsConfig, EwsServer, FlagStatus, Seed};
use mailmove_testkit::messages;
use serde_json::Value;
use sha2::{Digest, Sha256};

const USER: &str = "alice@example.com";
const PASSWORD: &str = "pässword-1";
/// The script normally takes a few seconds; this only stops a hung run.
const SCRIPT_TIMEOUT_SECS: &str = "300";

#[test]
fn exchangelib_over_https_with_ntlm() {
    let server = EwsServer::start(EwsConfig::ntlm().with_https()).unwrap();
    run_and_check(&server, "MAILMOVE\\alice", "NTLM");
}

#[test]
fn exchangelib_over_http_with_basic() {
    let server = EwsServer::start(EwsConfig::basic()).unwrap();
    run_and_check(&server, USER, "BASIC");
}

fn run_and_check(server: &EwsServer, login: &str, auth: &str) {
    server.add_user(USER, PASSWORD);
    server.create_folder(USER, &["Inbox", "Projects"]).unwrap();
    let seeded = [
        messages::simple("one@example.com", "First", 1_000),
        messages::eight_bit_headers("two@example.com"),
        messages::with_attachment("three@example.com", 30_000, 7),
        messages::without_message_id("No id"),
    ];
    for (n, mime) in seeded.iter().enumerate() {
        let seed = Seed {
            is_read: n % 2 == 1,
            flag: if n == 0 {
                FlagStatus::Flagged
            } else {
                FlagStatus::NotFlagged
            },
            ..Seed::default()
        };
        server.add_message(USER, &["Inbox"], mime, seed).unwrap();
    }

    let results = run_script(server, login, auth);
    let of_kind =
        |kind: &str| -> Vec<&Value> { results.iter().filter(|r| r["kind"] == kind).collect() };
    assert_eq!(of_kind("done").len(), 1, "the script did not finish");

    // 1. The folder walk saw mail and non-mail folders with their classes.
    let folders: Vec<(Vec<String>, Option<String>)> = of_kind("folder")
        .iter()
        .map(|f| {
            let path = f["path"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap().to_string())
                .collect();
            (path, f["folder_class"].as_str().map(str::to_string))
        })
        .collect();
    for (path, class) in [
        (vec!["Inbox"], "IPF.Note"),
        (vec!["Inbox", "Projects"], "IPF.Note"),
        (vec!["Sent Items"], "IPF.Note"),
        (vec!["Drafts"], "IPF.Note"),
        (vec!["Deleted Items"], "IPF.Note"),
        (vec!["Junk Email"], "IPF.Note"),
        (vec!["Calendar"], "IPF.Appointment"),
        (vec!["Contacts"], "IPF.Contact"),
        (vec!["Tasks"], "IPF.Task"),
    ] {
        let path: Vec<String> = path.into_iter().map(str::to_string).collect();
        assert!(
            folders.contains(&(path.clone(), Some(class.to_string()))),
            "{path:?} ({class}) missing from {folders:?}"
        );
    }

    // 2. Every inbox message came back byte for byte.
    let read: BTreeSet<String> = of_kind("inbox")
        .iter()
        .map(|m| m["sha256"].as_str().unwrap().to_string())
        .collect();
    let expected: BTreeSet<String> = seeded.iter().map(|m| sha256(m)).collect();
    assert_eq!(read, expected);

    // 3. The folder and the two messages exchangelib created are in the store as sent.
    let imported = server
        .folders(USER)
        .into_iter()
        .find(|f| f.path == ["Inbox", "Imported"])
        .expect("exchangelib created Inbox/Imported");
    assert_eq!(of_kind("created_folder")[0]["id"], imported.id.as_str());
    let stored = server.messages(USER, &["Inbox", "Imported"]);
    assert_eq!(stored.len(), 2);
    for created in of_kind("created_message") {
        let n = created["n"].as_u64().unwrap();
        let item = stored
            .iter()
            .find(|m| m.id == created["id"].as_str().unwrap())
            .expect("created id is stored");
        assert_eq!(sha256(&item.mime), created["sha256"].as_str().unwrap());
        assert!(item.is_read, "is_read=True was sent");
        let source = item
            .extended
            .iter()
            .find(|e| e.property_name.as_deref() == Some("MailmoveSourceId"))
            .expect("the named property is stored");
        assert_eq!(
            source.property_set_id.as_deref(),
            Some("7b6a9f4e-3c1d-4e8b-9a2f-6d5c4b3a2910")
        );
        assert_eq!(source.values, [format!("source-{n}")]);
        if n == 1 {
            // Saved without PR_MESSAGE_FLAGS: Exchange keeps it as an unsent draft.
            assert!(item.is_draft);
            assert_eq!(item.message_flags, 0x9);
        } else {
            assert!(!item.is_draft);
            assert_eq!(item.message_flags, 0x1);
        }
    }

    // 4. exchangelib read its extended properties back and could restrict on one.
    let mut imported_read: Vec<(String, i64)> = of_kind("imported")
        .iter()
        .map(|m| {
            (
                m["source_id"].as_str().unwrap().to_string(),
                m["message_flags"].as_i64().unwrap(),
            )
        })
        .collect();
    imported_read.sort();
    assert_eq!(
        imported_read,
        vec![("source-1".to_string(), 9), ("source-2".to_string(), 1)]
    );
    assert_eq!(
        of_kind("restricted")[0]["subjects"],
        serde_json::json!(["Imported 2"])
    );

    // 5. Autodiscover (SOAP GetUserSettings) led exchangelib to this EWS URL.
    let discovered = of_kind("autodiscover");
    assert_eq!(discovered[0]["ews_url"], server.url().as_str());
    assert_eq!(discovered[0]["inbox_total"], 4);

    assert_eq!(server.requests("CreateFolder"), 1);
    assert_eq!(server.requests("CreateItem"), 2);
    assert!(server.requests("GetItem") >= 1);
}

/// Runs the script with settings in the environment and returns its RESULT lines.
fn run_script(server: &EwsServer, login: &str, auth: &str) -> Vec<Value> {
    let check = Command::new("python3")
        .args(["-c", "import exchangelib"])
        .output()
        .expect("python3 must be installed to run the exchangelib tests");
    assert!(
        check.status.success(),
        "exchangelib is missing: install it with `python3 -m pip install exchangelib` ({})",
        String::from_utf8_lossy(&check.stderr).trim()
    );

    // exchangelib keeps an autodiscover cache file in the temporary directory: give it
    // one of its own.
    let scratch = tempfile::tempdir().unwrap();
    let base = server.base_url();
    let mut command = Command::new("timeout");
    command
        .args([SCRIPT_TIMEOUT_SECS, "python3"])
        .arg(mailmove_testkit::testkit_path("tests/ews_exchangelib.py"))
        .env("EWS_URL", server.url())
        .env("EWS_EMAIL", USER)
        .env("EWS_LOGIN", login)
        .env("EWS_PASSWORD", PASSWORD)
        .env("EWS_AUTH", auth)
        .env(
            "EWS_AUTODISCOVER_URL",
            format!("{base}/autodiscover/autodiscover.svc"),
        )
        .env("TMPDIR", scratch.path())
        .env("PYTHONDONTWRITEBYTECODE", "1");
    match server.ca_pem() {
        Some(ca) => command.env("REQUESTS_CA_BUNDLE", ca),
        None => command.env_remove("REQUESTS_CA_BUNDLE"),
    };
    let output = command.output().expect("running python3");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        mailmove_testkit::testkit_path("tests/ews_exchangelib.py").display(),
        output.status
    );
    stdout
        .lines()
        .filter_map(|line| line.strip_prefix("RESULT "))
        .map(|json| serde_json::from_str(json).expect("RESULT lines are JSON"))
        .collect()
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
