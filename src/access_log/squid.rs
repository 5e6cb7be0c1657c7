//! Squid's native `access.log` format, so existing analysers read our logs:
//! `time.millis elapsed client code/status bytes method URL user hierarchy type`.

use std::fmt::Write;

use super::{ClosedBy, Record};
use crate::policy::Action;

/// Appends one Squid native line (with the trailing newline) for `rec`.
pub fn write_line(out: &mut String, rec: &Record) {
    let millis = rec.ts.as_millisecond();
    let (secs, frac) = (millis.div_euclid(1000), millis.rem_euclid(1000));
    let url = match (&rec.url, rec.method.as_str()) {
        (Some(url), _) => url.clone(),
        (None, _) if rec.host.is_empty() => "error:invalid-request".to_owned(),
        (None, _) => host_port(&rec.host, rec.port),
    };
    let user = rec.user.as_deref().filter(|u| !u.is_empty()).unwrap_or("-");
    // A request too broken to have a method is logged as Squid logs it.
    let method = if rec.method.is_empty() { "NONE" } else { rec.method.as_str() };
    // Squid names the server's address (`%<a`); the host if it is unknown.
    let hierarchy = match (forwarded(rec), rec.server) {
        (true, Some(ip)) => format!("HIER_DIRECT/{ip}"),
        (true, None) => format!("HIER_DIRECT/{}", token(&rec.host, true)),
        (false, _) => "HIER_NONE/-".to_owned(),
    };
    let _ = writeln!(
        out,
        "{secs}.{frac:03} {:>6} {} {}/{:03} {} {} {} {} {} {}",
        rec.duration_ms,
        rec.client,
        result_code(rec),
        rec.status,
        rec.bytes_down,
        token(method, true),
        token(&url, false),
        token(user, true),
        hierarchy,
        token(rec.content_type.as_deref().unwrap_or_default(), true),
    );
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// Whether the request reached an origin (not answered by the proxy itself).
fn forwarded(rec: &Record) -> bool {
    !matches!(rec.closed_by, ClosedBy::Proxy) && rec.action != Action::Block && rec.status != 0 && rec.status < 500
}

/// Squid's result codes: what happened, from the cache's point of view
/// (socialgate never caches).
fn result_code(rec: &Record) -> &'static str {
    match (rec.action, rec.status) {
        (Action::Block, 400) => "NONE_NONE",
        (Action::Block, _) => "TCP_DENIED",
        (_, 200) if rec.method == "CONNECT" => "TCP_TUNNEL",
        (_, 0) => "NONE_NONE",
        _ if matches!(rec.closed_by, ClosedBy::Client) && rec.status >= 500 => "TCP_MISS_ABORTED",
        _ => "TCP_MISS",
    }
}

/// Squid fields are space separated: never let a value add a field or a
/// line. Spaces, control characters and every non-ASCII byte (NBSP, NEL and
/// U+2028 are whitespace or line ends to many analysers) are
/// percent-encoded, as Squid encodes what it logs; with `escape_percent`
/// (values that are not URLs, such as user names) `%` is too, so the value
/// decodes back to exactly what it was.
fn token(s: &str, escape_percent: bool) -> std::borrow::Cow<'_, str> {
    if s.is_empty() {
        return "-".into();
    }
    let escaped = |b: u8| b <= b' ' || b >= 0x7f || (escape_percent && b == b'%');
    if !s.bytes().any(escaped) {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if escaped(b) {
            let _ = write!(out, "%{b:02X}");
        } else {
            out.push(char::from(b));
        }
    }
    out.into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            ts: "2026-11-26T09:15:02.481Z".parse().unwrap(),
            client: "10.20.4.17".parse().unwrap(),
            user: Some("alice".into()),
            department: "sales".into(),
            method: "CONNECT".into(),
            host: "www.facebook.com".into(),
            port: 443,
            url: None,
            sni: Some("www.facebook.com".into()),
            service: Some("facebook".into()),
            rule: "services.facebook".into(),
            action: Action::Log,
            status: 200,
            bytes_up: 1830,
            bytes_down: 48211,
            duration_ms: 5120,
            closed_by: ClosedBy::Client,
            server: None,
            content_type: None,
        }
    }

    fn line(rec: &Record) -> String {
        let mut out = String::new();
        write_line(&mut out, rec);
        out
    }

    #[test]
    fn tunnel_line_has_the_ten_squid_fields() {
        let l = line(&record());
        assert_eq!(
            l,
            "1795684502.481   5120 10.20.4.17 TCP_TUNNEL/200 48211 CONNECT www.facebook.com:443 alice HIER_DIRECT/www.facebook.com -\n"
        );
        assert_eq!(l.split_whitespace().count(), 10);
    }

    #[test]
    fn the_hierarchy_names_the_server_address_when_known() {
        let mut rec = record();
        rec.server = Some("192.0.2.7".parse().unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()));
        assert!(line(&rec).contains(" alice HIER_DIRECT/192.0.2.7 -\n"), "{}", line(&rec));
    }

    /// A request too broken to parse has no method, host or URL: Squid
    /// logs it as `NONE_NONE/400 ... NONE error:invalid-request`.
    #[test]
    fn an_unparseable_request_is_logged_as_squid_logs_it() {
        let mut rec = record();
        (rec.method, rec.host, rec.port, rec.sni, rec.service) = (String::new(), String::new(), 0, None, None);
        (rec.action, rec.status, rec.closed_by, rec.user) = (Action::Block, 400, ClosedBy::Proxy, None);
        let l = line(&rec);
        assert!(l.contains(" NONE_NONE/400 48211 NONE error:invalid-request - HIER_NONE/- -\n"), "{l}");
        assert_eq!(l.split_whitespace().count(), 10);
    }

    #[test]
    fn denied_and_forwarded_requests() {
        let mut rec = record();
        rec.method = "GET".into();
        rec.url = Some("http://www.facebook.com/home".into());
        rec.action = Action::Block;
        rec.status = 403;
        rec.closed_by = ClosedBy::Proxy;
        rec.user = None;
        let l = line(&rec);
        assert!(l.contains(" TCP_DENIED/403 "), "{l}");
        assert!(l.contains(" GET http://www.facebook.com/home - HIER_NONE/- -"), "{l}");
        rec.action = Action::Allow;
        rec.status = 200;
        rec.closed_by = ClosedBy::Origin;
        assert!(line(&rec).contains(" TCP_MISS/200 "));
    }

    /// The last field is the answer's media type, as Squid logs it;
    /// nothing known is `-`, and no value can split the line.
    #[test]
    fn the_content_type_is_the_last_field() {
        let mut rec = record();
        rec.content_type = Some("text/html".into());
        assert!(line(&rec).ends_with(" HIER_DIRECT/www.facebook.com text/html\n"), "{}", line(&rec));
        rec.content_type = Some("a b%\u{2028}".into());
        let l = line(&rec);
        assert!(l.ends_with(" a%20b%25%E2%80%A8\n"), "{l}");
        assert_eq!(l.split_whitespace().count(), 10, "{l}");
    }

    #[test]
    fn hostile_values_never_add_fields() {
        let mut rec = record();
        rec.user = Some("a b\tc\nd".into());
        rec.method = "GET".into();
        rec.url = Some("http://x/ y".into());
        assert_eq!(line(&rec).split_whitespace().count(), 10);
    }

    #[test]
    fn user_names_are_percent_encoded_so_nothing_splits_the_line_and_they_decode_back() {
        let mut rec = record();
        // NBSP, NEL and U+2028 are whitespace (or line ends) to many
        // analysers; `_` would make `a b` and `a_b` the same user.
        for (user, logged) in [
            ("John Smith", "John%20Smith"),
            ("a_b", "a_b"),
            ("50%", "50%25"),
            ("x\u{a0}y", "x%C2%A0y"),
            ("x\u{85}y\u{2028}z", "x%C2%85y%E2%80%A8z"),
            ("m\u{fc}ller", "m%C3%BCller"),
            ("a\r\nb", "a%0D%0Ab"),
        ] {
            rec.user = Some(user.into());
            let l = line(&rec);
            assert!(l.contains(&format!(" {logged} HIER_")), "{user:?}: {l}");
            assert_eq!(l.split_whitespace().count(), 10, "{user:?}: {l}");
            assert_eq!(l.lines().count(), 1, "{user:?}: {l}");
        }
    }

    #[test]
    fn urls_keep_their_own_escapes() {
        let mut rec = record();
        rec.method = "GET".into();
        rec.url = Some("http://x/a%20b c\u{a0}".into());
        assert!(line(&rec).contains(" GET http://x/a%20b%20c%C2%A0 alice "), "{}", line(&rec));
    }
}
