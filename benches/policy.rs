//! Policy engine micro-benchmark (issue 6, figure 5): decision time against a
//! catalogue of 100,000 domains (hit, miss, deep subdomain, rule hit, and
//! parse + decide from the raw string) and compile time for that catalogue.
//!
//! Targets: median decision <= 200 ns, compile <= 500 ms.
//! Run: `cargo bench --bench policy` (release profile, criterion).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use socialgate::policy::catalogue::BUILTIN;
use socialgate::policy::{
    Action, ActionSpec, DepartmentSpec, Host, Identity, Policy, PolicySpec, RuleSpec, ScheduleSpec, ServiceEntrySpec,
    ServiceSpec, Weekdays,
};

/// Generated catalogue size (on top of the built-in services).
const DOMAINS: usize = 100_000;
/// Generated services; each holds `DOMAINS / SERVICES` domains.
const SERVICES: usize = 100;
const TLDS: [&str; 6] = ["com", "net", "org", "no", "de", "io"];

fn host(s: &str) -> Host {
    Host::parse(s).expect("bench host parses")
}

/// The i-th generated domain, e.g. `site004711-media.net`.
fn domain(i: usize) -> String {
    let tld = TLDS.get(i % TLDS.len()).copied().unwrap_or("com");
    format!("site{i:06}-media.{tld}")
}

fn action(a: Action) -> ActionSpec {
    ActionSpec::always(a)
}

fn scheduled(a: Action, during: &str, otherwise: Action) -> ActionSpec {
    ActionSpec { action: a, during: Some(during.to_owned()), otherwise: Some(otherwise) }
}

fn entry(service: &str, a: ActionSpec) -> ServiceEntrySpec {
    ServiceEntrySpec { service: service.to_owned(), action: a, origin: None }
}

fn dept(name: &str, inherits: Option<&str>, net: &str) -> DepartmentSpec {
    DepartmentSpec {
        name: name.to_owned(),
        description: Some(format!("{name} (bench)")),
        inherits: inherits.map(str::to_owned),
        networks: vec![net.parse().expect("bench network")],
        users: vec![format!("{name}-user")],
        default: None,
        default_origin: None,
        services: Vec::new(),
        rules: Vec::new(),
    }
}

/// The example company's shape (six departments, two schedules, rules and
/// scheduled service entries) over the built-in catalogue plus 100,000
/// generated domains in 100 services.
fn spec() -> PolicySpec {
    let mut services: Vec<ServiceSpec> = BUILTIN
        .iter()
        .map(|b| ServiceSpec {
            name: b.name.to_owned(),
            domains: b.domains.iter().map(|d| host(d)).collect(),
            hosts: b.hosts.iter().map(|h| host(h)).collect(),
        })
        .collect();
    let per = DOMAINS / SERVICES;
    for s in 0..SERVICES {
        services.push(ServiceSpec {
            name: format!("svc{s:03}"),
            domains: (s * per..(s + 1) * per).map(|i| host(&domain(i))).collect(),
            hosts: vec![host(&format!("svc{s:03}.app.link"))],
        });
    }

    let schedules = vec![
        ScheduleSpec {
            name: "work-hours".to_owned(),
            days: Weekdays(0b001_1111),
            from_minute: 8 * 60,
            to_minute: 16 * 60,
            origin: None,
        },
        ScheduleSpec {
            name: "lunch".to_owned(),
            days: Weekdays(0b001_1111),
            from_minute: 11 * 60 + 30,
            to_minute: 12 * 60 + 30,
            origin: None,
        },
    ];

    let mut default = dept("default", None, "10.10.0.0/16");
    default.default = Some(action(Action::Allow));
    default.services = vec![
        entry("facebook", action(Action::Block)),
        entry("twitter", action(Action::Block)),
        entry("linkedin", action(Action::Log)),
        entry("youtube", scheduled(Action::Block, "work-hours", Action::Log)),
    ];
    default.services.extend((0..SERVICES).step_by(3).map(|s| entry(&format!("svc{s:03}"), action(Action::Block))));
    default.rules = vec![RuleSpec {
        domains: ["jtvnw.net", "kick.com", "ttvnw.net", "twitch.tv"].iter().map(|d| host(d)).collect(),
        hosts: Vec::new(),
        action: scheduled(Action::Block, "work-hours", Action::Log),
        origin: None,
    }];

    let mut sales = dept("sales", Some("default"), "10.20.0.0/16");
    sales.services = vec![
        entry("facebook", action(Action::Log)),
        entry("twitter", action(Action::Log)),
        entry("youtube", scheduled(Action::Allow, "lunch", Action::Log)),
    ];
    sales.services.extend((0..SERVICES).step_by(7).map(|s| entry(&format!("svc{s:03}"), action(Action::Log))));
    sales.rules = vec![RuleSpec {
        domains: vec![host("crm-partner.example")],
        hosts: vec![host("ads.partner.example")],
        action: action(Action::Allow),
        origin: None,
    }];

    let mut consultants = dept("consultants", Some("default"), "10.30.0.0/16");
    consultants.services = vec![entry("linkedin", action(Action::Allow))];
    let mut construction = dept("construction", Some("default"), "10.40.0.0/16");
    construction.services = vec![entry("youtube", action(Action::Block))];
    construction.rules = vec![RuleSpec {
        domains: ["netflix.com", "nflxvideo.net", "spotify.com"].iter().map(|d| host(d)).collect(),
        hosts: Vec::new(),
        action: action(Action::Block),
        origin: None,
    }];
    let mut it = dept("it", Some("default"), "10.50.0.0/16");
    it.default = Some(action(Action::Log));
    it.services = vec![entry("facebook", action(Action::Log)), entry("twitter", action(Action::Log))];
    let mut management = dept("management", Some("sales"), "10.20.200.0/24");
    management.services = vec![entry("youtube", action(Action::Allow))];

    PolicySpec {
        timezone: jiff::tz::TimeZone::get("Europe/Oslo").expect("bundled tzdb"),
        schedules,
        services,
        departments: vec![default, sales, consultants, construction, it, management],
        default_department: "default".to_owned(),
    }
}

fn bench_decide(c: &mut Criterion) {
    let policy = Policy::compile(spec());
    // A Wednesday inside work hours and outside lunch, so scheduled entries
    // are consulted (Europe/Oslo).
    let now: jiff::Timestamp = "2026-11-25T09:15:00Z".parse().expect("timestamp");
    // management inherits sales inherits default: the longest rule chain.
    let client = IpAddr::V4(Ipv4Addr::new(10, 20, 200, 7));
    let placement = policy.place(&Identity { user: None, client_ip: Some(client) });

    let hit = host(&domain(54_321));
    let deep = host(&format!("a.b.c.d.e.f.cdn.{}", domain(98_765)));
    let miss = host("www.nothing-here-at-all.example.org");
    let builtin = host("www.facebook.com");
    let rule = host("clips.twitch.tv");
    // Sanity: the cases are what their names say.
    assert!(policy.service_of(&hit).is_some());
    assert!(policy.service_of(&deep).is_some());
    assert!(policy.service_of(&miss).is_none());

    let mut group = c.benchmark_group("decide_100k");
    for (name, h) in [("hit", &hit), ("deep_subdomain", &deep), ("miss", &miss), ("builtin", &builtin), ("rule", &rule)]
    {
        group.bench_function(name, |b| b.iter(|| black_box(policy.decide(placement, black_box(h), now))));
    }
    // What the proxy does per request: parse the raw host, place, decide.
    let raw = format!("WWW.{}", domain(12_345));
    group.bench_function("parse_place_decide", |b| {
        b.iter(|| {
            let h = Host::parse(black_box(&raw)).expect("parses");
            let p = policy.place(&Identity { user: None, client_ip: Some(black_box(client)) });
            black_box(policy.decide(p, &h, now))
        })
    });
    group.finish();
}

fn bench_compile(c: &mut Criterion) {
    let spec = spec();
    let mut group = c.benchmark_group("compile_100k");
    group.sample_size(10).measurement_time(Duration::from_secs(8));
    group.bench_function("compile", |b| {
        b.iter_batched(|| spec.clone(), |s| black_box(Policy::compile(s)), BatchSize::LargeInput)
    });
    group.finish();
}

criterion_group!(benches, bench_decide, bench_compile);
criterion_main!(benches);
