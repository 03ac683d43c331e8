//! Progress events, for the terminal's bars, a pipe's lines and later the portal.

/// What happened. Sent in order from one mailbox's pass.
#[derive(Clone, Debug)]
pub enum Event {
    Connected {
        side: &'static str,
        capabilities: usize,
    },
    FoldersPlanned {
        folders: usize,
        excluded: usize,
    },
    FolderCreated {
        dest: String,
    },
    FolderStarted {
        source: String,
        dest: String,
        to_copy: u64,
        bytes_to_copy: u64,
        total: u64,
    },
    MessageCopied {
        bytes: u64,
    },
    MessageFailed {
        folder: String,
        uid: u32,
        reason: String,
    },
    FolderFinished {
        source: String,
        copied: u64,
        already_present: u64,
        skipped: u64,
        failed: u64,
    },
    Retrying {
        reason: String,
        attempt: u32,
        wait_seconds: u64,
    },
    Warning(String),
}

pub trait Progress: Send + Sync {
    fn event(&self, event: Event);
}

/// Discards events.
#[derive(Debug, Default)]
pub struct Silent;

impl Progress for Silent {
    fn event(&self, _event: Event) {}
}
