//! Files the main config names: htpasswd, hosts file, PEM certificates and
//! keys. A file that cannot be read, is empty or does not parse is reported
//! at the key that names it in the main file; a bad line inside an htpasswd
//! or hosts file is reported at that line of that file.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::IpAddr;
use std::ops::Range;
use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::Secret;
use super::walk::{ReadError, Sink, Source, read_text};
use crate::policy::Host;

/// Reads a file as text, reporting failure at `at` (in the main file), or,
/// for text that is not UTF-8, at the first bad byte in the file itself.
fn read(sink: &mut Sink<'_>, path: &Path, at: &Range<usize>, what: &str, hint: Option<String>) -> Option<String> {
    match read_text(path) {
        Ok(text) => Some(text),
        Err(err @ ReadError::NotUtf8 { line, col, .. }) => {
            sink.out.push(super::Diagnostic {
                severity: super::Severity::Error,
                file: path.to_path_buf(),
                line,
                col,
                message: format!("cannot read {what}: {}", err.reason()),
                hint: err.hint(),
            });
            None
        }
        Err(err) => {
            sink.error_hint(at, format!("cannot read {what} `{}`: {}", path.display(), err.reason()), hint);
            None
        }
    }
}

/// Byte span of a substring of `line` (which starts at `line_start`).
fn span_in(line_start: usize, line: &str, part: &str) -> Range<usize> {
    let offset = (part.as_ptr() as usize).saturating_sub(line.as_ptr() as usize);
    let start = line_start + offset.min(line.len());
    start..start + part.len()
}

/// Non-blank, non-comment lines with their byte offsets.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut offset = 0;
    text.split_inclusive('\n').filter_map(move |raw| {
        let start = offset;
        offset += raw.len();
        let line = raw.trim_end_matches(['\n', '\r']);
        let trimmed = line.trim_start();
        (!trimmed.is_empty() && !trimmed.starts_with('#')).then_some((start, line))
    })
}

/// What an `access_log` path must not lead to, by file type: a FIFO or a
/// socket (opening one blocks, or fails, and a FIFO's reader can stall the
/// writer), a folder or a block device. `None` for a regular file and for a
/// character device (`/dev/null`, a terminal).
pub fn refused_log_kind(kind: &std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_file() || kind.is_char_device() {
        None
    } else if kind.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if kind.is_socket() {
        Some("a socket")
    } else if kind.is_dir() {
        Some("a folder")
    } else if kind.is_block_device() {
        Some("a block device")
    } else {
        Some("not a regular file")
    }
}

/// Checks that the access log at `path` can be opened for appending, without
/// creating it: an existing path must be a regular file or a character
/// device and writable, a missing one needs an existing, writable folder.
pub(crate) fn access_log(sink: &mut Sink<'_>, path: &Path, at: &Range<usize>) {
    let shown = path.display();
    match std::fs::metadata(path) {
        Ok(meta) => {
            if let Some(kind) = refused_log_kind(&meta.file_type()) {
                sink.error_hint(
                    at,
                    format!("`access_log` `{shown}` is {kind}, expected a regular file"),
                    Some("use `\"-\"` for stdout; a character device such as `/dev/null` also works".to_owned()),
                );
            } else if let Err(err) = rustix::fs::access(path, rustix::fs::Access::WRITE_OK) {
                let reason = super::walk::io_reason(&err.into());
                sink.error(at, format!("cannot write `access_log` `{shown}`: {reason}"));
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => writable_folder(sink, path, at, "`access_log`"),
        Err(err) => {
            let reason = super::walk::io_reason(&err);
            sink.error(at, format!("cannot open `access_log` `{shown}`: {reason}"));
        }
    }
}

/// Checks the pseudonym key file without creating it: an existing one must
/// be readable and not empty; a missing one needs an existing, writable
/// folder to be created in (by `run`, mode 0600).
pub(crate) fn pseudonym_key(sink: &mut Sink<'_>, path: &Path, at: &Range<usize>) {
    let shown = path.display();
    match std::fs::read(path) {
        Ok(key) if key.is_empty() => sink.error_hint(
            at,
            format!("pseudonym key file `{shown}` is empty"),
            Some("delete it to have a new key created, or copy the key the other replicas use".to_owned()),
        ),
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            writable_folder(sink, path, at, "pseudonym key file");
        }
        Err(err) => {
            let reason = super::walk::io_reason(&err);
            sink.error(at, format!("cannot read pseudonym key file `{shown}`: {reason}"));
        }
    }
}

/// A file `what` that does not exist yet will be created at `path`: its
/// folder must exist and be writable.
fn writable_folder(sink: &mut Sink<'_>, path: &Path, at: &Range<usize>, what: &str) {
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let shown = path.display();
    let problem = match std::fs::metadata(folder) {
        Ok(meta) if !meta.is_dir() => Some("is not a folder".to_owned()),
        Ok(_) => rustix::fs::access(folder, rustix::fs::Access::WRITE_OK)
            .err()
            .map(|err| format!("cannot be written: {}", super::walk::io_reason(&err.into()))),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Some("does not exist".to_owned()),
        Err(err) => Some(format!("cannot be read: {}", super::walk::io_reason(&err))),
    };
    if let Some(problem) = problem {
        sink.error(at, format!("cannot create {what} `{shown}`: its folder `{}` {problem}", folder.display()));
    }
}

/// The bcrypt costs (log2 rounds) bcrypt itself accepts.
const BCRYPT_MIN_COST: u32 = 4;
const BCRYPT_MAX_COST: u32 = 31;

/// Parses an Apache htpasswd file: `user:hash`, bcrypt only.
pub(crate) fn htpasswd(sink: &mut Sink<'_>, path: &Path, at: &Range<usize>) -> Option<HashMap<String, Secret>> {
    let hint = Some("create it with `htpasswd -B -c FILE USER`".to_owned());
    let text = read(sink, path, at, "htpasswd file", hint)?;
    let src = Source::new(path.to_path_buf(), text);
    let mut file = Sink { src: &src, out: &mut *sink.out, offset: 0 };
    let mut users = HashMap::new();
    let mut ok = true;
    for (start, line) in lines(&src.text) {
        // Blanks before the user are not part of it: Apache trims each
        // line (`ap_cfg_getline`), and an indented `alice` must be `alice`.
        let trimmed = line.trim_start();
        let (start, line) = (start + (line.len() - trimmed.len()), trimmed);
        let Some((user, hash)) = line.split_once(':') else {
            file.error(&span_in(start, line, line), "expected `user:hash`");
            ok = false;
            continue;
        };
        let hash = hash.trim_end();
        if user.is_empty() {
            file.error(&span_in(start, line, line), "empty user name");
            ok = false;
            continue;
        }
        let is_bcrypt = ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p));
        if !is_bcrypt {
            file.error_hint(
                &span_in(start, line, hash),
                format!(
                    "unsupported password hash for user `{user}`, only bcrypt (`$2a$`, `$2b$`, `$2y$`) is accepted"
                ),
                Some("use `htpasswd -B`".to_owned()),
            );
            ok = false;
            continue;
        }
        // A hash bcrypt cannot use would lock its user out for good: the
        // shape, the salt and hash encoding, and the cost are all checked.
        match hash.parse::<bcrypt::HashParts>().map(|parts| parts.get_cost()) {
            Ok(cost) if (BCRYPT_MIN_COST..=BCRYPT_MAX_COST).contains(&cost) => {}
            Ok(cost) => {
                file.error_hint(
                    &span_in(start, line, hash),
                    format!(
                        "bcrypt cost `{cost}` for user `{user}` is out of range, expected {BCRYPT_MIN_COST} to {BCRYPT_MAX_COST}"
                    ),
                    Some("use `htpasswd -B -C 10`".to_owned()),
                );
                ok = false;
                continue;
            }
            Err(_) => {
                file.error_hint(
                    &span_in(start, line, hash),
                    format!("malformed bcrypt hash for user `{user}`"),
                    Some("use `htpasswd -B`".to_owned()),
                );
                ok = false;
                continue;
            }
        }
        match users.entry(user.to_owned()) {
            Entry::Occupied(_) => {
                file.error(&span_in(start, line, user), format!("user `{user}` is listed twice"));
                ok = false;
            }
            Entry::Vacant(slot) => {
                slot.insert(Secret(hash.to_owned()));
            }
        }
    }
    ok.then_some(users)
}

/// Parses an /etc/hosts style file: `ip name [name...]`, `#` comments.
pub(crate) fn hosts_file(sink: &mut Sink<'_>, path: &Path, at: &Range<usize>) -> Option<HashMap<Host, Vec<IpAddr>>> {
    let text = read(sink, path, at, "hosts file", None)?;
    let src = Source::new(path.to_path_buf(), text);
    let mut file = Sink { src: &src, out: &mut *sink.out, offset: 0 };
    let mut hosts: HashMap<Host, Vec<IpAddr>> = HashMap::new();
    let mut ok = true;
    for (start, line) in lines(&src.text) {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_ascii_whitespace();
        let Some(ip_text) = fields.next() else { continue };
        let Ok(ip) = ip_text.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() else {
            file.error(&span_in(start, line, ip_text), format!("invalid address `{ip_text}` in hosts file"));
            ok = false;
            continue;
        };
        let mut any = false;
        for name in fields {
            any = true;
            match Host::parse(name) {
                Ok(host) if host.ip().is_none() => {
                    let addrs = hosts.entry(host).or_default();
                    if !addrs.contains(&ip) {
                        addrs.push(ip);
                    }
                }
                Ok(_) => {
                    file.error(&span_in(start, line, name), format!("`{name}` is an address, expected a host name"));
                    ok = false;
                }
                Err(e) => {
                    file.error(&span_in(start, line, name), format!("invalid host name `{name}`: {e}"));
                    ok = false;
                }
            }
        }
        if !any {
            file.error(&span_in(start, line, ip_text), format!("no host name after `{ip_text}`"));
            ok = false;
        }
    }
    ok.then_some(hosts)
}

/// Reads a PEM certificate chain (one or more `CERTIFICATE` blocks).
pub(crate) fn certificates(sink: &mut Sink<'_>, path: &Path, at: &Range<usize>) -> Option<String> {
    let text = read(sink, path, at, "certificate", None)?;
    let mut count = 0;
    for item in CertificateDer::pem_slice_iter(text.as_bytes()) {
        match item {
            Ok(_) => count += 1,
            Err(e) => {
                sink.error(at, format!("cannot parse certificate `{}`: {}", path.display(), pem_reason(&e)));
                return None;
            }
        }
    }
    if count == 0 {
        sink.error(at, format!("no PEM certificate found in `{}`", path.display()));
        return None;
    }
    Some(text)
}

/// Reads a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn private_key(sink: &mut Sink<'_>, path: &Path, at: &Range<usize>) -> Option<String> {
    let text = read(sink, path, at, "private key", None)?;
    match PrivateKeyDer::from_pem_slice(text.as_bytes()) {
        Ok(_) => Some(text),
        Err(rustls_pki_types::pem::Error::NoItemsFound) => {
            sink.error(at, format!("no PEM private key found in `{}`", path.display()));
            None
        }
        Err(e) => {
            sink.error(at, format!("cannot parse private key `{}`: {}", path.display(), pem_reason(&e)));
            None
        }
    }
}

fn pem_reason(err: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error;
    match err {
        Error::MissingSectionEnd { .. } => "missing PEM end marker".to_owned(),
        Error::IllegalSectionStart { .. } => "malformed PEM begin line".to_owned(),
        Error::Base64Decode(_) => "invalid base64 in PEM block".to_owned(),
        Error::NoItemsFound => "no PEM items found".to_owned(),
        other => super::walk::lowercase_first(&other.to_string()),
    }
}

/// Checks that the key belongs to the (first) certificate: the key's public
/// key must appear in the certificate. Keys rcgen cannot load are skipped.
/// Returns whether no mismatch was reported.
pub(crate) fn check_key_matches(
    sink: &mut Sink<'_>,
    cert_pem: &str,
    key_pem: &str,
    cert_path: &Path,
    key_path: &Path,
    at: &Range<usize>,
    what: &str,
) -> bool {
    let Ok(key) = rcgen::KeyPair::from_pem(key_pem) else { return true };
    let Some(Ok(cert)) = CertificateDer::pem_slice_iter(cert_pem.as_bytes()).next() else { return true };
    let public = key.public_key_raw();
    if public.is_empty() || !cert.as_ref().windows(public.len()).any(|w| w == public) {
        sink.error(at, format!("the key `{}` does not match the {what} `{}`", key_path.display(), cert_path.display()));
        return false;
    }
    true
}

/// Checks that `[intercept]`'s CA can sign block-page certificates browsers
/// accept (a CA certificate, allowed to sign certificates, valid now, with a
/// key the proxy can sign with), reporting why not at the key naming the
/// file at fault.
pub(crate) fn check_intercept_ca(
    sink: &mut Sink<'_>,
    cert_pem: &str,
    key_pem: &str,
    cert_path: &Path,
    key_path: &Path,
    cert_at: &Range<usize>,
    key_at: &Range<usize>,
) {
    use crate::tls::mint::{MintError, Minter};
    let Err(err) = Minter::new(cert_pem, key_pem, 1) else { return };
    let cert = cert_path.display();
    let ca_init = "`socialgate ca init` creates a CA that fits";
    let (at, message, hint) = match &err {
        MintError::CaKey(reason) => (
            key_at,
            format!("cannot sign with the CA key `{}`: {}", key_path.display(), super::walk::lowercase_first(reason)),
            "the key must be PKCS#8 (`BEGIN PRIVATE KEY`): convert it with `openssl pkcs8 -topk8 -nocrypt -in OLD -out NEW`",
        ),
        MintError::KeyMismatch => {
            (cert_at, format!("the key `{}` does not match the CA certificate `{cert}`", key_path.display()), ca_init)
        }
        MintError::NotCa => {
            (cert_at, format!("`{cert}` is not a CA certificate (it has no `CA:TRUE` basic constraint)"), ca_init)
        }
        MintError::NotCertSigner => (
            cert_at,
            format!("the CA certificate `{cert}` may not sign certificates (its key usage lacks `keyCertSign`)"),
            ca_init,
        ),
        MintError::Expired { not_after } => {
            (cert_at, format!("the CA certificate `{cert}` expired at {not_after}"), ca_init)
        }
        MintError::NotYetValid { not_before } => (
            cert_at,
            format!("the CA certificate `{cert}` is not valid before {not_before}"),
            "check this machine's clock",
        ),
        MintError::CaCert(reason) | MintError::Mint { reason, .. } => {
            (cert_at, format!("cannot use the CA certificate `{cert}`: {reason}"), ca_init)
        }
    };
    sink.error_hint(at, message, Some(hint.to_owned()));
}

#[cfg(test)]
#[path = "named_files_props.rs"]
mod props;
