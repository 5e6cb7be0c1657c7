//! The admin endpoint: `/healthz`, `/metrics` moving with traffic and
//! reloads, `/proxy.pac`, 404 elsewhere, and never reachable through the
//! proxy itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::{Client, Company, EchoOrigin, WAIT, bounded};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A company proxy with `[admin] listen` on an ephemeral port.
async fn start_with_admin(company: Company) -> (socialgate::proxy::Running, Company) {
    let path = company.write(&[443]);
    let mut main = std::fs::read_to_string(&path).unwrap();
    main.push_str(
        "\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[pac]\nproxy = \"proxy.corp.test:3128\"\ndirect = [\"*.corp.test\"]\n",
    );
    std::fs::write(&path, main).unwrap();
    let config = socialgate::config::load(&path).unwrap_or_else(|d| panic!("{d}"));
    (socialgate::proxy::start(config).await.unwrap(), company)
}

/// `GET path` on the admin endpoint: (status, content type, body).
async fn admin_get(admin: SocketAddr, path: &str) -> (u16, String, String) {
    let mut stream = tokio::time::timeout(WAIT, tokio::net::TcpStream::connect(admin)).await.unwrap().unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw)).await.unwrap().unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type: ").map(str::to_owned))
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

/// Polls `/metrics` until it contains `line` (records and counters are
/// updated when a request's log record is written, just after the reply).
async fn metrics_until(admin: SocketAddr, line: &str) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, _, body) = admin_get(admin, "/metrics").await;
        if body.contains(line) {
            return body;
        }
        assert!(tokio::time::Instant::now() < deadline, "/metrics never showed `{line}`:\n{body}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn admin_serves_health_pac_and_metrics_that_move_with_traffic() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let (running, _company) = start_with_admin(Company::new()).await;
        let admin = running.admin_addr().expect("admin listener bound");
        let proxy = running.listen_addrs()[0];

        assert_eq!(admin_get(admin, "/healthz").await, (200, "text/plain; charset=utf-8".into(), "ok\n".into()));
        let (status, content_type, pac) = admin_get(admin, "/proxy.pac").await;
        assert_eq!((status, content_type.as_str()), (200, "application/x-ns-proxy-autoconfig"));
        assert!(pac.contains("PROXY proxy.corp.test:3128") && pac.contains("*.corp.test"), "{pac}");
        assert_eq!(admin_get(admin, "/nope").await.0, 404);

        let blocked = Client::connect(proxy, "127.0.0.1")
            .await
            .get(&format!("http://www.facebook.com:{}/", origin.port()), &[])
            .await;
        assert_eq!(blocked.status, 403);
        let logged = Client::connect(proxy, "127.0.0.2")
            .await
            .get(&format!("http://www.facebook.com:{}/", origin.port()), &[])
            .await;
        assert_eq!(logged.status, 200);

        let text =
            metrics_until(admin, r#"socialgate_requests_total{department="sales",service="facebook",action="log"} 1"#)
                .await;
        assert!(
            text.contains(r#"socialgate_requests_total{department="default",service="facebook",action="block"} 1"#),
            "{text}"
        );
        assert!(text.contains("socialgate_access_log_records_total"), "{text}");
        assert!(text.contains("socialgate_config_generation 1"), "{text}");
        assert!(text.contains("socialgate_active_connections"), "{text}");

        running.shutdown();
        tokio::time::timeout(WAIT, running.wait()).await.unwrap().unwrap();
    })
    .await;
}

#[tokio::test]
async fn reloads_and_upstream_errors_are_counted() {
    bounded(async {
        let (running, company) = start_with_admin(Company::new()).await;
        let admin = running.admin_addr().unwrap();
        let config = socialgate::config::load(&company.dir().join("socialgate.toml")).unwrap();
        running.reload(config).unwrap();
        running.reload_failed();
        let text = metrics_until(admin, "socialgate_config_generation 2").await;
        assert!(text.contains(r#"socialgate_reloads_total{result="success"} 1"#), "{text}");
        assert!(text.contains(r#"socialgate_reloads_total{result="failure"} 1"#), "{text}");

        let refused = Client::connect(running.listen_addrs()[0], "127.0.0.1")
            .await
            .get(&format!("http://example.test:{}/", support::closed_port()), &[])
            .await;
        assert_eq!(refused.status, 502);
        metrics_until(admin, r#"socialgate_upstream_errors_total{kind="connection_refused"} 1"#).await;

        running.shutdown();
        tokio::time::timeout(WAIT, running.wait()).await.unwrap().unwrap();
    })
    .await;
}

#[tokio::test]
async fn the_admin_port_is_never_reachable_through_the_proxy() {
    bounded(async {
        // Loopback is an allowed destination here, and still the admin port is refused.
        let (running, _company) = start_with_admin(Company::new()).await;
        let admin = running.admin_addr().unwrap();
        let proxy = running.listen_addrs()[0];
        let via_http = Client::connect(proxy, "127.0.0.3")
            .await
            .get(&format!("http://127.0.0.1:{}/metrics", admin.port()), &[])
            .await;
        assert_eq!(via_http.status, 403);
        assert!(via_http.header("proxy-status").unwrap().contains("destination_ip_prohibited"));
        running.shutdown();
        tokio::time::timeout(WAIT, running.wait()).await.unwrap().unwrap();
    })
    .await;
}

/// Regression: the admin listener took every connection it was offered and
/// kept each until its 10 s header timeout, so a flood of idle admin
/// connections used up the process's file descriptors, which the proxy
/// needs for its clients and origins. Connections over the per-client cap
/// are now closed at once, and other addresses are still answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_connection_flood_is_capped_per_client_and_others_are_answered() {
    bounded(async {
        let (running, _company) = start_with_admin(Company::new()).await;
        let admin = running.admin_addr().unwrap();
        let flood = socialgate::admin::MAX_PER_CLIENT + 40;
        let mut idle = Vec::new();
        for _ in 0..flood {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.9:0".parse().unwrap()).unwrap();
            idle.push(tokio::time::timeout(WAIT, socket.connect(admin)).await.unwrap().unwrap());
        }
        // Well inside the 10 s header timeout, the connections over the cap
        // are closed; those before them (accepted first) are still open.
        let (kept, over) = idle.split_at_mut(socialgate::admin::MAX_PER_CLIENT);
        for stream in over {
            let mut byte = [0u8; 1];
            let read = tokio::time::timeout(std::time::Duration::from_secs(3), stream.read(&mut byte)).await;
            assert!(matches!(read, Ok(Ok(0) | Err(_))), "a connection over the cap was kept: {read:?}");
        }
        for stream in kept {
            let mut byte = [0u8; 1];
            let read = stream.try_read(&mut byte);
            assert!(read.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock), "{read:?}");
        }
        // Another address is answered meanwhile.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.10:0".parse().unwrap()).unwrap();
        let mut other = tokio::time::timeout(WAIT, socket.connect(admin)).await.unwrap().unwrap();
        other.write_all(b"GET /healthz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut reply = Vec::new();
        tokio::time::timeout(WAIT, other.read_to_end(&mut reply)).await.unwrap().unwrap();
        assert!(reply.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&reply));
        // A slot is given back when its connection closes.
        drop(idle);
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.9:0".parse().unwrap()).unwrap();
            let mut again = tokio::time::timeout(WAIT, socket.connect(admin)).await.unwrap().unwrap();
            let _ = again.write_all(b"GET /healthz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").await;
            let mut reply = Vec::new();
            let _ = tokio::time::timeout(WAIT, again.read_to_end(&mut reply)).await;
            if reply.starts_with(b"HTTP/1.1 200") {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "the flooding address was never answered again");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        running.shutdown();
        tokio::time::timeout(WAIT, running.wait()).await.unwrap().unwrap();
    })
    .await;
}

/// One raw exchange with the admin endpoint (`Connection: close` is
/// added): the whole answer as text.
async fn admin_exchange(admin: SocketAddr, method: &str, path: &str) -> String {
    let mut stream = tokio::time::timeout(WAIT, tokio::net::TcpStream::connect(admin)).await.unwrap().unwrap();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw)).await.unwrap().unwrap();
    String::from_utf8(raw).unwrap()
}

/// Regression: a method other than GET or HEAD got `405` without the
/// `Allow` header RFC 9110 requires. HEAD answers every path with the
/// GET's head and no body.
#[tokio::test]
async fn other_methods_get_405_with_allow_and_head_has_no_body() {
    bounded(async {
        let (running, _company) = start_with_admin(Company::new()).await;
        let admin = running.admin_addr().expect("admin listener bound");
        for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH", "BREW"] {
            for path in ["/healthz", "/metrics", "/proxy.pac", "/nope"] {
                let answer = admin_exchange(admin, method, path).await;
                assert!(answer.starts_with("HTTP/1.1 405 "), "{method} {path}: {answer}");
                let allow =
                    answer.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("allow: ").map(str::to_owned));
                assert_eq!(allow.as_deref(), Some("get, head"), "{method} {path}: {answer}");
            }
        }
        for (path, status, content_type) in [
            ("/healthz", 200, "text/plain; charset=utf-8"),
            ("/metrics", 200, "application/openmetrics-text; version=1.0.0; charset=utf-8"),
            ("/proxy.pac", 200, "application/x-ns-proxy-autoconfig"),
            ("/wpad.dat", 200, "application/x-ns-proxy-autoconfig"),
            ("/nope", 404, "text/plain; charset=utf-8"),
        ] {
            let answer = admin_exchange(admin, "HEAD", path).await;
            let (head, body) = answer.split_once("\r\n\r\n").unwrap();
            assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "HEAD {path}: {answer}");
            let lower = head.to_ascii_lowercase();
            assert!(lower.contains(&format!("\r\ncontent-type: {content_type}\r\n")), "HEAD {path}: {head}");
            assert!(lower.contains("\r\ncache-control: no-store"), "HEAD {path}: {head}");
            assert!(body.is_empty(), "HEAD {path} sent a body: {body}");
        }
        running.shutdown();
        tokio::time::timeout(WAIT, running.wait()).await.unwrap().unwrap();
    })
    .await;
}

/// A request head far over hyper's buffer gets `431` and the connection
/// is closed; the endpoint goes on answering.
#[tokio::test]
async fn a_huge_request_head_is_refused_and_the_endpoint_keeps_serving() {
    bounded(async {
        let (running, _company) = start_with_admin(Company::new()).await;
        let admin = running.admin_addr().expect("admin listener bound");
        let mut stream = tokio::time::timeout(WAIT, tokio::net::TcpStream::connect(admin)).await.unwrap().unwrap();
        let mut head = String::from("GET /healthz HTTP/1.1\r\nHost: admin\r\n");
        for i in 0..1000 {
            head.push_str(&format!("X-Filler-{i}: {}\r\n", "a".repeat(1000)));
        }
        head.push_str("\r\n");
        // The proxy may close before reading it all: a failed write is fine.
        let _ = stream.write_all(head.as_bytes()).await;
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut raw)).await.unwrap();
        let answer = String::from_utf8_lossy(&raw);
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 431 "), "{answer}");
        assert_eq!(admin_get(admin, "/healthz").await.0, 200);
        running.shutdown();
        tokio::time::timeout(WAIT, running.wait()).await.unwrap().unwrap();
    })
    .await;
}

/// A request head dribbled in (slowloris) and a keep-alive connection
/// left idle are both closed at the admin endpoint's 10 s head deadline,
/// so neither holds one of its connection slots for long.
#[tokio::test]
async fn slow_heads_and_idle_connections_are_closed_at_the_head_deadline() {
    bounded(async {
        let (running, _company) = start_with_admin(Company::new()).await;
        let admin = running.admin_addr().expect("admin listener bound");
        let started = tokio::time::Instant::now();
        let mut slow = tokio::time::timeout(WAIT, tokio::net::TcpStream::connect(admin)).await.unwrap().unwrap();
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHo").await.unwrap();
        let mut idle = tokio::time::timeout(WAIT, tokio::net::TcpStream::connect(admin)).await.unwrap().unwrap();
        idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: admin\r\n\r\n").await.unwrap();
        let mut answer = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, idle.read(&mut answer)).await.unwrap().unwrap();
        assert!(answer[..n].starts_with(b"HTTP/1.1 200 "));
        for (what, mut stream) in [("slow head", slow), ("idle keep-alive", idle)] {
            let mut rest = Vec::new();
            let closed = tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut rest)).await;
            assert!(closed.is_ok(), "{what}: still open after {:?}", started.elapsed());
        }
        assert!(started.elapsed() >= Duration::from_secs(9), "closed early: {:?}", started.elapsed());
        running.shutdown();
        tokio::time::timeout(WAIT, running.wait()).await.unwrap().unwrap();
    })
    .await;
}
