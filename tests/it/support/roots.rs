//! Tiny Raspberry Pi OS-like root trees for network tests: Bookworm keeps the boot partition
//! at boot/firmware, Bullseye at boot; real Pi 4 firmware from shared/fixtures, deterministic
//! fake kernels, everything world-readable (dnsmasq serves TFTP as `nobody`).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// shared/fixtures beside the repository.
pub const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures");

pub fn write(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
}

pub fn filler(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A Raspberry Pi OS-like root: Bookworm keeps the boot partition at boot/firmware, Bullseye at boot.
pub fn os_tree(dir: &Path, codename: &str, seed: u64) {
    let boot = if codename == "bullseye" {
        "boot"
    } else {
        "boot/firmware"
    };
    write(
        &dir.join("etc/os-release"),
        format!("VERSION_CODENAME={codename}\n").as_bytes(),
    );
    write(
        &dir.join("etc/fstab"),
        format!("proc /proc proc defaults 0 0\nPARTUUID=4e639091-01 /{boot} vfat defaults 0 2\nPARTUUID=4e639091-02 / ext4 defaults,noatime 0 1\n").as_bytes(),
    );
    write(&dir.join("etc/hostname"), b"raspberrypi\n");
    // What a shared root's overlay init runs (util-linux, coreutils, the overlay module).
    write(&dir.join("sbin/pivot_root"), b"#!/bin/sh\n");
    write(&dir.join("sbin/chroot"), b"#!/bin/sh\n");
    fs::create_dir_all(dir.join("mnt")).unwrap();
    write(
        &dir.join("lib/modules/6.6.51+rpt-rpi-v8/kernel/fs/overlayfs/overlay.ko.xz"),
        b"overlay\n",
    );
    write(
        &dir.join("etc/hosts"),
        b"127.0.0.1\tlocalhost\n127.0.1.1\traspberrypi\n",
    );
    write(
        &dir.join("etc/passwd"),
        b"root:x:0:0:root:/root:/bin/bash\n",
    );
    let b = dir.join(boot);
    for f in ["start4.elf", "fixup4.dat", "bcm2711-rpi-4-b.dtb"] {
        write(
            &b.join(f),
            &fs::read(Path::new(SHARED).join("raspi-firmware").join(f)).unwrap(),
        );
    }
    write(
        &b.join("config.txt"),
        b"[all]\narm_64bit=1\nkernel=kernel8.img\nauto_initramfs=1\n",
    );
    write(&b.join("cmdline.txt"), b"console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n");
    write(&b.join("kernel8.img"), &filler(3 << 20, seed));
    write(&b.join("initramfs8"), &filler(700_000, seed + 1));
    write(&b.join("overlays/overlay_map.dtb"), &filler(2000, seed + 2));
    for d in walk_dirs(dir) {
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

pub fn walk_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_owned()];
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk_dirs(&e.path()));
        }
    }
    out
}

/// Makes every folder under `dir` (and `dir`) 0755, so `nobody` can reach the TFTP files.
pub fn make_traversable(dir: &Path) {
    for d in walk_dirs(dir) {
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// pinetboot's generated dnsmasq drop-in under `root`, made runnable in the lab: `tftp-root`
/// (and, with `keep_log`, `log-facility`) get the `--root` prefix, as the host would see them.
/// Without `keep_log` its `log-facility` line is dropped, so the lab's own log (which the lab
/// waits on) is used. Written to `conf_dir/pinetboot.conf`; returns `conf_dir`.
pub fn generated_conf(root: &Path, conf_dir: &Path, keep_log: bool) -> PathBuf {
    let text = fs::read_to_string(root.join("etc/dnsmasq.d/pinetboot.conf")).unwrap();
    assert!(text.contains("tftp-root=/tftpboot\n"), "{text}");
    let prefix = root.display();
    let text: String = text
        .lines()
        .filter(|l| keep_log || !l.starts_with("log-facility="))
        .map(|l| {
            match l
                .strip_prefix("tftp-root=")
                .or(l.strip_prefix("log-facility="))
            {
                Some(path) => format!("{}={prefix}{path}\n", l.split('=').next().unwrap()),
                None => format!("{l}\n"),
            }
        })
        .collect();
    fs::create_dir_all(conf_dir).unwrap();
    fs::write(conf_dir.join("pinetboot.conf"), text).unwrap();
    conf_dir.to_owned()
}
