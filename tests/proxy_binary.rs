//! The real binary: `socialgate run` logs its bound address, serves a
//! request, and on SIGTERM drains, flushes the access log and exits 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Client, Company, EchoOrigin, bounded, wait_for_records};

/// Removes ANSI colour sequences from a log line.
fn plain(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test]
async fn sigterm_drains_flushes_the_log_and_exits_zero() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let company = Company::new();
        let main = company.write(&[443]);
        let mut child = Command::new(env!("CARGO_BIN_EXE_socialgate"))
            .arg("--config")
            .arg(&main)
            .arg("run")
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();

        // Read stderr on a thread; hand over the first bound address.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                let line = plain(&line);
                if line.contains("proxy listening") {
                    if let Some(addr) = line.split("addr=").nth(1).and_then(|rest| rest.split_whitespace().next()) {
                        let _ = tx.send(addr.parse().unwrap());
                    }
                }
            }
        });
        let addr = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(10)))
            .await
            .unwrap()
            .expect("the binary never logged its address");

        let mut client = Client::connect(addr, "127.0.0.3").await;
        let reply = client.get(&format!("http://example.test:{}/", origin.port()), &[]).await;
        assert_eq!(reply.status, 200);
        drop(client);

        let killed = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "the proxy did not exit after SIGTERM");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(status.success(), "exit status {status:?}");

        let records = wait_for_records(&company.dir().join("access.log"), 1).await;
        assert_eq!(records[0]["status"], 200);
        assert_eq!(records[0]["department"], "engineering");
    })
    .await;
}
