//! Sign-in profiles: an operator's OAuth2 configuration, named, in a TOML file.
//! A profile says which provider (a preset or any OpenID Connect issuer), which
//! application (client id, and how it proves itself), and whose access: each user's
//! own consent, the application's own (client credentials), or a service account
//! acting for each mailbox. Secrets are never written in the file itself: a client
//! secret comes from an environment variable or a file, a key from a PEM file.
//!
//! ```toml
//! [profile.contoso]
//! provider = "microsoft"            # or "google", or an issuer URL (https://...)
//! tenant = "contoso.onmicrosoft.com"
//! client_id = "00000000-0000-0000-0000-000000000000"
//! access = "user"                   # "user" (default), "app" or "service-account"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mailmove_model::Secret;
use mailmove_net::TlsOptions;
use serde::Deserialize;
use url::Url;

use crate::client::{Client, ClientAuth, ServiceAccount};
use crate::error::Error;
use crate::http::{HttpOptions, https_url};
use crate::jwt::SigningKey;
use crate::provider::Provider;
use crate::source::{Renewal, TokenSource};

/// The largest profile file read: a few profiles take a few kilobytes.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Whose access a profile's tokens carry.
#[derive(Clone, Debug)]
pub enum Access {
    /// Each mailbox's user consented once (`mailmove auth login`); the kept refresh
    /// token renews it.
    User,
    /// The application's own access to every mailbox, granted by an administrator
    /// (Microsoft's `IMAP.AccessAsApp`, `full_access_as_app`): client credentials.
    App,
    /// A service account acting for each mailbox (Google's domain-wide delegation):
    /// the JWT-bearer grant with the mailbox as subject.
    ServiceAccount(ServiceAccount),
}

impl Access {
    /// How the command line and `check` name it.
    pub fn describe(&self) -> &'static str {
        match self {
            Access::User => "the user's own consent",
            Access::App => "the application's own access (client credentials)",
            Access::ServiceAccount(_) => "a service account acting for the mailbox",
        }
    }
}

/// One named profile, ready to get tokens.
#[derive(Clone, Debug)]
pub struct Profile {
    pub name: String,
    pub client: Client,
    pub access: Access,
    /// The scopes asked for.
    pub scopes: Vec<String>,
}

impl Profile {
    /// A token source for `account` (a mailbox). With [`Access::User`] it needs the
    /// refresh token kept from the user's sign-in.
    pub fn token_source(
        &self,
        account: &str,
        refresh_token: Option<Secret<String>>,
    ) -> Result<TokenSource, Error> {
        let scopes = self.scopes.clone();
        let renewal = match (&self.access, refresh_token) {
            (Access::User, Some(token)) => Renewal::RefreshToken(token),
            (Access::User, None) => {
                return Err(Error::Configuration(format!(
                    "no sign-in is kept for {account} with the profile {}: the mailbox's \
                     user must sign in first",
                    self.name
                )));
            }
            (Access::App, _) => Renewal::ClientCredentials { scopes },
            (Access::ServiceAccount(service), _) => Renewal::JwtBearer {
                account: service.clone(),
                subject: account.to_string(),
                scopes,
            },
        };
        Ok(TokenSource::new(self.client.clone(), account, renewal))
    }

    /// The scopes as `&str`s, for the grants that take them.
    pub fn scope_refs(&self) -> Vec<&str> {
        self.scopes.iter().map(String::as_str).collect()
    }
}

/// The profiles of a file, as written (nothing read or fetched yet).
#[derive(Debug, Default)]
pub struct Profiles {
    path: PathBuf,
    specs: BTreeMap<String, Spec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    profile: BTreeMap<String, Spec>,
}

/// One profile as written in the file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
struct Spec {
    /// `microsoft`, `google`, or an OpenID Connect issuer (`https://...`).
    provider: String,
    /// Microsoft's tenant (an id, a domain, `organizations`); default `organizations`.
    tenant: Option<String>,
    client_id: String,
    /// The environment variable holding the client secret.
    client_secret_env: Option<String>,
    /// A file whose first line is the client secret.
    client_secret_file: Option<PathBuf>,
    /// A PEM private key the application signs its assertions with (a certificate
    /// credential, `private_key_jwt`).
    client_key_file: Option<PathBuf>,
    /// The key's id (`kid`) where the provider wants one.
    client_key_id: Option<String>,
    /// Microsoft's certificate thumbprint (`x5t`) for a certificate credential.
    client_certificate_thumbprint: Option<String>,
    /// `user` (default), `app` or `service-account`.
    #[serde(default)]
    access: AccessName,
    /// A service account's JSON key file (Google's format), for `service-account`.
    service_account_file: Option<PathBuf>,
    /// The scopes to ask for, instead of the provider's mail scopes.
    scopes: Option<Vec<String>>,
    /// Endpoints that replace the provider's.
    authorization_url: Option<String>,
    token_url: Option<String>,
    device_authorization_url: Option<String>,
    revocation_url: Option<String>,
    /// Also trust the certificate authorities in this PEM file (a private provider).
    tls_ca: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum AccessName {
    #[default]
    User,
    App,
    ServiceAccount,
}

impl Profiles {
    /// The profiles in `path`; a missing file holds none.
    pub fn load(path: &Path) -> Result<Profiles, Error> {
        let shown = path.display();
        let text = match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Profiles {
                    path: path.to_path_buf(),
                    specs: BTreeMap::new(),
                });
            }
            Err(e) => return Err(config(format!("cannot read {shown}: {e}"))),
            Ok(meta) if meta.len() > MAX_FILE_BYTES => {
                return Err(config(format!(
                    "{shown} is larger than a profile file can be"
                )));
            }
            Ok(_) => std::fs::read_to_string(path)
                .map_err(|e| config(format!("cannot read {shown}: {e}")))?,
        };
        Profiles::parse(&text, path)
    }

    /// The profiles in `text`, read from `path` (named in errors, and the base of
    /// relative file names).
    pub fn parse(text: &str, path: &Path) -> Result<Profiles, Error> {
        let file: File = toml::from_str(text)
            .map_err(|e| config(format!("{}: {}", path.display(), e.message())))?;
        for (name, spec) in &file.profile {
            spec.check(name)
                .map_err(|e| config(format!("{}: profile {name}: {e}", path.display())))?;
        }
        Ok(Profiles {
            path: path.to_path_buf(),
            specs: file.profile,
        })
    }

    /// The profiles' names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.specs.keys().map(String::as_str)
    }

    /// The provider a profile names, as written (for listings).
    pub fn provider_of(&self, name: &str) -> Option<&str> {
        self.specs.get(name).map(|spec| spec.provider.as_str())
    }

    /// The profile `name`, with its secrets and keys read and, for an issuer, the
    /// discovery document fetched.
    pub async fn get(&self, name: &str) -> Result<Profile, Error> {
        let spec = self.specs.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.names().collect();
            config(format!(
                "no sign-in profile named {name} in {} (profiles there: {})",
                self.path.display(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))
        })?;
        let base = self.path.parent().unwrap_or(Path::new("."));
        spec.build(name, base).await
    }
}

impl Spec {
    /// What can be checked without reading files or the network.
    fn check(&self, _name: &str) -> Result<(), String> {
        if self.client_id.trim().is_empty() {
            return Err("client_id is empty".into());
        }
        let credentials = [
            self.client_secret_env.is_some(),
            self.client_secret_file.is_some(),
            self.client_key_file.is_some(),
        ];
        if credentials.iter().filter(|given| **given).count() > 1 {
            return Err(
                "give one of client_secret_env, client_secret_file and client_key_file".into(),
            );
        }
        match (self.access, &self.service_account_file) {
            (AccessName::ServiceAccount, None) => {
                return Err("access = \"service-account\" needs service_account_file".into());
            }
            (AccessName::User | AccessName::App, Some(_)) => {
                return Err("service_account_file is only for access = \"service-account\"".into());
            }
            _ => {}
        }
        if self.access == AccessName::App && credentials.iter().all(|given| !given) {
            return Err(
                "access = \"app\" needs the application's credential: client_secret_env, \
                 client_secret_file or client_key_file"
                    .into(),
            );
        }
        if self.tenant.is_some() && self.provider != "microsoft" {
            return Err("tenant is only for provider = \"microsoft\"".into());
        }
        match self.provider.as_str() {
            "microsoft" | "google" => Ok(()),
            issuer if issuer.starts_with("https://") => Ok(()),
            other => Err(format!(
                "provider {other:?} is not microsoft, google or an https:// issuer"
            )),
        }
    }

    async fn build(&self, name: &str, base: &Path) -> Result<Profile, Error> {
        let http = HttpOptions {
            tls: TlsOptions {
                extra_ca: self.tls_ca.as_ref().map(|p| base.join(p)),
                ..TlsOptions::default()
            },
            ..HttpOptions::default()
        };
        let mut provider = match self.provider.as_str() {
            "microsoft" => Provider::microsoft(self.tenant.as_deref().unwrap_or("organizations")),
            "google" => Provider::google(),
            issuer => Provider::discover(issuer, &http).await?,
        };
        self.override_endpoints(&mut provider)?;
        let access = match self.access {
            AccessName::User => Access::User,
            AccessName::App => Access::App,
            AccessName::ServiceAccount => {
                let path = base.join(self.service_account_file.as_ref().expect("checked"));
                Access::ServiceAccount(ServiceAccount::from_google_key_file(&read_file(
                    &path,
                    "the service account key file",
                )?)?)
            }
        };
        let scopes = match (&self.scopes, &access) {
            (Some(scopes), _) => scopes.clone(),
            (None, Access::User) => provider.delegated_mail_scopes.clone(),
            (None, _) => provider.app_mail_scopes.clone(),
        };
        let client = Client::new(provider, &self.client_id, self.client_auth(base)?, http);
        Ok(Profile {
            name: name.to_string(),
            client,
            access,
            scopes,
        })
    }

    fn override_endpoints(&self, provider: &mut Provider) -> Result<(), Error> {
        let endpoints = &mut provider.endpoints;
        if let Some(url) = &self.token_url {
            endpoints.token = https_url(url, "token_url")?;
        }
        let optional = |url: &Option<String>, what: &str| -> Result<Option<Url>, Error> {
            url.as_deref().map(|url| https_url(url, what)).transpose()
        };
        if let Some(url) = optional(&self.authorization_url, "authorization_url")? {
            endpoints.authorization = Some(url);
        }
        if let Some(url) = optional(&self.device_authorization_url, "device_authorization_url")? {
            endpoints.device_authorization = Some(url);
        }
        if let Some(url) = optional(&self.revocation_url, "revocation_url")? {
            endpoints.revocation = Some(url);
        }
        Ok(())
    }

    fn client_auth(&self, base: &Path) -> Result<ClientAuth, Error> {
        if let Some(variable) = &self.client_secret_env {
            let secret = std::env::var(variable).map_err(|_| {
                config(format!(
                    "the client secret's variable {variable} is not set"
                ))
            })?;
            return Ok(ClientAuth::SecretBasic(Secret::new(secret)));
        }
        if let Some(path) = &self.client_secret_file {
            let text = read_file(&base.join(path), "the client secret file")?;
            let first = text.lines().next().unwrap_or("").trim().to_string();
            return Ok(ClientAuth::SecretBasic(Secret::new(first)));
        }
        if let Some(path) = &self.client_key_file {
            let pem = read_file(&base.join(path), "the client key file")?;
            let mut key = SigningKey::from_pem(&pem)?;
            if let Some(kid) = &self.client_key_id {
                key = key.with_key_id(kid);
            }
            if let Some(x5t) = &self.client_certificate_thumbprint {
                key = key.with_certificate_thumbprint(x5t);
            }
            return Ok(ClientAuth::PrivateKeyJwt(key));
        }
        Ok(ClientAuth::None)
    }
}

fn read_file(path: &Path, what: &str) -> Result<String, Error> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.len() > MAX_FILE_BYTES => Err(config(format!(
            "{what} {} is larger than such a file can be",
            path.display()
        ))),
        _ => std::fs::read_to_string(path)
            .map_err(|e| config(format!("cannot read {what} {}: {e}", path.display()))),
    }
}

fn config(text: String) -> Error {
    Error::Configuration(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Profiles, String> {
        Profiles::parse(text, Path::new("/etc/mailmove/oauth.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_file_names_its_profiles() {
        let profiles = parse(
            r#"
            [profile.contoso]
            provider = "microsoft"
            tenant = "contoso.onmicrosoft.com"
            client_id = "app-1"

            [profile.google-admin]
            provider = "google"
            client_id = "sa-1"
            access = "service-account"
            service_account_file = "sa.json"
            "#,
        )
        .unwrap();
        assert_eq!(
            profiles.names().collect::<Vec<_>>(),
            ["contoso", "google-admin"]
        );
        assert_eq!(profiles.provider_of("contoso"), Some("microsoft"));
    }

    #[test]
    fn a_secret_written_in_the_file_is_refused() {
        let error = parse(
            r#"
            [profile.contoso]
            provider = "microsoft"
            client_id = "app-1"
            client_secret = "hunter2"
            "#,
        )
        .unwrap_err();
        assert!(error.contains("client_secret"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn inconsistent_profiles_say_what_is_wrong() {
        let cases = [
            (
                "provider = \"yahoo\"\nclient_id = \"a\"",
                "is not microsoft, google or an https:// issuer",
            ),
            (
                "provider = \"http://idp.test\"\nclient_id = \"a\"",
                "is not microsoft, google or an https:// issuer",
            ),
            (
                "provider = \"google\"\nclient_id = \"a\"\naccess = \"service-account\"",
                "needs service_account_file",
            ),
            (
                "provider = \"microsoft\"\nclient_id = \"a\"\naccess = \"app\"",
                "needs the application's credential",
            ),
            (
                "provider = \"google\"\nclient_id = \"a\"\ntenant = \"x\"",
                "tenant is only for",
            ),
            (
                "provider = \"google\"\nclient_id = \"a\"\nclient_secret_env = \"A\"\nclient_secret_file = \"b\"",
                "give one of",
            ),
            (
                "provider = \"google\"\nclient_id = \" \"",
                "client_id is empty",
            ),
        ];
        for (body, expected) in cases {
            let error = parse(&format!("[profile.p]\n{body}\n")).unwrap_err();
            assert!(error.contains(expected), "{body}: {error}");
            assert!(error.contains("profile p"), "{body}: {error}");
        }
    }

    #[tokio::test]
    async fn an_unknown_profile_lists_the_known_ones() {
        let profiles = parse("[profile.a]\nprovider = \"google\"\nclient_id = \"x\"\n").unwrap();
        let error = profiles.get("b").await.unwrap_err().to_string();
        assert!(error.contains("no sign-in profile named b"), "{error}");
        assert!(error.contains("profiles there: a"), "{error}");
    }

    #[tokio::test]
    async fn presets_take_the_provider_mail_scopes_for_the_access() {
        let profiles = parse(
            "[profile.user]\nprovider = \"microsoft\"\ntenant = \"t.example\"\nclient_id = \"x\"\n\
             [profile.app]\nprovider = \"microsoft\"\nclient_id = \"x\"\naccess = \"app\"\n\
             client_secret_env = \"MAILMOVE_PROFILE_TEST_SECRET\"\n",
        )
        .unwrap();
        let user = profiles.get("user").await.unwrap();
        assert!(
            user.scopes
                .iter()
                .any(|s| s.ends_with("IMAP.AccessAsUser.All"))
        );
        assert!(
            user.client
                .provider()
                .endpoints
                .token
                .as_str()
                .contains("/t.example/")
        );
        // The secret's variable is unset here: a clear error, naming the variable.
        let error = profiles.get("app").await.unwrap_err().to_string();
        assert!(
            error.contains("MAILMOVE_PROFILE_TEST_SECRET is not set"),
            "{error}"
        );
    }
}
