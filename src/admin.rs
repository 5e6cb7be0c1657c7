//! The admin endpoint: `/healthz`, `/metrics` (Prometheus text) and
//! `/proxy.pac`, on its own listener, never reachable through the proxy.
//!
//! Its connections share the process's file descriptors with the proxy, so
//! they are capped: [`MAX_CONNECTIONS`] in all and [`MAX_PER_CLIENT`] per
//! client address (IPv6 per /64). A connection over a cap is closed at
//! once, so a flood of admin connections can neither take the descriptors
//! the proxy needs nor crowd out a health check from another address.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::Metrics;

/// Renders the PAC file; given the `Host` it was fetched with.
pub type PacSource = Arc<dyn Fn(Option<&str>) -> String + Send + Sync>;

/// What the admin endpoint serves.
#[derive(Clone)]
pub struct AdminState {
    /// The process's metrics.
    pub metrics: Arc<Metrics>,
    /// Renders the current PAC file (reads the current config snapshot).
    pub pac: PacSource,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState").finish_non_exhaustive()
    }
}

/// Admin connections open at once, in all.
pub const MAX_CONNECTIONS: usize = 1024;
/// Admin connections open at once from one client address (or IPv6 /64).
pub const MAX_PER_CLIENT: usize = 64;

/// Open admin connections, in all and per client.
#[derive(Debug, Default)]
struct Slots {
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One admin connection's place under the caps, given back on drop.
struct Slot {
    slots: Arc<Slots>,
    client: IpAddr,
}

impl Slots {
    /// A place for a connection from `client`, if both caps allow.
    fn take(self: &Arc<Self>, client: IpAddr) -> Option<Slot> {
        let client = crate::identity::client_group(client);
        let mut open = self.open.lock().ok()?;
        let (total, per_client) = &mut *open;
        let mine = per_client.entry(client).or_insert(0);
        if *total >= MAX_CONNECTIONS || *mine >= MAX_PER_CLIENT {
            if *mine == 0 {
                per_client.remove(&client);
            }
            return None;
        }
        *mine += 1;
        *total += 1;
        Some(Slot { slots: Arc::clone(self), client })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Ok(mut open) = self.slots.open.lock() else { return };
        let (total, per_client) = &mut *open;
        *total = total.saturating_sub(1);
        if let Some(mine) = per_client.get_mut(&self.client) {
            *mine = mine.saturating_sub(1);
            if *mine == 0 {
                per_client.remove(&self.client);
            }
        }
    }
}

/// Content type of PAC files.
pub const PAC_CONTENT_TYPE: &str = "application/x-ns-proxy-autoconfig";

/// Serves admin requests on `listener` until `retired` turns true (a
/// reload moved the endpoint: connections already open carry on) or
/// `shutdown` does (open connections finish their request and close).
pub async fn serve(
    listener: Arc<TcpListener>,
    state: AdminState,
    mut retired: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Slots::default());
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped(&mut retired) => break,
            _ = stopped(&mut shutdown) => break,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(err) => {
                tracing::warn!(%err, "admin accept failed");
                // Back off briefly on resource exhaustion (EMFILE) instead of spinning.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = slots.take(peer.ip()) else {
            tracing::debug!(%peer, "too many admin connections; closing");
            drop(stream);
            continue;
        };
        let state = state.clone();
        let mut conn_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, &req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(err) = res {
                        tracing::debug!(%err, "admin connection ended");
                    }
                }
                _ = stopped(&mut conn_shutdown) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

/// Resolves once `rx` holds `true` (or its sender is gone).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

fn route(state: &AdminState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        // RFC 9110 15.5.6: a 405 names the methods the resource takes.
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", "method not allowed\n".into());
        resp.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "text/plain; charset=utf-8", "ok\n".into()),
        "/metrics" => {
            text(StatusCode::OK, "application/openmetrics-text; version=1.0.0; charset=utf-8", state.metrics.encode())
        }
        "/proxy.pac" | "/wpad.dat" => {
            // Fetched as http://NAME:PORT/proxy.pac: NAME reaches this host.
            let seen_as = req.headers().get(header::HOST).and_then(|v| v.to_str().ok());
            text(StatusCode::OK, PAC_CONTENT_TYPE, (state.pac)(seen_as))
        }
        _ => text(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "not found\n".into()),
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    resp.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    resp
}
