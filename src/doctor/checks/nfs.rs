//! NFS: the kernel server is installed and running, every client root is exported to its scope
//! (and no other exports line is in the way).

use super::Check;
use crate::doctor::Finding;
use crate::doctor::facts::Facts;

/// The fix printed when the kernel NFS server is not running.
pub const FIX_NFS_NOT_RUNNING: &str = "start the kernel NFS server: `systemctl enable --now nfs-server` (package nfs-kernel-server; it loads the nfsd module and mounts /proc/fs/nfsd), then `exportfs -ra`";

/// The NFS server is installed and running, and every client root is exported to its scope.
pub(super) fn nfs(f: &Facts, out: &mut Vec<Finding>) {
    let n = &f.nfs;
    let check = Check::new("nfs.installed", "the NFS server is installed");
    if n.installed {
        out.push(check.ok("exportfs found"));
    } else {
        out.push(check.problem(
            "no exportfs: nfs-kernel-server is not installed",
            "apt install nfs-kernel-server",
        ));
    }
    let check = Check::new("nfs.running", "the kernel NFS server is running");
    let running = n.mounted && n.threads.is_none_or(|t| t > 0);
    if !running {
        let why = if !n.in_kernel {
            "the kernel has no nfsd (not in /proc/filesystems) and /proc/fs/nfsd is not mounted"
                .to_owned()
        } else if !n.mounted {
            "/proc/fs/nfsd is not mounted".to_owned()
        } else {
            "nfsd runs no threads (/proc/fs/nfsd/threads is 0)".to_owned()
        };
        out.push(check.problem(
            format!("{why}: no Pi can mount its root (exports were not checked)"),
            FIX_NFS_NOT_RUNNING,
        ));
        return;
    }
    out.push(check.ok(match n.threads {
        Some(t) => format!("/proc/fs/nfsd mounted, {t} threads"),
        None => "/proc/fs/nfsd mounted".to_owned(),
    }));
    let (Some(exports), Ok(_)) = (&n.exports, &f.config) else {
        return;
    };
    let exports = match exports {
        Ok(e) => e,
        Err(e) => {
            out.push(Finding::problem(
                "nfs.exports",
                "exportfs -v lists the client roots",
                e.clone(),
                "run `exportfs -ra` and read its errors",
            ));
            return;
        }
    };
    for c in &f.clients {
        let check = Check::new(
            format!("client.{}.export", c.name),
            format!("{} is exported to {}", c.root, c.export_scope),
        );
        let mine: Vec<_> = exports.iter().filter(|e| e.path == c.root).collect();
        if mine.iter().any(|e| e.client == c.export_scope) {
            out.push(check.ok("listed by exportfs -v"));
        } else if mine.is_empty() {
            out.push(check.problem(
                format!("exportfs -v does not list {}", c.root),
                "`exportfs -ra` (pinetboot apply runs it when the exports drop-in changes); if it stays missing, `exportfs -ra` prints why",
            ));
        } else {
            out.push(check.problem(
                format!(
                    "{} is exported to {}, not to {}",
                    c.root,
                    mine.iter()
                        .map(|e| e.client.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    c.export_scope
                ),
                "another exports file names this path: remove that line, then `exportfs -ra`",
            ));
        }
    }
}
