//! Property tests for the "hostile or broken origin" row of the threat
//! model (SECURITY.md P7, P4), through the real proxy: a raw TCP origin
//! answers each request with bytes proptest chooses — well-formed responses
//! of every framing (`Content-Length`, chunked with extensions and
//! trailers, close-delimited, HTTP/1.0, 1xx interim responses, 204/304,
//! answers to HEAD), edited versions of them (lengths doubled or garbled,
//! `Transfer-Encoding` variants, obs-fold, bare LF, control bytes, huge or
//! negative sizes, a cut anywhere, bytes after the message, an unrequested
//! 101) and arbitrary bytes — and a raw client checks what reaches it:
//!
//! - the proxy never panics nor hangs (every read has a deadline);
//! - the client gets a response whose framing is unambiguous (parsed here
//!   with httparse and a strict chunked reader), whole, or cut short by a
//!   close after the head (the origin's body broke: `closed_by: "error"`);
//! - a well-formed response is relayed with the origin's status and body;
//! - the client's keep-alive connection is never desynchronised: a second
//!   request on it gets exactly its own answer, or the connection closes,
//!   and a connection the proxy says it closes carries nothing more;
//! - bytes an origin sends after a whole response never answer another
//!   request on the pooled upstream connection;
//! - every answered request has exactly one access-log record, with the
//!   status the client saw.
//!
//! Each property runs one proxy (on its own runtime, whose threads are
//! watched for panics) and a fresh origin per case, so cases share no
//! upstream connection and stay independent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select, subsequence};
use proptest::test_runner::TestCaseError;
use serde_json::Value;
use support::{Company, Proxy, records_in};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::task::{JoinHandle, JoinSet};

/// The deadline for any one read by the client (longer than the proxy's
/// `upstream_response_timeout` below, so a 504 is seen, not a hang).
const READ_WAIT: Duration = Duration::from_secs(5);

/// The deadline for one case as a whole.
const CASE_WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// The origin

/// What the origin answers a request with.
#[derive(Debug, Clone)]
struct Script {
    /// The request path it answers (the path ends with this).
    path: &'static str,
    bytes: Vec<u8>,
    /// Close the connection after the bytes (else read the next request).
    closes: bool,
}

/// A raw TCP origin on 127.0.0.1:0 that answers request heads by their
/// path; it stops (and its connections close) when dropped.
struct Origin {
    port: u16,
    task: JoinHandle<()>,
}

impl Origin {
    async fn start(scripts: Vec<Script>) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let scripts = Arc::new(scripts);
        let task = tokio::spawn(async move {
            // Dropped with this task when it is aborted: the connections end.
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                connections.spawn(serve(stream, scripts.clone()));
            }
        });
        Origin { port, task }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, scripts: Arc<Vec<Script>>) {
    let mut buf = Vec::new();
    loop {
        let end = loop {
            if let Some(at) = find(&buf, b"\r\n\r\n") {
                break at + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head: Vec<u8> = buf.drain(..end).collect();
        let target = head.split(|&b| b == b' ').nth(1).unwrap_or_default();
        let Some(script) = scripts.iter().find(|s| target.ends_with(s.path.as_bytes())) else { return };
        if stream.write_all(&script.bytes).await.is_err() {
            return;
        }
        if script.closes {
            let _ = stream.shutdown().await;
            // Read on until the proxy lets go, so the close is a FIN, not a reset.
            let mut sink = [0u8; 4096];
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
            return;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Bytes for a failure message: escaped, and cut if long.
fn show(bytes: &[u8]) -> String {
    let text = bytes.escape_ascii().to_string();
    if text.len() > 600 { format!("{}… ({} bytes)", &text[..600], bytes.len()) } else { text }
}

// ---------------------------------------------------------------------------
// The client

/// A response as the client read it.
#[derive(Debug)]
struct Seen {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    /// The body ended where its framing says (false: the connection closed
    /// inside it).
    whole: bool,
    /// The connection stays open for another request.
    persists: bool,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
    }
}

/// What came back for a request.
enum Answer {
    Response(Seen),
    /// The connection closed before a whole head, after these bytes.
    Closed(Vec<u8>),
}

/// A raw client connection to the proxy.
struct ClientConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl ClientConn {
    async fn connect(proxy: &Proxy) -> Result<ClientConn, String> {
        let stream = TcpStream::connect(proxy.addr).await.map_err(|e| format!("connecting to the proxy: {e}"))?;
        Ok(ClientConn { stream, buf: Vec::new() })
    }

    /// Reads more; false at the end of the stream (or a reset).
    async fn fill(&mut self) -> Result<bool, String> {
        let mut chunk = [0u8; 16384];
        match tokio::time::timeout(READ_WAIT, self.stream.read(&mut chunk)).await {
            Err(_) => Err(format!("the proxy neither answered nor closed in {READ_WAIT:?}; read {}", show(&self.buf))),
            Ok(Ok(0)) | Ok(Err(_)) => Ok(false),
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
        }
    }

    /// Everything until the proxy closes the connection.
    async fn rest(&mut self) -> Result<Vec<u8>, String> {
        while self.fill().await? {}
        Ok(std::mem::take(&mut self.buf))
    }

    /// Reads the final response to a request, checking that its head is
    /// clean and its framing unambiguous.
    async fn answer(&mut self, head_request: bool, http10_request: bool) -> Result<Answer, String> {
        loop {
            let (status, version, headers, len) = loop {
                let mut slots = [httparse::EMPTY_HEADER; 128];
                let mut parsed = httparse::Response::new(&mut slots);
                match parsed.parse(&self.buf) {
                    Ok(httparse::Status::Complete(len)) => {
                        let headers: Vec<(String, Vec<u8>)> =
                            parsed.headers.iter().map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec())).collect();
                        break (parsed.code.unwrap_or(0), parsed.version.unwrap_or(9), headers, len);
                    }
                    Ok(httparse::Status::Partial) => {
                        if !self.fill().await? {
                            return Ok(Answer::Closed(std::mem::take(&mut self.buf)));
                        }
                    }
                    Err(err) => return Err(format!("a malformed response head ({err}): {}", show(&self.buf))),
                }
            };
            let head: Vec<u8> = self.buf.drain(..len).collect();
            clean_head(&head)?;
            match status {
                101 => return Err(format!("a 101 reached the client: {}", show(&head))),
                // Interim: no body, the final response follows.
                100..=199 => continue,
                _ => {}
            }
            return self.body(status, version, headers, head_request, http10_request).await.map(Answer::Response);
        }
    }

    async fn body(
        &mut self,
        status: u16,
        version: u8,
        headers: Vec<(String, Vec<u8>)>,
        head_request: bool,
        http10_request: bool,
    ) -> Result<Seen, String> {
        let values = |name: &str| headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.clone()).collect::<Vec<_>>();
        let lengths = values("content-length");
        let codings = values("transfer-encoding");
        if lengths.len() > 1 {
            return Err(format!("{} Content-Length fields: {headers:?}", lengths.len()));
        }
        let chunked = !codings.is_empty();
        if chunked {
            if codings.len() != 1 || !codings[0].eq_ignore_ascii_case(b"chunked") || !lengths.is_empty() {
                return Err(format!("ambiguous framing: {headers:?}"));
            }
            if version != 1 || http10_request {
                return Err(format!("chunked in or to HTTP/1.0: {headers:?}"));
            }
        }
        let length = match lengths.first() {
            Some(v) if !v.is_empty() && v.iter().all(u8::is_ascii_digit) => {
                Some(std::str::from_utf8(v).unwrap().parse::<usize>().map_err(|e| format!("Content-Length: {e}"))?)
            }
            Some(v) => return Err(format!("Content-Length is not one length: {}", show(v))),
            None => None,
        };
        let tokens: Vec<String> = headers
            .iter()
            .filter(|(n, _)| n == "connection")
            .flat_map(|(_, v)| {
                String::from_utf8_lossy(v).split(',').map(|t| t.trim().to_ascii_lowercase()).collect::<Vec<_>>()
            })
            .collect();
        let bodiless = head_request || status == 204 || status == 304;
        let mut by_close = false;
        let (body, whole) = if bodiless {
            (Vec::new(), true)
        } else if chunked {
            self.chunked().await?
        } else if let Some(n) = length {
            while self.buf.len() < n {
                if !self.fill().await? {
                    break;
                }
            }
            let n = n.min(self.buf.len());
            let body: Vec<u8> = self.buf.drain(..n).collect();
            let whole = body.len() == length.unwrap_or(0);
            (body, whole)
        } else {
            by_close = true;
            (self.rest().await?, true)
        };
        let close = tokens.iter().any(|t| t == "close");
        let keep_alive = if version == 1 { !close } else { tokens.iter().any(|t| t == "keep-alive") && !close };
        Ok(Seen { status, headers, body, whole, persists: whole && !by_close && keep_alive })
    }

    /// A chunked body, read strictly; the bool says whether it ended.
    async fn chunked(&mut self) -> Result<(Vec<u8>, bool), String> {
        let mut body = Vec::new();
        loop {
            let Some(line) = self.line().await? else { return Ok((body, false)) };
            let size = line.split(|&b| b == b';').next().unwrap_or_default();
            if size.is_empty() || size.len() > 15 || !size.iter().all(u8::is_ascii_hexdigit) {
                return Err(format!("a bad chunk-size line: {}", show(&line)));
            }
            let size = usize::from_str_radix(std::str::from_utf8(size).unwrap(), 16).unwrap();
            if size == 0 {
                loop {
                    let Some(line) = self.line().await? else { return Ok((body, false)) };
                    if line.is_empty() {
                        return Ok((body, true));
                    }
                    if !line.contains(&b':') {
                        return Err(format!("a trailer line without a colon: {}", show(&line)));
                    }
                }
            }
            while self.buf.len() < size + 2 {
                if !self.fill().await? {
                    body.append(&mut self.buf);
                    return Ok((body, false));
                }
            }
            body.extend(self.buf.drain(..size));
            if self.buf.drain(..2).as_slice() != b"\r\n" {
                return Err("a chunk not followed by CRLF".into());
            }
        }
    }

    /// One CRLF-ended line (without it), or `None` at the end of the stream.
    async fn line(&mut self) -> Result<Option<Vec<u8>>, String> {
        loop {
            if let Some(at) = find(&self.buf, b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..at + 2).take(at).collect();
                if line.contains(&b'\n') {
                    return Err(format!("a bare LF in a chunked body: {}", show(&line)));
                }
                return Ok(Some(line));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).await.is_ok()
    }
}

/// A response head fit for any client: CRLF line ends only, no control
/// bytes, an HTTP/1.x status line. (httparse already refuses obs-fold.)
fn clean_head(head: &[u8]) -> Result<(), String> {
    let bare_lf = head.iter().enumerate().any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'));
    let control = head.iter().any(|&b| (b < 0x20 && b != b'\r' && b != b'\n' && b != b'\t') || b == 0x7f);
    if bare_lf || control || !(head.starts_with(b"HTTP/1.1 ") || head.starts_with(b"HTTP/1.0 ")) {
        return Err(format!("an unclean response head: {}", show(head)));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// One exchange: two requests on one client connection

/// How the client asks.
#[derive(Debug, Clone, Copy)]
struct Request {
    head: bool,
    http10: bool,
    /// `Connection: keep-alive` (HTTP/1.0 only).
    keep_alive: bool,
}

impl Request {
    fn bytes(&self, url: &str, head: bool) -> Vec<u8> {
        let host = url.split('/').nth(2).unwrap_or_default();
        let method = if head { "HEAD" } else { "GET" };
        let version = if self.http10 { "1.0" } else { "1.1" };
        let connection = if self.http10 && self.keep_alive { "Connection: keep-alive\r\n" } else { "" };
        format!("{method} {url} HTTP/{version}\r\nHost: {host}\r\n{connection}\r\n").into_bytes()
    }
}

fn request() -> impl Strategy<Value = Request> {
    (any::<bool>(), prop::bool::weighted(0.2), any::<bool>()).prop_map(|(head, http10, keep_alive)| Request {
        head,
        http10,
        keep_alive,
    })
}

/// What happened in one case, for the property's own checks.
struct Outcome {
    first: Seen,
    record: Value,
}

/// Where the second request goes.
enum SecondTo {
    /// The same origin (its connection, if the proxy pools it).
    SameOrigin,
    /// A fresh well-formed origin: the first one closed its connection,
    /// possibly without saying so, and a request racing that close onto
    /// the pooled connection would fail for reasons that are not the
    /// proxy's (every HTTP/1.1 client has that race).
    OtherOrigin,
}

/// Sends a request answered with `reply` (the origin then closing or not),
/// then, if the connection persists, a second one answered well; checks
/// the framing of both answers, that the second is exactly its own or a
/// clean close, that a connection said closing carries nothing more, that
/// each answered request has one record with its status, and that nothing
/// panicked.
async fn exchange(
    proxy: &Proxy,
    n: usize,
    reply: &[u8],
    closes: bool,
    req: Request,
    second_to: SecondTo,
) -> Result<Outcome, String> {
    let second_body = format!("the answer to the second request of case {n}");
    let second = Script {
        path: "/second",
        bytes: format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{second_body}", second_body.len()).into_bytes(),
        closes: false,
    };
    let first = Script { path: "/first", bytes: reply.to_vec(), closes };
    let origin = Origin::start(vec![first, second.clone()]).await;
    let other = match second_to {
        SecondTo::SameOrigin => None,
        SecondTo::OtherOrigin => Some(Origin::start(vec![second]).await),
    };
    let mut client = ClientConn::connect(proxy).await?;
    let first_path = format!("/case{n}/first");
    let url = format!("http://example.test:{}{first_path}", origin.port);
    if !client.send(&req.bytes(&url, req.head)).await {
        return Err("the proxy closed before the request was sent".into());
    }
    let first = match client.answer(req.head, req.http10).await? {
        Answer::Response(seen) => seen,
        Answer::Closed(bytes) => return Err(format!("closed without a whole response head, after {}", show(&bytes))),
    };
    let mut second_answered = false;
    let second_path = format!("/case{n}/second");
    if first.persists {
        let port = other.as_ref().map_or(origin.port, |o| o.port);
        let url = format!("http://example.test:{port}{second_path}");
        if client.send(&req.bytes(&url, false)).await {
            match client.answer(false, req.http10).await? {
                Answer::Response(seen) => {
                    if (seen.status, seen.body.as_slice(), seen.whole) != (200, second_body.as_bytes(), true) {
                        return Err(format!("the second request was answered with {seen:?}"));
                    }
                    second_answered = true;
                }
                Answer::Closed(bytes) if bytes.is_empty() => {}
                Answer::Closed(bytes) => return Err(format!("after the first response: {}", show(&bytes))),
            }
        }
    } else {
        let rest = client.rest().await?;
        if !rest.is_empty() {
            return Err(format!("bytes after a response that closes the connection: {}", show(&rest)));
        }
    }
    drop(client);
    let record = one_record(proxy, &first_path, first.status).await?;
    if second_answered {
        one_record(proxy, &second_path, 200).await?;
    }
    support::props::no_panic()?;
    Ok(Outcome { first, record })
}

/// Waits for the record of the request to `path`: exactly one, with
/// `status`.
async fn one_record(proxy: &Proxy, path: &str, status: u16) -> Result<Value, String> {
    let deadline = tokio::time::Instant::now() + READ_WAIT;
    loop {
        let mut found: Vec<Value> = records_in(&proxy.log_path())
            .into_iter()
            .filter(|r| r["url"].as_str().is_some_and(|u| u.ends_with(path)))
            .collect();
        match found.len() {
            0 if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(5)).await,
            0 => return Err(format!("no access-log record for {path}")),
            1 => {
                let record = found.remove(0);
                if record["status"] != status {
                    return Err(format!("the client saw {status}, the record says {record}"));
                }
                return Ok(record);
            }
            _ => return Err(format!("{} records for {path}: {found:?}", found.len())),
        }
    }
}

/// One property's proxy, on its own runtime, and the runtime the client
/// and origins run on.
struct Bench {
    proxy_rt: Runtime,
    rt: Runtime,
    proxy: Option<Proxy>,
    cases: Cell<usize>,
}

impl Bench {
    fn new() -> Bench {
        let proxy_rt = support::props::proxy_runtime();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // Bounds a head that never completes; origins here close instead.
        let proxy = proxy_rt.block_on(Company::new().limit("upstream_response_timeout = \"3s\"").start(&[443]));
        Bench { proxy_rt, rt, proxy: Some(proxy), cases: Cell::new(0) }
    }

    /// Runs one case with a deadline; `check` is the property's own.
    fn run(
        &self,
        reply: &[u8],
        closes: bool,
        req: Request,
        second_to: SecondTo,
        check: impl FnOnce(Outcome) -> Result<(), String>,
    ) -> Result<(), TestCaseError> {
        let n = self.cases.get();
        self.cases.set(n + 1);
        let proxy = self.proxy.as_ref().unwrap();
        let outcome = self
            .rt
            .block_on(async {
                tokio::time::timeout(CASE_WAIT, exchange(proxy, n, reply, closes, req, second_to)).await
            })
            .map_err(|_| format!("case {n} took longer than {CASE_WAIT:?}"))
            .and_then(|r| r)
            .and_then(check);
        outcome.map_err(|why| TestCaseError::fail(format!("origin sent {}: {why}", show(reply))))
    }

    /// After the last case: no request has two records.
    fn finish(mut self) {
        let proxy = self.proxy.take().unwrap();
        self.rt.block_on(async { tokio::time::sleep(Duration::from_millis(200)).await });
        let records = records_in(&proxy.log_path());
        let mut urls: Vec<&str> = records.iter().filter_map(|r| r["url"].as_str()).collect();
        let all = urls.len();
        urls.sort_unstable();
        urls.dedup();
        assert_eq!(urls.len(), all, "a request logged twice");
        self.proxy_rt.block_on(proxy.stop());
    }
}

// ---------------------------------------------------------------------------
// Well-formed responses

const STATUSES: [u16; 17] = [200, 200, 200, 201, 203, 204, 206, 299, 301, 302, 304, 400, 404, 410, 418, 500, 599];
const REASONS: [&str; 4] = ["OK", "", "Some Reason", "Réponse"];
const HEADERS: [&str; 9] = [
    "Server: origin/1.0",
    "Content-Type: text/plain; charset=utf-8",
    "Cache-Control: no-store",
    "Set-Cookie: a=b; Path=/",
    "ETag: \"v1\"",
    "Vary: Accept-Encoding",
    "Keep-Alive: timeout=5",
    "X-Empty:",
    "X-Tab:\tvalue\t",
];

#[derive(Debug, Clone)]
enum Framing {
    Length,
    Chunked {
        ext: bool,
        trailers: bool,
        upper: bool,
        zeros: usize,
        cuts: Vec<Index>,
    },
    /// Neither length: the body ends with the connection.
    Close,
}

/// A well-formed response, as an origin could send it.
#[derive(Debug, Clone)]
struct Response {
    http10: bool,
    interim: Vec<u16>,
    status: u16,
    reason: &'static str,
    headers: Vec<&'static str>,
    body: Vec<u8>,
    framing: Framing,
    /// The origin closes the connection after it (and says so).
    closes: bool,
}

impl Response {
    /// Whether no body is sent in answer to a request (`head`: a HEAD).
    fn bodiless(&self, head: bool) -> bool {
        head || self.status == 204 || self.status == 304
    }

    /// The bytes on the wire, and where the final response's head is.
    fn wire(&self, head: bool) -> Wire {
        let mut bytes = Vec::new();
        for status in &self.interim {
            bytes.extend_from_slice(format!("HTTP/1.1 {status} Interim\r\n").as_bytes());
            if *status == 103 {
                bytes.extend_from_slice(b"Link: </style.css>; rel=preload\r\n");
            }
            bytes.extend_from_slice(b"\r\n");
        }
        let start = bytes.len();
        let version = if self.http10 { "1.0" } else { "1.1" };
        bytes.extend_from_slice(format!("HTTP/{version} {} {}\r\n", self.status, self.reason).as_bytes());
        for line in &self.headers {
            bytes.extend_from_slice(line.as_bytes());
            bytes.extend_from_slice(b"\r\n");
        }
        match self.framing {
            Framing::Length => bytes.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes()),
            Framing::Chunked { .. } => bytes.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
            Framing::Close => {}
        }
        match (self.http10, self.closes) {
            (false, true) => bytes.extend_from_slice(b"Connection: close\r\n"),
            (true, false) => bytes.extend_from_slice(b"Connection: keep-alive\r\n"),
            _ => {}
        }
        bytes.extend_from_slice(b"\r\n");
        let end = bytes.len();
        if !self.bodiless(head) {
            match &self.framing {
                Framing::Length | Framing::Close => bytes.extend_from_slice(&self.body),
                Framing::Chunked { ext, trailers, upper, zeros, cuts } => {
                    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(self.body.len() + 1)).collect();
                    at.extend([0, self.body.len()]);
                    at.sort_unstable();
                    at.dedup();
                    let ext = if *ext { ";name=\"a value\";flag" } else { "" };
                    for piece in at.windows(2).map(|w| &self.body[w[0]..w[1]]) {
                        let size = if *upper { format!("{:X}", piece.len()) } else { format!("{:x}", piece.len()) };
                        bytes.extend_from_slice(format!("{}{size}{ext}\r\n", "0".repeat(*zeros)).as_bytes());
                        bytes.extend_from_slice(piece);
                        bytes.extend_from_slice(b"\r\n");
                    }
                    bytes.extend_from_slice(format!("0{ext}\r\n").as_bytes());
                    if *trailers {
                        bytes.extend_from_slice(b"X-Checksum: 1\r\nX-Other: two\r\n");
                    }
                    bytes.extend_from_slice(b"\r\n");
                }
            }
        }
        Wire { bytes, head: start..end }
    }
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![4 => vec(any::<u8>(), 0..64), 1 => vec(any::<u8>(), 0..40_000)]
}

fn framing() -> impl Strategy<Value = Framing> {
    prop_oneof![
        Just(Framing::Length),
        (any::<bool>(), any::<bool>(), any::<bool>(), 0..3usize, vec(any::<Index>(), 0..4))
            .prop_map(|(ext, trailers, upper, zeros, cuts)| Framing::Chunked { ext, trailers, upper, zeros, cuts }),
        Just(Framing::Close),
    ]
}

/// A well-formed response and the request it answers.
fn response_to(req: Request, keep_open: bool) -> impl Strategy<Value = (Response, Request)> {
    (
        prop::bool::weighted(0.25),
        vec(select(vec![100u16, 102, 103]), 0..3),
        select(STATUSES.to_vec()),
        select(REASONS.to_vec()),
        subsequence(HEADERS.to_vec(), 0..4),
        body(),
        framing(),
        any::<bool>(),
    )
        .prop_map(move |(http10, interim, status, reason, headers, body, framing, closes)| {
            let mut response = Response {
                http10,
                // 1xx and chunked do not exist in HTTP/1.0.
                interim: if http10 { Vec::new() } else { interim },
                status,
                reason,
                headers,
                body,
                framing: match framing {
                    Framing::Chunked { .. } if http10 => Framing::Length,
                    Framing::Close if keep_open => Framing::Length,
                    other => other,
                },
                closes: closes && !keep_open,
            };
            // A body without a length ends with the connection.
            if matches!(response.framing, Framing::Close) && !response.bodiless(req.head) {
                response.closes = true;
            }
            (response, req)
        })
}

fn exchange_case(keep_open: bool) -> impl Strategy<Value = (Response, Request)> {
    request().prop_flat_map(move |req| response_to(req, keep_open))
}

/// A well-formed response is relayed with its status and body, whole, and
/// logged as ended by the origin.
#[test]
fn well_formed_responses_are_relayed_as_sent() {
    let bench = Bench::new();
    support::props::property(96, 512, |runner| {
        runner
            .run(&exchange_case(false), |(response, req)| {
                let wire = response.wire(req.head);
                let second_to = if response.closes { SecondTo::OtherOrigin } else { SecondTo::SameOrigin };
                bench.run(&wire.bytes, response.closes, req, second_to, |outcome| {
                    let seen = &outcome.first;
                    let body: &[u8] = if response.bodiless(req.head) { &[] } else { &response.body };
                    if seen.status != response.status || seen.body != body || !seen.whole {
                        return Err(format!("relayed as {seen:?}"));
                    }
                    if outcome.record["closed_by"] != "origin" {
                        return Err(format!("logged as {}", outcome.record));
                    }
                    Ok(())
                })
            })
            .unwrap();
    });
    bench.finish();
}

// ---------------------------------------------------------------------------
// Bytes after a whole response

/// What an origin sends after a whole response on a connection it keeps.
fn trailing() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"HTTP/1.1 200 OK\r\nX-Smuggled: yes\r\nContent-Length: 8\r\n\r\nsmuggled".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"0\r\n\r\n".to_vec()),
        vec(any::<u8>(), 1..64),
    ]
}

/// Bytes an origin sends after a whole response (a body on a 204, 304 or
/// HEAD answer, a stray CRLF, a whole second response) on a connection it
/// keeps open never reach the client, neither in the first answer nor as
/// the answer to the next request, which the proxy may send on that pooled
/// connection. (Bytes that arrive only after the next request went out
/// cannot be told from its answer by anyone speaking HTTP/1.1, so they
/// are sent here in the same write as the response.)
#[test]
fn bytes_after_a_response_never_answer_another_request() {
    let bench = Bench::new();
    support::props::property(64, 512, |runner| {
        runner
            .run(&(exchange_case(true), trailing()), |((response, req), junk)| {
                let mut wire = response.wire(req.head);
                wire.bytes.extend_from_slice(&junk);
                bench.run(&wire.bytes, false, req, SecondTo::SameOrigin, |outcome| {
                    let seen = &outcome.first;
                    let body: &[u8] = if response.bodiless(req.head) { &[] } else { &response.body };
                    if seen.status != response.status || seen.body != body || !seen.whole {
                        return Err(format!("relayed as {seen:?}"));
                    }
                    Ok(())
                })
            })
            .unwrap();
    });
    bench.finish();
}

// ---------------------------------------------------------------------------
// Edited responses

/// A response on the wire and where its (final) head is.
#[derive(Debug, Clone)]
struct Wire {
    bytes: Vec<u8>,
    head: std::ops::Range<usize>,
}

const LENGTHS: [&str; 17] = [
    "-1",
    "+5",
    "0x10",
    "1 2",
    "",
    " ",
    "5,5",
    "5, 6",
    "99999999999999999999",
    "18446744073709551615",
    "18446744073709551616",
    "1e3",
    "٣",
    "00000000000000000000005",
    "5\t",
    "4294967296",
    "1000000",
];
const CODINGS: [&str; 13] = [
    "chunked",
    "gzip, chunked",
    "chunked, gzip",
    "identity",
    "Chunked",
    "CHUNKED",
    "chunked, chunked",
    "gzip",
    "\tchunked",
    "chunked;q=1",
    "xchunked",
    "chunked\x0b",
    "",
];
const CHUNK_SIZES: [&str; 16] = [
    "-1",
    "+5",
    "0x5",
    " 5",
    "5 ",
    "ffffffffffffffffff",
    "10000000000000000",
    "fffffffffffffff",
    "z",
    "",
    "5;",
    "5\t;x",
    "٣",
    "0",
    "00",
    "1000000",
];
const STATUS_LINES: [&str; 17] = [
    "HTTP/1.1 200",
    "HTTP/1.1 2000 OK",
    "HTTP/1.1 20 OK",
    "HTTP/2.0 200 OK",
    "HTTP/1.2 200 OK",
    "http/1.1 200 OK",
    "HTTP/1.1  200 OK",
    "HTTP/1.1 -200 OK",
    "ICY 200 OK",
    "HTTP/1.1 200 OK\x00",
    "HTTP/1.1 099 Low",
    "HTTP/1.1 600 High",
    "HTTP/1.1 999 Max",
    "HTTP/1.1 101 Switching Protocols",
    "HTTP/1.1 100 Continue",
    "HTTP/0.9 200 OK",
    " HTTP/1.1 200 OK",
];
const BYTES: [u8; 13] = [0, 1, 0x7f, b'\r', b'\n', 0x0b, 0x0c, 0x1b, 0x80, 0xff, b' ', b'\t', b':'];

#[derive(Debug, Clone)]
enum Edit {
    /// A second `Content-Length`, equal to the first or not.
    SecondLength { equal: bool },
    /// `Content-Length` set to something that is not one length.
    Length(&'static str),
    /// A `Transfer-Encoding` field added.
    Coding(&'static str),
    /// A header line continued on the next (obs-fold).
    Fold(Index),
    /// One CRLF in the head made a bare LF.
    BareLf(Index),
    /// A byte put anywhere in the head.
    Byte(Index, u8),
    /// The first chunk-size line replaced.
    ChunkSize(&'static str),
    /// The status line replaced.
    StatusLine(&'static str),
    /// A space before a field's colon.
    SpaceBeforeColon(Index),
    /// Bytes after the message.
    Trailing(Vec<u8>),
    /// An unrequested 101 before the response.
    Switch,
    /// An interim response with a body before the response.
    InterimWithBody,
    /// The bytes cut off anywhere.
    Truncate(Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<bool>().prop_map(|equal| Edit::SecondLength { equal }),
        select(LENGTHS.to_vec()).prop_map(Edit::Length),
        select(CODINGS.to_vec()).prop_map(Edit::Coding),
        any::<Index>().prop_map(Edit::Fold),
        any::<Index>().prop_map(Edit::BareLf),
        (any::<Index>(), select(BYTES.to_vec())).prop_map(|(at, b)| Edit::Byte(at, b)),
        select(CHUNK_SIZES.to_vec()).prop_map(Edit::ChunkSize),
        select(STATUS_LINES.to_vec()).prop_map(Edit::StatusLine),
        any::<Index>().prop_map(Edit::SpaceBeforeColon),
        trailing().prop_map(Edit::Trailing),
        Just(Edit::Switch),
        Just(Edit::InterimWithBody),
        any::<Index>().prop_map(Edit::Truncate),
    ]
}

impl Wire {
    /// Replaces `range` with `with`, keeping `head` on the same bytes.
    fn splice(&mut self, range: std::ops::Range<usize>, with: &[u8]) {
        let delta = with.len() as isize - range.len() as isize;
        let shift = |at: usize| (at as isize + delta).max(range.start as isize) as usize;
        if range.end <= self.head.start {
            self.head = shift(self.head.start)..shift(self.head.end);
        } else if range.start < self.head.end {
            self.head.end = shift(self.head.end);
        }
        self.bytes.splice(range, with.iter().copied());
    }

    /// The final head, as far as the bytes still reach.
    fn head(&self) -> std::ops::Range<usize> {
        let end = self.head.end.min(self.bytes.len());
        self.head.start.min(end)..end
    }

    /// The header lines of the final head, without their CRLF.
    fn header_lines(&self) -> Vec<std::ops::Range<usize>> {
        let head = self.head();
        let mut lines = Vec::new();
        let mut at = head.start;
        while let Some(end) = find(&self.bytes[at..head.end], b"\r\n").map(|i| at + i) {
            lines.push(at..end);
            at = end + 2;
        }
        // Not the status line, nor the empty line ending the head.
        lines.into_iter().skip(1).filter(|l| !l.is_empty()).collect()
    }

    fn add_header(&mut self, line: &str) {
        let head = self.head();
        let at = head.end.saturating_sub(2).max(head.start);
        self.splice(at..at, format!("{line}\r\n").as_bytes());
    }

    /// The value range of the first header named `name`.
    fn value_of(&self, name: &str) -> Option<std::ops::Range<usize>> {
        self.header_lines().into_iter().find_map(|line| {
            let text = &self.bytes[line.clone()];
            let colon = text.iter().position(|&b| b == b':')?;
            text[..colon].eq_ignore_ascii_case(name.as_bytes()).then(|| {
                let skip = text[colon + 1..].iter().take_while(|&&b| b == b' ').count();
                line.start + colon + 1 + skip..line.end
            })
        })
    }

    fn apply(&mut self, edit: &Edit) {
        match edit {
            Edit::SecondLength { equal } => {
                let first =
                    self.value_of("content-length").map(|v| String::from_utf8_lossy(&self.bytes[v]).into_owned());
                let value = match (first.and_then(|v| v.parse::<u64>().ok()), equal) {
                    (Some(v), true) => v,
                    (Some(v), false) => v + 1,
                    (None, _) => 0,
                };
                self.add_header(&format!("Content-Length: {value}"));
            }
            Edit::Length(value) => match self.value_of("content-length") {
                Some(range) => self.splice(range, value.as_bytes()),
                None => self.add_header(&format!("Content-Length: {value}")),
            },
            Edit::Coding(value) => self.add_header(&format!("Transfer-Encoding: {value}")),
            Edit::Fold(at) => {
                let lines = self.header_lines();
                if lines.is_empty() {
                    self.add_header("X-Folded: a\r\n b");
                } else {
                    let end = lines[at.index(lines.len())].end;
                    self.splice(end..end, b"\r\n folded");
                }
            }
            Edit::BareLf(at) => {
                let head = self.head();
                let crlfs: Vec<usize> =
                    (head.start..head.end.saturating_sub(1)).filter(|&i| &self.bytes[i..i + 2] == b"\r\n").collect();
                if !crlfs.is_empty() {
                    let i = crlfs[at.index(crlfs.len())];
                    self.splice(i..i + 1, b"");
                }
            }
            Edit::Byte(at, byte) => {
                let head = self.head();
                let i = head.start + at.index(head.len() + 1);
                self.splice(i..i, &[*byte]);
            }
            Edit::ChunkSize(size) => {
                let body = self.head().end;
                if let Some(line) = find(&self.bytes[body..], b"\r\n") {
                    let end = self.bytes[body..body + line].iter().position(|&b| b == b';').unwrap_or(line);
                    self.splice(body..body + end, size.as_bytes());
                }
            }
            Edit::StatusLine(line) => {
                let start = self.head().start;
                let end = find(&self.bytes[start..], b"\r\n").map_or(self.bytes.len(), |i| start + i);
                self.splice(start..end, line.as_bytes());
            }
            Edit::SpaceBeforeColon(at) => {
                let lines = self.header_lines();
                if !lines.is_empty() {
                    let line = lines[at.index(lines.len())].clone();
                    if let Some(colon) = self.bytes[line.clone()].iter().position(|&b| b == b':') {
                        self.splice(line.start + colon..line.start + colon, b" ");
                    }
                }
            }
            Edit::Trailing(bytes) => self.bytes.extend_from_slice(bytes),
            Edit::Switch => {
                let at = self.head().start;
                self.splice(
                    at..at,
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
                );
            }
            Edit::InterimWithBody => {
                let at = self.head().start;
                self.splice(at..at, b"HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\nhello");
            }
            Edit::Truncate(at) => {
                let keep = at.index(self.bytes.len() + 1);
                self.bytes.truncate(keep);
            }
        }
    }
}

/// An edited response is refused (502) or relayed with one unambiguous
/// framing; a body cut short reaches the client as a head and the bytes
/// that came, then a close, logged `closed_by: "error"`; and the client's
/// connection is never desynchronised. The origin closes after the bytes.
#[test]
fn edited_responses_are_refused_or_relayed_unambiguously() {
    let bench = Bench::new();
    support::props::property(128, 512, |runner| {
        runner
            .run(&(exchange_case(false), vec(edit(), 1..4)), |((response, req), edits)| {
                let mut wire = response.wire(req.head);
                for edit in &edits {
                    wire.apply(edit);
                }
                bench.run(&wire.bytes, true, req, SecondTo::OtherOrigin, broken_origin_outcome)
            })
            .unwrap();
    });
    bench.finish();
}

/// What may come of an origin that sent anything at all and closed.
fn broken_origin_outcome(outcome: Outcome) -> Result<(), String> {
    let (seen, record) = (&outcome.first, &outcome.record);
    if !seen.whole && record["closed_by"] != "error" {
        return Err(format!("a body cut short, logged as {record}"));
    }
    if seen.status == 502 && seen.header("proxy-status").is_some() && record["closed_by"] != "error" {
        return Err(format!("the proxy's 502 logged as {record}"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Arbitrary bytes

fn noise() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..256),
        vec(any::<u8>(), 0..256).prop_map(|tail| [b"HTTP/1.1 ".as_slice(), &tail].concat()),
        vec(any::<u8>(), 0..256).prop_map(|tail| [b"HTTP/1.1 200 OK\r\n".as_slice(), &tail].concat()),
        vec(select(b"HTTP/1.0 2Content-Length: 5chunkedTransfer-Encoding:\r\n\r\n 0;\t".to_vec()), 0..200),
    ]
}

/// Arbitrary bytes from an origin that then closes: a 502 or a response
/// with unambiguous framing, one record, and a connection still in step.
#[test]
fn arbitrary_bytes_from_an_origin_end_cleanly() {
    let bench = Bench::new();
    support::props::property(64, 512, |runner| {
        runner
            .run(&(noise(), request()), |(bytes, req)| {
                bench.run(&bytes, true, req, SecondTo::OtherOrigin, broken_origin_outcome)
            })
            .unwrap();
    });
    bench.finish();
}
