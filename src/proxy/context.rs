//! The per-request (or per-tunnel) context carried through every phase, and
//! [`Ctx::log`], the one function that turns it into the access-log record.
//! Every exit path ends in exactly one call to it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jiff::Timestamp;

use super::conn::ConnState;
use super::{Phase, Shared, Snapshot};
use crate::access_log::{ClosedBy, Record, Reserved};
use crate::policy::{Action, Decision, Host, Identity};

/// Everything known about one request so far.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) shared: Arc<Shared>,
    pub(crate) snap: Arc<Snapshot>,
    pub(crate) client: SocketAddr,
    pub(crate) ts: Timestamp,
    pub(crate) started: Instant,
    pub(crate) user: Option<String>,
    pub(crate) department: String,
    pub(crate) method: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) url: Option<String>,
    pub(crate) sni: Option<String>,
    pub(crate) service: Option<String>,
    pub(crate) rule: String,
    pub(crate) action: Action,
    /// Bytes from the client: the head plus body bytes counted as they
    /// stream (shared with the body wrapper).
    pub(crate) bytes_up: Arc<AtomicU64>,
    pub(crate) bytes_down: u64,
    /// The client connection, told when this request is done.
    pub(crate) conn: Option<Arc<ConnState>>,
    /// Room reserved in the access log for a record written from sync code.
    pub(crate) permit: Option<Reserved>,
    /// Reaching the origin failed (502, 504): recorded whatever the action.
    pub(crate) failed: bool,
    /// The origin address connected to.
    pub(crate) server: Option<IpAddr>,
    /// See [`Ctx::keep_content_type`].
    pub(crate) content_type: Option<Box<str>>,
    /// The record was written (or deliberately not).
    done: bool,
}

impl Ctx {
    /// A context for a request whose head just arrived.
    /// Until a user is known, the client is placed by its address, so even
    /// requests refused early are logged under a department.
    pub(crate) fn new(shared: Arc<Shared>, client: SocketAddr, method: &str) -> Ctx {
        let snap = shared.snapshot.load_full();
        let ts = shared.clock.now();
        let policy = &snap.config.policy;
        let placement = policy.place(&Identity { user: None, client_ip: Some(client.ip()) });
        let department = policy.department_name(placement.department).to_owned();
        Ctx {
            shared,
            snap,
            client,
            ts,
            started: Instant::now(),
            user: None,
            department,
            method: method.to_owned(),
            host: String::new(),
            port: 0,
            url: None,
            sni: None,
            service: None,
            // Until a decision is taken, anything the proxy answers itself is
            // a refusal of the request.
            rule: "request".into(),
            action: Action::Block,
            bytes_up: Arc::new(AtomicU64::new(0)),
            bytes_down: 0,
            conn: None,
            permit: None,
            failed: false,
            server: None,
            content_type: None,
            done: false,
        }
    }

    /// Records the policy decision.
    pub(crate) fn decided(&mut self, decision: &Decision) {
        self.department = decision.department.to_string();
        self.service = decision.service.as_deref().map(str::to_owned);
        self.rule = decision.rule.to_string();
        self.action = decision.action;
    }

    /// Keeps the media type of the answer (`text/html`: parameters cut off
    /// as Squid does) for the Squid-format log, the only format that writes
    /// it; nothing is kept (or allocated) for the JSON log.
    pub(crate) fn keep_content_type(&mut self, value: Option<&[u8]>) {
        if self.snap.config.log.format != crate::config::LogFormat::Squid {
            return;
        }
        self.content_type = value
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim_start().split([';', ' ', '\t']).next())
            .filter(|t| !t.is_empty())
            .map(Into::into);
    }

    pub(crate) fn add_up(&self, n: u64) {
        self.bytes_up.fetch_add(n, Ordering::Relaxed);
    }

    /// The record; its strings are moved out, as this is the request's end.
    fn record(&mut self, status: u16, closed_by: ClosedBy) -> Record {
        Record {
            ts: self.ts,
            client: self.client.ip(),
            user: self.user.take(),
            department: std::mem::take(&mut self.department),
            method: std::mem::take(&mut self.method),
            host: std::mem::take(&mut self.host),
            port: self.port,
            url: self.url.take(),
            sni: self.sni.take(),
            service: self.service.take(),
            rule: std::mem::take(&mut self.rule),
            action: self.action,
            status,
            bytes_up: self.bytes_up.load(Ordering::Relaxed),
            bytes_down: self.bytes_down,
            duration_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            closed_by,
            server: self.server,
            content_type: self.content_type.take(),
        }
    }

    /// Counts the finished request in the metrics (whatever the log keeps).
    fn count(&self) {
        let metrics = &self.shared.metrics;
        metrics.count_request(&self.department, self.service.as_deref(), self.action.as_str());
        metrics.count_bytes(self.bytes_up.load(Ordering::Relaxed), self.bytes_down);
    }

    /// `[log] allowed = false` keeps only block and log decisions, and the
    /// failures to reach an origin (what an admin troubleshoots with).
    fn wanted(&self) -> bool {
        self.snap.config.log.allowed || self.action != Action::Allow || self.failed
    }

    /// Whether the record that ends this request is written: as
    /// [`Ctx::wanted`], and always when the policy cut it (an allowed tunnel
    /// or response that a reload or a schedule boundary now blocks: a block
    /// decision, logged with its original action).
    fn keeps(&self, closed_by: ClosedBy) -> bool {
        self.wanted() || closed_by == ClosedBy::Policy
    }

    /// Writes the record, waiting while the writer is behind.
    pub(crate) async fn log(mut self, status: u16, closed_by: ClosedBy) {
        self.done = true;
        self.count();
        if let Some(conn) = &self.conn {
            conn.idle();
        }
        if self.keeps(closed_by) {
            let record = self.record(status, closed_by);
            match self.permit.take() {
                Some(permit) => permit.send(record),
                None => self.shared.sink.send(record).await,
            }
        }
    }

    /// Reserves room in the access log now (waiting while the writer is
    /// behind), so the record can be written later from synchronous code.
    pub(crate) async fn reserve_log(&mut self) {
        if self.wanted() && self.permit.is_none() {
            self.permit = self.shared.sink.reserve().await;
        }
    }

    /// Writes the record from synchronous code (a body's `Drop`), into the
    /// room reserved by [`Ctx::reserve_log`]. Work cut at the end of the
    /// shutdown grace period is logged as `shutdown`.
    pub(crate) fn log_detached(mut self, status: u16, closed_by: ClosedBy) {
        self.emit_detached(status, closed_by);
    }

    fn emit_detached(&mut self, status: u16, closed_by: ClosedBy) {
        self.done = true;
        self.count();
        if let Some(conn) = &self.conn {
            conn.idle();
        }
        if self.keeps(closed_by) {
            let closed_by = if self.shared.current_phase() == Phase::Cut { ClosedBy::Shutdown } else { closed_by };
            let record = self.record(status, closed_by);
            match self.permit.take() {
                Some(permit) => permit.send(record),
                None => self.shared.sink.send_detached(record),
            }
        }
    }

    /// Writes the record once the response hyper writes for this request is
    /// on the wire, with the bytes that really went out as `bytes_down`
    /// (head, framing and body). Without a client connection (no response
    /// goes through hyper), at once. Call [`Ctx::reserve_log`] first.
    pub(crate) fn log_when_sent(mut self, status: u16, closed_by: ClosedBy) {
        match self.conn.take() {
            Some(conn) => conn.answered(self, status, closed_by),
            None => self.log_detached(status, closed_by),
        }
    }

    /// The request began arriving at `at` (earlier than this context was
    /// made): `ts` and `duration_ms` count from then.
    pub(crate) fn arrived_at(&mut self, at: Instant) {
        let ago = at.elapsed();
        self.started = at;
        self.ts = self.ts.checked_sub(ago).unwrap_or(self.ts);
    }

    /// Counts only `n` bytes up (a tunnel's payload, not the CONNECT head).
    pub(crate) fn set_up(&self, n: u64) {
        self.bytes_up.store(n, Ordering::Relaxed);
    }
}

/// A request dropped before any exit path logged it (hyper dropped the
/// service future: the client went away mid-request, or shutdown cut the
/// connection) is still logged, with status 0: nothing was sent.
impl Drop for Ctx {
    fn drop(&mut self) {
        if !self.done {
            self.emit_detached(0, ClosedBy::Client);
        }
    }
}

/// An estimate of a head's size on the wire: the request or status line and
/// `name: value\r\n` per header, plus the blank line.
pub(crate) fn head_size(first_line: usize, headers: &http::HeaderMap) -> u64 {
    let fields: usize = headers.iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    (first_line + 2 + fields + 2) as u64
}

/// What an open tunnel or streaming response was decided for, to decide it again when a schedule
/// boundary passes or the configuration is reloaded.
pub(crate) struct PolicyWatch {
    pub(crate) user: Option<String>,
    pub(crate) client: IpAddr,
    pub(crate) host: Host,
    /// A second name decided on too (a tunnel's SNI); the stricter wins.
    pub(crate) also: Option<Host>,
    pub(crate) valid_until: Option<Timestamp>,
}

impl PolicyWatch {
    /// Resolves when the current policy would block the tunnel or stream.
    pub(crate) async fn until_blocked(self, shared: Arc<Shared>) {
        self.until(shared, false).await;
    }

    /// Resolves when the proxy cuts open connections at shutdown
    /// ([`ClosedBy::Shutdown`]) or the current policy would block
    /// ([`ClosedBy::Policy`]). One future with one timer and two watches,
    /// kept small: every open tunnel holds one.
    pub(crate) async fn until_cut_or_blocked(self, shared: Arc<Shared>) -> ClosedBy {
        self.until(shared, true).await
    }

    async fn until(mut self, shared: Arc<Shared>, cut: bool) -> ClosedBy {
        let mut generation = shared.generation.subscribe();
        let mut phase = shared.phase.subscribe();
        let (mut reloads, mut phases) = (true, cut);
        let boundary = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(boundary);
        loop {
            if cut && super::rank(*phase.borrow_and_update()) >= super::rank(Phase::Cut) {
                return ClosedBy::Shutdown;
            }
            if let Some(at) = self.valid_until {
                let ms = at.as_millisecond().saturating_sub(shared.clock.now().as_millisecond()).max(0);
                // Just past the boundary, so the new window is in force.
                let after = Duration::from_millis(ms.unsigned_abs() + 1);
                boundary.as_mut().reset(tokio::time::Instant::now() + after);
            }
            tokio::select! {
                () = &mut boundary, if self.valid_until.is_some() => {}
                changed = generation.changed(), if reloads => {
                    if changed.is_err() {
                        reloads = false;
                        continue;
                    }
                }
                changed = phase.changed(), if phases => {
                    phases = changed.is_ok();
                    continue;
                }
                else => std::future::pending::<()>().await,
            }
            if self.blocked_now(&shared) {
                return ClosedBy::Policy;
            }
        }
    }

    /// Decides again on the current snapshot: true if that blocks; else
    /// notes when the decision next changes.
    fn blocked_now(&mut self, shared: &Shared) -> bool {
        let snap = shared.snapshot.load_full();
        let policy = &snap.config.policy;
        let placement = policy.place(&Identity { user: self.user.as_deref(), client_ip: Some(self.client) });
        let now = shared.clock.now();
        let mut valid_until = None;
        for host in std::iter::once(&self.host).chain(self.also.as_ref()) {
            let decision = policy.decide(placement, host, now);
            if decision.action == Action::Block {
                return true;
            }
            valid_until = match (valid_until, decision.valid_until) {
                (Some(a), Some(b)) => Some(std::cmp::min(a, b)),
                (a, b) => a.or(b),
            };
        }
        self.valid_until = valid_until;
        false
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]

    use std::time::Duration;

    use super::*;

    /// A proxy on loopback whose default department blocks Facebook.
    async fn running(dir: &std::path::Path) -> super::super::Running {
        std::fs::create_dir_all(dir.join("departments")).expect("temp dir");
        std::fs::write(dir.join("departments/default.toml"), "default = \"allow\"\n[services]\nfacebook = \"block\"\n")
            .expect("department file");
        let main = "[proxy]\nlisten = [\"127.0.0.1:0\"]\n\n[log]\naccess_log = \"access.log\"\n";
        std::fs::write(dir.join("socialgate.toml"), main).expect("main file");
        let config = match crate::config::load(&dir.join("socialgate.toml")) {
            Ok(config) => config,
            Err(diags) => panic!("test config does not load:\n{diags}"),
        };
        super::super::start(config).await.expect("proxy starts")
    }

    fn watch(host: &str, after: Duration) -> PolicyWatch {
        let at = Timestamp::now() + jiff::SignedDuration::try_from(after).expect("short duration");
        PolicyWatch {
            user: None,
            client: "127.0.0.1".parse().expect("address"),
            host: Host::parse(host).expect("host"),
            also: None,
            valid_until: Some(at),
        }
    }

    /// The schedule-boundary path: when the decision's `valid_until`
    /// passes, the policy is decided again; a tunnel it now blocks is cut,
    /// one it still allows stays open until shutdown cuts it.
    #[tokio::test]
    async fn a_passing_boundary_redecides_and_shutdown_cuts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let proxy = running(dir.path()).await;
        let shared = proxy.shared.clone();

        let blocked = watch("www.facebook.com", Duration::from_millis(100));
        let ended = tokio::time::timeout(Duration::from_secs(10), blocked.until_cut_or_blocked(shared.clone())).await;
        assert_eq!(ended.ok(), Some(ClosedBy::Policy), "a blocked host is cut at the boundary");

        let allowed =
            tokio::spawn(watch("example.test", Duration::from_millis(50)).until_cut_or_blocked(shared.clone()));
        // Past its boundary, decided again, and still allowed.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!allowed.is_finished(), "an allowed host stays open after its boundary");
        shared.phase.send_replace(Phase::Cut);
        let ended = tokio::time::timeout(Duration::from_secs(10), allowed).await;
        assert_eq!(ended.ok().and_then(Result::ok), Some(ClosedBy::Shutdown));
        proxy.shutdown();
        let _ = tokio::time::timeout(Duration::from_secs(10), proxy.wait()).await;
    }
}
