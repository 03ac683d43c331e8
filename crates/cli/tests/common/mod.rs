//! Shared set-up for the command's end-to-end tests: two private Dovecot servers, a
//! user on each, and a way to run the real `mailmove` binary against them.

#![allow(dead_code)] // reason: each test binary uses a different part of this module

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use mailmove_testkit::{Checker, Dovecot, DovecotOptions};
use serde_json::Value;

pub const SOURCE_USER: &str = "alice";
pub const SOURCE_PASSWORD: &str = "source-secret-1";
pub const DEST_USER: &str = "bob@new.example";
pub const DEST_PASSWORD: &str = "dest-secret-2";

pub struct Setup {
    pub source: Dovecot,
    pub dest: Dovecot,
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    runs: AtomicUsize,
}

/// What one run of the binary produced.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub report: Option<Value>,
}

impl Run {
    pub fn counts(&self) -> (u64, u64, u64, u64) {
        let m = &self.report.as_ref().expect("a report was written")["messages"];
        (
            m["copied"].as_u64().unwrap(),
            m["already_present"].as_u64().unwrap(),
            m["skipped"].as_u64().unwrap(),
            m["failed"].as_u64().unwrap(),
        )
    }

    pub fn everything(&self) -> String {
        format!(
            "exit {}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Setup {
    pub fn new() -> Setup {
        Setup::with(DovecotOptions::default(), DovecotOptions::default())
    }

    pub fn with(source: DovecotOptions, dest: DovecotOptions) -> Setup {
        let source = Dovecot::start(source).expect("source Dovecot starts");
        let dest = Dovecot::start(dest).expect("destination Dovecot starts");
        source.add_user(SOURCE_USER, SOURCE_PASSWORD).unwrap();
        dest.add_user(DEST_USER, DEST_PASSWORD).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca = both_cas(dir.path(), source.ca_pem(), dest.ca_pem());
        Setup {
            source,
            dest,
            dir,
            ca,
            runs: AtomicUsize::new(0),
        }
    }

    pub fn src(&self) -> Checker {
        self.source.checker(SOURCE_USER, SOURCE_PASSWORD).unwrap()
    }

    pub fn dst(&self) -> Checker {
        self.dest.checker(DEST_USER, DEST_PASSWORD).unwrap()
    }

    pub fn source_url(&self) -> String {
        format!("imap://{SOURCE_USER}@127.0.0.1:{}", self.source.imap_port())
    }

    pub fn dest_url(&self) -> String {
        format!(
            "imap://bob%40new.example@127.0.0.1:{}",
            self.dest.imap_port()
        )
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state.sqlite")
    }

    /// The binary with both servers, the CA file, passwords and state set.
    pub fn command(&self, subcommand: &str) -> Command {
        self.command_via(&self.source_url(), &self.dest_url(), subcommand)
    }

    /// As [`Setup::command`], with the servers reached at other addresses (proxies).
    pub fn command_via(&self, source_url: &str, dest_url: &str, subcommand: &str) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mailmove"));
        command
            .arg(subcommand)
            .arg("--source")
            .arg(source_url)
            .arg("--dest")
            .arg(dest_url)
            .arg("--tls-ca")
            .arg(&self.ca)
            .env("MAILMOVE_SOURCE_PASSWORD", SOURCE_PASSWORD)
            .env("MAILMOVE_DEST_PASSWORD", DEST_PASSWORD)
            .env_remove("MAILMOVE_LOG");
        if subcommand != "check" {
            command.arg("--state").arg(self.state());
        }
        command
    }

    /// Runs a subcommand to the end with a JSON report.
    pub fn run(&self, subcommand: &str, extra: &[&str]) -> Run {
        self.run_via(&self.source_url(), &self.dest_url(), subcommand, extra)
    }

    /// As [`Setup::run`], with the servers reached at other addresses (proxies).
    pub fn run_via(
        &self,
        source_url: &str,
        dest_url: &str,
        subcommand: &str,
        extra: &[&str],
    ) -> Run {
        let n = self.runs.fetch_add(1, Ordering::SeqCst);
        let report = self.dir.path().join(format!("report-{n}.json"));
        let output = self
            .command_via(source_url, dest_url, subcommand)
            .args(extra)
            .arg("--report")
            .arg(&report)
            .output()
            .expect("mailmove runs");
        finish(output, Some(report))
    }
}

/// Both servers' CAs in one file in `dir`, as a user would pass them with --tls-ca.
pub fn both_cas(
    dir: &std::path::Path,
    source: &std::path::Path,
    dest: &std::path::Path,
) -> PathBuf {
    let ca = dir.join("ca.pem");
    let mut pem = std::fs::read(source).unwrap();
    pem.extend(std::fs::read(dest).unwrap());
    std::fs::write(&ca, pem).unwrap();
    ca
}

pub fn finish(output: Output, report: Option<PathBuf>) -> Run {
    let report = report
        .filter(|p| p.exists())
        .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).expect("the report is JSON"));
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        report,
    }
}

/// Each destination message body, sorted, for comparing whole folders.
pub fn bodies(checker: &mut Checker, folder: &str) -> Vec<Vec<u8>> {
    let mut bodies: Vec<Vec<u8>> = checker
        .fetch_all(folder)
        .unwrap()
        .into_iter()
        .map(|m| m.body)
        .collect();
    bodies.sort();
    bodies
}

/// Forwards connections to `target`, counting them, how many are open at once and the
/// bytes that pass each way.
pub struct CountingProxy {
    pub port: u16,
    /// The most connections open at once.
    pub peak: Arc<AtomicUsize>,
    /// Every connection accepted so far.
    pub total: Arc<AtomicUsize>,
    /// Bytes from the clients to the server, and from the server to the clients.
    pub up: Arc<AtomicU64>,
    pub down: Arc<AtomicU64>,
}

impl CountingProxy {
    pub fn start(target: u16) -> CountingProxy {
        CountingProxy::slowed(target, Duration::ZERO)
    }

    /// Also waits `delay` before passing on each chunk from the server: a slow link.
    pub fn slowed(target: u16, delay: Duration) -> CountingProxy {
        CountingProxy::cutting(target, delay, None)
    }

    /// A slow link (as [`Self::slowed`]) that also cuts every connection `lifetime`
    /// after it opened, if given: a server or a network that ends sessions.
    pub fn cutting(target: u16, delay: Duration, lifetime: Option<Duration>) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = CountingProxy {
            port: listener.local_addr().unwrap().port(),
            peak: Arc::default(),
            total: Arc::default(),
            up: Arc::default(),
            down: Arc::default(),
        };
        let open = Arc::new(AtomicUsize::new(0));
        let (peak, total) = (Arc::clone(&proxy.peak), Arc::clone(&proxy.total));
        let (up, down) = (Arc::clone(&proxy.up), Arc::clone(&proxy.down));
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                total.fetch_add(1, Ordering::SeqCst);
                let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                let open = Arc::clone(&open);
                let (up, down) = (Arc::clone(&up), Arc::clone(&down));
                std::thread::spawn(move || {
                    if let Ok(server) = TcpStream::connect(("127.0.0.1", target)) {
                        let (c_read, s_write) =
                            (client.try_clone().unwrap(), server.try_clone().unwrap());
                        if let Some(lifetime) = lifetime {
                            let (client, server) =
                                (client.try_clone().unwrap(), server.try_clone().unwrap());
                            std::thread::spawn(move || {
                                std::thread::sleep(lifetime);
                                let _ = client.shutdown(std::net::Shutdown::Both);
                                let _ = server.shutdown(std::net::Shutdown::Both);
                            });
                        }
                        let upward = std::thread::spawn(move || {
                            relay(c_read, s_write, Duration::ZERO, &up);
                        });
                        relay(server, client, delay, &down);
                        let _ = upward.join();
                    }
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        proxy
    }

    /// Bytes that passed either way so far.
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.up.load(Ordering::SeqCst),
            self.down.load(Ordering::SeqCst),
        )
    }
}

/// Copies `from` to `to`, waiting `delay` before each chunk and counting bytes, until
/// either side closes.
fn relay(mut from: TcpStream, mut to: TcpStream, delay: Duration, count: &AtomicU64) {
    let mut buffer = [0u8; 65536];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                std::thread::sleep(delay);
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
                count.fetch_add(n as u64, Ordering::SeqCst);
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}
