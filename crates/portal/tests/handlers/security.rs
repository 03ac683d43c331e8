//! What must never happen: reaching another user's project, changing anything without
//! the session's CSRF token, or a mailbox password coming back in any answer.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use mailmove_store::{MailboxResults, MailboxStatus, PassProgress, PassState};

use crate::harness::{Answer, Client, Portal};
use crate::projects::{fail_item, read_stream};

/// A request a browser sends: method (or `UPLOAD` for the spreadsheet form), path, fields.
type Route = (&'static str, String, Vec<(&'static str, String)>);

/// Every route that names a project, with the method and the fields a browser sends.
fn project_routes(id: i64, mailbox: i64) -> Vec<Route> {
    let m = mailbox.to_string();
    vec![
        ("GET", format!("/projects/{id}"), vec![]),
        ("GET", format!("/projects/{id}/mailboxes"), vec![]),
        ("GET", format!("/projects/{id}/mailboxes/row?n=2"), vec![]),
        (
            "GET",
            format!("/projects/{id}/reports/mailboxes.csv"),
            vec![],
        ),
        (
            "GET",
            format!("/projects/{id}/reports/failed-items.csv"),
            vec![],
        ),
        ("GET", format!("/projects/{id}/events"), vec![]),
        (
            "POST",
            format!("/projects/{id}/passes"),
            vec![("pass", "full".into()), ("mailbox", m.clone())],
        ),
        ("POST", format!("/projects/{id}/stop"), vec![("mailbox", m)]),
        ("POST", format!("/projects/{id}/finish"), vec![]),
        (
            "POST",
            format!("/projects/{id}/delete"),
            vec![("confirm", "yes".into())],
        ),
        (
            "POST",
            format!("/projects/{id}/mailboxes"),
            vec![
                ("source_email", "intruder@old.example".into()),
                ("source_password", "x".into()),
                ("dest_email", "intruder@new.example".into()),
                ("dest_password", "y".into()),
            ],
        ),
        ("UPLOAD", format!("/projects/{id}/mailboxes/upload"), vec![]),
        (
            "GET",
            format!("/projects/{id}/mailboxes/{mailbox}/passwords"),
            vec![],
        ),
        (
            "POST",
            format!("/projects/{id}/mailboxes/{mailbox}/passwords"),
            vec![("source_password", "taken-over".into())],
        ),
    ]
}

const INTRUDER_CSV: &str =
    "Source Email,Destination Email\nintruder@old.example,intruder@new.example\n";

async fn call(
    portal: &Portal,
    client: &Client,
    method: &str,
    path: &str,
    fields: &[(&str, String)],
) -> Answer {
    match method {
        "GET" => portal.get(client, path).await,
        "POST" => {
            let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            portal.post(client, path, &fields).await
        }
        _ => {
            let csrf = (!client.csrf.is_empty()).then_some(client.csrf.as_str());
            portal
                .upload(client, path, "users.csv", INTRUDER_CSV.as_bytes(), csrf)
                .await
        }
    }
}

#[tokio::test]
async fn another_users_project_is_not_found_on_every_route() {
    let portal = Portal::new().await;
    let ann = portal.login("ann@example.com").await;
    let id = portal.create_project(&ann, "Acme").await;
    portal
        .add_rows(&ann, id, &[("a@old.example", "pa", "a@new.example", "qa")])
        .await;
    let mailbox = portal.db().mailboxes(id).await.unwrap()[0].id;
    let bob = portal.login("bob@example.com").await;
    let missing = 999_999;
    for (method, path, fields) in project_routes(id, mailbox)
        .into_iter()
        .chain(project_routes(missing, mailbox))
        .chain([("GET", "/projects/not-a-number".to_string(), vec![])])
    {
        let answer = call(&portal, &bob, method, &path, &fields).await;
        assert_eq!(
            answer.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            answer.body
        );
        assert!(answer.body.contains("Page not found"), "{method} {path}");
        assert!(!answer.body.contains("Acme"), "{method} {path}");
    }
    // Nothing of ann's changed.
    let mailboxes = portal.db().mailboxes(id).await.unwrap();
    assert_eq!(mailboxes.len(), 1);
    assert_eq!(mailboxes[0].status, MailboxStatus::NotStarted);
    assert!(portal.db().latest_pass(mailbox).await.unwrap().is_none());
    let list = portal.get(&bob, "/migrations").await;
    assert!(!list.body.contains("Acme"));
    // Bob cannot pick ann's mailbox in his own project either.
    let own = portal.create_project(&bob, "Bobs").await;
    portal
        .add_rows(&bob, own, &[("b@old.example", "", "b@new.example", "")])
        .await;
    let queued = portal
        .post(
            &bob,
            &format!("/projects/{own}/passes"),
            &[("pass", "full"), ("mailbox", &mailbox.to_string())],
        )
        .await;
    assert_eq!(
        queued.location(),
        format!("/projects/{own}?notice=not-chosen")
    );
    assert!(portal.db().latest_pass(mailbox).await.unwrap().is_none());
    // Nor reach ann's mailbox through his own project.
    let through_own = format!("/projects/{own}/mailboxes/{mailbox}/passwords");
    assert_eq!(
        portal.get(&bob, &through_own).await.status,
        StatusCode::NOT_FOUND
    );
    let answer = portal
        .post(&bob, &through_own, &[("source_password", "taken-over")])
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    let kept = portal.db().mailbox(mailbox).await.unwrap();
    let opened = portal
        .keyring
        .open(
            kept.source_secret.as_ref().unwrap(),
            &mailmove_projects::secret_context(
                id,
                "a@old.example",
                mailmove_projects::Side::Source,
            ),
        )
        .unwrap();
    assert_eq!(opened.expose(), "pa");
    // And ann still reaches hers.
    portal
        .get(&ann, &format!("/projects/{id}"))
        .await
        .assert_ok();
}

#[tokio::test]
async fn every_state_changing_request_needs_the_sessions_csrf_token() {
    let portal = Portal::new().await;
    let ann = portal.login("ann@example.com").await;
    let id = portal.create_project(&ann, "Acme").await;
    portal
        .add_rows(&ann, id, &[("a@old.example", "pa", "a@new.example", "qa")])
        .await;
    let mailbox = portal.db().mailboxes(id).await.unwrap()[0].id;
    let other = portal.login("bob@example.com").await;
    let tokens = [
        String::new(),
        "forged".to_string(),
        // A valid token, of another session.
        other.csrf.clone(),
    ];
    let mut routes: Vec<Route> = project_routes(id, mailbox)
        .into_iter()
        .filter(|(method, _, _)| *method != "GET")
        .collect();
    routes.push((
        "POST",
        "/migrations".into(),
        vec![
            ("name", "Forged".into()),
            ("source_preset", "gmail".into()),
            ("dest_preset", "zoho".into()),
        ],
    ));
    routes.push(("POST", "/logout".into(), vec![]));
    for token in &tokens {
        let client = Client {
            csrf: token.clone(),
            ..ann.clone()
        };
        for (method, path, fields) in &routes {
            let answer = call(&portal, &client, method, path, fields).await;
            assert_eq!(
                answer.status,
                StatusCode::FORBIDDEN,
                "{method} {path} with `{token}`"
            );
            assert!(answer.body.contains("This form has expired"));
        }
    }
    // Nothing changed, and the session still works.
    assert_eq!(portal.db().mailboxes(id).await.unwrap().len(), 1);
    assert!(portal.db().latest_pass(mailbox).await.unwrap().is_none());
    assert_eq!(portal.db().projects(None).await.unwrap().len(), 1);
    portal
        .get(&ann, &format!("/projects/{id}"))
        .await
        .assert_ok();

    // htmx sends the token as a header instead of a field.
    let request = Request::post(format!("/projects/{id}/passes"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-csrf-token", &ann.csrf)
        .body(Body::from("pass=verify"))
        .unwrap();
    let answer = portal.send(&ann, request).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    // The right token without the session cookie is no use either.
    let stranger = Client {
        csrf: ann.csrf.clone(),
        ..Client::default()
    };
    let answer = portal
        .post(&stranger, &format!("/projects/{id}/finish"), &[])
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn no_answer_ever_contains_a_mailbox_password() {
    let portal = Portal::new().await;
    let ann = portal.login("ann@example.com").await;
    let id = portal.create_project(&ann, "Acme").await;
    let passwords = [
        "Typed-Source-Secret-1",
        "Typed-Dest-Secret-2",
        "Uploaded-Source-Secret-3",
        "Uploaded-Dest-Secret-4",
        "Rejected-Row-Secret-5",
        "Rejected-File-Secret-6",
        "Changed-Source-Secret-7",
    ];
    portal
        .add_rows(
            &ann,
            id,
            &[("a@old.example", passwords[0], "a@new.example", passwords[1])],
        )
        .await;
    let csv = format!(
        "Source Email,Source Password,Destination Email,Destination Password\nb@old.example,{},b@new.example,{}\n",
        passwords[2], passwords[3]
    );
    portal
        .upload(
            &ann,
            &format!("/projects/{id}/mailboxes/upload"),
            "b.csv",
            csv.as_bytes(),
            Some(&ann.csrf),
        )
        .await;
    let mut answers = Vec::new();
    // Refused input comes back as a form: without its passwords.
    answers.push(
        portal
            .add_rows(
                &ann,
                id,
                &[(
                    "c@old.example",
                    passwords[4],
                    "not-an-address",
                    passwords[4],
                )],
            )
            .await,
    );
    let bad_file = format!(
        "Source Email,Source Password,Destination Email,Destination Password\nc@old.example,{0},,{0}\nd@old.example;{0};d@new.example;{0}\n",
        passwords[5]
    );
    answers.push(
        portal
            .upload(
                &ann,
                &format!("/projects/{id}/mailboxes/upload"),
                "bad.csv",
                bad_file.as_bytes(),
                Some(&ann.csrf),
            )
            .await,
    );
    assert!(
        answers
            .iter()
            .all(|a| a.status == StatusCode::UNPROCESSABLE_ENTITY)
    );
    let first = portal.db().mailboxes(id).await.unwrap()[0].id;
    let changed = portal
        .post(
            &ann,
            &format!("/projects/{id}/mailboxes/{first}/passwords"),
            &[("source_password", passwords[6]), ("dest_password", "")],
        )
        .await;
    assert_eq!(changed.status, StatusCode::SEE_OTHER);
    let ids: Vec<i64> = portal
        .db()
        .mailboxes(id)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids.len(), 2);
    for mailbox in portal.db().mailboxes(id).await.unwrap() {
        for secret in [&mailbox.source_secret, &mailbox.dest_secret]
            .into_iter()
            .flatten()
        {
            for password in passwords {
                assert!(
                    !secret
                        .windows(password.len())
                        .any(|w| w == password.as_bytes()),
                    "sealed at rest"
                );
            }
        }
    }

    // Passes run, one item fails, progress is reported.
    portal
        .post(&ann, &format!("/projects/{id}/passes"), &[("pass", "full")])
        .await;
    let db = portal.db();
    let running = db.claim_pass("w", 60).await.unwrap().unwrap();
    db.heartbeat(
        running.id,
        "w",
        60,
        &PassProgress {
            messages_total: 5,
            messages_done: 2,
            bytes_total: 50,
            bytes_done: 20,
            current_folder: Some("INBOX".into()),
        },
    )
    .await
    .unwrap();
    let done = db.claim_pass("w", 60).await.unwrap().unwrap();
    db.finish_pass(done.id, "w", PassState::Done, None, None)
        .await
        .unwrap();
    db.set_mailbox_results(
        done.mailbox_id,
        mailmove_store::PassKind::Full,
        MailboxStatus::CompletedWithErrors,
        &MailboxResults {
            copied: 3,
            failed: 1,
            ..Default::default()
        },
        Some("1 messages failed; see the report"),
    )
    .await
    .unwrap();
    fail_item(&portal, done.mailbox_id, 4, "Hello", "too large").await;

    for path in [
        "/migrations".to_string(),
        "/migrations/new".to_string(),
        format!("/projects/{id}"),
        format!("/projects/{id}?notice=added&count=2"),
        format!("/projects/{id}/mailboxes"),
        format!("/projects/{id}/mailboxes?rows=5"),
        format!("/projects/{id}/mailboxes/row?n=3"),
        format!("/projects/{id}/mailboxes/{}/passwords", ids[0]),
        format!("/projects/{id}/reports/mailboxes.csv"),
        format!("/projects/{id}/reports/failed-items.csv"),
        "/mailboxes-template.csv".to_string(),
        "/terms".to_string(),
    ] {
        let answer = portal.get(&ann, &path).await;
        answer.assert_ok();
        answers.push(answer);
    }
    let request = Request::get(format!("/projects/{id}/events"))
        .body(Body::empty())
        .unwrap();
    let mut stream = portal.raw(&ann, request).await.into_body();
    let mut events = String::new();
    let last = format!("event: progress-{}", ids[1]);
    read_stream(&mut stream, &mut events, Duration::from_secs(10), |t| {
        t.contains(&last)
    })
    .await;
    assert!(events.contains("2 of 5 messages"), "{events}");

    // The end-of-pass email too.
    db.finish_pass(running.id, "w", PassState::Done, None, None)
        .await
        .unwrap();
    mailmove_portal::notify_ended_passes(&portal.state)
        .await
        .unwrap();
    let mails: Vec<String> = portal
        .mails()
        .iter()
        .map(|m| format!("{}\n{}", m.subject, m.body))
        .collect();
    assert!(mails.iter().any(|m| m.contains("has ended")));

    let texts = answers
        .iter()
        .map(|a| {
            let headers: Vec<String> = a
                .headers
                .iter()
                .map(|(k, v)| format!("{k}: {v:?}"))
                .collect();
            format!("{}\n{}", headers.join("\n"), a.body)
        })
        .chain([events])
        .chain(mails);
    for text in texts {
        for password in passwords {
            assert!(!text.contains(password), "`{password}` in:\n{text}");
        }
    }
}
