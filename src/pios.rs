//! What pinetboot knows about Raspberry Pi OS roots (see shared/reference/pi4-netboot.md §5):
//! where the boot folder is, which kernel arguments and fstab lines assume an SD card, and
//! which first-boot services must not run on an NFS root.

use std::path::PathBuf;

/// The boot folder of a root tree, relative to it: `boot/firmware` on Bookworm and later,
/// `boot` on Bullseye and older.
pub fn boot_dir_from(
    fstab: Option<&str>,
    firmware_dir_exists: bool,
    codename: Option<&str>,
) -> PathBuf {
    // 1. The image's own fstab says where it mounts the FAT partition (as get_fw_loc does).
    if let Some(text) = fstab {
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() >= 3 && !f[0].starts_with('#') && f[2] == "vfat" {
                match f[1] {
                    "/boot/firmware" => return PathBuf::from("boot/firmware"),
                    "/boot" => return PathBuf::from("boot"),
                    _ => {}
                }
            }
        }
    }
    // 2. The release: Bookworm moved it.
    match codename {
        Some("buster" | "bullseye" | "stretch") => return PathBuf::from("boot"),
        Some(_) if firmware_dir_exists => return PathBuf::from("boot/firmware"),
        _ => {}
    }
    // 3. What is there.
    if firmware_dir_exists {
        PathBuf::from("boot/firmware")
    } else {
        PathBuf::from("boot")
    }
}

/// `KEY=value` from an os-release file.
pub fn os_release_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// Whether a kernel argument assumes an SD-card root or is one pinetboot writes itself.
fn is_replaced_token(t: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "root=",
        "rootfstype=",
        "fsck.repair=",
        "nfsroot=",
        "ip=",
        "elevator=",
    ];
    PREFIXES.iter().any(|p| t.starts_with(p))
        || t == "resize"
        || t == "rw"
        || t == "ro"
        || t == "rootwait"
        || (t.starts_with("init=") && t.contains("firstboot"))
        || t.starts_with("init=/usr/lib/raspi-config/init_resize")
}

/// Renders `cmdline.txt` for an NFS root: the image's own arguments minus the SD-card ones,
/// then the NFS-root arguments (`vers=3`, no `proto=`: the Bookworm initramfs mounts with klibc
/// nfsmount), then the client's extra arguments. One line, newline-terminated.
pub fn render_cmdline(
    image_cmdline: &str,
    server: &str,
    nfs_root: &str,
    extra: &[String],
) -> String {
    let mut tokens: Vec<String> = image_cmdline
        .split_whitespace()
        .filter(|t| !is_replaced_token(t))
        .map(str::to_owned)
        .collect();
    tokens.extend([
        "root=/dev/nfs".to_owned(),
        format!("nfsroot={server}:{nfs_root},vers=3"),
        "rw".to_owned(),
        "ip=dhcp".to_owned(),
        "rootwait".to_owned(),
    ]);
    for t in extra {
        if !tokens.contains(t) {
            tokens.push(t.clone());
        }
    }
    tokens.join(" ") + "\n"
}

/// Whether an fstab line mounts the root or boot partition from the SD card.
pub fn is_sd_card_line(line: &str) -> bool {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 2 || f[0].starts_with('#') {
        return false;
    }
    let from_card = ["PARTUUID=", "UUID=", "LABEL=", "/dev/mmcblk0p"]
        .iter()
        .any(|p| f[0].starts_with(p));
    from_card && matches!(f[1], "/" | "/boot" | "/boot/firmware")
}

/// The client's fstab without its SD-card lines; every other byte kept.
pub fn filter_fstab(text: &str) -> String {
    text.split_inclusive('\n')
        .filter(|l| !is_sd_card_line(l))
        .collect()
}

/// First-boot services that assume an SD card, masked in every client root.
pub const MASKED_UNITS: &[&str] = &[
    "dphys-swapfile.service",
    "resize2fs_once.service",
    "rpi-resize.service",
    "userconfig.service",
];

#[cfg(test)]
mod tests {
    use super::*;

    const BOOKWORM: &str = "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n";
    const TRIXIE: &str = "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait resize\n";

    #[test]
    fn cmdline_for_nfs() {
        assert_eq!(
            render_cmdline(BOOKWORM, "192.168.2.209", "/nfs/raspi1", &[]),
            "console=serial0,115200 console=tty1 quiet root=/dev/nfs nfsroot=192.168.2.209:/nfs/raspi1,vers=3 rw ip=dhcp rootwait\n"
        );
        assert_eq!(
            render_cmdline(TRIXIE, "10.0.0.1", "/nfs/a", &["splash".into()]),
            "console=serial0,115200 console=tty1 root=/dev/nfs nfsroot=10.0.0.1:/nfs/a,vers=3 rw ip=dhcp rootwait splash\n"
        );
    }

    #[test]
    fn cmdline_is_idempotent() {
        let once = render_cmdline(BOOKWORM, "1.2.3.4", "/nfs/x", &["quiet".into()]);
        assert_eq!(
            render_cmdline(&once, "1.2.3.4", "/nfs/x", &["quiet".into()]),
            once
        );
    }

    #[test]
    fn fstab_loses_only_sd_lines() {
        let text = "proc /proc proc defaults 0 0\nPARTUUID=4e639091-01  /boot/firmware  vfat    defaults 0 2\nPARTUUID=4e639091-02  /  ext4 defaults,noatime 0 1\n# a comment\nUUID=abc /data ext4 defaults 0 2\n/dev/mmcblk0p1 /boot vfat defaults 0 2";
        assert_eq!(
            filter_fstab(text),
            "proc /proc proc defaults 0 0\n# a comment\nUUID=abc /data ext4 defaults 0 2\n"
        );
    }

    #[test]
    fn boot_dir_detection() {
        let bw = "PARTUUID=x-01 /boot/firmware vfat defaults 0 2\n";
        assert_eq!(
            boot_dir_from(Some(bw), false, None),
            PathBuf::from("boot/firmware")
        );
        assert_eq!(
            boot_dir_from(Some("PARTUUID=x-01 /boot vfat d 0 2\n"), true, None),
            PathBuf::from("boot")
        );
        assert_eq!(
            boot_dir_from(None, true, Some("bullseye")),
            PathBuf::from("boot")
        );
        assert_eq!(
            boot_dir_from(None, true, Some("bookworm")),
            PathBuf::from("boot/firmware")
        );
        assert_eq!(boot_dir_from(None, false, None), PathBuf::from("boot"));
    }
}
