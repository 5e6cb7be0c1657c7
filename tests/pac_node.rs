//! Evaluates the generated PAC file in a real JavaScript engine (node) with
//! the standard PAC helper functions, against a table of URLs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use socialgate::config::PacConfig;

/// The PAC runtime functions browsers provide (Netscape's definitions),
/// enough for what socialgate generates. `dnsResolve` answers IP literals
/// only: the generated file must never need a real lookup.
const PAC_RUNTIME: &str = r#"
function isPlainHostName(h) { return h.indexOf(".") < 0 && h.indexOf(":") < 0; }
function dnsDomainIs(h, d) { return h.length >= d.length && h.substring(h.length - d.length) === d; }
function shExpMatch(s, p) {
  var re = new RegExp("^" + p.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".") + "$");
  return re.test(s);
}
function dnsResolve(h) { if (/^\d+\.\d+\.\d+\.\d+$/.test(h)) return h; throw new Error("PAC made a DNS lookup for " + h); }
function ip2n(ip) { var p = ip.split("."); return ((+p[0] << 24) >>> 0) + (+p[1] << 16) + (+p[2] << 8) + (+p[3]); }
function isInNet(h, net, mask) { var ip = dnsResolve(h); return ((ip2n(ip) & ip2n(mask)) >>> 0) === ((ip2n(net) & ip2n(mask)) >>> 0); }
"#;

fn eval_pac(pac: &str, cases: &[(&str, &str)]) -> Vec<String> {
    let mut script = String::from(PAC_RUNTIME);
    script.push_str(pac);
    script.push_str("\nvar cases = ");
    script.push_str(&serde_json::to_string(cases).unwrap());
    script.push_str(
        ";\nfor (var i = 0; i < cases.length; i++) { console.log(FindProxyForURL(cases[i][0], cases[i][1])); }\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pac.js");
    std::fs::write(&path, script).unwrap();
    let mut child = Command::new("node")
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("node must be installed (.ci/run installs it)");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "node did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "node failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect()
}

#[test]
fn pac_sends_public_sites_through_the_proxy_and_internal_ones_direct() {
    let pac = PacConfig {
        proxy: Some("proxy.example.com:3128".into()),
        direct: vec![
            "*.corp.example".into(),
            ".intra.example".into(),
            "wiki.example".into(),
            "10.0.0.0/8".into(),
            "192.168.1.0/24".into(),
        ],
        fallback_direct: false,
    };
    let js = socialgate::pac::render_parts(&pac, &[], None);
    let proxy = "PROXY proxy.example.com:3128";
    let table: &[(&str, &str, &str)] = &[
        ("http://www.facebook.com/", "www.facebook.com", proxy),
        ("https://WWW.YouTube.com/", "WWW.YouTube.com", proxy),
        ("http://intranet/", "intranet", "DIRECT"),
        ("http://localhost:8080/", "localhost", "DIRECT"),
        ("http://127.0.0.1/", "127.0.0.1", "DIRECT"),
        ("http://[::1]/", "[::1]", "DIRECT"),
        ("http://hr.corp.example/", "hr.corp.example", "DIRECT"),
        ("http://corp.example.evil.test/", "corp.example.evil.test", proxy),
        ("http://a.b.intra.example/", "a.b.intra.example", "DIRECT"),
        ("http://intra.example/", "intra.example", "DIRECT"),
        ("http://notintra.example/", "notintra.example", proxy),
        ("http://wiki.example/", "wiki.example", "DIRECT"),
        ("http://www.wiki.example/", "www.wiki.example", proxy),
        ("http://10.20.4.17/", "10.20.4.17", "DIRECT"),
        ("http://11.0.0.1/", "11.0.0.1", proxy),
        ("http://192.168.1.200/", "192.168.1.200", "DIRECT"),
        ("http://192.168.2.1/", "192.168.2.1", proxy),
    ];
    let cases: Vec<(&str, &str)> = table.iter().map(|(url, host, _)| (*url, *host)).collect();
    let got = eval_pac(&js, &cases);
    assert_eq!(got.len(), table.len(), "one answer per case");
    for ((url, _, want), got) in table.iter().zip(&got) {
        assert_eq!(got, want, "FindProxyForURL({url})");
    }
}

#[test]
fn pac_fallback_direct_is_only_added_when_configured() {
    let mut pac = PacConfig { proxy: Some("p.example:8080".into()), direct: vec![], fallback_direct: false };
    let got = eval_pac(&socialgate::pac::render_parts(&pac, &[], None), &[("http://x.test/", "x.test")]);
    assert_eq!(got, ["PROXY p.example:8080"]);
    pac.fallback_direct = true;
    let got = eval_pac(&socialgate::pac::render_parts(&pac, &[], None), &[("http://x.test/", "x.test")]);
    assert_eq!(got, ["PROXY p.example:8080; DIRECT"]);
}
