//! The one resolver discovery asks: the system's, or the DNS server the caller named
//! (`--dns-server`; the tests' private server). Every name is asked fully qualified,
//! every answer counted, and addresses are checked against the network policy before
//! anything connects to them.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;

use crate::{DiscoverError, Settings};

/// The most records of one answer that are used.
const MAX_RECORDS: usize = 16;

pub(crate) struct Dns {
    resolver: TokioResolver,
    timeout: Duration,
    allow_private: bool,
}

/// One SRV record (RFC 2782).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
}

impl Dns {
    pub fn new(settings: &Settings) -> Result<Dns, DiscoverError> {
        let mut options = ResolverOpts::default();
        options.timeout = settings.timeout;
        options.attempts = 1;
        options.cache_size = 256;
        let builder = match settings.dns_server {
            Some(server) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = server.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = server.port();
                let name_server = NameServerConfig::new(server.ip(), true, vec![udp, tcp]);
                let config = ResolverConfig::from_parts(None, Vec::new(), vec![name_server]);
                TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            }
            None => TokioResolver::builder_tokio()
                .map_err(|e| DiscoverError::Resolver(e.to_string()))?,
        };
        let resolver = builder
            .with_options(options)
            .build()
            .map_err(|e| DiscoverError::Resolver(e.to_string()))?;
        Ok(Dns {
            resolver,
            timeout: settings.timeout,
            allow_private: settings.allow_private,
        })
    }

    /// The domain's MX hosts, most preferred first; none when it has no MX.
    pub async fn mx(&self, domain: &str) -> Result<Vec<String>, String> {
        let records = self.ask(|| self.resolver.mx_lookup(fqdn(domain))).await?;
        let mut hosts: Vec<(u16, String)> = records
            .iter()
            .filter_map(|data| match data {
                RData::MX(mx) => Some((mx.preference, name_text(&mx.exchange.to_ascii()))),
                _ => None,
            })
            .filter(|(_, host)| !host.is_empty())
            .take(MAX_RECORDS)
            .collect();
        hosts.sort();
        Ok(hosts.into_iter().map(|(_, host)| host).collect())
    }

    /// The SRV records of `name`; none when there are none. A target of `.` means "no
    /// such service here" (RFC 2782) and is left out.
    pub async fn srv(&self, name: &str) -> Result<Vec<Srv>, String> {
        let records = self.ask(|| self.resolver.srv_lookup(fqdn(name))).await?;
        Ok(records
            .iter()
            .filter_map(|data| match data {
                RData::SRV(srv) => Some(Srv {
                    priority: srv.priority,
                    weight: srv.weight,
                    port: srv.port,
                    target: name_text(&srv.target.to_ascii()),
                }),
                _ => None,
            })
            .filter(|srv| !srv.target.is_empty() && srv.port != 0)
            .take(MAX_RECORDS)
            .collect())
    }

    /// The addresses of `host` that the network policy lets discovery connect to;
    /// an error says why there are none.
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        let all: Vec<IpAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => {
                let lookup = tokio::time::timeout(
                    self.timeout,
                    self.resolver.lookup_ip(fqdn(host).as_str()),
                )
                .await
                .map_err(|_| format!("resolving {host} timed out"))?
                .map_err(|e| {
                    if e.is_no_records_found() || e.is_nx_domain() {
                        format!("{host} has no address")
                    } else {
                        format!("resolving {host} failed: {e}")
                    }
                })?;
                lookup.iter().take(MAX_RECORDS).collect()
            }
        };
        let allowed: Vec<IpAddr> = all
            .iter()
            .copied()
            .filter(|ip| self.allow_private || is_public(*ip))
            .collect();
        if allowed.is_empty() && !all.is_empty() {
            return Err(format!(
                "{host} is on a private or local network, which discovery here does not reach"
            ));
        }
        if allowed.is_empty() {
            return Err(format!("{host} has no address"));
        }
        Ok(allowed)
    }

    /// The socket addresses of `host` on `port`, for a connection.
    pub async fn socket_addresses(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        Ok(self
            .addresses(host)
            .await?
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect())
    }

    async fn ask<F, Fut>(&self, question: F) -> Result<Vec<RData>, String>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<
                Output = Result<hickory_resolver::lookup::Lookup, hickory_resolver::net::NetError>,
            >,
    {
        match tokio::time::timeout(self.timeout, question()).await {
            Err(_) => Err(format!("no answer within {} s", self.timeout.as_secs_f64())),
            Ok(Ok(lookup)) => Ok(lookup
                .answers()
                .iter()
                .take(MAX_RECORDS * 4)
                .map(|record| record.data.clone())
                .collect()),
            Ok(Err(e)) if e.is_no_records_found() || e.is_nx_domain() => Ok(Vec::new()),
            Ok(Err(e)) => Err(e.to_string()),
        }
    }
}

/// `name.` : asked as is, never with a search domain appended.
fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

/// A name from DNS as a host name: lower case, no final dot; empty for the root (`.`)
/// or anything that is not a plain host name.
fn name_text(name: &str) -> String {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let plain = name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if plain { name } else { String::new() }
}

/// Neither loopback, private, link-local, unspecified, multicast nor documentation.
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || v4.octets()[0] == 0
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_addresses_are_public() {
        for (ip, public) in [
            ("127.0.0.1", false),
            ("10.0.0.1", false),
            ("172.16.5.4", false),
            ("192.168.1.1", false),
            ("169.254.169.254", false),
            ("100.64.0.1", false),
            ("0.0.0.0", false),
            ("::1", false),
            ("fd00::1", false),
            ("fe80::1", false),
            ("::ffff:10.0.0.1", false),
            ("8.8.8.8", true),
            ("2a00:1450:4001::1", true),
        ] {
            assert_eq!(is_public(ip.parse().unwrap()), public, "{ip}");
        }
    }

    #[test]
    fn names_from_dns() {
        assert_eq!(name_text("Mail.Example.COM."), "mail.example.com");
        assert_eq!(name_text("."), "");
        assert_eq!(name_text("bad name.example."), "");
    }
}
