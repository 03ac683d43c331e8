//! One HTTPS request, bounded in time and size: the host resolved through discovery's
//! resolver and checked against the network policy, TCP and verified TLS from
//! `mailmove-net`, HTTP/1.1 from hyper, the answer's body read up to a cap. Plain HTTP
//! only for a GET: Autodiscover's redirect method (only its `https://` redirection is
//! used) and autoconfig's plain address (its servers used only when their TLS verifies).

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use mailmove_net::{Stream, tls_handshake_within};
use url::Url;

use crate::Context;

#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// Sends one request to an `https://` URL and reads at most `max_body` bytes of the
/// answer; a longer body is an error. Everything within the settings' timeout.
pub(crate) async fn request(
    context: &Context<'_>,
    method: Method,
    url: &Url,
    body: Option<(&'static str, String)>,
    max_body: usize,
) -> Result<Answer, String> {
    let timeout = context.settings.timeout;
    tokio::time::timeout(timeout, send(context, method, url, body, max_body))
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", timeout.as_secs_f64())))
}

/// Autodiscover's redirect method (MS-OXDSCLI 3.1.5): a GET over plain HTTP whose only
/// use is the `https://` address it redirects to; anything else it says is ignored.
pub(crate) async fn https_redirect(context: &Context<'_>, url: &Url) -> Result<Url, String> {
    let timeout = context.settings.timeout;
    let answer = tokio::time::timeout(timeout, send(context, Method::GET, url, None, 16 * 1024))
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", timeout.as_secs_f64())))?;
    if !matches!(answer.status, 301 | 302 | 307 | 308) {
        return Err(format!("HTTP {} (no redirection)", answer.status));
    }
    let next = answer
        .headers
        .get(http::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .and_then(|l| url.join(l).ok())
        .ok_or("a redirection without a valid Location")?;
    if next.scheme() != "https" {
        return Err(format!("redirected to {next}, which is not https://"));
    }
    Ok(next)
}

async fn send(
    context: &Context<'_>,
    method: Method,
    url: &Url,
    body: Option<(&'static str, String)>,
    max_body: usize,
) -> Result<Answer, String> {
    let plain = match url.scheme() {
        "https" => false,
        "http" if method == Method::GET && body.is_none() => true,
        _ => return Err("only https:// is followed".into()),
    };
    let host = url.host_str().ok_or("the address has no host")?;
    let port = url.port_or_known_default().unwrap_or(443);
    let settings = context.settings;
    if settings.conventional_ports_only && !settings.ports.conventional(port) {
        return Err(format!(
            "port {port} is not a mail or web port; it is not tried here"
        ));
    }
    let addresses = context.dns.socket_addresses(host, port).await?;
    let tcp = crate::probe::connect_any(context, &addresses).await?;
    {
        let stream: Box<dyn Stream> = if plain {
            Box::new(tcp)
        } else {
            Box::new(
                tls_handshake_within(tcp, host, &settings.tls, settings.timeout)
                    .await
                    .map_err(|e| e.to_string())?,
            )
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        let driver = tokio::spawn(connection);
        let host_header = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(&url[url::Position::BeforePath..])
            .header(http::header::HOST, host_header)
            .header(http::header::USER_AGENT, "mailmove")
            .header(http::header::ACCEPT, "text/xml, application/xml");
        let content = match &body {
            Some((content_type, text)) => {
                builder = builder.header(http::header::CONTENT_TYPE, *content_type);
                Bytes::from(text.clone())
            }
            None => Bytes::new(),
        };
        let request = builder
            .body(Full::new(content))
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = read_capped(response.into_body(), max_body).await;
        driver.abort();
        Ok(Answer {
            status,
            headers,
            body: body?,
        })
    }
}

async fn read_capped(mut body: hyper::body::Incoming, max: usize) -> Result<Vec<u8>, String> {
    let mut read = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Some(data) = frame.data_ref() {
            if read.len() + data.len() > max {
                return Err(format!("the answer is larger than {} KiB", max / 1024));
            }
            read.extend_from_slice(data);
        }
    }
    Ok(read)
}
