//! The config examples in the documentation are real: the shipped `config/`
//! passes `socialgate check`, every ```toml block in README.md, docs/*.md and
//! deploy/**/*.md parses as TOML, and every block that is a config file or a
//! piece of one is checked by the real binary in a temporary folder:
//! - a main file (has `[proxy] listen`): on its own, with a minimal default
//!   department;
//! - sections of the main file: merged into the shipped `socialgate.toml`;
//! - a department file: next to the shipped departments (replacing the one
//!   with the same networks or users, as the examples describe it);
//! - a `services.toml`: on its own, with a minimal main file.
//!
//! A block preceded by `<!-- docs-test: parse-only ... -->` only has to parse
//! (e.g. `[intercept]`, which names key files the reader creates).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use toml::{Table, Value};

const MAIN_SECTIONS: &[&str] =
    &["proxy", "identity", "schedules", "log", "admin", "pac", "intercept", "block_page", "limits"];
const DEPARTMENT_KEYS: &[&str] = &["description", "inherits", "networks", "users", "default", "services", "rules"];
const SERVICE_KEYS: &[&str] = &["domains", "hosts", "replace"];
const PARSE_ONLY: &str = "<!-- docs-test: parse-only";

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// One fenced TOML block: where it is, its text (fence indentation removed),
/// and whether it is marked parse-only.
struct Block {
    at: String,
    text: String,
    parse_only: bool,
}

fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![repo("README.md")];
    for dir in ["docs", "deploy"] {
        collect_md(&repo(dir), &mut files);
    }
    files.sort();
    files
}

fn collect_md(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_md(&path, out);
        } else if path.extension().is_some_and(|x| x == "md") {
            out.push(path);
        }
    }
}

fn blocks(path: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(path).unwrap();
    let rel = path.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap().display().to_string();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let trimmed = lines[i].trim_start();
        let indent = lines[i].len() - trimmed.len();
        if trimmed != "```toml" {
            i += 1;
            continue;
        }
        let parse_only =
            lines[..i].iter().rev().find(|l| !l.trim().is_empty()).is_some_and(|l| l.trim().starts_with(PARSE_ONLY));
        let start = i + 1;
        let mut end = start;
        while end < lines.len() && lines[end].trim() != "```" {
            end += 1;
        }
        assert!(end < lines.len(), "{rel}:{}: unterminated ```toml block", i + 1);
        let body: String =
            lines[start..end].iter().map(|l| format!("{}\n", l.get(indent..).unwrap_or(l.trim_start()))).collect();
        out.push(Block { at: format!("{rel}:{}", i + 1), text: body, parse_only });
        i = end + 1;
    }
    out
}

fn all_blocks() -> Vec<Block> {
    markdown_files().iter().flat_map(|p| blocks(p)).collect()
}

/// `socialgate check` on `main`; Err with its output when it fails.
fn check(main: &Path) -> Result<(), String> {
    let out = Command::new(env!("CARGO_BIN_EXE_socialgate"))
        .env("RUST_LOG", "off")
        .arg("--config")
        .arg(main)
        .arg("check")
        .output()
        .unwrap();
    if out.status.code() == Some(0) && out.stderr.is_empty() {
        Ok(())
    } else {
        Err(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
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

/// Recursively overlays `patch` on `base`.
fn merge(base: &mut Table, patch: &Table) {
    for (key, value) in patch {
        match (base.get_mut(key), value) {
            (Some(Value::Table(b)), Value::Table(p)) => merge(b, p),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array).into_iter().flatten().filter_map(|s| s.as_str().map(str::to_owned)).collect()
}

const MINIMAL_MAIN: &str = "[proxy]\nlisten = [\"127.0.0.1:3128\"]\n";
const MINIMAL_DEPARTMENT: &str = "default = \"allow\"\n";

/// What kind of file a block is, and its check result.
fn check_block(table: &Table, text: &str) -> (&'static str, Result<(), String>) {
    let dir = tempfile::tempdir().unwrap();
    // The repository's layout: the shipped config writes `../logs/access.log`,
    // and `check` wants the folder of the access log to exist.
    let root = &dir.path().join("config");
    std::fs::create_dir_all(root).unwrap();
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    let main = root.join("socialgate.toml");
    let keys: Vec<&str> = table.keys().map(String::as_str).collect();
    let is_table = |v: &Value| v.as_table().is_some_and(|t| t.keys().all(|k| SERVICE_KEYS.contains(&k.as_str())));

    if table.get("proxy").and_then(Value::as_table).is_some_and(|p| p.contains_key("listen")) {
        // A complete main file: on its own, shipped side files available.
        for side in ["services.toml", "hosts", "users.htpasswd"] {
            std::fs::copy(repo(&format!("config/{side}")), root.join(side)).unwrap();
        }
        let default = table
            .get("identity")
            .and_then(|i| i.get("default_department"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        std::fs::create_dir(root.join("departments")).unwrap();
        std::fs::write(root.join(format!("departments/{default}.toml")), MINIMAL_DEPARTMENT).unwrap();
        std::fs::write(&main, text).unwrap();
        ("main file", check(&main))
    } else if keys.iter().all(|k| MAIN_SECTIONS.contains(k)) {
        copy_tree(&repo("config"), root);
        let mut shipped: Table = std::fs::read_to_string(&main).unwrap().parse().unwrap();
        merge(&mut shipped, table);
        std::fs::write(&main, toml::to_string(&shipped).unwrap()).unwrap();
        ("main-file sections", check(&main))
    } else if keys.iter().all(|k| DEPARTMENT_KEYS.contains(k)) {
        copy_tree(&repo("config"), root);
        let (nets, users) = (strings(table.get("networks")), strings(table.get("users")));
        let mut name = "docs-example".to_owned();
        for entry in std::fs::read_dir(root.join("departments")).unwrap() {
            let path = entry.unwrap().path();
            let dept: Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
            let shares = strings(dept.get("networks")).iter().any(|n| nets.contains(n))
                || strings(dept.get("users")).iter().any(|u| users.contains(u));
            if shares {
                name = path.file_stem().unwrap().to_string_lossy().into_owned();
            }
        }
        std::fs::write(root.join(format!("departments/{name}.toml")), text).unwrap();
        ("department file", check(&main))
    } else if table.values().all(is_table) {
        std::fs::write(&main, MINIMAL_MAIN).unwrap();
        std::fs::create_dir(root.join("departments")).unwrap();
        std::fs::write(root.join("departments/default.toml"), MINIMAL_DEPARTMENT).unwrap();
        std::fs::write(root.join("services.toml"), text).unwrap();
        ("services file", check(&main))
    } else {
        ("fragment", Ok(()))
    }
}

#[test]
fn shipped_config_passes_check() {
    let out = Command::new(env!("CARGO_BIN_EXE_socialgate"))
        .env("RUST_LOG", "off")
        .args(["--config", "config/socialgate.toml", "check"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("config/socialgate.toml: ok ("));
}

#[test]
fn every_toml_block_in_the_docs_parses_and_checks() {
    let blocks = all_blocks();
    assert!(blocks.len() >= 10, "found only {} ```toml blocks", blocks.len());
    let mut failures = String::new();
    let mut checked = 0;
    for block in &blocks {
        let table: Table = match block.text.parse() {
            Ok(t) => t,
            Err(err) => {
                writeln!(failures, "{}: not valid TOML: {err}", block.at).unwrap();
                continue;
            }
        };
        if block.parse_only {
            continue;
        }
        let (kind, result) = check_block(&table, &block.text);
        if kind != "fragment" {
            checked += 1;
        }
        if let Err(out) = result {
            writeln!(failures, "{}: {kind} fails `socialgate check`:\n{out}", block.at).unwrap();
        }
    }
    assert!(failures.is_empty(), "{failures}");
    // README and policies.md hold department, services and schedule examples.
    assert!(checked >= 6, "only {checked} blocks were checked as config files");
}

#[test]
fn a_broken_example_would_be_caught() {
    let table: Table = "[services]\nfacebook = \"blok\"\n".parse().unwrap();
    let (kind, result) = check_block(&table, "[services]\nfacebook = \"blok\"\n");
    assert_eq!(kind, "department file");
    assert!(result.unwrap_err().contains("unknown action `blok`"));
    let main = "[proxy]\nlisten = [\"127.0.0.1:3128\"]\nconect_ports = [443]\n";
    let (kind, result) = check_block(&main.parse().unwrap(), main);
    assert_eq!(kind, "main file");
    assert!(result.unwrap_err().contains("did you mean `connect_ports`?"));
}
