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

use super::Phase;
use super::context::Ctx;
use super::context::PolicyWatch;
use super::respond::{ProxyBody, Refusal, refuse, tunnel_established};
use crate::access_log::ClosedBy;
use crate::policy::Host;

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
    // TODO(sni-peek): read the ClientHello here and decide on the SNI too.
    tokio::spawn(async move {
        let _token = token;
        let idle = ctx.snap.config.limits.tunnel_idle_timeout;
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let mut client = TokioIo::new(upgraded);
                let mut origin = origin;
                let shared = ctx.shared.clone();
                let watch =
                    PolicyWatch { user: ctx.user.clone(), client: ctx.client.ip(), host: host.clone(), valid_until };
                let stop = async {
                    tokio::select! {
                        () = shared.reached(Phase::Cut) => ClosedBy::Shutdown,
                        () = watch.until_blocked(shared.clone()) => ClosedBy::Policy,
                    }
                };
                let (up, down, closed_by) = pump(&mut client, &mut origin, idle, stop).await;
                let mut ctx = ctx;
                ctx.set_up(up);
                ctx.bytes_down = down;
                ctx.log(200, closed_by).await;
            }
            Err(err) => {
                tracing::debug!(%err, "CONNECT upgrade failed");
                ctx.set_up(0);
                ctx.log(200, ClosedBy::Error).await;
            }
        }
    });
    tunnel_established()
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
