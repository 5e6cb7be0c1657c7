//! Who is asking: Basic proxy credentials checked against the htpasswd
//! users, with a cache of successful verifications so bcrypt runs once per
//! credential, not once per request.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::Mutex;

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::config::{AuthMode, IdentityConfig};

/// Credentials from a `Proxy-Authorization: Basic` header. `Debug` never
/// shows the password.
#[derive(Clone)]
pub struct Credentials {
    /// User name.
    pub user: String,
    password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("user", &self.user).field("password", &"<redacted>").finish()
    }
}

impl Credentials {
    /// Parses `Basic <base64(user:password)>`; `None` for anything else.
    pub fn parse_basic(header: &[u8]) -> Option<Credentials> {
        let header = std::str::from_utf8(header).ok()?.trim();
        let (scheme, token) = header.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD.decode(token.trim()).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (user, password) = decoded.split_once(':')?;
        if user.is_empty() {
            return None;
        }
        Some(Credentials { user: user.to_owned(), password: password.to_owned() })
    }
}

/// The outcome of authenticating one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// No authentication configured, or the client is in
    /// `auth_exempt_networks`: placed by address only.
    Anonymous,
    /// Valid credentials for this user.
    User(String),
    /// No usable `Proxy-Authorization` header.
    Missing,
    /// Credentials given but wrong (unknown user or bad password).
    Invalid,
}

/// Checks credentials against the htpasswd users of the current config,
/// caching successes. Safe to share between requests and across reloads:
/// the cache key includes the stored hash, so a changed password or a
/// reloaded htpasswd invalidates old entries.
pub struct Authenticator {
    verified: Mutex<lru::LruCache<[u8; 32], ()>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator(..)")
    }
}

impl Default for Authenticator {
    fn default() -> Self {
        Authenticator::new(4096)
    }
}

impl Authenticator {
    /// An authenticator remembering up to `capacity` verified credentials.
    pub fn new(capacity: usize) -> Authenticator {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Authenticator { verified: Mutex::new(lru::LruCache::new(capacity)) }
    }

    /// Authenticates a request from `client` carrying `header` (the raw
    /// `Proxy-Authorization` value, if any). bcrypt runs on the blocking
    /// pool, never on the runtime.
    pub async fn authenticate(&self, config: &IdentityConfig, client: IpAddr, header: Option<&[u8]>) -> AuthOutcome {
        if config.auth == AuthMode::None || config.auth_exempt_networks.iter().any(|net| net.contains(&client)) {
            return AuthOutcome::Anonymous;
        }
        let Some(creds) = header.and_then(Credentials::parse_basic) else {
            return AuthOutcome::Missing;
        };
        let Some(stored) = config.users.get(&creds.user) else {
            // Spend the time a real check would, against some user's hash,
            // so response timing does not tell which users exist.
            if let Some(any) = config.users.values().next() {
                let hash = any.0.clone();
                let password = creds.password;
                let _ = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash)).await;
            }
            return AuthOutcome::Invalid;
        };
        let key = cache_key(&creds, &stored.0);
        if self.verified.lock().map(|mut cache| cache.get(&key).is_some()).unwrap_or(false) {
            return AuthOutcome::User(creds.user);
        }
        let hash = stored.0.clone();
        let password = creds.password.clone();
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
            .await
            .unwrap_or(false);
        if !ok {
            return AuthOutcome::Invalid;
        }
        if let Ok(mut cache) = self.verified.lock() {
            cache.put(key, ());
        }
        AuthOutcome::User(creds.user)
    }
}

/// user + SHA-256(password) + stored hash, hashed again: the password itself
/// is never kept.
fn cache_key(creds: &Credentials, stored_hash: &str) -> [u8; 32] {
    let password_digest = Sha256::digest(creds.password.as_bytes());
    let mut hasher = Sha256::new();
    hasher.update((creds.user.len() as u64).to_be_bytes());
    hasher.update(creds.user.as_bytes());
    hasher.update(password_digest);
    hasher.update(stored_hash.as_bytes());
    hasher.finalize().into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn config(hash: String) -> IdentityConfig {
        IdentityConfig {
            auth: AuthMode::Basic,
            users: [("alice".to_owned(), Secret(hash))].into_iter().collect(),
            realm: "socialgate".into(),
            auth_exempt_networks: vec!["10.9.0.0/16".parse().unwrap()],
        }
    }

    fn basic(user: &str, password: &str) -> Vec<u8> {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {token}").into_bytes()
    }

    #[tokio::test]
    async fn credentials_are_checked_and_cached() {
        let cfg = config(bcrypt::hash("secret", 4).unwrap());
        let auth = Authenticator::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(auth.authenticate(&cfg, ip, None).await, AuthOutcome::Missing);
        assert_eq!(auth.authenticate(&cfg, ip, Some(&basic("alice", "nope"))).await, AuthOutcome::Invalid);
        assert_eq!(auth.authenticate(&cfg, ip, Some(&basic("bob", "secret"))).await, AuthOutcome::Invalid);
        assert_eq!(
            auth.authenticate(&cfg, ip, Some(&basic("alice", "secret"))).await,
            AuthOutcome::User("alice".into())
        );
        assert_eq!(
            auth.authenticate(&cfg, ip, Some(&basic("alice", "secret"))).await,
            AuthOutcome::User("alice".into())
        );
        // A new hash for the same user (reloaded htpasswd) is verified anew.
        let changed = config(bcrypt::hash("other", 4).unwrap());
        assert_eq!(auth.authenticate(&changed, ip, Some(&basic("alice", "secret"))).await, AuthOutcome::Invalid);
        let exempt: IpAddr = "10.9.1.1".parse().unwrap();
        assert_eq!(auth.authenticate(&cfg, exempt, None).await, AuthOutcome::Anonymous);
    }

    #[test]
    fn debug_hides_the_password() {
        let creds = Credentials::parse_basic(&basic("alice", "hunter2")).unwrap();
        assert!(!format!("{creds:?}").contains("hunter2"));
    }
}
