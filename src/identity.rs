//! Who is asking: Basic proxy credentials checked against the htpasswd
//! users, with a cache of successful verifications so bcrypt runs once per
//! credential, not once per request.
//!
//! bcrypt is deliberately slow, so wrong credentials are where its cost can
//! be turned against the proxy. Three bounds keep that cost small: at most
//! [`MAX_CONCURRENT_VERIFICATIONS`] run at once, credentials already found
//! wrong are remembered (a client retrying the same wrong password costs
//! nothing), and a client with [`MAX_FAILURES`] failures within
//! [`FAILURE_WINDOW`] gets `407` without any verification until the window
//! passes.
//!
//! The bounds hold even against a client that hangs up mid-verification
//! (hyper then drops the request's future, and with it everything after
//! its `.await`): an attempt is counted as a failure *before* bcrypt runs
//! and forgiven only when it succeeds, and the concurrency permit and the
//! recording of the outcome travel with the bcrypt work onto the blocking
//! pool, where they stay until that work is done. Requests carrying the
//! same credentials while they are being verified (a browser retrying on
//! several connections at once with the password just typed) join that
//! one attempt: they are not counted as failures of their own, and take
//! its outcome rather than running bcrypt again. Failures are counted per
//! client address, IPv6 clients per /64 (one host usually holds a whole
//! /64).

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use prometheus_client::metrics::counter::Counter;
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
    /// Blanks are HTTP's (SP, HTAB), not Unicode's: a token followed by
    /// U+3000 is not a token.
    pub fn parse_basic(header: &[u8]) -> Option<Credentials> {
        let blank = |c: char| c == ' ' || c == '\t';
        let header = std::str::from_utf8(header).ok()?.trim_matches(blank);
        let (scheme, token) = header.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD.decode(token.trim_start_matches(blank)).ok()?;
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
    books: Arc<Books>,
    verifying: Arc<tokio::sync::Semaphore>,
    stats: Arc<Stats>,
}

/// What the authenticator remembers. Shared with the bcrypt work on the
/// blocking pool, which records its own outcome: a verification whose
/// client hung up still counts, and still answers the same credentials
/// waiting behind it.
struct Books {
    verified: Mutex<lru::LruCache<[u8; 32], ()>>,
    rejected: Mutex<lru::LruCache<[u8; 32], ()>>,
    failures: Mutex<lru::LruCache<IpAddr, Failures>>,
    /// Credentials being verified now, and by how many requests: a browser
    /// sends the credentials it was just given on several connections at
    /// once, and those are one attempt, not several failures.
    pending: Mutex<HashMap<[u8; 32], usize>>,
}

/// What the bcrypt work on the blocking pool reports back, whether or not
/// anyone still awaits it.
#[derive(Debug, Default)]
struct Stats {
    runs: Counter,
    running: AtomicUsize,
    peak: AtomicUsize,
}

/// bcrypt verifications allowed to run at the same time.
pub const MAX_CONCURRENT_VERIFICATIONS: usize = 2;
/// Failed verifications a client may cause within [`FAILURE_WINDOW`].
pub const MAX_FAILURES: u32 = 10;
/// The window failures are counted in.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// One client's recent failures.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    since: Instant,
}

/// One admitted request's claim on a verification of its credentials.
/// The first request with a key counts as a failure of its client until
/// the verification succeeds; requests with the same key while it is
/// pending are not counted again. Dropped (answered, or its client gone),
/// it leaves `pending`.
struct Admission {
    books: Arc<Books>,
    key: [u8; 32],
    /// The client whose failure count this attempt raised, if it did.
    counted: Option<IpAddr>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let Ok(mut pending) = self.books.pending.lock() else { return };
        if let Some(waiting) = pending.get_mut(&self.key) {
            *waiting = waiting.saturating_sub(1);
            if *waiting == 0 {
                pending.remove(&self.key);
            }
        }
    }
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

impl Books {
    fn known(cache: &Mutex<lru::LruCache<[u8; 32], ()>>, key: &[u8; 32]) -> bool {
        cache.lock().map(|mut cache| cache.get(key).is_some()).unwrap_or(false)
    }

    /// What is already known of `key`: `Some(true)` verified, `Some(false)`
    /// rejected.
    fn outcome(&self, key: &[u8; 32]) -> Option<bool> {
        if Books::known(&self.verified, key) {
            Some(true)
        } else if Books::known(&self.rejected, key) {
            Some(false)
        } else {
            None
        }
    }

    /// Records a verification's outcome; a success also takes back the
    /// failure its attempt was counted as.
    fn record(&self, key: [u8; 32], ok: bool, counted: Option<IpAddr>) {
        let cache = if ok { &self.verified } else { &self.rejected };
        if let Ok(mut cache) = cache.lock() {
            cache.put(key, ());
        }
        if ok {
            self.forgive(counted);
        }
    }

    /// Takes back the failure an attempt that succeeded was counted as.
    fn forgive(&self, counted: Option<IpAddr>) {
        if let Some(client) = counted
            && let Ok(mut failures) = self.failures.lock()
            && let Some(entry) = failures.get_mut(&client_group(client))
        {
            entry.count = entry.count.saturating_sub(1);
        }
    }
}

impl Authenticator {
    /// An authenticator remembering up to `capacity` verified credentials.
    pub fn new(capacity: usize) -> Authenticator {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Authenticator {
            books: Arc::new(Books {
                verified: Mutex::new(lru::LruCache::new(capacity)),
                rejected: Mutex::new(lru::LruCache::new(capacity)),
                failures: Mutex::new(lru::LruCache::new(capacity)),
                pending: Mutex::new(HashMap::new()),
            }),
            verifying: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_VERIFICATIONS)),
            stats: Arc::default(),
        }
    }

    /// Counts verifications in `counter` (the metrics' counter) from now on.
    pub fn counting_in(mut self, counter: Counter) -> Authenticator {
        self.stats = Arc::new(Stats { runs: counter, ..Stats::default() });
        self
    }

    /// How many bcrypt verifications have run (for tests and metrics).
    pub fn verifications(&self) -> u64 {
        self.stats.runs.get()
    }

    /// Lets a request from `client` have `key` verified; `None` when the
    /// client has used up its failures for now. A key already pending
    /// joins that attempt uncounted; otherwise check and count are one
    /// step, so concurrent attempts cannot all slip through before the
    /// first one fails.
    fn admit(&self, client: IpAddr, key: [u8; 32]) -> Option<Admission> {
        let books = &self.books;
        let mut pending = books.pending.lock().ok()?;
        if let Some(waiting) = pending.get_mut(&key) {
            *waiting += 1;
            return Some(Admission { books: Arc::clone(books), key, counted: None });
        }
        let mut failures = books.failures.lock().ok()?;
        let now = Instant::now();
        let entry = failures.get_or_insert_mut(client_group(client), || Failures { count: 0, since: now });
        if entry.since.elapsed() >= FAILURE_WINDOW {
            *entry = Failures { count: 0, since: now };
        }
        if entry.count >= MAX_FAILURES {
            return None;
        }
        entry.count = entry.count.saturating_add(1);
        pending.insert(key, 1);
        Some(Admission { books: Arc::clone(books), key, counted: Some(client) })
    }

    /// Verifies an admitted request's credentials: `password` against
    /// `hash`, true only if the user is `known` (an unknown user is checked
    /// against another user's hash, so the answer takes as long). bcrypt
    /// runs on the blocking pool, at most [`MAX_CONCURRENT_VERIFICATIONS`]
    /// at a time, unless an attempt with the same key answered while this
    /// one queued. The permit and the bookkeeping are the bcrypt work's
    /// own, so a caller that stops waiting (its client hung up) neither
    /// frees a slot while bcrypt still burns CPU nor loses the outcome.
    async fn verify(&self, admission: &Admission, password: String, hash: String, known: bool) -> bool {
        let Ok(permit) = Arc::clone(&self.verifying).acquire_owned().await else { return false };
        if let Some(ok) = self.books.outcome(&admission.key) {
            // Answered while this one queued (or between its cache check and
            // its admission): a success takes back this attempt's failure too.
            if ok {
                self.books.forgive(admission.counted);
            }
            return ok;
        }
        let stats = Arc::clone(&self.stats);
        let books = Arc::clone(&self.books);
        let (key, counted) = (admission.key, admission.counted);
        let work = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            stats.runs.inc();
            let now_running = stats.running.fetch_add(1, Ordering::SeqCst) + 1;
            stats.peak.fetch_max(now_running, Ordering::SeqCst);
            let ok = bcrypt::verify(password, &hash).unwrap_or(false) && known;
            stats.running.fetch_sub(1, Ordering::SeqCst);
            books.record(key, ok, counted);
            ok
        });
        work.await.unwrap_or(false)
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
        let stored = config.users.get(&creds.user);
        let key = cache_key(&creds, stored.map_or("", |s| s.0.as_str()));
        match self.books.outcome(&key) {
            Some(true) if stored.is_some() => return AuthOutcome::User(creds.user),
            Some(false) => return AuthOutcome::Invalid,
            _ => {}
        }
        let Some(admission) = self.admit(client, key) else {
            return AuthOutcome::Invalid;
        };
        // Spend the time a real check would, against some user's hash, so
        // response timing does not tell which users exist.
        let Some(hash) = stored.or_else(|| config.users.values().next()) else {
            self.books.record(key, false, None);
            return AuthOutcome::Invalid;
        };
        if self.verify(&admission, creds.password, hash.0.clone(), stored.is_some()).await {
            AuthOutcome::User(creds.user)
        } else {
            AuthOutcome::Invalid
        }
    }
}

/// The group of addresses one client is taken to hold, for per-client
/// limits: the address itself, or its /64 for IPv6 (one host usually holds
/// a whole /64). IPv4-mapped addresses count as the IPv4 address.
pub(crate) fn client_group(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
        v4 => v4,
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
#[path = "identity_props.rs"]
mod props;

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

    #[tokio::test]
    async fn a_wrong_password_flood_costs_a_bounded_number_of_verifications() {
        let cfg = config(bcrypt::hash("secret", 4).unwrap());
        let auth = Authenticator::default();
        let flooder: IpAddr = "127.0.0.4".parse().unwrap();
        // The same wrong password again and again: verified once.
        for _ in 0..20 {
            assert_eq!(auth.authenticate(&cfg, flooder, Some(&basic("alice", "nope"))).await, AuthOutcome::Invalid);
        }
        assert_eq!(auth.verifications(), 1);
        // Ever-new wrong passwords (and unknown users): at most MAX_FAILURES.
        for i in 0..100 {
            let user = if i % 2 == 0 { "alice" } else { "mallory" };
            let header = basic(user, &format!("guess-{i}"));
            assert_eq!(auth.authenticate(&cfg, flooder, Some(&header)).await, AuthOutcome::Invalid);
        }
        assert_eq!(auth.verifications(), u64::from(MAX_FAILURES));
        // Another client is not affected; the throttled one keeps its cached success.
        let colleague: IpAddr = "127.0.0.5".parse().unwrap();
        let ok = auth.authenticate(&cfg, colleague, Some(&basic("alice", "secret"))).await;
        assert_eq!(ok, AuthOutcome::User("alice".into()));
        let cached = auth.authenticate(&cfg, flooder, Some(&basic("alice", "secret"))).await;
        assert_eq!(cached, AuthOutcome::User("alice".into()), "a cached success needs no verification");
    }

    #[tokio::test]
    async fn concurrent_verifications_are_bounded() {
        let cfg = std::sync::Arc::new(config(bcrypt::hash("secret", 4).unwrap()));
        let auth = std::sync::Arc::new(Authenticator::default());
        let mut tasks = Vec::new();
        for i in 0..8u8 {
            let (auth, cfg) = (std::sync::Arc::clone(&auth), cfg.clone());
            tasks.push(tokio::spawn(async move {
                let ip = IpAddr::from([127, 0, 1, i]);
                auth.authenticate(&cfg, ip, Some(&basic("alice", &format!("wrong-{i}")))).await
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap(), AuthOutcome::Invalid);
        }
        assert_eq!(auth.verifications(), 8);
        let peak = auth.stats.peak.load(Ordering::Relaxed);
        assert!((1..=MAX_CONCURRENT_VERIFICATIONS).contains(&peak), "peak {peak}");
    }

    /// Regression (seen once in CI): a request that found nothing cached,
    /// then was admitted as a new attempt just after another request with
    /// the same credentials had succeeded, took the cached answer without
    /// taking back the failure it was counted as, so a correct password
    /// left a failure against its client.
    #[tokio::test]
    async fn an_attempt_answered_from_the_cache_after_admission_leaves_no_failure() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let auth = Authenticator::default();
        let client = IpAddr::from([127, 0, 3, 2]);
        let key = cache_key(&Credentials::parse_basic(&basic("alice", "secret")).unwrap(), &hash);
        let admission = auth.admit(client, key).unwrap();
        // The other request's verification answers meanwhile.
        auth.books.record(key, true, None);
        assert!(auth.verify(&admission, "secret".into(), hash, true).await);
        drop(admission);
        let failures = auth.books.failures.lock().unwrap().peek(&client).map_or(0, |f| f.count);
        assert_eq!(failures, 0);
        assert_eq!(auth.verifications(), 0, "the cached answer was used");
    }

    /// A browser given a password sends it on many connections at once.
    /// Those are one attempt: none of them is refused as over the failure
    /// limit, and bcrypt runs for at most the ones that got a slot before
    /// the first answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_password_on_many_connections_at_once_is_one_attempt() {
        let cfg = Arc::new(config(bcrypt::hash("secret", 6).unwrap()));
        let auth = Arc::new(Authenticator::default());
        let client = IpAddr::from([127, 0, 3, 1]);
        let tasks: Vec<_> = (0..3 * MAX_FAILURES)
            .map(|_| {
                let (auth, cfg) = (Arc::clone(&auth), Arc::clone(&cfg));
                tokio::spawn(async move { auth.authenticate(&cfg, client, Some(&basic("alice", "secret"))).await })
            })
            .collect();
        for task in tasks {
            let outcome = tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
            assert_eq!(outcome, AuthOutcome::User("alice".into()));
        }
        assert!((1..=MAX_CONCURRENT_VERIFICATIONS as u64).contains(&auth.verifications()), "{}", auth.verifications());
        // Nothing was left counted against the client, and nothing pending.
        let failures = auth.books.failures.lock().unwrap().peek(&client).map_or(0, |f| f.count);
        assert_eq!(failures, 0);
        assert!(auth.books.pending.lock().unwrap().is_empty());

        // The same for a wrong password: one failure, not thirty.
        let tasks: Vec<_> = (0..3 * MAX_FAILURES)
            .map(|_| {
                let (auth, cfg) = (Arc::clone(&auth), Arc::clone(&cfg));
                tokio::spawn(async move { auth.authenticate(&cfg, client, Some(&basic("alice", "guess"))).await })
            })
            .collect();
        for task in tasks {
            let outcome = tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
            assert_eq!(outcome, AuthOutcome::Invalid);
        }
        let failures = auth.books.failures.lock().unwrap().peek(&client).map_or(0, |f| f.count);
        assert_eq!(failures, 1);
    }

    /// Regression: the permit was the awaiting future's, so a client that
    /// hung up freed its slot while its bcrypt still ran; clients from many
    /// addresses could then run any number at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn abandoned_verifications_keep_their_slot_until_bcrypt_ends() {
        let cfg = config(bcrypt::hash("secret", 8).unwrap());
        let auth = Authenticator::default();
        for i in 0..8u8 {
            let header = basic("alice", &format!("wrong-{i}"));
            let attempt = auth.authenticate(&cfg, IpAddr::from([127, 0, 2, i]), Some(&header));
            tokio::pin!(attempt);
            // Poll until this attempt's bcrypt has started, then drop it.
            let before = auth.verifications();
            tokio::time::timeout(Duration::from_secs(10), async {
                while auth.verifications() == before {
                    tokio::select! {
                        _ = &mut attempt => panic!("the attempt finished before it could be abandoned"),
                        () = tokio::time::sleep(Duration::from_millis(1)) => {}
                    }
                }
            })
            .await
            .unwrap();
        }
        tokio::time::timeout(Duration::from_secs(10), async {
            while auth.stats.running.load(Ordering::SeqCst) > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        assert_eq!(auth.verifications(), 8);
        let peak = auth.stats.peak.load(Ordering::SeqCst);
        assert!(peak <= MAX_CONCURRENT_VERIFICATIONS, "{peak} bcrypt runs at once");
    }

    #[test]
    fn ipv6_clients_share_failures_per_64_and_mapped_ipv4_is_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_group(a), client_group(b));
        assert_ne!(client_group(a), client_group(other));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let mapped_other: IpAddr = "::ffff:10.0.0.2".parse().unwrap();
        assert_eq!(client_group(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_ne!(client_group(mapped), client_group(mapped_other));
    }

    /// Regression (found by `identity::props::headers_near_basic_are_decoded_as_rfc_7617_says`):
    /// Unicode white space around the value or before the token (U+3000,
    /// U+0085, U+00A0) was trimmed as if it were HTTP's blanks, so such a
    /// value was taken as Basic credentials rather than refused.
    #[test]
    fn only_http_blanks_surround_basic_credentials() {
        let token = base64::engine::general_purpose::STANDARD.encode("alice:pw");
        assert!(Credentials::parse_basic(format!(" \tBasic  {token}\t ").as_bytes()).is_some());
        for bad in [format!("Basic {token}\u{3000}"), format!("\u{85}Basic {token}"), format!("Basic \u{a0}{token}")] {
            assert!(Credentials::parse_basic(bad.as_bytes()).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn debug_hides_the_password() {
        let creds = Credentials::parse_basic(&basic("alice", "hunter2")).unwrap();
        assert!(!format!("{creds:?}").contains("hunter2"));
    }
}
