//! Builds a Raspberry Pi OS-like MBR disk image with the real tools, as the Raspberry Pi
//! image builders do (tooling.md §7): `sfdisk` (a FAT partition then a Linux one),
//! `mkfs.vfat` + `mcopy` for the boot partition, `mke2fs -d` for the root partition, and
//! `e2fsck -fn` to check the result. Shared by the image tests and the image benchmark.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// The disk to build. Sizes and offsets are in 512-byte sectors except `bytes`.
pub struct Disk<'a> {
    /// The image file (created or truncated).
    pub path: &'a Path,
    /// Size of the whole image.
    pub bytes: u64,
    /// MBR disk signature, 8 hex digits (also the FAT volume id).
    pub disk_id: &'a str,
    /// First sector of partition 1 (FAT).
    pub p1_start: u64,
    /// Sectors of partition 1; partition 2 (ext4) follows it and fills the disk.
    pub p1_sectors: u64,
    /// FAT16 (type 0x0e) instead of FAT32 (type 0x0c, 2 sectors per cluster).
    pub fat16: bool,
    /// What goes into the FAT partition.
    pub bootfs: &'a Path,
    /// What goes into the ext4 partition.
    pub rootfs: &'a Path,
    /// Extra `mke2fs` options (`-b 4096`, `-O ^metadata_csum`...).
    pub mke2fs: &'a [&'a str],
}

fn run(cmd: &mut Command, package: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} (apt-get install -y {package}): {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds the disk image `d.path`.
pub fn build(d: &Disk) {
    std::fs::File::create(d.path)
        .unwrap()
        .set_len(d.bytes)
        .unwrap();
    let p2_start = d.p1_start + d.p1_sectors;
    let fat_type = if d.fat16 { "e" } else { "c" };
    let mut sfdisk = Command::new("sfdisk")
        .args(["--no-reread", "--no-tell-kernel", "-q"])
        .arg(d.path)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("sfdisk (apt-get install -y fdisk)");
    write!(
        sfdisk.stdin.take().unwrap(),
        "label: dos\nlabel-id: 0x{}\nstart={}, size={}, type={fat_type}\nstart={p2_start}, type=83\n",
        d.disk_id,
        d.p1_start,
        d.p1_sectors
    )
    .unwrap();
    assert!(sfdisk.wait().unwrap().success(), "sfdisk failed");
    let fat: &[&str] = if d.fat16 {
        &["-F", "16"]
    } else {
        &["-F", "32", "-s", "2"]
    };
    run(
        Command::new("mkfs.vfat")
            .args(fat)
            .args(["-n", "BOOTFS", "-i", d.disk_id])
            .arg(format!("--offset={}", d.p1_start))
            .arg(d.path)
            .arg((d.p1_sectors / 2).to_string()),
        "dosfstools",
    );
    let mut mcopy = Command::new("mcopy");
    mcopy
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-s", "-p", "-m", "-i"])
        .arg(format!("{}@@{}", d.path.display(), d.p1_start * 512));
    for e in std::fs::read_dir(d.bootfs).unwrap() {
        mcopy.arg(e.unwrap().path());
    }
    run(mcopy.arg("::/"), "mtools");
    let off = p2_start * 512;
    run(
        Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-L", "rootfs"])
            .args(d.mke2fs)
            .arg("-E")
            .arg(format!("offset={off}"))
            .arg("-d")
            .arg(d.rootfs)
            .arg(d.path)
            .arg(format!("{}k", (d.bytes - off) / 1024)),
        "e2fsprogs",
    );
    run(
        Command::new("e2fsck")
            .arg("-fn")
            .arg(format!("{}?offset={off}", d.path.display())),
        "e2fsprogs",
    );
}
