//! Hands out TCP ports for private servers, so that tests running in parallel never
//! hand the same port to two Dovecot instances.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Ports are taken from below Linux's ephemeral range (32768–60999): a port the kernel
/// may give to an outgoing connection could be taken between our probe and the
/// server's bind, while nothing picks ports from this range on its own.
const FIRST: u16 = 20_000;
const LAST: u16 = 32_000;

struct Allocator {
    next: u16,
    handed_out: HashSet<u16>,
}

static ALLOCATOR: Mutex<Option<Allocator>> = Mutex::new(None);

/// A port on 127.0.0.1 that was free a moment ago and that this process has never
/// handed out before. Each process starts at its own pid- and time-derived offset, so
/// parallel test processes rarely probe the same ports.
pub fn free_port() -> u16 {
    // A poisoned lock only means another test panicked while holding it; the
    // allocator's state is still consistent (a set and a cursor).
    let mut guard = ALLOCATOR.lock().unwrap_or_else(|e| e.into_inner());
    let allocator = guard.get_or_insert_with(|| Allocator {
        next: start_offset(),
        handed_out: HashSet::new(),
    });
    let span = LAST - FIRST;
    for _ in 0..span {
        let candidate = allocator.next;
        allocator.next = if candidate + 1 >= LAST {
            FIRST
        } else {
            candidate + 1
        };
        if allocator.handed_out.contains(&candidate) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", candidate)).is_ok() {
            allocator.handed_out.insert(candidate);
            return candidate;
        }
    }
    // The whole range is busy (never seen in practice): fall back to the kernel.
    // Binding port 0 on loopback only fails on a machine without networking, where no
    // test could run anyway, so panicking with the reason is the useful outcome.
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .expect("cannot bind 127.0.0.1:0 — is loopback networking available?");
    let port = listener
        .local_addr()
        .expect("a bound listener has a local address")
        .port();
    allocator.handed_out.insert(port);
    port
}

fn start_offset() -> u16 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mixed = std::process::id()
        .wrapping_mul(7919)
        .wrapping_add(nanos / 1000);
    // The modulo keeps the value below LAST - FIRST, which fits in u16.
    FIRST + (mixed % u32::from(LAST - FIRST)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_never_repeated() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let unique: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), ports.len());
    }
}
