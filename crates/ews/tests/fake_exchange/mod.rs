//! A tiny HTTP/1.1 server on a loopback port that answers with what the test says, and
//! records every request with the connection it arrived on. For what no real Exchange
//! does on demand: throttling, a 401, a connection-bound NTLM handshake to inspect.

#![allow(dead_code, reason = "each test file uses part of the fake")]

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Connections are numbered from 0 in the order they were accepted.
    pub connection: usize,
    pub authorization: Option<String>,
    pub body: String,
}

impl Seen {
    /// The SOAP operation, e.g. `GetFolder`, or `""` for an empty POST.
    pub fn operation(&self) -> &str {
        let Some(start) = self.body.find("<soap:Body><m:") else {
            return "";
        };
        let rest = &self.body[start + "<soap:Body><m:".len()..];
        let end = rest.find([' ', '>']).unwrap_or(rest.len());
        &rest[..end]
    }
}

#[derive(Clone, Debug, Default)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Send the body chunked, in pieces of this size.
    pub chunked: Option<usize>,
    /// Close the connection after this answer.
    pub close: bool,
}

impl Reply {
    pub fn ok(body: impl Into<String>) -> Reply {
        Reply {
            status: 200,
            body: body.into(),
            headers: vec![("Content-Type".into(), "text/xml; charset=utf-8".into())],
            ..Reply::default()
        }
    }

    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            ..Reply::default()
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn with_body(mut self, body: impl Into<String>) -> Reply {
        self.body = body.into();
        self
    }
}

type Handler = dyn Fn(&Seen, &[Seen]) -> Reply + Send + Sync;

pub struct FakeExchange {
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeExchange {
    /// `handler` gets the request and every earlier one.
    pub async fn start(
        handler: impl Fn(&Seen, &[Seen]) -> Reply + Send + Sync + 'static,
    ) -> FakeExchange {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            let mut next = 0;
            while let Ok((stream, _)) = listener.accept().await {
                let connection = next;
                next += 1;
                tokio::spawn(serve(
                    stream,
                    connection,
                    Arc::clone(&handler),
                    Arc::clone(&log),
                ));
            }
        });
        FakeExchange { port, seen }
    }

    pub fn url(&self) -> url::Url {
        url::Url::parse(&format!("http://127.0.0.1:{}/EWS/Exchange.asmx", self.port)).unwrap()
    }

    pub fn base(&self) -> url::Url {
        url::Url::parse(&format!("http://127.0.0.1:{}/", self.port)).unwrap()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn serve(
    stream: tokio::net::TcpStream,
    connection: usize,
    handler: Arc<Handler>,
    log: Arc<Mutex<Vec<Seen>>>,
) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        let mut authorization = None;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap();
            let value = value.trim().to_string();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse().unwrap(),
                "authorization" => authorization = Some(value),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await.unwrap();
        let seen = Seen {
            connection,
            authorization,
            body: String::from_utf8(body).unwrap(),
        };
        let reply = {
            let mut log = log.lock().unwrap();
            let reply = handler(&seen, &log);
            log.push(seen);
            reply
        };
        let mut head = format!("HTTP/1.1 {} X\r\n", reply.status);
        for (name, value) in &reply.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if reply.close {
            head.push_str("Connection: close\r\n");
        }
        let mut out = Vec::new();
        match reply.chunked {
            Some(size) => {
                head.push_str("Transfer-Encoding: chunked\r\n\r\n");
                out.extend_from_slice(head.as_bytes());
                for piece in reply.body.as_bytes().chunks(size) {
                    out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                    out.extend_from_slice(piece);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
            }
            None => {
                head.push_str(&format!("Content-Length: {}\r\n\r\n", reply.body.len()));
                out.extend_from_slice(head.as_bytes());
                out.extend_from_slice(reply.body.as_bytes());
            }
        }
        if write.write_all(&out).await.is_err() || reply.close {
            return;
        }
    }
}

/// `<m:{operation}Response>` with the given response messages, in a SOAP envelope.
pub fn response(operation: &str, messages: &[String]) -> String {
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">"#,
            r#"<s:Header><h:ServerVersionInfo MajorVersion="15" MinorVersion="2" MajorBuildNumber="1544" MinorBuildNumber="4" xmlns:h="http://schemas.microsoft.com/exchange/services/2006/types"/></s:Header>"#,
            r#"<s:Body><m:{0}Response xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">"#,
            "<m:ResponseMessages>{1}</m:ResponseMessages></m:{0}Response></s:Body></s:Envelope>"
        ),
        operation,
        messages.concat()
    )
}

pub fn success(operation: &str, inner: &str) -> String {
    format!(
        r#"<m:{operation}ResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>{inner}</m:{operation}ResponseMessage>"#
    )
}

pub fn failure(operation: &str, code: &str, text: &str) -> String {
    format!(
        r#"<m:{operation}ResponseMessage ResponseClass="Error"><m:MessageText>{text}</m:MessageText><m:ResponseCode>{code}</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey></m:{operation}ResponseMessage>"#
    )
}

pub fn busy(operation: &str, back_off_ms: u64) -> String {
    format!(
        r#"<m:{operation}ResponseMessage ResponseClass="Error"><m:MessageText>The server cannot service this request right now. Try again later.</m:MessageText><m:ResponseCode>ErrorServerBusy</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey><m:MessageXml><t:Value Name="BackOffMilliseconds">{back_off_ms}</t:Value></m:MessageXml></m:{operation}ResponseMessage>"#
    )
}

/// The SOAP fault Exchange sends (HTTP 500) when it throttles a whole request.
pub fn busy_fault(back_off_ms: u64) -> Reply {
    let body = format!(
        concat!(
            r#"<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault>"#,
            r#"<faultcode xmlns:a="http://schemas.microsoft.com/exchange/services/2006/types">a:ErrorServerBusy</faultcode>"#,
            r#"<faultstring xml:lang="en-US">The server cannot service this request right now. Try again later.</faultstring>"#,
            r#"<detail><e:ResponseCode xmlns:e="http://schemas.microsoft.com/exchange/services/2006/errors">ErrorServerBusy</e:ResponseCode>"#,
            r#"<e:Message xmlns:e="http://schemas.microsoft.com/exchange/services/2006/errors">The server cannot service this request right now. Try again later.</e:Message>"#,
            r#"<t:MessageXml xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><t:Value Name="BackOffMilliseconds">{0}</t:Value></t:MessageXml>"#,
            r#"</detail></s:Fault></s:Body></s:Envelope>"#
        ),
        back_off_ms
    );
    Reply {
        status: 500,
        body,
        headers: vec![("Content-Type".into(), "text/xml; charset=utf-8".into())],
        ..Reply::default()
    }
}

/// The GetFolder answer for msgfolderroot that `Client::connect` reads.
pub fn root_folder() -> String {
    response(
        "GetFolder",
        &[success(
            "GetFolder",
            r#"<m:Folders><t:Folder><t:FolderId Id="ROOT" ChangeKey="AQ"/><t:DisplayName>Top of Information Store</t:DisplayName><t:TotalCount>0</t:TotalCount></t:Folder></m:Folders>"#,
        )],
    )
}
