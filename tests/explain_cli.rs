//! `socialgate explain` and `check` run as the real binary against the
//! shipped example config: the decisions an admin would look up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

fn socialgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_socialgate"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("run socialgate")
}

fn explain_json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["explain", "--json"];
    all.extend_from_slice(args);
    let out = socialgate(&all);
    assert!(out.status.success(), "explain {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("explain --json prints one JSON object")
}

#[test]
fn shipped_config_passes_check() {
    let out = socialgate(&["check"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with("config/socialgate.toml: ok ("), "{stdout}");
}

#[test]
fn explain_json_has_the_spec_shape() {
    let out = socialgate(&[
        "explain",
        "--json",
        "--url",
        "https://www.facebook.com/",
        "--client-ip",
        "10.20.4.17",
        "--at",
        "2026-11-26T09:15:00Z",
    ]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim_end(),
        r#"{"department":"sales","department_source":"network","user":null,"client_ip":"10.20.4.17","host":"www.facebook.com","service":"facebook","rule":"services.facebook","schedule":null,"action":"log"}"#
    );
}

/// (url, user, client ip, at) -> (department, source, service, rule, schedule, action)
#[test]
fn explain_decisions_on_the_shipped_config() {
    type Case<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a str, [&'a str; 6]);
    // Thursday 2026-11-26: 10:00 UTC is 11:00 in Oslo (work hours, not lunch);
    // 11:00 UTC is 12:00 (lunch); 18:00 UTC is 19:00 (after hours).
    let cases: &[Case] = &[
        // Nobody matched: the default department blocks Facebook and X outright.
        (
            "http://www.facebook.com/",
            None,
            None,
            "2026-11-26T10:00:00Z",
            ["default", "default", "facebook", "services.facebook", "", "block"],
        ),
        (
            "x.com:443",
            None,
            None,
            "2026-11-26T10:00:00Z",
            ["default", "default", "twitter", "services.twitter", "", "block"],
        ),
        // Label boundary: notfacebook.com is no Facebook.
        (
            "http://notfacebook.com/",
            None,
            None,
            "2026-11-26T10:00:00Z",
            ["default", "default", "", "default", "", "allow"],
        ),
        // Case, trailing dot, IDN and userinfo do not dodge the catalogue.
        (
            "http://WWW.FaceBook.COM./",
            None,
            None,
            "2026-11-26T10:00:00Z",
            ["default", "default", "facebook", "services.facebook", "", "block"],
        ),
        (
            "http://x@m.facebook.com/",
            None,
            None,
            "2026-11-26T10:00:00Z",
            ["default", "default", "facebook", "services.facebook", "", "block"],
        ),
        // YouTube by schedule: blocked in work hours, logged after.
        (
            "https://www.youtube.com/",
            None,
            None,
            "2026-11-26T10:00:00Z",
            ["default", "default", "youtube", "services.youtube", "work-hours", "block"],
        ),
        (
            "https://www.youtube.com/",
            None,
            None,
            "2026-11-26T18:00:00Z",
            ["default", "default", "youtube", "services.youtube", "work-hours", "log"],
        ),
        // Exact host on shared Google infrastructure, but not the whole domain.
        (
            "youtubei.googleapis.com:443",
            None,
            None,
            "2026-11-26T10:00:00Z",
            ["default", "default", "youtube", "services.youtube", "work-hours", "block"],
        ),
        (
            "storage.googleapis.com:443",
            None,
            None,
            "2026-11-26T10:00:00Z",
            ["default", "default", "", "default", "", "allow"],
        ),
        // Sales by network: social media logged, YouTube allowed at lunch.
        (
            "https://www.linkedin.com/",
            None,
            Some("10.20.4.17"),
            "2026-11-26T10:00:00Z",
            ["sales", "network", "linkedin", "services.linkedin", "", "log"],
        ),
        (
            "https://www.youtube.com/",
            None,
            Some("10.20.4.17"),
            "2026-11-26T11:00:00Z",
            ["sales", "network", "youtube", "services.youtube", "lunch", "allow"],
        ),
        // Management's /24 is more specific than sales' /16.
        (
            "https://www.facebook.com/",
            None,
            Some("10.20.200.9"),
            "2026-11-26T10:00:00Z",
            ["management", "network", "facebook", "services.facebook", "", "allow"],
        ),
        // A listed user beats the network.
        (
            "https://www.facebook.com/",
            Some("frank"),
            Some("10.10.1.1"),
            "2026-11-26T10:00:00Z",
            ["management", "user", "facebook", "services.facebook", "", "allow"],
        ),
        // Inherited entries name their department.
        (
            "https://www.tiktok.com/",
            None,
            Some("10.30.1.1"),
            "2026-11-26T10:00:00Z",
            ["consultants", "network", "tiktok", "default:services.tiktok", "", "block"],
        ),
        // Rules come before services.
        (
            "https://player.vimeo.com/",
            None,
            Some("10.40.1.1"),
            "2026-11-26T18:00:00Z",
            ["construction", "network", "", "rules[0]", "", "block"],
        ),
    ];
    for (url, user, ip, at, want) in cases {
        let mut args = vec!["--url", url, "--at", at];
        if let Some(user) = user {
            args.extend(["--user", user]);
        }
        if let Some(ip) = ip {
            args.extend(["--client-ip", ip]);
        }
        let v = explain_json(&args);
        let s = |k: &str| v[k].as_str().unwrap_or("").to_owned();
        let got = [s("department"), s("department_source"), s("service"), s("rule"), s("schedule"), s("action")];
        assert_eq!(got, want.map(str::to_owned), "explain {url} user={user:?} ip={ip:?} at={at}");
    }
}

#[test]
fn explain_text_says_why() {
    let out = socialgate(&[
        "explain",
        "--url",
        "https://www.youtube.com/",
        "--client-ip",
        "10.20.4.17",
        "--at",
        "2026-11-26T10:00:00Z",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("department  sales (client address 10.20.4.17 is in one of its `networks`)"), "{text}");
    assert!(text.contains("rule        services.youtube at config/departments/sales.toml:"), "{text}");
    assert!(text.contains("schedule    lunch (not in force)"), "{text}");
    assert!(text.contains("changes at  2026-11-26 11:30:00 CET (Thu)"), "{text}");
    assert!(text.contains("action      log"), "{text}");
}

#[test]
fn explain_usage_and_input_errors_have_their_exit_codes() {
    assert_eq!(socialgate(&["explain"]).status.code(), Some(2), "missing --url is a usage error");
    assert_eq!(socialgate(&["explain", "--url", "http://x/", "--client-ip", "nope"]).status.code(), Some(2));
    // Values that do not parse are usage errors too, like a bad
    // `--client-ip` or `report --since`.
    let out = socialgate(&["explain", "--url", "ftp://x/"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unsupported URL scheme") && stderr.contains("--url"), "{stderr}");
    let out = socialgate(&["explain", "--url", "http://x/", "--at", "yesterday"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid value 'yesterday' for '--at") && stderr.contains("RFC 3339"), "{stderr}");
    let out =
        socialgate(&["--config", "tests/fixtures/check/invalid/socialgate.toml", "explain", "--url", "http://x/"]);
    assert_eq!(out.status.code(), Some(1), "a config error");
    assert!(String::from_utf8_lossy(&out.stderr).contains(": error: "));
}

#[test]
fn help_and_version_exit_zero() {
    for args in [&["--help"][..], &["--version"], &["explain", "--help"], &["report", "--help"]] {
        let out = socialgate(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(!out.stdout.is_empty());
    }
}

#[test]
fn ca_init_creates_a_ca_that_intercept_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("tls");
    let out = socialgate(&["ca", "init", "--out", out_dir.to_str().unwrap(), "--days", "30"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cert = std::fs::read_to_string(out_dir.join("ca.pem")).unwrap();
    let key = std::fs::read_to_string(out_dir.join("ca.key")).unwrap();
    socialgate::tls::mint::Minter::new(&cert, &key, 4).expect("the new CA signs verifiable leaves");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out_dir.join("ca.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the CA key is private");
    }
    let again = socialgate(&["ca", "init", "--out", out_dir.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1), "never overwrites an existing CA");
}

#[test]
fn ca_init_prints_a_snippet_that_check_accepts_as_pasted() {
    // Run where an admin would: above `config/`, with the default --out.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir_all(config.join("departments")).unwrap();
    std::fs::write(config.join("socialgate.toml"), "[proxy]\nlisten = [\"127.0.0.1:3128\"]\n").unwrap();
    std::fs::write(config.join("departments/default.toml"), "").unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_socialgate")).current_dir(dir.path()).args(args).output().unwrap()
    };
    let out = run(&["ca", "init"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let snippet = stdout.split("\n\n").find(|part| part.starts_with("[intercept]")).expect("a snippet");
    assert!(snippet.contains("ca_cert = \"tls/ca.pem\""), "{stdout}");
    let mut main = std::fs::read_to_string(config.join("socialgate.toml")).unwrap();
    main.push_str(snippet);
    std::fs::write(config.join("socialgate.toml"), main).unwrap();
    let check = run(&["check"]);
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}

/// `--out` defaults to `tls/` next to the `--config` file, like every path in
/// the config: run from anywhere (`socialgate --config
/// /etc/socialgate/socialgate.toml ca init`), it wrote `./config/tls/` under
/// the working directory instead, and printed an absolute path to it.
#[test]
fn ca_init_without_out_writes_next_to_the_config_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc/socialgate");
    std::fs::create_dir_all(etc.join("departments")).unwrap();
    std::fs::write(etc.join("socialgate.toml"), "[proxy]\nlisten = [\"127.0.0.1:3128\"]\n").unwrap();
    std::fs::write(etc.join("departments/default.toml"), "").unwrap();
    let elsewhere = dir.path().join("home");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let config = etc.join("socialgate.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_socialgate"))
        .current_dir(&elsewhere)
        .args(["--config", config.to_str().unwrap(), "ca", "init", "--days", "30"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(etc.join("tls/ca.pem").is_file() && etc.join("tls/ca.key").is_file());
    assert!(!elsewhere.join("config").exists(), "nothing written under the working directory");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("ca_cert = \"tls/ca.pem\"\nca_key = \"tls/ca.key\""), "{stdout}");
}
