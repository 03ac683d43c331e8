//! Feeds arbitrary bytes through mailmove-ews's answer reader, as an Exchange server's
//! answer: the streamed XML reader (MIME content decoded from base64 as it arrives,
//! bounded by a small maximum so that the bound is reached too) and every reader of
//! what an answer holds. Whatever a server sends, they must return, never panic,
//! hang or grow without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
}

fuzz_target!(|data: &[u8]| {
    RUNTIME.with(|runtime| {
        runtime.block_on(async {
            let _ = mailmove_ews::fuzzing::read_answer(data, 1024).await;
        })
    });
});
