//! The access log's byte counts and times are what crossed the client side:
//! `bytes_down` is every byte the client received for the request (status
//! line, the headers hyper adds, chunk framing, body), `bytes_up` every byte
//! it sent, and requests refused at the head stage are logged with what
//! arrived of them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Company, ScriptedOrigin, WAIT, bounded};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The length of the first whole response in `bytes`, once it is all there
/// (head, then a body framed by Content-Length or chunked).
fn response_len(bytes: &[u8], to_head: bool) -> Option<usize> {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut slots);
    let httparse::Status::Complete(head) = parsed.parse(bytes).unwrap() else { return None };
    let value = |name: &str| {
        parsed.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| String::from_utf8_lossy(h.value))
    };
    let end = if to_head || matches!(parsed.code, Some(204 | 304)) {
        head
    } else if let Some(length) = value("content-length") {
        head + length.parse::<usize>().unwrap()
    } else if value("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut at = head;
        loop {
            let line = bytes.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
            let size = usize::from_str_radix(std::str::from_utf8(&bytes[at..at + line]).unwrap().trim(), 16).unwrap();
            at += line + 2;
            if size == 0 {
                // The proxy sends no trailers: an empty line ends it.
                break at + 2;
            }
            at += size + 2;
        }
    } else {
        panic!("the test expects framed responses: {:?}", String::from_utf8_lossy(bytes));
    };
    (bytes.len() >= end).then_some(end)
}

/// One client connection that keeps every byte it receives.
struct Conn {
    stream: TcpStream,
    received: Vec<u8>,
    /// Where the next response starts in `received`.
    at: usize,
}

impl Conn {
    async fn open(proxy: &support::Proxy) -> Conn {
        Conn { stream: TcpStream::connect(proxy.addr).await.unwrap(), received: Vec::new(), at: 0 }
    }

    async fn send(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).await.unwrap();
    }

    /// Reads the next whole response; returns its length in bytes.
    async fn response(&mut self, to_head: bool) -> usize {
        loop {
            if let Some(len) = response_len(&self.received[self.at..], to_head) {
                self.at += len;
                return len;
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(WAIT, self.stream.read(&mut chunk)).await.unwrap().unwrap();
            assert!(n > 0, "closed inside a response: {:?}", String::from_utf8_lossy(&self.received[self.at..]));
            self.received.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads until the proxy closes; returns how many bytes came after the
    /// responses already read.
    async fn rest(&mut self) -> usize {
        tokio::time::timeout(WAIT, self.stream.read_to_end(&mut self.received)).await.unwrap().unwrap();
        self.received.len() - self.at
    }
}

/// The record whose `url` ends with `path`.
fn record<'a>(records: &'a [Value], path: &str) -> &'a Value {
    records
        .iter()
        .find(|r| r["url"].as_str().is_some_and(|u| u.ends_with(path)))
        .unwrap_or_else(|| panic!("no record for {path}: {records:?}"))
}

/// An origin answering every request with a chunked body in three pieces
/// (hyper re-frames it for the client), on one connection each.
async fn chunked_origin() -> ScriptedOrigin {
    ScriptedOrigin::start(true, |mut s| async move {
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Origin: yes\r\n\r\n5\r\nhello\r\n1\r\n,\r\n6\r\n world\r\n0\r\n\r\n")
            .await;
        let _ = s.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn bytes_down_and_up_are_what_crossed_the_client_side() {
    bounded(async {
        let origin = chunked_origin().await;
        let p = origin.port();
        let proxy = Company::new().start(&[443]).await;
        let requests = [
            // Forwarded, chunked: hyper adds transfer-encoding and date.
            (
                format!(
                    "GET http://example.test:{p}/chunked HTTP/1.1\r\nHost: example.test:{p}\r\nX-Pad: {}\r\n\r\n",
                    "a".repeat(300)
                ),
                false,
            ),
            // The same as HEAD: a head only.
            (format!("HEAD http://example.test:{p}/head HTTP/1.1\r\nHost: example.test:{p}\r\n\r\n"), true),
            // Blocked: the proxy's own 403 page.
            ("GET http://www.facebook.com/blocked HTTP/1.1\r\nHost: www.facebook.com\r\n\r\n".to_owned(), false),
            // Refused as a bad request (origin form), and the connection closes.
            ("GET /origin-form HTTP/1.1\r\nHost: example.test\r\n\r\n".to_owned(), false),
        ];
        let mut conn = Conn::open(&proxy).await;
        let mut lengths = Vec::new();
        for (request, to_head) in &requests {
            conn.send(request.as_bytes()).await;
            lengths.push(conn.response(*to_head).await);
        }
        assert_eq!(conn.rest().await, 0, "nothing after the last response");
        let records = proxy.records(4).await;
        let by_order = [record(&records, "/chunked"), record(&records, "/head"), record(&records, "/blocked")];
        for ((r, (request, _)), len) in by_order.iter().zip(&requests).zip(&lengths) {
            assert_eq!(r["bytes_down"], *len as u64, "{r}");
            assert_eq!(r["bytes_up"], request.len() as u64, "{r}");
        }
        let bad = records.iter().find(|r| r["status"] == 400).unwrap();
        assert_eq!(bad["bytes_down"], lengths[3] as u64, "{bad}");
        assert_eq!(bad["bytes_up"], requests[3].0.len() as u64, "{bad}");
        assert_eq!(bad["method"], "GET", "{bad}");
        let total: u64 = records.iter().map(|r| r["bytes_down"].as_u64().unwrap()).sum();
        assert_eq!(total, conn.received.len() as u64, "every byte the client got is in one record");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_http_1_0_client_and_the_status_page_are_counted_exactly() {
    bounded(async {
        let origin = chunked_origin().await;
        let p = origin.port();
        let proxy = Company::new().start(&[443]).await;
        // HTTP/1.0: no chunking, the body runs to the close.
        let request = format!("GET http://example.test:{p}/old HTTP/1.0\r\nHost: example.test:{p}\r\n\r\n");
        let mut conn = Conn::open(&proxy).await;
        conn.send(request.as_bytes()).await;
        let got = conn.rest().await;
        assert!(conn.received.starts_with(b"HTTP/1.0 200"), "{:?}", String::from_utf8_lossy(&conn.received));
        // The status page, kept alive and then closed by the client.
        let status = "GET http://socialgate.status/ HTTP/1.1\r\nHost: socialgate.status\r\n\r\n";
        let mut page = Conn::open(&proxy).await;
        page.send(status.as_bytes()).await;
        let page_len = page.response(false).await;
        assert!(
            String::from_utf8_lossy(&page.received).to_lowercase().contains("proxy-status: socialgate\r\n"),
            "the status page is the proxy's own answer"
        );
        drop(page);
        let records = proxy.records(2).await;
        let old = record(&records, "/old");
        assert_eq!(old["bytes_down"], got as u64, "{old}");
        assert_eq!(old["bytes_up"], request.len() as u64, "{old}");
        let status_record = records.iter().find(|r| r["rule"] == "status").unwrap();
        assert_eq!(status_record["bytes_down"], page_len as u64, "{status_record}");
        assert_eq!(status_record["bytes_up"], status.len() as u64, "{status_record}");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn heads_refused_early_are_logged_with_what_arrived() {
    bounded(async {
        let proxy = Company::new().limit("header_timeout = \"600ms\"").limit("max_header_bytes = 2048").start(&[443]).await;

        // 408: a request line, then nothing. Logged from when it began.
        let began = jiff::Timestamp::now();
        let started = Instant::now();
        let slow = "GET http://example.test/slow HTTP/1.1\r\nHost: exa";
        let mut conn = Conn::open(&proxy).await;
        conn.send(slow.as_bytes()).await;
        let timed_out = conn.rest().await;
        assert!(conn.received.starts_with(b"HTTP/1.1 408"));
        assert!(started.elapsed() >= Duration::from_millis(600));

        // 431: too long a head.
        let long = format!("GET http://example.test/long HTTP/1.1\r\nHost: example.test\r\nX-Big: {}\r\n\r\n", "b".repeat(3000));
        let mut big = Conn::open(&proxy).await;
        big.send(long.as_bytes()).await;
        let too_large = big.rest().await;
        assert!(big.received.starts_with(b"HTTP/1.1 431"));

        // 400: both framings at once, checked before hyper parses it.
        let smuggle = "POST http://example.test:8080/smuggle HTTP/1.1\r\nHost: example.test:8080\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut bad = Conn::open(&proxy).await;
        bad.send(smuggle.as_bytes()).await;
        let refused = bad.rest().await;
        assert!(bad.received.starts_with(b"HTTP/1.1 400"));

        let records = proxy.records(3).await;
        let slow_r = records.iter().find(|r| r["status"] == 408).unwrap();
        assert_eq!(slow_r["method"], "GET", "{slow_r}");
        assert_eq!(slow_r["host"], "example.test", "{slow_r}");
        assert_eq!(slow_r["port"], 80, "{slow_r}");
        assert_eq!(slow_r["url"], "http://example.test/slow", "{slow_r}");
        assert_eq!(slow_r["bytes_up"], slow.len() as u64, "{slow_r}");
        assert_eq!(slow_r["bytes_down"], timed_out as u64, "{slow_r}");
        assert!(slow_r["duration_ms"].as_u64().unwrap() >= 550, "{slow_r}");
        let ts: jiff::Timestamp = slow_r["ts"].as_str().unwrap().parse().unwrap();
        assert!(ts.duration_since(began).abs() < jiff::SignedDuration::from_millis(300), "ts is when the head began: {slow_r}");

        let long_r = records.iter().find(|r| r["status"] == 431).unwrap();
        assert_eq!(long_r["url"], "http://example.test/long", "{long_r}");
        assert_eq!(long_r["bytes_down"], too_large as u64, "{long_r}");
        let up = long_r["bytes_up"].as_u64().unwrap();
        assert!(up > 2048 && up <= long.len() as u64, "what arrived before the refusal: {long_r}");

        let bad_r = records.iter().find(|r| r["status"] == 400).unwrap();
        assert_eq!(bad_r["method"], "POST", "{bad_r}");
        assert_eq!(bad_r["port"], 8080, "{bad_r}");
        assert_eq!(bad_r["bytes_up"], smuggle.len() as u64, "{bad_r}");
        assert_eq!(bad_r["bytes_down"], refused as u64, "{bad_r}");
        proxy.stop().await;
    })
    .await;
}
