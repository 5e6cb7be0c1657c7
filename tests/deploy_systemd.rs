//! The systemd deployment under `deploy/systemd/`: the unit passes
//! `systemd-analyze verify` without a single warning (required when `CI` is
//! set, skipped with a note otherwise), its reload and the logrotate snippet
//! send the signals the proxy handles (HUP reloads, USR1 reopens the access
//! log), its sandboxing is the one documented, and the host config it runs
//! passes `socialgate check` next to the shipped policies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_socialgate");

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// Whether a tool is on PATH (or in /usr/sbin, where logrotate lives).
fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A missing tool fails the test under CI (the CI script installs it) and
/// skips it, with a note, on a developer machine.
fn require(name: &str, package: &str) -> Option<PathBuf> {
    let found = tool(name);
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "`{name}` is not installed but CI is set: install the `{package}` package"
        );
        eprintln!("note: `{name}` not installed (apt package `{package}`), skipping");
    }
    found
}

/// `Key=value` lines of the unit's `[Service]` section, in order.
fn service_settings(unit: &str) -> Vec<(String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            section = line.to_owned();
            continue;
        }
        if section == "[Service]" {
            let (k, v) = line.split_once('=').expect("Key=value");
            out.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    out
}

fn setting<'a>(settings: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    settings.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
}

/// Runs `systemd-analyze verify` on `unit` (written to a fresh folder under
/// `name`) and returns everything it printed.
fn verify(name: &str, unit: &str) -> (bool, String) {
    let analyze = tool("systemd-analyze").expect("systemd-analyze");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, unit).unwrap();
    let out = Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&path)
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .expect("run systemd-analyze");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn unit_passes_systemd_analyze_verify_without_warnings() {
    if require("systemd-analyze", "systemd").is_none() {
        return;
    }
    // `verify` needs the ExecStart binary to exist: point the unit at the
    // binary cargo just built.
    let unit = read("deploy/systemd/socialgate.service").replace("/usr/local/bin/socialgate", BIN);
    let (ok, text) = verify("socialgate.service", &unit);
    assert!(ok, "systemd-analyze verify failed:\n{text}");
    assert!(!text.contains("socialgate.service"), "systemd-analyze verify warned:\n{text}");

    // The verifier is live: the same unit with a typo is reported.
    let broken = unit.replace("ProtectSystem=strict", "ProtectSystem=stric");
    let (_, text) = verify("socialgate.service", &broken);
    assert!(text.contains("socialgate.service"), "a broken unit went unnoticed:\n{text}");
}

#[test]
fn unit_runs_check_then_run_and_reloads_with_sighup() {
    let unit = read("deploy/systemd/socialgate.service");
    let s = service_settings(&unit);
    assert_eq!(setting(&s, "Type"), ["exec"]);
    let config = "--config /etc/socialgate/socialgate.toml";
    assert_eq!(setting(&s, "ExecStartPre"), [format!("/usr/local/bin/socialgate {config} check")]);
    assert_eq!(setting(&s, "ExecStart"), [format!("/usr/local/bin/socialgate {config} run")]);
    assert_eq!(setting(&s, "ExecReload"), ["kill -HUP $MAINPID"]);
    assert_eq!(setting(&s, "KillSignal"), ["SIGTERM"]);
    // Stop timeout above the shipped [limits] shutdown_grace of 30s.
    let stop = setting(&s, "TimeoutStopSec");
    let secs: u64 = stop[0].trim_end_matches('s').parse().unwrap();
    assert!(secs > 30, "TimeoutStopSec={secs}s must exceed shutdown_grace (30s)");
}

#[test]
fn unit_is_sandboxed() {
    let unit = read("deploy/systemd/socialgate.service");
    let s = service_settings(&unit);
    let one = |key: &str| -> String {
        let v = setting(&s, key);
        assert_eq!(v.len(), 1, "{key} set {} times", v.len());
        v[0].to_owned()
    };
    assert!(one("User") == "socialgate" || one("DynamicUser") == "yes");
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(one("ReadWritePaths"), "/var/log/socialgate");
    assert_eq!(one("LogsDirectory"), "socialgate");
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(one("CapabilityBoundingSet"), "");
    assert_eq!(one("AmbientCapabilities"), "");
    assert_eq!(one("RestrictAddressFamilies"), "AF_INET AF_INET6 AF_UNIX");
    assert_eq!(setting(&s, "SystemCallFilter")[0], "@system-service");
    assert_eq!(one("LimitNOFILE"), "65536");
    // The bind-below-1024 escape hatch is documented in the unit.
    assert!(unit.contains("CapabilityBoundingSet=CAP_NET_BIND_SERVICE"));
}

#[test]
fn logrotate_reopens_the_log_with_sigusr1() {
    let snippet = read("deploy/systemd/socialgate.logrotate");
    let code: Vec<&str> = snippet.lines().map(str::trim).filter(|l| !l.starts_with('#')).collect();
    assert!(code.iter().any(|l| l.starts_with("/var/log/socialgate/")), "rotates the unit's log folder");
    let start = code.iter().position(|l| *l == "postrotate").expect("postrotate");
    let end = code.iter().position(|l| *l == "endscript").expect("endscript");
    let script = code[start + 1..end].join("\n");
    assert!(script.contains("--signal=SIGUSR1"), "postrotate sends SIGUSR1: {script}");
    assert!(script.contains("socialgate.service"), "to the socialgate unit: {script}");
    assert!(script.contains("--kill-who=main"), "to the main process only: {script}");
    // Reopening by name needs the file renamed, not copied and truncated.
    assert!(!code.contains(&"copytruncate"));
}

#[test]
fn logrotate_accepts_the_snippet() {
    let Some(logrotate) = tool("logrotate") else {
        eprintln!("note: logrotate not installed, skipping its syntax check");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Point the snippet at a temporary folder; `-d` only reports what it would do.
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    std::fs::write(logs.join("access.log"), "{}\n").unwrap();
    let snippet = read("deploy/systemd/socialgate.logrotate")
        .replace("/var/log/socialgate/", &format!("{}/", logs.display()))
        .replace("su socialgate socialgate", "")
        .replace("create 0640 socialgate socialgate", "create 0640");
    let conf = dir.path().join("socialgate.conf");
    std::fs::write(&conf, snippet).unwrap();
    let out = Command::new(logrotate)
        .arg("-d")
        .arg("-s")
        .arg(dir.path().join("state"))
        .arg(&conf)
        .output()
        .expect("run logrotate");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "logrotate -d failed:\n{text}");
    assert!(!text.to_lowercase().contains("error"), "logrotate -d reported errors:\n{text}");
}

/// The proxy handles the signals the unit and the snippet send, as a real
/// process: SIGUSR1 reopens the access log (a renamed file is replaced by a
/// new one), SIGHUP reloads, neither stops it; SIGTERM exits 0.
#[test]
fn the_running_proxy_survives_hup_and_reopens_its_log_on_usr1() {
    let dir = tempfile::tempdir().unwrap();
    let proxy_port = free_port();
    let admin_port = free_port();
    std::fs::create_dir(dir.path().join("departments")).unwrap();
    std::fs::write(dir.path().join("departments/default.toml"), "default = \"allow\"\n").unwrap();
    let main = dir.path().join("socialgate.toml");
    std::fs::write(
        &main,
        format!(
            "[proxy]\nlisten = [\"127.0.0.1:{proxy_port}\"]\n[log]\naccess_log = \"access.log\"\n\
             [admin]\nlisten = \"127.0.0.1:{admin_port}\"\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .env("RUST_LOG", "off")
        .arg("--config")
        .arg(&main)
        .arg("run")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until("the admin endpoint answers /healthz", || healthz(admin_port));

        // logrotate: rename, then SIGUSR1; the next record lands in a new file.
        let log = dir.path().join("access.log");
        wait_until("the first request is logged", || {
            status_page(proxy_port);
            std::fs::metadata(&log).is_ok_and(|m| m.len() > 0)
        });
        std::fs::rename(&log, dir.path().join("access.log.1")).unwrap();
        signal("USR1", &pid);
        wait_until("a new access.log after SIGUSR1", || {
            status_page(proxy_port);
            std::fs::metadata(&log).is_ok_and(|m| m.len() > 0)
        });
        assert!(child.try_wait().unwrap().is_none(), "SIGUSR1 stopped the proxy");

        signal("HUP", &pid);
        wait_until("/healthz after SIGHUP", || healthz(admin_port));
        assert!(child.try_wait().unwrap().is_none(), "SIGHUP stopped the proxy");

        signal("TERM", &pid);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert_eq!(status.code(), Some(0), "SIGTERM exit code");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no exit within 20s of SIGTERM");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }));
    let _ = child.kill();
    let _ = child.wait();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn signal(name: &str, pid: &str) {
    let status = Command::new("kill").arg(format!("-{name}")).arg(pid).status().unwrap();
    assert!(status.success(), "kill -{name} {pid}");
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// One HTTP/1.1 request over loopback with a 2-second bound; the response text.
fn http(port: u16, request: &str) -> Option<String> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let timeout = std::time::Duration::from_secs(2);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    stream.write_all(request.as_bytes()).ok()?;
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    Some(String::from_utf8_lossy(&out).into_owned())
}

fn healthz(port: u16) -> bool {
    http(port, "GET /healthz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
}

/// The proxy's own status page: answered without any upstream, and logged.
fn status_page(port: u16) {
    let _ =
        http(port, "GET http://socialgate.status/ HTTP/1.1\r\nHost: socialgate.status\r\nConnection: close\r\n\r\n");
}

#[test]
fn host_config_passes_check_next_to_the_shipped_policies() {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&repo("config"), dir.path());
    // `check` wants the access log's folder (the unit's `LogsDirectory=`,
    // created before `ExecStartPre=`) to exist: a temporary one stands in.
    let logs = dir.path().join("var-log-socialgate");
    std::fs::create_dir(&logs).unwrap();
    let text = read("deploy/systemd/socialgate.toml");
    let main = dir.path().join("socialgate.toml");
    std::fs::write(&main, text.replace("/var/log/socialgate/", &format!("{}/", logs.display()))).unwrap();
    let out = Command::new(BIN).env("RUST_LOG", "off").arg("--config").arg(&main).arg("check").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert_eq!(out.status.code(), Some(0));
    let table: toml::Table = text.parse().unwrap();
    assert_eq!(table["log"]["access_log"].as_str(), Some("/var/log/socialgate/access.log"));
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
