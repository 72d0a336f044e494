//! Integration tests of `pinetboot::image`: Pi-OS-like images built with the
//! real tools (tooling.md §7 recipe, no mounts), unpacked and compared field
//! by field with the trees they were built from.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::tools::{require_root, require_tool, run};
use crate::support::tree::*;
use pinetboot::image::{Format, ImageError, UnpackReport, sniff, unpack};

/// Layout of the small test image (sectors of 512 bytes).
const P1_START: u64 = 8192;
const P1_SECTORS: u64 = 196_608; // 96 MiB FAT32 (≥ 65525 clusters with -s 2)
const P2_START: u64 = 204_800;
const IMAGE_BYTES: u64 = 320 << 20;

fn require_tools() {
    require_root("unpacking images keeps owners, device nodes and xattrs");
    for (tool, pkg) in [
        ("sfdisk", "fdisk"),
        ("mkfs.vfat", "dosfstools"),
        ("mcopy", "mtools"),
        ("mke2fs", "e2fsprogs"),
        ("e2fsck", "e2fsprogs"),
        ("debugfs", "e2fsprogs"),
        ("xz", "xz-utils"),
        ("gzip", "gzip"),
        ("zip", "zip"),
    ] {
        require_tool(tool, pkg);
    }
}

/// A built image and the trees it was made from.
struct Built {
    dir: tempfile::TempDir,
    disk: PathBuf,
    rootfs: PathBuf,
    bootfs: PathBuf,
    boot_dir: &'static str,
}

fn set_mtime(p: &Path, secs: i64) {
    let ts = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
    };
    rustix::fs::utimensat(rustix::fs::CWD, p, &ts, rustix::fs::AtFlags::empty()).unwrap();
}

fn build_bootfs(bootfs: &Path) {
    fs::create_dir(bootfs).unwrap();
    fs::create_dir(bootfs.join("overlays")).unwrap();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("config.txt", b"arm_64bit=1\nauto_initramfs=1\n".to_vec()),
        (
            "cmdline.txt",
            b"console=serial0,115200 console=tty1 root=PARTUUID=0c4c21e5-02 rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n".to_vec(),
        ),
        ("bcm2711-rpi-4-b.dtb", vec![0xd0, 0x0d, 0xfe, 0xed, 1, 2, 3]),
        (
            "kernel8.img",
            (0..400_000u32).map(|i| (i * 7 % 251) as u8).collect(),
        ),
        ("A Long File Name With Spaces.txt", b"long names".to_vec()),
        ("overlays/README", b"overlays readme".to_vec()),
        ("overlays/vc4-kms-v3d-pi4.dtbo", vec![9u8; 3000]),
        ("zeros.bin", vec![0u8; 100_000]),
    ];
    for (i, (name, data)) in files.iter().enumerate() {
        let p = bootfs.join(name);
        fs::write(&p, data).unwrap();
        set_mtime(&p, 1_700_000_000 + 2 * i as i64 * 1000);
    }
    set_mtime(&bootfs.join("overlays"), 1_690_000_000);
}

/// Builds `disk.img` exactly like tooling.md §7 (smaller sizes).
fn build_image(boot_dir: &'static str, ext4_opts: &[&str]) -> Built {
    require_tools();
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    let bootfs = dir.path().join("bootfs");
    build_source_tree(
        &rootfs,
        &TreeSpec {
            big_dir: true,
            symlink_xattr: true,
            boot_dir: Some(boot_dir),
        },
    );
    build_bootfs(&bootfs);
    let disk = dir.path().join("disk.img");
    crate::support::disk::build(&crate::support::disk::Disk {
        path: &disk,
        bytes: IMAGE_BYTES,
        disk_id: "0c4c21e5",
        p1_start: P1_START,
        p1_sectors: P1_SECTORS,
        fat16: false,
        bootfs: &bootfs,
        rootfs: &rootfs,
        mke2fs: ext4_opts,
    });
    Built {
        dir,
        disk,
        rootfs,
        bootfs,
        boot_dir,
    }
}

/// Runs a debugfs request on an ext4 filesystem (`file?offset=N`).
fn debugfs(spec: &str, request: &str) -> String {
    run(Command::new("debugfs").args(["-R", request, spec]))
}

/// mtime seconds of `path`, as debugfs sees it.
fn debugfs_mtime(spec: &str, path: &str) -> i64 {
    let out = debugfs(spec, &format!("stat {path}"));
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("mtime: 0x"))
        .unwrap_or_else(|| panic!("no mtime in debugfs output:\n{out}"));
    let hex = line.trim_start()["mtime: 0x".len()..]
        .split([':', ' '])
        .next()
        .unwrap();
    i64::from_str_radix(hex, 16).unwrap()
}

fn sha256_of(p: &Path) -> String {
    hash_file(p)
}

fn no_progress(_: u64, _: u64) {}

/// Compares the unpacked tree with the trees the image was built from.
fn check_unpacked(b: &Built, dest: &Path, report: &UnpackReport) {
    assert_eq!(report.boot_dir, Path::new(b.boot_dir));
    assert_eq!(
        report.pretty_name.as_deref(),
        Some("Debian GNU/Linux 12 (bookworm)")
    );
    assert_eq!(report.version_codename.as_deref(), Some("bookworm"));
    assert_eq!(report.disk_signature, 0x0c4c_21e5);
    assert_eq!(report.image_bytes, IMAGE_BYTES);
    assert_eq!(report.boot_partition_bytes, P1_SECTORS * 512);
    assert_eq!(report.root_partition_bytes, IMAGE_BYTES - P2_START * 512);

    // ext4 side: every field of every entry, mtimes to the second. mke2fs
    // does not carry the source root's mtime (it adds lost+found after):
    // the image's own value, read by debugfs, is the expected one.
    let mut src = snapshot(&b.rootfs);
    let spec = format!("{}?offset={}", b.disk.display(), P2_START * 512);
    src.get_mut(Path::new("")).unwrap().mtime.0 = debugfs_mtime(&spec, "/");
    let out = snapshot(dest);
    assert_same(
        &src,
        &out,
        &CompareOpts {
            mtime_ns: false,
            root: true,
            extra_right: vec![PathBuf::from("lost+found"), PathBuf::from(b.boot_dir)],
        },
    );
    let files = src
        .values()
        .filter(|e| e.kind == 0o100000)
        .map(|e| e.ino)
        .collect::<std::collections::BTreeSet<_>>()
        .len() as u64;
    assert_eq!(report.root.files, files);
    assert_eq!(report.root.hardlinks, 2);
    assert_eq!(report.root.symlinks, 7);
    assert_eq!(report.root.specials, 4);
    assert!(report.root.xattrs >= 4, "{:?}", report.root);
    let sparse = &out[Path::new("var/sparse.img")];
    assert!(
        sparse.blocks * 512 < 1 << 20,
        "holes lost: {}",
        sparse.blocks
    );

    // FAT side: names, contents, mtimes (2 s), fixed owners and modes.
    let boot_src = snapshot(&b.bootfs);
    let boot_out: BTreeMap<PathBuf, Entry> = snapshot(&dest.join(b.boot_dir));
    let mut errors = Vec::new();
    for (p, s) in &boot_src {
        if p.as_os_str().is_empty() {
            continue;
        }
        let Some(o) = boot_out.get(p) else {
            errors.push(format!("{p:?} missing"));
            continue;
        };
        let want_mode = if s.kind == 0o040000 { 0o755 } else { 0o644 };
        if (o.kind, o.mode, o.uid, o.gid, o.size, &o.hash)
            != (s.kind, want_mode, 0, 0, s.size, &s.hash)
            || o.mtime.0 != s.mtime.0 - s.mtime.0 % 2
        {
            errors.push(format!("{p:?}: {s:?} vs {o:?}"));
        }
    }
    for p in boot_out.keys() {
        if !boot_src.contains_key(p) {
            errors.push(format!("{p:?} extra"));
        }
    }
    assert!(
        errors.is_empty(),
        "boot partition differs:\n{}",
        errors.join("\n")
    );
    assert_eq!(report.boot.files, 8);
    assert_eq!(report.boot.dirs, 1);
    let zeros = &boot_out[Path::new("zeros.bin")];
    assert!(zeros.blocks < 16, "zero file not sparse: {}", zeros.blocks);
    // Nothing but the image, the trees and dest in the temp dir.
    let mut names: Vec<_> = fs::read_dir(b.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with("disk.img"))
        .collect();
    names.sort();
    assert_eq!(names, ["bootfs", "dest", "rootfs"], "stray files");
}

#[test]
fn raw_image_bookworm_layout() {
    let b = build_image("boot/firmware", &[]);
    let dest = b.dir.path().join("dest");
    let calls = std::sync::atomic::AtomicU32::new(0);
    let report = unpack(
        &b.disk,
        &sha256_of(&b.disk).to_uppercase(),
        &dest,
        &|d, t| {
            assert!(d <= t || t == 0);
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        },
    )
    .unwrap();
    assert_eq!(report.format, Format::Raw);
    assert!(calls.into_inner() > 0, "no progress reported");
    check_unpacked(&b, &dest, &report);
}

#[test]
fn xz_multiblock_bullseye_layout() {
    let b = build_image("boot", &[]);
    run(Command::new("xz")
        .args(["-T2", "-0", "-k", "--block-size=16MiB"])
        .arg(&b.disk));
    let xz = b.disk.with_extension("img.xz");
    let list = run(Command::new("xz").args(["-l", "--robot"]).arg(&xz));
    let blocks: u64 = list
        .lines()
        .find(|l| l.starts_with("totals"))
        .and_then(|l| l.split('\t').nth(2))
        .and_then(|n| n.parse().ok())
        .expect("xz -l --robot totals");
    assert!(blocks > 1, "xz file is single-block:\n{list}");
    assert_eq!(sniff(&xz).unwrap(), Format::Xz);
    let dest = b.dir.path().join("dest");
    let xz_len = fs::metadata(&xz).unwrap().len();
    // Progress: the decoding's (bytes of the .xz, rising to all of it), then the tree's.
    let calls = std::sync::Mutex::new(Vec::new());
    let report = unpack(&xz, &sha256_of(&xz), &dest, &|d, t| {
        calls.lock().unwrap().push((d, t));
    })
    .unwrap();
    let calls = calls.into_inner().unwrap();
    let decoding: Vec<u64> = calls
        .iter()
        .take_while(|(_, t)| *t == xz_len)
        .map(|(d, _)| *d)
        .collect();
    assert_eq!(decoding.last(), Some(&xz_len), "{calls:?}");
    assert!(decoding.windows(2).all(|w| w[0] <= w[1]), "{calls:?}");
    assert!(
        calls[decoding.len()..]
            .iter()
            .all(|(d, t)| *t != xz_len && d <= t),
        "decoding and tree progress interleave: {calls:?}"
    );
    assert_eq!(report.format, Format::Xz);
    assert_eq!(report.sha256, sha256_of(&xz));
    assert!(
        report.parallel_decoders >= 1,
        "a multi-block xz is decoded block by block while it is unpacked"
    );
    check_unpacked(&b, &dest, &report);
}

/// The block-parallel path: the digest is checked before anything is parsed, a block whose
/// data does not match its check is an error naming the block, and neither leaves anything.
#[test]
fn xz_parallel_digest_and_corrupt_block() {
    let b = build_image("boot/firmware", &[]);
    let t = b.dir.path();
    let dest = t.join("dest");
    run(Command::new("xz")
        .args(["-T2", "-0", "-k", "--block-size=1MiB"])
        .arg(&b.disk));
    let xz = b.disk.with_extension("img.xz");

    let wrong = "1".repeat(64);
    let msg = expect_failure(&xz, &wrong, &dest, |e| {
        matches!(e, ImageError::Sha256Mismatch { .. })
    });
    assert!(
        msg.contains(&wrong) && msg.contains(&sha256_of(&xz)),
        "{msg}"
    );

    // Flip the last byte (of the check) of every other block past the partition table: the
    // stream still decodes, but not to what was compressed. The declared digest is the
    // corrupted file's own, so only the xz checks can tell.
    let list = run(Command::new("xz").args(["-lvv", "--robot"]).arg(&xz));
    let mut bytes = fs::read(&xz).unwrap();
    let mut flipped = 0;
    for l in list.lines().filter(|l| l.starts_with("block\t")) {
        let f: Vec<&str> = l.split('\t').collect();
        let (n, off, total): (u64, usize, usize) = (
            f[3].parse().unwrap(),
            f[4].parse().unwrap(),
            f[6].parse().unwrap(),
        );
        if n > 1 && n % 2 == 0 {
            bytes[off + total - 1] ^= 0x40;
            flipped += 1;
        }
    }
    assert!(flipped > 2, "too few blocks:\n{list}");
    let bad = t.join("bad.img.xz");
    fs::write(&bad, &bytes).unwrap();
    let msg = expect_failure(&bad, &sha256_of(&bad), &dest, |e| {
        matches!(e, ImageError::Decompress { format: "xz", .. })
    });
    assert!(
        msg.contains("bad.img.xz") && msg.contains("xz block") && msg.contains("CRC64 check"),
        "{msg}"
    );
}

#[test]
fn gzip_and_zip() {
    let b = build_image("boot/firmware", &[]);
    run(Command::new("gzip").args(["-1", "-k"]).arg(&b.disk));
    let gz = b.disk.with_extension("img.gz");
    assert_eq!(sniff(&gz).unwrap(), Format::Gzip);
    let dest = b.dir.path().join("dest");
    let report = unpack(&gz, &sha256_of(&gz), &dest, &no_progress).unwrap();
    assert_eq!(report.format, Format::Gzip);
    check_unpacked(&b, &dest, &report);
    fs::remove_dir_all(&dest).unwrap();
    fs::remove_file(&gz).unwrap();

    let zip = b.dir.path().join("disk.img.zip");
    run(Command::new("zip").current_dir(b.dir.path()).args([
        "-q",
        "-1",
        "disk.img.zip",
        "disk.img",
    ]));
    assert_eq!(sniff(&zip).unwrap(), Format::Zip);
    let report = unpack(&zip, &sha256_of(&zip), &dest, &no_progress).unwrap();
    assert_eq!(report.format, Format::Zip);
    check_unpacked(&b, &dest, &report);
    fs::remove_file(&zip).unwrap();
}

/// Asserts that unpacking fails with an error matching `check`, that no
/// `dest` and no temporary file remain, and that /etc/passwd is unchanged.
fn expect_failure(
    image: &Path,
    sha: &str,
    dest: &Path,
    check: impl Fn(&ImageError) -> bool,
) -> String {
    let before = (
        hash_file(Path::new("/etc/passwd")),
        fs::metadata("/etc/passwd").unwrap().mtime(),
    );
    let entries_before = fs::read_dir(dest.parent().unwrap()).unwrap().count();
    let err = unpack(image, sha, dest, &no_progress).unwrap_err();
    assert!(check(&err), "unexpected error: {err:?}");
    assert!(!dest.exists(), "partial destination left behind");
    assert_eq!(
        fs::read_dir(dest.parent().unwrap()).unwrap().count(),
        entries_before,
        "stray temporary files"
    );
    assert_eq!(
        before,
        (
            hash_file(Path::new("/etc/passwd")),
            fs::metadata("/etc/passwd").unwrap().mtime()
        )
    );
    err.to_string()
}

#[test]
fn hostile_and_broken_images() {
    let b = build_image("boot/firmware", &[]);
    let t = b.dir.path();
    let dest = t.join("dest");
    let good = sha256_of(&b.disk);

    // Bad sha256: the message names both digests.
    let wrong = "0".repeat(64);
    let msg = expect_failure(&b.disk, &wrong, &dest, |e| {
        matches!(e, ImageError::Sha256Mismatch { .. })
    });
    assert!(msg.contains(&wrong) && msg.contains(&good), "{msg}");
    assert!(msg.contains("disk.img"), "{msg}");
    expect_failure(&b.disk, "not-a-digest", &dest, |e| {
        matches!(e, ImageError::BadDigest(_))
    });

    // Existing destination.
    fs::create_dir(&dest).unwrap();
    let err = unpack(&b.disk, &good, &dest, &no_progress).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    fs::remove_dir(&dest).unwrap();

    // Unknown format.
    let junk = t.join("junk.img.xz");
    fs::write(&junk, b"this is not an image at all").unwrap();
    expect_failure(&junk, &sha256_of(&junk), &dest, |e| {
        matches!(e, ImageError::UnknownFormat { .. })
    });
    fs::remove_file(&junk).unwrap();

    // Truncated xz.
    run(Command::new("xz").args(["-T2", "-0", "-k"]).arg(&b.disk));
    let xz = b.disk.with_extension("img.xz");
    let data = fs::read(&xz).unwrap();
    let cut = t.join("cut.img.xz");
    fs::write(&cut, &data[..data.len() / 2]).unwrap();
    let msg = expect_failure(&cut, &sha256_of(&cut), &dest, |e| {
        matches!(e, ImageError::Decompress { format: "xz", .. })
    });
    assert!(msg.contains("cut.img.xz"), "{msg}");
    fs::remove_file(&cut).unwrap();
    fs::remove_file(&xz).unwrap();

    // Truncated gzip.
    run(Command::new("gzip").args(["-1", "-k"]).arg(&b.disk));
    let gz = b.disk.with_extension("img.gz");
    let data = fs::read(&gz).unwrap();
    fs::write(&gz, &data[..data.len() / 2]).unwrap();
    expect_failure(&gz, &sha256_of(&gz), &dest, |e| {
        matches!(e, ImageError::Decompress { format: "gzip", .. })
    });
    fs::remove_file(&gz).unwrap();

    // A zip with no .img member.
    let zip = t.join("noimg.zip");
    run(Command::new("zip")
        .current_dir(t)
        .args(["-q", "noimg.zip", "bootfs/config.txt"]));
    let msg = expect_failure(&zip, &sha256_of(&zip), &dest, |e| {
        matches!(e, ImageError::Zip { .. })
    });
    assert!(msg.contains("exactly one .img"), "{msg}");
    fs::remove_file(&zip).unwrap();

    // Partition 2 past the end of the image.
    let short = t.join("short.img");
    fs::copy(&b.disk, &short).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&short)
        .unwrap()
        .set_len(IMAGE_BYTES - (1 << 20))
        .unwrap();
    let msg = expect_failure(&short, &sha256_of(&short), &dest, |e| {
        matches!(e, ImageError::Mbr { .. })
    });
    assert!(msg.contains("past the end"), "{msg}");

    // Partition 2 of the wrong type.
    let mut mbr = fs::read(&b.disk).unwrap()[..512].to_vec();
    mbr[446 + 16 + 4] = 0x07;
    let bad_type = t.join("badtype.img");
    fs::copy(&b.disk, &bad_type).unwrap();
    std::os::unix::fs::FileExt::write_all_at(
        &fs::OpenOptions::new().write(true).open(&bad_type).unwrap(),
        &mbr,
        0,
    )
    .unwrap();
    expect_failure(&bad_type, &sha256_of(&bad_type), &dest, |e| {
        matches!(e, ImageError::Mbr { .. })
    });
    fs::remove_file(&bad_type).unwrap();

    // A directory cycle: /usr/bin/loop is another name of /usr.
    let cyc = t.join("cycle.img");
    fs::rename(&short, &cyc).unwrap();
    fs::copy(&b.disk, &cyc).unwrap();
    let off = P2_START * 512;
    run(Command::new("debugfs")
        .args(["-w", "-R", "ln /usr /usr/bin/loop"])
        .arg(format!("{}?offset={off}", cyc.display())));
    let msg = expect_failure(&cyc, &sha256_of(&cyc), &dest, |e| {
        matches!(e, ImageError::Hostile { .. })
    });
    assert!(msg.contains("cycle"), "{msg}");
    fs::remove_file(&cyc).unwrap();

    // A corrupt ext4 superblock.
    let bad = t.join("badsb.img");
    fs::copy(&b.disk, &bad).unwrap();
    std::os::unix::fs::FileExt::write_all_at(
        &fs::OpenOptions::new().write(true).open(&bad).unwrap(),
        &[0u8; 1024],
        off + 1024,
    )
    .unwrap();
    expect_failure(&bad, &sha256_of(&bad), &dest, |e| {
        matches!(e, ImageError::Ext4 { .. } | ImageError::Ext4Raw { .. })
    });
    fs::remove_file(&bad).unwrap();
}

/// A hostile name inside ext4: a directory entry renamed in place to
/// `../../../../etc/x` (metadata_csum off so no checksum hides the test).
#[test]
fn hostile_ext4_name() {
    let b = build_image("boot", &["-O", "^metadata_csum"]);
    let t = b.dir.path();
    let dest = t.join("dest");
    let mut img = fs::read(&b.disk).unwrap();
    let from = b"hostname";
    let to = b"../../..";
    let root_start = (P2_START * 512) as usize;
    let mut hits = 0;
    let mut i = root_start;
    while let Some(pos) = img[i..].windows(from.len()).position(|w| w == from) {
        let at = i + pos;
        // A directory entry: name_len byte 8 before the name... 2 bytes before.
        if img[at - 2] as usize == from.len() {
            img[at..at + from.len()].copy_from_slice(to);
            hits += 1;
        }
        i = at + 1;
    }
    assert_eq!(hits, 1, "directory entry for etc/hostname not found");
    let hostile = t.join("hostile.img");
    fs::write(&hostile, &img).unwrap();
    drop(img);
    let msg = expect_failure(&hostile, &sha256_of(&hostile), &dest, |e| {
        matches!(
            e,
            ImageError::Hostile { .. } | ImageError::Ext4 { .. } | ImageError::Tree(_)
        )
    });
    assert!(!Path::new("/etc/x").exists());
    eprintln!("hostile name refused: {msg}");
    fs::remove_file(&hostile).unwrap();
}

/// `sh -c script`, which must succeed.
fn sh(script: &str) {
    run(Command::new("sh").args(["-ec", script]));
}

/// Concatenated streams are decoded whole, as `xz -d` does (stream padding included); a
/// file of one block is decoded by the block decoder too; bytes after the last stream that
/// `xz -d` refuses (garbage, a broken stream) are an error, never ignored.
#[test]
fn xz_concatenated_streams_and_what_follows_them() {
    let b = build_image("boot/firmware", &[]);
    let t = b.dir.path();
    let dest = t.join("dest");
    let disk = b.disk.display().to_string();
    // The disk in two single-block streams (`xz -T1`), 8 bytes of stream padding between.
    sh(&format!(
        "head -c 100M {disk} | xz -T1 -0 > {t}/disk.img.a.xz
         tail -c +104857601 {disk} | xz -T1 -0 > {t}/disk.img.b.xz
         cat {t}/disk.img.a.xz > {t}/disk.img.two.xz
         head -c 8 /dev/zero >> {t}/disk.img.two.xz
         cat {t}/disk.img.b.xz >> {t}/disk.img.two.xz
         xz -dc {t}/disk.img.two.xz | cmp - {disk}",
        t = t.display()
    ));
    let two = t.join("disk.img.two.xz");
    let report = unpack(&two, &sha256_of(&two), &dest, &no_progress).unwrap();
    assert!(
        report.parallel_decoders >= 1,
        "two blocks, decoded block by block"
    );
    check_unpacked(&b, &dest, &report);
    fs::remove_dir_all(&dest).unwrap();

    // One stream of one block.
    sh(&format!(
        "xz -T1 -0 -k -c {disk} > {t}/disk.img.one.xz",
        t = t.display()
    ));
    let one = t.join("disk.img.one.xz");
    let report = unpack(&one, &sha256_of(&one), &dest, &no_progress).unwrap();
    assert_eq!(report.parallel_decoders, 1, "one block, one worker");
    check_unpacked(&b, &dest, &report);
    fs::remove_dir_all(&dest).unwrap();

    // What `xz -d` refuses after a complete image: garbage, or a stream whose footer is
    // broken. Before, the first stream was decoded and the rest only hashed.
    sh(&format!(
        "printf 'xz garbage!!' > {t}/disk.img.junk
         echo extra | xz -T1 > {t}/disk.img.extra.xz
         cat {t}/disk.img.one.xz {t}/disk.img.junk > {t}/disk.img.garbage.xz
         cat {t}/disk.img.one.xz {t}/disk.img.extra.xz > {t}/disk.img.broken.xz",
        t = t.display()
    ));
    let broken = t.join("disk.img.broken.xz");
    let mut bytes = fs::read(&broken).unwrap();
    let n = bytes.len();
    bytes[n - 12] ^= 0x01; // the last stream footer's CRC32
    fs::write(&broken, bytes).unwrap();
    for name in ["disk.img.garbage.xz", "disk.img.broken.xz"] {
        let p = t.join(name);
        let xz = Command::new("xz").arg("-t").arg(&p).output().unwrap();
        assert!(!xz.status.success(), "xz -t accepts {name}");
        let msg = expect_failure(&p, &sha256_of(&p), &dest, |e| {
            matches!(e, ImageError::Decompress { format: "xz", .. })
        });
        assert!(msg.contains(name), "{msg}");
    }
}

/// The block-parallel path too checks the whole file's sha256 before decoding a block: a
/// wrong digest is the error even when the data would not decode, and a compressed file
/// that does not decode reports its digest mismatch, not its decoding error.
#[test]
fn every_format_is_verified_before_anything_is_decoded() {
    // Needs no root: nothing is unpacked (the digest is checked first).
    require_tool("xz", "xz-utils");
    require_tool("gzip", "gzip");
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    let dest = t.join("dest");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
    fs::write(t.join("d"), &data).unwrap();
    sh(&format!(
        "cd {t}
         xz -T1 -k -c d > one.img.xz
         xz -T2 --block-size=256KiB -k -c d > multi.img.xz
         gzip -1 -c d > d.img.gz",
        t = t.display()
    ));
    for name in ["one.img.xz", "multi.img.xz", "d.img.gz"] {
        let p = t.join(name);
        // Corrupt the middle of the compressed data: it no longer decodes.
        let mut bytes = fs::read(&p).unwrap();
        let mid = bytes.len() / 2;
        for b in &mut bytes[mid..mid + 64] {
            *b ^= 0x5A;
        }
        fs::write(&p, &bytes).unwrap();
        let wrong = "7".repeat(64);
        let msg = expect_failure(&p, &wrong, &dest, |e| {
            matches!(e, ImageError::Sha256Mismatch { .. })
        });
        assert!(
            msg.contains(&wrong) && msg.contains(&sha256_of(&p)),
            "{name}: {msg}"
        );
    }
}

/// The clusters of `path` in the FAT partition of `disk`, as `mshowfat` lists them.
fn fat_clusters(disk: &Path, path: &str) -> Vec<u32> {
    let out = run(Command::new("mshowfat")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(format!("{}@@{}", disk.display(), P1_START * 512))
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

/// Sets FAT32 entry `n` of the boot partition of `disk` to `value`, in every FAT copy.
fn set_fat32_entry(disk: &Path, n: u32, value: u32) {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(disk)
        .unwrap();
    let part = P1_START * 512;
    let mut bs = [0u8; 512];
    f.read_exact_at(&mut bs, part).unwrap();
    let bps = u64::from(u16::from_le_bytes([bs[11], bs[12]]));
    let reserved = u64::from(u16::from_le_bytes([bs[14], bs[15]]));
    let fats = u64::from(bs[16]);
    assert_eq!(u16::from_le_bytes([bs[22], bs[23]]), 0, "not FAT32");
    let spf = u64::from(u32::from_le_bytes([bs[36], bs[37], bs[38], bs[39]]));
    for k in 0..fats {
        let at = part + (reserved + k * spf) * bps + 4 * u64::from(n);
        f.write_all_at(&value.to_le_bytes(), at).unwrap();
    }
}

/// Broken FAT cluster chains are errors naming the file inside the image (the boot
/// partition is FAT32, written by mkfs.vfat and mcopy, then broken at its FAT bytes);
/// before, they were read as truncated or repeated content and unpacking succeeded.
#[test]
fn broken_fat_chains_are_errors_naming_the_file() {
    let b = build_image("boot/firmware", &[]);
    let t = b.dir.path();
    let dest = t.join("dest");
    let kernel = fat_clusters(&b.disk, "kernel8.img");
    assert!(kernel.len() > 100, "{kernel:?}");
    let mid = kernel[kernel.len() / 2];
    let cmdline = fat_clusters(&b.disk, "cmdline.txt");
    let overlays = fat_clusters(&b.disk, "overlays");
    let cases: Vec<(&str, &str, u32, u32, &str)> = vec![
        ("loop", "kernel8.img", mid, kernel[2], "loops"),
        (
            "past the last cluster",
            "kernel8.img",
            mid,
            0x00FF_FFF0,
            "not a cluster of the volume",
        ),
        (
            "reserved value",
            "kernel8.img",
            mid,
            1,
            "not a cluster of the volume",
        ),
        ("free", "kernel8.img", mid, 0, "marked free"),
        ("bad", "kernel8.img", mid, 0x0FFF_FFF7, "marked bad"),
        (
            "cut short",
            "kernel8.img",
            mid,
            0x0FFF_FFFF,
            "short of its size",
        ),
        (
            "cmdline.txt freed",
            "cmdline.txt",
            cmdline[0],
            0,
            "marked free",
        ),
        // Whichever of the two is read second is refused.
        (
            "shared",
            "cmdline.txt|kernel8.img",
            cmdline[0],
            kernel[0],
            "cross-linked",
        ),
        (
            "directory loop",
            "overlays",
            overlays[0],
            overlays[0],
            "loops",
        ),
    ];
    for (what, file, at, value, expect) in cases {
        let img = t.join(format!("{}.img", what.replace(' ', "-")));
        fs::copy(&b.disk, &img).unwrap();
        set_fat32_entry(&img, at, value);
        let msg = expect_failure(&img, &sha256_of(&img), &dest, |e| {
            matches!(e, ImageError::Fat { .. })
        });
        assert!(
            file.split('|')
                .any(|f| msg.contains(&format!("FAT partition at /{f}:")))
                && msg.contains(expect),
            "{what}: {msg}"
        );
        fs::remove_file(&img).unwrap();
    }
}
