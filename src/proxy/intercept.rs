//! `[intercept]`: instead of a CONNECT `403` that browsers never show, the
//! proxy answers `200`, completes TLS as the requested host with a leaf
//! certificate minted by the company CA ([`crate::tls::mint`]), reads the
//! request inside and answers the HTML block page (`403`). Allowed tunnels
//! are never intercepted.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::context::Ctx;
use super::respond;

/// The most request-head bytes read inside the intercepted TLS connection.
const MAX_HEAD: usize = 64 * 1024;

/// Why the block page could not be served over TLS.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InterceptError {
    #[error("cannot mint a certificate: {0}")]
    Mint(#[from] crate::tls::mint::MintError),
    #[error("TLS handshake with the client failed: {0}")]
    Handshake(std::io::Error),
    #[error("the client sent no request in time")]
    Timeout,
    #[error("no certificate could be minted in time")]
    MintTimeout,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Completes TLS with `client` as `name` (the SNI name, else the CONNECT
/// host), replaying `first` (bytes already read: the ClientHello), then
/// answers one request with the block page. Byte counts go into `ctx`.
pub(crate) async fn serve_block_page<C>(
    ctx: &mut Ctx,
    minter: &Arc<crate::tls::mint::Minter>,
    client: C,
    first: Vec<u8>,
    name: &str,
) -> Result<(), InterceptError>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let wait = ctx.snap.config.limits.header_timeout;
    // What the client sent counts even when no TLS follows.
    ctx.set_up(first.len() as u64);
    // The system clock, not the proxy's `Clock`: the certificate must be
    // valid by the browser's clock.
    let minted = tokio::time::timeout(wait, minter.server_config_off_runtime(name, jiff::Timestamp::now()));
    let config = match minted.await {
        Ok(Ok(config)) => config,
        Err(_) => return Err(InterceptError::MintTimeout),
        Ok(Err(err)) => {
            // The admin's problem (e.g. the CA expired), not the client's.
            tracing::warn!(%err, host = name, "no block page over TLS");
            return Err(err.into());
        }
    };
    let up = Arc::new(AtomicU64::new(first.len() as u64));
    let down = Arc::new(AtomicU64::new(0));
    let io = Rewind { first, pos: 0, inner: client, up: up.clone(), down: down.clone() };
    let result = serve(io, config, wait, respond::block_page_bytes(ctx)).await;
    ctx.set_up(up.load(Ordering::Relaxed));
    ctx.bytes_down = down.load(Ordering::Relaxed);
    result
}

async fn serve<C: AsyncRead + AsyncWrite + Unpin>(
    io: C,
    config: Arc<rustls::ServerConfig>,
    wait: Duration,
    page: Vec<u8>,
) -> Result<(), InterceptError> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let mut tls = match tokio::time::timeout(wait, acceptor.accept(io)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(err)) => return Err(InterceptError::Handshake(err)),
        Err(_) => return Err(InterceptError::Timeout),
    };
    // Read the request head (whatever it asks for, the answer is the same).
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let read_head = async {
        loop {
            let n = tls.read(&mut chunk).await?;
            if n == 0 {
                return Ok::<bool, std::io::Error>(false);
            }
            head.extend_from_slice(&chunk[..n]);
            if head.windows(4).any(|w| w == b"\r\n\r\n") || head.len() >= MAX_HEAD {
                return Ok(true);
            }
        }
    };
    match tokio::time::timeout(wait, read_head).await {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => return Ok(()),
        Ok(Err(err)) => return Err(err.into()),
        Err(_) => return Err(InterceptError::Timeout),
    }
    let answer = async {
        tls.write_all(&page).await?;
        tls.shutdown().await
    };
    match tokio::time::timeout(wait, answer).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => return Err(err.into()),
        Err(_) => return Err(InterceptError::Timeout),
    }
    // Closing with bytes of the client's still unread (a request body, or
    // anything sent before it saw the page) would reset the connection, and
    // some clients then drop the page unread: read and discard what comes,
    // below TLS, until the client closes or for a little while (as the
    // proxy's other refusals and Squid's lingering close do).
    let (mut io, _) = tls.into_inner();
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(LINGER, async { while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {} }).await;
    Ok(())
}

/// How long the block page's connection waits for the client to close.
const LINGER: Duration = Duration::from_secs(2);

/// The client connection with the bytes already read from it put back in
/// front, counting what crosses in each direction.
struct Rewind<C> {
    first: Vec<u8>,
    pos: usize,
    inner: C,
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
}

impl<C: AsyncRead + Unpin> AsyncRead for Rewind<C> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.pos < this.first.len() {
            let n = (this.first.len() - this.pos).min(buf.remaining());
            buf.put_slice(&this.first[this.pos..this.pos + n]);
            this.pos += n;
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.up.fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
        poll
    }
}

impl<C: AsyncWrite + Unpin> AsyncWrite for Rewind<C> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = &poll {
            self.down.fetch_add(*n as u64, Ordering::Relaxed);
        }
        poll
    }

    /// Passed through, not left to the default (first buffer only): when
    /// a handshake fails after the ServerHello is queued (TLS 1.3, e.g. no
    /// ALPN protocol in common), tokio-rustls makes one last write, and
    /// only a vectored one carries the alert after the ServerHello.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &poll {
            self.down.fetch_add(*n as u64, Ordering::Relaxed);
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
