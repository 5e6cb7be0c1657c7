//! The client connection's I/O, with the limits hyper does not enforce the
//! way the SPEC wants: `idle_timeout` between requests (the connection is
//! closed quietly) and `header_timeout` for a request head that started
//! arriving but did not finish (a `408` is written and the connection closed).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
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
    head_timed_out: AtomicBool,
    /// The reader parked while a request was served, woken when it ends so
    /// the idle deadline is armed.
    reader: AtomicWaker,
}

impl ConnState {
    pub(crate) fn new() -> Arc<ConnState> {
        Arc::new(ConnState {
            phase: AtomicU8::new(IDLE),
            head_timed_out: AtomicBool::new(false),
            reader: AtomicWaker::new(),
        })
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

    /// Whether the connection ended because a head was too slow.
    pub(crate) fn head_timed_out(&self) -> bool {
        self.head_timed_out.load(Ordering::SeqCst)
    }
}

/// A client `TcpStream` with idle and head deadlines.
pub(crate) struct ClientIo {
    stream: TcpStream,
    state: Arc<ConnState>,
    header_timeout: Duration,
    idle_timeout: Duration,
    /// The `408` to write when a head times out.
    timeout_reply: Arc<[u8]>,
    timer: Pin<Box<Sleep>>,
    /// The phase the timer is armed for.
    armed: Option<u8>,
}

impl ClientIo {
    pub(crate) fn new(
        stream: TcpStream,
        state: Arc<ConnState>,
        header_timeout: Duration,
        idle_timeout: Duration,
        timeout_reply: Arc<[u8]>,
    ) -> ClientIo {
        ClientIo {
            stream,
            state,
            header_timeout,
            idle_timeout,
            timeout_reply,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed: None,
        }
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
            this.state.reader.register(cx.waker());
            return Pin::new(&mut this.stream).poll_read(cx, buf);
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before
                    && this.state.phase.compare_exchange(IDLE, HEAD, Ordering::SeqCst, Ordering::SeqCst).is_ok()
                {
                    this.arm(HEAD);
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
            // Best effort: the socket buffer is empty, a short reply fits.
            let _ = this.stream.try_write(&this.timeout_reply);
            this.state.head_timed_out.store(true, Ordering::SeqCst);
            Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "request head timed out")))
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
