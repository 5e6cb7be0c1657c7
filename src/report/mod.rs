//! `socialgate report` and `socialgate replay`: streaming summaries of access
//! logs in constant memory (memory grows only with distinct departments,
//! users, services and hours).
//!
//! [`input`] reads the logs, [`summary`] aggregates for `report`, [`replay`]
//! re-decides for `replay`; [`text`] and [`html`] render. The two command
//! functions here are the CLI edge: they write results to stdout and
//! diagnostics (invalid lines) to stderr.

pub mod html;
pub mod input;
pub mod replay;
pub mod summary;
pub mod text;

#[cfg(test)]
mod props;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::anyhow;

use crate::cli::{CmdResult, Failure};

/// Output format of `report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned tables.
    Text,
    /// One JSON object.
    Json,
    /// One self-contained HTML file with inline SVG charts.
    Html,
}

/// Output format of `replay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReplayFormat {
    /// Aligned tables.
    Text,
    /// One JSON object (see docs/reports.md).
    Json,
}

/// `socialgate report` arguments.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Only records at or after this time (RFC 3339, or a date = 00:00 UTC).
    #[arg(long, value_name = "T", value_parser = valid_bound)]
    pub since: Option<String>,
    /// Only records before this time (RFC 3339, or a date = 00:00 UTC).
    #[arg(long, value_name = "T", value_parser = valid_bound)]
    pub until: Option<String>,
    /// Only this department.
    #[arg(long, value_name = "D")]
    pub department: Option<String>,
    /// Access logs (JSON lines, plain or .gz); `-` is stdin.
    #[arg(value_name = "LOG", required = true)]
    pub logs: Vec<PathBuf>,
}

/// `socialgate replay` arguments.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Output format (text or json).
    #[arg(long, value_enum, default_value = "text")]
    pub format: ReplayFormat,
    /// Access logs (JSON lines, plain or .gz); `-` is stdin.
    #[arg(value_name = "LOG", required = true)]
    pub logs: Vec<PathBuf>,
}

/// Checks a `--since`/`--until` value while parsing arguments, so a bad one
/// is a usage error (exit 2).
fn valid_bound(s: &str) -> Result<String, input::BadTime> {
    input::parse_bound(s).map(|_| s.to_owned())
}

/// Builds the report filter from the arguments.
pub fn filter_from_args(args: &ReportArgs) -> Result<summary::Filter, input::BadTime> {
    Ok(summary::Filter {
        since: args.since.as_deref().map(input::parse_bound).transpose()?,
        until: args.until.as_deref().map(input::parse_bound).transpose()?,
        department: args.department.clone(),
    })
}

/// Standard input can be read once: `-` named twice would silently count
/// as once.
fn stdin_at_most_once(logs: &[PathBuf]) -> CmdResult {
    if logs.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
        return Err(Failure::Usage("`-` (standard input) is named more than once; it can be read only once".into()));
    }
    Ok(())
}

/// Runs `socialgate report`.
pub fn report_command(args: &ReportArgs) -> CmdResult {
    stdin_at_most_once(&args.logs)?;
    let filter = filter_from_args(args)?;
    if let (Some(since), Some(until)) = (filter.since, filter.until)
        && since >= until
    {
        return Err(Failure::Usage(format!(
            "`--since {}` is not before `--until {}`: no record could match (`--since` is inclusive, `--until` exclusive)",
            args.since.as_deref().unwrap_or_default(),
            args.until.as_deref().unwrap_or_default()
        )));
    }
    let mut agg = summary::Aggregator::new(filter);
    let read = input::for_each_record(&args.logs, |rec| agg.add(rec));
    report_bad_lines(&read.bad);
    report_trailing_garbage(&read.trailing_garbage);
    let mut summary = agg.finish();
    if let Some(department) = args.department.as_deref() {
        report_unknown_department(department, &summary);
    }
    summary.unreadable = read.failed.iter().map(|f| f.path.clone()).collect();
    if nothing_read(args.logs.len(), &read.failed) {
        return report_failed_inputs(&read.failed);
    }
    let rendered = match args.format {
        Format::Json => json_line(&summary)?,
        Format::Text => text::render_summary(&summary),
        Format::Html => html::render_summary(&summary),
    };
    write_stdout(&rendered)?;
    report_failed_inputs(&read.failed)
}

/// Runs `socialgate replay` with the config at `config`.
pub fn replay_command(config: &Path, args: &ReplayArgs) -> CmdResult {
    stdin_at_most_once(&args.logs)?;
    let config = crate::cli::load_config_to_read(config)?;
    let mut replayer = replay::Replayer::new(&config.policy);
    let read = input::for_each_record(&args.logs, |rec| replayer.add(rec));
    report_bad_lines(&read.bad);
    report_trailing_garbage(&read.trailing_garbage);
    let outcome = replayer.finish();
    if nothing_read(args.logs.len(), &read.failed) {
        return report_failed_inputs(&read.failed);
    }
    let rendered = match args.format {
        ReplayFormat::Json => json_line(&outcome)?,
        ReplayFormat::Text => replay::render_text(&outcome),
    };
    write_stdout(&rendered)?;
    report_failed_inputs(&read.failed)
}

/// Whether no input could be read at all: then there are no results to
/// print (an empty report would only hide the error), just the errors.
fn nothing_read(inputs: usize, failed: &[input::InputError]) -> bool {
    failed.len() == inputs && failed.iter().all(|f| f.lines == 0)
}

/// Names each input that could not be read (after the results, where a
/// person at a terminal sees it last); any such input makes the exit code 1.
fn report_failed_inputs(failed: &[input::InputError]) -> CmdResult {
    if failed.is_empty() {
        return Ok(());
    }
    let mut err = std::io::stderr().lock();
    for f in failed {
        let _ = writeln!(err, "error: {}: {}", text::clean(&f.to_string()), f.source);
    }
    if failed.len() > 1 {
        let _ = writeln!(err, "error: {} inputs could not be read; the results cover the rest", failed.len());
    } else {
        let _ = writeln!(err, "error: the results cover only what could be read");
    }
    Err(Failure::Reported)
}

/// A `--department` that matched nothing is usually a typo: say so, and
/// which departments the logs do have.
fn report_unknown_department(department: &str, summary: &summary::Summary) {
    if summary.records > 0 || summary.seen_departments.iter().any(|d| d == department) {
        return;
    }
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "warning: no record of department `{}` in the logs", text::clean(department));
    if summary.seen_departments.is_empty() {
        let _ = writeln!(err);
    } else {
        let names: Vec<String> = summary.seen_departments.iter().map(|d| format!("`{}`", text::clean(d))).collect();
        let more = if summary.seen_departments.len() >= summary::MAX_SEEN_DEPARTMENTS { ", ..." } else { "" };
        let _ = writeln!(err, "; departments seen: {}{more}", names.join(", "));
    }
}

fn json_line<T: serde::Serialize>(value: &T) -> Result<String, Failure> {
    let mut out = Vec::with_capacity(4096);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, TerminalSafe);
    value.serialize(&mut ser).map_err(|e| anyhow!("cannot encode the result: {e}"))?;
    out.push(b'\n');
    String::from_utf8(out).map_err(|e| anyhow!("cannot encode the result: {e}").into())
}

/// serde_json's compact output, except that it also writes DEL, the C1
/// controls and bidirectional-text controls as `\uXXXX` escapes. serde_json
/// escapes only C0 controls, so a department name carrying U+009B (CSI, which
/// terminals such as xterm act on) reached a terminal raw. The JSON decodes
/// to the same strings.
struct TerminalSafe;

impl serde_json::ser::Formatter for TerminalSafe {
    fn write_string_fragment<W: ?Sized + Write>(&mut self, writer: &mut W, fragment: &str) -> std::io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if c.is_control() || text::is_bidi_control(c) {
                writer.write_all(&fragment.as_bytes()[start..i])?;
                write!(writer, "\\u{:04x}", u32::from(c))?;
                start = i + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

fn write_stdout(s: &str) -> CmdResult {
    let mut out = std::io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        // A closed pipe (`| head`) is the reader's choice, not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(anyhow!("cannot write the result: {e}").into()),
    }
}

/// The longest reason shown for an invalid line, in characters.
const MAX_REASON: usize = 200;

/// A reason as shown on a terminal: parser messages quote the line's own
/// text (`unknown variant ...`), so control characters (escape sequences)
/// are replaced and an overlong quote is cut.
fn shown(message: &str) -> String {
    let mut out = text::clean(&message.chars().take(MAX_REASON).collect::<String>());
    if message.chars().nth(MAX_REASON).is_some() {
        out.push_str("...");
    }
    out
}

/// Writes the invalid-line summary to stderr: the first few with
/// `file:line`, then the total.
/// gzip inputs that end in bytes that are not gzip: worded as `gzip -d`
/// words it; a warning, as every record before them was read.
fn report_trailing_garbage(paths: &[String]) {
    let mut err = std::io::stderr().lock();
    for path in paths {
        let _ = writeln!(err, "warning: {}: decompression OK, trailing garbage ignored", text::clean(path));
    }
}

fn report_bad_lines(bad: &input::BadLines) {
    if bad.count == 0 {
        return;
    }
    let mut err = std::io::stderr().lock();
    for b in &bad.first {
        let column = b.column.map(|c| format!(":{c}")).unwrap_or_default();
        let _ = writeln!(err, "{}:{}{column}: warning: not a valid record: {}", b.path, b.line, shown(&b.message));
    }
    if bad.count > bad.first.len() as u64 {
        let _ = writeln!(err, "... and {} more", bad.count - bad.first.len() as u64);
    }
    let _ = writeln!(
        err,
        "warning: {} line{} skipped (not valid records)",
        bad.count,
        if bad.count == 1 { "" } else { "s" }
    );
}
