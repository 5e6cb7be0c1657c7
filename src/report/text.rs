//! Plain-text rendering: aligned tables a person reads in a terminal.

use std::fmt::Write as _;

use unicode_width::UnicodeWidthStr as _;

use super::summary::Summary;

/// Renders a report summary as text.
pub fn render_summary(s: &Summary) -> String {
    let mut out = String::new();
    match (s.from, s.to) {
        (Some(from), Some(to)) => {
            let _ = writeln!(out, "socialgate report: {} records from {from} to {to} (UTC)", s.records);
        }
        _ => {
            let _ = writeln!(out, "socialgate report: no matching records");
        }
    }
    if !s.unreadable.is_empty() {
        let names: Vec<String> = s.unreadable.iter().map(|p| clean(p)).collect();
        let _ = writeln!(out, "incomplete: could not read all of {} (see stderr)", names.join(", "));
    }
    for d in &s.departments {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "department {}: {} active user{}, {} request{}",
            clean(&d.name),
            d.active_users,
            if d.active_users == 1 { "" } else { "s" },
            d.requests,
            if d.requests == 1 { "" } else { "s" },
        );
        if d.services.is_empty() {
            let _ = writeln!(out, "  (no requests to catalogue services)");
        } else {
            let mut t = Table::new(&["service", "users", "share", "allowed", "logged", "blocked", "bytes"]);
            for svc in &d.services {
                t.row(vec![
                    clean(&svc.name),
                    svc.users.to_string(),
                    percent(svc.share),
                    svc.allowed.to_string(),
                    svc.logged.to_string(),
                    svc.blocked.to_string(),
                    human_bytes(svc.bytes),
                ]);
            }
            t.render(&mut out, 2);
        }
        if !d.busiest_hours.is_empty() {
            let _ = writeln!(out);
            let mut t = Table::new(&["busiest hour (UTC)", "requests"]);
            for h in &d.busiest_hours {
                t.row(vec![h.hour.strftime("%Y-%m-%d %H:00").to_string(), h.requests.to_string()]);
            }
            t.render(&mut out, 2);
        }
    }
    out
}

/// A table with a header row; the first column (or the first few, see
/// [`Table::left_aligned`]) is left-aligned, the rest right-aligned.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
    left: usize,
}

impl Table {
    /// A table with these column headings.
    pub fn new(header: &[&str]) -> Table {
        Table { rows: vec![header.iter().map(|h| (*h).to_owned()).collect()], left: 1 }
    }

    /// Left-aligns the first `n` columns.
    pub fn left_aligned(mut self, n: usize) -> Table {
        self.left = n;
        self
    }

    /// Appends a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Writes the table, indented by `indent` spaces, with a rule under the
    /// header.
    pub fn render(&self, out: &mut String, indent: usize) {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0usize; cols];
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.width());
            }
        }
        for (r, row) in self.rows.iter().enumerate() {
            let mut line = " ".repeat(indent);
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = widths[i].saturating_sub(cell.width());
                if i < self.left {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad));
                } else {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
            if r == 0 {
                let total: usize = widths.iter().sum::<usize>() + 2 * cols.saturating_sub(1);
                let _ = writeln!(out, "{}{}", " ".repeat(indent), "-".repeat(total));
            }
        }
    }
}

/// `1234567` as `1.2 MB` (decimal units), small counts as they are.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut value = n as f64;
    let mut unit = "B";
    for u in UNITS {
        if value < 1000.0 {
            break;
        }
        value /= 1000.0;
        unit = u;
    }
    format!("{value:.1} {unit}")
}

/// A share as a percentage with one decimal.
pub fn percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

/// Replaces control characters so a hostile name cannot rewrite the
/// terminal, and bidirectional-text controls so it cannot reorder what
/// follows it on the line (a right-to-left override turns `moc.koobecaf`
/// into what reads as `facebook.com`).
pub fn clean(s: &str) -> String {
    s.chars().map(|c| if c.is_control() || is_bidi_control(c) { '?' } else { c }).collect()
}

/// The Unicode bidirectional formatting characters (UAX #9): marks,
/// embeddings, overrides and isolates.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns() {
        let mut t = Table::new(&["service", "users"]);
        t.row(vec!["facebook".into(), "3".into()]);
        t.row(vec!["x".into(), "12".into()]);
        let mut out = String::new();
        t.render(&mut out, 2);
        assert_eq!(out, "  service   users\n  ---------------\n  facebook      3\n  x            12\n");
    }

    /// Regression: cells were padded by characters, not by the columns a
    /// terminal gives them, so a CJK department (two columns a character)
    /// or a name with a combining accent pushed the rest of its row out of
    /// line.
    #[test]
    fn wide_and_combining_characters_keep_columns_aligned() {
        let mut t = Table::new(&["department", "users"]).left_aligned(1);
        t.row(vec!["営業部".into(), "3".into()]);
        t.row(vec!["Rene\u{301}".into(), "12".into()]);
        t.row(vec!["sales".into(), "7".into()]);
        let mut out = String::new();
        t.render(&mut out, 0);
        assert_eq!(
            out,
            "department  users\n-----------------\n営業部          3\nRene\u{301}           12\nsales           7\n"
        );
    }

    /// Regression: `clean` let bidi overrides through, so a department or
    /// host from the log could reverse the rest of its table row.
    #[test]
    fn clean_replaces_bidi_overrides_and_isolates() {
        assert_eq!(clean("x\u{202E}moc.koobecaf"), "x?moc.koobecaf");
        assert_eq!(clean("\u{2066}a\u{2069}\u{200F}"), "?a??");
        assert_eq!(clean("bücher é 日本"), "bücher é 日本", "ordinary text is kept");
    }

    #[test]
    fn formats_bytes_and_cleans() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_234_567), "1.2 MB");
        assert_eq!(clean("a\x1b[2Jb"), "a?[2Jb");
        assert_eq!(clean("a\u{9b}31mb"), "a?31mb", "C1 CSI");
        assert_eq!(percent(2.0 / 3.0), "66.7%");
    }
}
