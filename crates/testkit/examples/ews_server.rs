//! Starts the test EWS server with one seeded user and waits, for trying clients by hand:
//!
//! ```text
//! cargo run -p mailmove-testkit --example ews_server [-- --https]
//! ```

use std::io::BufRead as _;

use mailmove_testkit::ews::{EwsConfig, EwsServer, FlagStatus, Seed};

fn main() -> anyhow::Result<()> {
    let https = std::env::args().any(|a| a == "--https");
    let config = if https {
        EwsConfig::default().with_https()
    } else {
        EwsConfig::default()
    };
    let server = EwsServer::start(config)?;
    let user = "alice@example.com";
    let password = "secret";
    server.add_user(user, password);
    server.create_folder(user, &["Inbox", "Projects"])?;
    for n in 1..=3 {
        let mime = format!(
            "From: Bob <bob@example.com>\r\nTo: {user}\r\nSubject: Hello {n}\r\nMessage-ID: <hello-{n}@example.com>\r\nDate: Mon, 1 Jan 2024 10:0{n}:00 +0000\r\n\r\nMessage {n}.\r\n"
        );
        let seed = Seed {
            is_read: n % 2 == 0,
            flag: if n == 3 {
                FlagStatus::Flagged
            } else {
                FlagStatus::NotFlagged
            },
            ..Seed::default()
        };
        server.add_message(user, &["Inbox"], mime.as_bytes(), seed)?;
    }
    println!("EWS:      {}", server.url());
    println!("user:     {user}");
    println!("password: {password}");
    println!("auth:     Basic or NTLM");
    if let Some(ca) = server.ca_pem() {
        println!("CA:       {}", ca.display());
    }
    println!("Press Enter to stop.");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(())
}
