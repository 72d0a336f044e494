//! Reads and writes inside an untrusted tree (a client root, whose owner is root on the Pi and
//! can plant symlinks, fifos and devices). Every path is resolved beneath the tree's root with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)`;
//! facts that are only read (os-release, passwd, …) may instead resolve symlinks *inside* the
//! tree (`RESOLVE_IN_ROOT`), as the Pi itself would. Files are opened `O_PATH`, checked with
//! `fstat`, and only then reopened for reading (a device node is never opened); writes go
//! to an `O_EXCL` temp file that is owned and moded on its descriptor, then renamed over the
//! target (replacing a planted symlink or hardlink, never writing through it). Anything
//! unexpected is a [`Violation`], never followed.

use std::ffi::OsStr;
use std::fmt;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};

use super::atomic::{self, Owner};

/// Files pinetboot reads inside a client root are small (cmdline.txt, fstab, hosts).
pub const MAX_READ: u64 = 16 << 20;

/// Why a path inside an untrusted tree was refused.
#[derive(Debug)]
pub enum Violation {
    /// A symlink on the way or at the end.
    Symlink(PathBuf),
    /// Not the kind of thing expected (a fifo, device, socket, or a folder where a file
    /// belongs, or a file where a folder belongs).
    WrongKind(PathBuf, &'static str),
    /// Too large to be what it claims.
    TooLarge(PathBuf, u64),
    /// The kernel cannot resolve beneath a folder (openat2 missing): fail closed.
    Unsupported(io::Error),
    /// Any other I/O error.
    Io(PathBuf, io::Error),
    /// A file pinetboot edits partially whose `# BEGIN pinetboot` fence is broken: which
    /// lines are pinetboot's is unknown, so the file is not written.
    Fence(PathBuf, crate::render::fence::Broken),
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Symlink(p) => write!(f, "{} is or passes through a symlink", p.display()),
            Violation::WrongKind(p, k) => write!(f, "{} is {k}", p.display()),
            Violation::TooLarge(p, n) => write!(f, "{} is {n} bytes, too large", p.display()),
            Violation::Unsupported(e) => write!(
                f,
                "the kernel cannot confine paths (openat2: {e}); pinetboot needs Linux 5.6 or later"
            ),
            Violation::Io(p, e) => write!(f, "{}: {e}", p.display()),
            Violation::Fence(p, b) => write!(f, "{} {b}; nothing was written", p.display()),
        }
    }
}

impl std::error::Error for Violation {}

impl Clone for Violation {
    /// A copy that displays the same (an I/O error is copied by its OS code, or by kind and
    /// text), so a refusal collected once as a fact can be reported where it is decided.
    fn clone(&self) -> Self {
        let io = |e: &io::Error| match e.raw_os_error() {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(e.kind(), e.to_string()),
        };
        match self {
            Violation::Symlink(p) => Violation::Symlink(p.clone()),
            Violation::WrongKind(p, k) => Violation::WrongKind(p.clone(), k),
            Violation::TooLarge(p, n) => Violation::TooLarge(p.clone(), *n),
            Violation::Unsupported(e) => Violation::Unsupported(io(e)),
            Violation::Io(p, e) => Violation::Io(p.clone(), io(e)),
            Violation::Fence(p, b) => Violation::Fence(p.clone(), b.clone()),
        }
    }
}

impl Violation {
    /// The path refused, if the violation is about one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Violation::Symlink(p)
            | Violation::WrongKind(p, _)
            | Violation::TooLarge(p, _)
            | Violation::Io(p, _)
            | Violation::Fence(p, _) => Some(p),
            Violation::Unsupported(_) => None,
        }
    }

    /// What to do about it, when that is more specific than "inspect the path".
    pub fn hint(&self) -> Option<String> {
        match self {
            Violation::Fence(_, b) => Some(b.hint()),
            _ => None,
        }
    }
}

/// Metadata of an entry inside the tree (not followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// What it is.
    pub kind: EntryKind,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
}

/// The type of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A folder.
    Dir,
    /// A symlink.
    Symlink,
    /// A fifo, socket or device.
    Special,
}

/// An open untrusted tree.
#[derive(Debug)]
pub struct Tree {
    fd: OwnedFd,
    path: PathBuf,
}

/// How a path inside the tree is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolve {
    /// No symlink anywhere (what pinetboot writes, and reads before writing).
    Strict,
    /// Symlinks followed inside the tree, as the Pi would (facts pinetboot only reads).
    InRoot,
}

fn resolve_in_root() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV
}

fn entry_of(st: &rustix::fs::Stat) -> Entry {
    let kind = match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => EntryKind::File,
        FileType::Directory => EntryKind::Dir,
        FileType::Symlink => EntryKind::Symlink,
        _ => EntryKind::Special,
    };
    Entry {
        kind,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        size: st.st_size as u64,
    }
}

fn resolve() -> ResolveFlags {
    ResolveFlags::BENEATH
        | ResolveFlags::NO_SYMLINKS
        | ResolveFlags::NO_MAGICLINKS
        | ResolveFlags::NO_XDEV
}

/// Splits a relative path into a parent and a final name, refusing anything but plain
/// components.
fn split(rel: &Path) -> Option<(PathBuf, &OsStr)> {
    let mut parent = PathBuf::new();
    let mut comps = rel.components().peekable();
    let mut last = None;
    while let Some(c) = comps.next() {
        match c {
            Component::Normal(s) if comps.peek().is_none() => last = Some(s),
            Component::Normal(s) => parent.push(s),
            _ => return None,
        }
    }
    last.map(|l| (parent, l))
}

impl Tree {
    /// Opens the tree at `path` (the tree's own root must not be a symlink).
    pub fn open(path: &Path) -> Result<Self, Violation> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            rustix::io::Errno::LOOP => Violation::Symlink(path.to_owned()),
            rustix::io::Errno::NOTDIR => Violation::WrongKind(path.to_owned(), "not a folder"),
            e => Violation::Io(path.to_owned(), e.into()),
        })?;
        Ok(Tree {
            fd,
            path: path.to_owned(),
        })
    }

    /// The tree's path on the host.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn full(&self, rel: &Path) -> PathBuf {
        self.path.join(rel)
    }

    fn map_err(&self, rel: &Path, e: rustix::io::Errno) -> Violation {
        match e {
            rustix::io::Errno::LOOP | rustix::io::Errno::XDEV => Violation::Symlink(self.full(rel)),
            rustix::io::Errno::NOTDIR => Violation::WrongKind(
                self.full(rel),
                "not a folder, or passes through a non-folder",
            ),
            rustix::io::Errno::NOSYS | rustix::io::Errno::PERM => Violation::Unsupported(e.into()),
            e => Violation::Io(self.full(rel), e.into()),
        }
    }

    /// Opens a folder inside the tree (`""` for the root itself); `None` when missing.
    pub fn open_dir(&self, rel: &Path) -> Result<Option<OwnedFd>, Violation> {
        let target: &Path = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        if !rel.as_os_str().is_empty() && split(rel).is_none() {
            return Err(Violation::WrongKind(
                self.full(rel),
                "not a plain relative path",
            ));
        }
        match rustix::fs::openat2(
            &self.fd,
            target,
            // No O_NOFOLLOW: with O_DIRECTORY it reports a final symlink as ENOTDIR;
            // RESOLVE_NO_SYMLINKS already refuses it (ELOOP), on the way and at the end.
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            resolve(),
        ) {
            Ok(fd) => Ok(Some(fd)),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(self.map_err(rel, e)),
        }
    }

    /// Opens a folder inside the tree that must be there (missing is an I/O violation).
    fn existing_dir(&self, rel: &Path) -> Result<OwnedFd, Violation> {
        self.open_dir(rel)?
            .ok_or_else(|| Violation::Io(self.full(rel), io::ErrorKind::NotFound.into()))
    }

    /// `rel`'s parent folder and final name; anything but a plain relative path is refused.
    fn parent_and_name<'a>(&self, rel: &'a Path) -> Result<(PathBuf, &'a OsStr), Violation> {
        split(rel).ok_or_else(|| Violation::WrongKind(self.full(rel), "not a plain relative path"))
    }

    /// Metadata of `rel` without following it; `None` when missing. Parents are confined.
    pub fn entry(&self, rel: &Path) -> Result<Option<Entry>, Violation> {
        let (parent, name) = self.parent_and_name(rel)?;
        let Some(dir) = self.open_dir(&parent)? else {
            return Ok(None);
        };
        match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(entry_of(&st))),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(self.map_err(rel, e)),
        }
    }

    /// Reads a regular file pinetboot manages (its current content, before replacing it);
    /// `None` when missing. Nothing on the way or at the end may be a symlink: a symlink,
    /// fifo, device or folder is a violation. The file is opened `O_PATH` first and reopened
    /// only once it is known to be a regular file, so a planted device node is never opened.
    pub fn read(&self, rel: &Path) -> Result<Option<Vec<u8>>, Violation> {
        self.read_with(rel, Resolve::Strict)
    }

    /// Reads a *fact* from the tree (os-release, passwd, the image's cmdline.txt, …) the way
    /// the Pi sees it: symlinks are followed, but **inside the tree** (openat2
    /// `RESOLVE_IN_ROOT`: an absolute target resolves against the tree's root, `..` stops at
    /// it; no magic links, no other mount, the kernel's bound on hops). A real Debian root has
    /// `etc/os-release -> ../usr/lib/os-release` and a merged /usr. What is found must still
    /// be a regular file (never opened before that is known). `None` when missing or dangling.
    pub fn read_resolved(&self, rel: &Path) -> Result<Option<Vec<u8>>, Violation> {
        self.read_with(rel, Resolve::InRoot)
    }

    /// Metadata of what `rel` resolves to inside the tree (see [`Tree::read_resolved`]);
    /// `None` when missing or dangling. Never reports [`EntryKind::Symlink`].
    pub fn entry_resolved(&self, rel: &Path) -> Result<Option<Entry>, Violation> {
        Ok(self
            .open_path(rel, Resolve::InRoot)?
            .map(|(_, st)| entry_of(&st)))
    }

    /// `O_PATH` handle and metadata of `rel` (not opened for reading: safe for devices).
    fn open_path(
        &self,
        rel: &Path,
        how: Resolve,
    ) -> Result<Option<(OwnedFd, rustix::fs::Stat)>, Violation> {
        if split(rel).is_none() {
            return Err(Violation::WrongKind(
                self.full(rel),
                "not a plain relative path",
            ));
        }
        let (oflags, resolve) = match how {
            // With O_PATH | O_NOFOLLOW a final symlink comes back as itself (and is refused by
            // the caller); RESOLVE_NO_SYMLINKS refuses any on the way.
            Resolve::Strict => (OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, resolve()),
            Resolve::InRoot => (OFlags::PATH | OFlags::CLOEXEC, resolve_in_root()),
        };
        let mut tries = 0;
        let fd = loop {
            match rustix::fs::openat2(&self.fd, rel, oflags, Mode::empty(), resolve) {
                Ok(fd) => break fd,
                Err(rustix::io::Errno::NOENT) => return Ok(None),
                // A rename raced with `..` resolution: the kernel asks to retry.
                Err(rustix::io::Errno::AGAIN) if tries < 8 => tries += 1,
                Err(e) => return Err(self.map_err_how(rel, e, how)),
            }
        };
        let st = rustix::fs::fstat(&fd).map_err(|e| self.map_err(rel, e))?;
        Ok(Some((fd, st)))
    }

    fn map_err_how(&self, rel: &Path, e: rustix::io::Errno, how: Resolve) -> Violation {
        match (how, e) {
            (Resolve::InRoot, rustix::io::Errno::LOOP) => Violation::WrongKind(
                self.full(rel),
                "a chain of symlinks too long to follow (or a loop)",
            ),
            (Resolve::InRoot, rustix::io::Errno::XDEV) => Violation::WrongKind(
                self.full(rel),
                "resolved through a magic link or onto another mount",
            ),
            _ => self.map_err(rel, e),
        }
    }

    fn read_with(&self, rel: &Path, how: Resolve) -> Result<Option<Vec<u8>>, Violation> {
        let Some((path_fd, st)) = self.open_path(rel, how)? else {
            return Ok(None);
        };
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => {}
            FileType::Symlink => return Err(Violation::Symlink(self.full(rel))),
            FileType::Directory => {
                return Err(Violation::WrongKind(self.full(rel), "a folder, not a file"));
            }
            _ => {
                return Err(Violation::WrongKind(
                    self.full(rel),
                    "a fifo, socket or device, not a file",
                ));
            }
        }
        // A hardlinked file may be another file's content (outside the root, on the same
        // filesystem): never read through it. No file pinetboot reads is hardlinked in images.
        if st.st_nlink > 1 {
            return Err(Violation::WrongKind(
                self.full(rel),
                "a hardlink (a file with several names)",
            ));
        }
        if st.st_size as u64 > MAX_READ {
            return Err(Violation::TooLarge(self.full(rel), st.st_size as u64));
        }
        // Reopen the very inode the O_PATH handle holds (not the path again: it could have
        // been swapped for a device in between), then make sure it is still that inode.
        let fd = super::bounded::reopen_for_reading(&path_fd)
            .map_err(|e| Violation::Io(self.full(rel), e))?;
        let again = rustix::fs::fstat(&fd).map_err(|e| self.map_err(rel, e))?;
        if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino)
            || FileType::from_raw_mode(again.st_mode) != FileType::RegularFile
        {
            return Err(Violation::WrongKind(
                self.full(rel),
                "replaced while being read",
            ));
        }
        let mut buf = Vec::with_capacity(st.st_size as usize);
        std::fs::File::from(fd)
            .take(MAX_READ + 1)
            .read_to_end(&mut buf)
            .map_err(|e| Violation::Io(self.full(rel), e))?;
        if buf.len() as u64 > MAX_READ {
            return Err(Violation::TooLarge(self.full(rel), buf.len() as u64));
        }
        Ok(Some(buf))
    }

    /// Checks that `rel` may be replaced by a file: missing, or a regular file. A symlink,
    /// folder or special file there is a violation (fail closed: we do not replace what the
    /// client put there without being asked).
    pub fn check_replaceable(&self, rel: &Path) -> Result<(), Violation> {
        self.replaceable(rel, self.entry(rel)?)
    }

    /// As [`Tree::check_replaceable`], for the entry at `rel` already looked at.
    pub fn replaceable(&self, rel: &Path, entry: Option<Entry>) -> Result<(), Violation> {
        match entry {
            None => Ok(()),
            Some(e) => match e.kind {
                EntryKind::File => Ok(()),
                EntryKind::Symlink => Err(Violation::Symlink(self.full(rel))),
                EntryKind::Dir => Err(Violation::WrongKind(
                    self.full(rel),
                    "a folder where a file belongs",
                )),
                EntryKind::Special => Err(Violation::WrongKind(
                    self.full(rel),
                    "a fifo, socket or device where a file belongs",
                )),
            },
        }
    }

    /// Atomically writes a regular file at `rel` (its folder must exist).
    pub fn write(&self, rel: &Path, content: &[u8], owner: Owner) -> Result<(), Violation> {
        self.check_replaceable(rel)?;
        let (parent, name) = self.parent_and_name(rel)?;
        let dir = self.existing_dir(&parent)?;
        let name = name
            .to_str()
            .ok_or_else(|| Violation::WrongKind(self.full(rel), "not a UTF-8 name"))?;
        atomic::replace_in(&dir, name, content, owner).map_err(|e| Violation::Io(self.full(rel), e))
    }

    /// Creates the folder `rel` and any missing parents with `owner`; existing folders are
    /// kept as they are. A symlink or file on the way is a violation.
    pub fn create_dirs(&self, rel: &Path, owner: Owner) -> Result<(), Violation> {
        let mut so_far = PathBuf::new();
        for c in rel.components() {
            let Component::Normal(s) = c else {
                return Err(Violation::WrongKind(
                    self.full(rel),
                    "not a plain relative path",
                ));
            };
            let dir = self.existing_dir(&so_far)?;
            so_far.push(s);
            match rustix::fs::mkdirat(&dir, s, Mode::from_raw_mode(owner.mode)) {
                Ok(()) => {
                    let fd = self.existing_dir(&so_far)?;
                    if owner.uid.is_some() || owner.gid.is_some() {
                        rustix::fs::fchown(
                            &fd,
                            owner.uid.map(rustix::fs::Uid::from_raw),
                            owner.gid.map(rustix::fs::Gid::from_raw),
                        )
                        .map_err(|e| self.map_err(&so_far, e))?;
                    }
                    rustix::fs::fchmod(&fd, Mode::from_raw_mode(owner.mode))
                        .map_err(|e| self.map_err(&so_far, e))?;
                }
                Err(rustix::io::Errno::EXIST) => {
                    // Must be a real folder, not a planted link.
                    self.open_dir(&so_far)?;
                }
                Err(e) => return Err(self.map_err(&so_far, e)),
            }
        }
        Ok(())
    }

    /// Reads the target of the symlink at `rel`; `None` when missing or not a symlink.
    pub fn read_link(&self, rel: &Path) -> Result<Option<Vec<u8>>, Violation> {
        let (parent, name) = self.parent_and_name(rel)?;
        let Some(dir) = self.open_dir(&parent)? else {
            return Ok(None);
        };
        match rustix::fs::readlinkat(&dir, name, Vec::new()) {
            Ok(t) => Ok(Some(t.into_bytes())),
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::INVAL) => Ok(None),
            Err(e) => Err(self.map_err(rel, e)),
        }
    }

    /// Atomically makes `rel` a symlink to `target` (replacing a file or symlink there, never a
    /// folder). The link itself is only ever read by the client, never followed by us.
    pub fn symlink(&self, rel: &Path, target: &[u8]) -> Result<(), Violation> {
        let (parent, name) = self.parent_and_name(rel)?;
        if let Some(e) = self.entry(rel)?
            && matches!(e.kind, EntryKind::Dir | EntryKind::Special)
        {
            return Err(Violation::WrongKind(
                self.full(rel),
                "a folder or special file where a link belongs",
            ));
        }
        let dir = self.existing_dir(&parent)?;
        atomic::remove_stale_temps(&dir, &name.to_string_lossy())
            .map_err(|e| Violation::Io(self.full(rel), e))?;
        let tmp = atomic::temp_name(&name.to_string_lossy());
        let io = |e: rustix::io::Errno| Violation::Io(self.full(rel), e.into());
        rustix::fs::symlinkat(OsStr::from_bytes(target), &dir, tmp.as_str()).map_err(io)?;
        if let Err(e) = rustix::fs::renameat(&dir, tmp.as_str(), &dir, name) {
            let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
            return Err(io(e));
        }
        rustix::fs::fsync(&dir).map_err(io)?;
        Ok(())
    }

    /// Removes a file or symlink at `rel` (never a folder); missing is fine.
    pub fn remove(&self, rel: &Path) -> Result<(), Violation> {
        let (parent, name) = self.parent_and_name(rel)?;
        let Some(dir) = self.open_dir(&parent)? else {
            return Ok(());
        };
        match rustix::fs::unlinkat(&dir, name, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(self.map_err(rel, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/hostname"), "pi\n").unwrap();
        std::fs::write(t.path().join("outside"), "secret\n").unwrap();
        (t, root)
    }

    #[test]
    fn reads_and_writes_plain_files() {
        let (_t, root) = tree();
        let tr = Tree::open(&root).unwrap();
        assert_eq!(
            tr.read(Path::new("etc/hostname")).unwrap().unwrap(),
            b"pi\n"
        );
        assert!(tr.read(Path::new("etc/missing")).unwrap().is_none());
        tr.write(Path::new("etc/hostname"), b"raspi1\n", Owner::mode(0o644))
            .unwrap();
        assert_eq!(
            std::fs::read(root.join("etc/hostname")).unwrap(),
            b"raspi1\n"
        );
    }

    #[test]
    fn refuses_symlinks_anywhere() {
        let (t, root) = tree();
        symlink(t.path().join("outside"), root.join("etc/fstab")).unwrap();
        symlink(t.path(), root.join("escape")).unwrap();
        symlink("../../", root.join("etc/up")).unwrap();
        let tr = Tree::open(&root).unwrap();
        assert!(matches!(
            tr.read(Path::new("etc/fstab")),
            Err(Violation::Symlink(_))
        ));
        assert!(matches!(
            tr.read(Path::new("escape/outside")),
            Err(Violation::Symlink(_))
        ));
        assert!(matches!(
            tr.read(Path::new("etc/up/outside")),
            Err(Violation::Symlink(_))
        ));
        assert!(matches!(
            tr.write(Path::new("etc/fstab"), b"x", Owner::mode(0o644)),
            Err(Violation::Symlink(_))
        ));
        assert!(matches!(
            tr.write(Path::new("escape/outside"), b"x", Owner::mode(0o644)),
            Err(Violation::Symlink(_))
        ));
        assert_eq!(
            std::fs::read(t.path().join("outside")).unwrap(),
            b"secret\n"
        );
        assert!(tr.read(Path::new("../outside")).is_err());
        assert!(tr.read(Path::new("/etc/hostname")).is_err());
    }

    #[test]
    fn refuses_fifos_without_blocking() {
        let (_t, root) = tree();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("etc/fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let tr = Tree::open(&root).unwrap();
        assert!(matches!(
            tr.read(Path::new("etc/fifo")),
            Err(Violation::WrongKind(..))
        ));
        assert!(
            tr.write(Path::new("etc/fifo"), b"x", Owner::mode(0o644))
                .is_err()
        );
    }

    /// A tree shaped like a real Debian root: merged /usr, os-release a relative link,
    /// an absolute link, and links that try to leave the tree.
    fn debian_like() -> (tempfile::TempDir, PathBuf) {
        let (t, root) = tree();
        std::fs::create_dir_all(root.join("usr/lib/systemd/system")).unwrap();
        std::fs::write(root.join("usr/lib/os-release"), "ID=debian\n").unwrap();
        std::fs::write(root.join("usr/lib/systemd/system/ssh.service"), "[Unit]\n").unwrap();
        symlink("../usr/lib/os-release", root.join("etc/os-release")).unwrap();
        symlink("usr/lib", root.join("lib")).unwrap();
        symlink("/usr/lib/os-release", root.join("etc/abs-release")).unwrap();
        symlink("../../../../outside", root.join("etc/dotdot")).unwrap();
        symlink(t.path().join("outside"), root.join("etc/absolute-out")).unwrap();
        symlink("loop-b", root.join("etc/loop-a")).unwrap();
        symlink("loop-a", root.join("etc/loop-b")).unwrap();
        symlink("/proc/self/root/etc/hostname", root.join("etc/magic")).unwrap();
        (t, root)
    }

    #[test]
    fn facts_resolve_symlinks_inside_the_tree() {
        let (_t, root) = debian_like();
        let tr = Tree::open(&root).unwrap();
        let read = |p: &str| tr.read_resolved(Path::new(p));
        assert_eq!(read("etc/os-release").unwrap().unwrap(), b"ID=debian\n");
        assert_eq!(read("etc/abs-release").unwrap().unwrap(), b"ID=debian\n");
        assert_eq!(
            read("lib/systemd/system/ssh.service").unwrap().unwrap(),
            b"[Unit]\n"
        );
        assert_eq!(
            tr.entry_resolved(Path::new("lib/systemd/system"))
                .unwrap()
                .unwrap()
                .kind,
            EntryKind::Dir
        );
        // `..` stops at the tree's root and an absolute target resolves against it: the
        // file outside is never reached (the same name inside would be).
        assert!(read("etc/dotdot").unwrap().is_none());
        assert!(read("etc/absolute-out").unwrap().is_none());
        assert!(matches!(read("etc/loop-a"), Err(Violation::WrongKind(..))));
        assert!(read("etc/magic").is_err() || read("etc/magic").unwrap().is_none());
        // Writes and managed reads still refuse every symlink.
        assert!(matches!(
            tr.read(Path::new("etc/os-release")),
            Err(Violation::Symlink(_))
        ));
        assert!(matches!(
            tr.write(Path::new("lib/x"), b"x", Owner::mode(0o644)),
            Err(Violation::Symlink(_))
        ));
    }

    #[test]
    fn a_fact_that_resolves_to_a_folder_or_device_is_refused() {
        let (_t, root) = debian_like();
        symlink("/usr/lib", root.join("etc/passwd")).unwrap();
        let tr = Tree::open(&root).unwrap();
        assert!(matches!(
            tr.read_resolved(Path::new("etc/passwd")),
            Err(Violation::WrongKind(..))
        ));
    }

    /// A character device with a major number no driver has: opening it fails with ENXIO, so
    /// a refusal that is not an I/O error proves it was never opened.
    #[test]
    fn device_nodes_are_never_opened() {
        if !rustix::process::geteuid().is_root() {
            panic!("device_nodes_are_never_opened needs root (mknod)");
        }
        let (_t, root) = tree();
        let dev = rustix::fs::makedev(234, 77);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("etc/fstab"),
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o644),
            dev,
        )
        .unwrap();
        symlink("fstab", root.join("etc/fstab-link")).unwrap();
        let tr = Tree::open(&root).unwrap();
        for r in [
            tr.read(Path::new("etc/fstab")),
            tr.read_resolved(Path::new("etc/fstab")),
            tr.read_resolved(Path::new("etc/fstab-link")),
        ] {
            assert!(
                matches!(r, Err(Violation::WrongKind(_, k)) if k.contains("device")),
                "{r:?}"
            );
        }
    }

    #[test]
    fn writing_replaces_a_hardlink_instead_of_writing_through() {
        let (t, root) = tree();
        std::fs::remove_file(root.join("etc/hostname")).unwrap();
        std::fs::hard_link(t.path().join("outside"), root.join("etc/hostname")).unwrap();
        let tr = Tree::open(&root).unwrap();
        tr.write(Path::new("etc/hostname"), b"raspi1\n", Owner::mode(0o644))
            .unwrap();
        assert_eq!(
            std::fs::read(t.path().join("outside")).unwrap(),
            b"secret\n"
        );
    }
}
