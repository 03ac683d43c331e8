//! Modified UTF-7 (RFC 3501 §5.1.3), the encoding of IMAP mailbox names.
//!
//! The raw bytes a server sends stay a folder's identity; the decoded text is only
//! for showing, matching rules and building the name on the other server.

use base64::Engine;
use base64::alphabet::IMAP_MUTF7;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

const CODEC: GeneralPurpose = GeneralPurpose::new(
    &IMAP_MUTF7,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("mailbox name {name:?} is not valid modified UTF-7: {why}")]
pub struct Mutf7Error {
    pub name: String,
    pub why: &'static str,
}

/// Encodes a Unicode mailbox name for the wire.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    for ch in name.chars() {
        if (' '..='~').contains(&ch) {
            flush(&mut pending, &mut out);
            if ch == '&' {
                out.push_str("&-");
            } else {
                out.push(ch);
            }
        } else {
            let mut units = [0u16; 2];
            pending.extend_from_slice(ch.encode_utf16(&mut units));
        }
    }
    flush(&mut pending, &mut out);
    out
}

fn flush(pending: &mut Vec<u16>, out: &mut String) {
    if pending.is_empty() {
        return;
    }
    let bytes: Vec<u8> = pending.iter().flat_map(|unit| unit.to_be_bytes()).collect();
    out.push('&');
    out.push_str(&CODEC.encode(bytes));
    out.push('-');
    pending.clear();
}

/// Decodes a wire mailbox name. Invalid input is an error, never garbage, so a
/// mapping rule is never applied to a name that was misread.
pub fn decode(raw: &[u8]) -> Result<String, Mutf7Error> {
    let error = |why| Mutf7Error {
        name: String::from_utf8_lossy(raw).into_owned(),
        why,
    };
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let byte = raw[i];
        if byte == b'&' {
            let end = raw[i + 1..]
                .iter()
                .position(|&b| b == b'-')
                .ok_or_else(|| error("an `&` shift is never closed by `-`"))?
                + i
                + 1;
            let encoded = &raw[i + 1..end];
            if encoded.is_empty() {
                out.push('&');
            } else {
                let bytes = CODEC
                    .decode(encoded)
                    .map_err(|_| error("bad base64 inside an `&...-` shift"))?;
                if bytes.len() % 2 != 0 {
                    return Err(error("odd number of bytes inside a shift"));
                }
                let units: Vec<u16> = bytes
                    .chunks_exact(2)
                    .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
                    .collect();
                let text = String::from_utf16(&units)
                    .map_err(|_| error("broken UTF-16 inside a shift"))?;
                out.push_str(&text);
            }
            i = end + 1;
        } else if (0x20..=0x7e).contains(&byte) {
            out.push(byte as char);
            i += 1;
        } else {
            return Err(error("a byte outside printable ASCII"));
        }
    }
    Ok(out)
}

/// Decodes leniently for names that some servers send as raw UTF-8 (Gmail with
/// UTF8=ACCEPT, some Exchange versions): valid mUTF-7 first, then UTF-8.
pub fn decode_lenient(raw: &[u8]) -> String {
    match decode(raw) {
        Ok(text) => text,
        Err(_) => String::from_utf8_lossy(raw).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_answers() {
        let cases = [
            ("INBOX", "INBOX"),
            ("Données clients", "Donn&AOk-es clients"),
            ("R&D", "R&-D"),
            ("日本語", "&ZeVnLIqe-"),
            ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
            ("Entwürfe", "Entw&APw-rfe"),
            ("😀", "&2D3eAA-"),
        ];
        for (text, wire) in cases {
            assert_eq!(encode(text), wire, "encode {text}");
            assert_eq!(decode(wire.as_bytes()).unwrap(), text, "decode {wire}");
        }
    }

    #[test]
    fn invalid_input_is_an_error() {
        for bad in ["&AOk", "&!!!-", "caf\u{e9}", "&AO-"] {
            assert!(decode(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn lenient_decoding_accepts_raw_utf8() {
        assert_eq!(decode_lenient("Données".as_bytes()), "Données");
    }

    proptest! {
        #[test]
        fn round_trips(name in "\\PC{0,40}") {
            let wire = encode(&name);
            prop_assert!(wire.bytes().all(|b| (0x20..=0x7e).contains(&b)));
            prop_assert_eq!(decode(wire.as_bytes()).unwrap(), name);
        }
    }
}
