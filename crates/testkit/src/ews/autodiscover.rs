//! Autodiscover, both flavours: POX (`autodiscover.xml`, MS-OXDSCLI) and SOAP
//! (`autodiscover.svc` GetUserSettings, MS-OXWSADISC). Both point the client at this
//! server's EWS URL.

use hyper::StatusCode;

use super::Shared;
use super::soap::NS_SOAP;
use super::xml::{self, escape};

const NS_POX_RESPONSE: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006";
const NS_POX_OUTLOOK: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a";
const NS_AUTODISCOVER: &str = "http://schemas.microsoft.com/exchange/2010/Autodiscover";

/// Exchange 2016 CU23, 15.1.2507.6, as CasVersion.
const CAS_VERSION: &str = "15.01.2507.006";
const SUPPORTED_SCHEMAS: &str = "Exchange2007, Exchange2007_SP1, Exchange2010, Exchange2010_SP1, Exchange2010_SP2, Exchange2013, Exchange2013_SP1, Exchange2015, Exchange2016";

/// The POX ServerVersion: 4 bits 0111, 6 bits major, 6 bits minor, a 1, 15 bits build.
fn pox_server_version() -> String {
    let value: u32 = (0b0111 << 28) | (15 << 22) | (1 << 16) | (1 << 15) | 2507;
    format!("{value:08X}")
}

/// Answers a POX request: the EXCH and EXPR protocols with the EWS URL, or an Error
/// with code 500 for an unknown address (600 for a request that cannot be read).
pub(crate) fn pox(shared: &Shared, _user: &str, body: &[u8]) -> (StatusCode, String) {
    let text = String::from_utf8_lossy(body);
    let Some(address) = xml::parse(&text).ok().and_then(|root| {
        root.path(&["Request", "EMailAddress"])
            .map(|e| e.text.trim().to_string())
    }) else {
        return (StatusCode::OK, pox_error(600, "Invalid Request"));
    };
    let Some(email) = shared.store().user_for_login(&address) else {
        return (
            StatusCode::OK,
            pox_error(500, "The e-mail address cannot be found."),
        );
    };
    let ews = escape(&shared.ews_url());
    let base = escape(&shared.base_url);
    let local = escape(email.split('@').next().unwrap_or_default());
    let email = escape(&email);
    let ssl = if shared.base_url.starts_with("https") {
        "On"
    } else {
        "Off"
    };
    let version = pox_server_version();
    let body = format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="{NS_POX_RESPONSE}"><Response xmlns="{NS_POX_OUTLOOK}"><User><DisplayName>{local}</DisplayName><LegacyDN>/o=mailmove/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)/cn=Recipients/cn={local}</LegacyDN><AutoDiscoverSMTPAddress>{email}</AutoDiscoverSMTPAddress><DeploymentId>6d6a6d6d-0000-4000-8000-6d61696c6d76</DeploymentId></User><Account><AccountType>email</AccountType><Action>settings</Action><MicrosoftOnline>False</MicrosoftOnline><Protocol><Type>EXCH</Type><Server>exch01.mailmove.test</Server><ServerDN>/o=mailmove/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)/cn=Configuration/cn=Servers/cn=EXCH01</ServerDN><ServerVersion>{version}</ServerVersion><MdbDN>/o=mailmove/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)/cn=Configuration/cn=Servers/cn=EXCH01/cn=Microsoft Private MDB</MdbDN><AuthPackage>Ntlm</AuthPackage><ASUrl>{ews}</ASUrl><EwsUrl>{ews}</EwsUrl><EmwsUrl>{ews}</EmwsUrl><EcpUrl>{base}/ecp/</EcpUrl><OOFUrl>{ews}</OOFUrl><ServerExclusiveConnect>off</ServerExclusiveConnect></Protocol><Protocol><Type>EXPR</Type><Server>127.0.0.1</Server><SSL>{ssl}</SSL><AuthPackage>Basic</AuthPackage><ASUrl>{ews}</ASUrl><EwsUrl>{ews}</EwsUrl><EmwsUrl>{ews}</EmwsUrl><EcpUrl>{base}/ecp/</EcpUrl><OOFUrl>{ews}</OOFUrl><ServerExclusiveConnect>on</ServerExclusiveConnect></Protocol><Protocol><Type>WEB</Type><Internal><OWAUrl AuthenticationMethod="Basic, Fba">{base}/owa/</OWAUrl><Protocol><Type>EXCH</Type><ASUrl>{ews}</ASUrl></Protocol></Internal></Protocol></Account></Response></Autodiscover>"#
    );
    (StatusCode::OK, body)
}

fn pox_error(code: u32, message: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="{NS_POX_RESPONSE}"><Response><Error Time="00:00:00.0000000" Id="1"><ErrorCode>{code}</ErrorCode><Message>{message}</Message><DebugData /></Error></Response></Autodiscover>"#
    )
}

/// Answers a SOAP GetUserSettings request; settings this server does not know are
/// reported in UserSettingErrors as SettingIsNotAvailable, as Exchange does.
pub(crate) fn soap(shared: &Shared, _user: &str, body: &[u8]) -> (StatusCode, String) {
    let text = String::from_utf8_lossy(body);
    let request = xml::parse(&text).ok();
    let Some(message) = request
        .as_ref()
        .and_then(|r| r.path(&["Body", "GetUserSettingsRequestMessage", "Request"]))
    else {
        return soap_fault("The request is not a GetUserSettings request this server can read.");
    };
    let wanted: Vec<String> = message
        .child("RequestedSettings")
        .map(|s| {
            s.children
                .iter()
                .map(|c| c.text.trim().to_string())
                .collect()
        })
        .unwrap_or_default();
    let users: Vec<String> = message
        .child("Users")
        .map(|u| {
            u.children
                .iter()
                .filter_map(|user| user.child_text("Mailbox").map(str::to_string))
                .collect()
        })
        .unwrap_or_default();

    let ews = shared.ews_url();
    let mut responses = String::new();
    for mailbox in users {
        let Some(email) = shared.store().user_for_login(&mailbox) else {
            responses.push_str(&format!(
                r#"<UserResponse><ErrorCode>InvalidUser</ErrorCode><ErrorMessage>Invalid user: '{}'</ErrorMessage><RedirectTarget i:nil="true"/><UserSettingErrors/><UserSettings/></UserResponse>"#,
                escape(&mailbox)
            ));
            continue;
        };
        let local = email.split('@').next().unwrap_or_default().to_string();
        let mut settings = String::new();
        let mut errors = String::new();
        for name in &wanted {
            let value = match name.as_str() {
                "UserDisplayName" => Some(local.clone()),
                "UserDN" => Some(format!(
                    "/o=mailmove/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)/cn=Recipients/cn={local}"
                )),
                "UserDeploymentId" => Some("6d6a6d6d-0000-4000-8000-6d61696c6d76".to_string()),
                "AutoDiscoverSMTPAddress" => Some(email.clone()),
                "InternalEwsUrl" | "ExternalEwsUrl" => Some(ews.clone()),
                "InternalMailboxServer" | "ExternalMailboxServer" => {
                    Some("exch01.mailmove.test".to_string())
                }
                "CasVersion" => Some(CAS_VERSION.to_string()),
                "EwsSupportedSchemas" => Some(SUPPORTED_SCHEMAS.to_string()),
                _ => None,
            };
            match value {
                Some(value) => settings.push_str(&format!(
                    r#"<UserSetting i:type="StringSetting"><Name>{}</Name><Value>{}</Value></UserSetting>"#,
                    escape(name),
                    escape(&value)
                )),
                None => errors.push_str(&format!(
                    "<UserSettingError><ErrorCode>SettingIsNotAvailable</ErrorCode><ErrorMessage>User setting '{0}' is not available. </ErrorMessage><SettingName>{0}</SettingName></UserSettingError>",
                    escape(name)
                )),
            }
        }
        responses.push_str(&format!(
            r#"<UserResponse><ErrorCode>NoError</ErrorCode><ErrorMessage>No error.</ErrorMessage><RedirectTarget i:nil="true"/><UserSettingErrors>{errors}</UserSettingErrors><UserSettings>{settings}</UserSettings></UserResponse>"#
        ));
    }
    let body = format!(
        r#"<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{NS_SOAP}" xmlns:a="http://www.w3.org/2005/08/addressing"><s:Header><a:Action s:mustUnderstand="1">{NS_AUTODISCOVER}/Autodiscover/GetUserSettingsResponse</a:Action><h:ServerVersionInfo xmlns:h="{NS_AUTODISCOVER}" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><h:MajorVersion>15</h:MajorVersion><h:MinorVersion>1</h:MinorVersion><h:MajorBuildNumber>2507</h:MajorBuildNumber><h:MinorBuildNumber>6</h:MinorBuildNumber><h:Version>Exchange2015</h:Version></h:ServerVersionInfo></s:Header><s:Body><GetUserSettingsResponseMessage xmlns="{NS_AUTODISCOVER}"><Response xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><ErrorCode>NoError</ErrorCode><ErrorMessage/><UserResponses>{responses}</UserResponses></Response></GetUserSettingsResponseMessage></s:Body></s:Envelope>"#
    );
    (StatusCode::OK, body)
}

fn soap_fault(text: &str) -> (StatusCode, String) {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        format!(
            r#"<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{NS_SOAP}"><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring xml:lang="en-US">{}</faultstring></s:Fault></s:Body></s:Envelope>"#,
            escape(text)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pox_server_version_encodes_15_1_2507() {
        let value = u32::from_str_radix(&pox_server_version(), 16).unwrap();
        assert_eq!(value >> 28, 0b0111);
        assert_eq!((value >> 22) & 0x3f, 15);
        assert_eq!((value >> 16) & 0x3f, 1);
        assert_eq!(value & 0x7fff, 2507);
    }
}
