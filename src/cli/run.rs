//! `socialgate run`: start the proxy and serve until SIGTERM/SIGINT; SIGHUP
//! reloads the configuration.

use std::path::Path;

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
        let running = crate::proxy::start(config).await.map_err(|err| Failure::Other(err.into()))?;
        for addr in &running.listen_addrs {
            tracing::info!(%addr, "proxy listening");
        }
        signals.wait(&running, path).await;
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

    /// Returns on SIGTERM or SIGINT; reloads on SIGHUP.
    async fn wait(mut self, running: &crate::proxy::Running, path: &Path) {
        loop {
            tokio::select! {
                _ = self.term.recv() => return,
                _ = self.int.recv() => return,
                _ = self.hup.recv() => reload(running, path).await,
            }
        }
    }
}

#[cfg(unix)]
async fn reload(running: &crate::proxy::Running, path: &Path) {
    let path = path.to_owned();
    match tokio::task::spawn_blocking(move || crate::config::load(&path)).await {
        Ok(Ok(config)) => {
            running.reload(config);
            tracing::info!("configuration reloaded");
        }
        Ok(Err(diags)) => {
            tracing::error!("reload failed, keeping the running configuration:\n{diags}");
        }
        Err(err) => tracing::error!(%err, "reload task failed"),
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals)
    }

    async fn wait(self, _running: &crate::proxy::Running, _path: &Path) {
        let _ = tokio::signal::ctrl_c().await;
    }
}
