//! Pipelined APPENDs: back to back with LITERAL+, grouped into MULTIAPPEND commands
//! where offered, a refused group sent again message by message.

use std::collections::VecDeque;

use mailmove_net::Body;
use tracing::{debug, trace};

use super::{Client, quote};
use crate::error::Error;
use crate::response::{Code, Response, Status, StatusKind, Untagged};

impl Client {
    /// A pipeline of APPENDs on this connection.
    pub fn appender(&mut self, window: usize) -> Appender<'_> {
        let literal_plus = self.has_capability("LITERAL+");
        // Groups are written without waiting for the server, so they need LITERAL+.
        let multi = literal_plus && self.has_capability("MULTIAPPEND") && window > 1;
        Appender {
            client: self,
            in_flight: VecDeque::new(),
            window: window.max(1),
            literal_plus,
            multi,
            open: None,
            again: VecDeque::new(),
        }
    }
}

/// One message to append.
#[derive(Debug)]
pub struct AppendRequest {
    pub mailbox: Vec<u8>,
    pub flags: Vec<String>,
    /// `dd-Mon-yyyy hh:mm:ss +zzzz`, as FETCH INTERNALDATE gave it.
    pub internal_date: Option<String>,
    pub body: Body,
    /// The caller's handle, returned with the outcome.
    pub token: u64,
}

/// How one APPEND ended.
#[derive(Debug)]
pub struct AppendOutcome {
    pub token: u64,
    /// `Ok(Some((uidvalidity, uid)))` with UIDPLUS, `Ok(None)` without.
    pub result: Result<Option<(u32, u32)>, Status>,
}

/// Messages one MULTIAPPEND command carries at most, and the bytes held in memory by
/// its messages (they are kept until the command completes, to be sent again one by
/// one if the server refuses the group; spooled bodies count nothing).
const GROUP_MESSAGES: usize = 32;
const GROUP_BYTES: u64 = 512 * 1024;
/// MULTIAPPEND commands in flight at once.
const GROUPS_IN_FLIGHT: usize = 2;

/// Pipelined APPENDs: with LITERAL+ commands go out back to back and answers are
/// matched by tag as they come; without it each literal waits for its `+`, while
/// earlier commands still complete in the background.
///
/// With MULTIAPPEND (RFC 3502) as well, consecutive messages for one mailbox go out
/// as one command: the server stores them in one transaction, which costs it much less
/// per message. The group is atomic: if the server refuses it, every message of it is
/// sent again alone, so a refusal is still reported for the one message it concerns.
pub struct Appender<'a> {
    client: &'a mut Client,
    in_flight: VecDeque<InFlight>,
    window: usize,
    literal_plus: bool,
    multi: bool,
    /// The MULTIAPPEND command being written: its tag, mailbox, messages and bytes.
    open: Option<(String, Vec<u8>, Vec<AppendRequest>, u64)>,
    /// Messages of refused groups, to send again alone.
    again: VecDeque<AppendRequest>,
}

/// A command in flight: one APPEND (its token), or a group (its messages).
enum InFlight {
    One {
        tag: String,
        token: u64,
    },
    Group {
        tag: String,
        messages: Vec<AppendRequest>,
    },
}

impl InFlight {
    fn tag(&self) -> &str {
        match self {
            InFlight::One { tag, .. } | InFlight::Group { tag, .. } => tag,
        }
    }
}

impl Appender<'_> {
    /// Sends one message; returns the outcomes of earlier ones that completed meanwhile.
    pub async fn send(&mut self, request: AppendRequest) -> Result<Vec<AppendOutcome>, Error> {
        let mut done = self.send_again().await?;
        if self.multi {
            done.extend(self.add_to_group(request).await?);
        } else {
            done.extend(self.send_one(request).await?);
        }
        Ok(done)
    }

    /// Ends the MULTIAPPEND being written, so its outcome can come: for a caller about
    /// to wait (for the source) before sending more.
    pub async fn idle(&mut self) -> Result<(), Error> {
        if let Some((tag, _, messages, _)) = self.open.take() {
            self.client.write_raw(b"\r\n").await?;
            self.client.flush().await?;
            self.in_flight.push_back(InFlight::Group { tag, messages });
        }
        Ok(())
    }

    /// Waits for every APPEND still in flight.
    pub async fn finish(&mut self) -> Result<Vec<AppendOutcome>, Error> {
        let mut done = Vec::new();
        loop {
            self.idle().await?;
            done.extend(self.send_again().await?);
            self.idle().await?;
            if self.in_flight.is_empty() {
                return Ok(done);
            }
            done.extend(self.read_one().await?);
        }
    }

    /// Sends alone the messages of groups the server refused.
    async fn send_again(&mut self) -> Result<Vec<AppendOutcome>, Error> {
        let mut done = Vec::new();
        while let Some(request) = self.again.pop_front() {
            self.idle().await?;
            done.extend(self.send_one(request).await?);
        }
        Ok(done)
    }

    async fn add_to_group(&mut self, request: AppendRequest) -> Result<Vec<AppendOutcome>, Error> {
        let mut done = Vec::new();
        if self
            .open
            .as_ref()
            .is_some_and(|(_, mailbox, _, _)| *mailbox != request.mailbox)
        {
            self.idle().await?;
        }
        if self.open.is_none() {
            while self.in_flight.len() >= GROUPS_IN_FLIGHT {
                done.extend(self.read_one().await?);
            }
            let tag = self.client.tag();
            let line = format!("{tag} APPEND {}", quote(&request.mailbox));
            trace!(host = %self.client.host, "C: {line} ...");
            self.client.write_raw(line.as_bytes()).await?;
            self.open = Some((tag, request.mailbox.clone(), Vec::new(), 0));
        }
        let line = format!(
            " ({}){} {{{}+}}\r\n",
            request.flags.join(" "),
            date_argument(&request),
            request.body.len()
        );
        self.client.write_raw(line.as_bytes()).await?;
        self.client.write_literal(&request.body).await?;
        let in_memory = match &request.body {
            Body::Memory(bytes) => bytes.len() as u64,
            Body::File { .. } => 0,
        };
        let full = {
            let (_, _, messages, bytes) = self.open.as_mut().expect("a group is open");
            messages.push(request);
            *bytes += in_memory;
            messages.len() >= GROUP_MESSAGES || *bytes >= GROUP_BYTES
        };
        if full {
            self.idle().await?;
        } else {
            // On the wire when `send` returns, so the server stores while we fetch.
            self.client.flush().await?;
        }
        Ok(done)
    }

    /// One APPEND command for one message.
    async fn send_one(&mut self, request: AppendRequest) -> Result<Vec<AppendOutcome>, Error> {
        let mut done = Vec::new();
        while self.in_flight.len() >= self.window {
            done.extend(self.read_one().await?);
        }
        let tag = self.client.tag();
        let len = request.body.len();
        let plus = if self.literal_plus { "+" } else { "" };
        let line = format!(
            "{tag} APPEND {} ({}){} {{{len}{plus}}}\r\n",
            quote(&request.mailbox),
            request.flags.join(" "),
            date_argument(&request),
        );
        trace!(host = %self.client.host, "C: {}", line.trim_end());
        self.client.write_raw(line.as_bytes()).await?;
        self.in_flight.push_back(InFlight::One {
            tag: tag.clone(),
            token: request.token,
        });
        if !self.literal_plus {
            // Earlier APPENDs may complete while this one waits for its `+`.
            loop {
                match self.client.read_response().await? {
                    Response::Continue(_) => break,
                    Response::Tagged { tag: t, status } => {
                        let refused_now = t == tag;
                        done.extend(self.complete(&t, status)?);
                        if refused_now {
                            return Ok(done);
                        }
                    }
                    Response::Untagged(Untagged::Status(s)) if s.kind == StatusKind::Bye => {
                        self.client.broken = true;
                        return Err(Error::ConnectionLost(s.describe()));
                    }
                    _ => {}
                }
            }
        }
        self.client.write_literal(&request.body).await?;
        self.client.write_raw(b"\r\n").await?;
        // On the wire when `send` returns: the caller may wait for the source next.
        self.client.flush().await?;
        Ok(done)
    }

    async fn read_one(&mut self) -> Result<Vec<AppendOutcome>, Error> {
        loop {
            match self.client.read_response().await? {
                Response::Tagged { tag, status } => return self.complete(&tag, status),
                Response::Untagged(Untagged::Status(s)) if s.kind == StatusKind::Bye => {
                    self.client.broken = true;
                    return Err(Error::ConnectionLost(s.describe()));
                }
                Response::Continue(_) => {
                    return Err(Error::Protocol(
                        "the server asked for a literal nobody announced".into(),
                    ));
                }
                _ => {}
            }
        }
    }

    fn complete(&mut self, tag: &str, status: Status) -> Result<Vec<AppendOutcome>, Error> {
        let position = self
            .in_flight
            .iter()
            .position(|f| f.tag() == tag)
            .ok_or_else(|| Error::Protocol(format!("completion for unknown tag {tag}")))?;
        let command = self
            .in_flight
            .remove(position)
            .expect("position was just found in the queue");
        let ok = status.kind == StatusKind::Ok;
        let uids = match &status.code {
            Some(Code::AppendUid { uidvalidity, uids }) if ok => Some((*uidvalidity, uids.clone())),
            _ => None,
        };
        Ok(match command {
            InFlight::One { token, .. } => vec![AppendOutcome {
                token,
                result: if ok {
                    Ok(uids.and_then(|(v, uids)| Some((v, *uids.first()?))))
                } else {
                    Err(status)
                },
            }],
            InFlight::Group { messages, .. } if ok => {
                // UIDs pair with messages in order when the server gave one for each.
                let by_order = uids.filter(|(_, u)| u.len() == messages.len());
                messages
                    .iter()
                    .enumerate()
                    .map(|(i, m)| AppendOutcome {
                        token: m.token,
                        result: Ok(by_order.as_ref().map(|(v, u)| (*v, u[i]))),
                    })
                    .collect()
            }
            InFlight::Group { messages, .. } => {
                debug!(
                    host = %self.client.host,
                    "a MULTIAPPEND of {} messages was refused ({}); sending them one by one",
                    messages.len(),
                    status.describe()
                );
                self.again.extend(messages);
                Vec::new()
            }
        })
    }
}

/// The date argument of an APPEND, with its leading space, or nothing.
fn date_argument(request: &AppendRequest) -> String {
    request
        .internal_date
        .as_deref()
        .map(|d| format!(" \"{d}\""))
        .unwrap_or_default()
}
