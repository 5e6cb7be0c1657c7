//! `socialgate report` run as a binary against the hand-written fixture log
//! (tests/fixtures/report/README.md lists the expected figures).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report").join(name)
}

fn socialgate(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_socialgate"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(bytes).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

fn expected(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap()
}

fn log_path() -> String {
    fixture("access.log").display().to_string()
}

#[test]
fn json_report_matches_the_hand_checked_figures() {
    let out = socialgate(&["report", "--format", "json", &log_path()], None);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), expected("expected.json"));

    // The same figures, spelled out for a reader.
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["records"], 27);
    assert_eq!(v["from"], "2026-11-25T23:50:00Z");
    assert_eq!(v["to"], "2026-11-27T07:30:00Z");
    let names: Vec<&str> = v["departments"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["engineering", "hr", "sales"]);
    let eng = &v["departments"][0];
    assert_eq!(eng["active_users"], 4, "three client addresses without a user, plus dave");
    assert_eq!(eng["requests"], 9);
    assert_eq!(
        eng["services"][2],
        serde_json::json!({"name":"youtube","users":3,"share":0.75,"allowed":3,"logged":0,"blocked":0,"bytes":843400})
    );
    let hr_hours: Vec<&str> =
        v["departments"][1]["busiest_hours"].as_array().unwrap().iter().map(|h| h["hour"].as_str().unwrap()).collect();
    assert_eq!(
        hr_hours,
        [
            "2026-11-26T08:00:00Z",
            "2026-11-26T09:00:00Z",
            "2026-11-26T10:00:00Z",
            "2026-11-26T13:00:00Z",
            "2026-11-27T07:00:00Z"
        ],
        "ties: earlier hour first"
    );
    let sales_fb = &v["departments"][2]["services"][0];
    assert_eq!(sales_fb["users"], 2);
    assert_eq!(sales_fb["logged"], 4);
    assert_eq!(sales_fb["bytes"], 48000);
}

#[test]
fn json_field_order_is_the_specs() {
    let out = socialgate(&["report", "--format", "json", &log_path()], None);
    let s = stdout(&out);
    assert!(s.starts_with(r#"{"from":"#));
    assert!(s.contains(r#"{"name":"engineering","active_users":4,"requests":9,"services":[{"name":"linkedin","users":1,"share":0.25,"allowed":1,"logged":0,"blocked":0,"bytes":6400}"#));
    assert!(s.contains(r#""busiest_hours":[{"hour":"2026-11-26T09:00:00Z","requests":4}"#));
}

#[test]
fn filters_since_until_and_department() {
    let out = socialgate(
        &[
            "report",
            "--format",
            "json",
            "--since",
            "2026-11-26",
            "--until",
            "2026-11-26T10:00:00Z",
            "--department",
            "sales",
            &log_path(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), expected("expected-sales-morning.json"));
}

#[test]
fn since_is_inclusive_and_until_exclusive() {
    let at = "2026-11-26T09:10:00Z"; // carol's blocked youtube request in sales
    let from = socialgate(&["report", "--format", "json", "--since", at, "--department", "sales", &log_path()], None);
    let v: serde_json::Value = serde_json::from_slice(&from.stdout).unwrap();
    assert_eq!(v["from"], at);
    let until = socialgate(&["report", "--format", "json", "--until", at, "--department", "sales", &log_path()], None);
    let v: serde_json::Value = serde_json::from_slice(&until.stdout).unwrap();
    assert_eq!(v["to"], "2026-11-26T08:45:00Z");
}

#[test]
fn filters_that_match_nothing_give_an_empty_report() {
    let out = socialgate(&["report", "--format", "json", "--department", "legal", &log_path()], None);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "{\"from\":null,\"to\":null,\"records\":0,\"departments\":[]}\n");
}

#[test]
fn bad_time_is_a_usage_error() {
    let out = socialgate(&["report", "--since", "yesterday", &log_path()], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("yesterday"));
}

#[test]
fn gzip_input_gives_the_same_report() {
    let dir = tempfile::tempdir().unwrap();
    let plain = std::fs::read(fixture("access.log")).unwrap();
    // Two gzip members, as logrotate + cat produce: both are read.
    let (first, second) = plain.split_at(plain.len() / 2);
    let mut gz = Vec::new();
    for part in [first, second] {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(part).unwrap();
        gz.extend(enc.finish().unwrap());
    }
    // Detected by magic bytes, whatever the name.
    for name in ["access.log.gz", "access.log.1"] {
        let path = dir.path().join(name);
        std::fs::write(&path, &gz).unwrap();
        let out = socialgate(&["report", "--format", "json", path.to_str().unwrap()], None);
        assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
        assert_eq!(stdout(&out), expected("expected.json"), "{name}");
    }
}

/// Regression: bytes after the last gzip member (zeros a crash left, a
/// copy padded out) failed the input (exit 1) though every record was read;
/// `gzip -d` ignores them with a warning, and so does the report now.
/// Another member after them is not looked for (neither does `gzip -d`).
#[test]
fn bytes_after_the_last_gzip_member_are_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let plain = std::fs::read(fixture("access.log")).unwrap();
    for (what, tail) in [("zeros", vec![0u8; 512]), ("text", b"not gzip at all\n".to_vec())] {
        let mut gz = gzip(&plain);
        gz.extend_from_slice(&tail);
        let path = dir.path().join(format!("padded-{what}.log.gz"));
        std::fs::write(&path, &gz).unwrap();
        let out = socialgate(&["report", "--format", "json", path.to_str().unwrap()], None);
        assert_eq!(out.status.code(), Some(0), "{what}: {}", stderr(&out));
        assert_eq!(stdout(&out), expected("expected.json"), "{what}");
        let err = stderr(&out);
        assert!(
            err.contains(&format!("warning: {}: decompression OK, trailing garbage ignored", path.display())),
            "{what}: {err}"
        );
    }
    // A whole log, without anything after it, warns of nothing.
    let path = dir.path().join("clean.log.gz");
    std::fs::write(&path, gzip(&plain)).unwrap();
    let out = socialgate(&["report", "--format", "json", path.to_str().unwrap()], None);
    assert!(!stderr(&out).contains("trailing garbage"), "{}", stderr(&out));
}

#[test]
fn stdin_is_read_for_dash() {
    let plain = std::fs::read(fixture("access.log")).unwrap();
    let out = socialgate(&["report", "--format", "json", "-"], Some(&plain));
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), expected("expected.json"));
    assert!(stderr(&out).contains("-:9:"), "stdin is named `-`: {}", stderr(&out));
}

#[test]
fn several_logs_are_one_report() {
    let dir = tempfile::tempdir().unwrap();
    let text = expected("access.log");
    let lines: Vec<&str> = text.lines().collect();
    let (a, b) = lines.split_at(20);
    let pa = dir.path().join("a.log");
    let pb = dir.path().join("b.log");
    std::fs::write(&pa, a.join("\n")).unwrap();
    std::fs::write(&pb, b.join("\n") + "\n").unwrap();
    let out = socialgate(&["report", "--format", "json", pa.to_str().unwrap(), pb.to_str().unwrap()], None);
    assert_eq!(stdout(&out), expected("expected.json"));
}

#[test]
fn malformed_lines_are_counted_on_stderr_and_not_fatal() {
    let out = socialgate(&["report", &log_path()], None);
    assert_eq!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(err.contains("access.log:9:"), "{err}");
    assert!(err.contains("access.log:22:"), "{err}");
    assert!(err.contains("`maybe`"), "{err}");
    assert!(err.contains("2 lines skipped"), "{err}");
    assert!(!err.contains("access.log:15:"), "blank lines are not errors: {err}");
}

#[test]
fn many_malformed_lines_are_summarised() {
    let junk = "garbage\n".repeat(12);
    let out = socialgate(&["report", "-"], Some(junk.as_bytes()));
    assert_eq!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert_eq!(err.matches("warning: not a valid record").count(), 5, "{err}");
    assert!(err.contains("and 7 more"), "{err}");
    assert!(err.contains("12 lines skipped"), "{err}");
}

#[test]
fn unreadable_log_exits_1_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.log");
    let out = socialgate(&["report", &log_path(), missing.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(missing.to_str().unwrap()), "{}", stderr(&out));
    // The cause once, not twice.
    assert_eq!(stderr(&out).matches("No such file or directory").count(), 1, "{}", stderr(&out));

    // A directory opens but cannot be read; with nothing read at all there
    // is no report, only the error.
    for format in ["text", "json", "html"] {
        let out = socialgate(&["report", "--format", format, dir.path().to_str().unwrap()], None);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains(dir.path().to_str().unwrap()));
        assert!(stdout(&out).is_empty(), "{format}: {}", stdout(&out));
    }
}

#[test]
fn empty_logs_give_an_empty_report() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.log");
    std::fs::write(&empty, "").unwrap();
    let empty_gz = dir.path().join("empty.log.gz");
    std::fs::write(&empty_gz, gzip(b"")).unwrap();
    let out = socialgate(&["report", "--format", "json", empty.to_str().unwrap(), empty_gz.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "{\"from\":null,\"to\":null,\"records\":0,\"departments\":[]}\n");
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}

/// Regression: the first unreadable log stopped the command, so a typo in
/// one of several names hid every other problem and threw away the report
/// of the logs that were fine. Now, as with `cat` or `grep`, every input is
/// read, each failure is named, the report covers the rest and says it is
/// incomplete, and the exit code is 1.
#[test]
fn a_missing_log_among_several_is_named_and_the_others_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let missing_a = dir.path().join("typo-a.log");
    let missing_b = dir.path().join("typo-b.log");
    let (a, b) = (missing_a.to_str().unwrap(), missing_b.to_str().unwrap());
    let out = socialgate(&["report", "--format", "json", a, &log_path(), b], None);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(&format!("error: cannot read {a}: ")), "{err}");
    assert!(err.contains(&format!("error: cannot read {b}: ")), "{err}");
    assert!(err.contains("2 inputs could not be read"), "{err}");
    assert_eq!(stdout(&out), expected("expected.json"), "the readable log is still reported, unchanged");

    for format in ["text", "html"] {
        let out = socialgate(&["report", "--format", format, a, &log_path()], None);
        assert_eq!(out.status.code(), Some(1));
        let s = stdout(&out);
        assert!(s.to_lowercase().contains("incomplete:"), "{format}: {s}");
        assert!(s.contains("typo-a.log"), "{format}: {s}");
        assert!(s.contains("27 records"), "{format}: {s}");
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Regression: a gzip cut off mid-stream (disk full while logrotate
/// compressed it) made the whole report fail with no figures at all. Now its
/// records up to the cut count, the error says where reading stopped, the
/// next log is still read, and the exit code is 1.
#[test]
fn a_gzip_truncated_mid_stream_keeps_the_records_before_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let plain = std::fs::read(fixture("access.log")).unwrap();
    let gz = gzip(&plain.repeat(200));
    let cut = dir.path().join("access.log.2.gz");
    std::fs::write(&cut, &gz[..gz.len() / 2]).unwrap();
    let out = socialgate(&["report", "--format", "json", cut.to_str().unwrap(), &log_path()], None);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let line = err.lines().find(|l| l.starts_with("error: cannot read ")).unwrap_or_default();
    assert!(line.contains("access.log.2.gz past line "), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let records = v["records"].as_u64().unwrap();
    assert!(records > 27 * 2, "records before the cut count: {records}");
    assert!(records < 27 * 201, "{records}");
    assert_eq!(v["to"], "2026-11-27T07:30:00Z");
}

/// Regression: a UTF-8 byte-order mark (a log saved by a Windows editor, or
/// such files concatenated) made the first line of each file invalid.
#[test]
fn a_byte_order_mark_does_not_invalidate_a_line() {
    let plain = std::fs::read(fixture("access.log")).unwrap();
    let mut input = b"\xef\xbb\xbf".to_vec();
    input.extend(&plain);
    input.extend(b"\xef\xbb\xbf");
    input.extend(&plain);
    let out = socialgate(&["report", "--format", "json", "-"], Some(&input));
    assert_eq!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(err.contains("4 lines skipped"), "only the fixture's own bad lines: {err}");
    assert!(!err.contains("-:1:"), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["records"], 54);
}

#[test]
fn crlf_line_endings_and_other_ts_offsets_are_read() {
    let text = expected("access.log").replace('\n', "\r\n");
    let out = socialgate(&["report", "--format", "json", "-"], Some(text.as_bytes()));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), expected("expected.json"));

    // The same instants written with other offsets and without milliseconds
    // give the same report (hours are UTC clock hours).
    let offset = jiff::tz::TimeZone::fixed(jiff::tz::offset(5));
    let shifted: String = expected("access.log")
        .lines()
        .map(|line| match serde_json::from_str::<serde_json::Value>(line) {
            Ok(mut v) if v["ts"].is_string() => {
                let ts: jiff::Timestamp = v["ts"].as_str().unwrap().parse().unwrap();
                let local = ts.to_zoned(offset.clone()).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string();
                assert!(local.ends_with("+05:00"), "{local}");
                v["ts"] = local.into();
                v.to_string() + "\n"
            }
            _ => format!("{line}\n"),
        })
        .collect();
    let out = socialgate(&["report", "--format", "json", "-"], Some(shifted.as_bytes()));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), expected("expected.json"));
}

/// Regression: `--since` after `--until` silently gave an empty report, as
/// if no traffic had happened.
#[test]
fn since_not_before_until_is_a_usage_error() {
    for (since, until) in [("2026-11-27", "2026-11-26"), ("2026-11-26T10:00:00+01:00", "2026-11-26T09:00:00Z")] {
        let out = socialgate(&["report", "--since", since, "--until", until, &log_path()], None);
        assert_eq!(out.status.code(), Some(2), "{since} {until}");
        let err = stderr(&out);
        assert!(err.contains("is not before `--until"), "{err}");
        assert!(out.stdout.is_empty());
    }
    let out = socialgate(&["report", "--until", "2026-13-01", &log_path()], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("invalid time `2026-13-01`"), "{}", stderr(&out));
}

/// Regression: `--department` naming no department (a typo) gave an empty
/// report with no hint why.
#[test]
fn a_department_that_is_not_in_the_logs_is_warned_about() {
    let out = socialgate(&["report", "--department", "salse", &log_path()], None);
    assert_eq!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(
        err.contains(
            "warning: no record of department `salse` in the logs; departments seen: `engineering`, `hr`, `sales`"
        ),
        "{err}"
    );
    // A department that exists but has nothing in the period is not a typo.
    let out = socialgate(&["report", "--department", "sales", "--since", "2030-01-01", &log_path()], None);
    assert!(!stderr(&out).contains("no record of department"), "{}", stderr(&out));
}

/// A 100 MB line without a newline is skipped in bounded memory: run under
/// a 64 MiB address-space limit (the command needs about 24), which holding
/// the line would exceed.
#[test]
fn a_100_mb_line_without_newline_stays_in_bounded_memory() {
    let bin = env!("CARGO_BIN_EXE_socialgate");
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg("ulimit -v 65536 && exec \"$0\" report --format json -")
        .arg(bin)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(&std::fs::read(fixture("access.log")).unwrap()).unwrap();
    let chunk = vec![b'{'; 1024 * 1024];
    for _ in 0..100 {
        // A broken pipe means the command died (out of memory): the exit
        // code below says so.
        if pipe.write_all(&chunk).is_err() {
            break;
        }
    }
    drop(pipe);
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("-:34: warning: not a valid record: line longer than"), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["records"], 27);
}

#[test]
fn text_report_is_aligned_tables() {
    let out = socialgate(&["report", &log_path()], None);
    let s = stdout(&out);
    assert!(s.starts_with("socialgate report: 27 records from 2026-11-25T23:50:00Z to 2026-11-27T07:30:00Z (UTC)\n"));
    assert!(s.contains("department sales: 3 active users, 10 requests\n"));
    assert!(s.contains(
        "  service   users  share  allowed  logged  blocked     bytes\n  ----------------------------------------------------------\n  facebook      2  66.7%        0       4        0   48.0 kB\n"
    ), "{s}");
    assert!(s.contains("  2026-11-26 09:00           4\n"), "{s}");
}

#[test]
fn html_is_self_contained_with_two_charts() {
    let out = socialgate(&["report", "--format", "html", &log_path()], None);
    assert_eq!(out.status.code(), Some(0));
    let html = stdout(&out);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(html.matches("<svg").count(), 2, "share chart and requests-per-hour chart");
    for banned in ["http://", "https://", "src=", "<script", "<link", "@import", "url("] {
        assert!(!html.contains(banned), "found {banned}");
    }
    assert!(html.contains("@media print"));
    assert!(html.contains("<h2>engineering</h2>"));
}

#[test]
fn html_escapes_names_from_the_log() {
    let line = r#"{"ts":"2026-11-26T08:05:00.000Z","client":"10.20.0.11","user":"<b>","department":"<script>alert(1)</script>","method":"GET","host":"a.example","port":80,"url":null,"sni":null,"service":"x\"><img src=x>","rule":"default","action":"allow","status":200,"bytes_up":1,"bytes_down":1,"duration_ms":1,"closed_by":"client"}"#;
    let out = socialgate(&["report", "--format", "html", "-"], Some(line.as_bytes()));
    let html = stdout(&out);
    assert!(!html.contains("<script>"));
    assert!(!html.contains("<img"));
    assert!(html.contains("x&quot;&gt;&lt;img src=x&gt;"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
}

#[test]
fn an_overlong_line_is_skipped_and_the_next_one_read() {
    let mut input = vec![b'x'; 3 * 1024 * 1024];
    input.push(b'\n');
    input.extend(std::fs::read(fixture("access.log")).unwrap());
    let out = socialgate(&["report", "--format", "json", "-"], Some(&input));
    assert_eq!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(err.contains("-:1: warning: not a valid record: line longer than"), "{err}");
    assert!(err.contains("3 lines skipped"), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["records"], 27);
}

/// Regression: the reason for an invalid line quotes the line's own text
/// (`unknown variant ...`), and went to the terminal raw: a hostile log could
/// send escape sequences (retitle, clear or recolour the admin's terminal)
/// and a megabyte-long quote per line.
#[test]
fn invalid_line_reasons_reach_the_terminal_without_escapes_and_short() {
    let line = expected("access.log").lines().next().unwrap().to_owned();
    assert!(line.contains(r#""action":""#), "{line}");
    let escape = line.replacen(r#""closed_by":""#, r#""closed_by":"\u001b]0;owned\u0007\u001b[2J"#, 1);
    let long = line.replacen(r#""closed_by":""#, &format!(r#""closed_by":"{}"#, "x".repeat(100_000)), 1);
    let input = format!("{escape}\n{long}\n{line}\n");
    for format in ["text", "json"] {
        let out = socialgate(&["report", "--format", format, "-"], Some(input.as_bytes()));
        assert_eq!(out.status.code(), Some(0));
        let err = stderr(&out);
        assert!(!err.contains('\u{1b}') && !err.contains('\u{7}'), "control characters on stderr: {err:?}");
        assert!(err.contains("-:1:"), "{err}");
        assert!(err.contains("2 lines skipped"), "{err}");
        assert!(err.len() < 2_000, "{} bytes of warnings", err.len());
    }
}

/// Regression: serde_json escapes only C0 controls, so `--format json` at a
/// terminal passed C1 controls from the log (U+009B is CSI, which xterm acts
/// on) and bidi overrides through raw. They are now `\u` escapes that decode
/// to the same name; text output shows them as `?`.
#[test]
fn json_output_escapes_c1_and_bidi_controls_from_the_log() {
    let department = "d\u{9b}31m\u{202e}x\u{7f}";
    let line = serde_json::json!({
        "ts": "2026-11-26T08:05:00Z", "client": "10.20.0.11", "user": "u\u{9b}2J", "department": department,
        "method": "GET", "host": "a.example", "port": 80, "url": null, "sni": null, "service": "s\u{2066}",
        "rule": "default", "action": "allow", "status": 200, "bytes_up": 1, "bytes_down": 1, "duration_ms": 1,
        "closed_by": "client"
    })
    .to_string();
    let raw = |s: &str| s.chars().any(|c| c.is_control() && c != '\n' || matches!(c, '\u{202e}' | '\u{2066}'));
    let out = socialgate(&["report", "--format", "json", "-"], Some(line.as_bytes()));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json = stdout(&out);
    assert!(!raw(&json), "{json:?}");
    assert!(json.contains(r#""name":"d\u009b31m\u202ex\u007f""#), "{json}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["departments"][0]["name"], department);
    assert_eq!(v["departments"][0]["services"][0]["name"], "s\u{2066}");

    let out = socialgate(&["report", "-"], Some(line.as_bytes()));
    let text = stdout(&out);
    assert!(!raw(&text), "{text:?}");
    assert!(text.contains("department d?31m?x?:"), "{text}");
}

/// Regression: `-` named twice read standard input once and reported as
/// if the second were empty; a usage error says so instead.
#[test]
fn stdin_named_twice_is_a_usage_error() {
    let out = socialgate(&["report", "-", &log_path(), "-"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("`-` (standard input) is named more than once"), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    let out = socialgate(&["replay", "-", "-"], None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("`-` (standard input) is named more than once"), "{}", stderr(&out));
}
