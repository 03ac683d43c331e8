//! The connection to SQLite or PostgreSQL, the schema and its migrations, and the few
//! places where the two dialects differ. Every query is written once, with `$1`-style
//! placeholders, which both accept.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, AssertSqlSafe, Executor, Row};

use crate::StoreError;
use crate::claim::QueueLimits;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A database holding users, projects, mailboxes, passes and the ledger.
#[derive(Clone, Debug)]
pub struct Db {
    pub(crate) pool: AnyPool,
    /// Where the ledger writes. On SQLite a pool of its own with one connection: the
    /// file has one writer at a time anyway, and lanes that queue here wait on the
    /// pool instead of colliding in SQLite's busy handler, which sleeps 1 to 100 ms.
    /// On PostgreSQL the same pool as everything else.
    pub(crate) writer: AnyPool,
    pub(crate) dialect: Dialect,
    /// Steps of multi-statement operations left before an injected failure (0: none);
    /// shared by every clone. See [`Db::fail_at_step`].
    pub(crate) fail_at: Arc<AtomicU32>,
    /// How many passes may wait at once per user and per project (see
    /// [`Db::with_queue_limits`]).
    pub(crate) queue_limits: QueueLimits,
    /// The PostgreSQL URL connected to, for the listener of [`Db::wakeups`].
    pub(crate) listen_url: Option<Arc<str>>,
}

impl Db {
    /// Opens `sqlite://PATH` (created if missing) or `postgres://...`, and brings its
    /// schema up to date.
    pub async fn open(url: &str) -> Result<Db, StoreError> {
        install_default_drivers();
        let dialect = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Dialect::Postgres
        } else if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else {
            return Err(StoreError::BadUrl(url.to_string()));
        };
        let url = match dialect {
            Dialect::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            Dialect::Postgres => without_loopback_tls(url),
            _ => url.to_string(),
        };
        let options = |connections: u32| {
            AnyPoolOptions::new()
                .max_connections(connections)
                // A ping is a round trip to SQLite's worker thread for every acquire;
                // a file does not hang up the way a server can.
                .test_before_acquire(dialect == Dialect::Postgres)
                .after_connect(move |connection, _| {
                    Box::pin(async move {
                        if dialect == Dialect::Sqlite {
                            // WAL with NORMAL survives the process being killed at any
                            // instant (the ledger's promise); only a power cut can lose
                            // the last transactions.
                            connection
                                .execute(
                                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                     PRAGMA busy_timeout = 30000; PRAGMA foreign_keys = ON;",
                                )
                                .await?;
                        }
                        Ok(())
                    })
                })
        };
        let open = |pool: Result<AnyPool, sqlx::Error>| {
            pool.map_err(|source| StoreError::Open {
                path: redact_url(&url),
                source,
            })
        };
        let pool = open(
            options(match dialect {
                Dialect::Sqlite => 4,
                Dialect::Postgres => 8,
            })
            .connect(&url)
            .await,
        )?;
        let writer = match dialect {
            Dialect::Sqlite => open(options(1).connect_lazy(&url))?,
            Dialect::Postgres => pool.clone(),
        };
        let db = Db {
            pool,
            writer,
            dialect,
            fail_at: Arc::default(),
            queue_limits: QueueLimits::default(),
            listen_url: (dialect == Dialect::Postgres).then(|| Arc::from(url.as_str())),
        };
        db.migrate().await?;
        Ok(db)
    }

    /// Opens an SQLite file by path.
    pub async fn open_sqlite(path: &Path) -> Result<Db, StoreError> {
        Db::open(&format!("sqlite://{}", path.display())).await
    }

    /// The same database, queueing under the operator's limits instead of the defaults.
    pub fn with_queue_limits(mut self, limits: QueueLimits) -> Db {
        self.queue_limits = limits;
        self
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Begins a transaction that will write. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), waiting in the busy handler if another process holds it: a
    /// deferred transaction that reads first and writes later fails at once with
    /// SQLITE_BUSY when another process wrote in between (a worker starting up while
    /// `project run` queues a pass, say). PostgreSQL needs nothing special.
    pub(crate) async fn begin_write(
        &self,
        pool: &AnyPool,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.dialect {
            Dialect::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
            Dialect::Postgres => pool.begin().await,
        }
    }

    /// For tests of atomicity: the `step`-th statement from now of an operation that
    /// writes in several statements (creating a project, ending a pass) fails as a
    /// crash there would, after the statements before it ran inside the transaction.
    #[doc(hidden)]
    pub fn fail_at_step(&self, step: u32) {
        self.fail_at.store(step, Ordering::SeqCst);
    }

    /// Marks a step of a multi-statement operation; fails where a test asked it to.
    pub(crate) fn step(&self) -> Result<(), StoreError> {
        let left = self.fail_at.load(Ordering::SeqCst);
        if left == 0 {
            return Ok(());
        }
        self.fail_at.store(left - 1, Ordering::SeqCst);
        if left == 1 {
            return Err(StoreError::Injected);
        }
        Ok(())
    }

    /// `FOR UPDATE` where the database has row locks (PostgreSQL); an SQLite write
    /// transaction holds the whole file already.
    pub(crate) fn lock_rows(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "",
            Dialect::Postgres => "FOR UPDATE",
        }
    }

    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }

    /// Brings the schema up to date. A schema already current (every start but the
    /// first after an upgrade) costs one read, without the write lock or the migrators'
    /// lock that several workers starting at once would queue on.
    async fn migrate(&self) -> Result<(), StoreError> {
        let current = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            .fetch_one(&self.pool)
            .await
            .and_then(|row| row.try_get::<i64, _>(0));
        if matches!(current, Ok(version) if version >= MIGRATIONS.len() as i64) {
            return Ok(());
        }
        let mut tx = self.begin_write(&self.pool).await?;
        if self.dialect == Dialect::Postgres {
            // One migrator at a time when several workers start together.
            sqlx::query("SELECT pg_advisory_xact_lock(7262111)")
                .execute(&mut *tx)
                .await?;
        }
        tx.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
            .await?;
        let current: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        for (version, sql) in MIGRATIONS.iter().enumerate() {
            let version = version as i64 + 1;
            if version <= current {
                continue;
            }
            let sql = self.translate_ddl(sql);
            for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                tx.execute(AssertSqlSafe(statement.to_string())).await?;
            }
            sqlx::query("INSERT INTO schema_version (version) VALUES ($1)")
                .bind(version)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    fn translate_ddl(&self, sql: &str) -> String {
        match self.dialect {
            Dialect::Sqlite => sql.replace("ID_PRIMARY_KEY", "INTEGER PRIMARY KEY AUTOINCREMENT"),
            Dialect::Postgres => sql
                .replace(
                    "ID_PRIMARY_KEY",
                    "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
                )
                .replace("BLOB", "BYTEA"),
        }
    }

    /// `FOR UPDATE SKIP LOCKED` where the database has it (PostgreSQL); SQLite runs
    /// each statement alone, which gives the same exclusivity.
    pub(crate) fn skip_locked(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "",
            Dialect::Postgres => "FOR UPDATE SKIP LOCKED",
        }
    }
}

/// Seconds since the Unix epoch: every time in the database, the same in both dialects.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch: a pass's timings, which last less than a second
/// for a small mailbox.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A PostgreSQL URL that names no `sslmode` and a server on this machine (loopback or
/// a Unix socket) gets `sslmode=disable`: traffic that never leaves the machine gains
/// nothing from TLS, and its handshake cost every command ~0.15 s (sqlx's client writes
/// its handshake records without TCP_NODELAY, so each round trip waits out the
/// server's delayed acknowledgement). Any other server keeps sqlx's default (TLS when
/// the server offers it), and an explicit `sslmode` is always kept.
fn without_loopback_tls(url: &str) -> String {
    if url.contains("sslmode=") {
        return url.to_string();
    }
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    };
    let socket = url.contains("host=/") || url.contains("host=%2F");
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !(loopback || (host.is_empty() && socket)) {
        return url.to_string();
    }
    let joiner = if url.contains('?') { '&' } else { '?' };
    format!("{url}{joiner}sslmode=disable")
}

fn redact_url(url: &str) -> String {
    match url.split_once('@') {
        Some((scheme_user, host)) if scheme_user.contains("://") => {
            let scheme = scheme_user.split("://").next().unwrap_or("");
            format!("{scheme}://…@{host}")
        }
        _ => url.to_string(),
    }
}

/// The schema, one entry per version. `ID_PRIMARY_KEY` and `BLOB` are translated per
/// dialect; everything else is common SQL.
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE IF NOT EXISTS items (
    mailbox TEXT NOT NULL,
    source_folder TEXT NOT NULL,
    source_uidvalidity BIGINT NOT NULL,
    source_uid BIGINT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('appending', 'copied', 'failed')),
    dest_folder TEXT,
    dest_uidvalidity BIGINT,
    dest_uid BIGINT,
    content_key TEXT NOT NULL,
    message_id TEXT,
    subject TEXT,
    size BIGINT NOT NULL,
    reason TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (mailbox, source_folder, source_uidvalidity, source_uid)
);
CREATE INDEX IF NOT EXISTS items_by_dest ON items (mailbox, dest_folder, dest_uidvalidity);
CREATE TABLE users (
    id ID_PRIMARY_KEY,
    email TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);
CREATE TABLE projects (
    id ID_PRIMARY_KEY,
    owner_id BIGINT NOT NULL REFERENCES users (id),
    name TEXT NOT NULL,
    source TEXT NOT NULL,
    dest TEXT NOT NULL,
    settings TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (owner_id, name)
);
CREATE TABLE mailboxes (
    id ID_PRIMARY_KEY,
    project_id BIGINT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    source_email TEXT NOT NULL,
    source_login TEXT NOT NULL,
    source_secret BLOB,
    dest_email TEXT NOT NULL,
    dest_login TEXT NOT NULL,
    dest_secret BLOB,
    status TEXT NOT NULL,
    last_pass TEXT,
    copied BIGINT NOT NULL DEFAULT 0,
    already_present BIGINT NOT NULL DEFAULT 0,
    skipped BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    bytes_copied BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    updated_at BIGINT NOT NULL,
    UNIQUE (project_id, source_email),
    UNIQUE (project_id, dest_email)
);
CREATE TABLE passes (
    id ID_PRIMARY_KEY,
    mailbox_id BIGINT NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    worker TEXT,
    lease_until BIGINT NOT NULL DEFAULT 0,
    not_before BIGINT NOT NULL DEFAULT 0,
    attempts BIGINT NOT NULL DEFAULT 0,
    stop_requested BIGINT NOT NULL DEFAULT 0,
    messages_total BIGINT NOT NULL DEFAULT 0,
    messages_done BIGINT NOT NULL DEFAULT 0,
    bytes_total BIGINT NOT NULL DEFAULT 0,
    bytes_done BIGINT NOT NULL DEFAULT 0,
    current_folder TEXT,
    report TEXT,
    error TEXT,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT
);
CREATE INDEX passes_by_state ON passes (state, not_before);
CREATE INDEX passes_by_mailbox ON passes (mailbox_id);
CREATE TABLE host_slots (
    host TEXT NOT NULL,
    slot BIGINT NOT NULL,
    pass_id BIGINT,
    lease_until BIGINT NOT NULL,
    PRIMARY KEY (host, slot)
)
",
    "
CREATE TABLE source_ids (
    mailbox TEXT NOT NULL,
    folder TEXT NOT NULL,
    source_key TEXT NOT NULL,
    uid BIGINT NOT NULL,
    PRIMARY KEY (mailbox, folder, source_key)
)
",
    // The portal: login links and sessions (hashes only), the finished mark, and which
    // ended passes a project's contact was told about. Passes that ended before this
    // version count as told, so upgrading sends no burst of old news.
    "
CREATE TABLE login_tokens (
    token_hash TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE TABLE sessions (
    session_hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
ALTER TABLE projects ADD COLUMN finished_at BIGINT;
CREATE TABLE project_notifications (
    project_id BIGINT PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
    notified_through BIGINT NOT NULL,
    notified_at BIGINT NOT NULL
);
INSERT INTO project_notifications (project_id, notified_through, notified_at)
    SELECT m.project_id, MAX(s.id), 0 FROM passes s JOIN mailboxes m ON m.id = s.mailbox_id
    GROUP BY m.project_id
",
    // Which pass wrote a ledger row's intent (so a pass's counts cover every attempt
    // of it), and which ended passes the contact was told about, one by one. Passes
    // already covered by a project notification count as told.
    "
ALTER TABLE items ADD COLUMN pass_id BIGINT;
CREATE INDEX items_by_pass ON items (pass_id);
ALTER TABLE passes ADD COLUMN notified_at BIGINT;
UPDATE passes SET notified_at = 0 WHERE state NOT IN ('queued', 'running')
    AND id <= COALESCE((SELECT n.notified_through FROM project_notifications n
        JOIN mailboxes m ON m.project_id = n.project_id WHERE m.id = passes.mailbox_id), 0)
",
    // Whether the destination stored the copies of a mailbox's passes byte for byte
    // (1), changed them (0), or never said (NULL).
    "
ALTER TABLE mailboxes ADD COLUMN dest_byte_exact BIGINT
",
    // OAuth2 grants (`mailmove auth login`): a refresh token per sign-in profile and
    // account, sealed by the caller.
    "
CREATE TABLE oauth_grants (
    profile TEXT NOT NULL,
    account TEXT NOT NULL,
    refresh_token BLOB NOT NULL,
    scope TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (profile, account)
)
",
    // Sessions end after an idle time as well as at their expiry, and all of a user's
    // at once ("log out everywhere"); login requests are counted here, so every portal
    // process sharing the database applies one limit.
    "
ALTER TABLE sessions ADD COLUMN last_seen_at BIGINT NOT NULL DEFAULT 0;
UPDATE sessions SET last_seen_at = created_at;
CREATE INDEX sessions_by_user ON sessions (user_id);
CREATE TABLE login_limits (
    limit_key TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    hits BIGINT NOT NULL
)
",
    // The scheduler: a pass's times in milliseconds, each state its own (queued since,
    // waiting for a host slot since, first run, this run, earlier runs), and the
    // indexes the claim and the ends of passes read host slots and passes by.
    "
ALTER TABLE passes ADD COLUMN queued_ms BIGINT;
ALTER TABLE passes ADD COLUMN waiting_since_ms BIGINT;
ALTER TABLE passes ADD COLUMN started_ms BIGINT;
ALTER TABLE passes ADD COLUMN run_started_ms BIGINT;
ALTER TABLE passes ADD COLUMN running_ms BIGINT NOT NULL DEFAULT 0;
CREATE INDEX host_slots_by_pass ON host_slots (pass_id);
CREATE INDEX host_slots_by_lease ON host_slots (lease_until)
",
];

/// Creating and dropping whole databases: for tests and for first-time setup.
impl Db {
    /// A connection to a PostgreSQL server's maintenance database, without migrations.
    pub async fn open_admin(url: &str) -> Result<Db, StoreError> {
        install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await
            .map_err(|source| StoreError::Open {
                path: redact_url(url),
                source,
            })?;
        Ok(Db {
            writer: pool.clone(),
            pool,
            dialect: Dialect::Postgres,
            fail_at: Arc::default(),
            queue_limits: QueueLimits::default(),
            listen_url: None,
        })
    }

    pub async fn create_database(&self, name: &str) -> Result<(), StoreError> {
        check_identifier(name)?;
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn drop_database(&self, name: &str) -> Result<(), StoreError> {
        check_identifier(name)?;
        sqlx::query(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

fn check_identifier(name: &str) -> Result<(), StoreError> {
    if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(StoreError::BadUrl(format!("database name `{name}`")))
    }
}

#[cfg(test)]
mod tests {
    use super::without_loopback_tls;

    #[test]
    fn tls_is_left_out_only_for_this_machine_and_only_when_unasked() {
        let cases = [
            (
                "postgres://u@127.0.0.1:5432/db",
                "postgres://u@127.0.0.1:5432/db?sslmode=disable",
            ),
            (
                "postgres://localhost/db?x=1",
                "postgres://localhost/db?x=1&sslmode=disable",
            ),
            (
                "postgresql://u:p@[::1]:5433/db",
                "postgresql://u:p@[::1]:5433/db?sslmode=disable",
            ),
            (
                "postgres:///db?host=/run/postgresql",
                "postgres:///db?host=/run/postgresql&sslmode=disable",
            ),
            (
                "postgres://u@127.0.0.1/db?sslmode=require",
                "postgres://u@127.0.0.1/db?sslmode=require",
            ),
            (
                "postgres://u@db.example:5432/db",
                "postgres://u@db.example:5432/db",
            ),
            ("postgres://u@10.0.0.5/db", "postgres://u@10.0.0.5/db"),
        ];
        for (given, expected) in cases {
            assert_eq!(without_loopback_tls(given), expected, "{given}");
        }
    }
}
