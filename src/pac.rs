//! The PAC (proxy auto-config) file served at `/proxy.pac` (admin endpoint
//! and proxy listener) and printed by `socialgate pac`.
//!
//! The generated `FindProxyForURL` never makes the browser resolve names:
//! `[pac] direct` networks are compared only against hosts that are IP
//! literals, and host patterns with `shExpMatch`/`dnsDomainIs`. Internal
//! names that should bypass the proxy belong in `direct` as patterns.

use std::fmt::Write;
use std::net::SocketAddr;

use ipnet::IpNet;

use crate::config::{Config, PacConfig};

/// Renders the PAC file for `config`.
pub fn render(config: &Config) -> String {
    render_parts(&config.pac, &config.proxy.listen)
}

/// Renders the PAC file from the `[pac]` section and the proxy's listen
/// addresses (the first is advertised when `[pac] proxy` is unset).
pub fn render_parts(pac: &PacConfig, listen: &[SocketAddr]) -> String {
    let proxy = match (&pac.proxy, listen.first()) {
        (Some(proxy), _) => proxy.clone(),
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
    out.push_str("  if (host.charAt(0) === \"[\") { host = host.substring(1, host.length - 1); }\n");
    out.push_str("  if (isPlainHostName(host) || host === \"localhost\" || dnsDomainIs(host, \".localhost\")) {\n");
    out.push_str("    return \"DIRECT\";\n  }\n");
    out.push_str("  if (host === \"::1\" || /^127\\.\\d+\\.\\d+\\.\\d+$/.test(host)) {\n    return \"DIRECT\";\n  }\n");
    let mut networks = Vec::new();
    for entry in &pac.direct {
        let entry = entry.trim();
        if let Ok(net) = entry.parse::<IpNet>() {
            networks.push(net);
            continue;
        }
        let pattern = entry.to_ascii_lowercase();
        let lit = js_string(&pattern);
        let cond = if pattern.contains(['*', '?']) {
            format!("shExpMatch(host, {lit})")
        } else if let Some(suffix) = pattern.strip_prefix('.') {
            format!("dnsDomainIs(host, {lit}) || host === {}", js_string(suffix))
        } else {
            format!("host === {lit}")
        };
        let _ = writeln!(out, "  if ({cond}) {{\n    return \"DIRECT\";\n  }}");
    }
    let v4: Vec<_> = networks
        .iter()
        .filter_map(|net| match net {
            IpNet::V4(v4) => Some(v4.trunc()),
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

/// A JavaScript string literal (JSON strings are valid JS literals).
fn js_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn advertises_configured_proxy_with_optional_fallback() {
        let pac = PacConfig { proxy: Some("proxy.example.com:3128".into()), direct: vec![], fallback_direct: false };
        assert!(render_parts(&pac, &[]).contains("return \"PROXY proxy.example.com:3128\";"));
        let pac = PacConfig { fallback_direct: true, ..pac };
        assert!(render_parts(&pac, &[]).contains("return \"PROXY proxy.example.com:3128; DIRECT\";"));
    }

    #[test]
    fn falls_back_to_first_listener() {
        let pac = PacConfig::default();
        let listen = ["10.0.0.5:3128".parse().unwrap()];
        assert!(render_parts(&pac, &listen).contains("PROXY 10.0.0.5:3128"));
    }

    #[test]
    fn hostile_patterns_are_escaped() {
        let pac = PacConfig { proxy: None, direct: vec!["\"); alert(1); (\"".into()], fallback_direct: false };
        let js = render_parts(&pac, &[]);
        assert!(js.contains(r#"host === "\"); alert(1); (\"""#), "{js}");
    }
}
