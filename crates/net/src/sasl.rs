//! How a session signs in, for IMAP and POP3 alike, and the SASL messages that carry
//! it: PLAIN with or without an authorization identity (RFC 4616; an administrator
//! acting for a mailbox), XOAUTH2 (Google's and Microsoft's form) and OAUTHBEARER
//! (RFC 7628) with an OAuth2 access token. Pure encoding and decoding, no I/O: the
//! clients send these and read the answers.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mailmove_model::Secret;

/// Who signs in, and with what.
#[derive(Clone, Debug)]
pub enum SignIn {
    /// A mailbox's own login and password.
    Password {
        login: String,
        password: Secret<String>,
    },
    /// An administrator who acts for a mailbox, in one of the forms servers accept.
    Admin {
        /// The mailbox to open.
        mailbox: String,
        /// The administrator's login and password.
        admin: String,
        password: Secret<String>,
        form: AdminForm,
    },
    /// An OAuth2 access token issued for the mailbox `user`.
    Token { user: String, token: Secret<String> },
}

/// How a server lets an administrator open another user's mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminForm {
    /// SASL PLAIN with the mailbox as authorization identity (Dovecot master users,
    /// Cyrus administrators, many hosts).
    AuthorizationIdentity,
    /// The login `mailbox` + separator + `admin` with the administrator's password
    /// (Dovecot's `auth_master_user_separator`, usually `*`).
    Separator(char),
}

impl SignIn {
    /// The mailbox this sign-in opens, for messages people read.
    pub fn user(&self) -> &str {
        match self {
            SignIn::Password { login, .. } => login,
            SignIn::Admin { mailbox, .. } => mailbox,
            SignIn::Token { user, .. } => user,
        }
    }
}

/// SASL PLAIN's message: `authzid NUL authcid NUL password`, base64-encoded.
pub fn plain(authzid: &str, authcid: &str, password: &Secret<String>) -> Secret<String> {
    Secret::new(STANDARD.encode(format!("{authzid}\0{authcid}\0{}", password.expose())))
}

/// XOAUTH2's initial response: `user=USER ^A auth=Bearer TOKEN ^A ^A`, base64-encoded.
pub fn xoauth2(user: &str, token: &Secret<String>) -> Secret<String> {
    Secret::new(STANDARD.encode(format!(
        "user={user}\x01auth=Bearer {}\x01\x01",
        token.expose()
    )))
}

/// OAUTHBEARER's initial client response (RFC 7628 §3.1): the GS2 header naming the
/// user, then `host`, `port` and `auth` key-value pairs, base64-encoded.
pub fn oauthbearer(user: &str, host: &str, port: u16, token: &Secret<String>) -> Secret<String> {
    let user = user.replace('=', "=3D").replace(',', "=2C");
    Secret::new(STANDARD.encode(format!(
        "n,a={user},\x01host={host}\x01port={port}\x01auth=Bearer {}\x01\x01",
        token.expose()
    )))
}

/// What a client answers to an OAuth error challenge so the server can end the
/// exchange with its failure: an empty response for XOAUTH2, `^A` for OAUTHBEARER
/// (RFC 7628 §3.2.3), base64-encoded (the empty string for XOAUTH2).
pub fn after_oauth_error(mechanism: OAuthMechanism) -> &'static str {
    match mechanism {
        OAuthMechanism::XOAuth2 => "",
        OAuthMechanism::OAuthBearer => "AQ==",
    }
}

/// The two SASL mechanisms that carry an OAuth2 token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OAuthMechanism {
    XOAuth2,
    OAuthBearer,
}

impl OAuthMechanism {
    pub fn name(self) -> &'static str {
        match self {
            OAuthMechanism::XOAuth2 => "XOAUTH2",
            OAuthMechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// The mechanism to use among what a server offers (names without `AUTH=`):
    /// OAUTHBEARER, the standard, where offered, else XOAUTH2.
    pub fn choose<'a>(offered: impl IntoIterator<Item = &'a str>) -> Option<OAuthMechanism> {
        let offered: Vec<String> = offered.into_iter().map(str::to_ascii_uppercase).collect();
        [OAuthMechanism::OAuthBearer, OAuthMechanism::XOAuth2]
            .into_iter()
            .find(|m| offered.iter().any(|o| o == m.name()))
    }
}

/// The server's reason in an OAuth error challenge: the base64 JSON of RFC 7628
/// §3.2.2 (`{"status":"invalid_token","scope":...}`), worded for people. Anything
/// unreadable is shown as sent, cut short.
pub fn oauth_error(challenge: &str) -> String {
    let decoded = STANDARD
        .decode(challenge.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok());
    let Some(text) = decoded else {
        return challenge.chars().take(200).collect();
    };
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(json) => {
            let field = |name: &str| json.get(name).and_then(|v| v.as_str());
            let mut said = format!("status {}", field("status").unwrap_or("unknown"));
            if let Some(scope) = field("scope") {
                said.push_str(&format!(", scope {scope}"));
            }
            said
        }
        Err(_) => text.chars().take(200).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(secret: &Secret<String>) -> String {
        String::from_utf8(STANDARD.decode(secret.expose()).unwrap()).unwrap()
    }

    #[test]
    fn plain_carries_the_authorization_identity_first() {
        let password = Secret::new("s3cret".to_string());
        assert_eq!(
            decoded(&plain("alice@example.test", "admin", &password)),
            "alice@example.test\0admin\0s3cret"
        );
        assert_eq!(decoded(&plain("", "alice", &password)), "\0alice\0s3cret");
    }

    #[test]
    fn oauth_initial_responses_follow_their_specifications() {
        let token = Secret::new("ya29.token".to_string());
        assert_eq!(
            decoded(&xoauth2("alice@example.test", &token)),
            "user=alice@example.test\x01auth=Bearer ya29.token\x01\x01"
        );
        // RFC 7628 §4.1's example, with our user, host and port.
        assert_eq!(
            decoded(&oauthbearer(
                "user@example.com",
                "server.example.com",
                143,
                &token
            )),
            "n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer ya29.token\x01\x01"
        );
        // A GS2 name escapes `,` and `=`.
        assert!(decoded(&oauthbearer("a,b=c", "h", 1, &token)).starts_with("n,a=a=2Cb=3Dc,"));
    }

    #[test]
    fn oauthbearer_is_preferred_and_xoauth2_taken_where_alone() {
        assert_eq!(
            OAuthMechanism::choose(["PLAIN", "xoauth2", "OAUTHBEARER"]),
            Some(OAuthMechanism::OAuthBearer)
        );
        assert_eq!(
            OAuthMechanism::choose(["XOAUTH2"]),
            Some(OAuthMechanism::XOAuth2)
        );
        assert_eq!(OAuthMechanism::choose(["PLAIN", "LOGIN"]), None);
    }

    #[test]
    fn error_challenges_are_read_for_people() {
        let json = r#"{"status":"invalid_token","scope":"example_scope","openid-configuration":"https://example.com/.well-known/openid-configuration"}"#;
        assert_eq!(
            oauth_error(&STANDARD.encode(json)),
            "status invalid_token, scope example_scope"
        );
        assert_eq!(
            oauth_error(&STANDARD.encode("{\"status\":\"401\"}")),
            "status 401"
        );
        assert_eq!(oauth_error("not base64 at all!"), "not base64 at all!");
    }

    #[test]
    fn a_token_never_shows_in_debug_output() {
        let sign_in = SignIn::Token {
            user: "alice".into(),
            token: Secret::new("ya29.secret-token".into()),
        };
        assert!(!format!("{sign_in:?}").contains("ya29"));
        assert_eq!(sign_in.user(), "alice");
    }
}
