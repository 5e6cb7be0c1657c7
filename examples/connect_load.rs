//! Bench-only load generator and loopback origin for `bench/run.sh` (issue 6).
//!
//! Subcommands, each bounded in time and printing one `key=value` result line
//! on stdout:
//! - `origin`: echo, HTTP (`/small` = 100 B, `/large` = 64 KiB, `/1gib` =
//!   1 GiB, keep-alive)
//!   and bulk (client sends a u64 big-endian byte count, origin streams that
//!   many bytes and closes) listeners, until `--duration` seconds pass.
//! - `setup`: N workers loop open -> `CONNECT` -> 200 -> 16-byte echo ->
//!   close for a fixed duration; tunnels/s and latency p50/p99.
//!   `--direct` skips the proxy (the physical limit).
//! - `bulk`: one transfer of `--bytes` through a tunnel (or direct); MB/s.
//! - `idle`: opens K tunnels, does one echo on each, prints `ready`, holds.
//!
//! Only loopback addresses are accepted.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Longest any single network step may take before it counts as an error.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// The echo exchange of a setup-rate cycle.
const PING: [u8; 16] = *b"socialgate-bench";

#[derive(Parser, Debug)]
#[command(about = "Loopback load generator and origin for socialgate benchmarks")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Serve echo, HTTP and bulk listeners on loopback.
    Origin {
        /// Echo listener.
        #[arg(long, default_value = "127.0.0.1:0")]
        echo: SocketAddr,
        /// HTTP listener (`/small` 100 B, `/large` 64 KiB).
        #[arg(long, default_value = "127.0.0.1:0")]
        http: SocketAddr,
        /// Bulk listener.
        #[arg(long, default_value = "127.0.0.1:0")]
        bulk: SocketAddr,
        /// Exit after this many seconds.
        #[arg(long, default_value_t = 3600)]
        duration: u64,
    },
    /// CONNECT setup rate.
    Setup {
        #[command(flatten)]
        target: Target,
        /// Concurrent workers.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Measurement length in seconds.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
    },
    /// One bulk transfer through a tunnel.
    Bulk {
        #[command(flatten)]
        target: Target,
        /// Bytes to receive.
        #[arg(long, default_value_t = 1 << 30)]
        bytes: u64,
    },
    /// Open K idle tunnels and hold them.
    Idle {
        #[command(flatten)]
        target: Target,
        /// Tunnels to open.
        #[arg(long, default_value_t = 2000)]
        tunnels: usize,
        /// Seconds to hold them after `ready`.
        #[arg(long, default_value_t = 30)]
        hold: u64,
    },
}

#[derive(clap::Args, Debug, Clone)]
struct Target {
    /// The proxy (ignored with --direct).
    #[arg(long, default_value = "127.0.0.1:3128")]
    proxy: SocketAddr,
    /// `host:port` named in the CONNECT request.
    #[arg(long)]
    connect: String,
    /// Connect straight to this origin address instead of the proxy.
    #[arg(long)]
    direct: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
enum BenchError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("timed out")]
    Timeout,
    #[error("proxy answered: {0}")]
    Refused(String),
    #[error("{0} is not a loopback address")]
    NotLoopback(SocketAddr),
}

async fn step<T>(f: impl Future<Output = std::io::Result<T>>) -> Result<T, BenchError> {
    match tokio::time::timeout(STEP_TIMEOUT, f).await {
        Ok(r) => r.map_err(BenchError::from),
        Err(_) => Err(BenchError::Timeout),
    }
}

fn loopback(addr: SocketAddr) -> Result<SocketAddr, BenchError> {
    if addr.ip().is_loopback() { Ok(addr) } else { Err(BenchError::NotLoopback(addr)) }
}

fn out(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            out(&format!("error={err}"));
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.mode)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            out(&format!("error={err}"));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(mode: Mode) -> Result<(), BenchError> {
    match mode {
        Mode::Origin { echo, http, bulk, duration } => origin(echo, http, bulk, duration).await,
        Mode::Setup { target, concurrency, duration } => setup(target, concurrency, duration).await,
        Mode::Bulk { target, bytes } => bulk_client(target, bytes).await,
        Mode::Idle { target, tunnels, hold } => idle(target, tunnels, hold).await,
    }
}

// ---------------------------------------------------------------- client

/// Opens a connection to the origin, through the proxy unless direct.
async fn open(target: &Target) -> Result<TcpStream, BenchError> {
    if let Some(direct) = target.direct {
        let stream = step(TcpStream::connect(loopback(direct)?)).await?;
        stream.set_nodelay(true)?;
        return Ok(stream);
    }
    let mut stream = step(TcpStream::connect(loopback(target.proxy)?)).await?;
    stream.set_nodelay(true)?;
    let request = format!("CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n\r\n", target.connect);
    step(stream.write_all(request.as_bytes())).await?;
    // Read the response head byte-group by byte-group; a proxy sends nothing
    // after the head before the client speaks.
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 512];
    loop {
        let n = step(stream.read(&mut buf)).await?;
        if n == 0 {
            return Err(BenchError::Refused(format!("closed after {} bytes", head.len())));
        }
        head.extend_from_slice(buf.get(..n).unwrap_or_default());
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
        if head.len() > 16 * 1024 {
            return Err(BenchError::Refused("oversized response head".to_owned()));
        }
    }
    let status_line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_owned();
    if status_line.split_whitespace().nth(1) != Some("200") {
        return Err(BenchError::Refused(status_line));
    }
    Ok(stream)
}

async fn ping(stream: &mut TcpStream) -> Result<(), BenchError> {
    step(stream.write_all(&PING)).await?;
    let mut back = [0u8; PING.len()];
    step(stream.read_exact(&mut back)).await?;
    if back != PING {
        return Err(BenchError::Refused("echo mismatch".to_owned()));
    }
    Ok(())
}

async fn cycle(target: &Target) -> Result<(), BenchError> {
    let mut stream = open(target).await?;
    ping(&mut stream).await?;
    let _ = step(stream.shutdown()).await;
    Ok(())
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(rank).copied().unwrap_or_default()
}

async fn setup(target: Target, concurrency: usize, duration: f64) -> Result<(), BenchError> {
    let duration = Duration::from_secs_f64(duration.clamp(0.1, 600.0));
    let start = Instant::now();
    let deadline = start + duration;
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency.clamp(1, 4096) {
        let target = target.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies: Vec<u32> = Vec::with_capacity(16 * 1024);
            let mut errors = 0u64;
            let mut last_error = None;
            while Instant::now() < deadline && latencies.len() < 10_000_000 {
                let t0 = Instant::now();
                match cycle(&target).await {
                    Ok(()) => latencies.push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX)),
                    Err(err) => {
                        errors += 1;
                        last_error = Some(err.to_string());
                        // Back off a little so a refusing peer is not hammered.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            (latencies, errors, last_error)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    let mut last_error = None;
    for w in workers {
        if let Ok((lat, e, le)) = w.await {
            all.extend(lat);
            errors += e;
            last_error = le.or(last_error);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort_unstable();
    out(&format!(
        "mode=setup tunnels={} secs={secs:.3} rate={:.1} p50_us={} p99_us={} errors={errors}{}",
        all.len(),
        all.len() as f64 / secs,
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        last_error.map(|e| format!(" last_error=\"{e}\"")).unwrap_or_default(),
    ));
    Ok(())
}

async fn bulk_client(target: Target, bytes: u64) -> Result<(), BenchError> {
    let start = Instant::now();
    let mut stream = open(&target).await?;
    step(stream.write_all(&bytes.to_be_bytes())).await?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut received = 0u64;
    while received < bytes {
        let n = step(stream.read(&mut buf)).await?;
        if n == 0 {
            break;
        }
        received += n as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    out(&format!(
        "mode=bulk bytes={received} secs={secs:.3} mb_s={:.1} complete={}",
        received as f64 / secs / 1e6,
        received == bytes
    ));
    Ok(())
}

async fn idle(target: Target, tunnels: usize, hold: u64) -> Result<(), BenchError> {
    let tunnels = tunnels.min(50_000);
    let mut open_streams = Vec::with_capacity(tunnels);
    let mut failed = 0usize;
    let mut last_error = None;
    // Open in batches of 64 concurrent opens.
    let mut remaining = tunnels;
    while remaining > 0 {
        let batch = remaining.min(64);
        remaining -= batch;
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..batch {
            let target = target.clone();
            set.spawn(async move {
                let mut s = open(&target).await?;
                ping(&mut s).await?;
                Ok::<_, BenchError>(s)
            });
        }
        while let Some(r) = set.join_next().await {
            match r {
                Ok(Ok(s)) => open_streams.push(s),
                Ok(Err(err)) => {
                    failed += 1;
                    last_error = Some(err.to_string());
                }
                Err(err) => {
                    failed += 1;
                    last_error = Some(err.to_string());
                }
            }
        }
    }
    out(&format!(
        "mode=idle ready tunnels={} failed={failed}{}",
        open_streams.len(),
        last_error.map(|e| format!(" last_error=\"{e}\"")).unwrap_or_default()
    ));
    tokio::time::sleep(Duration::from_secs(hold.min(3600))).await;
    drop(open_streams);
    Ok(())
}

// ---------------------------------------------------------------- origin

const SMALL_BODY: usize = 100;
/// `/1gib`: a plain-HTTP download of 1 GiB.
const DOWNLOAD_BYTES: u64 = 1 << 30;
const LARGE_BODY: usize = 64 * 1024;

fn response(body_len: usize) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: no-store\r\nContent-Length: {body_len}\r\n\r\n"
    )
    .into_bytes();
    r.extend((0..body_len).map(|i| b'a' + (i % 26) as u8));
    r
}

async fn origin(echo: SocketAddr, http: SocketAddr, bulk: SocketAddr, duration: u64) -> Result<(), BenchError> {
    let echo = TcpListener::bind(loopback(echo)?).await?;
    let http = TcpListener::bind(loopback(http)?).await?;
    let bulk = TcpListener::bind(loopback(bulk)?).await?;
    out(&format!("mode=origin echo={} http={} bulk={}", echo.local_addr()?, http.local_addr()?, bulk.local_addr()?));
    let small: &'static [u8] = Vec::leak(response(SMALL_BODY));
    let large: &'static [u8] = Vec::leak(response(LARGE_BODY));
    let serve = async move {
        loop {
            tokio::select! {
                Ok((s, _)) = echo.accept() => { tokio::spawn(serve_echo(s)); }
                Ok((s, _)) = http.accept() => { tokio::spawn(serve_http(s, small, large)); }
                Ok((s, _)) = bulk.accept() => { tokio::spawn(serve_bulk(s)); }
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(duration.min(24 * 3600)), serve).await;
    Ok(())
}

async fn serve_echo(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(buf.get(..n).unwrap_or_default()).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Keep-alive HTTP/1.1: one fixed response per request head; `/large` in
/// the target selects 64 KiB, anything else 100 B. Request bodies are not
/// expected (GET only). `Connection: close` closes after the response.
async fn serve_http(mut s: TcpStream, small: &'static [u8], large: &'static [u8]) {
    let _ = s.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    loop {
        // Answer every complete head already buffered.
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = buf.get(..end).unwrap_or_default();
            let first = head.split(|&b| b == b'\r').next().unwrap_or_default();
            let close =
                head.split(|&b| b == b'\n').any(|line| line.to_ascii_lowercase().starts_with(b"connection: close"));
            let sent = if first.windows(5).any(|w| w == b"/1gib") {
                send_download(&mut s, DOWNLOAD_BYTES).await
            } else {
                let body = if first.windows(6).any(|w| w == b"/large") { large } else { small };
                s.write_all(body).await
            };
            if sent.is_err() || close {
                return;
            }
            buf.drain(..end + 4);
        }
        if buf.len() > 64 * 1024 {
            return;
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
        }
    }
}

/// One HTTP response of `bytes` bytes, streamed from a 256 KiB block.
async fn send_download(s: &mut TcpStream, bytes: u64) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nCache-Control: no-store\r\nContent-Length: {bytes}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await?;
    let block: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    let mut remaining = bytes;
    while remaining > 0 {
        let n = usize::try_from(remaining.min(block.len() as u64)).unwrap_or(block.len());
        s.write_all(block.get(..n).unwrap_or_default()).await?;
        remaining -= n as u64;
    }
    Ok(())
}

async fn serve_bulk(mut s: TcpStream) {
    let mut len = [0u8; 8];
    if s.read_exact(&mut len).await.is_err() {
        return;
    }
    let mut remaining = u64::from_be_bytes(len).min(64 << 30);
    let block: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    while remaining > 0 {
        let n = usize::try_from(remaining.min(block.len() as u64)).unwrap_or(block.len());
        if s.write_all(block.get(..n).unwrap_or_default()).await.is_err() {
            return;
        }
        remaining -= n as u64;
    }
    let _ = s.shutdown().await;
}
