//! The PAC (proxy auto-config) file served at `/proxy.pac` and printed by
//! `socialgate pac`.

use crate::config::Config;

/// Renders the PAC file for `config`.
pub fn render(config: &Config) -> String {
    let _ = config;
    String::new()
}
