//! Schedules end to end, on a proxy whose clock is set a few seconds before
//! a window's edge: what the policy allowed before the edge is refused after
//! it (and the other way round), and a tunnel opened before it is cut at it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use socialgate::proxy::Clock;
use support::{Company, EchoOrigin, TlsOrigin, WAIT, bounded};
use tokio::io::AsyncReadExt;

/// Lunch is 12:00 to 13:00 UTC, every day.
const SCHEDULES: &str = "[schedules]\ntimezone = \"UTC\"\n\n[schedules.lunch]\nfrom = \"12:00\"\nto = \"13:00\"\n";

/// How long before the edge the proxy's clock starts.
const LEAD: Duration = Duration::from_secs(3);

/// The standard company, except that the default department (127.0.0.1)
/// blocks Facebook at lunch and allows it otherwise.
fn company() -> Company {
    Company::new().department(
        "default",
        "default = \"allow\"\n[services]\nfacebook = { action = \"block\", during = \"lunch\", otherwise = \"allow\" }\n",
    )
}

/// A clock that reads `LEAD` before `edge` (UTC) now.
fn clock_before(edge: &str) -> Clock {
    let edge: jiff::Timestamp = edge.parse().unwrap();
    Clock::reading(edge - jiff::SignedDuration::try_from(LEAD).unwrap())
}

#[tokio::test]
async fn a_window_that_opens_refuses_new_requests_and_cuts_an_open_tunnel() {
    bounded(async {
        let web = EchoOrigin::start().await;
        let tls = TlsOrigin::start().await;
        let started = Instant::now();
        let proxy = company().start_on(&[tls.port()], SCHEDULES, clock_before("2026-12-02T12:00:00Z")).await;
        let page = format!("http://www.facebook.com:{}/feed", web.port());
        let authority = format!("www.facebook.com:{}", tls.port());

        // Before 12:00: a request, and a TLS session through a tunnel.
        let mut browser = proxy.client().await;
        assert_eq!(browser.get(&page, &[]).await.status, 200);
        let mut tunnel = proxy.client().await;
        assert_eq!(tunnel.connect_to(&authority, &[]).await.status, 200);
        let mut session = tunnel.tls_session(&tls, "www.facebook.com").await;
        assert!(started.elapsed() < LEAD, "the set-up outlasted the lead: before and after cannot be told apart");

        // At 12:00 the open tunnel is cut (the origin would wait forever
        // for a line), not a moment before.
        let mut byte = [0u8; 1];
        let end = tokio::time::timeout(WAIT, session.read(&mut byte)).await.expect("the tunnel outlived 12:00");
        assert!(matches!(end, Ok(0) | Err(_)), "the tunnel carried {end:?}");

        // After 12:00 the same keep-alive connection is refused, and so is
        // a new tunnel.
        let reply = browser.get(&page, &[]).await;
        assert_eq!(reply.status, 403);
        let mut late = proxy.client().await;
        assert_eq!(late.connect_to(&authority, &[]).await.status, 403);

        let records = proxy.records(4).await;
        let line = |r: &serde_json::Value| {
            (r["method"].as_str().unwrap().to_owned(), r["action"].as_str().unwrap().to_owned(), r["status"].as_u64())
        };
        let seen: Vec<_> = records.iter().map(line).collect();
        let expected =
            [("GET", "allow", 200), ("CONNECT", "allow", 200), ("GET", "block", 403), ("CONNECT", "block", 403)];
        let expected: Vec<_> = expected.iter().map(|(m, a, s)| ((*m).to_owned(), (*a).to_owned(), Some(*s))).collect();
        assert_eq!(seen, expected, "{records:#?}");
        // Records carry the proxy's clock: decided before 12:00, then after.
        for (r, minute) in records.iter().zip(["11:59", "11:59", "12:00", "12:00"]) {
            let ts = r["ts"].as_str().unwrap();
            assert!(ts.starts_with(&format!("2026-12-02T{minute}")), "ts {ts} is not at {minute}");
        }
        // The tunnel ended by policy at 12:00, not a moment before.
        let tunnel = &records[1];
        assert_eq!(tunnel["closed_by"], "policy", "{tunnel}");
        let opened: jiff::Timestamp = tunnel["ts"].as_str().unwrap().parse().unwrap();
        let ended = opened + jiff::SignedDuration::from_millis(tunnel["duration_ms"].as_i64().unwrap());
        let noon: jiff::Timestamp = "2026-12-02T12:00:00Z".parse().unwrap();
        // duration_ms is whole milliseconds, so the end may read up to 1 ms early.
        assert!(ended >= noon - jiff::SignedDuration::from_millis(1), "cut at {ended}, before 12:00");
        assert!(ended < noon + jiff::SignedDuration::from_secs(2), "cut at {ended}, long after 12:00");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_window_that_closes_lets_requests_through_again() {
    bounded(async {
        let web = EchoOrigin::start().await;
        let started = Instant::now();
        let proxy = company().start_on(&[], SCHEDULES, clock_before("2026-12-02T13:00:00Z")).await;
        let page = format!("http://www.facebook.com:{}/feed", web.port());
        let mut browser = proxy.client().await;

        let reply = browser.get(&page, &[]).await;
        assert_eq!(reply.status, 403, "facebook at 12:59:57");
        assert!(started.elapsed() < LEAD, "the set-up outlasted the lead: before and after cannot be told apart");

        // Asks every 100 ms until the answer changes; the records say when
        // each answer was decided, by the proxy's clock.
        let mut asked = 1;
        loop {
            let reply = browser.get(&page, &[]).await;
            asked += 1;
            if reply.status == 200 {
                break;
            }
            assert_eq!(reply.status, 403);
            assert!(started.elapsed() < LEAD + WAIT, "still refused long after 13:00");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let records = proxy.records(asked).await;
        let (allowed, refused) = records.split_last().unwrap();
        assert_eq!(allowed["action"], "allow", "{allowed}");
        assert!(allowed["ts"].as_str().unwrap().starts_with("2026-12-02T13:00:0"), "allowed at {}", allowed["ts"]);
        for r in refused {
            assert_eq!(r["action"], "block", "{r}");
            assert!(r["ts"].as_str().unwrap().starts_with("2026-12-02T12:59:5"), "refused at {}", r["ts"]);
        }
        assert!(refused.len() >= 2, "only {} refusal(s) before 13:00: the edge was not watched", refused.len());
        proxy.stop().await;
    })
    .await;
}

/// The status page names each schedule's window, says whether it is in
/// force, and gives the proxy's own time, so that a helpdesk can tell why
/// Facebook is blocked right now.
#[tokio::test]
async fn the_status_page_shows_each_schedules_window_and_whether_it_is_in_force() {
    bounded(async {
        let schedules = format!(
            "{SCHEDULES}\n[schedules.night]\ndays = [\"sun\", \"mon\", \"tue\", \"wed\", \"thu\", \"fri\"]\nfrom = \"22:00\"\nto = \"06:00\"\n"
        );
        let company = Company::new().department(
            "default",
            "default = \"allow\"\n[services]\nfacebook = { action = \"block\", during = \"lunch\", otherwise = \"allow\" }\ntwitter = { action = \"block\", during = \"night\", otherwise = \"log\" }\n",
        );
        // Wednesday 12:30 UTC: lunch is on, the night is not.
        let clock = Clock::reading("2026-12-02T12:30:00Z".parse().unwrap());
        let proxy = company.start_on(&[443], &schedules, clock).await;
        let reply = proxy.client().await.get("http://socialgate.status/", &[]).await;
        assert_eq!(reply.status, 200);
        for expected in [
            "<li>Proxy time: Wed 2026-12-02 12:30 UTC</li>",
            "<td>facebook</td><td>block</td><td>services.facebook</td><td>lunch: every day 12:00-13:00, in force now</td>",
            "<td>twitter</td><td>log</td><td>services.twitter</td><td>night: mon-fri, sun 22:00-06:00 (next day), not in force now</td>",
        ] {
            assert!(reply.body.contains(expected), "status page lacks {expected}: {}", reply.body);
        }
        proxy.stop().await;
    })
    .await;
}
