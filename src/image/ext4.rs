//! The ext4 root partition, read with `ext4-view` plus the raw supplement,
//! replayed into a [`TreeWriter`].

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use std::os::fd::AsFd;

use ext4_view::{Ext4, FileType, Metadata};

use crate::tree::{Meta, TreeWriter};

use super::ext4raw::{RawFs, RawInode};
use super::{Counts, ImageError};

/// Deepest directory nesting accepted.
const MAX_DEPTH: usize = 256;
/// The root directory's inode number.
pub(crate) const ROOT_INO: u32 = 2;

pub(crate) struct Ext4Walk<'a> {
    pub(crate) image: &'a Path,
    pub(crate) fs: &'a Ext4,
    pub(crate) raw: &'a RawFs,
    pub(crate) writer: &'a mut TreeWriter,
    pub(crate) counts: Counts,
    pub(crate) links: HashMap<u32, PathBuf>,
    pub(crate) visited: HashSet<u32>,
    pub(crate) progress: &'a dyn Fn(u64, u64),
    pub(crate) progress_total: u64,
}

/// Display form of an in-image path.
fn show(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

impl Ext4Walk<'_> {
    pub(crate) fn view_err(&self, inside: &[u8], e: ext4_view::Ext4Error) -> ImageError {
        ImageError::Ext4 {
            path: self.image.to_path_buf(),
            inside: show(inside),
            source: e,
        }
    }

    pub(crate) fn raw_err(&self, inside: &[u8], reason: String) -> ImageError {
        ImageError::Ext4Raw {
            path: self.image.to_path_buf(),
            inside: show(inside),
            reason,
        }
    }

    fn hostile(&self, reason: String) -> ImageError {
        ImageError::Hostile {
            path: self.image.to_path_buf(),
            reason,
        }
    }

    /// Metadata of an inode (ext4-view's `md` plus the raw xattrs), after
    /// checking both readers agree on its type, mode and size.
    pub(crate) fn meta(
        &self,
        abs: &[u8],
        raw: &RawInode,
        md: &Metadata,
    ) -> Result<(Meta, FileType), ImageError> {
        let ft = md.file_type();
        let raw_kind = raw.mode & 0o170000;
        let expect = match ft {
            FileType::BlockDevice => 0o060000,
            FileType::CharacterDevice => 0o020000,
            FileType::Directory => 0o040000,
            FileType::Fifo => 0o010000,
            FileType::Regular => 0o100000,
            FileType::Socket => 0o140000,
            FileType::Symlink => 0o120000,
        };
        if raw_kind != expect || u32::from(md.mode()) != u32::from(raw.mode & 0o7777) {
            return Err(self.raw_err(
                abs,
                format!(
                    "the two readers disagree on the mode ({:o} vs {:o})",
                    md.mode(),
                    raw.mode
                ),
            ));
        }
        if ft != FileType::Directory && md.len() != raw.size {
            return Err(self.raw_err(
                abs,
                format!(
                    "the two readers disagree on the size ({} vs {})",
                    md.len(),
                    raw.size
                ),
            ));
        }
        let (a, m) = (md.accessed(), md.modified());
        Ok((
            Meta {
                mode: u32::from(md.mode()),
                uid: md.uid(),
                gid: md.gid(),
                atime: (a.seconds(), a.nanoseconds()),
                mtime: (m.seconds(), m.nanoseconds()),
                xattrs: raw.xattrs.clone(),
            },
            ft,
        ))
    }

    /// Copies the entries of directory `abs` (inode `ino`) to `rel`.
    pub(crate) fn walk(
        &mut self,
        abs: &[u8],
        ino: u32,
        rel: &Path,
        depth: usize,
    ) -> Result<(), ImageError> {
        if depth > MAX_DEPTH {
            return Err(self.hostile(format!(
                "directories nested deeper than {MAX_DEPTH} at {}",
                show(abs)
            )));
        }
        let raw_dir = self.raw.inode(ino).map_err(|e| self.raw_err(abs, e))?;
        let by_name = self
            .raw
            .dir_entries(&raw_dir)
            .map_err(|e| self.raw_err(abs, e))?;
        // Cross-check the listing with ext4-view's (htree, checksums); its
        // entries read their inodes by number (no path lookups).
        let mut entries = Vec::new();
        for entry in self.fs.read_dir(abs).map_err(|e| self.view_err(abs, e))? {
            let entry = entry.map_err(|e| self.view_err(abs, e))?;
            let name = entry.file_name().as_ref().to_vec();
            if name != b"." && name != b".." {
                let md = entry.metadata().map_err(|e| self.view_err(abs, e))?;
                entries.push((name, md));
            }
        }
        if entries.len() != by_name.len() || entries.iter().any(|(n, _)| !by_name.contains_key(n)) {
            return Err(self.raw_err(
                abs,
                format!(
                    "directory listings disagree ({} vs {} entries)",
                    entries.len(),
                    by_name.len()
                ),
            ));
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, md) in entries {
            if name.is_empty() || name.contains(&b'/') || name.contains(&0) {
                return Err(self.hostile(format!("bad name {:?} in {}", show(&name), show(abs))));
            }
            let child_ino = by_name[&name];
            let mut child_abs = abs.to_vec();
            if child_abs != b"/" {
                child_abs.push(b'/');
            }
            child_abs.extend_from_slice(&name);
            let child_rel =
                rel.join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&name));
            self.entry(&child_abs, child_ino, &child_rel, &md, depth)?;
        }
        Ok(())
    }

    fn entry(
        &mut self,
        abs: &[u8],
        ino: u32,
        rel: &Path,
        md: &Metadata,
        depth: usize,
    ) -> Result<(), ImageError> {
        let raw = self.raw.inode(ino).map_err(|e| self.raw_err(abs, e))?;
        let (meta, ft) = self.meta(abs, &raw, md)?;
        if ft != FileType::Directory && raw.links > 1 {
            if let Some(first) = self.links.get(&ino) {
                self.writer.hardlink(rel, first)?;
                self.counts.hardlinks += 1;
                return Ok(());
            }
            self.links.insert(ino, rel.to_path_buf());
        }
        self.counts.xattrs += meta.xattrs.len() as u64;
        match ft {
            FileType::Directory => {
                if !self.visited.insert(ino) {
                    return Err(self.hostile(format!(
                        "directory cycle: {} is a directory seen before (inode {ino})",
                        show(abs)
                    )));
                }
                self.writer.dir(rel, meta)?;
                self.counts.dirs += 1;
                self.walk(abs, ino, rel, depth + 1)?;
            }
            FileType::Regular => {
                let len = raw.size;
                if len > self.raw.fs_bytes() {
                    return Err(self.hostile(format!(
                        "{} claims {len} bytes, more than its filesystem",
                        show(abs)
                    )));
                }
                let n = match self.raw.file_runs(&raw).map_err(|e| self.raw_err(abs, e))? {
                    // Extent-mapped: copied range by range in the kernel.
                    Some(runs) => {
                        let base = self.raw.partition_offset();
                        let mut copies = Vec::with_capacity(runs.len());
                        for r in &runs {
                            self.raw
                                .ready(r.phys, r.len)
                                .map_err(|e| self.raw_err(abs, e))?;
                            copies.push((base + r.phys, r.logical, r.len));
                        }
                        let src = self.raw.file().as_fd();
                        self.writer.file_runs(rel, meta, src, len, &copies)?
                    }
                    // Block maps or inline data: read through ext4-view.
                    None => {
                        let mut file = self.fs.open(abs).map_err(|e| self.view_err(abs, e))?;
                        self.writer.file(rel, meta, &mut file)?
                    }
                };
                self.counts.files += 1;
                self.counts.bytes += n;
                (self.progress)(self.counts.bytes, self.progress_total);
            }
            FileType::Symlink => {
                let target = match self
                    .raw
                    .symlink_target(&raw)
                    .map_err(|e| self.raw_err(abs, e))?
                {
                    Some(t) => t,
                    None => {
                        let t = self.fs.read_link(abs).map_err(|e| self.view_err(abs, e))?;
                        t.as_ref().to_vec()
                    }
                };
                self.writer.symlink(rel, &target, meta)?;
                self.counts.symlinks += 1;
            }
            FileType::CharacterDevice
            | FileType::BlockDevice
            | FileType::Fifo
            | FileType::Socket => {
                // `meta` checked that `raw.mode`'s type bits agree with `ft`.
                let kind = rustix::fs::FileType::from_raw_mode(raw.mode.into());
                self.writer.special_node(rel, kind, raw.rdev, meta)?;
                self.counts.specials += 1;
            }
        }
        Ok(())
    }
}

/// Reads a small file of the image (following in-image symlinks, which
/// ext4-view resolves inside the filesystem). `None` if it does not exist.
pub(crate) fn read_small(fs: &Ext4, path: &str) -> Option<Vec<u8>> {
    let md = fs.metadata(path).ok()?;
    if !md.file_type().is_regular_file() || md.len() > 1 << 20 {
        return None;
    }
    fs.read(path).ok()
}
