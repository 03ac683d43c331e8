//! Feeds arbitrary server bytes through the POP3 dot-unstuffer, in chunks whose size
//! the input chooses, and through every line parser: whatever a server sends, they
//! must return, never panic. The same bytes taken as a message must also come back
//! unchanged after being dot-stuffed the way a server does it and decoded again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailmove_pop3::response::{
    listing_lines, parse_octets, parse_scan_listing, parse_stat, parse_status,
    parse_unique_id_listing,
};
use mailmove_pop3::unstuff::{DotUnstuffer, Feed, dot_stuff, server_added_line_break};

fuzz_target!(|data: &[u8]| {
    let Some((&chunk_size, input)) = data.split_first() else {
        return;
    };
    let chunk_size = usize::from(chunk_size).max(1);

    // As a server's multi-line answer.
    let (decoded, used) = decode(input, chunk_size);
    if let Some(used) = used {
        assert!(used <= input.len());
        assert!(decoded.len() <= used);
    }
    for line in listing_lines(&decoded) {
        let _ = parse_scan_listing(line);
        let _ = parse_unique_id_listing(line);
    }

    // As status lines.
    for line in input.split_inclusive(|&b| b == b'\n') {
        if let Some(status) = parse_status(line) {
            let _ = status.code();
            let _ = parse_stat(&status.text);
            let _ = parse_octets(&status.text);
        }
    }

    // As a message: stuffed, terminated and decoded, it comes back whole.
    let wire = dot_stuff(input);
    let (decoded, used) = decode(&wire, chunk_size);
    assert_eq!(used, Some(wire.len()));
    let added = server_added_line_break(
        Some(input.len() as u64),
        decoded.len() as u64,
        decoded.ends_with(b"\r\n"),
    );
    let restored = if added {
        &decoded[..decoded.len() - 2]
    } else {
        &decoded[..]
    };
    assert_eq!(restored, input);
});

/// Decodes `input` in chunks of `chunk_size`; returns the message and, once the
/// terminator was found, how many bytes the answer took.
fn decode(input: &[u8], chunk_size: usize) -> (Vec<u8>, Option<usize>) {
    let mut decoder = DotUnstuffer::new();
    let mut decoded = Vec::new();
    let mut offset = 0;
    for chunk in input.chunks(chunk_size) {
        match decoder.feed(chunk, &mut decoded) {
            Feed::NeedMore => offset += chunk.len(),
            Feed::Ended { surplus } => {
                assert!(surplus <= chunk.len());
                return (decoded, Some(offset + chunk.len() - surplus));
            }
        }
    }
    (decoded, None)
}
