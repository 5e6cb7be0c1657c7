//! Credentials: Basic proxy auth under attack. A flood of wrong passwords
//! must not be able to buy unbounded bcrypt CPU (concurrent verifications
//! bounded, failures rate-limited per client), a valid user is still served
//! during such a flood, and credentials are never forwarded or logged.
//! The users here have a realistic bcrypt cost (10), not the cheap one the
//! other suites use.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::{Company, CountingOrigin, PASSWORD, bounded, proxy_auth};

const COST: u32 = 10;
const FLOOD: usize = 48;

async fn proxy_with_costly_users() -> support::Proxy {
    let htpasswd: String =
        ["alice", "bob"].iter().map(|user| format!("{user}:{}\n", bcrypt::hash(PASSWORD, COST).unwrap())).collect();
    Company::new()
        .with_basic_auth()
        .start_edited(&[443], |dir| std::fs::write(dir.join("users.htpasswd"), htpasswd).unwrap())
        .await
}

/// Sends `size` concurrent requests with a wrong password from `source`;
/// returns how long until all were answered, and their statuses.
async fn flood(proxy: &support::Proxy, url: &str, source: &'static str, size: usize) -> (Duration, Vec<u16>) {
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for i in 0..size {
        let mut client = proxy.client_from(source).await;
        let url = url.to_owned();
        tasks.push(tokio::spawn(async move {
            let wrong = proxy_auth("alice", &format!("guess-{i}"));
            client.get(&url, &[&wrong]).await.status
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    (started.elapsed(), statuses)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_user_is_served_during_a_wrong_password_flood() {
    bounded(async {
        let origin = CountingOrigin::start().await;
        let proxy = proxy_with_costly_users().await;
        let url = format!("http://example.test:{}/", origin.port());
        // Half the flood: this test must also pass on a busy CI machine.
        let attack = flood(&proxy, &url, "127.0.0.4", FLOOD / 2);
        let legit = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let started = tokio::time::Instant::now();
            let reply = proxy.client_from("127.0.0.5").await.get(&url, &[&proxy_auth("bob", PASSWORD)]).await;
            (reply.status, started.elapsed())
        };
        let ((_, statuses), (status, waited)) = tokio::join!(attack, legit);
        assert!(statuses.iter().all(|s| *s == 407 || *s == 429), "{statuses:?}");
        assert_eq!(status, 200);
        assert!(waited < Duration::from_secs(5), "a valid user waited {waited:?} behind the flood");
        proxy.stop().await;
    })
    .await;
}

// The cost of a wrong-password flood is bounded by counting bcrypt runs,
// not by timing: see `identity::tests::a_wrong_password_flood_costs_a_bounded_number_of_verifications`.

#[tokio::test]
async fn credentials_are_never_forwarded_or_logged_even_when_wrong() {
    bounded(async {
        let origin = CountingOrigin::start().await;
        let proxy = Company::new().with_basic_auth().start(&[443]).await;
        let url = format!("http://example.test:{}/", origin.port());
        let right = proxy_auth("alice", PASSWORD);
        let wrong = proxy_auth("alice", "hunter2-secret");
        assert_eq!(proxy.client().await.get(&url, &[&wrong]).await.status, 407);
        let reply = proxy.client().await.get(&url, &[&right]).await;
        assert_eq!(reply.status, 200);
        assert!(!reply.body.to_lowercase().contains("proxy-authorization"), "{}", reply.body);
        let records = proxy.whole_records(2).await;
        let text = std::fs::read_to_string(proxy.log_path()).unwrap();
        for secret in [PASSWORD, "hunter2-secret", right.rsplit(' ').next().unwrap(), wrong.rsplit(' ').next().unwrap()]
        {
            assert!(!text.contains(secret), "{secret} in the log: {records:?}");
        }
        proxy.stop().await;
    })
    .await;
}

/// `socialgate_auth_verifications_total` as the proxy exports it.
fn verifications(proxy: &support::Proxy) -> u64 {
    let text = proxy.metrics_text();
    let line = text.lines().find(|l| l.starts_with("socialgate_auth_verifications_total ")).unwrap_or_else(|| {
        panic!("no socialgate_auth_verifications_total in\n{text}");
    });
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// Regression: a client that hung up right after sending a wrong password
/// had its request future dropped mid-verification, before the failure was
/// counted and with the concurrency permit released while bcrypt still ran,
/// so sending-and-closing bought unthrottled, unbounded bcrypt CPU.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_hang_up_mid_verification_are_still_throttled() {
    bounded(async {
        let origin = CountingOrigin::start().await;
        let proxy = proxy_with_costly_users().await;
        let url = format!("http://example.test:{}/", origin.port());
        for i in 0..3 * socialgate::identity::MAX_FAILURES {
            let before = verifications(&proxy);
            let mut client = proxy.client_from("127.0.0.4").await;
            let wrong = proxy_auth("alice", &format!("guess-{i}"));
            client.send(&format!("GET {url} HTTP/1.1\r\nHost: example.test\r\n{wrong}\r\n\r\n")).await;
            // Hang up once bcrypt runs for this guess, or once it is refused
            // without running.
            let started = async {
                while verifications(&proxy) == before {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            };
            tokio::select! {
                () = started => {}
                reply = client.reply(true) => assert_eq!(reply.status, 407),
            }
            drop(client);
        }
        // bcrypt permits are handed out in order: once bob has had his turn,
        // every abandoned attempt that was going to run has started.
        let bob = proxy.client_from("127.0.0.5").await.get(&url, &[&proxy_auth("bob", PASSWORD)]).await;
        assert_eq!(bob.status, 200);
        let runs = verifications(&proxy);
        let most = u64::from(socialgate::identity::MAX_FAILURES) + 1;
        assert!(runs <= most, "{runs} bcrypt runs for abandoned guesses (at most {most} expected)");
        proxy.stop().await;
    })
    .await;
}
