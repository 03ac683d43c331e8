//! A real OAuth 2.0 / OpenID Connect authorization server per test: `oidc-provider`
//! (a certified OpenID provider, from npm) run by node on loopback, configured by
//! `oidc/server.mjs`, over HTTP and HTTPS (the testkit's throw-away CA). It offers
//! what mailmove's sign-in needs from Microsoft 365 and Google: the authorization
//! code flow with PKCE, the device authorization grant (RFC 8628), client
//! credentials, refresh tokens that rotate, introspection, revocation, and the
//! JWT-bearer grant (RFC 7523) of Google's service accounts; plus test-only helpers
//! that approve a device code or revoke an account's tokens without a browser.
//!
//! Needs node and the packages of `crates/testkit/oidc` (`npm ci` there;
//! `scripts/test` does it).
//!
//! ```no_run
//! use mailmove_testkit::oidc::{OidcOptions, OidcProvider};
//!
//! # fn main() -> anyhow::Result<()> {
//! let provider = OidcProvider::start(OidcOptions::default())?;
//! let tokens = provider.device_flow_token("alice@example.test", "openid offline_access")?;
//! let claims = provider.introspect(&tokens.access_token)?;
//! assert_eq!(claims["sub"], "alice@example.test");
//! # Ok(())
//! # }
//! ```

mod http;
pub mod jwt;

use std::fmt;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

pub use http::HttpResponse;
use http::{HttpClient, percent_encode};

use crate::dovecot::DovecotOAuth2;
use crate::{certs, ports, process};

const NODE_ENV: &str = "MAILMOVE_NODE";
/// node starts in well under a second; generous for loaded two-core machines.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const START_ATTEMPTS: usize = 5;

/// The client ids every provider registers (secrets are random per provider).
pub const CONFIDENTIAL_CLIENT: &str = "mailmove-web";
pub const PUBLIC_CLIENT: &str = "mailmove-cli";
pub const JWT_CLIENT: &str = "mailmove-jwt";
/// A Google-style service account (the JWT-bearer grant's `iss`).
pub const SERVICE_ACCOUNT: &str = "migrator@mailmove-test.iam.example.test";
/// The client the mail server introspects tokens with.
pub const INTROSPECTION_CLIENT: &str = "dovecot";

/// `urn:ietf:params:oauth:grant-type:jwt-bearer` (RFC 7523).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// `urn:ietf:params:oauth:grant-type:device_code` (RFC 8628).
pub const DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// How the provider behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcOptions {
    /// Lifetime of access tokens (user and client-credentials ones alike) and ID
    /// tokens. Whole seconds; at least one.
    pub access_token_lifetime: Duration,
    /// Lifetime of refresh tokens and of the grants behind them.
    pub refresh_token_lifetime: Duration,
    /// How long a device code waits for approval.
    pub device_code_lifetime: Duration,
    /// Redirect URIs registered for the confidential, public and JWT clients.
    pub redirect_uris: Vec<String>,
    /// Scopes offered besides `openid`, `offline_access` and `email`.
    pub extra_scopes: Vec<String>,
}

impl Default for OidcOptions {
    fn default() -> Self {
        OidcOptions {
            access_token_lifetime: Duration::from_secs(20),
            refresh_token_lifetime: Duration::from_secs(24 * 3600),
            device_code_lifetime: Duration::from_secs(600),
            redirect_uris: vec!["http://127.0.0.1/callback".to_string()],
            extra_scopes: [
                "https://mail.google.com/",
                "https://outlook.office.com/IMAP.AccessAsUser.All",
                "https://outlook.office.com/POP.AccessAsUser.All",
                "https://outlook.office365.com/.default",
            ]
            .into_iter()
            .map(str::to_string)
            .collect(),
        }
    }
}

/// A token endpoint's success answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
    pub scope: Option<String>,
}

/// A device authorization answer (RFC 8628 §3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAuthorization {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    pub expires_in: u64,
}

/// An OAuth error answer (`{"error": ..., "error_description": ...}`), as the error
/// inside the `anyhow::Error` the helpers return: `err.downcast_ref::<OAuthError>()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub status: u16,
    pub error: String,
    pub description: Option<String>,
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}: {}", self.status, self.error)?;
        if let Some(description) = &self.description {
            write!(f, " ({description})")?;
        }
        Ok(())
    }
}

impl std::error::Error for OAuthError {}

/// The endpoints of one origin (the HTTP or the HTTPS port), from the discovery
/// document served there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub discovery: String,
    pub authorization: String,
    pub token: String,
    pub device_authorization: String,
    pub introspection: String,
    pub revocation: String,
    pub userinfo: String,
    pub jwks: String,
}

/// One running provider. Owns its directory (configuration, certificates, keys, log)
/// and the node process, which dropping kills.
#[derive(Debug)]
pub struct OidcProvider {
    dir: tempfile::TempDir,
    http_port: u16,
    https_port: u16,
    issuer: String,
    confidential_secret: String,
    introspection_secret: String,
    helper_token: String,
    client_key_pem: String,
    service_account_key_pem: String,
    redirect_uris: Vec<String>,
    https: Endpoints,
    http: Endpoints,
    client: HttpClient,
    child: Option<Child>,
    watchdog: Option<Child>,
}

impl OidcProvider {
    /// Starts node with `oidc/server.mjs` and blocks until both discovery documents
    /// answer.
    pub fn start(options: OidcOptions) -> Result<OidcProvider> {
        let access = options.access_token_lifetime.as_secs();
        if access == 0 {
            bail!("access_token_lifetime must be at least one second");
        }
        let server_dir = crate::testkit_path("oidc");
        let modules = server_dir.join("node_modules/oidc-provider");
        if !modules.is_dir() {
            bail!(
                "{} is missing: run `npm ci` in {} (scripts/test does)",
                modules.display(),
                server_dir.display()
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("mmoidc")
            .tempdir_in("/tmp")
            .context("creating the provider directory under /tmp")?;
        // Dovecot's unprivileged auth process reads ca.pem from here.
        process::set_mode(dir.path(), 0o755)?;
        let certs = certs::generate()?;
        let ca_pem = dir.path().join("ca.pem");
        fs::write(&ca_pem, &certs.ca_pem).context("writing ca.pem")?;
        process::set_mode(&ca_pem, 0o644)?;
        fs::write(dir.path().join("server.pem"), &certs.server_cert_pem)
            .context("writing server.pem")?;
        let key = dir.path().join("server.key");
        fs::write(&key, &certs.server_key_pem).context("writing server.key")?;
        process::set_mode(&key, 0o600)?;

        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            let http_port = ports::free_port();
            let https_port = ports::free_port();
            match Self::spawn(&dir, &certs.ca_pem, &options, http_port, https_port) {
                Ok(started) => return Ok(started.finish(dir, options.redirect_uris.clone())),
                Err(error) => {
                    let collided = fs::read_to_string(dir.path().join("node.log"))
                        .map(|log| log.contains("EADDRINUSE"))
                        .unwrap_or(false);
                    if !collided {
                        return Err(error);
                    }
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("the provider did not start")))
            .context("the provider kept colliding with other processes' ports")
    }

    /// `start(OidcOptions::default())`.
    pub fn start_default() -> Result<OidcProvider> {
        OidcProvider::start(OidcOptions::default())
    }

    fn spawn(
        dir: &tempfile::TempDir,
        ca_pem: &str,
        options: &OidcOptions,
        http_port: u16,
        https_port: u16,
    ) -> Result<Started> {
        let issuer = format!("https://127.0.0.1:{https_port}");
        let confidential_secret = random_token()?;
        let introspection_secret = random_token()?;
        let helper_token = random_token()?;
        let config = json!({
            "issuer": issuer,
            "origins": [format!("http://127.0.0.1:{http_port}"), issuer],
            "http_port": http_port,
            "https_port": https_port,
            "tls_cert": dir.path().join("server.pem"),
            "tls_key": dir.path().join("server.key"),
            "state_dir": dir.path(),
            "redirect_uris": options.redirect_uris,
            "extra_scopes": options.extra_scopes,
            "cookie_key": random_token()?,
            "helper_token": helper_token,
            "ttl": {
                "access_token": options.access_token_lifetime.as_secs(),
                "refresh_token": options.refresh_token_lifetime.as_secs().max(1),
                "device_code": options.device_code_lifetime.as_secs().max(1),
            },
            "clients": {
                "confidential_id": CONFIDENTIAL_CLIENT,
                "confidential_secret": confidential_secret,
                "public_id": PUBLIC_CLIENT,
                "jwt_client_id": JWT_CLIENT,
                "service_account_id": SERVICE_ACCOUNT,
                "introspection_id": INTROSPECTION_CLIENT,
                "introspection_secret": introspection_secret,
            },
        });
        let config_path = dir.path().join("config.json");
        fs::write(&config_path, serde_json::to_vec_pretty(&config)?)
            .context("writing config.json")?;
        process::set_mode(&config_path, 0o600)?;

        // Truncated, so a port collision found in it belongs to this attempt.
        let log = File::create(dir.path().join("node.log")).context("creating node.log")?;
        let node = std::env::var_os(NODE_ENV).unwrap_or_else(|| "node".into());
        let server_dir = crate::testkit_path("oidc");
        let child = process::spawn_in_group(
            Command::new(&node)
                .arg(server_dir.join("server.mjs"))
                .arg(&config_path)
                .current_dir(&server_dir)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log),
        )
        .with_context(|| format!("spawning {}", node.to_string_lossy()))?;
        let watchdog = process::spawn_watchdog(child.id(), dir.path());
        let mut started = Started {
            issuer,
            http_port,
            https_port,
            confidential_secret,
            introspection_secret,
            helper_token,
            client: HttpClient::new(Some(ca_pem))?,
            child: Some(child),
            watchdog,
            https: None,
            http: None,
        };
        let result = started.wait_ready(dir.path());
        if result.is_err() {
            started.kill();
        }
        result.map(|()| started)
    }

    /// The issuer: `https://127.0.0.1:<https port>`, also the `iss` of ID tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The endpoints on the HTTPS port (certificate signed by [`Self::ca_pem`],
    /// SANs `localhost` and `127.0.0.1`).
    pub fn endpoints(&self) -> &Endpoints {
        &self.https
    }

    /// The same endpoints on the plaintext HTTP port.
    pub fn http_endpoints(&self) -> &Endpoints {
        &self.http
    }

    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    pub fn https_port(&self) -> u16 {
        self.https_port
    }

    /// The CA certificate (PEM file) that signed the HTTPS certificate.
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The confidential client's secret (client id [`CONFIDENTIAL_CLIENT`],
    /// `client_secret_basic`).
    pub fn confidential_secret(&self) -> &str {
        &self.confidential_secret
    }

    /// The introspection client's secret (client id [`INTROSPECTION_CLIENT`]).
    pub fn introspection_secret(&self) -> &str {
        &self.introspection_secret
    }

    /// The PKCS#8 PEM private key of [`JWT_CLIENT`] (`private_key_jwt`, RS256,
    /// `kid` `client-key`).
    pub fn client_key_pem(&self) -> &str {
        &self.client_key_pem
    }

    /// The PKCS#8 PEM private key of [`SERVICE_ACCOUNT`] (RS256, `kid`
    /// `service-account-key`), which signs JWT-bearer assertions.
    pub fn service_account_key_pem(&self) -> &str {
        &self.service_account_key_pem
    }

    /// The node process's output, for debugging failing tests.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("node.log")).unwrap_or_default()
    }

    /// What a private Dovecot needs to validate this provider's tokens by
    /// introspection over HTTPS (see `DovecotOptions::oauth2`).
    pub fn dovecot_oauth2(&self) -> DovecotOAuth2 {
        DovecotOAuth2 {
            introspection_url: self.https.introspection.clone(),
            client_id: INTROSPECTION_CLIENT.to_string(),
            client_secret: self.introspection_secret.clone(),
            ca_file: Some(self.ca_pem()),
            required_scope: None,
            mechanisms: "xoauth2 oauthbearer".into(),
        }
    }

    /// A raw POST of a form to the token endpoint as `client_id` (authenticated as
    /// that client: basic secret, `private_key_jwt` assertion, or just `client_id`).
    /// `Ok` for a token, an [`OAuthError`] inside the error otherwise.
    pub fn token_request(&self, client_id: &str, form: &[(&str, &str)]) -> Result<TokenResponse> {
        let (authorization, mut fields) = self.client_auth(client_id)?;
        fields.extend(form.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let pairs: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let response = self
            .client
            .post_form(&self.https.token, authorization, &pairs)?;
        parse_token_response(&response)
    }

    /// Client credentials as the confidential client.
    pub fn client_credentials_token(&self, scope: &str) -> Result<TokenResponse> {
        self.token_request(
            CONFIDENTIAL_CLIENT,
            &[("grant_type", "client_credentials"), ("scope", scope)],
        )
    }

    /// Starts the device flow for `client_id` (RFC 8628 §3.1).
    pub fn device_authorization(
        &self,
        client_id: &str,
        scope: &str,
    ) -> Result<DeviceAuthorization> {
        let (authorization, mut fields) = self.client_auth(client_id)?;
        fields.push(("scope".to_string(), scope.to_string()));
        let pairs: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let response =
            self.client
                .post_form(&self.https.device_authorization, authorization, &pairs)?;
        let body = ok_json(&response)?;
        Ok(DeviceAuthorization {
            device_code: string(&body, "device_code")?,
            user_code: string(&body, "user_code")?,
            verification_uri: string(&body, "verification_uri")?,
            verification_uri_complete: body["verification_uri_complete"]
                .as_str()
                .map(str::to_string),
            expires_in: body["expires_in"].as_u64().unwrap_or_default(),
        })
    }

    /// Approves a pending device code as `account` would in a browser, granting the
    /// scope the device asked for.
    pub fn approve_device_code(&self, user_code: &str, account: &str) -> Result<()> {
        self.helper(
            "/testkit/device/approve",
            json!({ "user_code": user_code, "account": account }),
        )
        .map(drop)
    }

    /// Denies a pending device code: the device's next poll gets `access_denied`.
    pub fn deny_device_code(&self, user_code: &str) -> Result<()> {
        self.helper("/testkit/device/deny", json!({ "user_code": user_code }))
            .map(drop)
    }

    /// Revokes every grant of `account` and every token issued under them (as an
    /// administrator revoking sessions or a user changing a password); returns how
    /// many stored items went.
    pub fn revoke_account(&self, account: &str) -> Result<u64> {
        let answer = self.helper("/testkit/accounts/revoke", json!({ "account": account }))?;
        Ok(answer["revoked"].as_u64().unwrap_or_default())
    }

    /// The device flow end to end for the public client: authorize, approve for
    /// `account`, poll once. Ask for `offline_access` to get a refresh token.
    pub fn device_flow_token(&self, account: &str, scope: &str) -> Result<TokenResponse> {
        let device = self.device_authorization(PUBLIC_CLIENT, scope)?;
        self.approve_device_code(&device.user_code, account)?;
        self.token_request(
            PUBLIC_CLIENT,
            &[
                ("grant_type", DEVICE_CODE),
                ("device_code", &device.device_code),
            ],
        )
    }

    /// The authorization code flow with PKCE (RFC 7636, S256) for `client_id`,
    /// walked as a browser would (following redirects, keeping cookies, submitting
    /// the sign-in page as `account` and the consent page), then the code exchanged
    /// at the token endpoint. `offline_access` in `scope` adds `prompt=consent`, which
    /// OpenID Connect requires for a refresh token.
    pub fn authorization_code_token(
        &self,
        client_id: &str,
        account: &str,
        scope: &str,
    ) -> Result<TokenResponse> {
        let redirect_uri = self
            .redirect_uris
            .first()
            .cloned()
            .ok_or_else(|| anyhow!("no redirect URI registered"))?;
        let verifier = random_token()? + &random_token()?;
        let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(
            &ring::digest::SHA256,
            verifier.as_bytes(),
        ));
        let state = random_token()?;
        let mut query = vec![
            ("client_id", client_id),
            ("response_type", "code"),
            ("scope", scope),
            ("redirect_uri", redirect_uri.as_str()),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("state", state.as_str()),
            ("login_hint", account),
        ];
        if scope.split(' ').any(|s| s == "offline_access") {
            query.push(("prompt", "consent"));
        }
        let url = format!("{}?{}", self.https.authorization, http::form_encode(&query));
        let url = self.sign_in_browser(&url, account)?;
        let params = query_params(&url);
        if let Some(error) = params.get("error") {
            return Err(OAuthError {
                status: 303,
                error: error.clone(),
                description: params.get("error_description").cloned(),
            }
            .into());
        }
        if params.get("state") != Some(&state) {
            bail!(
                "the redirect carries state {:?}, not ours",
                params.get("state")
            );
        }
        let code = params
            .get("code")
            .ok_or_else(|| anyhow!("redirect without a code: {url}"))?;
        self.token_request(
            client_id,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &redirect_uri),
                ("code_verifier", &verifier),
            ],
        )
    }

    /// The browser's part of the authorization code flow, for a client under test
    /// that built `authorization_url` itself: follows redirects with cookies, signs
    /// in as `account` and allows on the consent page, and returns the URL of the
    /// redirect back to one of the registered redirect URIs (with `code` and `state`,
    /// or `error`), without following it.
    pub fn sign_in_browser(&self, authorization_url: &str, account: &str) -> Result<String> {
        let mut browser = Browser::new(&self.client);
        let mut url = authorization_url.to_string();
        let origin = format!("https://127.0.0.1:{}", self.https_port);
        // Each step answers with a page to submit or a redirect to follow, until the
        // redirect back to the client.
        for _ in 0..20 {
            if self
                .redirect_uris
                .iter()
                .any(|redirect| url.starts_with(redirect.as_str()))
            {
                return Ok(url);
            }
            let response = browser.get(&url)?;
            let response = match sign_in_step(&mut browser, &origin, response, account)? {
                Step::Redirect(response) => response,
                Step::Page(page) => bail!("unexpected page at {url}:\n{page}"),
            };
            url = location(&response, &origin, &url)?;
        }
        bail!("the sign-in did not come back to a redirect URI within 20 steps")
    }

    /// What a person does in a browser with a device's user code: opens the
    /// verification page, types the code, confirms, signs in as `account` and
    /// allows access, through the provider's own pages. (`approve_device_code` gets
    /// the same result without the pages.)
    pub fn sign_in_device(&self, user_code: &str, account: &str) -> Result<()> {
        let origin = format!("https://127.0.0.1:{}", self.https_port);
        let mut browser = Browser::new(&self.client);
        let page = page_text(&browser.get(&format!("{origin}/device"))?)?;
        let action = form_action(&page, "op.deviceInputForm")?;
        let xsrf = hidden_value(&page, "xsrf")?;
        let response = browser.post(&action, &[("xsrf", &xsrf), ("user_code", user_code)])?;
        let page = page_text(&response)?;
        if !page.contains("id=\"op.deviceConfirmForm\"") {
            bail!("user code {user_code} was not taken:\n{page}");
        }
        let action = form_action(&page, "op.deviceConfirmForm")?;
        let xsrf = hidden_value(&page, "xsrf")?;
        let mut response = browser.post(
            &action,
            &[
                ("xsrf", &xsrf),
                ("user_code", user_code),
                ("confirm", "yes"),
            ],
        )?;
        let mut url = action;
        for _ in 0..20 {
            match sign_in_step(&mut browser, &origin, response, account)? {
                Step::Redirect(redirect) => {
                    url = location(&redirect, &origin, &url)?;
                    response = browser.get(&url)?;
                }
                Step::Page(page) if page.contains("id=\"success\"") => return Ok(()),
                Step::Page(page) => bail!("unexpected page at {url}:\n{page}"),
            }
        }
        bail!("the device sign-in did not finish within 20 steps")
    }

    /// A refresh (RFC 6749 §6) as `client_id`. Refresh tokens rotate: the answer
    /// carries a new one, and presenting the old one again fails and revokes the
    /// whole grant (reuse detection).
    pub fn refresh(&self, client_id: &str, refresh_token: &str) -> Result<TokenResponse> {
        self.token_request(
            client_id,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
        )
    }

    /// A JWT-bearer assertion as a Google service account with domain-wide
    /// delegation writes it: `iss` the service account, `sub` the mailbox, `aud` the
    /// token endpoint, `scope` inside, valid for an hour.
    pub fn service_account_assertion(&self, sub: &str, scope: &str) -> Result<String> {
        let now = unix_now();
        jwt::sign_rs256(
            &self.service_account_key_pem,
            Some("service-account-key"),
            &json!({
                "iss": SERVICE_ACCOUNT,
                "sub": sub,
                "aud": self.https.token,
                "scope": scope,
                "iat": now,
                "exp": now + 3600,
            }),
        )
    }

    /// Exchanges a service-account assertion for `sub` (RFC 7523 §2.1), posted as
    /// Google's clients post it: `grant_type` and `assertion` only, no client id.
    pub fn jwt_bearer_token(&self, sub: &str, scope: &str) -> Result<TokenResponse> {
        let assertion = self.service_account_assertion(sub, scope)?;
        self.jwt_bearer_with(&assertion)
    }

    /// Posts any assertion to the JWT-bearer grant.
    pub fn jwt_bearer_with(&self, assertion: &str) -> Result<TokenResponse> {
        let response = self.client.post_form(
            &self.https.token,
            None,
            &[("grant_type", JWT_BEARER), ("assertion", assertion)],
        )?;
        parse_token_response(&response)
    }

    /// Introspects a token (RFC 7662) as the introspection client; `{"active":
    /// false}` for an unknown, expired or revoked one.
    pub fn introspect(&self, token: &str) -> Result<Value> {
        let response = self.client.post_form(
            &self.https.introspection,
            Some(basic(INTROSPECTION_CLIENT, &self.introspection_secret)),
            &[("token", token)],
        )?;
        ok_json(&response)
    }

    /// Revokes one token (RFC 7009) as the client it was issued to.
    pub fn revoke_token(&self, client_id: &str, token: &str) -> Result<()> {
        let (authorization, mut fields) = self.client_auth(client_id)?;
        fields.push(("token".to_string(), token.to_string()));
        let pairs: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let response = self
            .client
            .post_form(&self.https.revocation, authorization, &pairs)?;
        if response.status != 200 {
            return Err(oauth_error(&response).into());
        }
        Ok(())
    }

    /// GET any URL of this provider (HTTP or HTTPS), e.g. the discovery document.
    pub fn get(&self, url: &str) -> Result<HttpResponse> {
        self.client.get(url)
    }

    /// How `client_id` authenticates at the token endpoint: an Authorization header
    /// and/or form fields.
    fn client_auth(&self, client_id: &str) -> Result<ClientAuth> {
        Ok(match client_id {
            CONFIDENTIAL_CLIENT => (
                Some(basic(CONFIDENTIAL_CLIENT, &self.confidential_secret)),
                Vec::new(),
            ),
            INTROSPECTION_CLIENT => (
                Some(basic(INTROSPECTION_CLIENT, &self.introspection_secret)),
                Vec::new(),
            ),
            JWT_CLIENT => {
                let now = unix_now();
                let assertion = jwt::sign_rs256(
                    &self.client_key_pem,
                    Some("client-key"),
                    &json!({
                        "iss": JWT_CLIENT,
                        "sub": JWT_CLIENT,
                        "aud": self.issuer,
                        "jti": random_token()?,
                        "iat": now,
                        "exp": now + 60,
                    }),
                )?;
                (
                    None,
                    vec![
                        (
                            "client_assertion_type".to_string(),
                            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string(),
                        ),
                        ("client_assertion".to_string(), assertion),
                    ],
                )
            }
            other => (None, vec![("client_id".to_string(), other.to_string())]),
        })
    }

    fn helper(&self, path: &str, body: Value) -> Result<Value> {
        let url = format!("https://127.0.0.1:{}{path}", self.https_port);
        let response =
            self.client
                .post_json(&url, Some(format!("Bearer {}", self.helper_token)), &body)?;
        ok_json(&response).with_context(|| format!("test helper {path}"))
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        process::kill_group(self.child.take(), self.watchdog.take());
    }
}

/// An `Authorization` header and/or form fields that authenticate a client.
type ClientAuth = (Option<String>, Vec<(String, String)>);

/// A spawned provider until its keys and endpoints are known.
struct Started {
    issuer: String,
    http_port: u16,
    https_port: u16,
    confidential_secret: String,
    introspection_secret: String,
    helper_token: String,
    client: HttpClient,
    child: Option<Child>,
    watchdog: Option<Child>,
    https: Option<Endpoints>,
    http: Option<Endpoints>,
}

impl Started {
    fn wait_ready(&mut self, dir: &Path) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let log = || fs::read_to_string(dir.join("node.log")).unwrap_or_default();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait().context("polling node")?
            {
                self.child = None;
                bail!("node exited ({status}) while starting; log:\n{}", log());
            }
            if log().lines().any(|line| line == "ready") {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "the provider was not ready within {READY_TIMEOUT:?}; log:\n{}",
                    log()
                );
            }
            sleep(Duration::from_millis(20));
        }
        for (origin, slot) in [
            (
                format!("https://127.0.0.1:{}", self.https_port),
                &mut self.https,
            ),
            (
                format!("http://127.0.0.1:{}", self.http_port),
                &mut self.http,
            ),
        ] {
            let discovery = format!("{origin}/.well-known/openid-configuration");
            let document = ok_json(&self.client.get(&discovery)?)
                .with_context(|| format!("reading {discovery}"))?;
            if document["issuer"] != self.issuer.as_str() {
                bail!(
                    "{discovery} names issuer {} instead of {}",
                    document["issuer"],
                    self.issuer
                );
            }
            *slot = Some(Endpoints {
                authorization: string(&document, "authorization_endpoint")?,
                token: string(&document, "token_endpoint")?,
                device_authorization: string(&document, "device_authorization_endpoint")?,
                introspection: string(&document, "introspection_endpoint")?,
                revocation: string(&document, "revocation_endpoint")?,
                userinfo: string(&document, "userinfo_endpoint")?,
                jwks: string(&document, "jwks_uri")?,
                discovery,
            });
        }
        Ok(())
    }

    fn kill(&mut self) {
        process::kill_group(self.child.take(), self.watchdog.take());
    }

    fn finish(mut self, dir: tempfile::TempDir, redirect_uris: Vec<String>) -> OidcProvider {
        let read = |name: &str| fs::read_to_string(dir.path().join(name)).unwrap_or_default();
        OidcProvider {
            client_key_pem: read("client-key.pem"),
            service_account_key_pem: read("service-account-key.pem"),
            redirect_uris,
            http_port: self.http_port,
            https_port: self.https_port,
            issuer: std::mem::take(&mut self.issuer),
            confidential_secret: std::mem::take(&mut self.confidential_secret),
            introspection_secret: std::mem::take(&mut self.introspection_secret),
            helper_token: std::mem::take(&mut self.helper_token),
            // wait_ready filled both before finish is called.
            https: self.https.take().unwrap_or_else(empty_endpoints),
            http: self.http.take().unwrap_or_else(empty_endpoints),
            client: self.client.clone(),
            child: self.child.take(),
            watchdog: self.watchdog.take(),
            dir,
        }
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Just enough of a browser for the sign-in pages: one cookie per name (the
/// provider's cookies are path-scoped, but a later one of the same name always
/// supersedes an earlier one in this flow), no redirects followed on its own.
struct Browser<'a> {
    client: &'a HttpClient,
    cookies: Vec<(String, String)>,
}

impl<'a> Browser<'a> {
    fn new(client: &'a HttpClient) -> Browser<'a> {
        Browser {
            client,
            cookies: Vec::new(),
        }
    }

    fn get(&mut self, url: &str) -> Result<HttpResponse> {
        self.send("GET", url, Vec::new(), None)
    }

    fn post(&mut self, url: &str, form: &[(&str, &str)]) -> Result<HttpResponse> {
        self.send(
            "POST",
            url,
            http::form_encode(form).into_bytes(),
            Some("application/x-www-form-urlencoded"),
        )
    }

    fn send(
        &mut self,
        method: &str,
        url: &str,
        body: Vec<u8>,
        content_type: Option<&str>,
    ) -> Result<HttpResponse> {
        let mut headers = vec![("Accept", "text/html".to_string())];
        if let Some(content_type) = content_type {
            headers.push(("Content-Type", content_type.to_string()));
        }
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            headers.push(("Cookie", jar.join("; ")));
        }
        let response = self.client.send(http::Request {
            method,
            url,
            headers,
            body,
        })?;
        for (name, value) in &response.headers {
            if name != "set-cookie" {
                continue;
            }
            let Some((pair, attributes)) = value.split_once(';').or(Some((value, ""))) else {
                continue;
            };
            let Some((cookie, content)) = pair.split_once('=') else {
                continue;
            };
            let cookie = cookie.trim().to_string();
            self.cookies.retain(|(n, _)| *n != cookie);
            let expired = attributes
                .to_ascii_lowercase()
                .contains("expires=thu, 01 jan 1970");
            if !expired && !content.is_empty() {
                self.cookies.push((cookie, content.trim().to_string()));
            }
        }
        Ok(response)
    }
}

enum Step {
    /// A redirect to follow.
    Redirect(HttpResponse),
    /// A page that is neither the sign-in nor the consent page.
    Page(String),
}

/// Submits the sign-in page as `account` (any password) or allows on the consent
/// page; a redirect is handed back to follow, any other page as its text.
fn sign_in_step(
    browser: &mut Browser<'_>,
    origin: &str,
    response: HttpResponse,
    account: &str,
) -> Result<Step> {
    if !(200..300).contains(&response.status) {
        return Ok(Step::Redirect(response));
    }
    let page = String::from_utf8_lossy(&response.body).into_owned();
    let submitted = if page.contains("id=\"login\"") {
        let action = form_action(&page, "login")?;
        browser.post(
            &format!("{origin}{action}"),
            &[("login", account), ("password", "any")],
        )?
    } else if page.contains("id=\"consent\"") {
        let action = form_action(&page, "consent")?;
        browser.post(&format!("{origin}{action}"), &[])?
    } else {
        return Ok(Step::Page(page));
    };
    if (200..300).contains(&submitted.status) {
        return Ok(Step::Page(
            String::from_utf8_lossy(&submitted.body).into_owned(),
        ));
    }
    Ok(Step::Redirect(submitted))
}

/// Where a redirect points, made absolute.
fn location(response: &HttpResponse, origin: &str, url: &str) -> Result<String> {
    let location = response.header("location").ok_or_else(|| {
        anyhow!(
            "HTTP {} without a redirect at {url}: {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        )
    })?;
    Ok(if location.starts_with('/') {
        format!("{origin}{location}")
    } else {
        location.to_string()
    })
}

fn page_text(response: &HttpResponse) -> Result<String> {
    if response.status != 200 {
        bail!(
            "HTTP {}: {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        );
    }
    Ok(String::from_utf8_lossy(&response.body).into_owned())
}

/// The value of the hidden input with that name.
fn hidden_value(page: &str, name: &str) -> Result<String> {
    let start = page
        .find(&format!("name=\"{name}\" value=\""))
        .ok_or_else(|| anyhow!("no input {name}"))?
        + format!("name=\"{name}\" value=\"").len();
    let end = page[start..]
        .find('"')
        .ok_or_else(|| anyhow!("input {name} without an end"))?;
    Ok(page[start..start + end].to_string())
}

/// The `action` of the form with that id.
fn form_action(page: &str, id: &str) -> Result<String> {
    let start = page
        .find(&format!("id=\"{id}\""))
        .ok_or_else(|| anyhow!("no form {id}"))?;
    let form_end = page[start..].find('>').map_or(page.len(), |at| start + at);
    let tag = &page[start..form_end];
    let action = tag
        .split("action=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .ok_or_else(|| anyhow!("form {id} without an action"))?;
    Ok(action.replace("&#38;", "&"))
}

/// The query parameters of a URL, percent-decoded.
fn query_params(url: &str) -> std::collections::HashMap<String, String> {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let query = query.split('#').next().unwrap_or_default();
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn empty_endpoints() -> Endpoints {
    Endpoints {
        discovery: String::new(),
        authorization: String::new(),
        token: String::new(),
        device_authorization: String::new(),
        introspection: String::new(),
        revocation: String::new(),
        userinfo: String::new(),
        jwks: String::new(),
    }
}

fn parse_token_response(response: &HttpResponse) -> Result<TokenResponse> {
    let body = ok_json(response)?;
    Ok(TokenResponse {
        access_token: string(&body, "access_token")?,
        token_type: string(&body, "token_type")?,
        expires_in: body["expires_in"].as_u64().unwrap_or_default(),
        refresh_token: body["refresh_token"].as_str().map(str::to_string),
        id_token: body["id_token"].as_str().map(str::to_string),
        scope: body["scope"].as_str().map(str::to_string),
    })
}

/// The JSON body of a 200 answer, or the OAuth error it carries.
fn ok_json(response: &HttpResponse) -> Result<Value> {
    if response.status != 200 {
        return Err(oauth_error(response).into());
    }
    response.json()
}

fn oauth_error(response: &HttpResponse) -> OAuthError {
    let body = response.json().unwrap_or(Value::Null);
    OAuthError {
        status: response.status,
        error: body["error"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&response.body).into_owned()),
        description: body["error_description"].as_str().map(str::to_string),
    }
}

fn string(body: &Value, key: &str) -> Result<String> {
    body[key]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("answer without {key}: {body}"))
}

/// `client_secret_basic` (RFC 6749 §2.3.1: both parts form-encoded first).
fn basic(id: &str, secret: &str) -> String {
    let pair = format!("{}:{}", percent_encode(id), percent_encode(secret));
    format!("Basic {}", STANDARD.encode(pair))
}

fn random_token() -> Result<String> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| anyhow!("getrandom: {e}"))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
