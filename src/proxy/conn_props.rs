//! Property tests for the request-head checker and the chunked-body
//! follower, with hyper's own HTTP/1 server as the oracle: a head judged
//! complete is one hyper serves with the same framing, a chunked body ends
//! exactly where hyper's ends and is refused wherever hyper refuses it, and
//! bytes split anywhere give the verdicts they give whole.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// `max_header_bytes` by default.
const MAX: usize = 65536;
pub(super) const CHUNKED_POST: &[u8] =
    b"POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n";
const NEXT: &[u8] = b"GET http://a.test/next HTTP/1.1\r\nHost: a.test\r\n\r\n";

/// A request hyper handed to the service.
#[derive(Debug, Clone)]
pub(super) struct Served {
    method: String,
    uri: http::Uri,
    /// The body, or `None` if hyper refused it (or it was cut off).
    pub(super) body: Option<Vec<u8>>,
}

/// What hyper's HTTP/1 server, built as `server.rs` builds it, serves from
/// `bytes` sent on a connection that is then half-closed. (`half_close`
/// is on so that hyper answers what it read before the end of the bytes,
/// rather than drop it: it changes nothing in how bytes are parsed.)
pub(super) fn hyper_serves(bytes: &[u8]) -> Vec<Served> {
    let served = Arc::new(Mutex::new(Vec::new()));
    let log = served.clone();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let (client, server) = tokio::io::duplex(1 << 16);
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let log = log.clone();
            async move {
                let method = req.method().to_string();
                let uri = req.uri().clone();
                let body = req.into_body().collect().await.ok().map(|b| b.to_bytes().to_vec());
                log.lock().unwrap().push(Served { method, uri, body });
                // Not 2xx, so a CONNECT stays HTTP.
                let mut response = hyper::Response::new(Empty::<Bytes>::new());
                *response.status_mut() = hyper::StatusCode::NOT_FOUND;
                Ok::<_, Infallible>(response)
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(None)
            .max_buf_size(MAX + 8192)
            .keep_alive(true)
            .half_close(true);
        let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(server), service);
        let (mut from, mut to) = tokio::io::split(client);
        let send = async {
            let _ = to.write_all(bytes).await;
            let _ = to.shutdown().await;
        };
        let drain = async {
            let mut sink = Vec::new();
            let _ = from.read_to_end(&mut sink).await;
        };
        let all = async {
            let _ = tokio::join!(conn, send, drain);
        };
        tokio::time::timeout(Duration::from_secs(5), all).await.expect("hyper did not finish with the bytes");
    });
    served.lock().unwrap().clone()
}

// ---- heads ----

fn method() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => select(vec!["GET", "POST", "CONNECT", "PUT", "HEAD"]).prop_map(|m| m.as_bytes().to_vec()),
        1 => select(vec!["get", "M-SEARCH", "X!#$%&'*+.^_`|~", ""]).prop_map(|m| m.as_bytes().to_vec()),
        1 => vec(any::<u8>(), 1..6),
    ]
}

fn target() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => select(vec![
            "http://a.test/",
            "http://a.test:8080/p?q=1",
            "/",
            "*",
            "a.test:443",
            "http://a.test/#frag",
            "http://[::1]:80/",
            "http://a.test:99999/",
        ])
        .prop_map(|t| t.as_bytes().to_vec()),
        1 => vec(prop_oneof![0x21u8..0x7f, 0x80u8..=0xff, select(vec![b' ', b'\t', 0, b'%'])], 0..16),
    ]
}

fn version() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        8 => select(vec!["HTTP/1.1", "HTTP/1.0"]),
        1 => select(vec!["HTTP/1.2", "HTTP/2.0", "http/1.1", "HTTP/1.1 ", "HTTP/1"]),
    ]
}

fn header_name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => select(vec!["Host", "Content-Length", "content-length", "Transfer-Encoding", "TRANSFER-ENCODING", "X-A"])
            .prop_map(|n| n.as_bytes().to_vec()),
        1 => "[!#$%&'*+.^_`|~0-9A-Za-z-]{1,10}".prop_map(String::into_bytes),
        1 => vec(any::<u8>(), 0..4),
    ]
}

fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => select(vec![
            "a.test", "0", "5", "007", "+5", "-5", "5, 5", "5 ", "chunked", "CHUNKED", " chunked\t", "gzip, chunked",
            "chunked, gzip", "chunked,", "18446744073709551613", "18446744073709551614", "99999999999999999999", "",
        ])
        .prop_map(|v| v.as_bytes().to_vec()),
        1 => vec(prop_oneof![0x20u8..0x7f, 0x80u8..=0xff, Just(b'\t')], 0..12),
        1 => vec(any::<u8>(), 0..6),
    ]
}

/// A request head as a client might send it: mostly well-formed, with odd
/// methods, targets, versions, names, values, bare-LF line ends, spaces
/// around the colon; then maybe a byte changed, inserted or removed.
fn head() -> impl Strategy<Value = Vec<u8>> {
    let line_end = prop_oneof![9 => Just(&b"\r\n"[..]), 1 => Just(&b"\n"[..])];
    let colon = prop_oneof![8 => Just(&b": "[..]), 2 => Just(&b":"[..]), 1 => Just(&b" : "[..])];
    let header = (header_name(), colon, header_value(), line_end.clone());
    (method(), target(), version(), line_end.clone(), vec(header, 0..6), line_end, vec(edit(), 0..2)).prop_map(
        |(method, target, version, end, headers, last, edits)| {
            let mut head = [&method[..], b" ", &target, b" ", version.as_bytes(), end].concat();
            for (name, colon, value, end) in headers {
                head.extend_from_slice(&[&name[..], colon, &value, end].concat());
            }
            head.extend_from_slice(last);
            apply(head, &edits)
        },
    )
}

// ---- chunked bodies ----

/// One change to some bytes: at a place, replace, insert before, or remove.
#[derive(Debug, Clone)]
enum Edit {
    Replace(Index, u8),
    Insert(Index, u8),
    Remove(Index),
    Truncate(Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    let byte = prop_oneof![
        3 => select(b"\r\n \t;:0aAfFgGx\x00\xff".to_vec()),
        1 => any::<u8>(),
    ];
    prop_oneof![
        3 => (any::<Index>(), byte.clone()).prop_map(|(at, b)| Edit::Replace(at, b)),
        2 => (any::<Index>(), byte).prop_map(|(at, b)| Edit::Insert(at, b)),
        2 => any::<Index>().prop_map(Edit::Remove),
        1 => any::<Index>().prop_map(Edit::Truncate),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        if bytes.is_empty() {
            break;
        }
        match *edit {
            Edit::Replace(at, b) => {
                let at = at.index(bytes.len());
                bytes[at] = b;
            }
            Edit::Insert(at, b) => bytes.insert(at.index(bytes.len() + 1), b),
            Edit::Remove(at) => {
                bytes.remove(at.index(bytes.len()));
            }
            Edit::Truncate(at) => bytes.truncate(at.index(bytes.len())),
        }
    }
    bytes
}

/// A chunk size line's spelling: leading zeros, upper- or lowercase hex,
/// spaces or tabs after the digits, an extension.
#[derive(Debug, Clone)]
struct SizeLine {
    zeros: usize,
    upper: bool,
    lws: &'static str,
    ext: Vec<u8>,
}

impl SizeLine {
    fn write(&self, size: usize, out: &mut Vec<u8>) {
        let digits = if self.upper { format!("{size:X}") } else { format!("{size:x}") };
        out.extend(std::iter::repeat_n(b'0', self.zeros));
        out.extend_from_slice(digits.as_bytes());
        out.extend_from_slice(self.lws.as_bytes());
        out.extend_from_slice(&self.ext);
        out.extend_from_slice(b"\r\n");
    }
}

/// `;name`, `;name=value`, `;name="quoted"`, or `;` and any bytes but CR and
/// LF; with `big`, sometimes one long enough to pass hyper's limit on
/// extension bytes in a body (16 KiB) by itself.
fn extension(big: bool) -> BoxedStrategy<Vec<u8>> {
    let any_ext = vec(any::<u8>().prop_filter("no line end", |b| *b != b'\r' && *b != b'\n'), 0..24);
    let usual = prop_oneof![
        4 => Just(Vec::new()),
        2 => ("[a-z]{1,6}", "[a-zA-Z0-9]{0,6}").prop_map(|(n, v)| format!(";{n}={v}").into_bytes()),
        1 => ("[a-z]{1,6}", "[ a-z=;]{0,8}").prop_map(|(n, v)| format!(";{n}=\"{v}\"").into_bytes()),
        1 => any_ext.prop_map(|e| [&b";"[..], &e].concat()),
    ];
    if !big {
        return usual.boxed();
    }
    prop_oneof![
        8 => usual,
        1 => (16_360usize..16_400).prop_map(|n| [&b";"[..], &vec![b'x'; n]].concat()),
    ]
    .boxed()
}

fn size_line(big: bool) -> impl Strategy<Value = SizeLine> {
    (0..3usize, any::<bool>(), select(vec!["", " ", "\t", " \t "]), extension(big))
        .prop_map(|(zeros, upper, lws, ext)| SizeLine { zeros, upper, lws, ext })
}

/// The lines of a trailer section (each without its CRLF); with `big`,
/// sometimes more lines or bytes than hyper takes (100, 16 KiB), or lines
/// hyper cannot parse as header fields.
fn trailers(big: bool) -> BoxedStrategy<Vec<Vec<u8>>> {
    let field = ("[A-Za-z][A-Za-z0-9-]{0,8}", vec(prop_oneof![0x20u8..0x7f, 0x80u8..=0xff, Just(b'\t')], 0..12))
        .prop_map(|(name, value)| [name.as_bytes(), b": ", &value].concat());
    let odd = prop_oneof![
        Just(b"no colon".to_vec()),
        Just(b"T2: a\nb".to_vec()),
        Just(b"T2: a\nc: d".to_vec()),
        Just(b" folded".to_vec()),
        Just(b"X: a\x00b".to_vec()),
        Just(b"X: \x7f".to_vec()),
    ];
    let usual = vec(field.clone(), 0..4);
    if !big {
        return usual.boxed();
    }
    prop_oneof![
        8 => usual,
        1 => (97usize..104).prop_map(|n| (0..n).map(|i| format!("T{i}: v").into_bytes()).collect()),
        1 => (16_360usize..16_400).prop_map(|n| vec![[&b"T: "[..], &vec![b'v'; n]].concat()]),
        1 => (vec(field, 0..2), odd).prop_map(|(mut fields, odd)| {
            fields.push(odd);
            fields
        }),
    ]
    .boxed()
}

/// A chunked body and the data it carries.
fn chunked(big: bool) -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    (vec((vec(any::<u8>(), 1..40), size_line(big)), 0..5), size_line(big), trailers(big)).prop_map(
        |(chunks, last, trailers)| {
            let (mut body, mut data) = (Vec::new(), Vec::new());
            for (bytes, line) in chunks {
                line.write(bytes.len(), &mut body);
                body.extend_from_slice(&bytes);
                body.extend_from_slice(b"\r\n");
                data.extend_from_slice(&bytes);
            }
            last.write(0, &mut body);
            for line in trailers {
                body.extend_from_slice(&line);
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(b"\r\n");
            (body, data)
        },
    )
}

/// Any chunked body, then maybe edited: what a client could send.
fn any_chunked() -> impl Strategy<Value = Vec<u8>> {
    (chunked(true), vec(edit(), 0..3)).prop_map(|((body, _), edits)| apply(body, &edits))
}

/// A body's follower before its first byte.
fn fresh() -> ChunkedBody {
    ChunkedBody::default()
}

fn follow_whole(bytes: &[u8]) -> Chunked {
    follow_chunks(&mut fresh(), bytes)
}

/// Follows `bytes` cut at `cuts`, as they might arrive; an end is given
/// from the start of `bytes`.
fn follow_in_pieces(bytes: &[u8], cuts: &[Index]) -> Chunked {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
    cuts.push(bytes.len());
    cuts.sort_unstable();
    let mut body = fresh();
    let mut from = 0;
    for to in cuts {
        match follow_chunks(&mut body, &bytes[from..to]) {
            Chunked::More => from = to,
            Chunked::Ended(n) => return Chunked::Ended(from + n),
            Chunked::Malformed => return Chunked::Malformed,
        }
    }
    Chunked::More
}

// ---- connections ----

/// How `ClientIo::follow` takes a connection's bytes.
#[derive(Debug, PartialEq, Eq)]
struct Followed {
    /// Where each request (head and body) ended.
    ends: Vec<usize>,
    refused: Option<u16>,
    /// Where the bytes left it: the head so far, or a body.
    framing: String,
}

/// Feeds `bytes` cut at `cuts` through a connection's framing, each
/// request answered before the next (as when nothing is pipelined).
fn follow_connection(bytes: &[u8], cuts: &[Index], max: usize) -> Followed {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
    cuts.push(bytes.len());
    cuts.sort_unstable();
    let limits = crate::config::Limits { max_header_bytes: max, ..Default::default() };
    let (near, _far) = tokio::io::duplex(64);
    let mut io = ClientIo::new(near, ConnState::new(), &limits, Arc::new(super::super::respond::head_replies()));
    let mut followed = Followed { ends: Vec::new(), refused: None, framing: String::new() };
    let mut from = 0;
    for to in cuts {
        let mut piece = &bytes[from..to];
        while !piece.is_empty() {
            match io.follow(piece) {
                Err(status) => {
                    // Where the bytes left it no longer matters: the
                    // connection is closed.
                    followed.refused = Some(status);
                    followed.framing = "refused".to_owned();
                    return followed;
                }
                Ok(keep) => {
                    from += keep;
                    // Every call ends at most one request, and stops there.
                    if matches!(&io.framing, Framing::Head(head) if head.is_empty()) {
                        followed.ends.push(from);
                    } else {
                        assert_eq!(keep, piece.len(), "bytes held back with no request ended");
                    }
                    piece = &piece[keep..];
                }
            }
        }
    }
    followed.framing = format!("{:?}", io.framing);
    followed
}

/// A request: a head with its body, framed by a length or chunked.
fn request() -> impl Strategy<Value = Vec<u8>> {
    let by_length = vec(any::<u8>(), 0..30).prop_map(|body| {
        let head = format!("POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: {}\r\n\r\n", body.len());
        [head.as_bytes(), &body].concat()
    });
    let chunked = chunked(false).prop_map(|(body, _)| [CHUNKED_POST, &body].concat());
    prop_oneof![
        Just(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n".to_vec()),
        Just(b"GET http://a.test/ HTTP/1.1\nHost: a.test\n\n".to_vec()),
        by_length,
        chunked,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// `check_head` agrees with httparse where it should (httparse is its
    /// parser): complete heads at httparse's length, partial ones partial
    /// until over the limit, httparse's errors refused; and it never panics.
    #[test]
    fn check_head_agrees_with_httparse(head in head(), junk in vec(any::<u8>(), 0..8), max in prop_oneof![Just(MAX), 0..200usize]) {
        let bytes = [&head[..], &junk].concat();
        let mut headers = [httparse::EMPTY_HEADER; 100];
        let parsed = httparse::Request::new(&mut headers).parse(&bytes);
        match (check_head(&bytes, max), parsed) {
            (HeadCheck::Complete { len, .. }, Ok(httparse::Status::Complete(n))) => {
                prop_assert_eq!(len, n);
                prop_assert!(len <= max);
            }
            (HeadCheck::Refuse(431), Ok(httparse::Status::Complete(n))) => {
                prop_assert!(n > max || headers.iter().any(|h| h.name.len() >= MAX_HEADER_NAME));
            }
            (HeadCheck::Refuse(400), Ok(httparse::Status::Complete(n))) => prop_assert!(n <= max),
            (HeadCheck::Partial, Ok(httparse::Status::Partial)) => prop_assert!(bytes.len() <= max),
            (HeadCheck::Refuse(431), Ok(httparse::Status::Partial)) => prop_assert!(bytes.len() > max),
            (HeadCheck::Refuse(431), Err(httparse::Error::TooManyHeaders)) => {}
            (HeadCheck::Refuse(400), Err(e)) => prop_assert_ne!(e, httparse::Error::TooManyHeaders),
            (verdict, parsed) => prop_assert!(false, "{}: {:?}", describe(&verdict), parsed),
        }
    }

    /// Every head `check_head` lets through, hyper serves, with the body
    /// framing `check_head` found; a head still partial is not served.
    #[test]
    fn heads_judged_complete_are_served_by_hyper_with_the_same_framing(head in head()) {
        let mut headers = [httparse::EMPTY_HEADER; 100];
        let mut request = httparse::Request::new(&mut headers);
        let parsed = request.parse(&head);
        match check_head(&head, MAX) {
            HeadCheck::Complete { len, body } => {
                let uri: http::Uri = request.path.unwrap().parse().unwrap();
                let method = request.method.unwrap().to_string();
                let (content, expected) = match body {
                    Body::Length(n) if n <= 64 => (vec![b'x'; n as usize], Some(Some(vec![b'x'; n as usize]))),
                    // Longer than sent: only the head can be checked.
                    Body::Length(_) => (Vec::new(), None),
                    Body::Chunked => (b"1\r\ny\r\n0\r\n\r\n".to_vec(), Some(Some(b"y".to_vec()))),
                    Body::Connect => (Vec::new(), Some(Some(Vec::new()))),
                };
                let served = hyper_serves(&[&head[..len], &content].concat());
                prop_assert_eq!(served.len(), 1, "{:?} -> {:?}", String::from_utf8_lossy(&head), parsed);
                prop_assert_eq!(&served[0].method, &method);
                prop_assert_eq!(&served[0].uri, &uri);
                if let Some(expected) = expected {
                    prop_assert_eq!(&served[0].body, &expected);
                }
            }
            HeadCheck::Partial => prop_assert!(hyper_serves(&head).is_empty()),
            HeadCheck::Refuse(_) => {}
        }
    }

    /// Oversize is 431 whatever the head: a head longer than the limit, or
    /// any part of one past it, is refused with 431 (and never let through).
    #[test]
    fn heads_over_the_limit_get_431(request in request(), cut in any::<Index>(), max in 0..120usize) {
        let len = match check_head(&request, MAX) {
            HeadCheck::Complete { len, .. } => len,
            other => return Err(TestCaseError::fail(describe(&other))),
        };
        let prefix = &request[..cut.index(len + 1)];
        let verdict = check_head(prefix, max);
        if prefix.len() > max {
            prop_assert!(matches!(verdict, HeadCheck::Refuse(431)), "{}", describe(&verdict));
        } else {
            prop_assert!(!matches!(verdict, HeadCheck::Refuse(_)), "{}", describe(&verdict));
        }
    }

    /// A connection's bytes (requests one after another, then maybe
    /// garbage) cut anywhere are followed to the same request ends, the
    /// same refusal and the same place as whole.
    #[test]
    fn a_connection_cut_anywhere_is_followed_as_whole(
        requests in vec(request(), 1..4),
        tail in prop_oneof![Just(Vec::new()), head(), vec(any::<u8>(), 0..16)],
        edits in vec(edit(), 0..2),
        cuts in vec(any::<Index>(), 0..10),
    ) {
        let bytes = apply([requests.concat(), tail].concat(), &edits);
        let whole = follow_connection(&bytes, &[], MAX);
        let pieces = follow_connection(&bytes, &cuts, MAX);
        prop_assert_eq!(pieces, whole);
    }

    /// A well-formed chunked body (extensions, trailers, uppercase hex,
    /// leading zeros, spaces after the size) ends exactly at its end, and
    /// hyper reads it to the same data and then the next request.
    #[test]
    fn well_formed_chunked_bodies_end_exactly_where_hyper_ends_them((body, data) in chunked(false)) {
        let stream = [&body[..], NEXT].concat();
        prop_assert_eq!(follow_whole(&stream), Chunked::Ended(body.len()));
        let served = hyper_serves(&[CHUNKED_POST, &stream].concat());
        prop_assert_eq!(served.len(), 2, "{:?}", served);
        prop_assert_eq!(&served[0].body, &Some(data));
        prop_assert_eq!(served[1].uri.path(), "/next");
    }

    /// Any chunked body, hyper as the oracle: where the follower ends it,
    /// hyper reads it whole and then the next request from there; where the
    /// follower refuses it (or it never ends), hyper does not read it whole.
    #[test]
    fn chunked_bodies_end_where_hyper_ends_them_and_fail_where_it_fails(body in any_chunked()) {
        let stream = [&body[..], NEXT].concat();
        match follow_whole(&stream) {
            Chunked::Ended(n) => {
                let served = hyper_serves(&[CHUNKED_POST, &stream[..n], NEXT].concat());
                prop_assert_eq!(served.len(), 2, "{:?}", served);
                prop_assert!(served[0].body.is_some(), "hyper refused a body followed to its end");
                prop_assert_eq!(served[1].uri.path(), "/next");
            }
            verdict => {
                let served = hyper_serves(&[CHUNKED_POST, &stream].concat());
                prop_assert!(!served.is_empty());
                prop_assert!(served[0].body.is_none(), "{:?}, but hyper read the body whole", verdict);
                prop_assert_eq!(served.len(), 1);
            }
        }
    }

    /// Split anywhere, a chunked body gets the verdict and the end it gets
    /// whole (the follower keeps all it needs between reads).
    #[test]
    fn a_chunked_body_cut_anywhere_is_followed_as_whole(body in any_chunked(), next in vec(any::<u8>(), 0..8), cuts in vec(any::<Index>(), 0..12)) {
        let stream = [&body[..], &next].concat();
        prop_assert_eq!(follow_in_pieces(&stream, &cuts), follow_whole(&stream));
    }

    /// Arbitrary bytes: no panic, and an end is within what was given.
    #[test]
    fn following_arbitrary_bytes_never_panics(bytes in vec(any::<u8>(), 0..64)) {
        if let Chunked::Ended(n) = follow_whole(&bytes) {
            prop_assert!(n > 0 && n <= bytes.len());
        }
        let _ = check_head(&bytes, 32);
    }
}

fn describe(verdict: &HeadCheck) -> String {
    match verdict {
        HeadCheck::Complete { len, body } => format!("complete at {len}, {body:?}"),
        HeadCheck::Partial => "partial".to_owned(),
        HeadCheck::Refuse(status) => format!("refused {status}"),
    }
}
