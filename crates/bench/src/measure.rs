//! How a run is measured: wall time around the processes, CPU time and peak memory
//! from `/usr/bin/time -v`, and a Dovecot server's CPU from /proc before and after.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub const TIME: &str = "/usr/bin/time";

/// A run that takes longer is killed and reported as failed.
const RUN_TIMEOUT: Duration = Duration::from_secs(900);

/// One process to run: the command (without the `time` wrapper) and where its output
/// goes.
#[derive(Debug)]
pub struct Job {
    pub command: Command,
    /// Directory for `time.txt`, `stdout.txt` and `stderr.txt`.
    pub dir: PathBuf,
}

/// What `time -v` said about one process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub max_rss_kib: u64,
    /// Voluntary and involuntary: how often the process gave up or lost a CPU.
    pub context_switches: u64,
}

/// The outcome of running several jobs at once.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub wall: Duration,
    /// Summed over the jobs.
    pub cpu_seconds: f64,
    /// The largest of the jobs.
    pub max_rss_kib: u64,
    /// Summed over the jobs.
    pub context_switches: u64,
    /// One line per job that did not exit 0.
    pub failures: Vec<String>,
    pub processes: usize,
}

/// Starts every job at once, each under `time -v`, and waits for all of them.
pub fn run_all(jobs: Vec<Job>) -> Result<Outcome> {
    let started = Instant::now();
    let mut running: Vec<(Child, PathBuf)> = Vec::new();
    for job in jobs {
        let child = spawn_timed(job.command, &job.dir)?;
        running.push((child, job.dir));
    }
    let mut statuses = vec![None; running.len()];
    let mut wall = Duration::ZERO;
    while statuses.iter().any(Option::is_none) {
        for (index, (child, _)) in running.iter_mut().enumerate() {
            if statuses[index].is_none()
                && let Some(status) = child.try_wait().context("waiting for a tool")?
            {
                statuses[index] = Some(status.code().unwrap_or(-1));
                wall = started.elapsed();
            }
        }
        if started.elapsed() > RUN_TIMEOUT {
            for (index, (child, _)) in running.iter_mut().enumerate() {
                if statuses[index].is_none() {
                    kill_group(child.id());
                    let _ = child.wait();
                    statuses[index] = Some(-1);
                }
            }
            wall = started.elapsed();
            break;
        }
        sleep(Duration::from_millis(2));
    }

    let mut outcome = Outcome {
        wall,
        cpu_seconds: 0.0,
        max_rss_kib: 0,
        context_switches: 0,
        failures: Vec::new(),
        processes: running.len(),
    };
    for ((_, dir), status) in running.iter().zip(statuses) {
        let usage = parse_time(&fs::read_to_string(dir.join("time.txt")).unwrap_or_default());
        outcome.cpu_seconds += usage.cpu_seconds;
        outcome.max_rss_kib = outcome.max_rss_kib.max(usage.max_rss_kib);
        outcome.context_switches += usage.context_switches;
        let code = status.unwrap_or(-1);
        if code != 0 {
            let stderr = fs::read_to_string(dir.join("stderr.txt")).unwrap_or_default();
            let stdout = fs::read_to_string(dir.join("stdout.txt")).unwrap_or_default();
            let last = last_line(&stderr)
                .or_else(|| last_line(&stdout))
                .unwrap_or("no output");
            outcome
                .failures
                .push(format!("exit {code}: {last} (see {})", dir.display()));
        }
    }
    Ok(outcome)
}

fn spawn_timed(command: Command, dir: &Path) -> Result<Child> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut timed = Command::new(TIME);
    timed
        .arg("-v")
        .arg("-o")
        .arg(dir.join("time.txt"))
        .arg(command.get_program())
        .args(command.get_args())
        .stdin(Stdio::null())
        .stdout(fs::File::create(dir.join("stdout.txt"))?)
        .stderr(fs::File::create(dir.join("stderr.txt"))?);
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => timed.env(key, value),
            None => timed.env_remove(key),
        };
    }
    if let Some(cwd) = command.get_current_dir() {
        timed.current_dir(cwd);
    }
    // Own process group, so a hung run can be killed with everything it started.
    std::os::unix::process::CommandExt::process_group(&mut timed, 0);
    timed
        .spawn()
        .with_context(|| format!("starting {TIME} {:?}", command.get_program()))
}

fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-s", "KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

fn last_line(text: &str) -> Option<&str> {
    text.lines().rev().find(|line| !line.trim().is_empty())
}

/// Reads `User time`, `System time`, `Maximum resident set size` and the context
/// switches from `time -v`.
pub fn parse_time(text: &str) -> Usage {
    let mut usage = Usage::default();
    for line in text.lines() {
        let Some((key, value)) = line.trim().rsplit_once(": ") else {
            continue;
        };
        match key {
            "User time (seconds)" | "System time (seconds)" => {
                usage.cpu_seconds += value.trim().parse::<f64>().unwrap_or(0.0);
            }
            "Maximum resident set size (kbytes)" => {
                usage.max_rss_kib = value.trim().parse().unwrap_or(0);
            }
            "Voluntary context switches" | "Involuntary context switches" => {
                usage.context_switches += value.trim().parse::<u64>().unwrap_or(0);
            }
            _ => {}
        }
    }
    usage
}

/// The CPU time of a private Dovecot: every process in its master's process group
/// (the testkit starts the master in a group of its own), counting exited children
/// through the master's cumulative child time.
#[derive(Debug, Clone)]
pub struct ServerCpu {
    pgid: Option<u32>,
    ticks_per_second: f64,
}

impl ServerCpu {
    /// Finds the master by its `-c <dir>/dovecot.conf` argument; `None` inside when
    /// it cannot be found (the column then shows "—").
    pub fn of(server_dir: &Path, ticks_per_second: f64) -> ServerCpu {
        let config = server_dir.join("dovecot.conf");
        let config = config.to_string_lossy().into_owned();
        let pgid = fs::read_dir("/proc").ok().and_then(|entries| {
            entries.flatten().find_map(|entry| {
                let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
                let cmdline = fs::read(entry.path().join("cmdline")).ok()?;
                let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
                let is_master = args
                    .windows(2)
                    .any(|w| w[0] == b"-c" && w[1] == config.as_bytes());
                let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
                (is_master && stat_fields(&stat)?.0 == pid).then_some(pid)
            })
        });
        ServerCpu {
            pgid,
            ticks_per_second,
        }
    }

    /// Seconds of CPU used by the server so far.
    pub fn seconds(&self) -> Option<f64> {
        let pgid = self.pgid?;
        let mut ticks = 0u64;
        for entry in fs::read_dir("/proc").ok()?.flatten() {
            let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            if let Some((group, used)) = stat_fields(&stat)
                && group == pgid
            {
                ticks += used;
            }
        }
        Some(ticks as f64 / self.ticks_per_second)
    }
}

/// (process group, utime + stime + cutime + cstime) from a /proc/PID/stat line.
fn stat_fields(stat: &str) -> Option<(u32, u64)> {
    // The command name is in parentheses and may hold spaces; fields after it start
    // with the state (field 3).
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let pgrp = fields.get(2)?.parse().ok()?;
    let ticks = (11..=14)
        .map(|i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum::<Option<u64>>()?;
    Some((pgrp, ticks))
}

/// `getconf CLK_TCK`, 100 when it cannot be asked.
pub fn ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Checks that `/usr/bin/time` exists, installing Debian's `time` when missing.
pub fn ensure_time() -> Result<()> {
    if Path::new(TIME).exists() {
        return Ok(());
    }
    crate::install("time")?;
    if !Path::new(TIME).exists() {
        bail!("{TIME} is missing and could not be installed (apt-get install time)");
    }
    Ok(())
}

/// Median of the values (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    }
}

/// Smallest value.
pub fn minimum(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NAN, f64::min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(minimum(&[3.0, 1.5, 2.0]), 1.5);
    }

    #[test]
    fn time_output_is_parsed() {
        let text = "\tCommand being timed: \"true\"\n\tUser time (seconds): 1.25\n\
                    \tSystem time (seconds): 0.50\n\tMaximum resident set size (kbytes): 20480\n\
                    \tElapsed (wall clock) time (h:mm:ss or m:ss): 0:02.00\n\
                    \tVoluntary context switches: 300\n\tInvoluntary context switches: 12\n";
        let usage = parse_time(text);
        assert!((usage.cpu_seconds - 1.75).abs() < 1e-9);
        assert_eq!(usage.max_rss_kib, 20480);
        assert_eq!(usage.context_switches, 312);
    }

    #[test]
    fn stat_line_with_spaces_in_the_name() {
        let stat = "42 (imap (x)) S 1 40 40 0 -1 4194560 10 0 0 0 7 3 2 1 20 0 1 0";
        assert_eq!(stat_fields(stat), Some((40, 13)));
    }
}
