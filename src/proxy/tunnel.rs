//! CONNECT tunnels: connect to the origin (resolver + guard), answer
//! `200`, then copy bytes both ways until either side closes, the tunnel
//! idles past `tunnel_idle_timeout`, or shutdown cuts it; the record is
//! written when it ends.

use std::cell::RefCell;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use jiff::Timestamp;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::conn::ClientIo;
use super::context::{Ctx, PolicyWatch};
use super::respond::{ProxyBody, Refusal, refuse, tunnel_established};
use super::{intercept, splice};
use crate::access_log::ClosedBy;
use crate::config::NonTlsTunnels;
use crate::policy::{Action, Host, Identity};
use crate::tls::peek::{Peeked, read_client_hello};

/// Answers a CONNECT the policy blocks when `[intercept]` is configured:
/// `200`, then TLS as the host with a minted certificate and the block page
/// (`403`) inside, so the browser shows why.
pub(crate) fn intercept_blocked(
    mut ctx: Ctx,
    req: Request<Incoming>,
    host: &Host,
    minter: std::sync::Arc<crate::tls::mint::Minter>,
) -> Response<ProxyBody> {
    let token = ctx.shared.enter();
    let host = host.clone();
    tokio::spawn(async move {
        let _token = token;
        let mut client = match hyper::upgrade::on(req).await {
            Ok(upgraded) => TokioIo::new(upgraded),
            Err(err) => {
                tracing::debug!(%err, "CONNECT upgrade failed");
                Box::pin(ctx.log(403, ClosedBy::Error)).await;
                return;
            }
        };
        let mut first = Vec::new();
        let wait = ctx.snap.config.limits.sni_peek_timeout;
        match read_client_hello(&mut client, &mut first, wait).await {
            Ok(Peeked::ClientHello { sni }) => {
                let sni = sni.and_then(|name| Host::parse(&name).ok());
                let name = sni.as_ref().unwrap_or(&host).to_string();
                ctx.sni = sni.map(|h| h.to_string());
                if let Err(err) = Box::pin(intercept::serve_block_page(&mut ctx, &minter, client, first, &name)).await {
                    tracing::debug!(%err, host = %ctx.host, "block page over TLS not delivered");
                }
            }
            _ => ctx.set_up(first.len() as u64),
        }
        Box::pin(ctx.log(403, ClosedBy::Proxy)).await;
    });
    tunnel_established()
}

/// Opens the tunnel for an allowed CONNECT.
pub(crate) async fn tunnel(
    ctx: Ctx,
    req: Request<Incoming>,
    host: &Host,
    port: u16,
    valid_until: Option<Timestamp>,
) -> Response<ProxyBody> {
    let snap = ctx.snap.clone();
    let mut ctx = ctx;
    let origin = match snap.resolver.connect(host, port, &snap.guard, snap.config.limits.connect_timeout).await {
        Ok((stream, addr)) => {
            ctx.server = Some(addr.ip());
            stream
        }
        Err(err) => {
            tracing::debug!(%err, host = %ctx.host, "tunnel connect failed");
            return refuse(ctx, Refusal::from(&err)).await;
        }
    };
    let token = ctx.shared.enter();
    let host = host.clone();
    let gauge = crate::metrics::GaugeGuard::new(&ctx.shared.metrics.active_tunnels);
    // Taken now so the request itself is not part of the tunnel's task.
    let upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let _token = token;
        let _gauge = gauge;
        match upgrade.await {
            Ok(upgraded) => match upgraded.downcast::<TokioIo<ClientIo<TcpStream>>>() {
                // A plain TCP client: the tunnel gets the socket itself
                // (and the zero-copy pump), with the bytes hyper and the
                // connection wrapper had read ahead.
                Ok(parts) => match parts.io.into_inner().into_tunnel() {
                    Some((stream, held)) => {
                        // hyper's bytes share its whole read buffer: copy
                        // them out and let the buffer go before the tunnel
                        // idles for hours.
                        let read_ahead = parts.read_buf;
                        let mut early = Vec::with_capacity(read_ahead.len() + held.len());
                        early.extend_from_slice(&read_ahead);
                        early.extend_from_slice(&held);
                        drop((read_ahead, held));
                        // Boxed, as the TLS branch below: the task itself
                        // then holds only what is captured above.
                        Box::pin(run(ctx, stream, early, origin, host, valid_until)).await;
                    }
                    None => {
                        ctx.set_up(0);
                        Box::pin(ctx.log(200, ClosedBy::Error)).await;
                    }
                },
                // A TLS client connection: copied through the upgrade.
                Err(upgraded) => {
                    Box::pin(run(ctx, TokioIo::new(upgraded), Vec::new(), origin, host, valid_until)).await;
                }
            },
            Err(err) => {
                tracing::debug!(%err, "CONNECT upgrade failed");
                ctx.set_up(0);
                Box::pin(ctx.log(200, ClosedBy::Error)).await;
            }
        }
    });
    tunnel_established()
}

/// A tunnel's client side.
trait TunnelClient: AsyncRead + AsyncWrite + Unpin {
    /// The plain TCP socket underneath, when the bytes can be spliced.
    fn tcp(&self) -> Option<&TcpStream>;
}

impl TunnelClient for TcpStream {
    fn tcp(&self) -> Option<&TcpStream> {
        Some(self)
    }
}

impl TunnelClient for TokioIo<hyper::upgrade::Upgraded> {
    fn tcp(&self) -> Option<&TcpStream> {
        None
    }
}

/// The life of an open tunnel: peek at the first bytes (`early`, then the
/// client's) for a TLS server name and decide on it too (the stricter
/// decision wins), then copy until it ends, and log it. The futures of the
/// rare or one-off steps (peek, block page, log write) are boxed: a task's
/// allocation is as large as its largest state, and an idle tunnel should
/// carry only the copy loop's.
async fn run<C: TunnelClient>(
    mut ctx: Ctx,
    mut client: C,
    early: Vec<u8>,
    mut origin: TcpStream,
    host: Host,
    valid_until: Option<Timestamp>,
) {
    let snap = ctx.snap.clone();
    let shared = ctx.shared.clone();
    let opened = tokio::time::Instant::now();
    let (user, client_ip) = (ctx.user.clone(), ctx.client.ip());
    let stop = |also: Option<Host>| {
        let watch = PolicyWatch { user: user.clone(), client: client_ip, host: host.clone(), also, valid_until };
        watch.until_cut_or_blocked(shared.clone())
    };
    let mut first = Vec::new();
    let mut reader = early.as_slice().chain(&mut client);
    let peeking = Box::pin(read_client_hello(&mut reader, &mut first, snap.config.limits.sni_peek_timeout));
    let peeked = tokio::select! {
        peeked = peeking => peeked,
        closed_by = Box::pin(stop(None)) => {
            ctx.set_up(0);
            Box::pin(ctx.log(200, closed_by)).await;
            return;
        }
    };
    // Early bytes the peek did not need go on to the origin after it.
    first.extend_from_slice(reader.into_inner().0);
    drop(early);
    ctx.set_up(first.len() as u64);
    let mut also = None;
    match peeked {
        Ok(Peeked::ClientHello { sni: Some(name) }) => match Host::parse(&name) {
            Ok(sni_host) => {
                ctx.sni = Some(sni_host.to_string());
                if sni_host != host {
                    let policy = &snap.config.policy;
                    let placement =
                        policy.place(&Identity { user: ctx.user.as_deref(), client_ip: Some(ctx.client.ip()) });
                    let decision = policy.decide(placement, &sni_host, shared.clock.now());
                    if decision.action > ctx.action {
                        ctx.decided(&decision);
                    }
                    also = Some(sni_host);
                }
            }
            Err(_) => {
                // An SNI that is no valid host name (`www.facebook.com..`)
                // cannot be decided: fail closed.
                ctx.sni = Some(name);
                ctx.rule = "request".into();
                ctx.action = Action::Block;
                Box::pin(ctx.log(400, ClosedBy::Proxy)).await;
                return;
            }
        },
        Ok(Peeked::ClientHello { sni: None }) => {}
        Ok(Peeked::NotTls) => {
            if snap.config.proxy.non_tls_tunnels == NonTlsTunnels::Refuse {
                ctx.rule = "non_tls_tunnels".into();
                ctx.action = Action::Block;
            }
        }
        Ok(Peeked::Closed) => {
            Box::pin(ctx.log(200, ClosedBy::Client)).await;
            return;
        }
        Ok(Peeked::Malformed(why)) => {
            // Truncated, oversized or garbage TLS: nothing reaches the origin.
            // (Not "non-TLS": a hello that stalls half-way must not slip past
            // the SNI check by waiting out the peek timeout.)
            tracing::debug!(why, host = %ctx.host, "malformed ClientHello; closing the tunnel");
            ctx.action = Action::Block;
            if snap.config.proxy.non_tls_tunnels == NonTlsTunnels::Refuse {
                ctx.rule = "non_tls_tunnels".into();
                Box::pin(ctx.log(403, ClosedBy::Policy)).await;
            } else {
                ctx.rule = "request".into();
                Box::pin(ctx.log(400, ClosedBy::Proxy)).await;
            }
            return;
        }
        Err(err) => {
            tracing::debug!(%err, host = %ctx.host, "tunnel read failed before the ClientHello");
            Box::pin(ctx.log(200, ClosedBy::Error)).await;
            return;
        }
    }
    if ctx.action == Action::Block {
        // The 200 is already sent: with `[intercept]` the block page is
        // served over TLS, else closing is all that is left.
        if let Some(minter) = snap.minter.clone()
            && ctx.rule != "non_tls_tunnels"
        {
            let name = ctx.sni.clone().unwrap_or_else(|| host.to_string());
            if let Err(err) = Box::pin(intercept::serve_block_page(&mut ctx, &minter, client, first, &name)).await {
                tracing::debug!(%err, host = %ctx.host, "block page over TLS not delivered");
            }
        }
        Box::pin(ctx.log(403, ClosedBy::Policy)).await;
        return;
    }
    if !first.is_empty() && origin.write_all(&first).await.is_err() {
        Box::pin(ctx.log(200, ClosedBy::Origin)).await;
        return;
    }
    let sent_first = first.len() as u64;
    // Held for the tunnel's whole life otherwise.
    drop(first);
    let idle = snap.config.limits.tunnel_idle_timeout;
    // A tunnel with no bytes yet has idled since it opened (the wait for a
    // ClientHello counts).
    let quiet_since = if sent_first == 0 { opened } else { tokio::time::Instant::now() };
    let stop = std::pin::pin!(stop(also));
    let (up, down, closed_by) = match client.tcp() {
        Some(tcp) => splice::pump(tcp, &origin, idle, quiet_since, stop).await,
        None => pump(&mut client, &mut origin, idle, quiet_since, stop).await,
    };
    // Closed before the record is queued: a full log queue must not hold
    // the tunnel's FINs back.
    drop((client, origin));
    ctx.set_up(sent_first + up);
    ctx.bytes_down = down;
    Box::pin(ctx.log(200, closed_by)).await;
}

/// Size of one copy buffer.
const COPY_BUF: usize = 64 * 1024;
/// Spare copy buffers kept per runtime thread.
const POOL_MAX: usize = 8;

thread_local! {
    /// Copy buffers not lent to a read right now. A tunnel borrows one only
    /// from a read that returned bytes until they are written, so an idle
    /// tunnel holds no buffer at all, and a busy one reuses warm memory.
    static POOL: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer from this thread's pool, or a fresh one.
fn lend() -> Box<[u8]> {
    POOL.with_borrow_mut(Vec::pop).unwrap_or_else(|| vec![0u8; COPY_BUF].into_boxed_slice())
}

/// Returns a buffer to this thread's pool (dropped when the pool is full).
fn give_back(buf: Box<[u8]>) {
    POOL.with_borrow_mut(|pool| {
        if pool.len() < POOL_MAX {
            pool.push(buf);
        }
    });
}

/// The copy buffer of one direction: held only while bytes are in flight.
#[derive(Default)]
struct CopyBuf(Option<Box<[u8]>>);

impl CopyBuf {
    /// Reads into a lent buffer; a read that would wait gives the buffer
    /// back before waiting. Returns the bytes now at the front.
    fn read_from<'a, R: AsyncRead + Unpin>(
        &'a mut self,
        reader: &'a mut R,
    ) -> impl Future<Output = std::io::Result<usize>> + 'a {
        std::future::poll_fn(move |cx| {
            let mut buf = self.0.take().unwrap_or_else(lend);
            let mut read_buf = ReadBuf::new(&mut buf[..]);
            match Pin::new(&mut *reader).poll_read(cx, &mut read_buf) {
                Poll::Ready(Ok(())) => {
                    let n = read_buf.filled().len();
                    if n == 0 {
                        give_back(buf);
                    } else {
                        self.0 = Some(buf);
                    }
                    Poll::Ready(Ok(n))
                }
                Poll::Ready(Err(err)) => {
                    give_back(buf);
                    Poll::Ready(Err(err))
                }
                Poll::Pending => {
                    give_back(buf);
                    Poll::Pending
                }
            }
        })
    }

    fn data(&self, n: usize) -> &[u8] {
        self.0.as_deref().and_then(|buf| buf.get(..n)).unwrap_or_default()
    }

    /// Gives the buffer back once its bytes are written.
    fn release(&mut self) {
        if let Some(buf) = self.0.take() {
            give_back(buf);
        }
    }
}

/// Copies both ways; returns (client->origin bytes, origin->client bytes,
/// who ended it). When one side closes, the other's write half is shut and
/// the copy runs on until it closes too (or idles out). `stop` ends it early
/// with the reason it gives (shutdown, policy).
async fn pump<C, F>(
    client: &mut C,
    origin: &mut TcpStream,
    idle: Duration,
    quiet_since: tokio::time::Instant,
    mut stop: Pin<&mut F>,
) -> (u64, u64, ClosedBy)
where
    C: AsyncRead + AsyncWrite + Unpin,
    F: std::future::Future<Output = ClosedBy>,
{
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut origin_read, mut origin_write) = origin.split();
    let (mut up_buf, mut down_buf) = (CopyBuf::default(), CopyBuf::default());
    let (mut up, mut down) = (0u64, 0u64);
    let (mut client_open, mut origin_open) = (true, true);
    let mut first_close: Option<ClosedBy> = None;
    // One timer for the tunnel's life: activity only moves a deadline, and
    // the timer is re-armed when it fires early.
    let mut last_activity = quiet_since;
    let idle_timer = tokio::time::sleep_until(quiet_since + idle);
    tokio::pin!(idle_timer);
    while client_open || origin_open {
        tokio::select! {
            read = up_buf.read_from(&mut client_read), if client_open => match read {
                Ok(0) => {
                    client_open = false;
                    first_close.get_or_insert(ClosedBy::Client);
                    let _ = origin_write.shutdown().await;
                }
                Ok(n) => {
                    let written = origin_write.write_all(up_buf.data(n)).await;
                    up_buf.release();
                    if written.is_err() {
                        return (up, down, first_close.unwrap_or(ClosedBy::Origin));
                    }
                    up += n as u64;
                    last_activity = tokio::time::Instant::now();
                }
                Err(_) => return (up, down, first_close.unwrap_or(ClosedBy::Client)),
            },
            read = down_buf.read_from(&mut origin_read), if origin_open => match read {
                Ok(0) => {
                    origin_open = false;
                    first_close.get_or_insert(ClosedBy::Origin);
                    let _ = client_write.shutdown().await;
                }
                Ok(n) => {
                    let written = client_write.write_all(down_buf.data(n)).await;
                    down_buf.release();
                    if written.is_err() {
                        return (up, down, first_close.unwrap_or(ClosedBy::Client));
                    }
                    down += n as u64;
                    last_activity = tokio::time::Instant::now();
                }
                Err(_) => return (up, down, first_close.unwrap_or(ClosedBy::Origin)),
            },
            () = &mut idle_timer => {
                let deadline = last_activity + idle;
                if tokio::time::Instant::now() >= deadline {
                    return (up, down, first_close.unwrap_or(ClosedBy::Timeout));
                }
                idle_timer.as_mut().reset(deadline);
            }
            reason = stop.as_mut() => return (up, down, reason),
        }
    }
    (up, down, first_close.unwrap_or(ClosedBy::Client))
}
