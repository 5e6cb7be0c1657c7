//! `socialgate run`: start the proxy and serve until SIGTERM/SIGINT; SIGHUP
//! or a change to any config file reloads the configuration; SIGUSR1
//! reopens the access log (logrotate).
//!
//! Changes are seen through inotify on the config folders (editors that
//! rename over a file and Kubernetes ConfigMap symlink swaps included) and,
//! as a backstop for filesystems without inotify, by polling the files'
//! identity, size and times twice a second. Either way a change is applied
//! only once the files have been quiet for a moment, so a file still being
//! written (truncated, half-written) is not what gets loaded, and an event
//! that comes in while a reload runs reloads again afterwards: the last
//! write always wins. A config file found empty that was not empty in the
//! running config is taken for a file caught between truncate and write,
//! and not applied.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{CmdResult, Failure, load_config};

/// Loads the config, starts the proxy, waits for a signal, shuts down
/// gracefully (in-flight work gets `shutdown_grace`, the access log is
/// flushed), exits 0.
pub fn run(path: &Path) -> CmdResult {
    let config = load_config(path)?;
    if config.log.pseudonymize_users {
        // Created (if missing) before the files are fingerprinted, so that
        // its creation is not taken for an edit and reloaded.
        let key = &config.log.pseudonym_key_file;
        crate::access_log::pseudonym::Pseudonymizer::load_or_create(key)
            .map_err(|err| anyhow::anyhow!("pseudonym key file {}: {err}", key.display()))?;
    }
    raise_open_file_limit();
    check_open_file_limit(config.limits.max_connections);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        // Handlers first, so a signal sent as soon as the address is logged
        // is never the default (fatal) action.
        let signals = Signals::install()?;
        let files = Fingerprint::of(config.files.clone());
        let client_congestion = config.proxy.client_congestion_control.clone();
        let running = crate::proxy::start(config).await.map_err(|err| Failure::Other(err.into()))?;
        for addr in running.listen_addrs() {
            tracing::info!(%addr, "proxy listening");
        }
        for addr in running.tls_addrs() {
            tracing::info!(%addr, "proxy listening (TLS)");
        }
        if let Some(addr) = running.admin_addr() {
            tracing::info!(%addr, "admin endpoint listening");
        }
        match (client_congestion, crate::proxy::congestion::system_default()) {
            (Some(name), _) => {
                tracing::info!("client connections use TCP congestion control `{name}` (client_congestion_control)")
            }
            (None, Some(name)) => {
                tracing::info!("client connections use TCP congestion control `{name}` (the system's default)")
            }
            (None, None) => {}
        }
        signals.wait(&running, path, files).await;
        tracing::info!("shutting down");
        running.shutdown();
        running.wait().await.map_err(|err| Failure::Other(err.into()))?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Raises the soft limit on open files to the hard one, as Squid and Go's
/// runtime do: a shell starts programs at 1,024, which a proxy spends in
/// about 500 client connections.
fn raise_open_file_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    if current.is_none() || current == maximum {
        return;
    }
    match setrlimit(Resource::Nofile, Rlimit { current: maximum, maximum }) {
        Ok(()) => {
            let to = maximum.map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
            tracing::info!(from = current, %to, "open-file limit raised to the hard limit");
        }
        Err(err) => tracing::warn!(%err, limit = current, "cannot raise the open-file limit"),
    }
}

/// Descriptors the proxy holds besides its clients' (listeners, access
/// log, config watches, runtime).
const OPEN_FILES_BASE: u64 = 64;

/// Warns when the open-file limit cannot hold `max_connections` clients: each holds
/// its own socket and one to the origin (a tunnel moving bytes right now
/// also holds a pipe per direction, two more descriptors each). Past the
/// limit new connections wait in the listen backlog until others close.
fn check_open_file_limit(max_connections: usize) {
    let Some(limit) = rustix::process::getrlimit(rustix::process::Resource::Nofile).current else { return };
    let needed = (max_connections as u64).saturating_mul(2).saturating_add(OPEN_FILES_BASE);
    if limit < needed {
        tracing::warn!(
            limit,
            max_connections,
            needed,
            "the open-file limit is below what [limits] max_connections needs: past about {} clients, new \
             connections wait until others close. Raise it (LimitNOFILE= in the systemd unit, ulimit -Hn as \
             root) or lower max_connections",
            limit.saturating_sub(OPEN_FILES_BASE) / 2
        );
    }
}

#[cfg(unix)]
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
        })
    }

    /// Returns on SIGTERM or SIGINT; reloads on SIGHUP or when a config
    /// file changes.
    async fn wait(mut self, running: &crate::proxy::Running, path: &Path, mut files: Fingerprint) {
        let mut tick = tokio::time::interval(WATCH_EVERY);
        let mut watch = Watch::new(&files.files);
        // The poll saw a change at its last tick: it reloads at the first
        // tick that sees none (the writer is done).
        let mut settling = false;
        loop {
            tokio::select! {
                _ = self.term.recv() => return,
                _ = self.int.recv() => return,
                _ = self.hup.recv() => {
                    settling = false;
                    reload(running, path, &mut files, &mut watch).await;
                }
                _ = self.usr1.recv() => {
                    tracing::info!("SIGUSR1: reopening the access log");
                    running.reopen_log().await;
                }
                Some(changed) = watch.next_change() => {
                    // Not gated on the fingerprint: a file new to the config
                    // (`services.toml` created, a department fixed after a
                    // failed reload) is not in it, and two writes in the
                    // same clock tick with the same size look alike.
                    tracing::info!(file = %changed.display(), "a config file changed");
                    settling = false;
                    reload(running, path, &mut files, &mut watch).await;
                }
                _ = tick.tick() => {
                    if files.changed().await {
                        settling = true;
                    } else if settling {
                        settling = false;
                        tracing::info!("a config file changed");
                        reload(running, path, &mut files, &mut watch).await;
                    }
                }
            }
        }
    }
}

/// How often config files are checked for changes: a change is applied
/// at the first check that sees it settled, within about two of these
/// (the contract is 2 seconds).
const WATCH_EVERY: Duration = Duration::from_millis(500);

/// Loads the config again and swaps it in (listeners and TLS certificate
/// included) if it is valid and its new addresses can be bound; otherwise
/// the running one stays and the problems are logged as `check` prints them.
async fn reload(running: &crate::proxy::Running, path: &Path, files: &mut Fingerprint, watch: &mut Watch) {
    // What the watcher saw so far is read now; what it sees from here on
    // reloads again.
    watch.pending = None;
    let path = path.to_owned();
    let watched = files.files.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        // Stat before reading: a file written while the config is read then
        // differs from the fingerprint, and is reloaded again.
        let before = stat_all(&watched);
        let loaded = crate::config::load(&path);
        let empty = loaded.as_ref().map(|config| empty_files(&config.files)).unwrap_or_default();
        (before, loaded, empty)
    });
    match loaded.await {
        Ok((before, Ok(config), empty)) => {
            // Watched even if it is not applied: fixing a file reloads.
            *files = files.after_load(config.files.clone(), before);
            watch.update(&config.files);
            let mut truncated: Vec<&PathBuf> = empty.difference(&files.empty).collect();
            if !truncated.is_empty() {
                // Empty is valid (every key has a default: no auth, allow
                // everything, listen on 127.0.0.1:3128), and is what a
                // file being rewritten looks like between truncate and write.
                truncated.sort();
                running.reload_failed();
                let lines: Vec<String> = truncated
                    .iter()
                    .map(|file| {
                        format!(
                            "{}:0:0: error: file is empty, probably still being written; not reloaded until it \
                             changes (a file meant to be empty can hold a `#` comment)",
                            file.display()
                        )
                    })
                    .collect();
                tracing::error!("reload failed, keeping the running configuration:\n{}", lines.join("\n"));
                return;
            }
            let max_connections = config.limits.max_connections;
            let warnings = config.warnings.to_string();
            match running.reload(config) {
                Ok(()) => {
                    files.empty = empty;
                    check_open_file_limit(max_connections);
                    tracing::info!("configuration reloaded");
                    if !warnings.is_empty() {
                        tracing::warn!("the reloaded configuration has warnings:\n{warnings}");
                    }
                }
                Err(err) => tracing::error!("reload failed, keeping the running configuration: {err}"),
            }
        }
        Ok((before, Err(diags), _)) => {
            // Not reloaded again until something changes again.
            files.seen = before;
            // A replaced config folder is watched again, so fixing it reloads.
            watch.update(&files.files);
            running.reload_failed();
            tracing::error!("reload failed, keeping the running configuration:\n{diags}");
        }
        Err(err) => tracing::error!(%err, "reload task failed"),
    }
}

/// The config files (not folders) that hold zero bytes.
fn empty_files(files: &[PathBuf]) -> HashSet<PathBuf> {
    files
        .iter()
        .filter(|file| std::fs::metadata(file).is_ok_and(|meta| meta.is_file() && meta.len() == 0))
        .cloned()
        .collect()
}

/// inotify on the config folders, when the platform offers it.
struct Watch {
    inner: Option<(crate::reload::ConfigWatcher, tokio::sync::mpsc::Receiver<PathBuf>)>,
    /// A change seen by a wait that another `select!` branch cut short.
    pending: Option<PathBuf>,
}

impl Watch {
    fn new(files: &[PathBuf]) -> Watch {
        match crate::reload::ConfigWatcher::new(files) {
            Ok(watch) => Watch { inner: Some(watch), pending: None },
            Err(err) => {
                tracing::warn!(%err, "cannot watch the config folders; polling instead");
                Watch { inner: None, pending: None }
            }
        }
    }

    fn update(&mut self, files: &[PathBuf]) {
        if let Some((watcher, _)) = &mut self.inner {
            watcher.update(files);
        }
    }

    /// The next change after a burst settles; never resolves without a watcher.
    async fn next_change(&mut self) -> Option<PathBuf> {
        match &mut self.inner {
            Some((_, rx)) => crate::reload::next_change(rx, &mut self.pending, DEBOUNCE).await,
            None => std::future::pending().await,
        }
    }
}

/// Quiet time that ends a burst of file events (an editor's save, a
/// ConfigMap swap) before reloading once.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// The identity, size and times of every config file, and of every entry
/// of every config folder, to notice a change by polling (portable, and
/// immune to editors that replace files instead of writing them).
struct Fingerprint {
    files: Vec<PathBuf>,
    seen: Vec<Option<Stamp>>,
    /// The files that were empty when the running config was loaded: a
    /// reload that finds another one empty is not applied.
    empty: HashSet<PathBuf>,
}

impl Fingerprint {
    fn of(files: Vec<PathBuf>) -> Fingerprint {
        let seen = stat_all(&files);
        let empty = empty_files(&files);
        Fingerprint { files, seen, empty }
    }

    /// The fingerprint of `files`, a config just loaded, given `before`,
    /// the stats of `self.files` taken before it was read: files read then
    /// keep those stats (so a write during the load is seen as a change),
    /// files new to the config are stat'ed now.
    fn after_load(&self, files: Vec<PathBuf>, before: Vec<Option<Stamp>>) -> Fingerprint {
        let seen = files
            .iter()
            .map(|file| match self.files.iter().position(|old| old == file) {
                Some(at) => before.get(at).copied().flatten(),
                None => stat_all(std::slice::from_ref(file)).pop().flatten(),
            })
            .collect();
        Fingerprint { files, seen, empty: self.empty.clone() }
    }

    /// True if anything changed since the last call (or creation).
    async fn changed(&mut self) -> bool {
        let files = self.files.clone();
        let Ok(now) = tokio::task::spawn_blocking(move || stat_all(&files)).await else { return false };
        if now == self.seen {
            return false;
        }
        self.seen = now;
        true
    }
}

/// A hash of what `stat` says about a file (modification and change time,
/// size, inode), or about a folder's `.toml` entries: a file replaced by one with the
/// same size and modification time (`cp -p`, `rsync -t`) still differs,
/// and so does a department added, removed, renamed or edited even if the
/// last load never read it.
type Stamp = u64;

fn stat_all(files: &[PathBuf]) -> Vec<Option<Stamp>> {
    use std::hash::{Hash, Hasher};
    files
        .iter()
        .map(|file| {
            let meta = std::fs::metadata(file).ok()?;
            let mut hasher = std::hash::DefaultHasher::new();
            if !meta.is_dir() {
                stamp(&meta).hash(&mut hasher);
            } else {
                // What the loader reads, not the folder itself: an editor's
                // swap file coming and going is no change.
                let mut entries: Vec<_> = std::fs::read_dir(file)
                    .ok()?
                    .filter_map(Result::ok)
                    .filter(|entry| {
                        let name = entry.file_name();
                        let name = name.to_string_lossy();
                        name.ends_with(".toml") && !name.starts_with('.')
                    })
                    .map(|entry| (entry.file_name(), std::fs::metadata(entry.path()).ok().map(|meta| stamp(&meta))))
                    .collect();
                entries.sort();
                entries.hash(&mut hasher);
            }
            Some(hasher.finish())
        })
        .collect()
}

#[cfg(unix)]
fn stamp(meta: &std::fs::Metadata) -> (Option<SystemTime>, u64, i64, i64, u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.modified().ok(), meta.len(), meta.ctime(), meta.ctime_nsec(), meta.dev(), meta.ino())
}

#[cfg(not(unix))]
fn stamp(meta: &std::fs::Metadata) -> (Option<SystemTime>, u64) {
    (meta.modified().ok(), meta.len())
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals)
    }

    async fn wait(self, running: &crate::proxy::Running, path: &Path, mut files: Fingerprint) {
        let mut tick = tokio::time::interval(WATCH_EVERY);
        let mut watch = Watch::new(&files.files);
        let mut settling = false;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return,
                _ = tick.tick() => {
                    if files.changed().await {
                        settling = true;
                    } else if settling {
                        settling = false;
                        reload(running, path, &mut files, &mut watch).await;
                    }
                }
            }
        }
    }
}
