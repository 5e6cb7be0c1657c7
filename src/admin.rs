//! The admin endpoint: `/healthz`, `/metrics` (Prometheus text) and
//! `/proxy.pac`, on its own listener, never reachable through the proxy.

use std::convert::Infallible;
use std::sync::Arc;

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
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped(&mut retired) => break,
            _ = stopped(&mut shutdown) => break,
        };
        let (stream, _) = match accepted {
            Ok(conn) => conn,
            Err(err) => {
                tracing::warn!(%err, "admin accept failed");
                // Back off briefly on resource exhaustion (EMFILE) instead of spinning.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = state.clone();
        let mut conn_shutdown = shutdown.clone();
        tokio::spawn(async move {
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
        return text(StatusCode::METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", "method not allowed\n".into());
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
