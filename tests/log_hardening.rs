//! The access log under unusual conditions: a log that cannot be written
//! (a full disk) neither stops the proxy nor loses the records it holds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{Company, EchoOrigin, bounded};

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
