//! The FAT boot partition, read with the in-house reader of `fatvol`
//! (strict about cluster chains), replayed into a [`TreeWriter`].

use std::collections::HashSet;
use std::io;
use std::path::Path;

use crate::tree::{Meta, TreeWriter};

use super::fatvol::{DirLoc, Volume};
use super::{Counts, ImageError};

/// Deepest FAT directory nesting accepted.
const MAX_DEPTH: usize = 32;

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

/// FAT local time taken as UTC (FAT stores no time zone): DOS date and
/// time words, 2-second resolution.
fn fat_time(date: u16, time: u16) -> (i64, u32) {
    let days = days_from_civil(
        i64::from((date >> 9) + 1980),
        i64::from((date >> 5) & 0xF),
        i64::from(date & 0x1F),
    );
    let secs = days * 86_400
        + i64::from(time >> 11) * 3600
        + i64::from((time >> 5) & 0x3F) * 60
        + i64::from(time & 0x1F) * 2;
    (secs, 0)
}

pub(crate) struct FatWalk<'a> {
    pub(crate) image: &'a Path,
    pub(crate) vol: &'a Volume,
    pub(crate) writer: &'a mut TreeWriter,
    pub(crate) counts: Counts,
    pub(crate) part_len: u64,
    pub(crate) progress: &'a dyn Fn(u64, u64),
    pub(crate) progress_total: u64,
    pub(crate) progress_base: u64,
    /// First clusters of the directories entered (a cycle is caught here).
    pub(crate) dirs: HashSet<u32>,
}

impl FatWalk<'_> {
    fn err(&self, inside: &Path, reason: String) -> ImageError {
        ImageError::Fat {
            path: self.image.to_path_buf(),
            inside: inside.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidData, reason),
        }
    }

    fn hostile(&self, reason: String) -> ImageError {
        ImageError::Hostile {
            path: self.image.to_path_buf(),
            reason,
        }
    }

    /// Copies every entry of directory `dir` (at `inside` in the FAT
    /// filesystem) to `rel` in the tree.
    pub(crate) fn walk(
        &mut self,
        dir: DirLoc,
        rel: &Path,
        inside: &Path,
        depth: usize,
    ) -> Result<(), ImageError> {
        if depth > MAX_DEPTH {
            return Err(self.hostile(format!(
                "FAT directories nested deeper than {MAX_DEPTH} at {}",
                inside.display()
            )));
        }
        // The raw directory (up to 2 MiB) is dropped before the walk goes down.
        let entries = {
            let raw = self.vol.dir_bytes(dir).map_err(|e| self.err(inside, e))?;
            self.vol.entries(&raw)
        };
        for entry in entries {
            let name = entry.name;
            if name.is_empty()
                || name == "."
                || name == ".."
                || name.contains('/')
                || name.contains('\0')
            {
                return Err(self.hostile(format!("bad FAT name {name:?} in {}", inside.display())));
            }
            let child_rel = rel.join(&name);
            let child_inside = inside.join(&name);
            let mtime = fat_time(entry.mdate, entry.mtime);
            if entry.is_dir {
                if entry.first_cluster == 0 {
                    return Err(self.err(&child_inside, "a directory without clusters".into()));
                }
                if !self.dirs.insert(entry.first_cluster) {
                    return Err(self.hostile(format!(
                        "FAT directory cycle: {} is a directory seen before (cluster {})",
                        child_inside.display(),
                        entry.first_cluster
                    )));
                }
                let mut meta = Meta::new(0o755, 0, 0);
                meta.mtime = mtime;
                meta.atime = mtime;
                self.writer.dir(&child_rel, meta)?;
                self.counts.dirs += 1;
                self.walk(
                    DirLoc::Chain(entry.first_cluster),
                    &child_rel,
                    &child_inside,
                    depth + 1,
                )?;
            } else {
                let len = u64::from(entry.size);
                if len > self.part_len {
                    return Err(self.hostile(format!(
                        "FAT file {} claims {len} bytes, more than its partition",
                        child_inside.display()
                    )));
                }
                let runs = self
                    .vol
                    .file_runs(entry.first_cluster, len)
                    .map_err(|e| self.err(&child_inside, e))?;
                let mut meta = Meta::new(0o644, 0, 0);
                meta.mtime = mtime;
                meta.atime = mtime;
                let mut data = self.vol.reader(runs);
                let written = self.writer.file(&child_rel, meta, &mut data)?;
                if written != len {
                    return Err(
                        self.err(&child_inside, format!("read {written} of its {len} bytes"))
                    );
                }
                self.counts.files += 1;
                self.counts.bytes += written;
                (self.progress)(self.progress_base + self.counts.bytes, self.progress_total);
            }
        }
        Ok(())
    }
}

/// Opens the FAT filesystem of a partition (`len` bytes at `offset` of
/// the image file).
pub(crate) fn open(
    image: &Path,
    file: std::fs::File,
    offset: u64,
    len: u64,
) -> Result<Volume, ImageError> {
    let vol = Volume::open(file, offset, len).map_err(|reason| ImageError::Fat {
        path: image.to_path_buf(),
        inside: std::path::PathBuf::from("/"),
        source: io::Error::new(io::ErrorKind::InvalidData, reason),
    })?;
    tracing::debug!(kind = ?vol.kind(), "boot partition");
    Ok(vol)
}
