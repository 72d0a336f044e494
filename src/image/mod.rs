//! Raspberry Pi OS images, unpacked in userspace into a [`TreeWriter`].
//!
//! An image is untrusted input and the kernel need not have `vfat`, so
//! nothing is mounted: the format is sniffed by magic (raw MBR image, xz,
//! gzip, zip with a single `.img` member), the whole source file's sha256 is
//! checked before any byte of it is decoded or parsed, a compressed image
//! is decoded into a sparse temporary file next to the destination — xz
//! block by block on every core while the partitions are already being read
//! (see `xzpar`), anything else whole first; every decoder's memory is
//! capped — the MBR is read with `mbrman`, the FAT boot partition with the
//! in-house `fatvol` (every cluster chain checked whole) and the ext4 root
//! partition with `ext4-view` (listings, inode metadata) plus an in-house
//! supplement for inode numbers, link counts, device numbers, xattrs,
//! symlink targets and the extent runs through which file data is copied in
//! the kernel.
//!
//! [`unpack`] writes the ext4 root into `dest` and the FAT partition into
//! `dest/<boot dir>`, where the boot dir comes from the image's own
//! `etc/fstab` (`/boot/firmware` since Bookworm, `/boot` on Bullseye).
//!
//! FAT has no owners or modes: its directories become `0755 root:root` and
//! its files `0644 root:root`; FAT times are local times without a zone and
//! are taken as UTC (mtime with FAT's 2-second resolution; atime = mtime).
//! The boot dir itself keeps the metadata of the ext4 mount point.
//!
//! [`TreeWriter`]: crate::tree::TreeWriter

mod ext4;
mod ext4raw;
mod fat;
mod fatvol;
pub mod fetch;
mod source;
pub mod store;
mod xzpar;

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::ioerr::IoError;
use crate::pios;
use crate::tree::{Meta, TreeError, TreeWriter};

pub use source::sniff;

/// Largest decompressed image accepted (64 GiB).
pub const MAX_IMAGE_BYTES: u64 = 64 << 30;

/// Sector size of the MBR images handled here.
const SECTOR: u64 = 512;

/// Container format of an image file, from its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Raw disk image (MBR boot signature `55 AA` at byte 510).
    Raw,
    /// xz (`FD 37 7A 58 5A 00`).
    Xz,
    /// gzip (`1F 8B`).
    Gzip,
    /// zip (`PK 03 04`), with exactly one `*.img` member.
    Zip,
}

/// Errors of image unpacking. Every variant names the image file, and the
/// path inside the image where there is one.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A system call on a host file failed.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The expected digest is not 64 hex digits.
    #[error("expected sha256 {0:?} is not 64 hex digits")]
    BadDigest(String),
    /// The image file's sha256 is not the expected one.
    #[error("sha256 mismatch for {path}: expected {expected}, got {actual}")]
    Sha256Mismatch {
        /// The image file.
        path: PathBuf,
        /// Expected digest (lower-case hex).
        expected: String,
        /// Actual digest (lower-case hex).
        actual: String,
    },
    /// No known magic at the start of the file.
    #[error("{path}: unknown image format (expected a raw MBR image, xz, gzip or zip)")]
    UnknownFormat {
        /// The image file.
        path: PathBuf,
    },
    /// Decompression failed (truncated or corrupt stream, too large...).
    #[error("{path}: cannot decompress {format}: {source}")]
    Decompress {
        /// The image file.
        path: PathBuf,
        /// `"xz"`, `"gzip"` or `"zip"`.
        format: &'static str,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
    /// The zip archive is unusable.
    #[error("{path}: zip: {reason}")]
    Zip {
        /// The image file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The partition table is unusable (missing partitions, wrong types,
    /// a partition past the end of the image...).
    #[error("{path}: partition table: {reason}")]
    Mbr {
        /// The image file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The FAT partition could not be read.
    #[error("{path}: FAT partition at {inside}: {source}", inside = inside.display())]
    Fat {
        /// The image file.
        path: PathBuf,
        /// Path inside the FAT filesystem.
        inside: PathBuf,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
    /// ext4-view could not read the root partition.
    #[error("{path}: ext4 partition at {inside}: {source}")]
    Ext4 {
        /// The image file.
        path: PathBuf,
        /// Path inside the ext4 filesystem.
        inside: String,
        /// Underlying error.
        #[source]
        source: ext4_view::Ext4Error,
    },
    /// The ext4 supplement found a malformed or unsupported structure.
    #[error("{path}: ext4 partition at {inside}: {reason}")]
    Ext4Raw {
        /// The image file.
        path: PathBuf,
        /// Path inside the ext4 filesystem.
        inside: String,
        /// What is wrong.
        reason: String,
    },
    /// The image is hostile or absurd (bad names, cycles, absurd sizes).
    #[error("{path}: refused: {reason}")]
    Hostile {
        /// The image file.
        path: PathBuf,
        /// What was refused.
        reason: String,
    },
    /// Writing the tree failed (or was refused).
    #[error(transparent)]
    Tree(#[from] TreeError),
}

impl ImageError {
    fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        ImageError::Io(IoError::new(op, path.to_path_buf(), source))
    }
}

/// Entry counts of one partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Regular files (hardlinks counted once).
    pub files: u64,
    /// Directories (the partition's root not counted).
    pub dirs: u64,
    /// Symlinks.
    pub symlinks: u64,
    /// Extra names of an inode already written.
    pub hardlinks: u64,
    /// Device nodes, fifos and sockets.
    pub specials: u64,
    /// Bytes of file data (sizes, holes included).
    pub bytes: u64,
    /// Extended attributes written.
    pub xattrs: u64,
}

/// What [`unpack`] found and wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackReport {
    /// Container format of the image file.
    pub format: Format,
    /// sha256 of the image file (lower-case hex).
    pub sha256: String,
    /// Size of the raw disk image (decompressed).
    pub image_bytes: u64,
    /// MBR disk signature (the `<id>` of `PARTUUID=<id>-01`).
    pub disk_signature: u32,
    /// Where the FAT partition went, relative to `dest` (`boot/firmware` or
    /// `boot`).
    pub boot_dir: PathBuf,
    /// `PRETTY_NAME` of the image's os-release, if any.
    pub pretty_name: Option<String>,
    /// `VERSION_CODENAME` of the image's os-release, if any.
    pub version_codename: Option<String>,
    /// Size of the FAT partition.
    pub boot_partition_bytes: u64,
    /// Size of the ext4 partition.
    pub root_partition_bytes: u64,
    /// What was written from the ext4 partition.
    pub root: Counts,
    /// What was written from the FAT partition.
    pub boot: Counts,
    /// Threads that decoded the image block by block while it was being
    /// unpacked (xz); 0 when it was decoded whole first (gzip, zip, an xz
    /// container only liblzma's stream decoder takes) or is a raw image.
    pub parallel_decoders: usize,
}

/// Fuzzing entry point, not an API: the xz container reader and the block
/// decoder on arbitrary bytes (`fuzz/fuzz_targets/xz.rs`). Outcomes other
/// than panics, hangs and memory blow-ups are all fine.
#[doc(hidden)]
pub fn fuzz_xz(data: &[u8]) {
    use std::io::Write;
    let Ok(mut file) = tempfile::tempfile() else {
        return;
    };
    if file.write_all(data).is_err() {
        return;
    }
    let Ok(Some(layout)) = xzpar::layout(&file) else {
        return;
    };
    if layout.uncompressed_size > 64 << 20 || layout.check_memory(64 << 20).is_err() {
        return;
    }
    let Ok(out) = tempfile::tempfile() else {
        return;
    };
    let size = layout.uncompressed_size;
    let decode = xzpar::ParDecode::start(file, layout, out, 2, 64 << 20, Box::new(|_| {}));
    let _ = decode.wait_range(size / 2, 1);
    let _ = decode.finish();
}

/// A partition's byte range, checked against the image size.
fn partition(
    image: &Path,
    mbr: &mbrman::MBR,
    n: usize,
    image_len: u64,
    types: &[u8],
    what: &str,
) -> Result<(u64, u64), ImageError> {
    let err = |reason: String| ImageError::Mbr {
        path: image.to_path_buf(),
        reason,
    };
    let p = mbr
        .get(n)
        .filter(|p| p.is_used())
        .ok_or_else(|| err(format!("partition {n} ({what}) is missing")))?;
    if !types.contains(&p.sys) {
        return Err(err(format!(
            "partition {n} has type {:#04x}, expected {what} ({})",
            p.sys,
            types
                .iter()
                .map(|t| format!("{t:#04x}"))
                .collect::<Vec<_>>()
                .join(" or ")
        )));
    }
    let start = u64::from(p.starting_lba) * SECTOR;
    let len = u64::from(p.sectors) * SECTOR;
    if p.starting_lba == 0 || len == 0 {
        return Err(err(format!(
            "partition {n} ({what}) is empty or starts at sector 0"
        )));
    }
    if start + len > image_len {
        return Err(err(format!(
            "partition {n} ({what}) ends at byte {} past the end of the image ({image_len} bytes)",
            start + len
        )));
    }
    Ok((start, len))
}

/// Runs `f`, turning a panic of a third-party reader into an error.
fn no_panic<T>(
    image: &Path,
    what: &str,
    f: impl FnOnce() -> Result<T, ImageError>,
) -> Result<T, ImageError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(ImageError::Hostile {
            path: image.to_path_buf(),
            reason: format!("the {what} reader panicked on this image"),
        })
    })
}

/// Unpacks an OS image into the new directory `dest` (which must not exist;
/// its parent must, and receives the temporary decompressed image).
///
/// The image file's sha256 must be `expected_sha256` (64 hex digits, any
/// case); nothing inside the image is parsed before it is checked. The ext4
/// root partition (partition 2) is written into `dest` keeping owners,
/// modes, symlinks, hardlinks, device nodes, fifos, sockets, xattrs and
/// timestamps; the FAT partition (partition 1) into `dest/<boot dir>`.
///
/// `progress(done, total)` is called first with bytes of the image file read
/// (checksum and decompression; from another thread while a multi-block xz
/// decodes, hence `Sync`), then with bytes of file data written out of the
/// sum of both partition sizes.
///
/// On error, `dest` (if this call created it) is removed again.
pub fn unpack(
    image_file: &Path,
    expected_sha256: &str,
    dest: &Path,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<UnpackReport, ImageError> {
    source::normalize_digest(expected_sha256)?;
    if dest.symlink_metadata().is_ok() {
        return Err(TreeError::DestinationExists(dest.to_path_buf()).into());
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let format = sniff(image_file)?;
    let mut raw = source::open_raw(image_file, format, expected_sha256, &parent, progress)?;
    // While blocks are being decoded, progress is the decoding's (bytes of
    // the image file), reported by a thread of its own; then the tree's.
    let watch = raw.decode_watch();
    let stop = AtomicBool::new(false);
    let decoded = AtomicBool::new(watch.is_none());
    let tree_progress = |done, total| {
        if decoded.load(Ordering::Relaxed) {
            progress(done, total);
        }
    };
    let result = std::thread::scope(|s| {
        let ticker = watch.as_ref().map(|w| {
            s.spawn(|| {
                w.report(progress, &stop);
                decoded.store(true, Ordering::Relaxed);
            })
        });
        let result = TreeWriter::create(dest)
            .map(|w| w.with_copy_threads(TreeWriter::default_copy_threads()))
            .map_err(ImageError::from)
            .and_then(|mut writer| {
                let report = unpack_into(image_file, format, &raw, &mut writer, &tree_progress);
                // The digest and the decoding behind the raw image have the
                // last word: a mismatch explains any error seen reading it.
                let done = raw.complete(image_file, report.is_err());
                let report = done.and(report)?;
                writer.finish()?;
                Ok(report)
            });
        stop.store(true, Ordering::Relaxed);
        if let Some(t) = ticker {
            t.thread().unpark();
        }
        result
    });
    // The tree's final figure (once the decoding's reporter has ended), also
    // when the tree was all written while the decoding was being reported.
    if let Ok(report) = &result {
        progress(
            report.root.bytes + report.boot.bytes,
            report.root_partition_bytes + report.boot_partition_bytes,
        );
    }
    if result.is_err()
        && let Err(e) = std::fs::remove_dir_all(dest)
    {
        tracing::warn!(path = %dest.display(), error = %e, "cannot remove partial unpack");
    }
    result
}

fn unpack_into(
    image: &Path,
    format: Format,
    raw: &source::RawImage,
    writer: &mut TreeWriter,
    progress: &dyn Fn(u64, u64),
) -> Result<UnpackReport, ImageError> {
    let clone = || {
        raw.file
            .try_clone()
            .map_err(|e| ImageError::io("duplicate descriptor of", image, e))
    };
    let mut f = clone()?;
    raw.wait(image, 0, SECTOR.min(raw.len))?;
    let mbr = mbrman::MBR::read_from(&mut f, SECTOR as u32).map_err(|e| ImageError::Mbr {
        path: image.to_path_buf(),
        reason: e.to_string(),
    })?;
    let disk_signature = u32::from_le_bytes(mbr.header.disk_signature);
    let (boot_off, boot_len) = partition(
        image,
        &mbr,
        1,
        raw.len,
        &[0x01, 0x04, 0x06, 0x0b, 0x0c, 0x0e],
        "FAT",
    )?;
    let (root_off, root_len) = partition(image, &mbr, 2, raw.len, &[0x83], "Linux")?;
    if boot_off < root_off + root_len && root_off < boot_off + boot_len {
        return Err(ImageError::Mbr {
            path: image.to_path_buf(),
            reason: "partitions 1 and 2 overlap".into(),
        });
    }
    let progress_total = boot_len + root_len;

    // ext4 root.
    let win = |off, len| -> Result<ext4raw::Window, ImageError> {
        Ok(ext4raw::Window {
            file: clone()?,
            offset: off,
            len,
            ready: raw.ready.clone(),
        })
    };
    let fs = no_panic(image, "ext4", || {
        ext4_view::Ext4::load(Box::new(win(root_off, root_len)?)).map_err(|e| ImageError::Ext4 {
            path: image.to_path_buf(),
            inside: "/".into(),
            source: e,
        })
    })?;
    let rawfs =
        ext4raw::RawFs::open(win(root_off, root_len)?).map_err(|reason| ImageError::Ext4Raw {
            path: image.to_path_buf(),
            inside: "/".into(),
            reason,
        })?;
    let os_release = ext4::read_small(&fs, "/etc/os-release")
        .or_else(|| ext4::read_small(&fs, "/usr/lib/os-release"))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    // Where the FAT partition goes: decided as planning decides it (`pios`), from the image's
    // fstab, release and folders; the manifest records it, and expand uses that.
    let fstab = ext4::read_small(&fs, "/etc/fstab");
    let firmware_dir = fs
        .metadata("/boot/firmware")
        .map(|m| m.is_dir())
        .unwrap_or(false);
    let boot_dir = pios::boot_dir_from(
        fstab.as_deref().map(String::from_utf8_lossy).as_deref(),
        firmware_dir,
        pios::os_release_field(&os_release, "VERSION_CODENAME").as_deref(),
    );

    let mut walk = ext4::Ext4Walk {
        image,
        fs: &fs,
        raw: &rawfs,
        writer,
        counts: Counts::default(),
        links: HashMap::new(),
        visited: HashSet::from([ext4::ROOT_INO]),
        progress,
        progress_total,
    };
    let root_counts = no_panic(image, "ext4", || {
        let raw_root = walk
            .raw
            .inode(ext4::ROOT_INO)
            .map_err(|e| walk.raw_err(b"/", e))?;
        let root_md = walk
            .fs
            .symlink_metadata("/")
            .map_err(|e| walk.view_err(b"/", e))?;
        let (root_meta, _) = walk.meta(b"/", &raw_root, &root_md)?;
        walk.counts.xattrs += root_meta.xattrs.len() as u64;
        walk.writer.set_root_meta(root_meta)?;
        walk.walk(b"/", ext4::ROOT_INO, Path::new(""), 0)?;
        Ok(walk.counts)
    })?;

    // The boot dir: a real directory of the ext4 tree, else created.
    let mut abs = Vec::new();
    let mut rel = PathBuf::new();
    for comp in boot_dir.iter() {
        abs.push(b'/');
        abs.extend_from_slice(comp.as_encoded_bytes());
        rel.push(comp);
        match fs.symlink_metadata(&abs[..]) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(ImageError::Hostile {
                    path: image.to_path_buf(),
                    reason: format!("boot dir /{} is not a directory", rel.display()),
                });
            }
            Err(_) => writer.dir(&rel, Meta::new(0o755, 0, 0))?,
        }
    }

    // FAT boot partition.
    raw.wait(image, boot_off, boot_len)?;
    let boot_counts = no_panic(image, "FAT", || {
        let vol = fat::open(image, clone()?, boot_off, boot_len)?;
        let mut walk = fat::FatWalk {
            image,
            vol: &vol,
            writer: &mut *writer,
            counts: Counts::default(),
            part_len: boot_len,
            progress,
            progress_total,
            progress_base: root_counts.bytes,
            dirs: HashSet::new(),
        };
        walk.walk(vol.root(), &boot_dir, Path::new("/"), 0)?;
        Ok(walk.counts)
    })?;

    Ok(UnpackReport {
        format,
        sha256: raw.sha256.clone(),
        image_bytes: raw.len,
        disk_signature,
        boot_dir,
        pretty_name: pios::os_release_field(&os_release, "PRETTY_NAME"),
        version_codename: pios::os_release_field(&os_release, "VERSION_CODENAME"),
        boot_partition_bytes: boot_len,
        root_partition_bytes: root_len,
        root: root_counts,
        boot: boot_counts,
        parallel_decoders: raw.parallel_decoders(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release() {
        let t = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_CODENAME=bookworm\n";
        assert_eq!(
            pios::os_release_field(t, "PRETTY_NAME").as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(
            pios::os_release_field(t, "VERSION_CODENAME").as_deref(),
            Some("bookworm")
        );
        assert_eq!(pios::os_release_field(t, "ID"), None);
    }

    #[test]
    fn digest_syntax() {
        assert!(source::normalize_digest("abc").is_err());
        assert!(source::normalize_digest(&"A".repeat(64)).is_ok());
        assert!(source::normalize_digest(&"g".repeat(64)).is_err());
    }
}
