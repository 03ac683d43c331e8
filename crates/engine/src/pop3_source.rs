//! A POP3 mailbox as a migration source: one folder (INBOX), messages numbered
//! stably through the ledger from their UIDL (or, on a server without UIDL, from a
//! hash of their headers and size), read with TOP where that leaves them unread.

use std::collections::HashMap;

use mailmove_imap::ListEntry;
use mailmove_pop3::{Client, ConnectOptions};
use mailmove_store::{ItemState, Ledger};

use crate::connector::{Account, FetchedMessage, OpenedFolder, Side, SideError, Sink, Source};
use crate::folders::FolderTree;
use crate::identity::Headers;
use crate::plan::SourceMessage;

/// POP3 has no UIDVALIDITY; the ledger's numbers never change meaning.
pub const POP3_UIDVALIDITY: u32 = 1;

pub struct Pop3Side {
    client: Client,
    ledger: Option<Ledger>,
    /// This session's view: stable number -> (message number, size).
    listing: Vec<(u32, u32, u64)>,
    /// Headers read while numbering (servers without UIDL), by message number.
    headers: HashMap<u32, Vec<u8>>,
    dates: HashMap<u32, String>,
}

impl Pop3Side {
    pub async fn connect(
        account: &Account,
        ledger: Option<&Ledger>,
    ) -> Result<Pop3Side, SideError> {
        let wrap = |error: mailmove_pop3::Error| SideError {
            side: Side::Source,
            error: error.into(),
        };
        let options = ConnectOptions {
            tls: account.options.tls.clone(),
            allow_plaintext: account.options.allow_plaintext,
            connect_timeout: account.options.connect_timeout,
            response_timeout: account.options.response_timeout,
            ..ConnectOptions::default()
        };
        let mut client = Client::connect(&account.endpoint, &options)
            .await
            .map_err(wrap)?;
        client
            .login(&account.login, &account.password)
            .await
            .map_err(wrap)?;
        Ok(Pop3Side {
            client,
            ledger: ledger.cloned(),
            listing: Vec::new(),
            headers: HashMap::new(),
            dates: HashMap::new(),
        })
    }

    pub fn capabilities(&self) -> usize {
        self.client.capabilities().len()
    }

    pub async fn close(self) {
        self.client.quit().await;
    }

    fn wrap(error: mailmove_pop3::Error) -> SideError {
        SideError {
            side: Side::Source,
            error: error.into(),
        }
    }

    async fn headers_of(&mut self, msgno: u32) -> Result<Vec<u8>, SideError> {
        if let Some(headers) = self.headers.get(&msgno) {
            return Ok(headers.clone());
        }
        match self.client.top_headers(msgno).await {
            Ok(headers) => Ok(headers),
            // Without TOP there is nothing cheaper than the whole message.
            Err(mailmove_pop3::Error::Err { .. }) => {
                let body = self.client.retr(msgno).await.map_err(Self::wrap)?;
                let bytes = body
                    .into_vec()
                    .map_err(|e| Self::wrap(mailmove_pop3::Error::ConnectionLost(e.to_string())))?;
                let end = bytes
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map(|p| p + 4)
                    .unwrap_or(bytes.len());
                Ok(bytes[..end].to_vec())
            }
            Err(e) => Err(Self::wrap(e)),
        }
    }
}

impl Source for Pop3Side {
    async fn folders(&mut self) -> Result<FolderTree, SideError> {
        Ok(FolderTree {
            entries: vec![ListEntry {
                attributes: Vec::new(),
                delimiter: None,
                name: b"INBOX".to_vec(),
            }],
            prefix: Vec::new(),
            delimiter: None,
            subscribed: vec![b"INBOX".to_vec()],
        })
    }

    async fn open(&mut self, _folder: &[u8]) -> Result<OpenedFolder, SideError> {
        let sizes = self.client.list().await.map_err(Self::wrap)?;
        let keys: Vec<String> = match self.client.uidl().await.map_err(Self::wrap)? {
            Some(ids) => {
                let ids: HashMap<u32, String> = ids.into_iter().collect();
                sizes
                    .iter()
                    .map(|(msgno, _)| match ids.get(msgno) {
                        Some(id) => format!("uidl:{id}"),
                        None => format!("msgno:{msgno}"),
                    })
                    .collect()
            }
            None => {
                // No UIDL: identity from the headers and size, numbered per repeat.
                let mut seen: HashMap<String, u32> = HashMap::new();
                let mut keys = Vec::with_capacity(sizes.len());
                for (msgno, size) in &sizes {
                    let headers = self.headers_of(*msgno).await?;
                    let key = Headers::parse(&headers).content_key(*size);
                    self.headers.insert(*msgno, headers);
                    let repeat = seen.entry(key.clone()).or_default();
                    *repeat += 1;
                    keys.push(format!("hash:{key}#{repeat}"));
                }
                keys
            }
        };
        let uids = match &self.ledger {
            Some(ledger) => ledger
                .assign_source_uids("INBOX", &keys)
                .await
                .map_err(|e| {
                    Self::wrap(mailmove_pop3::Error::Protocol(format!("the ledger: {e}")))
                })?,
            None => sizes.iter().map(|(msgno, _)| *msgno).collect(),
        };
        self.listing = uids
            .into_iter()
            .zip(&sizes)
            .map(|(uid, (msgno, size))| (uid, *msgno, *size))
            .collect();
        Ok(OpenedFolder {
            uidvalidity: POP3_UIDVALIDITY,
            exists: self.listing.len() as u32,
        })
    }

    async fn messages(&mut self) -> Result<Vec<SourceMessage>, SideError> {
        // Messages the ledger already has as copied need no header round trip.
        let known: HashMap<u32, (String, Option<String>, Option<String>)> = match &self.ledger {
            Some(ledger) => ledger
                .source_folder_items("INBOX")
                .await
                .unwrap_or_default()
                .into_iter()
                .filter(|r| {
                    r.state == ItemState::Copied && r.source_uidvalidity == POP3_UIDVALIDITY
                })
                .map(|r| (r.source_uid, (r.content_key, r.message_id, r.subject)))
                .collect(),
            None => HashMap::new(),
        };
        let mut messages = Vec::with_capacity(self.listing.len());
        for (uid, msgno, size) in self.listing.clone() {
            let (content_key, message_id, subject) = match known.get(&uid) {
                Some(found) => found.clone(),
                None => {
                    let headers = Headers::parse(&self.headers_of(msgno).await?);
                    if let Some(date) = headers.date.as_deref().and_then(internal_date_from_header)
                    {
                        self.dates.insert(uid, date);
                    }
                    (
                        headers.content_key(size),
                        headers.message_id,
                        headers.subject,
                    )
                }
            };
            messages.push(SourceMessage {
                uid,
                flags: Vec::new(),
                internal_date: self.dates.get(&uid).cloned(),
                size,
                message_id,
                subject,
                content_key,
            });
        }
        messages.sort_by_key(|m| m.uid);
        Ok(messages)
    }

    async fn fetch(&mut self, uids: &[u32], sink: &Sink) -> Result<(), SideError> {
        let by_uid: HashMap<u32, (u32, u64)> = self
            .listing
            .iter()
            .map(|(uid, msgno, size)| (*uid, (*msgno, *size)))
            .collect();
        for uid in uids {
            let Some((msgno, size)) = by_uid.get(uid).copied() else {
                continue;
            };
            let body = self
                .client
                .retrieve_unflagged(msgno, size)
                .await
                .map_err(Self::wrap)?;
            let message = FetchedMessage {
                uid: *uid,
                flags: Vec::new(),
                internal_date: self.dates.get(uid).cloned(),
                body,
                content_key: None,
                permit: None,
            };
            if sink.send(message).await.is_err() {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// The arrival date a POP3 message gets at the destination: its Date header, as an
/// IMAP INTERNALDATE (`01-Feb-2024 10:00:00 +0100`). POP3 itself keeps none.
pub fn internal_date_from_header(date: &str) -> Option<String> {
    let text = date.split('(').next()?.trim();
    let text = match text.split_once(',') {
        Some((_, rest)) => rest.trim(),
        None => text,
    };
    let mut parts = text.split_whitespace();
    let day: u32 = parts.next()?.parse().ok()?;
    let month = parts.next()?;
    let month = MONTHS
        .iter()
        .find(|m| m.eq_ignore_ascii_case(&month[..month.len().min(3)]))?;
    let year: i32 = match parts.next()?.parse::<i32>().ok()? {
        y if y < 50 => 2000 + y,
        y if y < 100 => 1900 + y,
        y => y,
    };
    let time = parts.next()?;
    let mut clock = time.split(':');
    let hour: u32 = clock.next()?.parse().ok()?;
    let minute: u32 = clock.next()?.parse().ok()?;
    let second: u32 = clock.next().map(|s| s.parse().ok()).unwrap_or(Some(0))?;
    let zone = match parts.next().unwrap_or("+0000") {
        z if (z.starts_with('+') || z.starts_with('-'))
            && z.len() == 5
            && z[1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            z.to_string()
        }
        z => match z.to_ascii_uppercase().as_str() {
            "UT" | "UTC" | "GMT" | "Z" => "+0000",
            "EST" => "-0500",
            "EDT" => "-0400",
            "CST" => "-0600",
            "CDT" => "-0500",
            "MST" => "-0700",
            "MDT" => "-0600",
            "PST" => "-0800",
            "PDT" => "-0700",
            _ => "+0000",
        }
        .to_string(),
    };
    if !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
        || !(1900..=9999).contains(&year)
    {
        return None;
    }
    Some(format!(
        "{day:02}-{month}-{year:04} {hour:02}:{minute:02}:{second:02} {zone}"
    ))
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_headers_become_internal_dates() {
        let cases = [
            (
                "Mon, 1 Jan 2024 10:00:00 +0100",
                Some("01-Jan-2024 10:00:00 +0100"),
            ),
            (
                "Tue, 15 Aug 2023 23:59 -0700 (PDT)",
                Some("15-Aug-2023 23:59:00 -0700"),
            ),
            ("3 Mar 99 01:02:03 GMT", Some("03-Mar-1999 01:02:03 +0000")),
            (
                "Fri, 29 Feb 2008 12:00:00 EST",
                Some("29-Feb-2008 12:00:00 -0500"),
            ),
            ("yesterday", None),
            ("Mon, 45 Jan 2024 10:00:00 +0000", None),
        ];
        for (header, expected) in cases {
            assert_eq!(
                internal_date_from_header(header).as_deref(),
                expected,
                "{header}"
            );
        }
    }
}
