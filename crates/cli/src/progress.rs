//! Progress for people: a bar per running mailbox on a terminal, one line per event
//! (prefixed with the mailbox when there are several) in a pipe.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use mailmove_engine::report::human_size;
use mailmove_engine::{Event, Progress};

/// Where progress goes: bars on a terminal, lines otherwise.
pub struct Display {
    bars: Option<MultiProgress>,
}

impl Display {
    pub fn for_stderr() -> Display {
        Display {
            bars: std::io::stderr().is_terminal().then(MultiProgress::new),
        }
    }

    /// Progress of a single-mailbox run.
    pub fn single(&self) -> Box<dyn Progress> {
        self.make(None)
    }

    /// Progress of one mailbox among several.
    pub fn for_mailbox(&self, label: &str) -> Box<dyn Progress> {
        self.make(Some(label.to_string()))
    }

    fn make(&self, label: Option<String>) -> Box<dyn Progress> {
        match &self.bars {
            Some(multi) => Box::new(Bars {
                multi: multi.clone(),
                label,
                current: Mutex::new(None),
            }),
            None => Box::new(Lines { label }),
        }
    }

    pub fn finish(&self) {
        if let Some(multi) = &self.bars {
            let _ = multi.clear();
        }
    }
}

/// One line per event, for logs and pipes.
struct Lines {
    label: Option<String>,
}

impl Progress for Lines {
    fn event(&self, event: Event) {
        if let Some(line) = line(&event) {
            match &self.label {
                Some(label) => eprintln!("[{label}] {line}"),
                None => eprintln!("{line}"),
            }
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
            human_size(*bytes_to_copy)
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

/// A bar per mailbox: messages and bytes of every folder started so far, rate, ETA.
struct Bars {
    multi: MultiProgress,
    label: Option<String>,
    current: Mutex<Option<(ProgressBar, u64, u64)>>,
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
                let (bar, _, total) = current.get_or_insert_with(|| {
                    let bar = self.multi.add(ProgressBar::new(0));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix:.bold} {bar:25} {msg} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    (bar, 0, 0)
                });
                *total += to_copy;
                bar.inc_length(*bytes_to_copy);
                bar.set_prefix(match &self.label {
                    Some(label) => format!("{label} {source}"),
                    None => source.clone(),
                });
            }
            Event::MessageCopied { bytes } => {
                if let Some((bar, done, total)) = current.as_mut() {
                    *done += 1;
                    bar.inc(*bytes);
                    bar.set_message(format!("{done}/{total} msgs"));
                }
            }
            other => {
                if let Some(text) = line(other) {
                    let text = match &self.label {
                        Some(label) => format!("[{label}] {text}"),
                        None => text,
                    };
                    let _ = self.multi.println(text);
                }
            }
        }
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        if let Ok(mut current) = self.current.lock()
            && let Some((bar, _, _)) = current.take()
        {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
    }
}
