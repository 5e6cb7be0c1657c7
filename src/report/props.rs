//! Property tests for `report` and `replay` against a model of SPEC 6: the
//! figures equal those of the matching records counted one by one (auth
//! records left out, `--since` inclusive, `--until` exclusive, one
//! department), whatever the files the records are split over, their order,
//! and whether they are gzip; invalid lines (any bytes, records cut
//! mid-way) are skipped, counted and located, never fatal and never a
//! panic; the renderings keep hostile names from reaching a terminal or a
//! page raw; and replay's counts add up.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;

use jiff::Timestamp;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use super::input::{BadLines, for_each_record, parse_line};
use super::replay::{Decider, NON_POLICY_RULES, Replayer};
use super::summary::{Aggregator, BUSIEST_HOURS, Filter, Summary};
use crate::access_log::{ClosedBy, Record};
use crate::policy::{Action, Decision, DepartmentSource, DeptId, Host, Identity, Placement};

/// 2026-11-26T00:00:00Z.
const DAY: i64 = 1_795_651_200;

/// Names drawn from a few, so users, services and hours repeat; some
/// hostile (markup, terminal escapes, bidi overrides, line breaks).
fn name(pool: &'static [&'static str]) -> impl Strategy<Value = String> {
    select(pool).prop_map(str::to_owned)
}

const DEPARTMENTS: &[&str] = &["sales", "it", "営業部", "<x-dept>", "a b\n\u{1b}[2J\u{202e}", ""];
const USERS: &[&str] = &["alice", "bob", "u:0011223344556677", "10.0.0.1", "<x-user>\"", "\u{9b}31m"];
const SERVICES: &[&str] = &["facebook", "youtube", "<x-svc>&", "\u{2066}x\u{85}", "'\"></style><x-svc>"];
const RULES: &[&str] = &["default", "auth", "rules[0]", "services.facebook", "request", "pac"];
const HOSTS: &[&str] = &["www.facebook.com", "cdn.example", "bad host!", "", "xn--bcher-kva.example"];

fn timestamp() -> impl Strategy<Value = Timestamp> {
    prop_oneof![
        // Three days around a day boundary, to the millisecond.
        20 => (-86_400_000..2 * 86_400_000i64)
            .prop_map(|ms| Timestamp::from_millisecond(DAY * 1000 + ms).unwrap()),
        1 => select(vec![
            Timestamp::MIN,
            Timestamp::MAX,
            Timestamp::UNIX_EPOCH,
            Timestamp::from_second(-1).unwrap(),
        ]),
    ]
}

prop_compose! {
    fn record()(
        ts in timestamp(),
        client in select(vec!["10.0.0.1", "10.0.0.2", "::1", "2001:db8::1"]).prop_map(|c| c.parse::<IpAddr>().unwrap()),
        user in proptest::option::of(name(USERS)),
        department in name(DEPARTMENTS),
        host in name(HOSTS),
        sni in proptest::option::of(name(HOSTS)),
        service in proptest::option::of(name(SERVICES)),
        rule in name(RULES),
        action in select(vec![Action::Allow, Action::Log, Action::Block]),
        bytes_up in prop_oneof![0..10_000u64, Just(u64::MAX)],
        bytes_down in 0..10_000u64,
    ) -> Record {
        Record {
            ts, client, user, department, method: "GET".into(), host, port: 443, url: None, sni, service, rule,
            action, status: 200, bytes_up, bytes_down, duration_ms: 1, closed_by: ClosedBy::Client,
            server: None, content_type: None,
        }
    }
}

prop_compose! {
    /// `--since`, `--until` and `--department`, each sometimes absent.
    fn filter()(
        since in proptest::option::of(-86_400_000..2 * 86_400_000i64),
        until in proptest::option::of(-86_400_000..2 * 86_400_000i64),
        department in proptest::option::of(name(DEPARTMENTS)),
    ) -> Filter {
        let at = |ms: i64| Timestamp::from_millisecond(DAY * 1000 + ms).unwrap();
        Filter { since: since.map(at), until: until.map(at), department }
    }
}

fn json_line(rec: &Record) -> String {
    let mut line = serde_json::to_string(rec).unwrap();
    line.push('\n');
    line
}

/// SPEC 6 counted the plain way.
#[derive(Debug, Default, PartialEq)]
struct ModelDept {
    actors: BTreeSet<String>,
    requests: u64,
    /// name -> (users, allowed, logged, blocked, bytes)
    services: BTreeMap<String, (BTreeSet<String>, u64, u64, u64, u64)>,
    hours: BTreeMap<i64, u64>,
}

fn model(
    records: &[Record],
    filter: &Filter,
) -> (u64, Option<Timestamp>, Option<Timestamp>, BTreeMap<String, ModelDept>) {
    let mut departments: BTreeMap<String, ModelDept> = BTreeMap::new();
    let (mut count, mut from, mut to) = (0, None::<Timestamp>, None::<Timestamp>);
    for rec in records {
        // The log keeps milliseconds (cut towards the past).
        let nanos = rec.ts.as_nanosecond();
        let ts = Timestamp::from_nanosecond(nanos - nanos.rem_euclid(1_000_000)).unwrap();
        let matches = rec.rule != "auth"
            && filter.since.is_none_or(|s| ts >= s)
            && filter.until.is_none_or(|u| ts < u)
            && filter.department.as_ref().is_none_or(|d| *d == rec.department);
        if !matches {
            continue;
        }
        count += 1;
        from = Some(from.map_or(ts, |f| f.min(ts)));
        to = Some(to.map_or(ts, |t| t.max(ts)));
        let d = departments.entry(rec.department.clone()).or_default();
        let actor = match &rec.user {
            Some(user) => format!("user {user}"),
            None => format!("client {}", rec.client),
        };
        d.actors.insert(actor.clone());
        d.requests += 1;
        *d.hours.entry(ts.as_second().div_euclid(3600)).or_default() += 1;
        if let Some(service) = &rec.service {
            let s = d.services.entry(service.clone()).or_default();
            s.0.insert(actor);
            match rec.action {
                Action::Allow => s.1 += 1,
                Action::Log => s.2 += 1,
                Action::Block => s.3 += 1,
            }
            s.4 = s.4.saturating_add(rec.bytes_up.saturating_add(rec.bytes_down));
        }
    }
    (count, from, to, departments)
}

fn assert_is_model(summary: &Summary, records: &[Record], filter: &Filter) -> Result<(), TestCaseError> {
    let (count, from, to, departments) = model(records, filter);
    prop_assert_eq!(summary.records, count);
    prop_assert_eq!((summary.from, summary.to), (from, to));
    let names: Vec<&str> = summary.departments.iter().map(|d| d.name.as_str()).collect();
    prop_assert_eq!(names, departments.keys().map(String::as_str).collect::<Vec<_>>(), "sorted by name");
    prop_assert_eq!(summary.departments.iter().map(|d| d.requests).sum::<u64>(), summary.records);
    for (d, (_, m)) in summary.departments.iter().zip(&departments) {
        prop_assert_eq!(d.active_users, m.actors.len() as u64, "{}", d.name);
        prop_assert_eq!(d.requests, m.requests);
        let services: Vec<(&str, u64, u64, u64, u64, u64)> =
            d.services.iter().map(|s| (s.name.as_str(), s.users, s.allowed, s.logged, s.blocked, s.bytes)).collect();
        let expected: Vec<(&str, u64, u64, u64, u64, u64)> =
            m.services.iter().map(|(n, s)| (n.as_str(), s.0.len() as u64, s.1, s.2, s.3, s.4)).collect();
        prop_assert_eq!(services, expected);
        for s in &d.services {
            prop_assert_eq!(s.share, s.users as f64 / d.active_users as f64);
            prop_assert!(s.share > 0.0 && s.share <= 1.0);
        }
        let mut hours: Vec<(i64, u64)> = m.hours.iter().map(|(&h, &n)| (h, n)).collect();
        hours.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        hours.truncate(BUSIEST_HOURS);
        let busiest: Vec<(i64, u64)> =
            d.busiest_hours.iter().map(|h| (h.hour.as_second().div_euclid(3600), h.requests)).collect();
        prop_assert_eq!(busiest, hours, "{}", d.name);
        prop_assert_eq!(&d.hourly, &m.hours.iter().map(|(&h, &n)| (h, n)).collect::<Vec<_>>());
    }
    Ok(())
}

/// Writes `lines` to `path`, gzip-compressed when `gzip` is set.
fn write_file(path: &std::path::Path, lines: &str, gzip: bool) {
    if gzip {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(lines.as_bytes()).unwrap();
        std::fs::write(path, enc.finish().unwrap()).unwrap();
    } else {
        std::fs::write(path, lines).unwrap();
    }
}

fn summarise(paths: &[PathBuf], filter: &Filter) -> (Summary, BadLines) {
    let mut agg = Aggregator::new(filter.clone());
    let read = for_each_record(paths, |rec| agg.add(rec));
    assert!(read.failed.is_empty(), "{:?}", read.failed);
    (agg.finish(), read.bad)
}

/// One item of a damaged log.
#[derive(Debug, Clone)]
enum Item {
    /// A record, whole.
    Whole(Record),
    /// A record cut after `at` of its bytes (a writer killed mid-write, a
    /// full disk), the next item on the next line.
    Cut(Record, prop::sample::Index),
    /// A line of any bytes (no line end).
    Junk(Vec<u8>),
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        4 => record().prop_map(Item::Whole),
        1 => (record(), any::<prop::sample::Index>()).prop_map(|(r, at)| Item::Cut(r, at)),
        1 => vec(prop_oneof![any::<u8>(), select(vec![b' ', b'\r', b'{', b'}', b'"', 0xef, 0xbb, 0xbf])], 0..24)
            .prop_map(|b| Item::Junk(b.into_iter().filter(|&b| b != b'\n').collect())),
    ]
}

/// Whether the reader takes `line` as blank: ASCII whitespace around an
/// optional byte-order mark.
fn blank(line: &[u8]) -> bool {
    let t = line.trim_ascii();
    t.strip_prefix(b"\xef\xbb\xbf").unwrap_or(t).trim_ascii().is_empty()
}

/// A policy small enough to model: `default` (0) and `sales` (1); alice
/// and 10.0.0.0/8 are in sales; sales blocks Facebook, `default` logs it;
/// everything else is allowed.
#[derive(Debug)]
struct Small;

const SMALL_DEPARTMENTS: [&str; 2] = ["default", "sales"];

impl Decider for Small {
    fn place(&self, identity: &Identity<'_>) -> Placement {
        let sales = identity.user == Some("alice")
            || matches!(identity.client_ip, Some(IpAddr::V4(ip)) if ip.octets()[0] == 10);
        Placement { department: DeptId(u32::from(sales)), source: DepartmentSource::Default }
    }
    fn department_id(&self, name: &str) -> Option<DeptId> {
        SMALL_DEPARTMENTS.iter().position(|d| *d == name).map(|i| DeptId(i as u32))
    }
    fn department_name(&self, id: DeptId) -> &str {
        SMALL_DEPARTMENTS[id.0 as usize]
    }
    fn decide(&self, placement: Placement, host: &Host, _now: Timestamp) -> Decision {
        let (service, action) = small_decide(self.department_name(placement.department), host.as_str());
        Decision {
            department: self.department_name(placement.department).into(),
            department_source: placement.source,
            service: service.map(Into::into),
            rule: "default".into(),
            schedule: None,
            schedule_active: false,
            action,
            origin: None,
            valid_until: None,
        }
    }
}

fn small_decide(department: &str, host: &str) -> (Option<&'static str>, Action) {
    match (host.ends_with("facebook.com"), department) {
        (true, "sales") => (Some("facebook"), Action::Block),
        (true, _) => (Some("facebook"), Action::Log),
        _ => (None, Action::Allow),
    }
}

/// SPEC 1's replay counted the plain way: (records, skipped, undecidable,
/// decided, moved, changes by (department, service, from, to) -> (requests,
/// users)).
type ReplayModel =
    (u64, u64, u64, u64, u64, BTreeMap<(String, Option<String>, Action, Action), (u64, BTreeSet<String>)>);

fn replay_model(records: &[Record]) -> ReplayModel {
    let (mut skipped, mut undecidable, mut decided, mut moved) = (0, 0, 0, 0);
    let mut changes: BTreeMap<_, (u64, BTreeSet<String>)> = BTreeMap::new();
    for rec in records {
        if NON_POLICY_RULES.contains(&rec.rule.as_str()) {
            skipped += 1;
            continue;
        }
        let Ok(host) = Host::parse(&rec.host) else {
            undecidable += 1;
            continue;
        };
        decided += 1;
        // Pseudonyms keep their logged department while it exists.
        let user = rec.user.as_deref();
        let department = match user {
            Some(u) if u.starts_with("u:") && SMALL_DEPARTMENTS.contains(&rec.department.as_str()) => {
                rec.department.as_str()
            }
            Some("alice") => "sales",
            _ if matches!(rec.client, IpAddr::V4(ip) if ip.octets()[0] == 10) => "sales",
            _ => "default",
        };
        if department != rec.department {
            moved += 1;
        }
        let mut decision = small_decide(department, host.as_str());
        if let Some(sni) = rec.sni.as_deref().and_then(|s| Host::parse(s).ok()) {
            let by_sni = small_decide(department, sni.as_str());
            if by_sni.1 > decision.1 {
                decision = by_sni;
            }
        }
        if decision.1 == rec.action {
            continue;
        }
        let service = decision.0.map(str::to_owned).or(rec.service.clone());
        let change = changes.entry((department.to_owned(), service, rec.action, decision.1)).or_default();
        change.0 += 1;
        change.1.insert(match user {
            Some(u) => format!("user {u}"),
            None => format!("client {}", rec.client),
        });
    }
    (records.len() as u64, skipped, undecidable, decided, moved, changes)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The report of records split over several files (plain or gzip,
    /// named in any order) is the model's report of the records filtered
    /// first, and the same as the report of one file holding them all.
    #[test]
    fn a_report_is_the_model_report_whatever_the_files(
        records in vec(record(), 0..40),
        filter in filter(),
        placement in vec((0..4usize, any::<bool>()), 4),
        file_of in vec(0..4usize, 40),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut parts = vec![String::new(); 4];
        let mut all = String::new();
        for (i, rec) in records.iter().enumerate() {
            parts[file_of[i]].push_str(&json_line(rec));
            all.push_str(&json_line(rec));
        }
        let mut paths = Vec::new();
        for (i, (part, &(order, gzip))) in parts.iter().zip(&placement).enumerate() {
            let path = dir.path().join(format!("access.log.{i}"));
            write_file(&path, part, gzip);
            paths.push((order, path));
        }
        paths.sort();
        let paths: Vec<PathBuf> = paths.into_iter().map(|(_, p)| p).collect();
        let (split, bad) = summarise(&paths, &filter);
        prop_assert_eq!(bad.count, 0);
        assert_is_model(&split, &records, &filter)?;

        let one = dir.path().join("access.log");
        write_file(&one, &all, false);
        let (whole, _) = summarise(&[one], &filter);
        prop_assert_eq!(serde_json::to_string(&split).unwrap(), serde_json::to_string(&whole).unwrap());
    }

    /// Lines that are not records (any bytes, records cut mid-way) are
    /// skipped, never fatal: every whole record is counted, every invalid
    /// non-blank line is counted, and the first few are named by line.
    #[test]
    fn invalid_lines_are_counted_and_located_and_whole_records_kept(
        items in vec(item(), 0..30),
        final_newline in any::<bool>(),
    ) {
        let mut log = Vec::new();
        let (mut whole, mut bad_lines) = (Vec::new(), Vec::new());
        for (i, item) in items.iter().enumerate() {
            let line = match item {
                Item::Whole(rec) => {
                    whole.push(rec.clone());
                    json_line(rec).trim_end().as_bytes().to_vec()
                }
                Item::Cut(rec, at) => {
                    let line = json_line(rec);
                    // Strictly inside the object: never the whole of it.
                    line.as_bytes()[..at.index(line.len() - 2)].to_vec()
                }
                Item::Junk(bytes) => bytes.clone(),
            };
            if !matches!(item, Item::Whole(_)) && !blank(&line) {
                bad_lines.push(i as u64 + 1);
            }
            log.extend_from_slice(&line);
            if final_newline || i + 1 < items.len() {
                log.push(b'\n');
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        std::fs::write(&path, &log).unwrap();
        let (summary, bad) = summarise(std::slice::from_ref(&path), &Filter::default());
        assert_is_model(&summary, &whole, &Filter::default())?;
        prop_assert_eq!(bad.count, bad_lines.len() as u64);
        let located: Vec<u64> = bad.first.iter().map(|b| b.line).collect();
        prop_assert_eq!(&located[..], &bad_lines[..bad_lines.len().min(super::input::MAX_DESCRIBED)]);
        let name = path.display().to_string();
        prop_assert!(bad.first.iter().all(|b| b.path == name && !b.message.is_empty()));
    }

    /// Any bytes at all: no panic, and no more records and invalid lines
    /// than lines.
    #[test]
    fn any_bytes_are_read_without_panic(bytes in vec(prop_oneof![any::<u8>(), Just(b'\n')], 0..400)) {
        let _ = parse_line(&bytes);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        std::fs::write(&path, &bytes).unwrap();
        let mut records = 0u64;
        let read = for_each_record(std::slice::from_ref(&path), |_| records += 1);
        let lines = bytes.split(|&b| b == b'\n').count() as u64;
        prop_assert!(records + read.bad.count <= lines);
        prop_assert!(read.failed.is_empty());
    }

    /// Hostile names reach neither the terminal nor the page raw: text has
    /// no control or bidi character but its line ends, and every row of a
    /// name is one line; JSON escapes them and decodes back to the names;
    /// HTML escapes markup.
    #[test]
    fn renderings_keep_hostile_names_in_their_place(records in vec(record(), 0..20)) {
        let mut agg = Aggregator::new(Filter::default());
        let all: String = records.iter().map(json_line).collect();
        for line in all.lines() {
            agg.add(&parse_line(line.as_bytes()).unwrap());
        }
        let summary = agg.finish();

        let text = super::text::render_summary(&summary);
        prop_assert!(!text.chars().any(|c| (c.is_control() && c != '\n') || super::text::is_bidi_control(c)), "{text:?}");
        let departments = text.lines().filter(|l| l.starts_with("department ")).count();
        prop_assert_eq!(departments, summary.departments.len(), "{:?}", text);

        let json = super::json_line(&summary).unwrap();
        prop_assert!(json.ends_with('\n'));
        prop_assert!(!json[..json.len() - 1].chars().any(|c| c.is_control() || super::text::is_bidi_control(c)), "{json:?}");
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let names: Vec<&str> = value["departments"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
        prop_assert_eq!(names, summary.departments.iter().map(|d| d.name.as_str()).collect::<Vec<_>>());

        let html = super::html::render_summary(&summary);
        prop_assert!(!html.contains("<x-"), "markup from the log reached the page");
        // Strictly: the page has only the template's tags (a tokenizer that
        // knows nothing else), is one well-formed page, and shows every
        // department and service name as text.
        use crate::html::check::{as_shown, check_well_formed, tokenize};
        let tokens = tokenize(&html).map_err(|e| TestCaseError::fail(format!("{e}\n{html}")))?;
        check_well_formed(&tokens).map_err(|e| TestCaseError::fail(format!("{e}\n{html}")))?;
        let shown: String = tokens
            .iter()
            .filter_map(|t| match t {
                crate::html::check::Token::Text(text) => Some(text.as_str()),
                _ => None,
            })
            .collect();
        for d in &summary.departments {
            prop_assert!(shown.contains(&as_shown(&d.name)), "department {:?} not shown", d.name);
            for svc in &d.services {
                prop_assert!(shown.contains(&as_shown(&svc.name)), "service {:?} not shown", svc.name);
            }
        }
    }

    /// Replay counts as the model of SPEC 1 counts: records not decided by
    /// the policy and invalid hosts left out, the stricter of host and SNI,
    /// pseudonymised users kept in their logged department, and each flip
    /// counted once by department, service and (from, to); examples are
    /// the first three of each, in log order.
    #[test]
    fn replay_counts_what_the_model_counts(records in vec(record(), 0..40)) {
        let mut replayer = Replayer::new(&Small);
        let all: String = records.iter().map(json_line).collect();
        for line in all.lines() {
            replayer.add(&parse_line(line.as_bytes()).unwrap());
        }
        let outcome = replayer.finish();
        let (count, skipped, undecidable, decided, moved, changes) = replay_model(&records);
        prop_assert_eq!(
            (outcome.records, outcome.skipped, outcome.undecidable, outcome.decided, outcome.moved),
            (count, skipped, undecidable, decided, moved)
        );
        prop_assert_eq!(outcome.changed, changes.values().map(|c| c.0).sum::<u64>());
        let got: Vec<_> = outcome
            .changes
            .iter()
            .map(|c| ((c.department.clone(), c.service.clone(), c.from, c.to), c.requests, c.users, c.examples.len()))
            .collect();
        let expected: Vec<_> = changes
            .into_iter()
            .map(|(k, (n, users))| (k, n, users.len() as u64, (n as usize).min(super::replay::EXAMPLES)))
            .collect();
        prop_assert_eq!(got, expected);
        let text = super::replay::render_text(&outcome);
        prop_assert!(!text.chars().any(|c| (c.is_control() && c != '\n') || super::text::is_bidi_control(c)), "{text:?}");
    }
}
