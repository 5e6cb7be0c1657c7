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

/// The real binary running a company's config, and its first address.
struct Binary {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Binary {
    async fn start(main: &std::path::Path) -> Binary {
        let mut child = Command::new(env!("CARGO_BIN_EXE_socialgate"))
            .arg("--config")
            .arg(main)
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
        Binary { child, addr }
    }

    /// Sends SIGTERM and waits (with a deadline) for the exit status.
    async fn terminate(mut self) -> std::process::ExitStatus {
        let killed = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().unwrap();
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the proxy did not exit after SIGTERM");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        // A failed test must not leave the process behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn sigterm_drains_flushes_the_log_and_exits_zero() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let company = Company::new();
        let proxy = Binary::start(&company.write(&[443])).await;

        let mut client = Client::connect(proxy.addr, "127.0.0.3").await;
        let reply = client.get(&format!("http://example.test:{}/", origin.port()), &[]).await;
        assert_eq!(reply.status, 200);
        drop(client);

        let status = proxy.terminate().await;
        assert!(status.success(), "exit status {status:?}");
        let records = wait_for_records(&company.dir().join("access.log"), 1).await;
        assert_eq!(records[0]["status"], 200);
        assert_eq!(records[0]["department"], "engineering");
    })
    .await;
}

#[tokio::test]
async fn an_edited_department_file_is_reloaded_within_two_seconds() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let company = Company::new();
        let proxy = Binary::start(&company.write(&[443])).await;
        let url = format!("http://www.facebook.com:{}/", origin.port());
        assert_eq!(Client::connect(proxy.addr, "127.0.0.1").await.get(&url, &[]).await.status, 403);

        let edited = Instant::now();
        std::fs::write(company.dir().join("departments").join("default.toml"), "default = \"allow\"\n").unwrap();
        loop {
            if Client::connect(proxy.addr, "127.0.0.1").await.get(&url, &[]).await.status == 200 {
                break;
            }
            assert!(edited.elapsed() < Duration::from_secs(5), "the edit was not picked up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // An invalid edit keeps the running config: wait out the whole
        // reload window (a negative has no condition to poll for).
        std::fs::write(company.dir().join("departments").join("default.toml"), "default = \"alow\"\n").unwrap();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(Client::connect(proxy.addr, "127.0.0.1").await.get(&url, &[]).await.status, 200);

        assert!(proxy.terminate().await.success());
    })
    .await;
}
