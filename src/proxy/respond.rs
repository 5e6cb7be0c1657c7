//! Every response the proxy makes itself: refusals (policy, limits, auth,
//! private destinations, bad requests), upstream failures, the status page
//! and the PAC file. This is the only place that picks a status code for
//! them, and every one carries `Proxy-Status` (RFC 9209).

use crate::metrics::KindLabel;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full, combinators::UnsyncBoxBody};

use super::conn::HeadReplies;
use super::context::Ctx;
use crate::access_log::ClosedBy;
use crate::policy::{Action, Decision, Placement};
use crate::resolve::ConnectError;

/// Any error a response body can end with.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every response the proxy sends.
pub(crate) type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// A body of fixed bytes.
pub(crate) fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// An empty body.
pub(crate) fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Why the proxy answers a request itself instead of forwarding it.
#[derive(Debug, Clone)]
pub(crate) enum Refusal {
    /// The policy blocks it (ctx holds the decision).
    Blocked,
    /// CONNECT to a port outside `connect_ports`.
    ConnectPort,
    /// The destination resolved to a prohibited address.
    PrivateDestination,
    /// No or wrong proxy credentials.
    AuthRequired,
    /// Not a request a proxy can serve.
    BadRequest(&'static str),
    /// The request head is larger than `max_header_bytes`.
    HeadTooLarge,
    /// The client's request body broke off: malformed (`true`, e.g. a bad
    /// chunk size) or the client went away mid-upload (`false`).
    ClientBody(bool),
    /// Reaching the origin failed.
    Upstream(Upstream),
}

/// How reaching the origin failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Upstream {
    Dns,
    Refused,
    Unreachable,
    ConnectTimeout,
    ResponseTimeout,
    /// The origin broke the exchange (closed early, bad response).
    Protocol,
    /// The origin's response head is larger than the proxy reads.
    HeadTooLarge,
}

impl From<&ConnectError> for Refusal {
    fn from(err: &ConnectError) -> Refusal {
        match err {
            ConnectError::Unresolvable { .. } => Refusal::Upstream(Upstream::Dns),
            ConnectError::Prohibited { .. } => Refusal::PrivateDestination,
            ConnectError::Refused { .. } => Refusal::Upstream(Upstream::Refused),
            ConnectError::Unreachable { .. } => Refusal::Upstream(Upstream::Unreachable),
            ConnectError::Timeout { .. } => Refusal::Upstream(Upstream::ConnectTimeout),
        }
    }
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::Blocked | Refusal::ConnectPort | Refusal::PrivateDestination => StatusCode::FORBIDDEN,
            Refusal::AuthRequired => StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            Refusal::BadRequest(_) | Refusal::ClientBody(_) => StatusCode::BAD_REQUEST,
            Refusal::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Refusal::Upstream(Upstream::ConnectTimeout | Upstream::ResponseTimeout) => StatusCode::GATEWAY_TIMEOUT,
            Refusal::Upstream(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// The RFC 9209 error type.
    fn proxy_status_error(&self) -> &'static str {
        match self {
            Refusal::Blocked | Refusal::ConnectPort => "http_request_denied",
            Refusal::PrivateDestination => "destination_ip_prohibited",
            Refusal::AuthRequired => "proxy_auth_required",
            Refusal::BadRequest(_) | Refusal::HeadTooLarge | Refusal::ClientBody(_) => "http_request_error",
            Refusal::Upstream(Upstream::Dns) => "dns_error",
            Refusal::Upstream(Upstream::Refused) => "connection_refused",
            Refusal::Upstream(Upstream::Unreachable) => "destination_unavailable",
            Refusal::Upstream(Upstream::ConnectTimeout) => "connection_timeout",
            Refusal::Upstream(Upstream::ResponseTimeout) => "http_response_timeout",
            Refusal::Upstream(Upstream::Protocol) => "http_protocol_error",
            Refusal::Upstream(Upstream::HeadTooLarge) => "http_response_header_section_size",
        }
    }

    fn closed_by(&self) -> ClosedBy {
        match self {
            Refusal::Upstream(Upstream::ConnectTimeout | Upstream::ResponseTimeout) => ClosedBy::Timeout,
            Refusal::Upstream(_) => ClosedBy::Error,
            Refusal::ClientBody(false) => ClosedBy::Client,
            _ => ClosedBy::Proxy,
        }
    }

    /// The rule and action logged, where the refusal overrides the policy's.
    fn logged_as(&self) -> Option<&'static str> {
        match self {
            Refusal::ConnectPort => Some("connect_ports"),
            Refusal::PrivateDestination => Some("private_destination"),
            Refusal::AuthRequired => Some("auth"),
            Refusal::BadRequest(_) | Refusal::ClientBody(_) => Some("request"),
            Refusal::HeadTooLarge => Some("limits"),
            Refusal::Blocked | Refusal::Upstream(_) => None,
        }
    }

    fn summary(&self) -> &'static str {
        match self {
            Refusal::Blocked => "Access blocked by company policy",
            Refusal::ConnectPort => "Tunnels to this port are not allowed",
            Refusal::PrivateDestination => "This destination is not reachable through the proxy",
            Refusal::AuthRequired => "Proxy authentication required",
            Refusal::BadRequest(_) => "Bad request",
            Refusal::ClientBody(_) => "The request body was malformed or cut short",
            Refusal::HeadTooLarge => "Request headers too large",
            Refusal::Upstream(Upstream::Dns) => "The site's name could not be resolved",
            Refusal::Upstream(Upstream::Refused) => "The site refused the connection",
            Refusal::Upstream(Upstream::Unreachable) => "The site could not be reached",
            Refusal::Upstream(Upstream::ConnectTimeout) => "Connecting to the site timed out",
            Refusal::Upstream(Upstream::ResponseTimeout) => "The site did not answer in time",
            Refusal::Upstream(Upstream::Protocol) => "The site sent an invalid response",
            Refusal::Upstream(Upstream::HeadTooLarge) => "The site's response headers are too large",
        }
    }
}

/// Answers `refusal`, logs the request and returns the response. For a
/// CONNECT the body is short text, else an HTML page.
pub(crate) async fn refuse(mut ctx: Ctx, refusal: Refusal) -> Response<ProxyBody> {
    if let Some(rule) = refusal.logged_as() {
        ctx.rule = rule.to_owned();
        ctx.action = Action::Block;
    }
    match &refusal {
        Refusal::Upstream(_) => {
            ctx.failed = true;
            ctx.shared.metrics.upstream_errors.get_or_create(&KindLabel { kind: refusal.proxy_status_error() }).inc();
        }
        Refusal::AuthRequired => {
            ctx.shared.metrics.auth_failures.inc();
        }
        _ => {}
    }
    let status = refusal.status();
    let connect = ctx.method == "CONNECT";
    let (content_type, body) = if connect {
        ("text/plain; charset=utf-8", format!("{}: {}\n", status.as_u16(), refusal.summary()))
    } else {
        ("text/html; charset=utf-8", page(&Shown::of(&ctx), &refusal))
    };
    ctx.keep_content_type(Some(content_type.as_bytes()));
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let details = proxy_status(refusal.proxy_status_error(), &ctx.rule);
    if let Ok(value) = HeaderValue::from_str(&details) {
        headers.insert("proxy-status", value);
    }
    if matches!(refusal, Refusal::AuthRequired)
        && let Some(value) = basic_challenge(&ctx.snap.config.identity.realm)
    {
        headers.insert(header::PROXY_AUTHENTICATE, value);
    }
    if matches!(refusal, Refusal::BadRequest(_) | Refusal::HeadTooLarge | Refusal::ClientBody(_)) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    ctx.reserve_log().await;
    ctx.log_when_sent(status.as_u16(), refusal.closed_by());
    response
}

/// `socialgate; error=<kind>; details="<rule>"`.
pub(crate) fn proxy_status(error: &str, rule: &str) -> String {
    format!("socialgate; error={error}; details=\"{}\"", sf_string(rule))
}

/// The inside of an RFC 8941 sf-string: printable ASCII only, `"` and `\`
/// escaped, control characters left out and any other character written
/// `?` (a non-ASCII byte would make the whole `Proxy-Status` field invalid,
/// and parsers drop an invalid field whole).
fn sf_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().filter(|c| !c.is_control()) {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out
}

/// `Basic realm="<realm>"` (RFC 7617), the realm as a quoted-string.
fn basic_challenge(realm: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("Basic realm=\"{}\"", escape_quoted(realm))).ok()
}

fn escape_quoted(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .flat_map(|c| if matches!(c, '"' | '\\') { vec!['\\', c] } else { vec![c] })
        .collect()
}

pub(crate) use crate::html::escape as html_escape;

fn html_page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title></head>\n<body>\n<h1>{t}</h1>\n{body}</body></html>\n",
        t = html_escape(title)
    )
}

/// The strings from outside (the request, the policy, the config) a
/// refusal page shows.
#[derive(Debug, Clone, Copy)]
struct Shown<'a> {
    host: &'a str,
    service: Option<&'a str>,
    department: &'a str,
    rule: &'a str,
    contact: &'a str,
}

impl<'a> Shown<'a> {
    fn of(ctx: &'a Ctx) -> Shown<'a> {
        Shown {
            host: &ctx.host,
            service: ctx.service.as_deref(),
            department: &ctx.department,
            rule: &ctx.rule,
            contact: &ctx.snap.config.block_page.contact,
        }
    }
}

fn page(shown: &Shown<'_>, refusal: &Refusal) -> String {
    let host = html_escape(shown.host);
    let body = match refusal {
        Refusal::Blocked => {
            let contact = shown.contact;
            let mut body = format!(
                "<p>Your request for <strong>{host}</strong> was blocked.</p>\n<ul>\n<li>Service: {}</li>\n<li>Department: {}</li>\n<li>Reason: {}</li>\n</ul>\n",
                html_escape(shown.service.unwrap_or("(none)")),
                html_escape(shown.department),
                html_escape(shown.rule),
            );
            if !contact.is_empty() {
                body.push_str(&format!("<p>If you need access, contact {}.</p>\n", html_escape(contact)));
            }
            body
        }
        Refusal::BadRequest(why) => format!("<p>{}</p>\n", html_escape(why)),
        Refusal::AuthRequired => "<p>Sign in to use the proxy.</p>\n".to_owned(),
        other => format!("<p>{} ({host}).</p>\n", html_escape(other.summary())),
    };
    html_page(refusal.summary(), &body)
}

/// The HTTP block page as a whole `Connection: close` response, for the
/// block page served inside an intercepted TLS connection.
pub(crate) fn block_page_bytes(ctx: &Ctx) -> Vec<u8> {
    block_page_response(&Shown::of(ctx))
}

fn block_page_response(shown: &Shown<'_>) -> Vec<u8> {
    let body = page(shown, &Refusal::Blocked);
    format!(
        "HTTP/1.1 403 Forbidden\r\nContent-Type: text/html; charset=utf-8\r\nCache-Control: no-store\r\nProxy-Status: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        proxy_status(Refusal::Blocked.proxy_status_error(), shown.rule),
        body.len()
    )
    .into_bytes()
}

/// Serves `bytes` made by the proxy itself with a 200 (the PAC file, the
/// status page, a final recipient's answer), logs it and returns the
/// response.
pub(crate) async fn serve(mut ctx: Ctx, content_type: &'static str, body: String) -> Response<ProxyBody> {
    let mut response = Response::new(full(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Like every answer the proxy makes itself (RFC 9209: handled here).
    headers.insert("proxy-status", HeaderValue::from_static("socialgate"));
    ctx.keep_content_type(Some(content_type.as_bytes()));
    ctx.reserve_log().await;
    ctx.log_when_sent(200, ClosedBy::Proxy);
    response
}

/// Answers a TRACE or OPTIONS whose `Max-Forwards` is spent, as its final
/// recipient (RFC 9110 7.6.2): a TRACE gets the request it arrived as
/// (`message/http`, 9.3.8) less the fields that carry credentials, an
/// OPTIONS a bodiless 200. Logged like the answer the policy allowed.
pub(crate) async fn final_recipient<B>(ctx: Ctx, req: &http::Request<B>) -> Response<ProxyBody> {
    let (content_type, body) = if req.method() == http::Method::TRACE {
        ("message/http", trace_echo(req))
    } else {
        ("text/plain; charset=utf-8", String::new())
    };
    serve(ctx, content_type, body).await
}

/// The request head as received, for a TRACE answer; credentials and
/// cookies are left out (RFC 9110 9.3.8: the final recipient SHOULD
/// exclude fields likely to hold sensitive data).
fn trace_echo<B>(req: &http::Request<B>) -> String {
    let mut echo = format!("{} {} {:?}\r\n", req.method(), req.uri(), req.version());
    for (name, value) in req.headers() {
        if [header::AUTHORIZATION, header::PROXY_AUTHORIZATION, header::COOKIE].contains(name) {
            continue;
        }
        echo.push_str(&format!("{name}: {}\r\n", String::from_utf8_lossy(value.as_bytes())));
    }
    echo.push_str("\r\n");
    echo
}

/// The `http://<status_host>/` page: who the proxy thinks the caller is and
/// what their department's policy says right now, service by service.
pub(crate) fn status_page(ctx: &Ctx, placement: Placement) -> String {
    let policy = &ctx.snap.config.policy;
    let now = ctx.shared.clock.now();
    let local = now.to_zoned(policy.timezone().clone());
    let mut body = format!(
        "<ul>\n<li>User: {}</li>\n<li>Address: {}</li>\n<li>Department: {} (by {})</li>\n<li>Proxy time: {} {}</li>\n</ul>\n<table>\n<tr><th>Service</th><th>Action now</th><th>Rule</th><th>Schedule</th></tr>\n",
        html_escape(ctx.user.as_deref().unwrap_or("(not signed in)")),
        html_escape(&ctx.client.ip().to_string()),
        html_escape(policy.department_name(placement.department)),
        placement.source.as_str(),
        local.strftime("%a %Y-%m-%d %H:%M"),
        html_escape(policy.timezone().iana_name().unwrap_or("UTC")),
    );
    let row = |body: &mut String, name: &str, decision: &Decision| {
        let schedule = decision.schedule.as_deref().map(|name| schedule_window(policy, name, now)).unwrap_or_default();
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            html_escape(name),
            decision.action.as_str(),
            html_escape(&decision.rule),
            html_escape(&schedule),
        ));
    };
    // Rules come first, as they are decided first.
    for (rule, decision) in policy.decide_rules(placement, now) {
        row(&mut body, &rule_covers(rule.domains, rule.hosts), &decision);
    }
    for service in policy.service_names() {
        if let Some(decision) = policy.decide_service(placement, service, now) {
            row(&mut body, service, &decision);
        }
    }
    row(&mut body, "(everything else)", &policy.decide_default(placement, now));
    body.push_str("</table>\n");
    html_page("socialgate status", &body)
}

/// A schedule as the status page shows it: its name, its window, and
/// whether that is open now, e.g. `work-hours: mon-fri 08:00-16:00, in
/// force now`.
fn schedule_window(policy: &crate::policy::Policy, name: &str, now: jiff::Timestamp) -> String {
    let Some(view) = policy.schedule(name).filter(|view| view.origin().is_some()) else {
        return format!("{name}: not defined, never in force");
    };
    let state = if view.is_active(now) { "in force now" } else { "not in force now" };
    let clock = |minute: u16| format!("{:02}:{:02}", minute / 60, minute % 60);
    let overnight = if view.to_minute() <= view.from_minute() { " (next day)" } else { "" };
    format!("{name}: {} {}-{}{overnight}, {state}", view.days(), clock(view.from_minute()), clock(view.to_minute()))
}

/// What a rule covers, for the status page: its first few domains and
/// hosts, and how many more.
fn rule_covers(domains: &[crate::policy::Host], hosts: &[crate::policy::Host]) -> String {
    const SHOWN: usize = 4;
    let all: Vec<&str> = domains.iter().chain(hosts).map(crate::policy::Host::as_str).collect();
    let mut covers = all.iter().take(SHOWN).copied().collect::<Vec<_>>().join(", ");
    if all.len() > SHOWN {
        covers.push_str(&format!(" (+{} more)", all.len() - SHOWN));
    }
    covers
}

/// A bodiless `200 Connection established` for an accepted tunnel.
pub(crate) fn tunnel_established() -> Response<ProxyBody> {
    let mut response = Response::new(empty());
    // Squid's wording; some clients and scripts match on it.
    response.extensions_mut().insert(hyper::ext::ReasonPhrase::from_static(b"Connection established"));
    response
}

/// A whole `Connection: close` response as bytes, for the few answers
/// written straight to the socket outside hyper (over `max_connections`,
/// a request head that timed out).
pub(crate) fn raw_response(status: StatusCode, error: &str, rule: &str, text: &str) -> Vec<u8> {
    let body = format!("{}: {text}\n", status.as_u16());
    format!(
        "HTTP/1.1 {} {}\r\nProxy-Status: {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        proxy_status(error, rule),
        body.len()
    )
    .into_bytes()
}

/// The reply to a client over `max_connections`.
pub(crate) fn overloaded() -> Vec<u8> {
    raw_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "connection_limit_reached",
        "limits",
        "too many connections, try again later",
    )
}

/// The answers to a request head refused before hyper sees it whole.
pub(crate) fn head_replies() -> HeadReplies {
    HeadReplies {
        timeout: raw_response(
            StatusCode::REQUEST_TIMEOUT,
            "http_request_error",
            "limits",
            "the request head took too long",
        ),
        malformed: raw_response(StatusCode::BAD_REQUEST, "http_request_error", "request", "malformed request"),
        too_large: raw_response(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "http_request_error",
            "limits",
            "request headers too large",
        ),
    }
}

/// How a connection refused at the head stage is logged: rule and closed_by.
pub(crate) fn head_refusal_logged_as(status: u16) -> (&'static str, ClosedBy) {
    match status {
        408 => ("limits", ClosedBy::Timeout),
        431 => ("limits", ClosedBy::Proxy),
        _ => ("request", ClosedBy::Proxy),
    }
}

#[cfg(test)]
#[path = "respond_props.rs"]
mod props;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn every_upstream_error_kind_is_exported_from_the_start() {
        use Upstream::*;
        for upstream in [Dns, Refused, Unreachable, ConnectTimeout, ResponseTimeout, Protocol, HeadTooLarge] {
            let kind = Refusal::Upstream(upstream).proxy_status_error();
            assert!(crate::metrics::UPSTREAM_ERROR_KINDS.contains(&kind), "{kind}");
        }
    }

    #[test]
    fn html_values_are_escaped() {
        assert_eq!(html_escape("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }

    #[test]
    fn proxy_status_quotes_the_rule() {
        assert_eq!(
            proxy_status("http_request_denied", "rules[0]"),
            "socialgate; error=http_request_denied; details=\"rules[0]\""
        );
        assert_eq!(proxy_status("x", "a\"b\\c\nd"), "socialgate; error=x; details=\"a\\\"b\\\\cd\"");
    }

    /// Regression (found by `proxy::respond::props::proxy_status_is_a_structured_field_for_any_rule`):
    /// a non-ASCII character in the rule went into `details` as UTF-8,
    /// which an sf-string cannot hold, so a strict parser dropped the
    /// whole `Proxy-Status` field.
    #[test]
    fn proxy_status_details_stay_ascii() {
        assert_eq!(proxy_status("x", "services.caf\u{e9}"), "socialgate; error=x; details=\"services.caf?\"");
    }

    #[test]
    fn raw_responses_are_complete_and_carry_proxy_status() {
        let reply = String::from_utf8(overloaded()).unwrap();
        let (head, body) = reply.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(head.contains("\r\nProxy-Status: socialgate; error=connection_limit_reached; details=\"limits\""));
        assert!(head.contains(&format!("\r\nContent-Length: {}", body.len())));
        assert!(head.contains("\r\nConnection: close"));
    }
}
