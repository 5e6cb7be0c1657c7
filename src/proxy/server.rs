//! Accept loops, the connection cap, one hyper HTTP/1.1 connection per
//! client, and the request router:
//! `context -> target -> identity -> placement -> decision -> forward | tunnel | refuse`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, header};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::conn::{ClientIo, ConnState, HeadSeen};
use super::context::{Ctx, head_size};
use super::listeners::stopped;
use super::respond::{self, ProxyBody, Refusal, refuse};
use super::{Phase, Shared, Token, forward, proxy_protocol, tunnel};
use crate::access_log::ClosedBy;
use crate::identity::AuthOutcome;
use crate::policy::{Action, Host, Identity};

/// Accepts clients on `listener` until shutdown begins or a reload stops
/// it (`stop` turns true); with `tls`, each connection first completes a
/// TLS handshake (client->proxy TLS) with the certificate in force.
pub(crate) async fn accept_loop(
    shared: Arc<Shared>,
    listener: Arc<TcpListener>,
    tls: bool,
    mut stop: watch::Receiver<bool>,
) {
    let draining = shared.reached(Phase::Draining);
    tokio::pin!(draining);
    loop {
        tokio::select! {
            () = &mut draining => break,
            () = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // A dual-stack listener sees IPv4 clients as
                    // `::ffff:a.b.c.d`: matched (`proxy_protocol_from`,
                    // `auth_exempt_networks`, departments) and logged as
                    // the IPv4 address they are, as Squid does.
                    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
                    let max = shared.snapshot.load().config.limits.max_connections;
                    if shared.tracker.active() >= max {
                        tokio::spawn(overloaded(shared.clone(), stream, peer, tls));
                        continue;
                    }
                    let token = shared.enter();
                    tokio::spawn(serve(shared.clone(), stream, peer, token, tls));
                }
                Err(err) => {
                    // Out of file descriptors and the like: back off a little.
                    if !crate::resolve::warn_if_local_shortage(format_args!("cannot accept a client"), &err) {
                        tracing::warn!(%err, "accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// Over `max_connections`: `503` and close, the request unread. A trusted
/// balancer's PROXY header is read first (within the same 2 s), so the
/// record names the client it speaks for and the answer does not land in
/// the middle of the header; a connection without a valid header is closed
/// unanswered and unlogged, as below the limit. A client of a TLS listener
/// expects a handshake, not plain text: it gets only the close.
async fn overloaded(shared: Arc<Shared>, mut stream: TcpStream, mut peer: SocketAddr, tls: bool) {
    let (ts, started) = (shared.clock.now(), std::time::Instant::now());
    let trusted = shared.snapshot.load().config.proxy.proxy_protocol_from.iter().any(|net| net.contains(&peer.ip()));
    let reply = respond::overloaded();
    let mut sent = 0;
    // Whether the client is known: always, unless a header is due.
    let mut placed = !trusted;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        if trusted {
            match proxy_protocol::read_header(&mut stream).await {
                Ok(Some(client)) => peer = client,
                Ok(None) => {}
                Err(err) => {
                    tracing::debug!(%err, %peer, "bad PROXY protocol header; closing");
                    return;
                }
            }
            placed = true;
        }
        if !tls && stream.write_all(&reply).await.is_ok() {
            sent = reply.len();
        }
        let _ = stream.shutdown().await;
        // Closing with the request unread would reset the connection and
        // could destroy the reply before the client reads it: discard what
        // it sends until it closes (or the timeout).
        let mut sink = [0u8; 4096];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
    if !placed {
        return;
    }
    let mut ctx = Ctx::new(shared, peer, "");
    (ctx.ts, ctx.started) = (ts, started);
    ctx.rule = "limits".into();
    ctx.bytes_down = sent as u64;
    ctx.log(503, ClosedBy::Proxy).await;
}

/// Serves one client connection until it closes, shutdown drains it, or
/// the grace period cuts it: PROXY header (from trusted balancers), TLS
/// handshake (on TLS listeners, with the snapshot's certificate), then HTTP.
async fn serve(shared: Arc<Shared>, mut stream: TcpStream, mut peer: SocketAddr, token: Token, tls: bool) {
    // On Linux the connection has it from its listener (`listeners::bind`).
    #[cfg(not(target_os = "linux"))]
    let _ = stream.set_nodelay(true);
    let snapshot = shared.snapshot.load_full();
    let header_timeout = snapshot.config.limits.header_timeout;
    let acceptor = match (tls, &snapshot.tls) {
        (false, _) => None,
        (true, Some(config)) => Some(TlsAcceptor::from(config.clone())),
        (true, None) => {
            // Accepted just as a reload removed `[proxy.tls]`.
            tracing::debug!(%peer, "no [proxy.tls] in force; closing");
            return;
        }
    };
    // A trusted load balancer says who the client really is. No request
    // has begun yet, so shutdown closes the connection at once rather than
    // waiting out `header_timeout` (an idle keep-alive connection is
    // closed at once too).
    if snapshot.config.proxy.proxy_protocol_from.iter().any(|net| net.contains(&peer.ip())) {
        let header = tokio::select! {
            header = tokio::time::timeout(header_timeout, proxy_protocol::read_header(&mut stream)) => header,
            () = shared.reached(Phase::Draining) => {
                tracing::debug!(%peer, "shutting down before the PROXY header arrived; closing");
                return;
            }
        };
        match header {
            Ok(Ok(Some(client))) => peer = client,
            Ok(Ok(None)) => {}
            Ok(Err(err)) => {
                tracing::debug!(%err, %peer, "bad PROXY protocol header; closing");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "no PROXY protocol header in time; closing");
                return;
            }
        }
    }
    drop(snapshot);
    match acceptor {
        None => serve_http(shared, stream, peer, token).await,
        Some(acceptor) => {
            let handshake = tokio::select! {
                handshake = tokio::time::timeout(header_timeout, acceptor.accept(stream)) => handshake,
                () = shared.reached(Phase::Draining) => {
                    tracing::debug!(%peer, "shutting down during the TLS handshake; closing");
                    return;
                }
            };
            match handshake {
                Ok(Ok(stream)) => serve_http(shared, stream, peer, token).await,
                Ok(Err(err)) => tracing::debug!(%err, %peer, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    }
}

/// HTTP/1.1 over an established client stream.
async fn serve_http<S>(shared: Arc<Shared>, stream: S, peer: SocketAddr, token: Token)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let _token = token;
    let _gauge = crate::metrics::GaugeGuard::new(&shared.metrics.active_connections);
    let limits = shared.snapshot.load().config.limits.clone();
    let state = ConnState::new();
    let io = ClientIo::new(stream, state.clone(), &limits, shared.head_replies.clone());
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // Head and idle deadlines are ClientIo's.
        .header_read_timeout(None)
        // ClientIo refuses heads over `max_header_bytes` first (with a
        // Proxy-Status); hyper needs at least 8 KiB of read buffer.
        .max_buf_size(limits.max_header_bytes.saturating_add(8192))
        .keep_alive(true);
    let service_shared = shared.clone();
    let service_state = state.clone();
    let service = service_fn(move |req| {
        let shared = service_shared.clone();
        let state = service_state.clone();
        async move { Ok::<_, Infallible>(handle(shared, peer, state, req).await) }
    });
    // The connection (and with it the client I/O) is gone at the end of
    // this block, so what it wrote and what waited on it is all known.
    let result = {
        let conn = builder.serve_connection(TokioIo::new(io), service).with_upgrades();
        tokio::pin!(conn);
        tokio::select! {
            result = conn.as_mut() => result,
            () = shared.reached(Phase::Draining) => {
                conn.as_mut().graceful_shutdown();
                tokio::select! {
                    result = conn.as_mut() => result,
                    () = shared.reached(Phase::Cut) => return,
                }
            }
        }
    };
    if let Some(status) = state.refused() {
        let (rule, closed_by) = respond::head_refusal_logged_as(status);
        let mut ctx = head_ctx(&shared, peer, state.take_head());
        ctx.rule = rule.into();
        ctx.bytes_down = shared.head_replies.for_status(status).len() as u64;
        ctx.log(status, closed_by).await;
    } else if let Err(err) = result {
        connection_failed(&shared, peer, &state, &err).await;
    }
}

/// hyper answered a broken request head itself (400, 431) or gave up on a
/// slow one: record it.
async fn connection_failed(shared: &Arc<Shared>, peer: SocketAddr, state: &ConnState, err: &hyper::Error) {
    let (status, rule, closed_by) = if err.is_parse_too_large() {
        (431, "limits", ClosedBy::Proxy)
    } else if err.is_parse() {
        (400, "request", ClosedBy::Proxy)
    } else {
        tracing::debug!(%err, %peer, "client connection ended with an error");
        return;
    };
    let mut ctx = head_ctx(shared, peer, state.take_head());
    ctx.rule = rule.into();
    ctx.bytes_down = state.unaccounted_down();
    ctx.log(status, closed_by).await;
}

/// The context of a request refused at the head stage, from what arrived
/// of it: its bytes, when it began, and its method and target when the
/// request line was whole.
fn head_ctx(shared: &Arc<Shared>, peer: SocketAddr, head: Option<HeadSeen>) -> Ctx {
    let Some(head) = head else { return Ctx::new(shared.clone(), peer, "") };
    let (method, request_target) = head.line.unwrap_or_default();
    let mut ctx = Ctx::new(shared.clone(), peer, &method);
    ctx.add_up(head.bytes);
    if let Some(started) = head.started {
        ctx.arrived_at(started);
    }
    // What the router would have made of the request line, where it can.
    let method = method.parse::<Method>().ok();
    let uri = request_target.parse::<http::Uri>().ok();
    let routed = method.zip(uri).and_then(|(method, uri)| target(&method, &uri).ok());
    let (host, port, url) = match routed {
        Some(Target::Connect(host, port)) => (host, port, None),
        Some(Target::Http(host, port, url)) => (host, port, Some(url)),
        Some(Target::Pac) | None => return ctx,
    };
    ctx.service = ctx.snap.config.policy.service_of(&host).map(str::to_owned);
    ctx.host = host.to_string();
    ctx.port = port;
    ctx.url = url;
    ctx
}

/// What a request asks the proxy to do.
enum Target {
    /// `GET /proxy.pac` or `/wpad.dat` in origin form.
    Pac,
    /// `CONNECT host:port`.
    Connect(Host, u16),
    /// Absolute-form `http://host[:port]/path`; the URL as logged.
    Http(Host, u16, String),
}

/// The port written in an authority: `Ok(None)` when there is none (or it
/// is empty, meaning the default), `Err` when it is not a valid port — never
/// silently the default, so `host:99999` cannot turn into `host:80`. A port
/// is ASCII digits only (RFC 3986 `port = *DIGIT`): `u16::from_str` would
/// also take `+443`.
fn explicit_port(authority: &http::uri::Authority) -> Result<Option<u16>, ()> {
    let s = authority.as_str();
    let host_port = s.rsplit_once('@').map_or(s, |(_, hp)| hp);
    let port = if host_port.starts_with('[') {
        // Nothing but a port may follow the bracket: `http::Uri` takes
        // `[::1]x:99999` as host `[::1]`, and its port must not be lost.
        match host_port.split_once(']') {
            Some((_, "")) => None,
            Some((_, rest)) => Some(rest.strip_prefix(':').ok_or(())?),
            None => return Err(()),
        }
    } else {
        host_port.split_once(':').map(|(_, p)| p)
    };
    match port {
        None | Some("") => Ok(None),
        Some(p) if !p.bytes().all(|b| b.is_ascii_digit()) => Err(()),
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(()),
            Ok(port) => Ok(Some(port)),
        },
    }
}

fn target(method: &Method, uri: &http::Uri) -> Result<Target, Refusal> {
    if method == Method::CONNECT {
        let authority = uri.authority().ok_or(Refusal::BadRequest("CONNECT needs host:port"))?;
        let port = match explicit_port(authority) {
            Ok(Some(port)) => port,
            Ok(None) => return Err(Refusal::BadRequest("CONNECT needs host:port")),
            Err(()) => return Err(Refusal::BadRequest("the port is not a number from 1 to 65535")),
        };
        let host = Host::parse(authority.host()).map_err(|_| Refusal::BadRequest("the CONNECT host is not valid"))?;
        return Ok(Target::Connect(host, port));
    }
    match uri.scheme_str() {
        None => {
            let pac = matches!(uri.path(), "/proxy.pac" | "/wpad.dat");
            if pac && (method == Method::GET || method == Method::HEAD) {
                Ok(Target::Pac)
            } else {
                Err(Refusal::BadRequest("this is a proxy: requests must use an absolute http:// URL"))
            }
        }
        Some("http") => {
            let authority = uri.authority().ok_or(Refusal::BadRequest("the URL has no host"))?;
            let host = Host::parse(authority.host()).map_err(|_| Refusal::BadRequest("the URL's host is not valid"))?;
            let port = explicit_port(authority)
                .map_err(|()| Refusal::BadRequest("the port is not a number from 1 to 65535"))?
                .unwrap_or(80);
            // No userinfo (the authority is rebuilt) and no query string.
            let url = format!("http://{}{}", forward::authority(&host, port), uri.path());
            Ok(Target::Http(host, port, url))
        }
        Some(_) => Err(Refusal::BadRequest("only http:// URLs can be proxied; use CONNECT for https")),
    }
}

/// Routes one request through identity, placement and decision.
async fn handle(
    shared: Arc<Shared>,
    peer: SocketAddr,
    state: Arc<ConnState>,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    state.busy();
    let mut ctx = Ctx::new(shared, peer, req.method().as_str());
    ctx.conn = Some(state.clone());
    // The head's exact length as it arrived (the estimate only if unknown).
    let head = state.take_head_len().unwrap_or_else(|| {
        let request_line = req.method().as_str().len() + req.uri().to_string().len() + 10;
        head_size(request_line, req.headers())
    });
    ctx.add_up(head);
    // hyper's own buffer limit (at least 8 KiB) catches the grossly large.
    if head > ctx.snap.config.limits.max_header_bytes as u64 {
        return refuse(ctx, Refusal::HeadTooLarge).await;
    }
    let (host, port, connect) = match target(req.method(), req.uri()) {
        Ok(Target::Pac) => {
            ctx.rule = "pac".into();
            ctx.action = Action::Allow;
            let seen_as = req.headers().get(header::HOST).and_then(|v| v.to_str().ok());
            let pac = crate::pac::render(&ctx.snap.config, seen_as);
            return respond::serve(ctx, "application/x-ns-proxy-autoconfig", pac).await;
        }
        Ok(Target::Connect(host, port)) => (host, port, true),
        Ok(Target::Http(host, port, url)) => {
            ctx.url = Some(url);
            (host, port, false)
        }
        Err(refusal) => return refuse(ctx, refusal).await,
    };
    ctx.host = host.to_string();
    ctx.port = port;
    let config = ctx.snap.config.clone();
    // Logged whatever decides, refusals included.
    ctx.service = config.policy.service_of(&host).map(str::to_owned);

    let credentials = req.headers().get(header::PROXY_AUTHORIZATION).map(|value| value.as_bytes());
    match ctx.shared.auth.authenticate(&config.identity, peer.ip(), credentials).await {
        AuthOutcome::Anonymous => {}
        AuthOutcome::User(user) => ctx.user = Some(user),
        // Logged in the department of the client's address (Ctx::new).
        AuthOutcome::Missing | AuthOutcome::Invalid => return refuse(ctx, Refusal::AuthRequired).await,
    }
    let placement = config.policy.place(&Identity { user: ctx.user.as_deref(), client_ip: Some(peer.ip()) });
    ctx.department = config.policy.department_name(placement.department).to_owned();

    if !connect && host == config.proxy.status_host {
        ctx.rule = "status".into();
        ctx.action = Action::Allow;
        let page = respond::status_page(&ctx, placement);
        return respond::serve(ctx, "text/html; charset=utf-8", page).await;
    }
    if connect && !config.proxy.connect_ports.contains(&port) {
        return refuse(ctx, Refusal::ConnectPort).await;
    }
    let decision = config.policy.decide(placement, &host, ctx.ts);
    ctx.decided(&decision);
    if decision.action == Action::Block {
        if connect && let Some(minter) = ctx.snap.minter.clone() {
            return tunneled(&state, tunnel::intercept_blocked(ctx, req, &host, minter));
        }
        return refuse(ctx, Refusal::Blocked).await;
    }
    if connect {
        tunneled(&state, tunnel::tunnel(ctx, req, &host, port, decision.valid_until).await)
    } else if forward::max_forwards_spent(&req) {
        respond::final_recipient(ctx, &req).await
    } else {
        forward::forward(ctx, req, &host, port, decision.valid_until).await
    }
}

/// A CONNECT answered 2xx makes the connection a tunnel: tells the client
/// I/O that what follows is no longer checked as request heads.
fn tunneled(state: &ConnState, response: Response<ProxyBody>) -> Response<ProxyBody> {
    if response.status().is_success() {
        state.tunnel();
    }
    response
}

#[cfg(test)]
#[path = "server_props.rs"]
mod props;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn port(authority: &str) -> Result<Option<u16>, ()> {
        explicit_port(&authority.parse::<http::uri::Authority>().unwrap())
    }

    /// Regression (audit F6): a port is ASCII digits only; `+443` was taken
    /// as 443.
    /// Regression (found by `proxy::server::props::absolute_form_targets_route_to_the_host_and_port_a_browser_means`):
    /// text after an IPv6 literal's bracket hid the port, so
    /// `http://[::1]x:99999/` went to port 80 (and `[::1]x:8080` too).
    #[test]
    fn text_after_an_ipv6_bracket_is_refused_not_a_default_port() {
        for bad in ["[::1]x:99999", "[::1]x:8080", "[::1]x"] {
            assert_eq!(port(bad), Err(()), "{bad}");
        }
        assert_eq!(port("[::1]"), Ok(None));
        assert_eq!(port("[::1]:"), Ok(None));
    }

    #[test]
    fn a_port_is_digits_only() {
        assert_eq!(port("a.test:443"), Ok(Some(443)));
        assert_eq!(port("a.test:0443"), Ok(Some(443)));
        assert_eq!(port("[::1]:8080"), Ok(Some(8080)));
        assert_eq!(port("user@a.test:81"), Ok(Some(81)));
        assert_eq!(port("a.test"), Ok(None));
        assert_eq!(port("a.test:"), Ok(None));
        for bad in ["a.test:+443", "a.test:-443", "a.test:0", "a.test:65536", "[::1]:+80", "a.test:0x50", "a.test:44+3"]
        {
            assert_eq!(port(bad), Err(()), "{bad}");
        }
    }
}
