//! Shared helpers for the integration tests: root check, the binary, a private mount
//! namespace that keeps apply's bind mounts away from the host, whole-tree snapshots, and the
//! fixture builders in [`fixture`].
#![allow(dead_code)]

pub mod fixture;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

#[allow(unused_imports)] // not every test binary uses every helper
pub use fixture::*;

/// Panics unless the tests run as root (never a silent skip).
pub fn require_root(what: &str) {
    let out = Command::new("id")
        .arg("-u")
        .output()
        .expect("running `id -u`");
    let uid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        uid == "0",
        "needs root: {what} (id -u says {uid:?}); run the tests as root (CI does)"
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

/// A finished command.
#[derive(Debug)]
pub struct Run {
    /// What ran, for messages.
    pub what: String,
    /// Its status.
    pub status: ExitStatus,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl Run {
    fn from_output(what: String, out: Output) -> Self {
        Run {
            what,
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The exit code (`None` when killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Asserts the exit code, showing the output when it differs.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.status.code(),
            Some(code),
            "{} exited with {:?}, expected {code}\n--- stdout\n{}\n--- stderr\n{}",
            self.what,
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Whether the process aborted (SIGABRT, the crash hook).
    pub fn aborted(&self) -> bool {
        self.status.signal() == Some(6) || self.status.code() == Some(134)
    }
}

/// A private mount namespace held open by a `sleep` process: every command run through it
/// sees (and makes) the same mounts; the host's mount table is never touched.
#[derive(Debug)]
pub struct MountNs {
    holder: Child,
}

impl MountNs {
    /// Starts the holder and waits until it is inside its own namespace.
    pub fn new() -> Self {
        require_root("a private mount namespace (unshare -m) for bind mounts");
        let holder = Command::new("unshare")
            .args(["-m", "--propagation", "private", "--", "sleep", "3600"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting `unshare -m --propagation private -- sleep 3600`");
        let ns = MountNs { holder };
        let pid = ns.pid();
        let mine = std::fs::read_link("/proc/self/ns/mnt").expect("reading my mount namespace");
        let start = Instant::now();
        loop {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let theirs = std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
            if comm.trim() == "sleep" && theirs.as_ref().is_some_and(|t| *t != mine) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "unshare did not enter a new mount namespace (comm {comm:?})"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        ns
    }

    /// The holder's pid.
    pub fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// A command that runs `program args…` inside the namespace, under `timeout`.
    pub fn command<S: AsRef<OsStr>>(&self, timeout_s: u32, program: &str, args: &[S]) -> Command {
        let mut c = Command::new("timeout");
        c.arg(format!("{timeout_s}"))
            .args([
                "nsenter",
                "-t",
                &self.pid().to_string(),
                "-m",
                "--",
                program,
            ])
            .args(args)
            .stdin(Stdio::null())
            .env("NO_COLOR", "1")
            .env_remove("PINETBOOT_CRASH_AT")
            .env_remove("PINETBOOT_CONFIG")
            .env_remove("PINETBOOT_LOG");
        c
    }

    /// Runs a command in the namespace to completion.
    pub fn run<S: AsRef<OsStr>>(&self, program: &str, args: &[S]) -> Run {
        let what = format!(
            "{program} {}",
            args.iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let out = self
            .command(120, program, args)
            .output()
            .unwrap_or_else(|e| panic!("running {what}: {e}"));
        Run::from_output(what, out)
    }

    /// Runs a shell script in the namespace; panics unless it succeeds.
    #[track_caller]
    pub fn sh(&self, script: &str) -> String {
        let r = self.run("sh", &["-ec", script]);
        r.expect_code(0);
        r.stdout
    }

    /// The mounts of the namespace (from the holder's mountinfo): (mount ID, mount point).
    pub fn mounts(&self) -> Vec<(u64, String)> {
        let text = std::fs::read_to_string(format!("/proc/{}/mountinfo", self.pid()))
            .expect("reading the holder's mountinfo");
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                Some((f.first()?.parse().ok()?, unescape_mountinfo(f.get(4)?)))
            })
            .collect()
    }

    /// The mounts at or below `dir` (by mount point), as (ID, mount point).
    pub fn mounts_under(&self, dir: &Path) -> Vec<(u64, String)> {
        let prefix = dir.to_string_lossy().into_owned();
        self.mounts()
            .into_iter()
            .filter(|(_, p)| p == &prefix || p.starts_with(&format!("{prefix}/")))
            .collect()
    }

    /// `dev:ino` of a path as seen inside the namespace (following links, like a TFTP server).
    pub fn dev_ino(&self, path: &Path) -> String {
        let r = self.run("stat", &["-L", "-c", "%d:%i", &path.to_string_lossy()]);
        r.expect_code(0);
        r.stdout.trim().to_owned()
    }
}

impl Drop for MountNs {
    fn drop(&mut self) {
        // Exactly the holder we started; its namespace (and every mount in it) goes with it.
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A folder.
    Dir,
    /// A regular file: length and a hash of the content.
    File(u64, u64),
    /// A symlink and its target.
    Symlink(PathBuf),
    /// A fifo.
    Fifo,
    /// A character device and its device number.
    Char(u64),
    /// A block device and its device number.
    Block(u64),
    /// A socket.
    Socket,
}

/// One entry of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// What it is (content hash or link target included).
    pub node: Node,
    /// Permission bits including setuid/setgid/sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time (seconds, nanoseconds).
    pub mtime: (i64, i64),
    /// Device and inode.
    pub dev_ino: (u64, u64),
    /// Link count.
    pub nlink: u64,
}

/// Every entry under a folder, by path relative to it (the folder itself is `""`).
pub type Snapshot = BTreeMap<PathBuf, Entry>;

/// Hash of bytes (stable within a test run).
pub fn hash_bytes(b: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    b.hash(&mut h);
    h.finish()
}

fn entry_of(path: &Path) -> Entry {
    let m = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let ft = m.file_type();
    let node = if ft.is_dir() {
        Node::Dir
    } else if ft.is_symlink() {
        Node::Symlink(std::fs::read_link(path).expect("readlink"))
    } else if ft.is_file() {
        let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Node::File(b.len() as u64, hash_bytes(&b))
    } else if ft.is_fifo() {
        Node::Fifo
    } else if ft.is_char_device() {
        Node::Char(m.rdev())
    } else if ft.is_block_device() {
        Node::Block(m.rdev())
    } else {
        Node::Socket
    };
    Entry {
        node,
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        mtime: (m.mtime(), m.mtime_nsec()),
        dev_ino: (m.dev(), m.ino()),
        nlink: m.nlink(),
    }
}

/// Snapshots `dir` (not following symlinks; the test process's mount namespace, so bind mounts
/// made inside a [`MountNs`] are not seen).
pub fn snapshot(dir: &Path) -> Snapshot {
    let mut out = Snapshot::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let full = if rel.as_os_str().is_empty() {
            dir.to_path_buf()
        } else {
            dir.join(&rel)
        };
        let e = entry_of(&full);
        if e.node == Node::Dir {
            for child in
                std::fs::read_dir(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
            {
                let child = child.expect("read_dir entry");
                stack.push(rel.join(child.file_name()));
            }
        }
        out.insert(rel, e);
    }
    out
}

/// Snapshot without the subtrees at the given relative paths.
pub fn snapshot_without(dir: &Path, skip: &[&str]) -> Snapshot {
    snapshot(dir)
        .into_iter()
        .filter(|(p, _)| !skip.iter().any(|s| p.starts_with(s)))
        .collect()
}

/// What to compare between snapshots.
#[derive(Debug, Clone, Copy)]
pub struct Cmp {
    /// Compare modification times.
    pub mtime: bool,
    /// Compare device/inode numbers and link counts.
    pub ino: bool,
}

impl Cmp {
    /// Everything.
    pub const ALL: Cmp = Cmp {
        mtime: true,
        ino: true,
    };
    /// Content, kind, link target, mode and owner only.
    pub const CONTENT: Cmp = Cmp {
        mtime: false,
        ino: false,
    };
}

/// Differences between two snapshots, one line each (empty when equal).
pub fn diff_snapshots(a: &Snapshot, b: &Snapshot, cmp: Cmp) -> Vec<String> {
    let mut out = Vec::new();
    let keys: BTreeSet<&PathBuf> = a.keys().chain(b.keys()).collect();
    for k in keys {
        match (a.get(k), b.get(k)) {
            (Some(_), None) => out.push(format!("removed: {}", k.display())),
            (None, Some(_)) => out.push(format!("added: {}", k.display())),
            (Some(x), Some(y)) => {
                let mut x = x.clone();
                let mut y = y.clone();
                if !cmp.mtime {
                    x.mtime = (0, 0);
                    y.mtime = (0, 0);
                }
                if !cmp.ino {
                    x.dev_ino = (0, 0);
                    y.dev_ino = (0, 0);
                    x.nlink = 0;
                    y.nlink = 0;
                }
                if x != y {
                    out.push(format!("changed: {}: {x:?} → {y:?}", k.display()));
                }
            }
            (None, None) => unreachable!(),
        }
    }
    out
}

/// Asserts two snapshots are equal under `cmp`, listing every difference.
#[track_caller]
pub fn assert_same(before: &Snapshot, after: &Snapshot, cmp: Cmp, what: &str) {
    let d = diff_snapshots(before, after, cmp);
    assert!(
        d.is_empty(),
        "{what}: {} differences:\n{}",
        d.len(),
        d.join("\n")
    );
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

/// A pinetboot process stopped at a pause point (`PINETBOOT_PAUSE_AT`), to be killed there.
#[derive(Debug)]
pub struct Paused {
    child: Option<Child>,
}

impl Paused {
    /// Starts `pinetboot --root R --config C ARGS…` in the env's namespace (nsenter execs it:
    /// the child's pid is pinetboot's own) with `PINETBOOT_PAUSE_AT=label` and `vars`, and
    /// waits until it has stopped itself at that point. Panics if it ends first.
    pub fn start(env: &Env, label: &str, vars: &[(&str, &str)], args: &[&str]) -> Paused {
        let log = env.tmp.path().join(format!("paused-at-{label}.stderr"));
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &env.ns.pid().to_string(), "-m", "--", bin()])
            .arg("--root")
            .arg(&env.root)
            .arg("--config")
            .arg(&env.config)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("creating the stderr file"))
            .env("NO_COLOR", "1")
            .env_remove("PINETBOOT_CRASH_AT")
            .env_remove("PINETBOOT_CONFIG")
            .env_remove("PINETBOOT_LOG")
            .env("PINETBOOT_PAUSE_AT", label);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("starting pinetboot under nsenter");
        let pid = child.id();
        let stopped = wait_until(Duration::from_secs(300), || {
            if let Ok(Some(status)) = child.try_wait() {
                let err = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("pinetboot {args:?} ended ({status}) before pause point {label}:\n{err}");
            }
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('T')))
                .unwrap_or(false)
        });
        assert!(
            stopped,
            "pinetboot {args:?} did not reach pause point {label}"
        );
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        assert_eq!(comm.trim(), "pinetboot", "pid {pid} is not pinetboot");
        Paused { child: Some(child) }
    }

    /// Kills it with SIGKILL (by its pid) and reaps it.
    pub fn kill(mut self) {
        let mut child = self.child.take().expect("not killed yet");
        let pid = child.id();
        let out = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .output()
            .expect("running kill");
        assert!(out.status.success(), "kill -KILL {pid}: {out:?}");
        let status = child.wait().expect("reaping pinetboot");
        assert_eq!(
            status.signal(),
            Some(9),
            "pinetboot {pid} ended with {status}"
        );
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        // A failed test never leaves a stopped pinetboot (holding the lock) behind.
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
