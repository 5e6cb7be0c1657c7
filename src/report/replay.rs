//! `socialgate replay`: re-decide logged requests under a policy and count,
//! per department, service and (from, to) action pair, the requests and
//! distinct users whose action would flip, keeping a few examples.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use serde::Serialize;

use super::input::Parsed;
use super::text::{Table, clean};
use crate::policy::{Action, DepartmentSource, Host, Identity, Placement, Policy};

/// Examples kept per change.
pub const EXAMPLES: usize = 3;

/// Rules that are not policy decisions (the proxy answered on its own);
/// replay leaves those records out.
pub const NON_POLICY_RULES: [&str; 5] = ["auth", "request", "limits", "connect_ports", "private_destination"];

/// Pseudonymised user names start with this; they cannot be placed by name,
/// so they keep their logged department.
pub const PSEUDONYM_PREFIX: &str = "u:";

#[derive(Debug, Default)]
struct ChangeAgg {
    requests: u64,
    users: HashSet<String>,
    examples: Vec<Example>,
}

type ChangeKey = (String, Option<String>, Action, Action);

/// The running replay.
#[derive(Debug)]
pub struct Replayer<'p> {
    policy: &'p Policy,
    records: u64,
    skipped: u64,
    undecidable: u64,
    decided: u64,
    moved: u64,
    changed: u64,
    changes: BTreeMap<ChangeKey, ChangeAgg>,
}

impl<'p> Replayer<'p> {
    /// A replay under `policy`.
    pub fn new(policy: &'p Policy) -> Replayer<'p> {
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
        let mut t = Table::new(&["service", "change", "requests", "users"]);
        for c in &changes {
            t.row(vec![
                clean(c.service.as_deref().unwrap_or("(none)")),
                format!("{} -> {}", c.from, c.to),
                c.requests.to_string(),
                c.users.to_string(),
            ]);
        }
        t.render(&mut out, 2);
        let _ = writeln!(out, "  examples:");
        for c in &changes {
            for e in &c.examples {
                let who = e.user.as_deref().unwrap_or(&e.client);
                let _ = writeln!(out, "    {} -> {}  {}  {}  {}", c.from, c.to, e.ts, clean(who), clean(&e.host));
            }
        }
    }
    out
}
