//! The access-log writer: one thread fed by a bounded channel. When it falls
//! behind, senders wait (backpressure); no record is ever dropped. Records
//! are written as JSON Lines to a file (appended) or stdout, flushed whenever
//! the queue runs empty (then the writer waits a few milliseconds for more
//! before it sleeps), at least twice a second under load, and on close.
//! The writing happens on its own thread so file I/O never blocks the
//! runtime.

use std::io::Write;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::Record;
use super::pseudonym::Pseudonymizer;
use crate::config::{LogConfig, LogFormat, LogTarget};
use crate::metrics::Metrics;

/// How many records may wait for the writer before senders wait, on top of
/// one reserved slot per possible client connection.
const CHANNEL_SLACK: usize = 4096;

/// Under continuous load, flush at least this often.
const FLUSH_EVERY: Duration = Duration::from_millis(500);

/// How long the writer waits for more records once it has caught up,
/// before it sleeps on the channel. Sleeping on the channel at once would
/// make every record wake the thread: two thread switches per request on
/// the proxy's core (a sixth of its time under load, measured with `perf`).
const LINGER: Duration = Duration::from_millis(5);

enum Msg {
    Record(Box<Record>),
    /// Reopen the file (SIGUSR1, after logrotate renamed it).
    Reopen,
    /// A reload changed `[log]`: new format, pseudonyms, or file.
    Configure(Box<Encoding>, LogTarget),
    Close,
}

/// How records become lines.
pub struct Encoding {
    format: LogFormat,
    pseudonyms: Option<Pseudonymizer>,
}

impl Encoding {
    /// The encoding `[log]` asks for; creates the pseudonym key file if
    /// pseudonyms are on and it is missing.
    pub fn from_config(log: &LogConfig) -> std::io::Result<Encoding> {
        let pseudonyms = if log.pseudonymize_users {
            Some(Pseudonymizer::load_or_create(&log.pseudonym_key_file).map_err(|err| {
                std::io::Error::new(
                    err.kind(),
                    format!("pseudonym key file {}: {err}", log.pseudonym_key_file.display()),
                )
            })?)
        } else {
            None
        };
        Ok(Encoding { format: log.format, pseudonyms })
    }

    /// Appends `record` as one line to `line`.
    pub fn encode(&self, record: &Record, line: &mut Vec<u8>) {
        let pseudonymised;
        let record = match (&self.pseudonyms, &record.user) {
            (Some(p), Some(user)) => {
                let mut copy = record.clone();
                copy.user = Some(p.pseudonym(user));
                pseudonymised = copy;
                &pseudonymised
            }
            _ => record,
        };
        match self.format {
            LogFormat::Json => {
                if serde_json::to_writer(&mut *line, record).is_ok() {
                    line.push(b'\n');
                }
            }
            LogFormat::Squid => {
                let mut text = String::with_capacity(160);
                super::squid::write_line(&mut text, record);
                line.extend_from_slice(text.as_bytes());
            }
        }
    }
}

/// Sends records to the writer. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LogSink {
    tx: mpsc::Sender<Msg>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Record(record) => record.fmt(f),
            Msg::Reopen => f.write_str("Reopen"),
            Msg::Configure(_, target) => write!(f, "Configure({target:?})"),
            Msg::Close => f.write_str("Close"),
        }
    }
}

/// Room for one record, reserved ahead; sending into it never waits.
#[derive(Debug)]
pub struct Reserved(mpsc::OwnedPermit<Msg>);

impl Reserved {
    /// Queues the record in the reserved room.
    pub fn send(self, record: Record) {
        self.0.send(Msg::Record(Box::new(record)));
    }
}

impl LogSink {
    /// Queues a record, waiting while the writer is behind. A record sent
    /// after the writer stopped is reported through tracing.
    pub async fn send(&self, record: Record) {
        if let Err(err) = self.tx.send(Msg::Record(Box::new(record))).await {
            tracing::error!(record = ?err.0, "access log writer has stopped; record not written");
        }
    }

    /// Reserves room for one record, waiting while the writer is behind, so
    /// the record can later be sent from synchronous code without waiting
    /// or dropping. `None` if the writer has stopped.
    pub async fn reserve(&self) -> Option<Reserved> {
        self.tx.clone().reserve_owned().await.ok().map(Reserved)
    }

    /// Queues a record from a synchronous context (a `Drop`) without a
    /// reservation: immediately if there is room, else from a spawned task
    /// that waits for room.
    pub fn send_detached(&self, record: Record) {
        match self.tx.try_send(Msg::Record(Box::new(record))) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(msg)) => match tokio::runtime::Handle::try_current() {
                Ok(handle) => {
                    let tx = self.tx.clone();
                    handle.spawn(async move {
                        if let Err(err) = tx.send(msg).await {
                            tracing::error!(record = ?err.0, "access log writer has stopped; record not written");
                        }
                    });
                }
                Err(_) => tracing::error!(record = ?msg, "no runtime to queue access-log record"),
            },
            Err(mpsc::error::TrySendError::Closed(msg)) => {
                tracing::error!(record = ?msg, "access log writer has stopped; record not written");
            }
        }
    }
}

/// The running writer thread.
#[derive(Debug)]
pub struct LogWriter {
    thread: std::thread::JoinHandle<()>,
    tx: mpsc::Sender<Msg>,
}

impl LogWriter {
    /// Opens the access log `[log]` names (a file is appended to and created
    /// if missing; its folder must exist) and starts the writer thread.
    ///
    /// `max_in_flight` is how many records may be held reserved at once (one
    /// per client connection); the channel has room for them plus some slack,
    /// so reservations never starve the rest.
    pub fn start(
        log: &LogConfig,
        max_in_flight: usize,
        metrics: std::sync::Arc<Metrics>,
    ) -> std::io::Result<(LogSink, LogWriter)> {
        let encoding = Encoding::from_config(log)?;
        let out = Output::open(&log.access_log)?;
        let (tx, rx) = mpsc::channel(max_in_flight.saturating_add(CHANNEL_SLACK));
        let mut state = WriterState { out, target: log.access_log.clone(), encoding, metrics, line: Vec::new() };
        let thread = std::thread::Builder::new().name("access-log".into()).spawn(move || state.run(rx))?;
        Ok((LogSink { tx: tx.clone() }, LogWriter { thread, tx }))
    }

    /// Reopens the log file (for logrotate: rename the file, then SIGUSR1).
    /// Records queued before the call go to the old file.
    pub async fn reopen(&self) {
        let _ = self.tx.send(Msg::Reopen).await;
    }

    /// Applies a reloaded `[log]` section to the records queued from now on.
    /// An invalid one (a key file that cannot be created) is reported and
    /// the current encoding kept.
    pub fn configure(&self, log: &LogConfig) {
        let encoding = match Encoding::from_config(log) {
            Ok(encoding) => encoding,
            Err(err) => {
                tracing::error!(%err, "access log settings not applied");
                return;
            }
        };
        match self.tx.try_send(Msg::Configure(Box::new(encoding), log.access_log.clone())) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(msg)) => {
                // The queue is full: deliver as soon as there is room.
                let tx = self.tx.clone();
                if let Ok(handle) = tokio::runtime::Handle::try_current() {
                    handle.spawn(async move {
                        let _ = tx.send(msg).await;
                    });
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Writes everything queued before this call, flushes, and ends the
    /// thread. Call after the last request has finished.
    pub async fn close(self) {
        if self.tx.send(Msg::Close).await.is_err() {
            tracing::error!("access log writer had already stopped");
        }
        let thread = self.thread;
        match tokio::task::spawn_blocking(move || thread.join()).await {
            Ok(Ok(())) => {}
            _ => tracing::error!("access log writer failed"),
        }
    }
}

/// Where lines go.
struct Output {
    inner: std::io::BufWriter<Box<dyn Write + Send>>,
}

impl Output {
    fn open(target: &LogTarget) -> std::io::Result<Output> {
        let out: Box<dyn Write + Send> = match target {
            LogTarget::Stdout => Box::new(std::io::stdout()),
            LogTarget::File(path) => Box::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?),
        };
        Ok(Output { inner: std::io::BufWriter::with_capacity(64 * 1024, out) })
    }
}

struct WriterState {
    out: Output,
    target: LogTarget,
    encoding: Encoding,
    metrics: std::sync::Arc<Metrics>,
    line: Vec<u8>,
}

impl WriterState {
    fn run(&mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut last_flush = Instant::now();
        let mut lingered = false;
        loop {
            let msg = match rx.try_recv() {
                Ok(msg) => msg,
                Err(mpsc::error::TryRecvError::Empty) => {
                    // Caught up: flush, give the queue a moment to fill
                    // (senders wake no one meanwhile), and only then sleep
                    // until the next record.
                    self.flush();
                    last_flush = Instant::now();
                    if !lingered {
                        lingered = true;
                        std::thread::sleep(LINGER);
                        continue;
                    }
                    match rx.blocking_recv() {
                        Some(msg) => msg,
                        None => break,
                    }
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            };
            lingered = false;
            match msg {
                Msg::Record(record) => {
                    self.write(&record);
                    if last_flush.elapsed() >= FLUSH_EVERY {
                        self.flush();
                        last_flush = Instant::now();
                    }
                }
                Msg::Reopen => self.reopen(None),
                Msg::Configure(encoding, target) => {
                    self.encoding = *encoding;
                    if target != self.target {
                        self.reopen(Some(target));
                    }
                }
                Msg::Close => break,
            }
        }
        self.flush();
    }

    fn write(&mut self, record: &Record) {
        self.line.clear();
        self.encoding.encode(record, &mut self.line);
        match self.out.inner.write_all(&self.line) {
            Ok(()) => {
                self.metrics.log_records.inc();
            }
            Err(err) => {
                self.metrics.log_write_errors.inc();
                tracing::error!(%err, target = ?self.target, "cannot write access-log record");
            }
        };
    }

    fn flush(&mut self) {
        if let Err(err) = self.out.inner.flush() {
            self.metrics.log_write_errors.inc();
            tracing::error!(%err, target = ?self.target, "cannot flush access log");
        }
    }

    /// Flushes what is buffered into the old file, then opens the (new)
    /// target. If opening fails the old file stays in use.
    fn reopen(&mut self, target: Option<LogTarget>) {
        self.flush();
        let target = target.unwrap_or_else(|| self.target.clone());
        match Output::open(&target) {
            Ok(out) => {
                self.out = out;
                tracing::info!(target = ?target, "access log reopened");
                self.target = target;
            }
            Err(err) => {
                self.metrics.log_write_errors.inc();
                tracing::error!(%err, target = ?target, "cannot reopen access log; still writing to the old file");
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::access_log::ClosedBy;
    use crate::policy::Action;
    use std::sync::Arc;

    fn record(n: u64) -> Record {
        Record {
            ts: "2026-11-26T09:15:02.481Z".parse().unwrap(),
            client: "10.20.4.17".parse().unwrap(),
            user: None,
            department: "sales".into(),
            method: "GET".into(),
            host: "example.test".into(),
            port: 80,
            url: Some("http://example.test/".into()),
            sni: None,
            service: None,
            rule: "default".into(),
            action: Action::Allow,
            status: 200,
            bytes_up: n,
            bytes_down: 0,
            duration_ms: 1,
            closed_by: ClosedBy::Origin,
            server: None,
        }
    }

    #[tokio::test]
    async fn every_record_is_written_and_flushed_on_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        // Few slots: senders must wait for the writer, never drop.
        let (sink, writer) = LogWriter::start(&log(LogTarget::File(path.clone())), 0, Arc::default()).unwrap();
        for n in 0..10_000 {
            sink.send(record(n)).await;
        }
        let permit = sink.reserve().await.unwrap();
        permit.send(record(10_000));
        writer.close().await;
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 10_001);
        let last: Record = serde_json::from_str(lines[10_000]).unwrap();
        assert_eq!(last.bytes_up, 10_000);
        assert!(lines[0].starts_with(r#"{"ts":"2026-11-26T09:15:02.481Z","client":"10.20.4.17""#), "{}", lines[0]);
    }

    #[tokio::test]
    async fn a_missing_folder_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let target = LogTarget::File(dir.path().join("no-such-dir").join("access.log"));
        assert!(LogWriter::start(&log(target), 0, Arc::default()).is_err());
    }

    fn log(target: LogTarget) -> LogConfig {
        LogConfig {
            access_log: target,
            format: LogFormat::Json,
            allowed: true,
            pseudonymize_users: false,
            pseudonym_key_file: "pseudonym.key".into(),
        }
    }

    async fn wait_for_lines(path: &std::path::Path, n: usize) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_owned).collect();
            if lines.len() >= n {
                return lines;
            }
            assert!(tokio::time::Instant::now() < deadline, "{n} lines not written to {}", path.display());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn reopen_after_rename_starts_a_new_file_with_nothing_lost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let metrics = Arc::new(Metrics::new());
        let (sink, writer) = LogWriter::start(&log(LogTarget::File(path.clone())), 0, metrics.clone()).unwrap();
        for n in 0..100 {
            sink.send(record(n)).await;
        }
        wait_for_lines(&path, 100).await;
        let rotated = dir.path().join("access.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        for n in 100..150 {
            sink.send(record(n)).await; // still to the renamed file
        }
        writer.reopen().await;
        for n in 150..200 {
            sink.send(record(n)).await;
        }
        writer.close().await;
        let old = std::fs::read_to_string(&rotated).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!(old.lines().count(), 150);
        assert_eq!(new.lines().count(), 50);
        let first_new: Record = serde_json::from_str(new.lines().next().unwrap()).unwrap();
        assert_eq!(first_new.bytes_up, 150);
        assert!(metrics.encode().contains("socialgate_access_log_records_total 200"));
    }

    #[tokio::test]
    async fn squid_format_and_pseudonyms_apply_and_can_change_on_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let mut config = log(LogTarget::File(path.clone()));
        config.format = LogFormat::Squid;
        config.pseudonymize_users = true;
        config.pseudonym_key_file = dir.path().join("pseudonym.key");
        let (sink, writer) = LogWriter::start(&config, 0, Arc::default()).unwrap();
        let mut rec = record(1);
        rec.user = Some("alice".into());
        sink.send(rec.clone()).await;
        let lines = wait_for_lines(&path, 1).await;
        let fields: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(fields.len(), 10, "{}", lines[0]);
        assert_eq!(fields[3], "TCP_MISS/200");
        assert!(fields[7].starts_with("u:") && fields[7].len() == 18, "pseudonymised user: {}", fields[7]);
        assert!(!lines[0].contains("alice"));

        config.format = LogFormat::Json;
        config.pseudonymize_users = false;
        writer.configure(&config);
        sink.send(rec).await;
        writer.close().await;
        let text = std::fs::read_to_string(&path).unwrap();
        let last: Record = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
        assert_eq!(last.user.as_deref(), Some("alice"));
    }

    #[tokio::test]
    async fn a_failing_write_is_counted_and_the_writer_carries_on() {
        // /dev/full accepts the open and fails every write with ENOSPC.
        let metrics = Arc::new(Metrics::new());
        let target = LogTarget::File("/dev/full".into());
        let Ok((sink, writer)) = LogWriter::start(&log(target), 0, metrics.clone()) else {
            panic!("/dev/full must open");
        };
        for n in 0..3 {
            sink.send(record(n)).await;
        }
        writer.close().await;
        let text = metrics.encode();
        assert!(!text.contains("socialgate_access_log_write_errors_total 0"), "{text}");
    }
}
