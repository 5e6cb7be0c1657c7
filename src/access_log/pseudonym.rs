//! Pseudonymous user names for the access log: `u:` + 16 hex digits of
//! HMAC-SHA256(key, user). The key lives in a file created (mode 0600) on
//! first use and shared across replicas, so pseudonyms are stable across
//! restarts and reports still count distinct users.

use std::io::Write;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Length of a generated key, in bytes.
const KEY_LEN: usize = 32;

/// Turns user names into stable pseudonyms.
#[derive(Clone)]
pub struct Pseudonymizer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymizer(..)")
    }
}

impl Pseudonymizer {
    /// Uses `key` as the HMAC key.
    pub fn from_key(key: Vec<u8>) -> Pseudonymizer {
        Pseudonymizer { key }
    }

    /// Reads the key file, creating it with a fresh random key (mode 0600)
    /// if it does not exist. An empty key file is an error.
    pub fn load_or_create(path: &Path) -> std::io::Result<Pseudonymizer> {
        match std::fs::read(path) {
            Ok(key) if key.is_empty() => {
                Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "pseudonym key file is empty"))
            }
            Ok(key) => Ok(Pseudonymizer { key }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let mut key = vec![0u8; KEY_LEN];
                getrandom_fill(&mut key)?;
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                match opts.open(path) {
                    Ok(mut file) => {
                        file.write_all(&key)?;
                        file.sync_all()?;
                        Ok(Pseudonymizer { key })
                    }
                    // Another replica created it first: use theirs.
                    Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                        Ok(Pseudonymizer { key: std::fs::read(path)? })
                    }
                    Err(err) => Err(err),
                }
            }
            Err(err) => Err(err),
        }
    }

    /// `u:` + the first 16 hex digits of HMAC-SHA256(key, user).
    pub fn pseudonym(&self, user: &str) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            // HMAC accepts keys of any length; this branch is unreachable.
            return "u:0000000000000000".to_owned();
        };
        mac.update(user.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(18);
        out.push_str("u:");
        for byte in &digest[..8] {
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        out
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Fills `buf` with random bytes from the operating system.
fn getrandom_fill(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_stable_keyed_and_shaped() {
        let a = Pseudonymizer::from_key(b"key-one".to_vec());
        let b = Pseudonymizer::from_key(b"key-two".to_vec());
        let p = a.pseudonym("alice");
        assert_eq!(p, a.pseudonym("alice"));
        assert_ne!(p, a.pseudonym("bob"));
        assert_ne!(p, b.pseudonym("alice"));
        assert_eq!(p.len(), 18);
        assert!(p.starts_with("u:") && p[2..].bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pseudonym.key");
        let first = Pseudonymizer::load_or_create(&path).unwrap().pseudonym("alice");
        let second = Pseudonymizer::load_or_create(&path).unwrap().pseudonym("alice");
        assert_eq!(first, second, "stable across restarts");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::write(&path, b"").unwrap();
        assert!(Pseudonymizer::load_or_create(&path).is_err());
    }
}
