//! One department file (`departments/NAME.toml`): validated key by key into
//! a [`DepartmentSpec`], keeping the positions of every name it refers to
//! (parent, services, schedules, users, networks) for the cross-file checks.

use std::ops::Range;

use ipnet::IpNet;
use toml::de::{DeTable, DeValue};

use super::Diagnostic;
use super::values;
use super::walk::{Sink, Source, Val, entries, get, list};
use crate::policy::{ActionSpec, DepartmentSpec, RuleSpec, ServiceEntrySpec};

const DEPARTMENT_KEYS: &[&str] = &["default", "description", "inherits", "networks", "rules", "services", "users"];
const ACTION_KEYS: &[&str] = &["action", "during", "otherwise"];
const RULE_KEYS: &[&str] = &["action", "domains", "hosts"];

/// A parsed department and the positions of what it refers to.
#[derive(Debug)]
pub(crate) struct DepartmentDraft {
    /// Index of its source in the loader's list.
    pub source: usize,
    /// The spec handed to the engine.
    pub spec: DepartmentSpec,
    /// `inherits` and where.
    pub inherits: Option<(String, Range<usize>)>,
    /// Every network and where.
    pub networks: Vec<(IpNet, Range<usize>)>,
    /// Every user and where.
    pub users: Vec<(String, Range<usize>)>,
    /// Every `[services]` key and where.
    pub service_refs: Vec<(String, Range<usize>)>,
    /// Every `during` and where.
    pub schedule_refs: Vec<(String, Range<usize>)>,
}

/// Whether a department name is usable (it appears in rule names and logs).
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Parses one department file; `None` after a syntax error.
pub(crate) fn parse(name: &str, source: usize, src: &Source, out: &mut Vec<Diagnostic>) -> Option<DepartmentDraft> {
    let mut sink = Sink { src, out, offset: 0 };
    let doc = match DeTable::parse(&src.text) {
        Ok(doc) => doc,
        Err(err) => {
            super::syntax_error(&mut sink, &err);
            return None;
        }
    };
    let doc = doc.get_ref();
    sink.unknown_keys(doc, DEPARTMENT_KEYS, "a department file");
    let mut d = DepartmentDraft {
        source,
        spec: DepartmentSpec::new(name),
        inherits: None,
        networks: Vec::new(),
        users: Vec::new(),
        service_refs: Vec::new(),
        schedule_refs: Vec::new(),
    };
    for (key, v) in entries(doc) {
        match key.get_ref().as_ref() {
            "description" => d.spec.description = sink.string(v).map(str::to_owned),
            "inherits" => {
                if let Some(s) = sink.string(v) {
                    d.spec.inherits = Some(s.to_owned());
                    d.inherits = Some((s.to_owned(), v.span()));
                }
            }
            "networks" => {
                for (s, span) in sink.strings(v).unwrap_or_default() {
                    if let Some(net) = sink.parse_at(s, &span, values::network) {
                        d.spec.networks.push(net);
                        d.networks.push((net, span));
                    }
                }
            }
            "users" => {
                for (s, span) in sink.strings(v).unwrap_or_default() {
                    if s.is_empty() {
                        sink.error(&span, "empty user name");
                    } else if s.contains(':') || s.chars().any(char::is_control) {
                        sink.error(&span, format!("user name `{s}` cannot contain `:` or control characters"));
                    } else if d.users.iter().any(|(u, _)| u == s) {
                        sink.error(&span, format!("user `{s}` is listed twice"));
                    } else {
                        d.spec.users.push(s.to_owned());
                        d.users.push((s.to_owned(), span));
                    }
                }
            }
            "default" => {
                d.spec.default = action_place(&mut sink, v, &mut d.schedule_refs);
                d.spec.default_origin = Some(src.origin(&key.span()));
            }
            "services" => {
                let Some(table) = sink.table(v) else { continue };
                for (svc, entry) in entries(table) {
                    let service: &str = svc.get_ref();
                    d.service_refs.push((service.to_owned(), svc.span()));
                    if let Some(action) = action_place(&mut sink, entry, &mut d.schedule_refs) {
                        d.spec.services.push(ServiceEntrySpec {
                            service: service.to_owned(),
                            action,
                            origin: Some(src.origin(&svc.span())),
                        });
                    }
                }
            }
            "rules" => rules(&mut sink, v, &mut d),
            _ => {}
        }
    }
    Some(d)
}

fn rules(sink: &mut Sink<'_>, v: &Val<'_>, d: &mut DepartmentDraft) {
    let DeValue::Array(items) = v.get_ref() else {
        sink.wrong_type(v, "an array of tables (`[[rules]]`)");
        return;
    };
    for item in items.iter() {
        let Some(table) = sink.table(item) else { continue };
        sink.unknown_keys(table, RULE_KEYS, "a rule");
        let mut hosts_of = |k: &str| {
            let Some(v) = get(table, k) else { return Vec::new() };
            sink.strings(v)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(s, span)| sink.parse_at(s, &span, values::host))
                .collect::<Vec<_>>()
        };
        let domains = hosts_of("domains");
        let hosts = hosts_of("hosts");
        let action = match get(table, "action") {
            Some(a) => action_place(sink, a, &mut d.schedule_refs),
            None => {
                sink.error(&item.span(), "rule needs `action`");
                None
            }
        };
        let written = |k: &str| match get(table, k).map(|v| v.get_ref()) {
            Some(DeValue::Array(a)) => a.len(),
            Some(_) => 1,
            None => 0,
        };
        if written("domains") + written("hosts") == 0 {
            sink.error(&item.span(), "rule needs at least one entry in `domains` or `hosts`");
            continue;
        }
        if let Some(action) = action {
            d.spec.rules.push(RuleSpec { domains, hosts, action, origin: Some(sink.src.origin(&item.span())) });
        }
    }
}

/// An action place: `"allow"` or `{ action, during, otherwise }`.
fn action_place(sink: &mut Sink<'_>, v: &Val<'_>, schedules: &mut Vec<(String, Range<usize>)>) -> Option<ActionSpec> {
    match v.get_ref() {
        DeValue::String(_) => sink.parsed(v, values::action).map(ActionSpec::always),
        DeValue::Table(t) => {
            sink.unknown_keys(t, ACTION_KEYS, "an action table");
            let action = match get(t, "action") {
                Some(a) => sink.parsed(a, values::action),
                None => {
                    sink.error(&v.span(), "action table needs `action`");
                    None
                }
            };
            let during = get(t, "during").and_then(|x| {
                let s = sink.string(x)?;
                schedules.push((s.to_owned(), x.span()));
                Some(s.to_owned())
            });
            let otherwise = match get(t, "otherwise") {
                Some(o) => Some(sink.parsed(o, values::action)?),
                None => None,
            };
            if otherwise.is_some()
                && during.is_none()
                && let Some(o) = get(t, "otherwise")
            {
                sink.error(&o.span(), "`otherwise` needs `during`");
            }
            Some(ActionSpec { action: action?, during, otherwise })
        }
        _ => {
            let found = v.get_ref().type_str();
            sink.error(
                &v.span(),
                format!(
                    "expected an action ({}) or a table `{{ action, during, otherwise }}`, found {} {found}",
                    list(values::ACTIONS.iter().copied()),
                    super::walk::article(found)
                ),
            );
            None
        }
    }
}
