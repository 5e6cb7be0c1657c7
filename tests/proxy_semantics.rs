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
