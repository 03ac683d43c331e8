//! Finding the EWS URL: from an OWA address, or by autodiscover for an email address,
//! POX first (MS-OXDSCLI, `autodiscover.xml`) and SOAP second (MS-OXWSADISC,
//! `autodiscover.svc` GetUserSettings).
//!
//! Not done: the DNS SRV record `_autodiscover._tcp` and the unauthenticated GET
//! redirect on `http://autodiscover.DOMAIN` (both MS-OXDSCLI 3.1.5); an administrator
//! can always give the EWS URL instead.

use bytes::Bytes;
use mailmove_model::Secret;
use tracing::debug;
use url::Url;

use crate::error::Error;
use crate::transport::{Transport, check_url};
use crate::types::Options;
use crate::xml::{Node, escape, read_document};

/// Redirections followed (address or URL) before giving up.
const MAX_REDIRECTS: usize = 10;

const POX_REQUEST_SCHEMA: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006";
const POX_RESPONSE_SCHEMA: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a";
const SOAP_NAMESPACE: &str = "http://schemas.microsoft.com/exchange/2010/Autodiscover";

/// `https://mail.example.com/owa` (or `/owa/`, `/OWA/auth/logon.aspx?...`, or an EWS
/// URL, or the bare host) → `https://mail.example.com/EWS/Exchange.asmx`.
pub fn ews_url_from_owa(url: &Url) -> Option<Url> {
    if !matches!(url.scheme(), "https" | "http") || url.host().is_none() {
        return None;
    }
    let first = url
        .path_segments()
        .and_then(|mut segments| segments.next())
        .unwrap_or("");
    if !(first.is_empty() || first.eq_ignore_ascii_case("owa") || first.eq_ignore_ascii_case("ews"))
    {
        return None;
    }
    let mut ews = url.clone();
    ews.set_path("/EWS/Exchange.asmx");
    ews.set_query(None);
    ews.set_fragment(None);
    Some(ews)
}

/// Finds the EWS URL for an email address: POX autodiscover at
/// `https://DOMAIN/autodiscover/autodiscover.xml`, then at
/// `https://autodiscover.DOMAIN/...`, then SOAP autodiscover at the same two hosts.
pub async fn autodiscover(
    email: &str,
    login: &str,
    password: &Secret<String>,
    options: &Options,
) -> Result<Url, Error> {
    let domain = email
        .rsplit_once('@')
        .map(|(_, domain)| domain.trim())
        .filter(|d| !d.is_empty())
        .ok_or_else(|| Error::AutodiscoverFailed {
            email: email.to_string(),
            tried: "it is not an email address".into(),
        })?;
    let bases = [
        format!("https://{domain}/"),
        format!("https://autodiscover.{domain}/"),
    ]
    .iter()
    .map(|b| Url::parse(b))
    .collect::<Result<Vec<_>, _>>()
    .map_err(|e| Error::AutodiscoverFailed {
        email: email.to_string(),
        tried: format!("{domain} is not a host name: {e}"),
    })?;
    autodiscover_at(&bases, email, login, password, options).await
}

/// Autodiscover against explicit base URLs (`https://host/`): POX at each, then SOAP
/// at each. Redirections to another address or URL are followed.
pub async fn autodiscover_at(
    bases: &[Url],
    email: &str,
    login: &str,
    password: &Secret<String>,
    options: &Options,
) -> Result<Url, Error> {
    let mut tried: Vec<String> = Vec::new();
    let mut refused: Option<Error> = None;
    let mut address = email.to_string();
    let mut redirects = 0;
    'restart: loop {
        for kind in [Kind::Pox, Kind::Soap] {
            for base in bases {
                let mut url = match base.join(kind.path()) {
                    Ok(url) => url,
                    Err(e) => {
                        tried.push(format!("{base}: {e}"));
                        continue;
                    }
                };
                loop {
                    let outcome = attempt(kind, &url, &address, login, password, options).await;
                    debug!(%url, ?outcome, "autodiscover");
                    match outcome {
                        Ok(Outcome::Found(ews)) => return Ok(ews),
                        Ok(Outcome::RedirectAddress(next)) if redirects < MAX_REDIRECTS => {
                            redirects += 1;
                            address = next;
                            continue 'restart;
                        }
                        Ok(Outcome::RedirectUrl(next)) if redirects < MAX_REDIRECTS => {
                            redirects += 1;
                            url = next;
                        }
                        Ok(other) => {
                            tried.push(format!("{url}: {}", other.describe()));
                            break;
                        }
                        Err(error) => {
                            tried.push(format!("{url}: {error}"));
                            if matches!(error, Error::AuthFailed { .. }) && refused.is_none() {
                                refused = Some(error);
                            }
                            break;
                        }
                    }
                }
            }
        }
        break;
    }
    // A refused login is the one thing the person can fix right away.
    if let Some(error) = refused {
        return Err(error);
    }
    Err(Error::AutodiscoverFailed {
        email: email.to_string(),
        tried: tried.join("; "),
    })
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Pox,
    Soap,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::Pox => "autodiscover/autodiscover.xml",
            Kind::Soap => "autodiscover/autodiscover.svc",
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Found(Url),
    RedirectAddress(String),
    RedirectUrl(Url),
    /// The server answered, but with no EWS URL (its error text, if any).
    Nothing(String),
}

impl Outcome {
    fn describe(&self) -> String {
        match self {
            Outcome::Found(url) => format!("found {url}"),
            Outcome::RedirectAddress(a) => format!("too many redirections (last to {a})"),
            Outcome::RedirectUrl(u) => format!("too many redirections (last to {u})"),
            Outcome::Nothing(text) => text.clone(),
        }
    }
}

async fn attempt(
    kind: Kind,
    url: &Url,
    email: &str,
    login: &str,
    password: &Secret<String>,
    options: &Options,
) -> Result<Outcome, Error> {
    check_url(url, login, options)?;
    let transport = Transport::new(url, login, password, options)?;
    let body = match kind {
        Kind::Pox => pox_request(email),
        Kind::Soap => soap_request(url, email),
    };
    let mut answer = transport.post(Bytes::from(body)).await?;
    match answer.status {
        200 => {}
        401 => {
            answer.body.drain().await;
            return Err(Error::AuthFailed {
                login: login.to_string(),
                text: String::new(),
            });
        }
        301 | 302 | 307 | 308 => {
            let location = answer
                .headers
                .get(http::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| url.join(l).ok());
            answer.body.drain().await;
            return match location {
                Some(next) if next.scheme() == "https" => Ok(Outcome::RedirectUrl(next)),
                _ => Ok(Outcome::Nothing("redirected to a non-https address".into())),
            };
        }
        status => {
            answer.body.drain().await;
            return Ok(Outcome::Nothing(format!("HTTP {status}")));
        }
    }
    let doc = read_document(&mut answer.body).await?;
    Ok(match kind {
        Kind::Pox => read_pox(&doc.root),
        Kind::Soap => read_soap(&doc.root),
    })
}

fn pox_request(email: &str) -> String {
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="utf-8"?>"#,
            r#"<Autodiscover xmlns="{request}"><Request>"#,
            "<EMailAddress>{email}</EMailAddress>",
            "<AcceptableResponseSchema>{response}</AcceptableResponseSchema>",
            "</Request></Autodiscover>"
        ),
        request = POX_REQUEST_SCHEMA,
        response = POX_RESPONSE_SCHEMA,
        email = escape(email)
    )
}

/// GetUserSettingsRequest: Users, RequestedSettings.
fn soap_request(url: &Url, email: &str) -> String {
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="utf-8"?>"#,
            r#"<soap:Envelope xmlns:a="{ns}" xmlns:wsa="http://www.w3.org/2005/08/addressing""#,
            r#" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance""#,
            r#" xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">"#,
            "<soap:Header><a:RequestedServerVersion>Exchange2010</a:RequestedServerVersion>",
            "<wsa:Action>{ns}/Autodiscover/GetUserSettings</wsa:Action>",
            "<wsa:To>{to}</wsa:To></soap:Header>",
            "<soap:Body><a:GetUserSettingsRequestMessage><a:Request>",
            "<a:Users><a:User><a:Mailbox>{email}</a:Mailbox></a:User></a:Users>",
            "<a:RequestedSettings><a:Setting>ExternalEwsUrl</a:Setting>",
            "<a:Setting>InternalEwsUrl</a:Setting></a:RequestedSettings>",
            "</a:Request></a:GetUserSettingsRequestMessage></soap:Body></soap:Envelope>"
        ),
        ns = SOAP_NAMESPACE,
        to = escape(url.as_str()),
        email = escape(email)
    )
}

/// The POX answer: `Response/Account` with `Action` (settings, redirectAddr,
/// redirectUrl) and `Protocol` blocks; the external (EXPR) EwsUrl is preferred, as
/// mailmove more often runs outside the server's network than inside.
fn read_pox(root: &Node) -> Outcome {
    let Some(response) = root.child("Response") else {
        return Outcome::Nothing("not an autodiscover answer".into());
    };
    if let Some(error) = response.child("Error") {
        let code = error.child_text("ErrorCode").unwrap_or("").trim();
        let message = error.child_text("Message").unwrap_or("").trim();
        return Outcome::Nothing(format!("autodiscover error {code}: {message}"));
    }
    let Some(account) = response.child("Account") else {
        return Outcome::Nothing("the answer has no account".into());
    };
    match account.child_text("Action").map(str::trim) {
        Some("redirectAddr") => {
            if let Some(address) = account.child_text("RedirectAddr") {
                return Outcome::RedirectAddress(address.trim().to_string());
            }
        }
        Some("redirectUrl") => {
            if let Some(url) = account.child_text("RedirectUrl").and_then(https_url) {
                return Outcome::RedirectUrl(url);
            }
        }
        _ => {}
    }
    let url_of = |kind: &str| {
        account
            .children_named("Protocol")
            .filter(|p| {
                p.child_text("Type").map(str::trim) == Some(kind) || p.attr("Type") == Some(kind)
            })
            .find_map(|p| p.child_text("EwsUrl").and_then(web_url))
    };
    match url_of("EXPR").or_else(|| url_of("EXCH")) {
        Some(url) => Outcome::Found(url),
        None => Outcome::Nothing("the answer names no EWS URL".into()),
    }
}

/// The SOAP answer: `GetUserSettingsResponseMessage/Response/UserResponses/UserResponse`.
fn read_soap(root: &Node) -> Outcome {
    let Some(response) = root.path(&["Body", "GetUserSettingsResponseMessage", "Response"]) else {
        return Outcome::Nothing("not a GetUserSettings answer".into());
    };
    let code = response.child_text("ErrorCode").unwrap_or("NoError").trim();
    if code != "NoError" {
        let message = response.child_text("ErrorMessage").unwrap_or("").trim();
        return Outcome::Nothing(format!("autodiscover error {code}: {message}"));
    }
    let Some(user) = response.path(&["UserResponses", "UserResponse"]) else {
        return Outcome::Nothing("the answer has no user".into());
    };
    let target = user.child_text("RedirectTarget").unwrap_or("").trim();
    match user.child_text("ErrorCode").unwrap_or("NoError").trim() {
        "NoError" => {}
        "RedirectAddress" if !target.is_empty() => {
            return Outcome::RedirectAddress(target.to_string());
        }
        "RedirectUrl" => {
            if let Some(url) = https_url(target) {
                return Outcome::RedirectUrl(url);
            }
        }
        code => {
            let message = user.child_text("ErrorMessage").unwrap_or("").trim();
            return Outcome::Nothing(format!("autodiscover error {code}: {message}"));
        }
    }
    let setting = |name: &str| {
        user.child("UserSettings")?
            .children_named("UserSetting")
            .find(|s| s.child_text("Name").map(str::trim) == Some(name))
            .and_then(|s| s.child_text("Value"))
            .and_then(web_url)
    };
    match setting("ExternalEwsUrl").or_else(|| setting("InternalEwsUrl")) {
        Some(url) => Outcome::Found(url),
        None => Outcome::Nothing("the answer names no EWS URL".into()),
    }
}

fn web_url(text: &str) -> Option<Url> {
    Url::parse(text.trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "https" | "http"))
}

fn https_url(text: &str) -> Option<Url> {
    Url::parse(text.trim())
        .ok()
        .filter(|u| u.scheme() == "https")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn ews_from_owa() {
        let ews = Some(url("https://mail.example.com/EWS/Exchange.asmx"));
        assert_eq!(ews_url_from_owa(&url("https://mail.example.com/owa")), ews);
        assert_eq!(ews_url_from_owa(&url("https://mail.example.com/owa/")), ews);
        assert_eq!(
            ews_url_from_owa(&url(
                "https://mail.example.com/OWA/auth/logon.aspx?replaceCurrent=1&url=x#frag"
            )),
            ews
        );
        assert_eq!(ews_url_from_owa(&url("https://mail.example.com/")), ews);
        assert_eq!(
            ews_url_from_owa(&url("https://mail.example.com/ews/exchange.asmx")),
            ews
        );
        assert_eq!(
            ews_url_from_owa(&url("https://mail.example.com:8443/owa")),
            Some(url("https://mail.example.com:8443/EWS/Exchange.asmx"))
        );
        assert_eq!(ews_url_from_owa(&url("https://mail.example.com/ecp")), None);
        assert_eq!(ews_url_from_owa(&url("mailto:a@example.com")), None);
    }

    #[tokio::test]
    async fn pox_answer_prefers_the_external_url() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">
  <Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a">
    <User><DisplayName>Alice</DisplayName><AutoDiscoverSMTPAddress>alice@example.com</AutoDiscoverSMTPAddress></User>
    <Account>
      <AccountType>email</AccountType>
      <Action>settings</Action>
      <Protocol><Type>EXCH</Type><Server>ex1.corp.example.com</Server><EwsUrl>https://ex1.corp.example.com/EWS/Exchange.asmx</EwsUrl></Protocol>
      <Protocol><Type>EXPR</Type><Server>mail.example.com</Server><EwsUrl>https://mail.example.com/EWS/Exchange.asmx</EwsUrl></Protocol>
      <Protocol Type="mapiHttp" Version="1"><MailStore><InternalUrl>https://x/mapi</InternalUrl></MailStore></Protocol>
    </Account>
  </Response>
</Autodiscover>"#;
        let doc = read_document(xml.as_bytes()).await.unwrap();
        assert_eq!(
            read_pox(&doc.root),
            Outcome::Found(url("https://mail.example.com/EWS/Exchange.asmx"))
        );
    }

    #[tokio::test]
    async fn pox_redirects_and_errors() {
        let redirect = r#"<Autodiscover><Response><Account><Action>redirectAddr</Action><RedirectAddr>alice@new.example.com</RedirectAddr></Account></Response></Autodiscover>"#;
        let doc = read_document(redirect.as_bytes()).await.unwrap();
        assert_eq!(
            read_pox(&doc.root),
            Outcome::RedirectAddress("alice@new.example.com".into())
        );
        let error = r#"<Autodiscover><Response><Error Time="10:00:00" Id="1"><ErrorCode>500</ErrorCode><Message>The email address can't be found.</Message><DebugData/></Error></Response></Autodiscover>"#;
        let doc = read_document(error.as_bytes()).await.unwrap();
        assert_eq!(
            read_pox(&doc.root),
            Outcome::Nothing("autodiscover error 500: The email address can't be found.".into())
        );
    }

    #[tokio::test]
    async fn soap_answer() {
        let xml = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:a="http://www.w3.org/2005/08/addressing">
<s:Header><a:Action s:mustUnderstand="1">http://schemas.microsoft.com/exchange/2010/Autodiscover/Autodiscover/GetUserSettingsResponse</a:Action></s:Header>
<s:Body><GetUserSettingsResponseMessage xmlns="http://schemas.microsoft.com/exchange/2010/Autodiscover"><Response xmlns:i="http://www.w3.org/2001/XMLSchema-instance">
<ErrorCode>NoError</ErrorCode><ErrorMessage/><UserResponses><UserResponse><ErrorCode>NoError</ErrorCode><ErrorMessage>No error.</ErrorMessage><RedirectTarget i:nil="true"/><UserSettingErrors/>
<UserSettings><UserSetting i:type="StringSetting"><Name>InternalEwsUrl</Name><Value>https://ex1.corp.example.com/EWS/Exchange.asmx</Value></UserSetting>
<UserSetting i:type="StringSetting"><Name>ExternalEwsUrl</Name><Value>https://mail.example.com/EWS/Exchange.asmx</Value></UserSetting></UserSettings>
</UserResponse></UserResponses></Response></GetUserSettingsResponseMessage></s:Body></s:Envelope>"#;
        let doc = read_document(xml.as_bytes()).await.unwrap();
        assert_eq!(
            read_soap(&doc.root),
            Outcome::Found(url("https://mail.example.com/EWS/Exchange.asmx"))
        );
        let redirect = xml
            .replace(
                "<UserResponse><ErrorCode>NoError</ErrorCode>",
                "<UserResponse><ErrorCode>RedirectAddress</ErrorCode>",
            )
            .replace(
                r#"<RedirectTarget i:nil="true"/>"#,
                "<RedirectTarget>alice@new.example.com</RedirectTarget>",
            );
        let doc = read_document(redirect.as_bytes()).await.unwrap();
        assert_eq!(
            read_soap(&doc.root),
            Outcome::RedirectAddress("alice@new.example.com".into())
        );
    }

    #[test]
    fn requests_name_the_address() {
        let pox = pox_request("a&b@example.com");
        assert!(pox.contains("<EMailAddress>a&amp;b@example.com</EMailAddress>"));
        assert!(pox.contains(POX_RESPONSE_SCHEMA));
        let soap = soap_request(
            &url("https://autodiscover.example.com/autodiscover/autodiscover.svc"),
            "a@example.com",
        );
        let users = soap.find("<a:Users>").unwrap();
        let settings = soap.find("<a:RequestedSettings>").unwrap();
        assert!(users < settings, "schema order: Users, RequestedSettings");
        assert!(soap.contains("<a:Mailbox>a@example.com</a:Mailbox>"));
    }
}
