//! Property tests for the htpasswd and hosts file parsers against models
//! of their formats: files of any mix of good and bad lines, comments,
//! blank lines, CRLF and blanks are read as the model reads them, every bad
//! line reported at its `file:line:col`, and names in a hosts file are
//! found by the resolver whatever their case or trailing dot.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::OnceLock;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use super::*;

/// One problem as the model expects it: line, column (1-based, in
/// characters) and message.
type Problem = (u32, u32, String);

/// What a file reads as: the entries, or every problem in it.
type Read<T> = Result<T, Vec<Problem>>;

/// Runs a parser on `text` written to a file, as `check` does.
fn read<T>(text: &str, parse: impl FnOnce(&mut Sink<'_>, &Path) -> Option<T>) -> Read<T> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("file");
    std::fs::write(&path, text).unwrap();
    let main = Source::new(PathBuf::from("socialgate.toml"), String::new());
    let mut out = Vec::new();
    let mut sink = Sink { src: &main, out: &mut out, offset: 0 };
    match parse(&mut sink, &path) {
        Some(found) if out.is_empty() => Ok(found),
        _ => Err(out.into_iter().map(|d| (d.line, d.col, d.message)).collect()),
    }
}

/// A line as written, with its ending.
fn join(lines: &[String], endings: &[&str]) -> String {
    lines.iter().zip(endings.iter().cycle()).map(|(line, end)| format!("{line}{end}")).collect()
}

fn col(line: &str, at: usize) -> u32 {
    line[..at].chars().count() as u32 + 1
}

fn blanks() -> impl Strategy<Value = &'static str> {
    select(vec!["", "", " ", "\t", "  \t "])
}

// --- htpasswd -------------------------------------------------------------

fn hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| bcrypt::hash("pw", 4).unwrap())
}

/// The hash field of a line: bcrypt under each prefix, with its cost
/// rewritten, cut short, with characters outside its alphabet, or another
/// scheme altogether.
fn hash_field() -> impl Strategy<Value = String> {
    let real = hash()[7..].to_owned();
    prop_oneof![
        6 => (select(vec!["2a", "2b", "2y"]), Just(real.clone())).prop_map(|(v, rest)| format!("${v}$04${rest}")),
        1 => (0u32..100, Just(real.clone())).prop_map(|(cost, rest)| format!("$2y${cost:02}${rest}")),
        1 => Just(real.clone()).prop_map(|rest| format!("$2b$04${}", &rest[..40])),
        1 => Just(format!("$2y$05${}", "!".repeat(53))),
        1 => select(vec!["$2x$04$", "$apr1$abc$def", "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "plain", "", " $2y$04$"])
            .prop_map(str::to_owned),
    ]
}

fn htpasswd_line() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (blanks(), select(vec!["alice", "bob", "Alice", "carol d", "émile", "#x"]), hash_field(), blanks())
            .prop_map(|(lead, user, hash, trail)| format!("{lead}{user}:{hash}{trail}")),
        1 => (blanks(), hash_field()).prop_map(|(lead, hash)| format!("{lead}:{hash}")),
        1 => (blanks(), "[a-z #]{0,8}").prop_map(|(lead, text)| format!("{lead}#{text}")),
        1 => blanks().prop_map(str::to_owned),
        1 => (blanks(), "[a-z]{1,8}").prop_map(|(lead, text)| format!("{lead}{text}")),
    ]
}

/// Apache's reading of an htpasswd file (mod_authn_file over
/// `ap_cfg_getline`): each line trimmed of blanks at both ends, `#` lines
/// and empty ones skipped, the user up to the first colon, the hash the
/// rest. socialgate's rules on top (SPEC 2.3): bcrypt (`$2a$`, `$2b$`,
/// `$2y$`) with a cost of 4 to 31 only, a user listed once, a non-empty
/// user, every problem reported at the start of what is wrong.
fn model_htpasswd(text: &str) -> Read<HashMap<String, String>> {
    let mut users = HashMap::new();
    let mut problems = Vec::new();
    for (n, raw) in text.split('\n').enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let at = raw.len() - raw.trim_start().len();
        let line = raw.trim();
        let n = n as u32 + 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((user, hash)) = line.split_once(':') else {
            problems.push((n, col(raw, at), "expected `user:hash`".to_owned()));
            continue;
        };
        if user.is_empty() {
            problems.push((n, col(raw, at), "empty user name".to_owned()));
            continue;
        }
        let hash_col = col(raw, at + user.len() + 1);
        if !["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
            let only = "only bcrypt (`$2a$`, `$2b$`, `$2y$`) is accepted";
            problems.push((n, hash_col, format!("unsupported password hash for user `{user}`, {only}")));
            continue;
        }
        let alphabet = |b: u8| b.is_ascii_alphanumeric() || b == b'.' || b == b'/';
        if hash.len() != 60 || !hash.bytes().skip(7).all(alphabet) {
            problems.push((n, hash_col, format!("malformed bcrypt hash for user `{user}`")));
            continue;
        }
        let cost: u32 = hash[4..6].parse().unwrap();
        if !(4..=31).contains(&cost) {
            let message = format!("bcrypt cost `{cost}` for user `{user}` is out of range, expected 4 to 31");
            problems.push((n, hash_col, message));
            continue;
        }
        if users.insert(user.to_owned(), hash.to_owned()).is_some() {
            problems.push((n, col(raw, at), format!("user `{user}` is listed twice")));
        }
    }
    if problems.is_empty() { Ok(users) } else { Err(problems) }
}

// --- hosts file -----------------------------------------------------------

/// Address fields: both families, IPv6 in brackets (accepted, as some
/// tools write them) and IPv4-mapped, and ones that are not addresses.
fn address() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<[u8; 4]>().prop_map(|o| std::net::Ipv4Addr::from(o).to_string()),
        2 => any::<[u16; 8]>().prop_map(|s| std::net::Ipv6Addr::from(s).to_string()),
        1 => any::<[u16; 8]>().prop_map(|s| format!("[{}]", std::net::Ipv6Addr::from(s))),
        1 => select(vec!["::1", "::ffff:10.0.0.1", "300.1.1.1", "1.2.3", "010.0.0.1", "fe80::1%eth0", "localhost", "1.2.3.4/8"])
            .prop_map(str::to_owned),
    ]
}

/// Names: a few, so lines share them, in any case, with a trailing dot,
/// and some that are not names.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => (select(vec!["origin.test", "a.b.test", "localhost", "x-1.test", "_srv.test"]), vec(any::<bool>(), 16), any::<bool>())
            .prop_map(|(name, upper, dot)| {
                let mut s: String = name.chars().zip(upper).map(|(c, up)| if up { c.to_ascii_uppercase() } else { c }).collect();
                s.push_str(&name[s.len()..]);
                if dot {
                    s.push('.');
                }
                s
            }),
        1 => select(vec!["Bücher.Test", "bad!name", "10.0.0.1", "1.2.3"]).prop_map(str::to_owned),
    ]
}

fn separator() -> impl Strategy<Value = &'static str> {
    select(vec![" ", "\t", "  ", " \t "])
}

fn hosts_line() -> impl Strategy<Value = String> {
    let comment = select(vec!["", "#", " # note", "\t#x y", "#10.0.0.1 evil.test"]);
    prop_oneof![
        6 => (blanks(), address(), vec((separator(), name()), 0..4), blanks(), comment)
            .prop_map(|(lead, addr, names, trail, comment)| {
                let names: String = names.into_iter().map(|(sep, name)| format!("{sep}{name}")).collect();
                format!("{lead}{addr}{names}{trail}{comment}")
            }),
        1 => (blanks(), "[a-z #.]{0,10}").prop_map(|(lead, text)| format!("{lead}#{text}")),
        1 => blanks().prop_map(str::to_owned),
    ]
}

/// /etc/hosts (hosts(5)): `#` starts a comment anywhere; fields are split
/// on blanks; an address, then one or more names (aliases), each mapped to
/// it. socialgate's rules on top: an address field that is not an address
/// (IPv6 may be bracketed), a line with no name, a name that is an address
/// or not a host name are errors at that field; names are normalised as
/// hosts are (lowercase, punycode, no trailing dot), and a name on several
/// lines has all their addresses, in file order, each once.
fn model_hosts(text: &str) -> Read<HashMap<String, Vec<IpAddr>>> {
    let mut hosts: HashMap<String, Vec<IpAddr>> = HashMap::new();
    let mut problems = Vec::new();
    for (n, raw) in text.split('\n').enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let n = n as u32 + 1;
        let line = raw.split('#').next().unwrap();
        let mut fields = Vec::new();
        let mut start = None;
        for (i, c) in line.char_indices().chain([(line.len(), ' ')]) {
            match (c == ' ' || c == '\t', start) {
                (true, Some(s)) => {
                    fields.push((s, &line[s..i]));
                    start = None;
                }
                (false, None) => start = Some(i),
                _ => {}
            }
        }
        let Some(&(at, addr)) = fields.first() else { continue };
        let unbracketed = addr.strip_prefix('[').and_then(|a| a.strip_suffix(']'));
        let ip = match unbracketed {
            Some(inner) => inner.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6),
            None => addr.parse::<IpAddr>().ok(),
        };
        let Some(ip) = ip else {
            problems.push((n, col(raw, at), format!("invalid address `{addr}` in hosts file")));
            continue;
        };
        if fields.len() == 1 {
            problems.push((n, col(raw, at), format!("no host name after `{addr}`")));
        }
        for &(at, name) in &fields[1..] {
            let key = match name {
                "Bücher.Test" => "xn--bcher-kva.test".to_owned(),
                "bad!name" => {
                    let message = format!("invalid host name `{name}`: invalid character '!' in host name");
                    problems.push((n, col(raw, at), message));
                    continue;
                }
                "10.0.0.1" | "1.2.3" => {
                    problems.push((n, col(raw, at), format!("`{name}` is an address, expected a host name")));
                    continue;
                }
                _ => name.to_ascii_lowercase().trim_end_matches('.').to_owned(),
            };
            let addrs = hosts.entry(key).or_default();
            if !addrs.contains(&ip) {
                addrs.push(ip);
            }
        }
    }
    if problems.is_empty() { Ok(hosts) } else { Err(problems) }
}

/// A spelling of `name` a client might look up: any case, maybe a dot.
fn spelled(name: &str, seed: u64) -> String {
    let mut s: String = name
        .chars()
        .enumerate()
        .map(|(i, c)| if (seed >> (i % 63)) & 1 == 1 { c.to_ascii_uppercase() } else { c })
        .collect();
    if seed & (1 << 63) != 0 {
        s.push('.');
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any mix of user lines, comments, blank lines, blanks and CRLF: the
    /// users and hashes the model reads, or every problem at its place.
    #[test]
    fn htpasswd_files_read_as_apache_and_the_spec_say(
        lines in vec(htpasswd_line(), 0..8),
        endings in vec(select(vec!["\n", "\r\n"]), 1..3),
        bom in any::<bool>(),
    ) {
        let text = join(&lines, &endings);
        let file = if bom { format!("\u{feff}{text}") } else { text.clone() };
        let got = read(&file, |sink, path| htpasswd(sink, path, &(0..0)))
            .map(|users| users.into_iter().map(|(user, hash)| (user, hash.0)).collect::<HashMap<_, _>>());
        prop_assert_eq!(got, model_htpasswd(&text), "{:?}", text);
    }

    /// Any text at all: no panic, and every problem on a line of the file.
    #[test]
    fn arbitrary_htpasswd_and_hosts_text_never_panics(text in "[ -~\t\r\n\u{feff}é]{0,120}") {
        let lines = text.split('\n').count() as u32;
        for got in [read(&text, |sink, path| htpasswd(sink, path, &(0..0))).err(), read(&text, |sink, path| hosts_file(sink, path, &(0..0))).err()] {
            for (line, col, _) in got.unwrap_or_default() {
                prop_assert!((1..=lines).contains(&line) && col >= 1, "{}:{} in {:?}", line, col, text);
            }
        }
    }

    /// Hosts files of any mix of entries, comments, blanks, tabs, several
    /// names a line, both families: the model's map, or every problem at its
    /// place; and the resolver finds every name however it is spelled.
    #[test]
    fn hosts_files_read_as_hosts_5_says_and_names_are_found_in_any_spelling(
        lines in vec(hosts_line(), 0..8),
        endings in vec(select(vec!["\n", "\r\n"]), 1..3),
        seed in any::<u64>(),
    ) {
        let text = join(&lines, &endings);
        let got = read(&text, |sink, path| hosts_file(sink, path, &(0..0)));
        let model = model_hosts(&text);
        let shown: Read<HashMap<String, Vec<IpAddr>>> =
            got.clone().map(|hosts| hosts.into_iter().map(|(host, addrs)| (host.to_string(), addrs)).collect());
        prop_assert_eq!(&shown, &model, "{:?}", text);
        if let (Ok(hosts), Ok(model)) = (got, model) {
            // A nameserver that is never asked: every name looked up is in the file.
            let resolver = crate::resolve::Resolver::new(hosts, &[SocketAddr::from(([127, 0, 0, 1], 9))]);
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            for (name, addrs) in &model {
                let host = Host::parse(&spelled(name, seed)).unwrap();
                prop_assert_eq!(&runtime.block_on(resolver.lookup(&host)).unwrap(), addrs, "{}", name);
            }
        }
    }
}
