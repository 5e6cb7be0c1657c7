//! Resource exhaustion: slowloris heads get `408` at `header_timeout` while
//! new clients are served promptly; idle connections beyond
//! `max_connections` get `503` and are closed, and a new client is served
//! again once others close; a thousand idle connections do not slow the
//! proxy down and are closed at `idle_timeout`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::{Company, CountingOrigin, bounded};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How long a fresh client may take to be served while the proxy is under
/// pressure (generous: two shared cores).
const PROMPT: Duration = Duration::from_secs(3);

async fn connect(proxy: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    tokio::time::timeout(support::WAIT, socket.connect(proxy)).await.unwrap().unwrap()
}

/// Reads until a whole response head; returns its status (None on close).
async fn read_status(stream: &mut TcpStream) -> Option<u16> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&buf);
    text.split(' ').nth(1).and_then(|s| s.parse().ok())
}

async fn served_promptly(proxy: &support::Proxy, origin: &CountingOrigin) {
    let started = tokio::time::Instant::now();
    let reply = proxy.client().await.get(&format!("http://example.test:{}/", origin.port()), &[]).await;
    assert_eq!(reply.status, 200);
    assert!(started.elapsed() < PROMPT, "a new client waited {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_heads_get_408_at_header_timeout_and_others_are_served() {
    bounded(async {
        let origin = CountingOrigin::start().await;
        let proxy = Company::new().limit("header_timeout = \"500ms\"").start(&[443]).await;
        let mut slow = Vec::new();
        for _ in 0..50 {
            let stream = connect(proxy.addr).await;
            slow.push(tokio::spawn(async move {
                let (mut read, mut write) = stream.into_split();
                let started = tokio::time::Instant::now();
                let trickle = tokio::spawn(async move {
                    let _ = write.write_all(b"GET http://example.test/ HTTP/1.1\r\nX-Slow: ").await;
                    while write.write_all(b"a").await.is_ok() {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                });
                let mut buf = Vec::new();
                let _ = tokio::time::timeout(support::WAIT, read.read_to_end(&mut buf)).await;
                trickle.abort();
                (String::from_utf8_lossy(&buf).into_owned(), started.elapsed())
            }));
        }
        served_promptly(&proxy, &origin).await;
        for task in slow {
            let (answer, elapsed) = task.await.unwrap();
            assert!(answer.starts_with("HTTP/1.1 408"), "a slow head got: {answer:?}");
            assert!(
                elapsed >= Duration::from_millis(400) && elapsed < Duration::from_millis(3000),
                "408 after {elapsed:?}, header_timeout is 500ms"
            );
        }
        let records = proxy.whole_records(51).await;
        assert_eq!(records.iter().filter(|r| r["status"] == 408 && r["closed_by"] == "timeout").count(), 50);
        proxy.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_beyond_max_connections_get_503_and_new_clients_return_once_others_close() {
    bounded(async {
        let origin = CountingOrigin::start().await;
        let proxy = Company::new().limit("max_connections = 50").limit("idle_timeout = \"60s\"").start(&[443]).await;
        let mut idle = Vec::new();
        for _ in 0..50 {
            idle.push(connect(proxy.addr).await);
        }
        // Accepted connections count once the proxy has seen them.
        let deadline = tokio::time::Instant::now() + support::WAIT;
        loop {
            let mut probe = connect(proxy.addr).await;
            if read_status(&mut probe).await == Some(503) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "never reached max_connections");
        }
        // A crowd more: every one is answered 503 (unread) and closed, fast.
        let mut crowd = Vec::new();
        for _ in 0..200 {
            let addr = proxy.addr;
            crowd.push(tokio::spawn(async move {
                let mut stream = connect(addr).await;
                let status = tokio::time::timeout(support::WAIT, read_status(&mut stream)).await.unwrap();
                let mut rest = Vec::new();
                let closed = tokio::time::timeout(support::WAIT, stream.read_to_end(&mut rest)).await.is_ok();
                (status, closed)
            }));
        }
        for task in crowd {
            assert_eq!(task.await.unwrap(), (Some(503), true));
        }
        // Others close: a new client is served again.
        drop(idle);
        let deadline = tokio::time::Instant::now() + support::WAIT;
        loop {
            let mut client = proxy.client().await;
            client
                .send(&format!("GET http://example.test:{}/ HTTP/1.1\r\nHost: example.test\r\n\r\n", origin.port()))
                .await;
            if client.reply(true).await.status == 200 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "never served again after the idle clients left");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let records = proxy.whole_records(201).await;
        assert!(
            records.iter().filter(|r| r["status"] == 503 && r["rule"] == "limits" && r["closed_by"] == "proxy").count()
                >= 201
        );
        proxy.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_connections_do_not_slow_others_and_are_closed_at_idle_timeout() {
    bounded(async {
        let origin = CountingOrigin::start().await;
        let proxy = Company::new().limit("idle_timeout = \"2s\"").start(&[443]).await;
        let mut idle = Vec::new();
        for _ in 0..1000 {
            idle.push(connect(proxy.addr).await);
        }
        served_promptly(&proxy, &origin).await;
        // Each idle connection is closed quietly (no response, no record).
        let mut closed = 0;
        for mut stream in idle {
            let mut rest = Vec::new();
            if let Ok(Ok(_)) = tokio::time::timeout(support::WAIT, stream.read_to_end(&mut rest)).await {
                assert!(rest.is_empty(), "an idle connection got: {:?}", String::from_utf8_lossy(&rest));
                closed += 1;
            }
        }
        assert_eq!(closed, 1000);
        served_promptly(&proxy, &origin).await;
        proxy.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_is_bounded_by_the_upstream_response_timeout() {
    bounded(async {
        let origin = CountingOrigin::start().await;
        let proxy = Company::new().limit("upstream_response_timeout = \"500ms\"").start(&[443]).await;
        let mut client = proxy.client().await;
        client
            .send(&format!(
                "POST http://example.test:{}/up HTTP/1.1\r\nHost: example.test\r\nContent-Length: 1000\r\n\r\nx",
                origin.port()
            ))
            .await;
        let (mut read, mut write) = client.stream.into_split();
        let trickle = tokio::spawn(async move {
            while write.write_all(b"x").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let started = tokio::time::Instant::now();
        let mut buf = vec![0u8; 1024];
        let n = tokio::time::timeout(support::WAIT, read.read(&mut buf)).await.unwrap().unwrap();
        trickle.abort();
        let head = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(head.starts_with("HTTP/1.1 504"), "{head}");
        assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
        assert_eq!(origin.complete(), 0);
        let r = &proxy.whole_records(1).await[0];
        assert_eq!((r["status"].as_u64(), r["closed_by"].as_str()), (Some(504), Some("timeout")));
        proxy.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_connects_to_a_black_hole_does_not_slow_new_clients() {
    bounded(async {
        let origin = CountingOrigin::start().await;
        // Accepts and holds every connection, never sends a byte.
        let hole = support::ScriptedOrigin::black_hole().await;
        let proxy = Company::new().start(&[hole.port()]).await;
        let mut tunnels = Vec::new();
        for _ in 0..300 {
            let mut c = proxy.client_from("127.0.0.3").await;
            c.send(&format!("CONNECT example.test:{} HTTP/1.1\r\nHost: x\r\n\r\n", hole.port())).await;
            tunnels.push(c);
        }
        for c in &mut tunnels {
            assert_eq!(c.reply(false).await.status, 200);
        }
        served_promptly(&proxy, &origin).await;
        drop(tunnels);
        let records = proxy.whole_records(301).await;
        assert_eq!(records.iter().filter(|r| r["method"] == "CONNECT" && r["closed_by"] == "client").count(), 300);
        proxy.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_second_head_on_a_keep_alive_connection_gets_408() {
    bounded(async {
        let origin = CountingOrigin::start().await;
        let proxy =
            Company::new().limit("header_timeout = \"300ms\"").limit("idle_timeout = \"5s\"").start(&[443]).await;
        let mut client = proxy.client().await;
        let url = format!("http://example.test:{}/", origin.port());
        assert_eq!(client.get(&url, &[]).await.status, 200);
        client.send("GET http://example.test/ HTTP/1.1\r\nX-Slow: a").await;
        let started = tokio::time::Instant::now();
        let reply = client.reply(true).await;
        assert_eq!(reply.status, 408);
        assert!(started.elapsed() < Duration::from_secs(2), "408 after {:?}", started.elapsed());
        proxy.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_head_pipelined_behind_a_request_gets_408() {
    bounded(async {
        let origin = CountingOrigin::start().await;
        let proxy =
            Company::new().limit("header_timeout = \"300ms\"").limit("idle_timeout = \"5s\"").start(&[443]).await;
        let mut client = proxy.client().await;
        client
            .send(&format!(
                "GET http://example.test:{}/ HTTP/1.1\r\nHost: example.test\r\n\r\nGET http://example.test/ HTTP/1.1\r\nX-Slow: a",
                origin.port()
            ))
            .await;
        assert_eq!(client.reply(true).await.status, 200);
        let started = tokio::time::Instant::now();
        let second = client.reply_or_closed().await;
        assert_eq!(second.map(|r| r.status), Some(408), "after {:?}", started.elapsed());
        assert!(started.elapsed() < Duration::from_secs(2), "408 after {:?}", started.elapsed());
        proxy.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_tunnel_counts_once_against_max_connections() {
    bounded(async {
        let origin = CountingOrigin::start().await;
        let hole = support::ScriptedOrigin::black_hole().await;
        let proxy = Company::new().limit("max_connections = 10").start(&[hole.port()]).await;
        let mut tunnels = Vec::new();
        for _ in 0..9 {
            let mut c = proxy.client_from("127.0.0.3").await;
            assert_eq!(c.connect_to(&format!("example.test:{}", hole.port()), &[]).await.status, 200);
            tunnels.push(c);
        }
        // Nine tunnels open: the tenth connection is within the cap (once
        // the connections that carried the CONNECTs have handed over; a
        // tunnel counted twice would keep this at 503 for good).
        let deadline = tokio::time::Instant::now() + support::WAIT;
        loop {
            let reply = proxy.client().await.get(&format!("http://example.test:{}/", origin.port()), &[]).await;
            if reply.status == 200 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "still refused: {reply:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(tunnels);
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_refused_head_is_logged_under_the_clients_department() {
    bounded(async {
        let proxy = Company::new().limit("header_timeout = \"300ms\"").start(&[443]).await;
        let mut seller = proxy.client_from("127.0.0.2").await;
        seller.send("GET http://example.test/ HTTP/1.1\r\nX-Slow: a").await;
        assert_eq!(seller.reply(true).await.status, 408);
        let mut broken = proxy.client_from("127.0.0.2").await;
        broken.send("GET http://www.%66acebook.com/ HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(broken.reply(true).await.status, 400);
        for r in proxy.whole_records(2).await {
            assert_eq!(r["department"], "sales", "{r}");
        }
        proxy.stop().await;
    })
    .await;
}

/// A chunked body whose trailer ends in bare LFs, then pipelined heads: for
/// hyper the body goes on (it wants CRLF), so the heads are trailer bytes
/// and never requests. Neither the held heads nor the client's leaving may
/// keep the connection (and its `max_connections` slot) forever.
#[tokio::test]
async fn a_body_hyper_reads_differently_cannot_wedge_a_connection() {
    bounded(async {
        let origin = CountingOrigin::start().await;
        let proxy = Company::new()
            .limit("header_timeout = \"500ms\"")
            .limit("idle_timeout = \"60s\"")
            .limit("max_connections = 1")
            .start(&[443])
            .await;
        let p = origin.port();
        let wedge = format!(
            "POST http://www.facebook.com/w HTTP/1.1\r\nHost: www.facebook.com\r\nTransfer-Encoding: chunked\r\n\r\n\
             5\r\nhello\r\n0\r\nX-T: a\n\n\
             GET http://example.test:{p}/second HTTP/1.1\r\nHost: example.test:{p}\r\n\r\n\
             GET http://example.test:{p}/third HTTP/1.1\r\nHost: example.test:{p}\r\n\r\n"
        );
        // Stay, and ask for one more answer and the end: the connection
        // must come to it (served, or closed), never hang.
        let mut stays = connect(proxy.addr).await;
        stays.write_all(wedge.as_bytes()).await.unwrap();
        let last =
            format!("GET http://example.test:{p}/last HTTP/1.1\r\nHost: example.test:{p}\r\nConnection: close\r\n\r\n");
        stays.write_all(last.as_bytes()).await.unwrap();
        let mut received = Vec::new();
        let closed = tokio::time::timeout(support::WAIT, stays.read_to_end(&mut received)).await;
        let received = String::from_utf8_lossy(&received).into_owned();
        assert!(closed.is_ok(), "the proxy never closed the connection: {received:?}");
        assert!(received.starts_with("HTTP/1.1 403"), "{received:?}");
        drop(stays);
        // Send it and leave at once: the slot comes back.
        let mut leaves = connect(proxy.addr).await;
        leaves.write_all(wedge.as_bytes()).await.unwrap();
        drop(leaves);
        let deadline = tokio::time::Instant::now() + support::WAIT;
        loop {
            let mut client = connect(proxy.addr).await;
            client
                .write_all(
                    format!("GET http://example.test:{p}/fresh HTTP/1.1\r\nHost: example.test:{p}\r\n\r\n").as_bytes(),
                )
                .await
                .unwrap();
            match read_status(&mut client).await {
                Some(200) => break,
                Some(503) | None => {
                    assert!(tokio::time::Instant::now() < deadline, "the wedged connection kept its slot");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        // What hyper read as trailers never reached the origin as a
        // request; the head after them did, once per connection.
        let lines = origin.counts.lines.lock().unwrap().clone();
        assert!(!lines.iter().any(|l| l.contains("/second")), "{lines:?}");
        assert!(lines.iter().filter(|l| l.contains("/third")).count() <= 2, "{lines:?}");
        proxy.stop().await;
    })
    .await;
}
