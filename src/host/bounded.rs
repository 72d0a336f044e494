//! Bounded reads of files named by the user or found on the host (`--config`, `eeprom show
//! FILE`, the bootloader image, firmware overrides, `/etc/fstab`, `state.json`, dnsmasq's log).
//!
//! A path is opened `O_PATH` (nothing is really opened: a fifo without a writer cannot block,
//! a device's driver never sees an `open`), its type is read from that descriptor, and anything
//! but a regular file is refused with an error naming the path and what it is. The very inode
//! is then reopened for reading through `/proc/self/fd` (non-blocking, never a controlling
//! terminal) and read up to a cap counted in bytes *read*, never trusting `st_size`: `/proc`
//! files say 0, and a file may grow while it is read.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags};

use crate::ioerr::IoError;

/// Why a bounded read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened or read (`PATH: error`).
    #[error(transparent)]
    Io(#[from] IoError),
    /// Not a regular file (a fifo, device, socket or folder).
    #[error("{} is {what}, not a regular file", path.display())]
    NotRegular {
        /// The file.
        path: PathBuf,
        /// What it is, with its article: `a fifo`, `a character device`, …
        what: &'static str,
    },
    /// More bytes than the cap.
    #[error("{} holds more than {max} bytes ({}), the most pinetboot reads from it", path.display(), human(*max))]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The cap.
        max: u64,
    },
}

impl ReadError {
    /// Whether the file (or a folder on its path) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::Io(e) if e.kind() == io::ErrorKind::NotFound)
    }
}

impl From<ReadError> for io::Error {
    fn from(e: ReadError) -> io::Error {
        let kind = match &e {
            ReadError::Io(e) => e.kind(),
            ReadError::NotRegular { .. } => io::ErrorKind::InvalidInput,
            ReadError::TooLarge { .. } => io::ErrorKind::FileTooLarge,
        };
        io::Error::new(kind, e)
    }
}

/// `1 MiB`, `512 KiB`, `5000 bytes`: the cap as people write it.
fn human(n: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{} {unit}", n >> shift);
        }
    }
    format!("{n} bytes")
}

/// What a file type is called in messages.
pub fn describe(ft: FileType) -> &'static str {
    match ft {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a folder",
        FileType::Symlink => "a symlink",
        FileType::Fifo => "a fifo (named pipe)",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Unknown => "an unknown kind of file",
    }
}

/// Opens the regular file at `path` (following symlinks) for reading without ever opening
/// anything else: `O_PATH`, type check, reopen of the same inode. Returns the file and its size
/// as `fstat` says (a hint only: `/proc` files say 0).
pub fn open_regular(path: &Path) -> Result<(File, u64), ReadError> {
    let io_err = |source: io::Error| ReadError::Io(IoError::at(path, source));
    let handle = rustix::fs::open(path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| io_err(e.into()))?;
    let st = rustix::fs::fstat(&handle).map_err(|e| io_err(e.into()))?;
    let ft = FileType::from_raw_mode(st.st_mode);
    if ft != FileType::RegularFile {
        return Err(ReadError::NotRegular {
            path: path.to_owned(),
            what: describe(ft),
        });
    }
    let fd = reopen_for_reading(&handle).map_err(|e| {
        // Never NotFound: a missing /proc must not read as a missing file.
        io_err(io::Error::other(format!(
            "reopening it through /proc/self/fd (is /proc mounted?): {e}"
        )))
    })?;
    let again = rustix::fs::fstat(&fd).map_err(|e| io_err(e.into()))?;
    if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino)
        || FileType::from_raw_mode(again.st_mode) != FileType::RegularFile
    {
        return Err(io_err(io::Error::other(
            "it was replaced while being opened",
        )));
    }
    Ok((File::from(fd), u64::try_from(again.st_size).unwrap_or(0)))
}

/// Reopens the inode an `O_PATH` descriptor holds, for reading: non-blocking (a regular file
/// ignores it; anything else must never block), never a controlling terminal.
pub(crate) fn reopen_for_reading(path_fd: &OwnedFd) -> io::Result<OwnedFd> {
    let link = format!("/proc/self/fd/{}", path_fd.as_raw_fd());
    Ok(rustix::fs::open(
        link.as_str(),
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Reads the whole regular file at `path`, failing once more than `max` bytes were read.
pub fn read(path: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
    let (file, size) = open_regular(path)?;
    let mut buf = Vec::with_capacity(size.min(max) as usize);
    file.take(max.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|source| ReadError::Io(IoError::at(path, source)))?;
    if buf.len() as u64 > max {
        return Err(ReadError::TooLarge {
            path: path.to_owned(),
            max,
        });
    }
    Ok(buf)
}

/// As [`read`], with `None` when the file does not exist.
pub fn read_if_exists(path: &Path, max: u64) -> Result<Option<Vec<u8>>, ReadError> {
    match read(path, max) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// The end of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tail {
    /// At most `max` bytes from the end, starting at a line (the partial first line of a cut
    /// is dropped).
    pub bytes: Vec<u8>,
    /// The file's size when it was opened.
    pub size: u64,
    /// Whether the start of the file was left out.
    pub cut: bool,
}

/// Reads at most the last `max` bytes of the regular file at `path` (a log may be large;
/// its latest lines are what matter).
pub fn read_tail(path: &Path, max: u64) -> Result<Tail, ReadError> {
    let (mut file, size) = open_regular(path)?;
    let io_err = |source: io::Error| ReadError::Io(IoError::at(path, source));
    let start = size.saturating_sub(max);
    if start > 0 {
        // One byte before, to know whether the cut falls on a line start.
        file.seek(SeekFrom::Start(start - 1)).map_err(io_err)?;
    }
    let mut bytes = Vec::with_capacity(size.min(max) as usize + 1);
    file.take(max + u64::from(start > 0))
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if start > 0 {
        // `bytes[0]` is the byte before the cut: keep from the first whole line.
        let skip = bytes
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |i| i + 1);
        bytes.drain(..skip);
    }
    Ok(Tail {
        bytes,
        size,
        cut: start > 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_a_small_file_and_refuses_one_byte_more() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f");
        std::fs::write(&p, b"12345").unwrap();
        assert_eq!(read(&p, 5).unwrap(), b"12345");
        let e = read(&p, 4).unwrap_err();
        assert!(matches!(e, ReadError::TooLarge { max: 4, .. }), "{e}");
        assert!(e.to_string().contains("more than 4 bytes"), "{e}");
    }

    #[test]
    fn missing_is_none_and_a_folder_is_refused() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(read_if_exists(&t.path().join("no"), 10).unwrap(), None);
        let e = read(t.path(), 10).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{} is a folder, not a regular file", t.path().display())
        );
    }

    #[test]
    fn devices_and_fifos_are_refused_without_being_opened() {
        let e = read(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/dev/zero is a character device, not a regular file"
        );
        let t = tempfile::tempdir().unwrap();
        let fifo = t.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        // No writer: an ordinary open would block here forever.
        let e = read(&fifo, 1 << 20).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("is a fifo (named pipe), not a regular file"),
            "{e}"
        );
        // Through a symlink too: the target's type counts.
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&fifo, &link).unwrap();
        assert!(matches!(read(&link, 10), Err(ReadError::NotRegular { .. })));
    }

    #[test]
    fn the_cap_counts_bytes_read_not_st_size() {
        // /proc files say they are empty; kallsyms holds megabytes.
        let p = Path::new("/proc/kallsyms");
        assert_eq!(std::fs::metadata(p).unwrap().len(), 0);
        let e = read(p, 4096).unwrap_err();
        assert!(matches!(e, ReadError::TooLarge { max: 4096, .. }), "{e}");
        assert!(
            e.to_string().contains("more than 4096 bytes (4 KiB)"),
            "{e}"
        );
    }

    #[test]
    fn tail_keeps_whole_lines_from_the_end() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("log");
        let mut f = std::fs::File::create(&p).unwrap();
        for i in 0..100 {
            writeln!(f, "line {i:03}").unwrap();
        }
        drop(f);
        let all = read_tail(&p, 1 << 20).unwrap();
        assert_eq!((all.size, all.cut), (900, false));
        assert_eq!(all.bytes.len(), 900);
        // 20 bytes from the end: "line 098\nline 099\n" is 18, plus a cut line's tail.
        let tail = read_tail(&p, 20).unwrap();
        assert!(tail.cut);
        assert_eq!(tail.bytes, b"line 098\nline 099\n");
        // A cut exactly on a line start keeps that line.
        let tail = read_tail(&p, 18).unwrap();
        assert_eq!(tail.bytes, b"line 098\nline 099\n");
        assert!(matches!(
            read_tail(Path::new("/dev/null"), 10),
            Err(ReadError::NotRegular { .. })
        ));
    }
}
