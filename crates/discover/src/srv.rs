//! RFC 6186 SRV records: `_imaps._tcp`, `_imap._tcp`, `_pop3s._tcp`, `_pop3._tcp`,
//! asked at once. Records keep their priority order (lowest first, heavier weight first
//! among equals); the ranking puts implicit TLS ahead of STARTTLS (RFC 8314).

use mailmove_model::{Kind, Security};

use crate::dns::Srv;
use crate::{Candidate, Context, Found, Origin, Source, SourceReport};

const SERVICES: [(&str, Kind, Security); 4] = [
    ("_imaps._tcp", Kind::Imap, Security::Tls),
    ("_imap._tcp", Kind::Imap, Security::StartTls),
    ("_pop3s._tcp", Kind::Pop3, Security::Tls),
    ("_pop3._tcp", Kind::Pop3, Security::StartTls),
];

pub(crate) async fn find(context: &Context<'_>) -> Found {
    let domain = &context.target.domain;
    let asked = SERVICES.map(|(label, kind, security)| async move {
        let name = format!("{label}.{domain}");
        (name.clone(), kind, security, context.dns.srv(&name).await)
    });
    let answers = futures_util::future::join_all(asked).await;
    let mut found = Found::default();
    let mut said = Vec::new();
    for (name, kind, security, answer) in answers {
        match answer {
            Ok(mut records) => {
                order(&mut records);
                for record in records {
                    found.candidates.push(Candidate::new(
                        kind,
                        &record.target,
                        record.port,
                        security,
                        Origin {
                            source: Source::Srv,
                            detail: format!("SRV record {name}"),
                        },
                    ));
                }
            }
            Err(e) => said.push(format!("{name}: {e}")),
        }
    }
    let report = if found.candidates.is_empty() && said.is_empty() {
        format!("no SRV records for {domain}")
    } else if said.is_empty() {
        let count = found.candidates.len();
        let plural = if count == 1 { "" } else { "s" };
        format!("{count} SRV record{plural} for {domain}")
    } else {
        said.join("; ")
    };
    found.reports.push(SourceReport {
        source: Source::Srv,
        said: report,
    });
    found
}

/// Lowest priority first; among equals, the heavier weight first.
fn order(records: &mut [Srv]) {
    records.sort_by(|a, b| a.priority.cmp(&b.priority).then(b.weight.cmp(&a.weight)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_then_weight() {
        let srv = |priority, weight, target: &str| Srv {
            priority,
            weight,
            port: 993,
            target: target.into(),
        };
        let mut records = vec![srv(20, 0, "c"), srv(10, 5, "b"), srv(10, 50, "a")];
        order(&mut records);
        let targets: Vec<&str> = records.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(targets, ["a", "b", "c"]);
    }
}
