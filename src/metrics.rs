//! Prometheus metrics: one [`Metrics`] value per process, shared by the
//! proxy (which counts) and the admin endpoint (which encodes).

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A label value made of names from outside (departments, services),
/// written escaped as the text exposition requires (`\\`, `\"`, `\n`):
/// prometheus-client writes label values as they are, so one quote or
/// line break in a name would break the whole `/metrics` page.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct LabelValue(pub String);

impl EncodeLabelValue for LabelValue {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        let mut rest = self.0.as_str();
        while let Some(at) = rest.find(['\\', '"', '\n']) {
            encoder.write_str(&rest[..at])?;
            encoder.write_str(match rest.as_bytes()[at] {
                b'\\' => "\\\\",
                b'"' => "\\\"",
                _ => "\\n",
            })?;
            rest = &rest[at + 1..];
        }
        encoder.write_str(rest)
    }
}

/// Labels of `socialgate_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Department name.
    pub department: LabelValue,
    /// Catalogue service, or `none`.
    pub service: LabelValue,
    /// `allow`, `log` or `block`.
    pub action: &'static str,
}

/// A single `kind`/`direction`/`result` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// The label value.
    pub kind: &'static str,
}

/// Labels of `socialgate_bytes_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    /// `up` (from clients) or `down` (to clients).
    pub direction: &'static str,
}

/// Labels of `socialgate_reloads_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `success` or `failure`.
    pub result: &'static str,
}

/// The `kind`s of `socialgate_upstream_errors_total` (RFC 9209 error types),
/// each exported from the start at 0 so alerts see a value, not "no data".
pub const UPSTREAM_ERROR_KINDS: [&str; 7] = [
    "dns_error",
    "connection_refused",
    "destination_unavailable",
    "connection_timeout",
    "http_response_timeout",
    "http_protocol_error",
    "http_response_header_section_size",
];

/// Every metric socialgate exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests and tunnels by department, service and action.
    pub requests: Family<RequestLabels, Counter>,
    /// Open client connections.
    pub active_connections: Gauge,
    /// Open CONNECT tunnels.
    pub active_tunnels: Gauge,
    /// Bytes crossing the client side.
    pub bytes: Family<DirectionLabel, Counter>,
    /// Upstream failures by kind (`dns_error`, `connection_refused`, ...).
    pub upstream_errors: Family<KindLabel, Counter>,
    /// Failed proxy authentications.
    pub auth_failures: Counter,
    /// bcrypt verifications run (each costs CPU: a steep rise is password
    /// guessing).
    pub auth_verifications: Counter,
    /// Config reloads by result.
    pub reloads: Family<ResultLabel, Counter>,
    /// Generation of the configuration in force (1 at start).
    pub config_generation: Gauge,
    /// Access-log records written.
    pub log_records: Counter,
    /// Access-log write failures (a failing log counts once per retry, once
    /// a second).
    pub log_write_errors: Counter,
    /// Access-log records held in memory, not yet written (only ever more
    /// than a buffer's worth while the log cannot be written).
    pub log_held: Gauge,
    /// Access-log records dropped because the log could not be written for
    /// so long that the records held in memory reached their bound.
    pub log_dropped: Counter,
    /// How long the access-log write in progress has been blocked (a hung
    /// filesystem, a log reader that stopped reading); 0 when none is.
    pub log_blocked_seconds: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("socialgate");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("requests", "Requests and tunnels by department, service and action", requests.clone());
        let active_connections = Gauge::default();
        registry.register("active_connections", "Open client connections", active_connections.clone());
        let active_tunnels = Gauge::default();
        registry.register("active_tunnels", "Open CONNECT tunnels", active_tunnels.clone());
        let bytes = Family::<DirectionLabel, Counter>::default();
        registry.register("bytes", "Bytes crossing the client side (up = from clients)", bytes.clone());
        let upstream_errors = Family::<KindLabel, Counter>::default();
        registry.register("upstream_errors", "Upstream failures by kind", upstream_errors.clone());
        let auth_failures = Counter::default();
        registry.register("auth_failures", "Failed proxy authentications", auth_failures.clone());
        let auth_verifications = Counter::default();
        registry.register("auth_verifications", "bcrypt verifications run", auth_verifications.clone());
        let reloads = Family::<ResultLabel, Counter>::default();
        registry.register("reloads", "Configuration reloads by result", reloads.clone());
        let config_generation = Gauge::default();
        registry.register("config_generation", "Generation of the configuration in force", config_generation.clone());
        let log_records = Counter::default();
        registry.register("access_log_records", "Access-log records written", log_records.clone());
        let log_write_errors = Counter::default();
        registry.register("access_log_write_errors", "Access-log write failures", log_write_errors.clone());
        let log_held = Gauge::default();
        registry.register(
            "access_log_held_records",
            "Access-log records held in memory, not yet written",
            log_held.clone(),
        );
        let log_dropped = Counter::default();
        registry.register(
            "access_log_dropped_records",
            "Access-log records dropped: the log could not be written and the records held reached their bound",
            log_dropped.clone(),
        );
        let log_blocked_seconds = Gauge::default();
        registry.register(
            "access_log_blocked_seconds",
            "How long the access-log write in progress has been blocked (0: none is); \
             requests wait once the queue in front of it is full",
            log_blocked_seconds.clone(),
        );
        config_generation.set(1);
        // Every labelled series that alerts and dashboards name is there
        // from the start, at 0.
        for kind in UPSTREAM_ERROR_KINDS {
            let _ = upstream_errors.get_or_create(&KindLabel { kind });
        }
        for result in ["success", "failure"] {
            let _ = reloads.get_or_create(&ResultLabel { result });
        }
        for direction in ["up", "down"] {
            let _ = bytes.get_or_create(&DirectionLabel { direction });
        }
        Metrics {
            registry,
            requests,
            active_connections,
            active_tunnels,
            bytes,
            upstream_errors,
            auth_failures,
            auth_verifications,
            reloads,
            config_generation,
            log_records,
            log_write_errors,
            log_held,
            log_dropped,
            log_blocked_seconds,
        }
    }

    /// Counts one finished request or tunnel.
    pub fn count_request(&self, department: &str, service: Option<&str>, action: &'static str) {
        let labels = RequestLabels {
            department: LabelValue(department.to_owned()),
            service: LabelValue(service.unwrap_or("none").to_owned()),
            action,
        };
        self.requests.get_or_create(&labels).inc();
    }

    /// Counts bytes crossing the client side.
    pub fn count_bytes(&self, up: u64, down: u64) {
        self.bytes.get_or_create(&DirectionLabel { direction: "up" }).inc_by(up);
        self.bytes.get_or_create(&DirectionLabel { direction: "down" }).inc_by(down);
    }

    /// Counts a reload attempt; on success the generation goes up by one.
    pub fn count_reload(&self, success: bool) {
        let result = if success { "success" } else { "failure" };
        self.reloads.get_or_create(&ResultLabel { result }).inc();
        if success {
            self.config_generation.inc();
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_the_spec_names() {
        let m = Metrics::new();
        m.count_request("sales", Some("facebook"), "log");
        m.count_request("sales", None, "allow");
        m.count_bytes(10, 20);
        m.count_reload(true);
        m.count_reload(false);
        let text = m.encode();
        assert!(
            text.contains(r#"socialgate_requests_total{department="sales",service="facebook",action="log"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"socialgate_requests_total{department="sales",service="none",action="allow"} 1"#));
        assert!(text.contains(r#"socialgate_bytes_total{direction="down"} 20"#));
        assert!(text.contains(r#"socialgate_reloads_total{result="failure"} 1"#));
        assert!(text.contains("socialgate_config_generation 2"));
        assert!(text.contains("socialgate_active_tunnels 0"));
        assert!(text.ends_with("# EOF\n"));
    }

    /// Regression: label values were written unescaped, so a name with a
    /// quote, a backslash or a line break made the whole exposition
    /// unparsable (config validation keeps such names out of departments
    /// and services today; `count_request` takes any `&str`).
    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.count_request("r&d \"lab\"", Some("a\\b\nc"), "allow");
        let text = m.encode();
        let line = r#"socialgate_requests_total{department="r&d \"lab\"",service="a\\b\nc",action="allow"} 1"#;
        assert!(text.lines().any(|l| l == line), "{text}");
        // Every sample line is still `name{...} value` on one line.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(l.starts_with("socialgate_"), "{l}");
        }
    }

    #[test]
    fn labelled_series_alerts_name_exist_from_the_start() {
        let text = Metrics::new().encode();
        for series in [
            r#"socialgate_reloads_total{result="success"} 0"#,
            r#"socialgate_reloads_total{result="failure"} 0"#,
            r#"socialgate_upstream_errors_total{kind="dns_error"} 0"#,
            r#"socialgate_upstream_errors_total{kind="http_protocol_error"} 0"#,
            r#"socialgate_bytes_total{direction="up"} 0"#,
        ] {
            assert!(text.contains(series), "{series} missing from:\n{text}");
        }
    }
}

/// Holds a gauge one higher for as long as it lives (an open connection or
/// tunnel).
#[derive(Debug)]
pub struct GaugeGuard(Gauge);

impl GaugeGuard {
    /// Raises `gauge` by one until the guard is dropped.
    pub fn new(gauge: &Gauge) -> GaugeGuard {
        gauge.inc();
        GaugeGuard(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
#[path = "metrics_props.rs"]
mod props;
