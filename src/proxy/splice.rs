//! Zero-copy tunnel pump (Linux `splice(2)`): a tunnel between two plain
//! TCP sockets moves its bytes socket → pipe → socket inside the kernel,
//! never through user memory.
//!
//! A direction borrows a pipe from a small per-thread pool only from a
//! splice that brought bytes in until they are all out again, so an idle
//! tunnel holds no pipe (no descriptors, no buffer) and a busy one reuses
//! warm pipes. A pipe that still holds bytes when its tunnel ends is closed,
//! never pooled. When no pipe can be made (out of descriptors), the bytes
//! go through a 64 KiB buffer instead: slower, but the tunnel lives on.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
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

/// One pipe: its two ends and how many bytes it can hold.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
}

thread_local! {
    /// Empty pipes not lent to a direction right now.
    static POOL: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

#[cfg(test)]
thread_local! {
    /// Tests of the fallback: no pipe can be had on this thread.
    static NO_PIPES: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Pipe {
    /// A pipe from this thread's pool, or a new one.
    fn lend() -> io::Result<Pipe> {
        #[cfg(test)]
        if NO_PIPES.get() {
            return Err(io::Error::other("no pipes on this test thread"));
        }
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
}

/// Bytes a direction copies through user memory when no pipe can be had.
const FALLBACK_BYTES: usize = 64 * 1024;

/// Where a direction's bytes in flight are.
enum Held {
    /// In a pipe: spliced in and out, never copied.
    Pipe(Pipe),
    /// In a buffer, from `start`: the fallback when no pipe could be made
    /// (out of descriptors), so that a busy proxy slows down rather than
    /// cuts tunnels.
    Buffer { buf: Box<[u8]>, start: usize },
}

impl Held {
    /// Lets go of an empty holder: a pipe goes back to the pool.
    fn release(self) {
        if let Held::Pipe(pipe) = self {
            pipe.give_back();
        }
    }
}

/// One direction of a tunnel: where its bytes in flight are and how many
/// of them are still to be written. Polled by hand rather than written as
/// an `async fn`: the sockets' own waker slots (`poll_read_ready`,
/// `poll_write_ready`; a direction is the only reader of one socket and
/// the only writer of the other) keep an idle tunnel's state to a few
/// words, where each awaited `readable()` holds a waiter.
#[derive(Default)]
struct Direction {
    held: Option<Held>,
    left: usize,
    /// Bytes delivered.
    moved: u64,
    /// Bytes moved since the idle deadline last looked.
    active: bool,
}

impl Direction {
    /// Moves `from`'s bytes to `to` until `from` ends its stream.
    fn poll_move(&mut self, cx: &mut Context<'_>, from: &TcpStream, to: &TcpStream) -> Poll<Result<(), Failed>> {
        loop {
            while self.left > 0 {
                if ready!(to.poll_write_ready(cx)).is_err() {
                    return Poll::Ready(Err(Failed::Write));
                }
                let sent = match &self.held {
                    Some(Held::Pipe(pipe)) => to.try_io(Interest::WRITABLE, || {
                        Ok(rustix::pipe::splice(&pipe.read, None, to, None, self.left, SpliceFlags::NONBLOCK)?)
                    }),
                    Some(Held::Buffer { buf, start }) => {
                        to.try_write(buf.get(*start..*start + self.left).unwrap_or_default())
                    }
                    // Bytes counted but held nowhere: cannot happen.
                    None => Ok(0),
                };
                match sent {
                    // A socket that takes nothing from a full pipe is gone.
                    Ok(0) => return Poll::Ready(Err(Failed::Write)),
                    Ok(n) => {
                        self.left -= n;
                        self.moved += n as u64;
                        self.active = true;
                        if let Some(Held::Buffer { start, .. }) = &mut self.held {
                            *start += n;
                        }
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return Poll::Ready(Err(Failed::Write)),
                }
            }
            if let Some(held) = self.held.take() {
                held.release();
            }
            if ready!(from.poll_read_ready(cx)).is_err() {
                return Poll::Ready(Err(Failed::Read));
            }
            let (filled, held) = match Pipe::lend() {
                Ok(pipe) => {
                    let filled = from.try_io(Interest::READABLE, || {
                        Ok(rustix::pipe::splice(from, None, &pipe.write, None, pipe.capacity, SpliceFlags::NONBLOCK)?)
                    });
                    (filled, Held::Pipe(pipe))
                }
                Err(_) => {
                    let mut buf = vec![0u8; FALLBACK_BYTES].into_boxed_slice();
                    (from.try_read(&mut buf), Held::Buffer { buf, start: 0 })
                }
            };
            match filled {
                Ok(0) => {
                    held.release();
                    return Poll::Ready(Ok(()));
                }
                Ok(n) => {
                    self.left = n;
                    self.held = Some(held);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => held.release(),
                Err(_) => return Poll::Ready(Err(Failed::Read)),
            }
        }
    }
}

/// Copies both ways between two plain TCP sockets; returns (client→origin
/// bytes, origin→client bytes, who ended it) with the same rules as the
/// buffered copy: when one side closes, the other's write half is shut and
/// the copy runs on until it closes too (or idles out); `stop` ends it
/// early with the reason it gives (shutdown, policy); it is pinned by the
/// caller so that it is not held twice in the tunnel's task. The tunnel
/// has been quiet since `quiet_since`.
pub(crate) async fn pump<F>(
    client: &TcpStream,
    origin: &TcpStream,
    idle: Duration,
    quiet_since: Instant,
    mut stop: Pin<&mut F>,
) -> (u64, u64, ClosedBy)
where
    F: Future<Output = ClosedBy>,
{
    let (mut up, mut down) = (Direction::default(), Direction::default());
    // Which directions still carry bytes: [client → origin, origin → client].
    let mut open = [true, true];
    let mut first_close: Option<ClosedBy> = None;
    let mut last_activity = quiet_since;
    let idle_timer = tokio::time::sleep_until(quiet_since + idle);
    tokio::pin!(idle_timer);
    let closed_by = std::future::poll_fn(|cx| {
        let ends = [
            (0, &mut up, client, origin, ClosedBy::Client, ClosedBy::Origin),
            (1, &mut down, origin, client, ClosedBy::Origin, ClosedBy::Client),
        ];
        for (way, direction, from, to, sender, receiver) in ends {
            if !open[way] {
                continue;
            }
            match direction.poll_move(cx, from, to) {
                Poll::Pending => {}
                Poll::Ready(Ok(())) => {
                    open[way] = false;
                    first_close.get_or_insert(sender);
                    // The other way still runs: its receiver learns that
                    // this one ended. Else both sockets close next, and
                    // the close sends the FIN (one system call fewer).
                    if open[1 - way] {
                        let _ = rustix::net::shutdown(to, rustix::net::Shutdown::Write);
                    }
                }
                Poll::Ready(Err(Failed::Read)) => return Poll::Ready(first_close.unwrap_or(sender)),
                Poll::Ready(Err(Failed::Write)) => return Poll::Ready(first_close.unwrap_or(receiver)),
            }
        }
        if open == [false, false] {
            return Poll::Ready(first_close.unwrap_or(ClosedBy::Client));
        }
        if let Poll::Ready(reason) = stop.as_mut().poll(cx) {
            return Poll::Ready(reason);
        }
        if std::mem::take(&mut up.active) | std::mem::take(&mut down.active) {
            last_activity = Instant::now();
        }
        // One timer for the tunnel's life: activity only moves a deadline,
        // and the timer is re-armed when it fires early.
        while idle_timer.as_mut().poll(cx).is_ready() {
            let deadline = last_activity + idle;
            if Instant::now() >= deadline {
                return Poll::Ready(first_close.unwrap_or(ClosedBy::Timeout));
            }
            idle_timer.as_mut().reset(deadline);
        }
        Poll::Pending
    })
    .await;
    // A pipe still holding bytes is closed, not pooled.
    drop((up.held.take(), down.held.take()));
    (up.moved, down.moved, closed_by)
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
        bytes_cross_both_ways().await
    }

    /// Out of descriptors for pipes, the tunnel copies through a buffer
    /// instead of ending.
    #[tokio::test]
    async fn without_pipes_bytes_still_cross_both_ways() -> io::Result<()> {
        NO_PIPES.set(true);
        bytes_cross_both_ways().await
    }

    /// 3 MB up, then a half-close; 6 bytes down, then the close.
    async fn bytes_cross_both_ways() -> io::Result<()> {
        let (client_near, mut client_far) = pair().await?;
        let (origin_near, mut origin_far) = pair().await?;
        let pumping = tokio::spawn(async move {
            let stop = std::pin::pin!(std::future::pending());
            pump(&client_near, &origin_near, Duration::from_secs(10), Instant::now(), stop).await
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

    /// How a pump between two connections that stay silent ends.
    async fn silent_pump_ends(idle: Duration, stop: impl Future<Output = ClosedBy>) -> io::Result<ClosedBy> {
        let (client_near, _client_far) = pair().await?;
        let (origin_near, _origin_far) = pair().await?;
        let stop = std::pin::pin!(stop);
        let pumping = pump(&client_near, &origin_near, idle, Instant::now(), stop);
        let (_, _, closed_by) = tokio::time::timeout(Duration::from_secs(10), pumping).await?;
        Ok(closed_by)
    }

    #[tokio::test]
    async fn an_idle_tunnel_times_out() -> io::Result<()> {
        let closed_by = silent_pump_ends(Duration::from_millis(100), std::future::pending()).await?;
        assert_eq!(closed_by, ClosedBy::Timeout);
        Ok(())
    }

    #[tokio::test]
    async fn stop_ends_the_pump_with_its_reason() -> io::Result<()> {
        let closed_by = silent_pump_ends(Duration::from_secs(60), async { ClosedBy::Policy }).await?;
        assert_eq!(closed_by, ClosedBy::Policy);
        Ok(())
    }
}
