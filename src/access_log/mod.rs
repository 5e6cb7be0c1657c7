//! The access log: the one [`Record`] type (written by the proxy, read by
//! `report` and `replay`) and the writer task that never drops a record.

pub mod pseudonym;
pub mod squid;
pub mod writer;

#[cfg(test)]
mod props;

pub use writer::{LogSink, LogWriter, PreparedLog, Reserved};

use std::net::IpAddr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::policy::Action;

/// One request or tunnel, written when it ends. Field names and order are the
/// SPEC's (section 4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// When the request head arrived (UTC, written with milliseconds).
    #[serde(with = "ts_millis")]
    pub ts: Timestamp,
    /// Client address.
    pub client: IpAddr,
    /// Authenticated (possibly pseudonymised) user; `None` without auth.
    pub user: Option<String>,
    /// Department name.
    pub department: String,
    /// Request method (`CONNECT` for tunnels).
    pub method: String,
    /// Normalised host the decision used (empty if the request had none).
    pub host: String,
    /// Destination port (0 if unknown).
    pub port: u16,
    /// URL without userinfo or query; `None` for CONNECT.
    pub url: Option<String>,
    /// TLS SNI seen in a tunnel.
    pub sni: Option<String>,
    /// Catalogue service the host belongs to.
    pub service: Option<String>,
    /// What decided (`rules[0]`, `services.youtube`, `default`, `auth`, ...).
    pub rule: String,
    /// The action taken.
    pub action: Action,
    /// HTTP status sent to the client.
    pub status: u16,
    /// Bytes from the client (headers included; payload for tunnels).
    pub bytes_up: u64,
    /// Bytes to the client (headers included; payload for tunnels).
    pub bytes_down: u64,
    /// From `ts` to the last byte.
    pub duration_ms: u64,
    /// Who ended it.
    pub closed_by: ClosedBy,
    /// The origin address connected to, if one was (only the Squid format
    /// writes it: `HIER_DIRECT/<address>`; not a field of the JSON record).
    #[serde(skip)]
    pub server: Option<IpAddr>,
    /// The response's media type (`text/html`, no parameters), kept only
    /// when the Squid format, which writes it, is in force.
    #[serde(skip)]
    pub content_type: Option<Box<str>>,
}

/// Who ended a request or tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClosedBy {
    /// The client closed or finished.
    Client,
    /// The origin closed or finished.
    Origin,
    /// The proxy answered itself.
    Proxy,
    /// A policy change (schedule boundary, reload, SNI check) cut it.
    Policy,
    /// A timeout.
    Timeout,
    /// Proxy shutdown.
    Shutdown,
    /// An error.
    Error,
}

impl ClosedBy {
    /// The SPEC's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ClosedBy::Client => "client",
            ClosedBy::Origin => "origin",
            ClosedBy::Proxy => "proxy",
            ClosedBy::Policy => "policy",
            ClosedBy::Timeout => "timeout",
            ClosedBy::Shutdown => "shutdown",
            ClosedBy::Error => "error",
        }
    }
}

/// `ts` as RFC 3339 UTC with exactly three fractional digits.
pub mod ts_millis {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `2026-11-26T09:15:02.481Z`.
    pub fn serialize<S: Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{:.3}", ts))
    }

    /// Reads any RFC 3339 timestamp.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
