//! The report of a pass, in the JSON shape of SPEC §5.

use serde::Serialize;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub copied: u64,
    pub already_present: u64,
    pub skipped: u64,
    pub failed: u64,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.copied += other.copied;
        self.already_present += other.already_present;
        self.skipped += other.skipped;
        self.failed += other.failed;
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct FolderReport {
    pub source: String,
    pub dest: String,
    #[serde(flatten)]
    pub counts: Counts,
    pub bytes_copied: u64,
    /// Keywords or flags the destination would not keep.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flags_dropped: Vec<String>,
    /// In a dry run: how many messages the pass would copy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would_copy: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ItemError {
    pub folder: String,
    pub uid: u32,
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub size: u64,
    pub reason: String,
}

/// A source message that `verify` did not find at the destination.
#[derive(Clone, Debug, Serialize)]
pub struct Missing {
    pub folder: String,
    pub uid: u32,
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub reason: String,
    /// Excluded on purpose or failed with a recorded reason; false means unexplained.
    pub explained: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub source: String,
    pub dest: String,
    pub pass: String,
    pub started_at: String,
    pub finished_at: String,
    pub messages: Counts,
    pub bytes_copied: u64,
    pub elapsed_seconds: f64,
    pub folders: Vec<FolderReport>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub folders_excluded: Vec<String>,
    pub errors: Vec<ItemError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing: Option<Vec<Missing>>,
    /// Set when the pass stopped before the end: why, for a person to act on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fatal: Option<String>,
    /// Which fix applies to `fatal`, when one does: for the program that shows it.
    #[serde(skip)]
    pub fatal_remedy: Option<mailmove_net::Remedy>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Whether the destination stored the first copies of each folder at the size
    /// they were sent (`false`: it changes what it is given); absent when it did not
    /// tell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dest_byte_exact: Option<bool>,
    /// With `verify --content`: how many copies are byte for byte the source's, and
    /// each one the destination changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<crate::content::ContentReport>,
}

impl Report {
    /// A report for (source, destination, pass) with nothing in it yet.
    pub fn empty((source, dest, pass): (String, String, String)) -> Report {
        Report {
            source,
            dest,
            pass,
            started_at: crate::migrate::now_rfc3339(),
            finished_at: String::new(),
            messages: Counts::default(),
            bytes_copied: 0,
            elapsed_seconds: 0.0,
            folders: Vec::new(),
            folders_excluded: Vec::new(),
            errors: Vec::new(),
            missing: None,
            fatal: None,
            fatal_remedy: None,
            warnings: Vec::new(),
            dest_byte_exact: None,
            content: None,
        }
    }

    pub fn unexplained(&self) -> usize {
        self.missing
            .as_ref()
            .map(|m| m.iter().filter(|m| !m.explained).count())
            .unwrap_or(0)
    }
}

/// `5.3 MB`-style sizes for messages people read (kept here for the engine's callers).
pub use mailmove_model::human_size;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(5_300_000), "5.3 MB");
        assert_eq!(human_size(15_000_000_000), "15.0 GB");
    }
}
