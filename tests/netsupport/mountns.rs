//! A private mount namespace kept alive by a `sleep`, so pinetboot's bind mounts persist
//! between commands and never reach the host's mount table. Create the [`super::netlab::Lab`]
//! first: the namespace copies `/run/netns` as it is when it is made.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The namespace holder; killed (by PID) and reaped on drop.
pub struct MountNs {
    /// The `sleep` holding the namespace.
    pub holder: Child,
}

impl MountNs {
    /// Makes the namespace (needs root and util-linux's `unshare`).
    #[allow(clippy::zombie_processes)] // killed and waited for in Drop
    pub fn new() -> Self {
        let mut holder = Command::new("unshare")
            .args(["-m", "--propagation", "private", "--", "sleep", "3600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare (util-linux) is needed; the test needs root");
        let mine = fs::read_link("/proc/self/ns/mnt").unwrap();
        for _ in 0..200 {
            if fs::read_link(format!("/proc/{}/ns/mnt", holder.id())).is_ok_and(|ns| ns != mine) {
                return MountNs { holder };
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = holder.kill();
        let _ = holder.wait();
        panic!("unshare did not make a mount namespace (needs root)");
    }

    /// The holder's PID (for `nsenter -t`).
    pub fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// A command run in this mount namespace, and in network namespace `netns` if given.
    pub fn command(&self, netns: Option<&str>, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.pid().to_string(), "-m", "--"]);
        if let Some(ns) = netns {
            cmd.args(["ip", "netns", "exec", ns]);
        }
        cmd.arg(program);
        cmd
    }

    /// `pinetboot --root ROOT --config CONFIG ARGS` in this mount namespace.
    pub fn pinetboot(&self, root: &Path, config: &Path, args: &[&str]) -> Output {
        self.command(None, env!("CARGO_BIN_EXE_pinetboot"))
            .arg("--root")
            .arg(root)
            .arg("--config")
            .arg(config)
            .args(args)
            .output()
            .expect("nsenter (util-linux)")
    }
}

impl Drop for MountNs {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}
