//! The access-log writer: one thread fed by a bounded channel. When it falls
//! behind, senders wait (backpressure); no record is ever dropped. Records
//! are written as JSON Lines to a file (appended) or stdout, flushed whenever
//! the queue runs empty, at least once a second under load, and on close.
//! The writing happens on its own thread so file I/O never blocks the
//! runtime.

use std::io::Write;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::Record;
use crate::config::LogTarget;

/// How many records may wait for the writer before senders wait, on top of
/// one reserved slot per possible client connection.
const CHANNEL_SLACK: usize = 4096;

/// Under continuous load, flush at least this often.
const FLUSH_EVERY: Duration = Duration::from_millis(500);

enum Msg {
    Record(Box<Record>),
    Close,
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
    /// Opens `target` (a file is appended to and created if missing; its
    /// folder must exist) and starts the writer thread.
    ///
    /// `max_in_flight` is how many records may be held reserved at once (one
    /// per client connection); the channel has room for them plus some slack,
    /// so reservations never starve the rest.
    // TODO(squid-format): pick the line encoder from `[log] format`.
    // TODO(pseudonyms): map `user` through the HMAC key before encoding.
    // TODO(sigusr1): reopen the file on request (logrotate).
    pub fn start(target: &LogTarget, max_in_flight: usize) -> std::io::Result<(LogSink, LogWriter)> {
        let out: Box<dyn Write + Send> = match target {
            LogTarget::Stdout => Box::new(std::io::stdout()),
            LogTarget::File(path) => Box::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?),
        };
        let (tx, rx) = mpsc::channel(max_in_flight.saturating_add(CHANNEL_SLACK));
        let thread = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_loop(std::io::BufWriter::new(out), rx))?;
        Ok((LogSink { tx: tx.clone() }, LogWriter { thread, tx }))
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

fn write_loop(mut out: std::io::BufWriter<Box<dyn Write + Send>>, mut rx: mpsc::Receiver<Msg>) {
    let mut last_flush = Instant::now();
    loop {
        let msg = match rx.try_recv() {
            Ok(msg) => msg,
            Err(mpsc::error::TryRecvError::Empty) => {
                // Caught up: flush, then sleep until the next record.
                flush(&mut out);
                last_flush = Instant::now();
                match rx.blocking_recv() {
                    Some(msg) => msg,
                    None => break,
                }
            }
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        };
        match msg {
            Msg::Record(record) => {
                write_record(&mut out, &record);
                if last_flush.elapsed() >= FLUSH_EVERY {
                    flush(&mut out);
                    last_flush = Instant::now();
                }
            }
            Msg::Close => break,
        }
    }
    flush(&mut out);
}

fn write_record(out: &mut impl Write, record: &Record) {
    let result =
        serde_json::to_writer(&mut *out, record).map_err(std::io::Error::from).and_then(|()| out.write_all(b"\n"));
    if let Err(err) = result {
        tracing::error!(%err, "cannot write access-log record");
    }
}

fn flush(out: &mut impl Write) {
    if let Err(err) = out.flush() {
        tracing::error!(%err, "cannot flush access log");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::access_log::ClosedBy;
    use crate::policy::Action;

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
        }
    }

    #[tokio::test]
    async fn every_record_is_written_and_flushed_on_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        // Few slots: senders must wait for the writer, never drop.
        let (sink, writer) = LogWriter::start(&LogTarget::File(path.clone()), 0).unwrap();
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
        assert!(LogWriter::start(&target, 0).is_err());
    }
}
