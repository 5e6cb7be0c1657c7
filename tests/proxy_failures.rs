//! What the proxy answers when it must not or cannot reach the origin:
//! private destinations, its own listener, unresolvable names, refused
//! connections, origins that never answer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{Company, EchoOrigin, GatedOrigin, SilentOrigin, bounded, closed_port, closed_udp_port};

#[tokio::test]
async fn a_private_destination_is_refused_unless_allowed() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let proxy = Company::new().without_loopback_destinations().start(&[443]).await;
        let mut client = proxy.client_from("127.0.0.3").await;

        let reply = client.get(&format!("http://example.test:{}/", origin.port()), &[]).await;

        assert_eq!(reply.status, 403);
        assert_eq!(
            reply.header("proxy-status"),
            Some("socialgate; error=destination_ip_prohibited; details=\"private_destination\"")
        );
        let r = &proxy.records(1).await[0];
        assert_eq!(r["rule"], "private_destination");
        assert_eq!(r["action"], "block");
        assert_eq!(r["closed_by"], "proxy");

        let literal = proxy.client().await.connect_to("127.0.0.1:443", &[]).await;
        assert_eq!(literal.status, 403);
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn the_proxy_never_reaches_itself_even_when_loopback_is_allowed() {
    bounded(async {
        let proxy = Company::new().start(&[443]).await;
        let mut client = proxy.client().await;

        let reply = client.get(&format!("http://127.0.0.1:{}/", proxy.addr.port()), &[]).await;

        assert_eq!(reply.status, 403);
        assert_eq!(
            reply.header("proxy-status"),
            Some("socialgate; error=destination_ip_prohibited; details=\"private_destination\"")
        );
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_unresolvable_host_gets_502() {
    bounded(async {
        let nameserver = format!("nameservers = [\"127.0.0.1:{}\"]", closed_udp_port());
        let proxy = Company::new().proxy(&nameserver).start(&[443]).await;
        let mut client = proxy.client().await;

        let reply = client.get("http://nowhere.invalid/", &[]).await;

        assert_eq!(reply.status, 502);
        assert_eq!(reply.header("proxy-status"), Some("socialgate; error=dns_error; details=\"default\""));
        let r = &proxy.records(1).await[0];
        assert_eq!(r["action"], "allow");
        assert_eq!(r["rule"], "default");
        assert_eq!(r["closed_by"], "error");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_refused_connection_gets_502() {
    bounded(async {
        let proxy = Company::new().start(&[443]).await;
        let mut client = proxy.client().await;

        let reply = client.get(&format!("http://example.test:{}/", closed_port()), &[]).await;

        assert_eq!(reply.status, 502);
        assert!(reply.header("proxy-status").unwrap().contains("error=connection_refused"));
        assert!(reply.body.contains("refused"), "{}", reply.body);
        assert_eq!(proxy.records(1).await[0]["closed_by"], "error");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_origin_that_never_answers_gets_504() {
    bounded(async {
        let origin = SilentOrigin::start().await;
        let proxy = Company::new().limit("upstream_response_timeout = \"300ms\"").start(&[443]).await;
        let mut client = proxy.client().await;

        let reply = client.get(&format!("http://example.test:{}/", origin.addr.port()), &[]).await;

        assert_eq!(reply.status, 504);
        assert!(reply.header("proxy-status").unwrap().contains("error=http_response_timeout"));
        assert_eq!(proxy.records(1).await[0]["closed_by"], "timeout");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_refused_tunnel_gets_502() {
    bounded(async {
        let port = closed_port();
        let proxy = Company::new().start(&[port]).await;
        let reply = proxy.client().await.connect_to(&format!("example.test:{port}"), &[]).await;
        assert_eq!(reply.status, 502);
        assert!(reply.header("content-type").unwrap().starts_with("text/plain"));
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_client_that_leaves_while_the_origin_thinks_is_still_logged() {
    bounded(async {
        let mut origin = GatedOrigin::start().await;
        let proxy = Company::new().start(&[443]).await;
        let mut client = proxy.client().await;
        client
            .send(&format!(
                "GET http://example.test:{}/slow HTTP/1.1\r\nHost: example.test\r\n\r\n",
                origin.addr.port()
            ))
            .await;
        origin.request_arrived().await;
        drop(client);

        let r = &proxy.records(1).await[0];
        assert_eq!(r["status"], 0, "nothing was sent: {r}");
        assert_eq!(r["closed_by"], "client");
        assert_eq!(r["url"], format!("http://example.test:{}/slow", origin.addr.port()));
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_reload_that_forbids_a_destination_does_not_reuse_pooled_connections() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let mut proxy = Company::new().start(&[443]).await;
        let url = format!("http://example.test:{}/", origin.port());
        assert_eq!(proxy.client().await.get(&url, &[]).await.status, 200);

        proxy.reload(Company::without_loopback_destinations);

        let reply = proxy.client().await.get(&url, &[]).await;
        assert_eq!(reply.status, 403);
        assert!(reply.header("proxy-status").unwrap().contains("destination_ip_prohibited"));
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_origin_that_does_not_accept_in_time_gets_504() {
    bounded(async {
        // A listener whose accept queue is full: further SYNs are dropped,
        // so a connect hangs until the proxy's connect_timeout.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(0).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut fillers = Vec::new();
        for _ in 0..4 {
            let filler = tokio::net::TcpSocket::new_v4().unwrap();
            if let Ok(Ok(stream)) =
                tokio::time::timeout(std::time::Duration::from_millis(200), filler.connect(addr)).await
            {
                fillers.push(stream);
            }
        }
        let proxy = Company::new().limit("connect_timeout = \"300ms\"").start(&[443]).await;

        let reply = proxy.client().await.get(&format!("http://example.test:{}/", addr.port()), &[]).await;

        assert_eq!(reply.status, 504);
        assert!(reply.header("proxy-status").unwrap().contains("error=connection_timeout"), "{reply:?}");
        assert_eq!(proxy.records(1).await[0]["closed_by"], "timeout");
        drop(listener);
        proxy.stop().await;
    })
    .await;
}
