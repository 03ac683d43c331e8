//! Live progress (SPEC §6.7) as server-sent events: every second the stream reads the
//! project's mailboxes and their newest passes from the store (so it works the same on
//! SQLite and PostgreSQL, whichever process runs the passes), renders each mailbox's
//! status and progress cells, and sends the cells that changed. The page's htmx SSE
//! extension swaps each event into the element with the same `sse-swap` name:
//! `status-ID`, `progress-ID` and `summary`.
//!
//! A stream lives no longer than its session: each reading checks the session first and
//! ends the stream once it is gone (logged out, here or everywhere), expired or idle (a
//! stream is not use: an open page does not keep its session alive). A session holds
//! a few streams at most, so one signed-in client cannot make the portal read the store
//! for thousands.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use mailmove_store::{StoreError, now};
use tokio::time::{Interval, MissedTickBehavior};
use tracing::warn;

use crate::AppState;
use crate::auth::CurrentUser;
use crate::routes::{PageError, owned_project};
use crate::views::{progress_html, status_html, summary_html};

pub(crate) async fn project_events(
    State(state): State<AppState>,
    CurrentUser(session): CurrentUser,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let project = owned_project(&state, &session, &id).await?;
    let Some(slot) = state
        .streams()
        .open(&session.hash, state.config().streams_per_session)
    else {
        return Err(PageError::TooManyStreams);
    };
    let mut ticker = tokio::time::interval(state.config().progress_every);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let feed = Feed {
        state,
        project_id: project.record.id,
        user_id: session.user_id,
        session_hash: session.hash,
        _slot: slot,
        sent: HashMap::new(),
        pending: VecDeque::new(),
        ticker,
    };
    let events = stream::unfold(feed, |mut feed| async move {
        loop {
            if let Some(event) = feed.pending.pop_front() {
                return Some((Ok::<Event, Infallible>(event), feed));
            }
            feed.ticker.tick().await;
            match feed.refresh().await {
                Ok(true) => {}
                // The session or the project is gone: end.
                Ok(false) => return None,
                Err(e) => warn!(
                    project = feed.project_id,
                    "live progress cannot read the store: {e}"
                ),
            }
        }
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// One open stream: what it last sent, and what it has still to send.
struct Feed {
    state: AppState,
    project_id: i64,
    user_id: i64,
    /// The session the stream belongs to, by its hash.
    session_hash: String,
    /// Its place among the session's streams, given back when the stream ends.
    _slot: StreamSlot,
    /// The HTML last sent under each event name.
    sent: HashMap<String, String>,
    pending: VecDeque<Event>,
    ticker: Interval,
}

impl Feed {
    /// Reads the store and queues an event for each cell that changed. False when the
    /// session has ended or the project no longer exists for this user.
    async fn refresh(&mut self) -> Result<bool, StoreError> {
        let db = self.state.db();
        let idle = self.state.config().session_idle_seconds;
        if db.session(&self.session_hash, idle).await?.is_none() {
            return Ok(false);
        }
        match db.owned_project(self.project_id, self.user_id).await {
            Ok(_) => {}
            Err(StoreError::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e),
        }
        let mailboxes = db.mailboxes(self.project_id).await?;
        let passes: HashMap<i64, _> = db
            .latest_passes(self.project_id)
            .await?
            .into_iter()
            .map(|p| (p.mailbox_id, p))
            .collect();
        let now = now();
        let mut cells = vec![("summary".to_string(), summary_html(&mailboxes))];
        for mailbox in &mailboxes {
            let pass = passes.get(&mailbox.id);
            cells.push((format!("status-{}", mailbox.id), status_html(mailbox, pass)));
            cells.push((
                format!("progress-{}", mailbox.id),
                progress_html(mailbox, pass, now),
            ));
        }
        for (name, html) in cells {
            if self.sent.get(&name) != Some(&html) {
                self.pending
                    .push_back(Event::default().event(name.as_str()).data(html.as_str()));
                self.sent.insert(name, html);
            }
        }
        Ok(true)
    }
}

/// How many live-progress streams each session holds open in this process.
#[derive(Clone, Default)]
pub(crate) struct OpenStreams {
    per_session: Arc<Mutex<HashMap<String, usize>>>,
}

impl OpenStreams {
    /// A place for one more stream of `session`, unless it holds `limit` already.
    pub fn open(&self, session: &str, limit: usize) -> Option<StreamSlot> {
        let mut open = lock(&self.per_session);
        let count = open.entry(session.to_string()).or_default();
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(StreamSlot {
            streams: self.clone(),
            session: session.to_string(),
        })
    }
}

/// One open stream of a session; dropping it (the stream ended, or the client went
/// away) frees its place.
pub(crate) struct StreamSlot {
    streams: OpenStreams,
    session: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = lock(&self.streams.per_session);
        if let Some(count) = open.get_mut(&self.session) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.session);
            }
        }
    }
}

/// A poisoned lock only means a request panicked while counting: the counts are whole.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_holds_a_few_streams_and_gets_each_place_back() {
        let streams = OpenStreams::default();
        let first = streams.open("s", 2).unwrap();
        let second = streams.open("s", 2).unwrap();
        assert!(streams.open("s", 2).is_none(), "the third is refused");
        assert!(
            streams.open("other", 2).is_some(),
            "another session is apart"
        );
        drop(first);
        let third = streams.open("s", 2).unwrap();
        drop((second, third));
        assert!(lock(&streams.per_session).is_empty(), "nothing is kept");
    }
}
