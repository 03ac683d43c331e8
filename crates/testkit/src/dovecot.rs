//! Private, throw-away Dovecot servers: each test gets its own daemon, ports, users and
//! mail, so tests run in parallel without seeing each other and a test can stop or
//! restart its server without disturbing the others.

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::net::TcpListener;
use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};

use crate::checker::Checker;
use crate::process::{self, set_mode};
use crate::{certs, ports};

/// Mail processes run as this uid/gid: Dovecot refuses to serve mail as root, and
/// nobody/nogroup exists on every Debian system.
const MAIL_UID: u32 = 65534;
const MAIL_GID: u32 = 65534;

/// Overridable so a machine with Dovecot elsewhere can still run the tests.
const DOVECOT_ENV: &str = "MAILMOVE_DOVECOT";
const DOVECOT_DEFAULT: &str = "/usr/sbin/dovecot";
const DOVEADM_DEFAULT: &str = "/usr/bin/doveadm";

/// Generous, because two-core CI machines run many instances at once.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const PORTS_FREE_TIMEOUT: Duration = Duration::from_secs(15);
/// A port collision with another test process is retried with fresh ports.
const START_ATTEMPTS: usize = 5;

/// How the private server looks to a client: its hierarchy, special-use folders and
/// limits. Everything else is fixed (plaintext login allowed, STARTTLS/STLS offered,
/// implicit-TLS ports, 100 connections per user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DovecotOptions {
    /// Hierarchy separator: `'/'` (stored as sdbox) or `'.'` (stored as Maildir++).
    pub separator: char,
    /// Courier style: the personal namespace has the prefix `INBOX` + separator, so
    /// folders are `INBOX.Sent` and so on.
    pub inbox_prefix: bool,
    /// (folder name, attribute) pairs, auto-created and subscribed. Names are given
    /// without the namespace prefix (a leading `INBOX.` is stripped when
    /// `inbox_prefix` is set) and use `separator` for hierarchy.
    pub special_use: Vec<(String, String)>,
    /// Per-user storage quota; an APPEND over it gets `NO [OVERQUOTA]`.
    pub quota_bytes: Option<u64>,
    /// Largest accepted message; a larger APPEND gets `NO [LIMIT]`.
    pub max_mail_size: Option<u64>,
    /// Offer COMPRESS=DEFLATE (the imap_zlib plugin).
    pub compress: bool,
    /// Also accept OAuth 2.0 bearer tokens (SASL XOAUTH2 and OAUTHBEARER), validated
    /// by introspection at an authorization server; passwords keep working for PLAIN
    /// and LOGIN. The token's subject (`sub`) must be the login name.
    pub oauth2: Option<DovecotOAuth2>,
    /// An administrator who logs in as any existing user: `user*master` with LOGIN,
    /// or SASL PLAIN with the user as authorization identity and the master as
    /// authentication identity.
    pub master_user: Option<MasterUser>,
    /// Names the server's certificate holds besides `localhost` and `127.0.0.1`
    /// (discovery tests reach it as `imap.example.test`).
    pub tls_names: Vec<String>,
}

/// Where Dovecot's `passdb oauth2` checks tokens (`introspection_mode = post`).
/// `OidcProvider::dovecot_oauth2` fills it in for the test provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DovecotOAuth2 {
    /// The introspection endpoint (RFC 7662), `http://` or `https://`.
    pub introspection_url: String,
    /// The client Dovecot authenticates as (HTTP Basic): letters, digits, `-._~`.
    pub client_id: String,
    pub client_secret: String,
    /// The CA that signed an `https://` endpoint's certificate; it must be readable
    /// by Dovecot's unprivileged auth process.
    pub ca_file: Option<PathBuf>,
    /// Scopes of which a token must carry one (Dovecot's `scope`), as Google wants
    /// `https://mail.google.com/`; `None` accepts any scope.
    pub required_scope: Option<String>,
    /// The OAuth mechanisms offered, as Dovecot names them: both by default; one
    /// alone shows how a client copes with a server offering only that one.
    pub mechanisms: String,
}

/// A master user's name and password (`auth_master_user_separator = *`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterUser {
    pub name: String,
    pub password: String,
}

impl Default for DovecotOptions {
    fn default() -> Self {
        DovecotOptions {
            separator: '/',
            inbox_prefix: false,
            special_use: [
                ("Sent", "\\Sent"),
                ("Drafts", "\\Drafts"),
                ("Trash", "\\Trash"),
                ("Junk", "\\Junk"),
            ]
            .into_iter()
            .map(|(name, attr)| (name.to_string(), attr.to_string()))
            .collect(),
            quota_bytes: None,
            max_mail_size: None,
            compress: false,
            oauth2: None,
            master_user: None,
            tls_names: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ports {
    imap: u16,
    imaps: u16,
    pop3: u16,
    pop3s: u16,
}

impl Ports {
    fn allocate() -> Ports {
        Ports {
            imap: ports::free_port(),
            imaps: ports::free_port(),
            pop3: ports::free_port(),
            pop3s: ports::free_port(),
        }
    }

    fn all(&self) -> [u16; 4] {
        [self.imap, self.imaps, self.pop3, self.pop3s]
    }
}

/// One running private Dovecot. Owns its temporary directory (config, certificates,
/// users, mail, logs) and the daemon's process group; dropping it kills the daemon
/// and deletes everything.
///
/// Needs root: the daemon drops privileges itself and the mail directory is handed
/// to uid 65534. Do not keep one in a `static`: statics are never dropped, so the
/// daemon would outlive the test process.
#[derive(Debug)]
pub struct Dovecot {
    /// Removed when dropped; `Drop::drop` has stopped the daemon by then.
    dir: tempfile::TempDir,
    instance_name: String,
    host: String,
    ports: Ports,
    ca_pem: PathBuf,
    child: Option<Child>,
    /// Kills the daemon if this test process dies without dropping us (SIGKILL,
    /// Ctrl-C, a `static`), so crashed test runs leave no servers behind.
    watchdog: Option<Child>,
    /// Serialises `add_user`, which rewrites passwd files.
    passwd_lock: Mutex<()>,
}

impl Dovecot {
    /// Starts a private instance and blocks until its IMAP port answers with this
    /// instance's greeting.
    pub fn start(options: DovecotOptions) -> Result<Dovecot> {
        validate(&options)?;
        // A short path under /tmp: Dovecot's unix sockets live in base_dir and
        // socket paths must stay under ~100 bytes, which a deep TMPDIR would break.
        let dir = tempfile::Builder::new()
            .prefix("mm")
            .tempdir_in("/tmp")
            .context("creating the instance directory under /tmp")?;
        // World-traversable, because auth and mail processes run unprivileged and
        // must reach the passwd file and the mail directory inside.
        set_mode(dir.path(), 0o755)?;
        let instance_name = dir
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "mm".to_string());

        for sub in ["run", "state"] {
            let path = dir.path().join(sub);
            fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
            set_mode(&path, 0o755)?;
        }
        let mail = dir.path().join("mail");
        fs::create_dir(&mail).with_context(|| format!("creating {}", mail.display()))?;
        chown(&mail, Some(MAIL_UID), Some(MAIL_GID)).with_context(|| {
            format!(
                "handing {} to uid {MAIL_UID} (the Dovecot harness must run as root)",
                mail.display()
            )
        })?;
        set_mode(&mail, 0o755)?;

        let certs = certs::generate_for(&options.tls_names)?;
        let ca_pem = dir.path().join("ca.pem");
        fs::write(&ca_pem, &certs.ca_pem).context("writing ca.pem")?;
        fs::write(dir.path().join("server.pem"), &certs.server_cert_pem)
            .context("writing server.pem")?;
        let key_path = dir.path().join("server.key");
        fs::write(&key_path, &certs.server_key_pem).context("writing server.key")?;
        // Only the root-owned config process reads the key.
        set_mode(&key_path, 0o600)?;

        // One passwd file per user: Dovecot stats a passwd file at most once per
        // second, so a user added to a shared file right after another login would
        // stay unknown for up to a second; a user's own file is read fresh on the
        // first lookup.
        let users = dir.path().join("users");
        fs::create_dir(&users).with_context(|| format!("creating {}", users.display()))?;
        set_mode(&users, 0o755)?;

        let mut dovecot = Dovecot {
            dir,
            instance_name,
            host: "127.0.0.1".to_string(),
            ports: Ports::allocate(),
            ca_pem,
            child: None,
            watchdog: None,
            passwd_lock: Mutex::new(()),
        };

        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            dovecot.write_config(&options)?;
            match dovecot.spawn_and_wait() {
                Ok(()) => return Ok(dovecot),
                Err(error) => {
                    // Another process may have bound one of our ports between the
                    // probe and Dovecot's bind; anything else is a real failure.
                    let collided = dovecot.log().contains("Address already in use");
                    dovecot.kill_daemon();
                    if !collided {
                        return Err(error);
                    }
                    last_error = Some(error);
                    dovecot.ports = Ports::allocate();
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("dovecot did not start")))
            .context("dovecot kept colliding with other processes' ports")
    }

    /// `start(DovecotOptions::default())`.
    pub fn start_default() -> Result<Dovecot> {
        Dovecot::start(DovecotOptions::default())
    }

    /// Always `"127.0.0.1"`: the daemon listens on loopback only.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Plaintext IMAP; STARTTLS is offered.
    pub fn imap_port(&self) -> u16 {
        self.ports.imap
    }

    /// IMAP over implicit TLS.
    pub fn imaps_port(&self) -> u16 {
        self.ports.imaps
    }

    /// Plaintext POP3; STLS is offered.
    pub fn pop3_port(&self) -> u16 {
        self.ports.pop3
    }

    /// POP3 over implicit TLS.
    pub fn pop3s_port(&self) -> u16 {
        self.ports.pop3s
    }

    /// The CA certificate (PEM) that signed the server certificate, whose SANs are
    /// `localhost` and `127.0.0.1`.
    pub fn ca_pem(&self) -> &Path {
        &self.ca_pem
    }

    /// The instance's private directory (config, logs, `mail/<user>`), for tests that
    /// need to look at the storage itself.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Adds a user, or changes the password of an existing one, for the next login.
    /// The user's mail directory is created lazily by Dovecot.
    ///
    /// Adding is immediate. Changing a password may block for up to a second:
    /// Dovecot re-reads a passwd file at most once per second, so this waits until
    /// the change is certain to be seen.
    pub fn add_user(&self, user: &str, password: &str) -> Result<()> {
        // The passwd-file format is colon-separated lines, and the user name becomes
        // a file and a directory name.
        if user.is_empty()
            || user.contains([':', '\n', '\r', '/', '\0', '%'])
            || user.starts_with('.')
        {
            bail!("user name {user:?} cannot be stored in a passwd file or used as a file name");
        }
        if password.contains([':', '\n', '\r', '\0']) {
            bail!("password {password:?} cannot be stored in a passwd file");
        }
        // A poisoned lock only means another thread panicked mid-update; each file
        // is replaced atomically, so everything on disk is still consistent.
        let _guard = self.passwd_lock.lock().unwrap_or_else(|e| e.into_inner());
        let path = self.dir.path().join("users").join(user);
        let home = self.dir.path().join("mail").join(user);
        let entry = format!(
            "{user}:{{PLAIN}}{password}:{MAIL_UID}:{MAIL_GID}::{}\n",
            home.display()
        );
        let previous_mtime = fs::metadata(&path).and_then(|m| m.modified()).ok();

        let tmp = self.dir.path().join("users").join(format!(".{user}.new"));
        fs::write(&tmp, entry).context("writing the passwd file")?;
        set_mode(&tmp, 0o644)?;
        if let Some(previous) = previous_mtime {
            // Dovecot notices a change by mtime (whole seconds) or size; a password
            // of the same length written within the same second would look
            // unchanged, so the mtime moves at least a second forward.
            let now = SystemTime::now();
            let bumped = previous + Duration::from_secs(1);
            File::options()
                .write(true)
                .open(&tmp)
                .and_then(|f| f.set_modified(if now > bumped { now } else { bumped }))
                .context("setting the passwd file's mtime")?;
        }
        // rename() is atomic, so an auth lookup never sees a half-written file.
        fs::rename(&tmp, &path).context("replacing the passwd file")?;

        if previous_mtime.is_some() {
            // A lookup earlier in this second may have cached the old entry; the
            // first lookup in a later second stats the file again.
            let since_epoch = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let into_second = Duration::from_nanos(u64::from(since_epoch.subsec_nanos()));
            sleep(Duration::from_secs(1) - into_second + Duration::from_millis(20));
        }
        Ok(())
    }

    /// Kills the daemon and all its processes (SIGKILL, like a crash), keeping the
    /// data. Does nothing if it is not running.
    pub fn stop(&mut self) -> Result<()> {
        self.kill_daemon();
        Ok(())
    }

    /// Starts the daemon again on the same ports with the same data (stopping it
    /// first if it runs); blocks until it is ready.
    pub fn restart(&mut self) -> Result<()> {
        self.kill_daemon();
        self.wait_ports_free()?;
        // A stale pid file could name a recycled pid, and Dovecot refuses to start
        // when that pid is alive.
        let pid_file = self.dir.path().join("run").join("master.pid");
        if pid_file.exists() {
            fs::remove_file(&pid_file).context("removing the stale master.pid")?;
        }
        self.spawn_and_wait()
    }

    /// Whether the daemon is running (started and not stopped). A daemon that died on
    /// its own is reported as not running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(|child| child.try_wait()) {
            Some(Ok(None)) => true,
            Some(_) | None => false,
        }
    }

    /// The server's log followed by whatever the daemon wrote to stderr (start-up
    /// configuration errors go there), for debugging failing tests.
    pub fn log(&self) -> String {
        let mut text = String::new();
        for name in ["dovecot.log", "stderr.log"] {
            if let Ok(bytes) = fs::read(self.dir.path().join(name)) {
                if !text.is_empty() && !bytes.is_empty() {
                    let _ = writeln!(text, "--- {name} ---");
                }
                text.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
        text
    }

    /// A logged-in plaintext IMAP connection for seeding and checking mailboxes.
    pub fn checker(&self, user: &str, password: &str) -> Result<Checker> {
        Checker::connect(&self.host, self.ports.imap, user, password)
            .with_context(|| format!("checker login as {user}"))
    }

    /// Runs `doveadm` against this instance (e.g. `["quota", "get", "-u", "alice"]`)
    /// and returns its stdout; fails with its stderr if it exits non-zero.
    pub fn doveadm(&self, args: &[&str]) -> Result<String> {
        let output = Command::new(DOVEADM_DEFAULT)
            .arg("-c")
            .arg(self.config_path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {DOVEADM_DEFAULT}"))?;
        if !output.status.success() {
            bail!(
                "doveadm {args:?} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("dovecot.conf")
    }

    fn write_config(&self, options: &DovecotOptions) -> Result<()> {
        let text = render_config(self.dir.path(), &self.instance_name, self.ports, options);
        fs::write(self.config_path(), text).context("writing dovecot.conf")?;
        if let Some(oauth2) = &options.oauth2 {
            let path = self.dir.path().join("dovecot-oauth2.conf.ext");
            fs::write(&path, render_oauth2(oauth2)).context("writing dovecot-oauth2.conf.ext")?;
            set_mode(&path, 0o644)?;
        }
        if let Some(master) = &options.master_user {
            let path = self.dir.path().join("masters");
            fs::write(
                &path,
                format!("{}:{{PLAIN}}{}\n", master.name, master.password),
            )
            .context("writing the master users' passwd file")?;
            set_mode(&path, 0o644)?;
        }
        Ok(())
    }

    fn spawn_and_wait(&mut self) -> Result<()> {
        let program = std::env::var_os(DOVECOT_ENV).unwrap_or_else(|| DOVECOT_DEFAULT.into());
        // Appended to, so a restart keeps what the previous run wrote.
        let stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("stderr.log"))
            .context("opening stderr.log")?;
        let stdout = stderr.try_clone().context("duplicating stderr.log")?;
        let child = process::spawn_in_group(
            Command::new(&program)
                .arg("-F")
                .arg("-c")
                .arg(self.config_path())
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(stderr)
                // INTERNALDATEs come back in the server's zone; UTC makes them the
                // same on every machine.
                .env("TZ", "UTC"),
        )
        .with_context(|| format!("spawning {}", program.to_string_lossy()))?;
        let pgid = child.id();
        self.child = Some(child);
        self.watchdog = process::spawn_watchdog(pgid, self.dir.path());
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait().context("polling dovecot")?
            {
                self.child = None;
                bail!(
                    "dovecot exited ({status}) while starting; log:\n{}",
                    self.log()
                );
            }
            // The greeting names this instance, so an answer from some other
            // server that happens to hold the port is not mistaken for ours.
            if let Ok(greeting) = crate::daemon::read_greeting(self.ports.imap)
                && greeting.contains(&self.instance_name)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = self.log();
                self.kill_daemon();
                bail!(
                    "dovecot did not greet on port {} within {READY_TIMEOUT:?}; log:\n{log}",
                    self.ports.imap
                );
            }
            sleep(Duration::from_millis(20));
        }
    }

    fn wait_ports_free(&self) -> Result<()> {
        let deadline = Instant::now() + PORTS_FREE_TIMEOUT;
        for port in self.ports.all() {
            // Killed children close their listening sockets asynchronously.
            while TcpListener::bind(("127.0.0.1", port)).is_err() {
                if Instant::now() > deadline {
                    bail!(
                        "port {port} is still in use {PORTS_FREE_TIMEOUT:?} after stopping dovecot"
                    );
                }
                sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// SIGKILLs the whole process group and reaps the master.
    fn kill_daemon(&mut self) {
        process::kill_group(self.child.take(), self.watchdog.take());
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.kill_daemon();
    }
}

fn validate(options: &DovecotOptions) -> Result<()> {
    if options.separator != '/' && options.separator != '.' {
        bail!("separator must be '/' or '.', not {:?}", options.separator);
    }
    for (name, attribute) in &options.special_use {
        if name.is_empty() || name.contains(['"', '\\', '\n', '\r', '{', '}']) {
            bail!("special-use folder name {name:?} cannot be written into dovecot.conf");
        }
        if !attribute.starts_with('\\') || attribute.contains([' ', '"', '\n', '\r']) {
            bail!("special-use attribute {attribute:?} must look like \\Sent");
        }
    }
    if let Some(oauth2) = &options.oauth2 {
        let plain = |text: &str| {
            !text.is_empty()
                && text
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        };
        if !plain(&oauth2.client_id) || !plain(&oauth2.client_secret) {
            bail!("the introspection client id and secret must be letters, digits and -._~");
        }
        if !(oauth2.introspection_url.starts_with("http://")
            || oauth2.introspection_url.starts_with("https://"))
            // Dovecot 2.3.19's auth process panics on a POST introspection to a URL
            // with a query (http_client_request_set_payload's assertion).
            || oauth2.introspection_url.contains(['@', ' ', '\n', '?', '#'])
        {
            bail!(
                "introspection URL {:?} must be http(s):// without credentials or a query",
                oauth2.introspection_url
            );
        }
    }
    if let Some(master) = &options.master_user
        && (master.name.is_empty()
            || master.name.contains([':', '*', '\n', '\r', '\0'])
            || master.password.contains([':', '\n', '\r', '\0']))
    {
        bail!(
            "master user {:?} cannot be stored in a passwd file",
            master.name
        );
    }
    Ok(())
}

fn render_config(
    dir: &Path,
    instance_name: &str,
    ports: Ports,
    options: &DovecotOptions,
) -> String {
    let d = dir.display();
    let sep = options.separator;
    let prefix = if options.inbox_prefix {
        format!("INBOX{sep}")
    } else {
        String::new()
    };
    // '/' is stored as sdbox: Maildir's fs layout reserves the names new/cur/tmp,
    // which a migration test may well use. '.' is stored as Maildir++, like the
    // Courier servers that style imitates.
    let mail_location = if sep == '/' {
        format!("sdbox:{d}/mail/%u")
    } else {
        format!("maildir:{d}/mail/%u")
    };
    let quota_enabled = options.quota_bytes.is_some() || options.max_mail_size.is_some();

    let mut c = String::new();
    // writeln! into a String cannot fail; the results are ignored for that reason.
    let _ = writeln!(
        c,
        "# Written by mailmove-testkit for one test; everything lives under {d}."
    );
    let _ = writeln!(c, "instance_name = {instance_name}");
    let _ = writeln!(c, "base_dir = {d}/run");
    let _ = writeln!(c, "state_dir = {d}/state");
    let _ = writeln!(c, "log_path = {d}/dovecot.log");
    let _ = writeln!(c, "info_log_path = {d}/dovecot.log");
    let _ = writeln!(c, "auth_verbose = yes");
    let _ = writeln!(c, "listen = 127.0.0.1");
    let _ = writeln!(c, "protocols = imap pop3");
    let _ = writeln!(
        c,
        "login_greeting = mailmove-testkit {instance_name} ready."
    );
    let _ = writeln!(c, "shutdown_clients = yes");
    let _ = writeln!(c, "ssl = yes");
    let _ = writeln!(c, "ssl_cert = <{d}/server.pem");
    let _ = writeln!(c, "ssl_key = <{d}/server.key");
    let _ = writeln!(c, "ssl_min_protocol = TLSv1.2");
    // Tests log in over plaintext on loopback.
    let _ = writeln!(c, "disable_plaintext_auth = no");
    if let Some(oauth2) = &options.oauth2 {
        let _ = writeln!(c, "auth_mechanisms = plain login {}", oauth2.mechanisms);
    } else {
        let _ = writeln!(c, "auth_mechanisms = plain login");
    }
    if options.master_user.is_some() {
        let _ = writeln!(c, "auth_master_user_separator = *");
    }
    // Names exactly as added (the default lowercases them, and the per-user
    // passwd file is found by name).
    let _ = writeln!(c, "auth_username_format = %u");
    // Wrong-password tests should not wait the default 2 s per failure.
    let _ = writeln!(c, "auth_failure_delay = 0");
    let _ = writeln!(c, "default_internal_user = dovecot");
    let _ = writeln!(c, "default_login_user = dovenull");
    let _ = writeln!(c, "first_valid_uid = 1");
    let _ = writeln!(c, "first_valid_gid = 1");
    let _ = writeln!(c, "mail_fsync = never");
    let _ = writeln!(c, "mail_location = {mail_location}");
    let _ = writeln!(c, "pop3_uidl_format = %08Xu%08Xv");
    // Before the protocol blocks, which extend this value.
    if quota_enabled {
        let _ = writeln!(c, "mail_plugins = $mail_plugins quota");
    }
    if options.compress {
        let _ = writeln!(c, "mail_plugins = $mail_plugins zlib");
    }
    if options.master_user.is_some() {
        // Checked first; on success the user logged in as must still exist in the
        // next passdb (looked up without a password).
        let _ = writeln!(
            c,
            "passdb {{\n  driver = passwd-file\n  args = {d}/masters\n  master = yes\n  result_success = continue\n}}"
        );
    }
    if options.oauth2.is_some() {
        let _ = writeln!(
            c,
            "passdb {{\n  driver = passwd-file\n  args = {d}/users/%u\n  mechanisms = plain login\n}}"
        );
        let _ = writeln!(
            c,
            "passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {d}/dovecot-oauth2.conf.ext\n}}"
        );
    } else {
        let _ = writeln!(
            c,
            "passdb {{\n  driver = passwd-file\n  args = {d}/users/%u\n}}"
        );
    }
    let _ = writeln!(
        c,
        "userdb {{\n  driver = passwd-file\n  args = {d}/users/%u\n}}"
    );
    let _ = writeln!(c, "namespace inbox {{");
    let _ = writeln!(c, "  inbox = yes");
    let _ = writeln!(c, "  separator = {sep}");
    if !prefix.is_empty() {
        let _ = writeln!(c, "  prefix = {prefix}");
    }
    for (name, attribute) in &options.special_use {
        // Mailbox names here are relative to the namespace prefix.
        let name = name.strip_prefix(&prefix).unwrap_or(name);
        let _ = writeln!(
            c,
            "  mailbox \"{name}\" {{\n    special_use = {attribute}\n    auto = subscribe\n  }}"
        );
    }
    let _ = writeln!(c, "}}");
    let _ = writeln!(c, "protocol imap {{");
    let _ = writeln!(c, "  mail_max_userip_connections = 100");
    if quota_enabled {
        let _ = writeln!(c, "  mail_plugins = $mail_plugins imap_quota");
    }
    if options.compress {
        let _ = writeln!(c, "  mail_plugins = $mail_plugins imap_zlib");
    }
    let _ = writeln!(c, "}}");
    let _ = writeln!(
        c,
        "protocol pop3 {{\n  mail_max_userip_connections = 100\n}}"
    );
    if quota_enabled {
        let _ = writeln!(c, "plugin {{");
        // The count backend needs virtual sizes; without a rule the quota root is
        // unlimited, which still enforces quota_max_mail_size.
        let _ = writeln!(c, "  quota = count:User quota");
        let _ = writeln!(c, "  quota_vsizes = yes");
        if let Some(bytes) = options.quota_bytes {
            let _ = writeln!(c, "  quota_rule = *:storage={bytes}B");
        }
        if let Some(bytes) = options.max_mail_size {
            let _ = writeln!(c, "  quota_max_mail_size = {bytes}B");
        }
        let _ = writeln!(c, "}}");
    }
    // Anvil's auth penalty delays every login from an address after a failed one
    // (4 s and more), which would make wrong-password tests slow and slow down the
    // logins after them. A socket nobody may open makes the auth process run
    // without it.
    let _ = writeln!(
        c,
        "service anvil {{\n  unix_listener anvil-auth-penalty {{\n    mode = 0\n  }}\n}}"
    );
    let _ = writeln!(
        c,
        "service imap-login {{\n  inet_listener imap {{\n    port = {}\n  }}\n  inet_listener imaps {{\n    port = {}\n    ssl = yes\n  }}\n}}",
        ports.imap, ports.imaps
    );
    let _ = writeln!(
        c,
        "service pop3-login {{\n  inet_listener pop3 {{\n    port = {}\n  }}\n  inet_listener pop3s {{\n    port = {}\n    ssl = yes\n  }}\n}}",
        ports.pop3, ports.pop3s
    );
    c
}

/// `dovecot-oauth2.conf.ext` (Dovecot 2.3): introspection by POST with the client's
/// credentials in the URL (sent as HTTP Basic), the login name compared with `sub`,
/// and an inactive token refused.
fn render_oauth2(oauth2: &DovecotOAuth2) -> String {
    let (scheme, rest) = oauth2
        .introspection_url
        .split_once("://")
        .unwrap_or(("http", &oauth2.introspection_url));
    let mut c = String::new();
    let _ = writeln!(c, "# Written by mailmove-testkit for one test.");
    let _ = writeln!(
        c,
        "introspection_url = {scheme}://{}:{}@{rest}",
        oauth2.client_id, oauth2.client_secret
    );
    let _ = writeln!(c, "introspection_mode = post");
    let _ = writeln!(c, "force_introspection = yes");
    let _ = writeln!(c, "username_attribute = sub");
    let _ = writeln!(c, "active_attribute = active");
    let _ = writeln!(c, "active_value = true");
    if let Some(scope) = &oauth2.required_scope {
        let _ = writeln!(c, "scope = {scope}");
    }
    if let Some(ca) = &oauth2.ca_file {
        let _ = writeln!(c, "tls_ca_cert_file = {}", ca.display());
    }
    c
}
