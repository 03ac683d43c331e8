//! Live progress (SPEC §6.7) as server-sent events: every second the stream reads the
//! project's mailboxes and their newest passes from the store (so it works the same on
//! SQLite and PostgreSQL, whichever process runs the passes), renders each mailbox's
//! status and progress cells, and sends the cells that changed. The page's htmx SSE
//! extension swaps each event into the element with the same `sse-swap` name:
//! `status-ID`, `progress-ID` and `summary`.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;

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
    let mut ticker = tokio::time::interval(state.config().progress_every);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let feed = Feed {
        state,
        project_id: project.record.id,
        user_id: session.user_id,
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
                // The project is gone (deleted, or the session's user lost it): end.
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
    /// The HTML last sent under each event name.
    sent: HashMap<String, String>,
    pending: VecDeque<Event>,
    ticker: Interval,
}

impl Feed {
    /// Reads the store and queues an event for each cell that changed. False when the
    /// project no longer exists for this user.
    async fn refresh(&mut self) -> Result<bool, StoreError> {
        let db = self.state.db();
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
