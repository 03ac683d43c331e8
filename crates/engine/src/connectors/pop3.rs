//! A POP3 mailbox as a migration source: one folder (INBOX), messages numbered
//! stably through the ledger from their UIDL (or, on a server without UIDL, from a
//! hash of their headers and size), read with TOP where that leaves them unread.

use std::collections::HashMap;

use mailmove_net::SignIn;
use mailmove_pop3::{Client, Error as Pop3Error};
use mailmove_store::{ItemState, Ledger};

use crate::connector::{
    ConnectorError, Failure, FetchedMessage, FolderEntry, OpenedFolder, Side, SideError, Sink,
    Source,
};
use crate::connectors::{Account, SignsIn, connector_error, judge};
use crate::dates::internal_date_from_header;
use crate::folders::FolderTree;
use crate::identity::Headers;
use crate::plan::SourceMessage;

/// POP3 has no UIDVALIDITY; the ledger's numbers never change meaning.
pub const POP3_UIDVALIDITY: u32 = 1;

impl From<mailmove_pop3::Error> for ConnectorError {
    fn from(error: mailmove_pop3::Error) -> ConnectorError {
        use mailmove_pop3::Error as Pop3Error;
        let failure = match &error {
            Pop3Error::AuthFailed { login, text } => Some(Failure::LoginRefused {
                login: login.clone(),
                text: text.clone(),
            }),
            Pop3Error::TokenRefused { .. } => Some(Failure::TokenRefused),
            _ => None,
        };
        let failure = failure.unwrap_or_else(|| {
            let net = match &error {
                Pop3Error::Net(e) => Some(e),
                _ => None,
            };
            judge(net, error.is_transient(), error.is_connection_setup())
        });
        let remedy = error.remedy();
        connector_error(failure, remedy, error)
    }
}

impl SignsIn for Client {
    type Error = Pop3Error;

    async fn sign_in(&mut self, sign_in: &SignIn) -> Result<(), Pop3Error> {
        Client::sign_in(self, sign_in).await
    }

    fn token_refused(error: &Pop3Error) -> bool {
        matches!(error, Pop3Error::TokenRefused { .. })
    }
}

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
        let wrap = |error: mailmove_pop3::Error| SideError::new(Side::Source, error);
        let mut client = Client::connect(&account.endpoint, &account.options)
            .await
            .map_err(wrap)?;
        account.sign_in_with(&mut client, Side::Source).await?;
        Ok(Pop3Side {
            client,
            ledger: ledger.cloned(),
            listing: Vec::new(),
            headers: HashMap::new(),
            dates: HashMap::new(),
        })
    }

    fn wrap(error: mailmove_pop3::Error) -> SideError {
        SideError::new(Side::Source, error)
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
    fn capabilities(&self) -> &[String] {
        self.client.capabilities()
    }

    /// A POP3 maildrop is locked by its one session.
    fn max_sessions(&self) -> usize {
        1
    }

    async fn folders(&mut self) -> Result<FolderTree, SideError> {
        Ok(FolderTree {
            entries: vec![FolderEntry {
                name: b"INBOX".to_vec(),
                ..FolderEntry::default()
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
                    let key = Headers::parse(&headers).numbering_key(*size);
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
            let body = match self.client.retrieve_unflagged(msgno, size).await {
                Ok(body) => body,
                // Nothing of it was kept: an item error. Cut off past the maximum,
                // the session is lost, and the next message says so.
                Err(error @ Pop3Error::TooLarge { .. }) => {
                    sink.withhold(*uid, format!("{error}; not copied"));
                    continue;
                }
                Err(error) => return Err(Self::wrap(error)),
            };
            let message = FetchedMessage::new(*uid, Vec::new(), self.dates.get(uid).cloned(), body);
            if sink.send(message).await.is_err() {
                return Ok(());
            }
        }
        Ok(())
    }

    async fn close(self) {
        self.client.quit().await;
    }
}
