//! The grants: one `Client` (a provider, a client id and how the client proves
//! itself) asks the provider's endpoints for tokens in each way mail migration needs.

use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use mailmove_model::Secret;
use serde_json::Value;
use url::Url;

use crate::error::{Error, OAuthError};
use crate::http::{self, Answer, Field, HttpOptions, Post, scrub};
use crate::jwt::{self, SigningKey, random_id};
use crate::provider::Provider;

/// `urn:ietf:params:oauth:grant-type:device_code` (RFC 8628 §3.4).
const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// `urn:ietf:params:oauth:grant-type:jwt-bearer` (RFC 7523 §2.1).
const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// RFC 7523 §2.2.
const JWT_CLIENT_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// RFC 8628 §3.2: the interval when the provider names none.
const DEFAULT_DEVICE_INTERVAL: Duration = Duration::from_secs(5);
/// RFC 8628 §3.5: what `slow_down` adds to the interval.
const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);

/// How the client proves itself at the token endpoint.
#[derive(Clone, Debug)]
pub enum ClientAuth {
    /// A public client (a command line program): only its id.
    None,
    /// A client secret in the `Authorization: Basic` header (RFC 6749 §2.3.1).
    SecretBasic(Secret<String>),
    /// A client secret in the form (`client_secret_post`), as Microsoft documents it.
    SecretPost(Secret<String>),
    /// A certificate's private key signing a fresh assertion per request
    /// (`private_key_jwt`, RFC 7523 §2.2).
    PrivateKeyJwt(SigningKey),
}

/// A Google-style service account: its identity (an email address) and its key.
#[derive(Clone, Debug)]
pub struct ServiceAccount {
    pub email: String,
    pub key: SigningKey,
}

impl ServiceAccount {
    /// From the JSON key file Google hands out (`client_email`, `private_key`,
    /// `private_key_id`).
    pub fn from_google_key_file(json: &str) -> Result<ServiceAccount, Error> {
        let bad = |what: &str| Error::Configuration(format!("the service account key file {what}"));
        let file: Value = serde_json::from_str(json).map_err(|_| bad("is not JSON"))?;
        let email = file["client_email"]
            .as_str()
            .ok_or_else(|| bad("has no client_email"))?;
        let pem = file["private_key"]
            .as_str()
            .ok_or_else(|| bad("has no private_key"))?;
        let mut key = SigningKey::from_pem(pem)?;
        if let Some(kid) = file["private_key_id"].as_str() {
            key = key.with_key_id(kid);
        }
        Ok(ServiceAccount {
            email: email.to_string(),
            key,
        })
    }
}

/// What a token endpoint handed out. `Debug` shows no token.
#[derive(Clone, Debug)]
pub struct Tokens {
    pub access_token: Secret<String>,
    /// After a refresh: the new refresh token if the provider rotated it, else the
    /// one presented.
    pub refresh_token: Option<Secret<String>>,
    pub id_token: Option<Secret<String>>,
    /// `expires_in` as the provider said it, when it did.
    pub lifetime: Option<Duration>,
    /// When the access token expires, counted from when the answer arrived.
    pub expires_at: Option<SystemTime>,
    /// The scopes granted, when the provider says (it may grant fewer than asked).
    pub scope: Option<String>,
}

/// A started authorization-code sign-in: what the caller keeps (in the user's
/// session) until the provider redirects back, and must hand back to finish it.
/// `Debug` shows neither the verifier nor the state.
#[derive(Clone, Debug)]
pub struct PendingAuthorization {
    state: Secret<String>,
    verifier: Secret<String>,
    redirect_uri: String,
    account: String,
    provider: String,
}

impl PendingAuthorization {
    /// The `state` sent, to store beside the session.
    pub fn state(&self) -> &Secret<String> {
        &self.state
    }

    /// The PKCE verifier, to store (sealed) beside the session when the redirect
    /// comes back to another request; [`Client::resume_authorization`] takes it back.
    pub fn verifier(&self) -> &Secret<String> {
        &self.verifier
    }

    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// The mailbox the sign-in is for, as given to [`Client::authorization_url`].
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The code in the redirect back to us, once `state` matched: the query of the
    /// redirect URI (the whole URL or just its query). A provider's error in the
    /// redirect (`error=access_denied`) is a refusal.
    pub fn code_from_redirect(&self, redirect: &str) -> Result<Secret<String>, Error> {
        let query = match redirect.split_once('?') {
            Some((_, query)) => query,
            None => redirect,
        };
        let query = query.split('#').next().unwrap_or_default();
        let mut code = None;
        let mut state = None;
        let mut error = None;
        let mut description = None;
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match name.as_ref() {
                "code" => code = Some(Secret::new(value.into_owned())),
                "state" => state = Some(value.into_owned()),
                "error" => error = Some(value.into_owned()),
                "error_description" => description = Some(value.into_owned()),
                _ => {}
            }
        }
        if state.as_deref() != Some(self.state.expose().as_str()) {
            return Err(Error::Mismatch("the state does not match"));
        }
        if let Some(code) = error {
            return Err(Error::Refused {
                provider: self.provider.clone(),
                action: "the sign-in",
                account: self.account.clone(),
                error: OAuthError { code, description },
            });
        }
        code.ok_or(Error::Mismatch("the redirect carries no code"))
    }
}

/// A started device sign-in (RFC 8628 §3.2): show `user_code` and
/// `verification_uri` to the person, then wait.
#[derive(Clone, Debug)]
pub struct DeviceAuthorization {
    device_code: Secret<String>,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    pub expires_at: Instant,
    /// How long to wait between polls; `slow_down` lengthens it.
    pub interval: Duration,
    account: String,
}

/// The answer to one poll of a device sign-in.
#[derive(Debug)]
pub enum DevicePoll {
    /// `authorization_pending`: not approved yet.
    Pending,
    /// `slow_down`: the interval was lengthened by five seconds.
    SlowDown,
    Granted(Tokens),
}

/// One OAuth client at one provider.
#[derive(Clone, Debug)]
pub struct Client {
    provider: Provider,
    client_id: String,
    auth: ClientAuth,
    http: HttpOptions,
}

impl Client {
    pub fn new(
        provider: Provider,
        client_id: impl Into<String>,
        auth: ClientAuth,
        http: HttpOptions,
    ) -> Client {
        Client {
            provider,
            client_id: client_id.into(),
            auth,
            http,
        }
    }

    pub fn provider(&self) -> &Provider {
        &self.provider
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The URL to send the person's browser to (authorization code with PKCE S256
    /// and `state`, RFC 6749 §4.1, RFC 7636), and what to keep until the redirect
    /// comes back. `account` (a login hint) names the mailbox in errors and is
    /// passed to the provider when given.
    pub fn authorization_url(
        &self,
        redirect_uri: &str,
        scopes: &[&str],
        account: Option<&str>,
    ) -> Result<(Url, PendingAuthorization), Error> {
        let mut url = self
            .provider
            .require(&self.provider.endpoints.authorization, "authorization")?
            .clone();
        let state = random_id()?;
        // 64 characters of the unreserved set: within RFC 7636 §4.1's 43..=128.
        let verifier = format!("{}{}", random_id()?, random_id()?);
        let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(
            &ring::digest::SHA256,
            verifier.as_bytes(),
        ));
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &self.client_id)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("scope", &scopes.join(" "))
                .append_pair("state", &state)
                .append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256");
            if let Some(account) = account {
                query.append_pair("login_hint", account);
            }
            for (name, value) in &self.provider.authorization_parameters {
                query.append_pair(name, value);
            }
        }
        Ok((
            url,
            PendingAuthorization {
                state: Secret::new(state),
                verifier: Secret::new(verifier),
                redirect_uri: redirect_uri.to_string(),
                account: account.unwrap_or("the mailbox").to_string(),
                provider: self.provider.name.clone(),
            },
        ))
    }

    /// A pending sign-in stored by an earlier request (its parts from
    /// [`PendingAuthorization::state`], `verifier`, `redirect_uri` and `account`).
    pub fn resume_authorization(
        &self,
        state: Secret<String>,
        verifier: Secret<String>,
        redirect_uri: &str,
        account: &str,
    ) -> PendingAuthorization {
        PendingAuthorization {
            state,
            verifier,
            redirect_uri: redirect_uri.to_string(),
            account: account.to_string(),
            provider: self.provider.name.clone(),
        }
    }

    /// Exchanges the code from [`PendingAuthorization::code_from_redirect`] for
    /// tokens, proving with the PKCE verifier that this client started the sign-in.
    pub async fn exchange_code(
        &self,
        pending: &PendingAuthorization,
        code: &Secret<String>,
    ) -> Result<Tokens, Error> {
        self.token_request(
            "the sign-in",
            &pending.account,
            vec![
                ("grant_type", Field::Plain("authorization_code")),
                ("code", Field::Secret(code)),
                ("redirect_uri", Field::Plain(&pending.redirect_uri)),
                ("code_verifier", Field::Secret(&pending.verifier)),
            ],
            None,
        )
        .await
    }

    /// Starts a device sign-in (RFC 8628 §3.1) for `account` (named in errors).
    pub async fn start_device(
        &self,
        scopes: &[&str],
        account: &str,
    ) -> Result<DeviceAuthorization, Error> {
        let url = self
            .provider
            .require(
                &self.provider.endpoints.device_authorization,
                "device authorization",
            )?
            .clone();
        let scope = scopes.join(" ");
        let body = self
            .send(
                "the device sign-in",
                account,
                &url,
                vec![("scope", Field::Plain(&scope))],
            )
            .await?;
        let bad = |reason: &str| Error::BadAnswer {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let text = |key: &str| body[key].as_str().map(str::to_string);
        // Microsoft's v2.0 endpoint long said `verification_url`.
        let verification_uri = text("verification_uri")
            .or_else(|| text("verification_url"))
            .ok_or_else(|| bad("no verification_uri"))?;
        Ok(DeviceAuthorization {
            device_code: Secret::new(text("device_code").ok_or_else(|| bad("no device_code"))?),
            user_code: text("user_code").ok_or_else(|| bad("no user_code"))?,
            verification_uri,
            verification_uri_complete: text("verification_uri_complete"),
            expires_at: Instant::now()
                + Duration::from_secs(body["expires_in"].as_u64().unwrap_or(600)),
            interval: body["interval"]
                .as_u64()
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_DEVICE_INTERVAL),
            account: account.to_string(),
        })
    }

    /// Polls once (RFC 8628 §3.4). `slow_down` lengthens `device.interval`;
    /// `expired_token` and `access_denied` are errors that need a new sign-in.
    pub async fn poll_device(&self, device: &mut DeviceAuthorization) -> Result<DevicePoll, Error> {
        let result = self
            .token_request(
                "the device sign-in",
                &device.account,
                vec![
                    ("grant_type", Field::Plain(DEVICE_CODE_GRANT)),
                    ("device_code", Field::Secret(&device.device_code)),
                ],
                None,
            )
            .await;
        poll_outcome(result, device)
    }

    /// Polls every `interval` until the person approves, denies, or the code expires.
    pub async fn wait_for_device(&self, device: &mut DeviceAuthorization) -> Result<Tokens, Error> {
        loop {
            if Instant::now() >= device.expires_at {
                return Err(Error::DeviceCodeExpired {
                    account: device.account.clone(),
                });
            }
            tokio::time::sleep(device.interval).await;
            if let DevicePoll::Granted(tokens) = self.poll_device(device).await? {
                return Ok(tokens);
            }
        }
    }

    /// Client credentials (RFC 6749 §4.4): a token for the application itself.
    pub async fn client_credentials(&self, scopes: &[&str]) -> Result<Tokens, Error> {
        let scope = scopes.join(" ");
        let account = format!("the application {}", self.client_id);
        self.token_request(
            "the application's sign-in",
            &account,
            vec![
                ("grant_type", Field::Plain("client_credentials")),
                ("scope", Field::Plain(&scope)),
            ],
            None,
        )
        .await
    }

    /// The JWT-bearer grant (RFC 7523 §2.1) of a service account acting for
    /// `subject` (a mailbox), posted as Google takes it: the assertion alone, with
    /// no client authentication.
    pub async fn jwt_bearer(
        &self,
        account: &ServiceAccount,
        subject: &str,
        scopes: &[&str],
    ) -> Result<Tokens, Error> {
        let token_url = self.provider.endpoints.token.as_str();
        let assertion = jwt::bearer_assertion(
            &account.key,
            &account.email,
            subject,
            token_url,
            &scopes.join(" "),
        )?;
        let who = format!("{subject} (through {})", account.email);
        let form = vec![
            ("grant_type", Field::Plain(JWT_BEARER_GRANT)),
            ("assertion", Field::Secret(&assertion)),
        ];
        let url = self.provider.endpoints.token.clone();
        let post = Post {
            authorization: None,
            form,
        };
        let answer = http::post(&self.http, &url, &post).await?;
        self.tokens_from(answer, "the sign-in", &who, &url, &post.secrets(), None)
    }

    /// A refresh (RFC 6749 §6). The answer's refresh token is the provider's new one
    /// when it rotated, else `refresh_token` itself.
    pub async fn refresh(
        &self,
        refresh_token: &Secret<String>,
        account: &str,
    ) -> Result<Tokens, Error> {
        self.token_request(
            "the token refresh",
            account,
            vec![
                ("grant_type", Field::Plain("refresh_token")),
                ("refresh_token", Field::Secret(refresh_token)),
            ],
            Some(refresh_token),
        )
        .await
    }

    /// Revokes a token (RFC 7009): `"refresh_token"` or `"access_token"` as the
    /// hint. Revoking a refresh token ends the whole grant at most providers.
    pub async fn revoke(
        &self,
        token: &Secret<String>,
        hint: &str,
        account: &str,
    ) -> Result<(), Error> {
        let url = self
            .provider
            .require(&self.provider.endpoints.revocation, "revocation")?
            .clone();
        self.send(
            "the sign-out",
            account,
            &url,
            vec![
                ("token", Field::Secret(token)),
                ("token_type_hint", Field::Plain(hint)),
            ],
        )
        .await
        .map(drop)
    }

    /// A POST to the token endpoint, authenticated as this client.
    async fn token_request(
        &self,
        action: &'static str,
        account: &str,
        form: Vec<(&str, Field<'_>)>,
        presented_refresh: Option<&Secret<String>>,
    ) -> Result<Tokens, Error> {
        let url = self.provider.endpoints.token.clone();
        let post = self.authenticated(form)?;
        let answer = http::post(&self.http, &url, &post).await?;
        self.tokens_from(
            answer,
            action,
            account,
            &url,
            &post.secrets(),
            presented_refresh,
        )
    }

    /// A POST to any endpoint, authenticated as this client; its JSON (or `null`
    /// for an empty 200, as revocation answers).
    async fn send(
        &self,
        action: &'static str,
        account: &str,
        url: &Url,
        form: Vec<(&str, Field<'_>)>,
    ) -> Result<Value, Error> {
        let post = self.authenticated(form)?;
        let answer = http::post(&self.http, url, &post).await?;
        if answer.status == 200 {
            if answer.body.is_empty() {
                return Ok(Value::Null);
            }
            return answer.json(url);
        }
        Err(self.failure(&answer, action, account, url, &post.secrets()))
    }

    /// The form with this client's authentication added (and the header, for
    /// `client_secret_basic`). The JWT assertion's audience is the token endpoint
    /// whichever endpoint it goes to, as RFC 7523 §3 asks.
    fn authenticated<'a>(&'a self, mut form: Vec<(&'a str, Field<'a>)>) -> Result<Post<'a>, Error> {
        let mut authorization = None;
        match &self.auth {
            ClientAuth::None => form.push(("client_id", Field::Plain(&self.client_id))),
            ClientAuth::SecretBasic(secret) => {
                let pair = format!(
                    "{}:{}",
                    form_encode(&self.client_id),
                    form_encode(secret.expose())
                );
                authorization = Some(Secret::new(format!("Basic {}", STANDARD.encode(pair))));
            }
            ClientAuth::SecretPost(secret) => {
                form.push(("client_id", Field::Plain(&self.client_id)));
                form.push(("client_secret", Field::Secret(secret)));
            }
            ClientAuth::PrivateKeyJwt(key) => {
                let assertion = jwt::client_assertion(
                    key,
                    &self.client_id,
                    self.provider.endpoints.token.as_str(),
                )?;
                form.push(("client_id", Field::Plain(&self.client_id)));
                form.push(("client_assertion_type", Field::Plain(JWT_CLIENT_ASSERTION)));
                form.push(("client_assertion", Field::Owned(assertion)));
            }
        }
        Ok(Post {
            authorization,
            form,
        })
    }

    fn tokens_from(
        &self,
        answer: Answer,
        action: &'static str,
        account: &str,
        url: &Url,
        secrets: &[&str],
        presented_refresh: Option<&Secret<String>>,
    ) -> Result<Tokens, Error> {
        if answer.status != 200 {
            return Err(self.failure(&answer, action, account, url, secrets));
        }
        let received = SystemTime::now();
        let body = answer.json(url)?;
        let secret = |key: &str| body[key].as_str().map(|s| Secret::new(s.to_string()));
        let access_token = secret("access_token").ok_or_else(|| Error::BadAnswer {
            url: url.to_string(),
            reason: "the token answer has no access_token".into(),
        })?;
        let lifetime = match &body["expires_in"] {
            Value::Number(n) => n.as_u64(),
            // Some providers (older Microsoft endpoints) send it as a string.
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
        .map(Duration::from_secs);
        Ok(Tokens {
            access_token,
            refresh_token: secret("refresh_token").or_else(|| presented_refresh.cloned()),
            id_token: secret("id_token"),
            lifetime,
            expires_at: lifetime.map(|l| received + l),
            scope: body["scope"].as_str().map(str::to_string),
        })
    }

    /// An error answer in the user's terms, with nothing secret in it.
    fn failure(
        &self,
        answer: &Answer,
        action: &'static str,
        account: &str,
        url: &Url,
        secrets: &[&str],
    ) -> Error {
        let body: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        if let Some(code) = body["error"].as_str() {
            return Error::Refused {
                provider: self.provider.name.clone(),
                action,
                account: account.to_string(),
                error: OAuthError {
                    code: scrub(code, secrets),
                    description: body["error_description"]
                        .as_str()
                        .map(|d| scrub(d, secrets)),
                },
            };
        }
        if answer.status >= 500 || answer.status == 429 {
            return Error::ProviderFailed {
                url: url.to_string(),
                status: answer.status,
            };
        }
        Error::BadAnswer {
            url: url.to_string(),
            reason: format!("HTTP {} without an OAuth error", answer.status),
        }
    }
}

/// What one poll's answer means (RFC 8628 §3.5), apart from the request so every
/// answer can be tested, even those the test provider never gives (`slow_down`).
fn poll_outcome(
    result: Result<Tokens, Error>,
    device: &mut DeviceAuthorization,
) -> Result<DevicePoll, Error> {
    match result {
        Ok(tokens) => Ok(DevicePoll::Granted(tokens)),
        Err(error) => match error.oauth().map(|e| e.code.as_str()) {
            Some("authorization_pending") => Ok(DevicePoll::Pending),
            Some("slow_down") => {
                device.interval += SLOW_DOWN_STEP;
                Ok(DevicePoll::SlowDown)
            }
            Some("expired_token") => Err(Error::DeviceCodeExpired {
                account: device.account.clone(),
            }),
            _ => Err(error),
        },
    }
}

/// `application/x-www-form-urlencoded` of one value (RFC 6749 §2.3.1 encodes the
/// client id and secret so before Basic).
fn form_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> DeviceAuthorization {
        DeviceAuthorization {
            device_code: Secret::new("device-code".into()),
            user_code: "ABCD-EFGH".into(),
            verification_uri: "https://idp.example.test/device".into(),
            verification_uri_complete: None,
            expires_at: Instant::now() + Duration::from_secs(600),
            interval: DEFAULT_DEVICE_INTERVAL,
            account: "alice@example.test".into(),
        }
    }

    fn answer(code: &str) -> Result<Tokens, Error> {
        Err(Error::Refused {
            provider: "Microsoft".into(),
            action: "the device sign-in",
            account: "alice@example.test".into(),
            error: OAuthError {
                code: code.into(),
                description: None,
            },
        })
    }

    #[test]
    fn slow_down_adds_five_seconds_each_time() {
        let mut device = device();
        assert!(matches!(
            poll_outcome(answer("slow_down"), &mut device),
            Ok(DevicePoll::SlowDown)
        ));
        assert_eq!(device.interval, Duration::from_secs(10));
        poll_outcome(answer("slow_down"), &mut device).unwrap();
        assert_eq!(device.interval, Duration::from_secs(15));
    }

    #[test]
    fn pending_waits_and_expiry_and_denial_end_the_sign_in() {
        let mut device = device();
        assert!(matches!(
            poll_outcome(answer("authorization_pending"), &mut device),
            Ok(DevicePoll::Pending)
        ));
        assert_eq!(device.interval, DEFAULT_DEVICE_INTERVAL);
        let expired = poll_outcome(answer("expired_token"), &mut device).unwrap_err();
        assert!(matches!(expired, Error::DeviceCodeExpired { .. }));
        assert!(expired.needs_sign_in());
        let denied = poll_outcome(answer("access_denied"), &mut device).unwrap_err();
        assert_eq!(denied.oauth().unwrap().code, "access_denied");
        assert!(denied.needs_sign_in());
    }

    fn client(auth: ClientAuth) -> Client {
        let mut provider = Provider::google();
        provider.endpoints.token = "https://idp.example.test/token".parse().unwrap();
        Client::new(provider, "mail app", auth, HttpOptions::default())
    }

    fn form<'a>(post: &'a Post<'_>) -> Vec<(&'a str, &'a str)> {
        post.form
            .iter()
            .map(|(name, value)| {
                let value = match value {
                    Field::Plain(text) => text,
                    Field::Secret(secret) => secret.expose().as_str(),
                    Field::Owned(secret) => secret.expose().as_str(),
                };
                (*name, value)
            })
            .collect()
    }

    #[test]
    fn a_secret_goes_in_the_basic_header_form_encoded_or_in_the_form() {
        let secret = Secret::new("p@ss word".to_string());
        let basic = client(ClientAuth::SecretBasic(secret.clone()));
        let post = basic.authenticated(Vec::new()).unwrap();
        assert!(post.form.is_empty());
        // RFC 6749 §2.3.1: "mail app:p@ss word" with both parts form-encoded first.
        assert_eq!(
            post.authorization.as_ref().unwrap().expose(),
            &format!("Basic {}", STANDARD.encode("mail+app:p%40ss+word"))
        );

        let in_form = client(ClientAuth::SecretPost(secret));
        let post = in_form.authenticated(Vec::new()).unwrap();
        assert!(post.authorization.is_none());
        assert_eq!(
            form(&post),
            vec![("client_id", "mail app"), ("client_secret", "p@ss word")]
        );
        assert_eq!(post.secrets(), vec!["p@ss word"]);
    }

    #[test]
    fn a_client_assertion_names_the_client_and_the_token_endpoint() {
        // Any RSA key will do; the provider's acceptance is tested against the real one.
        // Through the running crate's directory, not `env!`: a build reused from another
        // checkout keeps that checkout's path.
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
        let pem =
            std::fs::read_to_string(format!("{dir}/tests/fixtures/test-rsa-key.pem")).unwrap();
        let key = SigningKey::from_pem(&pem).unwrap().with_key_id("k1");
        let signed = client(ClientAuth::PrivateKeyJwt(key));
        let post = signed.authenticated(Vec::new()).unwrap();
        let fields = form(&post);
        assert_eq!(fields[0], ("client_id", "mail app"));
        assert_eq!(fields[1], ("client_assertion_type", JWT_CLIENT_ASSERTION));
        let assertion = fields[2].1;
        let part = |n: usize| -> Value {
            let text = assertion.split('.').nth(n).unwrap();
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(text).unwrap()).unwrap()
        };
        assert_eq!(part(0)["alg"], "RS256");
        assert_eq!(part(0)["kid"], "k1");
        let claims = part(1);
        assert_eq!(claims["iss"], "mail app");
        assert_eq!(claims["sub"], "mail app");
        assert_eq!(claims["aud"], "https://idp.example.test/token");
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            300
        );
        assert_eq!(post.secrets(), vec![assertion]);
    }

    #[test]
    fn debug_shows_no_code_verifier_or_state() {
        let pending = PendingAuthorization {
            state: Secret::new("the-state".into()),
            verifier: Secret::new("the-verifier".into()),
            redirect_uri: "http://127.0.0.1/callback".into(),
            account: "alice@example.test".into(),
            provider: "Google".into(),
        };
        let shown = format!("{pending:?} {:?}", device());
        for secret in ["the-state", "the-verifier", "device-code"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
