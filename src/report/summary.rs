//! The `report` aggregation: per-department counters fed one record at a
//! time (memory grows only with distinct departments, users, services and
//! hours), turned at the end into the SPEC 6 [`Summary`].

use std::collections::BTreeSet;
use std::net::IpAddr;

use jiff::Timestamp;
use serde::Serialize;

use super::input::Parsed;
use crate::policy::Action;
use rustc_hash::{FxHashMap, FxHashSet};

/// How many busiest hours a department lists.
pub const BUSIEST_HOURS: usize = 5;

/// How many department names are remembered, with `--department`, to hint
/// at the right one when the filter matches nothing.
pub const MAX_SEEN_DEPARTMENTS: usize = 20;

/// Which records count.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Inclusive lower bound.
    pub since: Option<Timestamp>,
    /// Exclusive upper bound.
    pub until: Option<Timestamp>,
    /// Only this department.
    pub department: Option<String>,
}

impl Filter {
    /// Whether a record counts: not an `auth` record, and inside the bounds
    /// and department.
    pub fn matches(&self, rec: &Parsed<'_>) -> bool {
        if rec.line.rule == "auth" {
            return false;
        }
        if self.since.is_some_and(|since| rec.ts < since) || self.until.is_some_and(|until| rec.ts >= until) {
            return false;
        }
        self.department.as_deref().is_none_or(|d| d == rec.line.department)
    }
}

#[derive(Debug, Default)]
struct ServiceAgg {
    users: FxHashSet<u32>,
    allowed: u64,
    logged: u64,
    blocked: u64,
    bytes: u64,
}

#[derive(Debug, Default)]
struct DeptAgg {
    users: FxHashMap<Box<str>, u32>,
    clients: FxHashMap<IpAddr, u32>,
    requests: u64,
    services: FxHashMap<Box<str>, ServiceAgg>,
    hours: FxHashMap<i64, u64>,
}

impl DeptAgg {
    /// A small dense id per distinct user (or, for records without a user,
    /// per client address); the two spaces never collide.
    fn actor(&mut self, user: Option<&str>, client: IpAddr) -> u32 {
        let next = u32::try_from(self.users.len() + self.clients.len()).unwrap_or(u32::MAX);
        match user {
            Some(user) => match self.users.get(user) {
                Some(&id) => id,
                None => {
                    self.users.insert(user.into(), next);
                    next
                }
            },
            None => *self.clients.entry(client).or_insert(next),
        }
    }
}

/// The running aggregation.
#[derive(Debug, Default)]
pub struct Aggregator {
    filter: Filter,
    records: u64,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
    departments: FxHashMap<Box<str>, DeptAgg>,
    /// With a department filter: the first few department names seen (and
    /// the filter's own whenever it is seen).
    seen_departments: BTreeSet<Box<str>>,
}

impl Aggregator {
    /// An empty aggregation counting what `filter` lets through.
    pub fn new(filter: Filter) -> Aggregator {
        Aggregator { filter, ..Aggregator::default() }
    }

    /// Counts one record (if the filter lets it through).
    pub fn add(&mut self, rec: &Parsed<'_>) {
        if let Some(wanted) = self.filter.department.as_deref()
            && (self.seen_departments.len() < MAX_SEEN_DEPARTMENTS || wanted == rec.line.department)
            && !self.seen_departments.contains(&*rec.line.department)
        {
            self.seen_departments.insert(rec.line.department.as_ref().into());
        }
        if !self.filter.matches(rec) {
            return;
        }
        let line = &rec.line;
        self.records += 1;
        self.from = Some(self.from.map_or(rec.ts, |t| t.min(rec.ts)));
        self.to = Some(self.to.map_or(rec.ts, |t| t.max(rec.ts)));
        let dept = match self.departments.get_mut(&*line.department) {
            Some(d) => d,
            None => self.departments.entry(line.department.as_ref().into()).or_default(),
        };
        let actor = dept.actor(line.user.as_deref(), line.client);
        dept.requests += 1;
        *dept.hours.entry(rec.ts.as_second().div_euclid(3600)).or_insert(0) += 1;
        if let Some(service) = line.service.as_deref() {
            let svc = match dept.services.get_mut(service) {
                Some(s) => s,
                None => dept.services.entry(service.into()).or_default(),
            };
            svc.users.insert(actor);
            match line.action {
                Action::Allow => svc.allowed += 1,
                Action::Log => svc.logged += 1,
                Action::Block => svc.blocked += 1,
            }
            svc.bytes = svc.bytes.saturating_add(line.bytes_up.saturating_add(line.bytes_down));
        }
    }

    /// The finished summary, lists sorted by name.
    pub fn finish(self) -> Summary {
        let mut departments: Vec<DepartmentSummary> = self
            .departments
            .into_iter()
            .map(|(name, d)| {
                let active_users = (d.users.len() + d.clients.len()) as u64;
                let mut services: Vec<ServiceSummary> = d
                    .services
                    .into_iter()
                    .map(|(name, s)| {
                        let users = s.users.len() as u64;
                        ServiceSummary {
                            name: name.into(),
                            users,
                            share: if active_users == 0 { 0.0 } else { users as f64 / active_users as f64 },
                            allowed: s.allowed,
                            logged: s.logged,
                            blocked: s.blocked,
                            bytes: s.bytes,
                        }
                    })
                    .collect();
                services.sort_by(|a, b| a.name.cmp(&b.name));
                let mut hours: Vec<(i64, u64)> = d.hours.iter().map(|(&h, &n)| (h, n)).collect();
                hours.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                let busiest_hours = hours
                    .iter()
                    .take(BUSIEST_HOURS)
                    .filter_map(|&(h, n)| hour_start(h).map(|hour| HourCount { hour, requests: n }))
                    .collect();
                let mut hourly: Vec<(i64, u64)> = d.hours.into_iter().collect();
                hourly.sort_unstable();
                DepartmentSummary {
                    name: name.into(),
                    active_users,
                    requests: d.requests,
                    services,
                    busiest_hours,
                    hourly,
                }
            })
            .collect();
        departments.sort_by(|a, b| a.name.cmp(&b.name));
        Summary {
            from: self.from,
            to: self.to,
            records: self.records,
            departments,
            seen_departments: self.seen_departments.into_iter().map(String::from).collect(),
            unreadable: Vec::new(),
        }
    }
}

/// The start of the hour with index `hour` (hours since the Unix epoch).
/// The first hour jiff holds begins before its first instant
/// (`-009999-01-02T01:59:59Z`): that instant stands for it, so the hour is
/// still listed.
pub fn hour_start(hour: i64) -> Option<Timestamp> {
    if hour == Timestamp::MIN.as_second().div_euclid(3600) {
        return Some(Timestamp::MIN);
    }
    hour.checked_mul(3600).and_then(|s| Timestamp::from_second(s).ok())
}

/// `report --format json`, field names and order as in SPEC 6.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// First matching record (`null` when none matched).
    pub from: Option<Timestamp>,
    /// Last matching record.
    pub to: Option<Timestamp>,
    /// Matching records.
    pub records: u64,
    /// Per department, sorted by name.
    pub departments: Vec<DepartmentSummary>,
    /// With a department filter: the first [`MAX_SEEN_DEPARTMENTS`]
    /// department names in the logs, and the filter's own if seen later,
    /// sorted (not in the JSON).
    #[serde(skip)]
    pub seen_departments: Vec<String>,
    /// Inputs that could not be read to the end: the figures leave out what
    /// they hold (not in the JSON; the exit code says it).
    #[serde(skip)]
    pub unreadable: Vec<String>,
}

/// One department's figures.
#[derive(Debug, Clone, Serialize)]
pub struct DepartmentSummary {
    /// Department name.
    pub name: String,
    /// Distinct users (or client addresses, for records without a user).
    pub active_users: u64,
    /// Matching records.
    pub requests: u64,
    /// Per service, sorted by name.
    pub services: Vec<ServiceSummary>,
    /// The top five UTC clock hours by requests, busiest first.
    pub busiest_hours: Vec<HourCount>,
    /// Every hour with requests (hours since the epoch, requests), in time
    /// order; for charts, not in the JSON.
    #[serde(skip)]
    pub hourly: Vec<(i64, u64)>,
}

/// One service's figures within a department.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceSummary {
    /// Service name.
    pub name: String,
    /// Distinct users who made any request to it.
    pub users: u64,
    /// `users / active_users`.
    pub share: f64,
    /// Requests allowed.
    pub allowed: u64,
    /// Requests logged (allowed and audited).
    pub logged: u64,
    /// Requests blocked.
    pub blocked: u64,
    /// Bytes up plus down.
    pub bytes: u64,
}

/// Requests in one clock hour.
#[derive(Debug, Clone, Serialize)]
pub struct HourCount {
    /// Start of the hour (UTC).
    pub hour: Timestamp,
    /// Requests in it.
    pub requests: u64,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::input::parse_line;
    use super::*;

    fn line(ts: &str, client: &str, user: Option<&str>, dept: &str, service: Option<&str>, action: &str) -> String {
        serde_json::json!({
            "ts": ts, "client": client, "user": user, "department": dept, "method": "GET",
            "host": "h.example", "port": 80, "url": null, "sni": null, "service": service,
            "rule": "default", "action": action, "status": 200, "bytes_up": 10, "bytes_down": 5,
            "duration_ms": 1, "closed_by": "client"
        })
        .to_string()
    }

    #[test]
    fn users_and_clients_are_distinct_actors() {
        let lines = [
            line("2026-11-26T09:00:00Z", "10.0.0.1", Some("10.0.0.1"), "a", Some("fb"), "allow"),
            line("2026-11-26T09:10:00Z", "10.0.0.1", None, "a", Some("fb"), "block"),
            line("2026-11-26T10:00:00Z", "10.0.0.2", Some("bob"), "a", None, "log"),
            line("2026-11-26T10:30:00Z", "10.0.0.3", Some("bob"), "a", Some("yt"), "log"),
        ];
        let mut agg = Aggregator::new(Filter::default());
        for l in &lines {
            agg.add(&parse_line(l.as_bytes()).unwrap());
        }
        let s = agg.finish();
        assert_eq!(s.records, 4);
        let d = &s.departments[0];
        assert_eq!(d.active_users, 3);
        assert_eq!(d.services[0].name, "fb");
        assert_eq!(d.services[0].users, 2);
        assert_eq!((d.services[0].allowed, d.services[0].blocked, d.services[0].bytes), (1, 1, 30));
        assert_eq!(d.busiest_hours[0].requests, 2);
        assert_eq!(d.busiest_hours[0].hour.to_string(), "2026-11-26T09:00:00Z");
    }

    #[test]
    fn the_filtered_department_is_remembered_beyond_the_first_few_seen() {
        let filter = Filter {
            department: Some("d25".into()),
            since: Some("2030-01-01T00:00:00Z".parse().unwrap()),
            ..Filter::default()
        };
        let mut agg = Aggregator::new(filter);
        for i in 0..30 {
            let l = line("2026-11-26T09:00:00Z", "10.0.0.1", None, &format!("d{i}"), None, "allow");
            agg.add(&parse_line(l.as_bytes()).unwrap());
        }
        let s = agg.finish();
        assert_eq!(s.records, 0);
        assert_eq!(s.seen_departments.len(), MAX_SEEN_DEPARTMENTS + 1);
        assert!(s.seen_departments.iter().any(|d| d == "d25"), "{:?}", s.seen_departments);
    }

    /// Regression (found by `report::props::invalid_lines_are_counted_and_located_and_whole_records_kept`):
    /// a record in the first hour jiff can hold counted in `requests` but
    /// its hour was silently left out of `busiest_hours` (the hour's start
    /// is before jiff's first instant).
    #[test]
    fn a_record_at_the_earliest_instant_keeps_its_busiest_hour() {
        let mut agg = Aggregator::new(Filter::default());
        let l = line("-009999-01-02T01:59:59Z", "10.0.0.1", None, "a", None, "allow");
        agg.add(&parse_line(l.as_bytes()).unwrap());
        let s = agg.finish();
        let hours: Vec<(String, u64)> =
            s.departments[0].busiest_hours.iter().map(|h| (h.hour.to_string(), h.requests)).collect();
        assert_eq!(hours, [("-009999-01-02T01:59:59Z".to_owned(), 1)]);
    }

    #[test]
    fn hour_ties_go_to_the_earlier_hour() {
        let lines = [
            line("2026-11-26T11:00:00Z", "10.0.0.1", None, "a", None, "allow"),
            line("2026-11-26T09:00:00Z", "10.0.0.1", None, "a", None, "allow"),
        ];
        let mut agg = Aggregator::new(Filter::default());
        for l in &lines {
            agg.add(&parse_line(l.as_bytes()).unwrap());
        }
        let s = agg.finish();
        let hours: Vec<String> = s.departments[0].busiest_hours.iter().map(|h| h.hour.to_string()).collect();
        assert_eq!(hours, ["2026-11-26T09:00:00Z", "2026-11-26T11:00:00Z"]);
        assert_eq!(s.from.unwrap().to_string(), "2026-11-26T09:00:00Z");
    }
}
