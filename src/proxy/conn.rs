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
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
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
            // Both framings at once is how request smuggling starts (hyper
            // would quietly prefer Transfer-Encoding): refuse it here, before
            // anything is parsed further or forwarded.
            let has = |name: &str| request.headers.iter().any(|h| h.name.eq_ignore_ascii_case(name));
            if has("content-length") && has("transfer-encoding") {
                return HeadCheck::Refuse(400);
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

/// A client connection (TCP, or TLS over TCP) with idle and head deadlines.
pub(crate) struct ClientIo<S> {
    /// `None` once a refusal handed the socket to its own closing task.
    stream: Option<S>,
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
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed: None,
            head: Some(Vec::new()),
        }
    }

    /// Hands the socket to a task that writes the refusal for `status`,
    /// closes its side, and reads (discarding) until the client closes, so
    /// unread request bytes do not reset the connection under the reply.
    /// hyper gets an error and will not answer itself.
    fn refuse(&mut self, status: u16) -> Poll<io::Result<()>> {
        self.state.refused.store(status, Ordering::SeqCst);
        if let Some(mut stream) = self.stream.take() {
            let replies = self.replies.clone();
            tokio::spawn(async move {
                let reply = match status {
                    408 => &replies.timeout,
                    431 => &replies.too_large,
                    _ => &replies.malformed,
                };
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
        let after = if phase == HEAD { self.header_timeout } else { self.idle_timeout };
        self.timer.as_mut().reset(Instant::now() + after);
        self.armed = Some(phase);
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection refused at the head stage")
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncRead for ClientIo<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let phase = this.state.phase.load(Ordering::SeqCst);
        if phase == BUSY {
            this.armed = None;
            // Ready to check the next head. (Bytes hyper reads ahead while
            // busy are left to hyper's own checks.)
            this.head = Some(Vec::new());
            this.state.reader.register(cx.waker());
            let Some(stream) = this.stream.as_mut() else { return Poll::Ready(Err(gone())) };
            return Pin::new(stream).poll_read(cx, buf);
        }
        let before = buf.filled().len();
        let Some(stream) = this.stream.as_mut() else { return Poll::Ready(Err(gone())) };
        match Pin::new(stream).poll_read(cx, buf) {
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

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncWrite for ClientIo<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut().stream.as_mut() {
            Some(stream) => Pin::new(stream).poll_write(cx, buf),
            None => Poll::Ready(Err(gone())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stream.as_mut() {
            Some(stream) => Pin::new(stream).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
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
        match self.get_mut().stream.as_mut() {
            Some(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            None => Poll::Ready(Err(gone())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(|stream| stream.is_write_vectored())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(head: &str, max: usize) -> Option<u16> {
        match check_head(head.as_bytes(), max) {
            HeadCheck::Complete => Some(0),
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
}
