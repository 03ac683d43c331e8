//! An OAuth2 authorization server and a Dovecot that accepts its tokens, for browser
//! tests and for trying mailmove's sign-in by hand.
//!
//! `cargo run -p mailmove-testkit --example oauth_servers -- DIR [ACCESS_TOKEN_SECONDS]`
//! writes `DIR/oauth.json` (issuer, discovery URLs, clients and secrets, the key files
//! of the `private_key_jwt` client and of the service account, the Dovecot ports, its
//! users and master user, and `DIR/ca.pem`, which trusts both servers), prints
//! `ready DIR/oauth.json` and then answers one line per command read on stdin:
//!
//! - `approve USER_CODE ACCOUNT`: approves a pending device code → `ok`
//! - `revoke ACCOUNT`: revokes every grant and token of the account → `ok N`
//! - `quit` (or the end of stdin, so a test that dies takes the servers with it) → exits.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use mailmove_testkit::oidc::{
    CONFIDENTIAL_CLIENT, INTROSPECTION_CLIENT, JWT_CLIENT, OidcOptions, OidcProvider,
    PUBLIC_CLIENT, SERVICE_ACCOUNT,
};
use mailmove_testkit::{Dovecot, DovecotOptions, MasterUser};
use serde_json::json;

const USERS: [(&str, &str); 2] = [
    ("alice@example.test", "alice-password"),
    ("bob@example.test", "bob-password"),
];
const MASTER: (&str, &str) = ("admin", "admin-password");

fn main() -> Result<()> {
    let mut args = std::env::args_os().skip(1);
    let dir = PathBuf::from(
        args.next()
            .context("usage: oauth_servers DIR [ACCESS_TOKEN_SECONDS]")?,
    );
    let lifetime: u64 = match args.next() {
        Some(text) => text
            .to_str()
            .and_then(|t| t.parse().ok())
            .context("ACCESS_TOKEN_SECONDS must be a number")?,
        None => 20,
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    let provider = OidcProvider::start(OidcOptions {
        access_token_lifetime: Duration::from_secs(lifetime),
        ..OidcOptions::default()
    })?;
    let dovecot = Dovecot::start(DovecotOptions {
        oauth2: Some(provider.dovecot_oauth2()),
        master_user: Some(MasterUser {
            name: MASTER.0.to_string(),
            password: MASTER.1.to_string(),
        }),
        ..DovecotOptions::default()
    })?;
    for (user, password) in USERS {
        dovecot.add_user(user, password)?;
    }

    let ca = dir.join("ca.pem");
    let bundle =
        std::fs::read_to_string(provider.ca_pem())? + &std::fs::read_to_string(dovecot.ca_pem())?;
    std::fs::write(&ca, bundle).context("writing ca.pem")?;
    let client_key = dir.join("client-key.pem");
    std::fs::write(&client_key, provider.client_key_pem())?;
    let service_key = dir.join("service-account-key.pem");
    std::fs::write(&service_key, provider.service_account_key_pem())?;

    let https = provider.endpoints();
    let info = json!({
        "issuer": provider.issuer(),
        "discovery": https.discovery,
        "http_discovery": provider.http_endpoints().discovery,
        "token_endpoint": https.token,
        "device_authorization_endpoint": https.device_authorization,
        "authorization_endpoint": https.authorization,
        "ca": ca,
        "clients": {
            "confidential": {"id": CONFIDENTIAL_CLIENT, "secret": provider.confidential_secret()},
            "public": {"id": PUBLIC_CLIENT},
            "private_key_jwt": {"id": JWT_CLIENT, "key": client_key},
            "service_account": {"id": SERVICE_ACCOUNT, "key": service_key},
            "introspection": {"id": INTROSPECTION_CLIENT, "secret": provider.introspection_secret()},
        },
        "access_token_seconds": lifetime,
        "imap": {
            "host": dovecot.host(),
            "port": dovecot.imap_port(),
            "imaps_port": dovecot.imaps_port(),
            "users": USERS.iter().map(|(u, p)| json!({"user": u, "password": p})).collect::<Vec<_>>(),
            "master": {"name": MASTER.0, "password": MASTER.1, "separator": "*"},
        },
    });
    let path = dir.join("oauth.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&info)?)
        .with_context(|| format!("writing {}", path.display()))?;
    println!("ready {}", path.display());
    std::io::stdout().flush()?;

    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words.as_slice() {
            ["approve", code, account] => provider
                .approve_device_code(code, account)
                .map(|()| "ok".to_string()),
            ["revoke", account] => provider.revoke_account(account).map(|n| format!("ok {n}")),
            ["quit"] => break,
            [] => continue,
            _ => Err(anyhow::anyhow!("unknown command {line:?}")),
        };
        match answer {
            Ok(text) => println!("{text}"),
            Err(error) => println!("error {error:#}"),
        }
        std::io::stdout().flush()?;
    }
    Ok(())
}
