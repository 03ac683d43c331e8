//! Feeds arbitrary bytes through mailmove-discover's autoconfig reader, as the
//! `clientConfig` document a domain's web server answers with: whatever it sends, the
//! reader must return, never panic, hang or grow without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mailmove_discover::fuzzing::parse_autoconfig(data);
});
