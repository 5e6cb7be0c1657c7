//! The service catalogue: the built-in services, extended, replaced or
//! joined by the tables of `services.toml`. The same `domains` or `hosts`
//! entry in two services is an error naming both places.

use std::collections::HashSet;
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

impl Draft {
    /// Its `domains` or its `hosts`.
    fn list(&self, kind: &str) -> &[(Host, Option<Range<usize>>)] {
        if kind == "domains" { &self.domains } else { &self.hosts }
    }
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
    let mut drafts = builtin_drafts();
    let mut names: Vec<String> = drafts.iter().map(|d| d.name.clone()).collect();
    let mut complete = true;
    if let Some(src) = src {
        let before = out.len();
        if !parse_by_table(src, out, &mut drafts, &mut names) {
            out.truncate(before);
            drafts = builtin_drafts();
            names = drafts.iter().map(|d| d.name.clone()).collect();
            complete = parse_whole(src, out, &mut drafts, &mut names);
        }
        check_duplicates(&mut Sink { src, out, offset: 0 }, &drafts);
    }
    let services = drafts
        .into_iter()
        .map(|d| ServiceSpec {
            name: d.name,
            domains: dedup(d.domains.into_iter().map(|(h, _)| h).collect()),
            hosts: dedup(d.hosts.into_iter().map(|(h, _)| h).collect()),
        })
        .collect();
    Catalogue { services, names, complete }
}

fn builtin_drafts() -> Vec<Draft> {
    BUILTIN
        .iter()
        .map(|b| Draft {
            name: b.name.to_owned(),
            domains: b.domains.iter().filter_map(|d| Host::parse(d).ok()).map(|h| (h, None)).collect(),
            hosts: b.hosts.iter().filter_map(|d| Host::parse(d).ok()).map(|h| (h, None)).collect(),
        })
        .collect()
}

/// Parses `services.toml` as one document; false after a syntax error.
fn parse_whole(src: &Source, out: &mut Vec<Diagnostic>, drafts: &mut Vec<Draft>, names: &mut Vec<String>) -> bool {
    let mut sink = Sink { src, out, offset: 0 };
    match DeTable::parse(&src.text) {
        Ok(doc) => {
            for key in doc.get_ref().keys() {
                if !names.iter().any(|n| n == key.get_ref().as_ref()) {
                    names.push(key.get_ref().to_string());
                }
            }
            read_file(&mut sink, doc.get_ref(), drafts);
            true
        }
        Err(err) => {
            super::syntax_error(&mut sink, &err);
            false
        }
    }
}

/// Parses `services.toml` one `[service]` table at a time, so that only one
/// table's syntax tree is alive at once: the parser's tokens, events and
/// tree for a whole 100,000-domain catalogue take about twelve times the
/// file's size, and the C allocator keeps that peak resident afterwards.
///
/// The file is cut before every line that starts with `[`. A cut inside a
/// multi-line string or array leaves the piece before it unterminated, a
/// syntax error; so when every piece parses, every cut is a table header,
/// and when moreover the text before the first header holds no keys and
/// each piece defines exactly one top-level table, each a different one,
/// the pieces mean exactly what the whole file means. Otherwise (root keys,
/// `[[array]]`, `[a]` and `[a.b]`, a repeated table, a syntax error, an
/// indented header) it returns false, possibly having recorded some
/// tables, and the caller starts again with [`parse_whole`], which gives
/// the parser's own diagnostics.
fn parse_by_table(src: &Source, out: &mut Vec<Diagnostic>, drafts: &mut Vec<Draft>, names: &mut Vec<String>) -> bool {
    let text = src.text.as_str();
    let mut cuts: Vec<usize> = vec![0];
    cuts.extend(text.match_indices("\n[").map(|(i, _)| i + 1));
    let bom = '\u{feff}';
    if !text.trim_start_matches(bom).starts_with('[') {
        // The preamble: comments and blank lines only.
        let end = cuts.get(1).copied().unwrap_or(text.len());
        match text.get(..end).map(DeTable::parse) {
            Some(Ok(doc)) if doc.get_ref().is_empty() => {}
            _ => return false,
        }
        cuts.remove(0);
    }
    let known = names.len();
    let mut seen: HashSet<String> = HashSet::with_capacity(cuts.len());
    for (i, &start) in cuts.iter().enumerate() {
        let end = cuts.get(i + 1).copied().unwrap_or(text.len());
        let Some(piece) = text.get(start..end) else { return false };
        if piece.trim_start_matches(bom).starts_with("[[") {
            return false;
        }
        let Ok(doc) = DeTable::parse(piece) else { return false };
        let mut keys = doc.get_ref().keys();
        let (Some(key), None) = (keys.next(), keys.next()) else { return false };
        let name: &str = key.get_ref();
        if !seen.insert(name.to_owned()) {
            return false;
        }
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
        read_file(&mut Sink { src, out: &mut *out, offset: start }, doc.get_ref(), drafts);
    }
    // The whole document lists its keys in sorted order.
    if let Some(new) = names.get_mut(known..) {
        new.sort_unstable();
    }
    true
}

/// `items` without repeats, first occurrence kept.
fn dedup(items: Vec<Host>) -> Vec<Host> {
    let mut seen: HashSet<&str> = HashSet::with_capacity(items.len());
    let keep: Vec<bool> = items.iter().map(|h| seen.insert(h.as_str())).collect();
    if keep.iter().all(|&k| k) {
        return items;
    }
    items.into_iter().zip(keep).filter_map(|(h, k)| k.then_some(h)).collect()
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
                .filter_map(|(s, span)| {
                    let host = sink.parse_at(s, &span, values::host)?;
                    // Absolute, for `check_duplicates`.
                    Some((host, Some(span.start + sink.offset..span.end + sink.offset)))
                })
                .collect()
        };
        let domains = list("domains");
        let hosts = list("hosts");
        let replace_span = || get(table, "replace").map_or(key.span(), |v| v.span());
        match drafts.iter_mut().find(|d| d.name == name) {
            Some(existing) => {
                if replace {
                    if domains.is_empty() && hosts.is_empty() {
                        sink.error(
                            &replace_span(),
                            format!(
                                "`replace = true` with no `domains` or `hosts` leaves `{name}` matching nothing; \
                                 list its new domains, or block it in the departments instead"
                            ),
                        );
                    }
                    existing.domains.clear();
                    existing.hosts.clear();
                }
                existing.domains.extend(domains);
                existing.hosts.extend(hosts);
            }
            None => {
                if replace {
                    let builtin: Vec<&str> = BUILTIN.iter().map(|b| b.name).collect();
                    sink.error(
                        &replace_span(),
                        format!(
                            "`replace` applies only to a built-in service ({}); `{name}` is new: remove `replace`",
                            builtin.join(", ")
                        ),
                    );
                }
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
        // (entry, 0 for a built-in entry else its offset + 1, draft index),
        // in one buffer of the exact size: no hash map of 100,000 entries.
        let mut mentions: Vec<(&str, usize, usize)> =
            Vec::with_capacity(drafts.iter().map(|d| d.list(kind).len()).sum());
        for (index, d) in drafts.iter().enumerate() {
            mentions.extend(
                d.list(kind).iter().map(|(h, span)| (h.as_str(), span.as_ref().map_or(0, |s| s.start + 1), index)),
            );
        }
        // Grouped by entry; in a group, built-in entries first (in draft
        // order), then file entries in source order.
        mentions.sort_unstable();
        for group in mentions.chunk_by(|a, b| a.0 == b.0) {
            let Some(&(host, first_at, first)) = group.first() else { continue };
            let Some(first_name) = drafts.get(first).map(|d| d.name.as_str()) else { continue };
            for &(_, at, index) in group.iter().skip(1) {
                let Some(service) = drafts.get(index).map(|d| d.name.as_str()) else { continue };
                // A built-in entry in two services is not the file's doing.
                if index == first || at == 0 {
                    continue;
                }
                let place = match first_at.checked_sub(1) {
                    Some(offset) => {
                        let (line, col) = sink.src.position(offset);
                        format!("{}:{line}:{col}", sink.src.path.display())
                    }
                    None => "built in".to_owned(),
                };
                sink.error(
                    &(at - 1..at - 1),
                    format!("`{host}` is in the `{kind}` of both `{first_name}` ({place}) and `{service}`"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::PathBuf;

    use super::*;

    /// What a parse produced: diagnostics as `line:col: message`, then every
    /// service with its entries and their spans.
    fn outcome(text: &str, whole: bool) -> (bool, Vec<String>, Vec<String>) {
        let src = Source::new(PathBuf::from("services.toml"), text.to_owned());
        let mut out = Vec::new();
        let mut drafts = builtin_drafts();
        let mut names: Vec<String> = drafts.iter().map(|d| d.name.clone()).collect();
        let ok = if whole {
            parse_whole(&src, &mut out, &mut drafts, &mut names)
        } else {
            parse_by_table(&src, &mut out, &mut drafts, &mut names)
        };
        check_duplicates(&mut Sink { src: &src, out: &mut out, offset: 0 }, &drafts);
        let diagnostics = out.iter().map(|d| format!("{}:{}: {}", d.line, d.col, d.message)).collect();
        let mut services: Vec<String> =
            drafts.iter().map(|d| format!("{} {:?} {:?}", d.name, d.domains, d.hosts)).collect();
        services.extend(names);
        (ok, diagnostics, services)
    }

    #[test]
    fn table_by_table_means_what_the_whole_file_means() {
        let cases = [
            "# catalogue\n\n[svc1]\ndomains = [\"a.example\", \"b.example\"]\n[svc2]\ndomains = [\"b.example\"]\nhosts = [\"x.example\", \"bad host\"]\nfoo = 1\n",
            "[svc1]\r\ndomains = [\"a.example\"]\r\n[facebook]\r\ndomains = [\"a.example\"]\r\nreplace = true\r\n",
            "\u{feff}[svc1]\ndomains = [\n  \"a.example\",\n]\n[\"quoted.name\"]\nhosts = [\"h.example\"]\n[empty]\n",
            "[svc1]\ndomains = [\"é.example\", \"xn--e-9fa.example\"]\n[\"bad name!\"]\nhosts = []\n",
            "",
            "# only a comment\n",
        ];
        for text in cases {
            let (ok, diagnostics, services) = outcome(text, false);
            assert!(ok, "{text:?} is cut into tables");
            assert_eq!(
                (diagnostics, services),
                {
                    let (_, d, s) = outcome(text, true);
                    (d, s)
                },
                "{text:?}"
            );
        }
    }

    #[test]
    fn files_that_are_not_plain_tables_are_parsed_whole() {
        let cases = [
            "top = 1\n[svc1]\ndomains = [\"a.example\"]\n",
            "[[svc1]]\ndomains = [\"a.example\"]\n",
            "[svc1]\ndomains = [\"a.example\"]\n[svc1]\ndomains = [\"c.example\"]\n",
            "[svc1]\ndomains = [\"a.example\"]\n[svc1.sub]\nx = 1\n",
            "[svc1]\nnote = \"\"\"\n[svc9]\n\"\"\"\ndomains = [\"a.example\"]\n",
            "[svc1]\ndomains = [\"a.example\"\n[svc2]\ndomains = [\"c.example\"]\n",
            "[svc1]\n  [svc2]\ndomains = [\"c.example\"]\n",
        ];
        for text in cases {
            assert!(!outcome(text, false).0, "{text:?} is not cut");
        }
    }
}
