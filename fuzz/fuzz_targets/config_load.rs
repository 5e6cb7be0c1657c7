//! Fuzz target: `config::load` on an arbitrary main file (the first part of
//! the input) and department file (after the first NUL byte) never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (main, department) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &b"default = \"allow\"\n"[..]),
    };
    let Ok(dir) = tempfile::tempdir() else { return };
    if std::fs::create_dir_all(dir.path().join("departments")).is_err()
        || std::fs::write(dir.path().join("departments/default.toml"), department).is_err()
    {
        return;
    }
    let path = dir.path().join("socialgate.toml");
    if std::fs::write(&path, main).is_ok() {
        let _ = socialgate::config::load(&path);
    }
});
