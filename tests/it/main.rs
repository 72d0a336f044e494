//! pinetboot's integration tests: one test crate (as ripgrep, jj and uv have), one module per
//! area, one [`support`] module. Tests that need root or a tool say so in their first line
//! ([`support::tools::require_root`], [`support::tools::require_tool`]) and fail loudly without
//! it; every other test runs as a normal user.
//!
//! Snapshots (`tests/it/snapshots/`) are insta's: review a change with `cargo insta review`,
//! or accept all with `INSTA_UPDATE=always cargo test`; with `CI=true` a mismatch fails.

// Tests and benches report on the terminal directly.
#![allow(clippy::print_stdout, clippy::print_stderr)]
mod support;

mod attacks;
mod bounded_reads;
mod client_roots;
mod config_errors;
mod config_roundtrip;
mod datapath;
mod doctor;
mod downloads;
mod eeprom;
mod eeprom_cli;
mod engine;
mod examples;
mod fences;
mod fleet;
mod gc;
mod image;
mod image_store;
mod netlab;
mod packaging;
mod real_boot;
mod real_os;
mod schema;
mod shared;
mod shared_boot;
mod status;
mod tree;
mod users;
mod validation_tools;
