//! TLS pieces that do not depend on the proxy's internals: peeking at a
//! client's ClientHello for its SNI name, and (with `[intercept]`) minting
//! leaf certificates signed by the company CA.

pub mod mint;
pub mod peek;
