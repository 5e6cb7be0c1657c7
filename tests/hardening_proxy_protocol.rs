//! The PROXY protocol at its edges: only listed balancers are believed;
//! a listed balancer's connection without a valid header is closed (as
//! Squid and HAProxy do) without serving anything, within `header_timeout`
//! however slowly it arrives; `LOCAL`, `UNKNOWN` and `AF_UNSPEC` keep the
//! balancer's own address; IPv6, TLVs and IPv4-mapped addresses place the
//! client by the address in the header.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::{Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use support::{Client, Company, EchoOrigin, WAIT, bounded};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The balancer's address (listed in `proxy_protocol_from`).
const BALANCER: &str = "127.0.0.4";

/// The standard company behind a balancer at [`BALANCER`], with
/// `header_timeout = "1s"` and a department `lab6` for `2001:db8:6::/48`
/// (facebook allowed there, as in engineering; blocked in default).
fn behind_a_balancer() -> Company {
    Company::new()
        .proxy(&format!("proxy_protocol_from = [\"{BALANCER}/32\"]"))
        .limit("header_timeout = \"1s\"")
        .department("lab6", "networks = [\"2001:db8:6::/48\"]\ndefault = \"allow\"\n[services]\nfacebook = \"allow\"\n")
}

/// A v2 header: signature, version/command, family, length, `body`.
fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[command, family]);
    header.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    header.extend_from_slice(body);
    header
}

/// The address block of a v2 `AF_INET6` header.
fn v6_addresses(src: &str, dst: &str) -> Vec<u8> {
    let mut body = src.parse::<Ipv6Addr>().unwrap().octets().to_vec();
    body.extend_from_slice(&dst.parse::<Ipv6Addr>().unwrap().octets());
    body.extend_from_slice(&[0xc8, 0x22, 0x0c, 0x38]);
    body
}

/// A request line for `url` (a whole head).
fn get(url: &str) -> String {
    let host = url.split('/').nth(2).unwrap();
    format!("GET {url} HTTP/1.1\r\nHost: {host}\r\n\r\n")
}

#[tokio::test]
async fn an_unlisted_peer_cannot_claim_another_address_with_either_version() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let proxy = behind_a_balancer().start(&[443]).await;
        let url = format!("http://www.facebook.com:{}/", origin.port());

        // 127.0.0.1 is not a listed balancer: its header is a bad request.
        let mut v1 = proxy.client().await;
        v1.send(&format!("PROXY TCP4 127.0.0.3 127.0.0.1 50000 3128\r\n{}", get(&url))).await;
        assert_eq!(v1.reply(true).await.status, 400);

        let mut binary = proxy.client().await;
        let mut bytes = v2(0x21, 0x11, &[127, 0, 0, 3, 127, 0, 0, 1, 0xc3, 0x50, 0x0c, 0x38]);
        bytes.extend_from_slice(get(&url).as_bytes());
        binary.send_bytes(&bytes).await;
        if let Some(reply) = binary.reply_or_closed().await {
            assert_eq!(reply.status, 400);
        }

        let records = proxy.records(1).await;
        assert!(records.iter().all(|r| r["client"] == "127.0.0.1" && r["status"] == 400), "{records:?}");
        assert!(records.iter().all(|r| r["department"] == "default"), "{records:?}");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_listed_peer_without_a_valid_header_is_closed_unserved() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let proxy = behind_a_balancer().start(&[443]).await;
        let url = format!("http://example.test:{}/", origin.port());
        let long_v1 = format!("PROXY TCP4 127.0.0.3 127.0.0.1 1 2{}\r\n", " ".repeat(100));
        let mut bad_signature = v2(0x21, 0x11, &[127, 0, 0, 3, 127, 0, 0, 1, 0, 1, 0, 2]);
        bad_signature[8] = b'X';
        let short_v4 = v2(0x21, 0x11, &[127, 0, 0, 3]);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("no header at all", Vec::new()),
            ("v1 that is not one", b"PROXY TCP4 nonsense\r\n".to_vec()),
            ("v1 over 107 bytes", long_v1.into_bytes()),
            ("v1 without CRLF", b"PROXY TCP4 127.0.0.3 127.0.0.1 1 2\n".to_vec()),
            ("v2 with a bad signature", bad_signature),
            ("v2 addresses shorter than AF_INET", short_v4),
            ("v2 version 1", v2(0x11, 0x11, &[127, 0, 0, 3, 127, 0, 0, 1, 0, 1, 0, 2])),
        ];
        for (what, header) in cases {
            let mut balancer = proxy.client_from(BALANCER).await;
            let mut bytes = header;
            bytes.extend_from_slice(get(&url).as_bytes());
            balancer.send_bytes(&bytes).await;
            assert!(balancer.reply_or_closed().await.is_none(), "{what}: answered instead of closed");
        }
        // A header cut short by the balancer closing its side.
        let mut truncated = proxy.client_from(BALANCER).await;
        truncated.send("PROXY TCP4 127.0.0.3 127.0").await;
        truncated.stream.shutdown().await.unwrap();
        assert!(truncated.reply_or_closed().await.is_none(), "truncated v1");

        // The listener still serves a well-formed header, and only that
        // connection reached the log.
        let mut good = proxy.client_from(BALANCER).await;
        good.send(&format!("PROXY TCP4 127.0.0.3 127.0.0.1 50000 {}\r\n", proxy.addr.port())).await;
        assert_eq!(good.get(&url, &[]).await.status, 200);
        let records = proxy.records(1).await;
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(records[0]["client"], "127.0.0.3");
        proxy.stop().await;
    })
    .await;
}

/// Waits for the proxy to close `client`'s connection; how long it took.
async fn closed_after(mut client: Client, started: Instant) -> Duration {
    assert!(client.reply_or_closed().await.is_none(), "answered instead of closed");
    started.elapsed()
}

#[tokio::test]
async fn a_header_held_back_or_dripped_is_cut_at_header_timeout() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let proxy = behind_a_balancer().start(&[443]).await;
        let url = format!("http://www.facebook.com:{}/", origin.port());
        let header = format!("PROXY TCP4 127.0.0.3 127.0.0.1 50000 {}\r\n", proxy.addr.port());

        // Part of a v1 line, then nothing.
        let started = Instant::now();
        let mut held = proxy.client_from(BALANCER).await;
        held.send("PROXY TCP4 127.0.0.3 ").await;
        // A v2 header announcing 64 KiB and sending 12 bytes of it.
        let mut huge = proxy.client_from(BALANCER).await;
        let mut bytes = v2(0x21, 0x11, &[127, 0, 0, 3, 127, 0, 0, 1, 0, 1, 0, 2]);
        bytes[14..16].copy_from_slice(&[0xff, 0xff]);
        huge.send_bytes(&bytes).await;
        // A whole header, one byte every 100 ms: 4 s in all.
        let drip = proxy.client_from(BALANCER).await;
        drip.stream.set_nodelay(true).unwrap();
        let (read_half, mut write_half) = drip.stream.into_split();
        let dripped = header.clone().into_bytes();
        let dripper = tokio::spawn(async move {
            for byte in dripped {
                if write_half.write_all(&[byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        for (what, elapsed) in
            [("held v1", closed_after(held, started).await), ("64 KiB v2", closed_after(huge, started).await)]
        {
            assert!(elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(4), "{what}: {elapsed:?}");
        }
        let mut read_half = read_half;
        let mut scratch = [0u8; 64];
        let closed = tokio::time::timeout(WAIT, read_half.read(&mut scratch)).await;
        assert!(matches!(closed, Ok(Ok(0) | Err(_))), "the dripping balancer was never cut off: {closed:?}");
        assert!(started.elapsed() < Duration::from_secs(4), "cut only after {:?}", started.elapsed());
        dripper.abort();

        // Many small segments arriving within header_timeout are one header.
        let mut split = proxy.client_from(BALANCER).await;
        split.stream.set_nodelay(true).unwrap();
        for chunk in header.as_bytes().chunks(3) {
            split.send_bytes(chunk).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(split.get(&url, &[]).await.status, 200, "placed in engineering");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn local_unknown_and_unspec_keep_the_balancers_own_address() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let proxy = behind_a_balancer().start(&[443]).await;
        let url = format!("http://www.facebook.com:{}/", origin.port());
        let headers: [(&str, Vec<u8>); 4] = [
            ("v2 LOCAL", v2(0x20, 0x00, &[])),
            ("v2 LOCAL with addresses", v2(0x20, 0x11, &[127, 0, 0, 3, 127, 0, 0, 1, 0, 1, 0, 2])),
            ("v2 AF_UNSPEC", v2(0x21, 0x00, &[])),
            ("v1 UNKNOWN", b"PROXY UNKNOWN\r\n".to_vec()),
        ];
        for (what, header) in &headers {
            let mut balancer = proxy.client_from(BALANCER).await;
            balancer.send_bytes(header).await;
            assert_eq!(balancer.get(&url, &[]).await.status, 403, "{what}: facebook is blocked for default");
        }
        let records = proxy.records(headers.len()).await;
        for r in &records {
            assert_eq!(r["client"], BALANCER, "{r}");
            assert_eq!(r["department"], "default", "{r}");
        }
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn ipv6_and_tlvs_in_the_header_place_the_client() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let proxy = behind_a_balancer().start(&[443]).await;
        let url = format!("http://www.facebook.com:{}/", origin.port());
        let tlvs: &[u8] = &[0x02, 0, 4, b'p', b'r', b'o', b'x', 0x04, 0, 0];
        let mut v6_with_tlvs = v6_addresses("2001:db8:6::18", "2001:db8::1");
        v6_with_tlvs.extend_from_slice(tlvs);
        let mut v4_with_tlvs = vec![127, 0, 0, 3, 127, 0, 0, 1, 0xc3, 0x50, 0x0c, 0x38];
        v4_with_tlvs.extend_from_slice(tlvs);
        let headers: [(&str, Vec<u8>); 3] = [
            ("v1 TCP6", b"PROXY TCP6 2001:db8:6::17 2001:db8::1 50000 3128\r\n".to_vec()),
            ("v2 AF_INET6 + TLVs", v2(0x21, 0x21, &v6_with_tlvs)),
            ("v2 AF_INET + TLVs", v2(0x21, 0x11, &v4_with_tlvs)),
        ];
        for (what, header) in &headers {
            let mut balancer = proxy.client_from(BALANCER).await;
            balancer.send_bytes(header).await;
            let reply = balancer.get(&url, &[]).await;
            assert_eq!(reply.status, 200, "{what}: facebook is allowed in lab6 and engineering");
        }
        let records = proxy.records(headers.len()).await;
        let placed: Vec<(String, String)> = records
            .iter()
            .map(|r| (r["client"].as_str().unwrap().to_owned(), r["department"].as_str().unwrap().to_owned()))
            .collect();
        for expected in [("2001:db8:6::17", "lab6"), ("2001:db8:6::18", "lab6"), ("127.0.0.3", "engineering")] {
            assert!(placed.contains(&(expected.0.to_owned(), expected.1.to_owned())), "{expected:?} in {placed:?}");
        }
        proxy.stop().await;
    })
    .await;
}

/// Regression: IPv4-mapped addresses (`::ffff:a.b.c.d`) were matched as
/// IPv6 against `proxy_protocol_from` and `auth_exempt_networks`. A
/// balancer reaching a dual-stack listener was not recognised (its header
/// became a bad request), and a mapped client address in a header missed
/// its exempt network (407). Departments already matched them as IPv4.
#[tokio::test]
async fn ipv4_mapped_addresses_are_matched_as_ipv4() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        // Bound as an IPv6 socket on a mapped loopback address: IPv4
        // clients are accepted as `::ffff:127.0.0.x`, as on `[::]`.
        let proxy = behind_a_balancer()
            .listen(&["[::ffff:127.0.0.1]:0"])
            .with_basic_auth()
            .identity("auth_exempt_networks = [\"127.0.0.3/32\"]")
            .start(&[443])
            .await;
        let port = proxy.addr.port();
        let url = format!("http://www.facebook.com:{}/", origin.port());
        let v4_listener = SocketAddr::new([127, 0, 0, 1].into(), port);

        let mut balancer = Client::connect(v4_listener, BALANCER).await;
        balancer.send(&format!("PROXY TCP4 127.0.0.3 127.0.0.1 50000 {port}\r\n")).await;
        assert_eq!(balancer.get(&url, &[]).await.status, 200, "the balancer seen as ::ffff:{BALANCER} is listed");

        let mut mapped = Client::connect(v4_listener, BALANCER).await;
        mapped.send(&format!("PROXY TCP6 ::ffff:127.0.0.3 ::ffff:127.0.0.1 50001 {port}\r\n")).await;
        assert_eq!(mapped.get(&url, &[]).await.status, 200, "::ffff:127.0.0.3 is in the exempt 127.0.0.3/32");

        let direct = Client::connect(v4_listener, "127.0.0.2").await.get(&url, &[]).await;
        assert_eq!(direct.status, 407, "127.0.0.2 is not exempt");

        let records = proxy.records(3).await;
        for r in &records {
            let client = r["client"].as_str().unwrap();
            assert!(!client.starts_with("::ffff:"), "logged as IPv6: {r}");
        }
        let served: Vec<_> = records.iter().filter(|r| r["status"] == 200).collect();
        assert_eq!(served.len(), 2, "{records:?}");
        assert!(served.iter().all(|r| r["client"] == "127.0.0.3" && r["department"] == "engineering"), "{served:?}");
        assert!(records.iter().any(|r| r["status"] == 407 && r["client"] == "127.0.0.2"), "{records:?}");
        proxy.stop().await;
    })
    .await;
}

/// Regression: a connection still waiting for its PROXY header (or its TLS
/// handshake) ignored shutdown and held it up for `header_timeout` (30 s
/// by default), where an idle keep-alive connection is closed at once: a
/// rolling update could run out of grace and be killed before the access
/// log was flushed.
#[tokio::test]
async fn shutdown_does_not_wait_for_a_header_that_has_not_come() {
    bounded(async {
        let proxy = Company::new()
            .proxy(&format!("proxy_protocol_from = [\"{BALANCER}/32\"]"))
            .limit("header_timeout = \"60s\"")
            .with_tls_listener()
            .start(&[443])
            .await;
        let mut silent = proxy.client_from(BALANCER).await;
        let mut partial = proxy.client_from(BALANCER).await;
        partial.send("PROXY TCP4 127.0.0.3 ").await;
        let tls_addr = proxy.tls_addr.unwrap();
        let mut no_hello = tokio::time::timeout(WAIT, tokio::net::TcpStream::connect(tls_addr)).await.unwrap().unwrap();
        // Each listener accepts in order: a request served on a later
        // connection to it means the earlier ones were accepted (with the
        // proxy, not still queued in the kernel) before shutdown begins.
        let origin = EchoOrigin::start().await;
        let url = format!("http://example.test:{}/", origin.port());
        assert_eq!(proxy.client().await.get(&url, &[]).await.status, 200);
        let connector = tokio_rustls::TlsConnector::from(proxy.company().proxy_tls_client());
        let tcp = tokio::time::timeout(WAIT, tokio::net::TcpStream::connect(tls_addr)).await.unwrap().unwrap();
        let name = rustls_pki_types::ServerName::try_from("proxy.test").unwrap();
        let mut tls = tokio::time::timeout(WAIT, connector.connect(name, tcp)).await.unwrap().unwrap();
        let request = format!("GET {url} HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n");
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        tokio::time::timeout(WAIT, tls.read_to_string(&mut answer)).await.unwrap().unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

        let started = Instant::now();
        proxy.begin_shutdown();
        tokio::time::timeout(Duration::from_secs(5), proxy.stop())
            .await
            .unwrap_or_else(|_| panic!("shutdown still waiting after {:?}", started.elapsed()));
        assert!(silent.reply_or_closed().await.is_none());
        assert!(partial.reply_or_closed().await.is_none());
        let mut scratch = [0u8; 16];
        let closed = tokio::time::timeout(WAIT, no_hello.read(&mut scratch)).await.unwrap();
        assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    })
    .await;
}

/// Over `max_connections`, a balancer's connection is still read for its
/// header before the `503`: the record names the client the balancer
/// speaks for (it named the balancer), and the answer never lands in the
/// middle of the header. A client of the TLS listener over the limit gets
/// the close, not a plain-text `503` it would read as a broken handshake.
#[tokio::test]
async fn over_max_connections_the_header_is_read_and_tls_clients_get_no_plain_text() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let proxy = behind_a_balancer().limit("max_connections = 1").with_tls_listener().start(&[443]).await;
        let url = format!("http://example.test:{}/", origin.port());
        // The one connection allowed, answered: accepted and counted.
        let mut holder = proxy.client().await;
        assert_eq!(holder.get(&url, &[]).await.status, 200);

        let mut balancer = proxy.client_from(BALANCER).await;
        balancer.send("PROXY TCP4 10.9.8.7 127.0.0.1 40000 3128\r\n").await;
        let reply = balancer.get(&url, &[]).await;
        assert_eq!(reply.status, 503);

        let tls_addr = proxy.tls_addr.unwrap();
        let mut tls_client =
            tokio::time::timeout(WAIT, tokio::net::TcpStream::connect(tls_addr)).await.unwrap().unwrap();
        tls_client.write_all(&support::client_hello("proxy.test")).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(WAIT, tls_client.read_to_end(&mut answer)).await.unwrap();
        assert!(answer.is_empty(), "the TLS client got plain text: {:?}", String::from_utf8_lossy(&answer));
        drop((tls_client, balancer));

        let records = proxy.records(3).await;
        let refused: Vec<_> = records.iter().filter(|r| r["status"] == 503).collect();
        assert_eq!(refused.len(), 2, "{records:?}");
        assert!(refused.iter().all(|r| r["rule"] == "limits" && r["closed_by"] == "proxy"), "{refused:?}");
        assert!(refused.iter().any(|r| r["client"] == "10.9.8.7"), "the balancer's client was not named: {refused:?}");
        assert!(refused.iter().all(|r| r["client"] != BALANCER), "{refused:?}");
        drop(holder);
        proxy.stop().await;
    })
    .await;
}
