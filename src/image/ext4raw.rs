//! In-house supplement to `ext4-view`: what it does not expose.
//!
//! * inode numbers of directory entries (raw linear scan of the directory's
//!   blocks, which also covers htree directories: index blocks look like
//!   empty entries to a linear reader, as the format intends),
//! * link counts, device numbers (`i_block[0..1]`, old and new encodings),
//! * extended attributes stored in the inode body (after `128 +
//!   i_extra_isize`, magic `0xEA020000`) and in the `i_file_acl` block,
//!   with POSIX ACLs converted from the ext4 on-disk format to the `xattr(7)`
//!   format the kernel expects from `setxattr`.
//!
//! Everything read is bounds-checked; a malformed structure is an error,
//! never a panic. Only extent-mapped directories are supported (what
//! `mke2fs -t ext4` and Raspberry Pi OS produce); checksums are not verified
//! here (ext4-view verifies what it reads).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// Errors of the raw reader: a description; the caller adds the paths.
pub(crate) type RawResult<T> = Result<T, String>;

/// Waits until a byte range of the raw image (absolute offset, length) can
/// be read: the raw image may still be being decoded (see
/// [`super::source::RawImage::ready`]).
pub(crate) type Ready = std::sync::Arc<dyn Fn(u64, u64) -> RawResult<()> + Send + Sync>;

/// A bounds-checked window of the image file (one partition).
pub(crate) struct Window {
    pub(crate) file: File,
    pub(crate) offset: u64,
    pub(crate) len: u64,
    /// Waits for a range still being decoded; `None` when all is there.
    pub(crate) ready: Option<Ready>,
}

impl Window {
    pub(crate) fn read_at(&self, start: u64, dst: &mut [u8]) -> RawResult<()> {
        let end = start
            .checked_add(dst.len() as u64)
            .filter(|&e| e <= self.len)
            .ok_or_else(|| {
                format!(
                    "read of {} bytes at {start} past the end of the partition ({} bytes)",
                    dst.len(),
                    self.len
                )
            })?;
        let _ = end;
        if let Some(ready) = &self.ready {
            ready(self.offset + start, dst.len() as u64)?;
        }
        self.file
            .read_exact_at(dst, self.offset + start)
            .map_err(|e| format!("read at {start}: {e}"))
    }
}

impl ext4_view::Ext4Read for Window {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        self.read_at(start_byte, dst).map_err(|e| e.into())
    }
}

fn le16(b: &[u8], at: usize) -> RawResult<u16> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| format!("truncated structure (u16 at {at})"))
}

fn le32(b: &[u8], at: usize) -> RawResult<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| format!("truncated structure (u32 at {at})"))
}

const EXT4_EXTENTS_FL: u32 = 0x0008_0000;
const EXT4_INLINE_DATA_FL: u32 = 0x1000_0000;
const XATTR_MAGIC: u32 = 0xEA02_0000;
const INCOMPAT_64BIT: u32 = 0x80;

/// The superblock fields the supplement needs.
pub(crate) struct RawFs {
    win: Window,
    block_size: u64,
    blocks_count: u64,
    inodes_count: u32,
    inodes_per_group: u32,
    inode_size: usize,
    desc_size: usize,
    gdt_offset: u64,
    groups: u64,
}

/// One initialised extent: `len` blocks from logical block `lblock` at
/// physical block `pblock`.
#[derive(Debug, Clone, Copy)]
struct Extent {
    lblock: u64,
    len: u64,
    pblock: u64,
}

/// State of one extent tree walk (see [`RawFs::extents`]).
struct ExtentWalk {
    out: Vec<Extent>,
    /// Nodes that may still be visited.
    budget: u32,
    /// First logical block after the last extent seen.
    next: u64,
    /// Extents from this logical block on are not wanted.
    limit: u64,
}

/// A run of a regular file's data: `len` bytes at byte `phys` of the
/// partition are the file's bytes from `logical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    /// Offset in the file.
    pub(crate) logical: u64,
    /// Offset in the partition.
    pub(crate) phys: u64,
    /// Length in bytes.
    pub(crate) len: u64,
}

/// What the supplement knows about one inode.
#[derive(Debug, Clone)]
pub(crate) struct RawInode {
    /// Full `i_mode` (type and permission bits).
    pub(crate) mode: u16,
    /// `i_links_count`.
    pub(crate) links: u16,
    /// Device number (`makedev` encoding) for char/block devices, else 0.
    pub(crate) rdev: u64,
    /// Extended attributes, sorted by name.
    pub(crate) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// `i_size` (file, directory or symlink target length).
    pub(crate) size: u64,
    flags: u32,
    i_block: [u8; 60],
}

impl RawFs {
    /// Reads the superblock of the ext4 filesystem in `win`.
    pub(crate) fn open(win: Window) -> RawResult<Self> {
        let mut sb = [0u8; 1024];
        win.read_at(1024, &mut sb)?;
        if le16(&sb, 0x38)? != 0xEF53 {
            return Err("not an ext2/3/4 filesystem (bad superblock magic)".into());
        }
        let log = le32(&sb, 0x18)?;
        if log > 6 {
            return Err(format!("absurd block size (log {log})"));
        }
        let block_size = 1024u64 << log;
        let incompat = le32(&sb, 0x60)?;
        let mut blocks_count = u64::from(le32(&sb, 0x04)?);
        let desc_size = if incompat & INCOMPAT_64BIT != 0 {
            blocks_count |= u64::from(le32(&sb, 0x150)?) << 32;
            usize::from(le16(&sb, 0xFE)?)
        } else {
            32
        };
        if !(32..=1024).contains(&desc_size) || !desc_size.is_power_of_two() {
            return Err(format!("bad group descriptor size {desc_size}"));
        }
        let inode_size = if le32(&sb, 0x4C)? == 0 {
            128
        } else {
            usize::from(le16(&sb, 0x58)?)
        };
        if !(128..=4096).contains(&inode_size) || !inode_size.is_power_of_two() {
            return Err(format!("bad inode size {inode_size}"));
        }
        let inodes_count = le32(&sb, 0x00)?;
        let inodes_per_group = le32(&sb, 0x28)?;
        if inodes_per_group == 0 {
            return Err("zero inodes per group".into());
        }
        let first_data_block = u64::from(le32(&sb, 0x14)?);
        let groups = u64::from(inodes_count).div_ceil(u64::from(inodes_per_group));
        if blocks_count.saturating_mul(block_size) > win.len {
            return Err(format!(
                "filesystem ({blocks_count} blocks of {block_size}) larger than its partition ({} bytes)",
                win.len
            ));
        }
        Ok(RawFs {
            win,
            block_size,
            blocks_count,
            inodes_count,
            inodes_per_group,
            inode_size,
            desc_size,
            gdt_offset: (first_data_block + 1) * block_size,
            groups,
        })
    }

    /// Offset of the partition in the image file.
    pub(crate) fn partition_offset(&self) -> u64 {
        self.win.offset
    }

    /// Waits until `len` bytes at partition offset `start` can be read
    /// (they may still be being decoded).
    pub(crate) fn ready(&self, start: u64, len: u64) -> RawResult<()> {
        match &self.win.ready {
            Some(ready) => ready(self.win.offset + start, len),
            None => Ok(()),
        }
    }

    /// The image file (to copy data runs from with `copy_file_range`).
    pub(crate) fn file(&self) -> &File {
        &self.win.file
    }

    /// Size of the filesystem in bytes.
    pub(crate) fn fs_bytes(&self) -> u64 {
        self.blocks_count * self.block_size
    }

    fn read_block(&self, block: u64) -> RawResult<Vec<u8>> {
        if block == 0 || block >= self.blocks_count {
            return Err(format!("block {block} out of range"));
        }
        let mut b = vec![0u8; self.block_size as usize];
        self.win.read_at(block * self.block_size, &mut b)?;
        Ok(b)
    }

    /// Reads and decodes inode `ino`.
    pub(crate) fn inode(&self, ino: u32) -> RawResult<RawInode> {
        if ino == 0 || ino > self.inodes_count {
            return Err(format!("inode {ino} out of range"));
        }
        let group = u64::from((ino - 1) / self.inodes_per_group);
        let index = u64::from((ino - 1) % self.inodes_per_group);
        if group >= self.groups {
            return Err(format!("inode {ino}: group {group} out of range"));
        }
        let mut desc = vec![0u8; self.desc_size];
        self.win
            .read_at(self.gdt_offset + group * self.desc_size as u64, &mut desc)?;
        let mut table = u64::from(le32(&desc, 0x08)?);
        if self.desc_size >= 64 {
            table |= u64::from(le32(&desc, 0x28)?) << 32;
        }
        if table == 0 || table >= self.blocks_count {
            return Err(format!(
                "inode {ino}: inode table block {table} out of range"
            ));
        }
        let mut raw = vec![0u8; self.inode_size];
        self.win.read_at(
            table * self.block_size + index * self.inode_size as u64,
            &mut raw,
        )?;
        let mode = le16(&raw, 0x00)?;
        let links = le16(&raw, 0x1A)?;
        let flags = le32(&raw, 0x20)?;
        let size = u64::from(le32(&raw, 0x04)?) | (u64::from(le32(&raw, 0x6C)?) << 32);
        let mut i_block = [0u8; 60];
        i_block.copy_from_slice(&raw[0x28..0x28 + 60]);
        let kind = mode & 0o170000;
        let rdev = if kind == 0o020000 || kind == 0o060000 {
            let b0 = le32(&i_block, 0)?;
            if b0 != 0 {
                // old_decode_dev
                rustix::fs::makedev((b0 >> 8) & 0xff, b0 & 0xff)
            } else {
                // new_decode_dev
                let d = le32(&i_block, 4)?;
                rustix::fs::makedev((d & 0xfff00) >> 8, (d & 0xff) | ((d >> 12) & 0xfff00))
            }
        } else {
            0
        };
        let mut xattrs = Vec::new();
        // In-inode xattrs.
        if self.inode_size > 128 {
            let extra = usize::from(le16(&raw, 0x80)?);
            let hdr = 128 + extra;
            if hdr + 4 <= self.inode_size && le32(&raw, hdr)? == XATTR_MAGIC {
                let region = &raw[hdr + 4..];
                parse_xattr_entries(region, 0, region, &mut xattrs)
                    .map_err(|e| format!("inode {ino}: in-inode xattrs: {e}"))?;
            }
        }
        // xattr block.
        let mut acl_block = u64::from(le32(&raw, 0x68)?);
        acl_block |= u64::from(le16(&raw, 0x76)?) << 32;
        if acl_block != 0 {
            let b = self
                .read_block(acl_block)
                .map_err(|e| format!("inode {ino}: xattr block: {e}"))?;
            if le32(&b, 0)? != XATTR_MAGIC {
                return Err(format!(
                    "inode {ino}: xattr block {acl_block} has a bad magic"
                ));
            }
            if le32(&b, 8)? != 1 {
                return Err(format!("inode {ino}: xattr block spans several blocks"));
            }
            parse_xattr_entries(&b, 32, &b, &mut xattrs)
                .map_err(|e| format!("inode {ino}: xattr block {acl_block}: {e}"))?;
        }
        xattrs.sort();
        xattrs.dedup_by(|a, b| a.0 == b.0);
        Ok(RawInode {
            mode,
            links,
            rdev,
            xattrs,
            flags,
            size,
            i_block,
        })
    }

    /// Physical blocks of an extent-mapped inode, by logical block, for the
    /// first `nblocks` logical blocks (holes and unwritten extents are None).
    fn extent_blocks(&self, ino: &RawInode, nblocks: u64) -> RawResult<Vec<Option<u64>>> {
        if ino.flags & EXT4_INLINE_DATA_FL != 0 {
            return Err("inline-data directories are not supported".into());
        }
        if ino.flags & EXT4_EXTENTS_FL == 0 {
            return Err("block-mapped (non-extent) directories are not supported".into());
        }
        if nblocks > 1 << 20 {
            return Err(format!("absurd directory size ({nblocks} blocks)"));
        }
        let mut out = vec![None; nblocks as usize];
        for e in self.extents(ino, nblocks)? {
            for k in 0..e.len {
                let l = e.lblock + k;
                if l >= nblocks {
                    break;
                }
                out[l as usize] = Some(e.pblock + k);
            }
        }
        Ok(out)
    }

    /// The initialised extents of an extent-mapped inode that start
    /// before logical block `limit` (unwritten ones are left out: they read
    /// as zeros), each checked to lie inside the filesystem, in tree order.
    ///
    /// The tree must list its extents in increasing, non-overlapping
    /// logical order, as ext4 keeps it: a node reached twice (a shared or
    /// looping subtree) breaks the order and is an error at once, so the
    /// list grows only with extents stored once on disk, and never past
    /// `limit` (the inode's size in blocks).
    fn extents(&self, ino: &RawInode, limit: u64) -> RawResult<Vec<Extent>> {
        let mut walk = ExtentWalk {
            out: Vec::new(),
            budget: 1 << 16, // extent tree nodes visited
            next: 0,
            limit,
        };
        self.walk_extents(&ino.i_block, 6, &mut walk)?;
        Ok(walk.out)
    }

    /// Walks one node of an extent tree; `Ok(false)` once past the limit.
    fn walk_extents(&self, node: &[u8], max_depth: u16, w: &mut ExtentWalk) -> RawResult<bool> {
        w.budget = w
            .budget
            .checked_sub(1)
            .ok_or("extent tree too large or cyclic")?;
        if le16(node, 0)? != 0xF30A {
            return Err("bad extent header magic".into());
        }
        let entries = usize::from(le16(node, 2)?);
        let depth = le16(node, 6)?;
        if depth > max_depth {
            return Err("extent tree too deep".into());
        }
        for i in 0..entries {
            let e = 12 + i * 12;
            if depth == 0 {
                let lblock = u64::from(le32(node, e)?);
                let mut len = u64::from(le16(node, e + 4)?);
                let unwritten = len > 32768;
                if unwritten {
                    len -= 32768;
                }
                let pblock = (u64::from(le16(node, e + 6)?) << 32) | u64::from(le32(node, e + 8)?);
                if lblock < w.next {
                    return Err(format!(
                        "overlapping extents at logical block {lblock} (the extent tree is out of order, shared or looping)"
                    ));
                }
                if lblock >= w.limit {
                    return Ok(false);
                }
                w.next = lblock + len;
                if unwritten || len == 0 {
                    continue;
                }
                if pblock == 0 || pblock.saturating_add(len) > self.blocks_count {
                    return Err(format!(
                        "extent points to blocks {pblock}..{}, past the end",
                        pblock.saturating_add(len)
                    ));
                }
                w.out.push(Extent {
                    lblock,
                    len,
                    pblock,
                });
            } else {
                let leaf = u64::from(le32(node, e + 4)?) | (u64::from(le16(node, e + 8)?) << 32);
                let child = self.read_block(leaf)?;
                if !self.walk_extents(&child, depth - 1, w)? {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Where the data of a regular file is: runs of bytes of the partition,
    /// in file order, clipped to the file's size, adjacent runs merged;
    /// holes and unwritten extents are absent (they read as zeros).
    ///
    /// `None` when the file is not extent-mapped (block maps, inline data):
    /// the caller reads it through `ext4-view` instead.
    pub(crate) fn file_runs(&self, ino: &RawInode) -> RawResult<Option<Vec<Run>>> {
        if ino.mode & 0o170000 != 0o100000 {
            return Err("not a regular file".into());
        }
        if ino.flags & EXT4_INLINE_DATA_FL != 0 || ino.flags & EXT4_EXTENTS_FL == 0 {
            return Ok(None);
        }
        let bs = self.block_size;
        let mut extents = self.extents(ino, ino.size.div_ceil(bs))?;
        extents.sort_by_key(|e| e.lblock);
        let mut runs: Vec<Run> = Vec::with_capacity(extents.len());
        let mut next_free = 0u64; // first logical block not yet covered
        for e in extents {
            if e.lblock < next_free {
                return Err(format!("overlapping extents at logical block {}", e.lblock));
            }
            next_free = e.lblock + e.len;
            let logical = e.lblock * bs;
            if logical >= ino.size {
                break;
            }
            let len = (e.len * bs).min(ino.size - logical);
            let phys = e.pblock * bs;
            match runs.last_mut() {
                Some(r) if r.logical + r.len == logical && r.phys + r.len == phys => r.len += len,
                _ => runs.push(Run { logical, phys, len }),
            }
        }
        Ok(Some(runs))
    }

    /// The target of a symlink: from `i_block` for a fast symlink, else
    /// from its first data block. `None` for a layout not read here
    /// (inline data): the caller asks `ext4-view`.
    pub(crate) fn symlink_target(&self, ino: &RawInode) -> RawResult<Option<Vec<u8>>> {
        if ino.mode & 0o170000 != 0o120000 {
            return Err("not a symlink".into());
        }
        let size = ino.size;
        if size == 0 || size >= 4096 {
            return Err(format!("symlink target of {size} bytes"));
        }
        if ino.flags & EXT4_INLINE_DATA_FL != 0 {
            return Ok(None);
        }
        if ino.flags & EXT4_EXTENTS_FL == 0 {
            if size >= 60 {
                return Ok(None); // block-mapped slow symlink (ext2/3)
            }
            return Ok(Some(ino.i_block[..size as usize].to_vec()));
        }
        let first = self
            .extents(ino, 1)?
            .into_iter()
            .find(|e| e.lblock == 0)
            .ok_or("symlink without data block")?;
        let b = self.read_block(first.pblock)?;
        b.get(..size as usize)
            .map(<[u8]>::to_vec)
            .map(Some)
            .ok_or_else(|| "symlink target longer than a block".into())
    }

    /// Name → inode number of every entry of directory inode `dir` (without
    /// `.` and `..`).
    pub(crate) fn dir_entries(&self, dir: &RawInode) -> RawResult<HashMap<Vec<u8>, u32>> {
        if dir.mode & 0o170000 != 0o040000 {
            return Err("not a directory".into());
        }
        let nblocks = dir.size.div_ceil(self.block_size);
        let blocks = self.extent_blocks(dir, nblocks)?;
        let mut out = HashMap::new();
        for (lblock, block) in blocks.into_iter().enumerate() {
            // A directory's size says how many blocks it has; the kernel
            // refuses one with a hole (its entries would be lost).
            let block = block.ok_or_else(|| {
                format!("the directory has no block {lblock} of its {nblocks} (a hole)")
            })?;
            let b = self.read_block(block)?;
            let mut pos = 0usize;
            while pos + 8 <= b.len() {
                let inode = le32(&b, pos)?;
                let rec_len = usize::from(le16(&b, pos + 4)?);
                let name_len = usize::from(b[pos + 6]);
                if rec_len < 8 || pos + rec_len > b.len() || rec_len % 4 != 0 {
                    return Err(format!("bad directory record length {rec_len}"));
                }
                if inode != 0 {
                    let name = b
                        .get(pos + 8..pos + 8 + name_len)
                        .filter(|_| 8 + name_len <= rec_len)
                        .ok_or("directory entry name overruns its record")?;
                    if name != b"." && name != b".." && out.insert(name.to_vec(), inode).is_some() {
                        return Err(format!(
                            "duplicate directory entry {:?}",
                            String::from_utf8_lossy(name)
                        ));
                    }
                }
                pos += rec_len;
            }
        }
        Ok(out)
    }
}

fn prefix(index: u8) -> Option<&'static [u8]> {
    Some(match index {
        1 => b"user.",
        2 => b"system.posix_acl_access",
        3 => b"system.posix_acl_default",
        4 => b"trusted.",
        6 => b"security.",
        7 => b"system.",
        8 => b"system.richacl",
        _ => return None,
    })
}

/// Parses xattr entries starting at `start` of `entries`; values are at
/// `e_value_offs` from the start of `values`.
fn parse_xattr_entries(
    entries: &[u8],
    start: usize,
    values: &[u8],
    out: &mut Vec<(Vec<u8>, Vec<u8>)>,
) -> RawResult<()> {
    let mut pos = start;
    loop {
        if pos + 4 > entries.len() || le32(entries, pos)? == 0 {
            return Ok(());
        }
        let name_len = usize::from(entries[pos]);
        let index = *entries.get(pos + 1).ok_or("truncated xattr entry")?;
        let value_offs = usize::from(le16(entries, pos + 2)?);
        let value_inum = le32(entries, pos + 4)?;
        let value_size = le32(entries, pos + 8)? as usize;
        let name = entries
            .get(pos + 16..pos + 16 + name_len)
            .ok_or("xattr name overruns its region")?;
        if value_inum != 0 {
            return Err("xattr value in a separate inode (ea_inode) is not supported".into());
        }
        let value = values
            .get(value_offs..value_offs.saturating_add(value_size))
            .ok_or("xattr value overruns its region")?;
        let pfx = prefix(index).ok_or_else(|| format!("unknown xattr name index {index}"))?;
        let mut full = pfx.to_vec();
        full.extend_from_slice(name);
        if full.contains(&0) {
            return Err("xattr name contains NUL".into());
        }
        let value = if index == 2 || index == 3 {
            acl_from_disk(value)?
        } else {
            value.to_vec()
        };
        out.push((full, value));
        pos += (16 + name_len + 3) & !3;
    }
}

/// Converts an ext4 on-disk POSIX ACL (version 1, short entries for the
/// `*_OBJ`, `MASK` and `OTHER` tags) into the `xattr(7)` format (version 2,
/// 8-byte entries).
fn acl_from_disk(v: &[u8]) -> RawResult<Vec<u8>> {
    if le32(v, 0)? != 1 {
        return Err("unknown on-disk ACL version".into());
    }
    let mut out = 2u32.to_le_bytes().to_vec();
    let mut pos = 4;
    while pos < v.len() {
        let tag = le16(v, pos)?;
        let perm = le16(v, pos + 2)?;
        let (id, len) = match tag {
            0x02 | 0x08 => (le32(v, pos + 4)?, 8), // ACL_USER, ACL_GROUP
            0x01 | 0x04 | 0x10 | 0x20 => (u32::MAX, 4), // *_OBJ, MASK, OTHER
            t => return Err(format!("unknown ACL tag {t:#x}")),
        };
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&perm.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
        pos += len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    //! Cross-checks of the supplement against `debugfs` (needs root and
    //! e2fsprogs; fails, never skips, without them).
    use super::*;
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::process::Command;

    fn run(cmd: &mut Command) -> String {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?} (apt-get install -y e2fsprogs): {e}"));
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A temp folder and the path of the source tree `t` to build in it (not made yet).
    /// These tests need root: the trees hold owners and device nodes.
    fn scratch() -> (tempfile::TempDir, std::path::PathBuf) {
        assert!(rustix::process::geteuid().is_root(), "must run as root");
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path().join("t");
        (tmp, t)
    }

    fn setx(p: &Path, name: &str, v: &[u8]) {
        rustix::fs::lsetxattr(p, name, v, rustix::fs::XattrFlags::empty()).unwrap();
    }

    fn acl_xattr() -> Vec<u8> {
        // user::rw-, user:1000:r--, group::r--, mask::r--, other::---
        let mut v = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [
            (1u16, 6u16, u32::MAX),
            (2, 4, 1000),
            (4, 4, u32::MAX),
            (0x10, 4, u32::MAX),
            (0x20, 0, u32::MAX),
        ] {
            v.extend_from_slice(&tag.to_le_bytes());
            v.extend_from_slice(&perm.to_le_bytes());
            v.extend_from_slice(&id.to_le_bytes());
        }
        v
    }

    fn resolve(fs: &RawFs, path: &str) -> u32 {
        let mut ino = 2;
        for comp in path.split('/').filter(|c| !c.is_empty()) {
            let dir = fs.inode(ino).unwrap();
            ino = fs.dir_entries(&dir).unwrap()[comp.as_bytes()];
        }
        ino
    }

    #[test]
    fn supplement_agrees_with_debugfs() {
        let (tmp, t) = scratch();
        std::fs::create_dir_all(t.join("d")).unwrap();
        std::fs::create_dir_all(t.join("big")).unwrap();
        let f = t.join("d/f");
        std::fs::write(&f, b"data").unwrap();
        setx(&f, "user.x", b"hello");
        let mut cap = vec![1, 0, 0, 2, 0, 0x20, 0, 0];
        cap.extend_from_slice(&[0; 12]);
        setx(&f, "security.capability", &cap);
        setx(&f, "user.big", &[0x5a; 3000]);
        std::fs::hard_link(&f, t.join("d/h")).unwrap();
        std::fs::write(t.join("acl"), b"acl").unwrap();
        setx(&t.join("acl"), "system.posix_acl_access", &acl_xattr());
        let mk = |n: &str, ft, dev| {
            rustix::fs::mknodat(
                rustix::fs::CWD,
                t.join(n),
                ft,
                rustix::fs::Mode::from_raw_mode(0o644),
                dev,
            )
            .unwrap();
        };
        use rustix::fs::{FileType, makedev};
        mk("c", FileType::CharacterDevice, makedev(1, 3));
        mk("b", FileType::BlockDevice, makedev(7, 0));
        mk("n", FileType::CharacterDevice, makedev(300, 70000));
        for i in 0..3000 {
            std::fs::write(t.join(format!("big/file-number-{i:05}")), b"").unwrap();
        }
        let img = tmp.path().join("fs.img");
        let fs = mkfs(&t, &img);
        let dbg = |req: String| run(Command::new("debugfs").args(["-R", &req]).arg(&img));
        for path in ["/", "/d", "/d/f", "/d/h", "/acl", "/c", "/b", "/n", "/big"] {
            let ino = resolve(&fs, path);
            let raw = fs.inode(ino).unwrap();
            let stat = dbg(format!("stat {path}"));
            assert!(
                stat.starts_with(&format!("Inode: {ino} ")),
                "{path}: ino {ino} vs\n{stat}"
            );
            assert!(
                stat.contains(&format!("Links: {} ", raw.links)),
                "{path}: links {} vs\n{stat}",
                raw.links
            );
            if let Some(l) = stat
                .lines()
                .find(|l| l.starts_with("Device major/minor number:"))
            {
                let mm = l.split_whitespace().nth(3).unwrap();
                let (ma, mi) = mm.split_once(':').unwrap();
                let want = makedev(ma.parse().unwrap(), mi.parse().unwrap());
                assert_eq!(raw.rdev, want, "{path}: {l}");
            }
            // ea_list: names and sizes (ACLs are shown in their own format).
            let ea = dbg(format!("ea_list {path}"));
            let listed: BTreeMap<String, usize> = ea
                .lines()
                .filter_map(|l| {
                    let l = l.trim();
                    let (name, rest) = l.split_once(" (")?;
                    let size = rest.split_once(')')?.0.parse().ok()?;
                    Some((name.to_string(), size))
                })
                .collect();
            let ours: BTreeMap<String, usize> = raw
                .xattrs
                .iter()
                .map(|(n, v)| (String::from_utf8_lossy(n).into_owned(), v.len()))
                .collect();
            assert_eq!(
                listed.keys().collect::<Vec<_>>(),
                ours.keys().collect::<Vec<_>>(),
                "{path}: {ea}"
            );
            for (n, size) in &listed {
                if !n.starts_with("system.posix_acl") {
                    assert_eq!(ours[n], *size, "{path} {n}");
                }
            }
        }
        let f = fs.inode(resolve(&fs, "/d/f")).unwrap();
        assert_eq!(f.links, 2);
        assert_eq!(
            f.xattrs,
            vec![
                (b"security.capability".to_vec(), cap.clone()),
                (b"user.big".to_vec(), vec![0x5a; 3000]),
                (b"user.x".to_vec(), b"hello".to_vec()),
            ]
        );
        let acl = fs.inode(resolve(&fs, "/acl")).unwrap();
        assert_eq!(
            acl.xattrs,
            vec![(b"system.posix_acl_access".to_vec(), acl_xattr())]
        );
        // The htree directory: every name with debugfs' inode number.
        let big = fs.inode(resolve(&fs, "/big")).unwrap();
        let ours = fs.dir_entries(&big).unwrap();
        assert_eq!(ours.len(), 3000);
        let ls = dbg("ls -l /big".into());
        let mut checked = 0;
        for l in ls.lines() {
            let w: Vec<&str> = l.split_whitespace().collect();
            if let (Some(ino), Some(name)) = (w.first(), w.last())
                && name.starts_with("file-number-")
            {
                assert_eq!(ours[name.as_bytes()].to_string(), *ino, "{name}");
                checked += 1;
            }
        }
        assert_eq!(checked, 3000);
    }

    /// An image of the tree `t` (64 MiB, 4 KiB blocks) and the raw reader on it.
    fn mkfs(t: &Path, img: &Path) -> RawFs {
        std::fs::File::create(img)
            .unwrap()
            .set_len(64 << 20)
            .unwrap();
        run(Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-d"])
            .arg(t)
            .arg(img));
        RawFs::open(Window {
            file: std::fs::File::open(img).unwrap(),
            offset: 0,
            len: 64 << 20,
            ready: None,
        })
        .unwrap()
    }

    /// `(logical, physical, length)` in blocks of every leaf extent `debugfs ex` lists.
    fn debugfs_extents(img: &Path, path: &str) -> Vec<(u64, u64, u64)> {
        let out = run(Command::new("debugfs")
            .args(["-R", &format!("ex {path}")])
            .arg(img));
        let mut leaves = Vec::new();
        for l in out.lines().skip(1) {
            // " 1/ 1   3/339    32 -    32  2067 -  2067      1 ": level/depth, entry/entries,
            // logical start - end, physical start - end, length (index lines have no end).
            let n: Vec<u64> = l
                .replace(['/', '-'], " ")
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            if n.len() == 9 && n[0] == n[1] {
                leaves.push((n[4], n[6], n[8]));
            }
        }
        leaves
    }

    #[test]
    fn data_runs_and_symlink_targets_agree_with_debugfs() {
        let (tmp, t) = scratch();
        std::fs::create_dir_all(&t).unwrap();
        // 400 islands of 4 KiB, 64 KiB apart, and a tail hole: more extents than an inode
        // holds, so an extent tree with an index level.
        let mut want = vec![0u8; 400 * 65536 + 12345];
        for i in 0..400 {
            want[i * 65536..i * 65536 + 4096].fill((i % 251 + 1) as u8);
        }
        {
            use std::io::{Seek, SeekFrom, Write};
            let mut f = std::fs::File::create(t.join("islands")).unwrap();
            for i in 0..400u64 {
                f.seek(SeekFrom::Start(i * 65536)).unwrap();
                f.write_all(&want[(i * 65536) as usize..][..4096]).unwrap();
            }
            f.set_len(want.len() as u64).unwrap();
        }
        std::fs::write(t.join("two"), b"").unwrap();
        {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(t.join("two"))
                .unwrap();
            f.write_all_at(&[b'A'; 4096], 0).unwrap();
            f.write_all_at(&[b'B'; 5000], 1 << 20).unwrap();
        }
        let fast = "/usr/lib/fast".to_string();
        let slow = format!("/usr/lib/{}", "s".repeat(80));
        std::os::unix::fs::symlink(&fast, t.join("fast")).unwrap();
        std::os::unix::fs::symlink(&slow, t.join("slow")).unwrap();
        let img = tmp.path().join("fs.img");
        let fs = mkfs(&t, &img);

        let islands = fs.inode(resolve(&fs, "/islands")).unwrap();
        let runs = fs.file_runs(&islands).unwrap().expect("extent-mapped");
        let leaves = debugfs_extents(&img, "/islands");
        assert_eq!(leaves.len(), 400, "{leaves:?}");
        let expect: Vec<Run> = leaves
            .iter()
            .map(|&(l, p, n)| Run {
                logical: l * 4096,
                phys: p * 4096,
                len: n * 4096,
            })
            .collect();
        assert_eq!(runs, expect);
        // The runs read back the file: data where they say, zeros elsewhere.
        let mut got = vec![0u8; islands.size as usize];
        for r in &runs {
            fs.win
                .read_at(r.phys, &mut got[r.logical as usize..][..r.len as usize])
                .unwrap();
        }
        assert!(got == want, "islands read back differ");

        let two = fs.inode(resolve(&fs, "/two")).unwrap();
        let runs = fs.file_runs(&two).unwrap().unwrap();
        assert_eq!(runs.len(), 2, "{runs:?}");
        assert_eq!(
            (runs[1].logical, runs[1].len),
            (1 << 20, 5000),
            "clipped to the size"
        );

        for (name, target) in [("/fast", &fast), ("/slow", &slow)] {
            let l = fs.inode(resolve(&fs, name)).unwrap();
            assert_eq!(
                fs.symlink_target(&l).unwrap().as_deref(),
                Some(target.as_bytes()),
                "{name}"
            );
        }

        // Broken extents in /two's inode (i_block words 3-5 and 6-8 are its two extents):
        // a start past the end of the filesystem, then a second extent over the first.
        for (field, value, error) in [
            ("block[5]", "99999999", "past the end"),
            ("block[6]", "0", "overlapping extents"),
        ] {
            let bad = tmp.path().join(format!("bad-{value}.img"));
            std::fs::copy(&img, &bad).unwrap();
            run(Command::new("debugfs")
                .args(["-w", "-R", &format!("sif /two {field} {value}")])
                .arg(&bad));
            let fs = RawFs::open(Window {
                file: std::fs::File::open(&bad).unwrap(),
                offset: 0,
                len: 64 << 20,
                ready: None,
            })
            .unwrap();
            let two = fs.inode(resolve(&fs, "/two")).unwrap();
            let e = fs.file_runs(&two).unwrap_err();
            assert!(e.contains(error), "{field}={value}: {e}");
        }
    }

    /// `debugfs -w -R request` on a copy of `img` named `name`; the raw reader on it.
    fn broken_copy(img: &Path, name: &str, request: &str) -> RawFs {
        let bad = img.with_file_name(name);
        std::fs::copy(img, &bad).unwrap();
        run(Command::new("debugfs")
            .args(["-w", "-R", request])
            .arg(&bad));
        RawFs::open(Window {
            file: std::fs::File::open(&bad).unwrap(),
            offset: 0,
            len: 64 << 20,
            ready: None,
        })
        .unwrap()
    }

    /// An extent tree whose two index entries lead to the same leaf (a shared subtree,
    /// which a loop or a tree amplified to millions of extents also needs) is refused
    /// while it is walked, at the second visit, not after collecting its extents; a
    /// directory with a hole (a block its size counts but no extent maps) is an error,
    /// as the kernel says, not a directory with fewer entries.
    #[test]
    fn shared_extent_subtrees_and_directory_holes_are_errors() {
        let (tmp, t) = scratch();
        std::fs::create_dir_all(t.join("big")).unwrap();
        {
            use std::io::{Seek, SeekFrom, Write};
            let mut f = std::fs::File::create(t.join("islands")).unwrap();
            for i in 0..400u64 {
                f.seek(SeekFrom::Start(i * 65536)).unwrap();
                f.write_all(&[1 + (i % 200) as u8; 4096]).unwrap();
            }
        }
        for i in 0..400 {
            std::fs::write(t.join(format!("big/a-rather-long-file-name-{i:05}")), b"").unwrap();
        }
        let img = tmp.path().join("fs.img");
        let fs = mkfs(&t, &img);
        let islands = fs.inode(resolve(&fs, "/islands")).unwrap();
        // The root node in i_block: header, then index entries of three words
        // (first logical block, leaf low, leaf high).
        assert_eq!(le16(&islands.i_block, 6).unwrap(), 1, "depth");
        assert_eq!(le16(&islands.i_block, 2).unwrap(), 2, "entries");
        let leaf0 = le32(&islands.i_block, 16).unwrap();
        let bad = broken_copy(
            &img,
            "shared.img",
            &format!("sif /islands block[7] {leaf0}"),
        );
        let ino = bad.inode(resolve(&bad, "/islands")).unwrap();
        let e = bad.file_runs(&ino).unwrap_err();
        assert!(e.contains("shared or looping"), "{e}");

        let big = fs.inode(resolve(&fs, "/big")).unwrap();
        assert!(big.size >= 3 * 4096, "{}", big.size);
        assert_eq!(fs.dir_entries(&big).unwrap().len(), 400);
        let bad = broken_copy(&img, "hole.img", "punch /big 1 1");
        let big = bad.inode(resolve(&bad, "/big")).unwrap();
        // (Before, the entries of the missing block were silently left out.)
        let e = bad.dir_entries(&big).map(|m| m.len()).unwrap_err();
        assert!(e.contains("no block 1") && e.contains("hole"), "{e}");
    }

    #[test]
    fn malformed_structures_are_errors() {
        let mut out = Vec::new();
        // Entry whose value overruns the region.
        let mut e = vec![
            1u8, 1, 0xff, 0xff, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, b'a', 0, 0, 0,
        ];
        e.extend_from_slice(&[0; 4]);
        assert!(parse_xattr_entries(&e, 0, &e, &mut out).is_err());
        // Unknown name index.
        let mut e = vec![
            1u8, 99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b'a', 0, 0, 0,
        ];
        e.extend_from_slice(&[0; 4]);
        assert!(parse_xattr_entries(&e, 0, &e, &mut out).is_err());
        // Truncated everything.
        assert!(acl_from_disk(&[1, 0]).is_err());
        assert!(acl_from_disk(&[1, 0, 0, 0, 2, 0, 4, 0]).is_err());
        assert!(le32(&[1, 2], 0).is_err());
    }
}
