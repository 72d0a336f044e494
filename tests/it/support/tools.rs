//! Preconditions and small process helpers shared by every test: the one root check, the one
//! "is the tool installed" check (both fail loudly with the reason, never skip), the binary
//! under test, the shared fixtures folder, polling, and running a command to success.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Panics unless the test runs as root, saying what needs it (never a silent skip).
#[track_caller]
pub fn require_root(what: &str) {
    let uid = rustix::process::geteuid();
    assert!(
        uid.is_root(),
        "needs root: {what} (euid is {}); run the tests as root (CI does)",
        uid.as_raw()
    );
}

/// Panics unless `tool` is on PATH (or in /usr/sbin, /sbin), naming the Debian package that
/// provides it (never a silent skip).
#[track_caller]
pub fn require_tool(tool: &str, package: &str) {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    let in_sbin = ["/usr/sbin", "/sbin"]
        .iter()
        .any(|d| Path::new(d).join(tool).is_file());
    assert!(
        on_path || in_sbin,
        "missing tool `{tool}`: install it with `apt-get install -y {package}`"
    );
}

/// The pinetboot binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_pinetboot")
}

/// The project's shared folder (`$PINETBOOT_SHARED`, else `CARGO_MANIFEST_DIR/../shared`).
pub fn shared_dir() -> PathBuf {
    let dir = std::env::var_os("PINETBOOT_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    assert!(
        dir.join("fixtures/raspi-firmware/start4.elf").is_file(),
        "the shared fixtures are missing: {} has no fixtures/raspi-firmware/start4.elf (set PINETBOOT_SHARED)",
        dir.display()
    );
    dir
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// Runs a command, panicking with its output on failure; returns its stdout.
#[track_caller]
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    expect_success(&out, format_args!("{cmd:?}"))
}

/// Panics with `what`, the exit status and both outputs unless the finished command `out`
/// succeeded; returns its stdout.
#[track_caller]
pub fn expect_success(out: &Output, what: impl fmt::Display) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The permission bits (`0o7777`) of what `path` names, symlinks followed.
#[track_caller]
pub fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    let md = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    md.permissions().mode() & 0o7777
}

/// The last `n` lines of `text` (for failure messages).
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs test `name` (its full path, `module::test`) alone in a fresh process of this test
/// binary, and returns true only inside that process: for measurements the shared test
/// process would distort (a child's peak RSS, as `wait4` reports it, includes the peak of
/// the process that spawned it). Outside, it asserts the inner run passed and returns false.
#[track_caller]
pub fn in_own_process(name: &str) -> bool {
    const VAR: &str = "PINETBOOT_TEST_ALONE";
    if std::env::var_os(VAR).is_some_and(|v| v == name) {
        return true;
    }
    let out = Command::new(std::env::current_exe().expect("the test binary"))
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(VAR, name)
        .output()
        .expect("running the test binary again");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("1 passed"),
        "{name} in its own process:\n{text}"
    );
    false
}

/// A fresh ed25519 key pair at `path` (and `path.pub`) with `comment`, by ssh-keygen; returns
/// the public key line.
pub fn ssh_keygen(path: &Path, comment: &str) -> String {
    require_tool("ssh-keygen", "openssh-client");
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path));
    let public = path.with_file_name(format!(
        "{}.pub",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::read_to_string(public)
        .expect("ssh-keygen writes the public key")
        .trim()
        .to_owned()
}
