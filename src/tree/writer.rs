//! [`TreeWriter`]: create a tree entry by entry, confined beneath its root.

use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::Timespec;
use rustix::fs::{
    AtFlags, CWD, FileType, Mode, OFlags, ResolveFlags, SeekFrom, StatxFlags, Timestamps,
};
use rustix::io::Errno;

use super::pool::{DataPool, Job, Source};
use super::{Meta, Result, TreeError, check_rel_path, io_err, open_dir_nofollow, split_rel, xattr};
use crate::ioerr::IoError;

/// Size of the blocks checked for zeros when writing sparse files.
const SPARSE_BLOCK: usize = 4096;
/// Buffer size for data copies.
const BUF_SIZE: usize = 256 * 1024;

/// How a file's data was written by [`TreeWriter::file_copy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileCopy {
    /// Bytes of the file (its size, holes included).
    pub bytes: u64,
    /// True when the data was shared with the source by `FICLONE`.
    pub reflinked: bool,
}

/// Writes a new tree under a root directory that it creates itself.
///
/// Entries are added by path relative to the root; every parent must have
/// been added before (with [`TreeWriter::dir`]). Each entry is created in a
/// parent directory opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS
/// | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)`, then its metadata is applied
/// in this order: owner (`fchownat` without following; before the mode,
/// because chown clears setuid/setgid and file capabilities), mode, xattrs,
/// and timestamps last. Directory metadata is deferred to
/// [`TreeWriter::finish`], which applies it deepest first (so a setgid bit or
/// a default ACL is not inherited by entries created later, and directory
/// mtimes are not disturbed by their children).
///
/// Dropping a writer without calling `finish` leaves a partial tree behind
/// (directories still `0700 root:root`); the caller removes the staging dir.
pub struct TreeWriter {
    root_path: PathBuf,
    root: Arc<OwnedFd>,
    root_meta: Option<Meta>,
    dirs: Vec<(PathBuf, Meta)>,
    parent_cache: Option<(PathBuf, Arc<OwnedFd>)>,
    caps_warned: bool,
    pool: Option<DataPool>,
}

fn timespec(t: (i64, u32), path: &Path) -> Result<Timespec> {
    if t.1 >= 1_000_000_000 {
        return Err(TreeError::InvalidMeta {
            path: path.to_path_buf(),
            reason: format!("nanoseconds {} out of range", t.1),
        });
    }
    Ok(Timespec {
        tv_sec: t.0,
        tv_nsec: t.1.into(),
    })
}

fn timestamps(meta: &Meta, path: &Path) -> Result<Timestamps> {
    Ok(Timestamps {
        last_access: timespec(meta.atime, path)?,
        last_modification: timespec(meta.mtime, path)?,
    })
}

/// The owner to set. `(uid_t)-1` is not an owner: chown reads it as "leave unchanged", so
/// the entry would silently stay root's; an image that claims it is refused.
fn owner(meta: &Meta, path: &Path) -> Result<(rustix::fs::Uid, rustix::fs::Gid)> {
    if meta.uid == u32::MAX || meta.gid == u32::MAX {
        return Err(TreeError::InvalidMeta {
            path: path.to_path_buf(),
            reason: format!(
                "owner {}:{} (4294967295 is (uid_t)-1, which chown reads as \"no change\")",
                meta.uid, meta.gid
            ),
        });
    }
    Ok((
        rustix::fs::Uid::from_raw(meta.uid),
        rustix::fs::Gid::from_raw(meta.gid),
    ))
}

fn mode_bits(meta: &Meta) -> Mode {
    Mode::from_raw_mode(meta.mode & 0o7777)
}

fn check_xattrs(meta: &Meta, path: &Path) -> Result<()> {
    for (name, _) in &meta.xattrs {
        if name.is_empty() || name.contains(&0) {
            return Err(TreeError::InvalidMeta {
                path: path.to_path_buf(),
                reason: format!("bad xattr name {:?}", String::from_utf8_lossy(name)),
            });
        }
    }
    Ok(())
}

/// `pwrite` all of `buf` at `off`.
fn pwrite_all(fd: BorrowedFd<'_>, mut buf: &[u8], mut off: u64) -> Result<(), Errno> {
    while !buf.is_empty() {
        match rustix::io::pwrite(fd, buf, off) {
            Ok(0) => return Err(Errno::IO),
            Ok(n) => {
                buf = &buf[n..];
                off += n as u64;
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes `buf` at `off`, skipping blocks of zeros (left as holes).
pub(crate) fn write_sparse_chunk(fd: BorrowedFd<'_>, buf: &[u8], off: u64) -> Result<(), Errno> {
    let mut i = 0;
    while i < buf.len() {
        // Skip a run of zero blocks.
        while i < buf.len() {
            let end = (i + SPARSE_BLOCK).min(buf.len());
            if buf[i..end].iter().all(|&b| b == 0) {
                i = end;
            } else {
                break;
            }
        }
        // Write a run of non-zero blocks.
        let start = i;
        while i < buf.len() {
            let end = (i + SPARSE_BLOCK).min(buf.len());
            if buf[i..end].iter().all(|&b| b == 0) {
                break;
            }
            i = end;
        }
        if i > start {
            pwrite_all(fd, &buf[start..i], off + start as u64)?;
        }
    }
    Ok(())
}

fn is_fallback_errno(e: Errno) -> bool {
    matches!(
        e,
        Errno::OPNOTSUPP | Errno::XDEV | Errno::INVAL | Errno::NOTTY | Errno::NOSYS
    )
}

/// Copies `len` bytes at `src_off` of `src` to `dst_off` of `dst`:
/// `copy_file_range` while it works, then `pread`/`pwrite` (zero blocks
/// left as holes). Returns the bytes copied (fewer if `src` ends first).
fn copy_range(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    (src_off, dst_off): (u64, u64),
    len: u64,
    use_cfr: &mut bool,
    buf: &mut Vec<u8>,
) -> Result<u64, Errno> {
    let mut done = 0u64;
    while done < len {
        let want = (len - done).min(1 << 30) as usize;
        if *use_cfr {
            let mut off_in = src_off + done;
            let mut off_out = dst_off + done;
            match rustix::fs::copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), want)
            {
                Ok(0) => return Ok(done), // source shrank
                Ok(n) => done += n as u64,
                Err(Errno::INTR) => {}
                Err(e) if is_fallback_errno(e) => *use_cfr = false,
                Err(e) => return Err(e),
            }
        } else {
            if buf.is_empty() {
                buf.resize(BUF_SIZE, 0);
            }
            let want = want.min(buf.len());
            match rustix::io::pread(src, &mut buf[..want], src_off + done) {
                Ok(0) => return Ok(done),
                Ok(n) => {
                    write_sparse_chunk(dst, &buf[..n], dst_off + done)?;
                    done += n as u64;
                }
                Err(Errno::INTR) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(done)
}

/// Copies the data segments of `src` into `dst` (holes stay holes) and sets
/// the size. Returns the size.
fn copy_data(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) -> Result<u64, Errno> {
    let size = rustix::fs::fstat(src)?.st_size.max(0) as u64;
    let mut use_cfr = true;
    let mut buf = Vec::new();
    let mut pos = 0u64;
    let mut end = 0u64;
    while pos < size {
        let data = match rustix::fs::seek(src, SeekFrom::Data(pos)) {
            Ok(d) => d,
            Err(Errno::NXIO) => break,
            Err(Errno::INVAL | Errno::OPNOTSUPP) => pos, // no SEEK_DATA: all data
            Err(e) => return Err(e),
        };
        let hole = match rustix::fs::seek(src, SeekFrom::Hole(data)) {
            Ok(h) => h,
            Err(Errno::NXIO) => break,
            Err(Errno::INVAL | Errno::OPNOTSUPP) => size,
            Err(e) => return Err(e),
        };
        if hole <= data {
            break;
        }
        let n = copy_range(src, dst, (data, data), hole - data, &mut use_cfr, &mut buf)?;
        end = data + n;
        if n < hole - data {
            break; // source shrank
        }
        pos = hole;
    }
    let final_size = size.max(end);
    rustix::fs::ftruncate(dst, final_size)?;
    Ok(final_size)
}

/// Copies `(source offset, file offset, length)` runs of `src` into `dst`
/// and sets its size to `size` (the rest stays holes).
fn copy_runs(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    runs: &[(u64, u64, u64)],
    size: u64,
    full: &Path,
) -> Result<()> {
    let mut use_cfr = true;
    let mut buf = Vec::new();
    for &(from, at, len) in runs {
        let n = copy_range(src, dst, (from, at), len, &mut use_cfr, &mut buf)
            .map_err(io_err("copy data into", full))?;
        if n < len {
            return Err(io_err("copy data into (source too short)", full)(Errno::IO));
        }
    }
    rustix::fs::ftruncate(dst, size).map_err(io_err("set size of", full))
}

/// A run of a file's data: `(source offset, file offset, length)`.
pub(super) type Run = (u64, u64, u64);

/// Copies a file's data into the new file `dst` — every data segment of
/// `src` at the same offsets, or with `runs`, those `(source offset, file
/// offset, length)` runs of `src` for a file of `size` bytes — then starts
/// its writeback. Returns the file's size. Used inline and by the
/// [`DataPool`] alike.
pub(super) fn fill_data(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    runs: Option<(&[Run], u64)>,
    full: &Path,
) -> Result<u64> {
    let size = match runs {
        None => copy_data(src, dst).map_err(io_err("copy data into", full))?,
        Some((runs, size)) => {
            copy_runs(src, dst, runs, size, full)?;
            size
        }
    };
    start_writeback(dst, size);
    Ok(size)
}

/// Sets xattrs through an open descriptor.
fn set_xattrs_fd(fd: BorrowedFd<'_>, meta: &Meta, full: &Path) -> Result<()> {
    for (name, value) in &meta.xattrs {
        xattr::set(fd, name, value).map_err(|e| {
            TreeError::Io(IoError::new(
                "set xattr",
                full.join(format!("[{}]", String::from_utf8_lossy(name))),
                e,
            ))
        })?;
    }
    Ok(())
}

/// Applies owner, mode, xattrs and times (in that order: chown clears
/// setuid/setgid and capabilities) through an open (non-`O_PATH`)
/// descriptor of a regular file or directory.
pub(super) fn apply_meta(fd: BorrowedFd<'_>, meta: &Meta, full: &Path) -> Result<()> {
    let times = timestamps(meta, full)?;
    let (uid, gid) = owner(meta, full)?;
    rustix::fs::fchown(fd, Some(uid), Some(gid)).map_err(io_err("chown", full))?;
    rustix::fs::fchmod(fd, mode_bits(meta)).map_err(io_err("chmod", full))?;
    set_xattrs_fd(fd, meta, full)?;
    rustix::fs::futimens(fd, &times).map_err(io_err("set times of", full))?;
    Ok(())
}

/// A second descriptor of the same open file (for a copy thread).
fn dup(fd: BorrowedFd<'_>, full: &Path) -> Result<OwnedFd> {
    rustix::io::fcntl_dupfd_cloexec(fd, 0).map_err(io_err("duplicate descriptor for", full))
}

/// Files at least this large have their data copied by the writer's
/// [`DataPool`], if it has one.
const POOL_MIN_BYTES: u64 = 256 * 1024;

/// Files smaller than this are left to the final `syncfs` (see
/// [`start_writeback`]).
const WRITEBACK_MIN_BYTES: u64 = 128 * 1024;

/// Starts writing a large file's dirty pages back to disk without waiting
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), so that the `syncfs` that
/// makes a finished tree durable has little left to wait for: the disk
/// works while the next files are written. Small files are left to that
/// `syncfs`, which writes them in large batches: one submission per small
/// file costs more CPU (a virtio notification each, on a VM) than it saves.
/// Best effort; errors are ignored (the `syncfs` reports real I/O errors).
// The crate's one unsafe block: neither rustix nor std wraps sync_file_range.
#[allow(unsafe_code)]
fn start_writeback(fd: BorrowedFd<'_>, size: u64) {
    if size < WRITEBACK_MIN_BYTES {
        return;
    }
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range only reads its integer arguments; `fd` is a
    // descriptor borrowed for the duration of the call.
    let _ = unsafe { libc::sync_file_range(fd.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
}

impl TreeWriter {
    /// Creates the directory `dst` (which must not exist; its parent must)
    /// with mode 0700 and returns a writer rooted there. The root's final
    /// metadata is set by [`TreeWriter::set_root_meta`] and applied by
    /// [`TreeWriter::finish`].
    pub fn create(dst: &Path) -> Result<Self> {
        match rustix::fs::mkdirat(CWD, dst, Mode::from_raw_mode(0o700)) {
            Ok(()) => {}
            Err(Errno::EXIST) => return Err(TreeError::DestinationExists(dst.to_path_buf())),
            Err(e) => return Err(io_err("create directory", dst)(e)),
        }
        let root = open_dir_nofollow(dst, "open directory")?;
        // xattrs and modes of special files go through /proc/self/fd.
        rustix::fs::statx(
            CWD,
            xattr::proc_path(root.as_fd()),
            AtFlags::empty(),
            StatxFlags::TYPE,
        )
        .map_err(|e| {
            TreeError::Io(IoError::new(
                "find /proc/self/fd (is /proc mounted?) for",
                dst.to_path_buf(),
                e,
            ))
        })?;
        Ok(TreeWriter {
            root_path: dst.to_path_buf(),
            root: Arc::new(root),
            root_meta: None,
            dirs: Vec::new(),
            parent_cache: None,
            caps_warned: false,
            pool: None,
        })
    }

    /// Lets `threads` more threads copy the data of large files while this
    /// one goes on with the walk (0: everything inline). Their errors come
    /// back from a later call or from [`TreeWriter::finish`].
    pub fn with_copy_threads(mut self, threads: usize) -> Self {
        self.pool = if threads > 0 {
            DataPool::new(threads)
        } else {
            None
        };
        self
    }

    /// Copy threads worth using on this machine: one less than its cores.
    pub fn default_copy_threads() -> usize {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .saturating_sub(1)
            .min(8)
    }

    /// Hands a file whose data is still to be copied to the pool (which
    /// then applies its metadata).
    fn fill(&mut self, fd: OwnedFd, full: PathBuf, meta: Meta, source: Source) -> Result<()> {
        self.warn_caps(&meta, &full);
        let pool = self.pool.as_ref().expect("fill is only called with a pool");
        pool.submit(Job {
            fd,
            full,
            meta,
            source,
        })
    }

    /// The root directory of the tree being written.
    pub fn root_path(&self) -> &Path {
        &self.root_path
    }

    /// Sets the metadata of the root directory itself (applied by `finish`).
    pub fn set_root_meta(&mut self, meta: Meta) -> Result<()> {
        timestamps(&meta, &self.root_path)?;
        check_xattrs(&meta, &self.root_path)?;
        self.root_meta = Some(meta);
        Ok(())
    }

    fn full(&self, rel: &Path) -> PathBuf {
        self.root_path.join(rel)
    }

    /// Opens a directory of the tree (relative path, "" = root) without
    /// following any symlink and without leaving the tree.
    fn open_dir(&self, rel: &Path, full: &Path) -> Result<Arc<OwnedFd>> {
        if rel.as_os_str().is_empty() {
            return Ok(self.root.clone());
        }
        let mut tries = 0;
        loop {
            match rustix::fs::openat2(
                self.root.as_fd(),
                rel,
                // No O_NOFOLLOW: RESOLVE_NO_SYMLINKS refuses a trailing symlink
                // too, with ELOOP (O_NOFOLLOW would turn it into ENOTDIR).
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::BENEATH
                    | ResolveFlags::NO_SYMLINKS
                    | ResolveFlags::NO_MAGICLINKS
                    | ResolveFlags::NO_XDEV,
            ) {
                Ok(fd) => return Ok(Arc::new(fd)),
                Err(Errno::AGAIN) if tries < 8 => tries += 1,
                Err(Errno::LOOP | Errno::XDEV) => {
                    return Err(TreeError::SymlinkOnPath {
                        path: full.to_path_buf(),
                    });
                }
                Err(e) => return Err(io_err("open parent directory of", full)(e)),
            }
        }
    }

    /// Checks `rel` and opens its parent. Returns (parent fd, name, full path).
    fn parent<'a>(&mut self, rel: &'a Path) -> Result<(Arc<OwnedFd>, &'a OsStr, PathBuf)> {
        check_rel_path(rel)?;
        let full = self.full(rel);
        let (parent, name) = split_rel(rel);
        if let Some((p, fd)) = &self.parent_cache
            && p == parent
        {
            return Ok((fd.clone(), name, full));
        }
        let fd = self.open_dir(parent, &full)?;
        self.parent_cache = Some((parent.to_path_buf(), fd.clone()));
        Ok((fd, name, full))
    }

    fn warn_caps(&mut self, meta: &Meta, full: &Path) {
        if !self.caps_warned
            && meta
                .xattrs
                .iter()
                .any(|(n, _)| n.as_slice() == b"security.capability")
        {
            self.caps_warned = true;
            tracing::warn!(
                path = %full.display(),
                tree = %self.root_path.display(),
                "file capabilities (security.capability) are kept, but NFS ignores them: \
                 clients see these binaries without capabilities"
            );
        }
    }

    fn set_xattrs(&mut self, fd: BorrowedFd<'_>, meta: &Meta, full: &Path) -> Result<()> {
        self.warn_caps(meta, full);
        set_xattrs_fd(fd, meta, full)
    }

    /// Applies owner, mode, xattrs and times through an open (non-`O_PATH`)
    /// descriptor of a regular file or directory.
    fn apply_fd(&mut self, fd: BorrowedFd<'_>, meta: &Meta, full: &Path) -> Result<()> {
        self.warn_caps(meta, full);
        apply_meta(fd, meta, full)
    }

    /// Applies metadata to a just-created non-regular, non-directory entry
    /// (`want` is its expected type), never following it if it is a symlink.
    fn apply_at(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &OsStr,
        want: FileType,
        meta: &Meta,
        full: &Path,
    ) -> Result<()> {
        let times = timestamps(meta, full)?;
        let (uid, gid) = owner(meta, full)?;
        rustix::fs::chownat(
            parent,
            name,
            Some(uid),
            Some(gid),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(io_err("chown", full))?;
        let needs_fd = want != FileType::Symlink || !meta.xattrs.is_empty();
        if needs_fd {
            let fd = rustix::fs::openat(
                parent,
                name,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(io_err("open", full))?;
            let st = rustix::fs::statx(&fd, "", AtFlags::EMPTY_PATH, StatxFlags::TYPE)
                .map_err(io_err("stat", full))?;
            if FileType::from_raw_mode(st.stx_mode.into()) != want {
                return Err(TreeError::Changed {
                    path: full.to_path_buf(),
                });
            }
            if want != FileType::Symlink {
                // chmod follows the magic link to exactly this inode.
                rustix::fs::chmod(xattr::proc_path(fd.as_fd()), mode_bits(meta))
                    .map_err(io_err("chmod", full))?;
            }
            self.set_xattrs(fd.as_fd(), meta, full)?;
        }
        rustix::fs::utimensat(parent, name, &times, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(io_err("set times of", full))?;
        Ok(())
    }

    /// Adds a directory. Its metadata is applied by [`TreeWriter::finish`].
    pub fn dir(&mut self, rel: &Path, meta: Meta) -> Result<()> {
        let (parent, name, full) = self.parent(rel)?;
        timestamps(&meta, &full)?;
        check_xattrs(&meta, &full)?;
        rustix::fs::mkdirat(&*parent, name, Mode::from_raw_mode(0o700))
            .map_err(io_err("create directory", &full))?;
        self.dirs.push((rel.to_path_buf(), meta));
        Ok(())
    }

    fn create_file(&mut self, rel: &Path, meta: &Meta) -> Result<(OwnedFd, PathBuf)> {
        let (parent, name, full) = self.parent(rel)?;
        timestamps(meta, &full)?;
        check_xattrs(meta, &full)?;
        let fd = rustix::fs::openat(
            &*parent,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(io_err("create file", &full))?;
        Ok((fd, full))
    }

    /// Adds a regular file whose content is read from `data` to its end.
    /// Blocks of zeros are left as holes. Returns the file size.
    pub fn file(&mut self, rel: &Path, meta: Meta, data: &mut dyn Read) -> Result<u64> {
        let (fd, full) = self.create_file(rel, &meta)?;
        let mut buf = vec![0u8; BUF_SIZE];
        let mut off = 0u64;
        loop {
            let n = match data.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(TreeError::Io(IoError::new("read the data for", full, e)));
                }
            };
            write_sparse_chunk(fd.as_fd(), &buf[..n], off).map_err(io_err("write", &full))?;
            off += n as u64;
        }
        rustix::fs::ftruncate(&fd, off).map_err(io_err("set size of", &full))?;
        start_writeback(fd.as_fd(), off);
        self.apply_fd(fd.as_fd(), &meta, &full)?;
        Ok(off)
    }

    /// Adds a regular file of `size` bytes whose data are `runs` of `src`
    /// (`(source offset, file offset, length)`, in file order, not
    /// overlapping, inside `size`): copied with `copy_file_range` (in the
    /// kernel, no user-space buffer), else `pread`/`pwrite`. The rest of the
    /// file is holes. Returns the size.
    pub fn file_runs(
        &mut self,
        rel: &Path,
        meta: Meta,
        src: BorrowedFd<'_>,
        size: u64,
        runs: &[(u64, u64, u64)],
    ) -> Result<u64> {
        let mut end = 0u64;
        for &(_, at, len) in runs {
            if at < end || at.checked_add(len).is_none_or(|e| e > size) {
                return Err(TreeError::InvalidMeta {
                    path: self.full(rel),
                    reason: format!("data run {at}+{len} overlaps another or ends past {size}"),
                });
            }
            end = at + len;
        }
        let (fd, full) = self.create_file(rel, &meta)?;
        if self.pool.is_some() && size >= POOL_MIN_BYTES {
            let source = Source::Runs {
                src: dup(src, &full)?,
                runs: runs.to_vec(),
                size,
            };
            self.fill(fd, full, meta, source)?;
        } else {
            fill_data(src, fd.as_fd(), Some((runs, size)), &full)?;
            self.apply_fd(fd.as_fd(), &meta, &full)?;
        }
        Ok(size)
    }

    /// Adds a regular file with the content of the open file `src`: reflink
    /// (`FICLONE`) first; where the filesystem refuses (`EOPNOTSUPP`, `EXDEV`,
    /// `EINVAL`...), `copy_file_range` over its data segments (holes kept),
    /// else `pread`/`pwrite`.
    pub fn file_copy(&mut self, rel: &Path, meta: Meta, src: BorrowedFd<'_>) -> Result<FileCopy> {
        let (fd, full) = self.create_file(rel, &meta)?;
        let out = match rustix::fs::ioctl_ficlone(&fd, src) {
            Ok(()) => FileCopy {
                bytes: rustix::fs::fstat(&fd)
                    .map_err(io_err("stat", &full))?
                    .st_size
                    .max(0) as u64,
                reflinked: true,
            },
            Err(e) if is_fallback_errno(e) => {
                let size = rustix::fs::fstat(src)
                    .map_err(io_err("stat", &full))?
                    .st_size
                    .max(0) as u64;
                if self.pool.is_some() && size >= POOL_MIN_BYTES {
                    let source = Source::Whole(dup(src, &full)?);
                    self.fill(fd, full, meta, source)?;
                    return Ok(FileCopy {
                        bytes: size,
                        reflinked: false,
                    });
                }
                let bytes = fill_data(src, fd.as_fd(), None, &full)?;
                FileCopy {
                    bytes,
                    reflinked: false,
                }
            }
            Err(e) => return Err(io_err("reflink data into", &full)(e)),
        };
        self.apply_fd(fd.as_fd(), &meta, &full)?;
        Ok(out)
    }

    /// Adds a symlink with the raw `target` (never resolved, may dangle or be
    /// absolute). `meta.mode` is ignored (symlinks are always 0777 on Linux).
    pub fn symlink(&mut self, rel: &Path, target: &[u8], meta: Meta) -> Result<()> {
        let (parent, name, full) = self.parent(rel)?;
        if target.is_empty() || target.contains(&0) || target.len() >= 4096 {
            return Err(TreeError::InvalidMeta {
                path: full,
                reason: "symlink target is empty, too long or contains NUL".into(),
            });
        }
        timestamps(&meta, &full)?;
        check_xattrs(&meta, &full)?;
        rustix::fs::symlinkat(OsStr::from_bytes(target), &*parent, name)
            .map_err(io_err("create symlink", &full))?;
        self.apply_at(parent.as_fd(), name, FileType::Symlink, &meta, &full)
    }

    /// Adds `rel` as another name of the already written entry `existing`
    /// (never a directory). Neither path's parents may contain symlinks, and
    /// a symlink `existing` is linked itself, not followed.
    pub fn hardlink(&mut self, rel: &Path, existing: &Path) -> Result<()> {
        check_rel_path(existing)?;
        let (parent, name, full) = self.parent(rel)?;
        let (eparent_rel, ename) = split_rel(existing);
        let efull = self.full(existing);
        let eparent = self.open_dir(eparent_rel, &efull)?;
        rustix::fs::linkat(&*eparent, ename, &*parent, name, AtFlags::empty()).map_err(|e| {
            TreeError::Io(IoError::new(
                "create hardlink",
                format!("{} -> {}", full.display(), efull.display()),
                e,
            ))
        })
    }

    fn special(
        &mut self,
        rel: &Path,
        kind: FileType,
        rdev: u64,
        meta: Meta,
        what: &'static str,
    ) -> Result<()> {
        let (parent, name, full) = self.parent(rel)?;
        timestamps(&meta, &full)?;
        check_xattrs(&meta, &full)?;
        rustix::fs::mknodat(&*parent, name, kind, Mode::from_raw_mode(0o600), rdev)
            .map_err(io_err(what, &full))?;
        self.apply_at(parent.as_fd(), name, kind, &meta, &full)
    }

    /// Adds a character device (`rdev` as from `makedev(major, minor)`).
    pub fn char_dev(&mut self, rel: &Path, rdev: u64, meta: Meta) -> Result<()> {
        self.special(
            rel,
            FileType::CharacterDevice,
            rdev,
            meta,
            "create character device",
        )
    }

    /// Adds a block device (`rdev` as from `makedev(major, minor)`).
    pub fn block_dev(&mut self, rel: &Path, rdev: u64, meta: Meta) -> Result<()> {
        self.special(
            rel,
            FileType::BlockDevice,
            rdev,
            meta,
            "create block device",
        )
    }

    /// Adds a fifo (named pipe).
    pub fn fifo(&mut self, rel: &Path, meta: Meta) -> Result<()> {
        self.special(rel, FileType::Fifo, 0, meta, "create fifo")
    }

    /// Adds a unix socket node (`mknod S_IFSOCK`; nothing listens on it).
    pub fn socket(&mut self, rel: &Path, meta: Meta) -> Result<()> {
        self.special(rel, FileType::Socket, 0, meta, "create socket")
    }

    /// Adds a special file of type `kind`: a character or block device (with
    /// `rdev`), a fifo or a socket (`rdev` ignored), as the methods above.
    /// Any other type is refused as invalid metadata.
    pub fn special_node(
        &mut self,
        rel: &Path,
        kind: FileType,
        rdev: u64,
        meta: Meta,
    ) -> Result<()> {
        match kind {
            FileType::CharacterDevice => self.char_dev(rel, rdev, meta),
            FileType::BlockDevice => self.block_dev(rel, rdev, meta),
            FileType::Fifo => self.fifo(rel, meta),
            FileType::Socket => self.socket(rel, meta),
            _ => Err(TreeError::InvalidMeta {
                path: self.full(rel),
                reason: format!("{kind:?} is not a special file type"),
            }),
        }
    }

    /// Applies directory metadata, deepest directories first and the root
    /// last (owner, mode, xattrs, then times), and closes the writer.
    pub fn finish(mut self) -> Result<()> {
        if let Some(pool) = self.pool.take() {
            pool.join()?;
        }
        self.parent_cache = None;
        let mut dirs = std::mem::take(&mut self.dirs);
        // Deepest first; stable, so siblings keep their order.
        dirs.sort_by_key(|(rel, _)| {
            std::cmp::Reverse(
                rel.as_os_str()
                    .as_bytes()
                    .iter()
                    .filter(|&&b| b == b'/')
                    .count(),
            )
        });
        for (rel, meta) in &dirs {
            let full = self.full(rel);
            let fd = self.open_dir(rel, &full)?;
            self.apply_fd(fd.as_fd(), meta, &full)?;
        }
        if let Some(meta) = self.root_meta.take() {
            let root = self.root.clone();
            let full = self.root_path.clone();
            self.apply_fd(root.as_fd(), &meta, &full)?;
        }
        Ok(())
    }
}
