//! Config diagnostics: `FILE:LINE:COL: error: MESSAGE` (or `warning:`), with
//! an optional hint.

use std::path::PathBuf;

/// Whether a diagnostic stops the config from loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The config is invalid: it is not loaded (nor applied on reload).
    Error,
    /// The config loads, but does not do all it says (e.g. an IPv6 network
    /// in `[pac] direct`, which the PAC file cannot match).
    Warning,
}

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file, as the user would name it.
    pub file: PathBuf,
    /// Line, 1-based (0 if the problem is about the file as a whole).
    pub line: u32,
    /// Column, 1-based, in characters (0 if unknown).
    pub col: u32,
    /// Lowercase, no trailing period, values in backticks.
    pub message: String,
    /// E.g. "did you mean `block`?".
    pub hint: Option<String>,
}

impl std::fmt::Display for Diagnostic {
    /// `FILE:LINE:COL: error: MESSAGE` (`warning:` for a warning), then
    /// `  = hint: HINT` on its own line when there is a hint.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}:{}:{}: {severity}: {}", self.file.display(), self.line, self.col, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  = hint: {hint}")?;
        }
        Ok(())
    }
}

/// Every problem found in one load (or every warning of a config that
/// loaded), in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl std::fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}
