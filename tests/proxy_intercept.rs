//! `[intercept]`: a blocked HTTPS site gets the block page over TLS with a
//! certificate minted by the company CA; allowed tunnels are never
//! intercepted; malformed ClientHellos close the tunnel.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use support::{Client, Company, TlsOrigin, WAIT, bounded};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The company CA, written into the config folder, and a client trusting it.
struct Ca {
    client: Arc<rustls::ClientConfig>,
}

async fn start_intercepting(company: Company, connect_ports: &[u16]) -> (socialgate::proxy::Running, Company, Ca) {
    let (cert, key) = socialgate::tls::mint::new_ca("Test Company CA", 30, jiff::Timestamp::now()).unwrap();
    let path = company.write(connect_ports);
    std::fs::write(company.dir().join("ca.pem"), &cert).unwrap();
    std::fs::write(company.dir().join("ca.key"), &key).unwrap();
    let mut main = std::fs::read_to_string(&path).unwrap();
    main.push_str("\n[intercept]\nca_cert = \"ca.pem\"\nca_key = \"ca.key\"\n");
    std::fs::write(&path, main).unwrap();
    let config = socialgate::config::load(&path).unwrap_or_else(|d| panic!("{d}"));
    let running = socialgate::proxy::start(config).await.unwrap();

    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls_pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (running, company, Ca { client: Arc::new(client) })
}

/// Through an open tunnel: TLS as `server_name` trusting only the company
/// CA, `GET /`, the whole answer.
async fn https_get_through(client: Client, ca: &Ca, server_name: &str) -> String {
    let connector = tokio_rustls::TlsConnector::from(ca.client.clone());
    let name = rustls_pki_types::ServerName::try_from(server_name.to_owned()).unwrap();
    let mut tls = tokio::time::timeout(WAIT, connector.connect(name, client.stream))
        .await
        .unwrap()
        .expect("the block page's certificate verifies against the company CA");
    tls.write_all(format!("GET / HTTP/1.1\r\nHost: {server_name}\r\n\r\n").as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, tls.read_to_end(&mut answer)).await.unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

async fn stop(running: socialgate::proxy::Running) {
    running.shutdown();
    tokio::time::timeout(WAIT, running.wait()).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_blocked_connect_gets_the_block_page_over_tls() {
    bounded(async {
        let (running, company, ca) = start_intercepting(Company::new(), &[443]).await;
        let mut client = Client::connect(running.listen_addrs()[0], "127.0.0.1").await;
        let reply = client.connect_to("www.facebook.com:443", &[]).await;
        assert_eq!(reply.status, 200, "intercept answers 200 and shows the page inside TLS");
        let page = https_get_through(client, &ca, "www.facebook.com").await;
        assert!(page.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{page}");
        assert!(page.contains("Proxy-Status: socialgate; error=http_request_denied; details=\"services.facebook\""));
        assert!(page.contains("helpdesk@example.test") && page.contains("facebook"), "{page}");

        let records = support::wait_for_records(&company.dir().join("access.log"), 1).await;
        let r = &records[0];
        assert_eq!((r["status"].as_u64(), r["action"].as_str()), (Some(403), Some("block")));
        assert_eq!(r["closed_by"], "proxy");
        assert_eq!(r["sni"], "www.facebook.com");
        assert!(r["bytes_down"].as_u64().unwrap() > 0);
        stop(running).await;
    })
    .await;
}

/// After the block page the proxy lingers rather than closing under the
/// client: bytes the client still sends (a body the page made moot) are
/// read and dropped, and the connection ends with a clean close, not a
/// reset that can destroy the page before the browser shows it.
#[tokio::test]
async fn the_block_page_lingers_so_unread_client_bytes_do_not_reset_it() {
    bounded(async {
        let (running, company, ca) = start_intercepting(Company::new(), &[443]).await;
        let mut client = Client::connect(running.listen_addrs()[0], "127.0.0.1").await;
        assert_eq!(client.connect_to("www.facebook.com:443", &[]).await.status, 200);
        let connector = tokio_rustls::TlsConnector::from(ca.client.clone());
        let name = rustls_pki_types::ServerName::try_from("www.facebook.com").unwrap();
        let mut tls = tokio::time::timeout(WAIT, connector.connect(name, client.stream)).await.unwrap().unwrap();
        tls.write_all(b"POST /upload HTTP/1.1\r\nHost: www.facebook.com\r\nContent-Length: 1000000\r\n\r\n")
            .await
            .unwrap();
        let mut page = Vec::new();
        tokio::time::timeout(WAIT, tls.read_to_end(&mut page)).await.unwrap().unwrap();
        assert!(page.starts_with(b"HTTP/1.1 403 Forbidden\r\n"), "{}", String::from_utf8_lossy(&page));

        // The body, sent after the answer (as a browser still uploading does).
        let (mut tcp, _) = tls.into_inner();
        // Two writes: a closed socket answers the first with a reset, and
        // the second then fails.
        let mut sent = tcp.write_all(&[0x17; 32 * 1024]).await;
        if sent.is_ok() {
            tokio::task::yield_now().await;
            sent = tcp.write_all(&[0x17; 32 * 1024]).await;
        }
        let _ = tcp.shutdown().await;
        let mut rest = Vec::new();
        let end = tokio::time::timeout(WAIT, tcp.read_to_end(&mut rest)).await.unwrap();
        assert!(sent.is_ok() && end.is_ok(), "the connection was reset: {sent:?} {end:?}");
        assert!(rest.is_empty(), "nothing follows the TLS close");

        let records = support::wait_for_records(&company.dir().join("access.log"), 1).await;
        assert_eq!((records[0]["status"].as_u64(), records[0]["closed_by"].as_str()), (Some(403), Some("proxy")));
        assert!(records[0]["bytes_up"].as_u64().unwrap() > 64 * 1024, "the dropped body counts as sent up");
        stop(running).await;
    })
    .await;
}

#[tokio::test]
async fn an_sni_block_inside_an_allowed_tunnel_is_intercepted_too() {
    bounded(async {
        let origin = TlsOrigin::start().await;
        let (running, company, ca) = start_intercepting(Company::new(), &[origin.port()]).await;
        let mut client = Client::connect(running.listen_addrs()[0], "127.0.0.1").await;
        let reply = client.connect_to(&format!("example.test:{}", origin.port()), &[]).await;
        assert_eq!(reply.status, 200);
        let page = https_get_through(client, &ca, "www.facebook.com").await;
        assert!(page.starts_with("HTTP/1.1 403"), "{page}");
        let records = support::wait_for_records(&company.dir().join("access.log"), 1).await;
        assert_eq!(records[0]["closed_by"], "policy");
        assert_eq!(records[0]["rule"], "services.facebook");
        assert_eq!(records[0]["sni"], "www.facebook.com");
        stop(running).await;
    })
    .await;
}

#[tokio::test]
async fn allowed_tunnels_are_never_intercepted() {
    bounded(async {
        let origin = TlsOrigin::start().await;
        let (running, _company, _ca) = start_intercepting(Company::new(), &[origin.port()]).await;
        let mut client = Client::connect(running.listen_addrs()[0], "127.0.0.1").await;
        let reply = client.connect_to(&format!("example.test:{}", origin.port()), &[]).await;
        assert_eq!(reply.status, 200);
        // The origin's own certificate, end to end.
        assert_eq!(client.tls_exchange(&origin, "example.test", "ping").await, "pong: ping\n");
        stop(running).await;
    })
    .await;
}

#[tokio::test]
async fn a_garbage_client_hello_closes_the_tunnel_and_is_logged() {
    bounded(async {
        let origin = TlsOrigin::start().await;
        let (running, company, _ca) = start_intercepting(Company::new(), &[origin.port()]).await;
        for garbage in [
            &[22u8, 3, 1, 0, 8, 1, 0, 0, 4, 3, 3, 0xff, 0xff][..], // inconsistent body
            &[22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff],                // claims 16 MiB
            &[22, 3, 1, 0, 4, 2, 0, 0, 0],                         // not a ClientHello
        ] {
            let mut client = Client::connect(running.listen_addrs()[0], "127.0.0.1").await;
            assert_eq!(client.connect_to(&format!("example.test:{}", origin.port()), &[]).await.status, 200);
            client.stream.write_all(garbage).await.unwrap();
            assert!(client.closed().await, "the proxy closes a tunnel with a malformed ClientHello");
        }
        let records = support::wait_for_records(&company.dir().join("access.log"), 3).await;
        for r in &records {
            assert_eq!((r["status"].as_u64(), r["rule"].as_str()), (Some(400), Some("request")), "{r}");
        }
        stop(running).await;
    })
    .await;
}

/// A TLS client trusting `ca_pem` and offering `alpn`.
fn client_trusting(ca_pem: &str, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls_pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap()).unwrap();
    let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(client)
}

/// The block page is HTTP/1.1 only: a client that offers only `h2` gets a
/// `no_application_protocol` alert (not a page in a protocol it did not
/// ask for), nothing else, and the attempt is logged once as the block.
#[tokio::test]
async fn a_client_offering_only_h2_gets_an_alert_and_one_block_record() {
    bounded(async {
        let (running, company, ca) = start_intercepting(Company::new(), &[443]).await;
        let ca_pem = std::fs::read_to_string(company.dir().join("ca.pem")).unwrap();
        let mut client = Client::connect(running.listen_addrs()[0], "127.0.0.1").await;
        assert_eq!(client.connect_to("www.facebook.com:443", &[]).await.status, 200);
        let connector = tokio_rustls::TlsConnector::from(client_trusting(&ca_pem, &[b"h2"]));
        let name = rustls_pki_types::ServerName::try_from("www.facebook.com").unwrap();
        let err = tokio::time::timeout(WAIT, connector.connect(name, client.stream))
            .await
            .unwrap()
            .expect_err("no protocol in common");
        assert!(err.to_string().contains("NoApplicationProtocol"), "{err}");

        // Browsers offer both and get HTTP/1.1.
        let mut client = Client::connect(running.listen_addrs()[0], "127.0.0.1").await;
        assert_eq!(client.connect_to("www.facebook.com:443", &[]).await.status, 200);
        let both = Ca { client: client_trusting(&ca_pem, &[b"h2", b"http/1.1"]) };
        let page = https_get_through(client, &both, "www.facebook.com").await;
        assert!(page.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{page}");
        drop(ca);

        stop(running).await;
        let records = support::records_in(&company.dir().join("access.log"));
        assert_eq!(records.len(), 2, "one record per CONNECT: {records:#?}");
        for r in &records {
            assert_eq!((r["status"].as_u64(), r["action"].as_str()), (Some(403), Some("block")), "{r}");
            assert_eq!(r["rule"], "services.facebook");
            assert_eq!(r["sni"], "www.facebook.com");
        }
    })
    .await;
}

/// A client that opens the intercepted tunnel and then stalls (no
/// ClientHello, or a ClientHello and no more of the handshake) is cut after
/// `sni_peek_timeout` / `header_timeout`, and logged once.
#[tokio::test]
async fn stalled_handshakes_on_an_intercepted_tunnel_are_cut_and_logged() {
    bounded(async {
        let company = Company::new().limit("sni_peek_timeout = \"1s\"").limit("header_timeout = \"1s\"");
        let (running, company, _ca) = start_intercepting(company, &[443]).await;
        let started = std::time::Instant::now();

        let mut silent = Client::connect(running.listen_addrs()[0], "127.0.0.1").await;
        assert_eq!(silent.connect_to("www.facebook.com:443", &[]).await.status, 200);
        let mut stalled = Client::connect(running.listen_addrs()[0], "127.0.0.1").await;
        assert_eq!(stalled.connect_to("www.facebook.com:443", &[]).await.status, 200);
        stalled.stream.write_all(&support::client_hello("www.facebook.com")).await.unwrap();

        assert!(silent.closed().await, "a tunnel with no ClientHello is closed");
        assert!(stalled.closed().await, "a handshake that never finishes is cut");
        assert!(started.elapsed() < std::time::Duration::from_secs(8), "{:?}", started.elapsed());

        let records = support::wait_for_records(&company.dir().join("access.log"), 2).await;
        stop(running).await;
        assert_eq!(support::records_in(&company.dir().join("access.log")).len(), 2);
        for r in &records {
            assert_eq!((r["status"].as_u64(), r["action"].as_str()), (Some(403), Some("block")), "{r}");
        }
        assert!(records.iter().any(|r| r["bytes_up"].as_u64() > Some(0)), "the ClientHello is counted: {records:#?}");
    })
    .await;
}

/// Reload with a new CA in the same files: the next block page is signed
/// by it (and no longer by the old one).
#[tokio::test]
async fn a_rotated_ca_signs_the_next_block_page() {
    bounded(async {
        let (running, company, old) = start_intercepting(Company::new(), &[443]).await;
        let (cert, key) = socialgate::tls::mint::new_ca("Rotated CA", 30, jiff::Timestamp::now()).unwrap();
        std::fs::write(company.dir().join("ca.pem"), &cert).unwrap();
        std::fs::write(company.dir().join("ca.key"), &key).unwrap();
        let config = socialgate::config::load(&company.dir().join("socialgate.toml")).unwrap_or_else(|d| panic!("{d}"));
        running.reload(config).unwrap();

        let mut client = Client::connect(running.listen_addrs()[0], "127.0.0.1").await;
        assert_eq!(client.connect_to("www.facebook.com:443", &[]).await.status, 200);
        let new = Ca { client: client_trusting(&cert, &[b"http/1.1"]) };
        assert!(https_get_through(client, &new, "www.facebook.com").await.starts_with("HTTP/1.1 403"));

        let mut client = Client::connect(running.listen_addrs()[0], "127.0.0.1").await;
        assert_eq!(client.connect_to("www.facebook.com:443", &[]).await.status, 200);
        let connector = tokio_rustls::TlsConnector::from(old.client.clone());
        let name = rustls_pki_types::ServerName::try_from("www.facebook.com").unwrap();
        let old_trust = tokio::time::timeout(WAIT, connector.connect(name, client.stream)).await.unwrap();
        assert!(old_trust.is_err(), "the old CA no longer signs");
        stop(running).await;
    })
    .await;
}

/// Regression: reloading to a CA that cannot sign block pages (here a
/// server certificate, not a CA) was applied, and blocked HTTPS silently
/// fell back to a plain 403; it is now refused and the old CA keeps
/// serving.
#[tokio::test]
async fn a_reload_to_an_unusable_ca_keeps_the_old_one() {
    bounded(async {
        let (running, company, ca) = start_intercepting(Company::new(), &[443]).await;
        let not_a_ca = rcgen::generate_simple_self_signed(vec!["ca.test".to_owned()]).unwrap();
        std::fs::write(company.dir().join("ca.pem"), not_a_ca.cert.pem()).unwrap();
        std::fs::write(company.dir().join("ca.key"), not_a_ca.signing_key.serialize_pem()).unwrap();
        // What a reload does: load, and apply only what loads.
        match socialgate::config::load(&company.dir().join("socialgate.toml")) {
            Ok(config) => running.reload(config).unwrap(),
            Err(errors) => assert!(errors.to_string().contains("is not a CA certificate"), "{errors}"),
        }

        let mut client = Client::connect(running.listen_addrs()[0], "127.0.0.1").await;
        assert_eq!(client.connect_to("www.facebook.com:443", &[]).await.status, 200);
        assert!(https_get_through(client, &ca, "www.facebook.com").await.starts_with("HTTP/1.1 403"));
        stop(running).await;
    })
    .await;
}
