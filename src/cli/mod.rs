//! The command line: argument parsing and the only code that prints.
//!
//! Every command exits 0 on success, 1 on a config or input error, 2 on a
//! usage error (clap's own exit code); diagnostics go to stderr, results to
//! stdout.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod ca;
mod explain;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config;

/// socialgate: a forward HTTP proxy with per-department social-media policies.
#[derive(Debug, Parser)]
#[command(name = "socialgate", version, about, propagate_version = true)]
pub struct Cli {
    /// The main config file; paths inside it are relative to its folder.
    #[arg(long, global = true, default_value = config::DEFAULT_PATH, value_name = "PATH")]
    pub config: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the proxy (and the admin endpoint if configured).
    Run,
    /// Load and validate every config file; print each problem.
    Check,
    /// Show the decision the config would take for a URL, and why.
    Explain(explain::ExplainArgs),
    /// Summarise access logs (JSON lines, plain or .gz; `-` is stdin).
    Report(crate::report::ReportArgs),
    /// Print the PAC file the admin endpoint serves.
    Pac,
    /// Re-decide logged requests under the current config; show what changes.
    Replay(crate::report::ReplayArgs),
    /// Manage the company CA used by `[intercept]` block pages.
    #[command(subcommand)]
    Ca(ca::CaCommand),
}

/// Parses the arguments, runs the command, returns the exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // --help and --version print to stdout and exit 0; usage errors exit 2.
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() { 2 } else { 0 });
        }
    };
    init_tracing();
    let result = match cli.command {
        Command::Run => run::run(&cli.config),
        Command::Check => check(&cli.config),
        Command::Explain(args) => explain::explain(&cli.config, &args),
        Command::Report(args) => crate::report::report_command(&args),
        Command::Pac => pac(&cli.config),
        Command::Replay(args) => crate::report::replay_command(&cli.config, &args),
        Command::Ca(cmd) => ca::ca(&cli.config, &cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Reported) => ExitCode::from(1),
        Err(Failure::Other(err)) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

/// How a command failed: already reported (diagnostics printed), or an
/// error still to print.
#[derive(Debug)]
pub enum Failure {
    /// The problems were printed already; exit 1.
    Reported,
    /// Print this and exit 1.
    Other(anyhow::Error),
    /// Arguments that parse one by one but not together (clap checks each
    /// alone): print this and exit 2, like clap's own usage errors.
    Usage(String),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(err: E) -> Self {
        Failure::Other(err.into())
    }
}

/// A command's outcome.
pub type CmdResult = Result<(), Failure>;

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal; journald, files and pipes get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).try_init();
}

/// Loads the config, printing every diagnostic on failure and every
/// warning on success (to stderr, as `check` does).
pub fn load_config(path: &std::path::Path) -> Result<config::Config, Failure> {
    report_diagnostics(path, config::load(path))
}

/// [`load_config`] for commands that only read the policy: the files
/// `[log]` names are not checked (see [`config::load_to_read`]).
pub fn load_config_to_read(path: &std::path::Path) -> Result<config::Config, Failure> {
    report_diagnostics(path, config::load_to_read(path))
}

/// `1 error`, `2 warnings`.
fn count(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

fn report_diagnostics(
    path: &std::path::Path,
    loaded: Result<config::Config, config::Diagnostics>,
) -> Result<config::Config, Failure> {
    match loaded {
        Ok(config) => {
            let n = config.warnings.0.len();
            if n > 0 {
                eprintln!("{}", config.warnings);
                eprintln!("{}: {}", path.display(), count(n, "warning"));
            }
            Ok(config)
        }
        Err(diags) => {
            for d in &diags.0 {
                eprintln!("{d}");
            }
            let warnings = diags.0.iter().filter(|d| d.severity == config::Severity::Warning).count();
            let mut summary = count(diags.0.len() - warnings, "error");
            if warnings > 0 {
                summary = format!("{summary}, {}", count(warnings, "warning"));
            }
            eprintln!("{}: {summary}", path.display());
            Err(Failure::Reported)
        }
    }
}

fn check(path: &std::path::Path) -> CmdResult {
    let config = load_config(path)?;
    let summary = config.summary();
    println!("{}: ok ({summary})", path.display());
    Ok(())
}

fn pac(path: &std::path::Path) -> CmdResult {
    let config = load_config_to_read(path)?;
    print!("{}", crate::pac::render(&config, None));
    Ok(())
}
