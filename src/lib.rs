//! socialgate: a forward HTTP proxy that applies per-department social-media
//! policies.
//!
//! # Layout
//!
//! - [`config`] reads the TOML files, reports every problem as
//!   `FILE:LINE:COL: error: MESSAGE`, and compiles a valid set into one
//!   immutable [`config::Config`] snapshot (which holds the compiled
//!   [`policy::Policy`]).
//! - [`policy`] is the pure decision engine: `(identity, host, time) ->
//!   decision`. It does no I/O and never reads the clock.
//! - [`identity`] answers "who is asking": Basic proxy credentials checked
//!   against htpasswd (with a cache so bcrypt runs once per credential).
//! - [`resolve`] turns host names into addresses (hosts file, then async DNS)
//!   and guards against private destinations.
//! - [`proxy`] is the runtime: listeners, the hyper service, forwarding,
//!   CONNECT tunnels, and the one place errors become HTTP responses.
//! - [`access_log`] holds the one record type (shared with `report`) and the
//!   writer task that never drops a record.
//! - [`report`] summarises access logs; [`cli`] is the only code that prints.
//!
//! # Request flow
//!
//! `accept -> context -> identity -> policy::Policy::decide(snapshot, identity,
//! host, now) -> forward | tunnel | respond(block) -> access_log::record(context)`,
//! exactly one access-log record per request or tunnel, on every path.

pub mod access_log;
pub mod admin;
pub mod cli;
pub mod config;
pub mod html;
pub mod identity;
pub mod metrics;
pub mod pac;
pub mod policy;
pub mod proxy;
pub mod reload;
pub mod report;
pub mod resolve;
pub mod tls;
