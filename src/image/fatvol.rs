//! A read-only FAT12/16/32 reader for the boot partition, strict about
//! cluster chains.
//!
//! Every chain is followed to its end-of-chain mark before its data are
//! used, and each of these is an error (the caller names the file): a
//! chain that loops, a link to a cluster number outside the volume (or a
//! reserved value), a cluster of a chain marked free or bad in the FAT, a
//! cluster that two files or directories share, and a chain with fewer
//! clusters than the file's size needs. A general-purpose reader reads such
//! a chain as repeated or truncated content without a word.
//!
//! Names are the long (VFAT) name where its checksum matches the short
//! entry, else the 8.3 name with the NT lower-case flags applied; non-ASCII
//! OEM bytes of short names become U+FFFD (as `fatfs`, which this replaces,
//! does). Everything read is bounds-checked; memory is one 64 KiB window
//! of the FAT, one bit per cluster (to see loops and shared clusters) and
//! one directory at a time (at most 2 MiB).

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

/// Errors of the FAT reader: a description; the caller adds the paths.
pub(crate) type FatResult<T> = Result<T, String>;

/// Size of a directory entry.
const ENTRY: usize = 32;
/// Most bytes a directory may take (65 536 entries, the format's limit).
pub(crate) const MAX_DIR_BYTES: u64 = 65_536 * ENTRY as u64;
/// Size of the window of the FAT kept in memory.
const FAT_WINDOW: u64 = 64 << 10;

/// FAT variant, from the number of clusters (as the specification says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FatKind {
    Fat12,
    Fat16,
    Fat32,
}

impl FatKind {
    /// The "bad cluster" value and the smallest end-of-chain value.
    fn marks(self) -> (u32, u32) {
        match self {
            FatKind::Fat12 => (0xFF7, 0xFF8),
            FatKind::Fat16 => (0xFFF7, 0xFFF8),
            FatKind::Fat32 => (0x0FFF_FFF7, 0x0FFF_FFF8),
        }
    }
}

/// Where a directory's entries are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DirLoc {
    /// The fixed root directory region of FAT12/16 (partition offset, bytes).
    Fixed { offset: u64, len: u64 },
    /// A cluster chain from this cluster.
    Chain(u32),
}

/// One entry of a directory (`.` and `..` left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Long name, else the short name.
    pub(crate) name: String,
    pub(crate) is_dir: bool,
    /// First cluster (0: none).
    pub(crate) first_cluster: u32,
    /// Size in bytes (files).
    pub(crate) size: u32,
    /// Modification date and time, DOS encoding.
    pub(crate) mdate: u16,
    pub(crate) mtime: u16,
}

/// A run of a file's data: `len` bytes at byte `offset` of the image file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

/// A FAT volume inside the image file.
pub(crate) struct Volume {
    file: File,
    /// Offset of the partition in the image file.
    offset: u64,
    kind: FatKind,
    cluster_size: u64,
    /// Partition offset and size of the FAT in use.
    fat_start: u64,
    fat_len: u64,
    /// Partition offset of cluster 2.
    data_start: u64,
    /// Highest valid cluster number.
    max_cluster: u32,
    root: DirLoc,
    /// A window of the FAT: (partition offset, bytes).
    window: RefCell<(u64, Vec<u8>)>,
    /// One bit per cluster: part of a chain already followed.
    claimed: RefCell<Vec<u64>>,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Where a link of a chain leads.
enum Link {
    Next(u32),
    End,
    Free,
    Bad,
    Outside(u32),
}

impl Volume {
    /// Reads the boot sector of the FAT filesystem in the `len` bytes at
    /// `offset` of `file`, and checks that its layout fits the partition.
    pub(crate) fn open(file: File, offset: u64, len: u64) -> FatResult<Self> {
        let mut bs = [0u8; 512];
        if len < 512 {
            return Err(format!("partition of {len} bytes is too small for FAT"));
        }
        file.read_exact_at(&mut bs, offset)
            .map_err(|e| format!("reading the boot sector: {e}"))?;
        let bps = u64::from(le16(&bs, 11));
        let spc = u64::from(bs[13]);
        let reserved = u64::from(le16(&bs, 14));
        let fats = u64::from(bs[16]);
        let root_entries = u64::from(le16(&bs, 17));
        let total16 = u64::from(le16(&bs, 19));
        let spf16 = u64::from(le16(&bs, 22));
        let total32 = u64::from(le32(&bs, 32));
        let bad = |what: String| Err(format!("not a usable FAT boot sector: {what}"));
        if !(512..=4096).contains(&bps) || !bps.is_power_of_two() {
            return bad(format!("{bps} bytes per sector"));
        }
        if !(1..=128).contains(&spc) || !spc.is_power_of_two() {
            return bad(format!("{spc} sectors per cluster"));
        }
        if reserved == 0 {
            return bad("no reserved sectors".into());
        }
        if fats == 0 {
            return bad("no FAT".into());
        }
        let fat32 = spf16 == 0;
        let (spf, ext_flags, version, root_cluster) = if fat32 {
            (
                u64::from(le32(&bs, 36)),
                le16(&bs, 40),
                le16(&bs, 42),
                le32(&bs, 44),
            )
        } else {
            (spf16, 0, 0, 0)
        };
        if spf == 0 {
            return bad("zero sectors per FAT".into());
        }
        if version != 0 {
            return bad(format!("unknown FAT32 version {version:#06x}"));
        }
        if fat32 && root_entries != 0 {
            return bad("FAT32 with a fixed root directory".into());
        }
        if !fat32 && root_entries == 0 {
            return bad("FAT12/16 without a root directory".into());
        }
        let total = if total16 != 0 { total16 } else { total32 };
        let root_sectors = (root_entries * ENTRY as u64).div_ceil(bps);
        let first_data = reserved + fats * spf + root_sectors;
        if total <= first_data {
            return bad(format!(
                "{total} sectors, not more than the {first_data} before the data area"
            ));
        }
        if total * bps > len {
            return Err(format!(
                "the filesystem ({total} sectors of {bps} bytes) is larger than its partition ({len} bytes)"
            ));
        }
        let clusters = (total - first_data) / spc;
        let kind = match clusters {
            0..4085 => FatKind::Fat12,
            4085..65525 => FatKind::Fat16,
            _ => FatKind::Fat32,
        };
        if fat32 != (kind == FatKind::Fat32) {
            return bad(format!(
                "{clusters} clusters do not make a FAT{}",
                if fat32 { "32" } else { "12/16" }
            ));
        }
        if clusters > 0x0FFF_FFF5 {
            return bad(format!("{clusters} clusters"));
        }
        let bits = match kind {
            FatKind::Fat12 => 12,
            FatKind::Fat16 => 16,
            FatKind::Fat32 => 32,
        };
        // Clusters past what the FAT can describe are out of range.
        let fat_entries = spf * bps * 8 / bits;
        let max_cluster = (clusters + 1).min(fat_entries.saturating_sub(1));
        if max_cluster < 2 {
            return bad("no data clusters".into());
        }
        let active = if fat32 && ext_flags & 0x80 != 0 {
            u64::from(ext_flags & 0x0F)
        } else {
            0
        };
        if active >= fats {
            return bad(format!("active FAT {active} of {fats}"));
        }
        let max_cluster = max_cluster as u32;
        let root = if fat32 {
            if !(2..=max_cluster).contains(&root_cluster) {
                return bad(format!(
                    "root directory at cluster {root_cluster}, outside clusters 2..={max_cluster}"
                ));
            }
            DirLoc::Chain(root_cluster)
        } else {
            DirLoc::Fixed {
                offset: (reserved + fats * spf) * bps,
                len: root_entries * ENTRY as u64,
            }
        };
        Ok(Volume {
            file,
            offset,
            kind,
            cluster_size: spc * bps,
            fat_start: (reserved + active * spf) * bps,
            fat_len: spf * bps,
            data_start: first_data * bps,
            max_cluster,
            root,
            window: RefCell::new((0, Vec::new())),
            claimed: RefCell::new(vec![0; (max_cluster as usize).div_ceil(64) + 1]),
        })
    }

    /// The FAT variant.
    pub(crate) fn kind(&self) -> FatKind {
        self.kind
    }

    /// The root directory.
    pub(crate) fn root(&self) -> DirLoc {
        self.root
    }

    /// Byte `at` of the FAT in use.
    fn fat_byte(&self, at: u64) -> FatResult<u8> {
        if at >= self.fat_len {
            return Err(format!("FAT byte {at} past the end of the FAT"));
        }
        let mut w = self.window.borrow_mut();
        let (base, data) = &mut *w;
        if data.is_empty() || at < *base || at >= *base + data.len() as u64 {
            *base = at - at % FAT_WINDOW;
            let n = (self.fat_len - *base).min(FAT_WINDOW) as usize;
            data.resize(n, 0);
            self.file
                .read_exact_at(data, self.offset + self.fat_start + *base)
                .map_err(|e| {
                    data.clear();
                    format!("reading the FAT: {e}")
                })?;
        }
        Ok(data[(at - *base) as usize])
    }

    /// The FAT entry of cluster `n` (2..=max_cluster).
    fn entry(&self, n: u32) -> FatResult<u32> {
        let n64 = u64::from(n);
        Ok(match self.kind {
            FatKind::Fat12 => {
                let at = n64 + n64 / 2;
                let v = u32::from(self.fat_byte(at)?) | (u32::from(self.fat_byte(at + 1)?) << 8);
                if n & 1 == 1 { v >> 4 } else { v & 0xFFF }
            }
            FatKind::Fat16 => {
                let at = n64 * 2;
                u32::from(self.fat_byte(at)?) | (u32::from(self.fat_byte(at + 1)?) << 8)
            }
            FatKind::Fat32 => {
                let at = n64 * 4;
                let mut v = 0u32;
                for k in 0..4 {
                    v |= u32::from(self.fat_byte(at + k)?) << (8 * k);
                }
                v & 0x0FFF_FFFF
            }
        })
    }

    fn link(&self, n: u32) -> FatResult<Link> {
        let v = self.entry(n)?;
        let (bad, end) = self.kind.marks();
        Ok(if v >= end {
            Link::End
        } else if v == bad {
            Link::Bad
        } else if v == 0 {
            Link::Free
        } else if (2..=self.max_cluster).contains(&v) {
            Link::Next(v)
        } else {
            Link::Outside(v)
        })
    }

    /// Marks cluster `n` as part of a chain; false if it already was.
    fn claim(&self, n: u32) -> bool {
        let mut c = self.claimed.borrow_mut();
        let (word, bit) = ((n / 64) as usize, n % 64);
        let was = c[word] & (1 << bit) != 0;
        c[word] |= 1 << bit;
        !was
    }

    /// Follows the chain from `first` to its end-of-chain mark; its
    /// clusters as runs of consecutive numbers `(first, count)`. At most
    /// `max_clusters` clusters.
    fn chain(&self, first: u32, max_clusters: u64) -> FatResult<Vec<(u32, u32)>> {
        let range = || format!("the volume's clusters are 2..={}", self.max_cluster);
        if !(2..=self.max_cluster).contains(&first) {
            return Err(format!(
                "its cluster chain starts at cluster {first}, outside the volume ({})",
                range()
            ));
        }
        let mut runs: Vec<(u32, u32)> = Vec::new();
        let mut count = 0u64;
        let mut prev = None;
        let mut c = first;
        loop {
            if !self.claim(c) {
                let ours = runs.iter().any(|&(s, n)| c >= s && c - s < n);
                return Err(match (ours, prev) {
                    (true, Some(p)) => format!(
                        "its cluster chain loops: cluster {p} leads back to cluster {c} after {count} clusters"
                    ),
                    _ => format!(
                        "cluster {c} of its chain also belongs to another file or directory (cross-linked clusters)"
                    ),
                });
            }
            count += 1;
            if count > max_clusters {
                return Err(format!(
                    "its cluster chain is longer than {max_clusters} clusters"
                ));
            }
            match runs.last_mut() {
                Some((s, n)) if *s + *n == c => *n += 1,
                _ => runs.push((c, 1)),
            }
            match self.link(c)? {
                Link::End => return Ok(runs),
                Link::Next(n) => {
                    prev = Some(c);
                    c = n;
                }
                Link::Free => {
                    return Err(format!(
                        "cluster {c} of its chain is marked free in the FAT (the chain is cut after {count} clusters)"
                    ));
                }
                Link::Bad => {
                    return Err(format!(
                        "cluster {c} of its chain is marked bad in the FAT (the chain is cut after {count} clusters)"
                    ));
                }
                Link::Outside(v) => {
                    return Err(format!(
                        "cluster {c} of its chain links to {v:#x}, not a cluster of the volume ({})",
                        range()
                    ));
                }
            }
        }
    }

    /// Image-file offset of cluster `n`.
    fn cluster_offset(&self, n: u32) -> u64 {
        self.offset + self.data_start + u64::from(n - 2) * self.cluster_size
    }

    /// Where the `size` bytes of a file starting at cluster `first` are,
    /// after checking its whole chain (see the module documentation).
    pub(crate) fn file_runs(&self, first: u32, size: u64) -> FatResult<Vec<Run>> {
        let need = size.div_ceil(self.cluster_size);
        if first == 0 {
            if size == 0 {
                return Ok(Vec::new());
            }
            return Err(format!("it has no clusters for its {size} bytes"));
        }
        let runs = self.chain(first, u64::from(self.max_cluster))?;
        let have: u64 = runs.iter().map(|&(_, n)| u64::from(n)).sum();
        if have < need {
            return Err(format!(
                "its cluster chain ends after {have} clusters ({} bytes), short of its size of {size} bytes ({need} clusters)",
                have * self.cluster_size
            ));
        }
        let mut out = Vec::with_capacity(runs.len());
        let mut left = size;
        for (start, n) in runs {
            if left == 0 {
                break;
            }
            let len = (u64::from(n) * self.cluster_size).min(left);
            out.push(Run {
                offset: self.cluster_offset(start),
                len,
            });
            left -= len;
        }
        Ok(out)
    }

    /// The raw bytes of a directory (its chain checked).
    pub(crate) fn dir_bytes(&self, loc: DirLoc) -> FatResult<Vec<u8>> {
        match loc {
            DirLoc::Fixed { offset, len } => {
                let mut b = vec![0u8; len as usize];
                self.file
                    .read_exact_at(&mut b, self.offset + offset)
                    .map_err(|e| format!("reading the root directory: {e}"))?;
                Ok(b)
            }
            DirLoc::Chain(first) => {
                let max = MAX_DIR_BYTES.div_ceil(self.cluster_size).max(1);
                let runs = self.chain(first, max)?;
                let mut b = Vec::new();
                for (start, n) in runs {
                    let at = b.len();
                    b.resize(at + (u64::from(n) * self.cluster_size) as usize, 0);
                    self.file
                        .read_exact_at(&mut b[at..], self.cluster_offset(start))
                        .map_err(|e| format!("reading directory cluster {start}: {e}"))?;
                }
                Ok(b)
            }
        }
    }

    /// The entries of a directory's raw bytes, up to its end mark, without
    /// deleted entries, volume labels, `.` and `..`.
    pub(crate) fn entries(&self, raw: &[u8]) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut lfn = LongName::default();
        for slot in raw.chunks_exact(ENTRY) {
            match slot[0] {
                0x00 => break,
                0xE5 => {
                    lfn.clear();
                    continue;
                }
                _ => {}
            }
            let attr = slot[11];
            if attr & 0x0F == 0x0F {
                lfn.add(slot);
                continue;
            }
            let short: [u8; 11] = slot[..11].try_into().expect("11 bytes");
            let long = lfn.take(&short);
            if attr & 0x08 != 0 || short == *b".          " || short == *b"..         " {
                continue;
            }
            let hi = if self.kind == FatKind::Fat32 {
                u32::from(le16(slot, 20)) << 16
            } else {
                0
            };
            out.push(Entry {
                name: long.unwrap_or_else(|| short_name(&short, slot[12])),
                is_dir: attr & 0x10 != 0,
                first_cluster: hi | u32::from(le16(slot, 26)),
                size: le32(slot, 28),
                mtime: le16(slot, 22),
                mdate: le16(slot, 24),
            });
        }
        out
    }

    /// A reader of a file's data runs.
    pub(crate) fn reader(&self, runs: Vec<Run>) -> RunReader<'_> {
        RunReader {
            file: &self.file,
            runs,
            index: 0,
            pos: 0,
        }
    }
}

/// The 8.3 name of a short entry (`0x05` first byte is `0xE5`; lower-case
/// flags of byte 12 applied; OEM bytes above 0x7F as U+FFFD).
fn short_name(raw: &[u8; 11], case: u8) -> String {
    let mut raw = *raw;
    if raw[0] == 0x05 {
        raw[0] = 0xE5;
    }
    let trim = |s: &[u8]| s.len() - s.iter().rev().take_while(|&&b| b == b' ').count();
    let (base, ext) = raw.split_at(8);
    let (base, ext) = (&base[..trim(base)], &ext[..trim(ext)]);
    let conv = |b: &u8, lower: bool| {
        if *b > 0x7F {
            '\u{FFFD}'
        } else if lower {
            (*b as char).to_ascii_lowercase()
        } else {
            *b as char
        }
    };
    let mut name: String = base.iter().map(|b| conv(b, case & 0x08 != 0)).collect();
    if !ext.is_empty() {
        name.push('.');
        name.extend(ext.iter().map(|b| conv(b, case & 0x10 != 0)));
    }
    name
}

/// Checksum of a short name, stored in its long-name entries.
fn lfn_checksum(short: &[u8; 11]) -> u8 {
    short
        .iter()
        .fold(0u8, |s, &b| s.rotate_right(1).wrapping_add(b))
}

/// A long name being assembled from its entries (stored last part first).
#[derive(Default)]
struct LongName {
    buf: Vec<u16>,
    /// Order number of the part expected next (0: none in progress).
    next: u8,
    checksum: u8,
    complete: bool,
}

impl LongName {
    fn clear(&mut self) {
        self.buf.clear();
        self.next = 0;
        self.complete = false;
    }

    fn add(&mut self, slot: &[u8]) {
        let order = slot[0];
        let index = order & 0x1F;
        if index == 0 {
            self.clear();
            return;
        }
        if order & 0x40 != 0 {
            self.clear();
            self.buf = vec![0; usize::from(index) * 13];
            self.checksum = slot[13];
        } else if self.next == 0 || index != self.next || slot[13] != self.checksum {
            self.clear();
            return;
        }
        let part: Vec<u16> = [(1usize, 5usize), (14, 6), (28, 2)]
            .iter()
            .flat_map(|&(at, n)| (0..n).map(move |k| le16(slot, at + 2 * k)))
            .collect();
        let pos = 13 * usize::from(index - 1);
        self.buf[pos..pos + 13].copy_from_slice(&part);
        self.next = index - 1;
        self.complete = index == 1;
    }

    /// The long name for the short entry `short`, if a complete one with
    /// its checksum precedes it.
    fn take(&mut self, short: &[u8; 11]) -> Option<String> {
        let ok = self.complete && self.checksum == lfn_checksum(short);
        let mut buf = std::mem::take(&mut self.buf);
        self.clear();
        if !ok {
            return None;
        }
        while let Some(&c) = buf.last()
            && (c == 0 || c == 0xFFFF)
        {
            buf.pop();
        }
        Some(String::from_utf16_lossy(&buf))
    }
}

/// Reads a file's data runs in order.
pub(crate) struct RunReader<'a> {
    file: &'a File,
    runs: Vec<Run>,
    index: usize,
    pos: u64,
}

impl Read for RunReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(run) = self.runs.get(self.index) else {
                return Ok(0);
            };
            if self.pos == run.len {
                self.index += 1;
                self.pos = 0;
                continue;
            }
            let n = (buf.len() as u64).min(run.len - self.pos) as usize;
            let got = self.file.read_at(&mut buf[..n], run.offset + self.pos)?;
            if got == 0 && n > 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the image ends inside the file's clusters",
                ));
            }
            self.pos += got as u64;
            return Ok(got);
        }
    }
}

#[cfg(test)]
mod tests {
    //! FAT12/16/32 volumes made by `mkfs.vfat` and `mcopy` (dosfstools and
    //! mtools: fails, never skips, without them), read back, then broken at
    //! their FAT bytes; clusters are located with `mshowfat`.
    use super::*;
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::process::Command;

    fn run(cmd: &mut Command) -> String {
        let out = cmd
            .env("MTOOLS_SKIP_CHECK", "1")
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run {cmd:?} (apt-get install -y dosfstools mtools): {e}")
            });
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Deterministic bytes.
    fn data(len: usize, seed: u32) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) ^ seed) as u8)
            .collect()
    }

    /// A FAT volume of `mib` MiB (`-F bits`, `spc` sectors per cluster)
    /// holding `/kernel.img` (many clusters), `/cmdline.txt`,
    /// `/A Long Name.txt`, `/sub/inner.txt` and `/empty`.
    struct Fixture {
        _dir: tempfile::TempDir,
        img: std::path::PathBuf,
        files: Vec<(&'static str, Vec<u8>)>,
    }

    fn fixture(bits: u32, mib: u64, spc: u32) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("fat.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(mib << 20)
            .unwrap();
        run(Command::new("mkfs.vfat")
            .args([
                "-F",
                &bits.to_string(),
                "-s",
                &spc.to_string(),
                "-n",
                "BOOT",
            ])
            .arg(&img));
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        let files: Vec<(&'static str, Vec<u8>)> = vec![
            ("kernel.img", data(300_000, 1)),
            (
                "cmdline.txt",
                b"console=serial0,115200 console=tty1 root=/dev/nfs rw\n".to_vec(),
            ),
            ("A Long Name.txt", b"long".to_vec()),
            ("sub/inner.txt", data(5000, 2)),
            ("empty", Vec::new()),
        ];
        for (name, bytes) in &files {
            std::fs::write(src.join(name), bytes).unwrap();
        }
        let mut mcopy = Command::new("mcopy");
        mcopy.args(["-s", "-i"]).arg(&img);
        for name in [
            "kernel.img",
            "cmdline.txt",
            "A Long Name.txt",
            "sub",
            "empty",
        ] {
            mcopy.arg(src.join(name));
        }
        run(mcopy.arg("::/"));
        Fixture {
            _dir: dir,
            img,
            files,
        }
    }

    /// The clusters of `path` as `mshowfat` lists them.
    fn clusters(img: &Path, path: &str) -> Vec<u32> {
        let out = run(Command::new("mshowfat")
            .arg("-i")
            .arg(img)
            .arg(format!("::/{path}")));
        let mut v = Vec::new();
        for tok in out.split('<').skip(1) {
            let r = tok.split('>').next().unwrap();
            match r.split_once('-') {
                Some((a, b)) => v.extend(a.parse::<u32>().unwrap()..=b.parse().unwrap()),
                None => v.push(r.parse().unwrap()),
            }
        }
        assert!(!v.is_empty(), "mshowfat {path}: {out}");
        v
    }

    /// Writes FAT entry `n` = `value` in every copy of the FAT.
    fn set_entry(img: &Path, n: u32, value: u32) {
        let mut b = std::fs::read(img).unwrap();
        let bps = usize::from(le16(&b, 11));
        let reserved = usize::from(le16(&b, 14));
        let fats = usize::from(b[16]);
        let spf16 = usize::from(le16(&b, 22));
        let (spf, bits) = if spf16 == 0 {
            (le32(&b, 36) as usize, 32)
        } else {
            let total = if le16(&b, 19) != 0 {
                u32::from(le16(&b, 19))
            } else {
                le32(&b, 32)
            };
            let root = (usize::from(le16(&b, 17)) * 32).div_ceil(bps);
            let data = total as usize - reserved - fats * spf16 - root;
            (
                spf16,
                if data / usize::from(b[13]) < 4085 {
                    12
                } else {
                    16
                },
            )
        };
        let n = n as usize;
        for f in 0..fats {
            let fat = (reserved + f * spf) * bps;
            match bits {
                12 => {
                    let at = fat + n + n / 2;
                    let old = u16::from_le_bytes([b[at], b[at + 1]]);
                    let v = if n % 2 == 1 {
                        (old & 0x000F) | ((value as u16) << 4)
                    } else {
                        (old & 0xF000) | (value as u16 & 0x0FFF)
                    };
                    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
                }
                16 => b[fat + 2 * n..][..2].copy_from_slice(&(value as u16).to_le_bytes()),
                _ => {
                    let old = le32(&b, fat + 4 * n);
                    let v = (old & 0xF000_0000) | (value & 0x0FFF_FFFF);
                    b[fat + 4 * n..][..4].copy_from_slice(&v.to_le_bytes());
                }
            }
        }
        std::fs::write(img, b).unwrap();
    }

    fn open(img: &Path) -> Volume {
        let len = std::fs::metadata(img).unwrap().len();
        Volume::open(std::fs::File::open(img).unwrap(), 0, len).unwrap()
    }

    /// Reads the whole volume once, as the walker does: every file's bytes, or the error
    /// of the file or directory, by path.
    fn read_tree(img: &Path) -> BTreeMap<String, FatResult<Vec<u8>>> {
        fn walk(
            vol: &Volume,
            dir: DirLoc,
            at: &str,
            out: &mut BTreeMap<String, FatResult<Vec<u8>>>,
        ) {
            let raw = match vol.dir_bytes(dir) {
                Ok(r) => r,
                Err(e) => {
                    out.insert(at.to_string(), Err(e));
                    return;
                }
            };
            for e in vol.entries(&raw) {
                let path = format!("{at}{}", e.name);
                if e.is_dir {
                    walk(
                        vol,
                        DirLoc::Chain(e.first_cluster),
                        &format!("{path}/"),
                        out,
                    );
                } else {
                    let r = vol
                        .file_runs(e.first_cluster, u64::from(e.size))
                        .map(|runs| {
                            let mut v = Vec::new();
                            vol.reader(runs).read_to_end(&mut v).unwrap();
                            v
                        });
                    out.insert(path, r);
                }
            }
        }
        let vol = open(img);
        let mut out = BTreeMap::new();
        walk(&vol, vol.root(), "", &mut out);
        out
    }

    const KINDS: [(u32, u64, u32, FatKind); 3] = [
        (12, 8, 4, FatKind::Fat12),
        (16, 24, 1, FatKind::Fat16),
        (32, 80, 1, FatKind::Fat32),
    ];

    #[test]
    fn reads_what_mtools_wrote() {
        for (bits, mib, spc, kind) in KINDS {
            let f = fixture(bits, mib, spc);
            let vol = open(&f.img);
            assert_eq!(vol.kind(), kind, "FAT{bits}");
            let names: Vec<String> = vol
                .entries(&vol.dir_bytes(vol.root()).unwrap())
                .into_iter()
                .map(|e| e.name)
                .collect();
            assert_eq!(
                names,
                [
                    "kernel.img",
                    "cmdline.txt",
                    "A Long Name.txt",
                    "sub",
                    "empty"
                ],
                "FAT{bits}"
            );
            let tree = read_tree(&f.img);
            assert_eq!(tree.len(), f.files.len(), "FAT{bits}: {:?}", tree.keys());
            for (name, want) in &f.files {
                assert!(tree[*name].as_ref().unwrap() == want, "FAT{bits} {name}");
            }
        }
    }

    #[test]
    fn broken_chains_are_errors() {
        for (bits, mib, spc, _) in KINDS {
            let (bad, end) = match bits {
                12 => (0xFF7, 0xFFF),
                16 => (0xFFF7, 0xFFFF),
                _ => (0x0FFF_FFF7, 0x0FFF_FFFF),
            };
            let f = fixture(bits, mib, spc);
            let k = clusters(&f.img, "kernel.img");
            assert!(k.len() > 20, "FAT{bits}: {k:?}");
            let mid = k[k.len() / 2];
            let total = open(&f.img).max_cluster;
            let c = clusters(&f.img, "cmdline.txt");
            let s = clusters(&f.img, "sub");
            let cases: Vec<(&str, u32, u32, &str, &str)> = vec![
                ("loop", mid, k[3], "kernel.img", "loops: cluster"),
                ("self loop", k[0], k[0], "kernel.img", "loops"),
                (
                    "out of range",
                    mid,
                    total + 1,
                    "kernel.img",
                    "not a cluster of the volume",
                ),
                (
                    "reserved value 1",
                    mid,
                    1,
                    "kernel.img",
                    "not a cluster of the volume",
                ),
                ("free", mid, 0, "kernel.img", "marked free"),
                ("bad", mid, bad, "kernel.img", "marked bad"),
                (
                    "cut short",
                    mid,
                    end,
                    "kernel.img",
                    "short of its size of 300000 bytes",
                ),
                // A one-cluster file whose cluster is marked free: its data are intact,
                // the FAT is not.
                ("freed", c[0], 0, "cmdline.txt", "marked free"),
                // Two files sharing clusters: the second one read (in directory order) is refused.
                ("shared", c[0], k[0], "cmdline.txt", "cross-linked"),
                // A directory whose chain loops.
                ("dir loop", *s.last().unwrap(), s[0], "sub/", "loops"),
            ];
            for (what, at, value, victim, expect) in cases {
                let img = f
                    .img
                    .with_extension(format!("{}.img", what.replace(' ', "-")));
                std::fs::copy(&f.img, &img).unwrap();
                set_entry(&img, at, value);
                let tree = read_tree(&img);
                let errors: Vec<(&String, &String)> = tree
                    .iter()
                    .filter_map(|(p, r)| r.as_ref().err().map(|e| (p, e)))
                    .collect();
                assert_eq!(errors.len(), 1, "FAT{bits} {what}: {errors:?}");
                let (path, e) = errors[0];
                assert!(
                    path == victim && e.contains(expect),
                    "FAT{bits} {what}: {path}: {e}"
                );
            }
        }
    }

    #[test]
    fn a_filesystem_larger_than_its_partition_is_refused() {
        let f = fixture(16, 24, 1);
        let e = Volume::open(std::fs::File::open(&f.img).unwrap(), 0, 12 << 20)
            .err()
            .unwrap();
        assert!(e.contains("larger than its partition"), "{e}");
    }

    #[test]
    fn short_names() {
        assert_eq!(short_name(b"CONFIG  TXT", 0), "CONFIG.TXT");
        assert_eq!(short_name(b"CONFIG  TXT", 0x18), "config.txt");
        assert_eq!(short_name(b"CONFIG  TXT", 0x08), "config.TXT");
        assert_eq!(short_name(b"OVERLAYS   ", 0x08), "overlays");
        assert_eq!(short_name(b"\x05BC     TXT", 0), "\u{FFFD}BC.TXT");
        assert_eq!(short_name(b"A\x80      B  ", 0), "A\u{FFFD}.B");
    }

    #[test]
    fn lfn_checksum_is_the_specification_s() {
        let s = *b"ALONGN~1TXT";
        let spec = s.iter().fold(0u8, |sum, &b| {
            (if sum & 1 != 0 { 0x80u8 } else { 0 })
                .wrapping_add(sum >> 1)
                .wrapping_add(b)
        });
        assert_eq!(lfn_checksum(&s), spec);
    }
}
