//! Sending the portal's emails (login links, "your pass has ended"): over SMTP with
//! lettre when `--smtp-url` is given, else written to the server's standard error for
//! whoever runs it locally, or kept in memory for tests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// One email to send: plain text, no secret but a login link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingMail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// What a [`Mailer::memory`] mailer kept, for tests to read.
pub type SentMail = Arc<Mutex<Vec<OutgoingMail>>>;

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error(
        "the SMTP URL must look like smtp://HOST:PORT, smtp://HOST:587?tls=required or smtps://USER:PASSWORD@HOST:465: {0}"
    )]
    BadUrl(String),
    #[error("`{0}` is not an email address to send from")]
    BadFrom(String),
    #[error("`{0}` is not an email address to send to")]
    BadRecipient(String),
    #[error("the SMTP server refused or could not be reached: {0}")]
    Smtp(String),
}

/// Where the portal's emails go.
#[derive(Clone)]
pub enum Mailer {
    /// No SMTP server: each email is written to standard error, where the person who
    /// started `mailmove serve` sees it (login links included: that is the point).
    Log,
    Smtp {
        transport: Box<AsyncSmtpTransport<Tokio1Executor>>,
        from: Mailbox,
        /// `host:port`, for the startup message (the URL may hold a password).
        server: String,
    },
    /// Kept in memory (tests).
    Memory(SentMail),
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Mailer {
    /// An SMTP mailer from `smtp://HOST:PORT` (plain, as a local relay), with
    /// `?tls=required` or `?tls=opportunistic` for STARTTLS, or `smtps://` (TLS);
    /// `USER:PASSWORD@` in the URL logs in.
    pub fn smtp(url: &str, from: &str) -> Result<Mailer, MailError> {
        let parsed = url::Url::parse(url).map_err(|e| MailError::BadUrl(e.to_string()))?;
        if !matches!(parsed.scheme(), "smtp" | "smtps") {
            return Err(MailError::BadUrl(format!(
                "unknown scheme `{}`",
                parsed.scheme()
            )));
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| MailError::BadUrl("no host".into()))?;
        let server = match parsed.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            // lettre's message may quote the URL; say only what is wrong with it.
            .map_err(|_| MailError::BadUrl(format!("{}://{server}", parsed.scheme())))?
            .timeout(Some(Duration::from_secs(20)))
            .build();
        let from = from
            .parse::<Mailbox>()
            .map_err(|_| MailError::BadFrom(from.to_string()))?;
        Ok(Mailer::Smtp {
            transport: Box::new(transport),
            from,
            server,
        })
    }

    /// A mailer that keeps what it sends, and the list it keeps it in.
    pub fn memory() -> (Mailer, SentMail) {
        let sent = SentMail::default();
        (Mailer::Memory(Arc::clone(&sent)), sent)
    }

    /// Where emails go, for the startup message; never a password.
    pub fn describe(&self) -> String {
        match self {
            Mailer::Log => "no SMTP server: emails (login links) are written to this log".into(),
            Mailer::Smtp { server, from, .. } => format!("emails sent through {server} as {from}"),
            Mailer::Memory(_) => "emails kept in memory".into(),
        }
    }

    pub async fn send(&self, mail: OutgoingMail) -> Result<(), MailError> {
        match self {
            Mailer::Log => {
                let mut text = format!(
                    "mailmove portal: no SMTP server (--smtp-url), so this email was not sent:\n  To: {}\n  Subject: {}\n",
                    mail.to, mail.subject
                );
                for line in mail.body.lines() {
                    text.push_str("  | ");
                    text.push_str(line);
                    text.push('\n');
                }
                eprint!("{text}");
                Ok(())
            }
            Mailer::Smtp {
                transport, from, ..
            } => {
                let to = mail
                    .to
                    .parse::<Mailbox>()
                    .map_err(|_| MailError::BadRecipient(mail.to.clone()))?;
                let message = Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(mail.subject)
                    .header(ContentType::TEXT_PLAIN)
                    .body(mail.body)
                    .map_err(|e| MailError::Smtp(e.to_string()))?;
                transport
                    .send(message)
                    .await
                    .map(drop)
                    .map_err(|e| MailError::Smtp(e.to_string()))
            }
            Mailer::Memory(sent) => {
                sent.lock().unwrap_or_else(|e| e.into_inner()).push(mail);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_are_checked_and_never_shown_with_their_password() {
        let mailer =
            Mailer::smtp("smtp://user:hunter2@127.0.0.1:2525", "mailmove@localhost").unwrap();
        let shown = mailer.describe();
        assert!(shown.contains("127.0.0.1:2525"), "{shown}");
        assert!(!shown.contains("hunter2"));
        assert!(!format!("{mailer:?}").contains("hunter2"));
        assert!(Mailer::smtp("smtps://mail.example.com", "mailmove <noreply@example.com>").is_ok());
        assert!(Mailer::smtp("smtp://mail.example.com:587?tls=required", "a@example.com").is_ok());
        assert!(matches!(
            Mailer::smtp("http://x", "a@b"),
            Err(MailError::BadUrl(_))
        ));
        assert!(matches!(
            Mailer::smtp("smtp://x:25", "not an address"),
            Err(MailError::BadFrom(_))
        ));
    }

    #[tokio::test]
    async fn the_memory_mailer_keeps_what_it_sends() {
        let (mailer, sent) = Mailer::memory();
        mailer
            .send(OutgoingMail {
                to: "a@example.com".into(),
                subject: "s".into(),
                body: "b".into(),
            })
            .await
            .unwrap();
        assert_eq!(sent.lock().unwrap().len(), 1);
    }
}
