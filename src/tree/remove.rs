//! Measuring and removing a tree pinetboot left behind (a staging folder of a killed clone or
//! unpack, a scratch folder of a killed tool check).
//!
//! Such a tree came from an image or a client root: it may hold symlinks to anywhere, device
//! nodes, fifos, and (put there by someone else) mounts. The walk works on directory
//! descriptors only: every entry is looked at with `statx(AT_SYMLINK_NOFOLLOW)` relative to
//! its folder's descriptor, a folder is entered with `openat(O_NOFOLLOW | O_DIRECTORY)` and
//! checked to be the inode just looked at, and a name is removed with `unlinkat`. A symlink is
//! never followed (it is removed as a link), and a mount point (an entry on another mount than
//! the tree's top, by mount ID, or on another device) is never descended into: [`measure`]
//! reports it, [`remove`] refuses the whole tree before deleting anything, and refuses again
//! if one appears while it works.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags, Statx, StatxFlags};

/// Folders nested deeper than this are refused (each level holds one descriptor).
pub const MAX_DEPTH: usize = 1024;

/// What [`measure`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Measure {
    /// Apparent size: bytes of regular file data (sizes, holes included; hardlinks once).
    pub bytes: u64,
    /// Entries (the top included).
    pub entries: u64,
    /// Mount points inside the tree (or the top itself: an empty path), relative to the top.
    pub mounts: Vec<PathBuf>,
}

fn stx_at(dir: BorrowedFd<'_>, name: &OsStr) -> rustix::io::Result<Statx> {
    rustix::fs::statx(
        dir,
        name,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS | StatxFlags::MNT_ID,
    )
}

fn stx_fd(fd: BorrowedFd<'_>) -> rustix::io::Result<Statx> {
    rustix::fs::statx(
        fd,
        "",
        AtFlags::EMPTY_PATH,
        StatxFlags::BASIC_STATS | StatxFlags::MNT_ID,
    )
}

fn file_type(st: &Statx) -> FileType {
    FileType::from_raw_mode(st.stx_mode.into())
}

/// Where an inode lives: its mount (when the kernel says, Linux ≥ 5.8) and its device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Place {
    mnt_id: Option<u64>,
    dev: (u32, u32),
}

impl Place {
    fn of(st: &Statx) -> Place {
        let has_mnt_id = st.stx_mask & StatxFlags::MNT_ID.bits() != 0;
        Place {
            mnt_id: has_mnt_id.then_some(st.stx_mnt_id),
            dev: (st.stx_dev_major, st.stx_dev_minor),
        }
    }

    /// Whether an inode at `other` is on another mount than this one.
    fn differs(&self, other: &Place) -> bool {
        self.dev != other.dev || matches!((self.mnt_id, other.mnt_id), (Some(a), Some(b)) if a != b)
    }
}

struct Walk<'a> {
    /// The top, for messages.
    top: &'a Path,
    place: Place,
    remove: bool,
    found: Measure,
    links: HashSet<(u32, u32, u64)>,
}

fn read_names(dir: BorrowedFd<'_>, full: &Path) -> anyhow::Result<Vec<OsString>> {
    let mut names = Vec::new();
    let reader =
        rustix::fs::Dir::read_from(dir).with_context(|| format!("reading {}", full.display()))?;
    for entry in reader {
        let entry = entry.with_context(|| format!("reading {}", full.display()))?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsString::from_vec(name.to_vec()));
        }
    }
    names.sort();
    Ok(names)
}

fn mounted_inside(top: &Path, rel: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "{} is a mount point inside {}: pinetboot never removes anything through a mount; unmount it, then apply again",
        top.join(rel).display(),
        top.display()
    )
}

impl Walk<'_> {
    /// Walks (and with `remove`, empties) the folder `dir`, which is `rel` below the top.
    fn dir(&mut self, dir: BorrowedFd<'_>, rel: &Path, depth: usize) -> anyhow::Result<()> {
        let full = self.top.join(rel);
        if depth > MAX_DEPTH {
            bail!(
                "{} is nested deeper than {MAX_DEPTH} folders; remove it by hand",
                full.display()
            );
        }
        for name in read_names(dir, &full)? {
            let child_rel = rel.join(&name);
            let child = self.top.join(&child_rel);
            let st = match stx_at(dir, &name) {
                Ok(st) => st,
                Err(rustix::io::Errno::NOENT) => continue,
                Err(e) => return Err(e).with_context(|| format!("stat {}", child.display())),
            };
            if self.place.differs(&Place::of(&st)) {
                if self.remove {
                    return Err(mounted_inside(self.top, &child_rel));
                }
                self.found.mounts.push(child_rel);
                continue;
            }
            self.found.entries += 1;
            match file_type(&st) {
                FileType::Directory => {
                    let fd = self.open_dir(dir, &name, &st, &child_rel)?;
                    self.dir(fd.as_fd(), &child_rel, depth + 1)?;
                    drop(fd);
                    if self.remove {
                        rustix::fs::unlinkat(dir, name.as_os_str(), AtFlags::REMOVEDIR)
                            .with_context(|| format!("removing {}", child.display()))?;
                    }
                }
                kind => {
                    // Hardlinks once (while removing, a later name has fewer links left).
                    let key = (st.stx_dev_major, st.stx_dev_minor, st.stx_ino);
                    if kind == FileType::RegularFile && !self.links.contains(&key) {
                        self.found.bytes += st.stx_size;
                        if st.stx_nlink > 1 {
                            self.links.insert(key);
                        }
                    }
                    if self.remove {
                        rustix::fs::unlinkat(dir, name.as_os_str(), AtFlags::empty())
                            .with_context(|| format!("removing {}", child.display()))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Opens the folder `name` of `dir` without following it, and checks it is the inode
    /// `st` describes and on the tree's mount (a mount made since the look is refused too).
    fn open_dir(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        st: &Statx,
        rel: &Path,
    ) -> anyhow::Result<OwnedFd> {
        let full = self.top.join(rel);
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("opening {}", full.display()))?;
        let now = stx_fd(fd.as_fd()).with_context(|| format!("stat {}", full.display()))?;
        if self.place.differs(&Place::of(&now)) {
            return Err(mounted_inside(self.top, rel));
        }
        if now.stx_ino != st.stx_ino || file_type(&now) != FileType::Directory {
            bail!("{} changed while it was being removed", full.display());
        }
        Ok(fd)
    }
}

/// The top: its parent folder's descriptor, its name, and what it is.
fn open_top(path: &Path) -> anyhow::Result<Option<(OwnedFd, OsString, Statx, Place)>> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        bail!("{} is not a path pinetboot removes", path.display());
    };
    let parent_fd = rustix::fs::openat(
        CWD,
        parent,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("opening {}", parent.display()))?;
    let st = match stx_at(parent_fd.as_fd(), name) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("stat {}", path.display())),
    };
    let parent_place = Place::of(
        &stx_fd(parent_fd.as_fd()).with_context(|| format!("stat {}", parent.display()))?,
    );
    Ok(Some((parent_fd, name.to_owned(), st, parent_place)))
}

fn walk_top(path: &Path, remove: bool) -> anyhow::Result<Option<Measure>> {
    let Some((parent_fd, name, st, parent_place)) = open_top(path)? else {
        return Ok(None);
    };
    let place = Place::of(&st);
    let mut walk = Walk {
        top: path,
        place,
        remove,
        found: Measure {
            entries: 1,
            ..Measure::default()
        },
        links: HashSet::new(),
    };
    if parent_place.differs(&place) {
        if remove {
            bail!(
                "{} is a mount point: pinetboot never removes anything through a mount; unmount it, then apply again",
                path.display()
            );
        }
        walk.found.mounts.push(PathBuf::new());
        return Ok(Some(walk.found));
    }
    if file_type(&st) != FileType::Directory {
        if file_type(&st) == FileType::RegularFile {
            walk.found.bytes = st.stx_size;
        }
        if remove {
            rustix::fs::unlinkat(parent_fd.as_fd(), name.as_os_str(), AtFlags::empty())
                .with_context(|| format!("removing {}", path.display()))?;
        }
        return Ok(Some(walk.found));
    }
    let fd = walk.open_dir(parent_fd.as_fd(), &name, &st, Path::new(""))?;
    if remove {
        // Nothing is deleted from a tree with a mount inside: look first.
        let mut look = Walk {
            top: path,
            place,
            remove: false,
            found: Measure::default(),
            links: HashSet::new(),
        };
        look.dir(fd.as_fd(), Path::new(""), 0)?;
        if let Some(m) = look.found.mounts.first() {
            return Err(mounted_inside(path, m));
        }
    }
    walk.dir(fd.as_fd(), Path::new(""), 0)?;
    drop(fd);
    if remove {
        rustix::fs::unlinkat(parent_fd.as_fd(), name.as_os_str(), AtFlags::REMOVEDIR)
            .with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(Some(walk.found))
}

/// Measures the tree (or file) at `path` without following a symlink or entering a mount
/// (mounts are listed instead). `None` when nothing is there.
pub fn measure(path: &Path) -> anyhow::Result<Option<Measure>> {
    walk_top(path, false)
}

/// Removes the tree (or file, or symlink: never its target) at `path`, refusing, before
/// anything is deleted, when it is or holds a mount point. Returns what was removed; `None`
/// when nothing was there.
pub fn remove(path: &Path) -> anyhow::Result<Option<Measure>> {
    walk_top(path, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn measures_and_removes_without_following_links() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), b"12345").unwrap();
        let top = t.path().join(".x.pinetboot-staging");
        std::fs::create_dir_all(top.join("a/b/c")).unwrap();
        std::fs::write(top.join("a/file"), vec![0u8; 1000]).unwrap();
        std::fs::hard_link(top.join("a/file"), top.join("a/b/link")).unwrap();
        std::fs::write(top.join("a/b/c/other"), b"xy").unwrap();
        symlink(&outside, top.join("a/to-outside")).unwrap();
        symlink(outside.join("keep"), top.join("keep-link")).unwrap();
        rustix::fs::mknodat(
            CWD,
            top.join("fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let m = measure(&top).unwrap().unwrap();
        assert_eq!(m.bytes, 1002, "hardlinks once, links and fifos not counted");
        assert_eq!(m.entries, 10);
        assert!(m.mounts.is_empty());
        let r = remove(&top).unwrap().unwrap();
        assert_eq!(r, m);
        assert!(top.symlink_metadata().is_err());
        assert_eq!(std::fs::read(outside.join("keep")).unwrap(), b"12345");
        assert!(measure(&top).unwrap().is_none());
        assert!(remove(&top).unwrap().is_none());
    }

    #[test]
    fn a_symlink_or_file_at_the_top_is_removed_itself() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("target");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("f"), b"x").unwrap();
        let top = t.path().join("link");
        symlink(&target, &top).unwrap();
        assert_eq!(measure(&top).unwrap().unwrap().bytes, 0);
        remove(&top).unwrap();
        assert!(top.symlink_metadata().is_err());
        assert!(target.join("f").is_file());
        let file = t.path().join("abc.download");
        std::fs::write(&file, vec![1u8; 4096]).unwrap();
        assert_eq!(measure(&file).unwrap().unwrap().bytes, 4096);
        remove(&file).unwrap();
        assert!(!file.exists());
    }
}
