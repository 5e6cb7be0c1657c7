//! How config changes reach the running binary without SIGHUP: the ways
//! admins and tools really change files (a file created where there was
//! none, a department fixed after a failed reload, a burst of rewrites, a
//! Kubernetes ConfigMap's `..data` swap, the whole folder replaced), each
//! applied within the 2 seconds the contract allows, counted in `/metrics`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::binary::{Binary, addr_after};
use support::{Client, Company, EchoOrigin, bounded};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a change may take to be applied here: the contract's 2 s, plus
/// slack for a busy test machine.
const APPLIED_WITHIN: Duration = Duration::from_secs(4);

/// The standard company with an admin endpoint (for `/metrics`).
fn company() -> Company {
    Company::new().extra("[admin]\nlisten = \"127.0.0.1:0\"\n")
}

/// The status of `GET url` through `proxy` from `source`.
async fn status(proxy: SocketAddr, source: &str, url: &str) -> u16 {
    Client::connect(proxy, source).await.get(url, &[]).await.status
}

/// Polls until `GET url` from `source` gets `want`; panics with `what`
/// after [`APPLIED_WITHIN`] of `since`.
async fn until_status(proxy: SocketAddr, source: &str, url: &str, want: u16, since: Instant, what: &str) {
    loop {
        let got = status(proxy, source, url).await;
        if got == want {
            return;
        }
        assert!(since.elapsed() < APPLIED_WITHIN, "{what}: still {got} after {:?}", since.elapsed());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Reload attempts that succeeded and failed, and the config generation,
/// as the admin endpoint's `/metrics` says.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Reloads {
    success: u64,
    failure: u64,
    generation: u64,
}

impl Reloads {
    async fn of(admin: SocketAddr) -> Reloads {
        let mut stream = tokio::net::TcpStream::connect(admin).await.unwrap();
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut text = String::new();
        tokio::time::timeout(support::WAIT, stream.read_to_string(&mut text)).await.unwrap().unwrap();
        let value = |series: &str| -> u64 {
            let line = text.lines().find(|l| l.starts_with(series)).unwrap_or_else(|| panic!("no {series} in {text}"));
            line[series.len()..].trim().parse().unwrap()
        };
        Reloads {
            success: value(r#"socialgate_reloads_total{result="success"}"#),
            failure: value(r#"socialgate_reloads_total{result="failure"}"#),
            generation: value("socialgate_config_generation"),
        }
    }

    fn attempts(self) -> u64 {
        self.success + self.failure
    }
}

async fn admin_of(proxy: &Binary) -> SocketAddr {
    addr_after(&proxy.logged("admin endpoint listening").await, "admin endpoint listening ")
}

/// Polls `/metrics` until `done` holds; panics with `what` after
/// [`APPLIED_WITHIN`] of `since`.
async fn until_reloads(admin: SocketAddr, since: Instant, what: &str, done: impl Fn(Reloads) -> bool) -> Reloads {
    loop {
        let now = Reloads::of(admin).await;
        if done(now) {
            return now;
        }
        assert!(since.elapsed() < APPLIED_WITHIN, "{what}: {now:?} after {:?}", since.elapsed());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Regression: `services.toml` was watched only if it existed at the last
/// load, so creating one was never applied (the change was seen but
/// judged "nothing changed").
#[tokio::test]
async fn a_services_file_created_where_there_was_none_is_applied_and_deleting_it_restores_the_defaults() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let company = company();
        let proxy = Binary::start(&company.write(&[443])).await;
        let admin = admin_of(&proxy).await;
        let url = format!("http://example.test:{}/", origin.port());
        assert_eq!(status(proxy.addr, "127.0.0.1", &url).await, 200);

        // The default department blocks facebook; example.test becomes part of it.
        let services = company.dir().join("services.toml");
        let created = Instant::now();
        std::fs::write(&services, "[facebook]\ndomains = [\"example.test\"]\n").unwrap();
        until_status(proxy.addr, "127.0.0.1", &url, 403, created, "a new services.toml").await;

        let deleted = Instant::now();
        std::fs::remove_file(&services).unwrap();
        until_status(proxy.addr, "127.0.0.1", &url, 200, deleted, "services.toml deleted").await;
        let reloads = Reloads::of(admin).await;
        assert_eq!(reloads.failure, 0, "{reloads:?}");
        assert_eq!(reloads.generation, 1 + reloads.success, "{reloads:?}");
        assert!(proxy.terminate().await.success());
    })
    .await;
}

/// Regression: a new department file that failed validation was not among
/// the watched files, and fixing it in place (same inode, so its folder
/// did not change) was never applied.
#[tokio::test]
async fn a_new_department_fixed_in_place_after_a_failed_reload_is_applied() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let company = company();
        let proxy = Binary::start(&company.write(&[443])).await;
        let admin = admin_of(&proxy).await;
        let url = format!("http://example.test:{}/", origin.port());
        assert_eq!(status(proxy.addr, "127.0.0.4", &url).await, 200);

        let marketing = company.dir().join("departments").join("marketing.toml");
        let added = Instant::now();
        let mark = proxy.mark();
        std::fs::write(&marketing, "networks = [\"127.0.0.4/32\"]\ndefault = \"blok\"\n").unwrap();
        let failed = until_reloads(admin, added, "the invalid department", |r| r.failure == 1).await;
        assert_eq!((failed.success, failed.generation), (0, 1), "a failed reload applies nothing: {failed:?}");
        // Logged as `check` prints it.
        proxy.logged_since(mark, "marketing.toml:2:").await;
        assert_eq!(status(proxy.addr, "127.0.0.4", &url).await, 200, "the old config keeps serving");

        let fixed = Instant::now();
        std::fs::write(&marketing, "networks = [\"127.0.0.4/32\"]\ndefault = \"block\"\n").unwrap();
        until_status(proxy.addr, "127.0.0.4", &url, 403, fixed, "the fixed department").await;
        let reloads = Reloads::of(admin).await;
        assert_eq!(reloads.generation, 1 + reloads.success, "{reloads:?}");
        assert!(proxy.terminate().await.success());
    })
    .await;
}

/// A department file with a `[[rules]]` entry for example.test taking
/// `action` (`allow` and `block` have the same length, so every version
/// has the same size).
fn default_department(action: &str) -> String {
    format!(
        "default = \"allow\"\n[services]\nfacebook = \"block\"\n[[rules]]\nhosts = [\"example.test\"]\naction = \"{action}\"\n"
    )
}

/// Regression: the once-a-second poll reloaded as soon as it saw a change,
/// in the middle of a burst of writes (a truncated or half-written file),
/// however the watcher debounced. 100 rewrites in place, 10 ms apart:
/// nothing is reloaded while they land, then the last one is applied after
/// at most a couple of reloads.
#[tokio::test]
async fn a_burst_of_rewrites_is_not_reloaded_midway_and_the_last_write_wins() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let company = company().department("default", &default_department("allow"));
        let proxy = Binary::start(&company.write(&[443])).await;
        let admin = admin_of(&proxy).await;
        let url = format!("http://example.test:{}/", origin.port());
        assert_eq!(status(proxy.addr, "127.0.0.1", &url).await, 200);
        let before = Reloads::of(admin).await;

        let file = company.dir().join("departments").join("default.toml");
        let longest_pause = tokio::task::spawn_blocking(move || {
            let mut longest = Duration::ZERO;
            let mut last = Instant::now();
            for i in 0..100 {
                // Truncate, then write: a reload in between reads an empty file.
                std::fs::write(&file, default_department(if i % 2 == 1 { "block" } else { "allow" })).unwrap();
                longest = longest.max(last.elapsed());
                last = Instant::now();
                std::thread::sleep(Duration::from_millis(10));
            }
            longest
        })
        .await
        .unwrap();
        let ended = Instant::now();
        let during = Reloads::of(admin).await;
        // A writer that stalled (a loaded machine) may legitimately be
        // taken as done; otherwise nothing may be reloaded mid-burst.
        if longest_pause < Duration::from_millis(150) {
            assert_eq!(during.attempts(), before.attempts(), "reloaded during the burst: {before:?} -> {during:?}");
        }

        until_status(proxy.addr, "127.0.0.1", &url, 403, ended, "the last write").await;
        let after = Reloads::of(admin).await;
        assert!(after.attempts() - before.attempts() <= 3, "too many reloads for one burst: {before:?} -> {after:?}");
        assert_eq!(after.generation, 1 + after.success, "{after:?}");
        assert!(proxy.terminate().await.success());
    })
    .await;
}

/// A Kubernetes ConfigMap volume: every top-level entry is a symlink into
/// `..data`, itself a symlink to a timestamped folder; an update writes a
/// new timestamped folder, swaps `..data` to it atomically (rename over)
/// and deletes the old one.
struct ConfigMap {
    root: PathBuf,
    version: u32,
}

impl ConfigMap {
    /// Publishes `source`'s files (the main file, `hosts`,
    /// `users.htpasswd`, `departments/`) as version 1 in `source/mount`.
    fn publish(source: &Path) -> ConfigMap {
        let root = source.join("mount");
        std::fs::create_dir(&root).unwrap();
        let mut map = ConfigMap { root, version: 0 };
        map.update(source, |_| {});
        for name in ["socialgate.toml", "hosts", "users.htpasswd", "departments"] {
            std::os::unix::fs::symlink(format!("..data/{name}"), map.root.join(name)).unwrap();
        }
        map
    }

    /// Publishes the next version: `source`'s files after `edit` (given
    /// the new version's folder), as kubelet's atomic writer does.
    fn update(&mut self, source: &Path, edit: impl FnOnce(&Path)) {
        self.version += 1;
        let name = format!("..2026_12_03_17_00_0{}.000000001", self.version);
        let dir = self.root.join(&name);
        std::fs::create_dir_all(dir.join("departments")).unwrap();
        for file in ["socialgate.toml", "hosts", "users.htpasswd"] {
            std::fs::copy(source.join(file), dir.join(file)).unwrap();
        }
        for entry in std::fs::read_dir(source.join("departments")).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join("departments").join(entry.file_name())).unwrap();
        }
        edit(&dir);
        let old = std::fs::read_link(self.root.join("..data")).ok();
        std::os::unix::fs::symlink(&name, self.root.join("..data_tmp")).unwrap();
        std::fs::rename(self.root.join("..data_tmp"), self.root.join("..data")).unwrap();
        if let Some(old) = old {
            std::fs::remove_dir_all(self.root.join(old)).unwrap();
        }
    }

    fn main_file(&self) -> PathBuf {
        self.root.join("socialgate.toml")
    }
}

/// Two ConfigMap updates in a row, each changing only a department (reached
/// through the `departments` symlink), are both applied; the second comes
/// after the folder the first watch was set on has been deleted.
#[tokio::test]
async fn configmap_updates_swapping_the_data_symlink_are_applied() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let company = company();
        company.write(&[443]);
        let mut map = ConfigMap::publish(company.dir());
        let proxy = Binary::start(&map.main_file()).await;
        let admin = admin_of(&proxy).await;
        let url = format!("http://example.test:{}/", origin.port());
        assert_eq!(status(proxy.addr, "127.0.0.1", &url).await, 200);

        let swapped = Instant::now();
        map.update(company.dir(), |dir| {
            std::fs::write(dir.join("departments").join("default.toml"), default_department("block")).unwrap();
        });
        until_status(proxy.addr, "127.0.0.1", &url, 403, swapped, "the first ConfigMap update").await;

        let swapped = Instant::now();
        map.update(company.dir(), |dir| {
            std::fs::write(dir.join("departments").join("default.toml"), default_department("allow")).unwrap();
        });
        until_status(proxy.addr, "127.0.0.1", &url, 200, swapped, "the second ConfigMap update").await;
        let reloads = Reloads::of(admin).await;
        assert_eq!(reloads.failure, 0, "a ConfigMap swap is atomic: {reloads:?}");
        assert_eq!(reloads.generation, 1 + reloads.success, "{reloads:?}");
        assert!(proxy.terminate().await.success());
    })
    .await;
}

/// Regression: when the config folder was deleted and recreated (a deploy
/// tool replacing it whole), the file watch stayed on the deleted folder
/// for good: later edits were only noticed by the poll. After the
/// replacement is applied, an edit is seen by the watch again (which logs
/// the file it saw).
#[tokio::test]
async fn a_config_folder_deleted_and_recreated_is_watched_again() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let company = company();
        company.write(&[443]);
        let cfg = company.dir().join("cfg");
        let copy_into = |to: &Path, default: &str| {
            std::fs::create_dir_all(to.join("departments")).unwrap();
            for file in ["socialgate.toml", "hosts", "users.htpasswd"] {
                std::fs::copy(company.dir().join(file), to.join(file)).unwrap();
            }
            for entry in std::fs::read_dir(company.dir().join("departments")).unwrap() {
                let entry = entry.unwrap();
                std::fs::copy(entry.path(), to.join("departments").join(entry.file_name())).unwrap();
            }
            std::fs::write(to.join("departments").join("default.toml"), default).unwrap();
        };
        copy_into(&cfg, &default_department("allow"));
        let proxy = Binary::start(&cfg.join("socialgate.toml")).await;
        let url = format!("http://example.test:{}/", origin.port());
        assert_eq!(status(proxy.addr, "127.0.0.1", &url).await, 200);

        let admin = admin_of(&proxy).await;
        // The request's record written first: a write racing the deletion
        // would find its file deleted and make it anew at its path (as the
        // writer does), and the folder would not be empty when removed.
        support::wait_for_records(&cfg.join("access.log"), 1).await;

        let deleted = Instant::now();
        std::fs::remove_dir_all(&cfg).unwrap();
        until_reloads(admin, deleted, "the deleted folder", |r| r.failure >= 1).await;
        assert_eq!(status(proxy.addr, "127.0.0.1", &url).await, 200, "the old config keeps serving");

        let staged = company.dir().join("cfg.new");
        copy_into(&staged, &default_department("block"));
        let mark = proxy.mark();
        let replaced = Instant::now();
        std::fs::rename(&staged, &cfg).unwrap();
        until_status(proxy.addr, "127.0.0.1", &url, 403, replaced, "the recreated folder").await;
        // Everything that reload logged has been read: only later lines count.
        proxy.logged_since(mark, "configuration reloaded").await;

        let mark = proxy.mark();
        let edited = Instant::now();
        let department = cfg.join("departments").join("default.toml");
        std::fs::write(&department, default_department("allow")).unwrap();
        until_status(proxy.addr, "127.0.0.1", &url, 200, edited, "an edit in the new folder").await;
        proxy.logged_since(mark, &format!("a config file changed file={}", department.display())).await;
        assert!(proxy.terminate().await.success());
    })
    .await;
}

/// Regression: an empty file is a valid config (no auth, every host
/// allowed, listening on 127.0.0.1:3128), so a file caught between
/// truncate and write (a slow writer, a stalled copy) was applied: the
/// proxy stopped listening where it did and let everything through. A
/// file that was not empty and now is, is not applied (counted and logged
/// as a failure); its content is, once written.
#[tokio::test]
async fn a_config_file_truncated_to_nothing_is_not_applied_until_written() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let company = company();
        let main = company.write(&[443]);
        let proxy = Binary::start(&main).await;
        let admin = admin_of(&proxy).await;
        let facebook = format!("http://www.facebook.com:{}/", origin.port());
        let example = format!("http://example.test:{}/", origin.port());
        assert_eq!(status(proxy.addr, "127.0.0.1", &facebook).await, 403);

        let written = std::fs::read_to_string(&main).unwrap();
        let truncated = Instant::now();
        let mark = proxy.mark();
        std::fs::File::create(&main).unwrap();
        let failed = until_reloads(admin, truncated, "the truncated main file", |r| r.failure >= 1).await;
        assert_eq!(failed.success, 0, "{failed:?}");
        let logged = proxy.logged_since(mark, "file is empty").await;
        assert!(logged.contains(&format!("{}:0:0: error:", main.display())), "{logged}");
        assert_eq!(status(proxy.addr, "127.0.0.1", &facebook).await, 403, "the old config keeps serving");
        std::fs::write(&main, &written).unwrap();
        until_reloads(admin, truncated, "the rewritten main file", |r| r.success >= 1).await;

        let department = company.dir().join("departments").join("default.toml");
        let truncated = Instant::now();
        let before = Reloads::of(admin).await;
        std::fs::File::create(&department).unwrap();
        until_reloads(admin, truncated, "the truncated department", |r| r.failure > before.failure).await;
        assert_eq!(status(proxy.addr, "127.0.0.1", &facebook).await, 403, "the old department keeps deciding");
        let rewritten = Instant::now();
        std::fs::write(&department, default_department("block")).unwrap();
        until_status(proxy.addr, "127.0.0.1", &example, 403, rewritten, "the rewritten department").await;
        assert_eq!(status(proxy.addr, "127.0.0.1", &facebook).await, 403);
        assert!(proxy.terminate().await.success());
    })
    .await;
}

/// The department the status page says `source` is in.
async fn department_of(proxy: SocketAddr, source: &str) -> String {
    let page = Client::connect(proxy, source).await.get("http://socialgate.status/", &[]).await.body;
    let line = page.lines().find(|l| l.starts_with("<li>Department: ")).unwrap_or_else(|| panic!("{page}"));
    line["<li>Department: ".len()..].split(' ').next().unwrap().to_owned()
}

/// A department file renamed (`mv sales.toml marketing.toml`) renames the
/// department; removed, its network falls back to `default_department`.
#[tokio::test]
async fn a_department_file_renamed_or_removed_is_applied() {
    bounded(async {
        let company = company();
        let proxy = Binary::start(&company.write(&[443])).await;
        assert_eq!(department_of(proxy.addr, "127.0.0.2").await, "sales");

        let departments = company.dir().join("departments");
        let renamed = Instant::now();
        std::fs::rename(departments.join("sales.toml"), departments.join("marketing.toml")).unwrap();
        while department_of(proxy.addr, "127.0.0.2").await != "marketing" {
            assert!(renamed.elapsed() < APPLIED_WITHIN, "the rename was not applied");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }

        let removed = Instant::now();
        std::fs::remove_file(departments.join("marketing.toml")).unwrap();
        while department_of(proxy.addr, "127.0.0.2").await != "default" {
            assert!(removed.elapsed() < APPLIED_WITHIN, "the removal was not applied");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(proxy.terminate().await.success());
    })
    .await;
}

/// The htpasswd and hosts files are config files too: a user removed from
/// htpasswd is refused from then on (even with a credential the proxy had
/// verified and cached), and a name moved in the hosts file goes where it
/// now points.
#[tokio::test]
async fn edits_to_the_htpasswd_and_hosts_files_are_applied() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let company = company().with_basic_auth();
        let proxy = Binary::start(&company.write(&[443])).await;
        let url = format!("http://example.test:{}/", origin.port());
        let alice = support::proxy_auth("alice", support::PASSWORD);
        let as_alice = || async { Client::connect(proxy.addr, "127.0.0.1").await.get(&url, &[&alice]).await.status };
        assert_eq!(as_alice().await, 200);

        let htpasswd = company.dir().join("users.htpasswd");
        let bob_only: String =
            std::fs::read_to_string(&htpasswd).unwrap().lines().filter(|l| l.starts_with("bob:")).collect();
        let edited = Instant::now();
        std::fs::write(&htpasswd, format!("{bob_only}\n")).unwrap();
        while as_alice().await != 407 {
            assert!(edited.elapsed() < APPLIED_WITHIN, "alice is still let in");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }

        let bob = support::proxy_auth("bob", support::PASSWORD);
        let hosts = company.dir().join("hosts");
        let edited = Instant::now();
        // Nothing listens on the origin's port at 127.0.0.9: the new address is used.
        let moved =
            std::fs::read_to_string(&hosts).unwrap().replace("127.0.0.1 example.test", "127.0.0.9 example.test");
        std::fs::write(&hosts, moved).unwrap();
        loop {
            let got = Client::connect(proxy.addr, "127.0.0.1").await.get(&url, &[&bob]).await.status;
            if got == 502 {
                break;
            }
            assert!(edited.elapsed() < APPLIED_WITHIN, "example.test still answers ({got})");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(proxy.terminate().await.success());
    })
    .await;
}

/// SIGHUP reloads whatever changed or not: a valid config raises the
/// generation, an invalid one is counted as a failure and the old config
/// keeps serving.
#[tokio::test]
async fn sighup_reloads_and_counts_each_attempt() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let company = company();
        let proxy = Binary::start(&company.write(&[443])).await;
        let admin = admin_of(&proxy).await;
        let url = format!("http://www.facebook.com:{}/", origin.port());

        let sent = Instant::now();
        proxy.signal("HUP");
        let reloaded = until_reloads(admin, sent, "SIGHUP", |r| r.success == 1).await;
        assert_eq!((reloaded.failure, reloaded.generation), (0, 2), "{reloaded:?}");

        // A broken edit fails once when written, and again on each SIGHUP.
        let department = company.dir().join("departments").join("default.toml");
        let good = std::fs::read_to_string(&department).unwrap();
        assert!(good.contains("\"block\""), "{good}");
        let broken = good.replace("\"block\"", "\"blokk\"");
        std::fs::write(&department, &broken).unwrap();
        let failed = until_reloads(admin, sent, "the broken department", |r| r.failure == 1).await;
        assert_eq!(failed.generation, 2, "{failed:?}");
        assert_eq!(status(proxy.addr, "127.0.0.1", &url).await, 403);
        let sent = Instant::now();
        proxy.signal("HUP");
        let failed = until_reloads(admin, sent, "SIGHUP on a broken config", |r| r.failure == 2).await;
        assert_eq!(failed.generation, 2, "{failed:?}");
        assert_eq!(status(proxy.addr, "127.0.0.1", &url).await, 403, "the old config keeps serving");
        assert!(proxy.terminate().await.success());
    })
    .await;
}

/// `socialgate check` on `main`: exit code and stderr.
fn check(main: &Path) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_socialgate"))
        .env("RUST_LOG", "off")
        .arg("--config")
        .arg(main)
        .arg("check")
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Rewrites the `[log]` lines of the harness's main file.
fn set_log(main: &Path, lines: &str) {
    let text = std::fs::read_to_string(main).unwrap();
    let start = text.find("[log]\n").unwrap() + "[log]\n".len();
    let end = start + text[start..].find("\n[").unwrap();
    std::fs::write(main, format!("{}{lines}{}", &text[..start], &text[end..])).unwrap();
}

/// Regression: a `[log]` that could not be applied (a pseudonym key file
/// that cannot be read, an access log in a folder that does not exist) was
/// logged and skipped while the rest of the new config was applied and the
/// reload counted a success. Now the whole reload fails, as `check` does.
#[tokio::test]
async fn a_log_section_that_cannot_be_applied_fails_the_whole_reload_as_check_does() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let company = company().department("default", &default_department("allow"));
        let main = company.write(&[443]);
        let proxy = Binary::start(&main).await;
        let admin = admin_of(&proxy).await;
        let url = format!("http://example.test:{}/", origin.port());
        assert_eq!(status(proxy.addr, "127.0.0.1", &url).await, 200);
        let dir = company.dir();

        // A key file that cannot be read (a folder, unreadable even as root),
        // with a policy change that must not be applied without it.
        std::fs::create_dir(dir.join("keys.d")).unwrap();
        let mark = proxy.mark();
        let changed = Instant::now();
        set_log(&main, "access_log = \"access.log\"\npseudonymize_users = true\npseudonym_key_file = \"keys.d\"\n");
        std::fs::write(dir.join("departments").join("default.toml"), default_department("block")).unwrap();
        let failed = until_reloads(admin, changed, "the unreadable key file", |r| r.failure >= 1).await;
        assert_eq!((failed.success, failed.generation), (0, 1), "nothing applied: {failed:?}");
        // As `check` prints it: at the key, naming the file.
        let at_key = |text: &str| {
            text.contains("socialgate.toml:")
                && text.contains(":22: error: cannot read pseudonym key file `")
                && text.contains("keys.d`: is a directory")
        };
        let line = proxy.logged_since(mark, "cannot read pseudonym key file").await;
        assert!(at_key(&line), "{line}");
        assert_eq!(status(proxy.addr, "127.0.0.1", &url).await, 200, "the old config keeps serving");
        let (code, stderr) = check(&main);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(at_key(&stderr), "{stderr}");

        // The key file fixed (missing: `check` does not create it, `run`
        // does), but the access log moved to a folder that does not exist.
        let key = dir.join("pseudonym.key");
        let mark = proxy.mark();
        let before = Reloads::of(admin).await;
        let changed = Instant::now();
        set_log(&main, "access_log = \"gone/access.log\"\npseudonymize_users = true\n");
        until_reloads(admin, changed, "the access log folder", |r| r.failure > before.failure).await;
        let line = proxy.logged_since(mark, "gone` does not exist").await;
        assert!(line.contains("socialgate.toml:"), "{line}");
        assert_eq!(status(proxy.addr, "127.0.0.1", &url).await, 200, "the old config keeps serving");
        let (code, stderr) = check(&main);
        assert!(code == Some(1) && stderr.contains("gone` does not exist"), "{stderr}");
        assert!(!key.exists(), "neither `check` nor a failed reload creates the key file");

        // All fixed: applied, and the key file created private.
        let changed = Instant::now();
        set_log(&main, "access_log = \"access.log\"\npseudonymize_users = true\n");
        until_status(proxy.addr, "127.0.0.1", &url, 403, changed, "the fixed [log]").await;
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(proxy.terminate().await.success());
    })
    .await;
}

/// Regression: `pseudonym_key_file` was not among the watched files, so a
/// new key (rotated, or copied from the other replicas) was not applied
/// until something else changed.
#[tokio::test]
async fn a_changed_pseudonym_key_file_is_applied_without_sighup() {
    bounded(async {
        let origin = EchoOrigin::start().await;
        let company = company().with_basic_auth().log("pseudonymize_users = true");
        let proxy = Binary::start(&company.write(&[443])).await;
        let admin = admin_of(&proxy).await;
        let url = format!("http://example.test:{}/", origin.port());
        let log = company.dir().join("access.log");
        let key = company.dir().join("pseudonym.key");
        let alice = support::proxy_auth("alice", support::PASSWORD);
        let user_of_last =
            |records: Vec<serde_json::Value>| records.last().unwrap()["user"].as_str().unwrap().to_owned();
        let pseudonym =
            |key: &[u8]| socialgate::access_log::pseudonym::Pseudonymizer::from_key(key.to_vec()).pseudonym("alice");

        let reply = Client::connect(proxy.addr, "127.0.0.1").await.get(&url, &[&alice]).await;
        assert_eq!(reply.status, 200);
        let created = std::fs::read(&key).unwrap();
        assert_eq!(user_of_last(support::wait_for_records(&log, 1).await), pseudonym(&created));

        let changed = Instant::now();
        std::fs::write(&key, b"the key every replica now shares").unwrap();
        let reloads = until_reloads(admin, changed, "the new key", |r| r.success >= 1).await;
        assert_eq!(reloads.failure, 0, "{reloads:?}");
        let reply = Client::connect(proxy.addr, "127.0.0.1").await.get(&url, &[&alice]).await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            user_of_last(support::wait_for_records(&log, 2).await),
            pseudonym(b"the key every replica now shares")
        );
        assert!(proxy.terminate().await.success());
    })
    .await;
}
