//! The access-log writer: one task fed by a bounded channel. When it falls
//! behind, senders wait (backpressure); no record is ever dropped. Records
//! are written as JSON Lines to a file (appended) or stdout, flushed at least
//! once a second and when the writer is closed.

use std::io::Write;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Record;
use crate::config::LogTarget;

/// How many records may wait for the writer before senders wait.
const CHANNEL_CAPACITY: usize = 4096;

/// Sends records to the writer task. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LogSink {
    tx: mpsc::Sender<Record>,
}

impl LogSink {
    /// Queues a record, waiting while the writer is behind. A record sent
    /// after the writer stopped is reported through tracing.
    pub async fn send(&self, record: Record) {
        if let Err(err) = self.tx.send(record).await {
            tracing::error!(record = ?err.0, "access log writer has stopped; record not written");
        }
    }

    /// Queues a record from a synchronous context (a `Drop`): immediately if
    /// there is room, else from a spawned task that waits for room.
    pub fn send_detached(&self, record: Record) {
        match self.tx.try_send(record) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(record)) => match tokio::runtime::Handle::try_current() {
                Ok(handle) => {
                    let sink = self.clone();
                    handle.spawn(async move { sink.send(record).await });
                }
                Err(_) => tracing::error!(?record, "no runtime to queue access-log record"),
            },
            Err(mpsc::error::TrySendError::Closed(record)) => {
                tracing::error!(?record, "access log writer has stopped; record not written");
            }
        }
    }
}

/// The running writer task.
#[derive(Debug)]
pub struct LogWriter {
    task: JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl LogWriter {
    /// Opens `target` (a file is appended to and created if missing; its
    /// folder must exist) and starts the writer task.
    // TODO(squid-format): pick the line encoder from `[log] format`.
    // TODO(pseudonyms): map `user` through the HMAC key before encoding.
    // TODO(sigusr1): reopen the file on request (logrotate).
    pub fn start(target: &LogTarget) -> std::io::Result<(LogSink, LogWriter)> {
        let out: Box<dyn Write + Send> = match target {
            LogTarget::Stdout => Box::new(std::io::stdout()),
            LogTarget::File(path) => Box::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?),
        };
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let (stop, stop_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(write_loop(std::io::BufWriter::new(out), rx, stop_rx));
        Ok((LogSink { tx }, LogWriter { task, stop }))
    }

    /// Writes everything already queued, flushes, and ends the task. Call
    /// after the last request has finished.
    pub async fn close(self) {
        let _ = self.stop.send(());
        if let Err(err) = self.task.await {
            tracing::error!(%err, "access log writer failed");
        }
    }
}

async fn write_loop(
    mut out: std::io::BufWriter<Box<dyn Write + Send>>,
    mut rx: mpsc::Receiver<Record>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut dirty = false;
    loop {
        tokio::select! {
            record = rx.recv() => match record {
                Some(record) => {
                    write_record(&mut out, &record);
                    dirty = true;
                }
                None => break,
            },
            _ = tick.tick() => {
                if dirty {
                    flush(&mut out);
                    dirty = false;
                }
            }
            _ = &mut stop => {
                while let Ok(record) = rx.try_recv() {
                    write_record(&mut out, &record);
                }
                break;
            }
        }
    }
    flush(&mut out);
}

// Blocking writes on a BufWriter: the buffer absorbs them and a flush is at
// most once per tick. A slow disk slows the writer, which slows senders.
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
