//! The host layer: the only code that makes syscalls or runs tools. It knows the root prefix
//! (`--root`), writes host files atomically, confines every access inside a client root
//! ([`confined`]), reads the mount table ([`mountinfo`]) and makes bind mounts ([`mount`]).

pub mod atomic;
pub mod bounded;
pub mod confined;
pub mod identity;
pub mod linkdir;
pub mod lock;
pub mod mount;
pub mod mountinfo;
pub mod ops;
pub mod process;
pub mod scratch;
pub mod through;
pub mod tools;

pub use process::set_umask;

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// The most [`Host::read`] reads from one host file: 64 MiB. The host files pinetboot reads
/// (`/etc/fstab`, its drop-ins, `state.json`, `known_hosts`, firmware overrides such as a
/// `start4.elf`, a kernel or an initramfs) are far smaller; anything bigger is a mistake.
pub const MAX_HOST_FILE: u64 = 64 << 20;

/// The host as seen through a root prefix.
#[derive(Debug, Clone)]
pub struct Host {
    root: PathBuf,
}

/// What a host path holds, as far as pinetboot cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Nothing there.
    Missing,
    /// A directory with this mode (permission bits).
    Dir(u32),
    /// A regular file.
    File,
    /// A symlink, device, fifo or socket.
    Other,
}

impl Host {
    /// A host rooted at `root` (`/` for the real host).
    pub fn new(root: &Path) -> io::Result<Self> {
        let root = std::fs::canonicalize(root)?;
        Ok(Host { root })
    }

    /// The root prefix.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether this is the real host (`--root /`): daemons and systemd are then ours to poke.
    pub fn is_real(&self) -> bool {
        self.root == Path::new("/")
    }

    /// Resolves a host path (absolute, as the config and generated files name it) under the
    /// root prefix.
    pub fn path(&self, host_path: impl AsRef<Path>) -> PathBuf {
        let mut out = self.root.clone();
        for c in host_path.as_ref().components() {
            if let Component::Normal(s) = c {
                out.push(s);
            }
        }
        out
    }

    /// Reads a host file (a regular file, at most [`MAX_HOST_FILE`] bytes); `None` when it
    /// does not exist. A fifo, device, socket or folder there is an error naming it.
    pub fn read(&self, host_path: impl AsRef<Path>) -> io::Result<Option<Vec<u8>>> {
        self.read_max(host_path, MAX_HOST_FILE)
    }

    /// As [`Host::read`], with a cap of `max` bytes (counted as read, not from `st_size`).
    pub fn read_max(&self, host_path: impl AsRef<Path>, max: u64) -> io::Result<Option<Vec<u8>>> {
        Ok(bounded::read_if_exists(&self.path(host_path), max)?)
    }

    /// What a host path holds (symlinks are not followed).
    pub fn kind(&self, host_path: impl AsRef<Path>) -> io::Result<Kind> {
        Ok(match self.metadata_nofollow(host_path)? {
            None => Kind::Missing,
            Some(m) if m.is_dir() => Kind::Dir(m.permissions().mode() & 0o7777),
            Some(m) if m.is_file() => Kind::File,
            Some(_) => Kind::Other,
        })
    }

    /// `lstat` of a host path: `None` when nothing is there. The one no-follow look at a
    /// host path that [`Host::kind`] and [`Host::found`] classify.
    fn metadata_nofollow(
        &self,
        host_path: impl AsRef<Path>,
    ) -> io::Result<Option<std::fs::Metadata>> {
        match std::fs::symlink_metadata(self.path(host_path)) {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Device and inode of a host path (following symlinks), if it exists.
    pub fn dev_ino(&self, host_path: impl AsRef<Path>) -> io::Result<Option<(u64, u64)>> {
        match std::fs::metadata(self.path(host_path)) {
            Ok(m) => Ok(Some((m.dev(), m.ino()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}
