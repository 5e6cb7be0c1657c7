//! Property tests for untrusted input that is not HTTP: `config::load` on
//! arbitrary bytes and on TOML built from the real section and key names
//! (valid syntax, arbitrary values) never panics, it answers `Ok` or
//! diagnostics; the ClientHello peeker never panics on arbitrary or mutated
//! bytes, and finds the SNI of a real rustls ClientHello however its
//! handshake message is split into TLS records, answering `NeedMore` for
//! every proper prefix.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::pin::Pin;
use std::task::{Context, Poll};

use proptest::prelude::*;
use socialgate::tls::peek::{Peek, Peeked, peek, read_client_hello};
use tokio::io::{AsyncRead, ReadBuf};

/// A reader that hands out its bytes in the given chunk sizes, one per read.
struct Chunked {
    data: Vec<u8>,
    sizes: Vec<usize>,
    at: usize,
    turn: usize,
}

impl AsyncRead for Chunked {
    fn poll_read(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let size = this.sizes.get(this.turn % this.sizes.len().max(1)).copied().unwrap_or(1).max(1);
        this.turn += 1;
        let end = (this.at + size).min(this.data.len()).min(this.at + buf.remaining());
        buf.put_slice(&this.data[this.at..end]);
        this.at = end;
        Poll::Ready(Ok(()))
    }
}

/// Writes `main` (and `department` as departments/default.toml) to a fresh
/// folder and loads it; a panic fails the property.
fn load(main: &[u8], department: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("departments")).unwrap();
    std::fs::write(dir.path().join("departments/default.toml"), department).unwrap();
    let path = dir.path().join("socialgate.toml");
    std::fs::write(&path, main).unwrap();
    let _ = socialgate::config::load(&path);
}

const SECTIONS: &[&str] = &[
    "proxy",
    "proxy.tls",
    "identity",
    "schedules",
    "schedules.work",
    "log",
    "admin",
    "pac",
    "intercept",
    "block_page",
    "limits",
    "services",
    "rules",
];

const KEYS: &[&str] = &[
    "listen",
    "connect_ports",
    "block_private_destinations",
    "allow_destinations",
    "hosts_file",
    "nameservers",
    "forwarded_for",
    "status_host",
    "cert",
    "key",
    "auth",
    "htpasswd",
    "realm",
    "default_department",
    "auth_exempt_networks",
    "timezone",
    "days",
    "from",
    "to",
    "access_log",
    "format",
    "allowed",
    "pseudonymize_users",
    "pseudonym_key_file",
    "proxy",
    "direct",
    "ca_cert",
    "ca_key",
    "contact",
    "max_header_bytes",
    "header_timeout",
    "idle_timeout",
    "tunnel_idle_timeout",
    "connect_timeout",
    "upstream_response_timeout",
    "sni_peek_timeout",
    "max_connections",
    "shutdown_grace",
    "networks",
    "users",
    "default",
    "inherits",
    "description",
    "facebook",
    "twitter",
    "youtube",
    "domains",
    "hosts",
    "action",
    "during",
    "otherwise",
    "non_tls_tunnels",
    "proxy_protocol_from",
    "replace",
];

/// A TOML value of the kinds config keys take, with hostile contents.
fn value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("99999999999999999999".to_owned()),
        any::<bool>().prop_map(|b| b.to_string()),
        "[ -~]{0,24}".prop_map(|s| format!("{s:?}")),
        proptest::sample::select(vec![
            "\"127.0.0.1:0\"",
            "\"0.0.0.0:0\"",
            "\"[::1]:0\"",
            "\"10.0.0.0/8\"",
            "\"::/0\"",
            "\"300ms\"",
            "\"0s\"",
            "\"-5s\"",
            "\"99999999999h\"",
            "\"24:00\"",
            "\"25:61\"",
            "\"Europe/Oslo\"",
            "\"Mars/Olympus\"",
            "\"block\"",
            "\"allow\"",
            "\"log\"",
            "\"basic\"",
            "\"-\"",
            "\"../../etc/passwd\"",
            "\"default\"",
            "\"\\u0000\"",
            "\"xn--\"",
            "\"bücher.example\"",
        ])
        .prop_map(str::to_owned),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            proptest::collection::vec((proptest::sample::select(KEYS), inner), 0..3).prop_map(|kv| {
                let fields: Vec<String> = kv.into_iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("{{ {} }}", fields.join(", "))
            }),
        ]
    })
}

/// A TOML document: sections from the real names, keys from the real
/// names, arbitrary values. Duplicate keys and tables are possible (and
/// must be diagnostics, not panics).
fn document() -> impl Strategy<Value = String> {
    let line = || (proptest::sample::select(KEYS), value()).prop_map(|(k, v)| format!("{k} = {v}\n"));
    let table = (proptest::sample::select(SECTIONS), any::<bool>(), proptest::collection::vec(line(), 0..5)).prop_map(
        |(name, array, lines)| {
            let head = if array { format!("[[{name}]]\n") } else { format!("[{name}]\n") };
            head + &lines.concat()
        },
    );
    (proptest::collection::vec(line(), 0..4), proptest::collection::vec(table, 0..5))
        .prop_map(|(top, tables)| top.concat() + &tables.concat())
}

/// Keys as they appear in a valid config, to give one a hostile value.
const PLACES: &[(&str, &str)] = &[
    ("proxy", "listen"),
    ("proxy", "connect_ports"),
    ("proxy", "allow_destinations"),
    ("proxy", "hosts_file"),
    ("proxy", "nameservers"),
    ("proxy", "forwarded_for"),
    ("proxy", "status_host"),
    ("identity", "auth"),
    ("identity", "htpasswd"),
    ("identity", "default_department"),
    ("identity", "auth_exempt_networks"),
    ("schedules", "timezone"),
    ("schedules.work", "days"),
    ("schedules.work", "from"),
    ("schedules.work", "to"),
    ("log", "access_log"),
    ("log", "format"),
    ("log", "pseudonymize_users"),
    ("admin", "listen"),
    ("pac", "proxy"),
    ("pac", "direct"),
    ("block_page", "contact"),
    ("limits", "max_header_bytes"),
    ("limits", "header_timeout"),
    ("limits", "max_connections"),
    ("limits", "shutdown_grace"),
];

/// A valid main file with `section.key` set to `value` (replacing or adding).
fn valid_with(section: &str, key: &str, value: &str) -> String {
    let base: &[(&str, &[(&str, &str)])] = &[
        ("proxy", &[("listen", "[\"127.0.0.1:0\"]"), ("connect_ports", "[443]")]),
        ("identity", &[("default_department", "\"default\"")]),
        ("schedules", &[("timezone", "\"UTC\"")]),
        ("schedules.work", &[("from", "\"08:00\""), ("to", "\"16:00\"")]),
        ("log", &[("access_log", "\"-\"")]),
        ("admin", &[("listen", "\"127.0.0.1:0\"")]),
        ("pac", &[("proxy", "\"proxy.example.test:3128\"")]),
        ("block_page", &[("contact", "\"help@example.test\"")]),
        ("limits", &[("header_timeout", "\"30s\"")]),
    ];
    let mut out = String::new();
    for (name, keys) in base {
        out.push_str(&format!("[{name}]\n"));
        for (k, v) in keys.iter() {
            if !(*name == section && *k == key) {
                out.push_str(&format!("{k} = {v}\n"));
            }
        }
        if *name == section {
            out.push_str(&format!("{key} = {value}\n"));
        }
    }
    out
}

/// A host name for a ClientHello.
fn sni_name() -> impl Strategy<Value = String> {
    proptest::collection::vec("[a-z][a-z0-9]{0,10}", 1..4).prop_map(|labels| labels.join(".") + ".test")
}

/// Re-frames the handshake message of `hello` (one record) into records
/// cut at `cuts` (positions in the message).
fn reframe(hello: &[u8], cuts: &[usize]) -> Vec<u8> {
    let message = &hello[5..];
    let mut points: Vec<usize> = cuts.iter().map(|c| c % message.len()).filter(|c| *c > 0).collect();
    points.sort_unstable();
    points.dedup();
    points.push(message.len());
    let mut out = Vec::new();
    let mut start = 0;
    for end in points {
        let fragment = &message[start..end];
        out.extend_from_slice(&[22, 3, 1]);
        out.extend_from_slice(&(fragment.len() as u16).to_be_bytes());
        out.extend_from_slice(fragment);
        start = end;
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn loading_arbitrary_bytes_never_panics(main in proptest::collection::vec(any::<u8>(), 0..400), dept in proptest::collection::vec(any::<u8>(), 0..100)) {
        load(&main, &dept);
    }

    #[test]
    fn loading_arbitrary_toml_never_panics(main in document(), dept in document()) {
        load(format!("[proxy]\nlisten = [\"127.0.0.1:0\"]\n{main}").as_bytes(), dept.as_bytes());
        load(main.as_bytes(), dept.as_bytes());
    }

    #[test]
    fn a_valid_config_with_one_hostile_value_never_panics(place in proptest::sample::select(PLACES), v in value()) {
        let (section, key) = place;
        load(valid_with(section, key, &v).as_bytes(), b"default = \"allow\"\n");
    }

    #[test]
    fn a_department_with_hostile_values_never_panics(key in proptest::sample::select(KEYS), v in value(), rules in document()) {
        load(valid_with("limits", "header_timeout", "\"30s\"").as_bytes(), format!("{key} = {v}\n{rules}").as_bytes());
    }

    #[test]
    fn peeking_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = peek(&bytes);
        // Also behind a plausible record header.
        let mut framed = vec![22, 3, 1];
        framed.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        framed.extend_from_slice(&bytes);
        let _ = peek(&framed);
        let mut hello = vec![22, 3, 1, 0, 0, 1];
        hello.extend_from_slice(&bytes);
        let len = (hello.len() - 5) as u16;
        hello[3..5].copy_from_slice(&len.to_be_bytes());
        let _ = peek(&hello);
    }

    #[test]
    fn peeking_a_mutated_hello_never_panics(name in sni_name(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut hello = support::client_hello(&name);
        for (at, byte) in flips {
            let i = at % hello.len();
            hello[i] = byte;
        }
        let _ = peek(&hello);
        for cut in 0..hello.len() {
            let _ = peek(&hello[..cut]);
        }
    }

    #[test]
    fn reading_a_hello_in_arbitrary_chunks_finds_the_sni(
        name in sni_name(),
        cuts in proptest::collection::vec(any::<usize>(), 0..4),
        sizes in proptest::collection::vec(1usize..300, 1..8),
    ) {
        let hello = reframe(&support::client_hello(&name), &cuts);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let mut reader = Chunked { data: hello.clone(), sizes, at: 0, turn: 0 };
        let mut buf = Vec::new();
        let found = runtime
            .block_on(read_client_hello(&mut reader, &mut buf, std::time::Duration::from_secs(5)))
            .unwrap();
        prop_assert_eq!(found, Peeked::ClientHello { sni: Some(name.clone()) });
        // Every byte read is kept, to be sent on; nothing past the hello is read.
        prop_assert_eq!(buf, hello);
    }

    #[test]
    fn the_sni_is_found_however_the_hello_is_split(name in sni_name(), cuts in proptest::collection::vec(any::<usize>(), 0..6)) {
        let hello = reframe(&support::client_hello(&name), &cuts);
        prop_assert_eq!(peek(&hello), Peek::ClientHello { sni: Some(name.clone()) });
        for cut in 1..hello.len() {
            prop_assert_eq!(peek(&hello[..cut]), Peek::NeedMore, "prefix of {} bytes", cut);
        }
    }
}

#[test]
fn the_base_config_the_properties_mutate_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("departments")).unwrap();
    std::fs::write(dir.path().join("departments/default.toml"), "default = \"allow\"\n").unwrap();
    let path = dir.path().join("socialgate.toml");
    std::fs::write(&path, valid_with("limits", "header_timeout", "\"30s\"")).unwrap();
    if let Err(diags) = socialgate::config::load(&path) {
        panic!("{diags}");
    }
}

#[test]
fn the_fuzz_seeds_for_the_peeker_are_client_hellos() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/peek");
    for seed in ["seed1", "seed2"] {
        let bytes = std::fs::read(dir.join(seed)).unwrap();
        assert_eq!(peek(&bytes), Peek::ClientHello { sni: Some("www.facebook.com".into()) }, "{seed}");
    }
}
