//! `socialgate report` and `socialgate replay`: streaming summaries of access
//! logs in constant memory.

use std::path::{Path, PathBuf};

use crate::cli::CmdResult;

/// Output format of `report` and `replay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned tables.
    Text,
    /// One JSON object.
    Json,
    /// One self-contained HTML file with inline SVG charts.
    Html,
}

/// `socialgate report` arguments.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Only records at or after this time (RFC 3339, or a date = 00:00 UTC).
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// Only records before this time (RFC 3339, or a date = 00:00 UTC).
    #[arg(long, value_name = "T")]
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
    pub format: Format,
    /// Access logs (JSON lines, plain or .gz); `-` is stdin.
    #[arg(value_name = "LOG", required = true)]
    pub logs: Vec<PathBuf>,
}

/// Runs `socialgate report`.
pub fn report_command(args: &ReportArgs) -> CmdResult {
    let _ = args;
    Ok(())
}

/// Runs `socialgate replay` with the config at `config`.
pub fn replay_command(config: &Path, args: &ReplayArgs) -> CmdResult {
    let _ = (config, args);
    Ok(())
}
