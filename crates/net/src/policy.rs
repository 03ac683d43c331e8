//! Which addresses a connection may go to. The command line goes anywhere (an
//! administrator may copy from this machine); the portal's passes go only to public
//! addresses and to the networks the operator allowed, so a portal user cannot make
//! mailmove a port scanner or a banner grabber inside the operator's network. The check
//! runs on each address a host name resolved to, just before connecting to that very
//! address: a name that resolves to 127.0.0.1, a spelling such as `127.1` or `0x7f.1`,
//! an IPv4-mapped IPv6 address and a name whose answer changes between two lookups
//! (DNS rebinding) all meet the same check.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Where connections may go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum NetworkPolicy {
    /// Any address: the command line's copy commands.
    #[default]
    Anywhere,
    /// Public addresses, and those inside `allowed` (the operator's own servers).
    PublicOnly { allowed: Vec<Cidr> },
}

impl NetworkPolicy {
    /// Public addresses and the networks in `allowed`.
    pub fn public_only(allowed: Vec<Cidr>) -> NetworkPolicy {
        NetworkPolicy::PublicOnly { allowed }
    }

    /// Whether a connection may go to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        match self {
            NetworkPolicy::Anywhere => true,
            NetworkPolicy::PublicOnly { allowed } => {
                let ip = canonical(ip);
                allowed.iter().any(|cidr| cidr.contains(ip)) || !is_internal(ip)
            }
        }
    }
}

/// A network in CIDR notation (`10.0.0.0/8`, `fd00::/8`), or one address (`/32`, `/128`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is inside this network. An IPv4-mapped IPv6 address is its IPv4
    /// address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => {
                same_prefix(network.to_bits(), ip.to_bits(), self.prefix)
            }
            (IpAddr::V6(network), IpAddr::V6(ip)) => {
                same_prefix(network.to_bits(), ip.to_bits(), self.prefix)
            }
            _ => false,
        }
    }
}

/// Why a text is not a network.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a network: write it as ADDRESS/BITS, such as 10.0.0.0/8 or fd00::/8")]
pub struct CidrError {
    text: String,
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Cidr, CidrError> {
        let error = || CidrError {
            text: text.to_string(),
        };
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, bits)) => (address, Some(bits)),
            None => (text.trim(), None),
        };
        let network = canonical(address.parse::<IpAddr>().map_err(|_| error())?);
        let width = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(bits) if bits.bytes().all(|b| b.is_ascii_digit()) => {
                bits.parse::<u8>().map_err(|_| error())?
            }
            Some(_) => return Err(error()),
            None => width,
        };
        if prefix > width {
            return Err(error());
        }
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The first `prefix` bits of `a` and `b` agree.
fn same_prefix<T>(a: T, b: T, prefix: u8) -> bool
where
    T: std::ops::BitXor<Output = T> + std::ops::Shr<u32, Output = T> + PartialEq + Default,
{
    let width = (std::mem::size_of::<T>() * 8) as u32;
    let prefix = u32::from(prefix);
    prefix == 0 || (a ^ b) >> (width - prefix) == T::default()
}

/// An IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) is the IPv4 address it carries: the
/// kernel connects to that one.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Addresses that are not a public server's: this machine, private networks (RFC 1918,
/// unique local), carrier-grade NAT (where Alibaba Cloud's metadata service lives),
/// link-local (AWS, GCP and Azure metadata at 169.254.169.254, AWS's fd00:ec2::254
/// among the unique local ones), multicast, unspecified, and the reserved ranges. IPv6
/// forms that carry an IPv4 address (NAT64, 6to4, the deprecated IPv4-compatible form)
/// are judged by the address they carry.
pub fn is_internal(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => is_internal_v6(v6),
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    const RANGES: [(Ipv4Addr, u8); 13] = [
        (Ipv4Addr::new(0, 0, 0, 0), 8),       // "this network", unspecified
        (Ipv4Addr::new(10, 0, 0, 0), 8),      // private
        (Ipv4Addr::new(100, 64, 0, 0), 10),   // carrier-grade NAT
        (Ipv4Addr::new(127, 0, 0, 0), 8),     // loopback
        (Ipv4Addr::new(169, 254, 0, 0), 16),  // link-local, cloud metadata
        (Ipv4Addr::new(172, 16, 0, 0), 12),   // private
        (Ipv4Addr::new(192, 0, 0, 0), 24),    // protocol assignments (Oracle's metadata)
        (Ipv4Addr::new(192, 0, 2, 0), 24),    // documentation
        (Ipv4Addr::new(192, 168, 0, 0), 16),  // private
        (Ipv4Addr::new(198, 18, 0, 0), 15),   // benchmarking
        (Ipv4Addr::new(198, 51, 100, 0), 24), // documentation
        (Ipv4Addr::new(203, 0, 113, 0), 24),  // documentation
        (Ipv4Addr::new(224, 0, 0, 0), 3),     // multicast, reserved, broadcast
    ];
    RANGES
        .iter()
        .any(|(network, prefix)| same_prefix(network.to_bits(), ip.to_bits(), *prefix))
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let bits = ip.to_bits();
    let within = |network: u128, prefix: u8| same_prefix(network, bits, prefix);
    let carried = |shift: u32| Ipv4Addr::from_bits((bits >> shift) as u32);
    if within(0, 96) {
        return true; // ::, ::1 and the deprecated IPv4-compatible form
    }
    if within(0x0064_ff9b << 96, 96) {
        return is_internal_v4(carried(0)); // NAT64
    }
    if within(0x2002 << 112, 16) {
        return is_internal_v4(carried(80)); // 6to4
    }
    within(0xfc00 << 112, 7) // unique local, fd00:ec2::254 among them
        || within(0xfe80 << 112, 10) // link-local
        || within(0xfec0 << 112, 10) // site-local, deprecated
        || within(0xff00 << 112, 8) // multicast
        || within(0x0100 << 112, 64) // discard
        || within(0x2001_0db8 << 96, 32) // documentation
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_refused_and_public_ones_pass() {
        for internal in [
            "127.0.0.1",
            "127.255.255.254",
            "0.0.0.0",
            "10.0.0.5",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.100.100.200",
            "169.254.169.254",
            "192.0.0.192",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "::",
            "::1",
            "fd00:ec2::254",
            "fc00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:5",
            "2002:7f00:1::",
            "2001:db8::1",
        ] {
            assert!(is_internal(ip(internal)), "{internal}");
            assert!(
                !NetworkPolicy::public_only(vec![]).permits(ip(internal)),
                "{internal}"
            );
            assert!(NetworkPolicy::Anywhere.permits(ip(internal)), "{internal}");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "11.0.0.1",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::",
        ] {
            assert!(!is_internal(ip(public)), "{public}");
            assert!(NetworkPolicy::public_only(vec![]).permits(ip(public)));
        }
    }

    #[test]
    fn the_allow_list_opens_its_networks_only() {
        let policy = NetworkPolicy::public_only(vec![
            "127.0.0.0/8".parse().unwrap(),
            "10.1.2.3".parse().unwrap(),
            "fd12::/16".parse().unwrap(),
        ]);
        for allowed in [
            "127.0.0.1",
            "127.8.9.1",
            "::ffff:127.0.0.1",
            "10.1.2.3",
            "fd12::5",
        ] {
            assert!(policy.permits(ip(allowed)), "{allowed}");
        }
        for refused in ["10.1.2.4", "::1", "169.254.169.254", "fd13::5"] {
            assert!(!policy.permits(ip(refused)), "{refused}");
        }
    }

    #[test]
    fn networks_are_read_strictly() {
        assert_eq!(
            "10.0.0.0/8".parse::<Cidr>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!("::1".parse::<Cidr>().unwrap().to_string(), "::1/128");
        assert_eq!(
            "::ffff:10.0.0.0/8".parse::<Cidr>().unwrap().to_string(),
            "10.0.0.0/8",
            "a mapped address is its IPv4 one"
        );
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("8.8.8.8")));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "127.1",
            "mail.example/8",
        ] {
            let error = bad.parse::<Cidr>().unwrap_err();
            assert!(error.to_string().contains("ADDRESS/BITS"), "{bad}: {error}");
        }
    }
}
