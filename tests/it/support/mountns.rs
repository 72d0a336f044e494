//! The one private mount namespace of the tests, held open by a `sleep`: pinetboot's bind
//! mounts persist between commands run through it and never reach the host's mount table.
//! With a [`super::netlab::Lab`], create the lab first: the namespace copies `/run/netns` as it
//! is when it is made.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::run::Run;
use super::tools::{bin, require_root};

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

    /// A command run in this mount namespace (no timeout, environment untouched), and in
    /// network namespace `netns` if given.
    pub fn nsenter(&self, netns: Option<&str>, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.pid().to_string(), "-m", "--"]);
        if let Some(ns) = netns {
            cmd.args(["ip", "netns", "exec", ns]);
        }
        cmd.arg(program);
        cmd
    }

    /// `pinetboot --root ROOT --config CONFIG` (add the arguments) in this mount namespace,
    /// and in network namespace `netns` if given; no colour.
    pub fn pinetboot_cmd(&self, netns: Option<&str>, root: &Path, config: &Path) -> Command {
        let mut cmd = self.nsenter(netns, bin());
        cmd.arg("--root")
            .arg(root)
            .arg("--config")
            .arg(config)
            .env("NO_COLOR", "1");
        cmd
    }

    /// `pinetboot --root ROOT --config CONFIG ARGS` in this mount namespace, run to the end.
    pub fn pinetboot(&self, root: &Path, config: &Path, args: &[&str]) -> Output {
        self.pinetboot_cmd(None, root, config)
            .args(args)
            .output()
            .expect("nsenter (util-linux)")
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
