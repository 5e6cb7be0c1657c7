//! The client connection's I/O, with the limits hyper does not enforce the
//! way the SPEC wants: `idle_timeout` between requests (the connection is
//! closed quietly), `header_timeout` for a request head that started
//! arriving but did not finish (`408`), and the request head itself checked
//! as it arrives: malformed (`400`) or over `max_header_bytes` (`431`). Those
//! answers are written here, straight to the socket, so they carry
//! `Proxy-Status` like every other response the proxy makes (hyper's own
//! automatic error responses would not).
//!
//! It also counts the bytes written to the client: a request's record is
//! written once hyper has flushed its response ([`ConnState::answered`]),
//! so `bytes_down` is what crossed the client side, and the next pipelined
//! head waits for that.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::context::Ctx;
use crate::access_log::ClosedBy;

const IDLE: u8 = 0;
const HEAD: u8 = 1;
const BUSY: u8 = 2;
/// Not a phase: the deadline armed while a whole head waits for hyper to
/// route it.
const ROUTE: u8 = 3;

/// Where a client connection is between requests, shared by the I/O wrapper
/// and the requests served on it.
#[derive(Debug)]
pub(crate) struct ConnState {
    phase: AtomicU8,
    /// The status the connection was refused with (0: it was not).
    refused: AtomicU16,
    /// The reader parked while a request was served, woken when it ends so
    /// the idle deadline is armed.
    reader: AtomicWaker,
    /// A CONNECT was answered 2xx: from here on the bytes are the tunnel's.
    tunnel: AtomicBool,
    /// hyper routed the last head this wrapper let through as whole.
    routed: AtomicBool,
    /// The length of the last complete request head handed to hyper.
    head_len: AtomicU64,
    /// Bytes written to the client (hyper's responses)...
    written: AtomicU64,
    /// ...of which this many are counted in records already written.
    accounted: AtomicU64,
    /// `slot.pending` holds a record (read on every flush without locking).
    has_pending: AtomicBool,
    slot: Mutex<Slot>,
}

/// What waits on the connection for its bytes to be known.
#[derive(Debug, Default)]
struct Slot {
    /// The record of the request answered last, written once its response
    /// is flushed to the client, so `bytes_down` is what really went out.
    pending: Option<Pending>,
    /// The I/O wrapper is gone: nothing more will be flushed.
    io_gone: bool,
    /// The head refused at the head stage, or left unanswered at the end.
    head: Option<HeadSeen>,
}

#[derive(Debug)]
struct Pending {
    ctx: Ctx,
    status: u16,
    closed_by: ClosedBy,
}

/// What arrived of a request head that never reached the router: refused
/// at the head stage (408, 400, 431), or cut off by the connection's end.
#[derive(Debug, Default)]
pub(crate) struct HeadSeen {
    /// Its bytes so far.
    pub(crate) bytes: u64,
    /// When its first byte arrived.
    pub(crate) started: Option<std::time::Instant>,
    /// Method and target of its request line, if that line was complete.
    pub(crate) line: Option<(String, String)>,
}

impl HeadSeen {
    fn of(head: &[u8], started: Option<std::time::Instant>) -> HeadSeen {
        HeadSeen { bytes: head.len() as u64, started, line: request_line(head) }
    }
}

/// Method and target of a complete first line `METHOD SP target SP HTTP/x`.
fn request_line(head: &[u8]) -> Option<(String, String)> {
    let end = head.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&head[..end]).ok()?.trim_end_matches('\r');
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let token =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    let visible = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
    (parts.next().is_none() && token(method) && visible(target) && version.starts_with("HTTP/"))
        .then(|| (method.to_owned(), target.to_owned()))
}

impl ConnState {
    pub(crate) fn new() -> Arc<ConnState> {
        Arc::new(ConnState {
            phase: AtomicU8::new(IDLE),
            refused: AtomicU16::new(0),
            reader: AtomicWaker::new(),
            tunnel: AtomicBool::new(false),
            routed: AtomicBool::new(true),
            head_len: AtomicU64::new(0),
            written: AtomicU64::new(0),
            accounted: AtomicU64::new(0),
            has_pending: AtomicBool::new(false),
            slot: Mutex::new(Slot::default()),
        })
    }

    fn slot(&self) -> MutexGuard<'_, Slot> {
        // The slot is left consistent at every step: a panic elsewhere
        // cannot leave it half-changed.
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The exact length of the request head hyper is about to route.
    pub(crate) fn take_head_len(&self) -> Option<u64> {
        Some(self.head_len.swap(0, Ordering::Relaxed)).filter(|&n| n > 0)
    }

    /// The request was answered: its record is written once the response is
    /// on the wire (or the connection is gone), with the bytes written for
    /// it as `bytes_down`. Until then the next request waits.
    pub(crate) fn answered(&self, ctx: Ctx, status: u16, closed_by: ClosedBy) {
        let answered = Pending { ctx, status, closed_by };
        let (earlier, now) = {
            let mut slot = self.slot();
            let earlier = slot.pending.take();
            if slot.io_gone {
                (earlier, Some(answered))
            } else {
                slot.pending = Some(answered);
                self.has_pending.store(true, Ordering::SeqCst);
                (earlier, None)
            }
        };
        // Never two at once (the next head waits for this one's record),
        // but neither is ever lost.
        for pending in earlier.into_iter().chain(now) {
            self.finish(pending);
        }
    }

    /// hyper flushed everything it had written.
    fn flushed(&self) {
        if self.has_pending.swap(false, Ordering::SeqCst) {
            let pending = self.slot().pending.take();
            if let Some(pending) = pending {
                self.finish(pending);
            }
        }
    }

    /// The I/O wrapper is dropped: write what waits, with what went out.
    fn io_gone(&self, head: Option<HeadSeen>) {
        let pending = {
            let mut slot = self.slot();
            slot.io_gone = true;
            if slot.head.is_none() {
                slot.head = head;
            }
            slot.pending.take()
        };
        if let Some(pending) = pending {
            self.finish(pending);
        }
    }

    fn finish(&self, Pending { mut ctx, status, closed_by }: Pending) {
        ctx.bytes_down = self.unaccounted_down();
        ctx.log_detached(status, closed_by);
        self.idle();
    }

    /// Bytes written to the client since the last record took its share.
    pub(crate) fn unaccounted_down(&self) -> u64 {
        let written = self.written.load(Ordering::SeqCst);
        written.saturating_sub(self.accounted.swap(written, Ordering::SeqCst))
    }

    /// The head refused at the head stage or left unanswered, if any.
    pub(crate) fn take_head(&self) -> Option<HeadSeen> {
        self.slot().head.take()
    }

    /// A request head was parsed: no read deadline while it is served.
    pub(crate) fn busy(&self) {
        self.routed.store(true, Ordering::SeqCst);
        self.phase.store(BUSY, Ordering::SeqCst);
    }

    /// The request was answered: the connection idles until the next head.
    pub(crate) fn idle(&self) {
        if self.phase.compare_exchange(BUSY, IDLE, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            self.reader.wake();
        }
    }

    /// A CONNECT on this connection was answered with a 2xx: what the
    /// client sent after it (held back until now) and everything after
    /// that belongs to the tunnel, not to another request.
    pub(crate) fn tunnel(&self) {
        self.tunnel.store(true, Ordering::SeqCst);
        self.reader.wake();
    }

    /// The status the connection was refused with at the head stage
    /// (408, 400 or 431), if it was.
    pub(crate) fn refused(&self) -> Option<u16> {
        match self.refused.load(Ordering::SeqCst) {
            0 => None,
            status => Some(status),
        }
    }
}

/// The answers written straight to the socket at the head stage.
#[derive(Debug)]
pub(crate) struct HeadReplies {
    /// `408`.
    pub(crate) timeout: Vec<u8>,
    /// `400`.
    pub(crate) malformed: Vec<u8>,
    /// `431`.
    pub(crate) too_large: Vec<u8>,
}

impl HeadReplies {
    /// The answer for a head refused with `status`.
    pub(crate) fn for_status(&self, status: u16) -> &[u8] {
        match status {
            408 => &self.timeout,
            431 => &self.too_large,
            _ => &self.malformed,
        }
    }
}

/// How a head that is still arriving looks so far.
enum HeadCheck {
    /// The head is `len` bytes long; `body` follows it.
    Complete {
        len: usize,
        body: Body,
    },
    Partial,
    Refuse(u16),
}

/// What follows a complete request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// `Content-Length` bytes (0: none).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// `CONNECT`: what follows is held back until the answer says whether
    /// it is a tunnel's bytes (2xx) or the next head.
    Connect,
}

/// The largest `Content-Length` hyper takes (it keeps two values above it
/// for itself and refuses the rest with its own bare reply).
const MAX_CONTENT_LENGTH: u64 = u64::MAX - 2;

/// hyper refuses a header name this long or longer with its own bare reply.
const MAX_HEADER_NAME: usize = 1 << 16;

/// Judges a request head as it arrives. Every head hyper would refuse is
/// refused here first, so the client gets the proxy's own answer (with
/// `Proxy-Status`) and never hyper's bare one; a head judged complete here
/// is one hyper parses with the same body framing.
fn check_head(bytes: &[u8], max: usize) -> HeadCheck {
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => {
            if len > max || request.headers.iter().any(|h| h.name.len() >= MAX_HEADER_NAME) {
                return HeadCheck::Refuse(431);
            }
            match framing(&request) {
                Some(body) => HeadCheck::Complete { len, body },
                None => HeadCheck::Refuse(400),
            }
        }
        Ok(httparse::Status::Partial) if bytes.len() > max => HeadCheck::Refuse(431),
        Ok(httparse::Status::Partial) => HeadCheck::Partial,
        Err(httparse::Error::TooManyHeaders) => HeadCheck::Refuse(431),
        Err(_) => HeadCheck::Refuse(400),
    }
}

/// The body a complete, parsed head announces, or `None` when the head is
/// malformed: a target `http::Uri` cannot hold, or framing that is not
/// exactly one of "no body", one `Content-Length` (ASCII digits, the same
/// in every field), or `Transfer-Encoding: chunked` in HTTP/1.1.
fn framing(request: &httparse::Request<'_, '_>) -> Option<Body> {
    let values =
        |name: &'static str| request.headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value);
    // hyper also refuses a target `http::Uri` cannot hold.
    request.path.map(str::parse::<http::Uri>)?.ok()?;
    let connect = request.method.is_some_and(|m| m.eq_ignore_ascii_case("CONNECT"));
    let lengths: Vec<&[u8]> = values("content-length").collect();
    let codings: Vec<&[u8]> = values("transfer-encoding").collect();
    if !codings.is_empty() {
        // Both framings at once is how request smuggling starts (hyper
        // would quietly prefer Transfer-Encoding). Any coding but a lone
        // `chunked` would be dropped unapplied (hyper looks only at the last
        // one, and the proxy re-frames), so it is refused (as Squid does);
        // HTTP/1.0 has no Transfer-Encoding (RFC 9112 6.1); and a CONNECT
        // has no content (RFC 9110 9.3.6): hyper would read tunnel bytes as
        // its body.
        let only_chunked = codings.len() == 1
            && std::str::from_utf8(codings[0])
                .is_ok_and(|v| v.trim_matches([' ', '\t']).eq_ignore_ascii_case("chunked"));
        return (lengths.is_empty() && only_chunked && request.version == Some(1) && !connect).then_some(Body::Chunked);
    }
    let mut length = None;
    for value in lengths {
        // Only ASCII digits are a length (`+5` is not; `u64::from_str`
        // would take it, hyper does not).
        if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let parsed = value
            .iter()
            .try_fold(0u64, |n, d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
            .filter(|&n| n <= MAX_CONTENT_LENGTH)?;
        if length.is_some_and(|seen| seen != parsed) {
            return None;
        }
        length = Some(parsed);
    }
    let length = length.unwrap_or(0);
    match (connect, length) {
        // `Content-Length: 0` on a CONNECT announces no content (old
        // Windows clients send it); any other length would swallow
        // tunnel bytes.
        (true, 0) => Some(Body::Connect),
        (true, _) => None,
        (false, n) => Some(Body::Length(n)),
    }
}

/// Where a chunked body is, state for state as hyper's decoder reads it
/// (CRLF line ends only), so the body never ends here earlier or later than
/// it does for hyper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Chunk {
    /// A size line's first hex digit.
    #[default]
    Start,
    /// More hex digits (`size` so far).
    Size(u64),
    /// Spaces or tabs after the digits.
    SizeLws(u64),
    /// A chunk extension, up to its CR.
    Ext(u64),
    /// The LF of the size line.
    SizeLf(u64),
    /// Data bytes left in the chunk.
    Data(u64),
    /// The CR, then the LF, after a chunk's data.
    DataCr,
    DataLf,
    /// At a line start after the last chunk: CR ends the body, anything
    /// else starts a trailer line.
    EndCr,
    /// The body's last LF.
    EndLf,
    /// A trailer line, up to its CR; then its LF.
    Trailer,
    TrailerLf,
}

/// hyper refuses a body with this many bytes of chunk extensions in all.
const MAX_EXTENSION_BYTES: u64 = 16 * 1024;
/// hyper refuses a trailer section this long (its final CRLF included)...
const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// ...or with more CRLF-ended trailer lines than this.
const MAX_TRAILER_LINES: usize = 100;

/// A chunked body being followed: where it is, and what hyper counts and
/// checks across it besides the framing, so that a body hyper refuses is
/// refused here too (not taken as ended, with the next head after it).
#[derive(Debug, Default)]
struct ChunkedBody {
    at: Chunk,
    /// Chunk-extension bytes so far.
    extension_bytes: u64,
    /// The trailer section so far: parsed as hyper parses it when the body
    /// ends (at most `MAX_TRAILER_BYTES`).
    trailers: Vec<u8>,
    trailer_lines: usize,
}

impl ChunkedBody {
    /// Keeps a byte of the trailer section; `false` once hyper would refuse
    /// the section as too long.
    fn trailer_byte(&mut self, byte: u8) -> bool {
        self.trailers.push(byte);
        self.trailers.len() < MAX_TRAILER_BYTES
    }

    /// Whether hyper takes the trailer section: header fields with names
    /// and values `http` accepts, no more of them than CRLF-ended lines
    /// (hyper's parser has a slot per line; a bare LF inside a line can
    /// start another field).
    fn trailers_parse(&self) -> bool {
        if self.trailers.is_empty() {
            return true;
        }
        let mut fields = vec![httparse::EMPTY_HEADER; self.trailer_lines];
        match httparse::parse_headers(&self.trailers, &mut fields) {
            Ok(httparse::Status::Complete((_, fields))) => fields.iter().all(|f| {
                http::HeaderName::from_bytes(f.name.as_bytes()).is_ok()
                    && http::HeaderValue::from_bytes(f.value).is_ok()
            }),
            _ => false,
        }
    }
}

/// How far a chunked body got through some bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunked {
    /// All taken; the body goes on.
    More,
    /// The body ended after this many bytes.
    Ended(usize),
    /// Not chunked framing hyper accepts: hyper refuses the body.
    Malformed,
}

/// Follows a chunked body through `bytes`.
fn follow_chunks(body: &mut ChunkedBody, bytes: &[u8]) -> Chunked {
    let mut at = 0;
    while at < bytes.len() {
        if let Chunk::Data(left) = &mut body.at {
            let n = usize::try_from(*left).unwrap_or(usize::MAX).min(bytes.len() - at);
            at += n;
            *left -= n as u64;
            if *left == 0 {
                body.at = Chunk::DataCr;
            }
            continue;
        }
        let byte = bytes[at];
        at += 1;
        let digit = char::from(byte).to_digit(16).map(u64::from);
        body.at = match (body.at, byte) {
            (Chunk::Start, _) => match digit {
                Some(d) => Chunk::Size(d),
                None => return Chunked::Malformed,
            },
            (Chunk::Size(size), _) if digit.is_some() => {
                match size.checked_mul(16).and_then(|s| s.checked_add(digit.unwrap_or(0))) {
                    Some(size) => Chunk::Size(size),
                    None => return Chunked::Malformed,
                }
            }
            (Chunk::Size(size) | Chunk::SizeLws(size), b' ' | b'\t') => Chunk::SizeLws(size),
            (Chunk::Size(size) | Chunk::SizeLws(size), b';') => Chunk::Ext(size),
            (Chunk::Size(size) | Chunk::SizeLws(size) | Chunk::Ext(size), b'\r') => Chunk::SizeLf(size),
            (Chunk::Ext(_), b'\n') => return Chunked::Malformed,
            (Chunk::Ext(size), _) => {
                body.extension_bytes += 1;
                if body.extension_bytes >= MAX_EXTENSION_BYTES {
                    return Chunked::Malformed;
                }
                Chunk::Ext(size)
            }
            (Chunk::SizeLf(0), b'\n') => Chunk::EndCr,
            (Chunk::SizeLf(size), b'\n') => Chunk::Data(size),
            (Chunk::DataCr, b'\r') => Chunk::DataLf,
            (Chunk::DataLf, b'\n') => Chunk::Start,
            (Chunk::EndCr, b'\r') => {
                if !body.trailers.is_empty() && !body.trailer_byte(byte) {
                    return Chunked::Malformed;
                }
                Chunk::EndLf
            }
            (Chunk::EndCr | Chunk::Trailer, _) => {
                if !body.trailer_byte(byte) {
                    return Chunked::Malformed;
                }
                if byte == b'\r' { Chunk::TrailerLf } else { Chunk::Trailer }
            }
            (Chunk::TrailerLf, b'\n') => {
                body.trailer_lines += 1;
                if body.trailer_lines > MAX_TRAILER_LINES || !body.trailer_byte(byte) {
                    return Chunked::Malformed;
                }
                Chunk::EndCr
            }
            (Chunk::EndLf, b'\n') => {
                if !body.trailers.is_empty() && !body.trailer_byte(byte) {
                    return Chunked::Malformed;
                }
                return if body.trailers_parse() { Chunked::Ended(at) } else { Chunked::Malformed };
            }
            _ => return Chunked::Malformed,
        };
    }
    Chunked::More
}

/// Where the client's byte stream is, request by request.
#[derive(Debug)]
enum Framing {
    /// A request head arriving (the bytes so far).
    Head(Vec<u8>),
    /// A body with this many bytes left.
    Length(u64),
    Chunked(ChunkedBody),
    /// A chunked body hyper refuses: not followed until the request is
    /// answered (hyper then ends the connection).
    Opaque,
}

/// A client connection (TCP, or TLS over TCP) with idle and head deadlines.
///
/// The bytes are followed request by request (head, then the body its
/// framing announces). A head that arrives while the request before it is
/// still being answered (pipelined) is held back from hyper until the
/// answer is done, then handed over under `header_timeout` and the same
/// checks as any other head — hyper never parses a head this did not check.
pub(crate) struct ClientIo<S> {
    /// `None` once a refusal handed the socket to its own closing task.
    stream: Option<S>,
    state: Arc<ConnState>,
    header_timeout: Duration,
    idle_timeout: Duration,
    max_header_bytes: usize,
    replies: Arc<HeadReplies>,
    /// The head or idle deadline; made when first armed, dropped once the
    /// connection is a tunnel (a timer keeps the waker of the task that
    /// last polled it, here the finished HTTP connection's).
    timer: Option<Pin<Box<Sleep>>>,
    /// The phase the timer is armed for.
    armed: Option<u8>,
    framing: Framing,
    /// The start of the next head, read while a request was being answered.
    held: Vec<u8>,
    /// The client closed after the held bytes.
    held_eof: bool,
    /// When the head now arriving started to.
    head_started: Option<std::time::Instant>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> ClientIo<S> {
    pub(crate) fn new(
        stream: S,
        state: Arc<ConnState>,
        limits: &crate::config::Limits,
        replies: Arc<HeadReplies>,
    ) -> ClientIo<S> {
        ClientIo {
            stream: Some(stream),
            state,
            header_timeout: limits.header_timeout,
            idle_timeout: limits.idle_timeout,
            max_header_bytes: limits.max_header_bytes,
            replies,
            timer: None,
            armed: None,
            framing: Framing::Head(Vec::new()),
            held: Vec::new(),
            held_eof: false,
            head_started: None,
        }
    }

    /// Once the connection is a tunnel: the client stream, and the bytes
    /// read from it but held back until the CONNECT was answered (they come
    /// before anything still in the stream). `None` if a refusal took the
    /// socket. The deadlines go with this wrapper, and with them any waker
    /// of the finished HTTP connection task they still held.
    pub(crate) fn into_tunnel(mut self) -> Option<(S, Vec<u8>)> {
        let held = std::mem::take(&mut self.held);
        self.stream.take().map(|stream| (stream, held))
    }

    /// Hands the socket to a task that writes the refusal for `status`,
    /// closes its side, and reads (discarding) until the client closes, so
    /// unread request bytes do not reset the connection under the reply.
    /// hyper gets an error and will not answer itself.
    fn refuse(&mut self, status: u16) -> Poll<io::Result<()>> {
        self.state.refused.store(status, Ordering::SeqCst);
        if let Some(head) = self.head_seen() {
            self.state.slot().head = Some(head);
        }
        if let Some(mut stream) = self.stream.take() {
            let replies = self.replies.clone();
            tokio::spawn(async move {
                let reply = replies.for_status(status);
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    let _ = stream.write_all(reply).await;
                    let _ = stream.shutdown().await;
                    let mut sink = [0u8; 4096];
                    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                })
                .await;
            });
        }
        Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, "request head refused")))
    }

    fn arm(&mut self, phase: u8) {
        let after = if phase == IDLE { self.idle_timeout } else { self.header_timeout };
        let deadline = Instant::now() + after;
        match self.timer.as_mut() {
            Some(timer) => timer.as_mut().reset(deadline),
            None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
        self.armed = Some(phase);
    }

    /// Waits for the request in flight to be answered: no read deadline
    /// while it is served, however long. But a head let through as whole
    /// that hyper does not route within `header_timeout` means hyper read
    /// those bytes as something else: the connection ends rather than wait
    /// for an answer that cannot come.
    fn await_answer(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.state.routed.load(Ordering::SeqCst) {
            self.armed = None;
            return Poll::Pending;
        }
        if self.armed != Some(ROUTE) {
            self.arm(ROUTE);
        }
        if self.timer.as_mut().is_none_or(|timer| timer.as_mut().poll(cx).is_pending()) {
            return Poll::Pending;
        }
        tracing::debug!("a request head was never routed; closing the connection");
        Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, "request head never routed")))
    }

    /// Follows `bytes` (on their way to hyper) through the request framing.
    /// Returns how many of them come before the start of a head that must
    /// wait (a request ended inside them), or the status to refuse with.
    fn follow(&mut self, bytes: &[u8]) -> Result<usize, u16> {
        let mut at = 0;
        while at < bytes.len() {
            let rest = &bytes[at..];
            match &mut self.framing {
                Framing::Head(head) => {
                    let before = head.len();
                    head.extend_from_slice(rest);
                    // Checked on every read, not only at line ends: a head
                    // can go wrong anywhere (`GET\0`), and hyper, which
                    // re-parses its buffer on every read too, would answer
                    // it with its own bare 400.
                    match check_head(head, self.max_header_bytes) {
                        HeadCheck::Partial => return Ok(bytes.len()),
                        HeadCheck::Refuse(status) => return Err(status),
                        HeadCheck::Complete { len, body } => {
                            at += len.saturating_sub(before);
                            self.state.head_len.store(len as u64, Ordering::Relaxed);
                            // In flight from now until it is answered.
                            self.state.routed.store(false, Ordering::SeqCst);
                            self.state.phase.store(BUSY, Ordering::SeqCst);
                            self.framing = match body {
                                Body::Length(0) | Body::Connect => {
                                    self.framing = Framing::Head(Vec::new());
                                    return Ok(at);
                                }
                                Body::Length(n) => Framing::Length(n),
                                Body::Chunked => Framing::Chunked(ChunkedBody::default()),
                            };
                        }
                    }
                }
                Framing::Length(left) => {
                    let n = usize::try_from(*left).unwrap_or(usize::MAX).min(rest.len());
                    at += n;
                    *left -= n as u64;
                    if *left == 0 {
                        self.framing = Framing::Head(Vec::new());
                        return Ok(at);
                    }
                }
                Framing::Chunked(chunk) => match follow_chunks(chunk, rest) {
                    Chunked::More => return Ok(bytes.len()),
                    Chunked::Ended(n) => {
                        self.framing = Framing::Head(Vec::new());
                        return Ok(at + n);
                    }
                    // hyper refuses the body and closes the connection;
                    // nothing after it is a request.
                    Chunked::Malformed => {
                        self.framing = Framing::Opaque;
                        return Ok(bytes.len());
                    }
                },
                Framing::Opaque => return Ok(bytes.len()),
            }
        }
        Ok(at)
    }

    /// The bytes from `before` on in `buf` were just handed over: follow
    /// them, and take back (into `held`) any that start a head too early.
    fn took(&mut self, buf: &mut ReadBuf<'_>, before: usize) -> Poll<io::Result<()>> {
        let new = &buf.filled()[before..];
        if !new.is_empty()
            && matches!(self.framing, Framing::Head(_))
            && self.state.phase.compare_exchange(IDLE, HEAD, Ordering::SeqCst, Ordering::SeqCst).is_ok()
        {
            self.head_started = Some(std::time::Instant::now());
            self.arm(HEAD);
        }
        match self.follow(new) {
            Err(status) => self.refuse(status),
            Ok(keep) => {
                if keep < new.len() {
                    let early = new[keep..].to_vec();
                    self.held.splice(0..0, early);
                    buf.set_filled(before + keep);
                }
                Poll::Ready(Ok(()))
            }
        }
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection refused at the head stage")
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncRead for ClientIo<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            // Registered before the phase is read, so an answer ending in
            // between still wakes this reader.
            this.state.reader.register(cx.waker());
            if this.state.tunnel.load(Ordering::SeqCst) {
                // A tunnel: the bytes held since the CONNECT, then the
                // stream, unchecked and with no deadline here.
                this.timer = None;
                if !this.held.is_empty() {
                    let n = this.held.len().min(buf.remaining());
                    buf.put_slice(&this.held[..n]);
                    this.held.drain(..n);
                    return Poll::Ready(Ok(()));
                }
                if this.held_eof {
                    return Poll::Ready(Ok(()));
                }
                let Some(stream) = this.stream.as_mut() else { return Poll::Ready(Err(gone())) };
                return Pin::new(stream).poll_read(cx, buf);
            }
            let answering = this.state.phase.load(Ordering::SeqCst) == BUSY;
            if !answering {
                if matches!(this.framing, Framing::Opaque) {
                    // Answered (hyper refused it): a head again, if any.
                    this.framing = Framing::Head(Vec::new());
                }
                if !this.held.is_empty() {
                    // The head that waited for the answer before it.
                    let n = this.held.len().min(buf.remaining());
                    let before = buf.filled().len();
                    buf.put_slice(&this.held[..n]);
                    this.held.drain(..n);
                    return this.took(buf, before);
                }
                if this.held_eof {
                    return Poll::Ready(Ok(()));
                }
            }
            if !(answering && matches!(this.framing, Framing::Head(_))) {
                break;
            }
            // A request is being answered and its bytes are all in: what
            // comes now is the next head, held until the answer is done.
            if this.held.len() > this.max_header_bytes || this.held_eof {
                // Enough to refuse it with once it is its turn.
                return this.await_answer(cx);
            }
            let Some(stream) = this.stream.as_mut() else { return Poll::Ready(Err(gone())) };
            let mut chunk = [0u8; 4096];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(stream).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) if read.filled().is_empty() => {
                    if this.held.is_empty() {
                        return Poll::Ready(Ok(()));
                    }
                    this.held_eof = true;
                }
                Poll::Ready(Ok(())) => this.held.extend_from_slice(read.filled()),
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => return this.await_answer(cx),
            }
        }
        let before = buf.filled().len();
        let Some(stream) = this.stream.as_mut() else { return Poll::Ready(Err(gone())) };
        match Pin::new(stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => return this.took(buf, before),
            Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
            Poll::Pending => {}
        }
        let phase = this.state.phase.load(Ordering::SeqCst);
        if phase == BUSY {
            return this.await_answer(cx);
        }
        if this.armed != Some(phase) {
            this.arm(phase);
        }
        // Armed just above, so there is a timer; without one nothing expires.
        if this.timer.as_mut().is_none_or(|timer| timer.as_mut().poll(cx).is_pending()) {
            return Poll::Pending;
        }
        if phase == HEAD {
            this.refuse(408)
        } else {
            // Idle past `idle_timeout`: end the connection as if closed.
            Poll::Ready(Ok(()))
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncWrite for ClientIo<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.stream.as_mut() {
            Some(stream) => this.state.count_written(Pin::new(stream).poll_write(cx, buf)),
            None => Poll::Ready(Err(gone())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let flushed = match this.stream.as_mut() {
            Some(stream) => Pin::new(stream).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        };
        // hyper flushes once all it buffered is written: the response
        // answered last is out.
        if let Poll::Ready(Ok(())) = flushed {
            this.state.flushed();
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stream.as_mut() {
            Some(stream) => Pin::new(stream).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.stream.as_mut() {
            Some(stream) => this.state.count_written(Pin::new(stream).poll_write_vectored(cx, bufs)),
            None => Poll::Ready(Err(gone())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(|stream| stream.is_write_vectored())
    }
}

impl ConnState {
    fn count_written(&self, wrote: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if let Poll::Ready(Ok(n)) = &wrote {
            self.written.fetch_add(*n as u64, Ordering::Relaxed);
        }
        wrote
    }
}

impl<S> ClientIo<S> {
    /// The part of a head that arrived, if one is arriving.
    fn head_seen(&self) -> Option<HeadSeen> {
        match &self.framing {
            Framing::Head(head) if !head.is_empty() => Some(HeadSeen::of(head, self.head_started)),
            _ => None,
        }
    }
}

impl<S> Drop for ClientIo<S> {
    fn drop(&mut self) {
        self.state.io_gone(self.head_seen());
    }
}

impl Drop for ConnState {
    fn drop(&mut self) {
        // Nothing can be waiting once the wrapper is gone, but a record is
        // never lost.
        let pending = self.slot.get_mut().unwrap_or_else(PoisonError::into_inner).pending.take();
        if let Some(pending) = pending {
            self.finish(pending);
        }
    }
}

#[cfg(test)]
#[path = "conn_props.rs"]
mod props;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn check(head: &str, max: usize) -> Option<u16> {
        match check_head(head.as_bytes(), max) {
            HeadCheck::Complete { .. } => Some(0),
            HeadCheck::Partial => None,
            HeadCheck::Refuse(status) => Some(status),
        }
    }

    #[test]
    fn heads_are_judged_as_they_arrive() {
        assert_eq!(check("GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n", 1024), Some(0));
        assert_eq!(check("GET http://a.test/ HTTP/1.1\r\nHost: a.t", 1024), None);
        assert_eq!(check("THIS IS NOT HTTP\r\n\r\n", 1024), Some(400));
        assert_eq!(check("GET http://a.test/ HTTP/1.1\r\nBad Header\r\n\r\n", 1024), Some(400));
        assert_eq!(check(&format!("GET /{} HTTP/1.1\r\n", "a".repeat(2000)), 1024), Some(431));
        let many: String = (0..200).map(|i| format!("X-{i}: 1\r\n")).collect();
        assert_eq!(check(&format!("GET / HTTP/1.1\r\n{many}\r\n"), 1 << 20), Some(431));
    }

    #[test]
    fn chunked_bodies_are_followed_to_their_end() {
        let body = b"3;ext=1\r\nabc\r\n10 \t;x\r\n0123456789abcdef\r\n0\r\nTrailer: x\r\nT2: a\n\r\n\r\nGET";
        let end = body.len() - 3;
        // Whole, and byte by byte.
        let mut chunk = ChunkedBody::default();
        assert_eq!(follow_chunks(&mut chunk, body), Chunked::Ended(end));
        let mut chunk = ChunkedBody::default();
        for (i, byte) in body.iter().enumerate().take(end) {
            let expected = if i + 1 == end { Chunked::Ended(1) } else { Chunked::More };
            assert_eq!(follow_chunks(&mut chunk, std::slice::from_ref(byte)), expected, "at {i}");
        }
    }

    /// Regression (found by `props::chunked_bodies_end_where_hyper_ends_them_and_fail_where_it_fails`):
    /// a body hyper refuses for what it counts or parses besides the
    /// framing (16 KiB of chunk extensions, a trailer section of 16 KiB or
    /// over 100 lines, trailer lines that are not header fields) was taken
    /// as ended, and the bytes after it as the next request's head.
    #[test]
    fn chunked_bodies_hyper_refuses_for_their_extensions_or_trailers_are_refused() {
        let follow = |body: &[u8]| follow_chunks(&mut ChunkedBody::default(), body);
        let ext = |n: usize| [&b"1;"[..], &vec![b'x'; n], b"\r\na\r\n0\r\n\r\n"].concat();
        let lines = |n: usize| [&b"0\r\n"[..], &b"T: v\r\n".repeat(n), b"\r\n"].concat();
        let long = |n: usize| [&b"0\r\nT: "[..], &vec![b'v'; n], b"\r\n\r\n"].concat();
        for (body, ok) in [
            (ext(16_383), true),
            (ext(16_384), false),
            (lines(100), true),
            (lines(101), false),
            // "T: " + value + CRLF + CRLF: 16 KiB less one, then 16 KiB.
            (long(16_376), true),
            (long(16_377), false),
            (b"0\r\n folded\r\n\r\n".to_vec(), false),
            (b"0\r\nT2: a\nb\r\n\r\n".to_vec(), false),
            (b"0\r\nT2: a\nT3: b\r\n\r\n".to_vec(), false),
            (b"0\r\nX: \x7f\r\n\r\n".to_vec(), false),
            // More fields than CRLF-ended lines (hyper has a slot a line).
            (b"0\r\nT2: a\nT3: b\r\nT4: c\r\n\r\n".to_vec(), false),
            (b"0\r\nT2: a\n\r\n\r\n".to_vec(), true),
        ] {
            let shown = String::from_utf8_lossy(&body[..body.len().min(40)]).into_owned();
            let expected = if ok { Chunked::Ended(body.len()) } else { Chunked::Malformed };
            assert_eq!(follow(&body), expected, "{shown:?}");
            // And hyper agrees.
            let request = [props::CHUNKED_POST, &body].concat();
            let served = props::hyper_serves(&request);
            assert_eq!(served.first().map(|s| s.body.is_some()), Some(ok), "{shown:?}");
        }
    }

    /// A head let through as whole that nobody routes (hyper read it as
    /// something else) ends the connection at `header_timeout`; once routed,
    /// the wait for the answer has no deadline.
    #[tokio::test]
    async fn a_head_never_routed_ends_the_connection() {
        let limits = crate::config::Limits { header_timeout: Duration::from_millis(200), ..Default::default() };
        for routed in [false, true] {
            let (near, mut far) = tokio::io::duplex(4096);
            let state = ConnState::new();
            let mut io = ClientIo::new(near, state.clone(), &limits, Arc::new(super::super::respond::head_replies()));
            far.write_all(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n").await.unwrap();
            let mut buf = [0u8; 256];
            let n = io.read(&mut buf).await.unwrap();
            assert!(n > 0);
            if routed {
                state.busy();
            }
            let next = tokio::time::timeout(Duration::from_secs(1), io.read(&mut buf)).await;
            match (routed, next) {
                (false, Ok(Err(err))) => assert_eq!(err.kind(), io::ErrorKind::InvalidData),
                (true, Err(_)) => {}
                (_, other) => panic!("routed: {routed}: {other:?}"),
            }
        }
    }

    #[test]
    fn chunked_framing_hyper_refuses_is_not_followed() {
        // Bare LFs (the end of the body for a lenient reader, not for
        // hyper), a missing size, a size past u64, an LF in an extension.
        for body in [
            &b"0\r\nX-T: a\n\n"[..],
            b"0\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"0\r\n\n",
            b"\r\n",
            b"x\r\n",
            b"11111111111111111\r\n",
            b"1;a\nb\r\n",
            b"1\r\nab\r\n",
        ] {
            let mut chunk = ChunkedBody::default();
            let followed = follow_chunks(&mut chunk, body);
            assert!(
                matches!(followed, Chunked::Malformed | Chunked::More),
                "{:?}: {followed:?}",
                String::from_utf8_lossy(body)
            );
            assert!(!matches!(followed, Chunked::Ended(_)));
        }
        // A bare LF inside a trailer line is part of it (as for hyper).
        let mut chunk = ChunkedBody::default();
        assert_eq!(follow_chunks(&mut chunk, b"0\r\nX-T: a\n\n"), Chunked::More);
        assert_eq!(follow_chunks(&mut chunk, b"\r\n\r\n"), Chunked::Ended(4));
    }

    #[test]
    fn heads_know_their_bodies() {
        let body = |head: &str| match check_head(head.as_bytes(), 1024) {
            HeadCheck::Complete { body, .. } => Some(body),
            _ => None,
        };
        let post = |headers: &str| body(&format!("POST http://a.test/ HTTP/1.1\r\n{headers}\r\n"));
        assert_eq!(body("GET http://a.test/ HTTP/1.1\r\n\r\n"), Some(Body::Length(0)));
        assert_eq!(post("Content-Length: 7\r\n"), Some(Body::Length(7)));
        assert_eq!(post("Content-Length: 0007\r\nContent-Length: 7\r\n"), Some(Body::Length(7)));
        assert_eq!(post("Transfer-Encoding: chunked\r\n"), Some(Body::Chunked));
        assert_eq!(post("Transfer-Encoding: \tCHUNKED\r\n"), Some(Body::Chunked));
        assert_eq!(body("CONNECT a.test:443 HTTP/1.1\r\n\r\n"), Some(Body::Connect));
        assert_eq!(body("CONNECT a.test:443 HTTP/1.0\r\nContent-Length: 0\r\n\r\n"), Some(Body::Connect));
        assert_eq!(post(&format!("Content-Length: {MAX_CONTENT_LENGTH}\r\n")), Some(Body::Length(MAX_CONTENT_LENGTH)));
    }

    /// Regression (audit F3, F4, F6): every head hyper would refuse with its
    /// own bare 400, and every framing the proxy would not forward as sent,
    /// is refused here (so the answer carries `Proxy-Status`).
    #[test]
    fn framing_other_than_one_length_or_chunked_is_refused() {
        let post = |headers: &str| check(&format!("POST http://a.test/ HTTP/1.1\r\n{headers}\r\n"), 1024);
        for headers in [
            // Transfer codings other than exactly `chunked` (F3).
            "Transfer-Encoding: gzip, chunked\r\n",
            "Transfer-Encoding: identity, chunked\r\n",
            "Transfer-Encoding: foo, chunked\r\n",
            "Transfer-Encoding: chunked, identity\r\n",
            "Transfer-Encoding: chunked, chunked\r\n",
            "Transfer-Encoding: , chunked\r\n",
            "Transfer-Encoding: chunked,\r\n",
            "Transfer-Encoding: xchunked\r\n",
            "Transfer-Encoding: gzip\r\n",
            "Transfer-Encoding: \r\n",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
            // Lengths that are not only ASCII digits, or too large (F4).
            "Content-Length: +5\r\n",
            "Content-Length: -5\r\n",
            "Content-Length: 0x5\r\n",
            "Content-Length: 5, 5\r\n",
            "Content-Length: \r\n",
            "Content-Length: 1\r\nContent-Length: 2\r\n",
            "Content-Length: x\r\n",
            "Content-Length: 18446744073709551614\r\n",
            "Content-Length: 99999999999999999999999\r\n",
            // Both framings.
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        ] {
            assert_eq!(post(headers), Some(400), "{headers:?}");
        }
        // Transfer-Encoding in HTTP/1.0 (F4).
        assert_eq!(check("POST http://a.test/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 1024), Some(400));
        // A CONNECT with content (F6).
        for headers in ["Content-Length: 5\r\n", "Transfer-Encoding: chunked\r\n", "Content-Length: 0, 0\r\n"] {
            let head = format!("CONNECT a.test:443 HTTP/1.1\r\n{headers}\r\n");
            assert_eq!(check(&head, 1024), Some(400), "{head:?}");
        }
        // A header name hyper would refuse with its own 431.
        let name = "X".repeat(MAX_HEADER_NAME);
        assert_eq!(check(&format!("GET http://a.test/ HTTP/1.1\r\n{name}: 1\r\n\r\n"), 1 << 20), Some(431));
    }
}
