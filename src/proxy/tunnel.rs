//! CONNECT tunnels: connect to the origin (resolver + guard), answer
//! `200`, then copy bytes both ways until either side closes, the tunnel
//! idles past `tunnel_idle_timeout`, or shutdown cuts it; the record is
//! written when it ends.

use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use jiff::Timestamp;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::context::{Ctx, PolicyWatch};
use super::respond::{ProxyBody, Refusal, refuse, tunnel_established};
use super::{Phase, sni};
use crate::access_log::ClosedBy;
use crate::config::NonTlsTunnels;
use crate::policy::{Action, Host, Identity};

/// Opens the tunnel for an allowed CONNECT.
pub(crate) async fn tunnel(
    ctx: Ctx,
    req: Request<Incoming>,
    host: &Host,
    port: u16,
    valid_until: Option<Timestamp>,
) -> Response<ProxyBody> {
    let snap = ctx.snap.clone();
    let origin = match snap.resolver.connect(host, port, &snap.guard, snap.config.limits.connect_timeout).await {
        Ok((stream, _)) => stream,
        Err(err) => {
            tracing::debug!(%err, host = %ctx.host, "tunnel connect failed");
            return refuse(ctx, Refusal::from(&err)).await;
        }
    };
    let token = ctx.shared.enter();
    let host = host.clone();
    tokio::spawn(async move {
        let _token = token;
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => run(ctx, TokioIo::new(upgraded), origin, host, valid_until).await,
            Err(err) => {
                tracing::debug!(%err, "CONNECT upgrade failed");
                ctx.set_up(0);
                ctx.log(200, ClosedBy::Error).await;
            }
        }
    });
    tunnel_established()
}

/// The life of an open tunnel: peek at the first bytes for a TLS server
/// name and decide on it too (the stricter decision wins), then copy until
/// it ends, and log it.
async fn run<C>(mut ctx: Ctx, mut client: C, mut origin: TcpStream, host: Host, valid_until: Option<Timestamp>)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let snap = ctx.snap.clone();
    let shared = ctx.shared.clone();
    let (user, client_ip) = (ctx.user.clone(), ctx.client.ip());
    let stop = |also: Option<Host>| {
        let watch = PolicyWatch { user: user.clone(), client: client_ip, host: host.clone(), also, valid_until };
        let shared = shared.clone();
        async move {
            tokio::select! {
                () = shared.reached(Phase::Cut) => ClosedBy::Shutdown,
                () = watch.until_blocked(shared.clone()) => ClosedBy::Policy,
            }
        }
    };
    let peeking = peek_first_bytes(&mut client, snap.config.limits.sni_peek_timeout);
    let (first, peeked) = tokio::select! {
        peeked = peeking => peeked,
        closed_by = stop(None) => {
            ctx.set_up(0);
            ctx.log(200, closed_by).await;
            return;
        }
    };
    let mut also = None;
    match peeked {
        sni::Peek::ClientHello(Some(name)) => match Host::parse(&name) {
            Ok(sni_host) => {
                ctx.sni = Some(sni_host.to_string());
                if sni_host != host {
                    let policy = &snap.config.policy;
                    let placement =
                        policy.place(&Identity { user: ctx.user.as_deref(), client_ip: Some(ctx.client.ip()) });
                    let decision = policy.decide(placement, &sni_host, Timestamp::now());
                    if decision.action > ctx.action {
                        ctx.decided(&decision);
                    }
                    also = Some(sni_host);
                }
            }
            Err(_) => ctx.sni = Some(name),
        },
        sni::Peek::ClientHello(None) => {}
        sni::Peek::NotTls | sni::Peek::NeedMore => {
            if snap.config.proxy.non_tls_tunnels == NonTlsTunnels::Refuse {
                ctx.rule = "non_tls_tunnels".into();
                ctx.action = Action::Block;
            }
        }
    }
    ctx.set_up(first.len() as u64);
    if ctx.action == Action::Block {
        // The 200 is already sent: closing is all that is left.
        // TODO(intercept): with `[intercept]`, serve the block page over TLS.
        ctx.log(403, ClosedBy::Policy).await;
        return;
    }
    if !first.is_empty() && origin.write_all(&first).await.is_err() {
        ctx.log(200, ClosedBy::Origin).await;
        return;
    }
    let idle = snap.config.limits.tunnel_idle_timeout;
    let (up, down, closed_by) = pump(&mut client, &mut origin, idle, stop(also)).await;
    ctx.set_up(first.len() as u64 + up);
    ctx.bytes_down = down;
    ctx.log(200, closed_by).await;
}

/// Reads what the client sends first, until it is clearly a ClientHello
/// (or clearly not), the client stops sending, or `timeout` passes.
async fn peek_first_bytes<C: AsyncRead + Unpin>(client: &mut C, timeout: Duration) -> (Vec<u8>, sni::Peek) {
    let mut first = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut chunk = [0u8; 4096];
    loop {
        let read = tokio::time::timeout_at(deadline, client.read(&mut chunk)).await;
        match read {
            Ok(Ok(n)) if n > 0 => {
                first.extend_from_slice(&chunk[..n]);
                let peeked = sni::peek(&first);
                if peeked != sni::Peek::NeedMore || first.len() >= sni::MAX_RECORD {
                    return (first, peeked);
                }
            }
            // Closed, failed or silent: whatever came is not a ClientHello.
            _ => return (first, sni::Peek::NotTls),
        }
    }
}

/// Copies both ways; returns (client->origin bytes, origin->client bytes,
/// who ended it). When one side closes, the other's write half is shut and
/// the copy runs on until it closes too (or idles out). `stop` ends it early
/// with the reason it gives (shutdown, policy).
async fn pump<C, F>(client: &mut C, origin: &mut TcpStream, idle: Duration, stop: F) -> (u64, u64, ClosedBy)
where
    C: AsyncRead + AsyncWrite + Unpin,
    F: std::future::Future<Output = ClosedBy>,
{
    tokio::pin!(stop);
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut origin_read, mut origin_write) = origin.split();
    let mut up_buf = vec![0u8; 16 * 1024];
    let mut down_buf = vec![0u8; 16 * 1024];
    let (mut up, mut down) = (0u64, 0u64);
    let (mut client_open, mut origin_open) = (true, true);
    let mut first_close: Option<ClosedBy> = None;
    while client_open || origin_open {
        tokio::select! {
            read = client_read.read(&mut up_buf), if client_open => match read {
                Ok(0) => {
                    client_open = false;
                    first_close.get_or_insert(ClosedBy::Client);
                    let _ = origin_write.shutdown().await;
                }
                Ok(n) => {
                    if origin_write.write_all(&up_buf[..n]).await.is_err() {
                        return (up, down, first_close.unwrap_or(ClosedBy::Origin));
                    }
                    up += n as u64;
                }
                Err(_) => return (up, down, first_close.unwrap_or(ClosedBy::Client)),
            },
            read = origin_read.read(&mut down_buf), if origin_open => match read {
                Ok(0) => {
                    origin_open = false;
                    first_close.get_or_insert(ClosedBy::Origin);
                    let _ = client_write.shutdown().await;
                }
                Ok(n) => {
                    if client_write.write_all(&down_buf[..n]).await.is_err() {
                        return (up, down, first_close.unwrap_or(ClosedBy::Client));
                    }
                    down += n as u64;
                }
                Err(_) => return (up, down, first_close.unwrap_or(ClosedBy::Origin)),
            },
            () = tokio::time::sleep(idle) => return (up, down, first_close.unwrap_or(ClosedBy::Timeout)),
            reason = &mut stop => return (up, down, reason),
        }
    }
    (up, down, first_close.unwrap_or(ClosedBy::Client))
}
