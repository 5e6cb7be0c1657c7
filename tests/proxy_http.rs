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
        let reply = client
            .get(
                &format!("http://example.test:{}/", origin.port()),
                &["X-Forwarded-For: 10.0.0.9", "Forwarded: for=10.0.0.9;proto=http"],
            )
            .await;
        assert_eq!(reply.status, 200);
        let seen = reply.body.to_lowercase();
        assert!(!seen.contains("x-forwarded-for") && !seen.contains("10.0.0.9"), "{}", reply.body);
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn x_forwarded_for_can_be_kept_as_sent() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let proxy = Company::new().proxy("forwarded_for = \"keep\"").start(&[443]).await;
        let reply = proxy
            .client()
            .await
            .get(&format!("http://example.test:{}/", origin.port()), &["X-Forwarded-For: 10.0.0.9"])
            .await;
        assert!(reply.body.to_lowercase().contains("x-forwarded-for: 10.0.0.9\n"), "{}", reply.body);
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
        for expected in
            ["127.0.0.2", "sales", "network", "<td>facebook</td><td>log</td>", "<td>youtube</td><td>allow</td>"]
        {
            assert!(reply.body.contains(expected), "status page lacks {expected}: {}", reply.body);
        }
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn the_status_page_lists_the_departments_rules_with_inherited_ones() {
    bounded(async {
        let proxy = Company::new()
            .department(
                "default",
                "default = \"allow\"\n[services]\nfacebook = \"block\"\n[[rules]]\ndomains = [\"twitch.tv\", \"kick.com\"]\naction = \"block\"\n",
            )
            .department(
                "sales",
                "inherits = \"default\"\nnetworks = [\"127.0.0.2/32\"]\n[[rules]]\ndomains = [\"a.test\", \"b.test\", \"c.test\", \"d.test\"]\nhosts = [\"e.test\", \"f.test\"]\naction = \"log\"\n",
            )
            .start(&[443])
            .await;
        let reply = proxy.client_from("127.0.0.2").await.get("http://socialgate.status/", &[]).await;
        assert_eq!(reply.status, 200);
        let own = "<tr><td>a.test, b.test, c.test, d.test (+2 more)</td><td>log</td><td>rules[0]</td>";
        let inherited = "<tr><td>twitch.tv, kick.com</td><td>block</td><td>default:rules[0]</td>";
        let (own_at, inherited_at) = (reply.body.find(own), reply.body.find(inherited));
        assert!(own_at.is_some() && inherited_at.is_some(), "{}", reply.body);
        assert!(own_at < inherited_at && inherited_at < reply.body.find("<td>facebook</td>"), "in decision order: {}", reply.body);
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn with_allowed_false_only_block_and_log_decisions_and_failures_are_written() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let proxy = Company::new().log("allowed = false").start(&[443]).await;
        let url = format!("http://www.facebook.com:{}/", origin.port());

        assert_eq!(proxy.client_from("127.0.0.3").await.get(&url, &[]).await.status, 200);
        assert_eq!(proxy.client_from("127.0.0.2").await.get(&url, &[]).await.status, 200);
        assert_eq!(proxy.client_from("127.0.0.1").await.get(&url, &[]).await.status, 403);
        // An allowed request that cannot reach its site is still recorded.
        let unreachable = format!("http://example.test:{}/", support::closed_port());
        assert_eq!(proxy.client_from("127.0.0.3").await.get(&unreachable, &[]).await.status, 502);

        let records = proxy.records(3).await;
        let company = proxy.stop().await;
        let all = support::wait_for_records(&company.dir().join("access.log"), 3).await;
        assert_eq!(all.len(), 3, "{all:?}");
        let failed: Vec<_> = all.iter().filter(|r| r["action"] == "allow").collect();
        assert_eq!(failed.len(), 1, "{all:?}");
        assert_eq!(failed[0]["status"], 502);
        assert!(records.iter().filter(|r| r["status"] != 502).all(|r| r["action"] != "allow"));
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

#[tokio::test]
async fn large_bodies_stream_both_ways_and_are_counted() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let proxy = Company::new().start(&[443]).await;
        let mut client = proxy.client().await;

        // A chunked upload of 2 MiB.
        let chunk = "y".repeat(64 * 1024);
        client
            .send(&format!(
                "POST http://example.test:{}/upload HTTP/1.1\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\n\r\n",
                origin.port()
            ))
            .await;
        for _ in 0..32 {
            client.send(&format!("{:x}\r\n{chunk}\r\n", chunk.len())).await;
        }
        client.send("0\r\n\r\n").await;
        let reply = client.reply(true).await;
        assert_eq!(reply.status, 200);
        assert!(reply.body.contains("body-bytes: 2097152\n"), "{}", reply.body);

        let download = client.get(&format!("http://example.test:{}/download/3000000", origin.port()), &[]).await;
        assert_eq!(download.body.len(), 3_000_000);

        let records = proxy.records(2).await;
        assert!(records[0]["bytes_up"].as_u64().unwrap() >= 2_097_152, "{}", records[0]);
        assert!(records[1]["bytes_down"].as_u64().unwrap() >= 3_000_000, "{}", records[1]);
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn many_concurrent_clients_are_all_served_and_logged() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let proxy = Company::new().start(&[443]).await;
        let url = format!("http://example.test:{}/", origin.port());

        let mut clients = Vec::new();
        for i in 0..100 {
            let mut client = proxy.client_from(["127.0.0.1", "127.0.0.2", "127.0.0.3"][i % 3]).await;
            let url = url.clone();
            clients.push(tokio::spawn(async move { client.get(&format!("{url}{i}"), &[]).await.status }));
        }
        for client in clients {
            assert_eq!(client.await.unwrap(), 200);
        }
        let records = proxy.records(100).await;
        assert_eq!(records.len(), 100);
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_trusted_balancer_names_the_client_with_the_proxy_protocol() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let proxy = Company::new().proxy("proxy_protocol_from = [\"127.0.0.4/32\"]").start(&[443]).await;
        let url = format!("http://www.facebook.com:{}/", origin.port());

        let mut balancer = proxy.client_from("127.0.0.4").await;
        balancer.send(&format!("PROXY TCP4 127.0.0.3 127.0.0.1 50000 {}\r\n", proxy.addr.port())).await;
        let reply = balancer.get(&url, &[]).await;
        assert_eq!(reply.status, 200, "placed in engineering by the real client address");
        assert!(reply.body.contains("x-forwarded-for: 127.0.0.3\n"), "{}", reply.body);

        let mut untrusted = proxy.client().await;
        untrusted.send("PROXY TCP4 127.0.0.3 127.0.0.1 50000 3128\r\n").await;
        assert_eq!(untrusted.get(&url, &[]).await.status, 400);

        let records = proxy.records(2).await;
        let served = records.iter().find(|r| r["status"] == 200).unwrap();
        assert_eq!(served["client"], "127.0.0.3");
        assert_eq!(served["department"], "engineering");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn the_tls_listener_serves_the_same_proxy_over_https() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    bounded(async {
        let origin = EchoOrigin::start().await;
        let proxy = Company::new().with_tls_listener().start(&[443]).await;
        let tls_addr = proxy.tls_addr.unwrap();
        let connector = tokio_rustls::TlsConnector::from(proxy.company().proxy_tls_client());
        let tcp = tokio::net::TcpStream::connect(tls_addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("proxy.test").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();

        let request = format!(
            "GET http://www.facebook.com:{}/over-tls HTTP/1.1\r\nHost: www.facebook.com\r\nConnection: close\r\n\r\n",
            origin.port()
        );
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        tokio::time::timeout(support::WAIT, tls.read_to_string(&mut answer)).await.unwrap().unwrap();

        assert!(answer.starts_with("HTTP/1.1 403"), "facebook is blocked for default: {answer}");
        assert!(answer.contains("services.facebook"));
        let r = &proxy.records(1).await[0];
        assert_eq!(r["client"], "127.0.0.1");
        assert_eq!(r["status"], 403);

        let reply = proxy.client().await.get(&format!("http://127.0.0.1:{}/", tls_addr.port()), &[]).await;
        assert_eq!(reply.status, 403, "the TLS listener is not a destination either");
        proxy.stop().await;
    })
    .await;
}

/// The Squid-format log, as Squid writes it: the hierarchy field names the
/// server's address, for a forwarded request and for a tunnel, and the last
/// field is the answer's media type (it was always `-`): the origin's, less
/// its parameters, or the proxy's own page's; `-` for a tunnel or an
/// answer without one.
#[tokio::test]
async fn the_squid_format_names_the_server_address_and_the_content_type() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let typed = support::ScriptedOrigin::start(true, |mut s| async move {
            use tokio::io::AsyncWriteExt;
            let body = "{}";
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(answer.as_bytes()).await;
        })
        .await;
        let p = origin.port();
        let proxy = Company::new().log("format = \"squid\"").start(&[p]).await;
        let mut client = proxy.client_from("127.0.0.3").await;
        assert_eq!(client.get(&format!("http://example.test:{p}/squid"), &[]).await.status, 200);
        let mut client = proxy.client_from("127.0.0.3").await;
        assert_eq!(client.get(&format!("http://example.test:{}/typed", typed.port()), &[]).await.status, 200);
        // 127.0.0.1 is in `default`, where facebook is blocked.
        let mut client = proxy.client().await;
        assert_eq!(client.get("http://www.facebook.com/", &[]).await.status, 403);
        let mut tunnel = proxy.client_from("127.0.0.3").await;
        assert_eq!(tunnel.connect_to(&format!("example.test:{p}"), &[]).await.status, 200);
        drop(tunnel);
        let path = proxy.log_path();
        support::eventually("four squid lines", || {
            std::fs::read_to_string(&path).is_ok_and(|t| t.lines().count() >= 4)
        })
        .await;
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let find = |what: &str| *lines.iter().find(|l| l.contains(what)).unwrap_or_else(|| panic!("no {what}: {text}"));
        let get = find("/squid ");
        assert!(get.contains(&format!(" http://example.test:{p}/squid - HIER_DIRECT/127.0.0.1 ")), "{get}");
        assert!(get.ends_with(" HIER_DIRECT/127.0.0.1 -"), "the echo origin names no type: {get}");
        assert!(find("/typed ").ends_with(" HIER_DIRECT/127.0.0.1 application/json"), "{text}");
        assert!(find("TCP_DENIED/403").ends_with(" HIER_NONE/- text/html"), "{text}");
        let connect = find(" CONNECT ");
        assert!(connect.ends_with(" HIER_DIRECT/127.0.0.1 -"), "{connect}");
        for line in &lines {
            assert_eq!(line.split_whitespace().count(), 10, "{line}");
        }
        proxy.stop().await;
    })
    .await;
}
