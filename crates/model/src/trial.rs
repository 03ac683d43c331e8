//! The trial's findings: what the engine's `check` finds, what a trial pass stores as
//! JSON, and what the portal and the command line read back, one type for all.

use serde::{Deserialize, Serialize};

/// What a passed trial found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrialReport {
    pub source: TrialSide,
    pub dest: TrialSide,
    pub folders_to_create: Vec<String>,
    pub estimated_seconds: u64,
    pub warnings: Vec<String>,
}

/// One side of the trial.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrialSide {
    pub server: String,
    pub capabilities: Vec<String>,
    pub folders: u64,
    pub messages: u64,
    pub bytes: u64,
    pub largest_message: u64,
    pub quota_used: Option<u64>,
    pub quota_limit: Option<u64>,
    pub append_limit: Option<u64>,
}

impl TrialReport {
    /// A trial pass's stored report; `None` when there is none or it is not a trial's.
    pub fn from_json(text: &str) -> Option<TrialReport> {
        serde_json::from_str(text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_reads_back() {
        let report = TrialReport::from_json(
            r#"{"source":{"server":"imaps://a","capabilities":["IMAP4rev1"],"folders":3,
                "messages":41,"bytes":12500000,"largest_message":2000000,"quota_used":null,
                "quota_limit":null,"append_limit":null},
               "dest":{"server":"imaps://b","capabilities":[],"folders":1,"messages":0,"bytes":0,
                "largest_message":0,"quota_used":1000,"quota_limit":1000000,"append_limit":null},
               "folders_to_create":["Archive"],"estimated_seconds":1,"warnings":[]}"#,
        )
        .unwrap();
        assert_eq!(
            (report.source.messages, report.source.bytes),
            (41, 12_500_000)
        );
        assert_eq!(report.dest.quota_limit, Some(1_000_000));
        assert_eq!(report.folders_to_create, vec!["Archive"]);
        assert_eq!(TrialReport::from_json("not json"), None);
    }
}
