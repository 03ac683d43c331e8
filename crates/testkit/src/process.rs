//! Child processes of the harnesses (Dovecot, node): each in its own process group,
//! killed as a group, with a watchdog that cleans up if the test process dies first.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};

/// Spawns `command` as the leader of a new process group, so the whole tree it
/// forks can be killed in one go.
pub(crate) fn spawn_in_group(command: &mut Command) -> std::io::Result<Child> {
    command.process_group(0).spawn()
}

/// A shell loop that outlives this process: once the test process is gone it kills
/// the group `pgid` and removes `dir`. Best effort: a missing `sh` only loses that
/// safety net.
pub(crate) fn spawn_watchdog(pgid: u32, dir: &Path) -> Option<Child> {
    const SCRIPT: &str = r#"while kill -0 "$1" 2>/dev/null; do sleep 1; done
kill -s KILL -- "-$2" 2>/dev/null
rm -rf -- "$3""#;
    Command::new("sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("mailmove-testkit-watchdog")
        .arg(std::process::id().to_string())
        .arg(pgid.to_string())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own group, so a Ctrl-C aimed at the test run does not take the
        // watchdog down before it could clean up.
        .process_group(0)
        .spawn()
        .ok()
}

/// Stops the watchdog, then SIGKILLs the group led by `child` and reaps it.
pub(crate) fn kill_group(child: Option<Child>, watchdog: Option<Child>) {
    // The watchdog first, so it cannot act on a group id that is about to be freed
    // and possibly reused.
    if let Some(mut watchdog) = watchdog {
        let _ = watchdog.kill();
        let _ = watchdog.wait();
    }
    let Some(mut child) = child else {
        return;
    };
    // `kill` the command, because the workspace forbids unsafe code and std has no
    // way to signal a process group. The group id is the leader's pid.
    let group_killed = Command::new("kill")
        .args(["-s", "KILL", "--", &format!("-{}", child.id())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|status| status.success())
        .unwrap_or(false);
    if !group_killed {
        let _ = child.kill();
    }
    let _ = child.wait();
}

pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}
