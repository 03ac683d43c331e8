//! Private, throw-away Courier-IMAP 5.0 servers from Debian's packages, with Debian's
//! default `/etc/courier/imapd` and `imapd-ssl` (folders are `INBOX.Name` with `.` as
//! separator, stored as Maildir++), users in a private authlib userdb checked for
//! real by `authdaemond`, plaintext LOGIN allowed and STARTTLS/implicit TLS with the
//! testkit's CA.
//!
//! Courier's login and authentication libraries have `/etc/courier` and
//! `/run/courier` compiled in, so each instance runs in its own mount namespace
//! (`unshare -m`) with its private directories bind-mounted over those two paths.
//! `courier-imap` conflicts with `dovecot-imapd` as a package, so the server runs
//! from the packages unpacked by scripts/test (see `daemon::unpacked_root`).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use md5::{Digest as _, Md5};

use crate::checker::Checker;
use crate::daemon::{self, Daemon, MAIL_GID, MAIL_UID};
use crate::{certs, ports, process};

const AUTHDAEMOND: &str = "/usr/lib/courier/courier-authlib/authdaemond";
const MAKEUSERDB: &str = "/usr/sbin/makeuserdb";
const USERDB_MODULE: &str = "/usr/lib/courier-authlib/libauthuserdb.so";
/// The paths compiled into Courier's libraries, covered per instance.
const ETC: &str = "/etc/courier";
const RUN: &str = "/run/courier";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const START_ATTEMPTS: usize = 5;

/// One running private Courier-IMAP (couriertcpd for IMAP and IMAPS, and authdaemond)
/// in its own mount namespace. Owns its temporary directory (`etc`, `run`,
/// `mail/<user>/Maildir`, logs) and the process group; dropping it kills the server
/// and deletes everything. Needs root.
///
/// ```no_run
/// use mailmove_testkit::{Courier, messages};
///
/// # fn main() -> anyhow::Result<()> {
/// let dest = Courier::start()?;
/// dest.add_user("alice", "secret")?;
/// let mut checker = dest.checker("alice", "secret")?;
/// checker.create("INBOX.Archive")?;
/// checker.append("INBOX.Archive", &[], None, &messages::simple("m@x", "Hi", 100))?;
/// // ... run the code under test against dest.host() / dest.imap_port() ...
/// let before = checker.uidvalidity("INBOX.Archive")?;
/// dest.delete_uid_db("alice", "INBOX.Archive")?;
/// let mut checker = dest.checker("alice", "secret")?;
/// assert!(checker.uidvalidity("INBOX.Archive")? > before);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Courier {
    /// Declared before `dir`, so the daemon is killed before its files go.
    daemon: Option<Daemon>,
    dir: tempfile::TempDir,
    root: PathBuf,
    imap_port: u16,
    imaps_port: u16,
    ca_pem: PathBuf,
    users_lock: Mutex<()>,
}

impl Courier {
    /// Starts a private instance and blocks until its IMAP port greets. Fails, saying
    /// what to install, when Courier is not unpacked or authlib is not installed.
    pub fn start() -> Result<Courier> {
        let root = daemon::unpacked_root(
            "Courier-IMAP",
            &[
                "usr/sbin/couriertcpd",
                "usr/bin/couriertls",
                "usr/bin/imapd",
                "usr/lib/courier/courier/imaplogin",
                "etc/courier/imapd",
                "etc/courier/imapd-ssl",
            ],
            &[AUTHDAEMOND, MAKEUSERDB, USERDB_MODULE, "/usr/bin/unshare"],
        )?;
        // The mount points; empty directories on the host, covered in each instance.
        for path in [ETC, RUN] {
            fs::create_dir_all(path).with_context(|| format!("creating the mount point {path}"))?;
        }
        let dir = tempfile::Builder::new()
            .prefix("cu")
            .tempdir_in("/tmp")
            .context("creating the instance directory under /tmp")?;
        process::set_mode(dir.path(), 0o755)?;
        for sub in ["etc", "run/authdaemon", "mail"] {
            daemon::mkdir(&dir.path().join(sub), 0o755)?;
        }
        let etc = dir.path().join("etc");
        // Debian's configuration files as shipped; start.sh overrides what an
        // instance must (address, ports, certificate, paths under /run/courier).
        for name in ["imapd", "imapd-ssl"] {
            fs::copy(root.join("etc/courier").join(name), etc.join(name))
                .with_context(|| format!("copying Debian's /etc/courier/{name}"))?;
        }
        fs::write(
            etc.join("authdaemonrc"),
            "authmodulelist=\"authuserdb\"\ndaemons=5\nauthdaemonvar=/run/courier/authdaemon\n\
             DEBUG_LOGIN=0\nDEFAULTOPTIONS=\"\"\nLOGGEROPTS=\"\"\n",
        )
        .context("writing authdaemonrc")?;
        let userdb = etc.join("userdb");
        fs::write(&userdb, "").context("writing userdb")?;
        process::set_mode(&userdb, 0o600)?;

        let certs = certs::generate()?;
        let ca_pem = dir.path().join("ca.pem");
        fs::write(&ca_pem, &certs.ca_pem).context("writing ca.pem")?;
        // couriertls reads the key and the certificate from one file.
        let pem = etc.join("imapd.pem");
        fs::write(
            &pem,
            format!("{}{}", certs.server_key_pem, certs.server_cert_pem),
        )
        .context("writing imapd.pem")?;
        process::set_mode(&pem, 0o600)?;

        let mut courier = Courier {
            daemon: None,
            dir,
            root,
            imap_port: 0,
            imaps_port: 0,
            ca_pem,
            users_lock: Mutex::new(()),
        };
        courier.in_namespace(&[MAKEUSERDB])?;
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            courier.imap_port = ports::free_port();
            courier.imaps_port = ports::free_port();
            courier.write_start_script()?;
            match courier.spawn_and_wait() {
                Ok(()) => return Ok(courier),
                Err(error) => {
                    // Another process may have bound a port between the probe and
                    // couriertcpd's bind; anything else is a real failure.
                    let collided = courier.log().contains("Address already in use");
                    courier.daemon = None;
                    if !collided {
                        return Err(error);
                    }
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("courier did not start")))
            .context("courier kept colliding with other processes' ports")
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

    /// The instance's private directory (`etc` is its `/etc/courier`, mail is under
    /// `mail/<user>/Maildir`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The user's Maildir (`INBOX`; other folders are `.Name` inside it).
    pub fn maildir(&self, user: &str) -> PathBuf {
        self.dir.path().join("mail").join(user).join("Maildir")
    }

    /// Adds a user to the private userdb (password stored as `{MD5}`, checked by
    /// authlib), or changes its password, and creates its empty Maildir.
    pub fn add_user(&self, user: &str, password: &str) -> Result<()> {
        daemon::check_user(user, password)?;
        let _guard = self.users_lock.lock().unwrap_or_else(|e| e.into_inner());
        let home = self.dir.path().join("mail").join(user);
        let maildir = home.join("Maildir");
        for sub in ["cur", "new", "tmp"] {
            daemon::mkdir(&maildir.join(sub), 0o700)?;
        }
        daemon::give_to_mail_user(&home)?;

        let hash = STANDARD.encode(Md5::digest(password.as_bytes()));
        let userdb = self.dir.path().join("etc/userdb");
        let old = fs::read_to_string(&userdb).context("reading userdb")?;
        let mut text: String = old
            .lines()
            .filter(|line| line.split('\t').next() != Some(user))
            .map(|line| format!("{line}\n"))
            .collect();
        let _ = writeln!(
            text,
            "{user}\tuid={MAIL_UID}|gid={MAIL_GID}|home={}|systempw={{MD5}}{hash}",
            home.display()
        );
        fs::write(&userdb, text).context("writing userdb")?;
        // makeuserdb compiles /etc/courier/userdb into the .dat files authuserdb
        // reads (and re-opens when they change).
        self.in_namespace(&[MAKEUSERDB]).map(|_| ())
    }

    /// A logged-in plaintext IMAP connection for seeding and checking mailboxes.
    pub fn checker(&self, user: &str, password: &str) -> Result<Checker> {
        Checker::connect(self.host(), self.imap_port, user, password)
            .with_context(|| format!("checker login as {user} on Courier"))
    }

    /// What couriertcpd, imapd and authdaemond wrote to stderr (logins, errors).
    pub fn log(&self) -> String {
        daemon::read_logs(&[self.dir.path().join("stderr.log")])
    }

    /// Deletes `folder`'s `courierimapuiddb` (the folder's IMAP name, `INBOX` or
    /// `INBOX.Sub`), which is what Courier does itself when the file is lost or
    /// damaged: at the next access the messages are numbered again from 1 under a
    /// new UIDVALIDITY. Waits first until the new UIDVALIDITY (from the clock, in
    /// seconds) cannot equal the old one.
    pub fn delete_uid_db(&self, user: &str, folder: &str) -> Result<()> {
        let maildir = self.maildir(user);
        let dir = if folder.eq_ignore_ascii_case("INBOX") {
            maildir
        } else {
            match folder.get(..6) {
                Some(prefix) if prefix.eq_ignore_ascii_case("INBOX.") => {
                    maildir.join(format!(".{}", &folder[6..]))
                }
                _ => bail!("{folder:?} is not INBOX or under INBOX. (Courier's namespace)"),
            }
        };
        let uiddb = dir.join("courierimapuiddb");
        let modified = fs::metadata(&uiddb)
            .and_then(|m| m.modified())
            .with_context(|| format!("reading {}", uiddb.display()))?;
        // The UIDVALIDITY was chosen no later than the file's last write.
        let next_second = modified + Duration::from_secs(1);
        while SystemTime::now() < next_second {
            sleep(Duration::from_millis(50));
        }
        fs::remove_file(&uiddb).with_context(|| format!("removing {}", uiddb.display()))
    }

    /// Runs a program with this instance's directories over `/etc/courier` and
    /// `/run/courier`.
    fn in_namespace(&self, program: &[&str]) -> Result<String> {
        let d = self.dir.path();
        let script = format!(
            "mount --bind {etc} {ETC} && mount --bind {run} {RUN} && exec \"$@\"",
            etc = d.join("etc").display(),
            run = d.join("run").display(),
        );
        daemon::run(
            Command::new("unshare")
                .args(["-m", "--propagation", "private", "sh", "-c", &script, "sh"])
                .args(program),
        )
    }

    fn write_start_script(&self) -> Result<()> {
        let d = self.dir.path().display();
        let r = self.root.display();
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# Written by mailmove-testkit; runs inside `unshare -m`."
        );
        let _ = writeln!(s, "set -e");
        let _ = writeln!(s, "mount --bind {d}/etc {ETC}");
        let _ = writeln!(s, "mount --bind {d}/run {RUN}");
        let _ = writeln!(s, "{AUTHDAEMOND} &");
        // Like Debian's init scripts: every variable of both files exported.
        let _ = writeln!(s, "set -a");
        let _ = writeln!(s, ". {ETC}/imapd");
        let _ = writeln!(s, ". {ETC}/imapd-ssl");
        let _ = writeln!(s, "IMAP_STARTTLS=$IMAPDSTARTTLS");
        let _ = writeln!(s, "COURIERTLS={r}/usr/bin/couriertls");
        let _ = writeln!(s, "TLS_CERTFILE={ETC}/imapd.pem");
        let _ = writeln!(s, "TLS_CACHEFILE=");
        let tcpd = format!(
            "{r}/usr/sbin/couriertcpd -address=127.0.0.1 -maxprocs=$MAXDAEMONS \
             -maxperip=$MAXPERIP $TCPDOPTS"
        );
        let login = format!("{r}/usr/lib/courier/courier/imaplogin {r}/usr/bin/imapd $MAILDIRPATH");
        let _ = writeln!(
            s,
            "IMAP_TLS=1 {tcpd} {} $COURIERTLS -server -tcpd {login} &",
            self.imaps_port
        );
        let _ = writeln!(s, "exec {tcpd} {} {login}", self.imap_port);
        fs::write(self.dir.path().join("start.sh"), s).context("writing start.sh")
    }

    fn spawn_and_wait(&mut self) -> Result<()> {
        let d = self.dir.path();
        // A PID namespace too, with the shell as its init: couriertcpd puts itself
        // in a process group of its own, so killing ours would miss it, but nothing
        // outlives the namespace's init (and --kill-child takes the init down with
        // the unshare process).
        let mut command = Command::new("unshare");
        command
            .args([
                "-m",
                "--propagation",
                "private",
                "-p",
                "-f",
                "--kill-child",
                "sh",
            ])
            .arg(d.join("start.sh"));
        self.daemon = Some(Daemon::spawn(command, &d.join("stderr.log"), d)?);
        let socket = d.join("run/authdaemon/socket");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.daemon.as_mut().and_then(Daemon::exited) {
                bail!(
                    "courier exited ({status}) while starting; log:\n{}",
                    self.log()
                );
            }
            // The IMAPS listener runs in the background of start.sh, so its failure
            // to bind shows only in the log.
            if self.log().contains("Address already in use") {
                bail!("a port was taken; log:\n{}", self.log());
            }
            if socket.exists()
                && let Ok(greeting) = daemon::read_greeting(self.imap_port)
                && greeting.contains("Courier-IMAP")
                && daemon::accepts(self.imaps_port)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "courier did not greet on port {} within {READY_TIMEOUT:?}; log:\n{}",
                    self.imap_port,
                    self.log()
                );
            }
            sleep(Duration::from_millis(20));
        }
    }
}
