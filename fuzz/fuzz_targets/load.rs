//! Fuzzes the config loader (parse with budget, locator, validation) on arbitrary UTF-8.
//!
//! Run on stable: `cargo fuzz run -s none load -- -max_total_time=60`.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The loader takes text; non-UTF-8 files are rejected before parsing (`load::read`).
    if let Ok(text) = std::str::from_utf8(data) {
        // Any outcome is fine; panics, hangs and memory blow-ups are bugs.
        let _ = pinetboot::config::load_str(Path::new("fuzz.yaml"), text);
    }
});
