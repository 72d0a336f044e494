//! [`copy_tree`]: faithful copy of a directory tree into a new folder.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Statx, StatxFlags};

use super::{Meta, Result, TreeError, TreeWriter, io_err, open_dir_nofollow, xattr};

/// What [`copy_tree`] copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Regular files whose data was copied (hardlinks not counted again).
    pub files: u64,
    /// Directories, the root excluded.
    pub dirs: u64,
    /// Symlinks (copied as links, never followed).
    pub symlinks: u64,
    /// Extra names of an already copied inode (re-created with `linkat`).
    pub hardlinks: u64,
    /// Device nodes, fifos and sockets.
    pub specials: u64,
    /// Bytes of regular file data (file sizes, holes included).
    pub bytes: u64,
    /// Regular files whose data was shared by reflink (`FICLONE`).
    pub reflinked: u64,
    /// Extended attributes copied, over all entries.
    pub xattrs: u64,
}

fn stx_at(dir: BorrowedFd<'_>, name: &OsStr, full: &Path) -> Result<Statx> {
    rustix::fs::statx(
        dir,
        name,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS,
    )
    .map_err(io_err("stat", full))
}

fn stx_fd(fd: BorrowedFd<'_>, full: &Path) -> Result<Statx> {
    rustix::fs::statx(fd, "", AtFlags::EMPTY_PATH, StatxFlags::BASIC_STATS)
        .map_err(io_err("stat", full))
}

fn file_type(st: &Statx) -> FileType {
    FileType::from_raw_mode(st.stx_mode.into())
}

/// Metadata of the inode `fd` (any descriptor kind) refers to.
fn meta_of(fd: BorrowedFd<'_>, st: &Statx, full: &Path) -> Result<Meta> {
    Ok(Meta {
        mode: u32::from(st.stx_mode) & 0o7777,
        uid: st.stx_uid,
        gid: st.stx_gid,
        atime: (st.stx_atime.tv_sec, st.stx_atime.tv_nsec),
        mtime: (st.stx_mtime.tv_sec, st.stx_mtime.tv_nsec),
        xattrs: xattr::read_all(fd).map_err(io_err("read xattrs of", full))?,
    })
}

/// Opens `name` in `dir` without following it and checks it is still the
/// inode `st` describes.
fn open_same(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    flags: OFlags,
    st: &Statx,
    full: &Path,
) -> Result<(OwnedFd, Statx)> {
    let fd = rustix::fs::openat(
        dir,
        name,
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(io_err("open", full))?;
    let now = stx_fd(fd.as_fd(), full)?;
    if now.stx_ino != st.stx_ino
        || now.stx_dev_major != st.stx_dev_major
        || now.stx_dev_minor != st.stx_dev_minor
        || file_type(&now) != file_type(st)
    {
        return Err(TreeError::Changed {
            path: full.to_path_buf(),
        });
    }
    Ok((fd, now))
}

type InodeKey = (u32, u32, u64);

struct Copier {
    src_root: PathBuf,
    writer: TreeWriter,
    stats: CopyStats,
    links: HashMap<InodeKey, PathBuf>,
}

impl Copier {
    fn walk(&mut self, dir: BorrowedFd<'_>, rel: &Path) -> Result<()> {
        let dir_full = self.src_root.join(rel);
        let mut names: Vec<OsString> = Vec::new();
        let reader =
            rustix::fs::Dir::read_from(dir).map_err(io_err("read directory", &dir_full))?;
        for entry in reader {
            let entry = entry.map_err(io_err("read directory", &dir_full))?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(OsString::from_vec(name.to_vec()));
            }
        }
        names.sort();
        for name in names {
            let child_rel = if rel.as_os_str().is_empty() {
                PathBuf::from(&name)
            } else {
                rel.join(&name)
            };
            self.entry(dir, &name, &child_rel)?;
        }
        Ok(())
    }

    fn entry(&mut self, dir: BorrowedFd<'_>, name: &OsStr, rel: &Path) -> Result<()> {
        let full = self.src_root.join(rel);
        let st = stx_at(dir, name, &full)?;
        let kind = file_type(&st);
        if kind != FileType::Directory && st.stx_nlink > 1 {
            let key = (st.stx_dev_major, st.stx_dev_minor, st.stx_ino);
            if let Some(first) = self.links.get(&key) {
                self.writer.hardlink(rel, first)?;
                self.stats.hardlinks += 1;
                return Ok(());
            }
            self.links.insert(key, rel.to_path_buf());
        }
        match kind {
            FileType::Directory => {
                let (fd, st) =
                    open_same(dir, name, OFlags::RDONLY | OFlags::DIRECTORY, &st, &full)?;
                let meta = meta_of(fd.as_fd(), &st, &full)?;
                self.stats.xattrs += meta.xattrs.len() as u64;
                self.writer.dir(rel, meta)?;
                self.stats.dirs += 1;
                self.walk(fd.as_fd(), rel)?;
            }
            FileType::RegularFile => {
                let (fd, st) = open_same(dir, name, OFlags::RDONLY | OFlags::NONBLOCK, &st, &full)?;
                let meta = meta_of(fd.as_fd(), &st, &full)?;
                self.stats.xattrs += meta.xattrs.len() as u64;
                let out = self.writer.file_copy(rel, meta, fd.as_fd())?;
                self.stats.files += 1;
                self.stats.bytes += out.bytes;
                self.stats.reflinked += u64::from(out.reflinked);
                crate::host::atomic::pause_point("clone");
            }
            _ => {
                let (fd, st) = open_same(dir, name, OFlags::PATH, &st, &full)?;
                let meta = meta_of(fd.as_fd(), &st, &full)?;
                self.stats.xattrs += meta.xattrs.len() as u64;
                let rdev = rustix::fs::makedev(st.stx_rdev_major, st.stx_rdev_minor);
                match kind {
                    FileType::Symlink => {
                        let target = rustix::fs::readlinkat(dir, name, Vec::new())
                            .map_err(io_err("read symlink", &full))?;
                        self.writer.symlink(rel, target.as_bytes(), meta)?;
                        self.stats.symlinks += 1;
                    }
                    FileType::CharacterDevice
                    | FileType::BlockDevice
                    | FileType::Fifo
                    | FileType::Socket => {
                        self.writer.special_node(rel, kind, rdev, meta)?;
                        self.stats.specials += 1;
                    }
                    _ => {
                        return Err(TreeError::InvalidMeta {
                            path: full,
                            reason: format!("unknown file type {:o}", st.stx_mode),
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

/// Copies the tree at `src` into the new directory `dst_staging` (which must
/// not exist) through a [`TreeWriter`], keeping every owner, mode (setuid,
/// setgid, sticky), symlink (copied as a link, never followed), hardlink
/// (grouped by (device, inode); later names link to the first path),
/// character/block device, fifo, socket, xattr and nanosecond timestamp
/// (atime and mtime; ctime cannot be set). The root directory's own metadata
/// is copied too. Regular file data is reflinked where the filesystem allows.
///
/// The walk never follows a symlink (the root itself must be a directory,
/// not a symlink) but does descend into mount points below `src`. Each
/// directory level keeps one descriptor open, so the depth is bounded by the
/// open-file limit. On error the partial `dst_staging` is left for the
/// caller to remove.
pub fn copy_tree(src: &Path, dst_staging: &Path) -> Result<CopyStats> {
    let root = open_dir_nofollow(src, "open source directory")?;
    let st = stx_fd(root.as_fd(), src)?;
    let root_meta = meta_of(root.as_fd(), &st, src)?;
    let mut writer =
        TreeWriter::create(dst_staging)?.with_copy_threads(TreeWriter::default_copy_threads());
    let mut stats = CopyStats {
        xattrs: root_meta.xattrs.len() as u64,
        ..CopyStats::default()
    };
    writer.set_root_meta(root_meta)?;
    let mut copier = Copier {
        src_root: src.to_path_buf(),
        writer,
        stats: std::mem::take(&mut stats),
        links: HashMap::new(),
    };
    copier.walk(root.as_fd(), Path::new(""))?;
    let Copier { writer, stats, .. } = copier;
    writer.finish()?;
    Ok(stats)
}
