//! `serve` (the web portal, and with SQLite the passes too) and `worker`: the
//! long-running processes, around the database.

use anyhow::{Context, Result};
use mailmove_net::NetworkPolicy;
use mailmove_portal::{AppState, Mailer, PortalConfig};
use mailmove_projects::Grants;
use mailmove_secrets::Keyring;
use mailmove_store::{Db, Dialect, QueueLimits, RunLimits};
use mailmove_worker::{SignInProfiles, Worker, WorkerConfig, default_worker_name};
use tokio::sync::watch;

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

/// A worker as `args` say, connecting where `network` allows (the portal's passes:
/// public addresses and the operator's networks; `project run --wait`: anywhere),
/// signing mailboxes in with the operator's OAuth2 profiles where a project says so.
pub fn worker_config(
    args: &RunnerArgs,
    network: NetworkPolicy,
    database: &DatabaseArgs,
    (db, keyring): (&Db, &Keyring),
) -> Result<WorkerConfig> {
    let profiles = mailmove_oauth::Profiles::load(&profiles_file(args, database)?)?;
    let sign_ins = SignInProfiles::new(profiles, Grants::new(db.clone(), keyring.clone()));
    Ok(WorkerConfig {
        max_jobs: args.jobs.max(1),
        connections_per_host: args.connections_per_host.max(1),
        lease_seconds: i64::from(args.lease_seconds.max(3)),
        heartbeat: std::time::Duration::from_secs(u64::from(args.lease_seconds.max(3) / 3)),
        limits: RunLimits {
            per_user: args.max_running_per_user.max(1),
            per_project: args.max_running_per_project.max(1),
        },
        stall_timeout: std::time::Duration::from_secs(u64::from(args.stall_seconds.max(10))),
        // Passes belong to projects, whose failures people read in the portal.
        advice: mailmove_portal::advice,
        network,
        sign_ins: Some(std::sync::Arc::new(sign_ins)),
        ..WorkerConfig::named(default_worker_name())
    })
}

/// The operator's sign-in profiles: `--profiles FILE`, else `oauth.toml` in the data
/// directory.
fn profiles_file(args: &RunnerArgs, database: &DatabaseArgs) -> Result<std::path::PathBuf> {
    match &args.profiles {
        Some(path) => Ok(path.clone()),
        None => Ok(database.data_dir()?.join("oauth.toml")),
    }
}

/// The web portal on `--listen`, and with SQLite the passes of every project in this
/// process too (with PostgreSQL they run in `mailmove worker` processes).
pub async fn serve(args: ServeArgs) -> Result<u8> {
    let (db, keyring) = open_database(&args.database).await?;
    let db = db.with_queue_limits(QueueLimits {
        per_user: args.max_queued_per_user.max(1),
        per_project: args.max_queued_per_project.max(1),
    });
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen ADDR)", args.listen))?;
    let address = listener.local_addr()?;
    let mut config = PortalConfig::for_listen(address);
    args.guard.apply(&mut config);
    // The same profiles as the passes: mailbox users sign in through links for them.
    config.sign_in_profiles = std::sync::Arc::new(mailmove_oauth::Profiles::load(&profiles_file(
        &args.runner,
        &args.database,
    )?)?);
    if let Some(url) = &args.public_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            anyhow::bail!("--public-url {url}: write it as http://HOST[:PORT] or https://HOST");
        }
        config = config.with_public_url(url);
    }
    config.tls_ca = args
        .tls_ca
        .as_deref()
        .map(|path| {
            std::path::absolute(path).with_context(|| format!("--tls-ca {}", path.display()))
        })
        .transpose()?;
    let defaults = config.discovery.clone();
    config.discovery = mailmove_discover::Settings {
        policy: args.network.policy(),
        conventional_ports_only: true,
        ..args.discovery.settings(defaults.tls)?
    };
    let mailer = match &args.smtp_url {
        Some(url) => Mailer::smtp(url, &args.smtp_from).context("--smtp-url")?,
        None => Mailer::Log,
    };
    eprintln!(
        "mailmove serve: the portal is at {} ({}). Ctrl-C stops.",
        config.public_url,
        mailer.describe()
    );
    if config.secure_cookies && !config.public_url.starts_with("https://") {
        eprintln!(
            "warning: the portal listens beyond loopback, so its cookies are Secure and browsers \
             send them over HTTPS only: put it behind an HTTPS proxy and pass --public-url https://..."
        );
    }
    eprintln!("{}", args.network.describe());
    let state = AppState::new(db.clone(), keyring.clone(), mailer, config);
    let (stop, stopped) = watch::channel(false);
    let worker = if db.dialect() == Dialect::Postgres {
        eprintln!(
            "With PostgreSQL, passes run in `mailmove worker` processes; this process runs none."
        );
        None
    } else {
        let config = worker_config(
            &args.runner,
            args.network.policy(),
            &args.database,
            (&db, &keyring),
        )?;
        let worker = Worker::new(db, keyring, config);
        Some(tokio::spawn(async move { worker.run(stopped).await }))
    };
    let outcome = tokio::select! {
        served = mailmove_portal::serve(listener, state) => {
            served.context("the portal stopped")
        }
        signal = stop_signal() => signal,
    };
    if let Some(handle) = worker {
        eprintln!("stopping: the running passes go back to the queue");
        let _ = stop.send(true);
        handle.await?;
    }
    outcome.map(|()| OK)
}

pub async fn worker(args: WorkerArgs) -> Result<u8> {
    let (db, keyring) = open_database(&args.database).await?;
    let config = worker_config(
        &args.runner,
        args.network.policy(),
        &args.database,
        (&db, &keyring),
    )?;
    eprintln!(
        "mailmove worker {} running passes ({} at once). Ctrl-C or SIGTERM stops.",
        config.name, config.max_jobs
    );
    eprintln!("{}", args.network.describe());
    run_worker(db, keyring, config).await
}

async fn run_worker(db: Db, keyring: Keyring, config: WorkerConfig) -> Result<u8> {
    let worker = Worker::new(db, keyring, config);
    let (stop, stopped) = watch::channel(false);
    let handle = tokio::spawn(async move { worker.run(stopped).await });
    stop_signal().await?;
    eprintln!("stopping: the running passes go back to the queue");
    let _ = stop.send(true);
    handle.await?;
    Ok(OK)
}

/// Ctrl-C or SIGTERM (what service managers send).
async fn stop_signal() -> Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        signal = tokio::signal::ctrl_c() => signal?,
        _ = terminate.recv() => {}
    }
    Ok(())
}
