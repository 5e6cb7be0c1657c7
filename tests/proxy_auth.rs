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
