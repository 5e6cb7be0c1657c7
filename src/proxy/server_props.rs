//! Property tests for the request-target router: for absolute-form
//! `http://` URIs and CONNECT authorities built from adversarial pieces
//! (userinfo, host spellings, ports), the host and port the proxy decides
//! on are those of a model built on the `url` crate (WHATWG URL parsing,
//! what a browser means) plus the SPEC's rules; the URL it logs and the
//! URI it forwards name that host and port again; nothing panics.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use proptest::sample::select;

use super::*;

/// Where a request ends up: the normalised host name (an IP literal as
/// `Host` writes it) and the port, or `None` when it is refused (by hyper,
/// whose `http::Uri` refuses the request line, or by the router).
type Routed = Option<(String, u16)>;

/// The pieces a target is built from.
#[derive(Debug, Clone)]
struct Pieces {
    userinfo: Option<String>,
    host: String,
    port: Option<String>,
}

impl Pieces {
    fn authority(&self) -> String {
        let mut s = String::new();
        if let Some(userinfo) = &self.userinfo {
            s.push_str(userinfo);
            s.push('@');
        }
        s.push_str(&self.host);
        if let Some(port) = &self.port {
            s.push(':');
            s.push_str(port);
        }
        s
    }

    /// The SPEC's port rule: ASCII digits only, 1 to 65535 (`+443`, `0`
    /// and `99999` refused, never replaced by the default); empty or
    /// absent means the scheme's default, and CONNECT has none.
    fn port(&self, default: Option<u16>) -> Option<u16> {
        match self.port.as_deref() {
            None | Some("") => default,
            Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => p.parse::<u16>().ok().filter(|&p| p != 0),
            Some(_) => None,
        }
    }
}

/// The host the model decides on, from the WHATWG parse of the URL.
/// Stricter than WHATWG where the SPEC is: a percent-encoded host is
/// refused (SECURITY.md P1), and a DNS name must be one (labels of 1 to 63
/// bytes, at most 253 in all, letters, digits, `-` and `_` only; WHATWG
/// leaves that to DNS).
fn model_host(pieces: &Pieces, url: &url::Url) -> Option<String> {
    // An empty host is no host (RFC 9112 3.2.2): WHATWG skips the extra
    // slash of `http:///a` and takes `a` as the host; a proxy must not.
    if pieces.host.contains('%') || pieces.host.is_empty() {
        return None;
    }
    match url.host()? {
        url::Host::Ipv4(ip) => Some(ip.to_string()),
        url::Host::Ipv6(ip) => Some(std::net::IpAddr::V6(ip).to_canonical().to_string()),
        url::Host::Domain(name) => {
            let name = name.strip_suffix('.').unwrap_or(name);
            let dns = name.len() <= 253
                && name.split('.').all(|label| (1..=63).contains(&label.len()))
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'));
            dns.then(|| name.to_owned())
        }
    }
}

fn model_http(pieces: &Pieces, request_target: &str) -> Routed {
    let url = url::Url::parse(request_target).ok()?;
    Some((model_host(pieces, &url)?, pieces.port(Some(80))?))
}

/// CONNECT's authority-form has no default port; a userinfo is stripped as
/// for `http://` (the decision and the tunnel are on the host after `@`).
fn model_connect(pieces: &Pieces) -> Routed {
    let url = url::Url::parse(&format!("http://{}/", pieces.authority())).ok()?;
    Some((model_host(pieces, &url)?, pieces.port(None)?))
}

/// What the proxy makes of a request line: `http::Uri` as hyper parses it,
/// then `target`. For an absolute-form URI, also checks that the logged URL
/// and the URI forwarded upstream name the same host and port, with no
/// userinfo and no query.
fn routed(method: &Method, request_target: &str) -> Result<Routed, TestCaseError> {
    let Ok(uri) = request_target.parse::<http::Uri>() else { return Ok(None) };
    Ok(match target(method, &uri) {
        Ok(Target::Connect(host, port)) => Some((host.to_string(), port)),
        Ok(Target::Http(host, port, logged)) => {
            let authority = forward::authority(&host, port);
            prop_assert!(logged.starts_with(&format!("http://{authority}/")), "{logged}");
            // The authority is rebuilt (no userinfo); the query is left out.
            prop_assert!(!logged.contains('?') && !authority.contains('@'), "{logged}");
            // What the upstream connector reads back from the forwarded URI.
            let upstream: http::Uri = format!("http://{authority}/p").parse().unwrap();
            prop_assert_eq!(Host::parse(upstream.host().unwrap()), Ok(host.clone()));
            prop_assert_eq!(upstream.port_u16().unwrap_or(80), port);
            Some((host.to_string(), port))
        }
        Ok(Target::Pac) => None,
        Err(_) => None,
    })
}

fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-zA-Z0-9][a-zA-Z0-9_\\-]{0,8}",
        1 => "[0-9]{1,4}",
        1 => "0[xX][0-9a-fA-F]{0,3}",
        1 => select(vec!["xn--bcher-kva", "xn--a", "xn--zz-", "XN--BCHER-KVA", "-a", "a-", "_srv"]).prop_map(str::to_owned),
        1 => "[a-z]{63,64}",
        1 => select(vec!["", "*", "!", "a!b", "a%2eb", "%66b", "a~b", "a=b", "%", "%zz"]).prop_map(str::to_owned),
    ]
}

/// Host spellings: names (any case, a trailing dot, odd labels), IPv4 in
/// dotted and legacy forms, bracketed IPv6 (mapped too), percent escapes,
/// and broken brackets.
fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (proptest::collection::vec(label(), 1..5), any::<bool>()).prop_map(|(labels, dot)| {
            let mut name = labels.join(".");
            if dot {
                name.push('.');
            }
            name
        }),
        2 => any::<[u8; 4]>().prop_map(|o| std::net::Ipv4Addr::from(o).to_string()),
        1 => select(vec!["127.1", "0x7f.1", "2130706433", "0177.0.0.1", "1.2.3.256", "4294967296", "1.2.3.4.", "0x"]).prop_map(str::to_owned),
        2 => any::<[u16; 8]>().prop_map(|s| format!("[{}]", std::net::Ipv6Addr::from(s))),
        1 => any::<[u8; 4]>().prop_map(|o| format!("[::ffff:{}]", std::net::Ipv4Addr::from(o))),
        1 => select(vec!["[::1]", "[::1", "::1", "[fe80::1%25eth0]", "[v1.x]", "[::1]x", "[]", "", "[1.2.3.4]"]).prop_map(str::to_owned),
    ]
}

fn port() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        2 => Just(None),
        1 => Just(Some(String::new())),
        4 => (0u32..70000).prop_map(|p| Some(p.to_string())),
        1 => (0u32..1000, 1usize..4).prop_map(|(p, zeros)| Some(format!("{}{p}", "0".repeat(zeros)))),
        1 => select(vec!["+443", "-1", "0x50", "65536", "99999", "4294967376", "44a", "1e3"]).prop_map(|p| Some(p.to_owned())),
    ]
}

fn userinfo() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        3 => Just(None),
        1 => "[a-z0-9:%._]{0,10}".prop_map(Some),
        1 => "[a-z]{1,5}@[a-z.]{1,12}".prop_map(Some),
    ]
}

fn pieces() -> impl Strategy<Value = Pieces> {
    (userinfo(), host(), port()).prop_map(|(userinfo, host, port)| Pieces { userinfo, host, port })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Absolute-form targets, in any scheme case, with or without a path,
    /// query and fragment (an `@` in them is not userinfo): the host and
    /// port of the model, or refused where it refuses.
    #[test]
    fn absolute_form_targets_route_to_the_host_and_port_a_browser_means(
        pieces in pieces(),
        scheme in select(vec!["http", "HTTP", "Http"]),
        rest in select(vec!["/", "/a?q=1", "", "/@evil.test", "?x@evil.test", "#f@evil.test"]),
    ) {
        let request_target = format!("{scheme}://{}{rest}", pieces.authority());
        prop_assert_eq!(routed(&Method::GET, &request_target)?, model_http(&pieces, &request_target), "{}", request_target);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// CONNECT authorities: the model's host and port, no default port.
    #[test]
    fn connect_authorities_route_to_the_host_and_port_a_browser_means(pieces in pieces()) {
        let authority = pieces.authority();
        prop_assert_eq!(routed(&Method::CONNECT, &authority)?, model_connect(&pieces), "{}", authority);
    }

    /// Any printable ASCII as a request target, under either method: no
    /// panic, and whatever routes has a valid port and a host that parses
    /// back to itself.
    #[test]
    fn arbitrary_targets_never_panic(request_target in "[ -~]{0,40}", connect in any::<bool>()) {
        let method = if connect { Method::CONNECT } else { Method::GET };
        if let Some((host, port)) = routed(&method, &request_target)? {
            prop_assert!(port != 0);
            prop_assert_eq!(Host::parse(&host).map(|h| h.to_string()), Ok(host));
        }
    }
}
