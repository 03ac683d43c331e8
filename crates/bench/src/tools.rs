//! The three copiers and how each is invoked: mailmove (the release binary), mbsync
//! (isync) and Dovecot's `doveadm backup` through `imapc`, with the recipes from
//! `shared/notes/peer-benchmark.md`.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

/// A copier under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tool {
    Mailmove,
    /// mailmove copying every mailbox of the case in one process
    /// (`migrate --mailboxes FILE --parallel N`); only in the bulk case.
    MailmoveParallel,
    /// Another mailmove binary (`--baseline PATH`), timed in the same run to compare
    /// two builds; invoked exactly like `Mailmove`.
    MailmoveBaseline,
    Mbsync,
    Doveadm,
}

impl Tool {
    pub fn parse(name: &str) -> Option<Tool> {
        match name.trim() {
            "mailmove" => Some(Tool::Mailmove),
            "mailmove-parallel" => Some(Tool::MailmoveParallel),
            "mailmove-baseline" => Some(Tool::MailmoveBaseline),
            "mbsync" => Some(Tool::Mbsync),
            "doveadm" => Some(Tool::Doveadm),
            _ => None,
        }
    }
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tool::Mailmove => "mailmove",
            Tool::MailmoveParallel => "mailmove-parallel",
            Tool::MailmoveBaseline => "mailmove-baseline",
            Tool::Mbsync => "mbsync",
            Tool::Doveadm => "doveadm",
        })
    }
}

/// One account on one private server.
#[derive(Debug, Clone)]
pub struct Login {
    pub port: u16,
    pub user: String,
    pub password: String,
}

/// One mailbox pair to copy, and a private directory for the tool's state and
/// configuration (kept between the passes of the incremental case).
#[derive(Debug, Clone)]
pub struct Pair {
    pub source: Login,
    pub dest: Login,
    /// The destination's instance directory (`doveadm` uses its dovecot.conf).
    pub dest_dir: PathBuf,
    /// A PEM file with both servers' CAs (mailmove's `--tls-ca`).
    pub ca_file: PathBuf,
    /// The peers upgrade with STARTTLS too (the servers offer it unless `--plaintext`).
    pub tls: bool,
    pub work: PathBuf,
}

/// The command for one pass of `tool` over `pair`. Also writes the tool's
/// configuration file into `pair.work` when it needs one.
pub fn command(tool: Tool, pair: &Pair, mailmove: &Path) -> Result<Command> {
    fs::create_dir_all(&pair.work).with_context(|| format!("creating {}", pair.work.display()))?;
    Ok(match tool {
        Tool::Mailmove | Tool::MailmoveBaseline => {
            let mut command = Command::new(mailmove);
            command
                .arg("migrate")
                .arg("--source")
                .arg(format!(
                    "imap://{}@127.0.0.1:{}",
                    pair.source.user, pair.source.port
                ))
                .arg("--dest")
                .arg(format!(
                    "imap://{}@127.0.0.1:{}",
                    pair.dest.user, pair.dest.port
                ))
                .arg("--tls-ca")
                .arg(&pair.ca_file)
                .arg("--state")
                .arg(pair.work.join("state.sqlite"))
                .env("MAILMOVE_SOURCE_PASSWORD", &pair.source.password)
                .env("MAILMOVE_DEST_PASSWORD", &pair.dest.password)
                .env_remove("MAILMOVE_LOG");
            command
        }
        Tool::MailmoveParallel => {
            anyhow::bail!("mailmove-parallel copies all pairs at once: use parallel_command")
        }
        Tool::Mbsync => {
            let state = pair.work.join("mbsync-state");
            fs::create_dir_all(&state)?;
            let rc = pair.work.join("mbsyncrc");
            fs::write(&rc, mbsyncrc(pair, &state))
                .with_context(|| format!("writing {}", rc.display()))?;
            let mut command = Command::new("mbsync");
            command.arg("-q").arg("-c").arg(&rc).arg("bench");
            command
        }
        Tool::Doveadm => {
            let mut command = Command::new("doveadm");
            command
                .arg("-c")
                .arg(pair.dest_dir.join("dovecot.conf"))
                .args(["-o", "imapc_host=127.0.0.1"])
                .arg("-o")
                .arg(format!("imapc_port={}", pair.source.port))
                .arg("-o")
                .arg(format!("imapc_user={}", pair.source.user))
                .arg("-o")
                .arg(format!("imapc_password={}", pair.source.password))
                .args([
                    "-o",
                    if pair.tls {
                        "imapc_ssl=starttls"
                    } else {
                        "imapc_ssl=no"
                    },
                ])
                .arg("-o")
                .arg(format!("ssl_client_ca_file={}", pair.ca_file.display()))
                .args(["-o", "imapc_features=rfc822.size fetch-headers"])
                .args(["-o", "mail_prefetch_count=20"])
                .args(["backup", "-R", "-u", &pair.dest.user, "imapc:"]);
            command
        }
    })
}

/// One mailmove process for every pair: `migrate --mailboxes FILE --parallel N`
/// with a CSV of MigrationWiz's columns (passwords in the file) and one ledger file.
pub fn parallel_command(pairs: &[Pair], work: &Path, mailmove: &Path) -> Result<Command> {
    fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
    let mut csv = String::from(
        "Source Email,Source Login Name,Source Password,Destination Email,Destination Login Name,Destination Password\n",
    );
    for pair in pairs {
        csv.push_str(&format!(
            "{0}@old.example,{0},{1},{2}@new.example,{2},{3}\n",
            pair.source.user, pair.source.password, pair.dest.user, pair.dest.password
        ));
    }
    let list = work.join("mailboxes.csv");
    fs::write(&list, csv).with_context(|| format!("writing {}", list.display()))?;
    let (Some(first), n) = (pairs.first(), pairs.len()) else {
        anyhow::bail!("no mailbox pairs");
    };
    let mut command = Command::new(mailmove);
    command
        .arg("migrate")
        .arg("--source")
        .arg(format!("imap://127.0.0.1:{}", first.source.port))
        .arg("--dest")
        .arg(format!("imap://127.0.0.1:{}", first.dest.port))
        .arg("--tls-ca")
        .arg(&first.ca_file)
        .arg("--mailboxes")
        .arg(&list)
        .arg("--parallel")
        .arg(n.to_string())
        .arg("--state")
        .arg(work.join("state.sqlite"))
        .env_remove("MAILMOVE_SOURCE_PASSWORD")
        .env_remove("MAILMOVE_DEST_PASSWORD")
        .env_remove("MAILMOVE_LOG");
    Ok(command)
}

/// `command` run under `wrapper` (a program and its arguments, e.g. `valgrind
/// --tool=callgrind`), with the same environment and directory.
pub fn wrapped(command: Command, wrapper: &[String]) -> Command {
    let Some((program, args)) = wrapper.split_first() else {
        return command;
    };
    let mut outer = Command::new(program);
    outer
        .args(args)
        .arg(command.get_program())
        .args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => outer.env(key, value),
            None => outer.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        outer.current_dir(dir);
    }
    outer
}

/// Whether this mailmove binary has `migrate --mailboxes`.
pub fn has_mailboxes_option(mailmove: &Path) -> bool {
    Command::new(mailmove)
        .args(["migrate", "--help"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("--mailboxes"))
}

/// Loopback with STARTTLS (or without TLS under `--plaintext`), LOGIN, every folder,
/// only new messages pulled to the destination, arrival dates kept, nothing expunged.
fn mbsyncrc(pair: &Pair, state: &Path) -> String {
    let tls = if pair.tls {
        format!(
            "SSLType STARTTLS\nCertificateFile {}\n",
            pair.ca_file.display()
        )
    } else {
        "SSLType None\n".to_string()
    };
    // mbsync matches the certificate's names, not its IP addresses.
    let host = if pair.tls { "localhost" } else { "127.0.0.1" };
    let account = |name: &str, login: &Login| {
        format!(
            "IMAPAccount {name}\nHost {host}\nPort {}\nUser {}\nPass \"{}\"\n{tls}AuthMechs LOGIN\n\n\
             IMAPStore {name}\nAccount {name}\n\n",
            login.port, login.user, login.password
        )
    };
    format!(
        "{}{}Channel bench\nFar :src:\nNear :dst:\nPatterns *\nCreate Near\nExpunge None\n\
         Sync Pull\nCopyArrivalDate yes\nSyncState {}/\n",
        account("src", &pair.source),
        account("dst", &pair.dest),
        state.display()
    )
}

/// A one-line version string of a peer, or why it is unavailable.
pub fn peer_version(tool: Tool) -> Result<String, String> {
    let (program, args): (&str, &[&str]) = match tool {
        Tool::Mailmove | Tool::MailmoveParallel | Tool::MailmoveBaseline => {
            return Ok(String::new());
        }
        Tool::Mbsync => ("mbsync", &["--version"]),
        Tool::Doveadm => ("doveadm", &["-c", "/dev/null", "-o", "ssl=no", "version"]),
    };
    match Command::new(program).args(args).output() {
        Ok(output) => {
            let text = String::from_utf8_lossy(&output.stdout);
            let line = text.lines().next().unwrap_or("").trim().to_string();
            Ok(line)
        }
        Err(e) => Err(format!("{program} cannot run: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names_round_trip() {
        for tool in [
            Tool::Mailmove,
            Tool::MailmoveParallel,
            Tool::MailmoveBaseline,
            Tool::Mbsync,
            Tool::Doveadm,
        ] {
            assert_eq!(Tool::parse(&tool.to_string()), Some(tool));
        }
        assert_eq!(Tool::parse("imapsync"), None);
    }
}
