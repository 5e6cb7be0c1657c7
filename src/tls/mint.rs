//! Leaf certificates minted on the fly for `[intercept]` block pages: for a
//! blocked CONNECT the proxy completes TLS as the requested host with a
//! short-lived certificate signed by the company CA, then serves the block
//! page over HTTPS.
//!
//! Every leaf has a fresh random serial (browsers reject a reused
//! issuer+serial pair), the host as its only SAN, and one key pair shared by
//! all leaves. Server configs are cached per host in a bounded LRU, so a
//! burst of blocked CONNECTs mints each host once.

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

/// How long a minted leaf is valid, in days (it is re-minted after a day).
const LEAF_VALID_DAYS: i64 = 3;

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
    leaf_key: KeyPair,
    cache: Mutex<lru::LruCache<String, Cached>>,
    minted: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Minter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minter").finish_non_exhaustive()
    }
}

impl Minter {
    /// Loads the CA from PEM and checks that the key belongs to the
    /// certificate (by minting a probe leaf and verifying it against the CA).
    pub fn new(ca_cert_pem: &str, ca_key_pem: &str, cache_hosts: usize) -> Result<Minter, MintError> {
        let ca_der =
            CertificateDer::from_pem_slice(ca_cert_pem.as_bytes()).map_err(|e| MintError::CaCert(e.to_string()))?;
        let ca_key = KeyPair::from_pem(ca_key_pem).map_err(|e| MintError::CaKey(e.to_string()))?;
        let issuer = Issuer::from_ca_cert_der(&ca_der, ca_key).map_err(|e| MintError::CaCert(e.to_string()))?;
        let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| MintError::CaKey(format!("cannot generate the leaf key: {e}")))?;
        let cap = NonZeroUsize::new(cache_hosts).unwrap_or(NonZeroUsize::MIN);
        let minter = Minter {
            issuer,
            ca_der,
            leaf_key,
            cache: Mutex::new(lru::LruCache::new(cap)),
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

    /// A TLS server config presenting a leaf for `host` (a normalised name
    /// or IP literal), minted at `now` or taken from the cache. ALPN offers
    /// HTTP/1.1 only.
    pub fn server_config(&self, host: &str, now: jiff::Timestamp) -> Result<Arc<ServerConfig>, MintError> {
        let day = now.as_second().div_euclid(86_400);
        if let Ok(mut cache) = self.cache.lock()
            && let Some(hit) = cache.get(host)
            && hit.minted_day == day
        {
            return Ok(Arc::clone(&hit.config));
        }
        let (leaf, key) = self.mint(host, now)?;
        let mut config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(vec![leaf, self.ca_der.clone()], key))
            .map_err(|e| MintError::Mint { host: host.to_owned(), reason: e.to_string() })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);
        if let Ok(mut cache) = self.cache.lock() {
            cache.put(host.to_owned(), Cached { config: Arc::clone(&config), minted_day: day });
        }
        Ok(config)
    }

    fn mint(
        &self,
        host: &str,
        now: jiff::Timestamp,
    ) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), MintError> {
        let err = |reason: String| MintError::Mint { host: host.to_owned(), reason };
        let mut params = CertificateParams::default();
        let san = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.to_owned().try_into().map_err(|e: rcgen::Error| err(e.to_string()))?),
        };
        params.subject_alt_names = vec![san];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        dn.push(DnType::OrganizationName, "socialgate block page");
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
        let (start, end) = validity(now).map_err(|e| err(e.to_string()))?;
        params.not_before = start;
        params.not_after = end;
        let cert = params.signed_by(&self.leaf_key, &self.issuer).map_err(|e| err(e.to_string()))?;
        self.minted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key.serialize_der()));
        Ok((cert.der().clone(), key))
    }

    /// Mints a leaf and verifies it chains to the CA: fails when the CA key
    /// does not belong to the CA certificate.
    fn verify_probe(&self) -> Result<(), MintError> {
        let now = jiff::Timestamp::now();
        let (leaf, _) = self.mint("ca-check.socialgate.invalid", now)?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).map_err(|e| MintError::CaCert(e.to_string()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| MintError::CaCert(e.to_string()))?;
        let name = rustls::pki_types::ServerName::try_from("ca-check.socialgate.invalid")
            .map_err(|e| MintError::CaCert(e.to_string()))?;
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

fn validity(now: jiff::Timestamp) -> Result<(time::OffsetDateTime, time::OffsetDateTime), jiff::Error> {
    let start = now.checked_sub(jiff::SignedDuration::from_hours(1))?.to_zoned(jiff::tz::TimeZone::UTC).date();
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
