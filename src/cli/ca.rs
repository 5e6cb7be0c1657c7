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
    /// Folder to write `ca.pem` and `ca.key` into (created if missing)
    /// [default: `tls` next to the `--config` file, e.g. `config/tls`]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The CA's common name, as browsers show it.
    #[arg(long, default_value = "socialgate block-page CA")]
    pub name: String,
    /// Validity in days.
    #[arg(long, default_value_t = 3650)]
    pub days: i64,
}

/// Runs `socialgate ca ...`; `config_path` is the `--config` file the
/// printed snippet is meant for.
pub fn ca(config_path: &Path, cmd: &CaCommand) -> CmdResult {
    match cmd {
        CaCommand::Init(args) => init(config_path, args),
    }
}

fn init(config_path: &Path, args: &InitArgs) -> CmdResult {
    if !(1..=36500).contains(&args.days) {
        return Err(anyhow::anyhow!("--days must be between 1 and 36500").into());
    }
    // Like every path in the config, the default is relative to the
    // config's folder, not to where the command runs.
    let out = match &args.out {
        Some(out) => out.clone(),
        None => config_path.parent().unwrap_or(Path::new("")).join("tls"),
    };
    let cert_path = out.join("ca.pem");
    let key_path = out.join("ca.key");
    for path in [&cert_path, &key_path] {
        if path.exists() {
            return Err(anyhow::anyhow!("{} already exists; remove it first to create a new CA", path.display()).into());
        }
    }
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let (cert, key) = crate::tls::mint::new_ca(&args.name, args.days, jiff::Timestamp::now())?;
    write_new(&key_path, key.as_bytes(), 0o600)?;
    write_new(&cert_path, cert.as_bytes(), 0o644)?;
    println!("wrote {} and {}", cert_path.display(), key_path.display());
    // Paths in the config are relative to its folder, not to where this
    // command ran.
    println!(
        "add to {}:\n\n[intercept]\nca_cert = {}\nca_key = {}",
        config_path.display(),
        toml_path(&as_seen_from_config(&cert_path, config_path)),
        toml_path(&as_seen_from_config(&key_path, config_path)),
    );
    println!("\nthen install {} as a trusted root on every client (see docs/clients.md)", cert_path.display());
    Ok(())
}

/// `path` (relative to the working directory) as the config file at
/// `config_path` must name it: relative to the config's folder when inside
/// it, else absolute.
fn as_seen_from_config(path: &Path, config_path: &Path) -> PathBuf {
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let folder = match config_path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let (path, folder) = (absolute(path), absolute(folder));
    let (path, folder) = (normalise(&path), normalise(&folder));
    match path.strip_prefix(&folder) {
        Ok(inside) => inside.to_path_buf(),
        Err(_) => path,
    }
}

/// Drops `.` components and resolves `..` lexically (no file system access:
/// the config may not exist yet).
fn normalise(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// A path as a TOML string (quoted and escaped).
fn toml_path(path: &Path) -> String {
    toml::Value::String(path.display().to_string()).to_string()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_paths_are_relative_to_the_config_folder() {
        let cfg = Path::new("config/socialgate.toml");
        assert_eq!(as_seen_from_config(Path::new("config/tls/ca.pem"), cfg), Path::new("tls/ca.pem"));
        assert_eq!(as_seen_from_config(Path::new("./config/./tls/ca.pem"), cfg), Path::new("tls/ca.pem"));
        assert_eq!(as_seen_from_config(Path::new("tls/ca.pem"), Path::new("socialgate.toml")), Path::new("tls/ca.pem"));
        let outside = as_seen_from_config(Path::new("elsewhere/ca.pem"), cfg);
        assert!(outside.is_absolute() && outside.ends_with("elsewhere/ca.pem"), "{}", outside.display());
        assert_eq!(
            as_seen_from_config(Path::new("/etc/socialgate/tls/ca.pem"), Path::new("/etc/socialgate/socialgate.toml")),
            Path::new("tls/ca.pem")
        );
        assert_eq!(toml_path(Path::new("tls/ca.pem")), "\"tls/ca.pem\"");
    }
}
