//! What pinetboot knows about Raspberry Pi OS roots (see shared/reference/pi4-netboot.md §5),
//! in one place for planning and for the image reader (`image::unpack`): where the boot
//! folder is, what os-release says, which kernel arguments and fstab lines assume an SD card, and
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

/// `KEY=value` from an os-release file, its quotes (double or single) removed.
pub fn os_release_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let v = l.trim().strip_prefix(key)?.strip_prefix('=')?.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(v);
        Some(v.to_string())
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
    tokens.extend(nfs_args(server, nfs_root));
    for t in extra {
        if !tokens.contains(t) {
            tokens.push(t.clone());
        }
    }
    tokens.join(" ") + "\n"
}

/// Renders a shared client's `cmdline.txt` (`root: shared`): as [`render_cmdline`] for the
/// shared root, mounted read-only, then the overlay init that puts the Pi's writes in RAM and
/// the Pi's own identity: its hostname and a machine-id made from its serial number.
pub fn render_shared_cmdline(
    image_cmdline: &str,
    server: &str,
    shared_root: &str,
    extra: &[String],
    hostname: &str,
    serial: &str,
) -> String {
    let own = render_cmdline(image_cmdline, server, shared_root, extra);
    let mut tokens: Vec<String> = own
        .split_whitespace()
        .filter(|t| {
            !t.starts_with("init=")
                && !t.starts_with("systemd.hostname=")
                && !t.starts_with("systemd.machine_id=")
        })
        .map(|t| {
            if t == "rw" {
                "ro".to_owned()
            } else {
                t.to_owned()
            }
        })
        .collect();
    tokens.push(format!("init=/{}", crate::clientos::OVERLAY_INIT));
    tokens.push(format!("systemd.hostname={hostname}"));
    tokens.push(format!("systemd.machine_id={}", machine_id(serial)));
    tokens.join(" ") + "\n"
}

/// A Pi's machine-id on a shared root: 32 hex digits derived from its serial number, so it is
/// the same at every boot and differs between Pis.
pub fn machine_id(serial: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("pinetboot machine-id {serial}").as_bytes());
    hex::encode(&digest[..16])
}

/// The kernel arguments of an NFS root, in the order pinetboot writes them.
pub fn nfs_args(server: &str, nfs_root: &str) -> [String; 5] {
    [
        "root=/dev/nfs".to_owned(),
        format!("nfsroot={server}:{nfs_root},vers=3"),
        "rw".to_owned(),
        "ip=dhcp".to_owned(),
        "rootwait".to_owned(),
    ]
}

/// Whether the `cmdline.txt` on disk boots the same way as the one pinetboot renders, though
/// another tool wrote it: Debian's raspi-firmware hook regenerates it (first boot, every
/// kernel upgrade) as `CONSOLES root=ROOTPART rw fsck.repair=yes net.ifnames=0 [cma=…]
/// rootwait EXTRA`, with pinetboot's NFS arguments in ROOTPART. The kernel reads arguments as
/// a set, except that the order of `console=` matters (the last is /dev/console): so the
/// consoles must come in the same order, every other argument must be there as often, and
/// of the arguments pinetboot replaces only its own (and the harmless `fsck.repair=`) may
/// appear. A `root=PARTUUID=…` left by a regeneration is never equivalent.
pub fn cmdline_equivalent(current: &str, desired: &str) -> bool {
    let cur: Vec<&str> = current.split_whitespace().collect();
    let want: Vec<&str> = desired.split_whitespace().collect();
    let ignorable = |t: &str| t.starts_with("fsck.repair=");
    if cur
        .iter()
        .any(|t| is_replaced_token(t) && !ignorable(t) && !want.contains(t))
    {
        return false;
    }
    let consoles = |v: &[&str]| -> Vec<String> {
        v.iter()
            .filter(|t| t.starts_with("console="))
            .map(|t| t.to_string())
            .collect()
    };
    let others = |v: &[&str]| -> Vec<String> {
        let mut o: Vec<String> = v
            .iter()
            .filter(|t| !t.starts_with("console=") && !ignorable(t))
            .map(|t| t.to_string())
            .collect();
        o.sort();
        o
    };
    consoles(&cur) == consoles(&want) && others(&cur) == others(&want)
}

/// `ROOTPART` for Debian's raspi-firmware (`/etc/default/raspi-firmware`), whose hook writes
/// `root=$ROOTPART` into the `cmdline.txt` it regenerates: pinetboot's NFS arguments (the
/// hook adds `rw` and `rootwait` itself) and the client's extra arguments, so a kernel
/// upgrade on the Pi keeps it booting over NFS.
pub fn raspi_firmware_rootpart(server: &str, nfs_root: &str, extra: &[String]) -> String {
    let mut v = vec![
        "/dev/nfs".to_owned(),
        format!("nfsroot={server}:{nfs_root},vers=3"),
        "ip=dhcp".to_owned(),
    ];
    v.extend(extra.iter().cloned());
    v.join(" ")
}

/// Quotes a value for a POSIX shell assignment (`/etc/default` files are sourced).
pub fn shell_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', "'\\''"))
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

/// The client's fstab without its SD-card lines; every other byte kept exactly, whatever its
/// encoding (a line is classified by its text, bytes that are not UTF-8 read as U+FFFD).
pub fn filter_fstab(text: &[u8]) -> Vec<u8> {
    text.split_inclusive(|&b| b == b'\n')
        .filter(|l| !is_sd_card_line(&String::from_utf8_lossy(l)))
        .flatten()
        .copied()
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
    fn regenerated_cmdline_is_equivalent() {
        let desired = render_cmdline(
            "console=serial0,115200 console=tty1 root=PARTUUID=5eed4b1d-02 rw fsck.repair=yes net.ifnames=0 cma=64M rootwait",
            "10.99.0.2",
            "/nfs/raspi1",
            &["quiet".into()],
        );
        let rootpart = raspi_firmware_rootpart("10.99.0.2", "/nfs/raspi1", &["quiet".into()]);
        // What raspi-firmware's hook writes with that ROOTPART.
        let regenerated = format!(
            "console=serial0,115200 console=tty1 root={rootpart} rw fsck.repair=yes net.ifnames=0 cma=64M rootwait \n"
        );
        assert!(cmdline_equivalent(&regenerated, &desired), "{desired}");
        assert!(cmdline_equivalent(&desired, &desired));
        // Back to the SD card: not equivalent.
        let sd = regenerated.replace(&rootpart, "PARTUUID=5eed4b1d-02");
        assert!(!cmdline_equivalent(&sd, &desired));
        // Another server, a missing or extra argument, consoles swapped: not equivalent.
        assert!(!cmdline_equivalent(
            &regenerated.replace("10.99.0.2", "10.99.0.3"),
            &desired
        ));
        assert!(!cmdline_equivalent(
            &regenerated.replace(" quiet", ""),
            &desired
        ));
        assert!(!cmdline_equivalent(
            &format!("{regenerated} splash"),
            &desired
        ));
        let swapped = regenerated.replace(
            "console=serial0,115200 console=tty1",
            "console=tty1 console=serial0,115200",
        );
        assert!(!cmdline_equivalent(&swapped, &desired));
        assert!(!cmdline_equivalent(&format!("{desired} ro"), &desired));
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("/dev/nfs a=b"), "'/dev/nfs a=b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }

    #[test]
    fn fstab_loses_only_sd_lines() {
        let text = "proc /proc proc defaults 0 0\nPARTUUID=4e639091-01  /boot/firmware  vfat    defaults 0 2\nPARTUUID=4e639091-02  /  ext4 defaults,noatime 0 1\n# a comment\nUUID=abc /data ext4 defaults 0 2\n/dev/mmcblk0p1 /boot vfat defaults 0 2";
        assert_eq!(
            filter_fstab(text.as_bytes()),
            b"proc /proc proc defaults 0 0\n# a comment\nUUID=abc /data ext4 defaults 0 2\n"
        );
        // Bytes that are not UTF-8, NUL and CR outside the SD-card lines survive.
        let odd = b"/dev/sda1 /caf\xe9 ext4 defaults\0 0 2\r\nPARTUUID=1-02 / ext4 defaults 0 1\r\nLABEL=\xff /srv xfs defaults 0 0";
        assert_eq!(
            filter_fstab(odd),
            b"/dev/sda1 /caf\xe9 ext4 defaults\0 0 2\r\nLABEL=\xff /srv xfs defaults 0 0"
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
