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

use mailmove_net::NetworkPolicy;

use crate::{DiscoverError, Settings};

/// The most records of one answer that are used.
const MAX_RECORDS: usize = 16;

pub(crate) struct Dns {
    resolver: TokioResolver,
    timeout: Duration,
    policy: NetworkPolicy,
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
            policy: settings.policy.clone(),
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
            .filter(|ip| self.policy.permits(*ip))
            .collect();
        if allowed.is_empty() && !all.is_empty() {
            return Err(format!(
                "{host} is on a private or local network, which discovery here may not reach"
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_dns() {
        assert_eq!(name_text("Mail.Example.COM."), "mail.example.com");
        assert_eq!(name_text("."), "");
        assert_eq!(name_text("bad name.example."), "");
    }
}
