//! `socialgate run`: start the proxy and serve until SIGTERM/SIGINT; SIGHUP
//! or a change to any config file reloads the configuration.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{CmdResult, Failure, load_config};

/// Loads the config, starts the proxy, waits for a signal, shuts down
/// gracefully (in-flight work gets `shutdown_grace`, the access log is
/// flushed), exits 0.
pub fn run(path: &Path) -> CmdResult {
    let config = load_config(path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        // Handlers first, so a signal sent as soon as the address is logged
        // is never the default (fatal) action.
        let signals = Signals::install()?;
        let files = Fingerprint::of(config.files.clone());
        let running = crate::proxy::start(config).await.map_err(|err| Failure::Other(err.into()))?;
        for addr in &running.listen_addrs {
            tracing::info!(%addr, "proxy listening");
        }
        for addr in &running.tls_addrs {
            tracing::info!(%addr, "proxy listening (TLS)");
        }
        signals.wait(&running, path, files).await;
        tracing::info!("shutting down");
        running.shutdown();
        running.wait().await.map_err(|err| Failure::Other(err.into()))?;
        tracing::info!("stopped");
        Ok(())
    })
}

#[cfg(unix)]
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Returns on SIGTERM or SIGINT; reloads on SIGHUP or when a config
    /// file changes.
    async fn wait(mut self, running: &crate::proxy::Running, path: &Path, mut files: Fingerprint) {
        let mut tick = tokio::time::interval(WATCH_EVERY);
        loop {
            tokio::select! {
                _ = self.term.recv() => return,
                _ = self.int.recv() => return,
                _ = self.hup.recv() => reload(running, path, &mut files).await,
                _ = tick.tick() => {
                    if files.changed().await {
                        tracing::info!("a config file changed");
                        reload(running, path, &mut files).await;
                    }
                }
            }
        }
    }
}

/// How often config files are checked for changes (a change takes effect
/// within 2 seconds).
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Loads the config again and swaps it in if it is valid; otherwise the
/// running one stays and the problems are logged as `check` prints them.
async fn reload(running: &crate::proxy::Running, path: &Path, files: &mut Fingerprint) {
    let path = path.to_owned();
    match tokio::task::spawn_blocking(move || crate::config::load(&path)).await {
        Ok(Ok(config)) => {
            *files = Fingerprint::of(config.files.clone());
            running.reload(config);
            tracing::info!("configuration reloaded");
        }
        Ok(Err(diags)) => {
            // Not reloaded again until something changes again.
            files.changed().await;
            tracing::error!("reload failed, keeping the running configuration:\n{diags}");
        }
        Err(err) => tracing::error!(%err, "reload task failed"),
    }
}

/// The modification time and size of every config file and folder, to
/// notice a change by polling (portable, and immune to editors that
/// replace files instead of writing them).
struct Fingerprint {
    files: Vec<PathBuf>,
    seen: Vec<Option<(SystemTime, u64)>>,
}

impl Fingerprint {
    fn of(files: Vec<PathBuf>) -> Fingerprint {
        let seen = stat_all(&files);
        Fingerprint { files, seen }
    }

    /// True if anything changed since the last call (or creation).
    async fn changed(&mut self) -> bool {
        let files = self.files.clone();
        let Ok(now) = tokio::task::spawn_blocking(move || stat_all(&files)).await else { return false };
        if now == self.seen {
            return false;
        }
        self.seen = now;
        true
    }
}

fn stat_all(files: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    files
        .iter()
        .map(|file| std::fs::metadata(file).ok().and_then(|meta| Some((meta.modified().ok()?, meta.len()))))
        .collect()
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals)
    }

    async fn wait(self, running: &crate::proxy::Running, path: &Path, mut files: Fingerprint) {
        let mut tick = tokio::time::interval(WATCH_EVERY);
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return,
                _ = tick.tick() => {
                    if files.changed().await {
                        reload(running, path, &mut files).await;
                    }
                }
            }
        }
    }
}
