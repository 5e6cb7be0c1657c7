//! Test harness: a company config written to a temp dir and loaded with
//! `config::load`, the proxy started on 127.0.0.1:0, origins (plain HTTP
//! echo, TLS, silent), raw clients bound to chosen loopback source addresses,
//! and the access log read back with a deadline.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

pub mod binary;
pub mod props;

/// Every network wait in the tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(10);

/// Runs a test body with an overall deadline.
pub async fn bounded<F: std::future::Future<Output = ()>>(body: F) {
    tokio::time::timeout(Duration::from_secs(30), body).await.expect("test took longer than 30 s");
}

/// The password every test user has.
pub const PASSWORD: &str = "correct horse";

/// A company configuration being written: departments `default` (facebook
/// blocked), `sales` (127.0.0.2 or user alice; facebook logged) and
/// `engineering` (127.0.0.3 or user bob; facebook allowed, twitter blocked).
pub struct Company {
    dir: tempfile::TempDir,
    proxy: Vec<String>,
    identity: Vec<String>,
    log: Vec<String>,
    limits: Vec<String>,
    hosts: Vec<(String, IpAddr)>,
    departments: Vec<(String, String)>,
    allow_loopback: bool,
    /// A TLS listener's certificate (PEM) and key (PEM), if any.
    tls: Option<(String, String)>,
    /// `[proxy] listen`.
    listen: Vec<String>,
    /// `[proxy.tls] listen`.
    tls_listen: Vec<String>,
    /// TOML appended to the main file (e.g. an `[admin]` table).
    extra: String,
}

impl Company {
    /// The standard company, with hosts `www.facebook.com`, `facebook.com`,
    /// `notfacebook.com`, `twitter.com`, `example.test` all on 127.0.0.1.
    pub fn new() -> Company {
        let localhost: IpAddr = "127.0.0.1".parse().unwrap();
        Company {
            dir: tempfile::tempdir().unwrap(),
            proxy: Vec::new(),
            identity: Vec::new(),
            log: Vec::new(),
            limits: Vec::new(),
            hosts: ["www.facebook.com", "facebook.com", "notfacebook.com", "twitter.com", "example.test"]
                .into_iter()
                .map(|h| (h.to_owned(), localhost))
                .collect(),
            departments: vec![
                ("default".into(), "default = \"allow\"\n[services]\nfacebook = \"block\"\n".into()),
                (
                    "sales".into(),
                    "networks = [\"127.0.0.2/32\"]\nusers = [\"alice\"]\ndefault = \"allow\"\n[services]\nfacebook = \"log\"\n"
                        .into(),
                ),
                (
                    "engineering".into(),
                    "networks = [\"127.0.0.3/32\"]\nusers = [\"bob\"]\ndefault = \"allow\"\n[services]\nfacebook = \"allow\"\ntwitter = \"block\"\n"
                        .into(),
                ),
            ],
            allow_loopback: true,
            tls: None,
            listen: vec!["127.0.0.1:0".into()],
            tls_listen: vec!["127.0.0.1:0".into()],
            extra: String::new(),
        }
    }

    /// Adds a `[proxy.tls]` listener on 127.0.0.1:0 with a certificate for
    /// `proxy.test` made here; [`Company::proxy_tls_client`] trusts it.
    pub fn with_tls_listener(mut self) -> Self {
        let certified = rcgen::generate_simple_self_signed(vec!["proxy.test".to_owned()]).unwrap();
        self.tls = Some((certified.cert.pem(), certified.signing_key.serialize_pem()));
        self
    }

    /// A TLS client config trusting the TLS listener's certificate.
    pub fn proxy_tls_client(&self) -> Arc<rustls::ClientConfig> {
        trusting(&[self.tls_cert_der()])
    }

    /// Adds a `[proxy]` key line, e.g. `forwarded_for = "delete"`.
    pub fn proxy(mut self, line: &str) -> Self {
        self.proxy.push(line.to_owned());
        self
    }

    /// Removes the `[proxy]` key lines that set `key`.
    pub fn without_proxy_key(mut self, key: &str) -> Self {
        self.proxy.retain(|line| line.split('=').next().map(str::trim) != Some(key));
        self
    }

    /// Adds an `[identity]` key line.
    pub fn identity(mut self, line: &str) -> Self {
        self.identity.push(line.to_owned());
        self
    }

    /// Adds a `[log]` key line.
    pub fn log(mut self, line: &str) -> Self {
        self.log.push(line.to_owned());
        self
    }

    /// Adds a `[limits]` key line.
    pub fn limit(mut self, line: &str) -> Self {
        self.limits.push(line.to_owned());
        self
    }

    /// Requires Basic proxy auth; users alice and bob, password [`PASSWORD`].
    pub fn with_basic_auth(self) -> Self {
        self.identity("auth = \"basic\"").identity("htpasswd = \"users.htpasswd\"").identity("realm = \"Corp\"")
    }

    /// Replaces (or adds) department `name` with the file `body`.
    pub fn department(mut self, name: &str, body: &str) -> Self {
        self.departments.retain(|(n, _)| n != name);
        self.departments.push((name.to_owned(), body.to_owned()));
        self
    }

    /// Keeps loopback out of `allow_destinations`.
    pub fn without_loopback_destinations(mut self) -> Self {
        self.allow_loopback = false;
        self
    }

    /// The folder the config lives in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes every file; returns the main file's path.
    pub fn write(&self, connect_ports: &[u16]) -> PathBuf {
        let dir = self.dir.path();
        std::fs::create_dir_all(dir.join("departments")).unwrap();
        for (name, body) in &self.departments {
            std::fs::write(dir.join("departments").join(format!("{name}.toml")), body).unwrap();
        }
        let hosts: String = self.hosts.iter().map(|(h, ip)| format!("{ip} {h}\n")).collect();
        std::fs::write(dir.join("hosts"), hosts).unwrap();
        let htpasswd: String =
            ["alice", "bob"].iter().map(|user| format!("{user}:{}\n", bcrypt::hash(PASSWORD, 4).unwrap())).collect();
        std::fs::write(dir.join("users.htpasswd"), htpasswd).unwrap();
        let ports: Vec<String> = connect_ports.iter().map(u16::to_string).collect();
        let allow = if self.allow_loopback { "[\"127.0.0.0/8\"]" } else { "[]" };
        let mut main = format!(
            "[proxy]\nlisten = {}\nconnect_ports = [{}]\nallow_destinations = {allow}\nhosts_file = \"hosts\"\n",
            toml_strings(&self.listen),
            ports.join(", ")
        );
        for line in &self.proxy {
            main.push_str(line);
            main.push('\n');
        }
        if let Some((cert, key)) = &self.tls {
            std::fs::write(dir.join("proxy.pem"), cert).unwrap();
            std::fs::write(dir.join("proxy.key"), key).unwrap();
            main.push_str(&format!(
                "\n[proxy.tls]\nlisten = {}\ncert = \"proxy.pem\"\nkey = \"proxy.key\"\n",
                toml_strings(&self.tls_listen)
            ));
        }
        main.push_str("\n[identity]\n");
        for line in &self.identity {
            main.push_str(line);
            main.push('\n');
        }
        main.push_str("\n[log]\naccess_log = \"access.log\"\n");
        for line in &self.log {
            main.push_str(line);
            main.push('\n');
        }
        main.push_str("\n[block_page]\ncontact = \"helpdesk@example.test\"\n\n[limits]\n");
        for line in &self.limits {
            main.push_str(line);
            main.push('\n');
        }
        if !self.extra.is_empty() {
            main.push('\n');
            main.push_str(&self.extra);
        }
        let path = dir.join("socialgate.toml");
        std::fs::write(&path, main).unwrap();
        path
    }

    /// Loads the written config at `path` and starts the proxy on it.
    async fn launch(self, path: &Path, connect_ports: &[u16]) -> Proxy {
        self.launch_on(path, connect_ports, socialgate::proxy::Clock::system()).await
    }

    /// [`Company::launch`] with the proxy going by `clock`.
    async fn launch_on(self, path: &Path, connect_ports: &[u16], clock: socialgate::proxy::Clock) -> Proxy {
        let config = match socialgate::config::load(path) {
            Ok(config) => config,
            Err(diags) => panic!("test config does not load:\n{diags}"),
        };
        let running = socialgate::proxy::start_with_clock(config, clock).await.unwrap();
        Proxy {
            addr: running.listen_addrs()[0],
            tls_addr: running.tls_addrs().first().copied(),
            running: Some(running),
            company: Some(self),
            connect_ports: connect_ports.to_vec(),
        }
    }

    /// Writes the config, loads it with `config::load` and starts the proxy.
    pub async fn start(self, connect_ports: &[u16]) -> Proxy {
        let path = self.write(connect_ports);
        self.launch(&path, connect_ports).await
    }
}

/// A proxy running in-process.
pub struct Proxy {
    /// Its first listener at start.
    pub addr: SocketAddr,
    /// Its first TLS listener at start, if configured.
    pub tls_addr: Option<SocketAddr>,
    running: Option<socialgate::proxy::Running>,
    company: Option<Company>,
    connect_ports: Vec<u16>,
}

impl Proxy {
    /// A client connected from 127.0.0.1.
    pub async fn client(&self) -> Client {
        Client::connect(self.addr, "127.0.0.1").await
    }

    /// A client connected from `source` (127.0.0.2 lands in sales,
    /// 127.0.0.3 in engineering).
    pub async fn client_from(&self, source: &str) -> Client {
        Client::connect(self.addr, source).await
    }

    /// Waits (with a deadline) until the access log holds at least `n`
    /// records, and returns them all.
    pub async fn records(&self, n: usize) -> Vec<Value> {
        wait_for_records(&self.log_path(), n).await
    }

    /// The access log's path.
    pub fn log_path(&self) -> PathBuf {
        self.company().dir().join("access.log")
    }

    /// The company config it runs.
    pub fn company(&self) -> &Company {
        self.company.as_ref().unwrap()
    }

    /// Rewrites the config after `change` and reloads it into the running
    /// proxy; panics if the reload fails.
    pub fn reload(&mut self, change: impl FnOnce(Company) -> Company) {
        if let Err(err) = self.try_reload(change) {
            panic!("reload failed: {err}");
        }
    }

    /// Rewrites the config after `change` and reloads it into the running
    /// proxy: the proxy's answer (the config must be valid).
    pub fn try_reload(
        &mut self,
        change: impl FnOnce(Company) -> Company,
    ) -> Result<(), socialgate::proxy::ReloadError> {
        let company = change(self.company.take().unwrap());
        let path = company.write(&self.connect_ports);
        self.company = Some(company);
        let config = socialgate::config::load(&path).unwrap_or_else(|d| panic!("reloaded config does not load:\n{d}"));
        self.running.as_ref().unwrap().reload(config)
    }

    /// Starts a graceful shutdown without waiting for it.
    pub fn begin_shutdown(&self) {
        self.running.as_ref().unwrap().shutdown();
    }

    /// Shuts the proxy down and waits for it; the config folder (and the
    /// access log in it) lives on in the returned company.
    pub async fn stop(mut self) -> Company {
        if let Some(running) = self.running.take() {
            running.shutdown();
            tokio::time::timeout(WAIT, running.wait()).await.unwrap().unwrap();
        }
        self.company.take().unwrap()
    }
}

/// Polls `path` until it holds `n` JSON lines; each must also parse as a
/// `socialgate::access_log::Record`.
pub async fn wait_for_records(path: &Path, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        // Only whole lines: the writer may be half-way through the last one.
        let whole = text.rfind('\n').map_or("", |end| &text[..end]);
        let lines: Vec<&str> = whole.lines().filter(|l| !l.trim().is_empty()).collect();
        if lines.len() >= n {
            return lines
                .iter()
                .map(|line| {
                    let _: socialgate::access_log::Record =
                        serde_json::from_str(line).unwrap_or_else(|e| panic!("bad record {line}: {e}"));
                    serde_json::from_str(line).unwrap()
                })
                .collect();
        }
        assert!(tokio::time::Instant::now() < deadline, "expected {n} access-log records, found:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A raw HTTP/1.1 client over one TCP connection.
pub struct Client {
    /// The connection (after CONNECT, the tunnel).
    pub stream: TcpStream,
    buf: Vec<u8>,
}

/// A response as the client saw it.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercase.
    pub headers: Vec<(String, String)>,
    /// Body as text.
    pub body: String,
}

impl Reply {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

impl Client {
    /// Connects to `proxy` from source address `source`.
    pub async fn connect(proxy: SocketAddr, source: &str) -> Client {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(source.parse().unwrap(), 0)).unwrap();
        let stream = tokio::time::timeout(WAIT, socket.connect(proxy)).await.unwrap().unwrap();
        Client { stream, buf: Vec::new() }
    }

    /// Sends raw bytes.
    pub async fn send(&mut self, raw: &str) {
        self.stream.write_all(raw.as_bytes()).await.unwrap();
    }

    /// `GET url` through the proxy with extra header lines.
    pub async fn get(&mut self, url: &str, headers: &[&str]) -> Reply {
        let host = url.split('/').nth(2).unwrap_or("");
        let mut raw = format!("GET {url} HTTP/1.1\r\nHost: {host}\r\n");
        for h in headers {
            raw.push_str(h);
            raw.push_str("\r\n");
        }
        raw.push_str("\r\n");
        self.send(&raw).await;
        self.reply(true).await
    }

    /// `GET url` through the proxy, reading only the response head.
    pub async fn get_head(&mut self, url: &str) -> Reply {
        let host = url.split('/').nth(2).unwrap_or("");
        self.send(&format!("GET {url} HTTP/1.1\r\nHost: {host}\r\n\r\n")).await;
        self.reply(false).await
    }

    /// `CONNECT authority` with extra header lines; reads the reply head
    /// (and the body unless it is a 200).
    pub async fn connect_to(&mut self, authority: &str, headers: &[&str]) -> Reply {
        let mut raw = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
        for h in headers {
            raw.push_str(h);
            raw.push_str("\r\n");
        }
        raw.push_str("\r\n");
        self.send(&raw).await;
        self.reply(false).await
    }

    /// Reads one response (with the body when `with_body`, or when it is
    /// not a 200 to CONNECT).
    pub async fn reply(&mut self, with_body: bool) -> Reply {
        tokio::time::timeout(WAIT, self.read_reply(with_body)).await.expect("no reply within the deadline")
    }

    /// Reads until the peer closes; true if it closed (EOF or reset).
    pub async fn closed(&mut self) -> bool {
        let mut scratch = [0u8; 1024];
        loop {
            match tokio::time::timeout(WAIT, self.stream.read(&mut scratch)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    async fn read_reply(&mut self, with_body: bool) -> Reply {
        let (status, headers, head_len) = loop {
            let mut slots = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Response::new(&mut slots);
            if let httparse::Status::Complete(len) = parsed.parse(&self.buf).unwrap() {
                let headers: Vec<(String, String)> = parsed
                    .headers
                    .iter()
                    .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
                    .collect();
                break (parsed.code.unwrap(), headers, len);
            }
            assert!(self.fill().await, "connection closed before a full response head");
        };
        self.buf.drain(..head_len);
        let length = headers.iter().find(|(n, _)| n == "content-length").map(|(_, v)| v.parse::<usize>().unwrap());
        let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
        let body = if !with_body && status == 200 {
            Vec::new()
        } else if let Some(len) = length {
            while self.buf.len() < len {
                assert!(self.fill().await, "connection closed inside the body");
            }
            self.buf.drain(..len).collect()
        } else if chunked {
            self.read_chunked().await
        } else {
            while self.fill().await {}
            std::mem::take(&mut self.buf)
        };
        Reply { status, headers, body: String::from_utf8_lossy(&body).into_owned() }
    }

    async fn read_chunked(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break pos;
                }
                assert!(self.fill().await, "closed in chunked body");
            };
            let size_line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            let size = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16).unwrap();
            self.buf.drain(..line_end + 2);
            while self.buf.len() < size + 2 {
                assert!(self.fill().await, "closed in chunk");
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
            if size == 0 {
                return body;
            }
        }
    }

    /// After a `200` to CONNECT: true if a TLS handshake as `server_name`
    /// through the tunnel fails (the proxy closed it).
    pub async fn tls_handshake_fails(self, origin: &TlsOrigin, server_name: &str) -> bool {
        let connector = tokio_rustls::TlsConnector::from(origin.client_config.clone());
        let name = rustls_pki_types::ServerName::try_from(server_name.to_owned()).unwrap();
        tokio::time::timeout(WAIT, connector.connect(name, self.stream)).await.unwrap().is_err()
    }

    /// After a `200` to CONNECT: a TLS session through the tunnel to a
    /// [`TlsOrigin`] as `server_name`, handshake done, nothing sent yet.
    pub async fn tls_session(
        self,
        origin: &TlsOrigin,
        server_name: &str,
    ) -> tokio_rustls::client::TlsStream<TcpStream> {
        assert!(self.buf.is_empty(), "bytes after the CONNECT reply");
        let connector = tokio_rustls::TlsConnector::from(origin.client_config.clone());
        let name = rustls_pki_types::ServerName::try_from(server_name.to_owned()).unwrap();
        tokio::time::timeout(WAIT, connector.connect(name, self.stream)).await.unwrap().unwrap()
    }

    /// After a `200` to CONNECT: a TLS handshake through the tunnel to a
    /// [`TlsOrigin`] as `server_name`, one line sent, the answer returned.
    pub async fn tls_exchange(self, origin: &TlsOrigin, server_name: &str, line: &str) -> String {
        assert!(self.buf.is_empty(), "bytes after the CONNECT reply");
        let connector = tokio_rustls::TlsConnector::from(origin.client_config.clone());
        let name = rustls_pki_types::ServerName::try_from(server_name.to_owned()).unwrap();
        let mut tls = tokio::time::timeout(WAIT, connector.connect(name, self.stream)).await.unwrap().unwrap();
        tls.write_all(format!("{line}\n").as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(WAIT, tls.read_to_end(&mut answer)).await.unwrap().unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    }
}

/// A plain HTTP origin that answers `200` with a body echoing the method,
/// the request target, every header (`name: value` lines, lowercase) and
/// the request body's length; `/download/N` answers N bytes instead.
pub struct EchoOrigin {
    /// Where it listens.
    pub addr: SocketAddr,
}

impl EchoOrigin {
    /// Starts it on 127.0.0.1:0.
    pub async fn start() -> EchoOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let service = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                        use http_body_util::BodyExt;
                        if let Some(n) = req.uri().path().strip_prefix("/download/") {
                            let body = vec![b'x'; n.parse().unwrap()];
                            return Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(body))));
                        }
                        let mut text = format!("{} {}\n", req.method(), req.uri());
                        for (name, value) in req.headers() {
                            text.push_str(&format!("{}: {}\n", name, value.to_str().unwrap_or("?")));
                        }
                        let body = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
                        if body > 0 {
                            text.push_str(&format!("body-bytes: {body}\n"));
                        }
                        let response = hyper::Response::builder()
                            .header("x-origin", "echo")
                            .header("keep-alive", "timeout=5")
                            .body(Full::new(Bytes::from(text)))
                            .unwrap();
                        Ok::<_, Infallible>(response)
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        EchoOrigin { addr }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

/// A TLS origin with a certificate (made here with rcgen) for every test
/// host name; after the handshake it answers one line with `pong: LINE`.
pub struct TlsOrigin {
    /// Where it listens.
    pub addr: SocketAddr,
    /// A client config trusting its certificate.
    pub client_config: Arc<rustls::ClientConfig>,
}

impl TlsOrigin {
    /// Starts it on 127.0.0.1:0.
    pub async fn start() -> TlsOrigin {
        let names: Vec<String> = ["www.facebook.com", "facebook.com", "notfacebook.com", "twitter.com", "example.test"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let certified = rcgen::generate_simple_self_signed(names).unwrap();
        let cert_der = certified.cert.der().clone();
        let key_der = rustls_pki_types::PrivateKeyDer::Pkcs8(rustls_pki_types::PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        ));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert_der.clone()], key_der)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert_der).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(stream).await else { return };
                    let mut line = Vec::new();
                    let mut byte = [0u8; 1];
                    while let Ok(1) = tls.read(&mut byte).await {
                        if byte[0] == b'\n' {
                            break;
                        }
                        line.push(byte[0]);
                    }
                    let answer = format!("pong: {}\n", String::from_utf8_lossy(&line));
                    let _ = tls.write_all(answer.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        TlsOrigin { addr, client_config: Arc::new(client) }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

/// An origin that accepts connections and never answers.
pub struct SilentOrigin {
    /// Where it listens.
    pub addr: SocketAddr,
}

impl SilentOrigin {
    /// Starts it on 127.0.0.1:0.
    pub async fn start() -> SilentOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        SilentOrigin { addr }
    }
}

/// A loopback port nobody listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A loopback UDP port nobody listens on, for a nameserver that never
/// answers (queries fail fast with port unreachable).
pub fn closed_udp_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap().port()
}

/// `Basic` credentials header line.
pub fn proxy_auth(user: &str, password: &str) -> String {
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Proxy-Authorization: Basic {token}")
}

/// An origin that answers every request with a chunked `200`, sends one
/// chunk, and then holds the response open forever.
pub struct TricklingOrigin {
    /// Where it listens.
    pub addr: SocketAddr,
}

impl TricklingOrigin {
    /// Starts it on 127.0.0.1:0.
    pub async fn start() -> TricklingOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        break;
                    }
                    head.push(byte[0]);
                }
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n").await;
                held.push(stream);
            }
        });
        TricklingOrigin { addr }
    }
}

/// An origin that holds each request until the test opens its gate, and
/// tells the test when a request has arrived.
pub struct GatedOrigin {
    /// Where it listens.
    pub addr: SocketAddr,
    arrived: tokio::sync::mpsc::Receiver<()>,
    gate: tokio::sync::watch::Sender<bool>,
}

impl GatedOrigin {
    /// Starts it on 127.0.0.1:0.
    pub async fn start() -> GatedOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (arrived_tx, arrived) = tokio::sync::mpsc::channel(16);
        let (gate, gate_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let arrived_tx = arrived_tx.clone();
                let mut gate_rx = gate_rx.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let _ = arrived_tx.send(()).await;
                    let _ = gate_rx.wait_for(|open| *open).await;
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
                });
            }
        });
        GatedOrigin { addr, arrived, gate }
    }

    /// Waits until a request has reached the origin.
    pub async fn request_arrived(&mut self) {
        tokio::time::timeout(WAIT, self.arrived.recv()).await.unwrap().unwrap();
    }

    /// Lets every held request (and later ones) be answered.
    pub fn open(&self) {
        self.gate.send_replace(true);
    }
}

// ---------------------------------------------------------------------------
// Hardening helpers (tests/hardening_*.rs, tests/prop_*.rs).
// ---------------------------------------------------------------------------

impl Company {
    /// Adds a hosts-file line mapping `name` to `ip` (any address: the
    /// private-destination guard must refuse it before any connection).
    pub fn host(mut self, name: &str, ip: &str) -> Self {
        self.hosts.push((name.to_owned(), ip.parse().unwrap()));
        self
    }

    /// Drops every hosts-file line (the standard names on 127.0.0.1
    /// included), for a test that maps each name itself.
    pub fn without_hosts(mut self) -> Self {
        self.hosts.clear();
        self
    }

    /// Like [`Company::start`], with `extra` TOML appended to the main file
    /// (e.g. an `[admin]` table).
    pub async fn start_with(self, connect_ports: &[u16], extra: &str) -> Proxy {
        self.start_on(connect_ports, extra, socialgate::proxy::Clock::system()).await
    }

    /// Like [`Company::start_with`], with the proxy going by `clock`. The
    /// extra TOML stays in the config across [`Proxy::reload`]s.
    pub async fn start_on(mut self, connect_ports: &[u16], extra: &str, clock: socialgate::proxy::Clock) -> Proxy {
        self.extra = extra.to_owned();
        let path = self.write(connect_ports);
        self.launch_on(&path, connect_ports, clock).await
    }
}

impl Proxy {
    /// Reads the access log as it is now (no waiting).
    pub fn records_now(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let whole = text.rfind('\n').map_or("", |end| &text[..=end]);
        whole.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

impl Client {
    /// Sends raw bytes (not necessarily UTF-8).
    pub async fn send_bytes(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).await.unwrap();
    }

    /// Bytes already read past the last reply.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }
}

/// What a [`CountingOrigin`] has seen.
#[derive(Debug, Default)]
pub struct OriginCounts {
    /// Connections accepted.
    pub connections: std::sync::atomic::AtomicUsize,
    /// Request heads parsed (the service was called).
    pub heads: std::sync::atomic::AtomicUsize,
    /// Requests whose body was received completely.
    pub complete: std::sync::atomic::AtomicUsize,
    /// The request lines (method and target) seen, in order.
    pub lines: std::sync::Mutex<Vec<String>>,
}

/// A plain HTTP origin like [`EchoOrigin`] that also counts what reaches it,
/// so a test can assert that nothing was forwarded.
pub struct CountingOrigin {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it saw.
    pub counts: Arc<OriginCounts>,
}

impl CountingOrigin {
    /// Starts it on 127.0.0.1:0.
    pub async fn start() -> CountingOrigin {
        use http_body_util::BodyExt;
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counts = Arc::new(OriginCounts::default());
        let shared = counts.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let counts = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let counts = counts.clone();
                        async move {
                            counts.heads.fetch_add(1, Ordering::SeqCst);
                            let mut text = format!("{} {}\n", req.method(), req.uri());
                            counts.lines.lock().unwrap().push(text.trim_end().to_owned());
                            for (name, value) in req.headers() {
                                text.push_str(&format!("{}: {}\n", name, value.to_str().unwrap_or("?")));
                            }
                            let body = req.into_body().collect().await;
                            if let Ok(body) = body {
                                counts.complete.fetch_add(1, Ordering::SeqCst);
                                text.push_str(&format!("body-bytes: {}\n", body.to_bytes().len()));
                            }
                            let response = hyper::Response::builder()
                                .header("x-origin", "counting")
                                .body(Full::new(Bytes::from(text)))
                                .unwrap();
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        CountingOrigin { addr, counts }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Request heads seen so far.
    pub fn heads(&self) -> usize {
        self.counts.heads.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Requests received completely so far.
    pub fn complete(&self) -> usize {
        self.counts.complete.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.counts.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A real TLS ClientHello from rustls naming `name` (SNI).
pub fn client_hello(name: &str) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let server = rustls_pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), server).unwrap();
    let mut out = Vec::new();
    conn.write_tls(&mut out).unwrap();
    out
}

/// Open file descriptors of this process (Linux `/proc/self/fd`).
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|dir| dir.count()).unwrap_or(0)
}

/// Polls until this process has at most `limit` open file descriptors;
/// returns the last count seen (more than `limit` if the deadline passed).
pub async fn fds_settle_at_most(limit: usize) -> usize {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = fd_count();
        if now <= limit || tokio::time::Instant::now() >= deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls until `cond` holds, or panics with `what` after [`WAIT`].
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An origin that runs `script` on every accepted connection (after
/// reading the request head, if `read_head`), for fault injection.
pub struct ScriptedOrigin {
    /// Where it listens.
    pub addr: SocketAddr,
}

impl ScriptedOrigin {
    /// An origin that accepts and reads every connection and never answers.
    pub async fn black_hole() -> ScriptedOrigin {
        ScriptedOrigin::start(false, |mut s| async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await
    }

    /// An origin that echoes every byte back until the peer closes.
    pub async fn echo() -> ScriptedOrigin {
        ScriptedOrigin::start(false, |mut s| async move {
            let mut buf = [0u8; 1024];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        })
        .await
    }

    /// Starts it on 127.0.0.1:0.
    pub async fn start<F, Fut>(read_head: bool, script: F) -> ScriptedOrigin
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let script = Arc::new(script);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let script = script.clone();
                tokio::spawn(async move {
                    if read_head {
                        let mut head = Vec::new();
                        let mut byte = [0u8; 1];
                        while !head.ends_with(b"\r\n\r\n") {
                            if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                                return;
                            }
                            head.push(byte[0]);
                        }
                    }
                    script(stream).await;
                });
            }
        });
        ScriptedOrigin { addr }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Client {
    /// The next reply, or `None` if the proxy closes the connection first.
    pub async fn reply_or_closed(&mut self) -> Option<Reply> {
        if self.buf.is_empty() {
            let mut one = [0u8; 1];
            match tokio::time::timeout(WAIT, self.stream.peek(&mut one)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Ok(Ok(_)) => {}
                Err(_) => panic!("neither a reply nor a close within the deadline"),
            }
        }
        Some(self.reply(true).await)
    }
}

/// The same as [`wait_for_records`] (which counts only whole lines): kept
/// for the suites written against this name.
pub async fn wait_for_whole_records(path: &Path, n: usize) -> Vec<Value> {
    wait_for_records(path, n).await
}

impl Proxy {
    /// Waits (with a deadline) for at least `n` whole records.
    pub async fn whole_records(&self, n: usize) -> Vec<Value> {
        wait_for_whole_records(&self.log_path(), n).await
    }
}

impl Proxy {
    /// Like [`Proxy::reload`], also replacing `connect_ports` (e.g. to name
    /// the proxy's own port, known only once it listens).
    pub fn reload_with_ports(&mut self, connect_ports: &[u16], change: impl FnOnce(Company) -> Company) {
        self.connect_ports = connect_ports.to_vec();
        self.reload(change);
    }
}

impl Company {
    /// Like [`Company::start`], letting `edit` change the written files
    /// (e.g. replace `users.htpasswd`) before the config is loaded.
    pub async fn start_edited(self, connect_ports: &[u16], edit: impl FnOnce(&Path)) -> Proxy {
        let path = self.write(connect_ports);
        edit(self.dir());
        self.launch(&path, connect_ports).await
    }
}

impl Proxy {
    /// Rotates the access log the way logrotate does: renames the file to
    /// `to`, then has the running proxy reopen its log (what SIGUSR1
    /// does). Works while requests are in flight.
    pub async fn rotate_log(&self, to: &Path) {
        std::fs::rename(self.log_path(), to).unwrap();
        self.running.as_ref().unwrap().reopen_log().await;
    }
}

/// Every whole record in the log file at `path` (none if it is missing).
pub fn records_in(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let whole = text.rfind('\n').map_or("", |end| &text[..=end]);
    whole.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
}

impl Client {
    /// The next `n` bytes (what is left after a reply, then the stream),
    /// or fewer if the connection closes first.
    pub async fn read_n(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n && tokio::time::timeout(WAIT, self.fill()).await.unwrap_or(false) {}
        let n = n.min(self.buf.len());
        self.buf.drain(..n).collect()
    }
}

/// `["a", "b"]`: a TOML array of strings.
fn toml_strings(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| format!("\"{item}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

impl Company {
    /// Sets `[proxy] listen` (default `["127.0.0.1:0"]`).
    pub fn listen(mut self, addrs: &[&str]) -> Self {
        self.listen = addrs.iter().map(|addr| (*addr).to_owned()).collect();
        self
    }

    /// Sets `[proxy.tls] listen` (default `["127.0.0.1:0"]`; only written
    /// with [`Company::with_tls_listener`]).
    pub fn tls_listen(mut self, addrs: &[&str]) -> Self {
        self.tls_listen = addrs.iter().map(|addr| (*addr).to_owned()).collect();
        self
    }

    /// Sets the TOML appended to the main file, replacing what was there
    /// (e.g. `[admin]\nlisten = "127.0.0.1:0"\n`).
    pub fn extra(mut self, toml: &str) -> Self {
        self.extra = toml.to_owned();
        self
    }

    /// The TLS listener's certificate as DER (what a client sees).
    pub fn tls_cert_der(&self) -> rustls_pki_types::CertificateDer<'static> {
        use rustls_pki_types::pem::PemObject;
        let (cert, _) = self.tls.as_ref().unwrap();
        rustls_pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()
    }
}

impl Proxy {
    /// Its plain listeners now (a reload may have changed them).
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.running.as_ref().unwrap().listen_addrs()
    }

    /// Its TLS listeners now.
    pub fn tls_addrs(&self) -> Vec<SocketAddr> {
        self.running.as_ref().unwrap().tls_addrs()
    }

    /// Its admin listener now.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.running.as_ref().unwrap().admin_addr()
    }

    /// Its metrics in Prometheus text.
    pub fn metrics_text(&self) -> String {
        self.running.as_ref().unwrap().metrics().encode()
    }
}

/// Polls until connecting to `addr` is refused (nothing listens there).
pub async fn refuses_connections(addr: SocketAddr) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout(WAIT, TcpStream::connect(addr)).await {
            Ok(Err(err)) if err.kind() == std::io::ErrorKind::ConnectionRefused => return,
            Ok(_) => {}
            Err(_) => panic!("connecting to {addr} neither succeeded nor failed within the deadline"),
        }
        assert!(tokio::time::Instant::now() < deadline, "{addr} still accepts connections");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TLS client config trusting exactly `certs` (ring, TLS 1.2 and 1.3).
pub fn trusting(certs: &[rustls_pki_types::CertificateDer<'static>]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots.add(cert.clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}
