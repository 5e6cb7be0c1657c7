//! The proxy runtime: listeners, the per-connection hyper service, plain-HTTP
//! forwarding, CONNECT tunnels, and the one place errors become responses.

use std::net::SocketAddr;

use crate::config::Config;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The access log could not be opened.
    #[error("cannot open access log {path}: {source}")]
    AccessLog {
        /// The path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Anything else needed at start-up (TLS material, resolver).
    #[error("{0}")]
    Other(String),
}

/// A running proxy: its bound addresses and the handles to reload and stop it.
#[derive(Debug)]
pub struct Running {
    /// The plain listeners' actual addresses (port 0 resolved).
    pub listen_addrs: Vec<SocketAddr>,
    /// The TLS listeners' actual addresses.
    pub tls_addrs: Vec<SocketAddr>,
    /// The admin listener's actual address.
    pub admin_addr: Option<SocketAddr>,
}

/// Binds every listener in `config`, opens the access log and starts serving
/// on the current tokio runtime. Listening on port 0 is allowed; the actual
/// addresses are in [`Running`].
pub async fn start(config: Config) -> Result<Running, StartError> {
    let _ = config;
    Err(StartError::Other("not implemented".into()))
}

impl Running {
    /// Swaps in a new validated configuration: new requests use it, requests
    /// and tunnels in flight keep the snapshot they started with.
    pub fn reload(&self, config: Config) {
        let _ = config;
    }

    /// Begins graceful shutdown: stop accepting, let in-flight work finish
    /// for up to `limits.shutdown_grace`, flush the access log.
    pub fn shutdown(&self) {}

    /// Waits until the proxy has shut down and the access log is flushed.
    pub async fn wait(self) -> Result<(), StartError> {
        Ok(())
    }
}
