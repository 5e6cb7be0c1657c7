//! `socialgate ca init`: create the company CA used by `[intercept]` to sign
//! block-page certificates.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::CmdResult;

/// `socialgate ca` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum CaCommand {
    /// Create a CA certificate (`ca.pem`) and key (`ca.key`, mode 0600).
    Init(InitArgs),
}

/// `socialgate ca init` arguments.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Folder to write `ca.pem` and `ca.key` into (created if missing).
    #[arg(long, default_value = "config/tls", value_name = "DIR")]
    pub out: PathBuf,
    /// The CA's common name, as browsers show it.
    #[arg(long, default_value = "socialgate block-page CA")]
    pub name: String,
    /// Validity in days.
    #[arg(long, default_value_t = 3650)]
    pub days: i64,
}

/// Runs `socialgate ca ...`.
pub fn ca(cmd: &CaCommand) -> CmdResult {
    match cmd {
        CaCommand::Init(args) => init(args),
    }
}

fn init(args: &InitArgs) -> CmdResult {
    if !(1..=36500).contains(&args.days) {
        return Err(anyhow::anyhow!("--days must be between 1 and 36500").into());
    }
    let cert_path = args.out.join("ca.pem");
    let key_path = args.out.join("ca.key");
    for path in [&cert_path, &key_path] {
        if path.exists() {
            return Err(anyhow::anyhow!("{} already exists; remove it first to create a new CA", path.display()).into());
        }
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let (cert, key) = crate::tls::mint::new_ca(&args.name, args.days, jiff::Timestamp::now())?;
    write_new(&key_path, key.as_bytes(), 0o600)?;
    write_new(&cert_path, cert.as_bytes(), 0o644)?;
    println!("wrote {} and {}", cert_path.display(), key_path.display());
    println!(
        "add to socialgate.toml:\n\n[intercept]\nca_cert = \"{}\"\nca_key = \"{}\"",
        cert_path.display(),
        key_path.display()
    );
    println!("\nthen install {} as a trusted root on every client (see docs/clients.md)", cert_path.display());
    Ok(())
}

fn write_new(path: &Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = opts.open(path).with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(data).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
