//! `serve` and `worker`: processes that run passes from the database.

use anyhow::{Context, Result};
use mailmove_secrets::Keyring;
use mailmove_store::{Db, Dialect};
use mailmove_worker::{Worker, WorkerConfig, default_worker_name};
use tokio::sync::watch;
use tracing::info;

use crate::OK;
use crate::args::{DatabaseArgs, RunnerArgs, ServeArgs, WorkerArgs, ensure_parent};

/// The database and the key that seals its secrets.
pub async fn open_database(args: &DatabaseArgs) -> Result<(Db, Keyring)> {
    let data_dir = args.data_dir()?;
    let url = args.url()?;
    if url.starts_with("sqlite:") {
        ensure_parent(&data_dir.join("mailmove.sqlite"))?;
        if let Some(path) = url.strip_prefix("sqlite://") {
            ensure_parent(std::path::Path::new(path))?;
        }
    }
    let db = Db::open(&url).await?;
    let keyring = Keyring::load_or_create(&data_dir).context(
        "the secret key (set MAILMOVE_SECRET_KEY on every machine that shares a database)",
    )?;
    Ok((db, keyring))
}

pub fn worker_config(args: &RunnerArgs) -> WorkerConfig {
    WorkerConfig {
        max_jobs: args.jobs.max(1),
        connections_per_host: args.connections_per_host.max(1),
        lease_seconds: i64::from(args.lease_seconds.max(3)),
        heartbeat: std::time::Duration::from_secs(u64::from(args.lease_seconds.max(3) / 3)),
        ..WorkerConfig::named(default_worker_name())
    }
}

pub async fn serve(args: ServeArgs) -> Result<u8> {
    let (db, keyring) = open_database(&args.database).await?;
    if args.smtp_url.is_some() {
        info!("--smtp-url is kept for the portal, which is not built yet");
    }
    eprintln!(
        "mailmove serve: the web portal ({}) is not built yet; running the passes of every project. Ctrl-C stops.",
        args.listen
    );
    if db.dialect() == Dialect::Postgres {
        eprintln!(
            "With PostgreSQL, passes run in `mailmove worker` processes; this process runs none."
        );
        tokio::signal::ctrl_c().await?;
        return Ok(OK);
    }
    run_worker(db, keyring, worker_config(&args.runner)).await
}

pub async fn worker(args: WorkerArgs) -> Result<u8> {
    let (db, keyring) = open_database(&args.database).await?;
    let config = worker_config(&args.runner);
    eprintln!(
        "mailmove worker {} running passes ({} at once). Ctrl-C stops.",
        config.name, config.max_jobs
    );
    run_worker(db, keyring, config).await
}

async fn run_worker(db: Db, keyring: Keyring, config: WorkerConfig) -> Result<u8> {
    let worker = Worker::new(db, keyring, config);
    let (stop, stopped) = watch::channel(false);
    let handle = tokio::spawn(async move { worker.run(stopped).await });
    tokio::signal::ctrl_c().await?;
    eprintln!("stopping: waiting for the running passes to reach a safe point");
    let _ = stop.send(true);
    handle.await?;
    Ok(OK)
}
