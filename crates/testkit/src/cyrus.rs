//! Private, throw-away Cyrus IMAPd 3.6 servers from Debian's packages, with Debian's
//! default `imapd.conf` settings (`altnamespace: no`, `unixhierarchysep: no`: folders
//! are `INBOX.Name` with `.` as separator; `munge8bit` on; INBOX created at the first
//! login), users in a private sasldb checked for real, plaintext LOGIN allowed and
//! STARTTLS/implicit TLS with the testkit's CA.
//!
//! `cyrus-imapd` conflicts with `dovecot-imapd` as a package, so the servers run from
//! the packages unpacked by scripts/test (see `daemon::unpacked_root`).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};

use crate::checker::Checker;
use crate::daemon::{self, Daemon};
use crate::{certs, ports, process};

const BIN: &str = "usr/lib/cyrus/bin";
const LIBS: &str = "usr/lib/x86_64-linux-gnu";
const SASLPASSWD: &str = "/usr/sbin/saslpasswd2";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const START_ATTEMPTS: usize = 3;

/// One running private Cyrus. Owns its temporary directory (configuration, sasldb,
/// spool, logs) and the master's process group; dropping it kills the server and
/// deletes everything. Needs root (the master drops to uid 65534).
///
/// ```no_run
/// use mailmove_testkit::{Cyrus, messages};
///
/// # fn main() -> anyhow::Result<()> {
/// let dest = Cyrus::start()?;
/// dest.add_user("alice", "secret")?;
/// let mut checker = dest.checker("alice", "secret")?;
/// checker.create("INBOX.Archive")?;
/// let uid = checker.append("INBOX.Archive", &[], None, &messages::simple("m@x", "Hi", 100))?;
/// // ... run the code under test against dest.host() / dest.imap_port() ...
/// let before = checker.uidvalidity("INBOX.Archive")?;
/// dest.reconstruct("alice", "INBOX.Archive")?;
/// let mut checker = dest.checker("alice", "secret")?;
/// assert_ne!(checker.uidvalidity("INBOX.Archive")?, before);
/// assert_eq!(checker.fetch_all("INBOX.Archive")?[0].uid, uid);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Cyrus {
    /// Declared before `dir`, so the daemon is killed before its files go.
    daemon: Option<Daemon>,
    dir: tempfile::TempDir,
    root: PathBuf,
    /// Also the SASL realm of every user and part of the greeting.
    server_name: String,
    imap_port: u16,
    imaps_port: u16,
    ca_pem: PathBuf,
    users_lock: Mutex<()>,
}

impl Cyrus {
    /// Starts a private instance and blocks until its IMAP port greets with this
    /// instance's name. Fails, saying what to install, when Cyrus is not unpacked.
    pub fn start() -> Result<Cyrus> {
        let root = daemon::unpacked_root(
            "Cyrus IMAPd",
            &[
                "usr/lib/cyrus/bin/master",
                "usr/lib/cyrus/bin/imapd",
                "usr/lib/cyrus/bin/reconstruct",
            ],
            &[SASLPASSWD],
        )?;
        // Short, because Cyrus keeps unix sockets under it.
        let dir = tempfile::Builder::new()
            .prefix("cy")
            .tempdir_in("/tmp")
            .context("creating the instance directory under /tmp")?;
        process::set_mode(dir.path(), 0o755)?;
        let server_name = dir
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_else(|| "cy".to_string());
        for sub in ["config/log", "spool", "run/socket", "run/proc", "run/lock"] {
            daemon::mkdir(&dir.path().join(sub), 0o750)?;
        }
        let certs = certs::generate()?;
        let ca_pem = dir.path().join("ca.pem");
        fs::write(&ca_pem, &certs.ca_pem).context("writing ca.pem")?;
        fs::write(dir.path().join("server.pem"), &certs.server_cert_pem)
            .context("writing server.pem")?;
        let key = dir.path().join("server.key");
        fs::write(&key, &certs.server_key_pem).context("writing server.key")?;
        process::set_mode(&key, 0o600)?;

        let mut cyrus = Cyrus {
            daemon: None,
            dir,
            root,
            server_name,
            imap_port: 0,
            imaps_port: 0,
            ca_pem,
            users_lock: Mutex::new(()),
        };
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            // The master logs to syslog, so a port taken by another process between
            // the probe and the bind cannot be told from other failures: any failure
            // to greet is retried on fresh ports, a few times.
            cyrus.imap_port = ports::free_port();
            cyrus.imaps_port = ports::free_port();
            cyrus.write_config()?;
            daemon::give_to_mail_user(cyrus.dir.path())?;
            match cyrus.spawn_and_wait() {
                Ok(()) => return Ok(cyrus),
                Err(error) => {
                    cyrus.daemon = None;
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("cyrus did not start")))
    }

    /// Always `"127.0.0.1"`.
    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    /// Plaintext IMAP; STARTTLS is offered.
    pub fn imap_port(&self) -> u16 {
        self.imap_port
    }

    /// IMAP over implicit TLS.
    pub fn imaps_port(&self) -> u16 {
        self.imaps_port
    }

    /// The CA certificate (PEM) that signed the server certificate (SANs `localhost`
    /// and `127.0.0.1`).
    pub fn ca_pem(&self) -> &Path {
        &self.ca_pem
    }

    /// The instance's private directory (`imapd.conf`, `cyrus.conf`, `spool`, ...).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Adds a user to the private sasldb, or changes its password; the user's INBOX
    /// is created by Cyrus at the first login. Each session of the user is
    /// recorded (the whole protocol exchange) and shown by `log()`.
    pub fn add_user(&self, user: &str, password: &str) -> Result<()> {
        daemon::check_user(user, password)?;
        let _guard = self.users_lock.lock().unwrap_or_else(|e| e.into_inner());
        let sasldb = self.dir.path().join("sasldb2");
        let mut command = Command::new(SASLPASSWD);
        command
            .arg("-p")
            .arg("-c")
            .arg("-f")
            .arg(&sasldb)
            .arg("-u")
            .arg(&self.server_name)
            .arg(user);
        run_with_stdin(&mut command, password.as_bytes())?;
        // Cyrus reads the sasldb as the unprivileged user.
        daemon::give_to_mail_user(&sasldb)?;
        // Cyrus's protocol telemetry: a directory named after the user turns it on.
        let telemetry = self.dir.path().join("config/log").join(user);
        daemon::mkdir(&telemetry, 0o755)?;
        daemon::give_to_mail_user(&telemetry)
    }

    /// A logged-in plaintext IMAP connection for seeding and checking mailboxes.
    pub fn checker(&self, user: &str, password: &str) -> Result<Checker> {
        Checker::connect(self.host(), self.imap_port, user, password)
            .with_context(|| format!("checker login as {user} on Cyrus"))
    }

    /// What the master wrote to stderr, then every recorded IMAP session (Cyrus logs
    /// everything else to syslog, which tests do not have).
    pub fn log(&self) -> String {
        let mut files = vec![self.dir.path().join("stderr.log")];
        let telemetry = self.dir.path().join("config/log");
        if let Ok(users) = fs::read_dir(&telemetry) {
            let mut sessions: Vec<PathBuf> = users
                .flatten()
                .filter_map(|user| fs::read_dir(user.path()).ok())
                .flat_map(|entries| entries.flatten().map(|e| e.path()))
                .collect();
            sessions.sort();
            files.extend(sessions);
        }
        daemon::read_logs(&files)
    }

    /// Rebuilds `folder` (its IMAP name, `INBOX` or `INBOX.Sub`) of `user` with
    /// Cyrus's `reconstruct` after removing its `cyrus.index`, which is what an
    /// administrator repairing a mailbox does: the messages keep their UIDs and the
    /// folder gets a new UIDVALIDITY. Returns reconstruct's output.
    pub fn reconstruct(&self, user: &str, folder: &str) -> Result<String> {
        let internal = internal_name(user, folder)?;
        let path = self.cyrus_tool("mbpath", &["-q", &internal])?;
        let index = PathBuf::from(path.trim()).join("cyrus.index");
        // A new UIDVALIDITY is the clock in seconds; the old one was chosen no later
        // than the index's last write, so wait until the clock has moved past it.
        let modified = fs::metadata(&index)
            .and_then(|m| m.modified())
            .with_context(|| format!("reading {}", index.display()))?;
        while SystemTime::now() < modified + Duration::from_secs(1) {
            sleep(Duration::from_millis(50));
        }
        fs::remove_file(&index).with_context(|| format!("removing {}", index.display()))?;
        let output = self.cyrus_tool("reconstruct", &[&internal])?;
        if !output.contains("Wrong uidvalidity") {
            bail!("reconstruct of {internal} kept the UIDVALIDITY:\n{output}");
        }
        Ok(output)
    }

    /// Runs one of Cyrus's command-line tools on this instance's configuration.
    fn cyrus_tool(&self, tool: &str, args: &[&str]) -> Result<String> {
        daemon::run(
            Command::new(self.root.join(BIN).join(tool))
                .arg("-C")
                .arg(self.config_path())
                .args(args)
                .env("LD_LIBRARY_PATH", self.root.join(LIBS)),
        )
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("imapd.conf")
    }

    fn write_config(&self) -> Result<()> {
        let d = self.dir.path().display();
        let bin = self.root.join(BIN);
        let bin = bin.display();
        let conf = self.config_path();
        let conf = conf.display();
        let mut c = String::new();
        // Debian's /etc/imapd.conf, with every path moved into the instance and the
        // lines that only concern other services (news, sieve, http) left out.
        let _ = writeln!(c, "configdirectory: {d}/config");
        let _ = writeln!(c, "proc_path: {d}/run/proc");
        let _ = writeln!(c, "mboxname_lockpath: {d}/run/lock");
        let _ = writeln!(c, "defaultpartition: default");
        let _ = writeln!(c, "partition-default: {d}/spool");
        let _ = writeln!(c, "altnamespace: no");
        let _ = writeln!(c, "unixhierarchysep: no");
        let _ = writeln!(c, "allowanonymouslogin: no");
        let _ = writeln!(c, "autocreate_quota: 0");
        let _ = writeln!(c, "umask: 077");
        let _ = writeln!(c, "hashimapspool: true");
        let _ = writeln!(c, "allowplaintext: yes");
        let _ = writeln!(c, "sasl_pwcheck_method: auxprop");
        let _ = writeln!(c, "sasl_auto_transition: no");
        let _ = writeln!(c, "tls_client_ca_dir: /etc/ssl/certs");
        let _ = writeln!(c, "tls_session_timeout: 1440");
        let _ = writeln!(c, "lmtpsocket: {d}/run/socket/lmtp");
        let _ = writeln!(c, "idlesocket: {d}/run/socket/idle");
        let _ = writeln!(c, "notifysocket: {d}/run/socket/notify");
        let _ = writeln!(c, "syslog_prefix: {}", self.server_name);
        // The instance's own additions.
        let _ = writeln!(c, "servername: {}", self.server_name);
        let _ = writeln!(c, "sasl_auxprop_plugin: sasldb");
        let _ = writeln!(c, "sasl_sasldb_path: {d}/sasldb2");
        let _ = writeln!(c, "cyrus_user: nobody");
        let _ = writeln!(c, "cyrus_group: nogroup");
        let _ = writeln!(c, "tls_server_cert: {d}/server.pem");
        let _ = writeln!(c, "tls_server_key: {d}/server.key");
        fs::write(self.config_path(), c).context("writing imapd.conf")?;

        let mut m = String::new();
        let _ = writeln!(
            m,
            "START {{\n  recover cmd=\"{bin}/ctl_cyrusdb -C {conf} -r\"\n}}"
        );
        let _ = writeln!(m, "SERVICES {{");
        let _ = writeln!(
            m,
            "  imap cmd=\"{bin}/imapd -C {conf} -U 30\" listen=\"127.0.0.1:{}\" prefork=0 maxchild=100",
            self.imap_port
        );
        let _ = writeln!(
            m,
            "  imaps cmd=\"{bin}/imapd -s -C {conf} -U 30\" listen=\"127.0.0.1:{}\" prefork=0 maxchild=100",
            self.imaps_port
        );
        let _ = writeln!(m, "}}\nEVENTS {{\n}}");
        fs::write(self.dir.path().join("cyrus.conf"), m).context("writing cyrus.conf")
    }

    fn spawn_and_wait(&mut self) -> Result<()> {
        let d = self.dir.path();
        let mut command = Command::new(self.root.join(BIN).join("master"));
        command
            .arg("-D")
            .arg("-C")
            .arg(self.config_path())
            .arg("-M")
            .arg(d.join("cyrus.conf"))
            .arg("-p")
            .arg(d.join("run/master.pid"))
            .env("LD_LIBRARY_PATH", self.root.join(LIBS));
        self.daemon = Some(Daemon::spawn(command, &d.join("stderr.log"), d)?);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.daemon.as_mut().and_then(Daemon::exited) {
                bail!(
                    "cyrus master exited ({status}) while starting; log:\n{}",
                    self.log()
                );
            }
            if let Ok(greeting) = daemon::read_greeting(self.imap_port)
                && greeting.contains(&self.server_name)
                && daemon::accepts(self.imaps_port)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "cyrus did not greet on port {} within {READY_TIMEOUT:?}; log:\n{}",
                    self.imap_port,
                    self.log()
                );
            }
            sleep(Duration::from_millis(20));
        }
    }
}

/// Cyrus's internal name of a user's folder with Debian's defaults: `INBOX` is
/// `user.<user>`, `INBOX.Sub` is `user.<user>.Sub`.
fn internal_name(user: &str, folder: &str) -> Result<String> {
    if folder.eq_ignore_ascii_case("INBOX") {
        return Ok(format!("user.{user}"));
    }
    match folder.get(..6) {
        Some(prefix) if prefix.eq_ignore_ascii_case("INBOX.") => {
            Ok(format!("user.{user}.{}", &folder[6..]))
        }
        _ => bail!("{folder:?} is not INBOX or under INBOX. (Cyrus with Debian's defaults)"),
    }
}

fn run_with_stdin(command: &mut Command, input: &[u8]) -> Result<String> {
    use std::io::Write as _;
    use std::process::Stdio;
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {program}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).context("writing the password")?;
    }
    let output = child.wait_with_output().context("waiting")?;
    if !output.status.success() {
        bail!(
            "{program} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::internal_name;

    #[test]
    fn folder_names_map_to_cyrus_internal_names() {
        assert_eq!(internal_name("alice", "INBOX").unwrap(), "user.alice");
        assert_eq!(
            internal_name("alice", "INBOX.A.B").unwrap(),
            "user.alice.A.B"
        );
        assert!(internal_name("alice", "Sent").is_err());
    }
}
