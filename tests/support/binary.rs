//! The real `socialgate run` binary under test: started with a config,
//! its log read as it comes, stopped with SIGTERM or killed on drop.

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
pub struct Binary {
    child: std::process::Child,
    /// Its first proxy address.
    pub addr: SocketAddr,
    /// Its log lines up to the first "proxy listening".
    pub start_log: Vec<String>,
    /// Every log line after that, as they come.
    later_log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Binary {
    pub async fn start(main: &std::path::Path) -> Binary {
        let mut command = Command::new(env!("CARGO_BIN_EXE_socialgate"));
        command.arg("--config").arg(main).arg("run");
        Binary::spawn(command).await
    }

    /// Starts the binary from `sh` with its open-file limits set to `soft`
    /// and `hard` first.
    pub async fn start_under_ulimit(main: &std::path::Path, soft: u32, hard: u32) -> Binary {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -Sn {soft} && ulimit -Hn {hard} && exec \"$0\" --config \"$1\" run"))
            .arg(env!("CARGO_BIN_EXE_socialgate"))
            .arg(main);
        Binary::spawn(command).await
    }

    /// Runs `command` (the binary, however launched) with its log on stderr.
    async fn spawn(mut command: Command) -> Binary {
        let mut child = command
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Read stderr on a thread; hand over the log up to the first bound
        // address, and the address.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<(SocketAddr, Vec<String>)>();
        let later_log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let later = later_log.clone();
        std::thread::spawn(move || {
            let mut start_log = Some(Vec::new());
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                let line = plain(&line);
                let Some(log) = start_log.as_mut() else {
                    later.lock().unwrap().push(line);
                    continue;
                };
                if line.contains("proxy listening")
                    && let Some(addr) = line.split("addr=").nth(1).and_then(|rest| rest.split_whitespace().next())
                {
                    let _ = tx.send((addr.parse().unwrap(), start_log.take().unwrap_or_default()));
                    continue;
                }
                log.push(line);
            }
        });
        let (addr, start_log) = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(10)))
            .await
            .unwrap()
            .expect("the binary never logged its address");
        Binary { child, addr, start_log, later_log }
    }

    /// Waits (with a deadline) for a log line after start that contains
    /// `text`, and returns it.
    pub async fn logged(&self, text: &str) -> String {
        self.logged_since(0, text).await
    }

    /// How many log lines came after start so far, for [`Binary::logged_since`].
    pub fn mark(&self) -> usize {
        self.later_log.lock().unwrap().len()
    }

    /// Like [`Binary::logged`], among the lines after `mark`.
    pub async fn logged_since(&self, mark: usize, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(line) = self.later_log.lock().unwrap().iter().skip(mark).find(|l| l.contains(text)) {
                return line.clone();
            }
            assert!(Instant::now() < deadline, "no log line with {text:?} in {:#?}", self.later_log.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends signal `name` (e.g. `HUP`).
    pub fn signal(&self, name: &str) {
        let sent = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(sent.success(), "kill -{name} failed");
    }

    /// Sends SIGTERM and waits (with a deadline) for the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
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

/// The address a log line names right after `prefix`.
pub fn addr_after(line: &str, prefix: &str) -> SocketAddr {
    let rest = line.split(prefix).nth(1).unwrap_or_else(|| panic!("no {prefix:?} in {line}"));
    rest.split_whitespace().next().unwrap().trim_start_matches("addr=").parse().unwrap()
}
