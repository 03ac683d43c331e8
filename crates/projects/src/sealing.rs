//! Mailbox passwords are sealed here and nowhere else, bound to their project, mailbox
//! and side, so the worker that opens them uses the very same context.

use mailmove_import::MailboxRow;
use mailmove_model::Secret;
use mailmove_secrets::Keyring;
use mailmove_store::NewMailbox;

/// Which side of a mailbox pair a password belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Source,
    Destination,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Destination => "destination",
        }
    }
}

/// Where a sealed secret belongs: binds the ciphertext to its row and side.
pub fn secret_context(project_id: i64, source_email: &str, side: Side) -> String {
    format!(
        "project:{project_id}:mailbox:{}:{}",
        source_email.to_lowercase(),
        side.as_str()
    )
}

/// Passwords for rows that carry none (the command line's files or environment).
#[derive(Clone, Debug, Default)]
pub struct FallbackPasswords {
    pub source: Option<Secret<String>>,
    pub dest: Option<Secret<String>>,
}

/// Seals one password of a mailbox.
pub fn seal(
    keyring: &Keyring,
    project_id: i64,
    source_email: &str,
    side: Side,
    password: &Secret<String>,
) -> Vec<u8> {
    keyring.seal(password, &secret_context(project_id, source_email, side))
}

/// The rows as mailboxes to store, each password sealed (a row's own, else the
/// fallback's).
pub fn sealed_rows(
    keyring: &Keyring,
    project_id: i64,
    rows: &[MailboxRow],
    fallback: &FallbackPasswords,
) -> Vec<NewMailbox> {
    rows.iter()
        .map(|row| {
            let seal_side =
                |own: &Option<Secret<String>>, fallback: &Option<Secret<String>>, side| {
                    own.as_ref().or(fallback.as_ref()).map(|password| {
                        seal(keyring, project_id, &row.source_email, side, password)
                    })
                };
            NewMailbox {
                source_email: row.source_email.clone(),
                source_login: row.source_login.clone(),
                source_secret: seal_side(&row.source_password, &fallback.source, Side::Source),
                dest_email: row.dest_email.clone(),
                dest_login: row.dest_login.clone(),
                dest_secret: seal_side(&row.dest_password, &fallback.dest, Side::Destination),
            }
        })
        .collect()
}
