//! Fuzz target: the ClientHello peeker never panics on arbitrary bytes or
//! any prefix of them, and once it answers it does not go back to
//! `NeedMore` for a longer buffer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use socialgate::tls::peek::{Peek, peek};

fuzz_target!(|data: &[u8]| {
    let mut answered = false;
    for end in 0..=data.len().min(2048) {
        let verdict = peek(&data[..end]);
        if answered {
            assert_ne!(verdict, Peek::NeedMore, "answered, then needed more at {end}");
        }
        answered = verdict != Peek::NeedMore;
    }
    let _ = peek(data);
});
