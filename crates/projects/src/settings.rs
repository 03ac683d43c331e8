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
