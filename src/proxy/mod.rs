//! The proxy runtime: listeners, the per-connection hyper service, plain-HTTP
//! forwarding, CONNECT tunnels, and the one place errors become responses.
//!
//! - `server`: accept loops, the connection cap, the hyper connection and
//!   the request router (`accept -> context -> identity -> decide -> ...`).
//! - `listeners`: the listening sockets, bound at start and changed by
//!   reloads (new ones bound first, gone ones closed, the rest untouched).
//! - `conn`: the client socket with idle/head deadlines and head checks.
//! - `proxy_protocol`: PROXY v1/v2 headers from trusted load balancers.
//! - `context`: the per-request context and the one logging function.
//! - `forward`: plain-HTTP forwarding over a pooled upstream client.
//! - `tunnel`: CONNECT tunnels, with the ClientHello's server name;
//!   `splice`: their zero-copy pump between plain TCP sockets.
//! - `respond`: every response the proxy makes itself.

pub(crate) mod congestion;
mod conn;
mod context;
mod forward;
mod intercept;
mod listeners;
mod proxy_protocol;
mod respond;
mod server;
mod splice;
mod tunnel;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use self::listeners::{Listeners, Role};
use crate::access_log::{LogSink, LogWriter, PreparedLog};
use crate::config::Config;
use crate::identity::Authenticator;
use crate::resolve::{Guard, Resolver};

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error (not a `source`: the message already includes it, and
        /// `{:#}` would print it twice).
        error: std::io::Error,
    },
    /// The access log could not be opened.
    #[error("cannot open access log {path}: {error}")]
    AccessLog {
        /// The path.
        path: String,
        /// The OS error (not a `source`: the message already includes it, and
        /// `{:#}` would print it twice).
        error: std::io::Error,
    },
    /// Anything else needed at start-up (TLS material, resolver).
    #[error("{0}")]
    Other(String),
}

impl From<ReloadError> for StartError {
    fn from(err: ReloadError) -> StartError {
        match err {
            ReloadError::Bind { addr, error } | ReloadError::Overlap { addr, error, .. } => {
                StartError::Bind { addr, error }
            }
            ReloadError::Tls(message) => StartError::Other(message),
            ReloadError::Log(diagnostic) => StartError::Other(diagnostic.to_string()),
        }
    }
}

/// Why a reload was not applied. Nothing of it was: the configuration and
/// the listeners in force stay as they were.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// A new listen address could not be bound.
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error (not a `source`: the message already includes it, and
        /// `{:#}` would print it twice).
        error: std::io::Error,
    },
    /// A new listen address overlaps one the reload would stop listening
    /// on: new addresses are bound before old ones close.
    #[error(
        "cannot listen on {addr}: {error} (it overlaps {overlaps}, which this reload would stop listening on; \
         new addresses are bound before old ones are closed, so moving between overlapping addresses needs a restart)"
    )]
    Overlap {
        /// The address.
        addr: SocketAddr,
        /// The address in force that holds its port.
        overlaps: SocketAddr,
        /// The OS error (not a `source`: the message already includes it, and
        /// `{:#}` would print it twice).
        error: std::io::Error,
    },
    /// `[proxy.tls]` certificate and key cannot make a TLS configuration.
    #[error("{0}")]
    Tls(String),
    /// `[log]` cannot be applied: the pseudonym key file cannot be read or
    /// created, or a new access-log path cannot be opened.
    #[error("{0}")]
    Log(crate::config::Diagnostic),
}

/// A running proxy: the handles to reload and stop it, and its bound
/// addresses ([`Running::listen_addrs`], [`Running::tls_addrs`],
/// [`Running::admin_addr`]), which a reload may change.
#[derive(Debug)]
pub struct Running {
    shared: Arc<Shared>,
    /// Locked for a whole reload, so reloads apply one at a time.
    listeners: Mutex<Listeners>,
    servers: Servers,
    writer: LogWriter,
    admin_stop: watch::Sender<bool>,
}

/// What the accept tasks need, for listeners bound at start or later.
#[derive(Debug)]
struct Servers {
    shared: Arc<Shared>,
    admin: crate::admin::AdminState,
    /// Turns true when the admin endpoint shuts down (after the proxy).
    admin_shutdown: watch::Receiver<bool>,
    /// Reloads may come from outside the runtime; listeners and their
    /// tasks live in it.
    runtime: tokio::runtime::Handle,
}

impl Servers {
    /// Starts accepting on `socket` for `role` until `stop` turns true.
    fn spawn(&self, role: Role, socket: Arc<TcpListener>, stop: watch::Receiver<bool>) -> JoinHandle<()> {
        match role {
            Role::Proxy => self.runtime.spawn(server::accept_loop(self.shared.clone(), socket, false, stop)),
            Role::ProxyTls => self.runtime.spawn(server::accept_loop(self.shared.clone(), socket, true, stop)),
            Role::Admin => {
                self.runtime.spawn(crate::admin::serve(socket, self.admin.clone(), stop, self.admin_shutdown.clone()))
            }
        }
    }
}

/// One configuration with what is derived from it: requests load it once
/// and keep it to the end. Each snapshot has its own upstream pool, so a
/// reload (new hosts, new `allow_destinations`) never reuses a connection
/// the old configuration made.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) config: Arc<Config>,
    pub(crate) resolver: Arc<Resolver>,
    pub(crate) guard: Arc<Guard>,
    pub(crate) upstream: forward::UpstreamClient,
    /// `[intercept]`: mints block-page certificates (per snapshot, so a
    /// reloaded CA takes effect at once).
    pub(crate) minter: Option<Arc<crate::tls::mint::Minter>>,
    /// `[proxy.tls]`: the handshake for TLS listeners (per snapshot, so a
    /// reloaded certificate serves the next handshake).
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
}

impl Snapshot {
    /// `own` is every address the proxy listens on (ports resolved), which
    /// requests must never reach through it.
    fn new(config: Arc<Config>, own: &[SocketAddr], tls: Option<Arc<rustls::ServerConfig>>) -> Snapshot {
        let resolver = Arc::new(Resolver::new(config.proxy.hosts.clone(), &config.proxy.nameservers));
        let guard = Arc::new(Guard {
            block_private: config.proxy.block_private_destinations,
            allow: config.proxy.allow_destinations.clone(),
            own: own.to_vec(),
        });
        let upstream = forward::upstream_client(resolver.clone(), guard.clone(), config.limits.connect_timeout);
        let minter = config.intercept.as_ref().and_then(|ca| {
            match crate::tls::mint::Minter::new(
                &ca.ca_cert_pem,
                &ca.ca_key_pem.0,
                crate::tls::mint::DEFAULT_CACHE_HOSTS,
            ) {
                Ok(minter) => Some(Arc::new(minter)),
                Err(err) => {
                    tracing::error!(%err, "intercept CA unusable; blocked HTTPS gets a plain 403");
                    None
                }
            }
        });
        Snapshot { config, resolver, guard, upstream, minter, tls }
    }
}

/// Where the proxy is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Accepting and serving.
    Serving,
    /// Not accepting; in-flight work finishing.
    Draining,
    /// Grace period over: everything still open is cut.
    Cut,
}

/// State shared by every listener, connection and request.
pub(crate) struct Shared {
    /// The configuration in force; its guard holds the proxy's own
    /// addresses, which follow the listeners through reloads.
    pub(crate) snapshot: Arc<ArcSwap<Snapshot>>,
    pub(crate) sink: LogSink,
    pub(crate) auth: Authenticator,
    pub(crate) tracker: Tracker,
    pub(crate) phase: watch::Sender<Phase>,
    pub(crate) head_replies: Arc<conn::HeadReplies>,
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// Bumped on every reload, so open tunnels re-decide.
    pub(crate) generation: watch::Sender<u64>,
    /// What "now" is for decisions and records.
    pub(crate) clock: Clock,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("own", &self.snapshot.load().guard.own)
            .field("active", &self.tracker.active())
            .finish()
    }
}

/// Counts in-flight connections and tunnels; lets shutdown wait for zero.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    active: AtomicUsize,
    idle: Notify,
}

/// Held by each connection or tunnel while it is open.
#[derive(Debug)]
pub(crate) struct Token(Arc<Shared>);

impl Tracker {
    pub(crate) fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.active() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Shared {
    pub(crate) fn enter(self: &Arc<Self>) -> Token {
        self.tracker.active.fetch_add(1, Ordering::SeqCst);
        Token(self.clone())
    }

    /// Resolves when the phase reaches `at_least`.
    pub(crate) async fn reached(&self, at_least: Phase) {
        let mut rx = self.phase.subscribe();
        let _ = rx.wait_for(|phase| rank(*phase) >= rank(at_least)).await;
    }

    pub(crate) fn current_phase(&self) -> Phase {
        *self.phase.borrow()
    }
}

fn rank(phase: Phase) -> u8 {
    match phase {
        Phase::Serving => 0,
        Phase::Draining => 1,
        Phase::Cut => 2,
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        if self.0.tracker.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.tracker.idle.notify_waiters();
        }
    }
}

/// The wall clock decisions, schedules and records go by: the system's,
/// or the system's moved by a fixed offset (for tests that must cross a
/// schedule boundary in seconds rather than wait for it).
#[derive(Clone, Copy, Debug, Default)]
pub struct Clock {
    offset: jiff::SignedDuration,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// The system clock moved so that it reads `now` at this moment, and
    /// runs on from there.
    pub fn reading(now: jiff::Timestamp) -> Clock {
        Clock { offset: now.duration_since(jiff::Timestamp::now()) }
    }

    /// The time now.
    pub fn now(self) -> jiff::Timestamp {
        let system = jiff::Timestamp::now();
        system.checked_add(self.offset).unwrap_or(system)
    }
}

/// Binds every listener in `config`, opens the access log and starts serving
/// on the current tokio runtime. Listening on port 0 is allowed; the actual
/// addresses are in [`Running`].
pub async fn start(config: Config) -> Result<Running, StartError> {
    start_with_clock(config, Clock::system()).await
}

/// [`start`], with decisions, schedules and records going by `clock`.
pub async fn start_with_clock(config: Config, clock: Clock) -> Result<Running, StartError> {
    let tls = config.proxy.tls.as_ref().map(tls_server_config).transpose().map_err(StartError::Other)?;
    let mut listeners = Listeners::default();
    let plan = listeners.plan(&listeners::wanted(&config), config.proxy.client_congestion_control.as_deref())?;
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let (sink, writer) =
        LogWriter::start(&config.log, config.limits.max_connections, metrics.clone()).map_err(|error| {
            StartError::AccessLog {
                path: match &config.log.access_log {
                    crate::config::LogTarget::Stdout => "-".into(),
                    crate::config::LogTarget::File(path) => path.display().to_string(),
                },
                error,
            }
        })?;
    let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::new(Arc::new(config), &plan.addrs(), tls)));
    let (phase, _) = watch::channel(Phase::Serving);
    let shared = Arc::new(Shared {
        snapshot,
        sink,
        auth: Authenticator::default().counting_in(metrics.auth_verifications.clone()),
        tracker: Tracker::default(),
        phase,
        generation: watch::channel(0).0,
        head_replies: Arc::new(respond::head_replies()),
        metrics: metrics.clone(),
        clock,
    });
    let (admin_stop, admin_shutdown) = watch::channel(false);
    let snapshot = shared.snapshot.clone();
    let admin = crate::admin::AdminState {
        metrics: metrics.clone(),
        pac: Arc::new(move |seen_as| crate::pac::render(&snapshot.load().config, seen_as)),
    };
    let servers = Servers { shared: shared.clone(), admin, admin_shutdown, runtime: tokio::runtime::Handle::current() };
    listeners.commit(plan, &|role, socket, stop| servers.spawn(role, socket, stop), false);
    Ok(Running { shared, listeners: Mutex::new(listeners), servers, writer, admin_stop })
}

/// The TLS server config for `[proxy.tls]` (ring provider, TLS 1.2 and
/// 1.3, HTTP/1.1 only), from the certificate and key the config loader
/// read: built at start and on every reload.
fn tls_server_config(tls: &crate::config::TlsListenerConfig) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad =
        |what: &str, path: &std::path::Path, err: &dyn std::fmt::Display| format!("{}: {what}: {err}", path.display());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(tls.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|err| bad("cannot read certificates", &tls.cert_path, &err))?;
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.0.as_bytes())
        .map_err(|err| bad("cannot read private key", &tls.key_path, &err))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| bad("TLS set-up", &tls.cert_path, &err))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|err| bad("certificate and key do not fit", &tls.cert_path, &err))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// How long cut connections get to notice and log before the writer closes.
const CUT_LINGER: Duration = Duration::from_secs(5);

impl Running {
    /// Swaps in a new validated configuration: new requests use it, requests
    /// and tunnels in flight keep the snapshot they started with. Listeners
    /// follow it: new addresses are bound first, addresses no longer
    /// configured stop accepting (what they accepted carries on), the rest
    /// are untouched; TLS handshakes from now on use the certificate it
    /// holds. If a new address cannot be bound (or the certificate cannot
    /// be used) nothing changes. Either way the attempt is counted in
    /// `socialgate_reloads_total`.
    pub fn reload(&self, config: Config) -> Result<(), ReloadError> {
        let result = self.apply(config);
        self.shared.metrics.count_reload(result.is_ok());
        result
    }

    fn apply(&self, config: Config) -> Result<(), ReloadError> {
        let tls = config.proxy.tls.as_ref().map(tls_server_config).transpose().map_err(ReloadError::Tls)?;
        let before = self.shared.snapshot.load();
        let log = PreparedLog::new(&config.log, &before.config.log.access_log).map_err(ReloadError::Log)?;
        // Binding registers the sockets with the runtime.
        let _runtime = self.servers.runtime.enter();
        let mut listeners = self.listeners.lock().unwrap_or_else(PoisonError::into_inner);
        let plan = listeners.plan(&listeners::wanted(&config), config.proxy.client_congestion_control.as_deref())?;
        if let (Some(old), Some(new)) = (&before.config.proxy.tls, &config.proxy.tls)
            && old.cert_pem != new.cert_pem
        {
            tracing::info!(cert = %new.cert_path.display(), "new [proxy.tls] certificate for new TLS connections");
        }
        self.writer.configure(log);
        self.shared.snapshot.store(Arc::new(Snapshot::new(Arc::new(config), &plan.addrs(), tls)));
        self.shared.generation.send_modify(|generation| *generation += 1);
        listeners.commit(plan, &|role, socket, stop| self.servers.spawn(role, socket, stop), true);
        Ok(())
    }

    /// Records a reload attempt whose config failed validation (the running
    /// config stays).
    pub fn reload_failed(&self) {
        self.shared.metrics.count_reload(false);
    }

    /// The plain proxy listeners' addresses (port 0 resolved), in
    /// configuration order.
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.addrs(Role::Proxy)
    }

    /// The TLS proxy listeners' addresses (port 0 resolved).
    pub fn tls_addrs(&self) -> Vec<SocketAddr> {
        self.addrs(Role::ProxyTls)
    }

    /// The admin listener's address (port 0 resolved), if any.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.addrs(Role::Admin).first().copied()
    }

    fn addrs(&self, role: Role) -> Vec<SocketAddr> {
        self.listeners.lock().unwrap_or_else(PoisonError::into_inner).addrs(role)
    }

    /// Reopens the access-log file (SIGUSR1, after logrotate renamed it).
    pub async fn reopen_log(&self) {
        self.writer.reopen().await;
    }

    /// The process's metrics (also served on the admin endpoint).
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.shared.metrics
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.shared.snapshot.load().config.clone()
    }

    /// Begins graceful shutdown: stop accepting, let in-flight work finish
    /// for up to `limits.shutdown_grace`, flush the access log.
    pub fn shutdown(&self) {
        self.shared.phase.send_if_modified(|phase| {
            if *phase == Phase::Serving {
                *phase = Phase::Draining;
                true
            } else {
                false
            }
        });
    }

    /// Waits until the proxy has shut down and the access log is flushed.
    /// The grace period runs from when this is called after [`Running::shutdown`].
    pub async fn wait(self) -> Result<(), StartError> {
        self.shared.reached(Phase::Draining).await;
        let accept_tasks = self.listeners.lock().unwrap_or_else(PoisonError::into_inner).take_proxy_tasks();
        for task in accept_tasks {
            let _ = task.await;
        }
        let grace = self.shared.snapshot.load().config.limits.shutdown_grace;
        if tokio::time::timeout(grace, self.shared.tracker.wait_idle()).await.is_err() {
            tracing::warn!(open = self.shared.tracker.active(), "grace period over, cutting open connections");
            self.shared.phase.send_replace(Phase::Cut);
            let _ = tokio::time::timeout(CUT_LINGER, self.shared.tracker.wait_idle()).await;
        }
        self.writer.close().await;
        self.admin_stop.send_replace(true);
        Ok(())
    }
}
