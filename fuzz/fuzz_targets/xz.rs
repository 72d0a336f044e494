//! Fuzzes the xz container reader (stream headers and footers, indexes, block headers) and the
//! block-parallel decoder on arbitrary bytes: image files are untrusted input.
//!
//! Run on stable: `cargo fuzz run -s none xz fuzz/corpus/xz fuzz/seeds/xz -- -max_total_time=60` (seeds: see
//! README.md, small multi-block files made by `xz`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pinetboot::image::fuzz_xz(data);
});
