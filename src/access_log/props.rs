//! Property tests for the access-log encodings: any [`Record`] (any
//! Unicode, control characters, quotes and line breaks in its strings,
//! extreme numbers, timestamps across jiff's whole range) is one JSON line
//! that reads back equal, through [`Record`] and through the report's
//! reader alike; one Squid line of exactly ten fields whose user and
//! method decode back; and with pseudonyms on, the line is the line of the
//! pseudonymised record (nothing else of the user name gets out), the
//! pseudonym is stable per key and distinct per user.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::IpAddr;

use jiff::Timestamp;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use super::pseudonym::Pseudonymizer;
use super::writer::Encoding;
use super::{ClosedBy, Record};
use crate::config::{LogConfig, LogFormat, LogTarget};
use crate::policy::Action;

/// Characters that break naive writers: line breaks of every kind, quotes,
/// escapes, controls, Squid's separators, bidi overrides, a BOM, wide
/// characters; plus any `char` at all.
fn hostile_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::char::range('a', 'z'),
        3 => select(vec![
            ' ', '\t', '\n', '\r', '"', '\\', '%', '\0', '\u{7f}', '\u{85}', '\u{a0}', '\u{2028}', '\u{2029}',
            '\u{202e}', '\u{feff}', '\u{1b}', '\u{9b}', '/', ':', '-', '{', '}', ',', '[', 'é', '営', '😀',
        ]),
        1 => any::<char>(),
    ]
}

/// A hostile string, sometimes one of the values that mean "nothing" to a
/// Squid analyser.
pub(crate) fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => vec(hostile_char(), 0..12).prop_map(|c| c.into_iter().collect()),
        1 => select(vec!["", "-", "NONE", "%2D", "u:0011223344556677"]).prop_map(str::to_owned),
    ]
}

/// Any instant jiff can hold, with sub-millisecond digits the log drops.
fn timestamp() -> impl Strategy<Value = Timestamp> {
    let (min, max) = (Timestamp::MIN.as_second(), Timestamp::MAX.as_second());
    prop_oneof![
        1 => (min..=max, 0..1_000_000_000i32),
        // This century, where logs are.
        3 => (946_684_800i64..4_102_444_800, 0..1_000_000_000i32),
    ]
    .prop_map(|(s, n)| Timestamp::new(s, n).unwrap_or(Timestamp::MAX))
}

fn action() -> impl Strategy<Value = Action> {
    select(vec![Action::Allow, Action::Log, Action::Block])
}

fn closed_by() -> impl Strategy<Value = ClosedBy> {
    select(vec![
        ClosedBy::Client,
        ClosedBy::Origin,
        ClosedBy::Proxy,
        ClosedBy::Policy,
        ClosedBy::Timeout,
        ClosedBy::Shutdown,
        ClosedBy::Error,
    ])
}

fn number() -> impl Strategy<Value = u64> {
    prop_oneof![0..100_000u64, Just(u64::MAX), Just(u64::MAX - 1), any::<u64>()]
}

prop_compose! {
    /// Any record, every string hostile.
    pub(crate) fn record()(
        ts in timestamp(),
        client in any::<IpAddr>(),
        user in proptest::option::of(hostile()),
        (department, method, host) in (hostile(), hostile(), hostile()),
        port in any::<u16>(),
        (url, sni, service) in (proptest::option::of(hostile()), proptest::option::of(hostile()), proptest::option::of(hostile())),
        rule in hostile(),
        action in action(),
        status in prop_oneof![Just(200u16), Just(403), Just(400), Just(0), any::<u16>()],
        (bytes_up, bytes_down, duration_ms) in (number(), number(), number()),
        closed_by in closed_by(),
        server in proptest::option::of(any::<IpAddr>()),
        content_type in proptest::option::of(hostile()),
    ) -> Record {
        Record {
            ts, client, user, department, method, host, port, url, sni, service, rule, action, status,
            bytes_up, bytes_down, duration_ms, closed_by, server,
            content_type: content_type.map(String::into_boxed_str),
        }
    }
}

/// The encoding `[log]` would give, with `key` as the pseudonym key.
fn encoding(format: LogFormat, key: Option<&[u8]>) -> (Encoding, Option<tempfile::TempDir>) {
    let dir = key.map(|_| tempfile::tempdir().unwrap());
    let key_file = dir.as_ref().map(|d| d.path().join("pseudonym.key")).unwrap_or_default();
    if let Some(key) = key {
        std::fs::write(&key_file, key).unwrap();
    }
    let config = LogConfig {
        access_log: LogTarget::Stdout,
        format,
        allowed: true,
        pseudonymize_users: key.is_some(),
        pseudonym_key_file: key_file,
    };
    (Encoding::from_config(&config).unwrap(), dir)
}

fn encode(encoding: &Encoding, rec: &Record) -> String {
    let mut line = Vec::new();
    encoding.encode(rec, &mut line);
    String::from_utf8(line).expect("a line is UTF-8")
}

/// What the JSON line is to read back as: `ts` cut to the millisecond
/// (towards the past, as the clock shows it), and without the two fields
/// only the Squid format writes.
fn as_logged(rec: &Record) -> Record {
    let nanos = rec.ts.as_nanosecond();
    let ts = Timestamp::from_nanosecond(nanos - nanos.rem_euclid(1_000_000)).unwrap();
    Record { ts, server: None, content_type: None, ..rec.clone() }
}

/// Decodes Squid's `%XX` escapes.
fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A JSON record is exactly one line, reads back as the record it was
    /// (to the millisecond), and the report's borrowing reader sees the
    /// same values.
    #[test]
    fn any_record_is_one_json_line_that_reads_back_equal(rec in record()) {
        let (json, _) = encoding(LogFormat::Json, None);
        let line = encode(&json, &rec);
        prop_assert!(line.ends_with('\n'), "{line:?}");
        let body = &line[..line.len() - 1];
        prop_assert!(!body.contains(['\n', '\r']), "a raw line break: {line:?}");
        let expected = as_logged(&rec);
        let back: Record = serde_json::from_str(body).unwrap();
        prop_assert_eq!(&back, &expected);

        let parsed = crate::report::input::parse_line(body.as_bytes()).unwrap();
        let l = &parsed.line;
        prop_assert_eq!(parsed.ts, expected.ts);
        prop_assert_eq!(l.client, expected.client);
        prop_assert_eq!(l.user.as_deref(), expected.user.as_deref());
        prop_assert_eq!((&*l.department, &*l.method, &*l.host, l.port), (&*expected.department, &*expected.method, &*expected.host, expected.port));
        prop_assert_eq!((l.url.as_deref(), l.sni.as_deref(), l.service.as_deref()), (expected.url.as_deref(), expected.sni.as_deref(), expected.service.as_deref()));
        prop_assert_eq!((&*l.rule, l.action, l.status), (&*expected.rule, expected.action, expected.status));
        prop_assert_eq!((l.bytes_up, l.bytes_down, l.duration_ms, l.closed_by), (expected.bytes_up, expected.bytes_down, expected.duration_ms, expected.closed_by));
    }

    /// A Squid line is one line of printable ASCII with exactly the ten
    /// documented fields, whatever the strings hold (split by ASCII or by
    /// Unicode whitespace alike); the fields that are not URLs decode back
    /// to the values logged.
    #[test]
    fn any_record_is_one_squid_line_of_ten_fields(rec in record()) {
        let (squid, _) = encoding(LogFormat::Squid, None);
        let line = encode(&squid, &rec);
        prop_assert!(line.ends_with('\n'), "{line:?}");
        let body = &line[..line.len() - 1];
        prop_assert!(body.bytes().all(|b| (b' '..=b'~').contains(&b)), "not printable ASCII: {line:?}");
        let fields: Vec<&str> = body.split(' ').filter(|f| !f.is_empty()).collect();
        prop_assert_eq!(fields.len(), 10, "{:?}", line);
        prop_assert_eq!(body.split(char::is_whitespace).filter(|f| !f.is_empty()).count(), 10);

        let millis = as_logged(&rec).ts.as_millisecond();
        // Before 1970 the Squid stamp rounds sub-millisecond digits towards
        // 1970 and the JSON `ts` towards the past (1 ms apart): no clock a
        // proxy runs on is there, so only later times are held to it.
        if millis >= 0 {
            prop_assert_eq!(fields[0], format!("{}.{:03}", millis / 1000, millis % 1000));
        }
        prop_assert_eq!(fields[1], rec.duration_ms.to_string());
        prop_assert_eq!(fields[2], rec.client.to_string());
        prop_assert!(fields[3].ends_with(&format!("/{:03}", rec.status)), "{}", fields[3]);
        prop_assert_eq!(fields[4], rec.bytes_down.to_string());
        let method = if rec.method.is_empty() { "NONE" } else { rec.method.as_str() };
        prop_assert_eq!(percent_decode(fields[5]), method.as_bytes());
        // Empty and `-` are both `-`: Squid's "no value", as Squid logs
        // them (an analyser reads `-` as no user either way).
        match rec.user.as_deref() {
            Some(user) if !user.is_empty() && user != "-" => prop_assert_eq!(percent_decode(fields[7]), user.as_bytes()),
            _ => prop_assert_eq!(fields[7], "-"),
        }
        match rec.content_type.as_deref() {
            Some(ct) if !ct.is_empty() && ct != "-" => prop_assert_eq!(percent_decode(fields[9]), ct.as_bytes()),
            _ => prop_assert_eq!(fields[9], "-"),
        }
        // The report names such a line for what it is instead of a bare
        // JSON error, whatever the client or duration (a time before 1970
        // has a sign, which Squid's format never has: no log has one).
        prop_assert!(millis < 0 || matches!(
            crate::report::input::parse_line(body.as_bytes()),
            Err(crate::report::input::LineError::SquidFormat)
        ), "{line:?}");
    }

    /// With pseudonyms on, the line is exactly the line of the record with
    /// its user replaced by the pseudonym (so no other trace of the name
    /// is written), in both formats; a record without a user is unchanged.
    #[test]
    fn a_pseudonymised_line_is_the_line_of_the_pseudonym(
        rec in record(),
        key in vec(any::<u8>(), 1..40),
        squid in any::<bool>(),
    ) {
        let format = if squid { LogFormat::Squid } else { LogFormat::Json };
        let (with, _dir) = encoding(format, Some(&key));
        let (without, _) = encoding(format, None);
        let pseudonyms = Pseudonymizer::from_key(key.clone());
        let replaced = Record { user: rec.user.as_deref().map(|u| pseudonyms.pseudonym(u)), ..rec.clone() };
        prop_assert_eq!(encode(&with, &rec), encode(&without, &replaced));
        if let Some(p) = &replaced.user {
            prop_assert!(p.len() == 18 && p.starts_with("u:"), "{p}");
            prop_assert!(p[2..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{p}");
        }
    }

    /// Pseudonyms are stable for a key and user, and distinct users get
    /// distinct pseudonyms (64 bits: no collision in practice).
    #[test]
    fn pseudonyms_are_stable_and_distinct(
        users in proptest::collection::hash_set(hostile(), 1..40),
        key in vec(any::<u8>(), 1..40),
    ) {
        let pseudonyms = Pseudonymizer::from_key(key.clone());
        let again = Pseudonymizer::from_key(key);
        let mut seen: HashMap<String, &String> = HashMap::new();
        for user in &users {
            let p = pseudonyms.pseudonym(user);
            prop_assert_eq!(&p, &again.pseudonym(user));
            if let Some(other) = seen.insert(p.clone(), user) {
                prop_assert!(false, "{user:?} and {other:?} share {p}");
            }
        }
    }
}
