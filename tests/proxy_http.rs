//! Plain-HTTP proxying end to end: forwarding and header hygiene, per-
//! department decisions, block pages, the PAC file, the status page,
//! origin-form and malformed requests, and the access-log records.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{Company, EchoOrigin, bounded};

#[tokio::test]
async fn an_allowed_request_is_forwarded_with_hop_by_hop_headers_removed() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let proxy = Company::new().start(&[443]).await;
        let mut engineer = proxy.client_from("127.0.0.3").await;

        let url = format!("http://someone:secret@www.facebook.com:{}/feed?session=42", origin.port());
        let reply = engineer
            .get(
                &url,
                &[
                    "Connection: keep-alive, X-Secret",
                    "X-Secret: 1",
                    "Proxy-Connection: keep-alive",
                    "Keep-Alive: timeout=5",
                    "TE: trailers",
                    "X-Forwarded-For: 10.0.0.9",
                    "Accept: text/plain",
                ],
            )
            .await;

        assert_eq!(reply.status, 200, "{reply:?}");
        let seen = reply.body.to_lowercase();
        assert!(seen.starts_with("get /feed?session=42\n"), "{seen}");
        assert!(seen.contains(&format!("host: www.facebook.com:{}\n", origin.port())), "{seen}");
        assert!(seen.contains("via: 1.1 socialgate\n"), "{seen}");
        assert!(seen.contains("x-forwarded-for: 10.0.0.9, 127.0.0.3\n"), "{seen}");
        assert!(seen.contains("accept: text/plain\n"), "{seen}");
        for gone in ["x-secret", "proxy-connection", "keep-alive:", "te:", "connection:"] {
            assert!(!seen.contains(gone), "{gone} was forwarded: {seen}");
        }
        assert_eq!(reply.header("via"), Some("1.1 socialgate"));
        assert_eq!(reply.header("x-origin"), Some("echo"));
        assert_eq!(reply.header("keep-alive"), None, "the origin's hop-by-hop header came back");

        let records = proxy.records(1).await;
        let r = &records[0];
        assert_eq!(r["client"], "127.0.0.3");
        assert_eq!(r["user"], serde_json::Value::Null);
        assert_eq!(r["department"], "engineering");
        assert_eq!(r["method"], "GET");
        assert_eq!(r["host"], "www.facebook.com");
        assert_eq!(r["port"], origin.port());
        assert_eq!(r["url"], format!("http://www.facebook.com:{}/feed", origin.port()));
        assert_eq!(r["sni"], serde_json::Value::Null);
        assert_eq!(r["service"], "facebook");
        assert_eq!(r["rule"], "services.facebook");
        assert_eq!(r["action"], "allow");
        assert_eq!(r["status"], 200);
        assert_eq!(r["closed_by"], "origin");
        assert!(r["bytes_up"].as_u64().unwrap() > 100);
        assert!(r["bytes_down"].as_u64().unwrap() > reply.body.len() as u64);
        assert!(r["ts"].as_str().unwrap().ends_with('Z'));
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn x_forwarded_for_can_be_deleted() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let proxy = Company::new().proxy("forwarded_for = \"delete\"").start(&[443]).await;
        let mut client = proxy.client().await;
        let reply =
            client.get(&format!("http://example.test:{}/", origin.port()), &["X-Forwarded-For: 10.0.0.9"]).await;
        assert_eq!(reply.status, 200);
        assert!(!reply.body.to_lowercase().contains("x-forwarded-for"), "{}", reply.body);
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_blocked_service_gets_the_block_page() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let proxy = Company::new().start(&[443]).await;
        let mut visitor = proxy.client().await;

        let reply = visitor.get(&format!("http://www.facebook.com:{}/", origin.port()), &[]).await;

        assert_eq!(reply.status, 403);
        assert_eq!(
            reply.header("proxy-status"),
            Some("socialgate; error=http_request_denied; details=\"services.facebook\"")
        );
        assert!(reply.header("content-type").unwrap().starts_with("text/html"));
        for expected in ["facebook", "default", "services.facebook", "helpdesk@example.test"] {
            assert!(reply.body.contains(expected), "block page lacks {expected}: {}", reply.body);
        }
        let r = &proxy.records(1).await[0];
        assert_eq!(r["action"], "block");
        assert_eq!(r["status"], 403);
        assert_eq!(r["closed_by"], "proxy");
        assert_eq!(r["department"], "default");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn departments_differ_by_source_address() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let proxy = Company::new().start(&[443]).await;
        let url = format!("http://www.facebook.com:{}/", origin.port());

        let sales = proxy.client_from("127.0.0.2").await.get(&url, &[]).await;
        let engineering = proxy.client_from("127.0.0.3").await.get(&url, &[]).await;
        let default = proxy.client_from("127.0.0.1").await.get(&url, &[]).await;

        assert_eq!((sales.status, engineering.status, default.status), (200, 200, 403));
        let records = proxy.records(3).await;
        let by_dept = |d: &str| records.iter().find(|r| r["department"] == d).unwrap().clone();
        assert_eq!(by_dept("sales")["action"], "log");
        assert_eq!(by_dept("engineering")["action"], "allow");
        assert_eq!(by_dept("default")["action"], "block");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_domain_matches_on_a_label_boundary_only() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let proxy = Company::new().start(&[443]).await;
        let mut client = proxy.client().await;

        let lookalike = client.get(&format!("http://notfacebook.com:{}/", origin.port()), &[]).await;
        let real = proxy.client().await.get(&format!("http://facebook.com:{}/", origin.port()), &[]).await;

        assert_eq!(lookalike.status, 200);
        assert_eq!(real.status, 403);
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn origin_form_requests_get_400_but_the_pac_file_is_served() {
    bounded(async {
        let proxy = Company::new().start(&[443]).await;
        let mut client = proxy.client().await;

        client.send("GET /index.html HTTP/1.1\r\nHost: proxy\r\n\r\n").await;
        let reply = client.reply(true).await;
        assert_eq!(reply.status, 400);
        assert_eq!(reply.header("proxy-status"), Some("socialgate; error=http_request_error; details=\"request\""));

        let mut browser = proxy.client().await;
        for path in ["/proxy.pac", "/wpad.dat"] {
            browser.send(&format!("GET {path} HTTP/1.1\r\nHost: proxy\r\n\r\n")).await;
            let reply = browser.reply(true).await;
            assert_eq!(reply.status, 200, "{path}");
            assert_eq!(reply.header("content-type"), Some("application/x-ns-proxy-autoconfig"));
        }
        let records = proxy.records(3).await;
        assert_eq!(records[0]["status"], 400);
        assert_eq!(records[0]["rule"], "request");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_malformed_request_gets_400_and_the_proxy_carries_on() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let proxy = Company::new().start(&[443]).await;

        let mut broken = proxy.client().await;
        broken.send("THIS IS NOT HTTP\r\n\r\n").await;
        let reply = broken.reply(true).await;
        assert_eq!(reply.status, 400);
        assert_eq!(reply.header("proxy-status"), Some("socialgate; error=http_request_error; details=\"request\""));
        assert!(broken.closed().await);

        let reply = proxy.client().await.get(&format!("http://example.test:{}/ok", origin.port()), &[]).await;
        assert_eq!(reply.status, 200);
        let records = proxy.records(2).await;
        assert!(records.iter().any(|r| r["status"] == 400 && r["rule"] == "request"), "{records:?}");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn the_status_page_says_who_you_are() {
    bounded(async {
        let proxy = Company::new().start(&[443]).await;
        let reply = proxy.client_from("127.0.0.2").await.get("http://socialgate.status/", &[]).await;
        assert_eq!(reply.status, 200);
        for expected in ["127.0.0.2", "sales", "network", "facebook"] {
            assert!(reply.body.contains(expected), "status page lacks {expected}: {}", reply.body);
        }
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn with_allowed_false_only_block_and_log_decisions_are_written() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let proxy = Company::new().log("allowed = false").start(&[443]).await;
        let url = format!("http://www.facebook.com:{}/", origin.port());

        assert_eq!(proxy.client_from("127.0.0.3").await.get(&url, &[]).await.status, 200);
        assert_eq!(proxy.client_from("127.0.0.2").await.get(&url, &[]).await.status, 200);
        assert_eq!(proxy.client_from("127.0.0.1").await.get(&url, &[]).await.status, 403);

        let records = proxy.records(2).await;
        let company = proxy.stop().await;
        let all = support::wait_for_records(&company.dir().join("access.log"), 2).await;
        assert_eq!(all.len(), 2, "{all:?}");
        assert!(records.iter().all(|r| r["action"] != "allow"));
    })
    .await;
}

#[tokio::test]
async fn a_reload_that_blocks_a_streaming_response_cuts_it() {
    bounded(async {
        let origin = support::TricklingOrigin::start().await;
        let mut proxy = Company::new().start(&[443]).await;
        let mut seller = proxy.client_from("127.0.0.2").await;
        let reply = seller.get_head(&format!("http://twitter.com:{}/stream", origin.addr.port())).await;
        assert_eq!(reply.status, 200);

        proxy.reload(|company| {
            company.department(
                "sales",
                "networks = [\"127.0.0.2/32\"]\nusers = [\"alice\"]\ndefault = \"allow\"\n[services]\ntwitter = \"block\"\n",
            )
        });

        assert!(seller.closed().await, "the response outlived its policy");
        let r = &proxy.records(1).await[0];
        assert_eq!(r["closed_by"], "policy");
        assert_eq!(r["action"], "allow");
        proxy.stop().await;
    })
    .await;
}
