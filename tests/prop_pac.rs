//! Property tests of the generated PAC file (docs/clients.md, "The PAC
//! file"), evaluated in a real JavaScript engine: for arbitrary `[pac]
//! direct` lists (names, `.suffix`es, globs, IPv4/IPv6/IPv4-mapped
//! networks, single addresses, hostile strings) and arbitrary hosts (case,
//! trailing dot, punycode, IP literals, label boundaries, quotes,
//! backslashes, `*`), `FindProxyForURL` answers `DIRECT` exactly when a
//! model written from the docs says so, and the configured `PROXY` answer
//! (with `; DIRECT` when `fallback_direct`) otherwise.
//!
//! Every PAC is run under two sets of the browser's helper functions: the
//! classic Netscape definitions that Chromium and pacparser still ship
//! (`isPlainHostName` looks for a dot only; `shExpMatch` escapes only `.`
//! before handing the pattern to `RegExp`) and Firefox's (`isPlainHostName`
//! also looks for a colon). A file that is right under one and wrong under
//! the other is wrong.
//!
//! One node process serves a whole property: each case sends it one line of
//! JSON (the PAC and its hosts) and reads one line of answers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use ipnet::IpNet;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use socialgate::config::PacConfig;

/// The helper functions as Chromium and pacparser define them (Netscape's
/// originals). `dnsResolve` answers IPv4 literals only: the generated file
/// must never make a browser look a name up.
const CLASSIC: &str = r#"
function dnsDomainIs(host, domain) {
  return (host.length >= domain.length && host.substring(host.length - domain.length) == domain);
}
function isPlainHostName(host) { return (host.search('\\.') == -1); }
function shExpMatch(url, pattern) {
  pattern = pattern.replace(/\./g, '\\.');
  pattern = pattern.replace(/\*/g, '.*');
  pattern = pattern.replace(/\?/g, '.');
  var newRe = new RegExp('^' + pattern + '$');
  return newRe.test(url);
}
function dnsResolve(h) { if (/^\d+\.\d+\.\d+\.\d+$/.test(h)) return h; throw new Error("DNS lookup for " + h); }
function convert_addr(ip) { var p = ip.split("."); return ((+p[0] << 24) | (+p[1] << 16) | (+p[2] << 8) | (+p[3])) >>> 0; }
function isInNet(h, net, mask) {
  var ip = dnsResolve(h);
  return ((convert_addr(ip) & convert_addr(mask)) >>> 0) == ((convert_addr(net) & convert_addr(mask)) >>> 0);
}
"#;

/// Firefox's `isPlainHostName` (the rest as above).
const FIREFOX: &str = r#"
function isPlainHostName(host) { return (host.search('(\\.)|:') == -1); }
"#;

/// Reads `{"pac": "...", "cases": [[url, host], ...]}` lines and answers
/// each with `{"classic": [...], "firefox": [...]}`: an answer per case, or
/// `THROW ...` / `COMPILE ...` when the file fails. `pwned` reports whether
/// evaluating the file touched a global the file never defines.
const DRIVER: &str = r#"
const vm = require("vm");
const rl = require("readline").createInterface({ input: process.stdin });
const RUNTIMES = { classic: CLASSIC, firefox: CLASSIC + FIREFOX };
rl.on("line", (line) => {
  const req = JSON.parse(line);
  const out = {};
  for (const name of Object.keys(RUNTIMES)) {
    const ctx = vm.createContext({});
    try {
      vm.runInContext(RUNTIMES[name] + "\n" + req.pac, ctx, { timeout: 2000 });
    } catch (e) {
      out[name] = "COMPILE " + e;
      continue;
    }
    out[name] = req.cases.map(([url, host]) => {
      try { return String(ctx.FindProxyForURL(url, host)); } catch (e) { return "THROW " + e; }
    });
    if (ctx.pwned !== undefined) out[name] = "PWNED";
  }
  process.stdout.write(JSON.stringify(out) + "\n");
});
"#;

/// One node process answering PAC evaluations for a whole property.
struct Node {
    child: Child,
    pipes: RefCell<(ChildStdin, BufReader<ChildStdout>)>,
}

impl Node {
    fn start() -> Node {
        let script = format!(
            "const CLASSIC = {};\nconst FIREFOX = {};\n{DRIVER}",
            serde_json::to_string(CLASSIC).unwrap(),
            serde_json::to_string(FIREFOX).unwrap()
        );
        let mut child = Command::new("node")
            .arg("-e")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node must be installed (.ci/run installs it)");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Node { child, pipes: RefCell::new((stdin, stdout)) }
    }

    /// The answers of `pac` for `cases`, under each runtime.
    fn eval(&self, pac: &str, cases: &[(String, String)]) -> Value {
        let line = json!({ "pac": pac, "cases": cases }).to_string();
        let mut pipes = self.pipes.borrow_mut();
        let (stdin, stdout) = &mut *pipes;
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        let mut answer = String::new();
        stdout.read_line(&mut answer).unwrap();
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("node answered {answer:?}: {e}"))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// The model (docs/clients.md, "The PAC file").

/// A host as a browser hands it to `FindProxyForURL`, in the form the
/// docs' matching is about: lower case, without brackets or one trailing
/// dot (`wiki.example.` is the name `wiki.example`).
fn model_host(host: &str) -> String {
    let h = host.to_ascii_lowercase();
    let h = match h.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')) {
        Some(inner) => inner.to_owned(),
        None => h,
    };
    h.strip_suffix('.').map(str::to_owned).unwrap_or(h)
}

/// A name in `direct` as the browser would write it: lower case, without
/// one trailing dot, Unicode labels in punycode (browsers hand the PAC
/// punycode), an IP address in its canonical form.
fn model_name(name: &str) -> String {
    let name = name.strip_suffix('.').unwrap_or(name);
    let bare = name.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')).unwrap_or(name);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return ip.to_canonical().to_string();
    }
    name.split('.')
        .map(|label| {
            if label.is_ascii() || label.contains(['*', '?']) {
                label.to_ascii_lowercase()
            } else {
                idna::domain_to_ascii(label).unwrap_or_else(|_| label.to_lowercase())
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Shell-glob match: `*` any run of characters, `?` any one character.
fn glob(pattern: &[char], text: &[char]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some(('*', rest)) => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        Some((p, rest)) => text.split_first().is_some_and(|(t, text)| (*p == '?' || p == t) && glob(rest, text)),
    }
}

/// Whether the docs send `host` direct under `direct`.
fn model_direct(direct: &[String], host: &str) -> bool {
    let h = model_host(host);
    let ip = h.parse::<IpAddr>().ok();
    // Built in: plain names, localhost, loopback.
    match ip {
        Some(IpAddr::V4(v4)) if v4.is_loopback() => return true,
        Some(IpAddr::V6(v6)) if v6 == Ipv6Addr::LOCALHOST => return true,
        Some(_) => {}
        None if !h.contains(['.', ':']) || h == "localhost" || h.ends_with(".localhost") => return true,
        None => {}
    }
    let chars: Vec<char> = h.chars().collect();
    direct.iter().any(|entry| {
        let entry = entry.trim();
        if let Ok(net) = entry.parse::<IpNet>() {
            // Networks match IPv4 literals only; a mapped IPv6 network is
            // the IPv4 network it denotes, other IPv6 ones are left out.
            let net = match net {
                IpNet::V6(v6) if v6.prefix_len() >= 96 && v6.addr().to_ipv4_mapped().is_some() => {
                    ipnet::Ipv4Net::new(v6.addr().to_ipv4_mapped().unwrap(), v6.prefix_len() - 96).unwrap().into()
                }
                net => net,
            };
            return matches!((net, ip), (IpNet::V4(net), Some(IpAddr::V4(v4))) if net.contains(&v4));
        }
        if entry.contains(['*', '?']) {
            let pattern: Vec<char> = model_name(entry).chars().collect();
            return glob(&pattern, &chars);
        }
        if let Some(suffix) = entry.strip_prefix('.') {
            let suffix = model_name(suffix);
            return h == suffix || h.ends_with(&format!(".{suffix}"));
        }
        match (entry.parse::<IpAddr>().ok().or_else(|| bare_ip(entry)), ip) {
            (Some(want), Some(got)) => want.to_canonical() == got,
            _ => model_name(entry) == h,
        }
    })
}

fn bare_ip(entry: &str) -> Option<IpAddr> {
    entry.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

// ---------------------------------------------------------------------------
// Generators.

fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec![
            "corp",
            "intra",
            "wiki",
            "hr",
            "a",
            "b",
            "xn--bcher-kva",
            "bücher",
            "münchen",
            "ex-ample",
            "x_y",
            "123"
        ])
        .prop_map(str::to_owned),
        "[a-c0-9]{1,3}",
    ]
}

fn name() -> impl Strategy<Value = String> {
    (vec(label(), 0..3), select(vec!["example", "test", "corp"]))
        .prop_map(|(labels, tld)| labels.into_iter().chain([tld.to_owned()]).collect::<Vec<_>>().join("."))
}

/// The same text with some letters upper-cased and maybe a trailing dot.
fn respell(s: String, upper: u8, dot: bool) -> String {
    let mut out: String = s
        .chars()
        .enumerate()
        .map(|(i, c)| if upper & (1 << (i % 8)) != 0 { c.to_ascii_uppercase() } else { c })
        .collect();
    if dot {
        out.push('.');
    }
    out
}

fn v4() -> impl Strategy<Value = Ipv4Addr> {
    prop_oneof![
        (select(vec![10u8, 127, 172, 192, 8]), any::<u8>(), 0u8..3, any::<u8>())
            .prop_map(|(a, b, c, d)| Ipv4Addr::new(a, b, c, d)),
        any::<u32>().prop_map(Ipv4Addr::from),
    ]
}

fn v6() -> impl Strategy<Value = Ipv6Addr> {
    prop_oneof![
        select(vec!["fd00::1", "fd00::", "2001:db8::1", "::1", "fe80::1:2", "fd00:0:0:1::5"])
            .prop_map(|s| s.parse().unwrap()),
        (0u16..3, 0u16..3).prop_map(|(a, b)| Ipv6Addr::new(0xfd00, a, 0, 0, 0, 0, 0, b)),
    ]
}

/// Entries nobody should write, that must stay inert text: they may match
/// only what a model of their own text says, and never change the others.
const HOSTILE: &[&str] = &[
    "\"); pwned = 1; (\"",
    "\"; pwned = 1; \"",
    "a\\\"b",
    "x\ny.example",
    "x\u{2028}y",
    "</script>",
    "'; pwned = 1; '",
    "${pwned = 1}",
    "*.c+orp.example",
    "a(b*",
    "x[y*",
    "*.ex(ample",
    "*|*",
    "*\\*",
    "a$*",
];

fn entry() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (name(), any::<u8>(), any::<bool>()).prop_map(|(n, u, d)| respell(n, u, d)),
        3 => (name(), any::<u8>(), any::<bool>()).prop_map(|(n, u, d)| respell(format!(".{n}"), u, d)),
        3 => (name(), select(vec!["*.", "*", "?", "a?"]), any::<u8>())
            .prop_map(|(n, glob, u)| respell(format!("{glob}{n}"), u, false)),
        2 => (v4(), 0u8..=32).prop_map(|(ip, p)| format!("{ip}/{p}")),
        1 => (v4(), 0u8..=32).prop_map(|(ip, p)| format!("::ffff:{ip}/{}", 96 + u16::from(p))),
        1 => (v6(), 0u8..=128).prop_map(|(ip, p)| format!("{ip}/{p}")),
        1 => v4().prop_map(|ip| ip.to_string()),
        1 => (v6(), any::<bool>(), any::<bool>()).prop_map(|(ip, long, br)| {
            let s = if long { format!("{:x}:{:x}:{:x}:{:x}:{:x}:{:x}:{:x}:{:x}", ip.segments()[0], ip.segments()[1], ip.segments()[2], ip.segments()[3], ip.segments()[4], ip.segments()[5], ip.segments()[6], ip.segments()[7]) } else { ip.to_string() };
            if br { format!("[{s}]") } else { s }
        }),
        1 => select(HOSTILE).prop_map(str::to_owned),
    ]
}

/// A host as a browser hands it over: ASCII (punycode for IDN), any case;
/// an IP literal in the WHATWG URL serialisation (browsers never hand the
/// PAC `10.0.0.1.` or `2001:DB8:0::1`).
fn browser_host(name: &str) -> String {
    let bare = name.strip_suffix('.').unwrap_or(name);
    let bare = bare.strip_prefix('[').and_then(|b| b.strip_suffix(']')).unwrap_or(bare);
    match bare.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => return v4.to_string(),
        Ok(IpAddr::V6(v6)) if name.starts_with('[') => return format!("[{}]", whatwg_v6(v6)),
        Ok(IpAddr::V6(v6)) => return whatwg_v6(v6),
        Err(_) => {}
    }
    if name.is_ascii() { name.to_owned() } else { idna::domain_to_ascii(name).unwrap_or_else(|_| name.to_owned()) }
}

/// WHATWG's IPv6 serialisation: hex pieces, the first longest run of two
/// or more zero pieces compressed (a mapped address too: `::ffff:a01:203`).
fn whatwg_v6(ip: Ipv6Addr) -> String {
    let seg = ip.segments();
    let (mut best, mut run) = ((0, 0), (0, 0));
    for (i, s) in seg.iter().enumerate() {
        if *s == 0 {
            run = if run.1 == 0 { (i, 1) } else { (run.0, run.1 + 1) };
            if run.1 > best.1 {
                best = run;
            }
        } else {
            run = (0, 0);
        }
    }
    let hex = |r: &[u16]| r.iter().map(|s| format!("{s:x}")).collect::<Vec<_>>().join(":");
    if best.1 < 2 {
        return hex(&seg);
    }
    format!("{}::{}", hex(&seg[..best.0]), hex(&seg[best.0 + best.1..]))
}

/// Hosts near the entries (the entry's name itself, subdomains, a parent,
/// label-boundary look-alikes) and hosts of every other kind.
fn hosts(direct: &[String]) -> BoxedStrategy<Vec<String>> {
    let mut near: Vec<String> = Vec::new();
    for e in direct {
        let bare = e.trim_start_matches(['*', '?', '.']).trim_start_matches(['*', '?', '.']);
        let bare = bare.split('/').next().unwrap_or(bare).to_owned();
        for h in [
            bare.clone(),
            format!("www.{bare}"),
            format!("a.b.{bare}"),
            format!("z{bare}"),
            format!("{bare}.evil.test"),
            bare.split_once('.').map(|(_, parent)| parent.to_owned()).unwrap_or_default(),
        ] {
            // Browsers never hand the PAC a host with a line break (the URL
            // parser strips or refuses them), and `shExpMatch`'s `.*` does
            // not match one: such hosts are out of the model.
            if !h.is_empty() && !h.contains(|c: char| c.is_control() || c == '\u{2028}') {
                near.push(browser_host(&h));
            }
        }
    }
    let other = prop_oneof![
        4 => (name(), any::<u8>(), any::<bool>()).prop_map(|(n, u, d)| respell(browser_host(&n), u, d)),
        2 => v4().prop_map(|ip| ip.to_string()),
        1 => (v6(), any::<bool>()).prop_map(|(ip, br)| if br { format!("[{}]", whatwg_v6(ip)) } else { ip.to_string() }),
        1 => select(vec![
            "localhost", "LOCALHOST.", "x.localhost", "localhostx.example", "intranet", "intranet.", "wiki",
            "a\"b.example", "a\\b.example", "a*b.example", "*", "*.corp.example", "a'b", "[x.corp.example",
            "x.corp.example]", "a:b", "::ffff:a01:203", "2001:db8::1", "[2001:db8::1]",
        ])
        .prop_map(str::to_owned),
    ];
    (vec(other, 8..24), any::<u8>(), any::<bool>())
        .prop_map(move |(mut other, u, d)| {
            other.extend(near.iter().cloned().map(|h| respell(h, u, d)));
            other.extend(near.iter().cloned());
            other.into_iter().map(|h| browser_host(&h)).collect()
        })
        .boxed()
}

fn url_for(host: &str, port: Option<u16>) -> String {
    let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_owned() };
    match port {
        Some(port) => format!("https://{host}:{port}/p?q=1"),
        None => format!("http://{host}/"),
    }
}

fn config_and_hosts() -> impl Strategy<Value = (PacConfig, Vec<String>, Option<u16>)> {
    (vec(entry(), 0..6), any::<bool>(), any::<Option<u16>>()).prop_flat_map(|(direct, fallback, port)| {
        let pac = PacConfig {
            proxy: Some("proxy.corp.example:3128".into()),
            direct: direct.clone(),
            fallback_direct: fallback,
        };
        (Just(pac), hosts(&direct), Just(port))
    })
}

/// Runs a property over the PAC answers with one node process.
fn check_answers(runner: &mut TestRunner, node: &Node) {
    runner
        .run(&config_and_hosts(), |(pac, hosts, port)| {
            let js = socialgate::pac::render_parts(&pac, &[], None);
            let cases: Vec<(String, String)> = hosts.iter().map(|h| (url_for(h, port), h.clone())).collect();
            let got = node.eval(&js, &cases);
            let proxy = if pac.fallback_direct {
                "PROXY proxy.corp.example:3128; DIRECT"
            } else {
                "PROXY proxy.corp.example:3128"
            };
            for runtime in ["classic", "firefox"] {
                let answers = got[runtime].as_array().ok_or_else(|| {
                    TestCaseError::fail(format!("{runtime}: {} for {:?}\n{js}", got[runtime], pac.direct))
                })?;
                prop_assert_eq!(answers.len(), cases.len());
                for ((url, host), answer) in cases.iter().zip(answers) {
                    let want = if model_direct(&pac.direct, host) { "DIRECT" } else { proxy };
                    prop_assert_eq!(
                        answer.as_str(),
                        Some(want),
                        "{}: FindProxyForURL({:?}, {:?}) with direct = {:?}\n{}",
                        runtime,
                        url,
                        host,
                        pac.direct,
                        js
                    );
                }
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn pac_answers_direct_exactly_when_the_docs_say_so() {
    let node = Node::start();
    let mut runner = TestRunner::new(Config { cases: 200, ..Config::default() });
    check_answers(&mut runner, &node);
}

/// Whatever `[pac] proxy` and the `Host` a wildcard listener is reached by
/// say, the last answer is one `PROXY host:port` (and `; DIRECT` when
/// configured): hostile text never adds an entry or a statement.
#[test]
fn the_proxy_answer_is_always_one_proxy_entry() {
    let node = Node::start();
    let mut runner = TestRunner::new(Config { cases: 64, ..Config::default() });
    let text = "[a-z0-9.:\\[\\]\"';\\\\ \t\n*%-]{0,24}";
    runner
        .run(&(text, text, any::<bool>(), any::<bool>(), 1u16..), |(proxy, seen_as, configured, fallback, port)| {
            // `[pac] proxy` as the config loader lets it through.
            let configured = configured
                && proxy.rsplit_once(':').is_some_and(|(h, p)| {
                    !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p != 0) && !h.contains(['"', ' ', ';'])
                });
            let pac = PacConfig { proxy: configured.then(|| proxy.clone()), direct: vec![], fallback_direct: fallback };
            let listen = [SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))];
            let js = socialgate::pac::render_parts(&pac, &listen, Some(&seen_as));
            let got = node.eval(&js, &[("http://public.test/".to_owned(), "public.test".to_owned())]);
            for runtime in ["classic", "firefox"] {
                let answer = got[runtime][0].as_str().unwrap_or_default().to_owned();
                let rest = answer.strip_prefix("PROXY ");
                prop_assert!(rest.is_some(), "{}: {:?}\n{}", runtime, answer, js);
                let rest = rest.unwrap_or_default();
                let (entry, tail) = rest.split_once("; ").unwrap_or((rest, ""));
                prop_assert_eq!(tail, if fallback { "DIRECT" } else { "" }, "{}", js);
                if configured {
                    prop_assert_eq!(entry, proxy.as_str());
                } else {
                    let (host, p) = entry.rsplit_once(':').unwrap_or_default();
                    prop_assert_eq!(p, port.to_string());
                    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
                    prop_assert!(socialgate::policy::Host::parse(host).is_ok(), "{}", entry);
                }
            }
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------
// Regressions found by `pac_answers_direct_exactly_when_the_docs_say_so`.

/// The answers of a PAC for `direct` under each runtime, one per host.
fn answers(direct: &[&str], hosts: &[&str]) -> Vec<(String, String, String)> {
    let pac = PacConfig {
        proxy: Some("proxy.corp.example:3128".into()),
        direct: direct.iter().map(|s| (*s).to_owned()).collect(),
        fallback_direct: false,
    };
    let js = socialgate::pac::render_parts(&pac, &[], None);
    let cases: Vec<(String, String)> = hosts.iter().map(|h| (url_for(h, None), (*h).to_owned())).collect();
    let got = Node::start().eval(&js, &cases);
    let mut out = Vec::new();
    for runtime in ["classic", "firefox"] {
        let list = got[runtime].as_array().unwrap_or_else(|| panic!("{runtime}: {}\n{js}", got[runtime]));
        for (host, answer) in hosts.iter().zip(list) {
            out.push((runtime.to_owned(), (*host).to_owned(), answer.as_str().unwrap_or_default().to_owned()));
        }
    }
    out
}

fn assert_answers(direct: &[&str], table: &[(&str, &str)]) {
    let hosts: Vec<&str> = table.iter().map(|(h, _)| *h).collect();
    for (runtime, host, got) in answers(direct, &hosts) {
        let want = table.iter().find(|(h, _)| *h == host).map(|(_, w)| *w).unwrap_or_default();
        let want = if want == "PROXY" { "PROXY proxy.corp.example:3128" } else { want };
        assert_eq!(got, want, "{runtime}: host {host:?}, direct = {direct:?}");
    }
}

/// Chromium's `isPlainHostName` looks for a dot only, and Chromium hands
/// the PAC IPv6 literals without brackets: every IPv6 literal URL went
/// direct, past the proxy and its policy.
#[test]
fn an_ipv6_literal_is_not_a_plain_host_name() {
    assert_answers(
        &[],
        &[("2001:db8::1", "PROXY"), ("[2001:db8::1]", "PROXY"), ("::1", "DIRECT"), ("intranet", "DIRECT")],
    );
}

/// `wiki.example.` is the name `wiki.example` (as in the policy): a
/// trailing dot on the host or on the entry made a `direct` name, a plain
/// name or `localhost` go through the proxy.
#[test]
fn a_trailing_dot_names_the_same_host() {
    assert_answers(
        &["wiki.example", ".intra.example", "hr.corp.example."],
        &[
            ("wiki.example.", "DIRECT"),
            ("a.intra.example.", "DIRECT"),
            ("hr.corp.example", "DIRECT"),
            ("intranet.", "DIRECT"),
            ("localhost.", "DIRECT"),
            ("www.wiki.example.", "PROXY"),
        ],
    );
}

/// Browsers hand the PAC punycode and canonical IPv6 literals: entries in
/// Unicode or another spelling of an address never matched.
#[test]
fn direct_entries_are_written_as_browsers_write_hosts() {
    assert_answers(
        &["*.bücher.example", ".münchen.test", "fd00:0:0::1", "[fd00::2]"],
        &[
            ("www.xn--bcher-kva.example", "DIRECT"),
            ("xn--mnchen-3ya.test", "DIRECT"),
            ("a.xn--mnchen-3ya.test", "DIRECT"),
            ("fd00::1", "DIRECT"),
            ("fd00::2", "DIRECT"),
            ("fd00::3", "PROXY"),
        ],
    );
}

/// Browsers' `shExpMatch` escapes only `.`: `+` in a pattern was a
/// regular-expression quantifier, and `(` made every call throw, which
/// browsers answer by going direct for every URL.
#[test]
fn a_pattern_with_regular_expression_characters_matches_only_its_text() {
    assert_answers(
        &["*.c+orp.example", "a(b*"],
        &[
            ("www.facebook.com", "PROXY"),
            ("x.ccorp.example", "PROXY"),
            ("x.c+orp.example", "DIRECT"),
            ("a(bc.example", "DIRECT"),
            ("ab.example", "PROXY"),
        ],
    );
}
