//! Server-side request forgery: the private-destination guard against every
//! spelling of a private address (legacy IPv4 forms, IPv4-mapped IPv6, the
//! unspecified addresses, hosts-file names resolving to private addresses,
//! the metadata address), over HTTP and CONNECT, and the proxy's own
//! listener and admin port, which stay unreachable even when
//! `allow_destinations` covers loopback or the guard is off.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{Company, CountingOrigin, Proxy, bounded};

/// Hosts (as written in a URL authority) that must all be refused when
/// loopback is not allowed. Each would reach the origin on 127.0.0.1 (or a
/// private network) if the guard let it through.
const PRIVATE_HOSTS: &[&str] = &[
    "127.0.0.1",
    "127.0.0.1.",
    "127.1",
    "2130706433",
    "0x7f000001",
    "0x7f.1",
    "0177.0.0.1",
    "0x7f.0.0.01",
    "0",
    "0.0.0.0",
    "[::]",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[0:0:0:0:0:ffff:127.0.0.1]",
    "[::ffff:0.0.0.0]",
    "169.254.169.254",
    "0xa9fea9fe",
    "example.test",
    "EXAMPLE.test.",
    "intranet.test",
    "metadata.test",
    "v6loop.test",
    "mapped.test",
    "zero.test",
    "multi.test",
];

fn guarded_company() -> Company {
    Company::new()
        .without_loopback_destinations()
        .limit("connect_timeout = \"300ms\"")
        .host("intranet.test", "10.0.0.1")
        .host("metadata.test", "169.254.169.254")
        .host("v6loop.test", "::1")
        .host("mapped.test", "::ffff:127.0.0.1")
        .host("zero.test", "0.0.0.0")
        .host("multi.test", "127.0.0.1")
        .host("multi.test", "192.168.1.1")
}

/// Checks a refusal by the guard; returns what is wrong with it.
fn check_refused(what: &str, reply: &support::Reply, problems: &mut Vec<String>) {
    let status = reply.header("proxy-status").unwrap_or("");
    if reply.status != 403 || !status.contains("error=destination_ip_prohibited") {
        problems.push(format!("{what}: want 403 destination_ip_prohibited, got {} ({status})", reply.status));
    }
}

#[tokio::test]
async fn private_destinations_in_every_spelling_are_refused_over_http_and_connect() {
    bounded(async {
        let origin = CountingOrigin::start().await;
        let p = origin.port();
        let proxy = guarded_company().start(&[p]).await;
        let mut problems = Vec::new();
        for host in PRIVATE_HOSTS {
            let reply = proxy.client().await.get(&format!("http://{host}:{p}/"), &[]).await;
            check_refused(&format!("GET {host}"), &reply, &mut problems);
            let reply = proxy.client().await.connect_to(&format!("{host}:{p}"), &[]).await;
            check_refused(&format!("CONNECT {host}"), &reply, &mut problems);
        }
        assert_eq!(origin.connections(), 0, "a private destination was connected to");
        let records = proxy.whole_records(PRIVATE_HOSTS.len() * 2).await;
        for r in &records {
            if r["rule"] != "private_destination" || r["action"] != "block" || r["closed_by"] != "proxy" {
                problems.push(format!("logged as {r}"));
            }
        }
        proxy.stop().await;
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    })
    .await;
}

#[tokio::test]
async fn allow_destinations_opens_exactly_what_it_lists() {
    bounded(async {
        let origin = CountingOrigin::start().await;
        let p = origin.port();
        // The standard company allows 127.0.0.0/8 (and nothing else).
        let proxy = Company::new()
            .limit("connect_timeout = \"300ms\"")
            .host("intranet.test", "10.0.0.1")
            .host("metadata.test", "169.254.169.254")
            .start(&[p])
            .await;
        // Listed: through, whatever the spelling.
        for host in ["127.0.0.1", "2130706433", "0x7f.0.0.1", "[::ffff:127.0.0.1]", "example.test"] {
            let reply = proxy.client().await.get(&format!("http://{host}:{p}/"), &[]).await;
            assert_eq!(reply.status, 200, "{host}: {reply:?}");
        }
        // Not listed: still refused.
        for host in ["[::1]", "intranet.test", "metadata.test", "169.254.169.254"] {
            let reply = proxy.client().await.get(&format!("http://{host}:{p}/"), &[]).await;
            assert_eq!(reply.status, 403, "{host}: {reply:?}");
        }
        proxy.stop().await;
    })
    .await;
}

async fn assert_own_ports_refused(proxy: &mut Proxy, admin: Option<u16>) {
    let own = proxy.addr.port();
    let mut ports = vec![own];
    ports.extend(admin);
    proxy.reload_with_ports(&ports, |company| company);
    let mut problems = Vec::new();
    for port in &ports {
        for host in ["127.0.0.1", "127.0.0.2", "2130706433", "0", "[::ffff:127.0.0.1]", "example.test"] {
            let reply = proxy.client().await.get(&format!("http://{host}:{port}/healthz"), &[]).await;
            check_refused(&format!("GET {host}:{port}"), &reply, &mut problems);
            let reply = proxy.client().await.connect_to(&format!("{host}:{port}"), &[]).await;
            check_refused(&format!("CONNECT {host}:{port}"), &reply, &mut problems);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test]
async fn the_proxy_and_admin_ports_are_refused_even_when_loopback_is_allowed() {
    bounded(async {
        // The standard company allows 127.0.0.0/8.
        let mut proxy = Company::new().start_with(&[443], "[admin]\nlisten = \"127.0.0.1:0\"\n").await;
        let admin = proxy.admin_addr().map(|addr| addr.port());
        assert!(admin.is_some());
        assert_own_ports_refused(&mut proxy, admin).await;
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn the_proxy_and_admin_ports_are_refused_with_the_guard_off() {
    bounded(async {
        let mut proxy = Company::new()
            .proxy("block_private_destinations = false")
            .start_with(&[443], "[admin]\nlisten = \"127.0.0.1:0\"\n")
            .await;
        let admin = proxy.admin_addr().map(|addr| addr.port());
        assert!(admin.is_some());
        assert_own_ports_refused(&mut proxy, admin).await;
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_request_to_itself_does_not_loop() {
    bounded(async {
        let mut proxy = Company::new().start(&[443]).await;
        assert_own_ports_refused(&mut proxy, None).await;
        // Still serving, and only one record per refused request (no loop).
        let origin = CountingOrigin::start().await;
        let reply = proxy.client().await.get(&format!("http://example.test:{}/", origin.port()), &[]).await;
        assert_eq!(reply.status, 200);
        let records = proxy.whole_records(13).await;
        assert_eq!(records.len(), 13, "{records:?}");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn the_tls_listener_port_is_refused_too() {
    bounded(async {
        let mut proxy = Company::new().with_tls_listener().start(&[443]).await;
        let tls_port = proxy.tls_addr.expect("a TLS listener").port();
        proxy.reload_with_ports(&[tls_port], |company| company);
        let mut problems = Vec::new();
        for host in ["127.0.0.1", "127.0.0.2", "0", "example.test"] {
            let reply = proxy.client().await.get(&format!("http://{host}:{tls_port}/"), &[]).await;
            check_refused(&format!("GET {host}:{tls_port}"), &reply, &mut problems);
            let reply = proxy.client().await.connect_to(&format!("{host}:{tls_port}"), &[]).await;
            check_refused(&format!("CONNECT {host}:{tls_port}"), &reply, &mut problems);
        }
        proxy.stop().await;
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    })
    .await;
}

#[tokio::test]
async fn a_reload_that_forbids_a_destination_applies_to_pooled_connections() {
    bounded(async {
        let origin = CountingOrigin::start().await;
        let url = format!("http://example.test:{}/", origin.port());
        // The standard company allows 127.0.0.0/8: through, and pooled.
        let mut proxy = Company::new().start(&[443]).await;
        assert_eq!(proxy.client().await.get(&url, &[]).await.status, 200);

        proxy.reload(|company| company.without_loopback_destinations());

        let reply = proxy.client().await.get(&url, &[]).await;
        assert_eq!(reply.status, 403, "a pooled connection outlived the guard: {reply:?}");
        assert_eq!(origin.heads(), 1);
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_reload_that_moves_a_name_to_a_private_address_applies_to_pooled_connections() {
    bounded(async {
        let origin = CountingOrigin::start().await;
        let url = format!("http://pooled.test:{}/", origin.port());
        let mut proxy = Company::new().host("pooled.test", "127.0.0.1").start(&[443]).await;
        assert_eq!(proxy.client().await.get(&url, &[]).await.status, 200);

        // Same name, now a private address outside allow_destinations.
        proxy.reload(|company| company.host("pooled.test", "10.0.0.1").limit("connect_timeout = \"300ms\""));

        let reply = proxy.client().await.get(&url, &[]).await;
        assert_eq!(reply.status, 403, "a pooled connection outlived the hosts file: {reply:?}");
        assert_eq!(origin.heads(), 1);
        proxy.stop().await;
    })
    .await;
}
