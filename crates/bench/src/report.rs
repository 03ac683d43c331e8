//! Turns the measured runs into the printed tables: one row per tool (medians over
//! the runs, minimum wall time in parentheses) and the wall-time ratios to mailmove.

use std::fmt::Write as _;

use crate::measure::{median, minimum};
use crate::tools::Tool;

/// One measured pass of one tool (several processes at once in the bulk case).
#[derive(Debug, Clone)]
pub struct Sample {
    pub wall: f64,
    pub cpu: f64,
    pub max_rss_kib: u64,
    /// Context switches of the tool's processes, summed.
    pub context_switches: u64,
    pub dest_cpu: Option<f64>,
    pub source_cpu: Option<f64>,
    /// "yes", the differences, or "—" when not checked after this pass.
    pub faithful: String,
    /// Why the tool failed, when it did.
    pub failure: Option<String>,
}

/// Everything measured for one tool in one case.
#[derive(Debug, Clone)]
pub struct Row {
    pub tool: Tool,
    pub samples: Vec<Sample>,
    /// Why the tool was not run.
    pub skipped: Option<String>,
}

impl Row {
    fn good(&self) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.failure.is_none())
            .collect()
    }

    /// Median wall seconds of the passes that succeeded.
    pub fn median_wall(&self) -> Option<f64> {
        let walls: Vec<f64> = self.good().iter().map(|s| s.wall).collect();
        (!walls.is_empty()).then(|| median(&walls))
    }
}

/// What a case copies, for the throughput columns.
#[derive(Debug, Clone, Copy)]
pub struct Volume {
    pub messages: usize,
    pub bytes: u64,
    /// MiB/s makes no sense for a pass that copies nothing.
    pub copies_bytes: bool,
}

pub fn table(rows: &[Row], volume: Volume, per_process: bool) -> String {
    let mut out = String::new();
    let rss_title = if per_process {
        "peak RSS MiB (largest process)"
    } else {
        "peak RSS MiB"
    };
    let _ = writeln!(
        out,
        "| tool | wall s median (min) | msgs/s | MiB/s | tool CPU s | tool context switches | dest server CPU s | source server CPU s | {rss_title} | faithful |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        if let Some(why) = &row.skipped {
            let _ = writeln!(
                out,
                "| {} | — | — | — | — | — | — | — | — | skipped: {why} |",
                row.tool
            );
            continue;
        }
        let good = row.good();
        let failures: Vec<&str> = row
            .samples
            .iter()
            .filter_map(|s| s.failure.as_deref())
            .collect();
        if good.is_empty() {
            let _ = writeln!(
                out,
                "| {} | — | — | — | — | — | — | — | — | failed: {} |",
                row.tool,
                failures.first().copied().unwrap_or("?")
            );
            continue;
        }
        let walls: Vec<f64> = good.iter().map(|s| s.wall).collect();
        let wall = median(&walls);
        let cpu = median(&good.iter().map(|s| s.cpu).collect::<Vec<_>>());
        let switches = median(
            &good
                .iter()
                .map(|s| s.context_switches as f64)
                .collect::<Vec<_>>(),
        );
        let rss = good.iter().map(|s| s.max_rss_kib).max().unwrap_or(0) as f64 / 1024.0;
        let optional = |values: Vec<Option<f64>>| -> String {
            let known: Vec<f64> = values.into_iter().flatten().collect();
            if known.is_empty() {
                "—".into()
            } else {
                format!("{:.2}", median(&known))
            }
        };
        let dest_cpu = optional(good.iter().map(|s| s.dest_cpu).collect());
        let source_cpu = optional(good.iter().map(|s| s.source_cpu).collect());
        let mut verdicts: Vec<&str> = good
            .iter()
            .map(|s| s.faithful.as_str())
            .filter(|v| *v != "—")
            .collect();
        verdicts.sort_unstable();
        verdicts.dedup();
        let mut faithful = if verdicts.is_empty() {
            "—".to_string()
        } else {
            verdicts.join(" / ")
        };
        if !failures.is_empty() {
            let _ = write!(
                faithful,
                "; {} of {} passes failed: {}",
                failures.len(),
                row.samples.len(),
                failures[0]
            );
        }
        let mib = volume.bytes as f64 / (1024.0 * 1024.0);
        let mib_per_s = if volume.copies_bytes {
            format!("{:.1}", mib / wall)
        } else {
            "—".into()
        };
        let _ = writeln!(
            out,
            "| {} | {:.2} ({:.2}) | {:.0} | {} | {:.2} | {:.0} | {} | {} | {:.0} | {} |",
            row.tool,
            wall,
            minimum(&walls),
            volume.messages as f64 / wall,
            mib_per_s,
            cpu,
            switches,
            dest_cpu,
            source_cpu,
            rss,
            faithful
        );
    }
    out
}

/// "wall time of each peer / mailmove's" (above 1: mailmove was faster).
pub fn ratios(rows: &[Row]) -> String {
    let Some(base) = rows
        .iter()
        .find(|r| r.tool == Tool::Mailmove)
        .and_then(Row::median_wall)
    else {
        return "ratios: mailmove has no successful pass".into();
    };
    let parts: Vec<String> = rows
        .iter()
        .filter(|r| r.tool != Tool::Mailmove && r.skipped.is_none())
        .map(|r| match r.median_wall() {
            Some(wall) => format!("{} {:.2}", r.tool, wall / base),
            None => format!("{} —", r.tool),
        })
        .collect();
    if parts.is_empty() {
        return "ratios: no peer ran".into();
    }
    format!(
        "wall time ratio peer / mailmove (above 1: mailmove faster): {}",
        parts.join(", ")
    )
}

/// For each tool that goes through the destination's IMAP server: the servers' CPU
/// (median destination + source) spread over `cores`. No client of the same servers
/// can finish sooner on this machine, whatever it spends itself: the least wall time
/// the servers' work allows, set beside doveadm's, which has no destination server.
pub fn server_floor(rows: &[Row], cores: usize) -> Option<String> {
    if cores == 0 {
        return None;
    }
    let parts: Vec<String> = rows
        .iter()
        .filter(|r| r.tool != Tool::Doveadm && r.skipped.is_none())
        .filter_map(|r| {
            let good = r.good();
            let dest: Vec<f64> = good.iter().filter_map(|s| s.dest_cpu).collect();
            let source: Vec<f64> = good.iter().filter_map(|s| s.source_cpu).collect();
            if dest.is_empty() || source.is_empty() {
                return None;
            }
            let floor = (median(&dest) + median(&source)) / cores as f64;
            Some(format!("{} {floor:.2} s", r.tool))
        })
        .collect();
    if parts.is_empty() {
        return None;
    }
    let doveadm = rows
        .iter()
        .find(|r| r.tool == Tool::Doveadm)
        .and_then(Row::median_wall)
        .map(|wall| format!("; doveadm took {wall:.2} s"))
        .unwrap_or_default();
    Some(format!(
        "servers' CPU alone over {cores} cores (no IMAP client of these servers can be faster here): {}{doveadm}",
        parts.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(wall: f64) -> Sample {
        Sample {
            wall,
            cpu: 1.0,
            max_rss_kib: 2048,
            context_switches: 1000,
            dest_cpu: Some(0.5),
            source_cpu: None,
            faithful: "yes".into(),
            failure: None,
        }
    }

    #[test]
    fn the_floor_spreads_the_servers_cpu_over_the_cores() {
        let with_servers = |dest: f64, source: f64| Sample {
            dest_cpu: Some(dest),
            source_cpu: Some(source),
            ..sample(9.0)
        };
        let rows = vec![
            Row {
                tool: Tool::Mailmove,
                samples: vec![
                    with_servers(3.0, 1.0),
                    with_servers(5.0, 1.0),
                    with_servers(4.0, 2.0),
                ],
                skipped: None,
            },
            Row {
                tool: Tool::Doveadm,
                samples: vec![sample(2.5)],
                skipped: None,
            },
        ];
        assert_eq!(
            server_floor(&rows, 2).unwrap(),
            "servers' CPU alone over 2 cores (no IMAP client of these servers can be faster here): \
             mailmove 2.50 s; doveadm took 2.50 s"
        );
        assert_eq!(
            server_floor(&rows[1..], 2),
            None,
            "doveadm has no destination server"
        );
    }

    #[test]
    fn ratios_divide_medians() {
        let rows = vec![
            Row {
                tool: Tool::Mailmove,
                samples: vec![sample(2.0), sample(4.0), sample(3.0)],
                skipped: None,
            },
            Row {
                tool: Tool::Mbsync,
                samples: vec![sample(6.0)],
                skipped: None,
            },
            Row {
                tool: Tool::Doveadm,
                samples: vec![],
                skipped: Some("not installed".into()),
            },
        ];
        assert_eq!(
            ratios(&rows),
            "wall time ratio peer / mailmove (above 1: mailmove faster): mbsync 2.00"
        );
        let text = table(
            &rows,
            Volume {
                messages: 300,
                bytes: 3 * 1024 * 1024,
                copies_bytes: true,
            },
            false,
        );
        assert!(
            text.contains(
                "| mailmove | 3.00 (2.00) | 100 | 1.0 | 1.00 | 1000 | 0.50 | — | 2 | yes |"
            )
        );
        assert!(text.contains("skipped: not installed"));
    }
}
