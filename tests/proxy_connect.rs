//! CONNECT tunnels end to end: a real TLS handshake through the tunnel,
//! per-department decisions, `connect_ports`, idle timeouts, and records.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{Company, SilentOrigin, TlsOrigin, bounded};

#[tokio::test]
async fn an_allowed_tunnel_carries_a_tls_session_to_the_origin() {
    bounded(async {
        let origin = TlsOrigin::start().await;
        let proxy = Company::new().start(&[origin.port()]).await;
        let mut engineer = proxy.client_from("127.0.0.3").await;

        let reply = engineer.connect_to(&format!("www.facebook.com:{}", origin.port()), &[]).await;
        assert_eq!(reply.status, 200);
        let answer = engineer.tls_exchange(&origin, "www.facebook.com", "ping").await;
        assert_eq!(answer, "pong: ping\n");

        let r = &proxy.records(1).await[0];
        assert_eq!(r["method"], "CONNECT");
        assert_eq!(r["host"], "www.facebook.com");
        assert_eq!(r["port"], origin.port());
        assert_eq!(r["url"], serde_json::Value::Null);
        assert_eq!(r["sni"], "www.facebook.com");
        assert_eq!(r["service"], "facebook");
        assert_eq!(r["department"], "engineering");
        assert_eq!(r["action"], "allow");
        assert_eq!(r["status"], 200);
        assert_eq!(r["closed_by"], "origin");
        assert!(r["bytes_up"].as_u64().unwrap() > 200, "a ClientHello went up: {r}");
        assert!(r["bytes_down"].as_u64().unwrap() > 200, "a certificate came down: {r}");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_blocked_tunnel_gets_403_with_a_short_text_body() {
    bounded(async {
        let origin = TlsOrigin::start().await;
        let proxy = Company::new().start(&[origin.port()]).await;
        let mut engineer = proxy.client_from("127.0.0.3").await;

        let reply = engineer.connect_to(&format!("twitter.com:{}", origin.port()), &[]).await;

        assert_eq!(reply.status, 403);
        assert!(reply.header("content-type").unwrap().starts_with("text/plain"));
        assert_eq!(
            reply.header("proxy-status"),
            Some("socialgate; error=http_request_denied; details=\"services.twitter\"")
        );
        let r = &proxy.records(1).await[0];
        assert_eq!((r["action"].as_str(), r["status"].as_u64()), (Some("block"), Some(403)));
        assert_eq!(r["closed_by"], "proxy");

        // The same host is fine for sales.
        let mut seller = proxy.client_from("127.0.0.2").await;
        assert_eq!(seller.connect_to(&format!("twitter.com:{}", origin.port()), &[]).await.status, 200);
        assert_eq!(seller.tls_exchange(&origin, "twitter.com", "hi").await, "pong: hi\n");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_port_outside_connect_ports_gets_403() {
    bounded(async {
        let proxy = Company::new().start(&[443]).await;
        let mut client = proxy.client_from("127.0.0.3").await;

        let reply = client.connect_to("example.test:8443", &[]).await;

        assert_eq!(reply.status, 403);
        assert_eq!(
            reply.header("proxy-status"),
            Some("socialgate; error=http_request_denied; details=\"connect_ports\"")
        );
        let r = &proxy.records(1).await[0];
        assert_eq!(r["rule"], "connect_ports");
        assert_eq!(r["action"], "block");
        assert_eq!(r["port"], 8443);
        assert_eq!(r["department"], "engineering", "refusals are logged under the client's department");
        proxy.stop().await;
    })
    .await;
}

/// Opens a tunnel that carries nothing under these limits, waits for the
/// proxy to close it, and returns its record.
async fn idle_tunnel_record(tunnel_idle_timeout: &str, sni_peek_timeout: &str) -> serde_json::Value {
    let origin = SilentOrigin::start().await;
    let proxy = Company::new()
        .limit(&format!("tunnel_idle_timeout = \"{tunnel_idle_timeout}\""))
        .limit(&format!("sni_peek_timeout = \"{sni_peek_timeout}\""))
        .start(&[origin.addr.port()])
        .await;
    let mut client = proxy.client_from("127.0.0.3").await;
    assert_eq!(client.connect_to(&format!("example.test:{}", origin.addr.port()), &[]).await.status, 200);
    assert!(client.closed().await, "the idle tunnel stayed open");
    let record = proxy.records(1).await.remove(0);
    proxy.stop().await;
    record
}

#[tokio::test]
async fn an_idle_tunnel_is_closed_after_tunnel_idle_timeout() {
    bounded(async {
        let r = idle_tunnel_record("300ms", "100ms").await;
        assert_eq!(r["closed_by"], "timeout");
        assert_eq!(r["status"], 200);
    })
    .await;
}

/// The wait for a ClientHello is idle time too: a tunnel with no bytes
/// either way ends when it has idled `tunnel_idle_timeout` since it opened,
/// not that long after the wait.
#[tokio::test]
async fn the_sni_wait_counts_as_tunnel_idle_time() {
    bounded(async {
        let r = idle_tunnel_record("600ms", "1500ms").await;
        assert_eq!(r["closed_by"], "timeout");
        let ms = r["duration_ms"].as_u64().unwrap();
        // Ends with the wait (1.5 s), not 0.6 s after it (2.1 s).
        assert!((1400..1900).contains(&ms), "{r}");
    })
    .await;
}

#[tokio::test]
async fn a_reload_that_blocks_an_open_tunnel_cuts_it() {
    bounded(async {
        let origin = SilentOrigin::start().await;
        let mut proxy = Company::new().start(&[origin.addr.port()]).await;
        let mut seller = proxy.client_from("127.0.0.2").await;
        assert_eq!(seller.connect_to(&format!("twitter.com:{}", origin.addr.port()), &[]).await.status, 200);

        proxy.reload(|company| {
            company.department(
                "sales",
                "networks = [\"127.0.0.2/32\"]\nusers = [\"alice\"]\ndefault = \"allow\"\n[services]\ntwitter = \"block\"\n",
            )
        });

        assert!(seller.closed().await, "the tunnel outlived its policy");
        let r = &proxy.records(1).await[0];
        assert_eq!(r["closed_by"], "policy");
        assert_eq!(r["action"], "allow", "logged with its original action");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_blocked_server_name_inside_an_allowed_tunnel_closes_it() {
    bounded(async {
        let origin = TlsOrigin::start().await;
        let proxy = Company::new().start(&[origin.port()]).await;
        let mut engineer = proxy.client_from("127.0.0.3").await;

        // Facebook is allowed for engineering, Twitter is not.
        assert_eq!(engineer.connect_to(&format!("www.facebook.com:{}", origin.port()), &[]).await.status, 200);
        assert!(engineer.tls_handshake_fails(&origin, "twitter.com").await);

        let r = &proxy.records(1).await[0];
        assert_eq!(r["host"], "www.facebook.com");
        assert_eq!(r["sni"], "twitter.com");
        assert_eq!(r["action"], "block");
        assert_eq!(r["rule"], "services.twitter");
        assert_eq!(r["status"], 403);
        assert_eq!(r["closed_by"], "policy");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn non_tls_tunnels_can_be_refused() {
    bounded(async {
        let origin = SilentOrigin::start().await;
        let proxy = Company::new().proxy("non_tls_tunnels = \"refuse\"").start(&[origin.addr.port()]).await;
        let mut client = proxy.client_from("127.0.0.3").await;

        assert_eq!(client.connect_to(&format!("example.test:{}", origin.addr.port()), &[]).await.status, 200);
        client.send("HELLO plain text\r\n").await;
        assert!(client.closed().await);

        let r = &proxy.records(1).await[0];
        assert_eq!((r["status"].as_u64(), r["rule"].as_str()), (Some(403), Some("non_tls_tunnels")));
        assert_eq!(r["closed_by"], "policy");
        proxy.stop().await;
    })
    .await;
}

/// The zero-copy pump (plain TCP clients) and the bytes a client sends in
/// the same packet as its CONNECT: megabytes both ways arrive intact and in
/// order, and the record counts every byte.
#[tokio::test]
async fn megabytes_cross_a_tunnel_intact_both_ways_and_are_counted() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    bounded(async {
        let origin = support::ScriptedOrigin::echo().await;
        let proxy = Company::new().start(&[origin.port()]).await;
        let client = proxy.client_from("127.0.0.3").await;
        let mut stream = client.stream;

        // Not TLS, and sent before the 200 arrives: held, then tunnelled.
        let payload: Vec<u8> = (0..6_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        let mut opening =
            format!("CONNECT example.test:{} HTTP/1.1\r\nHost: example.test\r\n\r\n", origin.port()).into_bytes();
        opening.extend_from_slice(&payload[..1000]);
        stream.write_all(&opening).await.unwrap();

        let (mut down, mut up) = stream.into_split();
        let sending = payload.clone();
        let writer = tokio::spawn(async move {
            up.write_all(&sending[1000..]).await.unwrap();
            up.shutdown().await.unwrap();
            up
        });
        let mut received = Vec::new();
        down.read_to_end(&mut received).await.unwrap();
        let _up = writer.await.unwrap();

        let head_end = received.windows(4).position(|w| w == b"\r\n\r\n").expect("a reply head") + 4;
        assert!(
            received.starts_with(b"HTTP/1.1 200 Connection established\r\n"),
            "{:?}",
            String::from_utf8_lossy(&received[..head_end])
        );
        let echoed = &received[head_end..];
        assert_eq!(echoed.len(), payload.len());
        assert!(echoed == payload.as_slice(), "the echo differs from what was sent");

        let r = &proxy.records(1).await[0];
        assert_eq!(r["status"], 200);
        assert_eq!(r["bytes_up"].as_u64().unwrap(), payload.len() as u64);
        assert_eq!(r["bytes_down"].as_u64().unwrap(), payload.len() as u64);
        assert_eq!(r["closed_by"], "client");
        proxy.stop().await;
    })
    .await;
}

/// `client_congestion_control` reaches the proxy's end of each client
/// connection, and a reload that removes it gives later clients the
/// system's default again.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn client_connections_get_the_configured_congestion_control() {
    bounded(async {
        let default = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control").unwrap().trim().to_owned();
        // Another algorithm than the default, so that the check can fail.
        let chosen = if default == "reno" { "cubic" } else { "reno" };
        let origin = support::ScriptedOrigin::echo().await;
        let mut proxy =
            Company::new().proxy(&format!("client_congestion_control = \"{chosen}\"")).start(&[origin.port()]).await;
        let mut client = proxy.client_from("127.0.0.3").await;
        assert_eq!(client.connect_to(&format!("example.test:{}", origin.port()), &[]).await.status, 200);
        assert_eq!(proxy_end_congestion(&client.stream), chosen);

        proxy.reload(|company| company.without_proxy_key("client_congestion_control"));
        // Answered, so accepted (the kernel completes a connection before).
        let mut later = proxy.client_from("127.0.0.3").await;
        assert_eq!(later.connect_to(&format!("example.test:{}", origin.port()), &[]).await.status, 200);
        assert_eq!(proxy_end_congestion(&later.stream), default);
        // A connection accepted before the reload keeps what it had.
        assert_eq!(proxy_end_congestion(&client.stream), chosen);
        drop((client, later));
        proxy.stop().await;
    })
    .await;
}

/// The congestion control of the proxy's end of `client`'s connection. The
/// proxy runs in this process, so that socket is one of its descriptors:
/// each is duplicated with `pidfd_getfd` (no descriptor is borrowed that
/// another thread could close) and matched by its two addresses.
#[cfg(target_os = "linux")]
fn proxy_end_congestion(client: &tokio::net::TcpStream) -> String {
    use rustix::process::{Pid, PidfdFlags, PidfdGetfdFlags, pidfd_getfd, pidfd_open};
    use std::net::SocketAddr;
    let (ours, theirs) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
    let me = pidfd_open(Pid::from_raw(std::process::id() as i32).unwrap(), PidfdFlags::empty()).unwrap();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let Ok(n) = entry.unwrap().file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(fd) = pidfd_getfd(&me, n, PidfdGetfdFlags::empty()) else { continue };
        let (Ok(local), Ok(Some(peer))) = (rustix::net::getsockname(&fd), rustix::net::getpeername(&fd)) else {
            continue;
        };
        if SocketAddr::try_from(local).ok() == Some(theirs) && SocketAddr::try_from(peer).ok() == Some(ours) {
            return rustix::net::sockopt::tcp_congestion(&fd).unwrap();
        }
    }
    panic!("the proxy's end of {ours} -> {theirs} is not among this process's descriptors");
}
