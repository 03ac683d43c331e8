//! A project's connection and copy settings, kept as JSON beside the project, and
//! read back strictly: settings that cannot be understood are refused with the reason,
//! never replaced by defaults (a dropped `tls_ca` would silently trust other servers).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProjectSettings {
    /// Extra CA certificates (PEM) to trust for both servers; an absolute path.
    pub tls_ca: Option<PathBuf>,
    pub accept_invalid_certs: bool,
    pub allow_plaintext: bool,
    /// With a POP3 source: the destination folder its messages go to.
    pub pop_folder: Option<String>,
    /// How the source's mailboxes sign in.
    pub source_sign_in: SignInMethod,
    /// How the destination's mailboxes sign in.
    pub dest_sign_in: SignInMethod,
}

/// How one side's mailboxes sign in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SignInMethod {
    /// Each mailbox's own password (stored sealed with the mailbox).
    #[default]
    Password,
    /// An administrator acting for each mailbox; the password stored with each mailbox
    /// is the administrator's. `separator`: Dovecot's `MAILBOX*ADMIN` form instead of
    /// SASL PLAIN's authorization identity.
    Admin {
        login: String,
        separator: Option<char>,
    },
    /// OAuth2 with an operator's sign-in profile: the application's own access, or
    /// each mailbox user's consent kept for the profile.
    #[serde(rename = "oauth2")]
    OAuth { profile: String },
}

impl SignInMethod {
    /// Whether the mailboxes need a password stored for this side.
    pub fn needs_password(&self) -> bool {
        !matches!(self, SignInMethod::OAuth { .. })
    }
}

/// Why stored settings were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the project's settings cannot be used: {0}")]
pub struct SettingsError(pub String);

impl ProjectSettings {
    pub fn to_json(&self) -> String {
        // Serialising plain fields cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }

    /// Reads settings written by [`ProjectSettings::to_json`]; anything else is refused
    /// with what is wrong.
    pub fn from_json(text: &str) -> Result<ProjectSettings, SettingsError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| SettingsError(e.to_string()))?;
        if !value.is_object() {
            return Err(SettingsError(format!(
                "expected a JSON object, found `{value}`"
            )));
        }
        let settings: ProjectSettings =
            serde_json::from_value(value).map_err(|e| SettingsError(e.to_string()))?;
        settings.check()?;
        Ok(settings)
    }

    /// What JSON cannot say: the CA path must not depend on where a worker runs, and a
    /// POP3 folder needs a name.
    pub fn check(&self) -> Result<(), SettingsError> {
        if let Some(path) = &self.tls_ca
            && !path.is_absolute()
        {
            return Err(SettingsError(format!(
                "tls_ca `{}` is not an absolute path",
                path.display()
            )));
        }
        if let Some(folder) = &self.pop_folder
            && folder.trim().is_empty()
        {
            return Err(SettingsError("pop_folder is empty".into()));
        }
        for (side, method) in [
            ("source", &self.source_sign_in),
            ("dest", &self.dest_sign_in),
        ] {
            match method {
                SignInMethod::Admin { login, .. } if login.trim().is_empty() => {
                    return Err(SettingsError(format!(
                        "{side}_sign_in: the administrator's login is empty"
                    )));
                }
                SignInMethod::OAuth { profile } if profile.trim().is_empty() => {
                    return Err(SettingsError(format!(
                        "{side}_sign_in: the sign-in profile is empty"
                    )));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip() {
        let settings = ProjectSettings {
            tls_ca: Some("/etc/ca.pem".into()),
            accept_invalid_certs: false,
            allow_plaintext: true,
            pop_folder: Some("Old mail".into()),
            source_sign_in: SignInMethod::OAuth {
                profile: "contoso".into(),
            },
            dest_sign_in: SignInMethod::Admin {
                login: "migrator".into(),
                separator: Some('*'),
            },
        };
        assert_eq!(
            ProjectSettings::from_json(&settings.to_json()),
            Ok(settings)
        );
        assert_eq!(
            ProjectSettings::from_json("{}"),
            Ok(ProjectSettings::default()),
            "every field has a default"
        );
    }

    #[test]
    fn bad_settings_are_refused_with_a_reason() {
        let refused = |json: &str| ProjectSettings::from_json(json).unwrap_err().to_string();
        let cases = [
            ("not json", "expected ident"),
            ("", "EOF while parsing"),
            (
                r#"{"allow_plaintext": "yes"}"#,
                "invalid type: string \"yes\", expected a boolean",
            ),
            (r#"{"tls_cert": "/ca.pem"}"#, "unknown field `tls_cert`"),
            (
                r#"{"tls_ca": "ca.pem"}"#,
                "tls_ca `ca.pem` is not an absolute path",
            ),
            (r#"{"pop_folder": " "}"#, "pop_folder is empty"),
            (
                r#"{"source_sign_in": {"method": "oauth2", "profile": ""}}"#,
                "source_sign_in: the sign-in profile is empty",
            ),
            (
                r#"{"dest_sign_in": {"method": "token"}}"#,
                "unknown variant `token`",
            ),
            ("[]", "expected a JSON object, found `[]`"),
        ];
        for (json, reason) in cases {
            let error = refused(json);
            assert!(
                error.starts_with("the project's settings cannot be used: "),
                "{json}: {error}"
            );
            assert!(error.contains(reason), "{json}: {error}");
        }
    }
}
