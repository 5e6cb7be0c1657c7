//! `socialgate check` run as a real binary on the fixture trees under
//! `tests/fixtures/check/`: exit code, the one-line summary on success, and
//! the exact diagnostics on failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

use socialgate::policy::catalogue::BUILTIN;

fn check(config: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_socialgate"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_LOG", "off")
        .args(["--config", config, "check"])
        .output()
        .expect("run socialgate")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("utf-8 output")
}

#[test]
fn valid_config_prints_a_one_line_summary() {
    let out = check("tests/fixtures/check/valid/socialgate.toml");
    let services = BUILTIN.len() + 2;
    assert_eq!(text(&out.stderr), "");
    assert_eq!(
        text(&out.stdout),
        format!(
            "tests/fixtures/check/valid/socialgate.toml: ok (3 departments, {services} services, 2 schedules, 3 users)\n"
        )
    );
    assert_eq!(out.status.code(), Some(0));
}

const INVALID: &str = "\
tests/fixtures/check/invalid/socialgate.toml:2:10: error: empty `listen` in `[proxy]`, expected at least one `ip:port`
  = hint: e.g. `listen = [\"127.0.0.1:3128\"]`
tests/fixtures/check/invalid/socialgate.toml:3:1: error: unknown key `conect_ports` in `[proxy]`
  = hint: did you mean `connect_ports`?
tests/fixtures/check/invalid/socialgate.toml:8:22: error: default department `staff` does not exist
  = hint: create `departments/staff.toml`
tests/fixtures/check/invalid/socialgate.toml:11:16: error: unknown day `tues`, expected one of `mon`, `tue`, `wed`, `thu`, `fri`, `sat`, `sun`
  = hint: did you mean `tue`?
tests/fixtures/check/invalid/socialgate.toml:16:18: error: invalid duration `30 seconds`, expected a number followed by `ms`, `s`, `m` or `h`
  = hint: e.g. `30s`, `500ms`, `5m`, `1h`
tests/fixtures/check/invalid/services.toml:5:12: error: `video.example` is in the `domains` of both `video` (tests/fixtures/check/invalid/services.toml:2:12) and `clips`
tests/fixtures/check/invalid/departments/broken.toml:1:17: error: invalid TOML: invalid basic string, expected `\"`
tests/fixtures/check/invalid/departments/default.toml:1:11: error: unknown action `blok`, expected one of `allow`, `block`, `log`
  = hint: did you mean `block`?
tests/fixtures/check/invalid/departments/marketing.toml:1:12: error: `inherits` cycle: `marketing` -> `sales` -> `marketing`
tests/fixtures/check/invalid/departments/marketing.toml:3:13: error: invalid network `10.20.0.0/33`, expected an address or a CIDR such as `10.20.0.0/16`
tests/fixtures/check/invalid/departments/marketing.toml:6:38: error: unknown schedule `work-hour`
  = hint: did you mean `work-hours`?
tests/fixtures/check/invalid/departments/sales.toml:2:10: error: user `alice` is in two departments: `marketing` (tests/fixtures/check/invalid/departments/marketing.toml:2:17) and `sales`
tests/fixtures/check/invalid/departments/sales.toml:5:1: error: unknown service `vidoe`
  = hint: did you mean `video`?
tests/fixtures/check/invalid/users.htpasswd:1:7: error: unsupported password hash for user `alice`, only bcrypt (`$2a$`, `$2b$`, `$2y$`) is accepted
  = hint: use `htpasswd -B`
tests/fixtures/check/invalid/socialgate.toml: 14 errors
";

#[test]
fn invalid_config_reports_every_problem_of_every_file() {
    let out = check("tests/fixtures/check/invalid/socialgate.toml");
    assert_eq!(text(&out.stdout), "");
    assert_eq!(text(&out.stderr), INVALID);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn missing_config_is_one_error() {
    let out = check("tests/fixtures/check/nowhere/socialgate.toml");
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        text(&out.stderr),
        "tests/fixtures/check/nowhere/socialgate.toml:0:0: error: cannot read config file: file not found\n\
         tests/fixtures/check/nowhere/socialgate.toml: 1 error\n"
    );
    assert_eq!(out.status.code(), Some(1));
}

/// A config folder with an `[intercept]` CA made by `ca init`, whose key
/// file `edit` may rewrite; `check` run on it.
fn check_intercept(edit: impl FnOnce(&std::path::Path)) -> Output {
    let dir = config_folder(
        "[proxy]\nlisten = [\"127.0.0.1:3128\"]\n[intercept]\nca_cert = \"tls/ca.pem\"\nca_key = \"tls/ca.key\"\n",
    );
    let init = Command::new(env!("CARGO_BIN_EXE_socialgate"))
        .args(["ca", "init", "--out", dir.path().join("tls").to_str().unwrap(), "--days", "30"])
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", text(&init.stderr));
    edit(&dir.path().join("tls/ca.key"));
    check_in(dir.path())
}

/// Regression: the CA key in SEC1 form (`BEGIN EC PRIVATE KEY`, what
/// `openssl ecparam -genkey` writes) passed `check`, but the proxy cannot
/// sign with it: at run time `[intercept]` was silently off (plain 403s).
#[test]
fn an_intercept_ca_key_the_proxy_cannot_sign_with_fails_check_at_ca_key() {
    assert_eq!(check_intercept(|_| {}).status.code(), Some(0), "a CA from `ca init` passes");
    let out = check_intercept(|key| {
        use base64::Engine;
        use rustls_pki_types::pem::PemObject;
        let pem = std::fs::read(key).unwrap();
        let pkcs8 = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(&pem).unwrap();
        // A P-256 PKCS#8 key wraps the SEC1 `ECPrivateKey` (0x30 0x6b ...,
        // 109 bytes) as its last field: the same key, in SEC1 form.
        let der = pkcs8.secret_pkcs8_der();
        let sec1 = &der[der.len() - 109..];
        assert_eq!(sec1[..2], [0x30, 0x6b]);
        let b64 = base64::engine::general_purpose::STANDARD.encode(sec1);
        std::fs::write(key, format!("-----BEGIN EC PRIVATE KEY-----\n{b64}\n-----END EC PRIVATE KEY-----\n")).unwrap();
    });
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("socialgate.toml:5:10: error: cannot sign with the CA key `tls/ca.key`: "), "{stderr}");
    assert!(stderr.contains("hint: the key must be PKCS#8"), "{stderr}");
    assert_eq!(out.status.code(), Some(1));
}

/// Regression: a CA restricted with name constraints to the blocked
/// services' domains (docs/deploy.md, section 5) failed `check` with
/// `NameConstraintViolation`: the probe leaf that proves the key belongs to
/// the certificate was minted for a name outside the permitted subtrees.
#[test]
fn a_name_constrained_intercept_ca_passes_check() {
    let out = check_intercept(|key_path| {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name.push(rcgen::DnType::CommonName, "Constrained block-page CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        params.name_constraints = Some(rcgen::NameConstraints {
            permitted_subtrees: vec![
                rcgen::GeneralSubtree::DnsName("facebook.com".into()),
                rcgen::GeneralSubtree::DnsName("x.com".into()),
            ],
            excluded_subtrees: vec![],
        });
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(key_path, key.serialize_pem()).unwrap();
        std::fs::write(key_path.with_file_name("ca.pem"), cert.pem()).unwrap();
    });
    assert_eq!(text(&out.stderr), "");
    assert_eq!(out.status.code(), Some(0));
}

/// Regression: an IPv6 network in `[pac] direct` passed `check` in silence
/// but is not in the PAC file (its `isInNet` matches IPv4 addresses only).
/// `check` names it as a warning on stderr and still passes.
#[test]
fn an_ipv6_network_in_pac_direct_is_a_warning_and_check_still_passes() {
    let out = check_main(
        "[proxy]\nlisten = [\"127.0.0.1:3128\"]\n[pac]\ndirect = [\"*.corp.example\", \"10.0.0.0/8\", \"fd00::/8\"]\n",
    );
    assert_eq!(
        text(&out.stderr),
        "socialgate.toml:4:43: warning: IPv6 network `fd00::/8` in `direct` is left out of the PAC file: \
         PAC `isInNet` only matches IPv4 addresses\n  \
         = hint: list its hosts by name instead, e.g. `*.corp.example`\n\
         socialgate.toml: 1 warning\n"
    );
    assert!(text(&out.stdout).starts_with("socialgate.toml: ok ("), "{}", text(&out.stdout));
    assert_eq!(out.status.code(), Some(0));
}

/// Warnings come with the errors, in place, rather than only once the
/// errors are fixed; the count names both.
#[test]
fn warnings_are_reported_with_errors() {
    let out = check_main("[proxy]\nlisten = []\n[pac]\ndirect = [\"fd00::/8\"]\n");
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.starts_with("  = hint")).collect();
    assert_eq!(
        lines,
        [
            "socialgate.toml:2:10: error: empty `listen` in `[proxy]`, expected at least one `ip:port`",
            "socialgate.toml:4:11: warning: IPv6 network `fd00::/8` in `direct` is left out of the PAC file: \
             PAC `isInNet` only matches IPv4 addresses",
            "socialgate.toml: 1 error, 1 warning",
        ],
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(1));
}

/// `check` on a folder holding `main` as `socialgate.toml` and an empty
/// default department.
fn check_main(main: &str) -> Output {
    check_in(config_folder(main).path())
}

/// A config folder: `main` as `socialgate.toml`, an empty default department.
fn config_folder(main: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("departments")).unwrap();
    std::fs::write(dir.path().join("departments/default.toml"), "").unwrap();
    std::fs::write(dir.path().join("socialgate.toml"), main).unwrap();
    dir
}

/// `socialgate check` run in `dir` on its `socialgate.toml`.
fn check_in(dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_socialgate"))
        .current_dir(dir)
        .env("RUST_LOG", "off")
        .args(["--config", "socialgate.toml", "check"])
        .output()
        .unwrap()
}
