//! Property tests for the "motivated employee" row of the threat model
//! (SECURITY.md P1–P4), through the real proxy: hostile client bytes, and
//! the one property that matters most — **nothing ever reaches a blocked
//! origin**.
//!
//! Every name of the blocked service (facebook, and a rule's IDN domain)
//! maps through the hosts file to a tripwire origin on 127.0.0.2, whose
//! address is blocked by a rule too; every allowed name maps to a strict
//! origin on 127.0.0.1 listening on the same ports. Proptest writes client
//! byte streams: absolute-form GET/POST/HEAD/OPTIONS with bodies (length or
//! chunked, some carrying a whole request), origin-form with a `Host`,
//! CONNECT with a ClientHello (SNI) or other early data, HTTP/1.0 and 1.1,
//! several requests pipelined on one connection; hosts in every spelling
//! SPEC 2.2 and P1 name (case, trailing dot, punycode and Unicode,
//! fullwidth letters, ideographic dots, percent-encoding, leading-zero
//! ports, userinfo, legacy IPv4 and mapped IPv6 literals, a `Host` header
//! that disagrees). Then it edits them (CL/TE combinations, duplicate and
//! absurd lengths, obs-fold, bare LF and CR, NULs, chunk-size tricks, a
//! request hidden in a body or behind a CONNECT, a head over the limit,
//! truncation anywhere, arbitrary bytes), and checks:
//!
//! 1. the tripwire never sees a connection or a byte;
//! 2. the allowed origin sees only requests it can parse (httparse) with
//!    one unambiguous framing, whose `Host` (and target) is allowed, and
//!    tunnels whose ClientHello names an allowed, valid host;
//! 3. the proxy never panics nor hangs (every wait has a deadline; panics
//!    on its runtime's threads are counted), answers with clean heads, and
//!    keeps serving: after each case a fresh allowed request gets the
//!    origin's 200 and a fresh blocked one the proxy's 403;
//! 4. every answer the client read has its own access-log record with the
//!    status it saw (records are told apart by the client's source
//!    address, one per case), and no case has more records than request
//!    lines it sent (plus the one request the proxy may have been reading
//!    when the client left).
//!
//! Each property runs one proxy on its own runtime; the client and the
//! origins run on another.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::TestCaseError;
use serde_json::Value;
use support::{Company, Proxy, records_in};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::runtime::Runtime;

/// How long the client waits for more from the proxy before it takes the
/// connection as finished (longer than every proxy timeout below).
const QUIET: Duration = Duration::from_millis(1500);

/// The deadline for anything expected to come (a record, a probe answer).
const WAIT: Duration = Duration::from_secs(5);

/// The deadline for one case as a whole.
const CASE_WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// The company: what is blocked, and where every name leads

/// Names on the tripwire (127.0.0.2), all blocked for the default
/// department: facebook by `[services]`, `bücher.example` by `rules[0]`.
const BLOCKED_NAMES: [&str; 7] = [
    "facebook.com",
    "www.facebook.com",
    "m.facebook.com",
    "fb.com",
    "m.fb.com",
    "xn--bcher-kva.example",
    "www.xn--bcher-kva.example",
];

/// Names on the allowed origin (127.0.0.1), look-alikes among them.
const ALLOWED_NAMES: [&str; 5] =
    ["example.test", "www.example.test", "twitter.com", "notfacebook.com", "facebook.com.example.test"];

/// The tripwire's address in the spellings WHATWG host parsing and the
/// proxy's `Host` type must both read as 127.0.0.2 (`rules[0]` blocks it:
/// blocking is by name, so the test's policy names the address too).
const BLOCKED_IPS: [&str; 10] = [
    "127.0.0.2",
    "2130706434",
    "0x7f000002",
    "0x7F.0.0.2",
    "0177.0.0.02",
    "127.2",
    "127.0.2",
    "[::ffff:127.0.0.2]",
    "[::FFFF:7f00:2]",
    "[0:0:0:0:0:ffff:7f00:0002]",
];

const ALLOWED_IPS: [&str; 3] = ["127.0.0.1", "2130706433", "[::ffff:127.0.0.1]"];

const DEFAULT_DEPT: &str = "default = \"allow\"\n[services]\nfacebook = \"block\"\n\n[[rules]]\ndomains = [\"bücher.example\"]\nhosts = [\"127.0.0.2\"]\naction = \"block\"\n";

/// The reference model: whether the proxy must block `host` (a host, with
/// or without a port, as a client or the proxy may write it) for the
/// default department. WHATWG parsing (the `url` crate) maps case, IDN,
/// fullwidth letters, ideographic dots and legacy IPv4 forms.
fn is_blocked(host: &str) -> bool {
    let Ok(url) = url::Url::parse(&format!("http://{host}/")) else { return false };
    match url.host() {
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.');
            ["facebook.com", "fb.com", "xn--bcher-kva.example"]
                .iter()
                .any(|d| name == *d || name.strip_suffix(d).is_some_and(|rest| rest.ends_with('.')))
        }
        Some(url::Host::Ipv4(ip)) => ip == Ipv4Addr::new(127, 0, 0, 2),
        Some(url::Host::Ipv6(ip)) => ip.to_canonical() == IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
        None => false,
    }
}

// ---------------------------------------------------------------------------
// The origins

/// What the origins saw, shared with the checks.
#[derive(Default)]
struct Seen {
    /// Connections the tripwire accepted.
    tripped_connections: usize,
    /// Bytes the tripwire received (the first few kept, for the message).
    tripped_bytes: usize,
    tripped_sample: Vec<u8>,
    /// What the allowed origins saw that they must not.
    violations: Vec<String>,
}

type Shared = Arc<Mutex<Seen>>;

/// The four listeners: allowed HTTP and tunnel origins on 127.0.0.1, the
/// tripwire on 127.0.0.2 on the same two ports.
struct Origins {
    http_port: u16,
    tunnel_port: u16,
    seen: Shared,
}

impl Origins {
    async fn start() -> Origins {
        let seen = Shared::default();
        let (allowed_http, tripwire_http) = pair().await;
        let (allowed_tunnel, tripwire_tunnel) = pair().await;
        let http_port = allowed_http.local_addr().unwrap().port();
        let tunnel_port = allowed_tunnel.local_addr().unwrap().port();
        for tripwire in [tripwire_http, tripwire_tunnel] {
            let seen = seen.clone();
            tokio::spawn(async move {
                while let Ok((stream, _)) = tripwire.accept().await {
                    tokio::spawn(trip(stream, seen.clone()));
                }
            });
        }
        let s = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = allowed_http.accept().await {
                tokio::spawn(serve_http(stream, s.clone()));
            }
        });
        let s = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = allowed_tunnel.accept().await {
                tokio::spawn(serve_tunnel(stream, s.clone()));
            }
        });
        Origins { http_port, tunnel_port, seen }
    }

    /// What the origins saw that they must not, since the last call
    /// (taken, so that each case, and each shrinking step, is judged on
    /// its own).
    fn violation(&self) -> Option<String> {
        let mut guard = self.seen.lock().unwrap();
        let seen = std::mem::take(&mut *guard);
        if seen.tripped_connections > 0 || seen.tripped_bytes > 0 {
            return Some(format!(
                "the blocked origin got {} connections and {} bytes: {}",
                seen.tripped_connections,
                seen.tripped_bytes,
                show(&seen.tripped_sample)
            ));
        }
        seen.violations.into_iter().next()
    }
}

/// A listener on 127.0.0.1:0 and one on 127.0.0.2 at the same port.
async fn pair() -> (TcpListener, TcpListener) {
    for _ in 0..50 {
        let allowed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = allowed.local_addr().unwrap().port();
        if let Ok(tripwire) = TcpListener::bind(("127.0.0.2", port)).await {
            return (allowed, tripwire);
        }
    }
    panic!("no port free on both 127.0.0.1 and 127.0.0.2");
}

async fn trip(mut stream: TcpStream, seen: Shared) {
    seen.lock().unwrap().tripped_connections += 1;
    let mut chunk = [0u8; 4096];
    while let Ok(n @ 1..) = stream.read(&mut chunk).await {
        let mut seen = seen.lock().unwrap();
        seen.tripped_bytes += n;
        let room = 1024usize.saturating_sub(seen.tripped_sample.len());
        seen.tripped_sample.extend_from_slice(&chunk[..n.min(room)]);
    }
}

fn flag(seen: &Shared, what: String) {
    seen.lock().unwrap().violations.push(what);
}

/// Reads more into `buf`; false at the end of the stream.
async fn more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16384];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

/// The allowed HTTP origin: parses each request strictly, answers
/// `200` with no body (the same framing for HEAD as for GET).
async fn serve_http(mut stream: TcpStream, seen: Shared) {
    let mut buf = Vec::new();
    loop {
        let (len, chunked, length) = loop {
            let mut slots = [httparse::EMPTY_HEADER; 128];
            let mut req = httparse::Request::new(&mut slots);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(len)) => match judge(&req) {
                    Ok((chunked, length)) => break (len, chunked, length),
                    Err(why) => return flag(&seen, format!("{why}: {}", show(&buf[..len]))),
                },
                Ok(httparse::Status::Partial) => {
                    if !more(&mut stream, &mut buf).await {
                        return;
                    }
                }
                Err(err) => {
                    return flag(&seen, format!("the allowed origin got an unparseable head ({err}): {}", show(&buf)));
                }
            }
        };
        buf.drain(..len);
        let whole = if chunked {
            match chunked_body(&mut stream, &mut buf).await {
                Ok(whole) => whole,
                Err(why) => return flag(&seen, why),
            }
        } else {
            let n = usize::try_from(length).unwrap_or(usize::MAX);
            while buf.len() < n {
                if !more(&mut stream, &mut buf).await {
                    break;
                }
            }
            let whole = buf.len() >= n;
            buf.drain(..n.min(buf.len()));
            whole
        };
        if !whole {
            return;
        }
        let answer = b"HTTP/1.1 200 OK\r\nX-Origin: allowed\r\nContent-Length: 0\r\n\r\n";
        if stream.write_all(answer).await.is_err() {
            return;
        }
    }
}

/// A forwarded head's framing (chunked, else the length), or why it must
/// never have been forwarded.
fn judge(req: &httparse::Request<'_, '_>) -> Result<(bool, u64), String> {
    let values = |name: &str| -> Vec<&[u8]> {
        req.headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value).collect()
    };
    let hosts = values("host");
    let [host] = hosts.as_slice() else { return Err(format!("{} Host fields at the allowed origin", hosts.len())) };
    let host = String::from_utf8_lossy(host);
    if is_blocked(&host) {
        return Err(format!("a request for the blocked host `{host}` reached the allowed origin"));
    }
    let target = req.path.unwrap_or_default();
    if let Ok(url) = url::Url::parse(target)
        && is_blocked(url.host_str().unwrap_or_default())
    {
        return Err(format!("a request for the blocked target `{target}` reached the allowed origin"));
    }
    let lengths = values("content-length");
    let codings = values("transfer-encoding");
    match (lengths.as_slice(), codings.as_slice()) {
        ([], []) => Ok((false, 0)),
        ([], [coding]) if coding.eq_ignore_ascii_case(b"chunked") => Ok((true, 0)),
        ([length], []) if !length.is_empty() && length.iter().all(u8::is_ascii_digit) => {
            std::str::from_utf8(length).unwrap().parse().map(|n| (false, n)).map_err(|e| format!("Content-Length: {e}"))
        }
        _ => Err("ambiguous framing at the allowed origin".into()),
    }
}

/// Reads a chunked body strictly; `Ok(false)` if the stream ended in it.
async fn chunked_body(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<bool, String> {
    loop {
        let Some(line) = read_line(stream, buf).await? else { return Ok(false) };
        let size = line.split(|&b| b == b';').next().unwrap_or_default();
        if size.is_empty() || size.len() > 15 || !size.iter().all(u8::is_ascii_hexdigit) {
            return Err(format!("a bad chunk-size line at the allowed origin: {}", show(&line)));
        }
        let size = usize::from_str_radix(std::str::from_utf8(size).unwrap(), 16).unwrap();
        if size == 0 {
            loop {
                let Some(line) = read_line(stream, buf).await? else { return Ok(false) };
                if line.is_empty() {
                    return Ok(true);
                }
            }
        }
        while buf.len() < size + 2 {
            if !more(stream, buf).await {
                return Ok(false);
            }
        }
        if &buf[size..size + 2] != b"\r\n" {
            return Err("a chunk not followed by CRLF at the allowed origin".into());
        }
        buf.drain(..size + 2);
    }
}

/// One CRLF-ended line (without it), `None` at the end of the stream.
async fn read_line(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Option<Vec<u8>>, String> {
    loop {
        if let Some(at) = find(buf, b"\r\n") {
            let line: Vec<u8> = buf.drain(..at + 2).take(at).collect();
            if line.contains(&b'\n') {
                return Err(format!("a bare LF in a chunked body at the allowed origin: {}", show(&line)));
            }
            return Ok(Some(line));
        }
        if !more(stream, buf).await {
            return Ok(None);
        }
    }
}

/// The allowed tunnel origin: takes whatever comes, and checks that TLS
/// it is given names an allowed, valid host.
async fn serve_tunnel(mut stream: TcpStream, seen: Shared) {
    let mut buf = Vec::new();
    let mut judged = false;
    while more(&mut stream, &mut buf).await {
        if judged || buf.len() > 64 * 1024 {
            buf.clear();
            continue;
        }
        match socialgate::tls::peek::peek(&buf) {
            socialgate::tls::peek::Peek::NeedMore => {}
            socialgate::tls::peek::Peek::NotTls | socialgate::tls::peek::Peek::ClientHello { sni: None } => {
                judged = true
            }
            socialgate::tls::peek::Peek::ClientHello { sni: Some(sni) } => {
                judged = true;
                if is_blocked(&sni) || socialgate::policy::Host::parse(&sni).is_err() {
                    flag(&seen, format!("a ClientHello for `{}` reached the allowed origin", sni.escape_debug()));
                }
                let names = server_names(&buf).unwrap_or_default();
                if names.iter().any(|name| is_blocked(&String::from_utf8_lossy(name))) {
                    flag(
                        &seen,
                        format!("a ClientHello also naming a blocked host reached the allowed origin: {}", show(&buf)),
                    );
                }
            }
            socialgate::tls::peek::Peek::Malformed(why) => {
                judged = true;
                flag(&seen, format!("TLS the proxy cannot judge ({why}) reached the allowed origin: {}", show(&buf)));
            }
        }
    }
}

/// Every `host_name` in the server-name extensions of a whole ClientHello
/// (its handshake records reassembled), read independently of the proxy.
fn server_names(records: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut handshake = Vec::new();
    let mut rest = records;
    while rest.len() >= 5 && rest[0] == 22 {
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        handshake.extend_from_slice(rest.get(5..5 + len)?);
        rest = &rest[5 + len..];
    }
    let mut at = 4 + 2 + 32;
    let skip = |at: &mut usize, width: usize| -> Option<()> {
        let len = handshake.get(*at..*at + width)?.iter().fold(0usize, |n, &b| n << 8 | usize::from(b));
        *at += width + len;
        Some(())
    };
    skip(&mut at, 1)?;
    skip(&mut at, 2)?;
    skip(&mut at, 1)?;
    let end = at + 2 + usize::from(u16::from_be_bytes([*handshake.get(at)?, *handshake.get(at + 1)?]));
    at += 2;
    let mut names = Vec::new();
    while at + 4 <= end.min(handshake.len()) {
        let kind = u16::from_be_bytes([handshake[at], handshake[at + 1]]);
        let len = usize::from(u16::from_be_bytes([handshake[at + 2], handshake[at + 3]]));
        let data = handshake.get(at + 4..at + 4 + len)?;
        if kind == 0 && data.len() >= 2 {
            let mut list = &data[2..];
            while list.len() >= 3 {
                let len = usize::from(u16::from_be_bytes([list[1], list[2]]));
                let name = list.get(3..3 + len)?;
                if list[0] == 0 {
                    names.push(name.to_vec());
                }
                list = &list[3 + len..];
            }
        }
        at += 4 + len;
    }
    Some(names)
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
// Spellings

#[derive(Debug, Clone)]
enum Name {
    Blocked(Index),
    Allowed(Index),
    BlockedIp(Index),
    AllowedIp(Index),
}

#[derive(Debug, Clone)]
enum Form {
    Plain,
    /// A letter in its fullwidth form (raw UTF-8).
    Fullwidth(Index),
    /// A dot as U+3002 (raw UTF-8).
    IdeographicDot(Index),
    /// Punycode labels in Unicode (raw UTF-8).
    Unicode,
    /// A letter percent-encoded.
    Percent(Index),
}

/// A host as a client may write it.
#[derive(Debug, Clone)]
struct Spelling {
    name: Name,
    /// Which letters are upper case.
    case: u64,
    trailing_dot: bool,
    form: Form,
}

impl Spelling {
    fn text(&self) -> String {
        let (mut text, is_name) = match &self.name {
            Name::Blocked(i) => (i.get(&BLOCKED_NAMES).to_string(), true),
            Name::Allowed(i) => (i.get(&ALLOWED_NAMES).to_string(), true),
            Name::BlockedIp(i) => (i.get(&BLOCKED_IPS).to_string(), false),
            Name::AllowedIp(i) => (i.get(&ALLOWED_IPS).to_string(), false),
        };
        if is_name {
            match &self.form {
                Form::Plain => {}
                Form::Fullwidth(at) => {
                    text = replace_nth(
                        &text,
                        at,
                        |c| c.is_ascii_lowercase(),
                        |c| char::from_u32(c as u32 - 'a' as u32 + 0xff41).map(String::from).unwrap_or_default(),
                    )
                }
                Form::IdeographicDot(at) => text = replace_nth(&text, at, |c| c == '.', |_| "。".into()),
                Form::Unicode => text = text.replace("xn--bcher-kva", "bücher"),
                Form::Percent(at) => {
                    text = replace_nth(&text, at, |c| c.is_ascii_lowercase(), |c| format!("%{:02X}", c as u32))
                }
            }
            if self.trailing_dot {
                text.push('.');
            }
        }
        text.chars()
            .enumerate()
            .map(|(i, c)| if self.case >> (i % 64) & 1 == 1 { c.to_ascii_uppercase() } else { c })
            .collect()
    }

    fn blocked(&self) -> bool {
        matches!(self.name, Name::Blocked(_) | Name::BlockedIp(_))
    }
}

/// `text` with the `at`-th character that `is` replaced by `with` of it.
fn replace_nth(text: &str, at: &Index, is: impl Fn(char) -> bool, with: impl Fn(char) -> String) -> String {
    let count = text.chars().filter(|&c| is(c)).count();
    if count == 0 {
        return text.to_owned();
    }
    let target = at.index(count);
    let mut seen = 0;
    text.chars()
        .map(|c| {
            if is(c) {
                seen += 1;
                if seen - 1 == target {
                    return with(c);
                }
            }
            c.to_string()
        })
        .collect()
}

fn spelling() -> impl Strategy<Value = Spelling> {
    let name = prop_oneof![
        5 => any::<Index>().prop_map(Name::Blocked),
        3 => any::<Index>().prop_map(Name::Allowed),
        2 => any::<Index>().prop_map(Name::BlockedIp),
        1 => any::<Index>().prop_map(Name::AllowedIp),
    ];
    let form = prop_oneof![
        16 => Just(Form::Plain),
        1 => any::<Index>().prop_map(Form::Fullwidth),
        1 => any::<Index>().prop_map(Form::IdeographicDot),
        1 => Just(Form::Unicode),
        1 => any::<Index>().prop_map(Form::Percent),
    ];
    let case = prop_oneof![2 => Just(0u64), 1 => any::<u64>()];
    (name, case, prop::bool::weighted(0.2), form).prop_map(|(name, case, trailing_dot, form)| Spelling {
        name,
        case,
        trailing_dot,
        form,
    })
}

#[derive(Debug, Clone, Copy)]
enum Userinfo {
    None,
    User,
    UserPassword,
    /// An allowed authority as userinfo: `example.test:P@host`.
    LookAlike,
}

#[derive(Debug, Clone, Copy)]
enum Port {
    Plain,
    LeadingZeros(usize),
    /// None: port 80, where neither origin listens (a blocked name there
    /// can only be told from an allowed one by the log; kept rare).
    Default,
}

/// `[userinfo@]host[:port]` as a client writes it.
#[derive(Debug, Clone)]
struct Authority {
    userinfo: Userinfo,
    host: Spelling,
    port: Port,
}

impl Authority {
    fn text(&self, port: u16) -> String {
        let userinfo = match self.userinfo {
            Userinfo::None => String::new(),
            Userinfo::User => "x@".into(),
            Userinfo::UserPassword => "user:secret@".into(),
            Userinfo::LookAlike => format!("example.test:{port}@"),
        };
        let port = match self.port {
            Port::Plain => format!(":{port}"),
            Port::LeadingZeros(n) => format!(":{}{port}", "0".repeat(n)),
            Port::Default => String::new(),
        };
        format!("{userinfo}{}{port}", self.host.text())
    }
}

fn authority() -> impl Strategy<Value = Authority> {
    let userinfo = prop_oneof![
        8 => Just(Userinfo::None),
        1 => Just(Userinfo::User),
        1 => Just(Userinfo::UserPassword),
        1 => Just(Userinfo::LookAlike),
    ];
    let port =
        prop_oneof![10 => Just(Port::Plain), 2 => (1..3usize).prop_map(Port::LeadingZeros), 1 => Just(Port::Default)];
    (userinfo, spelling(), port).prop_map(|(userinfo, host, port)| Authority { userinfo, host, port })
}

// ---------------------------------------------------------------------------
// Requests

#[derive(Debug, Clone)]
enum Body {
    None,
    Length,
    /// In this many chunks.
    Chunked(usize),
}

/// A request for the tripwire, for bodies and early data to carry.
fn hidden_request(http_port: u16) -> Vec<u8> {
    format!("GET http://www.facebook.com:{http_port}/hidden HTTP/1.1\r\nHost: www.facebook.com\r\n\r\n").into_bytes()
}

#[derive(Debug, Clone)]
enum Payload {
    Text(Vec<u8>),
    /// A whole request for the tripwire.
    Hidden,
}

fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        3 => vec(any::<u8>(), 0..64).prop_map(Payload::Text),
        1 => vec(any::<u8>(), 0..20_000).prop_map(Payload::Text),
        2 => Just(Payload::Hidden),
    ]
}

impl Payload {
    fn bytes(&self, http_port: u16) -> Vec<u8> {
        match self {
            Payload::Text(bytes) => bytes.clone(),
            Payload::Hidden => hidden_request(http_port),
        }
    }
}

#[derive(Debug, Clone)]
enum Early {
    None,
    /// A ClientHello naming `sni`, split in two records at the index.
    Hello(Spelling, Option<Index>),
    /// A ClientHello naming `sni` with a byte put into it.
    HelloEdited(Spelling, Index, u8),
    /// A ClientHello whose name list has two host names.
    HelloTwoNames(Spelling, Spelling),
    /// A request for the tripwire, sent with the CONNECT.
    Hidden,
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone)]
enum Message {
    Absolute {
        method: &'static str,
        upper_scheme: bool,
        target: Authority,
        http10: bool,
        /// `Host:` (`None`: no field), spelled on its own.
        host: Option<Spelling>,
        body: Body,
        payload: Payload,
        connection: Option<&'static str>,
    },
    OriginForm {
        host: Spelling,
        http10: bool,
    },
    Connect {
        target: Authority,
        http10: bool,
        host_field: bool,
        early: Early,
    },
}

const CONNECTION: [&str; 6] = [
    "Connection: keep-alive",
    "Connection: close",
    "Proxy-Connection: keep-alive",
    "Connection: Host",
    "Proxy-Connection: close",
    "Connection: keep-alive, Upgrade\r\nUpgrade: h2c",
];

fn message() -> impl Strategy<Value = Message> {
    let body = prop_oneof![3 => Just(Body::None), 2 => Just(Body::Length), 2 => (1..4usize).prop_map(Body::Chunked)];
    let absolute =
        (
            select(vec!["GET", "GET", "POST", "HEAD", "OPTIONS", "PUT"]),
            prop::bool::weighted(0.15),
            authority(),
            prop::bool::weighted(0.2),
            prop::option::weighted(0.6, spelling()),
            body,
            payload(),
            prop::option::weighted(0.3, select(CONNECTION.to_vec())),
        )
            .prop_map(|(method, upper_scheme, target, http10, host, body, payload, connection)| {
                Message::Absolute { method, upper_scheme, target, http10, host, body, payload, connection }
            });
    let early = prop_oneof![
        2 => Just(Early::None),
        4 => (spelling(), prop::option::of(any::<Index>())).prop_map(|(s, split)| Early::Hello(s, split)),
        1 => (spelling(), any::<Index>(), select(b"\0 \t%:@/\\*#\x80\xff.".to_vec()))
            .prop_map(|(s, at, b)| Early::HelloEdited(s, at, b)),
        1 => (spelling(), spelling()).prop_map(|(a, b)| Early::HelloTwoNames(a, b)),
        2 => Just(Early::Hidden),
        1 => vec(any::<u8>(), 1..64).prop_map(Early::Bytes),
    ];
    prop_oneof![
        8 => absolute,
        1 => (spelling(), any::<bool>()).prop_map(|(host, http10)| Message::OriginForm { host, http10 }),
        3 => (authority(), prop::bool::weighted(0.2), any::<bool>(), early)
            .prop_map(|(target, http10, host_field, early)| Message::Connect { target, http10, host_field, early }),
    ]
}

/// A ClientHello (TLS 1.2 record layout) whose only extension is a
/// server name list of `names` (one, unless a client breaks RFC 6066), in
/// one record or two.
fn client_hello(names: &[&[u8]], split: Option<&Index>) -> Vec<u8> {
    let be16 = |n: usize| u16::try_from(n).unwrap().to_be_bytes();
    let mut name_list = Vec::new();
    for name in names {
        name_list.push(0u8);
        name_list.extend(be16(name.len()));
        name_list.extend_from_slice(name);
    }
    let mut ext = Vec::new();
    ext.extend(0u16.to_be_bytes());
    ext.extend(be16(name_list.len() + 2));
    ext.extend(be16(name_list.len()));
    ext.extend(name_list);
    let mut body = vec![3, 3];
    body.extend([7u8; 32]);
    body.push(0);
    body.extend([0, 2, 0x13, 0x01, 1, 0]);
    body.extend(be16(ext.len()));
    body.extend(ext);
    let mut handshake = vec![1];
    handshake.extend(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
    handshake.extend(body);
    let at = split.map_or(handshake.len(), |i| 1 + i.index(handshake.len() - 1));
    let mut out = Vec::new();
    for piece in [&handshake[..at], &handshake[at..]] {
        if !piece.is_empty() {
            out.extend([22, 3, 1]);
            out.extend(be16(piece.len()));
            out.extend_from_slice(piece);
        }
    }
    out
}

impl Message {
    fn bytes(&self, ports: (u16, u16), n: usize) -> Vec<u8> {
        let (http_port, tunnel_port) = ports;
        match self {
            Message::Absolute { method, upper_scheme, target, http10, host, body, payload, connection } => {
                let scheme = if *upper_scheme { "HTTP" } else { "http" };
                let version = if *http10 { "1.0" } else { "1.1" };
                let mut out =
                    format!("{method} {scheme}://{}/p{n} HTTP/{version}\r\n", target.text(http_port)).into_bytes();
                if let Some(host) = host {
                    out.extend(format!("Host: {}:{http_port}\r\n", host.text()).into_bytes());
                }
                if let Some(line) = connection {
                    out.extend(format!("{line}\r\n").into_bytes());
                }
                let payload = payload.bytes(http_port);
                match body {
                    Body::None => out.extend_from_slice(b"\r\n"),
                    Body::Length => {
                        out.extend(format!("Content-Length: {}\r\n\r\n", payload.len()).into_bytes());
                        out.extend(payload);
                    }
                    Body::Chunked(pieces) => {
                        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                        let size = payload.len().div_ceil(*pieces).max(1);
                        for piece in payload.chunks(size) {
                            out.extend(format!("{:x}\r\n", piece.len()).into_bytes());
                            out.extend_from_slice(piece);
                            out.extend_from_slice(b"\r\n");
                        }
                        out.extend_from_slice(b"0\r\n\r\n");
                    }
                }
                out
            }
            Message::OriginForm { host, http10 } => {
                let version = if *http10 { "1.0" } else { "1.1" };
                format!("GET /p{n} HTTP/{version}\r\nHost: {}:{http_port}\r\n\r\n", host.text()).into_bytes()
            }
            Message::Connect { target, http10, host_field, early } => {
                let authority = target.text(tunnel_port);
                let version = if *http10 { "1.0" } else { "1.1" };
                let mut out = format!("CONNECT {authority} HTTP/{version}\r\n").into_bytes();
                if *host_field {
                    out.extend(format!("Host: {authority}\r\n").into_bytes());
                }
                out.extend_from_slice(b"\r\n");
                match early {
                    Early::None => {}
                    Early::Hello(sni, split) => out.extend(client_hello(&[sni.text().as_bytes()], split.as_ref())),
                    Early::HelloEdited(sni, at, byte) => {
                        let mut name = sni.text().into_bytes();
                        name.insert(at.index(name.len() + 1), *byte);
                        out.extend(client_hello(&[&name], None));
                    }
                    Early::HelloTwoNames(first, second) => {
                        out.extend(client_hello(&[first.text().as_bytes(), second.text().as_bytes()], None))
                    }
                    Early::Hidden => out.extend(hidden_request(http_port)),
                    Early::Bytes(bytes) => out.extend_from_slice(bytes),
                }
                out
            }
        }
    }

    /// Whether only a blocked host is named (the target, not `Host`).
    fn blocked(&self) -> bool {
        match self {
            Message::Absolute { target, .. } | Message::Connect { target, .. } => target.host.blocked(),
            Message::OriginForm { .. } => false,
        }
    }
}

/// A connection's worth of requests: a CONNECT or a HEAD only last (a
/// tunnel takes what follows; an answer to HEAD has a length but no body,
/// so the client could not find the next answer).
fn messages() -> impl Strategy<Value = Vec<Message>> {
    vec(message(), 1..5).prop_map(|list| {
        let last = list.len() - 1;
        let mut out: Vec<Message> = Vec::new();
        for (i, mut m) in list.into_iter().enumerate() {
            if i < last {
                if let Message::Absolute { method, .. } = &mut m
                    && *method == "HEAD"
                {
                    *method = "GET";
                }
                if matches!(m, Message::Connect { .. }) {
                    continue;
                }
            }
            out.push(m);
        }
        out
    })
}

// ---------------------------------------------------------------------------
// Edits

const HEADERS: [&str; 22] = [
    "Content-Length: 5",
    "Content-Length: 0",
    "Content-Length: 5\r\nContent-Length: 6",
    "Content-Length: 5, 5",
    "Content-Length: -1",
    "Content-Length: +5",
    "Content-Length: 99999999999999999999",
    "Content-Length: 4294967296",
    "Content-Length: 1e3",
    "Transfer-Encoding: chunked",
    "Transfer-Encoding: gzip, chunked",
    "Transfer-Encoding: chunked, chunked",
    "Transfer-Encoding: chunked\r\nContent-Length: 3",
    "Transfer-Encoding : chunked",
    " Transfer-Encoding: chunked",
    "Transfer-Encoding:\tchunked",
    "X-Folded: a\r\n b",
    "Host: www.facebook.com",
    "Host: facebook.com\r\nHost: example.test",
    "Expect: 100-continue",
    "Upgrade: websocket\r\nConnection: Upgrade",
    "Content-Length: 0\r\nTransfer-Encoding: identity",
];

const CHUNK_SIZES: [&str; 12] =
    ["-1", "+5", "0x5", " 5", "5 ", "ffffffffffffffffff", "10000000000000000", "z", "", "5;", "٣", "00"];

const BYTES: [u8; 12] = [0, b'\r', b'\n', 0x0b, 0x0c, 0x7f, 0x80, 0xff, b' ', b'\t', b':', b'@'];

#[derive(Debug, Clone)]
enum Edit {
    /// A header line (or two) added to a head.
    Header(Index, &'static str),
    /// One CRLF made a bare LF.
    BareLf(Index),
    /// One CRLF made a bare CR.
    BareCr(Index),
    /// A byte put anywhere.
    Byte(Index, u8),
    /// A byte replaced.
    Replace(Index, u8),
    /// A chunk-size line's size replaced.
    ChunkSize(Index, &'static str),
    /// A request for the tripwire put anywhere.
    Hidden(Index),
    /// A field that takes the head past `max_header_bytes`.
    Huge(Index),
    /// A stretch removed.
    Remove(Index, Index),
    /// The bytes cut off anywhere.
    Truncate(Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<Index>(), select(HEADERS.to_vec())).prop_map(|(at, h)| Edit::Header(at, h)),
        1 => any::<Index>().prop_map(Edit::BareLf),
        1 => any::<Index>().prop_map(Edit::BareCr),
        2 => (any::<Index>(), select(BYTES.to_vec())).prop_map(|(at, b)| Edit::Byte(at, b)),
        1 => (any::<Index>(), select(BYTES.to_vec())).prop_map(|(at, b)| Edit::Replace(at, b)),
        2 => (any::<Index>(), select(CHUNK_SIZES.to_vec())).prop_map(|(at, s)| Edit::ChunkSize(at, s)),
        2 => any::<Index>().prop_map(Edit::Hidden),
        1 => any::<Index>().prop_map(Edit::Huge),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Edit::Remove(a, b)),
        1 => any::<Index>().prop_map(Edit::Truncate),
    ]
}

fn positions(bytes: &[u8], needle: &[u8]) -> Vec<usize> {
    (0..bytes.len().saturating_sub(needle.len() - 1)).filter(|&i| &bytes[i..i + needle.len()] == needle).collect()
}

impl Edit {
    fn apply(&self, bytes: &mut Vec<u8>, http_port: u16) {
        let pick = |list: Vec<usize>, at: &Index| (!list.is_empty()).then(|| list[at.index(list.len())]);
        match self {
            Edit::Header(at, line) => {
                // Before the empty line ending a head.
                if let Some(i) = pick(positions(bytes, b"\r\n\r\n"), at) {
                    bytes.splice(i + 2..i + 2, format!("{line}\r\n").into_bytes());
                }
            }
            Edit::BareLf(at) => {
                if let Some(i) = pick(positions(bytes, b"\r\n"), at) {
                    bytes.remove(i);
                }
            }
            Edit::BareCr(at) => {
                if let Some(i) = pick(positions(bytes, b"\r\n"), at) {
                    bytes.remove(i + 1);
                }
            }
            Edit::Byte(at, b) => {
                let i = at.index(bytes.len() + 1);
                bytes.insert(i, *b);
            }
            Edit::Replace(at, b) => {
                if !bytes.is_empty() {
                    let i = at.index(bytes.len());
                    bytes[i] = *b;
                }
            }
            Edit::ChunkSize(at, size) => {
                let after = positions(bytes, b"chunked\r\n\r\n");
                if let Some(i) = pick(after, at) {
                    let start = i + b"chunked\r\n\r\n".len();
                    let end = find(&bytes[start..], b"\r\n").map_or(bytes.len(), |e| start + e);
                    bytes.splice(start..end, size.bytes());
                }
            }
            Edit::Hidden(at) => {
                let i = at.index(bytes.len() + 1);
                bytes.splice(i..i, hidden_request(http_port));
            }
            Edit::Huge(at) => {
                if let Some(i) = pick(positions(bytes, b"\r\n\r\n"), at) {
                    let field = format!("X-Big: {}\r\n", "a".repeat(9000));
                    bytes.splice(i + 2..i + 2, field.into_bytes());
                }
            }
            Edit::Remove(a, b) => {
                let (a, b) = (a.index(bytes.len() + 1), b.index(bytes.len() + 1));
                let (from, to) = (a.min(b), a.max(b).min(a.min(b) + 16));
                bytes.drain(from..to);
            }
            Edit::Truncate(at) => {
                let keep = at.index(bytes.len() + 1);
                bytes.truncate(keep);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The client

/// An answer the client read.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Answer {
    status: u16,
    /// A `200 Connection established`: what follows is the tunnel.
    tunnel: bool,
}

/// Sends `bytes` from `source` in the pieces `cuts` makes, reading what
/// comes back until the proxy closes, falls quiet for [`QUIET`], or has
/// answered `expected` requests with nothing more pending.
async fn converse(
    proxy: SocketAddr,
    source: Ipv4Addr,
    bytes: Vec<u8>,
    cuts: &[Index],
    expected: usize,
) -> Result<Vec<Answer>, String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0)).map_err(|e| format!("binding {source}: {e}"))?;
    let stream = tokio::time::timeout(WAIT, socket.connect(proxy))
        .await
        .map_err(|_| "connecting to the proxy timed out".to_string())?
        .map_err(|e| format!("connecting to the proxy: {e}"))?;
    let (mut reader, mut writer) = stream.into_split();
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
    at.extend([0, bytes.len()]);
    at.sort_unstable();
    at.dedup();
    let pieces: Vec<Vec<u8>> = at.windows(2).map(|w| bytes[w[0]..w[1]].to_vec()).collect();
    let writing = tokio::spawn(async move {
        for piece in pieces {
            if writer.write_all(&piece).await.is_err() {
                return writer;
            }
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        writer
    });
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16384];
    let mut answers = Vec::new();
    'answers: loop {
        if answers.len() >= expected && buf.is_empty() {
            break;
        }
        let (status, reason, length, head_len) = loop {
            let mut slots = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Response::new(&mut slots);
            match parsed.parse(&buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let head = &buf[..len];
                    if head.iter().enumerate().any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r')) {
                        return Err(format!("a response head with a bare LF: {}", show(head)));
                    }
                    let length = parsed
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                        .map(|h| String::from_utf8_lossy(h.value).parse::<usize>());
                    let length = match length {
                        Some(Ok(n)) => Some(n),
                        Some(Err(e)) => return Err(format!("a response Content-Length: {e}: {}", show(head))),
                        None => None,
                    };
                    break (parsed.code.unwrap_or(0), parsed.reason.unwrap_or("").to_owned(), length, len);
                }
                Ok(httparse::Status::Partial) => {
                    if !fill(&mut reader, &mut buf, &mut chunk).await {
                        break 'answers;
                    }
                }
                Err(err) => return Err(format!("a malformed response ({err}): {}", show(&buf))),
            }
        };
        buf.drain(..head_len);
        if (100..200).contains(&status) {
            continue;
        }
        let tunnel = status == 200 && reason == "Connection established";
        answers.push(Answer { status, tunnel });
        if tunnel {
            break;
        }
        match length {
            Some(n) => {
                while buf.len() < n {
                    if !fill(&mut reader, &mut buf, &mut chunk).await {
                        break 'answers;
                    }
                }
                buf.drain(..n);
            }
            // Only the proxy's answers and the allowed origin's come here,
            // and each has a length.
            None => return Err(format!("a {status} response without Content-Length")),
        }
    }
    writing.abort();
    Ok(answers)
}

/// Reads more into `buf`; false at the end of the stream or after
/// [`QUIET`] without a byte.
async fn fill(reader: &mut tokio::net::tcp::OwnedReadHalf, buf: &mut Vec<u8>, chunk: &mut [u8]) -> bool {
    match tokio::time::timeout(QUIET, reader.read(chunk)).await {
        Ok(Ok(n @ 1..)) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
        _ => false,
    }
}

/// The records of the connection from `source`.
fn records_from(proxy: &Proxy, source: Ipv4Addr) -> Vec<Value> {
    let source = source.to_string();
    records_in(&proxy.log_path()).into_iter().filter(|r| r["client"] == source.as_str()).collect()
}

/// Whether the records hold one record per answer, with its status (a
/// tunnel's may say 403 or 400: an SNI or a TLS record refused after the
/// 200, SPEC 3 and SECURITY.md P3).
fn answers_logged(answers: &[Answer], records: &[Value]) -> bool {
    let mut statuses: Vec<u64> = records.iter().filter_map(|r| r["status"].as_u64()).collect();
    for answer in answers {
        let fits: &[u64] = if answer.tunnel { &[200, 403, 400] } else { &[u64::from(answer.status)] };
        match statuses.iter().position(|s| fits.contains(s)) {
            Some(i) => {
                statuses.swap_remove(i);
            }
            None => return false,
        }
    }
    true
}

/// A fresh allowed request gets the origin's 200 and a blocked one the
/// proxy's 403, on one keep-alive connection from 127.0.0.1.
async fn probe(proxy: SocketAddr, http_port: u16) -> Result<(), String> {
    let request = format!(
        "GET http://example.test:{http_port}/probe HTTP/1.1\r\nHost: example.test\r\n\r\n\
         GET http://www.facebook.com:{http_port}/probe HTTP/1.1\r\nHost: www.facebook.com\r\n\r\n"
    );
    let answers = converse(proxy, Ipv4Addr::LOCALHOST, request.into_bytes(), &[], 2).await?;
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    if statuses != [200, 403] {
        return Err(format!("after the case, fresh requests got {statuses:?}, not [200, 403]"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The bench

/// One property's proxy (on its own runtime), origins and client runtime.
struct Bench {
    proxy_rt: Runtime,
    rt: Runtime,
    proxy: Option<Proxy>,
    origins: Origins,
    /// The second octet of this property's client addresses.
    net: u8,
    /// Per case: the client address, the answers, and how many request
    /// lines were sent.
    cases: Cell<Vec<(Ipv4Addr, Vec<Answer>, usize)>>,
}

impl Bench {
    fn new(net: u8) -> Bench {
        let proxy_rt = support::props::proxy_runtime();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let origins = rt.block_on(Origins::start());
        let mut company = Company::new()
            .without_hosts()
            .department("default", DEFAULT_DEPT)
            .proxy(&format!("nameservers = [\"127.0.0.1:{}\"]", support::closed_udp_port()))
            .limit("header_timeout = \"1s\"")
            .limit("idle_timeout = \"1s\"")
            .limit("upstream_response_timeout = \"1s\"")
            .limit("sni_peek_timeout = \"1s\"")
            .limit("max_header_bytes = 8192");
        for name in BLOCKED_NAMES {
            company = company.host(name, "127.0.0.2");
        }
        for name in ALLOWED_NAMES {
            company = company.host(name, "127.0.0.1");
        }
        let proxy = proxy_rt.block_on(company.start(&[origins.tunnel_port]));
        Bench { proxy_rt, rt, proxy: Some(proxy), origins, net, cases: Cell::new(Vec::new()) }
    }

    fn ports(&self) -> (u16, u16) {
        (self.origins.http_port, self.origins.tunnel_port)
    }

    /// Runs one client byte stream (cut in pieces at `cuts`; `expected`
    /// answers if it is well formed) and checks properties 1–4; where
    /// `blocked` says which requests name a blocked target (the stream is
    /// well formed, so answers come in their order), those must be refused.
    fn run(&self, bytes: Vec<u8>, cuts: &[Index], expected: usize, blocked: &[bool]) -> Result<(), TestCaseError> {
        let proxy = self.proxy.as_ref().unwrap();
        let mut cases = self.cases.take();
        let n = cases.len();
        let source = Ipv4Addr::new(127, self.net, u8::try_from(n / 250).unwrap(), u8::try_from(n % 250 + 1).unwrap());
        let lines = positions(&bytes, b" HTTP/").len();
        let result = self.rt.block_on(async {
            if let Some(why) = self.origins.violation() {
                return Err(format!("after an earlier case ended: {why}"));
            }
            tokio::time::timeout(CASE_WAIT, async {
                let answers = converse(proxy.addr, source, bytes.clone(), cuts, expected).await?;
                for (i, (answer, _)) in answers.iter().zip(blocked).enumerate().filter(|(_, (_, b))| **b) {
                    if ![400, 403].contains(&answer.status) {
                        return Err(format!("request {i} names a blocked host and got {answer:?}"));
                    }
                }
                let deadline = tokio::time::Instant::now() + WAIT;
                while !answers_logged(&answers, &records_from(proxy, source)) {
                    if tokio::time::Instant::now() > deadline {
                        return Err(format!(
                            "the client saw {answers:?}, the log has {:?}",
                            records_from(proxy, source)
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                if let Some(why) = self.origins.violation() {
                    return Err(why);
                }
                probe(proxy.addr, self.origins.http_port).await?;
                support::props::no_panic()?;
                Ok(answers)
            })
            .await
            .map_err(|_| format!("the case took longer than {CASE_WAIT:?}"))?
        });
        let outcome = match result {
            Ok(answers) => {
                cases.push((source, answers, lines));
                Ok(())
            }
            Err(why) => {
                cases.push((source, Vec::new(), usize::MAX));
                Err(TestCaseError::fail(format!("client {source} sent {}: {why}", show(&bytes))))
            }
        };
        self.cases.set(cases);
        outcome
    }

    /// After the last case: the tripwire stayed untouched, and no case has
    /// more records than request lines (plus one being read as it left).
    fn finish(mut self) {
        let proxy = self.proxy.take().unwrap();
        self.rt.block_on(async { tokio::time::sleep(Duration::from_millis(300)).await });
        if let Some(why) = self.origins.violation() {
            panic!("{why}");
        }
        for (source, answers, lines) in self.cases.take() {
            let records = records_from(&proxy, source);
            assert!(
                records.len() <= lines.max(1) + 1,
                "client {source} got {answers:?} and has {} records: {records:?}",
                records.len()
            );
        }
        self.proxy_rt.block_on(proxy.stop());
    }
}

fn stream(list: &[Message], ports: (u16, u16)) -> Vec<u8> {
    list.iter().enumerate().flat_map(|(n, m)| m.bytes(ports, n)).collect()
}

// ---------------------------------------------------------------------------
// Properties

/// Well-formed requests in every spelling, pipelined and cut anywhere into
/// writes: nothing reaches the tripwire, and each request is answered,
/// logged, and decided as the model says where the answer tells.
#[test]
fn well_formed_requests_never_reach_a_blocked_origin() {
    let bench = Bench::new(20);
    let ports = bench.ports();
    support::props::property(128, 256, |runner| {
        runner
            .run(&(messages(), vec(any::<Index>(), 0..3)), |(list, cuts)| {
                let bytes = stream(&list, ports);
                let blocked: Vec<bool> = list.iter().map(Message::blocked).collect();
                bench.run(bytes, &cuts, list.len(), &blocked)
            })
            .unwrap();
    });
    bench.finish();
}

/// The same requests, edited into smuggling shapes, broken framing and
/// illegal bytes: still nothing reaches the tripwire, the allowed origin
/// gets only clean requests, and the proxy keeps serving.
#[test]
fn edited_requests_never_reach_a_blocked_origin() {
    let bench = Bench::new(21);
    let ports = bench.ports();
    support::props::property(96, 256, |runner| {
        runner
            .run(&(messages(), vec(edit(), 1..4), vec(any::<Index>(), 0..3)), |(list, edits, cuts)| {
                let mut bytes = stream(&list, ports);
                for edit in &edits {
                    edit.apply(&mut bytes, ports.0);
                }
                bench.run(bytes, &cuts, list.len(), &[])
            })
            .unwrap();
    });
    bench.finish();
}

/// Arbitrary bytes, alone or around a request for the tripwire.
#[test]
fn arbitrary_bytes_never_reach_a_blocked_origin() {
    let bench = Bench::new(22);
    let ports = bench.ports();
    let noise = prop_oneof![
        vec(any::<u8>(), 0..256),
        vec(
            select(b"GET CONNECT http://www.facebook.com:/ HTTP/1.1\r\nHost: Content-Length: 5chunked\0 ".to_vec()),
            0..200
        ),
    ];
    support::props::property(64, 256, |runner| {
        runner
            .run(&(noise, any::<bool>(), vec(any::<Index>(), 0..3)), |(noise, wrap, cuts)| {
                let bytes = if wrap { [noise.as_slice(), &hidden_request(ports.0), &noise].concat() } else { noise };
                bench.run(bytes, &cuts, usize::MAX, &[])
            })
            .unwrap();
    });
    bench.finish();
}
