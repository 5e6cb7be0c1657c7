//! Zero-copy tunnel pump (Linux `splice(2)`): a tunnel between two plain
//! TCP sockets moves its bytes socket → pipe → socket inside the kernel,
//! never through user memory.
//!
//! A direction borrows a pipe from a small per-thread pool only from a
//! splice that brought bytes in until they are all out again, so an idle
//! tunnel holds no pipe (no descriptors, no buffer) and a busy one reuses
//! warm pipes. A pipe that still holds bytes when its tunnel ends is closed,
//! never pooled.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustix::pipe::{PipeFlags, SpliceFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::access_log::ClosedBy;

/// Bytes a pipe is asked to hold (the kernel rounds it to pages). The
/// default 64 KiB caps one splice at 16 socket buffer fragments and cost
/// twice the system calls; 1 MiB measured no faster than 256 KiB, and the
/// kernel charges a user's pipes by size (`fs.pipe-user-pages-soft`, 64 MiB
/// for an unprivileged user), so more tunnels can be busy at once with these.
const PIPE_BYTES: usize = 256 * 1024;
/// Spare pipes kept per runtime thread.
const POOL_MAX: usize = 8;

/// One pipe: the read end, the write end, what it holds and how much it can.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
}

thread_local! {
    /// Empty pipes not lent to a direction right now.
    static POOL: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

impl Pipe {
    /// A pipe from this thread's pool, or a new one.
    fn lend() -> io::Result<Pipe> {
        if let Some(pipe) = POOL.with_borrow_mut(Vec::pop) {
            return Ok(pipe);
        }
        let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        // A larger pipe moves more per system call; where the limit forbids
        // it the default size works as well.
        let capacity = rustix::pipe::fcntl_setpipe_size(&write, PIPE_BYTES)
            .or_else(|_| rustix::pipe::fcntl_getpipe_size(&write))
            .unwrap_or(64 * 1024);
        Ok(Pipe { read, write, capacity })
    }

    /// Returns an empty pipe to this thread's pool (closed when it is full).
    fn give_back(self) {
        POOL.with_borrow_mut(|pool| {
            if pool.len() < POOL_MAX {
                pool.push(self);
            }
        });
    }
}

/// How one direction ended, when not by a clean end of stream.
enum Failed {
    /// Reading from the sending side failed.
    Read,
    /// Writing to the receiving side failed.
    Write,
    /// No pipe could be had (out of descriptors).
    Pipe,
}

/// When either direction last moved bytes (milliseconds after `start`):
/// what the idle deadline counts from.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Moves `from`'s bytes to `to` until `from` ends its stream, then shuts
/// `to`'s write half. `moved` counts the bytes delivered.
async fn one_way(from: &TcpStream, to: &TcpStream, moved: &AtomicU64, activity: &Activity) -> Result<(), Failed> {
    loop {
        from.readable().await.map_err(|_| Failed::Read)?;
        let pipe = Pipe::lend().map_err(|_| Failed::Pipe)?;
        let filled = from.try_io(Interest::READABLE, || {
            Ok(rustix::pipe::splice(from, None, &pipe.write, None, pipe.capacity, SpliceFlags::NONBLOCK)?)
        });
        let mut left = match filled {
            Ok(0) => {
                pipe.give_back();
                let _ = rustix::net::shutdown(to, rustix::net::Shutdown::Write);
                return Ok(());
            }
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                pipe.give_back();
                continue;
            }
            Err(_) => return Err(Failed::Read),
        };
        while left > 0 {
            to.writable().await.map_err(|_| Failed::Write)?;
            let sent = to.try_io(Interest::WRITABLE, || {
                Ok(rustix::pipe::splice(&pipe.read, None, to, None, left, SpliceFlags::NONBLOCK)?)
            });
            match sent {
                // A socket that takes nothing from a full pipe is gone.
                Ok(0) => return Err(Failed::Write),
                Ok(n) => {
                    left -= n;
                    moved.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Err(Failed::Write),
            }
        }
        pipe.give_back();
        activity.touch();
    }
}

/// Copies both ways between two plain TCP sockets; returns (client→origin
/// bytes, origin→client bytes, who ended it) with the same rules as the
/// buffered copy: when one side closes, the other's write half is shut and
/// the copy runs on until it closes too (or idles out); `stop` ends it
/// early with the reason it gives (shutdown, policy).
pub(crate) async fn pump<F>(client: &TcpStream, origin: &TcpStream, idle: Duration, stop: F) -> (u64, u64, ClosedBy)
where
    F: Future<Output = ClosedBy>,
{
    let (up, down) = (AtomicU64::new(0), AtomicU64::new(0));
    let activity = Activity { start: Instant::now(), last_ms: AtomicU64::new(0) };
    let upward = one_way(client, origin, &up, &activity);
    let downward = one_way(origin, client, &down, &activity);
    tokio::pin!(upward, downward, stop);
    let (mut client_open, mut origin_open) = (true, true);
    let mut first_close: Option<ClosedBy> = None;
    let idle_timer = tokio::time::sleep(idle);
    tokio::pin!(idle_timer);
    let closed_by = loop {
        if !client_open && !origin_open {
            break first_close.unwrap_or(ClosedBy::Client);
        }
        tokio::select! {
            ended = &mut upward, if client_open => match ended {
                Ok(()) => {
                    client_open = false;
                    first_close.get_or_insert(ClosedBy::Client);
                }
                Err(Failed::Read) => break first_close.unwrap_or(ClosedBy::Client),
                Err(Failed::Write) => break first_close.unwrap_or(ClosedBy::Origin),
                Err(Failed::Pipe) => break ClosedBy::Error,
            },
            ended = &mut downward, if origin_open => match ended {
                Ok(()) => {
                    origin_open = false;
                    first_close.get_or_insert(ClosedBy::Origin);
                }
                Err(Failed::Read) => break first_close.unwrap_or(ClosedBy::Origin),
                Err(Failed::Write) => break first_close.unwrap_or(ClosedBy::Client),
                Err(Failed::Pipe) => break ClosedBy::Error,
            },
            () = &mut idle_timer => {
                let deadline = activity.last() + idle;
                if Instant::now() >= deadline {
                    break first_close.unwrap_or(ClosedBy::Timeout);
                }
                idle_timer.as_mut().reset(deadline);
            }
            reason = &mut stop => break reason,
        }
    };
    (up.load(Ordering::Relaxed), down.load(Ordering::Relaxed), closed_by)
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A connected loopback pair: (the end the pump holds, the far end).
    async fn pair() -> io::Result<(TcpStream, TcpStream)> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let near = TcpStream::connect(listener.local_addr()?).await?;
        let (far, _) = listener.accept().await?;
        Ok((near, far))
    }

    #[tokio::test]
    async fn bytes_cross_both_ways_and_half_closes_follow() -> io::Result<()> {
        let (client_near, mut client_far) = pair().await?;
        let (origin_near, mut origin_far) = pair().await?;
        let pumping = tokio::spawn(async move {
            pump(&client_near, &origin_near, Duration::from_secs(10), std::future::pending()).await
        });
        let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let expected = payload.clone();
        let sending = tokio::spawn(async move {
            client_far.write_all(&payload).await?;
            client_far.shutdown().await?;
            let mut back = Vec::new();
            client_far.read_to_end(&mut back).await?;
            io::Result::Ok(back)
        });
        let mut got = Vec::new();
        origin_far.read_to_end(&mut got).await?;
        assert!(got == expected, "the origin got {} bytes, not the {} sent", got.len(), expected.len());
        origin_far.write_all(b"answer").await?;
        origin_far.shutdown().await?;
        let back = tokio::time::timeout(Duration::from_secs(10), sending).await??;
        assert_eq!(back?, b"answer");
        let (up, down, closed_by) = tokio::time::timeout(Duration::from_secs(10), pumping).await??;
        assert_eq!((up, down), (3_000_000, 6));
        assert_eq!(closed_by, ClosedBy::Client);
        Ok(())
    }

    #[tokio::test]
    async fn an_idle_tunnel_times_out() -> io::Result<()> {
        let (client_near, _client_far) = pair().await?;
        let (origin_near, _origin_far) = pair().await?;
        let (_, _, closed_by) = tokio::time::timeout(
            Duration::from_secs(10),
            pump(&client_near, &origin_near, Duration::from_millis(100), std::future::pending()),
        )
        .await?;
        assert_eq!(closed_by, ClosedBy::Timeout);
        Ok(())
    }

    #[tokio::test]
    async fn stop_ends_the_pump_with_its_reason() -> io::Result<()> {
        let (client_near, _client_far) = pair().await?;
        let (origin_near, _origin_far) = pair().await?;
        let (_, _, closed_by) = tokio::time::timeout(
            Duration::from_secs(10),
            pump(&client_near, &origin_near, Duration::from_secs(60), async { ClosedBy::Policy }),
        )
        .await?;
        assert_eq!(closed_by, ClosedBy::Policy);
        Ok(())
    }
}
