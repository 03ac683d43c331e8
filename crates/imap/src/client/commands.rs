//! The commands a migration sends, each a method of [`Client`]: login, folder listing,
//! EXAMINE/SELECT, STATUS, CREATE, SUBSCRIBE, UID SEARCH, quota, and a UID FETCH whose
//! answers stream one message at a time.

use base64::Engine;
use mailmove_model::Secret;
use mailmove_net::{AdminForm, OAuthMechanism, SignIn, sasl};

use super::{Client, quote};
use crate::error::Error;
use crate::framing::LiteralBound;
use crate::response::{
    Code, Fetch, ListEntry, Namespaces, QuotaResource, Response, Status, StatusKind, Untagged,
};

/// What EXAMINE or SELECT said about a mailbox.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailboxInfo {
    pub exists: u32,
    pub uidvalidity: Option<u32>,
    pub uidnext: Option<u32>,
    /// `None` when the server sent no PERMANENTFLAGS: then FLAGS is the limit.
    pub permanent_flags: Option<Vec<String>>,
    pub flags: Vec<String>,
}

impl MailboxInfo {
    /// Whether a flag stored by APPEND will be kept.
    pub fn accepts_flag(&self, flag: &str) -> bool {
        let allowed = self.permanent_flags.as_ref().unwrap_or(&self.flags);
        if allowed.iter().any(|f| f.eq_ignore_ascii_case(flag)) {
            return true;
        }
        !flag.starts_with('\\') && allowed.iter().any(|f| f == "\\*")
    }
}

/// A quota root's storage figures, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StorageQuota {
    pub used: u64,
    pub limit: u64,
}

impl Client {
    /// Signs in as `sign_in` says: a password (see [`Client::login`]), an
    /// administrator acting for a mailbox, or an OAuth2 token over OAUTHBEARER (where
    /// offered) or XOAUTH2.
    pub async fn sign_in(&mut self, sign_in: &SignIn) -> Result<(), Error> {
        match sign_in {
            SignIn::Password { login, password } => self.login(login, password).await,
            SignIn::Admin {
                mailbox,
                admin,
                password,
                form: AdminForm::Separator(separator),
            } => {
                self.login(&format!("{mailbox}{separator}{admin}"), password)
                    .await
            }
            SignIn::Admin {
                mailbox,
                admin,
                password,
                form: AdminForm::AuthorizationIdentity,
            } => {
                if !self.has_capability("AUTH=PLAIN") {
                    return Err(Error::CannotSignIn {
                        needed: "AUTHENTICATE PLAIN (an administrator acting for a mailbox)".into(),
                    });
                }
                let message = sasl::plain(mailbox, admin, password);
                let status = self.authenticate("PLAIN", &message, "").await?;
                self.signed_in(status, mailbox, false).await
            }
            SignIn::Token { user, token } => {
                let offered: Vec<&str> = self
                    .capabilities()
                    .iter()
                    .filter_map(|c| {
                        c.get(..5)
                            .filter(|p| p.eq_ignore_ascii_case("AUTH="))
                            .map(|_| &c[5..])
                    })
                    .collect();
                let Some(mechanism) = OAuthMechanism::choose(offered) else {
                    return Err(Error::CannotSignIn {
                        needed: "OAuth sign-in (AUTH=OAUTHBEARER or AUTH=XOAUTH2)".into(),
                    });
                };
                let message = match mechanism {
                    OAuthMechanism::XOAuth2 => sasl::xoauth2(user, token),
                    OAuthMechanism::OAuthBearer => {
                        sasl::oauthbearer(user, &self.host, self.port, token)
                    }
                };
                let answer = sasl::after_oauth_error(mechanism);
                let status = self
                    .authenticate(mechanism.name(), &message, answer)
                    .await?;
                self.signed_in(status, user, true).await
            }
        }
    }

    /// Runs one SASL exchange with an initial response; a challenge after it is the
    /// server's error report (OAuth's JSON), answered with `answer` so that it ends the
    /// exchange. Tells the final status and the error report, if one came.
    async fn authenticate(
        &mut self,
        mechanism: &str,
        message: &Secret<String>,
        answer: &str,
    ) -> Result<(Status, Option<String>), Error> {
        let tag = if self.has_capability("SASL-IR") {
            self.send_line(&format!("AUTHENTICATE {mechanism} {}", message.expose()))
                .await?
        } else {
            let tag = self.send_line(&format!("AUTHENTICATE {mechanism}")).await?;
            self.wait_continuation(&tag).await?;
            self.write_raw(format!("{}\r\n", message.expose()).as_bytes())
                .await?;
            tag
        };
        let mut reported = None;
        loop {
            match self.read_response().await? {
                Response::Continue(challenge) => {
                    reported = Some(sasl::oauth_error(&challenge));
                    self.write_raw(format!("{answer}\r\n").as_bytes()).await?;
                }
                Response::Tagged { tag: done, status } if done == tag => {
                    return Ok((status, reported));
                }
                Response::Untagged(Untagged::Capability(caps)) => self.capabilities = caps,
                _ => {}
            }
        }
    }

    /// After AUTHENTICATE: a refusal in the user's terms, else the new capabilities.
    async fn signed_in(
        &mut self,
        (status, reported): (Status, Option<String>),
        user: &str,
        token: bool,
    ) -> Result<(), Error> {
        if status.kind != StatusKind::Ok {
            let mut text = status.describe();
            if let Some(reported) = reported {
                text = format!("{text}; {reported}");
            }
            return Err(if token {
                Error::TokenRefused {
                    user: user.to_string(),
                    text,
                }
            } else {
                Error::AuthFailed {
                    login: user.to_string(),
                    text,
                }
            });
        }
        self.capabilities.clear();
        if let Some(Code::Capability(caps)) = status.code {
            self.capabilities = caps;
        }
        if self.capabilities.is_empty() {
            self.refresh_capabilities().await?;
        }
        Ok(())
    }

    /// Logs in with AUTHENTICATE PLAIN when offered, else LOGIN.
    pub async fn login(&mut self, login: &str, password: &Secret<String>) -> Result<(), Error> {
        let result = if self.has_capability("AUTH=PLAIN") {
            let token = base64::engine::general_purpose::STANDARD
                .encode(format!("\0{login}\0{}", password.expose()));
            if self.has_capability("SASL-IR") {
                self.command_status(&format!("AUTHENTICATE PLAIN {token}"), "AUTHENTICATE")
                    .await
            } else {
                let tag = self.send_line("AUTHENTICATE PLAIN").await?;
                self.wait_continuation(&tag).await?;
                self.write_raw(format!("{token}\r\n").as_bytes()).await?;
                self.finish(&tag).await
            }
        } else {
            let command = format!(
                "LOGIN {} {}",
                quote(login.as_bytes()),
                quote(password.expose().as_bytes())
            );
            self.command_status(&command, "LOGIN").await
        };
        let (untagged, status) = result?;
        if status.kind != StatusKind::Ok {
            return Err(Error::AuthFailed {
                login: login.to_string(),
                text: status.describe(),
            });
        }
        self.capabilities.clear();
        if let Some(Code::Capability(caps)) = status.code {
            self.capabilities = caps;
        }
        for response in untagged {
            if let Untagged::Capability(caps) = response {
                self.capabilities = caps;
            }
        }
        if self.capabilities.is_empty() {
            self.refresh_capabilities().await?;
        }
        Ok(())
    }

    /// Sends ID (RFC 2971) when offered; some servers log it, none needs it.
    pub async fn identify(&mut self) -> Result<(), Error> {
        if self.has_capability("ID") {
            let version = env!("CARGO_PKG_VERSION");
            self.run(&format!(
                "ID (\"name\" \"mailmove\" \"version\" \"{version}\")"
            ))
            .await?;
        }
        Ok(())
    }

    pub async fn namespace(&mut self) -> Result<Namespaces, Error> {
        if !self.has_capability("NAMESPACE") {
            return Ok(Namespaces::default());
        }
        let untagged = self.run("NAMESPACE").await?;
        Ok(untagged
            .into_iter()
            .find_map(|u| match u {
                Untagged::Namespace(n) => Some(n),
                _ => None,
            })
            .unwrap_or_default())
    }

    /// Every folder, with special-use attributes where the server has them.
    pub async fn list(&mut self) -> Result<Vec<ListEntry>, Error> {
        let command = if self.has_capability("SPECIAL-USE") && self.has_capability("LIST-EXTENDED")
        {
            "LIST \"\" \"*\" RETURN (SPECIAL-USE)"
        } else {
            "LIST \"\" \"*\""
        };
        let untagged = self.run(command).await?;
        Ok(untagged
            .into_iter()
            .filter_map(|u| match u {
                Untagged::List(entry) => Some(entry),
                _ => None,
            })
            .collect())
    }

    /// The subscribed folders' raw names.
    pub async fn subscriptions(&mut self) -> Result<Vec<Vec<u8>>, Error> {
        let untagged = self.run("LSUB \"\" \"*\"").await?;
        Ok(untagged
            .into_iter()
            .filter_map(|u| match u {
                Untagged::Lsub(entry) => Some(entry.name),
                _ => None,
            })
            .collect())
    }

    /// Opens a mailbox read-only: the source is never changed.
    pub async fn examine(&mut self, mailbox: &[u8]) -> Result<MailboxInfo, Error> {
        self.open("EXAMINE", mailbox).await
    }

    /// Opens a mailbox read-write, to learn its PERMANENTFLAGS. mailmove never sends
    /// CLOSE or EXPUNGE, so nothing selected this way is ever removed.
    pub async fn select(&mut self, mailbox: &[u8]) -> Result<MailboxInfo, Error> {
        self.open("SELECT", mailbox).await
    }

    async fn open(&mut self, verb: &str, mailbox: &[u8]) -> Result<MailboxInfo, Error> {
        let (untagged, status) = self
            .command_status(&format!("{verb} {}", quote(mailbox)), verb)
            .await?;
        let status = self.require_ok(
            status,
            &format!("{verb} {}", String::from_utf8_lossy(mailbox)),
        )?;
        let mut info = MailboxInfo::default();
        let apply = |code: &Code, info: &mut MailboxInfo| match code {
            Code::UidValidity(v) => info.uidvalidity = Some(*v),
            Code::UidNext(n) => info.uidnext = Some(*n),
            Code::PermanentFlags(f) => info.permanent_flags = Some(f.clone()),
            _ => {}
        };
        for response in &untagged {
            match response {
                Untagged::Exists(n) => info.exists = *n,
                Untagged::Flags(f) => info.flags = f.clone(),
                Untagged::Status(s) => {
                    if let Some(code) = &s.code {
                        apply(code, &mut info);
                    }
                }
                _ => {}
            }
        }
        if let Some(code) = &status.code {
            apply(code, &mut info);
        }
        Ok(info)
    }

    /// STATUS items (MESSAGES, UIDNEXT, UIDVALIDITY, SIZE ...) without selecting.
    pub async fn status(
        &mut self,
        mailbox: &[u8],
        items: &str,
    ) -> Result<Vec<(String, u64)>, Error> {
        let untagged = self
            .run(&format!("STATUS {} ({items})", quote(mailbox)))
            .await?;
        Ok(untagged
            .into_iter()
            .find_map(|u| match u {
                Untagged::MailboxStatus { items, .. } => Some(items),
                _ => None,
            })
            .unwrap_or_default())
    }

    /// Creates a folder; one that already exists is not an error.
    pub async fn create(&mut self, mailbox: &[u8]) -> Result<(), Error> {
        let command = format!("CREATE {}", quote(mailbox));
        let (_, status) = self.command_status(&command, "CREATE").await?;
        match status.kind {
            StatusKind::Ok => Ok(()),
            _ if matches!(&status.code, Some(Code::Other(name, _)) if name == "ALREADYEXISTS") => {
                Ok(())
            }
            _ if status.text.to_ascii_lowercase().contains("exist") => Ok(()),
            _ => self.require_ok(status, &command).map(drop),
        }
    }

    pub async fn subscribe(&mut self, mailbox: &[u8]) -> Result<(), Error> {
        self.run(&format!("SUBSCRIBE {}", quote(mailbox)))
            .await
            .map(drop)
    }

    /// UID SEARCH with the given criteria (e.g. `ALL`, `UNDELETED`).
    pub async fn uid_search(&mut self, criteria: &str) -> Result<Vec<u32>, Error> {
        let untagged = self.run(&format!("UID SEARCH {criteria}")).await?;
        let mut uids: Vec<u32> = untagged
            .into_iter()
            .flat_map(|u| match u {
                Untagged::Search(uids) => uids,
                _ => Vec::new(),
            })
            .collect();
        uids.sort_unstable();
        Ok(uids)
    }

    /// The storage quota of the root that holds `mailbox`, when the server has QUOTA.
    pub async fn storage_quota(&mut self, mailbox: &[u8]) -> Result<Option<StorageQuota>, Error> {
        if !self.has_capability("QUOTA") {
            return Ok(None);
        }
        let (untagged, status) = self
            .command_status(&format!("GETQUOTAROOT {}", quote(mailbox)), "GETQUOTAROOT")
            .await?;
        if status.kind != StatusKind::Ok {
            return Ok(None);
        }
        let storage = untagged.into_iter().find_map(|u| match u {
            Untagged::Quota { resources, .. } => resources
                .into_iter()
                .find(|r: &QuotaResource| r.name == "STORAGE"),
            _ => None,
        });
        // QUOTA counts STORAGE in units of 1024 octets (RFC 9208).
        Ok(storage.map(|r| StorageQuota {
            used: r.usage * 1024,
            limit: r.limit * 1024,
        }))
    }

    /// Starts `UID FETCH set (items)`; read the answers with [`FetchStream::next`].
    /// Literals are bounded by the maximum message size only.
    pub async fn uid_fetch(&mut self, set: &str, items: &str) -> Result<FetchStream<'_>, Error> {
        self.uid_fetch_bounded(set, items, LiteralBound::Maximum)
            .await
    }

    /// [`Client::uid_fetch`] with its literals bounded by `bound` as well: one over
    /// its bound is read and thrown away, and its answer comes with
    /// [`Fetch::oversized`] instead of a body.
    pub async fn uid_fetch_bounded(
        &mut self,
        set: &str,
        items: &str,
        bound: LiteralBound,
    ) -> Result<FetchStream<'_>, Error> {
        self.connection.bound_literals(bound);
        let tag = self
            .send_line(&format!("UID FETCH {set} ({items})"))
            .await?;
        Ok(FetchStream {
            client: self,
            tag,
            done: false,
        })
    }
}

/// The answers of one UID FETCH, one message at a time.
pub struct FetchStream<'a> {
    client: &'a mut Client,
    tag: String,
    done: bool,
}

impl FetchStream<'_> {
    /// The next FETCH answer that carries a UID; `None` once the command completed.
    pub async fn next(&mut self) -> Result<Option<Fetch>, Error> {
        while !self.done {
            match self.client.read_response().await? {
                Response::Untagged(Untagged::Fetch(fetch)) if fetch.uid.is_some() => {
                    return Ok(Some(*fetch));
                }
                Response::Tagged { tag, status } if tag == self.tag => {
                    self.done = true;
                    self.client.connection.bound_literals(LiteralBound::Maximum);
                    self.client.require_ok(status, "UID FETCH")?;
                }
                Response::Untagged(Untagged::Status(status)) if status.kind == StatusKind::Bye => {
                    self.client.broken = true;
                    return Err(Error::ConnectionLost(status.describe()));
                }
                _ => {}
            }
        }
        Ok(None)
    }
}
