//! `socialgate replay` run as a binary: the log in tests/fixtures/replay/
//! re-decided under the config next to it (expected changes worked out by
//! hand in tests/fixtures/replay/README.md).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/replay").join(name)
}

fn replay(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_socialgate"))
        .arg("--config")
        .arg(config)
        .arg("replay")
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn log() -> String {
    fixture("replay.log").display().to_string()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[test]
fn json_lists_every_flip_by_department_and_service() {
    let out = replay(&fixture("socialgate.toml"), &["--format", "json", &log()]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap();
    // Compare change by change first, for a readable failure.
    for (g, w) in got["changes"].as_array().unwrap().iter().zip(want["changes"].as_array().unwrap()) {
        assert_eq!(g, w);
    }
    assert_eq!(got, want);
    assert_eq!(text(&out.stdout), std::fs::read_to_string(fixture("expected.json")).unwrap());
    assert!(text(&out.stderr).contains("replay.log:21:"), "{}", text(&out.stderr));
}

#[test]
fn text_output_groups_by_department() {
    let out = replay(&fixture("socialgate.toml"), &[&log()]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.starts_with("socialgate replay: 20 records, 18 re-decided, 13 would change"), "{s}");
    assert!(s.contains("department sales: 7 requests would change\n"), "{s}");
    let row = format!("  facebook  {:<14}  {:>8}  {:>5}\n", "log -> block", 4, 3);
    assert!(s.contains(&row), "{s}");
    let example = s.lines().find(|l| l.contains("2026-11-26T08:05:00Z")).unwrap();
    let words: Vec<&str> = example.split("  ").map(str::trim).filter(|w| !w.is_empty()).collect();
    assert_eq!(
        words,
        ["2026-11-26T08:05:00Z", "log -> block", "alice", "www.facebook.com", "www.facebook.com", "services.facebook"]
    );
}

#[test]
fn invalid_config_exits_1_with_diagnostics() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("socialgate.toml");
    std::fs::write(&main, "[proxy]\nlisten = [\"127.0.0.1:3128\"]\nbogus = 1\n").unwrap();
    let out = replay(&main, &[&log()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("socialgate.toml"), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
}

#[test]
fn unreadable_log_exits_1_naming_it() {
    let missing = fixture("no-such.log");
    let out = replay(&fixture("socialgate.toml"), &[missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no-such.log"), "{}", text(&out.stderr));
}

#[test]
fn html_is_not_a_replay_format() {
    let out = replay(&fixture("socialgate.toml"), &["--format", "html", &log()]);
    assert_eq!(out.status.code(), Some(2));
}

/// Regression: the first unreadable log stopped replay with no results. Now
/// every log is read, each failure named, the results printed, exit 1.
#[test]
fn a_missing_log_among_several_is_named_and_the_others_still_replayed() {
    let missing = fixture("no-such.log");
    let out = replay(&fixture("socialgate.toml"), &["--format", "json", missing.to_str().unwrap(), &log()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("error: cannot read ") && err.contains("no-such.log: "), "{err}");
    assert_eq!(text(&out.stdout), std::fs::read_to_string(fixture("expected.json")).unwrap());
}

/// Regression: `replay --format json` passed C1 and bidi controls in logged
/// names (here a host and a user) to the terminal raw.
#[test]
fn json_output_escapes_c1_and_bidi_controls_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hostile.log");
    let line = serde_json::json!({
        "ts": "2026-11-26T13:00:00Z", "client": "10.20.0.11", "user": "alice\u{9b}2J", "department": "sales",
        "method": "CONNECT", "host": "www.facebook.com", "port": 443, "url": null,
        "sni": "www.facebook.com\u{202e}", "service": null, "rule": "default", "action": "allow",
        "status": 200, "bytes_up": 1, "bytes_down": 1, "duration_ms": 1, "closed_by": "client"
    });
    std::fs::write(&path, format!("{line}\n")).unwrap();
    let out = replay(&fixture("socialgate.toml"), &["--format", "json", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json = text(&out.stdout);
    assert!(!json.chars().any(|c| c == '\u{9b}' || c == '\u{202e}'), "{json:?}");
    assert!(json.contains(r#""user":"alice\u009b2J""#), "{json}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["changes"][0]["examples"][0]["sni"], "www.facebook.com\u{202e}");
}

/// Hosts as a log may hold them: case and a trailing dot, an IDN in Unicode
/// or punycode, IP literals with and without brackets, an SNI with a
/// trailing dot. All are re-decided as the proxy would decide them.
#[test]
fn hosts_with_trailing_dots_idn_and_ip_literals_are_re_decided() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hosts.log");
    let rec = |host: &str, sni: Option<&str>| {
        serde_json::json!({
            "ts": "2026-11-26T13:00:00Z", "client": "10.20.0.11", "user": "alice", "department": "sales",
            "method": "CONNECT", "host": host, "port": 443, "url": null, "sni": sni, "service": null,
            "rule": "default", "action": "allow", "status": 200, "bytes_up": 1, "bytes_down": 1,
            "duration_ms": 1, "closed_by": "client"
        })
        .to_string()
    };
    let lines = [
        rec("WWW.FACEBOOK.COM.", None),
        rec("bücher.facebook.com", None),
        rec("xn--bcher-kva.facebook.com", None),
        rec("203.0.113.7", Some("www.facebook.com.")),
        rec("203.0.113.7", None),
        rec("2001:db8::1", None),
        rec("[2001:db8::1]", None),
        rec("facebook.com..", None),
    ];
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let out = replay(&fixture("socialgate.toml"), &["--format", "json", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((&v["records"], &v["decided"], &v["undecidable"]), (&8.into(), &7.into(), &1.into()), "{v}");
    assert_eq!(v["changed"], 4, "the four facebook requests flip; the IP literals stay allowed: {v}");
    let change = &v["changes"][0];
    assert_eq!(
        (&change["department"], &change["service"], &change["to"]),
        (&"sales".into(), &"facebook".into(), &"block".into())
    );
    assert_eq!(change["examples"][0]["host"], "WWW.FACEBOOK.COM.", "examples show the host as logged");
}

/// A tunnel refused by `[proxy] non_tls_tunnels = "refuse"` (its first bytes
/// were not TLS) is logged as a block with rule `non_tls_tunnels`: the proxy's
/// own refusal, not a policy decision on its host. Replayed as one, it showed
/// as "block -> allow" under the very config that refused it.
#[test]
fn refused_non_tls_tunnels_are_not_re_decided() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("non-tls.log");
    let record = serde_json::json!({
        "ts": "2026-11-26T13:00:00Z", "client": "10.20.0.11", "user": null, "department": "sales",
        "method": "CONNECT", "host": "git.example.net", "port": 443, "url": null, "sni": null,
        "service": null, "rule": "non_tls_tunnels", "action": "block", "status": 403,
        "bytes_up": 84, "bytes_down": 0, "duration_ms": 0, "closed_by": "policy"
    });
    std::fs::write(&path, format!("{record}\n")).unwrap();
    let out = replay(&fixture("socialgate.toml"), &["--format", "json", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&v["records"], &v["skipped"], &v["decided"], &v["changed"]),
        (&1.into(), &1.into(), &0.into(), &0.into()),
        "{v}"
    );
}
