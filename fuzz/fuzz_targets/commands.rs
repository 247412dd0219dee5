//! Fuzzes the comment command parser: it must never panic, whatever the comment.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = shipgate::domain::commands::parse(s);
    }
});
