//! The apply lock: an exclusive `flock` on `<root>/run/pinetboot.lock`, so two applies never
//! interleave (plan takes it shared).
//!
//! The lock lives on a descriptor this process holds: it is released on drop, on every error
//! path and when the process dies, however it dies. The descriptor is close-on-exec, so no tool
//! started during an apply (`exportfs`, `dnsmasq --test`, `systemctl`) inherits it and keeps
//! the lock past pinetboot's exit. What must not happen is an apply that never returns: every
//! wait inside one is bounded (downloads by `downloads:`, reads of files by type and size).

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// A held lock; released on drop.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// How to take the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Apply: alone.
    Exclusive,
    /// Plan: beside other plans, never beside an apply.
    Shared,
}

/// Takes the lock at `path`, creating `run/` if needed. When another process holds it and
/// `wait` is true, calls `on_wait` once and blocks; otherwise fails with `WouldBlock`.
pub fn acquire(path: &Path, mode: Mode, wait: bool, on_wait: impl FnOnce()) -> io::Result<Lock> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    use std::os::unix::fs::OpenOptionsExt;
    let file = OpenOptions::new()
        .mode(0o600)
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)?;
    let attempt = match mode {
        Mode::Exclusive => file.try_lock(),
        Mode::Shared => file.try_lock_shared(),
    };
    match attempt {
        Ok(()) => Ok(Lock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) if wait => {
            on_wait();
            match mode {
                Mode::Exclusive => file.lock()?,
                Mode::Shared => file.lock_shared()?,
            }
            Ok(Lock { _file: file })
        }
        Err(std::fs::TryLockError::WouldBlock) => Err(io::ErrorKind::WouldBlock.into()),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn the_lock_is_close_on_exec_and_released_on_drop() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("run/pinetboot.lock");
        let lock = acquire(&path, Mode::Exclusive, false, || {}).unwrap();
        let flags = rustix::io::fcntl_getfd(lock._file.as_fd()).unwrap();
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
        // Held: a second exclusive taker (another open file description) is refused.
        let e = acquire(&path, Mode::Exclusive, false, || {}).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        drop(lock);
        acquire(&path, Mode::Exclusive, false, || {}).expect("released on drop");
    }
}
