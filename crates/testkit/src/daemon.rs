//! What the Cyrus and Courier harnesses share: finding the server files unpacked from
//! Debian's packages, a daemon in its own process group that a watchdog kills if the
//! test process dies, and small file helpers.

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::process::{kill_group, set_mode, spawn_in_group, spawn_watchdog};

/// Mail processes run as nobody/nogroup, which exists on every Debian system.
pub(crate) const MAIL_UID: u32 = 65534;
pub(crate) const MAIL_GID: u32 = 65534;

/// Where scripts/test unpacks the server packages that conflict with Dovecot's;
/// overridable for machines that keep them elsewhere.
const ROOT_ENV: &str = "MAILMOVE_TESTKIT_SERVERS";
const ROOT_DEFAULT: &str = "/var/cache/mailmove-testkit/root";

/// The directory the conflicting packages (`cyrus-common`, `cyrus-imapd`,
/// `courier-base`, `courier-imap`) were unpacked into with `dpkg-deb -x`, checked
/// for the files `needed` (relative paths); the error says how to install them.
pub(crate) fn unpacked_root(server: &str, needed: &[&str], system: &[&str]) -> Result<PathBuf> {
    let root = std::env::var_os(ROOT_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(ROOT_DEFAULT));
    let missing: Vec<String> = needed
        .iter()
        .map(|relative| root.join(relative))
        .chain(system.iter().map(PathBuf::from))
        .filter(|path| !path.exists())
        .map(|path| path.display().to_string())
        .collect();
    if !missing.is_empty() {
        bail!(
            "{server} is not installed for the tests: missing {}. Run scripts/test (its \
             Cyrus/Courier block installs the libraries with apt and unpacks the server \
             packages, which conflict with dovecot-imapd, into {ROOT_DEFAULT} with \
             apt-get download + dpkg-deb -x), or set {ROOT_ENV} to such a directory",
            missing.join(", ")
        );
    }
    Ok(root)
}

/// A server's process group, killed (SIGKILL) on drop, and by a watchdog if the test
/// process dies without dropping it.
#[derive(Debug)]
pub(crate) struct Daemon {
    /// Always there until drop takes it.
    child: Option<Child>,
    watchdog: Option<Child>,
}

impl Daemon {
    /// Spawns `command` as the leader of a new process group, stdout and stderr
    /// appended to `log`. `dir` is removed by the watchdog after the kill.
    pub(crate) fn spawn(mut command: Command, log: &Path, dir: &Path) -> Result<Daemon> {
        let stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let stdout = stderr.try_clone().context("duplicating the log file")?;
        let program = command.get_program().to_string_lossy().into_owned();
        command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            // INTERNALDATEs come back in the server's zone; UTC makes them the same
            // on every machine.
            .env("TZ", "UTC");
        let child = spawn_in_group(&mut command).with_context(|| format!("spawning {program}"))?;
        let watchdog = spawn_watchdog(child.id(), dir);
        Ok(Daemon {
            child: Some(child),
            watchdog,
        })
    }

    /// The exit status if the group leader has exited.
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        kill_group(self.child.take(), self.watchdog.take());
    }
}

/// The first line a server sends on `port`, if it is an `* OK` greeting.
pub(crate) fn read_greeting(port: u16) -> Result<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    if !line.starts_with("* OK") {
        bail!("unexpected greeting {line:?}");
    }
    Ok(line)
}

/// Whether something accepts connections on the loopback `port` (for implicit-TLS
/// ports, whose greeting comes only after a handshake).
pub(crate) fn accepts(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// Runs a command to completion; fails with its output if it exits non-zero.
pub(crate) fn run(command: &mut Command) -> Result<String> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command
        .output()
        .with_context(|| format!("running {program}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        bail!("{program} failed ({}): {text}", output.status);
    }
    Ok(text)
}

/// A user name that is safe as a file name and in the servers' user databases
/// (no separators, no '.', which Cyrus's default hierarchy separator reserves).
pub(crate) fn check_user(user: &str, password: &str) -> Result<()> {
    if user.is_empty()
        || !user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        bail!("user name {user:?}: use ASCII letters, digits, '_' and '-'");
    }
    if password.is_empty() || password.contains(['\n', '\r', '\0', '|', '\t']) {
        bail!("password {password:?} cannot be stored in the user database");
    }
    Ok(())
}

pub(crate) fn mkdir(path: &Path, mode: u32) -> Result<()> {
    fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    set_mode(path, mode)
}

/// `chown -R nobody:nogroup`.
pub(crate) fn give_to_mail_user(path: &Path) -> Result<()> {
    run(Command::new("chown")
        .arg("-R")
        .arg(format!("{MAIL_UID}:{MAIL_GID}"))
        .arg(path))
    .map(|_| ())
}

/// Every file's text, each after a `--- name ---` line, for `log()`.
pub(crate) fn read_logs(files: &[PathBuf]) -> String {
    let mut text = String::new();
    for path in files {
        if let Ok(bytes) = fs::read(path)
            && !bytes.is_empty()
        {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            text.push_str(&format!("--- {} ---\n", name.unwrap_or_default()));
            text.push_str(&String::from_utf8_lossy(&bytes));
            if !text.ends_with('\n') {
                text.push('\n');
            }
        }
    }
    text
}
