//! The apply lock: an exclusive `flock` on `<root>/run/pinetboot.lock`, so two applies never
//! interleave (plan takes it shared).

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
