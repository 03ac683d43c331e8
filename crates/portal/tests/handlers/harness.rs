//! A portal for one test: its own SQLite database in a temporary directory, a memory
//! mailer, and a browser-like client that keeps its session cookie and CSRF token, with
//! requests sent straight to the router (`tower::ServiceExt::oneshot`).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, Request, StatusCode};
use base64::Engine;
use http_body_util::BodyExt;
use mailmove_portal::{AppState, Mailer, OutgoingMail, PortalConfig, SentMail, router};
use mailmove_secrets::Keyring;
use mailmove_store::Db;
use tower::ServiceExt;

pub struct Portal {
    pub app: Router,
    pub state: AppState,
    pub sent: SentMail,
    pub keyring: Keyring,
    /// The database's directory; `None` for a second portal on another's database.
    _dir: Option<tempfile::TempDir>,
}

/// What came back: status, headers and the body as text.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect()
    }

    /// The value of a cookie set by this answer.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.set_cookies().iter().find_map(|c| {
            c.strip_prefix(&format!("{name}="))
                .map(|rest| rest.split(';').next().unwrap_or("").to_string())
        })
    }

    /// The first hidden CSRF field of the page.
    pub fn csrf(&self) -> String {
        field_value(&self.body, "csrf").expect("the page has a CSRF field")
    }

    pub fn assert_ok(&self) -> &Self {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        self
    }
}

/// The value attribute of the first input named `name`.
pub fn field_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_string())
}

/// A browser: its cookies and the CSRF token of its session.
#[derive(Clone, Debug, Default)]
pub struct Client {
    pub cookies: Vec<(String, String)>,
    pub csrf: String,
    pub address: Option<SocketAddr>,
    /// Sent as `X-Forwarded-For` (as a reverse proxy, or a client pretending).
    pub forwarded_for: Option<String>,
}

impl Client {
    /// A browser whose requests come from `address`.
    pub fn at(address: &str) -> Client {
        Client {
            address: Some(address.parse().unwrap()),
            ..Client::default()
        }
    }

    /// What the store knows this browser's session by: the SHA-256 of its cookie.
    pub fn session_hash(&self) -> String {
        use sha2::Digest;
        let (_, id) = self
            .cookies
            .iter()
            .find(|(name, _)| name == "mailmove_session")
            .expect("a session cookie");
        sha2::Sha256::digest(id.as_bytes())
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    fn cookie_header(&self) -> Option<String> {
        (!self.cookies.is_empty()).then(|| {
            self.cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    pub fn keep_cookies(&mut self, answer: &Answer) {
        for set in answer.set_cookies() {
            let pair = set.split(';').next().unwrap_or("");
            if let Some((name, value)) = pair.split_once('=') {
                self.cookies.retain(|(k, _)| k != name);
                let removed = set.contains("Max-Age=0");
                if !removed {
                    self.cookies.push((name.to_string(), value.to_string()));
                }
            }
        }
    }
}

pub fn test_keyring() -> Keyring {
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    Keyring::from_base64(&key).expect("a 32-byte key")
}

impl Portal {
    pub async fn new() -> Portal {
        Portal::with(|_| {}).await
    }

    /// A portal whose configuration `change` adjusts.
    pub async fn with(change: impl FnOnce(&mut PortalConfig)) -> Portal {
        Portal::with_db(|db| db, change).await
    }

    /// A portal whose database `change_db` and configuration `change` adjust.
    pub async fn with_db(
        change_db: impl FnOnce(Db) -> Db,
        change: impl FnOnce(&mut PortalConfig),
    ) -> Portal {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_sqlite(&dir.path().join("portal.sqlite"))
            .await
            .unwrap();
        let db = change_db(db);
        let mut config = PortalConfig::for_listen("127.0.0.1:8080".parse().unwrap());
        config.progress_every = Duration::from_millis(50);
        change(&mut config);
        let (mailer, sent) = Mailer::memory();
        let keyring = test_keyring();
        let state = AppState::new(db, keyring.clone(), mailer, config);
        Portal {
            app: router(state.clone()),
            state,
            sent,
            keyring,
            _dir: Some(dir),
        }
    }

    /// Another portal process on the same database, with its own memory and mailer.
    pub fn sibling(&self) -> Portal {
        let (mailer, sent) = Mailer::memory();
        let state = AppState::new(
            self.db().clone(),
            self.keyring.clone(),
            mailer,
            self.state.config().clone(),
        );
        Portal {
            app: router(state.clone()),
            state,
            sent,
            keyring: self.keyring.clone(),
            _dir: None,
        }
    }

    pub fn db(&self) -> &Db {
        self.state.db()
    }

    pub fn mails(&self) -> Vec<OutgoingMail> {
        self.sent.lock().unwrap().clone()
    }

    pub async fn send(&self, client: &Client, request: Request<Body>) -> Answer {
        let response = self.raw(client, request).await;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// The response itself, for streams.
    pub async fn raw(
        &self,
        client: &Client,
        mut request: Request<Body>,
    ) -> axum::response::Response {
        if let Some(cookies) = client.cookie_header() {
            request
                .headers_mut()
                .insert(COOKIE, cookies.parse().unwrap());
        }
        let address = client
            .address
            .unwrap_or_else(|| "127.0.0.1:50000".parse().unwrap());
        request.extensions_mut().insert(ConnectInfo(address));
        if let Some(forwarded) = &client.forwarded_for {
            request
                .headers_mut()
                .insert("x-forwarded-for", forwarded.parse().unwrap());
        }
        self.app.clone().oneshot(request).await.unwrap()
    }

    pub async fn get(&self, client: &Client, path: &str) -> Answer {
        let request = Request::get(path).body(Body::empty()).unwrap();
        self.send(client, request).await
    }

    /// Posts a URL-encoded form with the client's CSRF token (when it has one).
    pub async fn post(&self, client: &Client, path: &str, fields: &[(&str, &str)]) -> Answer {
        let mut all: Vec<(&str, &str)> = Vec::new();
        if !client.csrf.is_empty() {
            all.push(("csrf", &client.csrf));
        }
        all.extend_from_slice(fields);
        self.post_raw(client, path, &all).await
    }

    /// Posts exactly these fields.
    pub async fn post_raw(&self, client: &Client, path: &str, fields: &[(&str, &str)]) -> Answer {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let request = Request::post(path)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        self.send(client, request).await
    }

    /// Uploads a file as the mailbox form does.
    pub async fn upload(
        &self,
        client: &Client,
        path: &str,
        file_name: &str,
        bytes: &[u8],
        csrf: Option<&str>,
    ) -> Answer {
        let boundary = "XmailmoveBoundaryX";
        let mut body = Vec::new();
        if let Some(csrf) = csrf {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n"
                )
                .as_bytes(),
            );
        }
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"spreadsheet\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let request = Request::post(path)
            .header(
                CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(Body::from(body))
            .unwrap();
        self.send(client, request).await
    }

    /// Asks for a login link and returns the link's path (`/login/TOKEN`).
    pub async fn request_link(&self, client: &mut Client, email: &str) -> Answer {
        let form = self.get(client, "/login").await;
        form.assert_ok();
        client.keep_cookies(&form);
        client.csrf = form.csrf();
        let answer = self
            .post(client, "/login", &[("email", email), ("terms", "accepted")])
            .await;
        client.csrf.clear();
        answer
    }

    /// The path of the login link in the last email to `email`.
    pub fn last_link(&self, email: &str) -> String {
        let mails = self.mails();
        let mail = mails
            .iter()
            .rev()
            .find(|m| m.to == email)
            .expect("a login email");
        let start = mail
            .body
            .find("http://127.0.0.1:8080/login/")
            .expect("a link");
        let link = &mail.body[start + "http://127.0.0.1:8080".len()..];
        link.split_whitespace().next().unwrap().to_string()
    }

    /// Opens an emailed link and presses its "Log in" button.
    pub async fn open_link(&self, client: &mut Client, link: &str) -> Answer {
        let page = self.get(client, link).await;
        if page.status != StatusCode::OK {
            return page;
        }
        assert!(page.body.contains(">Log in</button>"), "{}", page.body);
        client.keep_cookies(&page);
        client.csrf = page.csrf();
        let answer = self.post(client, link, &[]).await;
        client.csrf.clear();
        answer
    }

    /// A signed-in browser for `email`.
    pub async fn login(&self, email: &str) -> Client {
        let mut client = Client::default();
        let sent = self.request_link(&mut client, email).await;
        sent.assert_ok();
        let link = self.last_link(email);
        let opened = self.open_link(&mut client, &link).await;
        assert_eq!(opened.status, StatusCode::SEE_OTHER, "{}", opened.body);
        assert_eq!(opened.location(), "/migrations");
        client.keep_cookies(&opened);
        let home = self.get(&client, "/migrations").await;
        home.assert_ok();
        client.csrf = home.csrf();
        client
    }

    /// Creates a migration through the form; returns its id.
    pub async fn create_project(&self, client: &Client, name: &str) -> i64 {
        let answer = self
            .post(
                client,
                "/migrations",
                &[
                    ("name", name),
                    ("source_kind", "imap"),
                    ("source_preset", ""),
                    ("source_host", "mail.old.example"),
                    ("source_port", ""),
                    ("source_security", "tls"),
                    ("dest_kind", "imap"),
                    ("dest_preset", "rackspace-email"),
                    ("dest_host", ""),
                    ("dest_port", ""),
                    ("dest_security", "tls"),
                ],
            )
            .await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        let location = answer.location();
        location
            .strip_prefix("/projects/")
            .and_then(|rest| rest.split('/').next())
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("redirected to a project: {location}"))
    }

    /// Adds typed mailbox rows `(source email, source password, dest email, dest password)`.
    pub async fn add_rows(
        &self,
        client: &Client,
        project: i64,
        rows: &[(&str, &str, &str, &str)],
    ) -> Answer {
        let mut fields = Vec::new();
        for (source, source_password, dest, dest_password) in rows {
            fields.extend_from_slice(&[
                ("source_email", *source),
                ("source_login", ""),
                ("source_password", *source_password),
                ("dest_email", *dest),
                ("dest_login", ""),
                ("dest_password", *dest_password),
            ]);
        }
        self.post(client, &format!("/projects/{project}/mailboxes"), &fields)
            .await
    }
}
