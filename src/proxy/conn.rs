//! The client connection's I/O, with the limits hyper does not enforce the
//! way the SPEC wants: `idle_timeout` between requests (the connection is
//! closed quietly), `header_timeout` for a request head that started
//! arriving but did not finish (`408`), and the request head itself checked
//! as it arrives: malformed (`400`) or over `max_header_bytes` (`431`). Those
//! answers are written here, straight to the socket, so they carry
//! `Proxy-Status` like every other response the proxy makes (hyper's own
//! automatic error responses would not).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU16, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

const IDLE: u8 = 0;
const HEAD: u8 = 1;
const BUSY: u8 = 2;

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
}

impl ConnState {
    pub(crate) fn new() -> Arc<ConnState> {
        Arc::new(ConnState { phase: AtomicU8::new(IDLE), refused: AtomicU16::new(0), reader: AtomicWaker::new() })
    }

    /// A request head was parsed: no read deadline while it is served.
    pub(crate) fn busy(&self) {
        self.phase.store(BUSY, Ordering::SeqCst);
    }

    /// The request was answered: the connection idles until the next head.
    pub(crate) fn idle(&self) {
        if self.phase.compare_exchange(BUSY, IDLE, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            self.reader.wake();
        }
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

/// How a head that is still arriving looks so far.
enum HeadCheck {
    Complete,
    Partial,
    Refuse(u16),
}

fn check_head(bytes: &[u8], max: usize) -> HeadCheck {
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => {
            if len > max {
                return HeadCheck::Refuse(431);
            }
            // hyper also refuses a target `http::Uri` cannot hold.
            match request.path.map(str::parse::<http::Uri>) {
                Some(Ok(_)) => HeadCheck::Complete,
                _ => HeadCheck::Refuse(400),
            }
        }
        Ok(httparse::Status::Partial) if bytes.len() > max => HeadCheck::Refuse(431),
        Ok(httparse::Status::Partial) => HeadCheck::Partial,
        Err(httparse::Error::TooManyHeaders) => HeadCheck::Refuse(431),
        Err(_) => HeadCheck::Refuse(400),
    }
}

/// A client `TcpStream` with idle and head deadlines.
pub(crate) struct ClientIo {
    stream: TcpStream,
    state: Arc<ConnState>,
    header_timeout: Duration,
    idle_timeout: Duration,
    max_header_bytes: usize,
    replies: Arc<HeadReplies>,
    timer: Pin<Box<Sleep>>,
    /// The phase the timer is armed for.
    armed: Option<u8>,
    /// The head arriving, until it is complete (then `None` until the next).
    head: Option<Vec<u8>>,
}

impl ClientIo {
    pub(crate) fn new(
        stream: TcpStream,
        state: Arc<ConnState>,
        limits: &crate::config::Limits,
        replies: Arc<HeadReplies>,
    ) -> ClientIo {
        ClientIo {
            stream,
            state,
            header_timeout: limits.header_timeout,
            idle_timeout: limits.idle_timeout,
            max_header_bytes: limits.max_header_bytes,
            replies,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed: None,
            head: Some(Vec::new()),
        }
    }

    /// Writes the refusal for `status` (best effort: the socket's send
    /// buffer is empty at this stage, a short reply fits) and ends the
    /// connection with an error hyper will not answer itself.
    fn refuse(&mut self, status: u16) -> Poll<io::Result<()>> {
        let reply = match status {
            408 => &self.replies.timeout,
            431 => &self.replies.too_large,
            _ => &self.replies.malformed,
        };
        let _ = self.stream.try_write(reply);
        self.state.refused.store(status, Ordering::SeqCst);
        Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, "request head refused")))
    }

    fn arm(&mut self, phase: u8) {
        let after = if phase == HEAD { self.header_timeout } else { self.idle_timeout };
        self.timer.as_mut().reset(Instant::now() + after);
        self.armed = Some(phase);
    }
}

impl AsyncRead for ClientIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let phase = this.state.phase.load(Ordering::SeqCst);
        if phase == BUSY {
            this.armed = None;
            // Ready to check the next head. (Bytes hyper reads ahead while
            // busy are left to hyper's own checks.)
            this.head = Some(Vec::new());
            this.state.reader.register(cx.waker());
            return Pin::new(&mut this.stream).poll_read(cx, buf);
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                if !new.is_empty()
                    && this.state.phase.compare_exchange(IDLE, HEAD, Ordering::SeqCst, Ordering::SeqCst).is_ok()
                {
                    this.arm(HEAD);
                }
                if let Some(head) = &mut this.head {
                    head.extend_from_slice(new);
                    // A head can only end or go wrong at a line end worth
                    // re-parsing for; a trickle of bytes costs no parsing.
                    let worth = new.contains(&b'\n') || head.len() > this.max_header_bytes;
                    let check = if worth { check_head(head, this.max_header_bytes) } else { HeadCheck::Partial };
                    match check {
                        HeadCheck::Partial => {}
                        HeadCheck::Complete => this.head = None,
                        HeadCheck::Refuse(status) => return this.refuse(status),
                    }
                }
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
            Poll::Pending => {}
        }
        if this.armed != Some(phase) {
            this.arm(phase);
        }
        if this.timer.as_mut().poll(cx).is_pending() {
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

impl AsyncWrite for ClientIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
