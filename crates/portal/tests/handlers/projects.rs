//! The migration workflow: creating a project from presets or typed servers, adding
//! mailboxes by rows or spreadsheet, the trial and migration passes, Stop, Finish,
//! Delete, live progress, the CSV reports and the end-of-pass email.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use mailmove_projects::{ProjectSettings, Side, secret_context};
use mailmove_store::{
    Intent, Ledger, MailboxResults, MailboxStatus, Outcome, PassEnd, PassKind, PassProgress,
    PassState, QueueLimits, StoreError,
};

use crate::harness::{Client, Portal};

#[tokio::test]
async fn a_new_migration_is_made_from_presets_or_typed_servers() {
    let portal =
        Portal::with(|config| config.tls_ca = Some("/etc/mailmove/test-ca.pem".into())).await;
    let client = portal.login("ann@example.com").await;
    let form = portal.get(&client, "/migrations/new").await;
    form.assert_ok();
    for label in [
        r#"<label for="name">Migration name</label>"#,
        r#"<label for="source_kind_pop3">POP</label>"#,
        r#"<label for="source_host">Source server address</label>"#,
        r#"<label for="dest_host">Destination server address</label>"#,
        r#"<label for="source_port">Source port</label>"#,
        r#"<label for="dest_security">Destination security</label>"#,
        r#"<label for="dest_preset">Destination preset</label>"#,
        r#"<label for="source_kind_ews">Exchange</label>"#,
        r#"<label for="dest_kind_ews">Exchange</label>"#,
        r#"name="dest_kind" value="ews">"#,
        "Rackspace Hosted Exchange (Exchange: type its server address)",
        "Microsoft 365",
        "through Exchange Web Services (EWS)",
        "Outlook on the web (https://mail.example.com/owa)",
        "Exchange 443 (TLS)",
    ] {
        assert!(form.body.contains(label), "{label}");
    }
    assert!(
        !form.body.contains("disabled") && !form.body.contains("not available yet"),
        "Exchange and its preset are offered on both sides"
    );
    assert!(
        !form.body.contains("dest_kind_pop3"),
        "POP is not a destination"
    );

    let id = portal.create_project(&client, "Acme").await;
    let project = portal.db().project_by_id(id).await.unwrap();
    assert_eq!(project.owner_email, "ann@example.com");
    assert_eq!(project.source, "imaps://mail.old.example:993");
    assert_eq!(project.dest, "imaps://secure.emailsrvr.com:993");
    assert_eq!(
        ProjectSettings::from_json(&project.settings)
            .unwrap()
            .tls_ca,
        Some("/etc/mailmove/test-ca.pem".into()),
        "the operator's CA goes into projects created here"
    );
    let next = portal
        .get(&client, &format!("/projects/{id}/mailboxes?notice=created"))
        .await;
    next.assert_ok();
    assert!(
        next.body
            .contains("Migration created. Now add its mailboxes.")
    );

    // A POP source with STARTTLS and its default port.
    let answer = portal
        .post(
            &client,
            "/migrations",
            &[
                ("name", "From POP"),
                ("source_kind", "pop3"),
                ("source_host", "10.1.2.3"),
                ("source_security", "starttls"),
                ("dest_preset", "gmail"),
            ],
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let projects = portal.db().projects(Some("ann@example.com")).await.unwrap();
    assert_eq!(projects[1].source, "pop3://10.1.2.3:110");
    assert_eq!(projects[1].dest, "imaps://imap.gmail.com:993");

    let list = portal.get(&client, "/migrations").await;
    list.assert_ok();
    assert!(
        list.body
            .contains(&format!(r#"<a href="/projects/{id}">Acme</a>"#))
    );
    assert!(
        list.body
            .contains("IMAP, secure.emailsrvr.com port 993, TLS (Rackspace Email)")
    );
    assert!(list.body.contains("POP, 10.1.2.3 port 110, STARTTLS"));
}

#[tokio::test]
async fn a_wrong_new_migration_says_what_to_fix() {
    let portal = Portal::new().await;
    let client = portal.login("ann@example.com").await;
    let answer = portal
        .post(
            &client,
            "/migrations",
            &[
                ("name", ""),
                ("source_kind", "imap"),
                ("source_host", "not a host"),
                ("dest_kind", "pop3"),
                ("dest_host", "mail.new.example"),
            ],
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        answer.body.contains("Give the migration a name"),
        "{}",
        answer.body
    );
    assert!(
        answer
            .body
            .contains("The source server address must be a host name")
    );
    assert!(answer.body.contains("POP can only be a source"));
    assert!(
        answer.body.contains(r#"value="not a host""#),
        "what was typed stays"
    );
    let exchange = portal
        .post(
            &client,
            "/migrations",
            &[
                ("name", "x"),
                ("source_preset", "rackspace-exchange"),
                ("dest_preset", "gmail"),
            ],
        )
        .await;
    assert_eq!(exchange.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        exchange.body.contains(
            "Rackspace Hosted Exchange is an Exchange service: choose the Exchange kind for \
             the source, and type its server address"
        ),
        "{}",
        exchange.body
    );
    assert!(portal.db().projects(None).await.unwrap().is_empty());

    portal.create_project(&client, "Acme").await;
    let twice = portal
        .post(
            &client,
            "/migrations",
            &[
                ("name", "Acme"),
                ("source_preset", "gmail"),
                ("dest_preset", "zoho"),
            ],
        )
        .await;
    assert_eq!(twice.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        twice.body.contains("You already have a migration named"),
        "{}",
        twice.body
    );
}

#[tokio::test]
async fn an_exchange_side_is_stored_as_its_ews_address() {
    let portal = Portal::new().await;
    let client = portal.login("ann@example.com").await;
    let answer = portal
        .post(
            &client,
            "/migrations",
            &[
                ("name", "To Exchange"),
                ("source_kind", "imap"),
                ("source_host", "mail.old.example"),
                ("source_security", "tls"),
                ("dest_kind", "ews"),
                ("dest_preset", ""),
                ("dest_host", "Mail.Corp.Example"),
                ("dest_port", ""),
                ("dest_security", "tls"),
            ],
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let projects = portal.db().projects(Some("ann@example.com")).await.unwrap();
    assert_eq!(projects[0].source, "imaps://mail.old.example:993");
    assert_eq!(
        projects[0].dest,
        "ews+https://mail.corp.example:443/EWS/Exchange.asmx"
    );
    let id = projects[0].id;

    // The rest of the workflow does not care what the sides speak.
    let added = portal
        .add_rows(
            &client,
            id,
            &[("a@old.example", "pw-a", "a@corp.example", "pw-b")],
        )
        .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    let page = portal.get(&client, &format!("/projects/{id}")).await;
    page.assert_ok();
    assert!(
        page.body
            .contains("Exchange, mail.corp.example port 443, TLS"),
        "{}",
        page.body
    );
    let trial = portal
        .post(
            &client,
            &format!("/projects/{id}/passes"),
            &[("pass", "verify")],
        )
        .await;
    assert_eq!(trial.status, StatusCode::SEE_OTHER, "{}", trial.body);
    let mailbox = &portal.db().mailboxes(id).await.unwrap()[0];
    assert_eq!(mailbox.status, MailboxStatus::Verifying);
    let list = portal.get(&client, "/migrations").await;
    assert!(
        list.body
            .contains("Exchange, mail.corp.example port 443, TLS")
    );
}

#[tokio::test]
async fn an_outlook_on_the_web_address_is_accepted_for_exchange() {
    let portal = Portal::new().await;
    let client = portal.login("ann@example.com").await;
    let answer = portal
        .post(
            &client,
            "/migrations",
            &[
                ("name", "From OWA"),
                ("source_kind", "ews"),
                ("source_host", "https://owa.old.example/owa/"),
                ("source_port", ""),
                ("source_security", "tls"),
                ("dest_kind", "ews"),
                ("dest_preset", "rackspace-exchange"),
                (
                    "dest_host",
                    "https://mail.hosted.example:8443/owa/#path=/mail",
                ),
            ],
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let projects = portal.db().projects(Some("ann@example.com")).await.unwrap();
    assert_eq!(
        projects[0].source,
        "ews+https://owa.old.example:443/EWS/Exchange.asmx"
    );
    assert_eq!(
        projects[0].dest,
        "ews+https://mail.hosted.example:8443/EWS/Exchange.asmx"
    );
}

#[tokio::test]
async fn a_wrong_exchange_address_says_what_to_type() {
    let portal = Portal::new().await;
    let client = portal.login("ann@example.com").await;
    let cases = [
        (
            "http://owa.old.example/owa",
            "The source address starts with http://: the portal reaches Exchange over HTTPS \
             only, so type https://",
        ),
        (
            "https://intranet.old.example/portal",
            "The source address is not the address of Outlook on the web \
             (https://mail.example.com/owa) nor of an Exchange server",
        ),
        (
            "https://alice:secret-pw@owa.old.example/owa",
            "Leave the login and password out of the source address",
        ),
        (
            "https://outlook.office365.com/owa/",
            "Microsoft 365 is migrated through IMAP here: choose IMAP and the Microsoft 365 \
             preset",
        ),
        (
            "",
            "Enter the source Exchange server address (mail.example.com), or the address of \
             its Outlook on the web (https://mail.example.com/owa)",
        ),
    ];
    for (typed, message) in cases {
        let answer = portal
            .post(
                &client,
                "/migrations",
                &[
                    ("name", "From Exchange"),
                    ("source_kind", "ews"),
                    ("source_host", typed),
                    ("source_security", "tls"),
                    ("dest_preset", "gmail"),
                ],
            )
            .await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{typed}");
        assert!(answer.body.contains(message), "{typed}: {}", answer.body);
        assert!(
            answer
                .body
                .contains(r#"name="source_kind" value="ews" checked"#),
            "Exchange stays chosen"
        );
        let alert = answer
            .body
            .split(r#"class="alert alert-error""#)
            .nth(1)
            .and_then(|rest| rest.split("</div>").next())
            .unwrap_or_default();
        assert!(
            !alert.contains("secret-pw"),
            "a password is not repeated in the message: {alert}"
        );
    }
    let starttls = portal
        .post(
            &client,
            "/migrations",
            &[
                ("name", "Exchange over STARTTLS"),
                ("source_preset", "gmail"),
                ("dest_kind", "ews"),
                ("dest_host", "mail.corp.example"),
                ("dest_security", "starttls"),
            ],
        )
        .await;
    assert_eq!(starttls.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        starttls.body.contains(
            "Exchange is reached over TLS (HTTPS) only: choose TLS for the destination security"
        ),
        "{}",
        starttls.body
    );
    assert!(portal.db().projects(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn typed_mailboxes_are_added_whole_with_sealed_passwords() {
    let portal = Portal::new().await;
    let client = portal.login("ann@example.com").await;
    let id = portal.create_project(&client, "Acme").await;
    let form = portal
        .get(&client, &format!("/projects/{id}/mailboxes"))
        .await;
    form.assert_ok();
    for label in [
        r#"<legend>Mailbox 1</legend>"#,
        r#"<label for="source_email_1">Source email</label>"#,
        r#"<label for="source_password_1">Source password</label>"#,
        r#"<label for="dest_login_1">Destination login</label>"#,
        r#"<label for="spreadsheet">Spreadsheet (CSV or XLSX)</label>"#,
        "Add a row",
        "Save mailboxes",
        "Upload mailboxes",
        "Download the template (CSV)",
    ] {
        assert!(form.body.contains(label), "{label}");
    }
    let more = portal
        .get(&client, &format!("/projects/{id}/mailboxes?rows=3"))
        .await;
    assert!(more.body.contains("<legend>Mailbox 3</legend>"));
    let fragment = portal
        .get(&client, &format!("/projects/{id}/mailboxes/row?n=4"))
        .await;
    fragment.assert_ok();
    assert!(fragment.body.contains("<legend>Mailbox 4</legend>"));
    assert!(fragment.body.contains(r#"id="source_email_4""#));
    assert!(fragment.body.contains(r#"hx-swap-oob="true""#));
    assert!(
        fragment
            .body
            .contains(&format!("/projects/{id}/mailboxes/row?n=5"))
    );
    assert!(!fragment.body.contains("<html"), "a fragment, not a page");

    // A bad row: nothing is added, each problem names its row.
    let refused = portal
        .add_rows(
            &client,
            id,
            &[
                (
                    "alice@old.example",
                    "alice-old-pw",
                    "alice@new.example",
                    "alice-new-pw",
                ),
                ("bob@old.example", "bob-pw", "", ""),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.body.contains("Nothing was added"),
        "{}",
        refused.body
    );
    assert!(refused.body.contains("Mailbox 2:"), "{}", refused.body);
    assert!(
        refused.body.contains(r#"value="alice@old.example""#),
        "addresses stay typed"
    );
    assert!(portal.db().mailboxes(id).await.unwrap().is_empty());

    let added = portal
        .add_rows(
            &client,
            id,
            &[
                (
                    "alice@old.example",
                    "alice-old-pw",
                    "alice@new.example",
                    "alice-new-pw",
                ),
                ("", "", "", ""),
                ("bob@old.example", "", "bob@new.example", "bob-new-pw"),
            ],
        )
        .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    assert_eq!(
        added.location(),
        format!("/projects/{id}?notice=added&count=2")
    );
    let stored = portal.db().mailboxes(id).await.unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(
        stored[0].source_login, "alice@old.example",
        "login defaults to the email"
    );
    let opened = portal
        .keyring
        .open(
            stored[0].source_secret.as_ref().unwrap(),
            &secret_context(id, "alice@old.example", Side::Source),
        )
        .unwrap();
    assert_eq!(
        opened.expose(),
        "alice-old-pw",
        "sealed as `mailmove project` seals"
    );
    let opened = portal
        .keyring
        .open(
            stored[1].dest_secret.as_ref().unwrap(),
            &secret_context(id, "bob@old.example", Side::Destination),
        )
        .unwrap();
    assert_eq!(opened.expose(), "bob-new-pw");
    assert_eq!(stored[1].source_secret, None);

    // The same mailbox again: refused whole, with the reason.
    let twice = portal
        .add_rows(
            &client,
            id,
            &[
                ("carol@old.example", "", "carol@new.example", ""),
                ("alice@old.example", "", "alice@new.example", ""),
            ],
        )
        .await;
    assert_eq!(twice.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        twice.body.contains("already has a mailbox"),
        "{}",
        twice.body
    );
    assert_eq!(portal.db().mailboxes(id).await.unwrap().len(), 2);
    let page = portal
        .get(&client, &format!("/projects/{id}/mailboxes"))
        .await;
    assert!(page.body.contains("Already in this migration"));
    assert!(page.body.contains("saved") && page.body.contains("none"));
}

#[tokio::test]
async fn a_mailboxs_passwords_can_be_replaced_never_read() {
    let portal = Portal::new().await;
    let client = portal.login("ann@example.com").await;
    let id = portal.create_project(&client, "Acme").await;
    portal
        .add_rows(
            &client,
            id,
            &[("Bob@Old.example", "old-source", "bob@new.example", "")],
        )
        .await;
    let mailbox = portal.db().mailboxes(id).await.unwrap()[0].clone();
    let path = format!("/projects/{id}/mailboxes/{}/passwords", mailbox.id);
    let project = portal.get(&client, &format!("/projects/{id}")).await;
    assert!(project.body.contains(&format!(r#"href="{path}">Change passwords<span class="visually-hidden"> of Bob@Old.example</span>"#)), "{}", project.body);
    let form = portal.get(&client, &path).await;
    form.assert_ok();
    assert!(
        form.body
            .contains(r#"<label for="source_password">New source password</label>"#)
    );
    assert!(
        form.body
            .contains(r#"<label for="dest_password">New destination password</label>"#)
    );
    assert!(form.body.contains("Stored now: a password."));
    assert!(form.body.contains("Stored now: none."));

    let nothing = portal
        .post(
            &client,
            &path,
            &[("source_password", ""), ("dest_password", "")],
        )
        .await;
    assert_eq!(nothing.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(nothing.body.contains("Type a new password"));

    let saved = portal
        .post(
            &client,
            &path,
            &[("source_password", ""), ("dest_password", "new-dest")],
        )
        .await;
    assert_eq!(saved.location(), format!("/projects/{id}?notice=passwords"));
    let stored = portal.db().mailbox(mailbox.id).await.unwrap();
    assert_eq!(
        stored.source_secret, mailbox.source_secret,
        "an empty field keeps the password"
    );
    let open = |sealed: &Option<Vec<u8>>, side: Side| {
        portal
            .keyring
            .open(
                sealed.as_ref().unwrap(),
                &secret_context(id, "bob@old.example", side),
            )
            .unwrap()
            .expose()
            .to_string()
    };
    assert_eq!(open(&stored.dest_secret, Side::Destination), "new-dest");
    assert_eq!(open(&stored.source_secret, Side::Source), "old-source");
    assert_eq!(
        portal
            .get(&client, &format!("/projects/{id}/mailboxes/999/passwords"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn spreadsheets_are_uploaded_whole_or_not_at_all() {
    let portal = Portal::new().await;
    let client = portal.login("ann@example.com").await;
    let id = portal.create_project(&client, "Acme").await;
    let path = format!("/projects/{id}/mailboxes/upload");

    let template = portal.get(&client, "/mailboxes-template.csv").await;
    template.assert_ok();
    assert!(
        template
            .body
            .starts_with("Source Email,Source Login Name,Source Password")
    );
    assert!(
        template.headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("attachment")
    );

    let bad = "Source Email,Source Password,Destination Email,Destination Password\n\
               a@old.example,pw-a,a@new.example,pw-a2\n\
               broken,pw-b,b@new.example,pw-b2\n\
               c@old.example,pw-c,,pw-c2\n";
    let refused = portal
        .upload(
            &client,
            &path,
            "users.csv",
            bad.as_bytes(),
            Some(&client.csrf),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.body.contains("Line 3:"), "{}", refused.body);
    assert!(refused.body.contains("Line 4:"), "{}", refused.body);
    assert!(refused.body.contains("2 problems"));
    assert!(
        portal.db().mailboxes(id).await.unwrap().is_empty(),
        "nothing half-imported"
    );

    let empty = portal
        .upload(&client, &path, "", b"", Some(&client.csrf))
        .await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(empty.body.contains("Choose a spreadsheet file"));

    let good = "Source Email,Source Password,Destination Email,Destination Password\n\
                a@old.example,pw-a,a@new.example,pw-a2\n";
    let added = portal
        .upload(
            &client,
            &path,
            "users.csv",
            good.as_bytes(),
            Some(&client.csrf),
        )
        .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    assert_eq!(
        added.location(),
        format!("/projects/{id}?notice=added&count=1")
    );

    let mut workbook = rust_xlsxwriter::Workbook::new();
    let sheet = workbook.add_worksheet();
    let cells = [
        [
            "Source Email",
            "Source Password",
            "Destination Email",
            "Destination Password",
        ],
        ["x@old.example", "pw-x", "x@new.example", "pw-x2"],
        ["y@old.example", "pw-y", "y@new.example", "pw-y2"],
    ];
    for (r, row) in cells.iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            sheet.write_string(r as u32, c as u16, *cell).unwrap();
        }
    }
    let xlsx = workbook.save_to_buffer().unwrap();
    let added = portal
        .upload(&client, &path, "users.xlsx", &xlsx, Some(&client.csrf))
        .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    assert_eq!(portal.db().mailboxes(id).await.unwrap().len(), 3);
}

/// A project of `ann` with three mailboxes; returns the client, project and mailbox ids.
async fn project_with_mailboxes(portal: &Portal) -> (Client, i64, Vec<i64>) {
    let client = portal.login("ann@example.com").await;
    let id = portal.create_project(&client, "Acme").await;
    portal
        .add_rows(
            &client,
            id,
            &[
                ("a@old.example", "pa", "a@new.example", "qa"),
                ("b@old.example", "pb", "b@new.example", "qb"),
                ("c@old.example", "pc", "c@new.example", "qc"),
            ],
        )
        .await;
    let ids = portal
        .db()
        .mailboxes(id)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    (client, id, ids)
}

#[tokio::test]
async fn the_trial_and_passes_run_on_all_or_chosen_mailboxes() {
    let portal = Portal::new().await;
    let (client, id, ids) = project_with_mailboxes(&portal).await;
    let page = portal.get(&client, &format!("/projects/{id}")).await;
    page.assert_ok();
    for text in [
        "Run trial",
        "Migrate",
        "Migrate new items",
        "Retry errors",
        "Stop",
        "Finish migration",
        "Delete migration",
        "Mailbox statistics (CSV)",
        "Failed items (CSV)",
        &format!(
            r#"<label for="choose-{}" class="visually-hidden">Choose a@old.example</label>"#,
            ids[0]
        ),
        &format!(r#"sse-connect="/projects/{id}/events""#),
        &format!(r#"sse-swap="status-{}""#, ids[2]),
        r#"<span class="status status-not-started">Not started</span>"#,
        "3 mailboxes:",
    ] {
        assert!(page.body.contains(text), "{text}");
    }

    // The trial for all (none chosen).
    let trial = portal
        .post(
            &client,
            &format!("/projects/{id}/passes"),
            &[("pass", "verify")],
        )
        .await;
    assert_eq!(trial.status, StatusCode::SEE_OTHER);
    assert_eq!(
        trial.location(),
        format!("/projects/{id}?notice=queued&pass=verify&count=3")
    );
    for mailbox in portal.db().mailboxes(id).await.unwrap() {
        assert_eq!(mailbox.status, MailboxStatus::Verifying);
        let pass = portal.db().latest_pass(mailbox.id).await.unwrap().unwrap();
        assert_eq!(pass.kind, PassKind::Verify);
    }
    let shown = portal.get(&client, trial.location()).await;
    assert!(
        shown.body.contains("Trial queued for 3 mailboxes."),
        "{}",
        shown.body
    );
    assert!(shown.body.contains("Trial waiting to start"));
    assert!(
        shown.body.contains(r#"<meta http-equiv="refresh""#),
        "reloads without JavaScript while passes run"
    );

    // The trial ends: one ready, one failed with its reason.
    let db = portal.db();
    for (ok, reason) in [
        (true, None),
        (false, Some("destination login refused: check the password")),
    ] {
        let pass = db.claim_pass("w", 60).await.unwrap().unwrap();
        let (state, status) = if ok {
            (PassState::Done, MailboxStatus::ReadyForMigration)
        } else {
            (PassState::Failed, MailboxStatus::VerifyFailed)
        };
        db.finish_pass(pass.id, "w", state, None, reason)
            .await
            .unwrap();
        db.set_mailbox_results(
            pass.mailbox_id,
            PassKind::Verify,
            status,
            &MailboxResults::default(),
            reason,
        )
        .await
        .unwrap();
    }
    let shown = portal.get(&client, &format!("/projects/{id}")).await;
    assert!(
        shown
            .body
            .contains(r#"<span class="status status-ready">Ready for migration</span>"#)
    );
    assert!(shown.body.contains(r#"<span class="status status-verify-failed">Verify failed</span><span class="reason">destination login refused: check the password</span>"#), "{}", shown.body);

    // Migrate only the chosen mailbox (the first), then stop it.
    let last = db.claim_pass("w", 60).await.unwrap().unwrap();
    db.finish_pass(last.id, "w", PassState::Done, None, None)
        .await
        .unwrap();
    let chosen = ids[0].to_string();
    let migrate = portal
        .post(
            &client,
            &format!("/projects/{id}/passes"),
            &[("pass", "full"), ("mailbox", &chosen)],
        )
        .await;
    assert_eq!(
        migrate.location(),
        format!("/projects/{id}?notice=queued&pass=full&count=1")
    );
    let statuses: Vec<_> = db
        .mailboxes(id)
        .await
        .unwrap()
        .iter()
        .map(|m| m.status)
        .collect();
    assert_eq!(statuses[0], MailboxStatus::Queued);
    assert_ne!(statuses[1], MailboxStatus::Queued);
    let stop = portal
        .post(
            &client,
            &format!("/projects/{id}/stop"),
            &[("mailbox", &chosen)],
        )
        .await;
    assert_eq!(
        stop.location(),
        format!("/projects/{id}?notice=stopped&count=1")
    );
    assert_eq!(
        db.mailbox(ids[0]).await.unwrap().status,
        MailboxStatus::Stopped
    );

    for kind in ["delta", "retry"] {
        let queued = portal
            .post(
                &client,
                &format!("/projects/{id}/passes"),
                &[("pass", kind)],
            )
            .await;
        assert_eq!(
            queued.location(),
            format!("/projects/{id}?notice=queued&pass={kind}&count=3")
        );
        portal
            .post(&client, &format!("/projects/{id}/stop"), &[])
            .await;
    }
    let unknown = portal
        .post(
            &client,
            &format!("/projects/{id}/passes"),
            &[("pass", "format-disk")],
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn finishing_hides_the_actions_and_erases_the_passwords() {
    let portal = Portal::new().await;
    let (client, id, _) = project_with_mailboxes(&portal).await;
    portal
        .post(
            &client,
            &format!("/projects/{id}/passes"),
            &[("pass", "full")],
        )
        .await;
    let busy = portal
        .post(&client, &format!("/projects/{id}/finish"), &[])
        .await;
    assert_eq!(busy.location(), format!("/projects/{id}?notice=busy"));
    assert!(
        portal
            .get(&client, busy.location())
            .await
            .body
            .contains("Passes are still queued or running")
    );

    portal
        .post(&client, &format!("/projects/{id}/stop"), &[])
        .await;
    let finished = portal
        .post(&client, &format!("/projects/{id}/finish"), &[])
        .await;
    assert_eq!(
        finished.location(),
        format!("/projects/{id}?notice=finished")
    );
    for mailbox in portal.db().mailboxes(id).await.unwrap() {
        assert_eq!((mailbox.source_secret, mailbox.dest_secret), (None, None));
    }
    let page = portal.get(&client, &format!("/projects/{id}")).await;
    page.assert_ok();
    assert!(page.body.contains("This migration was finished on"));
    for hidden in [
        "Run trial",
        "Migrate new items",
        "Finish migration",
        "Add mailboxes",
        "sse-connect",
    ] {
        assert!(!page.body.contains(hidden), "{hidden}");
    }
    assert!(
        page.body.contains("Mailbox statistics (CSV)"),
        "reports stay"
    );
    let list = portal.get(&client, "/migrations").await;
    assert!(
        list.body
            .contains(r#"<span class="status status-finished">Finished</span>"#)
    );

    for (path, fields) in [
        (format!("/projects/{id}/passes"), vec![("pass", "full")]),
        (format!("/projects/{id}/stop"), vec![]),
        (format!("/projects/{id}/finish"), vec![]),
        (
            format!("/projects/{id}/mailboxes"),
            vec![
                ("source_email", "z@old.example"),
                ("dest_email", "z@new.example"),
            ],
        ),
    ] {
        let refused = portal.post(&client, &path, &fields).await;
        assert_eq!(refused.status, StatusCode::CONFLICT, "{path}");
        assert!(refused.body.contains("This migration is finished"));
    }
    assert_eq!(
        portal
            .get(&client, &format!("/projects/{id}/mailboxes"))
            .await
            .status,
        StatusCode::CONFLICT
    );
}

#[tokio::test]
async fn deleting_needs_a_confirmation() {
    let portal = Portal::new().await;
    let (client, id, _) = project_with_mailboxes(&portal).await;
    let unconfirmed = portal
        .post(&client, &format!("/projects/{id}/delete"), &[])
        .await;
    assert_eq!(
        unconfirmed.location(),
        format!("/projects/{id}?notice=confirm")
    );
    let deleted = portal
        .post(
            &client,
            &format!("/projects/{id}/delete"),
            &[("confirm", "yes")],
        )
        .await;
    assert_eq!(deleted.location(), "/migrations?notice=deleted");
    assert!(portal.db().projects(None).await.unwrap().is_empty());
    assert_eq!(
        portal.get(&client, &format!("/projects/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    let list = portal.get(&client, "/migrations?notice=deleted").await;
    assert!(list.body.contains("Migration deleted"));
    assert!(list.body.contains("No migrations yet"));
}

/// Records a failed message in a mailbox's ledger.
pub async fn fail_item(portal: &Portal, mailbox_id: i64, uid: u32, subject: &str, reason: &str) {
    let mailbox = portal.db().mailbox(mailbox_id).await.unwrap();
    let ledger = Ledger::within(portal.db().clone(), &mailbox.ledger_key());
    let intent = Intent {
        source_folder: "Archive/2023".into(),
        source_uidvalidity: 1,
        source_uid: uid,
        dest_folder: "Archive/2023".into(),
        dest_uidvalidity: Some(2),
        content_key: format!("k{uid}"),
        message_id: Some(format!("<{uid}@old.example>")),
        subject: Some(subject.into()),
        size: 52_000_000,
    };
    ledger
        .record_intents(std::slice::from_ref(&intent))
        .await
        .unwrap();
    ledger
        .record_outcomes(&[Outcome::Failed {
            intent,
            reason: reason.into(),
        }])
        .await
        .unwrap();
}

#[tokio::test]
async fn reports_are_csv_files_of_statistics_and_failed_items() {
    let portal = Portal::new().await;
    let (client, id, ids) = project_with_mailboxes(&portal).await;
    portal
        .db()
        .set_mailbox_results(
            ids[0],
            PassKind::Full,
            MailboxStatus::CompletedWithErrors,
            &MailboxResults {
                copied: 120,
                already_present: 3,
                skipped: 1,
                failed: 2,
                bytes_copied: 4_500_000,
                dest_byte_exact: Some(false),
            },
            Some("2 messages failed; see the report"),
        )
        .await
        .unwrap();
    fail_item(
        &portal,
        ids[0],
        7,
        "=HYPERLINK(\"http://evil\")",
        "message too large for the destination",
    )
    .await;
    fail_item(
        &portal,
        ids[0],
        9,
        "Quarterly report",
        "destination over quota",
    )
    .await;

    let stats = portal
        .get(&client, &format!("/projects/{id}/reports/mailboxes.csv"))
        .await;
    stats.assert_ok();
    assert_eq!(stats.headers["content-type"], "text/csv; charset=utf-8");
    assert!(
        stats.headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("Acme-mailboxes.csv")
    );
    let lines: Vec<&str> = stats.body.lines().collect();
    assert_eq!(
        lines[0],
        "Source Email,Destination Email,Status,Last Pass,Copied,Already Present,Skipped,Failed,Bytes Copied,Destination Keeps Bytes,Last Error"
    );
    assert_eq!(
        lines[1],
        "a@old.example,a@new.example,Completed with errors,full,120,3,1,2,4500000,no,2 messages failed; see the report"
    );
    assert_eq!(lines.len(), 4);

    let failed = portal
        .get(&client, &format!("/projects/{id}/reports/failed-items.csv"))
        .await;
    failed.assert_ok();
    let lines: Vec<&str> = failed.body.lines().collect();
    assert_eq!(
        lines[0],
        "Source Email,Destination Email,Folder,UID,Message-ID,Subject,Size,Reason"
    );
    assert_eq!(
        lines[1],
        r#"a@old.example,a@new.example,Archive/2023,7,<7@old.example>,"'=HYPERLINK(""http://evil"")",52000000,message too large for the destination"#
    );
    assert_eq!(
        lines[2],
        "a@old.example,a@new.example,Archive/2023,9,<9@old.example>,Quarterly report,52000000,destination over quota"
    );
    assert_eq!(lines.len(), 3);
    let page = portal.get(&client, &format!("/projects/{id}")).await;
    assert!(
        page.body
            .contains("120 copied, 3 already there, 1 skipped, 2 failed; 4.5 MB"),
        "{}",
        page.body
    );
}

/// Reads a live stream until `until` holds for what arrived, or `limit` passes.
pub async fn read_stream(
    body: &mut axum::body::Body,
    text: &mut String,
    limit: Duration,
    until: impl Fn(&str) -> bool,
) {
    let deadline = tokio::time::Instant::now() + limit;
    while !until(text) {
        let frame = tokio::time::timeout_at(deadline, body.frame()).await;
        match frame {
            Ok(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    text.push_str(&String::from_utf8_lossy(data));
                }
            }
            _ => break,
        }
    }
}

#[tokio::test]
async fn live_progress_streams_the_cells_that_change() {
    let portal = Portal::new().await;
    let (client, id, ids) = project_with_mailboxes(&portal).await;
    portal
        .post(
            &client,
            &format!("/projects/{id}/passes"),
            &[("pass", "full")],
        )
        .await;
    let request = Request::get(format!("/projects/{id}/events"))
        .body(Body::empty())
        .unwrap();
    let response = portal.raw(&client, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    let mut text = String::new();
    let last = format!("event: progress-{}", ids[2]);
    read_stream(&mut body, &mut text, Duration::from_secs(10), |t| {
        t.contains(&last)
    })
    .await;
    assert!(text.contains("event: summary"), "{text}");
    assert!(
        text.contains(&format!(
            "event: status-{}\ndata: <span class=\"status status-queued\">Queued</span>",
            ids[0]
        )),
        "{text}"
    );
    assert!(text.contains("Migration waiting to start"), "{text}");

    // A worker takes the first pass and reports progress: only what changed is sent.
    let db = portal.db();
    let pass = db.claim_pass("w", 60).await.unwrap().unwrap();
    db.set_mailbox_status(pass.mailbox_id, MailboxStatus::Migrating, None)
        .await
        .unwrap();
    let progress = PassProgress {
        messages_total: 10,
        messages_done: 4,
        bytes_total: 1000,
        bytes_done: 400,
        current_folder: Some("INBOX".into()),
    };
    db.heartbeat(pass.id, "w", 60, &progress).await.unwrap();
    let mut more = String::new();
    read_stream(&mut body, &mut more, Duration::from_secs(10), |t| {
        t.contains("4 of 10 messages")
    })
    .await;
    assert!(
        more.contains(&format!("event: progress-{}", pass.mailbox_id)),
        "{more}"
    );
    assert!(
        more.contains("Migration: Folder INBOX, 4 of 10 messages, 400 B of 1.0 KB"),
        "{more}"
    );
    assert!(more.contains(&format!("event: status-{}", pass.mailbox_id)));
    assert!(
        !more.contains(&format!("event: status-{}", ids[2])),
        "unchanged cells are not sent again: {more}"
    );
}

#[tokio::test]
async fn the_contact_is_emailed_once_when_a_pass_over_the_project_ends() {
    let portal = Portal::new().await;
    let (client, id, ids) = project_with_mailboxes(&portal).await;
    let before = portal.mails().len();
    portal
        .post(
            &client,
            &format!("/projects/{id}/passes"),
            &[("pass", "full")],
        )
        .await;
    let db = portal.db();
    assert_eq!(
        mailmove_portal::notify_ended_passes(&portal.state)
            .await
            .unwrap(),
        0,
        "still running"
    );
    for n in 0..ids.len() {
        let pass = db.claim_pass("w", 60).await.unwrap().unwrap();
        db.finish_pass(pass.id, "w", PassState::Done, None, None)
            .await
            .unwrap();
        let status = if n == 0 {
            MailboxStatus::CompletedWithErrors
        } else {
            MailboxStatus::Completed
        };
        let results = MailboxResults {
            copied: 10,
            failed: u64::from(n == 0),
            ..Default::default()
        };
        db.set_mailbox_results(pass.mailbox_id, PassKind::Full, status, &results, None)
            .await
            .unwrap();
        if n + 1 < ids.len() {
            assert_eq!(
                mailmove_portal::notify_ended_passes(&portal.state)
                    .await
                    .unwrap(),
                0
            );
        }
    }
    assert_eq!(
        mailmove_portal::notify_ended_passes(&portal.state)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        mailmove_portal::notify_ended_passes(&portal.state)
            .await
            .unwrap(),
        0,
        "once"
    );
    let mails = portal.mails();
    assert_eq!(mails.len(), before + 1);
    let mail = mails.last().unwrap();
    assert_eq!(mail.to, "ann@example.com");
    assert_eq!(mail.subject, "mailmove: Migration of “Acme” has ended");
    assert!(mail.body.contains("2 Completed"), "{}", mail.body);
    assert!(mail.body.contains("1 Completed with errors"));
    assert!(mail.body.contains("Messages copied: 30; failed: 1."));
    assert!(
        mail.body
            .contains(&format!("http://127.0.0.1:8080/projects/{id}"))
    );
}

#[tokio::test]
async fn assets_are_served_by_the_binary() {
    let portal = Portal::new().await;
    let client = Client::default();
    let css = portal.get(&client, "/assets/style.css").await;
    css.assert_ok();
    assert_eq!(css.headers["content-type"], "text/css; charset=utf-8");
    assert!(css.body.contains(".status-verify-failed"));
    let htmx = portal.get(&client, "/assets/htmx.min.js").await;
    htmx.assert_ok();
    assert!(htmx.body.starts_with("var htmx="));
    let sse = portal.get(&client, "/assets/htmx-ext-sse.min.js").await;
    assert!(sse.body.contains("defineExtension(\"sse\""));
    assert_eq!(
        portal.get(&client, "/assets/nope.js").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        portal.get(&client, "/no/such/page").await.status,
        StatusCode::NOT_FOUND
    );
}

/// Ends a claimed pass the way the worker does: one transaction for the pass, its
/// mailbox's status and counts.
async fn end_migration(portal: &Portal, pass: i64, copied: u64) {
    let end = PassEnd {
        status: Some(MailboxStatus::Completed),
        results: Some(MailboxResults {
            copied,
            ..Default::default()
        }),
        ..PassEnd::state(PassState::Done)
    };
    assert!(portal.db().end_pass(pass, "w", &end).await.unwrap());
}

#[tokio::test]
async fn a_starting_migration_shows_the_trials_totals_before_its_first_heartbeat() {
    let portal = Portal::new().await;
    let (client, id, ids) = project_with_mailboxes(&portal).await;
    let db = portal.db();
    let first = ids[0].to_string();
    let passes = format!("/projects/{id}/passes");
    portal
        .post(&client, &passes, &[("pass", "verify"), ("mailbox", &first)])
        .await;
    let trial = db.claim_pass("w", 60).await.unwrap().unwrap();
    // What the worker records when a trial passes: its report, and what there is to
    // copy as the pass's figures.
    let report = r#"{"source":{"messages":41,"folders":4,"bytes":12500000,"largest_message":900000},
        "dest":{},"folders_to_create":[],"estimated_seconds":1,"warnings":[]}"#;
    let end = PassEnd {
        status: Some(MailboxStatus::ReadyForMigration),
        report: Some(report.into()),
        progress: Some(PassProgress {
            messages_total: 41,
            bytes_total: 12_500_000,
            ..Default::default()
        }),
        ..PassEnd::state(PassState::Done)
    };
    assert!(db.end_pass(trial.id, "w", &end).await.unwrap());
    let page = portal.get(&client, &format!("/projects/{id}")).await;
    assert!(
        page.body
            .contains("Trial: 41 messages in 4 folders, 12.5 MB"),
        "{}",
        page.body
    );

    portal
        .post(&client, &passes, &[("pass", "full"), ("mailbox", &first)])
        .await;
    let page = portal.get(&client, &format!("/projects/{id}")).await;
    assert!(
        page.body.contains("Migration waiting to start"),
        "{}",
        page.body
    );
    // A worker takes the pass; its first heartbeat is seconds away.
    let running = db.claim_pass("w", 60).await.unwrap().unwrap();
    assert_eq!(running.kind, PassKind::Full);
    let page = portal.get(&client, &format!("/projects/{id}")).await;
    assert!(
        page.body
            .contains("Migration: 0 of 41 messages, 0 B of 12.5 MB"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("0 of 0 messages"), "{}", page.body);

    // A pass no trial sized says it is starting rather than "0 of 0".
    end_migration(&portal, running.id, 41).await;
    portal
        .post(&client, &passes, &[("pass", "delta"), ("mailbox", &first)])
        .await;
    db.claim_pass("w", 60).await.unwrap().unwrap();
    let page = portal.get(&client, &format!("/projects/{id}")).await;
    assert!(
        page.body.contains("Migration of new items: starting"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("0 of 0 messages"), "{}", page.body);
}

/// Finish and Delete check for running passes and act in one transaction that holds the
/// project, so a pass queued at the same moment either comes first (and the project is
/// refused as busy) or is refused itself: no worker ever runs a pass of a finished or
/// deleted project.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finish_or_delete_racing_queued_passes_leaves_no_running_pass_without_its_project() {
    for round in 0..12 {
        let portal = Portal::new().await;
        let (client, id, _) = project_with_mailboxes(&portal).await;
        let db = portal.db().clone();
        let passes = format!("/projects/{id}/passes");
        let queue = portal.post(&client, &passes, &[("pass", "full")]);
        let end = async {
            if round % 2 == 0 {
                portal
                    .post(&client, &format!("/projects/{id}/finish"), &[])
                    .await
            } else {
                portal
                    .post(
                        &client,
                        &format!("/projects/{id}/delete"),
                        &[("confirm", "yes")],
                    )
                    .await
            }
        };
        let worker = async {
            let mut claimed = Vec::new();
            for _ in 0..20 {
                if let Some(pass) = db.claim_pass("w", 60).await.unwrap() {
                    claimed.push(pass);
                }
                tokio::task::yield_now().await;
            }
            claimed
        };
        let (queued, ended, mut claimed) = tokio::join!(queue, end, worker);
        while let Some(pass) = db.claim_pass("w", 60).await.unwrap() {
            claimed.push(pass);
        }
        let user = db.ensure_user("ann@example.com").await.unwrap();
        match db.owned_project(id, user).await {
            Err(StoreError::NotFound(_)) => {
                assert!(
                    claimed.is_empty(),
                    "round {round}: a pass of a deleted project ran"
                );
                assert!(
                    queued.status == StatusCode::NOT_FOUND
                        || queued.location().contains("notice=empty"),
                    "round {round}: {}",
                    queued.status
                );
            }
            Ok(project) if project.finished_at.is_some() => {
                assert!(
                    claimed.is_empty(),
                    "round {round}: a pass of a finished project ran"
                );
                assert_eq!(db.unfinished_passes(id).await.unwrap(), 0, "round {round}");
            }
            Ok(_) => {
                assert!(
                    ended.location().contains("notice=busy"),
                    "round {round}: {}",
                    ended.location()
                );
                assert_eq!(claimed.len(), 3, "round {round}");
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[tokio::test]
async fn a_migration_that_ends_just_before_new_items_are_queued_is_still_reported() {
    let portal = Portal::new().await;
    let (client, id, ids) = project_with_mailboxes(&portal).await;
    let before = portal.mails().len();
    let passes = format!("/projects/{id}/passes");
    portal.post(&client, &passes, &[("pass", "full")]).await;
    let db = portal.db();
    for _ in &ids {
        let pass = db.claim_pass("w", 60).await.unwrap().unwrap();
        end_migration(&portal, pass.id, 10).await;
    }
    // "Migrate new items" is queued before the notifier next looks.
    portal.post(&client, &passes, &[("pass", "delta")]).await;
    db.claim_pass("w", 60).await.unwrap().unwrap();
    assert_eq!(
        mailmove_portal::notify_ended_passes(&portal.state)
            .await
            .unwrap(),
        1,
        "the migration is reported while the new items are copied"
    );
    let mails = portal.mails();
    assert_eq!(mails.len(), before + 1);
    let mail = mails.last().unwrap();
    assert_eq!(mail.subject, "mailmove: Migration of “Acme” has ended");
    assert!(
        mail.body.contains("Messages copied: 30; failed: 0."),
        "{}",
        mail.body
    );
    assert_eq!(
        mailmove_portal::notify_ended_passes(&portal.state)
            .await
            .unwrap(),
        0,
        "the new items are still being copied"
    );
    for n in 0..ids.len() {
        let pass = if n == 0 {
            db.latest_pass(ids[0]).await.unwrap().unwrap()
        } else {
            db.claim_pass("w", 60).await.unwrap().unwrap()
        };
        end_migration(&portal, pass.id, 1).await;
    }
    assert_eq!(
        mailmove_portal::notify_ended_passes(&portal.state)
            .await
            .unwrap(),
        1
    );
    let mail = portal.mails().last().unwrap().clone();
    assert_eq!(
        mail.subject,
        "mailmove: Migration of new items of “Acme” has ended"
    );
    assert_eq!(
        mailmove_portal::notify_ended_passes(&portal.state)
            .await
            .unwrap(),
        0,
        "each pass is reported once"
    );
    assert_eq!(portal.mails().len(), before + 2);
}

#[tokio::test]
async fn passes_over_the_operators_queue_limit_are_refused_with_a_notice() {
    let portal = Portal::with_db(
        |db| {
            db.with_queue_limits(QueueLimits {
                per_project: 2,
                per_user: 10,
            })
        },
        |_| {},
    )
    .await;
    let client = portal.login("owner@example.com").await;
    let id = portal.create_project(&client, "Limited").await;
    portal
        .add_rows(
            &client,
            id,
            &[
                ("a@old.example", "pa", "a@new.example", "qa"),
                ("b@old.example", "pb", "b@new.example", "qb"),
                ("c@old.example", "pc", "c@new.example", "qc"),
            ],
        )
        .await;
    let refused = portal
        .post(
            &client,
            &format!("/projects/{id}/passes"),
            &[("pass", "verify")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::SEE_OTHER);
    assert_eq!(
        refused.location(),
        format!("/projects/{id}?notice=queue-full&count=3")
    );
    // Nothing was queued, and the page says why and what to do.
    for mailbox in portal.db().mailboxes(id).await.unwrap() {
        assert!(portal.db().latest_pass(mailbox.id).await.unwrap().is_none());
    }
    let shown = portal.get(&client, refused.location()).await;
    assert!(
        shown
            .body
            .contains("Not queued: 3 mailboxes would be more passes waiting at once"),
        "{}",
        shown.body
    );
}
