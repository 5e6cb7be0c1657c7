//! Watching the config files for changes, so edits reload without SIGHUP.
//!
//! Folders are watched, not files: editors save by writing a temporary file
//! and renaming it over the original, and Kubernetes ConfigMap mounts swap a
//! `..data` symlink, and both replace the inode a file watch would hold.
//! Events are filtered to the names that matter (the files the config read,
//! any `.toml`, and `..`-prefixed ConfigMap entries) so that an access log
//! written beside the config never triggers a reload.
//!
//! A watch holds a folder's inode, not its name: when a folder is replaced
//! (a deploy tool swapping the whole config folder, a ConfigMap's
//! `departments` symlink now leading into a new `..data`), [`ConfigWatcher::update`]
//! notices the name leads somewhere else and watches it again.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// A watch on the folders holding the config files. Dropping it stops the
/// watch.
pub struct ConfigWatcher {
    watcher: RecommendedWatcher,
    /// Each watched folder and what its name led to when the watch was
    /// set (`None`: the watch could not be set).
    dirs: HashMap<PathBuf, Option<FolderId>>,
    names: Arc<RwLock<HashSet<OsString>>>,
}

impl std::fmt::Debug for ConfigWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigWatcher").field("dirs", &self.dirs).finish_non_exhaustive()
    }
}

impl ConfigWatcher {
    /// Watches the folders of `files` (files and folders the config read).
    /// Each relevant change sends the changed path on the returned channel.
    pub fn new(files: &[PathBuf]) -> notify::Result<(ConfigWatcher, mpsc::Receiver<PathBuf>)> {
        let (tx, rx) = mpsc::channel(64);
        let names: Arc<RwLock<HashSet<OsString>>> = Arc::default();
        let filter = Arc::clone(&names);
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let Ok(event) = res else { return };
            if matches!(event.kind, EventKind::Access(_)) {
                return;
            }
            let Ok(names) = filter.read() else { return };
            for path in event.paths {
                if is_relevant(&path, &names) {
                    // A full channel already holds a pending change: dropping this one loses nothing.
                    let _ = tx.try_send(path);
                    break;
                }
            }
        })?;
        let mut this = ConfigWatcher { watcher, dirs: HashMap::new(), names };
        this.update(files);
        Ok((this, rx))
    }

    /// Re-targets the watch after a reload (the set of files may change).
    pub fn update(&mut self, files: &[PathBuf]) {
        let mut dirs = HashSet::new();
        let mut names = HashSet::new();
        for file in files {
            if file.is_dir() {
                dirs.insert(file.clone());
            } else if let Some(parent) = file.parent() {
                let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
                dirs.insert(parent.to_path_buf());
            }
            if let Some(name) = file.file_name() {
                names.insert(name.to_os_string());
            }
        }
        self.dirs.retain(|dir, _| {
            let keep = dirs.contains(dir);
            if !keep {
                let _ = self.watcher.unwatch(dir);
            }
            keep
        });
        for dir in dirs {
            let now = folder_id(&dir);
            let watched = self.dirs.get(&dir);
            if watched.is_some_and(|then| then.is_some() && *then == now) {
                continue;
            }
            if watched.is_some() {
                // Replaced (or never watched): the old watch, if the folder
                // still exists elsewhere, would report changes to it.
                let _ = self.watcher.unwatch(&dir);
            }
            let id = match self.watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => now,
                Err(err) => {
                    tracing::warn!(dir = %dir.display(), %err, "cannot watch config folder; its changes are noticed by polling");
                    None
                }
            };
            self.dirs.insert(dir, id);
        }
        if let Ok(mut guard) = self.names.write() {
            *guard = names;
        }
    }
}

/// What a folder's name leads to (symlinks followed): device and inode.
type FolderId = (u64, u64);

#[cfg(unix)]
fn folder_id(dir: &Path) -> Option<FolderId> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).ok().map(|meta| (meta.dev(), meta.ino()))
}

/// Without inodes, a folder is watched again only if its watch failed.
#[cfg(not(unix))]
fn folder_id(dir: &Path) -> Option<FolderId> {
    dir.is_dir().then_some((0, 0))
}

fn is_relevant(path: &Path, names: &HashSet<OsString>) -> bool {
    let Some(name) = path.file_name() else { return false };
    if names.contains(name) {
        return true;
    }
    let name = name.to_string_lossy();
    name.starts_with("..") || (name.ends_with(".toml") && !name.starts_with('.'))
}

/// Waits for the next change and then for `quiet` without further changes,
/// so a burst of events (an editor's save, a ConfigMap swap) reloads once.
/// Returns `None` when the watcher is gone.
///
/// Cancel-safe: a change received by a call that was dropped (another
/// `select!` branch won) waits in `pending` for the next call, which
/// starts the quiet time again.
pub async fn next_change(
    rx: &mut mpsc::Receiver<PathBuf>,
    pending: &mut Option<PathBuf>,
    quiet: Duration,
) -> Option<PathBuf> {
    if pending.is_none() {
        *pending = Some(rx.recv().await?);
    }
    loop {
        match tokio::time::timeout(quiet, rx.recv()).await {
            Ok(Some(path)) => *pending = Some(path),
            Ok(None) | Err(_) => return pending.take(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    async fn change(rx: &mut mpsc::Receiver<PathBuf>) -> PathBuf {
        tokio::time::timeout(Duration::from_secs(5), next_change(rx, &mut None, Duration::from_millis(100)))
            .await
            .expect("no change seen within 5 s")
            .expect("watcher gone")
    }

    fn setup() -> (tempfile::TempDir, Vec<PathBuf>) {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("socialgate.toml");
        std::fs::write(&main, "[proxy]\n").unwrap();
        let depts = dir.path().join("departments");
        std::fs::create_dir(&depts).unwrap();
        std::fs::write(depts.join("default.toml"), "default = \"allow\"\n").unwrap();
        (dir, vec![main, depts.clone(), depts.join("default.toml")])
    }

    #[tokio::test]
    async fn edit_in_place_is_seen_and_the_access_log_is_not() {
        let (dir, files) = setup();
        let (_w, mut rx) = ConfigWatcher::new(&files).unwrap();
        std::fs::write(dir.path().join("access.log"), "{}\n").unwrap();
        std::fs::write(&files[0], "[proxy]\n# edited\n").unwrap();
        // The first event must already be the config file: the log write sent none.
        let first = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
        assert_eq!(first.file_name().unwrap(), "socialgate.toml");
    }

    #[tokio::test]
    async fn rename_over_is_seen() {
        let (dir, files) = setup();
        let (_w, mut rx) = ConfigWatcher::new(&files).unwrap();
        let tmp = dir.path().join("departments").join(".default.toml.swp");
        std::fs::write(&tmp, "default = \"block\"\n").unwrap();
        std::fs::rename(&tmp, &files[2]).unwrap();
        assert_eq!(change(&mut rx).await.file_name().unwrap(), "default.toml");
    }

    #[tokio::test]
    async fn new_department_file_is_seen() {
        let (dir, files) = setup();
        let (_w, mut rx) = ConfigWatcher::new(&files).unwrap();
        std::fs::write(dir.path().join("departments").join("sales.toml"), "").unwrap();
        assert_eq!(change(&mut rx).await.file_name().unwrap(), "sales.toml");
    }

    #[tokio::test]
    async fn a_change_received_by_a_dropped_wait_is_not_lost() {
        let (dir, files) = setup();
        let (_w, mut rx) = ConfigWatcher::new(&files).unwrap();
        std::fs::write(dir.path().join("departments").join("sales.toml"), "").unwrap();
        let mut pending = None;
        // Waits cut short (here by a timeout) after the change arrived.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while pending.is_none() {
            assert!(tokio::time::Instant::now() < deadline, "no change seen within 5 s");
            let cut = tokio::time::timeout(
                Duration::from_millis(50),
                next_change(&mut rx, &mut pending, Duration::from_secs(3600)),
            );
            assert!(cut.await.is_err());
        }
        let seen = tokio::time::timeout(
            Duration::from_secs(5),
            next_change(&mut rx, &mut pending, Duration::from_millis(100)),
        );
        assert_eq!(seen.await.unwrap().unwrap().file_name().unwrap(), "sales.toml");
    }

    #[tokio::test]
    async fn a_replaced_folder_is_watched_again_after_update() {
        let (dir, files) = setup();
        let (mut w, mut rx) = ConfigWatcher::new(&files).unwrap();
        let depts = dir.path().join("departments");
        std::fs::rename(&depts, dir.path().join("departments.old")).unwrap();
        std::fs::create_dir(&depts).unwrap();
        std::fs::write(depts.join("default.toml"), "default = \"block\"\n").unwrap();
        change(&mut rx).await;
        w.update(&files);
        std::fs::write(depts.join("default.toml"), "default = \"allow\"\n").unwrap();
        let seen = change(&mut rx).await;
        assert_eq!(seen, depts.join("default.toml"));
    }

    #[tokio::test]
    async fn configmap_symlink_swap_is_seen() {
        // Kubernetes layout: socialgate.toml -> ..data/socialgate.toml, ..data -> ..v1
        let dir = tempfile::tempdir().unwrap();
        let v1 = dir.path().join("..v1");
        std::fs::create_dir(&v1).unwrap();
        std::fs::write(v1.join("socialgate.toml"), "[proxy]\n").unwrap();
        std::os::unix::fs::symlink("..v1", dir.path().join("..data")).unwrap();
        let main = dir.path().join("socialgate.toml");
        std::os::unix::fs::symlink("..data/socialgate.toml", &main).unwrap();
        let (_w, mut rx) = ConfigWatcher::new(std::slice::from_ref(&main)).unwrap();
        let v2 = dir.path().join("..v2");
        std::fs::create_dir(&v2).unwrap();
        std::fs::write(v2.join("socialgate.toml"), "[proxy]\n# v2\n").unwrap();
        std::os::unix::fs::symlink("..v2", dir.path().join("..data_tmp")).unwrap();
        std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).unwrap();
        let seen = change(&mut rx).await;
        assert!(seen.file_name().unwrap().to_string_lossy().starts_with(".."), "{seen:?}");
        assert_eq!(std::fs::read_to_string(&main).unwrap(), "[proxy]\n# v2\n");
    }
}
