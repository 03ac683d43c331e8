//! What every run over a mailbox pair starts with, written once for `migrate`,
//! `verify` and `check`: connect both sides at once, list both folder trees, plan the
//! folders.

use mailmove_store::Ledger;

use crate::connector::{Connector, Destination, SideError, Source};
use crate::folders::{FolderPlan, FolderRules, FolderTree, plan_folders};
use crate::progress::{Event, Progress};

/// Both sides connected and the folders planned.
pub(crate) struct Session<S, D> {
    pub source: S,
    pub dest: D,
    pub dest_tree: FolderTree,
    pub plan: FolderPlan,
}

/// Where opening a session failed: connecting (or logging in), or listing folders.
pub(crate) enum OpenError {
    Connect(SideError),
    List(SideError),
}

impl OpenError {
    pub fn into_inner(self) -> SideError {
        match self {
            OpenError::Connect(e) | OpenError::List(e) => e,
        }
    }
}

/// Connects and logs in on both sides at once.
pub(crate) async fn connect_both<SC: Connector, DC: Connector>(
    source: &SC,
    dest: &DC,
    ledger: Option<&Ledger>,
    progress: &dyn Progress,
) -> Result<(SC::Source, DC::Destination), SideError> {
    let (src, dst) = tokio::join!(source.source(ledger), dest.destination(ledger));
    let (src, dst) = (src?, dst?);
    progress.event(Event::Connected {
        side: "source",
        capabilities: src.capabilities().len(),
    });
    progress.event(Event::Connected {
        side: "destination",
        capabilities: Destination::capabilities(&dst).len(),
    });
    Ok((src, dst))
}

/// Connects both sides, lists their folders and plans them.
pub(crate) async fn open<SC: Connector, DC: Connector>(
    source: &SC,
    dest: &DC,
    ledger: Option<&Ledger>,
    rules: &FolderRules,
    progress: &dyn Progress,
) -> Result<Session<SC::Source, DC::Destination>, OpenError> {
    let (mut src, mut dst) = connect_both(source, dest, ledger, progress)
        .await
        .map_err(OpenError::Connect)?;
    let source_tree = src.folders().await.map_err(OpenError::List)?;
    let dest_tree = dst.folders().await.map_err(OpenError::List)?;
    let plan = plan_folders(&source_tree, &dest_tree, rules);
    progress.event(Event::FoldersPlanned {
        folders: plan.mappings.len(),
        excluded: plan.excluded.len(),
    });
    Ok(Session {
        source: src,
        dest: dst,
        dest_tree,
        plan,
    })
}
