//! A reload changes the listeners, not only the policy: new `[proxy]
//! listen`, `[proxy.tls]` and `[admin] listen` addresses are bound, the
//! ones no longer configured stop accepting while what they accepted
//! carries on, a rotated TLS certificate serves the next handshake, and a
//! reload whose new address cannot be bound changes nothing at all.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use rustls_pki_types::{CertificateDer, ServerName};
use support::{Client, Company, EchoOrigin, Proxy, TlsOrigin, WAIT, bounded, refuses_connections};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// `GET url` through the proxy at `proxy` from 127.0.0.3 (engineering): the status.
async fn status_via(proxy: SocketAddr, url: &str) -> u16 {
    Client::connect(proxy, "127.0.0.3").await.get(url, &[]).await.status
}

/// `GET /healthz` on an admin endpoint: the status.
async fn healthz(admin: SocketAddr) -> u16 {
    let mut stream = tokio::time::timeout(WAIT, TcpStream::connect(admin)).await.unwrap().unwrap();
    http_get(&mut stream, "/healthz", "admin").await
}

/// One HTTP/1.1 `GET target` over `stream` (kept open): the status.
async fn http_get<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, target: &str, host: &str) -> u16 {
    let request = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    tokio::time::timeout(WAIT, read_response(stream)).await.expect("no response within the deadline")
}

/// Reads one response with a `Content-Length` body; returns its status.
async fn read_response<S: AsyncRead + Unpin>(stream: &mut S) -> u16 {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let mut slots = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Response::new(&mut slots);
        if let httparse::Status::Complete(head) = parsed.parse(&buf).unwrap() {
            let length = parsed
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map_or(0, |h| std::str::from_utf8(h.value).unwrap().parse::<usize>().unwrap());
            let status = parsed.code.unwrap();
            while buf.len() < head + length {
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "closed inside the body");
                buf.extend_from_slice(&chunk[..n]);
            }
            return status;
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before a full response head");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A TLS connection to the proxy's TLS listener at `addr`, from 127.0.0.3.
async fn tls_to_proxy(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = Client::connect(addr, "127.0.0.3").await.stream;
    let connector = tokio_rustls::TlsConnector::from(config);
    let name = ServerName::try_from("proxy.test").unwrap();
    tokio::time::timeout(WAIT, connector.connect(name, tcp)).await.unwrap().unwrap()
}

/// The certificate a TLS connection was served.
fn served(tls: &tokio_rustls::client::TlsStream<TcpStream>) -> CertificateDer<'static> {
    tls.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned()
}

const ADMIN: &str = "[admin]\nlisten = \"127.0.0.1:0\"\n";

#[tokio::test]
async fn a_reload_adding_a_listen_address_serves_on_it_and_keeps_the_old_one() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let url = format!("http://example.test:{}/", origin.port());
        let mut proxy = Company::new().start(&[443]).await;
        let first = proxy.addr;
        let mut kept_alive = proxy.client_from("127.0.0.3").await;
        assert_eq!(kept_alive.get(&url, &[]).await.status, 200);

        proxy.reload(|company| company.listen(&["127.0.0.1:0", "127.0.0.2:0"]));

        let addrs = proxy.listen_addrs();
        assert_eq!(addrs.len(), 2, "{addrs:?}");
        assert_eq!(addrs[0], first, "the unchanged address is kept, not rebound");
        let added = addrs[1];
        assert_eq!(added.ip().to_string(), "127.0.0.2");
        assert_ne!(added.port(), 0, "the ephemeral port is resolved");
        assert_eq!(status_via(added, &url).await, 200);
        assert_eq!(status_via(first, &url).await, 200);
        assert_eq!(kept_alive.get(&url, &[]).await.status, 200, "a connection from before is untouched");
        // The new address is the proxy's own: never reachable through it.
        let looped = Client::connect(first, "127.0.0.3").await.get(&format!("http://{added}/"), &[]).await;
        assert_eq!(looped.status, 403, "{looped:?}");
        assert!(looped.header("proxy-status").unwrap().contains("destination_ip_prohibited"));
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_reload_removing_a_listen_address_closes_it_while_its_connections_carry_on() {
    bounded(async {
        let echo = EchoOrigin::start().await;
        let tls_origin = TlsOrigin::start().await;
        let url = format!("http://example.test:{}/", echo.port());
        let mut proxy = Company::new().listen(&["127.0.0.1:0", "127.0.0.2:0"]).start(&[tls_origin.port()]).await;
        let [kept, removed] = proxy.listen_addrs()[..] else { panic!("two listeners") };

        // Accepted on the address about to go: a keep-alive connection and
        // an open tunnel (TLS session up, nothing sent yet).
        let mut kept_alive = Client::connect(removed, "127.0.0.3").await;
        assert_eq!(kept_alive.get(&url, &[]).await.status, 200);
        let mut tunnel = Client::connect(removed, "127.0.0.3").await;
        assert_eq!(tunnel.connect_to(&format!("example.test:{}", tls_origin.port()), &[]).await.status, 200);
        let mut session = tunnel.tls_session(&tls_origin, "example.test").await;

        proxy.reload(|company| company.listen(&["127.0.0.1:0"]));

        assert_eq!(proxy.listen_addrs(), vec![kept]);
        refuses_connections(removed).await;
        assert_eq!(status_via(kept, &url).await, 200);
        assert_eq!(kept_alive.get(&url, &[]).await.status, 200, "the keep-alive connection carries on");
        session.write_all(b"still here\n").await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(WAIT, session.read_to_end(&mut answer)).await.unwrap().unwrap();
        assert_eq!(String::from_utf8_lossy(&answer), "pong: still here\n", "the tunnel carries on");
        drop(session);
        // No longer the proxy's own: the port is just closed now.
        let after = Client::connect(kept, "127.0.0.3").await.get(&format!("http://{removed}/"), &[]).await;
        assert_eq!(after.status, 502, "{after:?}");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_reload_moves_the_admin_endpoint() {
    bounded(async {
        let mut proxy = Company::new().start_with(&[443], ADMIN).await;
        let old = proxy.admin_addr().unwrap();
        let mut open = tokio::time::timeout(WAIT, TcpStream::connect(old)).await.unwrap().unwrap();
        assert_eq!(http_get(&mut open, "/healthz", "admin").await, 200);

        proxy.reload(|company| company.extra("[admin]\nlisten = \"127.0.0.2:0\"\n"));

        let new = proxy.admin_addr().unwrap();
        assert_eq!(new.ip().to_string(), "127.0.0.2");
        assert_eq!(healthz(new).await, 200);
        refuses_connections(old).await;
        assert_eq!(http_get(&mut open, "/healthz", "admin").await, 200, "an open admin connection carries on");
        let looped = proxy.client_from("127.0.0.3").await.get(&format!("http://{new}/metrics"), &[]).await;
        assert_eq!(looped.status, 403, "the moved admin port is the proxy's own: {looped:?}");

        proxy.reload(|company| company.extra(""));
        assert_eq!(proxy.admin_addr(), None);
        refuses_connections(new).await;
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_reload_adding_proxy_tls_binds_its_listener() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let mut proxy = Company::new().start(&[443]).await;
        assert!(proxy.tls_addrs().is_empty());

        proxy.reload(Company::with_tls_listener);

        let tls_addrs = proxy.tls_addrs();
        assert_eq!(tls_addrs.len(), 1, "{tls_addrs:?}");
        let mut tls = tls_to_proxy(tls_addrs[0], proxy.company().proxy_tls_client()).await;
        let target = format!("http://example.test:{}/", origin.port());
        assert_eq!(http_get(&mut tls, &target, "example.test").await, 200);
        let looped = proxy.client_from("127.0.0.3").await.get(&format!("http://{}/", tls_addrs[0]), &[]).await;
        assert_eq!(looped.status, 403, "the TLS listener is the proxy's own: {looped:?}");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_reload_with_a_rotated_certificate_serves_it_to_new_handshakes() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let target = format!("http://example.test:{}/", origin.port());
        let mut proxy = Company::new().with_tls_listener().start(&[443]).await;
        let addr = proxy.tls_addr.unwrap();
        let old_cert = proxy.company().tls_cert_der();
        let mut before = tls_to_proxy(addr, proxy.company().proxy_tls_client()).await;
        assert_eq!(served(&before), old_cert);
        assert_eq!(http_get(&mut before, &target, "example.test").await, 200);

        // A new certificate and key in the same files.
        proxy.reload(Company::with_tls_listener);

        let new_cert = proxy.company().tls_cert_der();
        assert_ne!(new_cert, old_cert);
        assert_eq!(proxy.tls_addrs(), vec![addr], "the TLS listener itself is kept");
        let mut after = tls_to_proxy(addr, support::trusting(&[old_cert.clone(), new_cert.clone()])).await;
        assert_eq!(served(&after), new_cert, "a new handshake gets the new certificate");
        assert_eq!(http_get(&mut after, &target, "example.test").await, 200);
        assert_eq!(http_get(&mut before, &target, "example.test").await, 200, "a connection from before carries on");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_port_moved_from_plain_to_tls_changes_role_without_closing() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let target = format!("http://example.test:{}/", origin.port());
        let mut proxy = Company::new().start(&[443]).await;
        let port = proxy.addr;
        let mut plain_before = proxy.client_from("127.0.0.3").await;
        assert_eq!(plain_before.get(&target, &[]).await.status, 200);

        // The socket bound to `port` now serves TLS; plain moves elsewhere.
        let moved = port.to_string();
        proxy.reload(|company| company.listen(&["127.0.0.2:0"]).with_tls_listener().tls_listen(&[&moved]));

        assert_eq!(proxy.tls_addrs(), vec![port]);
        assert_eq!(proxy.listen_addrs()[0].ip().to_string(), "127.0.0.2");
        let mut tls = tls_to_proxy(port, proxy.company().proxy_tls_client()).await;
        assert_eq!(http_get(&mut tls, &target, "example.test").await, 200);
        assert_eq!(status_via(proxy.listen_addrs()[0], &target).await, 200);
        assert_eq!(plain_before.get(&target, &[]).await.status, 200, "a plain connection from before carries on");
        proxy.stop().await;
    })
    .await;
}

/// Everything a failed reload must leave as it was.
fn in_force(proxy: &Proxy) -> (Vec<SocketAddr>, Vec<SocketAddr>, Option<SocketAddr>) {
    (proxy.listen_addrs(), proxy.tls_addrs(), proxy.admin_addr())
}

#[tokio::test]
async fn a_reload_whose_new_address_is_taken_changes_nothing_and_is_counted() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let facebook = format!("http://www.facebook.com:{}/", origin.port());
        let mut proxy = Company::new().start_with(&[443], ADMIN).await;
        let before = in_force(&proxy);
        // 127.0.0.1 is in the default department, where facebook is blocked.
        assert_eq!(Client::connect(proxy.addr, "127.0.0.1").await.get(&facebook, &[]).await.status, 403);

        let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = squatter.local_addr().unwrap();
        // A port free on an address no other test uses: on 127.0.0.3 a
        // concurrent test's client socket could take the same port between
        // this pick and the reload (seen once in CI: the reload then failed
        // on this address, not on the taken one).
        let free = {
            let probe = std::net::TcpListener::bind("127.0.0.83:0").unwrap();
            probe.local_addr().unwrap().to_string()
        };
        let failed = proxy.try_reload(|company| {
            company
                .listen(&["127.0.0.1:0", &free, &taken.to_string()])
                .with_tls_listener()
                .extra("[admin]\nlisten = \"127.0.0.2:0\"\n")
                .department("default", "default = \"allow\"\n")
        });

        let err = failed.expect_err("the reload must fail");
        let message = err.to_string();
        assert!(message.contains(&taken.to_string()), "names the address: {message}");
        assert!(message.to_lowercase().contains("in use"), "gives the OS error: {message}");
        assert!(matches!(err, socialgate::proxy::ReloadError::Bind { addr, .. } if addr == taken));
        assert_eq!(in_force(&proxy), before, "the listeners in force are untouched");
        refuses_connections(free.parse().unwrap()).await;
        assert_eq!(healthz(before.2.unwrap()).await, 200);
        assert_eq!(Client::connect(proxy.addr, "127.0.0.1").await.get(&facebook, &[]).await.status, 403);
        let metrics = proxy.metrics_text();
        assert!(metrics.contains(r#"socialgate_reloads_total{result="failure"} 1"#), "{metrics}");
        assert!(!metrics.contains(r#"socialgate_reloads_total{result="success"} 1"#), "{metrics}");
        assert!(metrics.contains("socialgate_config_generation 1"), "{metrics}");

        // Once the address is free the same change applies.
        drop(squatter);
        proxy.reload(|company| company);
        assert_eq!(proxy.listen_addrs().len(), 3);
        assert_eq!(proxy.tls_addrs().len(), 1);
        assert_eq!(Client::connect(taken, "127.0.0.1").await.get(&facebook, &[]).await.status, 200);
        proxy.stop().await;
    })
    .await;
}
