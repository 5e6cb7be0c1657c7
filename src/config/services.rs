//! The service catalogue: the built-in services, extended, replaced or
//! joined by the tables of `services.toml`. The same `domains` or `hosts`
//! entry in two services is an error naming both places.

use std::collections::HashMap;
use std::ops::Range;

use toml::de::DeTable;

use super::Diagnostic;
use super::values;
use super::walk::{Sink, Source, entries, get};
use crate::policy::catalogue::BUILTIN;
use crate::policy::{Host, ServiceSpec};

const SERVICE_KEYS: &[&str] = &["domains", "hosts", "replace"];

/// One service while it is being assembled: entries with their span in
/// `services.toml` (`None` for built-in entries).
struct Draft {
    name: String,
    domains: Vec<(Host, Option<Range<usize>>)>,
    hosts: Vec<(Host, Option<Range<usize>>)>,
}

/// The catalogue, and whether every service name is known (false after a
/// syntax error in `services.toml`: references are then not checked).
pub(crate) struct Catalogue {
    /// Every service, built-in ones first.
    pub services: Vec<ServiceSpec>,
    /// Every service name declared, including ones with errors.
    pub names: Vec<String>,
    /// `services.toml` parsed (or is absent).
    pub complete: bool,
}

/// Builds the catalogue. `src` is `services.toml`, if present.
pub(crate) fn parse(src: Option<&Source>, out: &mut Vec<Diagnostic>) -> Catalogue {
    let mut drafts: Vec<Draft> = BUILTIN
        .iter()
        .map(|b| Draft {
            name: b.name.to_owned(),
            domains: b.domains.iter().filter_map(|d| Host::parse(d).ok()).map(|h| (h, None)).collect(),
            hosts: b.hosts.iter().filter_map(|d| Host::parse(d).ok()).map(|h| (h, None)).collect(),
        })
        .collect();
    let mut names: Vec<String> = drafts.iter().map(|d| d.name.clone()).collect();
    let mut complete = true;
    if let Some(src) = src {
        let mut sink = Sink { src, out: &mut *out };
        match DeTable::parse(&src.text) {
            Ok(doc) => {
                for key in doc.get_ref().keys() {
                    if !names.iter().any(|n| n == key.get_ref().as_ref()) {
                        names.push(key.get_ref().to_string());
                    }
                }
                read_file(&mut sink, doc.get_ref(), &mut drafts);
            }
            Err(err) => {
                super::syntax_error(&mut sink, &err);
                complete = false;
            }
        }
        check_duplicates(&mut Sink { src, out }, &drafts);
    }
    let services = drafts
        .into_iter()
        .map(|d| ServiceSpec {
            name: d.name,
            domains: dedup(d.domains.into_iter().map(|(h, _)| h)),
            hosts: dedup(d.hosts.into_iter().map(|(h, _)| h)),
        })
        .collect();
    Catalogue { services, names, complete }
}

fn dedup(items: impl Iterator<Item = Host>) -> Vec<Host> {
    let mut out: Vec<Host> = Vec::new();
    for h in items {
        if !out.contains(&h) {
            out.push(h);
        }
    }
    out
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn read_file(sink: &mut Sink<'_>, doc: &DeTable<'_>, drafts: &mut Vec<Draft>) {
    for (key, value) in entries(doc) {
        let name: &str = key.get_ref();
        let Some(table) = sink.table(value) else { continue };
        if !valid_name(name) {
            sink.error(
                &key.span(),
                format!("invalid service name `{name}`, expected letters, digits, `-`, `_` or `.`"),
            );
            continue;
        }
        sink.unknown_keys(table, SERVICE_KEYS, &format!("service `{name}`"));
        let replace = get(table, "replace").and_then(|v| sink.boolean(v)).unwrap_or(false);
        let mut list = |k: &str| -> Vec<(Host, Option<Range<usize>>)> {
            let Some(v) = get(table, k) else { return Vec::new() };
            sink.strings(v)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(s, span)| sink.parse_at(s, &span, values::host).map(|h| (h, Some(span))))
                .collect()
        };
        let domains = list("domains");
        let hosts = list("hosts");
        match drafts.iter_mut().find(|d| d.name == name) {
            Some(existing) => {
                if replace {
                    existing.domains.clear();
                    existing.hosts.clear();
                }
                existing.domains.extend(domains);
                existing.hosts.extend(hosts);
            }
            None => {
                if get(table, "domains").is_none() && get(table, "hosts").is_none() {
                    sink.error(&key.span(), format!("service `{name}` has neither `domains` nor `hosts`"));
                }
                drafts.push(Draft { name: name.to_owned(), domains, hosts });
            }
        }
    }
}

fn check_duplicates(sink: &mut Sink<'_>, drafts: &[Draft]) {
    for kind in ["domains", "hosts"] {
        // entry -> (service, span of first mention)
        let mut seen: HashMap<&Host, (&str, &Option<Range<usize>>)> = HashMap::new();
        let mut mentions: Vec<(&Host, &str, &Option<Range<usize>>)> = Vec::new();
        for d in drafts {
            let list = if kind == "domains" { &d.domains } else { &d.hosts };
            mentions.extend(list.iter().map(|(h, span)| (h, d.name.as_str(), span)));
        }
        // Built-in entries first, then file entries in source order.
        mentions.sort_by_key(|(_, _, span)| span.as_ref().map_or(0, |s| s.start + 1));
        for (host, service, span) in mentions {
            match seen.get(host) {
                Some((first, _)) if *first == service => {}
                Some((first, first_span)) => {
                    let Some(span) = span else { continue };
                    let place = match first_span {
                        Some(s) => {
                            let (line, col) = sink.src.position(s.start);
                            format!("{}:{line}:{col}", sink.src.path.display())
                        }
                        None => "built in".to_owned(),
                    };
                    sink.error(
                        span,
                        format!("`{host}` is in the `{kind}` of both `{first}` ({place}) and `{service}`"),
                    );
                }
                None => {
                    seen.insert(host, (service, span));
                }
            }
        }
    }
}
