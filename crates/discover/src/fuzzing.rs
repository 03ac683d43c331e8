//! One entry point for the fuzz target in `fuzz/`: bytes read as an autoconfig
//! document (`clientConfig`), as a hostile web server would send them. Not for programs.

/// Parses `bytes` with the limits discovery uses; returns how many incoming servers
/// were kept. Whatever the bytes, it returns: no panic, no unbounded memory.
pub fn parse_autoconfig(bytes: &[u8]) -> usize {
    crate::autoconfig::parse(bytes).map_or(0, |servers| servers.len())
}
