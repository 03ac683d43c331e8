//! A private DNS server per test: Debian's `dnsmasq` on a free loopback port, serving
//! only the MX, SRV and address records the test gives it (`local=/test/`: every other
//! name under `.test` does not exist, and nothing is forwarded anywhere).

use std::fmt::Write as _;
use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::ports;
use crate::process::{kill_group, spawn_in_group, spawn_watchdog};

/// One record the server answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsRecord {
    Mx {
        domain: String,
        host: String,
        preference: u16,
    },
    Srv {
        /// `_imaps._tcp.example.test`
        name: String,
        target: String,
        port: u16,
        priority: u16,
        weight: u16,
    },
    /// An A (IPv4) record.
    Address { host: String, ip: String },
}

impl DnsRecord {
    pub fn mx(domain: &str, host: &str) -> DnsRecord {
        DnsRecord::Mx {
            domain: domain.into(),
            host: host.into(),
            preference: 10,
        }
    }

    pub fn srv(name: &str, target: &str, port: u16, priority: u16) -> DnsRecord {
        DnsRecord::Srv {
            name: name.into(),
            target: target.into(),
            port,
            priority,
            weight: 1,
        }
    }

    pub fn loopback(host: &str) -> DnsRecord {
        DnsRecord::Address {
            host: host.into(),
            ip: "127.0.0.1".into(),
        }
    }

    fn config_line(&self) -> String {
        match self {
            DnsRecord::Mx {
                domain,
                host,
                preference,
            } => format!("mx-host={domain},{host},{preference}"),
            DnsRecord::Srv {
                name,
                target,
                port,
                priority,
                weight,
            } => format!("srv-host={name},{target},{port},{priority},{weight}"),
            DnsRecord::Address { host, ip } => format!("host-record={host},{ip}"),
        }
    }
}

/// A running dnsmasq; dropping it kills the daemon and removes its files.
#[derive(Debug)]
pub struct DnsServer {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    watchdog: Option<Child>,
}

impl DnsServer {
    /// Starts dnsmasq with `records` and waits until it answers on TCP.
    pub fn start(records: &[DnsRecord]) -> Result<DnsServer> {
        let mut server = DnsServer {
            dir: tempfile::Builder::new()
                .prefix("mailmove-dns-")
                .tempdir()
                .context("creating the DNS server's directory")?,
            port: 0,
            child: None,
            watchdog: None,
        };
        // Another process may take the port between the probe and dnsmasq's bind.
        let mut last = None;
        for _ in 0..5 {
            server.port = ports::free_port();
            match server.spawn(records) {
                Ok(()) => return Ok(server),
                Err(e) => {
                    kill_group(server.child.take(), server.watchdog.take());
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("dnsmasq did not start")))
    }

    /// The address to point a resolver at.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// What dnsmasq logged (every query it answered).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("dnsmasq.log")
    }

    fn spawn(&mut self, records: &[DnsRecord]) -> Result<()> {
        let mut config = String::new();
        let _ = writeln!(config, "port={}", self.port);
        let _ = writeln!(config, "listen-address=127.0.0.1");
        let _ = writeln!(config, "bind-interfaces");
        let _ = writeln!(config, "no-resolv");
        let _ = writeln!(config, "no-hosts");
        let _ = writeln!(config, "no-poll");
        let _ = writeln!(config, "local=/test/");
        let _ = writeln!(config, "user=root");
        let _ = writeln!(config, "log-queries");
        let _ = writeln!(config, "log-facility={}", self.log_path().display());
        for record in records {
            let _ = writeln!(config, "{}", record.config_line());
        }
        let path = self.dir.path().join("dnsmasq.conf");
        fs::write(&path, config).context("writing dnsmasq.conf")?;
        let child = spawn_in_group(
            Command::new(dnsmasq())
                .arg("--keep-in-foreground")
                .arg(format!("--conf-file={}", path.display()))
                .arg("--pid-file=")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        )
        .context("starting dnsmasq (Debian package dnsmasq-base; scripts/test installs it)")?;
        self.watchdog = spawn_watchdog(child.id(), self.dir.path());
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                bail!("dnsmasq exited with {status}: {}", self.log());
            }
            if TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("dnsmasq did not answer on port {} within 10 s", self.port)
    }
}

fn dnsmasq() -> &'static str {
    if std::path::Path::new("/usr/sbin/dnsmasq").exists() {
        "/usr/sbin/dnsmasq"
    } else {
        "dnsmasq"
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        kill_group(self.child.take(), self.watchdog.take());
    }
}
