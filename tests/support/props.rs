//! For property tests that run the real proxy: its runtime, whose threads
//! are named so a panic on one is counted (tokio would only end the task),
//! and a runner configured for cases that are round trips through it.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

use proptest::test_runner::{Config, TestRunner};
use tokio::runtime::Runtime;

/// The name of the proxy runtime's threads: a panic on one is a bug.
const PROXY_THREADS: &str = "socialgate-under-test";

static PANICS: AtomicUsize = AtomicUsize::new(0);
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

/// A runtime for the proxy under test (two workers), with panics on its
/// threads counted for [`panicked`].
pub fn proxy_runtime() -> Runtime {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name().is_some_and(|name| name.starts_with(PROXY_THREADS)) {
                PANICS.fetch_add(1, Ordering::SeqCst);
                *LAST_PANIC.lock().unwrap() = Some(info.to_string());
            }
            previous(info);
        }));
    });
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(PROXY_THREADS)
        .enable_all()
        .build()
        .unwrap()
}

/// `Err` naming the last panic if the proxy under test has panicked.
pub fn no_panic() -> Result<(), String> {
    if PANICS.load(Ordering::SeqCst) > 0 {
        return Err(format!("the proxy panicked: {:?}", LAST_PANIC.lock().unwrap()));
    }
    Ok(())
}

/// Runs a property of `cases` cases; each case is a few round trips
/// through the proxy, so shrinking is kept short (`max_shrink_iters`).
pub fn property(cases: u32, max_shrink_iters: u32, run: impl FnOnce(&mut TestRunner)) {
    let mut runner =
        TestRunner::new(Config { cases, failure_persistence: None, max_shrink_iters, ..Config::default() });
    run(&mut runner);
}
