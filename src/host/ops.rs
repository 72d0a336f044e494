//! Small host operations the facts step and the resources use: existence and type of a host
//! path, folders made, moded and removed, a folder's names, owner and mode by descriptor,
//! `syncfs`. Paths here are full paths (already under the root prefix) unless a method of
//! [`Host`] takes a host path.

use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use super::Host;
use super::atomic::Owner;

/// What is at a path, not following a symlink there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Nothing (or nothing that can be looked at).
    Missing,
    /// A symlink.
    Symlink,
    /// A folder.
    Dir,
    /// A regular file, device, fifo or socket.
    Other,
}

impl Host {
    /// What is at a host path (a symlink is not followed). Only "no such file" is
    /// [`Found::Missing`]; any other error is returned, never read as missing.
    pub fn found(&self, host_path: impl AsRef<Path>) -> io::Result<Found> {
        Ok(match self.metadata_nofollow(host_path)? {
            None => Found::Missing,
            Some(m) if m.file_type().is_symlink() => Found::Symlink,
            Some(m) if m.is_dir() => Found::Dir,
            Some(_) => Found::Other,
        })
    }

    /// Whether anything is at a host path (a symlink counts).
    pub fn exists(&self, host_path: impl AsRef<Path>) -> io::Result<bool> {
        Ok(self.found(host_path)? != Found::Missing)
    }

    /// Whether a host path is a regular file (following symlinks).
    pub fn is_file(&self, host_path: impl AsRef<Path>) -> bool {
        is_file_at(&self.path(host_path))
    }

    /// Size of the file at a host path (following symlinks), if it exists.
    pub fn size(&self, host_path: impl AsRef<Path>) -> Option<u64> {
        size_at(&self.path(host_path))
    }

    /// The names in a host folder, sorted (none when it does not exist or is not a folder;
    /// names that are not UTF-8 are left out).
    pub fn names(&self, host_path: impl AsRef<Path>) -> io::Result<Vec<String>> {
        let absent = |e: &io::Error| {
            matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            )
        };
        let entries = match std::fs::read_dir(self.path(host_path)) {
            Err(e) if absent(&e) => return Ok(Vec::new()),
            r => r?,
        };
        let mut out = Vec::new();
        for entry in entries {
            if let Ok(n) = entry?.file_name().into_string() {
                out.push(n);
            }
        }
        out.sort();
        Ok(out)
    }
}

/// Whether a full path is a regular file (following symlinks).
pub fn is_file_at(full: &Path) -> bool {
    full.is_file()
}

/// Size of the file at a full path (following symlinks), if it exists.
pub fn size_at(full: &Path) -> Option<u64> {
    std::fs::metadata(full).map(|m| m.len()).ok()
}

/// Creates a folder and its missing parents (new ones get `mode`, less the umask).
pub fn create_dirs(full: &Path, mode: u32) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(full)
}

/// Makes `full` a folder only root can enter (0700): created (parents 0755) when missing, its
/// mode taken back when looser or other; a symlink or file in the way is an error, never
/// followed.
pub fn private_dir(full: &Path) -> io::Result<()> {
    if let Some(parent) = full.parent() {
        create_dirs(parent, 0o755)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(full) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(full)?;
    if !meta.is_dir() {
        return Err(io::Error::other(
            "not a folder (a symlink or file is in the way)",
        ));
    }
    if meta.permissions().mode() & 0o7777 != 0o700 {
        set_mode(full, 0o700)?;
    }
    Ok(())
}

/// Sets the permission bits of a path.
pub fn set_mode(full: &Path, mode: u32) -> io::Result<()> {
    std::fs::set_permissions(full, std::fs::Permissions::from_mode(mode))
}

/// Removes an empty folder; `Ok` when it is gone already.
pub fn remove_empty_dir(full: &Path) -> io::Result<()> {
    match std::fs::remove_dir(full) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Device and inode of an open file or folder.
pub fn dev_ino_of(fd: impl AsFd) -> io::Result<(u64, u64)> {
    let st = rustix::fs::fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

/// Sets owner (where `owner` names one) and mode of an open file or folder.
pub fn set_owner_of(fd: impl AsFd, owner: Owner) -> io::Result<()> {
    rustix::fs::fchown(
        &fd,
        owner.uid.map(rustix::fs::Uid::from_raw),
        owner.gid.map(rustix::fs::Gid::from_raw),
    )?;
    rustix::fs::fchmod(&fd, rustix::fs::Mode::from_raw_mode(owner.mode))?;
    Ok(())
}

/// Writes the data of the filesystem holding the folder at `full` to disk (one `syncfs`).
pub fn sync_filesystem_of(full: &Path) -> io::Result<()> {
    Ok(rustix::fs::syncfs(super::atomic::open_dir(full)?)?)
}

/// The one clock: seconds since the epoch (`SOURCE_DATE_EPOCH` wins, for reproducible
/// output: bootloader timestamps, manifests' `unpacked_at`, moved-aside roots' names, the man
/// pages' date). Planning gets it as a fact (`Facts::now`).
pub fn now() -> u64 {
    if let Some(t) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse().ok())
    {
        return t;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
