//! No leaks: rounds of every fault (origin closes mid-response, resets
//! mid-tunnel, never answers; client gone mid-upload and mid-tunnel; a
//! slowloris head; a flood of CONNECTs to a black hole) leave the process
//! with as many file descriptors and tokio tasks as after the first round,
//! and the access log with exactly one record per request. One test in its
//! own binary, because descriptors and tasks are counted process-wide.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::{Company, CountingOrigin, Proxy, ScriptedOrigin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ROUNDS: usize = 12;
const FLOOD: usize = 50;
/// Records each round writes.
const PER_ROUND: usize = 7 + FLOOD;
/// Descriptors and tasks that may come and go without being a leak (pooled
/// upstream connections, timers).
const SLACK: usize = 8;

/// The descriptor count once it has not changed for half a second.
async fn steady_fd_count() -> usize {
    let deadline = tokio::time::Instant::now() + support::WAIT;
    let mut last = support::fd_count();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = support::fd_count();
        if now == last || tokio::time::Instant::now() >= deadline {
            return now;
        }
        last = now;
    }
}

struct Origins {
    truncating: ScriptedOrigin,
    resetting: ScriptedOrigin,
    silent: ScriptedOrigin,
    echo: ScriptedOrigin,
    counting: CountingOrigin,
}

async fn round(proxy: &Proxy, o: &Origins) {
    // The origin closes mid-response.
    let mut c = proxy.client().await;
    assert_eq!(c.get_head(&format!("http://example.test:{}/", o.truncating.port())).await.status, 200);
    assert!(c.closed().await);

    // The origin resets mid-tunnel.
    let mut c = proxy.client().await;
    assert_eq!(c.connect_to(&format!("example.test:{}", o.resetting.port()), &[]).await.status, 200);
    c.send("hello").await;
    assert!(c.closed().await);

    // The origin never answers.
    let mut c = proxy.client().await;
    assert_eq!(c.get(&format!("http://example.test:{}/", o.silent.port()), &[]).await.status, 504);
    drop(c);

    // The client goes away mid-upload.
    let mut c = proxy.client().await;
    let heads = o.counting.heads();
    c.send(&format!(
        "POST http://example.test:{}/up HTTP/1.1\r\nHost: example.test\r\nContent-Length: 100000\r\n\r\nxxxx",
        o.counting.port()
    ))
    .await;
    support::eventually("the upload reached the origin", || o.counting.heads() > heads).await;
    drop(c);

    // The client goes away mid-tunnel.
    let mut c = proxy.client().await;
    assert_eq!(c.connect_to(&format!("example.test:{}", o.echo.port()), &[]).await.status, 200);
    c.send("ping").await;
    let mut echoed = [0u8; 4];
    tokio::time::timeout(support::WAIT, c.stream.read_exact(&mut echoed)).await.unwrap().unwrap();
    drop(c);

    // A blocked request.
    let mut c = proxy.client().await;
    assert_eq!(c.get(&format!("http://www.facebook.com:{}/", o.counting.port()), &[]).await.status, 403);
    drop(c);

    // A slowloris head.
    let mut c = proxy.client().await;
    c.send("GET http://example.test/ HTTP/1.1\r\nX-Slow: a").await;
    assert_eq!(c.reply(true).await.status, 408);
    drop(c);

    // A flood of CONNECTs to a black hole, then the clients leave.
    let mut flood = Vec::new();
    for _ in 0..FLOOD {
        let mut c = proxy.client().await;
        c.send(&format!("CONNECT example.test:{} HTTP/1.1\r\nHost: x\r\n\r\n", o.silent.port())).await;
        flood.push(c);
    }
    for c in &mut flood {
        assert_eq!(c.reply(false).await.status, 200);
    }
    drop(flood);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_leak_no_descriptors_tasks_or_records() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let o = Origins {
            truncating: ScriptedOrigin::start(true, |mut s| async move {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789").await;
            })
            .await,
            resetting: ScriptedOrigin::start(false, |mut s| async move {
                let mut buf = [0u8; 5];
                let _ = s.read_exact(&mut buf).await;
                let _ = s.set_zero_linger();
            })
            .await,
            silent: ScriptedOrigin::black_hole().await,
            echo: ScriptedOrigin::echo().await,
            counting: CountingOrigin::start().await,
        };
        let ports = [o.resetting.port(), o.echo.port(), o.silent.port()];
        let proxy = Company::new()
            .limit("upstream_response_timeout = \"300ms\"")
            .limit("header_timeout = \"300ms\"")
            .start(&ports)
            .await;
        let metrics = tokio::runtime::Handle::current().metrics();

        round(&proxy, &o).await;
        proxy.whole_records(PER_ROUND).await;
        // Let the first round's connections wind down before the baseline.
        let base_fds = steady_fd_count().await;
        let base_tasks = metrics.num_alive_tasks();

        for _ in 0..ROUNDS {
            round(&proxy, &o).await;
        }
        let expected = PER_ROUND * (ROUNDS + 1);
        let records = proxy.whole_records(expected).await;
        let fds = support::fds_settle_at_most(base_fds + SLACK).await;
        assert!(fds <= base_fds + SLACK, "descriptors: {base_fds} after one round, {fds} after {ROUNDS} more");
        let deadline = tokio::time::Instant::now() + support::WAIT;
        while metrics.num_alive_tasks() > base_tasks + SLACK && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let tasks = metrics.num_alive_tasks();
        assert!(tasks <= base_tasks + SLACK, "tasks: {base_tasks} after one round, {tasks} after {ROUNDS} more");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(proxy.records_now().len(), expected, "records: {records:?}");
        proxy.stop().await;
    })
    .await
    .expect("the leak test took longer than 90 s");
}
