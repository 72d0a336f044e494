//! Bind mounts, made from an already-confined folder descriptor (`open_tree` + `move_mount`),
//! so a symlink planted in a client root can never redirect the mount's source.

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::mount::{MountFlags, MoveMountFlags, OpenTreeFlags, UnmountFlags};

/// The per-mount options of a boot-folder bind mount, as mountinfo shows them. TFTP only
/// reads, and the client owns the tree: nothing in it is followed (`nosymfollow`: a symlink
/// the client plants can never make the TFTP server read a host file), written, executed or
/// used as a device.
pub const BIND_OPTIONS: &[&str] = &["ro", "nosuid", "nodev", "noexec", "nosymfollow"];

/// Device and inode of the open file `fd` (to compare a mount's source with a folder).
pub fn dev_ino_of(fd: &OwnedFd) -> io::Result<(u64, u64)> {
    let st = rustix::fs::fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

/// Bind-mounts the folder open as `source` onto the host folder `target`, read-only and
/// without following symlinks ([`BIND_OPTIONS`]).
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
    restrict(target)
}

/// Sets [`BIND_OPTIONS`] on the bind mount at `target` (a bind remount changes only this
/// mount's flags).
pub fn restrict(target: &Path) -> io::Result<()> {
    rustix::mount::mount_remount(
        target,
        MountFlags::BIND
            | MountFlags::RDONLY
            | MountFlags::NOSUID
            | MountFlags::NODEV
            | MountFlags::NOEXEC
            | MountFlags::NOSYMFOLLOW,
        "",
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

/// Unmounts every mount stacked at `target` (an earlier crash can leave several); returns how
/// many went.
pub fn unbind_all(target: &Path) -> io::Result<usize> {
    let at = target.to_string_lossy();
    let mut n = 0;
    while super::mountinfo::read()?
        .iter()
        .any(|m| m.mount_point == at)
    {
        unbind(target)?;
        n += 1;
    }
    Ok(n)
}
