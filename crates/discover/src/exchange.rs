//! Exchange Autodiscover: the hosts `autodiscover.DOMAIN` and `DOMAIN`, the targets of
//! the `_autodiscover._tcp` SRV record, and where a plain-HTTP GET to
//! `autodiscover.DOMAIN` redirects to (the redirect method, whose `https://` target
//! alone is used); the requests themselves over HTTPS only. Without a password the
//! unauthenticated POX request shows whether Autodiscover answers there (Exchange asks
//! to sign in) and redirections are followed, at most three, to `https://` only; with
//! a password `mailmove-ews`'s POX-then-SOAP autodiscover names the exact EWS address.

use http::Method;
use mailmove_model::{EWS_PATH, Kind, Secret, Security};
use url::Url;

use crate::{Candidate, Context, Found, Origin, Source, SourceReport};

const POX_PATH: &str = "/autodiscover/autodiscover.xml";
const MAX_REDIRECTS: usize = 3;

pub(crate) async fn find(context: &Context<'_>, password: Option<&Secret<String>>) -> Found {
    let (bases, mut reports) = bases(context).await;
    let mut found = Found::default();
    found.reports.append(&mut reports);
    if let (Some(password), Some(address)) = (password, &context.target.address) {
        let mut signed_in = signed_in(context, &bases, address, password).await;
        found.reports.append(&mut signed_in.reports);
        if !signed_in.candidates.is_empty() {
            found.candidates.append(&mut signed_in.candidates);
            return found;
        }
    }
    let answers = futures_util::future::join_all(
        bases.iter().map(|(base, _)| unauthenticated(context, base)),
    )
    .await;
    for ((base, origin), answer) in bases.iter().zip(answers) {
        let host = base.host_str().unwrap_or_default();
        match answer {
            Ok(at) => {
                let at_host = at.host_str().unwrap_or_default();
                let port = at.port_or_known_default().unwrap_or(443);
                let mut candidate = Candidate::new(
                    Kind::Ews,
                    at_host,
                    port,
                    Security::Tls,
                    Origin {
                        source: Source::Autodiscover,
                        detail: format!("{origin} (sign in to learn the exact EWS address)"),
                    },
                );
                candidate.path = Some(EWS_PATH.to_string());
                found.candidates.push(candidate);
                found
                    .reports
                    .push(said(format!("Autodiscover answers at {at_host}")));
            }
            Err(e) => found
                .reports
                .push(said(format!("Autodiscover at {host}: {e}"))),
        }
    }
    found
}

/// Where Autodiscover may answer, each with how it was found.
async fn bases(context: &Context<'_>) -> (Vec<(Url, String)>, Vec<SourceReport>) {
    let domain = &context.target.domain;
    let port = context.settings.ports.https;
    let mut bases = Vec::new();
    let mut reports = Vec::new();
    for host in [format!("autodiscover.{domain}"), domain.clone()] {
        if let Ok(url) = Url::parse(&format!("https://{host}:{port}/")) {
            bases.push((url, format!("Autodiscover at {host}")));
        }
    }
    let name = format!("_autodiscover._tcp.{domain}");
    let redirect_host = format!("autodiscover.{domain}");
    let redirect_url = Url::parse(&format!(
        "http://{redirect_host}:{}{POX_PATH}",
        context.settings.ports.http
    ));
    let (srv, redirected) = tokio::join!(context.dns.srv(&name), async {
        match &redirect_url {
            Ok(url) => crate::http::https_redirect(context, url).await,
            Err(e) => Err(e.to_string()),
        }
    });
    match redirected {
        Ok(mut next) => {
            let to = next.host_str().unwrap_or_default().to_string();
            next.set_path("/");
            next.set_query(None);
            let origin = format!("HTTP redirect at {redirect_host} → {to}");
            bases.insert(0, (next, origin));
        }
        Err(e) => reports.push(said(format!(
            "redirect method at http://{redirect_host}: {e}"
        ))),
    }
    match srv {
        Ok(records) => {
            for record in records.iter().take(2) {
                let url = format!("https://{}:{}/", record.target, record.port);
                if let Ok(url) = Url::parse(&url) {
                    let origin = format!("SRV record {name} → {}", record.target);
                    bases.insert(0, (url, origin));
                }
            }
        }
        Err(e) => reports.push(said(format!("{name}: {e}"))),
    }
    (bases, reports)
}

/// The unauthenticated POX request: where Autodiscover answers (it asks to sign in, or
/// answers), after at most three `https://` redirections, all within twice the timeout.
async fn unauthenticated(context: &Context<'_>, base: &Url) -> Result<Url, String> {
    let limit = context.settings.timeout * 2;
    tokio::time::timeout(limit, follow(context, base))
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", limit.as_secs())))
}

async fn follow(context: &Context<'_>, base: &Url) -> Result<Url, String> {
    let mut url = base.join(POX_PATH).map_err(|e| e.to_string())?;
    let body = pox_request(context.target.address.as_deref().unwrap_or(""));
    for _ in 0..=MAX_REDIRECTS {
        let answer = crate::http::request(
            context,
            Method::POST,
            &url,
            Some(("text/xml; charset=utf-8", body.clone())),
            64 * 1024,
        )
        .await?;
        match answer.status {
            200 | 401 => return Ok(url),
            301 | 302 | 307 | 308 => {
                let next = answer
                    .headers
                    .get(http::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| url.join(l).ok())
                    .ok_or("a redirection without a valid Location")?;
                if next.scheme() != "https" {
                    return Err(format!("redirected to {next}, which is not https://"));
                }
                url = next;
            }
            status => return Err(format!("HTTP {status}")),
        }
    }
    Err(format!("more than {MAX_REDIRECTS} redirections"))
}

/// With the password: the EWS URL Autodiscover names for the address.
async fn signed_in(
    context: &Context<'_>,
    bases: &[(Url, String)],
    address: &str,
    password: &Secret<String>,
) -> Found {
    // Only hosts the network policy allows are handed to the EWS client.
    let mut allowed = Vec::new();
    for (base, _) in bases {
        let host = base.host_str().unwrap_or_default();
        if context.dns.addresses(host).await.is_ok() {
            allowed.push(base.clone());
        }
    }
    if allowed.is_empty() {
        return Found::said(Source::Autodiscover, "no Autodiscover host to sign in to");
    }
    let options = mailmove_ews::Options {
        connect: mailmove_net::ConnectOptions {
            tls: context.settings.tls.clone(),
            network: context.settings.policy.clone(),
            connect_timeout: context.settings.timeout,
            response_timeout: context.settings.timeout,
            ..Default::default()
        },
        ..Default::default()
    };
    let outcome = tokio::time::timeout(
        context.settings.timeout * 3,
        mailmove_ews::autodiscover_at(&allowed, address, address, password, &options),
    )
    .await;
    match outcome {
        Ok(Ok(ews)) => {
            let mut candidate = Candidate::new(
                Kind::Ews,
                ews.host_str().unwrap_or_default(),
                ews.port_or_known_default().unwrap_or(443),
                if ews.scheme() == "https" {
                    Security::Tls
                } else {
                    Security::None
                },
                Origin {
                    source: Source::Autodiscover,
                    detail: format!("Autodiscover (signed in) named {ews}"),
                },
            );
            candidate.path = Some(ews.path().to_string());
            Found {
                candidates: vec![candidate],
                reports: vec![said(format!("Autodiscover named {ews}"))],
            }
        }
        Ok(Err(e)) => Found::said(Source::Autodiscover, format!("signed-in Autodiscover: {e}")),
        Err(_) => Found::said(Source::Autodiscover, "signed-in Autodiscover timed out"),
    }
}

fn said(text: String) -> SourceReport {
    SourceReport {
        source: Source::Autodiscover,
        said: text,
    }
}

fn pox_request(address: &str) -> String {
    let escaped = quick_xml::escape::escape(address);
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="utf-8"?>"#,
            r#"<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"><Request>"#,
            "<EMailAddress>{}</EMailAddress>",
            "<AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>",
            "</Request></Autodiscover>"
        ),
        escaped
    )
}
