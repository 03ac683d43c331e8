//! A project's connection and copy settings, kept as JSON beside the project.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProjectSettings {
    /// Extra CA certificates (PEM) to trust for both servers.
    pub tls_ca: Option<PathBuf>,
    pub accept_invalid_certs: bool,
    pub allow_plaintext: bool,
    /// With a POP3 source: the destination folder its messages go to.
    pub pop_folder: Option<String>,
}

impl ProjectSettings {
    pub fn to_json(&self) -> String {
        // Serialising plain fields cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }

    pub fn from_json(text: &str) -> ProjectSettings {
        serde_json::from_str(text).unwrap_or_default()
    }
}
