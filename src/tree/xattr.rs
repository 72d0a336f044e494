//! Extended attributes by file descriptor, including `O_PATH` descriptors.
//!
//! `f*xattr` refuse `O_PATH` descriptors, and `l*xattr` take a path (which
//! would be resolved again, through symlinks in parent components). Going
//! through `/proc/self/fd/N` with the *following* variants resolves the magic
//! link to exactly the inode the descriptor refers to — a symlink included —
//! without any further lookup.

use std::os::fd::{AsRawFd, BorrowedFd};

use rustix::fs::XattrFlags;
use rustix::io::Errno;

use super::Xattr;

/// The `/proc/self/fd/N` path of a descriptor.
pub(crate) fn proc_path(fd: BorrowedFd<'_>) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Reads every xattr of the inode `fd` refers to (any kind of descriptor),
/// sorted by name. A filesystem without xattr support gives an empty list.
pub(crate) fn read_all(fd: BorrowedFd<'_>) -> Result<Vec<Xattr>, Errno> {
    let path = proc_path(fd);
    let mut names = Vec::new();
    for _ in 0..8 {
        let len = match rustix::fs::listxattr_query(&path) {
            Ok(l) => l,
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        if len == 0 {
            return Ok(Vec::new());
        }
        names.resize(len, 0);
        match rustix::fs::listxattr(&path, &mut names[..]) {
            Ok(n) => {
                names.truncate(n);
                break;
            }
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e),
        }
    }
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let mut value = Vec::new();
        let mut found = false;
        for _ in 0..8 {
            let len = match rustix::fs::getxattr_query(&path, name) {
                Ok(l) => l,
                Err(Errno::NODATA) => break, // removed meanwhile
                Err(e) => return Err(e),
            };
            value.resize(len, 0);
            if len == 0 {
                found = true;
                break;
            }
            match rustix::fs::getxattr(&path, name, &mut value[..]) {
                Ok(n) => {
                    value.truncate(n);
                    found = true;
                    break;
                }
                Err(Errno::RANGE) => continue,
                Err(Errno::NODATA) => break,
                Err(e) => return Err(e),
            }
        }
        if found {
            out.push((name.to_vec(), value));
        }
    }
    out.sort();
    Ok(out)
}

/// Sets one xattr on the inode `fd` refers to (any kind of descriptor).
pub(crate) fn set(fd: BorrowedFd<'_>, name: &[u8], value: &[u8]) -> Result<(), Errno> {
    rustix::fs::setxattr(proc_path(fd), name, value, XattrFlags::empty())
}
