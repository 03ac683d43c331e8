//! Providers as data: where a provider's endpoints are and which scopes mail needs
//! there, from a preset (Microsoft, Google) or from an OpenID Connect discovery
//! document. Every field is public, so an operator (or a test) overrides any endpoint
//! by assigning it.

use url::Url;

use crate::error::Error;
use crate::http::{self, HttpOptions, https_url};

/// The scopes mail needs, with where each is documented.
pub mod scopes {
    /// Microsoft, delegated IMAP. Microsoft Learn, "Authenticate an IMAP, POP or SMTP
    /// connection using OAuth" (learn.microsoft.com/exchange/client-developer/
    /// legacy-protocols/how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth).
    pub const MICROSOFT_IMAP: &str = "https://outlook.office.com/IMAP.AccessAsUser.All";
    /// Microsoft, delegated POP (same page).
    pub const MICROSOFT_POP: &str = "https://outlook.office.com/POP.AccessAsUser.All";
    /// Microsoft, delegated EWS. Microsoft Learn, "Authenticate an EWS application by
    /// using OAuth".
    pub const MICROSOFT_EWS: &str = "https://outlook.office365.com/EWS.AccessAsUser.All";
    /// Microsoft, app-only (client credentials) for IMAP, POP and EWS: the
    /// application's permissions (`IMAP.AccessAsApp`, `POP.AccessAsApp`,
    /// `full_access_as_app`) granted by an administrator (both pages above).
    pub const MICROSOFT_APP_ONLY: &str = "https://outlook.office365.com/.default";
    /// OpenID Connect / Microsoft identity platform: ask for a refresh token
    /// (OpenID Connect Core §11; Microsoft Learn, "Scopes and permissions").
    pub const OFFLINE_ACCESS: &str = "offline_access";
    /// Google, full IMAP/POP/SMTP access, delegated and for service accounts with
    /// domain-wide delegation. Google for Developers, "OAuth 2.0 Mechanism" (Gmail
    /// IMAP) and "Choose Gmail API scopes".
    pub const GOOGLE_MAIL: &str = "https://mail.google.com/";
}

/// The endpoints of a provider. `token` is required; a grant whose endpoint is
/// missing fails with a configuration error naming it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    pub authorization: Option<Url>,
    pub token: Url,
    /// RFC 8628 §3.1.
    pub device_authorization: Option<Url>,
    /// RFC 7009.
    pub revocation: Option<Url>,
    /// RFC 7662.
    pub introspection: Option<Url>,
}

/// An OAuth2 provider: its name for messages, its endpoints and what it wants for mail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provider {
    /// How errors name it: "Microsoft", "Google", or the issuer's host.
    pub name: String,
    /// The OpenID Connect issuer, when known.
    pub issuer: Option<String>,
    pub endpoints: Endpoints,
    /// The scopes a mailbox's user consents to for IMAP/POP (delegated access).
    pub delegated_mail_scopes: Vec<String>,
    /// The scopes of an application acting for any mailbox (client credentials, or a
    /// service account with domain-wide delegation).
    pub app_mail_scopes: Vec<String>,
    /// Extra parameters of the authorization URL this provider needs for a refresh
    /// token or a fresh consent.
    pub authorization_parameters: Vec<(String, String)>,
}

impl Provider {
    /// Microsoft identity platform v2.0 for `tenant` (a tenant id, a domain,
    /// `organizations` or `common`). Microsoft offers no RFC 7009 revocation
    /// endpoint (sessions are revoked through Microsoft Graph) and no introspection.
    pub fn microsoft(tenant: &str) -> Provider {
        // The tenant is pushed as one segment: whatever it holds, it stays one.
        let url = |path: &[&str]| {
            let mut url = fixed_url("https://login.microsoftonline.com/");
            url.path_segments_mut()
                .expect("an https URL has path segments")
                .pop_if_empty()
                .push(tenant)
                .extend(path);
            url
        };
        Provider {
            name: "Microsoft".into(),
            issuer: Some(url(&["v2.0"]).to_string()),
            endpoints: Endpoints {
                authorization: Some(url(&["oauth2", "v2.0", "authorize"])),
                token: url(&["oauth2", "v2.0", "token"]),
                device_authorization: Some(url(&["oauth2", "v2.0", "devicecode"])),
                revocation: None,
                introspection: None,
            },
            delegated_mail_scopes: [
                scopes::MICROSOFT_IMAP,
                scopes::MICROSOFT_POP,
                scopes::OFFLINE_ACCESS,
            ]
            .map(String::from)
            .to_vec(),
            app_mail_scopes: vec![scopes::MICROSOFT_APP_ONLY.into()],
            authorization_parameters: Vec::new(),
        }
    }

    /// Google's OAuth 2.0 endpoints ("Using OAuth 2.0 for Web Server Applications",
    /// "OAuth 2.0 for TV and Limited-Input Device Applications"). Google gives a
    /// refresh token for `access_type=offline`, not for an `offline_access` scope.
    pub fn google() -> Provider {
        Provider {
            name: "Google".into(),
            issuer: Some("https://accounts.google.com".into()),
            endpoints: Endpoints {
                authorization: Some(fixed_url("https://accounts.google.com/o/oauth2/v2/auth")),
                token: fixed_url("https://oauth2.googleapis.com/token"),
                device_authorization: Some(fixed_url("https://oauth2.googleapis.com/device/code")),
                revocation: Some(fixed_url("https://oauth2.googleapis.com/revoke")),
                introspection: None,
            },
            delegated_mail_scopes: vec![scopes::GOOGLE_MAIL.into()],
            app_mail_scopes: vec![scopes::GOOGLE_MAIL.into()],
            authorization_parameters: vec![
                ("access_type".into(), "offline".into()),
                ("prompt".into(), "consent".into()),
            ],
        }
    }

    /// Reads `{issuer}/.well-known/openid-configuration` over verified HTTPS (OpenID
    /// Connect Discovery 1.0 §4) and checks that the document names the same issuer
    /// (§4.3). Mail scopes default to `offline_access` only: set them for the
    /// provider's mail servers.
    pub async fn discover(issuer: &str, options: &HttpOptions) -> Result<Provider, Error> {
        let issuer = issuer.trim_end_matches('/');
        let url = https_url(
            &format!("{issuer}/.well-known/openid-configuration"),
            "discovery document",
        )?;
        let answer = http::get(options, &url).await?;
        if answer.status != 200 {
            return Err(if answer.status >= 500 || answer.status == 429 {
                Error::ProviderFailed {
                    url: url.to_string(),
                    status: answer.status,
                }
            } else {
                Error::BadAnswer {
                    url: url.to_string(),
                    reason: format!("HTTP {} instead of the discovery document", answer.status),
                }
            });
        }
        let document = answer.json(&url)?;
        Provider::from_discovery(issuer, &url, &document)
    }

    /// The provider a discovery document describes (see [`Provider::discover`]).
    pub fn from_discovery(
        issuer: &str,
        url: &Url,
        document: &serde_json::Value,
    ) -> Result<Provider, Error> {
        let bad = |reason: String| Error::BadAnswer {
            url: url.to_string(),
            reason,
        };
        let named = document["issuer"].as_str().unwrap_or_default();
        if named.trim_end_matches('/') != issuer.trim_end_matches('/') {
            return Err(bad(format!(
                "the document names issuer {named:?}, not {issuer:?}"
            )));
        }
        let endpoint = |key: &str| -> Result<Option<Url>, Error> {
            match document[key].as_str() {
                None => Ok(None),
                Some(text) => https_url(text, key)
                    .map(Some)
                    .map_err(|e| bad(e.to_string())),
            }
        };
        let token = endpoint("token_endpoint")?
            .ok_or_else(|| bad("the document has no token_endpoint".into()))?;
        let name = Url::parse(issuer)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_else(|| issuer.to_string());
        Ok(Provider {
            name,
            issuer: Some(named.to_string()),
            endpoints: Endpoints {
                authorization: endpoint("authorization_endpoint")?,
                token,
                device_authorization: endpoint("device_authorization_endpoint")?,
                revocation: endpoint("revocation_endpoint")?,
                introspection: endpoint("introspection_endpoint")?,
            },
            delegated_mail_scopes: vec![scopes::OFFLINE_ACCESS.into()],
            app_mail_scopes: Vec::new(),
            // A mailbox's sign-in is for later passes, so it asks for a refresh token:
            // OpenID Connect Core §11 grants `offline_access` only with
            // `prompt=consent`.
            authorization_parameters: vec![("prompt".into(), "consent".into())],
        })
    }

    /// An endpoint the grant needs, or a configuration error naming it.
    pub(crate) fn require<'a>(
        &self,
        endpoint: &'a Option<Url>,
        what: &str,
    ) -> Result<&'a Url, Error> {
        endpoint.as_ref().ok_or_else(|| {
            Error::Configuration(format!("{} has no {what} endpoint configured", self.name))
        })
    }
}

/// A URL written in this file.
fn fixed_url(text: &str) -> Url {
    // Only literals of this file come here, each parsed by the tests below.
    Url::parse(text).expect("a preset endpoint is a valid URL")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn microsoft_uses_the_tenants_v2_endpoints() {
        let provider = Provider::microsoft("contoso.onmicrosoft.com");
        let base = "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0";
        let endpoints = &provider.endpoints;
        assert_eq!(
            endpoints.authorization.as_ref().unwrap().as_str(),
            format!("{base}/authorize")
        );
        assert_eq!(endpoints.token.as_str(), format!("{base}/token"));
        assert_eq!(
            endpoints.device_authorization.as_ref().unwrap().as_str(),
            format!("{base}/devicecode")
        );
        assert!(
            provider
                .delegated_mail_scopes
                .contains(&scopes::MICROSOFT_IMAP.to_string())
        );
        assert_eq!(provider.app_mail_scopes, vec![scopes::MICROSOFT_APP_ONLY]);
    }

    #[test]
    fn a_tenant_stays_one_path_segment() {
        let provider = Provider::microsoft("odd/tenant?x");
        assert_eq!(
            provider.endpoints.token.as_str(),
            "https://login.microsoftonline.com/odd%2Ftenant%3Fx/oauth2/v2.0/token"
        );
        assert_eq!(
            provider.issuer.as_deref(),
            Some("https://login.microsoftonline.com/odd%2Ftenant%3Fx/v2.0")
        );
    }

    #[test]
    fn google_has_revocation_and_offline_access_parameters() {
        let provider = Provider::google();
        assert_eq!(
            provider.endpoints.token.as_str(),
            "https://oauth2.googleapis.com/token"
        );
        assert_eq!(
            provider.endpoints.revocation.as_ref().unwrap().as_str(),
            "https://oauth2.googleapis.com/revoke"
        );
        assert!(
            provider
                .authorization_parameters
                .contains(&("access_type".into(), "offline".into()))
        );
    }

    #[test]
    fn an_endpoint_can_be_overridden() {
        let mut provider = Provider::google();
        provider.endpoints.token = Url::parse("https://idp.example.test/token").unwrap();
        assert_eq!(
            provider.endpoints.token.host_str(),
            Some("idp.example.test")
        );
    }

    #[test]
    fn discovery_refuses_another_issuer_and_plain_http() {
        let url = Url::parse("https://idp.example.test/.well-known/openid-configuration").unwrap();
        let other = serde_json::json!({
            "issuer": "https://evil.example.test",
            "token_endpoint": "https://evil.example.test/token",
        });
        let error = Provider::from_discovery("https://idp.example.test", &url, &other).unwrap_err();
        assert!(error.to_string().contains("names issuer"), "{error}");
        let plain = serde_json::json!({
            "issuer": "https://idp.example.test",
            "token_endpoint": "http://idp.example.test/token",
        });
        let error = Provider::from_discovery("https://idp.example.test", &url, &plain).unwrap_err();
        assert!(error.to_string().contains("https://"), "{error}");
        let fine = serde_json::json!({
            "issuer": "https://idp.example.test/",
            "token_endpoint": "https://idp.example.test/token",
            "revocation_endpoint": "https://idp.example.test/revoke",
        });
        let provider = Provider::from_discovery("https://idp.example.test", &url, &fine).unwrap();
        assert_eq!(provider.name, "idp.example.test");
        assert!(provider.endpoints.revocation.is_some());
        assert!(provider.endpoints.device_authorization.is_none());
    }
}
