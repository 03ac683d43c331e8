//! The connectors to real servers, and the one place that picks one: an [`Account`]
//! names an endpoint, and its scheme says which connector opens it. Adding a protocol
//! is a module here implementing [`Source`] and/or [`Destination`], and an arm in each
//! of [`AnySource`], [`AnyDestination`] and [`AnyWriter`].

pub mod ews;
pub mod imap;
pub mod pop3;

use std::sync::Arc;

use mailmove_model::{Endpoint, Kind, Secret};
use mailmove_net::{AdminForm, ConnectOptions, SignIn};
use mailmove_oauth::TokenSource;
use mailmove_store::Ledger;

use crate::connector::{
    Connector, ConnectorError, DestFolder, Destination, Failure, OpenedFolder, Quota, Side,
    SideError, Sink, Source, WriteRequest, Writer, Written,
};
use crate::folders::FolderTree;
use crate::plan::{DestMessage, SourceMessage};

use self::ews::{EwsSide, EwsWriter};
use self::imap::{ImapSide, ImapWriter};
use self::pop3::Pop3Side;

/// How to reach one side: endpoint, login, password and connection options.
#[derive(Clone, Debug)]
pub struct Account {
    pub endpoint: Endpoint,
    /// The mailbox's login (with an administrator, the mailbox to open).
    pub login: String,
    /// The password (or, with [`WebAuth::Bearer`], the token; with an administrator,
    /// the administrator's password).
    pub password: Secret<String>,
    pub options: ConnectOptions,
    /// How the endpoint logs in: for EWS, NTLM, Basic or a bearer token; for IMAP and
    /// POP3, `Bearer` signs in with the token over OAUTHBEARER or XOAUTH2.
    pub web_auth: WebAuth,
    /// An administrator who opens the mailbox `login` for us, where set.
    pub admin: Option<Admin>,
    /// Where fresh OAuth2 access tokens come from, for a pass that outlives one: each
    /// session signs in with the token it hands out (over OAUTHBEARER or XOAUTH2, or
    /// as Exchange's bearer), and a token a server refuses is renewed once. `None`
    /// signs in with `password` (with [`WebAuth::Bearer`], a token given as is).
    pub tokens: Option<Arc<TokenSource>>,
}

/// An administrator signing in for a mailbox (a Dovecot master user, a Cyrus admin).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admin {
    pub login: String,
    pub form: AdminForm,
}

impl Account {
    /// How an IMAP or POP3 session signs in for this account now: with a token
    /// source, its current access token (renewed first if due).
    pub async fn sign_in(&self) -> Result<SignIn, ConnectorError> {
        if let Some(tokens) = &self.tokens {
            return Ok(SignIn::Token {
                user: self.login.clone(),
                token: tokens.access_token().await.map_err(token_error)?,
            });
        }
        Ok(self.given_sign_in())
    }

    /// Signs `client` in for this account. A token the server refuses, when this
    /// account's token source handed it out, is renewed and tried once more (a server
    /// may stop honouring a token before its expiry); a second refusal of a fresh
    /// token is the answer.
    pub(crate) async fn sign_in_with<C: SignsIn>(
        &self,
        client: &mut C,
        side: Side,
    ) -> Result<(), SideError>
    where
        ConnectorError: From<C::Error>,
    {
        let sign_in = self.sign_in().await.map_err(|e| SideError::new(side, e))?;
        match client.sign_in(&sign_in).await {
            Err(error) if C::token_refused(&error) && self.renew_refused(&sign_in).await => {
                let renewed = self.sign_in().await.map_err(|e| SideError::new(side, e))?;
                client
                    .sign_in(&renewed)
                    .await
                    .map_err(|e| SideError::new(side, e))
            }
            result => result.map_err(|e| SideError::new(side, e)),
        }
    }

    /// Invalidates the token of `sign_in` in this account's token source: true when
    /// one was handed out there, so a new one can be had.
    async fn renew_refused(&self, sign_in: &SignIn) -> bool {
        match (&self.tokens, sign_in) {
            (Some(tokens), SignIn::Token { token, .. }) => {
                tokens.invalidate(token).await;
                true
            }
            _ => false,
        }
    }

    /// The access token for an HTTP connector's `Authorization: Bearer`, if the
    /// account signs in with one.
    pub async fn bearer_token(&self) -> Result<Option<Secret<String>>, ConnectorError> {
        match (&self.tokens, self.web_auth) {
            (Some(tokens), _) => Ok(Some(tokens.access_token().await.map_err(token_error)?)),
            (None, WebAuth::Bearer) => Ok(Some(self.password.clone())),
            (None, _) => Ok(None),
        }
    }

    /// How a session signs in with what was given: a password, an administrator's
    /// password, or a token given as is.
    fn given_sign_in(&self) -> SignIn {
        match (&self.admin, self.web_auth) {
            (_, WebAuth::Bearer) => SignIn::Token {
                user: self.login.clone(),
                token: self.password.clone(),
            },
            (Some(admin), _) => SignIn::Admin {
                mailbox: self.login.clone(),
                admin: admin.login.clone(),
                password: self.password.clone(),
                form: admin.form,
            },
            (None, _) => SignIn::Password {
                login: self.login.clone(),
                password: self.password.clone(),
            },
        }
    }
}

/// A protocol client that signs in with a [`SignIn`] (IMAP, POP3).
pub(crate) trait SignsIn {
    type Error;

    async fn sign_in(&mut self, sign_in: &SignIn) -> Result<(), Self::Error>;

    /// The server refused the OAuth2 token (not a password).
    fn token_refused(error: &Self::Error) -> bool;
}

/// How an Exchange (EWS) endpoint logs in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WebAuth {
    /// What the server offers: NTLM, else Basic.
    #[default]
    Auto,
    Basic,
    Ntlm,
    /// OAuth2 bearer token, given where the password would be.
    Bearer,
}

impl Connector for Account {
    type Source = AnySource;
    type Destination = AnyDestination;

    fn server(&self) -> String {
        self.endpoint.to_string()
    }

    async fn source(&self, ledger: Option<&Ledger>) -> Result<AnySource, SideError> {
        Ok(match self.endpoint.kind {
            Kind::Imap => AnySource::Imap(ImapSide::connect(self, Side::Source).await?),
            Kind::Pop3 => AnySource::Pop3(Pop3Side::connect(self, ledger).await?),
            Kind::Ews => AnySource::Ews(Box::new(
                EwsSide::connect(self, Side::Source, ledger).await?,
            )),
        })
    }

    async fn destination(&self, ledger: Option<&Ledger>) -> Result<AnyDestination, SideError> {
        Ok(match self.endpoint.kind {
            Kind::Imap => AnyDestination::Imap(ImapSide::connect(self, Side::Destination).await?),
            Kind::Ews => {
                AnyDestination::Ews(EwsSide::connect(self, Side::Destination, ledger).await?)
            }
            Kind::Pop3 => {
                return Err(SideError::new(
                    Side::Destination,
                    ConnectorError::new(
                        Failure::Setup,
                        "a POP3 server can only be a source: it cannot store messages",
                    ),
                ));
            }
        })
    }
}

/// Why no access token could be had, in the engine's terms: a grant the provider no
/// longer honours needs the mailbox's user (or the administrator) to sign in again;
/// a provider that cannot be reached now is transient; anything else is set-up (the
/// application's registration or the operator's configuration).
fn token_error(error: mailmove_oauth::Error) -> ConnectorError {
    let failure = if error.needs_sign_in() {
        Failure::TokenRefused
    } else if error.is_transient() {
        Failure::Transient
    } else {
        Failure::Setup
    };
    let remedy = error.remedy();
    connector_error(failure, remedy, error)
}

/// What a protocol error means for the pass when the protocol has no more precise word:
/// unreachable (from the shared network error), transient, set-up, or refused.
pub(crate) fn judge(net: Option<&mailmove_net::NetError>, transient: bool, setup: bool) -> Failure {
    match net {
        Some(mailmove_net::NetError::Unreachable { address, reason }) => Failure::Unreachable {
            address: address.clone(),
            reason: reason.clone(),
        },
        _ if transient => Failure::Transient,
        _ if setup => Failure::Setup,
        _ => Failure::Refused,
    }
}

/// A protocol's error in the engine's terms, its own words and remedy kept.
pub(crate) fn connector_error<E>(
    failure: Failure,
    remedy: Option<mailmove_net::Remedy>,
    error: E,
) -> ConnectorError
where
    E: std::error::Error + Send + Sync + 'static,
{
    ConnectorError::new(failure, error.to_string())
        .with_remedy(remedy)
        .with_source(error)
}

/// The source of a pass, whichever protocol its endpoint speaks.
pub enum AnySource {
    Imap(ImapSide),
    Pop3(Pop3Side),
    Ews(Box<EwsSide>),
}

/// Calls the same method on whichever connector is inside (the destinations' enums).
macro_rules! each {
    ($value:expr, $enum:ident, $side:ident => $body:expr) => {
        match $value {
            $enum::Imap($side) => $body,
            $enum::Ews($side) => $body,
        }
    };
}

impl Source for AnySource {
    fn capabilities(&self) -> &[String] {
        match self {
            AnySource::Imap(s) => Source::capabilities(s),
            AnySource::Pop3(s) => s.capabilities(),
            AnySource::Ews(s) => Source::capabilities(s.as_ref()),
        }
    }

    fn max_sessions(&self) -> usize {
        match self {
            AnySource::Imap(s) => s.max_sessions(),
            AnySource::Pop3(s) => s.max_sessions(),
            AnySource::Ews(s) => s.max_sessions(),
        }
    }

    async fn folders(&mut self) -> Result<FolderTree, SideError> {
        match self {
            AnySource::Imap(s) => Source::folders(s).await,
            AnySource::Pop3(s) => s.folders().await,
            AnySource::Ews(s) => Source::folders(s.as_mut()).await,
        }
    }

    async fn folder_size(&mut self, folder: &[u8]) -> u64 {
        match self {
            AnySource::Imap(s) => s.folder_size(folder).await,
            AnySource::Pop3(s) => s.folder_size(folder).await,
            AnySource::Ews(s) => s.folder_size(folder).await,
        }
    }

    async fn open(&mut self, folder: &[u8]) -> Result<OpenedFolder, SideError> {
        match self {
            AnySource::Imap(s) => Source::open(s, folder).await,
            AnySource::Pop3(s) => s.open(folder).await,
            AnySource::Ews(s) => Source::open(s.as_mut(), folder).await,
        }
    }

    async fn messages(&mut self) -> Result<Vec<SourceMessage>, SideError> {
        match self {
            AnySource::Imap(s) => Source::messages(s).await,
            AnySource::Pop3(s) => s.messages().await,
            AnySource::Ews(s) => Source::messages(s.as_mut()).await,
        }
    }

    async fn fetch(&mut self, uids: &[u32], sink: &Sink) -> Result<(), SideError> {
        match self {
            AnySource::Imap(s) => s.fetch(uids, sink).await,
            AnySource::Pop3(s) => s.fetch(uids, sink).await,
            AnySource::Ews(s) => s.fetch(uids, sink).await,
        }
    }

    async fn shutdown(&mut self) {
        match self {
            AnySource::Imap(s) => Source::shutdown(s).await,
            AnySource::Pop3(s) => Source::shutdown(s).await,
            AnySource::Ews(s) => Source::shutdown(s.as_mut()).await,
        }
    }

    async fn close(self) {
        match self {
            AnySource::Imap(s) => Source::close(s).await,
            AnySource::Pop3(s) => Source::close(s).await,
            AnySource::Ews(s) => Source::close(*s).await,
        }
    }
}

/// The destination of a pass, whichever protocol its endpoint speaks.
pub enum AnyDestination {
    Imap(ImapSide),
    Ews(EwsSide),
}

impl Destination for AnyDestination {
    type Writer<'a> = AnyWriter<'a>;

    fn capabilities(&self) -> &[String] {
        each!(self, AnyDestination, d => Destination::capabilities(d))
    }

    async fn folders(&mut self) -> Result<FolderTree, SideError> {
        each!(self, AnyDestination, d => Destination::folders(d).await)
    }

    async fn create(&mut self, folder: &[u8]) -> Result<(), SideError> {
        each!(self, AnyDestination, d => d.create(folder).await)
    }

    async fn subscribe(&mut self, folder: &[u8]) -> Result<(), SideError> {
        each!(self, AnyDestination, d => d.subscribe(folder).await)
    }

    async fn open(&mut self, folder: &[u8]) -> Result<DestFolder, SideError> {
        each!(self, AnyDestination, d => Destination::open(d, folder).await)
    }

    async fn messages(&mut self) -> Result<Vec<DestMessage>, SideError> {
        each!(self, AnyDestination, d => Destination::messages(d).await)
    }

    async fn quota(&mut self) -> Result<Option<Quota>, SideError> {
        each!(self, AnyDestination, d => d.quota().await)
    }

    async fn stored_sizes(
        &mut self,
        uids: &[u32],
    ) -> Result<Option<std::collections::HashMap<u32, u64>>, SideError> {
        each!(self, AnyDestination, d => d.stored_sizes(uids).await)
    }

    async fn read_back(&mut self, uids: &[u32], sink: &Sink) -> Result<(), SideError> {
        each!(self, AnyDestination, d => d.read_back(uids, sink).await)
    }

    fn writer(&mut self, window: usize, folder: &[u8]) -> AnyWriter<'_> {
        match self {
            AnyDestination::Imap(d) => AnyWriter::Imap(d.writer(window, folder)),
            AnyDestination::Ews(d) => AnyWriter::Ews(d.writer(window, folder)),
        }
    }

    async fn shutdown(&mut self) {
        each!(self, AnyDestination, d => Destination::shutdown(d).await)
    }

    async fn close(self) {
        each!(self, AnyDestination, d => Destination::close(d).await)
    }
}

/// The writer of whichever destination.
pub enum AnyWriter<'a> {
    Imap(ImapWriter<'a>),
    Ews(EwsWriter),
}

impl Writer for AnyWriter<'_> {
    async fn send(&mut self, request: WriteRequest) -> Result<Vec<Written>, SideError> {
        each!(self, AnyWriter, w => w.send(request).await)
    }

    async fn idle(&mut self) -> Result<Vec<Written>, SideError> {
        each!(self, AnyWriter, w => w.idle().await)
    }

    async fn finish(self) -> Result<Vec<Written>, SideError> {
        each!(self, AnyWriter, w => w.finish().await)
    }
}
