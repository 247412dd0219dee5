//! Fuzzes the change-request parser: it must never panic, whatever the issue body, nor must
//! judging what it read.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let request = shipgate::domain::request::parse(s);
        let _ = request.problems(&["production", "staging"], |env| (env == "production").then_some(5));
        let _ = request.pr_numbers("acme/shop");
        let _ = request.pr_problems("acme/shop");
    }
});
