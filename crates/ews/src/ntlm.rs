//! NTLMv2 (MS-NLMP) for HTTP: the NEGOTIATE message, reading the server's CHALLENGE,
//! and the AUTHENTICATE message with the NTLMv2 response. No I/O here; the transport
//! sends the three messages on one connection, because NTLM authenticates the
//! connection, not the request.
//!
//! Not done: the MIC and channel bindings (Extended Protection), which Exchange does
//! not require by default; signing and sealing, which HTTP does not use.

use hmac::{Hmac, KeyInit, Mac};
use md4::{Digest, Md4};
use md5::Md5;

const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";

const NEGOTIATE_UNICODE: u32 = 0x0000_0001;
const NEGOTIATE_OEM: u32 = 0x0000_0002;
const REQUEST_TARGET: u32 = 0x0000_0004;
const NEGOTIATE_NTLM: u32 = 0x0000_0200;
const NEGOTIATE_ALWAYS_SIGN: u32 = 0x0000_8000;
const NEGOTIATE_EXTENDED_SESSIONSECURITY: u32 = 0x0008_0000;
const NEGOTIATE_TARGET_INFO: u32 = 0x0080_0000;
const NEGOTIATE_128: u32 = 0x2000_0000;
const NEGOTIATE_56: u32 = 0x8000_0000;

/// What mailmove asks for: Unicode, NTLM with extended session security.
const CLIENT_FLAGS: u32 = NEGOTIATE_UNICODE
    | NEGOTIATE_OEM
    | REQUEST_TARGET
    | NEGOTIATE_NTLM
    | NEGOTIATE_ALWAYS_SIGN
    | NEGOTIATE_EXTENDED_SESSIONSECURITY
    | NEGOTIATE_128
    | NEGOTIATE_56;

/// AV_PAIR ids (MS-NLMP 2.2.2.1).
const AV_EOL: u16 = 0;
const AV_TIMESTAMP: u16 = 7;

/// A login split as Windows does: `DOMAIN\user` or a UPN (`user@domain`, domain empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    pub domain: String,
    pub user: String,
}

impl Identity {
    pub fn from_login(login: &str) -> Identity {
        match login.split_once('\\') {
            Some((domain, user)) => Identity {
                domain: domain.to_string(),
                user: user.to_string(),
            },
            None => Identity {
                domain: String::new(),
                user: login.to_string(),
            },
        }
    }
}

/// The NEGOTIATE_MESSAGE: no domain, no workstation, no version.
pub(crate) fn negotiate_message() -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    out.extend_from_slice(SIGNATURE);
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&CLIENT_FLAGS.to_le_bytes());
    // DomainNameFields and WorkstationFields: empty.
    out.extend_from_slice(&[0; 16]);
    out
}

/// The parts of a CHALLENGE_MESSAGE that the response needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub flags: u32,
    pub server_challenge: [u8; 8],
    /// The AV pairs as sent; echoed inside the NTLMv2 response.
    pub target_info: Vec<u8>,
    /// MsvAvTimestamp, when the server sent one.
    pub timestamp: Option<[u8; 8]>,
}

pub(crate) fn parse_challenge(message: &[u8]) -> Result<Challenge, String> {
    if message.len() < 32 || &message[..8] != SIGNATURE {
        return Err("not an NTLM message".into());
    }
    if u32_at(message, 8) != 2 {
        return Err("not an NTLM CHALLENGE message".into());
    }
    let flags = u32_at(message, 20);
    let mut server_challenge = [0; 8];
    server_challenge.copy_from_slice(&message[24..32]);
    let target_info = if flags & NEGOTIATE_TARGET_INFO != 0 && message.len() >= 48 {
        let len = usize::from(u16_at(message, 40));
        let offset = u32_at(message, 44) as usize;
        message
            .get(offset..offset + len)
            .ok_or("TargetInfo outside the CHALLENGE message")?
            .to_vec()
    } else {
        Vec::new()
    };
    let timestamp = av_pair(&target_info, AV_TIMESTAMP).and_then(|v| v.try_into().ok());
    Ok(Challenge {
        flags,
        server_challenge,
        target_info,
        timestamp,
    })
}

fn av_pair(pairs: &[u8], wanted: u16) -> Option<&[u8]> {
    let mut at = 0;
    while at + 4 <= pairs.len() {
        let id = u16_at(pairs, at);
        let len = usize::from(u16_at(pairs, at + 2));
        let value = pairs.get(at + 4..at + 4 + len)?;
        if id == AV_EOL {
            return None;
        }
        if id == wanted {
            return Some(value);
        }
        at += 4 + len;
    }
    None
}

/// NTOWFv2 (MS-NLMP 3.3.2): HMAC_MD5(MD4(UNICODE(password)), UNICODE(UPPER(user) + domain)).
pub(crate) fn nt_owf_v2(identity: &Identity, password: &str) -> [u8; 16] {
    let nt_hash = Md4::digest(utf16le(password));
    let mut who = utf16le(&identity.user.to_uppercase());
    who.extend(utf16le(&identity.domain));
    hmac_md5(&nt_hash, &[&who])
}

/// The NTLMv2 response: NTProofStr followed by the client challenge structure ("temp").
pub(crate) fn ntlmv2_response(
    response_key: &[u8; 16],
    server_challenge: &[u8; 8],
    client_challenge: &[u8; 8],
    timestamp: &[u8; 8],
    target_info: &[u8],
) -> Vec<u8> {
    let mut temp = Vec::with_capacity(32 + target_info.len());
    temp.extend_from_slice(&[1, 1, 0, 0, 0, 0, 0, 0]);
    temp.extend_from_slice(timestamp);
    temp.extend_from_slice(client_challenge);
    temp.extend_from_slice(&[0; 4]);
    temp.extend_from_slice(target_info);
    temp.extend_from_slice(&[0; 4]);
    let proof = hmac_md5(response_key, &[server_challenge, &temp]);
    let mut response = proof.to_vec();
    response.extend_from_slice(&temp);
    response
}

/// The LMv2 response: HMAC_MD5(key, server challenge + client challenge) + client challenge.
pub(crate) fn lmv2_response(
    response_key: &[u8; 16],
    server_challenge: &[u8; 8],
    client_challenge: &[u8; 8],
) -> Vec<u8> {
    let mut response = hmac_md5(response_key, &[server_challenge, client_challenge]).to_vec();
    response.extend_from_slice(client_challenge);
    response
}

/// The AUTHENTICATE_MESSAGE (MS-NLMP 2.2.1.3) without VERSION and MIC.
/// `client_challenge` is 8 random bytes; `now` is the time as a FILETIME, used when the
/// server sent no timestamp.
pub(crate) fn authenticate_message(
    challenge: &Challenge,
    identity: &Identity,
    password: &str,
    client_challenge: [u8; 8],
    now: u64,
) -> Vec<u8> {
    let key = nt_owf_v2(identity, password);
    let timestamp = challenge.timestamp.unwrap_or(now.to_le_bytes());
    let nt = ntlmv2_response(
        &key,
        &challenge.server_challenge,
        &client_challenge,
        &timestamp,
        &challenge.target_info,
    );
    // With a server timestamp the LM response must be zeros (MS-NLMP 3.1.5.1.2).
    let lm = if challenge.timestamp.is_some() {
        vec![0; 24]
    } else {
        lmv2_response(&key, &challenge.server_challenge, &client_challenge)
    };
    let unicode = challenge.flags & NEGOTIATE_UNICODE != 0;
    let text = |s: &str| {
        if unicode {
            utf16le(s)
        } else {
            s.as_bytes().to_vec()
        }
    };
    let domain = text(&identity.domain);
    let user = text(&identity.user);
    let workstation = Vec::new();
    let mut flags = CLIENT_FLAGS & challenge.flags;
    flags &= if unicode {
        !NEGOTIATE_OEM
    } else {
        !NEGOTIATE_UNICODE
    };

    const HEADER: usize = 64;
    let payloads: [&[u8]; 5] = [&lm, &nt, &domain, &user, &workstation];
    let mut out = Vec::with_capacity(HEADER + payloads.iter().map(|p| p.len()).sum::<usize>());
    out.extend_from_slice(SIGNATURE);
    out.extend_from_slice(&3u32.to_le_bytes());
    let mut offset = HEADER;
    for payload in payloads {
        push_fields(&mut out, payload.len(), offset);
        offset += payload.len();
    }
    // EncryptedRandomSessionKeyFields: empty (no key exchange).
    push_fields(&mut out, 0, offset);
    out.extend_from_slice(&flags.to_le_bytes());
    for payload in payloads {
        out.extend_from_slice(payload);
    }
    out
}

fn push_fields(out: &mut Vec<u8>, len: usize, offset: usize) {
    // Every payload is far below 64 KiB: a login, a password-derived response and the
    // server's own TargetInfo (itself read from a u16 length).
    let len = u16::try_from(len).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(offset as u32).to_le_bytes());
}

/// The current time as a Windows FILETIME (100 ns ticks since 1601-01-01).
pub(crate) fn filetime_now() -> u64 {
    const UNIX_EPOCH_AS_FILETIME: u64 = 116_444_736_000_000_000;
    let since_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    UNIX_EPOCH_AS_FILETIME + (since_unix.as_nanos() / 100) as u64
}

fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    // HMAC accepts keys of any length.
    let mut mac = <Hmac<Md5> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    let mut out = [0; 16];
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

fn utf16le(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        text.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    /// MS-NLMP 4.2.1: User "User", domain "Domain", password "Password", server
    /// challenge 0123456789abcdef, client challenge aa * 8, time 0; 4.2.4.1.3: the
    /// TargetInfo of the CHALLENGE (MsvAvNbDomainName "Domain", MsvAvNbComputerName
    /// "Server", MsvAvEOL).
    fn known_answer_inputs() -> (Identity, [u8; 8], [u8; 8], Vec<u8>) {
        let identity = Identity {
            domain: "Domain".into(),
            user: "User".into(),
        };
        let server: [u8; 8] = hex("01 23 45 67 89 ab cd ef").try_into().unwrap();
        let client = [0xaa; 8];
        let target_info = hex("02 00 0c 00 44 00 6f 00 6d 00 61 00 69 00 6e 00 \
             01 00 0c 00 53 00 65 00 72 00 76 00 65 00 72 00 00 00 00 00");
        (identity, server, client, target_info)
    }

    #[test]
    fn ms_nlmp_4_2_4_ntowfv2() {
        let (identity, ..) = known_answer_inputs();
        assert_eq!(
            nt_owf_v2(&identity, "Password").to_vec(),
            hex("0c 86 8a 40 3b fd 7a 93 a3 00 1e f2 2e f0 2e 3f")
        );
    }

    #[test]
    fn ms_nlmp_4_2_4_lmv2_response() {
        let (identity, server, client, _) = known_answer_inputs();
        let key = nt_owf_v2(&identity, "Password");
        assert_eq!(
            lmv2_response(&key, &server, &client),
            hex("86 c3 50 97 ac 9c ec 10 25 54 76 4a 57 cc cc 19 aa aa aa aa aa aa aa aa")
        );
    }

    #[test]
    fn ms_nlmp_4_2_4_ntproofstr() {
        let (identity, server, client, target_info) = known_answer_inputs();
        let key = nt_owf_v2(&identity, "Password");
        let response = ntlmv2_response(&key, &server, &client, &[0; 8], &target_info);
        assert_eq!(
            response[..16].to_vec(),
            hex("68 cd 0a b8 51 e5 1c 96 aa bc 92 7b eb ef 6a 1c")
        );
        // The rest is "temp": 0101 0000 0000 0000, time, client challenge, 0, AV pairs, 0.
        assert_eq!(response[16..24], [1, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(response[32..40], [0xaa; 8]);
        assert_eq!(response[44..44 + target_info.len()], target_info[..]);
    }

    fn challenge_message(flags: u32, target_info: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(SIGNATURE);
        m.extend_from_slice(&2u32.to_le_bytes());
        m.extend_from_slice(&[0, 0, 0, 0, 48, 0, 0, 0]); // TargetName: empty
        m.extend_from_slice(&flags.to_le_bytes());
        m.extend_from_slice(&hex("01 23 45 67 89 ab cd ef"));
        m.extend_from_slice(&[0; 8]);
        let len = target_info.len() as u16;
        m.extend_from_slice(&len.to_le_bytes());
        m.extend_from_slice(&len.to_le_bytes());
        m.extend_from_slice(&48u32.to_le_bytes());
        m.extend_from_slice(target_info);
        m
    }

    #[test]
    fn the_authenticate_message_carries_the_response_and_names() {
        let (identity, _, client, mut target_info) = known_answer_inputs();
        // Add a server timestamp before the EOL pair.
        target_info.truncate(target_info.len() - 4);
        target_info.extend_from_slice(&[7, 0, 8, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0]);
        let flags = NEGOTIATE_UNICODE | NEGOTIATE_NTLM | NEGOTIATE_TARGET_INFO;
        let challenge = parse_challenge(&challenge_message(flags, &target_info)).unwrap();
        assert_eq!(challenge.timestamp, Some([1, 2, 3, 4, 5, 6, 7, 8]));
        assert_eq!(challenge.target_info, target_info);

        let message = authenticate_message(&challenge, &identity, "Password", client, 99);
        assert_eq!(&message[..8], SIGNATURE);
        assert_eq!(u32_at(&message, 8), 3);
        let field = |at: usize| {
            let len = usize::from(u16_at(&message, at));
            let offset = u32_at(&message, at + 4) as usize;
            message[offset..offset + len].to_vec()
        };
        assert_eq!(
            field(12),
            vec![0; 24],
            "LM response is zeros with a timestamp"
        );
        let nt = field(20);
        let key = nt_owf_v2(&identity, "Password");
        let expected = ntlmv2_response(
            &key,
            &challenge.server_challenge,
            &client,
            &[1, 2, 3, 4, 5, 6, 7, 8],
            &target_info,
        );
        assert_eq!(nt, expected);
        assert_eq!(field(28), utf16le("Domain"));
        assert_eq!(field(36), utf16le("User"));
        assert_eq!(field(44), Vec::<u8>::new());
        assert_eq!(u32_at(&message, 60) & NEGOTIATE_UNICODE, NEGOTIATE_UNICODE);
    }

    #[test]
    fn logins_split_like_windows() {
        assert_eq!(
            Identity::from_login("CORP\\alice"),
            Identity {
                domain: "CORP".into(),
                user: "alice".into()
            }
        );
        assert_eq!(
            Identity::from_login("alice@corp.example"),
            Identity {
                domain: String::new(),
                user: "alice@corp.example".into()
            }
        );
    }

    #[test]
    fn negotiate_and_bad_challenges() {
        let negotiate = negotiate_message();
        assert_eq!(&negotiate[..8], SIGNATURE);
        assert_eq!(u32_at(&negotiate, 8), 1);
        assert!(parse_challenge(b"garbage").is_err());
        assert!(parse_challenge(&negotiate_message()).is_err());
        let mut truncated = challenge_message(NEGOTIATE_TARGET_INFO, &[1, 2, 3, 4]);
        truncated.truncate(50);
        assert!(parse_challenge(&truncated).is_err());
    }
}
