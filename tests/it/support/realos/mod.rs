//! Shared helpers for tests that boot a real operating system: the Debian arm64 Raspberry Pi
//! fixture ([`fixture`]), the aarch64 VM driver ([`vm`]) and the userspace NFS server
//! ([`nfs`]). Its scripts stay at `tests/realos/`
//! (CI and the README run them by that path; the fixture's cache key is a hash of its inputs).
//!
//! Everything here fails loudly (panics with the reason) when root or a tool is missing: the
//! tests never skip.

pub mod guest;
pub mod nfs;
pub mod vm;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The fixture's build script (it caches its result; a second caller waits on its lock).
pub const BUILD_SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/realos/build-debian-raspi.sh"
);

/// Runs [`BUILD_SCRIPT`] (minutes the first time on a machine, instant afterwards) and returns
/// its cache folder: `rootfs/`, `debian-raspi.img.xz`, `vmlinuz`, `initrd.img`, `info.env`.
/// Panics with the script's stderr when it fails.
pub fn fixture() -> PathBuf {
    let out = Command::new("bash")
        .arg(BUILD_SCRIPT)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run bash {BUILD_SCRIPT}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{BUILD_SCRIPT} failed ({}):\n{stderr}",
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    assert!(
        dir.join("rootfs/etc").is_dir() && dir.join("info.env").is_file(),
        "{BUILD_SCRIPT} printed {dir:?}, which holds no rootfs/ and info.env:\n{stderr}"
    );
    dir
}

/// `KEY=value` lines of the fixture's `info.env`.
pub fn fixture_info(fixture: &Path) -> BTreeMap<String, String> {
    let text = fs::read_to_string(fixture.join("info.env"))
        .unwrap_or_else(|e| panic!("read {}/info.env: {e}", fixture.display()));
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Runs `program args…` to completion in the C locale (the lab's helper: every test crate that
/// includes this module includes `tests/netsupport` as `support` too).
pub use crate::support::netlab::run_cmd;

/// [`run_cmd`], panicking on failure.
pub fn must(program: &str, args: &[&str]) -> String {
    run_cmd(program, args).unwrap_or_else(|e| panic!("{e}"))
}

pub use crate::support::tools::tail;
