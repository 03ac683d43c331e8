//! The scheduler's claim: a worker takes a pass only together with a connection slot on
//! its source and on its destination server, in one transaction, or takes nothing. A
//! pass whose server is full stays queued, untouched except for the moment it started
//! waiting, and runs as soon as a claim finds a slot free: nothing is requeued for a
//! later second, and a claim that finds nothing runs a few reads.
//!
//! Claims are fair across portal users and their projects: among the passes due, each
//! user's are taken in turn (the user with the fewest running first), a user's projects
//! taking turns too, within the operator's limits on
//! running passes per user and per project. Queueing is bounded too, per user and per
//! project ([`QueueLimits`]).

use std::collections::{BTreeSet, HashMap, HashSet};

use mailmove_model::Endpoint;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use crate::StoreError;
use crate::db::{Db, now, now_ms};
use crate::passes::{Claimed, PassKind, parse_kind, pass};
use crate::projects::MailboxStatus;

/// How many passes may run at once for one portal user and for one project, across
/// every worker. Operator settings (`serve` and `worker` flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunLimits {
    pub per_user: u32,
    pub per_project: u32,
}

impl Default for RunLimits {
    fn default() -> RunLimits {
        RunLimits {
            per_user: 24,
            per_project: 24,
        }
    }
}

/// How many passes may be queued or running at once for one portal user and for one
/// project: queueing more is refused, whole. Operator settings (`serve` flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLimits {
    pub per_user: u32,
    pub per_project: u32,
}

impl Default for QueueLimits {
    fn default() -> QueueLimits {
        QueueLimits {
            per_user: 20_000,
            per_project: 10_000,
        }
    }
}

/// Who claims, and under which caps.
#[derive(Clone, Debug)]
pub struct Claimer {
    /// Shown in the database as the lease holder.
    pub worker: String,
    pub lease_seconds: i64,
    /// Connections to one server (host and port) across every worker.
    pub connections_per_host: u32,
    pub limits: RunLimits,
}

impl Claimer {
    /// A claimer with the default caps (8 connections per server).
    pub fn new(worker: &str, lease_seconds: i64) -> Claimer {
        Claimer {
            worker: worker.to_string(),
            lease_seconds,
            connections_per_host: 8,
            limits: RunLimits::default(),
        }
    }
}

/// The PostgreSQL channel on which a pass that may have become claimable is announced:
/// a pass queued, a pass ended or put back in the queue (its slots free).
const WAKE_CHANNEL: &str = "mailmove_passes";

/// Announcements that a pass may be claimable now. On PostgreSQL a `LISTEN` on its own
/// connection, so a worker waiting for a slot claims as soon as one frees, whichever
/// worker freed it; on SQLite nothing comes (one process runs the passes, and its own
/// ended passes wake it).
pub struct Wakeups {
    listener: Option<sqlx::postgres::PgListener>,
}

impl Wakeups {
    /// Waits for the next announcement, and takes every one already waiting with it.
    /// Never returns on SQLite, or after the listener failed (the worker polls).
    pub async fn next(&mut self) {
        let Some(listener) = &mut self.listener else {
            return std::future::pending().await;
        };
        match listener.recv().await {
            Ok(_) => while listener.next_buffered().is_some() {},
            Err(_) => self.listener = None,
        }
    }
}

/// Passes read per claim: enough to find one that fits among many whose server is full.
const CANDIDATES: i64 = 200;
/// Claims lost to another worker's (PostgreSQL: both chose the same free slot) before
/// this one gives up until its next poll.
const TRIES: u32 = 20;

/// A pass due to run, with what deciding needs.
struct Candidate {
    id: i64,
    mailbox_id: i64,
    kind: PassKind,
    project_id: i64,
    owner_id: i64,
    /// The source's and the destination's `host:port`; none if a URL does not parse
    /// (the worker then fails the pass with the reason, holding no slot).
    hosts: Vec<String>,
    waiting: bool,
    /// Running under a lease that ran out: its dead worker's slot rows still name it.
    taken_over: bool,
    /// Its place among its project's due passes (1: the oldest).
    project_turn: i64,
}

/// What one try found.
enum Try {
    Claimed(Box<Claimed>),
    Nothing,
    /// Another claimer took what this one chose in between: try again.
    Raced,
}

impl Db {
    /// Takes the oldest due pass (queued, or running with its lease run out) with the
    /// default caps; see [`Db::claim`].
    pub async fn claim_pass(
        &self,
        worker: &str,
        lease_seconds: i64,
    ) -> Result<Option<Claimed>, StoreError> {
        self.claim(&Claimer::new(worker, lease_seconds)).await
    }

    /// Takes a due pass that can run now, fairly across users, with a slot on its
    /// source and its destination server, in one transaction: the pass is `running`,
    /// its slots leased to it and its mailbox shown running, or nothing changed. A due
    /// pass whose server is full is marked waiting (once) and left queued.
    pub async fn claim(&self, claimer: &Claimer) -> Result<Option<Claimed>, StoreError> {
        for _ in 0..TRIES {
            match self.try_claim(claimer).await? {
                Try::Claimed(pass) => return Ok(Some(*pass)),
                Try::Nothing => return Ok(None),
                Try::Raced => continue,
            }
        }
        Ok(None)
    }

    async fn try_claim(&self, claimer: &Claimer) -> Result<Try, StoreError> {
        let (now, now_ms) = (now(), now_ms());
        let mut tx = self.begin_write(&self.pool).await?;
        let candidates = self.due_passes(&mut tx, now).await?;
        if candidates.is_empty() {
            tx.rollback().await?;
            return Ok(Try::Nothing);
        }
        let running = running_counts(&mut tx, now).await?;
        let mut taken = taken_slots(&mut tx, now).await?;
        let cap = claimer.connections_per_host.max(1);
        let order = fair_order(&candidates, &running);
        // Passes that find their server full start waiting (recorded once each).
        let full: Vec<i64> = order
            .iter()
            .filter(|c| !c.waiting && free_slots(&c.hosts, &taken, cap).is_none())
            .map(|c| c.id)
            .collect();
        if !full.is_empty() {
            self.mark_waiting(&mut tx, &full, now_ms).await?;
        }
        let mut chosen = None;
        for candidate in order {
            if !running.allows(candidate, claimer.limits) {
                continue;
            }
            let Some(slots) = free_slots(&candidate.hosts, &taken, cap) else {
                continue;
            };
            if self.lock_due(&mut tx, candidate.id, now).await? {
                chosen = Some((candidate, slots));
                break;
            }
        }
        let Some((candidate, slots)) = chosen else {
            tx.commit().await?;
            return Ok(Try::Nothing);
        };
        let until = now + claimer.lease_seconds;
        if candidate.taken_over {
            // Its dead worker's slots (their lease ran out with the pass's) are let go,
            // or heartbeats would renew them beside the new ones.
            sqlx::query("UPDATE host_slots SET lease_until = 0, pass_id = NULL WHERE pass_id = $1")
                .bind(candidate.id)
                .execute(&mut *tx)
                .await?;
        }
        for (host, slot) in &slots {
            let took = sqlx::query(
                "INSERT INTO host_slots (host, slot, pass_id, lease_until) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (host, slot) DO UPDATE SET pass_id = excluded.pass_id, \
                 lease_until = excluded.lease_until WHERE host_slots.lease_until < $5",
            )
            .bind(host)
            .bind(*slot)
            .bind(candidate.id)
            .bind(until)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if took != 1 {
                tx.rollback().await?;
                return Ok(Try::Raced);
            }
            taken.insert((host.clone(), *slot));
        }
        let row = sqlx::query(
            "UPDATE passes SET state = 'running', worker = $1, lease_until = $2, \
             attempts = attempts + 1, started_at = COALESCE(started_at, $3), \
             started_ms = COALESCE(started_ms, $4), \
             running_ms = running_ms + CASE WHEN state = 'running' AND run_started_ms IS NOT NULL \
                 AND lease_until * 1000 > run_started_ms \
                 THEN lease_until * 1000 - run_started_ms ELSE 0 END, \
             run_started_ms = $4 WHERE id = $5 RETURNING *",
        )
        .bind(&claimer.worker)
        .bind(until)
        .bind(now)
        .bind(now_ms)
        .bind(candidate.id)
        .fetch_one(&mut *tx)
        .await?;
        let status = match candidate.kind {
            PassKind::Verify => MailboxStatus::Verifying,
            _ => MailboxStatus::Migrating,
        };
        sqlx::query("UPDATE mailboxes SET status = $1, updated_at = $2 WHERE id = $3")
            .bind(status.as_str())
            .bind(now)
            .bind(candidate.mailbox_id)
            .execute(&mut *tx)
            .await?;
        let claimed = pass(&row)?;
        tx.commit().await?;
        Ok(Try::Claimed(Box::new(claimed)))
    }

    /// The passes due now, each user's numbered in turn: its projects take turns, each
    /// project's oldest first.
    async fn due_passes(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        now: i64,
    ) -> Result<Vec<Candidate>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, mailbox_id, kind, project_id, owner_id, source, dest, waiting, \
                    project_turn, taken_over FROM ( \
                 SELECT *, ROW_NUMBER() OVER (PARTITION BY owner_id \
                                              ORDER BY project_turn, id) AS turn FROM ( \
                     SELECT s.id, s.mailbox_id, s.kind, m.project_id, p.owner_id, p.source, \
                            p.dest, \
                            CASE WHEN s.waiting_since_ms IS NULL THEN 0 ELSE 1 END AS waiting, \
                            CASE WHEN s.state = 'running' THEN 1 ELSE 0 END AS taken_over, \
                            ROW_NUMBER() OVER (PARTITION BY m.project_id ORDER BY s.id) \
                                AS project_turn \
                     FROM passes s JOIN mailboxes m ON m.id = s.mailbox_id \
                     JOIN projects p ON p.id = m.project_id \
                     WHERE (s.state = 'queued' AND s.not_before <= $1) \
                        OR (s.state = 'running' AND s.lease_until < $1)) by_project) due \
             ORDER BY turn, id LIMIT $2",
        )
        .bind(now)
        .bind(CANDIDATES)
        .fetch_all(&mut **tx)
        .await?;
        rows.iter().map(candidate).collect()
    }

    /// Locks a due pass for this transaction; false if another claimer has it.
    async fn lock_due(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        id: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT id FROM passes WHERE id = $1 AND ((state = 'queued' AND not_before <= $2) \
             OR (state = 'running' AND lease_until < $2)) {}",
            self.skip_locked()
        )))
        .bind(id)
        .bind(now)
        .fetch_optional(&mut **tx)
        .await?;
        Ok(row.is_some())
    }

    async fn mark_waiting(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        ids: &[i64],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let list = ids
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        // Rows another claimer holds are left to it: no two claims wait on each other.
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE passes SET waiting_since_ms = $1 WHERE id IN (SELECT id FROM passes \
             WHERE waiting_since_ms IS NULL AND state = 'queued' AND id IN ({list}) {})",
            self.skip_locked()
        )))
        .bind(now_ms)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// A listener for [`Wakeups`]; none on SQLite.
    pub async fn wakeups(&self) -> Result<Wakeups, StoreError> {
        let Some(url) = &self.listen_url else {
            return Ok(Wakeups { listener: None });
        };
        let mut listener = sqlx::postgres::PgListener::connect(url).await?;
        listener.listen(WAKE_CHANNEL).await?;
        Ok(Wakeups {
            listener: Some(listener),
        })
    }

    /// Announces, when the transaction commits, that a pass may be claimable now.
    pub(crate) async fn wake_claimers(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    ) -> Result<(), StoreError> {
        if self.dialect == crate::db::Dialect::Postgres {
            sqlx::query(AssertSqlSafe(format!("NOTIFY {WAKE_CHANNEL}")))
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Refuses queueing `adding` more passes for `project_id` when they would take its
    /// owner or the project over the queue limits.
    pub(crate) async fn check_queue_limits(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        project_id: i64,
        adding: usize,
    ) -> Result<(), StoreError> {
        if adding == 0 {
            return Ok(());
        }
        let row = sqlx::query(
            "SELECT COALESCE(SUM(CASE WHEN m.project_id = $1 THEN 1 ELSE 0 END), 0), COUNT(*) \
             FROM passes s JOIN mailboxes m ON m.id = s.mailbox_id \
             JOIN projects p ON p.id = m.project_id \
             WHERE s.state IN ('queued', 'running') \
               AND p.owner_id = (SELECT owner_id FROM projects WHERE id = $1)",
        )
        .bind(project_id)
        .fetch_one(&mut **tx)
        .await?;
        let project: i64 = row.try_get(0)?;
        let user: i64 = row.try_get(1)?;
        let limits = self.queue_limits;
        let over = |now: i64, limit: u32, whose: &str| {
            (now as u64 + adding as u64 > u64::from(limit)).then(|| {
                StoreError::Busy(format!(
                    "{whose} has {now} passes queued or running and may have at most {limit} \
                     at once: queue these {adding} once some have ended"
                ))
            })
        };
        match over(project, limits.per_project, "the project")
            .or_else(|| over(user, limits.per_user, "its owner"))
        {
            Some(refused) => Err(refused),
            None => Ok(()),
        }
    }
}

/// The candidates in the order they are offered: each user's in turn, the user with
/// the fewest running first; within a user, its projects in turn, the one with the
/// fewest running first; within a project, the oldest first.
fn fair_order<'c>(candidates: &'c [Candidate], running: &Running) -> Vec<&'c Candidate> {
    let mut by_user: HashMap<i64, Vec<&Candidate>> = HashMap::new();
    for candidate in candidates {
        by_user
            .entry(candidate.owner_id)
            .or_default()
            .push(candidate);
    }
    let mut order: Vec<(i64, &Candidate)> = Vec::with_capacity(candidates.len());
    for (owner, mut mine) in by_user {
        mine.sort_by_key(|c| (running.of_project(c.project_id) + c.project_turn, c.id));
        let base = running.of_user(owner);
        order.extend(
            mine.into_iter()
                .enumerate()
                .map(|(rank, c)| (base + rank as i64 + 1, c)),
        );
    }
    order.sort_by_key(|(turn, c)| (*turn, c.id));
    order.into_iter().map(|(_, c)| c).collect()
}

/// Running passes per user and per project.
struct Running {
    users: HashMap<i64, i64>,
    projects: HashMap<i64, i64>,
}

impl Running {
    fn of_user(&self, owner_id: i64) -> i64 {
        self.users.get(&owner_id).copied().unwrap_or(0)
    }

    fn of_project(&self, project_id: i64) -> i64 {
        self.projects.get(&project_id).copied().unwrap_or(0)
    }

    fn allows(&self, candidate: &Candidate, limits: RunLimits) -> bool {
        self.of_user(candidate.owner_id) < i64::from(limits.per_user)
            && self.of_project(candidate.project_id) < i64::from(limits.per_project)
    }
}

async fn running_counts(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    now: i64,
) -> Result<Running, StoreError> {
    let rows = sqlx::query(
        "SELECT p.owner_id, m.project_id, COUNT(*) FROM passes s \
         JOIN mailboxes m ON m.id = s.mailbox_id JOIN projects p ON p.id = m.project_id \
         WHERE s.state = 'running' AND s.lease_until >= $1 GROUP BY p.owner_id, m.project_id",
    )
    .bind(now)
    .fetch_all(&mut **tx)
    .await?;
    let mut running = Running {
        users: HashMap::new(),
        projects: HashMap::new(),
    };
    for row in &rows {
        let count: i64 = row.try_get(2)?;
        *running.users.entry(row.try_get(0)?).or_default() += count;
        *running.projects.entry(row.try_get(1)?).or_default() += count;
    }
    Ok(running)
}

/// The slots leased now, as (host, slot).
async fn taken_slots(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    now: i64,
) -> Result<HashSet<(String, i64)>, StoreError> {
    let rows = sqlx::query("SELECT host, slot FROM host_slots WHERE lease_until >= $1")
        .bind(now)
        .fetch_all(&mut **tx)
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}

/// The lowest free slot on each of `hosts` (two on a host named twice, for a pass whose
/// source and destination are one server), in a fixed order so that two claimers never
/// wait on each other's slots; `None` if a host is full.
fn free_slots(
    hosts: &[String],
    taken: &HashSet<(String, i64)>,
    cap: u32,
) -> Option<Vec<(String, i64)>> {
    let mut chosen: BTreeSet<(String, i64)> = BTreeSet::new();
    // Under a cap of one, a pass from a server to itself makes do with its one slot
    // (it could never run otherwise).
    let mut hosts = hosts.to_vec();
    if cap < 2 {
        hosts.dedup();
    }
    for host in &hosts {
        let slot = (0..i64::from(cap)).find(|slot| {
            let key = (host.clone(), *slot);
            !taken.contains(&key) && !chosen.contains(&key)
        })?;
        chosen.insert((host.clone(), slot));
    }
    Some(chosen.into_iter().collect())
}

/// A server's `host:port`, the key of its connection slots.
pub(crate) fn host_key(url: &str) -> Option<String> {
    let endpoint = Endpoint::parse(url).ok()?;
    Some(format!(
        "{}:{}",
        endpoint.host.to_lowercase(),
        endpoint.port
    ))
}

fn candidate(row: &AnyRow) -> Result<Candidate, StoreError> {
    let source: String = row.try_get(5)?;
    let dest: String = row.try_get(6)?;
    let hosts = match (host_key(&source), host_key(&dest)) {
        (Some(source), Some(dest)) => vec![source, dest],
        _ => Vec::new(),
    };
    Ok(Candidate {
        id: row.try_get(0)?,
        mailbox_id: row.try_get(1)?,
        kind: parse_kind(&row.try_get::<String, _>(2)?)?,
        project_id: row.try_get(3)?,
        owner_id: row.try_get(4)?,
        hosts,
        waiting: row.try_get::<i64, _>(7)? != 0,
        project_turn: row.try_get(8)?,
        taken_over: row.try_get::<i64, _>(9)? != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_slots_take_the_lowest_on_each_host_or_none() {
        let taken: HashSet<(String, i64)> = [("a:993".to_string(), 0)].into_iter().collect();
        let hosts = vec!["a:993".to_string(), "b:993".to_string()];
        assert_eq!(
            free_slots(&hosts, &taken, 2),
            Some(vec![("a:993".into(), 1), ("b:993".into(), 0)])
        );
        assert_eq!(free_slots(&hosts, &taken, 1), None);
        // One server on both sides needs two of its slots.
        let same = vec!["a:993".to_string(), "a:993".to_string()];
        assert_eq!(free_slots(&same, &taken, 2), None);
        assert_eq!(
            free_slots(&same, &HashSet::new(), 1),
            Some(vec![("a:993".into(), 0)]),
            "a cap of one still lets it run"
        );
        assert_eq!(
            free_slots(&same, &taken, 3),
            Some(vec![("a:993".into(), 1), ("a:993".into(), 2)])
        );
    }
}
