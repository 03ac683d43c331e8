//! The server side of NTLM over HTTP ([MS-NLMP]): the CHALLENGE_MESSAGE this server sends
//! and the NTLMv2 check of the AUTHENTICATE_MESSAGE, so clients can be tested against the
//! scheme on-premises Exchange offers by default.
//!
//! Only NTLMv2 is accepted (as Exchange with a modern LmCompatibilityLevel does); the MIC
//! and session keys are not checked because HTTP authentication uses neither signing nor
//! sealing.

use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;

const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";

const NEGOTIATE_UNICODE: u32 = 0x0000_0001;
const REQUEST_TARGET: u32 = 0x0000_0004;
const NEGOTIATE_SIGN: u32 = 0x0000_0010;
const NEGOTIATE_SEAL: u32 = 0x0000_0020;
const NEGOTIATE_NTLM: u32 = 0x0000_0200;
const NEGOTIATE_ALWAYS_SIGN: u32 = 0x0000_8000;
const TARGET_TYPE_DOMAIN: u32 = 0x0001_0000;
const NEGOTIATE_EXTENDED_SESSIONSECURITY: u32 = 0x0008_0000;
const NEGOTIATE_TARGET_INFO: u32 = 0x0080_0000;
const NEGOTIATE_VERSION: u32 = 0x0200_0000;
const NEGOTIATE_128: u32 = 0x2000_0000;
const NEGOTIATE_KEY_EXCH: u32 = 0x4000_0000;
const NEGOTIATE_56: u32 = 0x8000_0000;

/// Names the server announces in its challenge.
#[derive(Debug, Clone)]
pub(crate) struct ServerNames {
    /// NetBIOS domain name, e.g. `MAILMOVE`.
    pub netbios_domain: String,
    /// NetBIOS computer name, e.g. `EXCH01`.
    pub netbios_computer: String,
    /// DNS domain name, e.g. `mailmove.test`.
    pub dns_domain: String,
}

/// Which NTLM message a token carries.
pub(crate) fn message_type(token: &[u8]) -> Option<u32> {
    if token.len() < 12 || &token[..8] != SIGNATURE {
        return None;
    }
    Some(u32::from_le_bytes([
        token[8], token[9], token[10], token[11],
    ]))
}

/// The CHALLENGE_MESSAGE answering a NEGOTIATE_MESSAGE.
pub(crate) fn challenge_message(
    negotiate: &[u8],
    challenge: [u8; 8],
    names: &ServerNames,
    now_filetime: u64,
) -> Vec<u8> {
    let client_flags = read_u32(negotiate, 12).unwrap_or(0);
    let flags = NEGOTIATE_UNICODE
        | REQUEST_TARGET
        | NEGOTIATE_NTLM
        | NEGOTIATE_ALWAYS_SIGN
        | TARGET_TYPE_DOMAIN
        | NEGOTIATE_EXTENDED_SESSIONSECURITY
        | NEGOTIATE_TARGET_INFO
        | NEGOTIATE_VERSION
        | NEGOTIATE_128
        | NEGOTIATE_56
        | (client_flags & (NEGOTIATE_SIGN | NEGOTIATE_SEAL | NEGOTIATE_KEY_EXCH));

    let target_name = utf16le(&names.netbios_domain);
    let mut target_info = Vec::new();
    let computer_dns = format!(
        "{}.{}",
        names.netbios_computer.to_lowercase(),
        names.dns_domain
    );
    for (id, value) in [
        (2u16, utf16le(&names.netbios_domain)),
        (1, utf16le(&names.netbios_computer)),
        (4, utf16le(&names.dns_domain)),
        (3, utf16le(&computer_dns)),
        (7, now_filetime.to_le_bytes().to_vec()),
    ] {
        target_info.extend_from_slice(&id.to_le_bytes());
        target_info.extend_from_slice(&(value.len() as u16).to_le_bytes());
        target_info.extend_from_slice(&value);
    }
    target_info.extend_from_slice(&[0, 0, 0, 0]); // MsvAvEOL

    let header_len = 56u32;
    let mut out = Vec::with_capacity(header_len as usize + target_name.len() + target_info.len());
    out.extend_from_slice(SIGNATURE);
    out.extend_from_slice(&2u32.to_le_bytes());
    push_fields(&mut out, target_name.len(), header_len);
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&challenge);
    out.extend_from_slice(&[0; 8]);
    push_fields(
        &mut out,
        target_info.len(),
        header_len + target_name.len() as u32,
    );
    // Version: Windows Server 2016 (10.0.14393), NTLMSSP revision 15.
    out.extend_from_slice(&[10, 0]);
    out.extend_from_slice(&14393u16.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 15]);
    out.extend_from_slice(&target_name);
    out.extend_from_slice(&target_info);
    out
}

/// What an AUTHENTICATE_MESSAGE says about its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Authenticate {
    pub user: String,
    pub domain: String,
    nt_response: Vec<u8>,
}

/// Reads the user, domain and NT response of an AUTHENTICATE_MESSAGE.
pub(crate) fn parse_authenticate(token: &[u8]) -> Option<Authenticate> {
    if message_type(token)? != 3 {
        return None;
    }
    let flags = read_u32(token, 60)?;
    let nt_response = field(token, 20)?.to_vec();
    let domain = field(token, 28)?;
    let user = field(token, 36)?;
    let text = |bytes: &[u8]| {
        if flags & NEGOTIATE_UNICODE != 0 {
            from_utf16le(bytes)
        } else {
            Some(String::from_utf8_lossy(bytes).into_owned())
        }
    };
    Some(Authenticate {
        user: text(user)?,
        domain: text(domain)?,
        nt_response,
    })
}

impl Authenticate {
    /// The NTLMv2 check: NTProofStr = HMAC-MD5(NTOWFv2, server challenge ‖ blob) must equal
    /// the first 16 bytes of the NT response. NTLMv1 responses (24 bytes) never pass.
    pub fn verify(&self, password: &str, challenge: &[u8; 8]) -> bool {
        if self.nt_response.len() <= 24 {
            return false;
        }
        let key = ntowf_v2(password, &self.user, &self.domain);
        let (proof, blob) = self.nt_response.split_at(16);
        let mut mac = hmac_md5(&key);
        mac.update(challenge);
        mac.update(blob);
        mac.verify_slice(proof).is_ok()
    }
}

/// NTOWFv2 = HMAC-MD5(MD4(UTF-16LE(password)), UTF-16LE(uppercase(user) ‖ domain)).
pub(crate) fn ntowf_v2(password: &str, user: &str, domain: &str) -> [u8; 16] {
    let nt_hash = md4(&utf16le(password));
    let mut mac = hmac_md5(&nt_hash);
    mac.update(&utf16le(&(user.to_uppercase() + domain)));
    mac.finalize().into_bytes().into()
}

fn hmac_md5(key: &[u8]) -> Hmac<Md5> {
    // HMAC takes keys of any length, so this cannot fail.
    Hmac::<Md5>::new_from_slice(key).expect("HMAC accepts any key length")
}

fn push_fields(out: &mut Vec<u8>, len: usize, offset: u32) {
    out.extend_from_slice(&(len as u16).to_le_bytes());
    out.extend_from_slice(&(len as u16).to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
}

fn field(token: &[u8], at: usize) -> Option<&[u8]> {
    let len = u16::from_le_bytes([*token.get(at)?, *token.get(at + 1)?]) as usize;
    let offset = read_u32(token, at + 4)? as usize;
    token.get(offset..offset.checked_add(len)?)
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn utf16le(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn from_utf16le(bytes: &[u8]) -> Option<String> {
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|p| u16::from_le_bytes([p[0], p[1]]))
        .collect();
    String::from_utf16(&units).ok()
}

/// The client side, so tests can speak NTLM to the server without another library.
pub mod client {
    use super::*;

    /// A NEGOTIATE_MESSAGE asking for Unicode, NTLM and extended session security.
    pub fn negotiate() -> Vec<u8> {
        let flags = NEGOTIATE_UNICODE
            | REQUEST_TARGET
            | NEGOTIATE_NTLM
            | NEGOTIATE_ALWAYS_SIGN
            | NEGOTIATE_EXTENDED_SESSIONSECURITY
            | NEGOTIATE_128
            | NEGOTIATE_56;
        let mut out = Vec::with_capacity(32);
        out.extend_from_slice(SIGNATURE);
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&[0; 16]); // empty domain and workstation fields
        out
    }

    /// The AUTHENTICATE_MESSAGE answering a CHALLENGE_MESSAGE with an NTLMv2 response;
    /// `None` if `challenge` is not a CHALLENGE_MESSAGE.
    pub fn authenticate(
        challenge: &[u8],
        user: &str,
        domain: &str,
        password: &str,
    ) -> Option<Vec<u8>> {
        if message_type(challenge)? != 2 {
            return None;
        }
        let server_challenge: [u8; 8] = challenge.get(24..32)?.try_into().ok()?;
        let target_info = field(challenge, 40)?;
        let mut blob = vec![1, 1, 0, 0, 0, 0, 0, 0];
        blob.extend_from_slice(&[0; 8]); // timestamp: the server does not check it
        blob.extend_from_slice(b"mmclient");
        blob.extend_from_slice(&[0; 4]);
        blob.extend_from_slice(target_info);
        blob.extend_from_slice(&[0; 4]);
        let mut mac = hmac_md5(&ntowf_v2(password, user, domain));
        mac.update(&server_challenge);
        mac.update(&blob);
        let proof: [u8; 16] = mac.finalize().into_bytes().into();
        let nt_response = [&proof[..], &blob].concat();

        let payload: [Vec<u8>; 6] = [
            vec![0; 24],
            nt_response,
            utf16le(domain),
            utf16le(user),
            utf16le("TESTHOST"),
            Vec::new(),
        ];
        let header_len = 64u32;
        let mut out = Vec::new();
        out.extend_from_slice(SIGNATURE);
        out.extend_from_slice(&3u32.to_le_bytes());
        let mut offset = header_len;
        for part in &payload {
            push_fields(&mut out, part.len(), offset);
            offset += part.len() as u32;
        }
        let flags = NEGOTIATE_UNICODE | NEGOTIATE_NTLM | NEGOTIATE_EXTENDED_SESSIONSECURITY;
        out.extend_from_slice(&flags.to_le_bytes());
        for part in &payload {
            out.extend_from_slice(part);
        }
        Some(out)
    }
}

/// MD4 (RFC 1320), which NTLM still needs for the NT hash and no crate of the lockfile
/// provides.
pub(crate) fn md4(input: &[u8]) -> [u8; 16] {
    let mut state: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
    let mut message = input.to_vec();
    let bit_len = (input.len() as u64).wrapping_mul(8);
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&bit_len.to_le_bytes());

    for block in message.chunks_exact(64) {
        let mut x = [0u32; 16];
        for (i, word) in block.chunks_exact(4).enumerate() {
            x[i] = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        }
        let [mut a, mut b, mut c, mut d] = state;
        let f = |x: u32, y: u32, z: u32| (x & y) | (!x & z);
        let g = |x: u32, y: u32, z: u32| (x & y) | (x & z) | (y & z);
        let h = |x: u32, y: u32, z: u32| x ^ y ^ z;
        for &i in &[0usize, 4, 8, 12] {
            a = a.wrapping_add(f(b, c, d)).wrapping_add(x[i]).rotate_left(3);
            d = d
                .wrapping_add(f(a, b, c))
                .wrapping_add(x[i + 1])
                .rotate_left(7);
            c = c
                .wrapping_add(f(d, a, b))
                .wrapping_add(x[i + 2])
                .rotate_left(11);
            b = b
                .wrapping_add(f(c, d, a))
                .wrapping_add(x[i + 3])
                .rotate_left(19);
        }
        const ROUND2: u32 = 0x5a82_7999;
        for i in 0..4 {
            a = a
                .wrapping_add(g(b, c, d))
                .wrapping_add(x[i])
                .wrapping_add(ROUND2)
                .rotate_left(3);
            d = d
                .wrapping_add(g(a, b, c))
                .wrapping_add(x[i + 4])
                .wrapping_add(ROUND2)
                .rotate_left(5);
            c = c
                .wrapping_add(g(d, a, b))
                .wrapping_add(x[i + 8])
                .wrapping_add(ROUND2)
                .rotate_left(9);
            b = b
                .wrapping_add(g(c, d, a))
                .wrapping_add(x[i + 12])
                .wrapping_add(ROUND2)
                .rotate_left(13);
        }
        const ROUND3: u32 = 0x6ed9_eba1;
        for &i in &[0usize, 2, 1, 3] {
            a = a
                .wrapping_add(h(b, c, d))
                .wrapping_add(x[i])
                .wrapping_add(ROUND3)
                .rotate_left(3);
            d = d
                .wrapping_add(h(a, b, c))
                .wrapping_add(x[i + 8])
                .wrapping_add(ROUND3)
                .rotate_left(9);
            c = c
                .wrapping_add(h(d, a, b))
                .wrapping_add(x[i + 4])
                .wrapping_add(ROUND3)
                .rotate_left(11);
            b = b
                .wrapping_add(h(c, d, a))
                .wrapping_add(x[i + 12])
                .wrapping_add(ROUND3)
                .rotate_left(15);
        }
        state[0] = state[0].wrapping_add(a);
        state[1] = state[1].wrapping_add(b);
        state[2] = state[2].wrapping_add(c);
        state[3] = state[3].wrapping_add(d);
    }
    let mut out = [0u8; 16];
    for (i, word) in state.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&word.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn md4_known_answers_from_rfc_1320() {
        assert_eq!(hex(&md4(b"")), "31d6cfe0d16ae931b73c59d7e0c089c0");
        assert_eq!(hex(&md4(b"abc")), "a448017aaf21d8525fc10ae87aa6729d");
        assert_eq!(
            hex(&md4(
                b"12345678901234567890123456789012345678901234567890123456789012345678901234567890"
            )),
            "e33b4ddc9c38f2199c3e7b164fcc0536"
        );
    }

    #[test]
    fn ntowf_v2_matches_ms_nlmp_example() {
        // [MS-NLMP] 4.2.4.1.1: user "User", domain "Domain", password "Password".
        assert_eq!(
            hex(&ntowf_v2("Password", "User", "Domain")),
            "0c868a403bfd7a93a3001ef22ef02e3f"
        );
    }

    #[test]
    fn ntlmv2_response_from_ms_nlmp_example_verifies() {
        // [MS-NLMP] 4.2.4: server challenge 0123456789abcdef, client challenge aa*8,
        // time 0, target info from the example CHALLENGE_MESSAGE; NTProofStr
        // 68cd0ab851e51c96aabc927bebef6a1c.
        let challenge = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
        let target_info: Vec<u8> = [
            &[0x02, 0x00, 0x0c, 0x00][..],
            &utf16le("Domain"),
            &[0x01, 0x00, 0x0c, 0x00],
            &utf16le("Server"),
            &[0, 0, 0, 0],
        ]
        .concat();
        let mut blob = vec![1, 1, 0, 0, 0, 0, 0, 0];
        blob.extend_from_slice(&[0; 8]);
        blob.extend_from_slice(&[0xaa; 8]);
        blob.extend_from_slice(&[0; 4]);
        blob.extend_from_slice(&target_info);
        blob.extend_from_slice(&[0; 4]);
        let key = ntowf_v2("Password", "User", "Domain");
        let mut mac = hmac_md5(&key);
        mac.update(&challenge);
        mac.update(&blob);
        let proof: [u8; 16] = mac.finalize().into_bytes().into();
        assert_eq!(hex(&proof), "68cd0ab851e51c96aabc927bebef6a1c");
        let auth = Authenticate {
            user: "User".into(),
            domain: "Domain".into(),
            nt_response: [&proof[..], &blob].concat(),
        };
        assert!(auth.verify("Password", &challenge));
        assert!(!auth.verify("password", &challenge));
    }

    #[test]
    fn client_messages_pass_the_server_check() {
        let names = ServerNames {
            netbios_domain: "MAILMOVE".into(),
            netbios_computer: "EXCH01".into(),
            dns_domain: "mailmove.test".into(),
        };
        let negotiate = client::negotiate();
        assert_eq!(message_type(&negotiate), Some(1));
        let challenge = challenge_message(&negotiate, [9; 8], &names, 1);
        let token = client::authenticate(&challenge, "alice", "MAILMOVE", "pw").unwrap();
        let message = parse_authenticate(&token).unwrap();
        assert_eq!(
            (message.user.as_str(), message.domain.as_str()),
            ("alice", "MAILMOVE")
        );
        assert!(message.verify("pw", &[9; 8]));
        assert!(!message.verify("pw", &[8; 8]));
        assert!(!message.verify("other", &[9; 8]));
    }

    #[test]
    fn challenge_message_parses_back() {
        let names = ServerNames {
            netbios_domain: "MAILMOVE".into(),
            netbios_computer: "EXCH01".into(),
            dns_domain: "mailmove.test".into(),
        };
        let message = challenge_message(&[], [7; 8], &names, 0);
        assert_eq!(message_type(&message), Some(2));
        assert_eq!(&message[24..32], &[7; 8]);
        assert_eq!(field(&message, 12).unwrap(), utf16le("MAILMOVE").as_slice());
        let info = field(&message, 40).unwrap();
        assert_eq!(&info[..2], &[2, 0]);
    }
}
