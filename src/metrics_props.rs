//! Property tests for `/metrics`: whatever department and service names
//! are counted (quotes, backslashes, line breaks, any Unicode), the
//! exposition stays valid text format: `# EOF` last, one sample a line,
//! every sample line parses (by a parser written from the OpenMetrics /
//! Prometheus text format) and its label values read back as the names
//! counted, with the counts counted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use super::*;

/// Names with the characters the format escapes, and others near them.
fn name() -> impl Strategy<Value = String> {
    const PIECES: &[&str] = &[
        "\"",
        "\\",
        "\n",
        "\r",
        "\\n",
        "\\\"",
        "{",
        "}",
        ",",
        "=",
        " ",
        "#",
        "\t",
        "\0",
        "\u{85}",
        "\u{2028}",
        "é",
        "日本",
        "} 1\nsocialgate_requests_total{",
        "sales",
    ];
    vec(
        prop_oneof![
            3 => select(PIECES).prop_map(str::to_owned),
            1 => any::<char>().prop_map(String::from),
            2 => "[a-z0-9_.-]{1,5}",
        ],
        0..8,
    )
    .prop_map(|pieces| pieces.concat())
}

/// One sample line: the metric name, its labels (values unescaped) and
/// its value. An error names what is outside the grammar.
type Sample = (String, Vec<(String, String)>, f64);

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).unwrap_or(line.len());
    if name_end == 0 || line.as_bytes()[0].is_ascii_digit() {
        return Err(format!("no metric name: {line:?}"));
    }
    let name = line[..name_end].to_owned();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = after;
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let key_end = rest.find('=').ok_or_else(|| format!("no `=` in labels: {line:?}"))?;
            let key = &rest[..key_end];
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("bad label name {key:?}: {line:?}"));
            }
            rest = rest[key_end + 1..].strip_prefix('"').ok_or_else(|| format!("unquoted value: {line:?}"))?;
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next() {
                    None => return Err(format!("unterminated value: {line:?}")),
                    Some((at, '"')) => break at,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, 'n')) => value.push('\n'),
                        other => return Err(format!("bad escape {other:?}: {line:?}")),
                    },
                    Some((_, c)) => value.push(c),
                }
            };
            labels.push((key.to_owned(), value));
            rest = &rest[end + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
    }
    let value = rest.strip_prefix(' ').ok_or_else(|| format!("no space before the value: {line:?}"))?;
    let value: f64 = value.parse().map_err(|_| format!("bad value {value:?}: {line:?}"))?;
    Ok((name, labels, value))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Every line of the exposition is a comment or a sample that parses,
    /// `# EOF` comes last, and the `requests` samples read back as the
    /// names and counts counted.
    #[test]
    fn hostile_names_keep_the_exposition_parseable(
        counted in vec((name(), proptest::option::of(name()), select(vec!["allow", "log", "block"])), 0..12)
    ) {
        let metrics = Metrics::new();
        let mut model: HashMap<(String, String, String), f64> = HashMap::new();
        for (department, service, action) in &counted {
            metrics.count_request(department, service.as_deref(), action);
            let key = (department.clone(), service.clone().unwrap_or_else(|| "none".into()), (*action).to_owned());
            *model.entry(key).or_default() += 1.0;
        }
        let text = metrics.encode();
        // Lines end at `\n` only (a carriage return in a label value is a
        // normal character to the format).
        let body = text.strip_suffix("# EOF\n").ok_or_else(|| TestCaseError::fail(format!("no EOF last: {text:?}")))?;
        let mut seen: HashMap<(String, String, String), f64> = HashMap::new();
        for line in body.split_terminator('\n') {
            if let Some(comment) = line.strip_prefix("# ") {
                prop_assert!(["HELP ", "TYPE ", "UNIT "].iter().any(|p| comment.starts_with(p)), "{line:?}");
                continue;
            }
            let (name, labels, value) = parse_sample(line).map_err(TestCaseError::fail)?;
            prop_assert!(name.starts_with("socialgate_"), "{line:?}");
            if name == "socialgate_requests_total" {
                let keys: Vec<&str> = labels.iter().map(|(k, _)| k.as_str()).collect();
                prop_assert_eq!(keys, vec!["department", "service", "action"]);
                let key = (labels[0].1.clone(), labels[1].1.clone(), labels[2].1.clone());
                prop_assert!(seen.insert(key, value).is_none(), "a series twice: {line:?}");
            }
        }
        prop_assert_eq!(seen, model);
    }
}
