//! The access log under unusual conditions: a log that cannot be written
//! (a full disk) neither stops the proxy nor loses the records it holds,
//! `[log] allowed = false` still writes what the policy cut, a trickle of
//! records reaches the file within a second, and neither format lets a value
//! break or add a line (the Squid format keeps its ten fields).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{Company, EchoOrigin, SilentOrigin, TricklingOrigin, bounded};

/// The value of the metric series `name` (exactly), if exported.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn a_full_disk_does_not_stop_the_proxy_and_its_records_are_written_once_there_is_room() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        // The log's path leads to /dev/full: every write fails with ENOSPC.
        let proxy = Company::new()
            .start_edited(&[443], |dir| std::os::unix::fs::symlink("/dev/full", dir.join("access.log")).unwrap())
            .await;
        let mut client = proxy.client().await;
        for n in 0..20 {
            let reply = client.get(&format!("http://example.test:{}/{n}", origin.port()), &[]).await;
            assert_eq!(reply.status, 200);
        }
        support::eventually("the 20 records held in memory", || {
            metric(&proxy.metrics_text(), "socialgate_access_log_held_records") == Some(20.0)
        })
        .await;
        let text = proxy.metrics_text();
        assert!(metric(&text, "socialgate_access_log_write_errors_total").is_some_and(|n| n >= 1.0), "{text}");

        // Room again: the path is a plain file (as after freeing the disk).
        std::fs::remove_file(proxy.log_path()).unwrap();
        let records = proxy.records(20).await;
        let urls: Vec<String> = records.iter().map(|r| r["url"].as_str().unwrap().to_owned()).collect();
        let expected: Vec<String> = (0..20).map(|n| format!("http://example.test:{}/{n}", origin.port())).collect();
        assert_eq!(urls, expected, "every record, in order");
        assert_eq!(metric(&proxy.metrics_text(), "socialgate_access_log_held_records"), Some(0.0));
        let company = proxy.stop().await;
        assert_eq!(support::records_in(&company.dir().join("access.log")).len(), 20);
    })
    .await;
}

const SALES_BLOCKS_TWITTER: &str =
    "networks = [\"127.0.0.2/32\"]\nusers = [\"alice\"]\ndefault = \"allow\"\n[services]\ntwitter = \"block\"\n";

#[tokio::test]
async fn with_allowed_false_a_tunnel_and_a_response_the_policy_cuts_are_written() {
    bounded(async {
        let silent = SilentOrigin::start().await;
        let trickling = TricklingOrigin::start().await;
        let mut proxy = Company::new().log("allowed = false").start(&[silent.addr.port()]).await;
        let mut tunnel = proxy.client_from("127.0.0.2").await;
        assert_eq!(tunnel.connect_to(&format!("twitter.com:{}", silent.addr.port()), &[]).await.status, 200);
        let mut stream = proxy.client_from("127.0.0.2").await;
        let reply = stream.get_head(&format!("http://twitter.com:{}/stream", trickling.addr.port())).await;
        assert_eq!(reply.status, 200);
        // An allowed request that ends normally stays out of the log.
        let mut plain = proxy.client_from("127.0.0.2").await;
        assert_eq!(plain.get("http://socialgate.status/", &[]).await.status, 200);

        proxy.reload(|company| company.department("sales", SALES_BLOCKS_TWITTER));

        assert!(tunnel.closed().await, "the tunnel outlived its policy");
        assert!(stream.closed().await, "the response outlived its policy");
        let records = proxy.records(2).await;
        let company = proxy.stop().await;
        let all = support::records_in(&company.dir().join("access.log"));
        assert_eq!(all.len(), 2, "{all:?}");
        let methods: Vec<&str> = {
            let mut m: Vec<&str> = records.iter().map(|r| r["method"].as_str().unwrap()).collect();
            m.sort_unstable();
            m
        };
        assert_eq!(methods, ["CONNECT", "GET"]);
        for r in &all {
            assert_eq!(r["closed_by"], "policy", "{r}");
            assert_eq!(r["action"], "allow", "logged with its original action: {r}");
        }
    })
    .await;
}

/// `time.ms elapsed client code/status bytes method URL user hierarchy type`.
fn squid_fields(line: &str) -> Vec<&str> {
    let fields: Vec<&str> = line.split(' ').filter(|f| !f.is_empty()).collect();
    assert_eq!(fields.len(), 10, "{line:?}");
    let (secs, millis) = fields[0].split_once('.').unwrap();
    assert!(secs.parse::<u64>().is_ok() && millis.len() == 3 && millis.parse::<u16>().is_ok(), "{line:?}");
    assert!(fields[1].parse::<u64>().is_ok(), "{line:?}");
    assert!(fields[2].parse::<std::net::IpAddr>().is_ok(), "{line:?}");
    let (_, status) = fields[3].split_once('/').unwrap();
    assert_eq!(status.len(), 3, "{line:?}");
    assert!(fields[4].parse::<u64>().is_ok(), "{line:?}");
    fields
}

#[tokio::test]
async fn squid_lines_for_a_tunnel_a_get_a_block_and_a_407_have_squids_ten_fields() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let p = origin.port();
        // A user whose name has a space, which must not add a field.
        let proxy = Company::new()
            .with_basic_auth()
            .log("format = \"squid\"")
            .start_edited(&[p], |dir| {
                let hash = bcrypt::hash(support::PASSWORD, 4).unwrap();
                std::fs::write(dir.join("users.htpasswd"), format!("bob:{hash}\nJohn Smith:{hash}\n")).unwrap();
            })
            .await;
        let auth = support::proxy_auth("John Smith", support::PASSWORD);
        let mut client = proxy.client().await;
        assert_eq!(client.get(&format!("http://example.test:{p}/a"), &[&auth]).await.status, 200);
        assert_eq!(client.get("http://www.facebook.com/", &[&auth]).await.status, 403);
        assert_eq!(proxy.client().await.get(&format!("http://example.test:{p}/b"), &[]).await.status, 407);
        let mut tunnel = proxy.client().await;
        assert_eq!(tunnel.connect_to(&format!("example.test:{p}"), &[&auth]).await.status, 200);
        drop(tunnel);

        let path = proxy.log_path();
        support::eventually("four squid lines", || {
            std::fs::read_to_string(&path).is_ok_and(|t| t.lines().count() >= 4)
        })
        .await;
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Vec<&str>> = text.lines().map(squid_fields).collect();
        let find = |method: &str, code: &str| {
            lines
                .iter()
                .find(|f| f[5] == method && f[3] == code)
                .unwrap_or_else(|| panic!("no {method} {code}:\n{text}"))
        };
        let get = find("GET", "TCP_MISS/200");
        assert_eq!(get[6..], [&format!("http://example.test:{p}/a"), "John%20Smith", "HIER_DIRECT/127.0.0.1", "-"]);
        let blocked = find("GET", "TCP_DENIED/403");
        // The proxy's own pages have their media type, as Squid's do.
        assert_eq!(blocked[6..], ["http://www.facebook.com/", "John%20Smith", "HIER_NONE/-", "text/html"]);
        let challenged = find("GET", "TCP_DENIED/407");
        assert_eq!(challenged[6..], [&format!("http://example.test:{p}/b"), "-", "HIER_NONE/-", "text/html"]);
        let connect = find("CONNECT", "TCP_TUNNEL/200");
        assert_eq!(connect[6..], [&format!("example.test:{p}"), "John%20Smith", "HIER_DIRECT/127.0.0.1", "-"]);
        proxy.stop().await;
    })
    .await;
}

/// Requests whose target or credentials carry control characters, raw
/// non-UTF-8 bytes or line ends: each is refused and logged as exactly one
/// whole line (a record `report` reads back), in both formats.
#[tokio::test]
async fn hostile_bytes_in_a_request_never_break_or_add_a_log_line() {
    bounded(async {
        use base64::Engine;
        let origin = EchoOrigin::start().await;
        let p = origin.port();
        let basic = |user: &[u8]| {
            let mut raw = user.to_vec();
            raw.extend_from_slice(b":pw");
            format!("Proxy-Authorization: Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
        };
        let requests: Vec<Vec<u8>> = vec![
            [format!("GET http://example.test:{p}/a").as_bytes(), b"\xffb HTTP/1.1\r\nHost: example.test\r\n\r\n"]
                .concat(),
            [&b"GET http://example.test/\xff\xfe\x01 HTTP/1.1\r\nHost: example.test\r\n\r\n"[..]].concat(),
            format!("GET http://example.test:{p}/a\x01b HTTP/1.1\r\nHost: example.test\r\n\r\n").into_bytes(),
            format!("GET http://exa\x0bmple.test:{p}/ HTTP/1.1\r\nHost: example.test\r\n\r\n").into_bytes(),
            format!("GET http://example.test:{p}/ HTTP/1.1\r\nHost: example.test\r\n{}\r\n\r\n", basic(b"ev\nil\xff"))
                .into_bytes(),
            format!("GET http://example.test:{p}/ HTTP/1.1\r\nHost: example.test\r\n{}\r\n\r\n", basic(b"a\"}\n{\"x"))
                .into_bytes(),
        ];
        for format in ["json", "squid"] {
            let proxy = Company::new().with_basic_auth().log(&format!("format = \"{format}\"")).start(&[p]).await;
            for raw in &requests {
                let mut client = proxy.client().await;
                client.send_bytes(raw).await;
                let status = client.reply(true).await.status;
                assert!(matches!(status, 400 | 407), "{format} {:?}: {status}", String::from_utf8_lossy(raw));
            }
            let company = proxy.stop().await;
            let text = std::fs::read(company.dir().join("access.log")).unwrap();
            let text = String::from_utf8(text).expect("the log is UTF-8");
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), requests.len(), "{format}:\n{text}");
            for line in lines {
                assert!(!line.chars().any(|c| c.is_control()), "{format}: {line:?}");
                match format {
                    "json" => {
                        let _: socialgate::access_log::Record = serde_json::from_str(line).unwrap();
                    }
                    _ => {
                        let _ = squid_fields(line);
                    }
                }
            }
        }
    })
    .await;
}

/// A trickle of requests (one every 300 ms, never enough to fill a buffer):
/// each record is in the file within the second SPEC section 4 allows.
#[tokio::test]
async fn with_a_trickle_of_requests_each_record_is_in_the_file_within_a_second() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let proxy = Company::new().start(&[443]).await;
        let mut client = proxy.client().await;
        for n in 1..=5 {
            assert_eq!(client.get(&format!("http://example.test:{}/{n}", origin.port()), &[]).await.status, 200);
            let answered = std::time::Instant::now();
            let deadline = answered + std::time::Duration::from_secs(1);
            while support::records_in(&proxy.log_path()).len() < n {
                assert!(std::time::Instant::now() < deadline, "record {n} not in the file a second after the answer");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            // The next request comes later than the writer's linger.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
        proxy.stop().await;
    })
    .await;
}
