//! Faults on either side: the origin closes mid-response, resets mid-tunnel,
//! or accepts and never answers; the client disconnects mid-upload or
//! mid-tunnel. Each ends with the right status or a clean close, and with
//! exactly one access-log record saying who ended it. (File-descriptor and
//! task accounting over the same faults is in `hardening_leaks.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::{Company, CountingOrigin, ScriptedOrigin, bounded};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the peer closes (or errors).
async fn drain(mut stream: TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

#[tokio::test]
async fn the_origin_closing_mid_response_closes_the_client_and_is_logged_as_an_error() {
    bounded(async {
        let origin = ScriptedOrigin::start(true, |mut stream| async move {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789").await;
            // Closed with 90 bytes of the body missing.
        })
        .await;
        let proxy = Company::new().start(&[443]).await;
        let mut client = proxy.client().await;
        let reply = client.get_head(&format!("http://example.test:{}/", origin.port())).await;
        assert_eq!(reply.status, 200);
        assert!(client.closed().await, "the client was left waiting for the rest of the body");
        let records = proxy.whole_records(1).await;
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert_eq!(r["status"], 200);
        assert_eq!(r["closed_by"], "error", "{r}");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_origin_reset_mid_tunnel_closes_the_tunnel_and_is_logged() {
    bounded(async {
        let origin = ScriptedOrigin::start(false, |mut stream| async move {
            let mut buf = [0u8; 5];
            let _ = stream.read_exact(&mut buf).await;
            let _ = stream.write_all(b"partial").await;
            // Close with RST instead of FIN.
            let _ = stream.set_zero_linger();
            drop(stream);
        })
        .await;
        let proxy = Company::new().start(&[origin.port()]).await;
        let mut client = proxy.client().await;
        assert_eq!(client.connect_to(&format!("example.test:{}", origin.port()), &[]).await.status, 200);
        client.send("hello").await;
        assert!(client.closed().await, "the tunnel outlived the reset");
        let records = proxy.whole_records(1).await;
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert_eq!((r["method"].as_str(), r["status"].as_u64()), (Some("CONNECT"), Some(200)));
        assert!(r["closed_by"] == "origin" || r["closed_by"] == "error", "{r}");
        assert_eq!(r["bytes_up"], 5, "{r}");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_origin_that_never_answers_gets_504_at_the_response_timeout() {
    bounded(async {
        let origin = ScriptedOrigin::start(true, drain).await;
        let proxy = Company::new().limit("upstream_response_timeout = \"300ms\"").start(&[443]).await;
        let mut client = proxy.client().await;
        let started = tokio::time::Instant::now();
        let reply = client.get(&format!("http://example.test:{}/", origin.port()), &[]).await;
        assert_eq!(reply.status, 504);
        assert!(reply.header("proxy-status").unwrap().contains("error=http_response_timeout"), "{reply:?}");
        assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
        let r = &proxy.whole_records(1).await[0];
        assert_eq!((r["status"].as_u64(), r["closed_by"].as_str()), (Some(504), Some("timeout")));
        // The keep-alive connection still serves.
        let echo = CountingOrigin::start().await;
        assert_eq!(client.get(&format!("http://example.test:{}/", echo.port()), &[]).await.status, 200);
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_client_gone_mid_upload_is_logged_as_closed_by_the_client() {
    bounded(async {
        let origin = CountingOrigin::start().await;
        let proxy = Company::new().start(&[443]).await;
        let mut client = proxy.client().await;
        client
            .send(&format!(
                "POST http://example.test:{}/upload HTTP/1.1\r\nHost: example.test\r\nContent-Length: 100000\r\n\r\n{}",
                origin.port(),
                "x".repeat(1000)
            ))
            .await;
        support::eventually("the origin got the head", || origin.heads() == 1).await;
        drop(client);
        let records = proxy.whole_records(1).await;
        assert_eq!(records.len(), 1);
        assert_eq!(origin.complete(), 0, "a truncated upload was delivered as complete");
        assert_eq!(records[0]["closed_by"], "client", "{}", records[0]);
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_client_gone_mid_upload_is_logged_once_and_never_delivered_whole() {
    bounded(async {
        let origin = CountingOrigin::start().await;
        let proxy = Company::new().start(&[443]).await;
        let mut client = proxy.client().await;
        client
            .send(&format!(
                "POST http://example.test:{}/upload HTTP/1.1\r\nHost: example.test\r\nContent-Length: 100000\r\n\r\n{}",
                origin.port(),
                "x".repeat(1000)
            ))
            .await;
        support::eventually("the origin got the head", || origin.heads() == 1).await;
        drop(client);
        let records = proxy.whole_records(1).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(proxy.records_now().len(), 1, "{records:?}");
        assert_eq!(origin.complete(), 0, "a truncated upload was delivered as complete");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_client_gone_mid_tunnel_is_logged_as_closed_by_the_client() {
    bounded(async {
        // An origin that echoes until the client side closes.
        let origin = ScriptedOrigin::start(false, |mut stream| async move {
            let mut buf = [0u8; 1024];
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        })
        .await;
        let proxy = Company::new().start(&[origin.port()]).await;
        let mut client = proxy.client().await;
        assert_eq!(client.connect_to(&format!("example.test:{}", origin.port()), &[]).await.status, 200);
        client.send("ping").await;
        let mut echoed = [0u8; 4];
        tokio::time::timeout(support::WAIT, client.stream.read_exact(&mut echoed)).await.unwrap().unwrap();
        assert_eq!(&echoed, b"ping");
        drop(client);
        let records = proxy.whole_records(1).await;
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert_eq!(r["closed_by"], "client", "{r}");
        assert_eq!((r["bytes_up"].as_u64(), r["bytes_down"].as_u64()), (Some(4), Some(4)), "{r}");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_client_gone_while_the_origin_thinks_is_logged() {
    bounded(async {
        let origin = ScriptedOrigin::start(true, drain).await;
        let proxy = Company::new().limit("upstream_response_timeout = \"500ms\"").start(&[443]).await;
        let mut client = proxy.client().await;
        client
            .send(&format!("GET http://example.test:{}/ HTTP/1.1\r\nHost: example.test\r\n\r\n", origin.port()))
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(client);
        let records = proxy.whole_records(1).await;
        assert_eq!(records.len(), 1);
        assert_eq!(records[0]["closed_by"], "client", "{}", records[0]);
        proxy.stop().await;
    })
    .await;
}

/// Sends one GET through a fresh proxy to an origin answering `response`
/// and checks the client gets a 502 or an unambiguously framed response,
/// and that the record agrees with what the client got.
async fn check_origin_response(response: &'static [u8]) {
    let origin = ScriptedOrigin::start(true, move |mut stream| async move {
        let _ = stream.write_all(response).await;
        drain(stream).await;
    })
    .await;
    let proxy = Company::new().start(&[443]).await;
    let mut client = proxy.client().await;
    client.send(&format!("GET http://example.test:{}/ HTTP/1.1\r\nHost: example.test\r\n\r\n", origin.port())).await;
    let raw = String::from_utf8_lossy(response).into_owned();
    let Some(reply) = client.reply_or_closed().await else {
        let records = proxy.whole_records(1).await;
        panic!("{raw:?}: closed without a response; logged {records:?}");
    };
    // Refused (502), or passed on re-framed with one unambiguous length.
    if reply.status == 200 {
        let lengths = reply.headers.iter().filter(|(n, _)| n == "content-length").count();
        let chunked = reply.headers.iter().any(|(n, _)| n == "transfer-encoding");
        assert!(lengths + usize::from(chunked) == 1, "{raw:?} passed on as {reply:?}");
        assert!(!reply.headers.iter().any(|(n, _)| n == "x-folded"), "{raw:?} passed on as {reply:?}");
    } else {
        assert_eq!(reply.status, 502, "{raw:?}: {reply:?}");
    }
    let records = proxy.whole_records(1).await;
    assert_eq!(records[0]["status"], reply.status, "{raw:?}: {records:?}");
    proxy.stop().await;
}

#[tokio::test]
async fn an_ambiguous_response_from_the_origin_is_not_passed_on() {
    bounded(async {
        check_origin_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!").await;
        check_origin_response(b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 2\r\n\r\nok").await;
        check_origin_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok").await;
    })
    .await;
}

#[tokio::test]
async fn an_origin_response_with_both_lengths_is_answered_and_logged_truthfully() {
    bounded(check_origin_response(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n",
    ))
    .await;
}

/// Regression (audit F6): the proxy strips `Upgrade`, so no forwarded
/// request asks to switch protocols; an origin answering `101` anyway was
/// relayed (and the client's connection then closed). The client gets a
/// `502` (`http_protocol_error`) instead, nothing the origin sent after
/// its 101, one record, and its connection keeps serving.
#[tokio::test]
async fn an_unrequested_101_from_the_origin_is_answered_502() {
    bounded(async {
        let switching = ScriptedOrigin::start(true, |mut stream| async move {
            let _ = stream
                .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nraw bytes of another protocol")
                .await;
            drain(stream).await;
        })
        .await;
        let normal = CountingOrigin::start().await;
        let proxy = Company::new().start(&[443]).await;
        let mut client = proxy.client().await;
        let reply = client
            .get(&format!("http://example.test:{}/ws", switching.port()), &["Upgrade: websocket", "Connection: Upgrade"])
            .await;
        assert_eq!(reply.status, 502, "{reply:?}");
        assert_eq!(reply.header("proxy-status"), Some("socialgate; error=http_protocol_error; details=\"default\""));
        assert!(!reply.body.contains("raw bytes"), "{}", reply.body);
        // The same connection goes on serving.
        let next = client.get(&format!("http://example.test:{}/next", normal.port()), &[]).await;
        assert_eq!(next.status, 200, "{next:?}");
        drop(client);
        let records = proxy.whole_records(2).await;
        assert_eq!(records.len(), 2, "{records:?}");
        assert_eq!((records[0]["status"].as_u64(), records[0]["closed_by"].as_str()), (Some(502), Some("error")));
        assert_eq!(records[1]["status"].as_u64(), Some(200));
        proxy.stop().await;
    })
    .await;
}

/// Regression (found by `prop_origin::edited_responses_are_refused_or_relayed_unambiguously`):
/// hyper checks `Content-Length` only where it frames a body, so an answer
/// to HEAD with two different lengths made the proxy close the client's
/// connection with no response at all, and one with `Content-Length: -1`
/// was passed on as it came. Both are now the origin's protocol error.
#[tokio::test]
async fn a_bad_content_length_on_an_answer_to_head_gets_502() {
    bounded(async {
        for response in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"[..],
            &b"HTTP/1.1 304 Not Modified\r\nContent-Length: -1\r\n\r\n"[..],
        ] {
            let origin = ScriptedOrigin::start(true, move |mut stream| async move {
                let _ = stream.write_all(response).await;
                drain(stream).await;
            })
            .await;
            let proxy = Company::new().start(&[443]).await;
            let mut client = proxy.client().await;
            client
                .send(&format!("HEAD http://example.test:{}/ HTTP/1.1\r\nHost: example.test\r\n\r\n", origin.port()))
                .await;
            // An answer to HEAD has no body, whatever its length says.
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                let n = tokio::time::timeout(support::WAIT, client.stream.read(&mut byte)).await.unwrap().unwrap();
                assert_eq!(n, 1, "{response:?}: closed after {:?}", String::from_utf8_lossy(&head));
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            assert!(head.starts_with("HTTP/1.1 502 "), "{response:?}: {head}");
            assert!(head.contains("error=http_protocol_error"), "{head}");
            let records = proxy.whole_records(1).await;
            assert_eq!(records[0]["status"], 502, "{records:?}");
            proxy.stop().await;
        }
    })
    .await;
}

/// Regression (found by `prop_origin::well_formed_responses_are_relayed_as_sent`):
/// a chunked response with trailers, relayed whole, was logged
/// `closed_by: "client"` (hyper's server dropped the trailers and the body
/// with them before it saw its end).
#[tokio::test]
async fn a_chunked_response_with_trailers_is_logged_as_ended_by_the_origin() {
    bounded(async {
        let origin = ScriptedOrigin::start(true, |mut stream| async move {
            let _ = stream
                .write_all(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Checksum: 1\r\n\r\n",
                )
                .await;
            drain(stream).await;
        })
        .await;
        let proxy = Company::new().start(&[443]).await;
        let mut client = proxy.client().await;
        let reply = client.get(&format!("http://example.test:{}/", origin.port()), &[]).await;
        assert_eq!((reply.status, reply.body.as_str()), (200, "ok"), "{reply:?}");
        let r = &proxy.whole_records(1).await[0];
        assert_eq!((r["status"].as_u64(), r["closed_by"].as_str()), (Some(200), Some("origin")), "{r}");
        proxy.stop().await;
    })
    .await;
}
