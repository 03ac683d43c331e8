//! Progress for people: bars on a terminal, one line per event in a pipe.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use mailmove_engine::{Event, Progress};

pub fn for_stderr() -> Box<dyn Progress> {
    if std::io::stderr().is_terminal() {
        Box::new(Bars::default())
    } else {
        Box::new(Lines)
    }
}

/// One line per event, for logs and pipes.
struct Lines;

impl Progress for Lines {
    fn event(&self, event: Event) {
        if let Some(line) = line(&event) {
            eprintln!("{line}");
        }
    }
}

fn line(event: &Event) -> Option<String> {
    Some(match event {
        Event::Connected { side, .. } => format!("connected to the {side}"),
        Event::FoldersPlanned { folders, excluded } => {
            format!("{folders} folders to copy, {excluded} excluded")
        }
        Event::FolderCreated { dest } => format!("created folder {dest}"),
        Event::FolderStarted {
            source,
            dest,
            to_copy,
            bytes_to_copy,
            total,
        } => format!(
            "{source} -> {dest}: {total} messages, {to_copy} to copy ({})",
            mailmove_engine::report::human_size(*bytes_to_copy)
        ),
        Event::MessageCopied { .. } => return None,
        Event::MessageFailed {
            folder,
            uid,
            reason,
        } => format!("FAILED {folder} UID {uid}: {reason}"),
        Event::FolderFinished {
            source,
            copied,
            already_present,
            skipped,
            failed,
        } => format!(
            "{source}: {copied} copied, {already_present} already present, {skipped} skipped, {failed} failed"
        ),
        Event::Retrying {
            reason,
            attempt,
            wait_seconds,
        } => {
            format!(
                "retrying in {wait_seconds} s (attempt {}): {reason}",
                attempt + 1
            )
        }
        Event::Warning(text) => format!("warning: {text}"),
    })
}

/// A bar per folder: messages, bytes, rate and ETA.
#[derive(Default)]
struct Bars {
    current: Mutex<Option<ProgressBar>>,
}

impl Progress for Bars {
    fn event(&self, event: Event) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        match &event {
            Event::FolderStarted {
                source,
                to_copy,
                bytes_to_copy,
                ..
            } => {
                if let Some(bar) = current.take() {
                    bar.finish_and_clear();
                }
                let bar = ProgressBar::new(*bytes_to_copy);
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix:.bold} {bar:30} {msg} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                bar.set_prefix(source.clone());
                bar.set_message(format!("0/{to_copy} msgs"));
                bar.set_length(*bytes_to_copy);
                *current = Some(bar);
            }
            Event::MessageCopied { bytes } => {
                if let Some(bar) = current.as_ref() {
                    bar.inc(*bytes);
                    let done = bar.message();
                    if let Some((count, total)) = done.trim_end_matches(" msgs").split_once('/') {
                        let count: u64 = count.parse().unwrap_or(0) + 1;
                        bar.set_message(format!("{count}/{total} msgs"));
                    }
                }
            }
            Event::FolderFinished { .. } => {
                if let Some(bar) = current.take() {
                    bar.finish_and_clear();
                }
                if let Some(text) = line(&event) {
                    eprintln!("{text}");
                }
            }
            other => {
                if let Some(text) = line(other) {
                    match current.as_ref() {
                        Some(bar) => bar.println(text),
                        None => eprintln!("{text}"),
                    }
                }
            }
        }
    }
}
