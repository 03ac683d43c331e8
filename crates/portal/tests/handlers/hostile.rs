//! Uploads and forms built to exhaust the portal: a row bomb of empty form rows, a body
//! over its route's limit, a workbook whose cells span the whole sheet, a list with
//! thousands of problems. Each is refused with a page that names the limit, nothing is
//! added, and the answer stays small. The row bomb's peak memory is measured in a child
//! process (this test binary run again for one test), so that it is its own.
//!
//! Measured before the limits (debug build): 69,000 empty rows (1 MB) were answered with
//! a page of 95 MB at a peak of 206 MiB; 800,000 rows (12 MB) with 1.16 GB at 2.2 GiB.
//! After: a page of 5 KB at 20 MiB, and 1 KB at 34 MiB (mostly the test's own body).

use std::process::Command;

use axum::http::StatusCode;

use crate::harness::Portal;

const CHILD_VARIABLE: &str = "MAILMOVE_ROW_BOMB_ROWS";

/// `source_email=&` repeated `rows` times after the CSRF token: 15 bytes a row.
fn row_bomb(csrf: &str, rows: usize) -> String {
    let mut body = format!("csrf={csrf}&");
    body.push_str(&"source_email=&".repeat(rows));
    body
}

async fn post_body(
    portal: &Portal,
    client: &crate::harness::Client,
    path: &str,
    body: String,
) -> crate::harness::Answer {
    let request = axum::http::Request::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(axum::body::Body::from(body))
        .unwrap();
    portal.send(client, request).await
}

/// The most memory this process has held, from `/proc/self/status`, in bytes.
fn peak_memory() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// The child's side: posts the row bomb of the variable's size and prints the status,
/// the answer's size and its peak memory. Does nothing in a normal run.
#[tokio::test]
async fn child_posts_a_row_bomb() {
    let Some(rows) = std::env::var(CHILD_VARIABLE)
        .ok()
        .and_then(|r| r.parse().ok())
    else {
        return;
    };
    let portal = Portal::new().await;
    let client = portal.login("ann@example.com").await;
    let id = portal.create_project(&client, "Acme").await;
    let path = format!("/projects/{id}/mailboxes");
    let answer = post_body(&portal, &client, &path, row_bomb(&client.csrf, rows)).await;
    let added = portal.db().mailboxes(id).await.unwrap().len();
    println!(
        "\nANSWER: {} {} bytes, {added} added, {}",
        answer.status.as_u16(),
        answer.body.len(),
        if answer.body.contains("more than 5000 mailbox rows") {
            "row limit named"
        } else if answer.body.contains("too large") {
            "too large"
        } else {
            "other"
        }
    );
    println!("PEAK: {}", peak_memory());
}

/// Posts a row bomb of `rows` rows in a child: its answer line and peak memory.
fn row_bomb_in_child(rows: usize) -> (String, u64) {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "hostile::child_posts_a_row_bomb",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_VARIABLE, rows.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "child failed: {stdout}");
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|line| line.split_once(name).map(|(_, rest)| rest.to_string()))
            .unwrap_or_else(|| panic!("no {name} in: {stdout}"))
    };
    (field("ANSWER: "), field("PEAK: ").parse().unwrap())
}

#[tokio::test]
async fn a_row_bomb_under_the_body_limit_is_refused_by_the_row_limit_in_bounded_memory() {
    // 69,000 empty rows in 1 MB: before the limit, each was validated and rendered back.
    let (answer, peak) = row_bomb_in_child(69_000);
    assert!(answer.starts_with("413 "), "{answer}");
    assert!(answer.ends_with("0 added, row limit named"), "{answer}");
    let size: usize = answer.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(size < 100_000, "{answer}");
    assert!(peak < 256 * 1024 * 1024, "peak {} MiB", peak >> 20);
}

#[tokio::test]
async fn a_row_bomb_over_the_body_limit_is_refused_unread_in_bounded_memory() {
    // 800,000 empty rows in 12 MB, which the old 12 MB limit let through.
    let (answer, peak) = row_bomb_in_child(800_000);
    assert!(answer.starts_with("413 "), "{answer}");
    assert!(answer.ends_with("0 added, too large"), "{answer}");
    assert!(peak < 256 * 1024 * 1024, "peak {} MiB", peak >> 20);
}

#[tokio::test]
async fn an_upload_over_ten_mib_is_refused_and_a_small_form_post_over_its_limit_too() {
    let portal = Portal::new().await;
    let client = portal.login("ann@example.com").await;
    let id = portal.create_project(&client, "Acme").await;
    let big = vec![b'x'; mailmove_portal::UPLOAD_LIMIT + 128 * 1024];
    let refused = portal
        .upload(
            &client,
            &format!("/projects/{id}/mailboxes/upload"),
            "users.csv",
            &big,
            Some(&client.csrf),
        )
        .await;
    assert_eq!(refused.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(refused.body.contains("up to 10 MiB"), "{}", refused.body);

    let padding = "x".repeat(mailmove_portal::FORM_LIMIT);
    let refused = portal
        .post(
            &client,
            &format!("/projects/{id}/finish"),
            &[("padding", &padding)],
        )
        .await;
    assert_eq!(refused.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(portal.db().mailboxes(id).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_workbook_spanning_the_whole_sheet_is_refused_with_the_limit_named() {
    let portal = Portal::new().await;
    let client = portal.login("ann@example.com").await;
    let id = portal.create_project(&client, "Acme").await;
    let mut workbook = rust_xlsxwriter::Workbook::new();
    let sheet = workbook.add_worksheet();
    sheet.write_string(0, 0, "Source Email").unwrap();
    sheet.write_string(0, 1, "Destination Email").unwrap();
    sheet.write_string(1_048_575, 16_383, "x").unwrap();
    let xlsx = workbook.save_to_buffer().unwrap();
    assert!(xlsx.len() < 10_000, "{} bytes", xlsx.len());
    let refused = portal
        .upload(
            &client,
            &format!("/projects/{id}/mailboxes/upload"),
            "users.xlsx",
            &xlsx,
            Some(&client.csrf),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.body.contains("too large") && refused.body.contains("A1:XFD1048576"),
        "{}",
        refused.body
    );
    assert!(portal.db().mailboxes(id).await.unwrap().is_empty());
}

#[tokio::test]
async fn thousands_of_problems_are_listed_as_the_first_hundred_and_a_count() {
    let portal = Portal::new().await;
    let client = portal.login("ann@example.com").await;
    let id = portal.create_project(&client, "Acme").await;
    let mut csv = String::from("Source Email,Destination Email\n");
    for _ in 0..4_000 {
        csv.push_str("not an address,\n");
    }
    let refused = portal
        .upload(
            &client,
            &format!("/projects/{id}/mailboxes/upload"),
            "users.csv",
            csv.as_bytes(),
            Some(&client.csrf),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.body.contains("Line 51:"),
        "the first problems are listed"
    );
    assert!(
        !refused.body.contains("Line 52:"),
        "the first 100 only (two per line)"
    );
    assert!(
        refused.body.contains("And 7900 more problems"),
        "{}",
        refused.body
    );
    assert!(refused.body.len() < 100_000, "{} bytes", refused.body.len());

    let mut too_many = String::from("Source Email,Destination Email\n");
    for n in 0..5_001 {
        too_many.push_str(&format!("u{n}@old.example,u{n}@new.example\n"));
    }
    let refused = portal
        .upload(
            &client,
            &format!("/projects/{id}/mailboxes/upload"),
            "users.csv",
            too_many.as_bytes(),
            Some(&client.csrf),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.body.contains("more than 5,000 mailboxes"),
        "{}",
        refused.body
    );
    assert!(portal.db().mailboxes(id).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_spreadsheet_read_that_outlives_its_time_limit_is_answered_at_once() {
    // A limit no read can keep: the answer comes from the timer, not from the read.
    let portal = Portal::with(|config| {
        config.spreadsheet_read_limit = std::time::Duration::ZERO;
    })
    .await;
    let client = portal.login("ann@example.com").await;
    let id = portal.create_project(&client, "Acme").await;
    let mut csv = String::from("Source Email,Destination Email\n");
    for n in 0..5_000 {
        csv.push_str(&format!("u{n}@old.example,u{n}@new.example\n"));
    }
    let refused = portal
        .upload(
            &client,
            &format!("/projects/{id}/mailboxes/upload"),
            "users.csv",
            csv.as_bytes(),
            Some(&client.csrf),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused
            .body
            .contains("Reading the spreadsheet took longer than 0 seconds"),
        "{}",
        refused.body
    );
    assert!(portal.db().mailboxes(id).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_migration_holds_no_more_mailboxes_than_the_operator_allows() {
    let portal = Portal::with(|config| config.mailboxes_per_project = 3).await;
    let client = portal.login("ann@example.com").await;
    let id = portal.create_project(&client, "Acme").await;
    let row = |n: usize| (format!("u{n}@old.example"), format!("u{n}@new.example"));
    let add = |rows: Vec<(String, String)>| {
        let portal = &portal;
        let client = &client;
        async move {
            let typed: Vec<(&str, &str, &str, &str)> = rows
                .iter()
                .map(|(s, d)| (s.as_str(), "p", d.as_str(), "q"))
                .collect();
            portal.add_rows(client, id, &typed).await
        }
    };
    let added = add(vec![row(1), row(2)]).await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    let refused = add(vec![row(3), row(4)]).await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    assert!(
        refused.body.contains(
            "A migration holds at most 3 mailboxes: this one has 2 and the list adds 2; start \
             another migration for the rest"
        ),
        "{}",
        refused.body
    );
    assert_eq!(
        portal.db().mailbox_count(id).await.unwrap(),
        2,
        "none added"
    );
    let upload = portal
        .upload(
            &client,
            &format!("/projects/{id}/mailboxes/upload"),
            "more.csv",
            b"Source Email,Destination Email\nu5@old.example,u5@new.example\nu6@old.example,u6@new.example\n",
            Some(&client.csrf),
        )
        .await;
    assert!(
        upload
            .body
            .contains("A migration holds at most 3 mailboxes"),
        "{}",
        upload.body
    );
    assert_eq!(
        portal.db().mailbox_count(id).await.unwrap(),
        2,
        "none added"
    );
    let last = add(vec![row(3)]).await;
    assert_eq!(last.status, StatusCode::SEE_OTHER, "{}", last.body);
    assert_eq!(portal.db().mailbox_count(id).await.unwrap(), 3);
}
