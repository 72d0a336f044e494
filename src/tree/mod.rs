//! Faithful tree writing and copying.
//!
//! A client root (`/nfs/CLIENT`) is provisioned from a directory tree (the
//! unpacked image in the store) or straight from an image. Both paths end in a
//! [`TreeWriter`], which creates every entry relative to directory file
//! descriptors it opened itself with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)` and `O_NOFOLLOW`, so nothing is ever written through a
//! symlink — not even one the tree itself has just created (DESIGN.md,
//! invariant 9).
//!
//! [`copy_tree`] walks a source tree without following symlinks and replays it
//! into a new [`TreeWriter`], keeping owners, modes (setuid/setgid/sticky),
//! symlinks, hardlinks, device nodes, fifos, sockets, xattrs and nanosecond
//! timestamps. File data is reflinked (`FICLONE`) where the filesystem allows,
//! else copied with `copy_file_range` (holes kept), else with read/write.
//!
//! Everything here expects to run as root (owners are set with `fchownat`) on
//! Linux ≥ 5.6 (`openat2`) with `/proc` mounted (xattrs and modes of special
//! files are set through `/proc/self/fd/N` of an `O_PATH` descriptor, which is
//! the only race-free way that works on every kernel).

mod copy;
mod pool;
pub mod remove;
mod writer;
mod xattr;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::ioerr::IoError;

pub use copy::{CopyStats, copy_tree};
pub(crate) use writer::write_sparse_chunk;
pub use writer::{FileCopy, TreeWriter};

/// An extended attribute: raw name (e.g. `b"security.capability"`) and raw value.
pub type Xattr = (Vec<u8>, Vec<u8>);

/// A timestamp: seconds since the epoch and nanoseconds (`< 1_000_000_000`).
pub type Time = (i64, u32);

/// Metadata applied to one entry of a tree.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Meta {
    /// Permission bits including setuid, setgid and sticky (`mode & 0o7777`).
    /// File-type bits, if present, are ignored. Ignored for symlinks.
    pub mode: u32,
    /// Numeric owner (never mapped through names).
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
    /// Last access time.
    pub atime: Time,
    /// Last modification time.
    pub mtime: Time,
    /// Extended attributes, applied in order (names must be non-empty and
    /// contain no NUL). `security.capability` is kept but triggers one warning
    /// per tree, because NFS does not carry file capabilities.
    pub xattrs: Vec<Xattr>,
}

impl Meta {
    /// Metadata with the given mode and owner, epoch timestamps and no xattrs.
    pub fn new(mode: u32, uid: u32, gid: u32) -> Self {
        Meta {
            mode,
            uid,
            gid,
            ..Meta::default()
        }
    }
}

/// Errors of tree writing and copying. Every variant names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// A relative path inside the tree was refused (absolute, `..`, `.`,
    /// empty component, NUL byte...). Hostile names are errors, never escapes.
    #[error("refused path {path:?} inside the tree: {reason}")]
    InvalidPath {
        /// The offending path, as given.
        path: PathBuf,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The destination of [`TreeWriter::create`] already exists.
    #[error("destination {0} already exists")]
    DestinationExists(PathBuf),
    /// Bad metadata (nanoseconds out of range, bad xattr name, bad link target).
    #[error("invalid metadata for {path}: {reason}")]
    InvalidMeta {
        /// Full path of the entry.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A parent directory on the way is a symlink or leaves the tree.
    #[error("{path}: a component of the parent path is a symlink or leaves the tree (refused)")]
    SymlinkOnPath {
        /// Full path of the entry.
        path: PathBuf,
    },
    /// An entry changed between the moment it was inspected and opened.
    #[error("{path}: entry changed while it was being copied")]
    Changed {
        /// Full path of the entry.
        path: PathBuf,
    },
    /// A system call failed (on the entry's full path).
    #[error(transparent)]
    Io(#[from] IoError),
}

/// Result alias of this module.
pub type Result<T, E = TreeError> = std::result::Result<T, E>;

pub(crate) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(rustix::io::Errno) -> TreeError {
    let path = path.to_path_buf();
    move |e| TreeError::Io(IoError::new(op, path, e))
}

/// Opens the directory at `path` itself (a symlink at its end is refused, not
/// followed), close-on-exec; a failure is reported as `op` on `path`.
pub(crate) fn open_dir_nofollow(path: &Path, op: &'static str) -> Result<std::os::fd::OwnedFd> {
    use rustix::fs::{CWD, Mode, OFlags};
    rustix::fs::openat(
        CWD,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_err(op, path))
}

/// Checks that `rel` is a safe path relative to a tree root: non-empty, not
/// absolute, no empty, `.` or `..` components, no NUL byte, no trailing `/`.
pub fn check_rel_path(rel: &Path) -> Result<()> {
    let bytes = rel.as_os_str().as_bytes();
    let refuse = |reason| {
        Err(TreeError::InvalidPath {
            path: rel.to_path_buf(),
            reason,
        })
    };
    if bytes.is_empty() {
        return refuse("empty path");
    }
    if bytes.contains(&0) {
        return refuse("NUL byte");
    }
    if bytes[0] == b'/' {
        return refuse("absolute path");
    }
    for comp in bytes.split(|&b| b == b'/') {
        match comp {
            b"" => return refuse("empty component (`//` or trailing `/`)"),
            b"." => return refuse("`.` component"),
            b".." => return refuse("`..` component"),
            _ => {}
        }
    }
    Ok(())
}

/// Splits a checked relative path into parent (possibly empty) and final name.
pub(crate) fn split_rel(rel: &Path) -> (&Path, &OsStr) {
    let bytes = rel.as_os_str().as_bytes();
    match bytes.iter().rposition(|&b| b == b'/') {
        Some(i) => (
            Path::new(OsStr::from_bytes(&bytes[..i])),
            OsStr::from_bytes(&bytes[i + 1..]),
        ),
        None => (Path::new(""), rel.as_os_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rel_paths() {
        for ok in ["a", "a/b", "a b/.c", "..x", "x..", "a/...", "é/\u{1}"] {
            check_rel_path(Path::new(ok)).unwrap();
        }
        for bad in [
            "",
            "/",
            "/abs",
            "../x",
            "a/../../b",
            "a/..",
            ".",
            "./a",
            "a/./b",
            "a//b",
            "a/",
            "a\0b",
        ] {
            assert!(check_rel_path(Path::new(bad)).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            split_rel(Path::new("a/b/c")),
            (Path::new("a/b"), OsStr::new("c"))
        );
        assert_eq!(split_rel(Path::new("c")), (Path::new(""), OsStr::new("c")));
    }
}
