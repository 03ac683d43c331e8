//! Merging what the sources found (one candidate per server, with every origin) and
//! ranking it: what verified first, then IMAP before Exchange before POP, implicit TLS
//! before STARTTLS (RFC 8314), the provider table and the documents a domain publishes
//! before guesses, and more agreeing sources before fewer.

use mailmove_model::{Kind, Security};

use crate::{Candidate, Check, Service, SignIn, Source};

/// One candidate per (kind, host, port, security), origins joined.
pub(crate) fn merge(found: Vec<Candidate>) -> Vec<Candidate> {
    let mut merged: Vec<Candidate> = Vec::new();
    for candidate in found {
        let same = merged.iter_mut().find(|m| {
            m.kind == candidate.kind
                && m.host == candidate.host
                && m.port == candidate.port
                && m.security == candidate.security
        });
        match same {
            Some(existing) => join(existing, candidate),
            None => merged.push(candidate),
        }
    }
    merged
}

fn join(into: &mut Candidate, other: Candidate) {
    for origin in other.found_via {
        if !into.found_via.contains(&origin) {
            into.found_via.push(origin);
        }
    }
    if into.sign_in == SignIn::Password {
        into.sign_in = other.sign_in;
    }
    if matches!(into.service, Service::Imap | Service::Exchange) {
        into.service = other.service;
    }
    into.provider = into.provider.take().or(other.provider);
    into.login = into.login.take().or(other.login);
    into.path = into.path.take().or(other.path);
}

/// Whether a candidate may be chosen without the user's say: it is encrypted, and it
/// verified or comes from mailmove's own provider table (a check that failed there
/// says more about this network than about the provider). Plaintext-only servers are
/// shown, never chosen.
pub(crate) fn choosable(candidate: &Candidate) -> bool {
    if candidate.security == Security::None {
        return false;
    }
    match candidate.check {
        Check::Verified { .. } => true,
        Check::PlaintextOnly { .. } => false,
        Check::Failed { .. } | Check::NotChecked { .. } => from_table(candidate),
    }
}

fn from_table(candidate: &Candidate) -> bool {
    candidate
        .found_via
        .iter()
        .any(|o| matches!(o.source, Source::Provider | Source::Mx))
}

pub(crate) fn sort(candidates: &mut [Candidate]) {
    candidates.sort_by_key(key);
}

fn key(c: &Candidate) -> (bool, u8, u8, u8, u8, usize) {
    let check = match c.check {
        Check::Verified { .. } => 0,
        Check::NotChecked { .. } => 1,
        Check::Failed { .. } => 2,
        Check::PlaintextOnly { .. } => 3,
    };
    let kind = match c.kind {
        Kind::Imap => 0,
        Kind::Ews => 1,
        Kind::Pop3 => 2,
    };
    let security = match c.security {
        Security::Tls => 0,
        Security::StartTls => 1,
        Security::None => 2,
    };
    let trust = c
        .found_via
        .iter()
        .map(|o| match o.source {
            Source::Provider | Source::Mx => 0,
            Source::Autoconfig | Source::Srv => 1,
            Source::Autodiscover => 2,
            Source::Probe => 3,
        })
        .min()
        .unwrap_or(4);
    (
        !choosable(c),
        check,
        kind,
        security,
        trust,
        usize::MAX - c.found_via.len(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Origin;

    fn candidate(
        kind: Kind,
        host: &str,
        port: u16,
        security: Security,
        source: Source,
    ) -> Candidate {
        Candidate::new(
            kind,
            host,
            port,
            security,
            Origin {
                source,
                detail: format!("{source:?}"),
            },
        )
    }

    fn verified(mut c: Candidate) -> Candidate {
        c.check = Check::Verified {
            capabilities: vec!["IMAP4rev1".into()],
        };
        c
    }

    #[test]
    fn the_same_server_from_two_sources_is_one_candidate_with_both_origins() {
        let mut from_mx = candidate(Kind::Imap, "imap.gmail.com", 993, Security::Tls, Source::Mx);
        from_mx.sign_in = SignIn::OauthGoogle;
        from_mx.service = Service::Google;
        let mut from_autoconfig = candidate(
            Kind::Imap,
            "IMAP.gmail.com.",
            993,
            Security::Tls,
            Source::Autoconfig,
        );
        from_autoconfig.login = Some("alice@example.com".into());
        let merged = merge(vec![from_autoconfig, from_mx]);
        assert_eq!(merged.len(), 1);
        let one = &merged[0];
        assert_eq!(one.found_via.len(), 2);
        assert_eq!(one.sign_in, SignIn::OauthGoogle);
        assert_eq!(one.service, Service::Google);
        assert_eq!(one.login.as_deref(), Some("alice@example.com"));
    }

    #[test]
    fn ranking() {
        let mut list = vec![
            verified(candidate(
                Kind::Pop3,
                "pop.example",
                995,
                Security::Tls,
                Source::Srv,
            )),
            verified(candidate(
                Kind::Imap,
                "imap.example",
                143,
                Security::StartTls,
                Source::Srv,
            )),
            candidate(
                Kind::Imap,
                "down.example",
                993,
                Security::Tls,
                Source::Autoconfig,
            ),
            verified(candidate(
                Kind::Imap,
                "imap.example",
                993,
                Security::Tls,
                Source::Srv,
            )),
            {
                let mut plain = candidate(
                    Kind::Imap,
                    "plain.example",
                    143,
                    Security::StartTls,
                    Source::Srv,
                );
                plain.check = Check::PlaintextOnly {
                    capabilities: vec![],
                };
                plain
            },
            verified(candidate(
                Kind::Ews,
                "ex.example",
                443,
                Security::Tls,
                Source::Autodiscover,
            )),
        ];
        sort(&mut list);
        let order: Vec<String> = list
            .iter()
            .map(|c| format!("{}:{}", c.host, c.port))
            .collect();
        assert_eq!(
            order,
            [
                "imap.example:993",
                "imap.example:143",
                "ex.example:443",
                "pop.example:995",
                "down.example:993",
                "plain.example:143",
            ]
        );
        assert!(
            !choosable(&list[4]),
            "an unverified autoconfig server is not chosen"
        );
        assert!(!choosable(&list[5]), "plaintext is never chosen");
    }

    #[test]
    fn the_provider_table_is_chosen_even_when_this_network_cannot_check_it() {
        let mut google = candidate(Kind::Imap, "imap.gmail.com", 993, Security::Tls, Source::Mx);
        google.check = Check::Failed {
            reason: "imap.gmail.com has no address".into(),
        };
        assert!(choosable(&google));
        let mut srv = candidate(Kind::Imap, "imap.example", 993, Security::Tls, Source::Srv);
        srv.check = google.check.clone();
        assert!(!choosable(&srv));
    }
}
