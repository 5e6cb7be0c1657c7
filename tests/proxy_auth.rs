//! Basic proxy authentication: 407 until valid credentials, departments by
//! user name, credentials never forwarded, exempt networks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{Company, EchoOrigin, PASSWORD, TlsOrigin, bounded, proxy_auth};

#[tokio::test]
async fn missing_or_wrong_credentials_get_407() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let proxy = Company::new().with_basic_auth().start(&[443]).await;
        let url = format!("http://example.test:{}/", origin.port());

        let missing = proxy.client().await.get(&url, &[]).await;
        let wrong = proxy.client().await.get(&url, &[&proxy_auth("alice", "guess")]).await;
        let unknown = proxy.client().await.get(&url, &[&proxy_auth("mallory", PASSWORD)]).await;

        for reply in [&missing, &wrong, &unknown] {
            assert_eq!(reply.status, 407);
            assert_eq!(reply.header("proxy-authenticate"), Some("Basic realm=\"Corp\""));
            assert_eq!(reply.header("proxy-status"), Some("socialgate; error=proxy_auth_required; details=\"auth\""));
        }
        let records = proxy.records(3).await;
        for r in &records {
            assert_eq!(r["rule"], "auth");
            assert_eq!(r["action"], "block");
            assert_eq!(r["status"], 407);
            assert_eq!(r["user"], serde_json::Value::Null);
            assert_eq!(r["department"], "default");
        }
        let company = proxy.stop().await;
        let log = std::fs::read_to_string(company.dir().join("access.log")).unwrap();
        assert!(!log.contains("guess"), "a password reached the log");
    })
    .await;
}

#[tokio::test]
async fn a_user_is_placed_in_their_department_and_credentials_are_not_forwarded() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let proxy = Company::new().with_basic_auth().start(&[443]).await;
        let url = format!("http://www.facebook.com:{}/", origin.port());

        let mut alice = proxy.client().await;
        let first = alice.get(&url, &[&proxy_auth("alice", PASSWORD)]).await;
        let again = alice.get(&url, &[&proxy_auth("alice", PASSWORD)]).await;
        let bob = proxy.client().await.get(&url, &[&proxy_auth("bob", PASSWORD)]).await;

        assert_eq!((first.status, again.status, bob.status), (200, 200, 200));
        assert!(!first.body.to_lowercase().contains("proxy-authorization"), "{}", first.body);
        let records = proxy.records(3).await;
        let alice_record = records.iter().find(|r| r["user"] == "alice").unwrap();
        assert_eq!(alice_record["department"], "sales");
        assert_eq!(alice_record["action"], "log");
        let bob_record = records.iter().find(|r| r["user"] == "bob").unwrap();
        assert_eq!(bob_record["department"], "engineering");
        assert_eq!(bob_record["action"], "allow");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_tunnel_is_decided_for_the_authenticated_user() {
    bounded(async {
        let origin = TlsOrigin::start().await;
        let proxy = Company::new().with_basic_auth().start(&[origin.port()]).await;
        let target = format!("twitter.com:{}", origin.port());

        let bob = proxy.client().await.connect_to(&target, &[&proxy_auth("bob", PASSWORD)]).await;
        assert_eq!(bob.status, 403, "twitter is blocked for engineering");

        let mut alice = proxy.client().await;
        assert_eq!(alice.connect_to(&target, &[&proxy_auth("alice", PASSWORD)]).await.status, 200);
        assert_eq!(alice.tls_exchange(&origin, "twitter.com", "x").await, "pong: x\n");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn exempt_networks_need_no_credentials() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let proxy =
            Company::new().with_basic_auth().identity("auth_exempt_networks = [\"127.0.0.2/32\"]").start(&[443]).await;
        let reply =
            proxy.client_from("127.0.0.2").await.get(&format!("http://example.test:{}/", origin.port()), &[]).await;
        assert_eq!(reply.status, 200);
        assert_eq!(proxy.records(1).await[0]["department"], "sales");
        proxy.stop().await;
    })
    .await;
}

/// Raw `GET url` with `Proxy-Authorization: value` (bytes as given): the
/// reply.
async fn get_with_authorization(proxy: &support::Proxy, url: &str, value: &[u8]) -> support::Reply {
    let host = url.split('/').nth(2).unwrap();
    let mut raw = format!("GET {url} HTTP/1.1\r\nHost: {host}\r\nProxy-Authorization: ").into_bytes();
    raw.extend_from_slice(value);
    raw.extend_from_slice(b"\r\n\r\n");
    let mut client = proxy.client().await;
    client.send_bytes(&raw).await;
    client.reply(true).await
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Every malformed or foreign `Proxy-Authorization` gets the same `407`
/// with a Basic challenge (never a 400 or a 500); the scheme is matched
/// without regard to case and extra spaces before the token are fine
/// (RFC 9110 11.1, 11.4).
#[tokio::test]
async fn malformed_credentials_get_407_with_a_challenge() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let proxy = Company::new().with_basic_auth().start(&[443]).await;
        let url = format!("http://example.test:{}/", origin.port());
        let password = |user: &[u8]| [user, b":", PASSWORD.as_bytes()].concat();
        let enormous = format!("Basic {}", b64(&password(&b"a".repeat(30_000))));
        let refused: Vec<(&str, Vec<u8>)> = vec![
            ("no colon", format!("Basic {}", b64(b"alice")).into_bytes()),
            ("bad base64", b"Basic !!!not*base64".to_vec()),
            ("base64 with a space inside", format!("Basic {} x", b64(&password(b"alice"))).into_bytes()),
            ("non-UTF-8 user", format!("Basic {}", b64(&password(&[0xff, 0xfe, b'a']))).into_bytes()),
            ("empty user", format!("Basic {}", b64(&password(b""))).into_bytes()),
            ("scheme only", b"Basic".to_vec()),
            ("empty", Vec::new()),
            ("Negotiate", b"Negotiate YIIGhgYGKwYBBQUCoIIGejCCBnag".to_vec()),
            ("Digest", b"Digest username=\"alice\", realm=\"Corp\", nonce=\"x\", uri=\"/\", response=\"y\"".to_vec()),
            ("Bearer", b"Bearer abc.def.ghi".to_vec()),
            ("obs-text", b"Basic \xff\xfe\xfd".to_vec()),
            ("enormous", enormous.into_bytes()),
            ("user only with NUL", format!("Basic {}", b64(b"alice\0:x")).into_bytes()),
        ];
        for (what, value) in &refused {
            let reply = get_with_authorization(&proxy, &url, value).await;
            assert_eq!(reply.status, 407, "{what}");
            assert_eq!(reply.header("proxy-authenticate"), Some("Basic realm=\"Corp\""), "{what}");
            assert_eq!(reply.header("proxy-status"), Some("socialgate; error=proxy_auth_required; details=\"auth\""));
        }
        let accepted: [(&str, Vec<u8>); 3] = [
            ("lowercase scheme", format!("basic {}", b64(&password(b"alice"))).into_bytes()),
            ("uppercase scheme", format!("BASIC {}", b64(&password(b"alice"))).into_bytes()),
            ("extra spaces", format!("Basic    {}", b64(&password(b"alice"))).into_bytes()),
        ];
        for (what, value) in &accepted {
            assert_eq!(get_with_authorization(&proxy, &url, value).await.status, 200, "{what}");
        }
        let records = proxy.records(refused.len() + accepted.len()).await;
        assert!(records.iter().filter(|r| r["status"] == 407).all(|r| r["user"].is_null() && r["rule"] == "auth"));
        assert_eq!(records.iter().filter(|r| r["user"] == "alice").count(), accepted.len());
        proxy.stop().await;
    })
    .await;
}

/// A realm beyond ASCII (`Société`) still gets its challenge (as UTF-8
/// bytes, like Squid): a 407 without `Proxy-Authenticate` would leave
/// browsers no way to ask for a password.
#[tokio::test]
async fn a_realm_beyond_ascii_still_gets_a_challenge() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let proxy = Company::new()
            .identity("auth = \"basic\"")
            .identity("htpasswd = \"users.htpasswd\"")
            .identity("realm = \"Société Générale\"")
            .start(&[443])
            .await;
        let reply = proxy.client().await.get(&format!("http://example.test:{}/", origin.port()), &[]).await;
        assert_eq!(reply.status, 407);
        assert_eq!(reply.header("proxy-authenticate"), Some("Basic realm=\"Société Générale\""));
        proxy.stop().await;
    })
    .await;
}

/// An exempt client that sends credentials anyway is treated as Squid
/// treats it under `http_access allow exempt` before the auth rules: the
/// credentials are not looked at. Right or wrong, it is let through,
/// placed by its network, logged without a user, and the credentials are
/// not forwarded.
#[tokio::test]
async fn an_exempt_client_sending_credentials_is_placed_by_network() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let proxy =
            Company::new().with_basic_auth().identity("auth_exempt_networks = [\"127.0.0.2/32\"]").start(&[443]).await;
        let url = format!("http://www.facebook.com:{}/", origin.port());

        let mut exempt = proxy.client_from("127.0.0.2").await;
        let valid = exempt.get(&url, &[&proxy_auth("bob", PASSWORD)]).await;
        let wrong = exempt.get(&url, &[&proxy_auth("bob", "guess")]).await;
        let garbage = exempt.get(&url, &["Proxy-Authorization: Negotiate xyz"]).await;
        for reply in [&valid, &wrong, &garbage] {
            assert_eq!(reply.status, 200, "facebook is logged (allowed) for sales, its network");
            assert!(!reply.body.to_lowercase().contains("proxy-authorization"), "{}", reply.body);
        }
        let records = proxy.records(3).await;
        for r in &records {
            assert_eq!(r["department"], "sales", "{r}");
            assert_eq!(r["user"], serde_json::Value::Null, "{r}");
            assert_eq!(r["action"], "log", "{r}");
        }
        proxy.stop().await;
    })
    .await;
}

/// The status page shows the signed-in user escaped: htpasswd user names
/// may hold any character but `:`, markup included.
#[tokio::test]
async fn the_status_page_escapes_the_user_name() {
    bounded(async {
        let hostile = "<script>alert('x')</script>&\"";
        let proxy = Company::new()
            .with_basic_auth()
            .start_edited(&[443], |dir| {
                let mut users = std::fs::read_to_string(dir.join("users.htpasswd")).unwrap();
                users.push_str(&format!("{hostile}:{}\n", bcrypt::hash(PASSWORD, 4).unwrap()));
                std::fs::write(dir.join("users.htpasswd"), users).unwrap();
            })
            .await;
        let reply = proxy.client().await.get("http://socialgate.status/", &[&proxy_auth(hostile, PASSWORD)]).await;
        assert_eq!(reply.status, 200);
        assert!(!reply.body.contains("<script>"), "{}", reply.body);
        assert!(reply.body.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"), "{}", reply.body);
        proxy.stop().await;
    })
    .await;
}
