//! Leaf certificates minted on the fly for `[intercept]` block pages: for a
//! blocked CONNECT the proxy completes TLS as the requested host with a
//! short-lived certificate signed by the company CA, then serves the block
//! page over HTTPS.
//!
//! Every leaf has a fresh random serial (browsers reject a reused
//! issuer+serial pair), the host as its only SAN, a validity that starts a
//! day before it is minted (client clocks run slow), and one key pair shared
//! by all leaves. Server configs are cached per host in a bounded LRU, so a
//! burst of blocked CONNECTs mints each host once; they keep no TLS session
//! cache of their own (a block page has nothing to resume).
//!
//! The CA is checked when it is loaded: a certificate that is not a CA
//! (`CA:TRUE`), may not sign certificates (`keyCertSign`) or is outside its
//! validity would only make browsers reject every block page.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType, SerialNumber,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, pem::PemObject};

/// Default number of hosts whose certificates are kept.
pub const DEFAULT_CACHE_HOSTS: usize = 1024;

/// How long a minted leaf is valid after it is minted, in days (it is
/// re-minted after a day).
const LEAF_VALID_DAYS: i64 = 3;

/// How far before "now" a minted leaf's validity starts, in hours: a client
/// whose clock is this much behind still accepts it. (The start is then
/// rounded down to midnight UTC.)
const CLOCK_SKEW_HOURS: i64 = 24;

/// The longest common name X.509 allows (RFC 5280 `ub-common-name`); longer
/// host names are carried by the SAN alone.
const MAX_COMMON_NAME: usize = 64;

/// Why the CA cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// The CA certificate could not be parsed.
    #[error("cannot parse the CA certificate: {0}")]
    CaCert(String),
    /// The CA key could not be parsed.
    #[error("cannot parse the CA key: {0}")]
    CaKey(String),
    /// The CA key does not belong to the CA certificate.
    #[error("the CA key does not match the CA certificate")]
    KeyMismatch,
    /// The CA certificate is not a CA certificate.
    #[error("the CA certificate is not a CA (it has no `CA:TRUE` basic constraint)")]
    NotCa,
    /// The CA certificate's key usage does not allow signing certificates.
    #[error("the CA certificate may not sign certificates (its key usage lacks `keyCertSign`)")]
    NotCertSigner,
    /// The CA certificate has expired.
    #[error("the CA certificate expired at {not_after}")]
    Expired {
        /// When it expired.
        not_after: jiff::Timestamp,
    },
    /// The CA certificate is not valid yet.
    #[error("the CA certificate is not valid before {not_before}")]
    NotYetValid {
        /// When it becomes valid.
        not_before: jiff::Timestamp,
    },
    /// Signing or building the TLS config failed.
    #[error("cannot mint a certificate for `{host}`: {reason}")]
    Mint {
        /// The host.
        host: String,
        /// What went wrong.
        reason: String,
    },
}

struct Cached {
    config: Arc<ServerConfig>,
    minted_day: i64,
}

/// Mints and caches leaf certificates signed by the company CA.
pub struct Minter {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    /// The CA's validity: a leaf's is kept inside it.
    ca_not_before: jiff::Timestamp,
    ca_not_after: jiff::Timestamp,
    leaf_key: KeyPair,
    /// `leaf_key` as rustls signs with it, loaded once.
    signing_key: Arc<dyn rustls::sign::SigningKey>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    cache: Mutex<lru::LruCache<String, Cached>>,
    /// One mint at a time, off the async runtime: an RSA-4096 CA takes
    /// milliseconds per signature, and a client cycling names under a
    /// blocked wildcard domain must not stall every other connection.
    mint_slot: Arc<tokio::sync::Semaphore>,
    minted: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Minter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minter").finish_non_exhaustive()
    }
}

impl Minter {
    /// Loads the CA from PEM, checks that it is a CA certificate that may
    /// sign certificates and is valid now, and that the key belongs to the
    /// certificate (by minting a probe leaf and verifying it against the CA).
    pub fn new(ca_cert_pem: &str, ca_key_pem: &str, cache_hosts: usize) -> Result<Minter, MintError> {
        let ca_der =
            CertificateDer::from_pem_slice(ca_cert_pem.as_bytes()).map_err(|e| MintError::CaCert(e.to_string()))?;
        let (ca_not_before, ca_not_after) = check_ca(&ca_der, jiff::Timestamp::now())?;
        let ca_key = KeyPair::from_pem(ca_key_pem).map_err(|e| MintError::CaKey(e.to_string()))?;
        let issuer = Issuer::from_ca_cert_der(&ca_der, ca_key).map_err(|e| MintError::CaCert(e.to_string()))?;
        let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| MintError::CaKey(format!("cannot generate the leaf key: {e}")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let signing_key = provider
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())))
            .map_err(|e| MintError::CaKey(format!("cannot load the leaf key: {e}")))?;
        let cap = NonZeroUsize::new(cache_hosts).unwrap_or(NonZeroUsize::MIN);
        let minter = Minter {
            issuer,
            ca_der,
            ca_not_before,
            ca_not_after,
            leaf_key,
            signing_key,
            provider,
            cache: Mutex::new(lru::LruCache::new(cap)),
            mint_slot: Arc::new(tokio::sync::Semaphore::new(1)),
            minted: std::sync::atomic::AtomicU64::new(0),
        };
        minter.verify_probe()?;
        Ok(minter)
    }

    /// The CA certificate (DER).
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// How many leaves have been minted (cache misses).
    pub fn minted(&self) -> u64 {
        self.minted.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// [`Minter::server_config`] for async callers: a cached config at
    /// once; otherwise the leaf is minted on the blocking pool, one mint at
    /// a time, and callers waiting for the same host take the first one's
    /// certificate instead of minting their own.
    pub async fn server_config_off_runtime(
        self: &Arc<Self>,
        host: &str,
        now: jiff::Timestamp,
    ) -> Result<Arc<ServerConfig>, MintError> {
        if let Some(hit) = self.cached(host, now) {
            return Ok(hit);
        }
        let unavailable =
            |reason: &dyn std::fmt::Display| MintError::Mint { host: host.to_owned(), reason: reason.to_string() };
        let permit = Arc::clone(&self.mint_slot).acquire_owned().await.map_err(|e| unavailable(&e))?;
        if let Some(hit) = self.cached(host, now) {
            return Ok(hit);
        }
        let (minter, owned) = (Arc::clone(self), host.to_owned());
        // The permit goes with the work: a caller that gives up waiting
        // does not let a second mint start beside this one.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            minter.server_config(&owned, now)
        })
        .await
        .map_err(|e| unavailable(&e))?
    }

    /// The cached config for `host`, if it was minted on `now`'s (UTC) day
    /// and the CA is still valid.
    fn cached(&self, host: &str, now: jiff::Timestamp) -> Option<Arc<ServerConfig>> {
        if now >= self.ca_not_after {
            return None;
        }
        let day = now.as_second().div_euclid(86_400);
        let mut cache = self.cache.lock().ok()?;
        let hit = cache.get(host)?;
        (hit.minted_day == day).then(|| Arc::clone(&hit.config))
    }

    /// A TLS server config presenting a leaf for `host` (a normalised name
    /// or IP literal), minted at `now` or taken from the cache. ALPN offers
    /// HTTP/1.1 only. Fails once the CA has expired (a leaf it signs would
    /// be rejected anyway).
    pub fn server_config(&self, host: &str, now: jiff::Timestamp) -> Result<Arc<ServerConfig>, MintError> {
        if now >= self.ca_not_after {
            return Err(MintError::Expired { not_after: self.ca_not_after });
        }
        if let Some(hit) = self.cached(host, now) {
            return Ok(hit);
        }
        let day = now.as_second().div_euclid(86_400);
        let leaf = self.mint(host, now)?;
        let certified = rustls::sign::CertifiedKey::new(vec![leaf, self.ca_der.clone()], self.signing_key.clone());
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| MintError::Mint { host: host.to_owned(), reason: e.to_string() })?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // rustls' default is a 256-session cache allocated per config, i.e.
        // per cached host: tens of MB for nothing, as a block page is never
        // worth resuming.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        let config = Arc::new(config);
        if let Ok(mut cache) = self.cache.lock() {
            cache.put(host.to_owned(), Cached { config: Arc::clone(&config), minted_day: day });
        }
        Ok(config)
    }

    fn mint(&self, host: &str, now: jiff::Timestamp) -> Result<CertificateDer<'static>, MintError> {
        let err = |reason: String| MintError::Mint { host: host.to_owned(), reason };
        let mut params = CertificateParams::default();
        let san = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.to_owned().try_into().map_err(|e: rcgen::Error| err(e.to_string()))?),
        };
        params.subject_alt_names = vec![san];
        let mut dn = DistinguishedName::new();
        if host.len() <= MAX_COMMON_NAME {
            dn.push(DnType::CommonName, host);
        }
        dn.push(DnType::OrganizationName, "socialgate block page");
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
        let (start, end) = validity(now).map_err(|e| err(e.to_string()))?;
        // Inside the CA's validity: a leaf minted the day before the CA
        // expires would otherwise claim days its issuer does not have.
        let at = |t: jiff::Timestamp| {
            time::OffsetDateTime::from_unix_timestamp(t.as_second()).map_err(|e| err(e.to_string()))
        };
        params.not_before = start.max(at(self.ca_not_before)?);
        params.not_after = end.min(at(self.ca_not_after)?);
        let cert = params.signed_by(&self.leaf_key, &self.issuer).map_err(|e| err(e.to_string()))?;
        self.minted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(cert.der().clone())
    }

    /// Mints a leaf and verifies it chains to the CA: fails when the CA key
    /// does not belong to the CA certificate.
    fn verify_probe(&self) -> Result<(), MintError> {
        let now = jiff::Timestamp::now();
        let host = probe_host(&self.ca_der);
        let leaf = self.mint(&host, now)?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).map_err(|e| MintError::CaCert(e.to_string()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| MintError::CaCert(e.to_string()))?;
        let name = rustls::pki_types::ServerName::try_from(host).map_err(|e| MintError::CaCert(e.to_string()))?;
        let unix = rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            u64::try_from(now.as_second()).unwrap_or(0),
        ));
        use rustls::client::danger::ServerCertVerifier;
        verifier.verify_server_cert(&leaf, &[], &name, &[], unix).map(|_| ()).map_err(|e| match e {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature) => MintError::KeyMismatch,
            other => MintError::CaCert(other.to_string()),
        })
    }
}

/// The name the probe leaf is minted for: one the CA may sign. A CA with
/// name constraints (docs/deploy.md shows one that permits only the blocked
/// services' domains) may sign only names under its permitted DNS subtrees,
/// so the probe takes a name under the first of them; any other CA gets a
/// name under the reserved `.invalid`.
fn probe_host(ca: &CertificateDer<'_>) -> String {
    const PROBE: &str = "ca-check.socialgate.invalid";
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(ca.as_ref()) else { return PROBE.to_owned() };
    let Ok(Some(constraints)) = cert.name_constraints() else { return PROBE.to_owned() };
    let permitted = constraints.value.permitted_subtrees.iter().flatten();
    permitted
        .filter_map(|subtree| match subtree.base {
            x509_parser::extensions::GeneralName::DNSName(name) => Some(name.trim_start_matches('.')),
            _ => None,
        })
        .find(|name| !name.is_empty())
        .map_or_else(|| PROBE.to_owned(), |name| format!("ca-check.{}", name.to_ascii_lowercase()))
}

/// Checks that `ca` can sign leaves browsers accept at `now`: `CA:TRUE`,
/// `keyCertSign` if it has a key usage at all, and valid now. Returns its
/// validity (not before, not after).
fn check_ca(ca: &CertificateDer<'_>, now: jiff::Timestamp) -> Result<(jiff::Timestamp, jiff::Timestamp), MintError> {
    let bad = |e: &dyn std::fmt::Display| MintError::CaCert(e.to_string());
    let (_, cert) = x509_parser::parse_x509_certificate(ca.as_ref()).map_err(|e| bad(&e))?;
    match cert.basic_constraints().map_err(|e| bad(&e))? {
        Some(ext) if ext.value.ca => {}
        _ => return Err(MintError::NotCa),
    }
    if let Some(ext) = cert.key_usage().map_err(|e| bad(&e))?
        && !ext.value.key_cert_sign()
    {
        return Err(MintError::NotCertSigner);
    }
    let time = |t: &x509_parser::time::ASN1Time| jiff::Timestamp::from_second(t.timestamp()).map_err(|e| bad(&e));
    let (not_before, not_after) = (time(&cert.validity().not_before)?, time(&cert.validity().not_after)?);
    if now < not_before {
        return Err(MintError::NotYetValid { not_before });
    }
    if now >= not_after {
        return Err(MintError::Expired { not_after });
    }
    Ok((not_before, not_after))
}

fn validity(now: jiff::Timestamp) -> Result<(time::OffsetDateTime, time::OffsetDateTime), jiff::Error> {
    let start =
        now.checked_sub(jiff::SignedDuration::from_hours(CLOCK_SKEW_HOURS))?.to_zoned(jiff::tz::TimeZone::UTC).date();
    let end = now
        .checked_add(jiff::SignedDuration::from_hours(24 * LEAF_VALID_DAYS))?
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let to = |d: jiff::civil::Date| {
        rcgen::date_time_ymd(i32::from(d.year()), d.month().unsigned_abs(), d.day().unsigned_abs())
    };
    Ok((to(start), to(end)))
}

fn random_serial() -> Result<[u8; 16], MintError> {
    let mut serial = [0u8; 16];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut serial)
        .map_err(|_| MintError::Mint { host: String::new(), reason: "no randomness".into() })?;
    serial[0] &= 0x7f; // positive
    serial[0] |= 0x01; // no leading zero byte
    Ok(serial)
}

/// Creates a company CA for tests and `socialgate ca init`-style tooling:
/// CA:true, keyCertSign + cRLSign, ECDSA P-256. Returns (cert PEM, key PEM).
pub fn new_ca(common_name: &str, valid_days: i64, now: jiff::Timestamp) -> Result<(String, String), MintError> {
    let err = |reason: String| MintError::Mint { host: common_name.to_owned(), reason };
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| err(e.to_string()))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
    let (start, _) = validity(now).map_err(|e| err(e.to_string()))?;
    let end = now
        .checked_add(jiff::SignedDuration::from_hours(24 * valid_days))
        .map_err(|e| err(e.to_string()))?
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    params.not_before = start;
    params.not_after =
        rcgen::date_time_ymd(i32::from(end.year()), end.month().unsigned_abs(), end.day().unsigned_abs());
    let cert = params.self_signed(&key).map_err(|e| err(e.to_string()))?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn minter(cache: usize) -> Minter {
        let (cert, key) = new_ca("Test Company CA", 30, jiff::Timestamp::now()).unwrap();
        Minter::new(&cert, &key, cache).unwrap()
    }

    fn verify(m: &Minter, leaf: &CertificateDer<'_>, host: &str, at: jiff::Timestamp) -> Result<(), rustls::Error> {
        use rustls::client::danger::ServerCertVerifier;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(m.ca_der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap();
        let name = rustls::pki_types::ServerName::try_from(host.to_owned()).unwrap();
        let at = rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            u64::try_from(at.as_second()).unwrap(),
        ));
        verifier.verify_server_cert(leaf, &[], &name, &[], at).map(|_| ())
    }

    /// Regression: the validity started at midnight UTC of "now minus one
    /// hour", so a leaf minted at 01:00 UTC was rejected by a client whose
    /// clock ran an hour and a bit slow.
    #[test]
    fn a_leaf_minted_just_after_midnight_is_accepted_by_a_slow_client_clock() {
        let m = minter(8);
        let now = jiff::Timestamp::now();
        let midnight = jiff::Timestamp::from_second(now.as_second() - now.as_second().rem_euclid(86_400)).unwrap();
        let minted_at = midnight.checked_add(jiff::SignedDuration::from_secs(3601)).unwrap();
        let leaf = m.mint("www.facebook.com", minted_at).unwrap();
        for hours in [0, 2, 12, 23] {
            let client_clock = minted_at.checked_sub(jiff::SignedDuration::from_hours(hours)).unwrap();
            verify(&m, &leaf, "www.facebook.com", client_clock)
                .unwrap_or_else(|e| panic!("a client clock {hours} h slow rejects the leaf: {e}"));
        }
        let fast = minted_at.checked_add(jiff::SignedDuration::from_hours(47)).unwrap();
        verify(&m, &leaf, "www.facebook.com", fast).expect("still valid two days on");
    }

    /// Regression: every cached host's server config carried rustls' default
    /// 256-session cache (allocated up front), tens of MB across the cache
    /// for sessions nobody resumes.
    #[test]
    fn minted_configs_keep_no_session_cache() {
        let m = minter(8);
        let config = m.server_config("www.facebook.com", jiff::Timestamp::now()).unwrap();
        assert!(!config.session_storage.can_cache());
        assert_eq!(config.send_tls13_tickets, 0);
    }

    /// Regression: a host name over 64 bytes went into the leaf's common
    /// name too, past X.509's upper bound for it.
    #[test]
    fn long_host_names_are_carried_by_the_san_alone() {
        let m = minter(8);
        let host = format!("{}.{}.{}.{}", "a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61));
        assert_eq!(host.len(), 253);
        let now = jiff::Timestamp::now();
        let leaf = m.mint(&host, now).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).unwrap();
        assert_eq!(cert.subject().iter_common_name().count(), 0, "no overlong common name");
        verify(&m, &leaf, &host, now).expect("the SAN names the host");
        let short = m.mint("www.facebook.com", now).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(short.as_ref()).unwrap();
        let cn: Vec<_> = cert.subject().iter_common_name().map(|cn| cn.as_str().unwrap().to_owned()).collect();
        assert_eq!(cn, ["www.facebook.com"]);
    }

    /// Regression: a CA certificate that browsers refuse as an issuer was
    /// accepted (the probe verification trusts any root as given), so every
    /// block page failed in the browser while the proxy looked healthy.
    #[test]
    fn a_ca_that_browsers_would_refuse_is_refused() {
        let now = jiff::Timestamp::now();
        let days = |n: i64| now.checked_add(jiff::SignedDuration::from_hours(24 * n)).unwrap();

        let leaf_cert = rcgen::generate_simple_self_signed(vec!["ca.test".to_owned()]).unwrap();
        let (cert, key) = (leaf_cert.cert.pem(), leaf_cert.signing_key.serialize_pem());
        assert!(matches!(Minter::new(&cert, &key, 8), Err(MintError::NotCa)));

        let key_pair = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key_pair).unwrap().pem();
        assert!(matches!(Minter::new(&cert, &key_pair.serialize_pem(), 8), Err(MintError::NotCertSigner)));

        let (cert, key) = new_ca("Expired CA", 30, days(-40)).unwrap();
        assert!(matches!(Minter::new(&cert, &key, 8), Err(MintError::Expired { .. })));
        let (cert, key) = new_ca("Future CA", 30, days(10)).unwrap();
        assert!(matches!(Minter::new(&cert, &key, 8), Err(MintError::NotYetValid { .. })));

        // CA:TRUE without any key usage extension is fine (RFC 5280: any use).
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key_pair).unwrap().pem();
        assert!(Minter::new(&cert, &key_pair.serialize_pem(), 8).is_ok());
    }

    /// Regression: a CA that expired while the proxy ran kept signing leaves
    /// every browser rejects, with nothing logged.
    #[test]
    fn no_leaf_is_minted_once_the_ca_has_expired() {
        let now = jiff::Timestamp::now();
        let (cert, key) = new_ca("Short CA", 2, now).unwrap();
        let m = Minter::new(&cert, &key, 8).unwrap();
        assert!(m.server_config("www.facebook.com", now).is_ok());
        let later = now.checked_add(jiff::SignedDuration::from_hours(24 * 3)).unwrap();
        assert!(matches!(m.server_config("www.facebook.com", later), Err(MintError::Expired { .. })));
    }

    /// Regression: concurrent blocked CONNECTs for a host not yet cached
    /// each minted their own certificate (on the async runtime).
    #[test]
    fn a_burst_for_one_new_host_mints_once() {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
        let m = Arc::new(minter(8));
        let base = m.minted();
        let now = jiff::Timestamp::now();
        runtime.block_on(async {
            let tasks: Vec<_> = (0..32)
                .map(|_| {
                    let m = m.clone();
                    tokio::spawn(async move { m.server_config_off_runtime("www.facebook.com", now).await })
                })
                .collect();
            let mut configs = Vec::new();
            for task in tasks {
                configs.push(task.await.unwrap().unwrap());
            }
            assert!(configs.iter().all(|c| Arc::ptr_eq(c, &configs[0])), "all share one certificate");
            m.server_config_off_runtime("other.example.test", now).await.unwrap();
        });
        assert_eq!(m.minted() - base, 2);
    }

    #[tokio::test]
    async fn minted_leaf_verifies_for_the_host_against_the_ca() {
        let m = minter(8);
        let server_config = m.server_config("www.facebook.com", jiff::Timestamp::now()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(m.ca_der().clone()).unwrap();
        let client_config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        let (client_io, server_io) = tokio::io::duplex(16 * 1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config);
        let server = tokio::spawn(async move {
            let mut tls = acceptor.accept(server_io).await.unwrap();
            tls.write_all(b"hello").await.unwrap();
            tls.shutdown().await.unwrap();
        });
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
        let name = rustls::pki_types::ServerName::try_from("www.facebook.com").unwrap();
        let mut tls = tokio::time::timeout(std::time::Duration::from_secs(5), connector.connect(name, client_io))
            .await
            .unwrap()
            .expect("the minted certificate verifies against the CA");
        let mut got = Vec::new();
        tls.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");
        server.await.unwrap();
    }

    #[test]
    fn ip_literal_hosts_get_an_ip_san() {
        let m = minter(8);
        assert!(m.server_config("157.240.1.35", jiff::Timestamp::now()).is_ok());
        assert!(m.server_config("2001:db8::1", jiff::Timestamp::now()).is_ok());
    }

    #[test]
    fn cache_is_bounded_and_reused() {
        let m = minter(16);
        let now = jiff::Timestamp::now();
        let base = m.minted();
        for i in 0..200 {
            m.server_config(&format!("h{i}.example.test"), now).unwrap();
        }
        assert_eq!(m.minted() - base, 200);
        assert!(m.cache.lock().unwrap().len() <= 16);
        m.server_config("h199.example.test", now).unwrap();
        assert_eq!(m.minted() - base, 200, "a cached host is not minted again");
        let tomorrow = now.checked_add(jiff::SignedDuration::from_hours(25)).unwrap();
        m.server_config("h199.example.test", tomorrow).unwrap();
        assert_eq!(m.minted() - base, 201, "re-minted after a day");
    }

    /// Regression (found by `minted_leaves_verify_for_their_host_only_within_the_ca`):
    /// a leaf minted two days before the CA expired was valid three days,
    /// a day past its issuer.
    #[test]
    fn a_leaf_never_outlives_its_ca() {
        let now = jiff::Timestamp::now();
        let (cert, key) = new_ca("Short CA", 2, now).unwrap();
        let m = Minter::new(&cert, &key, 8).unwrap();
        let leaf = m.mint("www.facebook.com", now).unwrap();
        let (_, leaf) = x509_parser::parse_x509_certificate(leaf.as_ref()).unwrap();
        let (_, ca) = x509_parser::parse_x509_certificate(m.ca_der().as_ref()).unwrap();
        assert!(leaf.validity().not_after <= ca.validity().not_after);
        assert!(leaf.validity().not_before >= ca.validity().not_before);
    }

    /// A host as the proxy hands it to the minter: a normalised name (IDN in
    /// punycode, long and digits-only labels) or an IP literal.
    fn host() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let label = prop_oneof![
            "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?",
            "[0-9]{1,5}",
            proptest::sample::select(vec!["bücher", "münchen", "ドメイン", "x_y", "xn--bcher-kva"])
                .prop_map(str::to_owned),
        ];
        let name = (proptest::collection::vec(label, 1..5), proptest::sample::select(vec!["example", "test", "com"]))
            .prop_map(|(labels, tld)| labels.join(".") + "." + tld);
        prop_oneof![
            4 => name,
            1 => any::<std::net::Ipv4Addr>().prop_map(|ip| ip.to_string()),
            1 => any::<std::net::Ipv6Addr>().prop_map(|ip| ip.to_string()),
        ]
        .prop_filter_map("not a host", |h| crate::policy::Host::parse(&h).ok().map(|h| h.as_str().to_owned()))
    }

    /// For any host, the leaf verifies under the CA (rustls' webpki) for
    /// exactly that name and no other, within the CA's validity; serials
    /// never repeat; a cached config is the host's own.
    #[test]
    fn minted_leaves_verify_for_their_host_only_within_the_ca() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        let now = jiff::Timestamp::now();
        // A CA that ends soon and started today: a leaf must not outlive
        // it nor start before it.
        let (cert, key) = new_ca("Short CA", 2, now).unwrap();
        let m = Minter::new(&cert, &key, 4).unwrap();
        let (_, ca) = x509_parser::parse_x509_certificate(m.ca_der().as_ref()).unwrap();
        let ca_window = (ca.validity().not_before.timestamp(), ca.validity().not_after.timestamp());
        let serials = std::cell::RefCell::new(std::collections::HashSet::new());
        let mut runner = TestRunner::new(Config { cases: 48, ..Config::default() });
        runner
            .run(&(host(), host(), 0i64..40), |(host, other, hours)| {
                let at = now.checked_add(jiff::SignedDuration::from_hours(hours)).unwrap();
                let leaf = m.mint(&host, at).unwrap();
                prop_assert!(verify(&m, &leaf, &host, at).is_ok(), "{host}: {:?}", verify(&m, &leaf, &host, at));
                for wrong in [other.clone(), format!("x.{host}"), format!("x{host}")] {
                    if wrong != host && rustls::pki_types::ServerName::try_from(wrong.clone()).is_ok() {
                        prop_assert!(verify(&m, &leaf, &wrong, at).is_err(), "{host} leaf accepted for {wrong}");
                    }
                }
                let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).unwrap();
                let window = (cert.validity().not_before.timestamp(), cert.validity().not_after.timestamp());
                prop_assert!(
                    ca_window.0 <= window.0 && window.1 <= ca_window.1,
                    "leaf {window:?} outside the CA's {ca_window:?}"
                );
                prop_assert!(serials.borrow_mut().insert(cert.raw_serial().to_vec()), "serial repeated");
                // The cache (4 hosts) answers each host with its own leaf.
                let config = m.server_config(&host, at).unwrap();
                prop_assert!(Arc::ptr_eq(&config, &m.server_config(&host, at).unwrap()));
                if host != other {
                    prop_assert!(!Arc::ptr_eq(&config, &m.server_config(&other, at).unwrap()));
                }
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn a_key_from_another_ca_is_refused() {
        let now = jiff::Timestamp::now();
        let (cert, _) = new_ca("CA one", 30, now).unwrap();
        let (_, other_key) = new_ca("CA two", 30, now).unwrap();
        assert!(matches!(Minter::new(&cert, &other_key, 8), Err(MintError::KeyMismatch)));
        assert!(matches!(Minter::new("not pem", &other_key, 8), Err(MintError::CaCert(_))));
        assert!(matches!(Minter::new(&cert, "not pem", 8), Err(MintError::CaKey(_))));
    }
}
