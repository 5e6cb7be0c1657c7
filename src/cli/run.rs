//! `socialgate run`: start the proxy and serve until SIGTERM/SIGINT.

use std::path::Path;

use super::{CmdResult, Failure, load_config};

/// Loads the config, starts the proxy, waits for a signal, shuts down.
pub fn run(path: &Path) -> CmdResult {
    let config = load_config(path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let running = crate::proxy::start(config).await.map_err(|err| Failure::Other(err.into()))?;
        for addr in &running.listen_addrs {
            tracing::info!(%addr, "proxy listening");
        }
        wait_for_signals(&running, path).await?;
        running.wait().await.map_err(|err| Failure::Other(err.into()))
    })
}

#[cfg(unix)]
async fn wait_for_signals(running: &crate::proxy::Running, path: &Path) -> CmdResult {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
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
        }
    }
    tracing::info!("shutting down");
    running.shutdown();
    Ok(())
}

#[cfg(not(unix))]
async fn wait_for_signals(running: &crate::proxy::Running, _path: &Path) -> CmdResult {
    tokio::signal::ctrl_c().await?;
    running.shutdown();
    Ok(())
}
