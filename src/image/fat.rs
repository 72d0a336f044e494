//! The FAT boot partition, read with `fatfs` behind a write-refusing
//! wrapper, replayed into a [`TreeWriter`].

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::tree::{Meta, TreeWriter};

use super::{Counts, ImageError};

/// Deepest FAT directory nesting accepted (a cycle is caught here).
const MAX_DEPTH: usize = 32;
/// Most entries accepted in one FAT directory (the format's own limit).
const MAX_DIR_ENTRIES: usize = 65536;

/// A partition of the image file as a seekable reader (bounds-checked).
pub(crate) struct OffsetReader {
    file: File,
    offset: u64,
    len: u64,
    pos: u64,
}

impl OffsetReader {
    pub(crate) fn new(file: File, offset: u64, len: u64) -> Self {
        OffsetReader {
            file,
            offset,
            len,
            pos: 0,
        }
    }
}

impl Read for OffsetReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        let got = self.file.read_at(&mut buf[..n], self.offset + self.pos)?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl Seek for OffsetReader {
    fn seek(&mut self, p: SeekFrom) -> io::Result<u64> {
        let new = match p {
            SeekFrom::Start(s) => Some(s),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
        };
        match new {
            Some(n) => {
                self.pos = n;
                Ok(n)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the partition",
            )),
        }
    }
}

/// Refuses every write: `fatfs` wants `Read + Write + Seek`, and the image is
/// never modified.
pub(crate) struct ReadOnly<T>(pub(crate) T);

impl<T: Read> Read for ReadOnly<T> {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        self.0.read(b)
    }
}

impl<T: Seek> Seek for ReadOnly<T> {
    fn seek(&mut self, p: SeekFrom) -> io::Result<u64> {
        self.0.seek(p)
    }
}

impl<T> Write for ReadOnly<T> {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::PermissionDenied.into())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm); any input gives a number, never a panic.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// FAT local time taken as UTC (FAT stores no time zone).
fn fat_time(dt: fatfs::DateTime) -> (i64, u32) {
    let days = days_from_civil(
        i64::from(dt.date.year),
        i64::from(dt.date.month),
        i64::from(dt.date.day),
    );
    let secs = days * 86_400
        + i64::from(dt.time.hour) * 3600
        + i64::from(dt.time.min) * 60
        + i64::from(dt.time.sec);
    (secs, u32::from(dt.time.millis.min(999)) * 1_000_000)
}

pub(crate) struct FatWalk<'a> {
    pub(crate) image: &'a Path,
    pub(crate) writer: &'a mut TreeWriter,
    pub(crate) counts: Counts,
    pub(crate) part_len: u64,
    pub(crate) progress: &'a dyn Fn(u64, u64),
    pub(crate) progress_total: u64,
    pub(crate) progress_base: u64,
}

impl FatWalk<'_> {
    fn err(&self, inside: &Path, source: io::Error) -> ImageError {
        ImageError::Fat {
            path: self.image.to_path_buf(),
            inside: inside.to_path_buf(),
            source,
        }
    }

    /// Copies every entry of `dir` to `rel` in the tree.
    pub(crate) fn walk<T: fatfs::ReadWriteSeek>(
        &mut self,
        dir: &fatfs::Dir<'_, T>,
        rel: &Path,
        inside: &Path,
        depth: usize,
    ) -> Result<(), ImageError> {
        if depth > MAX_DEPTH {
            return Err(ImageError::Hostile {
                path: self.image.to_path_buf(),
                reason: format!(
                    "FAT directories nested deeper than {MAX_DEPTH} at {} (cycle?)",
                    inside.display()
                ),
            });
        }
        let mut n = 0usize;
        for entry in dir.iter() {
            let entry = entry.map_err(|e| self.err(inside, e))?;
            n += 1;
            if n > MAX_DIR_ENTRIES {
                return Err(ImageError::Hostile {
                    path: self.image.to_path_buf(),
                    reason: format!(
                        "more than {MAX_DIR_ENTRIES} entries in FAT directory {} (cycle?)",
                        inside.display()
                    ),
                });
            }
            let name = entry.file_name();
            if name == "." || name == ".." {
                continue;
            }
            if name.is_empty() || name.contains('/') || name.contains('\0') {
                return Err(ImageError::Hostile {
                    path: self.image.to_path_buf(),
                    reason: format!("bad FAT name {name:?} in {}", inside.display()),
                });
            }
            let child_rel = rel.join(&name);
            let child_inside = inside.join(&name);
            let mtime = fat_time(entry.modified());
            if entry.is_dir() {
                let mut meta = Meta::new(0o755, 0, 0);
                meta.mtime = mtime;
                meta.atime = mtime;
                self.writer.dir(&child_rel, meta)?;
                self.counts.dirs += 1;
                let sub = entry.to_dir();
                self.walk(&sub, &child_rel, &child_inside, depth + 1)?;
            } else {
                let len = entry.len();
                if len > self.part_len {
                    return Err(ImageError::Hostile {
                        path: self.image.to_path_buf(),
                        reason: format!(
                            "FAT file {} claims {len} bytes, more than its partition",
                            child_inside.display()
                        ),
                    });
                }
                let mut meta = Meta::new(0o644, 0, 0);
                meta.mtime = mtime;
                meta.atime = mtime;
                let mut file = entry.to_file();
                let written = self.writer.file(&child_rel, meta, &mut file)?;
                self.counts.files += 1;
                self.counts.bytes += written;
                (self.progress)(self.progress_base + self.counts.bytes, self.progress_total);
            }
        }
        Ok(())
    }
}

/// Opens the FAT filesystem of a partition (read-only wrapper).
pub(crate) fn open(
    image: &Path,
    file: File,
    offset: u64,
    len: u64,
) -> Result<fatfs::FileSystem<ReadOnly<OffsetReader>>, ImageError> {
    fatfs::FileSystem::new(
        ReadOnly(OffsetReader::new(file, offset, len)),
        fatfs::FsOptions::new(),
    )
    .map_err(|e| ImageError::Fat {
        path: image.to_path_buf(),
        inside: PathBuf::from("/"),
        source: e,
    })
}
