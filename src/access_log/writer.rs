//! The access-log writer: one thread fed by a bounded channel. When it falls
//! behind, senders wait (backpressure); no record is ever dropped while the
//! log can be written. Records are written as JSON Lines (or Squid's format)
//! to a file (appended) or stdout, flushed whenever the queue runs empty
//! (then the writer waits a few milliseconds for more before it sleeps), at
//! least twice a second under load, and on close. The writing happens on its
//! own thread so file I/O never blocks the runtime.
//!
//! A log that cannot be written (a full disk, a failing device) does not stop
//! the proxy and does not make requests wait: the writer keeps taking records
//! in, holds them in memory (up to [`HELD_LIMIT`] bytes), and retries once a
//! second, reopening the path each time (so a replaced file or a remounted
//! filesystem is picked up); once a write succeeds, everything held is
//! written in order. Only records beyond the bound are dropped, and counted.
//! The failure is reported at once, then once a minute while it lasts, and
//! the recovery is reported too; `/metrics` has the counts. A reopen
//! (SIGUSR1) that cannot open the path keeps writing to the old file and is
//! retried once a second until it can. A file deleted while in use is never
//! written to again (no one could read it): its path is opened anew, or the
//! records are held as for a failing write.
//!
//! The path must lead to a regular file or a character device: it is opened
//! non-blocking and its type checked on the handle, so a FIFO or a socket
//! put at the path is refused at once instead of hanging the open.

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

/// Lines are gathered up to this size before they are written.
const BUFFER: usize = 64 * 1024;

/// How many bytes of records are held in memory while the log cannot be
/// written (some 200,000 records); records beyond it are dropped.
pub const HELD_LIMIT: usize = 64 * 1024 * 1024;

/// A failing write, or a reopen that failed, is tried again this often.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// While the log is failing (or a reopen is due), the writer wakes this
/// often to take records in and to retry, instead of sleeping on the
/// channel until the next record.
const TROUBLED_POLL: Duration = Duration::from_millis(50);

/// A failure that lasts is reported again this often.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// A write blocked this long (a hung network filesystem, a log reader that
/// stopped reading stdout) is reported: the writer cannot take records in
/// while it waits, so requests wait too once the queue is full.
const BLOCKED_REPORT_AFTER: Duration = Duration::from_secs(5);

/// How often the stall watch looks at the write in progress.
const BLOCKED_LOOK_EVERY: Duration = Duration::from_secs(1);

/// When the write in progress began, read by the stall watch.
struct WriteClock {
    epoch: Instant,
    /// Milliseconds from `epoch` to the start of the write in progress,
    /// plus one; 0 when no write is in progress.
    started: std::sync::atomic::AtomicU64,
}

impl WriteClock {
    fn new() -> WriteClock {
        WriteClock { epoch: Instant::now(), started: std::sync::atomic::AtomicU64::new(0) }
    }

    /// Marks a write as in progress until the returned guard is dropped.
    fn writing(&self) -> Writing<'_> {
        let millis = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.started.store(millis + 1, std::sync::atomic::Ordering::Relaxed);
        Writing(self)
    }

    /// How long the write in progress has taken so far.
    fn blocked_for(&self) -> Option<Duration> {
        let started = self.started.load(std::sync::atomic::Ordering::Relaxed).checked_sub(1)?;
        Some(self.epoch.elapsed().saturating_sub(Duration::from_millis(started)))
    }
}

/// A write in progress (see [`WriteClock::writing`]).
struct Writing<'a>(&'a WriteClock);

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.0.started.store(0, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Watches the writer's writes until the writer ends: one blocked past
/// `report_after` is reported (and shown in `/metrics`), and so is its end.
fn watch_writes(
    clock: std::sync::Weak<WriteClock>,
    metrics: std::sync::Arc<Metrics>,
    report_after: Duration,
    every: Duration,
) {
    let mut reported: Option<Duration> = None;
    loop {
        std::thread::sleep(every);
        let Some(clock) = clock.upgrade() else { return };
        let blocked = clock.blocked_for();
        drop(clock);
        metrics.log_blocked_seconds.set(blocked.map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)));
        match (blocked, reported) {
            (Some(for_now), None) if for_now >= report_after => {
                tracing::error!(
                    blocked_for = ?for_now,
                    "an access-log write has been blocked for {}s (a hung filesystem, or a reader of the log \
                     that stopped reading): records queue up meanwhile, and requests wait once the queue is full",
                    for_now.as_secs()
                );
                reported = Some(for_now);
            }
            (Some(for_now), Some(_)) => reported = Some(for_now),
            (None, Some(last_seen)) => {
                tracing::warn!(blocked_for_at_least = ?last_seen, "the blocked access-log write has completed");
                reported = None;
            }
            _ => {}
        }
    }
}

enum Msg {
    Record(Box<Record>),
    /// Reopen the file (SIGUSR1, after logrotate renamed it).
    Reopen,
    /// A reload changed `[log]`: new format, pseudonyms, or file.
    Configure(Box<PreparedLog>),
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
            Msg::Configure(prepared) => write!(f, "Configure({:?})", prepared.target),
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
    /// if missing; its folder must exist; a FIFO or a socket is refused) and
    /// starts the writer thread.
    ///
    /// `max_in_flight` is how many records may be held reserved at once (one
    /// per client connection); the channel has room for them plus some slack,
    /// so reservations never starve the rest.
    pub fn start(
        log: &LogConfig,
        max_in_flight: usize,
        metrics: std::sync::Arc<Metrics>,
    ) -> std::io::Result<(LogSink, LogWriter)> {
        LogWriter::start_holding(log, max_in_flight, metrics, HELD_LIMIT)
    }

    /// [`LogWriter::start`], holding at most `held_limit` bytes of records
    /// while the log cannot be written.
    fn start_holding(
        log: &LogConfig,
        max_in_flight: usize,
        metrics: std::sync::Arc<Metrics>,
        held_limit: usize,
    ) -> std::io::Result<(LogSink, LogWriter)> {
        let encoding = Encoding::from_config(log)?;
        let opened = open(&log.access_log)?;
        LogWriter::start_on(opened, log, encoding, max_in_flight, metrics, held_limit, BLOCKED_REPORT_AFTER)
    }

    /// Starts the writer thread writing to `opened`, and its stall watch.
    fn start_on(
        opened: Opened,
        log: &LogConfig,
        encoding: Encoding,
        max_in_flight: usize,
        metrics: std::sync::Arc<Metrics>,
        held_limit: usize,
        blocked_report_after: Duration,
    ) -> std::io::Result<(LogSink, LogWriter)> {
        let (tx, rx) = mpsc::channel(max_in_flight.saturating_add(CHANNEL_SLACK));
        let clock = std::sync::Arc::new(WriteClock::new());
        let watched = std::sync::Arc::downgrade(&clock);
        let watch_metrics = metrics.clone();
        let look_every = BLOCKED_LOOK_EVERY.min(blocked_report_after);
        std::thread::Builder::new()
            .name("access-log-watch".into())
            .spawn(move || watch_writes(watched, watch_metrics, blocked_report_after, look_every))?;
        let mut state = WriterState {
            clock,
            out: opened.out,
            file: opened.file,
            deleted: false,
            target: log.access_log.clone(),
            encoding,
            metrics,
            line: Vec::new(),
            pending: Vec::with_capacity(BUFFER),
            pending_records: 0,
            held_limit,
            failure: None,
            reopen_due: None,
            head_sent: 0,
        };
        state.end_partial_line();
        let thread = std::thread::Builder::new().name("access-log".into()).spawn(move || state.run(rx))?;
        Ok((LogSink { tx: tx.clone() }, LogWriter { thread, tx }))
    }

    /// Reopens the log file (for logrotate: rename the file, then SIGUSR1).
    /// Records queued before the call go to the old file (unless it cannot
    /// be written: then what it could not take goes to the new one). If the
    /// path cannot be opened, the old file stays in use and the reopen is
    /// retried every second.
    pub async fn reopen(&self) {
        let _ = self.tx.send(Msg::Reopen).await;
    }

    /// Applies a reloaded `[log]` section, made ready by
    /// [`PreparedLog::new`], to the records queued from now on.
    pub fn configure(&self, prepared: PreparedLog) {
        match self.tx.try_send(Msg::Configure(Box::new(prepared))) {
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

/// A `[log]` section ready to apply: the pseudonym key read (or created),
/// and a new access-log path already opened. Made before a reload swaps
/// anything, so a `[log]` that cannot be applied fails the whole reload.
pub struct PreparedLog {
    encoding: Encoding,
    target: LogTarget,
    /// The new target, opened; `None` when the path did not change.
    opened: Option<Opened>,
}

impl PreparedLog {
    /// Prepares `log` to replace a section writing to `current`: reads the
    /// pseudonym key file (creating it, mode 0600, if missing) and opens
    /// the access log if its path changed. Errors name the file at fault,
    /// as `check` does.
    pub fn new(log: &LogConfig, current: &LogTarget) -> Result<PreparedLog, crate::config::Diagnostic> {
        let whole_file = |file: &std::path::Path, message: String| crate::config::Diagnostic {
            severity: crate::config::Severity::Error,
            file: file.to_path_buf(),
            line: 0,
            col: 0,
            message,
            hint: None,
        };
        let pseudonyms = if log.pseudonymize_users {
            let key = Pseudonymizer::load_or_create(&log.pseudonym_key_file).map_err(|err| {
                whole_file(
                    &log.pseudonym_key_file,
                    format!("cannot read or create pseudonym key file: {}", reason(&err)),
                )
            })?;
            Some(key)
        } else {
            None
        };
        let encoding = Encoding { format: log.format, pseudonyms };
        let opened = if log.access_log == *current {
            None
        } else {
            let opened = open(&log.access_log).map_err(|err| match &log.access_log {
                LogTarget::File(path) => whole_file(path, format!("cannot open access log: {}", reason(&err))),
                LogTarget::Stdout => whole_file("-".as_ref(), format!("cannot write to stdout: {}", reason(&err))),
            })?;
            Some(opened)
        };
        Ok(PreparedLog { encoding, target: log.access_log.clone(), opened })
    }
}

/// An I/O error as the config diagnostics word it (lowercase, no OS code).
fn reason(err: &std::io::Error) -> String {
    let text = err.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    chars.next().map(|first| first.to_lowercase().chain(chars).collect()).unwrap_or_default()
}

/// Where lines go, opened.
struct Opened {
    out: Box<dyn Write + Send>,
    /// A second handle on the file, to see whether it was deleted and
    /// whether a path opened again is the same file; `None` for stdout.
    file: Option<std::fs::File>,
}

/// Opens where lines go: the file (appended to, created if missing) or
/// stdout.
fn open(target: &LogTarget) -> std::io::Result<Opened> {
    Ok(match target {
        LogTarget::Stdout => Opened { out: Box::new(std::io::stdout()), file: None },
        LogTarget::File(path) => {
            let file = open_append(path)?;
            Opened { file: file.try_clone().ok(), out: Box::new(file) }
        }
    })
}

/// Opens `path` for appending, creating it if missing, and refuses what is
/// not a regular file or a character device. The open itself cannot hang:
/// it is non-blocking (a FIFO without a reader fails at once instead of
/// waiting for one), the type is checked on the opened handle (so a path
/// that became a FIFO after `check` is still refused), and only then are
/// writes made blocking again.
fn open_append(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOCTTY;
    let refused = |kind: &str| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is {kind}, not a regular file", path.display()),
        )
    };
    let fd = match rustix::fs::open(path, flags | OFlags::NONBLOCK, Mode::from_bits_truncate(0o666)) {
        Ok(fd) => fd,
        Err(err) => {
            // A FIFO without a reader, or a socket: say what it is.
            let kind = std::fs::metadata(path).ok().and_then(|meta| crate::config::refused_log_kind(&meta.file_type()));
            return Err(kind.map_or_else(|| err.into(), refused));
        }
    };
    let file = std::fs::File::from(fd);
    if let Some(kind) = crate::config::refused_log_kind(&file.metadata()?.file_type()) {
        return Err(refused(kind));
    }
    // Writes to a terminal or a slow device wait rather than fail.
    rustix::fs::fcntl_setfl(&file, rustix::fs::fcntl_getfl(&file)? - OFlags::NONBLOCK)?;
    Ok(file)
}

/// Whether `file`, a regular file at `path`, is non-empty and does not end
/// in a line end. Read through a second, read-only handle on the same
/// file (checked by device and inode); anything unexpected is `false`.
fn ends_mid_line(path: &std::path::Path, file: Option<&std::fs::File>) -> bool {
    use rustix::fs::{Mode, OFlags};
    use std::os::unix::fs::FileExt;
    let Some(meta) = file.and_then(|f| f.metadata().ok()) else { return false };
    if !meta.is_file() || meta.len() == 0 {
        return false;
    }
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    let Ok(fd) = rustix::fs::open(path, flags, Mode::empty()) else { return false };
    let reader = std::fs::File::from(fd);
    if file_id(Some(&reader)) != file_id(file) {
        return false;
    }
    let mut last = [0u8];
    reader.read_exact_at(&mut last, meta.len() - 1).is_ok() && last[0] != b'\n'
}

/// The device and inode of `file`.
fn file_id(file: Option<&std::fs::File>) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = file?.metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

/// The log cannot be written: since when, and what to do about it.
struct Failure {
    since: Instant,
    retry_at: Instant,
    reported_at: Instant,
    /// Records dropped since it began (the held records reached their bound).
    dropped: u64,
}

/// A reopen that could not open its target, tried again every second.
struct ReopenDue {
    target: LogTarget,
    since: Instant,
    retry_at: Instant,
    reported_at: Instant,
}

struct WriterState {
    /// When the write in progress began (see [`watch_writes`]).
    clock: std::sync::Arc<WriteClock>,
    out: Box<dyn Write + Send>,
    /// The file `out` writes to (see [`Opened::file`]).
    file: Option<std::fs::File>,
    /// The file was deleted and its path could not be opened again: what
    /// would be written to it is held instead (it could never be read).
    deleted: bool,
    target: LogTarget,
    encoding: Encoding,
    metrics: std::sync::Arc<Metrics>,
    line: Vec<u8>,
    /// Lines not written yet: the write buffer and, while the log cannot be
    /// written, the records held.
    pending: Vec<u8>,
    /// How many whole records `pending` holds.
    pending_records: u64,
    /// The most bytes `pending` may hold.
    held_limit: usize,
    failure: Option<Failure>,
    reopen_due: Option<ReopenDue>,
    /// How much of the first pending line the current file already has (a
    /// short write on a full disk cut it): the rest goes to the same file;
    /// a different file gets the whole line.
    head_sent: usize,
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
                    if self.failure.is_some() || self.reopen_due.is_some() {
                        // Something to retry: wake for it even if no record
                        // comes.
                        std::thread::sleep(TROUBLED_POLL);
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
                Msg::Reopen => self.reopen(),
                Msg::Configure(prepared) => {
                    let PreparedLog { encoding, target, opened } = *prepared;
                    self.encoding = encoding;
                    if let Some(opened) = opened {
                        // What is pending goes to the old file first.
                        self.write_out();
                        self.reopen_due = None;
                        self.switch_to(target, opened, None);
                    }
                }
                Msg::Close => break,
            }
        }
        self.finish();
    }

    /// Encodes the record into the pending lines; writes them out once
    /// there is a buffer's worth. While the log cannot be written the lines
    /// are held, up to the bound; a record beyond it is dropped and counted.
    fn write(&mut self, record: &Record) {
        self.line.clear();
        self.encoding.encode(record, &mut self.line);
        if self.line.is_empty() {
            return;
        }
        if self.pending.len() + self.line.len() > self.held_limit && self.failure.is_none() {
            self.write_out();
        }
        if self.pending.len() + self.line.len() > self.held_limit {
            self.metrics.log_dropped.inc();
            if let Some(failure) = &mut self.failure {
                if failure.dropped == 0 {
                    tracing::error!(
                        held = self.pending_records,
                        limit_bytes = self.held_limit,
                        target = ?self.target,
                        "access log still cannot be written and the records held in memory reached their bound: \
                         further records are dropped (counted in socialgate_access_log_dropped_records_total)"
                    );
                }
                failure.dropped += 1;
            }
            return;
        }
        self.pending.extend_from_slice(&self.line);
        self.pending_records += 1;
        if self.failure.is_some() {
            self.metrics.log_held.set(i64::try_from(self.pending_records).unwrap_or(i64::MAX));
        } else if self.pending.len() >= BUFFER {
            self.write_out();
        }
    }

    /// Writes the pending lines out, unless the log is failing and its next
    /// retry is not due yet; retries a due reopen first.
    fn flush(&mut self) {
        let now = Instant::now();
        if self.reopen_due.as_ref().is_some_and(|due| now >= due.retry_at) {
            self.retry_reopen();
        }
        if self.failure.as_ref().is_some_and(|failure| now < failure.retry_at) {
            return;
        }
        self.write_out();
    }

    /// Writes the pending lines to the current file, or, if that fails, to
    /// the target opened again (a replaced file, a remounted filesystem).
    /// Whatever could not be written stays pending.
    fn write_out(&mut self) {
        let clock = self.clock.clone();
        let _writing = clock.writing();
        if !self.pending.is_empty() {
            // One fstat per write: records must not go where no one can
            // read them.
            self.check_deleted();
        }
        if self.deleted {
            match open(&self.target) {
                Ok(opened) => self.install(opened),
                Err(err) => return self.failed(&err),
            }
        }
        let err = match self.drain() {
            Ok(()) => return self.written(),
            Err(err) => err,
        };
        if matches!(self.target, LogTarget::File(_))
            && let Ok(opened) = open(&self.target)
        {
            self.install(opened);
            if self.drain().is_ok() {
                return self.written();
            }
        }
        self.failed(&err);
    }

    /// Writes to `opened` from now on. A different file than the current
    /// one gets whole lines only.
    fn install(&mut self, opened: Opened) {
        let same = file_id(self.file.as_ref()).is_some_and(|id| file_id(opened.file.as_ref()) == Some(id));
        self.out = opened.out;
        self.file = opened.file;
        self.deleted = false;
        if !same {
            self.head_sent = 0;
            self.end_partial_line();
        }
    }

    /// A file another writer left ending part-way through a line (killed
    /// mid-write, or stopped by a full disk) gets a line end first: our
    /// first record would otherwise be glued to that fragment, one invalid
    /// line to `report`, the record lost. (Not for the file this writer
    /// itself cut short: the rest of that line follows, see `head_sent`.)
    fn end_partial_line(&mut self) {
        if let LogTarget::File(path) = &self.target
            && ends_mid_line(path, self.file.as_ref())
            && let Err(err) = self.out.write_all(b"\n")
        {
            tracing::warn!(%err, target = ?self.target, "cannot end the partial last line of the access log");
        }
    }

    /// A log file deleted while in use (`rm`, or its folder removed) takes
    /// writes that nobody can ever read: open the path again, or hold the
    /// records until it can be.
    fn check_deleted(&mut self) {
        use std::os::unix::fs::MetadataExt;
        let unlinked = self.file.as_ref().and_then(|f| f.metadata().ok()).is_some_and(|m| m.nlink() == 0);
        if self.deleted || !unlinked {
            return;
        }
        match open(&self.target) {
            Ok(opened) => {
                tracing::warn!(target = ?self.target, "the access log file was deleted; writing to a new one at its path");
                self.install(opened);
            }
            Err(err) => {
                tracing::error!(
                    %err,
                    target = ?self.target,
                    "the access log file was deleted and its path cannot be opened"
                );
                self.deleted = true;
            }
        }
    }

    /// Writes the pending lines to the current file; what was written
    /// leaves `pending` (and is counted) even if the rest fails.
    fn drain(&mut self) -> std::io::Result<()> {
        let mut sent = self.head_sent.min(self.pending.len());
        let result = loop {
            if sent == self.pending.len() {
                break self.out.flush();
            }
            match self.out.write(&self.pending[sent..]) {
                Ok(0) => break Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => sent += n,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) => break Err(err),
            }
        };
        // Whole lines leave; a line the write stopped in stays, with how
        // much of it this file has.
        let done = if sent == self.pending.len() {
            sent
        } else {
            self.pending[..sent].iter().rposition(|&b| b == b'\n').map_or(0, |at| at + 1)
        };
        self.head_sent = sent - done;
        let records = if done == self.pending.len() {
            self.pending_records
        } else {
            self.pending[..done].iter().filter(|&&b| b == b'\n').count() as u64
        };
        self.pending.drain(..done);
        self.pending_records = self.pending_records.saturating_sub(records);
        self.metrics.log_records.inc_by(records);
        result
    }

    /// Everything pending was written: ends a failure, if there was one.
    fn written(&mut self) {
        if let Some(failure) = self.failure.take() {
            self.metrics.log_held.set(0);
            // Give back the memory the held records took.
            if self.pending.capacity() > 2 * BUFFER {
                self.pending = Vec::with_capacity(BUFFER);
            }
            tracing::warn!(
                target = ?self.target,
                failed_for = ?failure.since.elapsed(),
                dropped = failure.dropped,
                "access log can be written again; the records held were written"
            );
        }
    }

    fn failed(&mut self, err: &std::io::Error) {
        self.metrics.log_write_errors.inc();
        self.metrics.log_held.set(i64::try_from(self.pending_records).unwrap_or(i64::MAX));
        let now = Instant::now();
        match &mut self.failure {
            None => {
                tracing::error!(
                    %err,
                    target = ?self.target,
                    held = self.pending_records,
                    "cannot write the access log; the proxy carries on, holding records in memory \
                     (up to {} MiB) and retrying every second",
                    self.held_limit / (1024 * 1024)
                );
                self.failure = Some(Failure { since: now, retry_at: now + RETRY_EVERY, reported_at: now, dropped: 0 });
            }
            Some(failure) => {
                failure.retry_at = now + RETRY_EVERY;
                if now.duration_since(failure.reported_at) >= REPORT_EVERY {
                    failure.reported_at = now;
                    tracing::error!(
                        %err,
                        target = ?self.target,
                        failing_for = ?failure.since.elapsed(),
                        held = self.pending_records,
                        dropped = failure.dropped,
                        "access log still cannot be written"
                    );
                }
            }
        }
    }

    /// Writes what is pending into the old file, then opens the target
    /// again. If opening fails the old file stays in use and the reopen is
    /// tried again every second.
    fn reopen(&mut self) {
        self.write_out();
        // A new request replaces one still due.
        let due = self.reopen_due.take();
        let target = due.map_or_else(|| self.target.clone(), |due| due.target);
        self.open_target(target, None);
    }

    fn retry_reopen(&mut self) {
        if let Some(due) = self.reopen_due.take() {
            let target = due.target.clone();
            self.open_target(target, Some(due));
        }
    }

    /// Writes to `opened`, the target `target`, from now on.
    fn switch_to(&mut self, target: LogTarget, opened: Opened, due: Option<ReopenDue>) {
        self.install(opened);
        match due {
            None => tracing::info!(target = ?target, "access log reopened"),
            Some(due) => tracing::warn!(
                target = ?target,
                after = ?due.since.elapsed(),
                "access log reopened at last"
            ),
        }
        self.target = target;
        if self.failure.is_some() {
            // What the old file could not take goes to the new one.
            self.write_out();
        }
    }

    fn open_target(&mut self, target: LogTarget, due: Option<ReopenDue>) {
        match open(&target) {
            Ok(opened) => self.switch_to(target, opened, due),
            Err(err) => {
                self.metrics.log_write_errors.inc();
                let now = Instant::now();
                let due = match due {
                    None => {
                        tracing::error!(
                            %err,
                            target = ?target,
                            "cannot reopen the access log; still writing to the old file, retrying every second"
                        );
                        ReopenDue { target, since: now, retry_at: now, reported_at: now }
                    }
                    Some(mut due) => {
                        if now.duration_since(due.reported_at) >= REPORT_EVERY {
                            due.reported_at = now;
                            tracing::error!(
                                %err,
                                target = ?due.target,
                                failing_for = ?due.since.elapsed(),
                                "access log still cannot be reopened; still writing to the old file"
                            );
                        }
                        due
                    }
                };
                self.reopen_due = Some(ReopenDue { retry_at: now + RETRY_EVERY, ..due });
            }
        }
    }

    /// The last write, at close: what cannot be written now is lost, and
    /// said so.
    fn finish(&mut self) {
        self.write_out();
        if self.pending_records > 0 {
            self.metrics.log_dropped.inc_by(self.pending_records);
            tracing::error!(
                lost = self.pending_records,
                target = ?self.target,
                "access log cannot be written at shutdown: records held in memory are lost"
            );
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
            content_type: None,
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

    fn mkfifo(path: &std::path::Path) {
        let mode = rustix::fs::Mode::from_bits_truncate(0o600);
        rustix::fs::mknodat(rustix::fs::CWD, path, rustix::fs::FileType::Fifo, mode, 0).unwrap();
    }

    /// `LogWriter::start` on `target`, on a thread of its own so a hang is
    /// a failure, not a stuck test.
    fn start_within_5s(target: LogTarget) -> Result<(), String> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let started = LogWriter::start(&log(target), 0, Arc::default());
            let _ = tx.send(started.map(drop).map_err(|err| err.to_string()));
        });
        rx.recv_timeout(Duration::from_secs(5)).expect("opening the access log hung")
    }

    /// Regression: a FIFO at the access-log path blocked the open until a
    /// reader came (at start, and on a SIGUSR1 reopen, hanging the writer
    /// thread); with a reader, the writer could stall on it.
    #[tokio::test]
    async fn a_fifo_at_the_log_path_is_refused_at_once_at_start_and_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.log");
        mkfifo(&fifo);
        let err = start_within_5s(LogTarget::File(fifo.clone())).unwrap_err();
        assert!(err.contains("is a FIFO (named pipe), not a regular file"), "{err}");
        // With a reader the open succeeds: the type check on the handle refuses it.
        let _reader = rustix::fs::open(
            &fifo,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        let err = start_within_5s(LogTarget::File(fifo.clone())).unwrap_err();
        assert!(err.contains("is a FIFO (named pipe), not a regular file"), "{err}");
        // A character device is fine.
        start_within_5s(LogTarget::File("/dev/null".into())).unwrap();

        // logrotate's rename, then something put a FIFO at the path: the
        // reopen fails at once and the old file carries on.
        let path = dir.path().join("access.log");
        let (sink, writer) = LogWriter::start(&log(LogTarget::File(path.clone())), 0, Arc::default()).unwrap();
        sink.send(record(0)).await;
        wait_for_lines(&path, 1).await;
        let rotated = dir.path().join("access.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        mkfifo(&path);
        writer.reopen().await;
        sink.send(record(1)).await;
        wait_for_lines(&rotated, 2).await;
        tokio::time::timeout(Duration::from_secs(5), writer.close()).await.expect("close hung");
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

    /// Regression (found while modelling a crashed writer for
    /// `report::props::invalid_lines_are_counted_and_located_and_whole_records_kept`):
    /// a log left ending part-way through a record (the proxy killed
    /// mid-write, or stopped on a full disk) had the next record appended
    /// to that fragment, at start and on a reopen alike: one invalid line
    /// to `report`, and a record lost.
    #[tokio::test]
    async fn a_record_after_a_cut_line_starts_a_line_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let cut = r#"{"ts":"2026-11-26T09:15:02.481Z","cli"#;
        std::fs::write(&path, cut).unwrap();
        let (sink, writer) = LogWriter::start(&log(LogTarget::File(path.clone())), 0, Arc::default()).unwrap();
        sink.send(record(1)).await;
        wait_for_lines(&path, 2).await;
        std::fs::rename(&path, dir.path().join("access.log.1")).unwrap();
        std::fs::write(&path, format!("{cut}\n{cut}")).unwrap();
        writer.reopen().await;
        sink.send(record(2)).await;
        writer.close().await;
        let paths = [dir.path().join("access.log.1"), path];
        let mut read = Vec::new();
        let outcome = crate::report::input::for_each_record(&paths, |rec| read.push(rec.line.bytes_up));
        assert_eq!(read, [1, 2], "every record written is read");
        let bad: Vec<u64> = outcome.bad.first.iter().map(|b| b.line).collect();
        assert_eq!(bad, [1, 1, 2], "only the fragments are invalid");
        // A file that ends in a line end, or is empty, gets nothing added.
        let clean = dir.path().join("clean.log");
        std::fs::write(&clean, "").unwrap();
        let (sink, writer) = LogWriter::start(&log(LogTarget::File(clean.clone())), 0, Arc::default()).unwrap();
        sink.send(record(3)).await;
        writer.close().await;
        let (sink, writer) = LogWriter::start(&log(LogTarget::File(clean.clone())), 0, Arc::default()).unwrap();
        sink.send(record(4)).await;
        writer.close().await;
        assert_eq!(std::fs::read_to_string(&clean).unwrap().lines().count(), 2);
        assert!(!std::fs::read_to_string(&clean).unwrap().contains("\n\n"));
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
        writer.configure(PreparedLog::new(&config, &config.access_log).unwrap());
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

    /// The value of the metric series `name` (exactly), if exported.
    fn metric(metrics: &Metrics, name: &str) -> Option<f64> {
        metrics.encode().lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    async fn wait_for_metric(metrics: &Metrics, name: &str, cond: impl Fn(f64) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !metric(metrics, name).is_some_and(&cond) {
            assert!(tokio::time::Instant::now() < deadline, "{name} never as expected:\n{}", metrics.encode());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A sink whose writes wait until the test opens it, as on a hung
    /// filesystem or a stdout pipe nobody reads.
    struct Gate {
        open: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
        written: Arc<std::sync::Mutex<Vec<u8>>>,
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (lock, opened) = &*self.open;
            let mut open = lock.lock().unwrap();
            while !*open {
                open = opened.wait(open).unwrap();
            }
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Regression: a write that blocked (a hung network filesystem, a
    /// reader of stdout that stopped reading) stalled the writer, and then
    /// every request, with nothing said anywhere. It is now shown in
    /// `/metrics` (and logged) while it lasts, and nothing is lost.
    #[tokio::test]
    async fn a_blocked_write_is_shown_while_it_lasts_and_nothing_is_lost() {
        let metrics = Arc::new(Metrics::new());
        let gate = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let written = Arc::new(std::sync::Mutex::new(Vec::new()));
        let out = Box::new(Gate { open: gate.clone(), written: written.clone() });
        let config = log(LogTarget::Stdout);
        let encoding = Encoding::from_config(&config).unwrap();
        let (sink, writer) = LogWriter::start_on(
            Opened { out, file: None },
            &config,
            encoding,
            0,
            metrics.clone(),
            HELD_LIMIT,
            Duration::from_millis(100),
        )
        .unwrap();
        let name = "socialgate_access_log_blocked_seconds";
        assert_eq!(metric(&metrics, name), Some(0.0));
        for n in 0..3 {
            sink.send(record(n)).await;
        }
        wait_for_metric(&metrics, name, |v| v >= 1.0).await;
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        wait_for_metric(&metrics, name, |v| v == 0.0).await;
        writer.close().await;
        let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert_eq!(metric(&metrics, "socialgate_access_log_records_total"), Some(3.0));
    }

    #[tokio::test]
    async fn records_held_while_the_log_cannot_be_written_are_written_once_it_can() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        // A full disk: /dev/full fails every write with ENOSPC.
        std::os::unix::fs::symlink("/dev/full", &path).unwrap();
        let metrics = Arc::new(Metrics::new());
        let (sink, writer) = LogWriter::start(&log(LogTarget::File(path.clone())), 0, metrics.clone()).unwrap();
        for n in 0..100 {
            sink.send(record(n)).await;
        }
        wait_for_metric(&metrics, "socialgate_access_log_held_records", |v| v == 100.0).await;
        assert!(metric(&metrics, "socialgate_access_log_write_errors_total").is_some_and(|v| v >= 1.0));

        // Room again (the path is a plain file now): the next retry writes
        // what was held, in order, with nothing else needed.
        std::fs::remove_file(&path).unwrap();
        wait_for_lines(&path, 100).await;
        for n in 100..110 {
            sink.send(record(n)).await;
        }
        writer.close().await;
        let text = std::fs::read_to_string(&path).unwrap();
        let order: Vec<u64> =
            text.lines().map(|l| serde_json::from_str::<Record>(l).map(|r| r.bytes_up).unwrap()).collect();
        assert_eq!(order, (0..110).collect::<Vec<_>>());
        assert_eq!(metric(&metrics, "socialgate_access_log_records_total"), Some(110.0));
        assert_eq!(metric(&metrics, "socialgate_access_log_held_records"), Some(0.0));
        assert_eq!(metric(&metrics, "socialgate_access_log_dropped_records_total"), Some(0.0));
    }

    #[tokio::test]
    async fn a_log_that_stays_unwritable_holds_a_bounded_number_of_records_and_never_makes_senders_wait() {
        let metrics = Arc::new(Metrics::new());
        let line_len = {
            let mut line = Vec::new();
            Encoding::from_config(&log(LogTarget::Stdout)).unwrap().encode(&record(10_000), &mut line);
            line.len()
        };
        let target = LogTarget::File("/dev/full".into());
        let (sink, writer) = LogWriter::start_holding(&log(target), 0, metrics.clone(), 50 * line_len).unwrap();
        // Far more than the channel holds: the writer keeps taking them in.
        let sending = async {
            for n in 10_000..30_000 {
                sink.send(record(n)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), sending).await.expect("senders waited on a failing log");
        wait_for_metric(&metrics, "socialgate_access_log_dropped_records_total", |v| v == 19_950.0).await;
        assert_eq!(metric(&metrics, "socialgate_access_log_held_records"), Some(50.0));
        tokio::time::timeout(Duration::from_secs(5), writer.close()).await.expect("close waited on a failing log");
        // What was held could not be written at close either: counted too.
        assert_eq!(metric(&metrics, "socialgate_access_log_dropped_records_total"), Some(20_000.0));
        assert_eq!(metric(&metrics, "socialgate_access_log_records_total"), Some(0.0));
    }

    #[tokio::test]
    async fn a_reopen_that_cannot_open_the_path_is_retried_until_it_can() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let (sink, writer) = LogWriter::start(&log(LogTarget::File(path.clone())), 0, Arc::default()).unwrap();
        for n in 0..10 {
            sink.send(record(n)).await;
        }
        wait_for_lines(&path, 10).await;
        let rotated = dir.path().join("access.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        // Something took the name: the reopen fails, the old file carries on.
        std::fs::create_dir(&path).unwrap();
        writer.reopen().await;
        for n in 10..20 {
            sink.send(record(n)).await;
        }
        wait_for_lines(&rotated, 20).await;
        // The name is free again: a retry opens it, without another SIGUSR1.
        std::fs::remove_dir(&path).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !path.is_file() {
            assert!(tokio::time::Instant::now() < deadline, "the reopen was never retried");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for n in 20..30 {
            sink.send(record(n)).await;
        }
        writer.close().await;
        assert_eq!(std::fs::read_to_string(&rotated).unwrap().lines().count(), 20);
        let new = std::fs::read_to_string(&path).unwrap();
        let first: Record = serde_json::from_str(new.lines().next().unwrap()).unwrap();
        assert_eq!((new.lines().count(), first.bytes_up), (10, 20));
    }

    /// Room left and bytes written.
    type Disk = Arc<std::sync::Mutex<(usize, Vec<u8>)>>;

    /// A disk that takes `room` more bytes, then fails with ENOSPC.
    struct FillingDisk(Disk);

    impl Write for FillingDisk {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut disk = self.0.lock().unwrap();
            let n = disk.0.min(buf.len());
            if n == 0 {
                return Err(std::io::Error::from_raw_os_error(28));
            }
            disk.0 -= n;
            disk.1.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn filling_disk_state(path: &std::path::Path) -> (WriterState, Disk) {
        let config = log(LogTarget::File(path.to_owned()));
        let disk = Arc::new(std::sync::Mutex::new((usize::MAX, Vec::new())));
        let state = WriterState {
            clock: Arc::new(WriteClock::new()),
            out: Box::new(FillingDisk(disk.clone())),
            file: None,
            deleted: false,
            target: config.access_log.clone(),
            encoding: Encoding::from_config(&config).unwrap(),
            metrics: Arc::default(),
            line: Vec::new(),
            pending: Vec::new(),
            pending_records: 0,
            held_limit: HELD_LIMIT,
            failure: None,
            reopen_due: None,
            head_sent: 0,
        };
        (state, disk)
    }

    fn order(text: &[u8]) -> Vec<u64> {
        let text = std::str::from_utf8(text).unwrap();
        text.lines().map(|l| serde_json::from_str::<Record>(l).map(|r| r.bytes_up).unwrap()).collect()
    }

    #[test]
    fn a_line_cut_by_a_full_disk_is_finished_in_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let (mut state, disk) = filling_disk_state(&dir.path().join("access.log"));
        state.write(&record(0));
        let first_len = state.pending.len();
        state.write(&record(1));
        // Room for the first line and ten bytes of the second.
        disk.lock().unwrap().0 = first_len + 10;
        assert!(state.drain().is_err());
        assert_eq!((state.pending_records, state.head_sent), (1, 10));
        disk.lock().unwrap().0 = usize::MAX;
        assert!(state.drain().is_ok());
        assert_eq!(order(&disk.lock().unwrap().1), [0, 1], "the rest of the line, not the line again");
    }

    #[test]
    fn a_line_cut_by_a_full_disk_goes_whole_to_another_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let (mut state, disk) = filling_disk_state(&path);
        state.write(&record(0));
        let first_len = state.pending.len();
        state.write(&record(1));
        disk.lock().unwrap().0 = first_len + 10;
        // The disk stays full; the path opens another file, which gets the
        // cut record whole (not the second half of a line).
        state.write_out();
        assert!(state.failure.is_none());
        assert_eq!(order(&std::fs::read(&path).unwrap()), [1]);
        assert_eq!(disk.lock().unwrap().1.len(), first_len + 10);
    }

    #[tokio::test]
    async fn a_deleted_log_file_is_replaced_and_a_removed_folder_holds_records_until_it_is_back() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("logs");
        std::fs::create_dir(&folder).unwrap();
        let path = folder.join("access.log");
        let metrics = Arc::new(Metrics::new());
        let (sink, writer) = LogWriter::start(&log(LogTarget::File(path.clone())), 0, metrics.clone()).unwrap();
        sink.send(record(0)).await;
        wait_for_lines(&path, 1).await;
        // `rm access.log`, no SIGUSR1: the next records find a new file.
        std::fs::remove_file(&path).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut n = 1;
        while !path.exists() {
            assert!(tokio::time::Instant::now() < deadline, "records still go to the deleted file");
            sink.send(record(n)).await;
            n += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let first: Record = serde_json::from_str(&wait_for_lines(&path, 1).await[0]).unwrap();
        assert_eq!(first.bytes_up, 1, "the first record after the deletion starts the new file");

        // The whole folder goes: records are held until it is back.
        std::fs::remove_dir_all(&folder).unwrap();
        let held_from = n;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while metric(&metrics, "socialgate_access_log_held_records").is_none_or(|v| v < 1.0) {
            assert!(tokio::time::Instant::now() < deadline, "records still go to the deleted file");
            sink.send(record(n)).await;
            n += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        std::fs::create_dir(&folder).unwrap();
        writer.close().await;
        let text = std::fs::read(&path).unwrap();
        let written = order(&text);
        assert_eq!(written.first(), Some(&held_from), "nothing went to the deleted file: {written:?}");
        assert_eq!(written.last(), Some(&(n - 1)), "{written:?}");
        assert!(written.windows(2).all(|w| w[1] == w[0] + 1), "{written:?}");
    }
}
