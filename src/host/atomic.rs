//! Atomic file replacement: a temp file in the same folder (O_EXCL, never following links),
//! written, owned and moded on its descriptor, fsynced, renamed over the target, and the folder
//! fsynced. A reader sees the old file or the new one, never half of either.

use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{AtFlags, Gid, Mode, OFlags, Uid};

/// A fresh temporary name for a file about to replace `name`.
pub fn temp_name(name: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(".{name}.pinetboot-{}-{n}-{nanos:x}", std::process::id())
}

/// Ownership and mode for a written file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// Permission bits.
    pub mode: u32,
    /// Owner (None: leave as created, i.e. the caller's).
    pub uid: Option<u32>,
    /// Group (None: leave as created).
    pub gid: Option<u32>,
}

impl Owner {
    /// `mode`, owned by whoever writes it (root for apply).
    pub fn mode(mode: u32) -> Self {
        Owner {
            mode,
            uid: None,
            gid: None,
        }
    }
}

/// Removes temp files an interrupted write of `name` left in `dir` (apply holds the lock, so
/// no other writer's temp file can be there). Names only: nothing is followed.
pub fn remove_stale_temps(dir: &OwnedFd, name: &str) -> io::Result<()> {
    let prefix = format!(".{name}.pinetboot-");
    let mut entries = rustix::fs::Dir::read_from(dir)?;
    let mut stale = Vec::new();
    while let Some(entry) = entries.read() {
        let entry = entry?;
        if entry.file_name().to_bytes().starts_with(prefix.as_bytes()) {
            stale.push(entry.file_name().to_owned());
        }
    }
    for n in stale {
        match rustix::fs::unlinkat(dir, n.as_c_str(), AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Replaces `name` inside the open folder `dir` with `content`, atomically.
pub fn replace_in(dir: &OwnedFd, name: &str, content: &[u8], owner: Owner) -> io::Result<()> {
    remove_stale_temps(dir, name)?;
    let tmp = temp_name(name);
    let fd = rustix::fs::openat(
        dir,
        tmp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    let result = (|| {
        if owner.uid.is_some() || owner.gid.is_some() {
            rustix::fs::fchown(&fd, owner.uid.map(uid), owner.gid.map(gid))?;
        }
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(owner.mode))?;
        let mut file = std::fs::File::from(fd.as_fd().try_clone_to_owned()?);
        file.write_all(content)?;
        rustix::fs::fsync(&fd)?;
        if crate::host::atomic::crash_point("before-rename") {
            std::process::abort();
        }
        rustix::fs::renameat(dir, tmp.as_str(), dir, name)?;
        rustix::fs::fsync(dir)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = rustix::fs::unlinkat(dir, tmp.as_str(), AtFlags::empty());
    }
    result
}

fn uid(u: u32) -> Uid {
    Uid::from_raw(u)
}

fn gid(g: u32) -> Gid {
    Gid::from_raw(g)
}

/// Opens a host folder for writing into (host paths are trusted: links are followed).
pub fn open_dir(path: &std::path::Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Moves the folder or file `from` to `to`, which must not exist (`RENAME_NOREPLACE`: an
/// existing `to` is an error, never replaced), then fsyncs the folders that changed, so the
/// new name (and the old one's absence) survives a power cut. Host paths: links are followed.
pub fn rename_noreplace_synced(from: &std::path::Path, to: &std::path::Path) -> io::Result<()> {
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        from,
        rustix::fs::CWD,
        to,
        rustix::fs::RenameFlags::NOREPLACE,
    )?;
    let to_parent = to.parent().ok_or(io::ErrorKind::InvalidInput)?;
    rustix::fs::fsync(open_dir(to_parent)?)?;
    if let Some(from_parent) = from.parent()
        && from_parent != to_parent
    {
        rustix::fs::fsync(open_dir(from_parent)?)?;
    }
    Ok(())
}

/// Creates the host folder `path` and its missing parents (host paths: links are followed).
pub fn create_dir_all(path: &std::path::Path) -> io::Result<()> {
    std::fs::create_dir_all(path)
}

/// Atomically replaces the host file at `path` (its folder must exist).
pub fn write_host_file(path: &std::path::Path, content: &[u8], mode: u32) -> io::Result<()> {
    let parent = path.parent().ok_or(io::ErrorKind::InvalidInput)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or(io::ErrorKind::InvalidInput)?;
    replace_in(&open_dir(parent)?, name, content, Owner::mode(mode))
}

/// Test hook for crash-safety tests: `PINETBOOT_CRASH_AT=N` makes the process abort at the N-th
/// crash point it passes (counted across the run). Never set in production.
pub fn crash_point(_label: &str) -> bool {
    use std::sync::atomic::{AtomicU64, Ordering};
    static PASSED: AtomicU64 = AtomicU64::new(0);
    let Some(target) = std::env::var("PINETBOOT_CRASH_AT")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return false;
    };
    PASSED.fetch_add(1, Ordering::SeqCst) + 1 == target
}

/// Test hook for kill tests: `PINETBOOT_PAUSE_AT=LABEL` makes the process stop itself
/// (SIGSTOP, every thread) the first time it passes the pause point `LABEL`, so a test can
/// SIGKILL it right there, mid-work. Never set in production.
pub fn pause_point(label: &str) {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, Ordering};
    static WANTED: OnceLock<Option<String>> = OnceLock::new();
    static PAUSED: AtomicBool = AtomicBool::new(false);
    let wanted = WANTED.get_or_init(|| std::env::var("PINETBOOT_PAUSE_AT").ok());
    if wanted.as_deref() == Some(label) && !PAUSED.swap(true, Ordering::SeqCst) {
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::STOP);
    }
}
