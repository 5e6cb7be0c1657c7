//! Plain-HTTP forwarding: a pooled upstream client whose connector uses our
//! resolver and destination guard, hop-by-hop header hygiene, `Via` and
//! `X-Forwarded-For`, and bodies streamed both ways with byte counting. The
//! access-log record of a forwarded request is written when its response
//! body ends (or the client goes away).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jiff::Timestamp;
use tokio::net::TcpStream;

use super::context::{Ctx, PolicyWatch};
use super::respond::{BoxError, ProxyBody, Refusal, Upstream, refuse};
use crate::access_log::ClosedBy;
use crate::config::ForwardedFor;
use crate::policy::Host;
use crate::resolve::{ConnectError, Guard, Resolver};

/// The pooled client for origins.
pub(crate) type UpstreamClient = Client<Connector, Counted<Incoming>>;

/// Builds an upstream client; connections are made by [`Connector`].
pub(crate) fn upstream_client(resolver: Arc<Resolver>, guard: Arc<Guard>, connect_timeout: Duration) -> UpstreamClient {
    // Without a pool timer hyper-util never reaps idle pooled connections:
    // `pool_idle_timeout` only takes effect with one.
    Client::builder(TokioExecutor::new())
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .set_host(false)
        // hyper's default of 100 header fields is a request-side habit;
        // origins send more (many `Set-Cookie`), and browsers and Squid set
        // no count (the head's size is still bounded by hyper's buffer).
        .http1_max_headers(MAX_RESPONSE_HEADERS)
        .build(Connector { resolver, guard, connect_timeout })
}

/// The most header fields an origin's response may have.
const MAX_RESPONSE_HEADERS: usize = 500;

/// Connects to origins with one snapshot's resolver and guard, so the
/// private-destination check is on the address actually connected to.
#[derive(Clone)]
pub(crate) struct Connector {
    resolver: Arc<Resolver>,
    guard: Arc<Guard>,
    connect_timeout: Duration,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connector(..)")
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<TcpStream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let (resolver, guard, timeout) = (self.resolver.clone(), self.guard.clone(), self.connect_timeout);
        Box::pin(async move {
            let raw = uri.host().unwrap_or_default();
            let host = Host::parse(raw)
                .map_err(|err| ConnectError::Unresolvable { host: raw.to_owned(), reason: err.to_string() })?;
            let port = uri.port_u16().unwrap_or(80);
            let (stream, _) = resolver.connect(&host, port, &guard, timeout).await?;
            Ok(TokioIo::new(stream))
        })
    }
}

/// Headers that describe one hop, never forwarded (RFC 9110 7.6.1), plus
/// the proxy credentials exchanged on one hop (RFC 9110 11.7): a client's
/// for the proxy, and an origin's challenge or info meant for the next
/// client only, which would otherwise reach the browser as if the proxy
/// asked for its credentials.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    HeaderName::from_static("proxy-authentication-info"),
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including every header `Connection` names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// A TRACE or OPTIONS whose `Max-Forwards` is spent: the proxy must answer
/// it as the final recipient instead of forwarding it (RFC 9110 7.6.2).
/// `Max-Forwards` means nothing on other methods, and a value that is not
/// a number is left alone, as Squid does.
pub(crate) fn max_forwards_spent<B>(req: &Request<B>) -> bool {
    limits_forwards(req.method()) && max_forwards(req.headers()) == Some(0)
}

/// The methods `Max-Forwards` applies to (RFC 9110 7.6.2).
fn limits_forwards(method: &http::Method) -> bool {
    *method == http::Method::TRACE || *method == http::Method::OPTIONS
}

/// The first `Max-Forwards` value, if it is a number (`1*DIGIT`).
fn max_forwards(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(header::MAX_FORWARDS)?.to_str().ok()?.trim_matches([' ', '\t']);
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Past u64: more hops than there will ever be.
    Some(value.parse().unwrap_or(u64::MAX))
}

/// Adds this hop to `Via`, naming the protocol the message was received
/// with (RFC 9110 7.6.3: `received-protocol`), as Squid does.
fn add_via(headers: &mut HeaderMap, received: http::Version) {
    let via = if received == http::Version::HTTP_10 { "1.0 socialgate" } else { "1.1 socialgate" };
    headers.append(header::VIA, HeaderValue::from_static(via));
}

/// Forwards an absolute-form `http://` request whose decision allows it.
pub(crate) async fn forward(
    ctx: Ctx,
    req: Request<Incoming>,
    host: &Host,
    port: u16,
    valid_until: Option<Timestamp>,
) -> Response<ProxyBody> {
    let (mut parts, body) = req.into_parts();
    let authority = authority(host, port);
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let uri: Uri = match format!("http://{authority}{path}").parse() {
        Ok(uri) => uri,
        Err(_) => return refuse(ctx, Refusal::BadRequest("the request URI is not valid")).await,
    };
    parts.uri = uri;
    let client_version = parts.version;
    parts.version = http::Version::HTTP_11;
    let headers = &mut parts.headers;
    strip_hop_by_hop(headers);
    // hyper re-frames the body for the origin: the client's framing headers
    // must not travel with it (CL+TE together is refused earlier).
    if headers.remove(header::TRANSFER_ENCODING).is_some() {
        headers.remove(header::CONTENT_LENGTH);
    }
    // The URI wins over the Host header; a disagreement is worth a line,
    // since it is how domain-fronting attempts look in plain HTTP.
    if let Some(sent) = headers.get(header::HOST)
        && !host_header_matches(sent, host, port)
    {
        tracing::info!(
            client = %ctx.client.ip(),
            uri_host = %authority,
            host_header = %String::from_utf8_lossy(sent.as_bytes()),
            "Host header disagrees with the request URI; the URI was used"
        );
    }
    match HeaderValue::from_str(&authority) {
        Ok(value) => {
            headers.insert(header::HOST, value);
        }
        Err(_) => return refuse(ctx, Refusal::BadRequest("the request host is not valid")).await,
    }
    add_via(headers, client_version);
    // This hop counts against the client's limit (0 was answered here).
    if limits_forwards(&parts.method)
        && let Some(hops) = max_forwards(headers)
    {
        headers.insert(header::MAX_FORWARDS, HeaderValue::from(hops.saturating_sub(1)));
    }
    match ctx.snap.config.proxy.forwarded_for {
        ForwardedFor::Add => {
            let client = ctx.client.ip().to_string();
            let value = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
                Some(prior) => format!("{prior}, {client}"),
                None => client,
            };
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert("x-forwarded-for", value);
            }
        }
        ForwardedFor::Delete => {
            // The standard header (RFC 7239) carries the same addresses.
            headers.remove("x-forwarded-for");
            headers.remove(header::FORWARDED);
        }
        ForwardedFor::Keep => {}
    }
    let client_error = Arc::new(std::sync::atomic::AtomicU8::new(BODY_OK));
    let body = Counted { inner: body, count: ctx.bytes_up.clone(), error: client_error.clone() };
    let request = Request::from_parts(parts, body);
    let limits = &ctx.snap.config.limits;
    // Measured from the request, so it includes connecting (normally
    // milliseconds); a slow connect fails first with its own, shorter
    // `connect_timeout` under the defaults.
    let deadline = limits.upstream_response_timeout;
    let sent = tokio::time::timeout(deadline, ctx.snap.upstream.request(request)).await;
    let response = match sent {
        Err(_) => return refuse(ctx, Refusal::Upstream(Upstream::ResponseTimeout)).await,
        Ok(Err(err)) => {
            let refusal = match client_error.load(Ordering::Relaxed) {
                BODY_MALFORMED => Refusal::ClientBody(true),
                BODY_GONE => Refusal::ClientBody(false),
                _ if response_too_large(&err) => Refusal::Upstream(Upstream::HeadTooLarge),
                _ => connect_error(&err).map_or(Refusal::Upstream(Upstream::Protocol), Refusal::from),
            };
            tracing::debug!(%err, host = %ctx.host, "upstream request failed");
            return refuse(ctx, refusal).await;
        }
        // The proxy strips `Upgrade`, so no forwarded request asks to switch
        // protocols: a 101 is the origin breaking HTTP (RFC 9110 15.2.2),
        // and relaying it would hand the client a connection nobody agreed
        // to upgrade.
        Ok(Ok(response)) if response.status() == http::StatusCode::SWITCHING_PROTOCOLS => {
            tracing::debug!(host = %ctx.host, "the origin switched protocols unasked");
            return refuse(ctx, Refusal::Upstream(Upstream::Protocol)).await;
        }
        // hyper decodes `chunked` only, and the proxy re-frames: any other
        // transfer coding (`gzip, chunked`) would reach the client still
        // applied but no longer named, as corrupt content. Squid refuses
        // such a response too.
        Ok(Ok(response)) if !chunked_at_most(response.headers()) => {
            tracing::debug!(host = %ctx.host, "the origin used a transfer coding other than chunked");
            return refuse(ctx, Refusal::Upstream(Upstream::Protocol)).await;
        }
        Ok(Ok(response)) => response,
    };
    // hyper checks `Content-Length` only where it frames a body: on an
    // answer to HEAD, or a 204 or 304, a bad or conflicting length was
    // passed on as it came (two different ones made hyper's server drop
    // the client's connection without an answer). Squid refuses such a
    // response whatever it answers.
    let Ok(length) = one_length(response.headers()) else {
        tracing::debug!(host = %ctx.host, "the origin sent a bad or conflicting Content-Length");
        return refuse(ctx, Refusal::Upstream(Upstream::Protocol)).await;
    };
    let mut ctx = ctx;
    ctx.server = response
        .extensions()
        .get::<hyper_util::client::legacy::connect::HttpInfo>()
        .map(|info| info.remote_addr().ip());
    // Backpressure here, while the request can still wait; the record is
    // then written without waiting when the body ends or is dropped.
    ctx.reserve_log().await;
    let (mut parts, body) = response.into_parts();
    ctx.keep_content_type(parts.headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes));
    strip_hop_by_hop(&mut parts.headers);
    // hyper decoded the origin's framing and re-frames for the client.
    if parts.headers.remove(header::TRANSFER_ENCODING).is_some() {
        parts.headers.remove(header::CONTENT_LENGTH);
    } else if let Some(Length { value, repeated: true }) = length
        && parts.headers.contains_key(header::CONTENT_LENGTH)
    {
        // Equal lengths (`5, 5`, or two fields) go on as one.
        parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(value));
    }
    add_via(&mut parts.headers, parts.version);
    // An intermediary speaks its own version (RFC 9110 2.5): an origin's
    // HTTP/1.0 answer goes to an HTTP/1.1 client as HTTP/1.1 (re-framed by
    // hyper, so the connection can stay open). hyper answers HTTP/1.0
    // clients in HTTP/1.0 whatever is set here.
    parts.version = http::Version::HTTP_11;
    // An HTTP/1.0 client has no chunked coding: a body of unknown length
    // can only end with the connection. Marked HTTP/1.0, the answer makes
    // hyper close it without first promising `Connection: keep-alive`.
    if client_version == http::Version::HTTP_10 && body.size_hint().exact().is_none() {
        parts.version = http::Version::HTTP_10;
    }
    let status = parts.status.as_u16();
    let watch =
        PolicyWatch { user: ctx.user.clone(), client: ctx.client.ip(), host: host.clone(), also: None, valid_until };
    let policy = Box::pin(watch.until_blocked(ctx.shared.clone()));
    let logged = Logged { inner: body, ctx: Some(ctx), status, policy, failed: None };
    Response::from_parts(parts, logged.boxed_unsync())
}

/// Whether a response's `Transfer-Encoding` is absent or exactly `chunked`.
fn chunked_at_most(headers: &HeaderMap) -> bool {
    let mut codings = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(|coding| coding.trim_ascii());
    match codings.next() {
        None => true,
        Some(first) => first.eq_ignore_ascii_case(b"chunked") && codings.next().is_none(),
    }
}

/// A `Content-Length` that is not one length: a value that is not only
/// digits, or values that differ.
#[derive(Debug)]
struct BadLength;

/// The one length all `Content-Length` values give.
#[derive(Debug, Clone, Copy)]
struct Length {
    value: u64,
    /// Given more than once (`5, 5`, or two fields): to be sent as one.
    repeated: bool,
}

/// The one length all `Content-Length` values (fields and list members)
/// give, if there is any (RFC 9110 8.6).
fn one_length(headers: &HeaderMap) -> Result<Option<Length>, BadLength> {
    let mut length: Option<Length> = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for member in value.as_bytes().split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            if member.is_empty() || !member.iter().all(u8::is_ascii_digit) {
                return Err(BadLength);
            }
            let n: u64 = std::str::from_utf8(member).ok().and_then(|text| text.parse().ok()).ok_or(BadLength)?;
            length = match length {
                None => Some(Length { value: n, repeated: false }),
                Some(seen) if seen.value == n => Some(Length { value: n, repeated: true }),
                Some(_) => return Err(BadLength),
            };
        }
    }
    Ok(length)
}

/// Whether a Host header names the same host and port as the URI.
fn host_header_matches(sent: &HeaderValue, host: &Host, port: u16) -> bool {
    let Ok(sent) = sent.to_str() else { return false };
    let (name, sent_port) = match sent.rsplit_once(':') {
        Some((name, p)) if !name.ends_with(':') && p.bytes().all(|b| b.is_ascii_digit()) && !p.is_empty() => {
            (name, p.parse::<u16>().ok())
        }
        _ => (sent, Some(80)),
    };
    sent_port == Some(port) && Host::parse(name).is_ok_and(|h| &h == host)
}

/// Client body states seen by [`Counted`].
const BODY_OK: u8 = 0;
const BODY_MALFORMED: u8 = 1;
const BODY_GONE: u8 = 2;

pub(crate) fn authority(host: &Host, port: u16) -> String {
    let name = match host.ip() {
        Some(std::net::IpAddr::V6(v6)) => format!("[{v6}]"),
        _ => host.as_str().to_owned(),
    };
    if port == 80 { name } else { format!("{name}:{port}") }
}

/// Whether the client failed because the origin's response head was over
/// its limits (bytes or header count).
fn response_too_large(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if e.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_parse_too_large) {
            return true;
        }
        current = e.source();
    }
    false
}

/// The connector's error inside the client's error chain, if that was it.
fn connect_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a ConnectError> {
    let mut current: Option<&'a (dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<ConnectError>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

pin_project_lite::pin_project! {
    /// A request body that adds the bytes it yields to a shared counter,
    /// and notes when the client's side of it fails (malformed or cut
    /// short), so the failure is not blamed on the origin.
    pub(crate) struct Counted<B> {
        #[pin]
        inner: B,
        count: Arc<AtomicU64>,
        error: Arc<std::sync::atomic::AtomicU8>,
    }
}

impl<B> Body for Counted<B>
where
    B: Body<Data = Bytes>,
    B::Error: std::error::Error + 'static,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.count.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
            }
            Poll::Ready(Some(Err(err))) => {
                let err: &(dyn std::error::Error + 'static) = err;
                let malformed = err.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_parse);
                this.error.store(if malformed { BODY_MALFORMED } else { BODY_GONE }, Ordering::Relaxed);
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A response body streamed from the origin that writes the request's
    /// access-log record when it ends, fails, or is dropped unfinished.
    struct Logged {
        #[pin]
        inner: Incoming,
        ctx: Option<Ctx>,
        status: u16,
        // Resolves when the policy now blocks this response: it is cut.
        policy: Pin<Box<dyn Future<Output = ()> + Send>>,
        // The origin's failure, held back for one poll (see `poll_frame`).
        failed: Option<BoxError>,
    }

    impl PinnedDrop for Logged {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // Dropped unfinished: the client went away (or shutdown cut it).
            // Bodies hyper never polls (empty ones) end here too.
            let closed_by = if this.inner.is_end_stream() { ClosedBy::Origin } else { ClosedBy::Client };
            finish(this.ctx, *this.status, closed_by);
        }
    }
}

impl Body for Logged {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if this.ctx.is_some() && this.policy.as_mut().poll(cx).is_ready() {
            finish(this.ctx, *this.status, ClosedBy::Policy);
            return Poll::Ready(Some(Err("response cut: the policy now blocks it".into())));
        }
        if let Some(err) = this.failed.take() {
            return Poll::Ready(Some(Err(err)));
        }
        let mut inner = this.inner;
        let polled = inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                // hyper stops polling a body once its length is written, and
                // trailers are the last frame (hyper's server may drop them
                // and stop there too).
                if inner.is_end_stream() || frame.is_trailers() {
                    finish(this.ctx, *this.status, ClosedBy::Origin);
                }
            }
            Poll::Ready(None) => finish(this.ctx, *this.status, ClosedBy::Origin),
            Poll::Ready(Some(Err(_))) => {
                finish(this.ctx, *this.status, ClosedBy::Error);
                // hyper aborts the connection on a body error without
                // flushing what it buffered: answer Pending once (and wake
                // at once) so the head and the bytes already received reach
                // the client before the cut.
                if let Poll::Ready(Some(Err(err))) = polled {
                    *this.failed = Some(BoxError::from(err));
                }
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Pending => {}
        }
        polled.map(|frame| frame.map(|result| result.map_err(BoxError::from)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The response ended: its record is written once hyper has flushed it
/// (`bytes_down` is counted at the client socket).
fn finish(ctx: &mut Option<Ctx>, status: u16, closed_by: ClosedBy) {
    if let Some(ctx) = ctx.take() {
        ctx.log_when_sent(status, closed_by);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, X-Secret"),
            ("x-secret", "1"),
            ("proxy-connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("proxy-authenticate", "Basic realm=\"x\""),
            ("proxy-authentication-info", "nextnonce=\"y\""),
            ("te", "trailers"),
            ("trailer", "x"),
            ("upgrade", "websocket"),
            ("accept", "*/*"),
        ] {
            headers.append(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("accept"));
    }
}
