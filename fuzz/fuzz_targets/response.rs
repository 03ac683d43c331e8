//! Feeds arbitrary server bytes through `FrameReader` and `parse`: whatever a server
//! sends, framing must end in a frame or an error and parsing must return, never panic,
//! hang or overflow the stack.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailmove_imap::framing::{FrameLimits, FrameReader};
use mailmove_imap::response::parse;

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
}

fuzz_target!(|data: &[u8]| {
    // Small limits so that spilling literals to a file and over-long lines are reached too.
    let limits = FrameLimits {
        spill_threshold: 64,
        max_line: 4096,
        max_literal: 1024,
        max_literals: 8,
    };
    RUNTIME.with(|runtime| {
        runtime.block_on(async {
            let mut reader = FrameReader::new(data, limits);
            while let Ok(frame) = reader.read_frame().await {
                let _ = parse(frame);
            }
        })
    });
});
