//! Walking a spanned TOML document: positions, typed getters that report
//! wrong types, unknown-key checks and "did you mean" hints. Every helper
//! records problems in a [`Sink`] and carries on, so one run finds them all.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::{Diagnostic, Severity};
use crate::policy::Origin;

/// A spanned TOML value.
pub(crate) type Val<'i> = Spanned<DeValue<'i>>;

/// One file's text, with a line index for byte offset -> line:col.
#[derive(Debug)]
pub(crate) struct Source {
    /// The path as the user would name it.
    pub path: PathBuf,
    /// The whole text.
    pub text: String,
    line_starts: Vec<usize>,
}

impl Source {
    /// Wraps a file's text.
    pub fn new(path: PathBuf, text: String) -> Source {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Source { path, text, line_starts }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn position(&self, offset: usize) -> (u32, u32) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset).saturating_sub(1);
        let start = self.line_starts.get(line).copied().unwrap_or(0);
        let col = self.text.get(start..offset).map_or(offset - start, |s| s.chars().count());
        (to_u32(line + 1), to_u32(col + 1))
    }

    /// Where a span starts, as an [`Origin`].
    pub fn origin(&self, span: &Range<usize>) -> Origin {
        let (line, col) = self.position(span.start);
        Origin { file: Arc::from(self.path.as_path()), line, col }
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Collects diagnostics for one source file.
pub(crate) struct Sink<'a> {
    /// The file being walked.
    pub src: &'a Source,
    /// Where problems go.
    pub out: &'a mut Vec<Diagnostic>,
    /// Added to every span: where the text the spans point into starts in
    /// `src.text` (non-zero for a document parsed from a slice of it).
    pub offset: usize,
}

impl Sink<'_> {
    /// Records an error at a span.
    pub fn error(&mut self, span: &Range<usize>, message: impl Into<String>) {
        self.error_hint(span, message, None);
    }

    /// Records an error with an optional hint.
    pub fn error_hint(&mut self, span: &Range<usize>, message: impl Into<String>, hint: Option<String>) {
        let error = self.at(span, Severity::Error, message.into(), hint);
        self.out.push(error);
    }

    /// A warning at a span, for the caller to keep: warnings do not go to
    /// [`Sink::out`], whose every entry fails the load.
    pub fn warning(&self, span: &Range<usize>, message: impl Into<String>, hint: Option<String>) -> Diagnostic {
        self.at(span, Severity::Warning, message.into(), hint)
    }

    fn at(&self, span: &Range<usize>, severity: Severity, message: String, hint: Option<String>) -> Diagnostic {
        let (line, col) = self.src.position(span.start.saturating_add(self.offset));
        Diagnostic { severity, file: self.src.path.clone(), line, col, message, hint }
    }

    /// Reports every key of `table` not in `known`, with the nearest known
    /// key as a hint, else the list of valid keys. `section` names the table
    /// (`[proxy]`, or a file description).
    pub fn unknown_keys(&mut self, table: &DeTable<'_>, known: &[&str], section: &str) {
        for key in table.keys() {
            let name: &str = key.get_ref();
            if !known.contains(&name) {
                let hint = suggest(name, known.iter().copied())
                    .or_else(|| Some(format!("valid keys: {}", list(known.iter().copied()))));
                self.error_hint(&key.span(), format!("unknown key `{name}` in {section}"), hint);
            }
        }
    }

    /// Reports a wrong type.
    pub fn wrong_type(&mut self, value: &Val<'_>, expected: &str) {
        let found = value.get_ref().type_str();
        self.error(&value.span(), format!("expected {expected}, found {} {found}", article(found)));
    }

    /// The value as a string, or a reported type error.
    pub fn string<'v>(&mut self, value: &'v Val<'_>) -> Option<&'v str> {
        match value.get_ref() {
            DeValue::String(s) => Some(s),
            _ => {
                self.wrong_type(value, "a string");
                None
            }
        }
    }

    /// The value as a boolean, or a reported type error.
    pub fn boolean(&mut self, value: &Val<'_>) -> Option<bool> {
        match value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong_type(value, "a boolean");
                None
            }
        }
    }

    /// The value as a table, or a reported type error.
    pub fn table<'v, 'i>(&mut self, value: &'v Val<'i>) -> Option<&'v DeTable<'i>> {
        match value.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.wrong_type(value, "a table");
                None
            }
        }
    }

    /// The value as a non-negative integer within `min..=max`.
    pub fn integer(&mut self, value: &Val<'_>, min: u64, max: u64) -> Option<u64> {
        let DeValue::Integer(int) = value.get_ref() else {
            self.wrong_type(value, "an integer");
            return None;
        };
        let digits: String = int.as_str().chars().filter(|c| *c != '_').collect();
        let digits = digits.strip_prefix('+').unwrap_or(&digits);
        let digits = digits
            .strip_prefix("0x")
            .or_else(|| digits.strip_prefix("0o"))
            .or_else(|| digits.strip_prefix("0b"))
            .unwrap_or(digits);
        match u64::from_str_radix(digits, int.radix()) {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.error(&value.span(), format!("integer `{}` out of range, expected {min} to {max}", int.as_str()));
                None
            }
        }
    }

    /// The value as an array of strings with their spans; elements of the
    /// wrong type are reported and skipped.
    pub fn strings<'v>(&mut self, value: &'v Val<'_>) -> Option<Vec<(&'v str, Range<usize>)>> {
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type(value, "an array of strings");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items.iter() {
            if let Some(s) = self.string(item) {
                out.push((s, item.span()));
            }
        }
        Some(out)
    }

    /// Like [`Sink::strings`], but a lone string is accepted as a one-element list.
    pub fn string_or_strings<'v>(&mut self, value: &'v Val<'_>) -> Option<Vec<(&'v str, Range<usize>)>> {
        match value.get_ref() {
            DeValue::String(s) => Some(vec![(s, value.span())]),
            DeValue::Array(_) => self.strings(value),
            _ => {
                self.wrong_type(value, "a string or an array of strings");
                None
            }
        }
    }

    /// Parses a string value with `parse`, reporting its error (message,
    /// hint) at the value.
    pub fn parsed<T>(
        &mut self,
        value: &Val<'_>,
        parse: impl FnOnce(&str) -> Result<T, (String, Option<String>)>,
    ) -> Option<T> {
        let s = self.string(value)?;
        self.parse_at(s, &value.span(), parse)
    }

    /// Parses `s` (written at `span`) with `parse`, reporting its error.
    pub fn parse_at<T>(
        &mut self,
        s: &str,
        span: &Range<usize>,
        parse: impl FnOnce(&str) -> Result<T, (String, Option<String>)>,
    ) -> Option<T> {
        match parse(s) {
            Ok(v) => Some(v),
            Err((message, hint)) => {
                self.error_hint(span, message, hint);
                None
            }
        }
    }
}

/// Looks a key up in a table.
pub(crate) fn get<'t, 'i>(table: &'t DeTable<'i>, key: &str) -> Option<&'t Val<'i>> {
    table.iter().find(|(k, _)| k.get_ref().as_ref() == key).map(|(_, v)| v)
}

/// Entries of a table in source order.
pub(crate) fn entries<'t, 'i>(table: &'t DeTable<'i>) -> Vec<(&'t Spanned<std::borrow::Cow<'i, str>>, &'t Val<'i>)> {
    let mut all: Vec<_> = table.iter().collect();
    all.sort_by_key(|(k, _)| k.span().start);
    all
}

/// `a` or `an` for a TOML type name.
pub(crate) fn article(type_name: &str) -> &'static str {
    match type_name.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}

/// `` `a`, `b`, `c` ``.
pub(crate) fn list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    items.into_iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
}

/// "did you mean `x`?" for the nearest candidate within a small edit distance.
pub(crate) fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| format!("did you mean `{c}`?"))
}

/// The hint for an unknown name: the near miss, else every known name.
pub(crate) fn name_hint(word: &str, known: &[&str], what: &str) -> Option<String> {
    let mut known = known.to_vec();
    known.sort_unstable();
    suggest(word, known.iter().copied()).or_else(|| {
        if known.is_empty() {
            Some(format!("no {what} are defined"))
        } else {
            Some(format!("known {what}: {}", list(known.iter().copied())))
        }
    })
}

/// Edit distance over characters (optimal string alignment: insertions,
/// deletions, substitutions and swaps of neighbours each cost one).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for (i, cell) in d.iter_mut().step_by(width).enumerate() {
        *cell = i;
    }
    for (j, cell) in d.iter_mut().take(width).enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best =
                (d[(i - 1) * width + j] + 1).min(d[i * width + j - 1] + 1).min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

/// Resolves a path written inside `file` against that file's folder.
pub(crate) fn resolve(file: &Path, written: &str) -> PathBuf {
    let written = Path::new(written);
    if written.is_absolute() {
        return written.to_path_buf();
    }
    match file.parent() {
        Some(dir) => dir.join(written),
        None => written.to_path_buf(),
    }
}

/// The largest config file read (a big hosts file is a few MB).
pub(crate) const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Why a config file could not be read as text.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// Opening or reading failed (not found, permission denied, a folder...).
    Io(std::io::Error),
    /// Not a regular file: a FIFO or a device would block or never end.
    NotAFile,
    /// Larger than [`MAX_FILE_BYTES`].
    TooLarge,
    /// Not UTF-8: where the first bad byte is (1-based line, column in
    /// characters) and its value.
    NotUtf8 { line: u32, col: u32, byte: u8 },
}

impl ReadError {
    /// A short, lowercase reason (the position of a UTF-8 error is the
    /// diagnostic's, not part of the reason).
    pub fn reason(&self) -> String {
        match self {
            ReadError::Io(err) => io_reason(err),
            ReadError::NotAFile => "not a regular file".to_owned(),
            ReadError::TooLarge => format!("larger than {} MiB", MAX_FILE_BYTES / (1024 * 1024)),
            ReadError::NotUtf8 { byte, .. } => format!("not valid UTF-8 (byte `0x{byte:02x}`)"),
        }
    }

    /// The hint for a UTF-8 error.
    pub fn hint(&self) -> Option<String> {
        matches!(self, ReadError::NotUtf8 { .. }).then(|| "save the file as UTF-8".to_owned())
    }
}

/// Reads a config file as UTF-8 text, without the byte-order mark some
/// Windows editors put first. Only regular files (or symlinks to them) of
/// at most [`MAX_FILE_BYTES`] are read.
pub(crate) fn read_text(path: &Path) -> Result<String, ReadError> {
    use std::io::Read;
    // Looked at before opening: opening a FIFO blocks until a writer comes.
    let meta = std::fs::metadata(path).map_err(ReadError::Io)?;
    if meta.is_dir() {
        return Err(ReadError::Io(std::io::Error::from(std::io::ErrorKind::IsADirectory)));
    }
    if !meta.is_file() {
        return Err(ReadError::NotAFile);
    }
    let file = std::fs::File::open(path).map_err(ReadError::Io)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(ReadError::Io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge);
    }
    let bytes = match bytes.strip_prefix(b"\xef\xbb\xbf") {
        Some(rest) => rest.to_vec(),
        None => bytes,
    };
    String::from_utf8(bytes).map_err(|err| {
        let valid = err.utf8_error().valid_up_to();
        let bytes = err.as_bytes();
        let byte = bytes.get(valid).copied().unwrap_or(0);
        // The prefix is valid UTF-8 by definition.
        let before = std::str::from_utf8(bytes.get(..valid).unwrap_or_default()).unwrap_or_default();
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line = before.matches('\n').count() + 1;
        let col = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        ReadError::NotUtf8 { line: to_u32(line), col: to_u32(col), byte }
    })
}

/// A short, lowercase description of an I/O error.
pub(crate) fn io_reason(err: &std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::NotFound => "file not found".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        std::io::ErrorKind::InvalidData => "not valid UTF-8".to_owned(),
        std::io::ErrorKind::IsADirectory => "is a directory".to_owned(),
        _ => {
            let text = err.to_string();
            let text = text.split(" (os error").next().unwrap_or(&text).to_owned();
            lowercase_first(&text)
        }
    }
}

/// Lowercases the first character (messages are lowercase).
pub(crate) fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_characters() {
        let src = Source::new(PathBuf::from("f"), "a = 1\nñb = 2\n".to_owned());
        assert_eq!(src.position(0), (1, 1));
        assert_eq!(src.position(6), (2, 1));
        assert_eq!(src.position(8), (2, 2));
    }

    #[test]
    fn suggestions_by_edit_distance() {
        assert_eq!(suggest("blok", ["allow", "block", "log"]).as_deref(), Some("did you mean `block`?"));
        assert_eq!(suggest("xyzzy", ["allow", "block", "log"]), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("vidoe", "video"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(suggest("vidoe", ["clips", "video"]).as_deref(), Some("did you mean `video`?"));
    }
}
