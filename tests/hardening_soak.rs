//! Load with nothing lost: workers on eight source addresses
//! (127.0.0.2..9, i.e. sales, engineering and the default department) mix
//! allowed, logged and blocked requests over plain HTTP (keep-alive) and
//! CONNECT (a real TLS exchange through the tunnel), with a log rotation
//! (rename, then reopen) at a quarter of the time and a reload at half
//! time, both while requests are in flight; a second run does the same with every client signed in (Basic
//! auth, departments by user). Every answer must be the one the policy gives, and the access
//! log — the rotated file and the new one together — must hold exactly one
//! record per request, with matching statuses, and each file must hold some.
//!
//! Runs for `SOCIALGATE_SOAK_SECS` seconds (default 3). With 30 s or more it
//! also checks that resident memory stops growing (bench/soak/run.sh runs
//! the 60-second version in release mode).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use support::{Company, CountingOrigin, TlsOrigin};

/// One kind of request, and what each department must get.
#[derive(Debug, Clone, Copy)]
enum Kind {
    HttpExample,
    HttpFacebook,
    HttpTwitter,
    ConnectFacebook,
    ConnectExample,
}

const KINDS: [Kind; 5] =
    [Kind::HttpExample, Kind::HttpFacebook, Kind::HttpTwitter, Kind::ConnectFacebook, Kind::ConnectExample];

/// The department of a client on `source` signed in as `user` (if any).
fn department(source: &str, user: Option<&str>) -> &'static str {
    match (user, source) {
        (Some("alice"), _) | (None, "127.0.0.2") => "sales",
        (Some("bob"), _) | (None, "127.0.0.3") => "engineering",
        _ => "default",
    }
}

/// The status a client in `dept` must get (unchanged by the reload).
fn expected(kind: Kind, dept: &str) -> u16 {
    match (kind, dept) {
        (Kind::HttpFacebook | Kind::ConnectFacebook, "default") => 403,
        (Kind::HttpTwitter, "engineering") => 403,
        _ => 200,
    }
}

/// Resident memory of this process in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[derive(Default)]
struct Tally {
    requests: usize,
    by_status: BTreeMap<u16, usize>,
    wrong: Vec<String>,
}

async fn worker(
    proxy: Arc<support::Proxy>,
    origin_port: u16,
    tls: Arc<TlsOrigin>,
    source: String,
    user: Option<&'static str>,
    until: tokio::time::Instant,
) -> Tally {
    let auth: Vec<String> = user.map(|u| support::proxy_auth(u, support::PASSWORD)).into_iter().collect();
    let headers: Vec<&str> = auth.iter().map(String::as_str).collect();
    let mut tally = Tally::default();
    let mut client = proxy.client_from(&source).await;
    let mut used = 0;
    let mut i = 0usize;
    while tokio::time::Instant::now() < until {
        let kind = KINDS[i % KINDS.len()];
        i += 1;
        if used >= 10 {
            client = proxy.client_from(&source).await;
            used = 0;
        }
        used += 1;
        let want = expected(kind, department(&source, user));
        let got = match kind {
            Kind::HttpExample | Kind::HttpFacebook | Kind::HttpTwitter => {
                let host = match kind {
                    Kind::HttpExample => "example.test",
                    Kind::HttpFacebook => "www.facebook.com",
                    _ => "twitter.com",
                };
                client.get(&format!("http://{host}:{origin_port}/{i}"), &headers).await.status
            }
            Kind::ConnectFacebook | Kind::ConnectExample => {
                let host = if matches!(kind, Kind::ConnectFacebook) { "www.facebook.com" } else { "example.test" };
                let mut tunnel = proxy.client_from(&source).await;
                let status = tunnel.connect_to(&format!("{host}:{}", tls.port()), &headers).await.status;
                if status == 200 {
                    let answer = tunnel.tls_exchange(&tls, host, "soak").await;
                    if answer != "pong: soak\n" {
                        tally.wrong.push(format!("{source} {kind:?}: tunnel answered {answer:?}"));
                    }
                }
                status
            }
        };
        tally.requests += 1;
        *tally.by_status.entry(got).or_default() += 1;
        if got != want {
            tally.wrong.push(format!("{source} {kind:?}: want {want}, got {got}"));
        }
    }
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_load_with_a_reload_loses_nothing() {
    let clients = (2..=9).map(|n| (format!("127.0.0.{n}"), None)).collect();
    soak(Company::new(), clients, "addresses").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_load_of_signed_in_users_with_a_reload_loses_nothing() {
    // Placed by user, whatever the address (127.0.0.3 signed in as alice
    // is in sales, not engineering).
    let users = [Some("alice"), Some("bob")];
    let clients = (2..=9).map(|n| (format!("127.0.0.{n}"), users[n % 2])).collect();
    soak(Company::new().with_basic_auth(), clients, "users").await;
}

/// Runs the mixed load from `clients` (source address, user) against
/// `company` for `SOCIALGATE_SOAK_SECS`, with a reload at half time.
async fn soak(company: Company, clients: Vec<(String, Option<&'static str>)>, label: &'static str) {
    let secs: u64 = std::env::var("SOCIALGATE_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    // The summary line (requests, memory) shows with `--nocapture`.
    let _ =
        tracing_subscriber::fmt().with_max_level(tracing::Level::INFO).with_ansi(false).with_test_writer().try_init();
    tokio::time::timeout(Duration::from_secs(secs + 60), async {
        let origin = CountingOrigin::start().await;
        let tls = Arc::new(TlsOrigin::start().await);
        let mut proxy = company.start(&[tls.port()]).await;
        let started = tokio::time::Instant::now();
        let until = started + Duration::from_secs(secs);
        let run = |proxy: Arc<support::Proxy>, until| {
            clients
                .iter()
                .map(|(source, user)| {
                    tokio::spawn(worker(proxy.clone(), origin.port(), tls.clone(), source.clone(), *user, until))
                })
                .collect::<Vec<_>>()
        };

        // First half, then a reload that changes actions but no status
        // (sales: facebook log -> allow; default: linkedin blocked), then
        // the second half.
        let half = started + Duration::from_secs(secs) / 2;
        let shared = Arc::new(proxy);
        let first = run(shared.clone(), half);
        // Rotate while the first half's requests are in flight.
        let rotated = shared.company().dir().join("access.log.1");
        tokio::time::sleep_until(started + Duration::from_secs(secs) / 4).await;
        let before_rotation = support::records_in(&shared.log_path()).len();
        shared.rotate_log(&rotated).await;
        let mut tallies = Vec::new();
        for task in first {
            tallies.push(task.await.unwrap());
        }
        let rss_mid = rss_kib();
        proxy = Arc::try_unwrap(shared).ok().expect("workers hold no proxy");
        proxy.reload(|company| {
            company
                .department(
                    "sales",
                    "networks = [\"127.0.0.2/32\"]\nusers = [\"alice\"]\ndefault = \"allow\"\n[services]\nfacebook = \"allow\"\n",
                )
                .department("default", "default = \"allow\"\n[services]\nfacebook = \"block\"\nlinkedin = \"block\"\n")
        });
        let shared = Arc::new(proxy);
        for task in run(shared.clone(), until) {
            tallies.push(task.await.unwrap());
        }
        let rss_end = rss_kib();
        let proxy = Arc::try_unwrap(shared).ok().expect("workers hold no proxy");

        let requests: usize = tallies.iter().map(|t| t.requests).sum();
        let wrong: Vec<&String> = tallies.iter().flat_map(|t| &t.wrong).collect();
        assert!(wrong.is_empty(), "{} wrong answers of {requests}:\n{:?}", wrong.len(), wrong);
        let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
        for t in &tallies {
            for (status, n) in &t.by_status {
                *by_status.entry(*status).or_default() += n;
            }
        }
        assert!(requests > 50, "only {requests} requests in {secs} s");

        // Everything is flushed once the proxy has stopped.
        let company = proxy.stop().await;
        let old = support::records_in(&rotated);
        let new = support::records_in(&company.dir().join("access.log"));
        assert!(old.len() >= before_rotation && before_rotation > 0, "{} records before the rotation", old.len());
        assert!(!new.is_empty(), "nothing logged after the rotation");
        let (old_n, new_n) = (old.len(), new.len());
        let records: Vec<_> = old.into_iter().chain(new).collect();
        assert_eq!(records.len(), requests, "records ({old_n} rotated + {new_n} new) and requests differ");
        let mut logged: BTreeMap<u16, usize> = BTreeMap::new();
        for r in &records {
            *logged.entry(r["status"].as_u64().unwrap() as u16).or_default() += 1;
        }
        assert_eq!(logged, by_status, "statuses logged differ from statuses answered");
        let sales_after = records.iter().filter(|r| r["department"] == "sales" && r["service"] == "facebook");
        assert!(sales_after.clone().any(|r| r["action"] == "log"), "no sales facebook request before the reload");
        assert!(sales_after.clone().any(|r| r["action"] == "allow"), "no sales facebook request after the reload");

        tracing::info!(label, requests, old_n, new_n, rss_mid, rss_end, "soak done");
        if secs >= 30 {
            assert!(
                rss_end <= rss_mid + rss_mid / 4 + 16 * 1024,
                "resident memory kept growing: {rss_mid} KiB at half time, {rss_end} KiB at the end"
            );
        }
    })
    .await
    .expect("the soak overran its deadline");
}
