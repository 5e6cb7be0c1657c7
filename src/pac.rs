//! The PAC (proxy auto-config) file served at `/proxy.pac` (admin endpoint
//! and proxy listener) and printed by `socialgate pac`.
//!
//! The generated `FindProxyForURL` never makes the browser resolve names:
//! `[pac] direct` networks are compared only against hosts that are IP
//! literals, and host patterns with `shExpMatch`/`dnsDomainIs`. Internal
//! names that should bypass the proxy belong in `direct` as patterns.
//! Entries are written as browsers hand hosts to `FindProxyForURL`
//! (lower case, punycode, canonical addresses, no trailing dot), and the
//! file relies on no helper function's quirks: it is checked under both
//! Chromium's and Firefox's (`tests/prop_pac.rs`).

use std::fmt::Write;
use std::net::SocketAddr;

use ipnet::IpNet;

use crate::config::{Config, PacConfig};

/// Renders the PAC file for `config`. `seen_as` is the `Host` the client
/// fetched it with, if it was fetched over HTTP.
pub fn render(config: &Config, seen_as: Option<&str>) -> String {
    render_parts(&config.pac, &config.proxy.listen, seen_as)
}

/// Renders the PAC file from the `[pac]` section and the proxy's listen
/// addresses: `[pac] proxy`, else the first listen address. A wildcard
/// address (`0.0.0.0`, `::`) cannot be told to clients: it is replaced by
/// the name the client fetched the PAC with (`seen_as`, a `Host` header),
/// else by this machine's host name.
pub fn render_parts(pac: &PacConfig, listen: &[SocketAddr], seen_as: Option<&str>) -> String {
    let proxy = match (&pac.proxy, listen.first()) {
        (Some(proxy), _) => proxy.clone(),
        (None, Some(addr)) if addr.ip().is_unspecified() => format!("{}:{}", reachable_name(seen_as), addr.port()),
        (None, Some(addr)) => addr.to_string(),
        (None, None) => "127.0.0.1:3128".to_owned(),
    };
    let mut answer = format!("PROXY {proxy}");
    if pac.fallback_direct {
        answer.push_str("; DIRECT");
    }
    let mut out = String::with_capacity(1024);
    out.push_str("// socialgate proxy auto-config (generated; edit [pac] in socialgate.toml instead)\n");
    out.push_str("function FindProxyForURL(url, host) {\n");
    out.push_str("  host = host.toLowerCase();\n");
    out.push_str(
        "  if (host.charAt(0) === \"[\" && host.charAt(host.length - 1) === \"]\") { host = host.substring(1, host.length - 1); }\n",
    );
    // `wiki.example.` is the name `wiki.example`, as in the policy.
    out.push_str("  if (host.charAt(host.length - 1) === \".\") { host = host.substring(0, host.length - 1); }\n");
    // Chromium's `isPlainHostName` looks for a dot only: an IPv6 literal
    // (`2001:db8::1`) would be a plain name and go direct.
    out.push_str(
        "  if ((isPlainHostName(host) && host.indexOf(\":\") < 0) || host === \"localhost\" || dnsDomainIs(host, \".localhost\")) {\n",
    );
    out.push_str("    return \"DIRECT\";\n  }\n");
    out.push_str("  if (host === \"::1\" || /^127\\.\\d+\\.\\d+\\.\\d+$/.test(host)) {\n    return \"DIRECT\";\n  }\n");
    let mut networks = Vec::new();
    for entry in &pac.direct {
        let entry = entry.trim();
        if let Ok(net) = entry.parse::<IpNet>() {
            networks.push(net);
            continue;
        }
        let cond = if entry.contains(['*', '?']) {
            glob_condition(&pac_pattern(entry))
        } else if let Some(suffix) = entry.strip_prefix('.') {
            let suffix = pac_name(suffix);
            format!("dnsDomainIs(host, {}) || host === {}", js_string(&format!(".{suffix}")), js_string(&suffix))
        } else {
            format!("host === {}", js_string(&pac_name(entry)))
        };
        let _ = writeln!(out, "  if ({cond}) {{\n    return \"DIRECT\";\n  }}");
    }
    let v4: Vec<_> = networks
        .iter()
        .filter_map(|net| match crate::policy::canonical_net(*net) {
            IpNet::V4(v4) => Some(v4.trunc()),
            // `isInNet` matches IPv4 addresses only; the config loader
            // warns about every IPv6 network left out here. An IPv4-mapped
            // one (`::ffff:10.0.0.0/104`) is the IPv4 network it denotes.
            IpNet::V6(_) => None,
        })
        .collect();
    if !v4.is_empty() {
        out.push_str("  if (/^\\d+\\.\\d+\\.\\d+\\.\\d+$/.test(host)) {\n");
        for net in v4 {
            let _ = writeln!(
                out,
                "    if (isInNet(host, {}, {})) {{\n      return \"DIRECT\";\n    }}",
                js_string(&net.network().to_string()),
                js_string(&net.netmask().to_string())
            );
        }
        out.push_str("  }\n");
    }
    let _ = writeln!(out, "  return {};\n}}", js_string(&answer));
    out
}

/// A name in `direct` written as browsers hand hosts to `FindProxyForURL`:
/// lower case, Unicode in punycode, no trailing dot, an IP address in its
/// canonical form (`fd00:0::1` is `fd00::1`, `[::ffff:10.1.2.3]` is
/// `10.1.2.3`). Text that is no host name is kept, lower-cased: it matches
/// only itself.
fn pac_name(name: &str) -> String {
    match crate::policy::Host::parse(name) {
        Ok(host) => host.as_str().to_owned(),
        Err(_) => {
            let lower = name.to_ascii_lowercase();
            lower.strip_suffix('.').unwrap_or(&lower).to_owned()
        }
    }
}

/// A `*`/`?` pattern in `direct`, its labels written as [`pac_name`] writes
/// names (a label holding a wildcard is only lower-cased).
fn pac_pattern(pattern: &str) -> String {
    let pattern = pattern.strip_suffix('.').unwrap_or(pattern);
    let labels: Vec<String> =
        pattern
            .split('.')
            .map(|label| {
                if label.is_ascii() || label.contains(['*', '?']) {
                    label.to_ascii_lowercase()
                } else {
                    pac_name(label)
                }
            })
            .collect();
    labels.join(".")
}

/// The test for a `*`/`?` pattern. Browsers' `shExpMatch` escapes only `.`
/// before handing the pattern to `RegExp` (Chromium, Firefox, pacparser),
/// so a `+`, `(` or `[` in it would be read as regular-expression syntax:
/// `*.c+orp.example` would match `x.ccorp.example`, and `a(b*` would throw
/// in every call, which browsers answer by going direct for every URL. A
/// pattern of host-name characters uses `shExpMatch`; any other is written
/// as a regular expression with every other character escaped.
fn glob_condition(pattern: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '*' | '?');
    if pattern.chars().all(plain) {
        return format!("shExpMatch(host, {})", js_string(pattern));
    }
    let mut re = String::from("/^");
    for c in pattern.chars() {
        match c {
            '*' => re.push_str("[\\s\\S]*"),
            '?' => re.push_str("[\\s\\S]"),
            c if c.is_ascii_alphanumeric() => re.push(c),
            c => {
                for unit in c.encode_utf16(&mut [0; 2]) {
                    let _ = write!(re, "\\u{unit:04x}");
                }
            }
        }
    }
    re.push_str("$/.test(host)");
    re
}

/// A JavaScript string literal (JSON strings are valid JS literals).
fn js_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// The host part of a `Host` header if it is a valid name or address,
/// else this machine's host name, else loopback.
fn reachable_name(seen_as: Option<&str>) -> String {
    let from_header = seen_as.and_then(|value| {
        let host = match value.strip_prefix('[') {
            Some(rest) => rest.split_once(']').map(|(inside, _)| inside)?,
            None => value.rsplit_once(':').map_or(value, |(name, _)| name),
        };
        crate::policy::Host::parse(host).ok()
    });
    let host = from_header.or_else(|| {
        let uname = rustix::system::uname();
        crate::policy::Host::parse(&uname.nodename().to_string_lossy()).ok()
    });
    match host {
        Some(host) if host.as_str().contains(':') => format!("[{}]", host.as_str()),
        Some(host) => host.as_str().to_owned(),
        None => "127.0.0.1".to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn advertises_configured_proxy_with_optional_fallback() {
        let pac = PacConfig { proxy: Some("proxy.example.com:3128".into()), direct: vec![], fallback_direct: false };
        assert!(render_parts(&pac, &[], None).contains("return \"PROXY proxy.example.com:3128\";"));
        let pac = PacConfig { fallback_direct: true, ..pac };
        assert!(render_parts(&pac, &[], None).contains("return \"PROXY proxy.example.com:3128; DIRECT\";"));
    }

    #[test]
    fn falls_back_to_first_listener() {
        let pac = PacConfig::default();
        let listen = ["10.0.0.5:3128".parse().unwrap()];
        assert!(render_parts(&pac, &listen, None).contains("PROXY 10.0.0.5:3128"));
    }

    #[test]
    fn hostile_patterns_are_escaped() {
        let pac = PacConfig { proxy: None, direct: vec!["\"); alert(1); (\"".into()], fallback_direct: false };
        let js = render_parts(&pac, &[], None);
        assert!(js.contains(r#"host === "\"); alert(1); (\"""#), "{js}");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod wildcard_tests {
    use super::*;

    #[test]
    fn a_wildcard_listen_address_is_replaced_by_a_name_clients_can_reach() {
        let pac = PacConfig::default();
        let any: SocketAddr = "0.0.0.0:3128".parse().unwrap();
        let js = render_parts(&pac, &[any], Some("proxy.corp.example:9090"));
        assert!(
            js.contains("return \"PROXY proxy.corp.example:3128; DIRECT\";")
                || js.contains("return \"PROXY proxy.corp.example:3128\";"),
            "{js}"
        );
        let js = render_parts(&pac, &[any], Some("[::1]:9090"));
        assert!(js.contains("PROXY [::1]:3128"), "{js}");
        let js = render_parts(&pac, &[any], Some("10.1.2.3"));
        assert!(js.contains("PROXY 10.1.2.3:3128"), "{js}");
        // Hostile or missing: this machine's name, never the wildcard.
        for seen_as in [Some("a\"b"), Some(""), None] {
            let js = render_parts(&pac, &[any], seen_as);
            assert!(!js.contains("0.0.0.0") && js.contains(":3128"), "{js}");
        }
        let specific: SocketAddr = "10.0.0.5:3128".parse().unwrap();
        assert!(render_parts(&pac, &[specific], Some("other:1")).contains("PROXY 10.0.0.5:3128"));
    }
}
