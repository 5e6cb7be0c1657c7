//! Reading access logs for `report` and `replay`: plain or gzip files (found
//! by their magic bytes) or stdin, streamed line by line into borrowed
//! [`LogLine`]s, with invalid lines counted and located, never fatal.

use std::borrow::Cow;
use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use flate2::bufread::GzDecoder;
use jiff::Timestamp;
use serde::Deserialize;

use crate::access_log::ClosedBy;
use crate::policy::Action;

/// How many invalid lines are described one by one; the rest are only counted.
pub const MAX_DESCRIBED: usize = 5;

const BUF_SIZE: usize = 256 * 1024;

/// Longer lines are not records (a record is well under 10 kB); they are
/// counted as invalid without being held in memory.
pub const MAX_LINE: u64 = 1024 * 1024;

/// One access-log record, borrowed from its line where possible. It accepts
/// exactly what [`crate::access_log::Record`] accepts (same field names and
/// types, unknown fields ignored), but does not copy strings.
#[derive(Debug, Deserialize)]
pub struct LogLine<'a> {
    /// When the request head arrived (parsed into [`Parsed`] by [`parse_line`]).
    #[serde(borrow)]
    pub ts: Cow<'a, str>,
    /// Client address.
    pub client: IpAddr,
    /// Authenticated (possibly pseudonymised) user.
    #[serde(borrow)]
    pub user: Option<Cow<'a, str>>,
    /// Department name as logged.
    #[serde(borrow)]
    pub department: Cow<'a, str>,
    /// Request method.
    #[serde(borrow)]
    pub method: Cow<'a, str>,
    /// Host the decision used.
    #[serde(borrow)]
    pub host: Cow<'a, str>,
    /// Destination port.
    pub port: u16,
    /// URL without query.
    #[serde(borrow)]
    pub url: Option<Cow<'a, str>>,
    /// TLS SNI seen in a tunnel.
    #[serde(borrow)]
    pub sni: Option<Cow<'a, str>>,
    /// Catalogue service.
    #[serde(borrow)]
    pub service: Option<Cow<'a, str>>,
    /// What decided.
    #[serde(borrow)]
    pub rule: Cow<'a, str>,
    /// The action taken.
    pub action: Action,
    /// HTTP status.
    pub status: u16,
    /// Bytes from the client.
    pub bytes_up: u64,
    /// Bytes to the client.
    pub bytes_down: u64,
    /// Duration.
    pub duration_ms: u64,
    /// Who ended it.
    pub closed_by: ClosedBy,
}

/// A parsed line: the record and its timestamp.
#[derive(Debug)]
pub struct Parsed<'a> {
    /// The record.
    pub line: LogLine<'a>,
    /// Its `ts`, parsed.
    pub ts: Timestamp,
}

/// Why a line is not a valid record.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// Not JSON, or not the record's shape.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// Not UTF-8.
    #[error("not UTF-8: {0}")]
    Utf8(#[from] std::str::Utf8Error),
    /// `ts` is not an RFC 3339 timestamp.
    #[error("invalid `ts`: {0}")]
    Ts(#[from] jiff::Error),
    /// A line of Squid's native format (`[log] format = "squid"`), which
    /// carries too little (no department, service or rule) to report on.
    #[error("a Squid-format line: `report` and `replay` read socialgate's JSON access log (`[log] format = \"json\"`)")]
    SquidFormat,
}

impl LineError {
    /// The column of a JSON error (lines are single JSON objects).
    pub fn column(&self) -> Option<usize> {
        match self {
            LineError::Json(e) if e.column() > 0 => Some(e.column()),
            _ => None,
        }
    }

    /// The reason, without serde_json's "at line 1 column N" suffix.
    pub fn message(&self) -> String {
        let full = self.to_string();
        match full.rsplit_once(" at line ") {
            Some((msg, _)) if matches!(self, LineError::Json(_)) => msg.to_owned(),
            _ => full,
        }
    }
}

/// Parses one line (without its newline).
pub fn parse_line(bytes: &[u8]) -> Result<Parsed<'_>, LineError> {
    // One UTF-8 check for the whole line is cheaper than serde_json's check
    // of every borrowed string.
    let text = std::str::from_utf8(bytes)?;
    let line: LogLine<'_> = match serde_json::from_str(text) {
        Ok(line) => line,
        Err(_) if looks_like_squid(text) => return Err(LineError::SquidFormat),
        Err(err) => return Err(err.into()),
    };
    let ts: Timestamp = line.ts.parse()?;
    Ok(Parsed { line, ts })
}

/// Whether `text` starts like a line of Squid's native access.log:
/// `SECONDS.MILLIS ELAPSED CLIENT CODE/STATUS`.
fn looks_like_squid(text: &str) -> bool {
    let mut fields = text.split_ascii_whitespace();
    let stamp = fields.next().and_then(|t| t.split_once('.'));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    stamp.is_some_and(|(secs, millis)| digits(secs) && digits(millis))
        && fields.next().is_some_and(digits)
        && fields.next().is_some()
        && fields.next().is_some_and(|code| code.split_once('/').is_some_and(|(_, status)| digits(status)))
}

/// An input that could not be opened, or whose reading stopped part-way
/// (a truncated or corrupt gzip, an I/O error). Records before the failure
/// have been counted.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}{}", past_line(*.lines))]
pub struct InputError {
    /// The file (`-` for stdin).
    pub path: String,
    /// Lines read before the failure (0: nothing could be read).
    pub lines: u64,
    /// What went wrong.
    #[source]
    pub source: io::Error,
}

fn past_line(lines: u64) -> String {
    if lines == 0 { String::new() } else { format!(" past line {lines}") }
}

/// An invalid line, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// The file (`-` for stdin).
    pub path: String,
    /// 1-based line number.
    pub line: u64,
    /// 1-based column, when the JSON parser knows it.
    pub column: Option<usize>,
    /// Why it was rejected.
    pub message: String,
}

/// Invalid lines seen while reading: the total and the first few.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BadLines {
    /// How many lines were not valid records.
    pub count: u64,
    /// The first [`MAX_DESCRIBED`] of them.
    pub first: Vec<BadLine>,
}

impl BadLines {
    fn note(&mut self, path: &str, line: u64, column: Option<usize>, message: impl FnOnce() -> String) {
        self.count += 1;
        if self.first.len() < MAX_DESCRIBED {
            self.first.push(BadLine { path: path.to_owned(), line, column, message: message() });
        }
    }
}

fn display_path(path: &Path) -> String {
    path.display().to_string()
}

/// The first bytes of every gzip member.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Opens `path` (`-`: stdin), decompressing it if it is gzip. `trailing` is
/// set if a gzip input ends in bytes that are not gzip.
fn open(path: &Path, trailing: &Rc<Cell<bool>>) -> io::Result<Box<dyn BufRead>> {
    let raw: Box<dyn Read> =
        if path.as_os_str() == "-" { Box::new(io::stdin().lock()) } else { Box::new(File::open(path)?) };
    let mut buffered = BufReader::with_capacity(BUF_SIZE, raw);
    let head = buffered.fill_buf()?;
    if head.starts_with(&GZIP_MAGIC) {
        let members = Members { decoder: Some(GzDecoder::new(buffered)), trailing: trailing.clone() };
        Ok(Box::new(BufReader::with_capacity(BUF_SIZE, members)))
    } else {
        Ok(Box::new(buffered))
    }
}

/// gzip members read one after another (`cat a.gz b.gz`, logrotate's
/// `delaycompress` files joined), as `gzip -d` reads them. Bytes after a
/// member that do not begin another (zeros left by a crash, a copy padded
/// out) end the input and set `trailing`, so they are reported as `gzip -d`
/// reports them: ignored, with a warning, every record before them read.
struct Members<R: BufRead> {
    /// `None` once the input has ended.
    decoder: Option<GzDecoder<R>>,
    trailing: Rc<Cell<bool>>,
}

impl<R: BufRead> Read for Members<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(decoder) = self.decoder.as_mut() else { return Ok(0) };
            let n = decoder.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            // The member ended: another begins, or the input ends.
            let Some(mut rest) = self.decoder.take().map(GzDecoder::into_inner) else { return Ok(0) };
            let next = rest.fill_buf()?;
            if next.is_empty() {
                return Ok(0);
            }
            if !next.starts_with(&GZIP_MAGIC) {
                self.trailing.set(true);
                return Ok(0);
            }
            self.decoder = Some(GzDecoder::new(rest));
        }
    }
}

/// What reading the inputs found besides records.
#[derive(Debug, Default)]
pub struct ReadOutcome {
    /// Lines that were not valid records.
    pub bad: BadLines,
    /// Inputs that could not be opened or read to the end, in argument order.
    pub failed: Vec<InputError>,
    /// gzip inputs read whole that end in bytes that are not gzip (ignored,
    /// as `gzip -d` ignores them).
    pub trailing_garbage: Vec<String>,
}

/// Streams every valid record of every log in `paths`, in order, to `visit`.
/// Blank lines are skipped; invalid lines are counted. An input that cannot
/// be opened, or fails part-way, is recorded in [`ReadOutcome::failed`] and
/// the next one is read: as with `cat` or `grep`, one bad file among many
/// neither hides the others nor stops at the first problem.
pub fn for_each_record(paths: &[PathBuf], mut visit: impl FnMut(&Parsed<'_>)) -> ReadOutcome {
    let mut outcome = ReadOutcome::default();
    let mut buf = Vec::with_capacity(4096);
    for path in paths {
        let name = display_path(path);
        let mut line_no: u64 = 0;
        let trailing = Rc::new(Cell::new(false));
        match read_one(path, &name, &trailing, &mut line_no, &mut buf, &mut outcome.bad, &mut visit) {
            Ok(()) if trailing.get() => outcome.trailing_garbage.push(name),
            Ok(()) => {}
            Err(source) => outcome.failed.push(InputError { path: name, lines: line_no, source }),
        }
    }
    outcome
}

fn read_one(
    path: &Path,
    name: &str,
    trailing: &Rc<Cell<bool>>,
    line_no: &mut u64,
    buf: &mut Vec<u8>,
    bad: &mut BadLines,
    visit: &mut impl FnMut(&Parsed<'_>),
) -> io::Result<()> {
    let mut reader = open(path, trailing)?;
    loop {
        buf.clear();
        let n = (&mut reader).take(MAX_LINE + 1).read_until(b'\n', buf)?;
        if n == 0 {
            return Ok(());
        }
        *line_no += 1;
        if buf.len() as u64 > MAX_LINE && buf.last() != Some(&b'\n') {
            // Keep memory bounded: drop the rest of the line unread.
            reader.skip_until(b'\n')?;
            bad.note(name, *line_no, None, || format!("line longer than {MAX_LINE} bytes"));
            continue;
        }
        let line = trim_ascii(buf);
        // A byte-order mark (Windows editors, PowerShell) at the start of a
        // file, or of each file concatenated into one, is not part of the JSON.
        let line = trim_ascii(line.strip_prefix(b"\xef\xbb\xbf").unwrap_or(line));
        if line.is_empty() {
            continue;
        }
        match parse_line(line) {
            Ok(parsed) => visit(&parsed),
            Err(err) => bad.note(name, *line_no, err.column(), || err.message()),
        }
    }
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |i| i + 1);
    &bytes[start..end.max(start)]
}

/// Error for a `--since`/`--until` value that is neither RFC 3339 nor a date.
#[derive(Debug, thiserror::Error)]
#[error("invalid time `{0}`: expected RFC 3339 (2026-11-26T09:00:00Z) or a date (2026-11-26)")]
pub struct BadTime(pub String);

/// Parses a filter bound: an RFC 3339 timestamp, or a bare date meaning
/// 00:00 UTC that day.
pub fn parse_bound(input: &str) -> Result<Timestamp, BadTime> {
    if let Ok(ts) = input.parse::<Timestamp>() {
        return Ok(ts);
    }
    input
        .parse::<jiff::civil::Date>()
        .ok()
        .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|z| z.timestamp())
        .ok_or_else(|| BadTime(input.to_owned()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"ts":"2026-11-26T09:15:02.481Z","client":"10.20.4.17","user":"al\"ice","department":"sales","method":"CONNECT","host":"www.facebook.com","port":443,"url":null,"sni":"www.facebook.com","service":"facebook","rule":"services.facebook","action":"log","status":200,"bytes_up":1830,"bytes_down":48211,"duration_ms":5120,"closed_by":"client"}"#;

    #[test]
    fn parses_the_spec_record_and_agrees_with_record() {
        let parsed = parse_line(LINE.as_bytes()).unwrap();
        let record: crate::access_log::Record = serde_json::from_str(LINE).unwrap();
        assert_eq!(parsed.ts, record.ts);
        assert_eq!(parsed.line.user.as_deref(), Some("al\"ice"));
        assert_eq!(parsed.line.action, Action::Log);
        assert_eq!(parsed.line.client, record.client);
    }

    /// Lines our own Squid-format log writes are named as such, so an
    /// admin who points `report` at them learns which format it reads.
    #[test]
    fn squid_format_lines_are_recognised() {
        let mut record: crate::access_log::Record = serde_json::from_str(LINE).unwrap();
        for (method, status) in [("CONNECT", 200), ("GET", 403), ("GET", 407)] {
            record.method = method.into();
            record.status = status;
            let mut squid = String::new();
            crate::access_log::squid::write_line(&mut squid, &record);
            let err = parse_line(squid.trim_end().as_bytes()).unwrap_err();
            assert!(matches!(err, LineError::SquidFormat), "{squid}: {err}");
            assert!(err.message().contains("format = \"json\""), "{}", err.message());
        }
        assert!(!looks_like_squid("1795684502.481 garbage"));
        assert!(!looks_like_squid("garbage"));
        assert!(!looks_like_squid("1795684502.481   5120 10.20.4.17 TCP_TUNNEL/x"));
        assert!(matches!(parse_line(b"{\"ts\":1}"), Err(LineError::Json(_))));
    }

    #[test]
    fn rejects_bad_shapes() {
        assert!(parse_line(b"not json").is_err());
        assert!(parse_line(LINE.replace("\"log\"", "\"maybe\"").as_bytes()).is_err());
        assert!(parse_line(LINE.replace("2026-11-26T09", "yesterday").as_bytes()).is_err());
        assert!(parse_line(LINE.replace("\"port\":443,", "").as_bytes()).is_err());
    }

    #[test]
    fn bounds_accept_dates_and_timestamps() {
        assert_eq!(parse_bound("2026-11-26").unwrap(), "2026-11-26T00:00:00Z".parse().unwrap());
        assert_eq!(parse_bound("2026-11-26T10:00:00+01:00").unwrap(), "2026-11-26T09:00:00Z".parse().unwrap());
        assert!(parse_bound("26/11/2026").is_err());
    }

    #[test]
    fn trims_whitespace() {
        assert_eq!(trim_ascii(b"  x \r\n"), b"x");
        assert_eq!(trim_ascii(b" \n"), b"");
    }
}
