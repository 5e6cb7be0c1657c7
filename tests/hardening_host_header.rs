//! A Host header that disagrees with the absolute URI is logged (the URI
//! wins). In its own test binary: the log capture is a thread-local tracing
//! subscriber, and tracing caches each log site's interest process-wide, so
//! tests running beside it on other threads (with no subscriber) could
//! switch the site off.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{Company, CountingOrigin, bounded};

/// Captures `tracing` events (INFO and above) on this thread; the test
/// runtime is current-thread, so the proxy's tasks log here too.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_host_header_mismatch_is_logged() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    bounded(async {
        let origin = CountingOrigin::start().await;
        let proxy = Company::new().start(&[443]).await;
        let mut client = proxy.client().await;
        client
            .send(&format!("GET http://example.test:{}/ HTTP/1.1\r\nHost: mismatched-host.test\r\n\r\n", origin.port()))
            .await;
        assert_eq!(client.reply(true).await.status, 200);
        proxy.stop().await;
    })
    .await;
    let text = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(text.contains("mismatched-host.test"), "no log line names the disagreeing Host header:\n{text}");
}
