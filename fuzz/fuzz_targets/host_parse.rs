//! Fuzz target: `Host::parse` on arbitrary text never panics, and a parsed
//! host is lowercase ASCII without a trailing dot and parses to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use socialgate::policy::Host;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(host) = Host::parse(&text) {
        let name = host.as_str();
        assert!(name.is_ascii() && !name.ends_with('.') && name.to_ascii_lowercase() == name, "{name:?}");
        assert_eq!(Host::parse(name).ok(), Some(host.clone()), "not idempotent: {text:?}");
    }
});
