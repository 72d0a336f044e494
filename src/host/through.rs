//! Host files others own (`/etc/fstab`), read and replaced **through** symlinks.
//!
//! An administrator may keep `/etc/fstab` in a repository and link it into place. Replacing
//! the link with a regular file would leave the real file without pinetboot's change and
//! silently cut it off from the repository. So the link chain is followed to the file it ends
//! at, and that file is replaced atomically in its own folder, keeping its owner and mode.
//!
//! The host is trusted, so links are followed; but every link resolves **inside the root**
//! (`openat2(RESOLVE_IN_ROOT)`): under `--root DIR` an absolute target `/srv/cfg/fstab` means
//! `DIR/srv/cfg/fstab` and `..` stops at `DIR`, as they would for the host booted from `DIR`
//! (and as `systemctl --root` reads links); with `--root /` this is plain path resolution. A
//! link that leads nowhere, a loop, or a link to something that is not a regular file is an
//! error naming the link and what it points to; nothing is written.
//!
//! Client roots never come here: they are untrusted, and [`super::confined`] never follows a
//! link in them.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};

use super::atomic::{self, Owner};

/// Files read here are small (fstab); a larger one is refused, not read whole.
pub const MAX_READ: u64 = super::confined::MAX_READ;

/// A host file found through any links, with what pinetboot needs to replace it faithfully.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The file the path leads to, with the root prefix.
    pub target: PathBuf,
    /// Its content; `None` when nothing is there (no file and no link).
    pub content: Option<Vec<u8>>,
    /// Its mode and owner (for a file not there yet: 0644, owned by whoever writes it).
    pub owner: Owner,
}

impl Found {
    /// Whether the path is a symlink (or passes through one): the write goes to `target`.
    pub fn linked(&self, root: &Path, host_path: &Path) -> bool {
        self.target != plain(root, host_path)
    }

    /// `target` as the host sees it (without the root prefix).
    pub fn host_target(&self, root: &Path) -> String {
        match self.target.strip_prefix(root) {
            Ok(rel) => format!("/{}", rel.display()),
            Err(_) => self.target.display().to_string(),
        }
    }
}

fn relative(host_path: &Path) -> PathBuf {
    host_path
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s),
            _ => None,
        })
        .collect()
}

fn plain(root: &Path, host_path: &Path) -> PathBuf {
    root.join(relative(host_path))
}

fn in_root() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
}

fn open_root(root: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn error(host_path: &Path, what: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{} {what}", host_path.display()))
}

/// Where `host_path` leads: the final file's descriptor (`O_PATH`), its real path and its
/// metadata; `None` when there is nothing (not even a link).
fn resolve(
    root: &Path,
    host_path: &Path,
) -> io::Result<Option<(OwnedFd, PathBuf, rustix::fs::Stat)>> {
    let dir = open_root(root)?;
    let rel = relative(host_path);
    let fd = match rustix::fs::openat2(
        &dir,
        &rel,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        in_root(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => {
            // Nothing there, or a link that leads nowhere?
            return match rustix::fs::openat2(
                &dir,
                &rel,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
                in_root(),
            ) {
                Ok(link) => {
                    let to = rustix::fs::readlinkat(&link, "", Vec::new())
                        .map(|t| t.to_string_lossy().into_owned())
                        .unwrap_or_else(|_| "?".into());
                    Err(error(
                        host_path,
                        format!(
                            "is a symlink to {to}, which does not exist{}; create the file it \
                             points to, or replace the link with a file",
                            under(root)
                        ),
                    ))
                }
                Err(rustix::io::Errno::NOENT) => Ok(None),
                Err(e) => Err(error(host_path, io::Error::from(e))),
            };
        }
        Err(rustix::io::Errno::LOOP) => {
            return Err(error(
                host_path,
                format!(
                    "is a symlink that loops (or a chain of more than 40 links){}; point it at a file",
                    under(root)
                ),
            ));
        }
        Err(e) => return Err(error(host_path, io::Error::from(e))),
    };
    let st = rustix::fs::fstat(&fd)?;
    let real = rustix::fs::readlink(format!("/proc/self/fd/{}", fd.as_raw_fd()), Vec::new())?;
    let real = PathBuf::from(std::ffi::OsStr::from_bytes(real.as_bytes()));
    if !real.starts_with(root) {
        return Err(error(
            host_path,
            format!("leads to {}, outside {}", real.display(), root.display()),
        ));
    }
    let kind = FileType::from_raw_mode(st.st_mode);
    if kind != FileType::RegularFile {
        let shown = real
            .strip_prefix(root)
            .map_or(real.clone(), |r| Path::new("/").join(r));
        let what = crate::host::bounded::describe(kind);
        return Err(error(
            host_path,
            if shown == host_path {
                format!("is {what}, not a regular file")
            } else {
                format!(
                    "leads to {}, which is {what}, not a regular file",
                    shown.display()
                )
            },
        ));
    }
    Ok(Some((fd, real, st)))
}

fn under(root: &Path) -> String {
    if root == Path::new("/") {
        String::new()
    } else {
        format!(" (links resolve inside the root {})", root.display())
    }
}

/// Reads the host file at `host_path` (a host path, resolved under `root`), following links
/// inside the root. At most [`MAX_READ`] bytes.
pub fn read(root: &Path, host_path: &Path) -> io::Result<Found> {
    let Some((fd, target, st)) = resolve(root, host_path)? else {
        return Ok(Found {
            target: plain(root, host_path),
            content: None,
            owner: Owner::mode(0o644),
        });
    };
    // Reopen the inode just checked (never resolving the path again).
    let file = rustix::fs::open(
        format!("/proc/self/fd/{}", fd.as_raw_fd()),
        OFlags::RDONLY | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut content = Vec::new();
    std::fs::File::from(file)
        .take(MAX_READ + 1)
        .read_to_end(&mut content)?;
    if content.len() as u64 > MAX_READ {
        return Err(error(
            host_path,
            format!("is larger than {MAX_READ} bytes; that is not an fstab pinetboot will edit"),
        ));
    }
    Ok(Found {
        target,
        content: Some(content),
        owner: Owner {
            mode: st.st_mode & 0o7777,
            uid: Some(st.st_uid),
            gid: Some(st.st_gid),
        },
    })
}

/// Replaces the host file at `host_path` with `content`, atomically, **through** links: the
/// file the links end at is replaced in its own folder and keeps its owner and mode. A file
/// not there yet is created (0644, with its folders).
pub fn write(root: &Path, host_path: &Path, content: &[u8]) -> io::Result<()> {
    let (dir, name, owner) = match resolve(root, host_path)? {
        Some((_, target, st)) => {
            let (Some(parent), Some(name)) = (target.parent(), target.file_name()) else {
                return Err(error(host_path, "has no folder"));
            };
            // The real path the kernel resolved: no link left on it.
            let dir = atomic::open_dir(parent)?;
            let owner = Owner {
                mode: st.st_mode & 0o7777,
                uid: Some(st.st_uid),
                gid: Some(st.st_gid),
            };
            (dir, name.to_owned(), owner)
        }
        None => {
            let rel = relative(host_path);
            let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
                return Err(error(host_path, "is not a file path"));
            };
            let open_parent = || {
                rustix::fs::openat2(
                    open_root(root)?,
                    parent,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                    in_root(),
                )
                .map_err(io::Error::from)
            };
            let dir = match open_parent() {
                Ok(d) => d,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    std::fs::create_dir_all(root.join(parent))?;
                    open_parent()?
                }
                Err(e) => return Err(e),
            };
            (dir, name.to_owned(), Owner::mode(0o644))
        }
    };
    let name = name
        .to_str()
        .ok_or_else(|| error(host_path, "leads to a name that is not UTF-8"))?;
    atomic::replace_in(&dir, name, content, owner)
}
