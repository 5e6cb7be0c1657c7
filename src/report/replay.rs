//! `socialgate replay`: re-decide logged requests under a policy and count,
//! per department, service and (from, to) action pair, the requests and
//! distinct users whose action would flip, keeping a few examples.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use serde::Serialize;

use super::input::Parsed;
use super::text::{Table, clean};
use crate::policy::{Action, Decision, DepartmentSource, DeptId, Host, Identity, Placement, Policy};

/// Examples kept per change.
pub const EXAMPLES: usize = 3;

/// Rules that are not policy decisions (the proxy answered on its own:
/// refusals, including a non-TLS tunnel under `non_tls_tunnels = "refuse"`,
/// the PAC file, the status page); replay leaves those records out.
pub const NON_POLICY_RULES: [&str; 8] =
    ["auth", "request", "limits", "connect_ports", "private_destination", "non_tls_tunnels", "pac", "status"];

/// Pseudonymised user names start with this; they cannot be placed by name,
/// so they keep their logged department.
pub const PSEUDONYM_PREFIX: &str = "u:";

/// What replay needs from a policy; [`Policy`] is the real one (tests use a
/// table).
pub trait Decider {
    /// See [`Policy::place`].
    fn place(&self, identity: &Identity<'_>) -> Placement;
    /// See [`Policy::department_id`].
    fn department_id(&self, name: &str) -> Option<DeptId>;
    /// See [`Policy::department_name`].
    fn department_name(&self, id: DeptId) -> &str;
    /// See [`Policy::decide`].
    fn decide(&self, placement: Placement, host: &Host, now: jiff::Timestamp) -> Decision;
}

impl Decider for Policy {
    fn place(&self, identity: &Identity<'_>) -> Placement {
        Policy::place(self, identity)
    }
    fn department_id(&self, name: &str) -> Option<DeptId> {
        Policy::department_id(self, name)
    }
    fn department_name(&self, id: DeptId) -> &str {
        Policy::department_name(self, id)
    }
    fn decide(&self, placement: Placement, host: &Host, now: jiff::Timestamp) -> Decision {
        Policy::decide(self, placement, host, now)
    }
}

#[derive(Debug, Default)]
struct ChangeAgg {
    requests: u64,
    users: HashSet<String>,
    examples: Vec<Example>,
}

type ChangeKey = (String, Option<String>, Action, Action);

/// The running replay.
#[derive(Debug)]
pub struct Replayer<'p, D: Decider = Policy> {
    policy: &'p D,
    records: u64,
    skipped: u64,
    undecidable: u64,
    decided: u64,
    moved: u64,
    changed: u64,
    changes: BTreeMap<ChangeKey, ChangeAgg>,
}

impl<'p, D: Decider> Replayer<'p, D> {
    /// A replay under `policy`.
    pub fn new(policy: &'p D) -> Replayer<'p, D> {
        Replayer {
            policy,
            records: 0,
            skipped: 0,
            undecidable: 0,
            decided: 0,
            moved: 0,
            changed: 0,
            changes: BTreeMap::new(),
        }
    }

    /// Where the record's client belongs under the policy: pseudonymised
    /// users keep their logged department while it still exists.
    fn placement(&self, rec: &Parsed<'_>) -> Placement {
        let user = rec.line.user.as_deref();
        if user.is_some_and(|u| u.starts_with(PSEUDONYM_PREFIX)) {
            if let Some(department) = self.policy.department_id(&rec.line.department) {
                return Placement { department, source: DepartmentSource::User };
            }
            return self.policy.place(&Identity { user: None, client_ip: Some(rec.line.client) });
        }
        self.policy.place(&Identity { user, client_ip: Some(rec.line.client) })
    }

    /// Re-decides one record.
    pub fn add(&mut self, rec: &Parsed<'_>) {
        self.records += 1;
        let line = &rec.line;
        if NON_POLICY_RULES.contains(&line.rule.as_ref()) {
            self.skipped += 1;
            return;
        }
        let Ok(host) = Host::parse(&line.host) else {
            self.undecidable += 1;
            return;
        };
        self.decided += 1;
        let placement = self.placement(rec);
        let mut decision = self.policy.decide(placement, &host, rec.ts);
        if let Some(sni) = line.sni.as_deref().filter(|s| !s.is_empty())
            && let Ok(sni_host) = Host::parse(sni)
            && sni_host != host
        {
            let by_sni = self.policy.decide(placement, &sni_host, rec.ts);
            if by_sni.action > decision.action {
                decision = by_sni;
            }
        }
        let department = self.policy.department_name(placement.department);
        if department != line.department {
            self.moved += 1;
        }
        if decision.action == line.action {
            return;
        }
        self.changed += 1;
        let service = decision.service.as_deref().or(line.service.as_deref()).map(str::to_owned);
        let key = (department.to_owned(), service, line.action, decision.action);
        let change = self.changes.entry(key).or_default();
        change.requests += 1;
        let actor = match line.user.as_deref() {
            Some(user) => format!("u{user}"),
            None => format!("c{}", line.client),
        };
        change.users.insert(actor);
        if change.examples.len() < EXAMPLES {
            change.examples.push(Example {
                ts: rec.ts.to_string(),
                user: line.user.as_deref().map(str::to_owned),
                client: line.client.to_string(),
                host: line.host.to_string(),
                sni: line.sni.as_deref().map(str::to_owned),
                logged_department: line.department.to_string(),
                rule: decision.rule.to_string(),
            });
        }
    }

    /// The finished outcome.
    pub fn finish(self) -> ReplayOutcome {
        ReplayOutcome {
            records: self.records,
            skipped: self.skipped,
            undecidable: self.undecidable,
            decided: self.decided,
            changed: self.changed,
            moved: self.moved,
            changes: self
                .changes
                .into_iter()
                .map(|((department, service, from, to), agg)| Change {
                    department,
                    service,
                    from,
                    to,
                    requests: agg.requests,
                    users: agg.users.len() as u64,
                    examples: agg.examples,
                })
                .collect(),
        }
    }
}

/// `replay --format json`: see docs/reports.md.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayOutcome {
    /// Valid records read.
    pub records: u64,
    /// Records left out because the proxy, not the policy, decided them.
    pub skipped: u64,
    /// Records whose host is not a valid host name.
    pub undecidable: u64,
    /// Records re-decided.
    pub decided: u64,
    /// Re-decided records whose action would change.
    pub changed: u64,
    /// Re-decided records whose client now falls in another department.
    pub moved: u64,
    /// The changes, sorted by department, service, from, to.
    pub changes: Vec<Change>,
}

/// Requests of one department and service whose action flips the same way.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// Department under the replayed config.
    pub department: String,
    /// Catalogue service (of the deciding host), if any.
    pub service: Option<String>,
    /// Logged action.
    pub from: Action,
    /// Action under the replayed config.
    pub to: Action,
    /// How many requests.
    pub requests: u64,
    /// How many distinct users (or client addresses without a user).
    pub users: u64,
    /// Up to three of them, in log order.
    pub examples: Vec<Example>,
}

/// One request that would flip.
#[derive(Debug, Clone, Serialize)]
pub struct Example {
    /// When it happened.
    pub ts: String,
    /// Logged user.
    pub user: Option<String>,
    /// Client address.
    pub client: String,
    /// Host.
    pub host: String,
    /// SNI, if any.
    pub sni: Option<String>,
    /// Department as logged.
    pub logged_department: String,
    /// What decides it under the replayed config (`services.facebook`, ...).
    pub rule: String,
}

/// Renders a replay outcome as text.
pub fn render_text(o: &ReplayOutcome) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "socialgate replay: {} records, {} re-decided, {} would change ({} not policy decisions, {} invalid hosts; {} now in another department)",
        o.records, o.decided, o.changed, o.skipped, o.undecidable, o.moved
    );
    let mut by_dept: BTreeMap<&str, Vec<&Change>> = BTreeMap::new();
    for c in &o.changes {
        by_dept.entry(c.department.as_str()).or_default().push(c);
    }
    if by_dept.is_empty() {
        let _ = writeln!(out, "no request would change");
    }
    for (dept, changes) in by_dept {
        let total: u64 = changes.iter().map(|c| c.requests).sum();
        let _ = writeln!(
            out,
            "\ndepartment {}: {total} request{} would change",
            clean(dept),
            if total == 1 { "" } else { "s" }
        );
        let mut t = Table::new(&["service", "change", "requests", "users"]).left_aligned(2);
        for c in &changes {
            t.row(vec![
                clean(c.service.as_deref().unwrap_or("(none)")),
                format!("{} -> {}", c.from, c.to),
                c.requests.to_string(),
                c.users.to_string(),
            ]);
        }
        t.render(&mut out, 2);
        let _ = writeln!(out);
        let mut ex = Table::new(&["example", "change", "user/client", "host", "sni", "now decided by"]).left_aligned(6);
        for c in &changes {
            for e in &c.examples {
                ex.row(vec![
                    e.ts.clone(),
                    format!("{} -> {}", c.from, c.to),
                    clean(e.user.as_deref().unwrap_or(&e.client)),
                    clean(&e.host),
                    clean(e.sni.as_deref().unwrap_or("-")),
                    clean(&e.rule),
                ]);
            }
        }
        ex.render(&mut out, 2);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::Arc;

    use super::super::input::parse_line;
    use super::*;

    /// Two departments: `sales` (user alice, network 10.20/16) blocks
    /// facebook, `default` allows everything.
    #[derive(Debug)]
    struct Table;

    impl Decider for Table {
        fn place(&self, identity: &Identity<'_>) -> Placement {
            if identity.user == Some("alice") {
                return Placement { department: DeptId(1), source: DepartmentSource::User };
            }
            match identity.client_ip {
                Some(std::net::IpAddr::V4(ip)) if ip.octets()[..2] == [10, 20] => {
                    Placement { department: DeptId(1), source: DepartmentSource::Network }
                }
                _ => Placement { department: DeptId(0), source: DepartmentSource::Default },
            }
        }
        fn department_id(&self, name: &str) -> Option<DeptId> {
            ["default", "sales"].iter().position(|d| *d == name).map(|i| DeptId(i as u32))
        }
        fn department_name(&self, id: DeptId) -> &str {
            ["default", "sales"][id.0 as usize]
        }
        fn decide(&self, placement: Placement, host: &Host, _now: jiff::Timestamp) -> Decision {
            let facebook = host.as_str().ends_with("facebook.com");
            let block = facebook && placement.department == DeptId(1);
            Decision {
                department: Arc::from(self.department_name(placement.department)),
                department_source: placement.source,
                service: facebook.then(|| Arc::from("facebook")),
                rule: Arc::from(if facebook { "services.facebook" } else { "default" }),
                schedule: None,
                schedule_active: false,
                action: if block { Action::Block } else { Action::Allow },
                origin: None,
                valid_until: None,
            }
        }
    }

    fn rec(
        client: &str,
        user: Option<&str>,
        dept: &str,
        host: &str,
        sni: Option<&str>,
        rule: &str,
        action: &str,
    ) -> String {
        serde_json::json!({
            "ts": "2026-11-26T09:00:00Z", "client": client, "user": user, "department": dept, "method": "CONNECT",
            "host": host, "port": 443, "url": null, "sni": sni, "service": null, "rule": rule, "action": action,
            "status": 200, "bytes_up": 1, "bytes_down": 1, "duration_ms": 1, "closed_by": "client"
        })
        .to_string()
    }

    fn replay(lines: &[String]) -> ReplayOutcome {
        let mut r = Replayer::new(&Table);
        for l in lines {
            r.add(&parse_line(l.as_bytes()).unwrap());
        }
        r.finish()
    }

    #[test]
    fn counts_flips_users_and_keeps_three_examples() {
        let lines: Vec<String> = (0..5)
            .map(|i| rec(&format!("10.20.0.{}", i % 2), None, "sales", "www.facebook.com", None, "default", "log"))
            .collect();
        let o = replay(&lines);
        assert_eq!((o.records, o.decided, o.changed, o.moved), (5, 5, 5, 0));
        assert_eq!(o.changes.len(), 1);
        let c = &o.changes[0];
        assert_eq!((c.department.as_str(), c.service.as_deref()), ("sales", Some("facebook")));
        assert_eq!((c.from, c.to, c.requests, c.users), (Action::Log, Action::Block, 5, 2));
        assert_eq!(c.examples.len(), EXAMPLES);
        assert_eq!(c.examples[0].rule, "services.facebook");
    }

    #[test]
    fn the_stricter_of_host_and_sni_wins() {
        let o = replay(&[rec("10.20.0.1", None, "sales", "cdn.example", Some("www.facebook.com"), "default", "allow")]);
        assert_eq!(o.changes[0].to, Action::Block);
        assert_eq!(o.changes[0].service.as_deref(), Some("facebook"));
        let o = replay(&[rec("10.20.0.1", None, "sales", "www.facebook.com", Some("cdn.example"), "default", "allow")]);
        assert_eq!(o.changes[0].to, Action::Block);
    }

    #[test]
    fn pseudonymised_users_keep_their_logged_department_while_it_exists() {
        let kept = rec("10.99.0.1", Some("u:0011223344556677"), "sales", "www.facebook.com", None, "default", "allow");
        let gone =
            rec("10.99.0.1", Some("u:0011223344556677"), "marketing", "www.facebook.com", None, "default", "allow");
        let o = replay(&[kept, gone]);
        assert_eq!(o.changed, 1, "{o:?}");
        assert_eq!(o.changes[0].department, "sales");
        assert_eq!(o.moved, 1, "marketing is gone: placed by address into default");
    }

    #[test]
    fn users_are_placed_by_name_then_address() {
        let o = replay(&[rec("10.99.0.1", Some("alice"), "default", "www.facebook.com", None, "default", "allow")]);
        assert_eq!((o.changed, o.moved), (1, 1));
        assert_eq!(o.changes[0].department, "sales");
    }

    #[test]
    fn proxy_answers_and_bad_hosts_are_not_re_decided() {
        let mut lines: Vec<String> = NON_POLICY_RULES
            .iter()
            .map(|rule| rec("10.20.0.1", None, "sales", "www.facebook.com", None, rule, "allow"))
            .collect();
        lines.push(rec("10.20.0.1", None, "sales", "bad host!", None, "default", "allow"));
        let o = replay(&lines);
        assert_eq!((o.records, o.skipped, o.undecidable, o.decided, o.changed), (9, 8, 1, 0, 0));
        assert!(render_text(&o).contains("no request would change"));
    }

    #[test]
    fn pac_fetches_and_status_pages_are_proxy_answers_not_bad_hosts() {
        // As the proxy logs them: a PAC fetch has no host, the status page its own.
        let pac = rec("10.20.0.1", None, "sales", "", None, "pac", "allow");
        let status = rec("10.20.0.1", None, "sales", "socialgate.status", None, "status", "allow");
        let o = replay(&[pac, status]);
        assert_eq!((o.records, o.skipped, o.undecidable, o.decided, o.changed), (2, 2, 0, 0, 0));
    }
}
