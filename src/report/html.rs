//! HTML rendering: one self-contained page (inline CSS and SVG, no scripts,
//! fonts, images or URLs) with a share-of-users chart, a requests-per-hour
//! chart and the per-department tables. Every name from the log is escaped.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::summary::{Summary, hour_start};
use super::text::{human_bytes, percent};

/// At most this many bars in the requests-per-hour chart; longer periods are
/// shown in buckets of several hours.
const MAX_TIME_BARS: i64 = 168;

/// Department colours (Okabe-Ito, then four of Tol's muted scheme), reused
/// cyclically beyond twelve departments.
const PALETTE: [&str; 12] = [
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000", "#882255", "#44AA99",
    "#999933", "#AA4499",
];

/// Charts are drawn for about this many pixels of width.
const CHART_WIDTH: f64 = 900.0;

pub use crate::html::escape;

const STYLE: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;margin:2em auto;max-width:60em;padding:0 1em;color:#222;background:#fff}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ccc}
p.meta{color:#555;margin-top:0}
table{border-collapse:collapse;margin:.5em 0 1em}th,td{padding:.25em .7em;border-bottom:1px solid #ddd;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}
figure{margin:1em 0}figcaption{font-weight:600;margin-bottom:.4em}
svg{max-width:100%;height:auto;font-size:11px}svg text{fill:#222}
.legend span{display:inline-block;margin-right:1.2em}.legend i{display:inline-block;width:.9em;height:.9em;margin-right:.3em;vertical-align:middle}
@media print{body{margin:0;max-width:none;font-size:10pt}section,figure,table{break-inside:avoid;page-break-inside:avoid}th{background:#eee !important;-webkit-print-color-adjust:exact;print-color-adjust:exact}svg rect{-webkit-print-color-adjust:exact;print-color-adjust:exact}}
";

/// Renders a report summary as one HTML page.
pub fn render_summary(s: &Summary) -> String {
    let mut out = String::with_capacity(16 * 1024);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str("<title>socialgate report</title>\n<style>");
    out.push_str(STYLE);
    out.push_str("</style>\n</head>\n<body>\n<h1>socialgate report</h1>\n");
    match (s.from, s.to) {
        (Some(from), Some(to)) => {
            let _ = writeln!(
                out,
                "<p class=\"meta\">{} records from {} to {} (UTC)</p>",
                s.records,
                escape(&from.to_string()),
                escape(&to.to_string())
            );
        }
        _ => out.push_str("<p class=\"meta\">No matching records.</p>\n"),
    }
    if !s.unreadable.is_empty() {
        let names: Vec<String> = s.unreadable.iter().map(|p| escape(p)).collect();
        let _ = writeln!(
            out,
            "<p class=\"meta\"><strong>Incomplete:</strong> could not read all of {}; the figures leave out what could not be read.</p>",
            names.join(", ")
        );
    }
    share_chart(&mut out, s);
    hourly_chart(&mut out, s);
    for d in &s.departments {
        let _ = writeln!(
            out,
            "<section>\n<h2>{}</h2>\n<p class=\"meta\">{} active users, {} requests</p>",
            escape(&d.name),
            d.active_users,
            d.requests
        );
        if !d.services.is_empty() {
            out.push_str("<table>\n<thead><tr><th>service</th><th>users</th><th>share</th><th>allowed</th><th>logged</th><th>blocked</th><th>bytes</th></tr></thead>\n<tbody>\n");
            for svc in &d.services {
                let _ = writeln!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td title=\"{} bytes\">{}</td></tr>",
                    escape(&svc.name),
                    svc.users,
                    percent(svc.share),
                    svc.allowed,
                    svc.logged,
                    svc.blocked,
                    svc.bytes,
                    human_bytes(svc.bytes)
                );
            }
            out.push_str("</tbody>\n</table>\n");
        }
        if !d.busiest_hours.is_empty() {
            out.push_str("<table>\n<thead><tr><th>busiest hour (UTC)</th><th>requests</th></tr></thead>\n<tbody>\n");
            for h in &d.busiest_hours {
                let _ = writeln!(
                    out,
                    "<tr><td>{}</td><td>{}</td></tr>",
                    escape(&h.hour.strftime("%Y-%m-%d %H:00").to_string()),
                    h.requests
                );
            }
            out.push_str("</tbody>\n</table>\n");
        }
        out.push_str("</section>\n");
    }
    out.push_str("</body>\n</html>\n");
    out
}

fn legend(out: &mut String, names: &[&str]) {
    out.push_str("<div class=\"legend\">");
    for (i, name) in names.iter().enumerate() {
        let _ = write!(out, "<span><i style=\"background:{}\"></i>{}</span>", PALETTE[i % PALETTE.len()], escape(name));
    }
    out.push_str("</div>\n");
}

/// Grouped bars: one group per service, one bar per department, height =
/// share of the department's active users who used the service.
fn share_chart(out: &mut String, s: &Summary) {
    let services: BTreeSet<&str> =
        s.departments.iter().flat_map(|d| d.services.iter().map(|svc| svc.name.as_str())).collect();
    let depts: Vec<&str> = s.departments.iter().map(|d| d.name.as_str()).collect();
    out.push_str("<figure>\n<figcaption>Share of active users who reached each service, per department</figcaption>\n");
    legend(out, &depts);
    let (left, top, plot_h, bottom) = (44.0_f64, 10.0_f64, 200.0_f64, 40.0_f64);
    let groups = services.len().max(1) as f64;
    let gap = 26.0_f64;
    let bar_w = ((CHART_WIDTH - left - 10.0 - gap * groups) / (groups * depts.len().max(1) as f64)).clamp(3.0, 22.0);
    let group_w = bar_w * depts.len().max(1) as f64 + gap;
    let width = (left + group_w * services.len().max(1) as f64 + 10.0).max(320.0);
    let height = top + plot_h + bottom;
    let _ = writeln!(
        out,
        "<svg role=\"img\" aria-label=\"share of users per service per department\" viewBox=\"0 0 {width:.0} {height:.0}\" width=\"{width:.0}\" height=\"{height:.0}\">"
    );
    for pct in [0u32, 25, 50, 75, 100] {
        let y = top + plot_h * (1.0 - f64::from(pct) / 100.0);
        let _ = writeln!(
            out,
            "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{pct}%</text>",
            width - 10.0,
            left - 4.0,
            y + 4.0
        );
    }
    if services.is_empty() {
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">no requests to catalogue services</text>",
            width / 2.0,
            top + plot_h / 2.0
        );
    }
    for (g, service) in services.iter().enumerate() {
        let gx = left + gap / 2.0 + group_w * g as f64;
        for (i, d) in s.departments.iter().enumerate() {
            // Only departments that used the service get a bar: a bar for
            // every (service, department) pair would make the page grow with
            // their product, and a zero-height bar shows nothing anyway.
            let Ok(found) = d.services.binary_search_by(|svc| svc.name.as_str().cmp(service)) else {
                continue;
            };
            let share = d.services[found].share;
            let h = plot_h * share.clamp(0.0, 1.0);
            let _ = writeln!(
                out,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{}\"><title>{} / {}: {}</title></rect>",
                gx + bar_w * i as f64,
                top + plot_h - h,
                (bar_w - 2.0).max(1.0),
                PALETTE[i % PALETTE.len()],
                escape(&d.name),
                escape(service),
                percent(share)
            );
        }
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            gx + (group_w - gap) / 2.0,
            top + plot_h + 16.0,
            escape(service)
        );
    }
    close_chart(out, left, top, plot_h, width);
}

/// Stacked bars over time: requests per hour (or per bucket of hours for
/// long periods), one colour per department.
fn hourly_chart(out: &mut String, s: &Summary) {
    let first = s.departments.iter().filter_map(|d| d.hourly.first().map(|h| h.0)).min();
    let last = s.departments.iter().filter_map(|d| d.hourly.last().map(|h| h.0)).max();
    let (first, last) = match (first, last) {
        (Some(f), Some(l)) => (f, l),
        _ => (0, 0),
    };
    let span = last - first + 1;
    let bucket = ((span + MAX_TIME_BARS - 1) / MAX_TIME_BARS).max(1);
    let bars = ((span + bucket - 1) / bucket).max(1);
    // bucket index -> per-department counts
    let mut counts: BTreeMap<i64, Vec<u64>> = BTreeMap::new();
    for (i, d) in s.departments.iter().enumerate() {
        for &(h, n) in &d.hourly {
            let slot = counts.entry((h - first) / bucket).or_insert_with(|| vec![0; s.departments.len()]);
            slot[i] += n;
        }
    }
    let max = counts.values().map(|v| v.iter().sum::<u64>()).max().unwrap_or(0).max(1);
    let caption = if bucket == 1 {
        "Requests per hour (UTC), per department".to_owned()
    } else {
        format!("Requests per {bucket} hours (UTC), per department")
    };
    let _ = writeln!(out, "<figure>\n<figcaption>{}</figcaption>", escape(&caption));
    let depts: Vec<&str> = s.departments.iter().map(|d| d.name.as_str()).collect();
    legend(out, &depts);
    let (left, top, plot_h, bottom) = (54.0_f64, 10.0_f64, 200.0_f64, 46.0_f64);
    let bar_w = ((CHART_WIDTH - left - 50.0) / bars as f64).clamp(3.0, 30.0);
    // Room on the right for the last axis label.
    let width = (left + bar_w * bars as f64 + 50.0).max(320.0);
    let height = top + plot_h + bottom;
    let _ = writeln!(
        out,
        "<svg role=\"img\" aria-label=\"requests per hour\" viewBox=\"0 0 {width:.0} {height:.0}\" width=\"{width:.0}\" height=\"{height:.0}\">"
    );
    for frac in [0.0_f64, 0.5, 1.0] {
        let y = top + plot_h * (1.0 - frac);
        let _ = writeln!(
            out,
            "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            width - 10.0,
            left - 4.0,
            y + 4.0,
            (max as f64 * frac).round()
        );
    }
    for (&slot, per_dept) in &counts {
        let x = left + bar_w * slot as f64;
        let mut y = top + plot_h;
        let label =
            hour_start(first + slot * bucket).map(|t| t.strftime("%Y-%m-%d %H:00").to_string()).unwrap_or_default();
        for (i, &n) in per_dept.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let h = plot_h * n as f64 / max as f64;
            y -= h;
            let _ = writeln!(
                out,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{}\"><title>{} {}: {n}</title></rect>",
                (bar_w - 1.0).max(1.0),
                PALETTE[i % PALETTE.len()],
                escape(&label),
                escape(depts.get(i).copied().unwrap_or(""))
            );
        }
    }
    // Label the first bar and about five more along the axis.
    let step = (bars / 6).max((48.0 / bar_w).ceil() as i64).max(1);
    let mut slot = 0;
    while slot < bars {
        if let Some(t) = hour_start(first + slot * bucket) {
            let _ = writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"start\">{}</text><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"start\">{}</text>",
                left + bar_w * slot as f64,
                top + plot_h + 14.0,
                escape(&t.strftime("%H:00").to_string()),
                left + bar_w * slot as f64,
                top + plot_h + 28.0,
                escape(&t.strftime("%m-%d").to_string())
            );
        }
        slot += step;
    }
    close_chart(out, left, top, plot_h, width);
}

/// The x axis under a chart's plot area, and the end of its figure.
fn close_chart(out: &mut String, left: f64, top: f64, plot_h: f64, width: f64) {
    let _ = writeln!(
        out,
        "<line x1=\"{left}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#444\"/>",
        top + plot_h,
        width - 10.0,
        top + plot_h
    );
    out.push_str("</svg>\n</figure>\n");
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::input::parse_line;
    use super::super::summary::{Aggregator, Filter};
    use super::*;

    #[test]
    fn long_periods_are_shown_in_buckets_of_hours() {
        let mut agg = Aggregator::new(Filter::default());
        let start = jiff::Timestamp::from_second(1_795_000_000).unwrap();
        for hour in 0..(30 * 24) {
            let ts = start + jiff::SignedDuration::from_hours(hour);
            let line = serde_json::json!({
                "ts": ts.to_string(), "client": "10.0.0.1", "user": null, "department": "d", "method": "GET",
                "host": "h.example", "port": 80, "url": null, "sni": null, "service": "s", "rule": "default",
                "action": "allow", "status": 200, "bytes_up": 1, "bytes_down": 1, "duration_ms": 1,
                "closed_by": "client"
            })
            .to_string();
            agg.add(&parse_line(line.as_bytes()).unwrap());
        }
        let html = render_summary(&agg.finish());
        assert!(html.contains("Requests per 5 hours (UTC)"));
        // 1 share bar + 144 hour buckets.
        assert_eq!(html.matches("<rect").count(), 1 + 144);
    }

    /// Regression: the share chart drew a bar for every (service,
    /// department) pair, used or not, so a log with a few thousand distinct
    /// departments and services (20 000 lines) made a page of gigabytes.
    #[test]
    fn the_share_chart_grows_with_the_pairs_seen_not_their_product() {
        let mut agg = Aggregator::new(Filter::default());
        for i in 0..300 {
            let line = serde_json::json!({
                "ts": "2026-11-26T09:00:00Z", "client": "10.0.0.1", "user": null, "department": format!("d{i}"),
                "method": "GET", "host": "h.example", "port": 80, "url": null, "sni": null,
                "service": format!("s{i}"), "rule": "default", "action": "allow", "status": 200,
                "bytes_up": 1, "bytes_down": 1, "duration_ms": 1, "closed_by": "client"
            })
            .to_string();
            agg.add(&parse_line(line.as_bytes()).unwrap());
        }
        let html = render_summary(&agg.finish());
        // 300 share bars and 300 department slices of the one hour bar.
        assert_eq!(html.matches("<rect").count(), 600);
        assert!(html.contains("<title>d7 / s7: 100.0%</title>"));
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }
}
