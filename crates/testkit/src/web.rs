//! A private HTTPS site per test, with its own CA and a certificate for the names the
//! test gives (`autoconfig.example.test`), or a plain HTTP one: fixed answers by path, redirects, an answer
//! that never comes (a source that times out), and the list of requests it received.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_rustls::TlsAcceptor;

use crate::certs;

/// What the site answers at one path (the query is ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebAnswer {
    /// 200 with this XML document.
    Xml(String),
    /// This status and an empty body; 401 carries `WWW-Authenticate: Basic`.
    Status(u16),
    /// 302 to this address.
    Redirect(String),
    /// Reads the request and never answers.
    Silent,
}

struct Site {
    answers: HashMap<String, WebAnswer>,
    requests: Mutex<Vec<String>>,
}

/// A running site; dropping it stops it.
pub struct WebSite {
    addr: SocketAddr,
    site: Arc<Site>,
    ca_file: tempfile::NamedTempFile,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for WebSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSite").field("addr", &self.addr).finish()
    }
}

impl WebSite {
    /// Serves `answers` (path → answer) over HTTPS on a free loopback port, with a
    /// certificate for `localhost`, `127.0.0.1` and `names`; anything else is a 404.
    pub fn start(names: &[&str], answers: &[(&str, WebAnswer)]) -> Result<WebSite> {
        WebSite::start_with(names, answers, true)
    }

    /// The same over plain HTTP (Autodiscover's redirect method).
    pub fn start_plain(answers: &[(&str, WebAnswer)]) -> Result<WebSite> {
        WebSite::start_with(&[], answers, false)
    }

    fn start_with(names: &[&str], answers: &[(&str, WebAnswer)], tls: bool) -> Result<WebSite> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let generated = certs::generate_for(&names)?;
        let acceptor = tls
            .then(|| certs::tls_acceptor(&generated.server_cert_pem, &generated.server_key_pem))
            .transpose()?;
        let mut ca_file = tempfile::Builder::new()
            .prefix("web-ca-")
            .suffix(".pem")
            .tempfile()?;
        std::io::Write::write_all(&mut ca_file, generated.ca_pem.as_bytes())?;
        let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let site = Arc::new(Site {
            answers: answers
                .iter()
                .map(|(path, answer)| (path.to_string(), answer.clone()))
                .collect(),
            requests: Mutex::new(Vec::new()),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .context("building the web site's runtime")?;
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel();
        let thread_site = site.clone();
        let thread = std::thread::Builder::new()
            .name("web-site".into())
            .spawn(move || {
                runtime.block_on(serve(listener, acceptor, thread_site, shutdown_rx));
                runtime.shutdown_timeout(Duration::from_millis(100));
            })?;
        Ok(WebSite {
            addr,
            site,
            ca_file,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The CA that signed the site's certificate (PEM).
    pub fn ca_pem(&self) -> &Path {
        self.ca_file.path()
    }

    /// `METHOD host path?query` of every request received, in order.
    pub fn requests(&self) -> Vec<String> {
        self.site
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for WebSite {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    site: Arc<Site>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let acceptor = acceptor.clone();
                let site = site.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let site = site.clone();
                        async move { Ok::<_, Infallible>(answer(request, &site).await) }
                    });
                    let builder = http1::Builder::new();
                    let _ = match acceptor {
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(stream).await else { return };
                            builder.serve_connection(TokioIo::new(stream), service).await
                        }
                        None => builder.serve_connection(TokioIo::new(stream), service).await,
                    };
                });
            }
        }
    }
}

async fn answer(request: Request<Incoming>, site: &Site) -> Response<Full<Bytes>> {
    let host = request
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let line = format!(
        "{} {host} {}",
        request.method(),
        request
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let path = request.uri().path().to_string();
    site.requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(line);
    let _ = request.into_body().collect().await;
    let respond = |status: u16, headers: &[(&str, &str)], body: &str| {
        let mut response = Response::builder().status(status);
        for (name, value) in headers {
            response = response.header(*name, *value);
        }
        response
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap_or_default()
    };
    match site.answers.get(&path) {
        Some(WebAnswer::Xml(text)) => respond(200, &[("content-type", "text/xml")], text),
        Some(WebAnswer::Status(401)) => {
            respond(401, &[("www-authenticate", "Basic realm=\"test\"")], "")
        }
        Some(WebAnswer::Status(status)) => respond(*status, &[], ""),
        Some(WebAnswer::Redirect(to)) => respond(302, &[("location", to)], ""),
        Some(WebAnswer::Silent) => {
            std::future::pending::<()>().await;
            respond(StatusCode::GATEWAY_TIMEOUT.as_u16(), &[], "")
        }
        None => respond(404, &[], ""),
    }
}
