//! Bind mounts, made from an already-confined folder descriptor (`open_tree` + `move_mount`),
//! so a symlink planted in a client root can never redirect the mount's source.

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::mount::{MoveMountFlags, OpenTreeFlags, UnmountFlags};

/// Bind-mounts the folder open as `source` onto the host folder `target`.
pub fn bind(source: &OwnedFd, target: &Path) -> io::Result<()> {
    let tree = rustix::mount::open_tree(
        source,
        "",
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_EMPTY_PATH,
    )?;
    rustix::mount::move_mount(
        &tree,
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )?;
    Ok(())
}

/// Unmounts `target` (lazily if busy, so a TFTP transfer in flight does not block prune).
pub fn unbind(target: &Path) -> io::Result<()> {
    match rustix::mount::unmount(target, UnmountFlags::NOFOLLOW) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::BUSY) => Ok(rustix::mount::unmount(
            target,
            UnmountFlags::NOFOLLOW | UnmountFlags::DETACH,
        )?),
        Err(e) => Err(e.into()),
    }
}
