//! Limits and lifecycle: slow and oversized heads, idle keep-alive
//! connections, the connection cap, reload, and graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::{Company, EchoOrigin, GatedOrigin, SilentOrigin, bounded};

#[tokio::test]
async fn a_slow_request_head_gets_408() {
    bounded(async {
        let proxy = Company::new().limit("header_timeout = \"300ms\"").start(&[443]).await;
        let mut slow = proxy.client().await;

        slow.send("GET http://example.test/ HTTP/1.1\r\nHost: example.test\r\n").await;
        let reply = slow.reply(true).await;

        assert_eq!(reply.status, 408);
        assert_eq!(reply.header("proxy-status"), Some("socialgate; error=http_request_error; details=\"limits\""));
        assert!(slow.closed().await);
        let r = &proxy.records(1).await[0];
        assert_eq!((r["status"].as_u64(), r["rule"].as_str()), (Some(408), Some("limits")));
        assert_eq!(r["closed_by"], "timeout");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_idle_timeout() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let proxy = Company::new().limit("idle_timeout = \"1s\"").start(&[443]).await;
        let mut client = proxy.client().await;

        let url = format!("http://example.test:{}/", origin.port());
        assert_eq!(client.get(&url, &[]).await.status, 200);
        assert_eq!(client.get(&url, &[]).await.status, 200, "keep-alive serves a second request");
        assert!(client.closed().await, "the idle connection stayed open");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_request_head_over_max_header_bytes_gets_431() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let proxy = Company::new().limit("max_header_bytes = 2048").start(&[443]).await;
        let url = format!("http://example.test:{}/", origin.port());
        let big = format!("X-Filler: {}", "a".repeat(4000));

        let reply = proxy.client().await.get(&url, &[&big]).await;
        assert_eq!(reply.status, 431);
        assert_eq!(reply.header("proxy-status"), Some("socialgate; error=http_request_error; details=\"limits\""));

        let huge = format!("X-Filler: {}", "a".repeat(100_000));
        let reply = proxy.client().await.get(&url, &[&huge]).await;
        assert_eq!(reply.status, 431);
        assert_eq!(reply.header("proxy-status"), Some("socialgate; error=http_request_error; details=\"limits\""));

        assert_eq!(proxy.client().await.get(&url, &[]).await.status, 200, "small heads still pass");
        let records = proxy.records(3).await;
        assert!(records.iter().filter(|r| r["status"] == 431 && r["rule"] == "limits").count() >= 2, "{records:?}");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn over_max_connections_a_client_gets_503_and_is_closed() {
    bounded(async {
        let proxy = Company::new().limit("max_connections = 1").start(&[443]).await;
        let _first = proxy.client().await;
        // The first connection counts once accepted; wait until it is.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let mut second = proxy.client().await;
            second.send("GET http://example.test/ HTTP/1.1\r\nHost: example.test\r\n\r\n").await;
            let reply = second.reply(true).await;
            if reply.status == 503 {
                assert_eq!(
                    reply.header("proxy-status"),
                    Some("socialgate; error=connection_limit_reached; details=\"limits\"")
                );
                assert!(second.closed().await);
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "never got 503: {reply:?}");
        }
        let records = proxy.records(1).await;
        assert!(records.iter().any(|r| r["status"] == 503 && r["rule"] == "limits" && r["closed_by"] == "proxy"));
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_reload_applies_to_new_requests() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let mut proxy = Company::new().start(&[443]).await;
        let url = format!("http://www.facebook.com:{}/", origin.port());
        assert_eq!(proxy.client().await.get(&url, &[]).await.status, 403);

        proxy.reload(|company| company.department("default", "default = \"allow\"\n"));

        assert_eq!(proxy.client().await.get(&url, &[]).await.status, 200);
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn shutdown_cuts_a_tunnel_after_the_grace_period_and_logs_it() {
    bounded(async {
        let origin = SilentOrigin::start().await;
        let proxy = Company::new()
            .limit("shutdown_grace = \"300ms\"")
            .limit("sni_peek_timeout = \"100ms\"")
            .start(&[origin.addr.port()])
            .await;
        let mut client = proxy.client_from("127.0.0.3").await;
        assert_eq!(client.connect_to(&format!("example.test:{}", origin.addr.port()), &[]).await.status, 200);

        let company = proxy.stop().await;

        assert!(client.closed().await);
        let records = support::wait_for_records(&company.dir().join("access.log"), 1).await;
        assert_eq!(records[0]["closed_by"], "shutdown");
        assert_eq!(records[0]["method"], "CONNECT");
    })
    .await;
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_request_finish() {
    bounded(async {
        let mut origin = GatedOrigin::start().await;
        let proxy = Company::new().start(&[443]).await;
        let mut client = proxy.client().await;
        client
            .send(&format!(
                "GET http://example.test:{}/report HTTP/1.1\r\nHost: example.test\r\n\r\n",
                origin.addr.port()
            ))
            .await;
        origin.request_arrived().await;

        proxy.begin_shutdown();
        origin.open();

        let reply = client.reply(true).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, "ok");
        let company = proxy.stop().await;
        let records = support::wait_for_records(&company.dir().join("access.log"), 1).await;
        assert_eq!(records[0]["status"], 200);
        assert_eq!(records[0]["closed_by"], "origin");
    })
    .await;
}

#[tokio::test]
async fn shutdown_cuts_a_streaming_response_after_the_grace_period_and_logs_it() {
    bounded(async {
        let origin = support::TricklingOrigin::start().await;
        let proxy = Company::new().limit("shutdown_grace = \"300ms\"").start(&[443]).await;
        let mut client = proxy.client().await;
        let reply = client.get_head(&format!("http://example.test:{}/stream", origin.addr.port())).await;
        assert_eq!(reply.status, 200);

        let company = proxy.stop().await;

        assert!(client.closed().await);
        let records = support::wait_for_records(&company.dir().join("access.log"), 1).await;
        assert_eq!(records[0]["closed_by"], "shutdown");
        assert_eq!(records[0]["status"], 200);
    })
    .await;
}
