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
