//! Runs passes as jobs. A worker claims passes from the store with a lease, keeps each
//! lease alive with heartbeats that also carry progress, holds a connection slot on the
//! source and destination servers while it runs, and ends the pass with a status a
//! person can act on. A worker that dies simply stops renewing its leases; another
//! worker claims the pass and resumes it from the ledger, without duplicates.

mod job;
mod sign_in;

pub use sign_in::{SignInError, SignInProfiles};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mailmove_secrets::Keyring;
use mailmove_store::{Claimer, Db, RunLimits};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

/// How a worker behaves.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Shown in the database as the lease holder.
    pub name: String,
    /// Passes run at once by this worker.
    pub max_jobs: usize,
    /// Connections to one server (host and port) across every worker.
    pub connections_per_host: u32,
    pub lease_seconds: i64,
    pub heartbeat: Duration,
    pub poll: Duration,
    /// Runs of a pass interrupted by unreachable servers or dropped connections
    /// before it is marked failed.
    pub max_attempts: u32,
    /// First delay before a pass interrupted that way runs again; doubled each time.
    pub retry_delay_seconds: i64,
    /// Passes running at once per portal user and per project, across every worker.
    pub limits: RunLimits,
    /// A pass that reports no progress (no folder started, no message copied or
    /// failed) for this long is interrupted and tried again later, counted as an
    /// attempt: a server that stops answering without closing does not hold the pass
    /// and its connection slots.
    pub stall_timeout: Duration,
    /// Words for what to do about a failure, added to the reason stored for people to
    /// read (the portal's, given by whoever starts the worker); none by default.
    pub advice: fn(mailmove_net::Remedy) -> Option<&'static str>,
    /// Which addresses passes may connect to: anywhere by default; `serve` and `worker`
    /// allow public addresses and the operator's networks only.
    pub network: mailmove_net::NetworkPolicy,
    /// The operator's OAuth2 sign-in profiles, for projects whose mailboxes sign in
    /// with one; none by default.
    pub sign_ins: Option<std::sync::Arc<SignInProfiles>>,
}

impl WorkerConfig {
    pub fn named(name: impl Into<String>) -> WorkerConfig {
        WorkerConfig {
            name: name.into(),
            max_jobs: 4,
            connections_per_host: 8,
            lease_seconds: 30,
            heartbeat: Duration::from_secs(5),
            poll: Duration::from_millis(500),
            max_attempts: 5,
            retry_delay_seconds: 5,
            limits: RunLimits::default(),
            stall_timeout: Duration::from_secs(600),
            advice: |_| None,
            network: mailmove_net::NetworkPolicy::Anywhere,
            sign_ins: None,
        }
    }
}

/// A default worker name: host name and process id.
pub fn default_worker_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "worker".into());
    format!("{host}-{}", std::process::id())
}

#[derive(Clone)]
pub struct Worker {
    db: Db,
    keyring: Keyring,
    config: Arc<WorkerConfig>,
}

impl Worker {
    pub fn new(db: Db, keyring: Keyring, config: WorkerConfig) -> Worker {
        Worker {
            db,
            keyring,
            config: Arc::new(config),
        }
    }

    /// What this worker claims with: its name, lease and caps.
    fn claimer(&self) -> Claimer {
        Claimer {
            worker: self.config.name.clone(),
            lease_seconds: self.config.lease_seconds,
            connections_per_host: self.config.connections_per_host,
            limits: self.config.limits,
        }
    }

    /// Claims and runs passes until `stop` turns true; then drops the running ones at
    /// once (as safe as `kill -9`: the ledger knows what they did) and gives them back
    /// to the queue, their leases and connection slots released, for the next worker.
    pub async fn run(&self, mut stop: watch::Receiver<bool>) {
        info!(worker = %self.config.name, "worker started");
        let mut running = JoinSet::new();
        let mut passes: HashMap<tokio::task::Id, i64> = HashMap::new();
        let claimer = self.claimer();
        // With PostgreSQL, a slot freed or a pass queued by any worker wakes this one
        // at once; the poll is the fallback (and SQLite's only way).
        let mut wakeups = match self.db.wakeups().await {
            Ok(wakeups) => Some(wakeups),
            Err(e) => {
                warn!("cannot listen for queued passes and freed slots; polling: {e}");
                None
            }
        };
        loop {
            if *stop.borrow() {
                break;
            }
            while let Some(Ok((id, ()))) = running.try_join_next_with_id() {
                passes.remove(&id);
            }
            let mut claimed_any = false;
            while running.len() < self.config.max_jobs.max(1) {
                // A claim takes a pass only with its connection slots: a pass whose
                // server is full stays queued, and a slot that frees (a pass of this
                // worker ending wakes the loop at once) lets it run at the next claim.
                match self.db.claim(&claimer).await {
                    Ok(Some(pass)) => {
                        claimed_any = true;
                        let worker = self.clone();
                        let pass_id = pass.id;
                        let task = running.spawn(async move { job::run(&worker, pass).await });
                        passes.insert(task.id(), pass_id);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        warn!("cannot claim a pass: {e}");
                        break;
                    }
                }
            }
            if claimed_any {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.poll) => {}
                _ = async {
                    match wakeups.as_mut() {
                        Some(wakeups) => wakeups.next().await,
                        None => std::future::pending().await,
                    }
                } => {}
                _ = stop.changed() => {}
                Some(Ok((id, ()))) = running.join_next_with_id(), if !running.is_empty() => {
                    passes.remove(&id);
                }
            }
        }
        running.abort_all();
        while let Some(ended) = running.join_next_with_id().await {
            // A pass that ended by itself before the abort reached it has reported.
            if let Ok((id, ())) = ended {
                passes.remove(&id);
            }
        }
        for pass_id in passes.into_values() {
            let given_back = self
                .db
                .requeue_pass(
                    pass_id,
                    &self.config.name,
                    0,
                    Some("its worker was stopped; another takes it over"),
                    false,
                )
                .await;
            if let Err(e) = given_back {
                warn!(
                    pass = pass_id,
                    "cannot give the pass back to the queue: {e}"
                );
            }
        }
        info!(worker = %self.config.name, "worker stopped");
    }

    /// Runs passes until none of this project's is left unfinished (the `--wait` of
    /// `project run` when no separate worker runs).
    pub async fn run_until_done(&self, project_id: i64) {
        let (stop, stopped) = watch::channel(false);
        let worker = self.clone();
        let handle = tokio::spawn(async move { worker.run(stopped).await });
        loop {
            tokio::time::sleep(self.config.poll).await;
            match self.db.unfinished_passes(project_id).await {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => warn!("cannot read the passes: {e}"),
            }
        }
        let _ = stop.send(true);
        let _ = handle.await;
    }
}
