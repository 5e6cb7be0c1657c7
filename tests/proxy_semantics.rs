//! HTTP/1.1 proxy semantics (RFC 9110, RFC 9112) as Squid practises them:
//! what a forwarded response may carry back, the protocol version and
//! `Via` of each hop, HTTP/1.0 clients, `Max-Forwards` on TRACE and
//! OPTIONS, and responses the proxy must not relay as they came.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{Company, ScriptedOrigin, bounded};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads whatever the peer sends until it closes.
async fn drain(mut stream: TcpStream) {
    let mut buf = [0u8; 4096];
    while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
}

/// An origin that reads each request head and answers `response` to it,
/// then waits for the proxy to close the connection.
async fn answering(response: &'static [u8]) -> ScriptedOrigin {
    ScriptedOrigin::start(true, move |mut stream| async move {
        let _ = stream.write_all(response).await;
        drain(stream).await;
    })
    .await
}

/// Regression: an origin's `Proxy-Authenticate` (and
/// `Proxy-Authentication-Info`) reached the browser, which then asks the
/// user for "proxy" credentials in a realm the origin chose. Both are for
/// the next hop only (RFC 9110 11.7.1, 11.7.3); Squid drops them too.
#[tokio::test]
async fn an_origins_proxy_authentication_headers_never_reach_the_client() {
    bounded(async {
        let origin = answering(
            b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"Corporate proxy\"\r\n\
              Proxy-Authentication-Info: nextnonce=\"x\"\r\nWWW-Authenticate: Basic realm=\"site\"\r\nContent-Length: 2\r\n\r\nno",
        )
        .await;
        let proxy = Company::new().start(&[443]).await;
        let mut client = proxy.client().await;

        let reply = client.get(&format!("http://example.test:{}/", origin.port()), &[]).await;

        assert_eq!(reply.status, 407, "{reply:?}");
        assert_eq!(reply.header("proxy-authenticate"), None, "{reply:?}");
        assert_eq!(reply.header("proxy-authentication-info"), None, "{reply:?}");
        assert_eq!(reply.header("www-authenticate"), Some("Basic realm=\"site\""), "{reply:?}");
        assert_eq!(reply.body, "no");
        proxy.stop().await;
    })
    .await;
}

/// Sends `raw` on a new connection to the proxy and returns everything it
/// answers until it closes the connection.
async fn exchange(proxy: &support::Proxy, raw: &str) -> String {
    let mut client = proxy.client().await;
    client.send(raw).await;
    let mut answer = Vec::new();
    tokio::time::timeout(support::WAIT, client.stream.read_to_end(&mut answer))
        .await
        .expect("the proxy did not close the connection")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// The response head in `answer` starting at `at`, lowercased, and where
/// its body starts.
fn head_at(answer: &str, at: usize) -> (String, usize) {
    let end = answer[at..].find("\r\n\r\n").map(|i| at + i + 4).expect("a whole response head");
    (answer[at..end].to_lowercase(), end)
}

/// Regression: `Via` said `1.1` whatever version the hop used, and an
/// origin's HTTP/1.0 status line reached HTTP/1.1 clients as is (an
/// intermediary sends its own version, RFC 9110 2.5; `Via` names the
/// received one, 7.6.3). Squid does both.
#[tokio::test]
async fn each_hop_is_named_with_its_own_version() {
    bounded(async {
        let echo = support::EchoOrigin::start().await;
        let old = ScriptedOrigin::start(true, |mut stream| async move {
            let _ = stream.write_all(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nfrom 1.0").await;
        })
        .await;
        let proxy = Company::new().start(&[443]).await;

        // An HTTP/1.0 request is forwarded (as HTTP/1.1) with `Via: 1.0`.
        let answer = exchange(&proxy, &format!("GET http://example.test:{}/ HTTP/1.0\r\n\r\n", echo.port())).await;
        assert!(answer.contains("\nvia: 1.0 socialgate\n"), "{answer}");
        assert!(!answer.contains("\nvia: 1.1 socialgate\n"), "{answer}");

        // An HTTP/1.0 answer reaches an HTTP/1.1 client as HTTP/1.1, with
        // `Via: 1.0`, framed so that the connection carries on.
        let mut client = proxy.client().await;
        let first = format!("GET http://example.test:{}/old HTTP/1.1\r\nHost: example.test\r\n\r\n", old.port());
        let next = format!("GET http://example.test:{}/next HTTP/1.1\r\nHost: example.test\r\n\r\n", echo.port());
        client.send(&first).await;
        let reply = client.reply(true).await;
        assert_eq!((reply.status, reply.body.as_str()), (200, "from 1.0"), "{reply:?}");
        assert_eq!(reply.header("via"), Some("1.0 socialgate"), "{reply:?}");
        client.send(&next).await;
        let reply = client.reply(true).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.header("via"), Some("1.1 socialgate"), "{reply:?}");

        let whole = exchange(&proxy, &first.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n")).await;
        assert!(whole.starts_with("HTTP/1.1 200 OK\r\n"), "{whole}");
        proxy.stop().await;
    })
    .await;
}

/// Regression: an HTTP/1.0 client asking for keep-alive was answered
/// `Connection: keep-alive` for a body of unknown length (a chunked
/// origin), which can only end with the connection — which the proxy then
/// closed. The answer now says nothing of keep-alive and ends at the close,
/// as for any HTTP/1.0 body without a length (RFC 9112 6.3).
#[tokio::test]
async fn an_http_1_0_client_is_not_promised_keep_alive_for_a_body_without_length() {
    bounded(async {
        let chunked =
            answering(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
                .await;
        let proxy = Company::new().start(&[443]).await;

        let answer = exchange(
            &proxy,
            &format!("GET http://example.test:{}/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", chunked.port()),
        )
        .await;

        let (head, body) = head_at(&answer, 0);
        assert!(head.starts_with("http/1.0 200 ok\r\n"), "{answer}");
        assert!(!head.contains("keep-alive"), "{answer}");
        assert!(!head.contains("content-length") && !head.contains("transfer-encoding"), "{answer}");
        assert_eq!(&answer[body..], "hello world");
        let records = proxy.records(1).await;
        assert_eq!((records[0]["status"].as_u64(), records[0]["closed_by"].as_str()), (Some(200), Some("origin")));
        proxy.stop().await;
    })
    .await;
}

/// Regression: `Max-Forwards` was ignored, so a TRACE or OPTIONS with
/// `Max-Forwards: 0` went on to the origin, and other values were passed on
/// unchanged. Each intermediary answers at 0 and decrements otherwise (RFC
/// 9110 7.6.2); Squid answers TRACE itself at 0 and decrements both.
#[tokio::test]
async fn max_forwards_is_answered_at_zero_and_counted_down_on_trace_and_options() {
    bounded(async {
        let origin = support::CountingOrigin::start().await;
        let proxy = Company::new().start(&[443]).await;
        let url = format!("http://example.test:{}/diag", origin.port());
        let mut client = proxy.client().await;

        // TRACE at 0: the proxy echoes the request as it arrived, less the
        // credentials, and the connection goes on serving.
        client
            .send(&format!(
                "TRACE {url} HTTP/1.1\r\nHost: example.test\r\nMax-Forwards: 0\r\nX-Probe: 1\r\n\
                 Cookie: session=secret\r\nAuthorization: Basic c2VjcmV0\r\n\r\n"
            ))
            .await;
        let trace = client.reply(true).await;
        assert_eq!(trace.status, 200, "{trace:?}");
        assert_eq!(trace.header("content-type"), Some("message/http"));
        assert_eq!(trace.header("proxy-status"), Some("socialgate"));
        assert!(trace.body.starts_with(&format!("TRACE {url} HTTP/1.1\r\n")), "{}", trace.body);
        assert!(trace.body.contains("\r\nmax-forwards: 0\r\n") && trace.body.contains("\r\nx-probe: 1\r\n"));
        assert!(!trace.body.contains("secret") && !trace.body.contains("c2VjcmV0"), "{}", trace.body);
        assert!(trace.body.ends_with("\r\n\r\n"), "{}", trace.body);

        // OPTIONS at 0: a bodiless 200 from the proxy.
        client.send(&format!("OPTIONS {url} HTTP/1.1\r\nHost: example.test\r\nMax-Forwards: 0\r\n\r\n")).await;
        let options = client.reply(true).await;
        assert_eq!((options.status, options.header("content-length")), (200, Some("0")), "{options:?}");
        assert_eq!(origin.heads(), 0, "a request with no forwards left reached the origin");

        // Above 0 both are forwarded with one hop less; on other methods
        // the header means nothing and goes through as sent.
        for (method, sent, forwarded) in [("TRACE", "3", "2"), ("OPTIONS", "1", "0"), ("GET", "0", "0")] {
            let raw = format!("{method} {url} HTTP/1.1\r\nHost: example.test\r\nMax-Forwards: {sent}\r\n\r\n");
            client.send(&raw).await;
            let reply = client.reply(true).await;
            assert_eq!(reply.header("x-origin"), Some("counting"), "{method}: {reply:?}");
            assert!(reply.body.contains(&format!("\nmax-forwards: {forwarded}\n")), "{method}: {}", reply.body);
        }
        assert_eq!(origin.heads(), 3);

        let records = proxy.records(5).await;
        assert_eq!(records[0]["method"], "TRACE");
        assert_eq!((records[0]["status"].as_u64(), records[0]["closed_by"].as_str()), (Some(200), Some("proxy")));
        assert_eq!((records[0]["rule"].as_str(), records[0]["action"].as_str()), (Some("default"), Some("allow")));
        assert_eq!((records[1]["method"].as_str(), records[1]["closed_by"].as_str()), (Some("OPTIONS"), Some("proxy")));
        proxy.stop().await;
    })
    .await;
}

/// The policy decides before `Max-Forwards` is looked at: a TRACE to a
/// blocked service gets the block page, never an echo.
#[tokio::test]
async fn a_spent_trace_to_a_blocked_service_is_still_blocked() {
    bounded(async {
        let proxy = Company::new().start(&[443]).await;
        let mut client = proxy.client().await;
        client
            .send("TRACE http://www.facebook.com/ HTTP/1.1\r\nHost: www.facebook.com\r\nMax-Forwards: 0\r\n\r\n")
            .await;
        let reply = client.reply(true).await;
        assert_eq!(reply.status, 403, "{reply:?}");
        assert_eq!(
            reply.header("proxy-status"),
            Some("socialgate; error=http_request_denied; details=\"services.facebook\"")
        );
        proxy.stop().await;
    })
    .await;
}

/// Regression: an origin's `Transfer-Encoding: gzip, chunked` had its
/// chunking decoded and the header dropped, so the client got gzip bytes
/// as if they were the content. A transfer coding the proxy cannot undo
/// gets a 502 (`http_protocol_error`), as in Squid; `chunked` alone is
/// re-framed as before.
#[tokio::test]
async fn a_transfer_coding_other_than_chunked_from_the_origin_gets_502() {
    bounded(async {
        let proxy = Company::new().start(&[443]).await;
        for (coding, status) in [
            ("gzip, chunked", 502),
            ("gzip\r\nTransfer-Encoding: chunked", 502),
            ("x-custom, CHUNKED", 502),
            ("gzip", 502),
            ("Chunked", 200),
        ] {
            let response = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: {coding}\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
            let response: &'static [u8] = Box::leak(response.into_bytes().into_boxed_slice());
            let origin = answering(response).await;
            let mut client = proxy.client().await;
            let reply = client.get(&format!("http://example.test:{}/", origin.port()), &[]).await;
            assert_eq!(reply.status, status, "{coding:?}: {reply:?}");
            if status == 502 {
                assert_eq!(
                    reply.header("proxy-status"),
                    Some("socialgate; error=http_protocol_error; details=\"default\""),
                    "{coding:?}"
                );
            } else {
                assert_eq!(reply.body, "hello", "{coding:?}");
            }
        }
        proxy.stop().await;
    })
    .await;
}

/// An origin response head with `n` extra header fields of `size` bytes.
fn response_with_headers(n: usize, size: usize) -> &'static [u8] {
    let fields: String = (0..n).map(|i| format!("X-Field-{i}: {}\r\n", "v".repeat(size))).collect();
    let response = format!("HTTP/1.1 200 OK\r\n{fields}Content-Length: 2\r\n\r\nok");
    Box::leak(response.into_bytes().into_boxed_slice())
}

/// Regression: a response with more than 100 header fields (hyper's
/// default) got a 502, though browsers and Squid take it; and a response
/// head over the proxy's limits was reported as a generic protocol error.
/// Now 150 fields pass, and a head that is too large gets a 502 saying so
/// (`http_response_header_section_size`, RFC 9209 2.3.13).
#[tokio::test]
async fn many_response_headers_pass_and_a_head_too_large_is_named() {
    bounded(async {
        let proxy = Company::new().start(&[443]).await;
        let many = answering(response_with_headers(150, 8)).await;
        let answer = exchange(
            &proxy,
            &format!("GET http://example.test:{}/ HTTP/1.1\r\nConnection: close\r\n\r\n", many.port()),
        )
        .await;
        let (head, body) = head_at(&answer, 0);
        assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
        assert_eq!(head.matches("\r\nx-field-").count(), 150, "{head}");
        assert_eq!(&answer[body..], "ok");

        let mut client = proxy.client().await;

        for (n, size) in [(1000, 8), (600, 1000)] {
            let huge = answering(response_with_headers(n, size)).await;
            let reply = client.get(&format!("http://example.test:{}/", huge.port()), &[]).await;
            assert_eq!(reply.status, 502, "{n} x {size}: {reply:?}");
            assert_eq!(
                reply.header("proxy-status"),
                Some("socialgate; error=http_response_header_section_size; details=\"default\""),
                "{n} x {size}"
            );
        }
        proxy.stop().await;
    })
    .await;
}
