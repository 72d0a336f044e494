//! Client roots that boot: apply on Bullseye-, Bookworm- and Trixie-like trees and check the
//! exact files pinetboot leaves, the fidelity of the copied root against the image tree, and
//! the bind mount of the right boot folder onto the TFTP folder. Needs root.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::support::fixture::*;
use crate::support::snapshot::*;
use crate::support::tools::*;

struct Case {
    release: Release,
    image: &'static str,
    client: &'static str,
    serial: &'static str,
    ssh_user: Option<&'static str>,
    keys: &'static [&'static str],
    extra: &'static [&'static str],
    overrides: &'static [&'static str],
    cmdline: &'static str,
}

const MASKS: [&str; 4] = [
    "dphys-swapfile.service",
    "resize2fs_once.service",
    "rpi-resize.service",
    "userconfig.service",
];

fn newer_firmware(name: &str) -> Vec<u8> {
    let mut b = std::fs::read(shared_dir().join("fixtures/raspi-firmware").join(name)).unwrap();
    let n = b.len();
    b[n - 8..].copy_from_slice(b"NEWER!!\n");
    b
}

fn check(case: &Case) {
    let env = Env::new();
    let image = env.add_image(case.image, case.release, true);
    let mut files = Vec::new();
    for name in case.overrides {
        let host = format!("/srv/firmware/{name}");
        let p = env.path(&host);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, newer_firmware(name)).unwrap();
        files.push((name.to_string(), host));
    }
    let mut client = ClientCfg::new(case.client, case.serial, case.image);
    client.ssh_user = case.ssh_user.map(str::to_owned);
    client.keys = case.keys.iter().map(|k| k.to_string()).collect();
    client.cmdline = case.extra.iter().map(|k| k.to_string()).collect();
    let cfg = Cfg {
        images: vec![(
            case.image.into(),
            format!("/srv/rootfs/{}", case.image),
            files,
        )],
        clients: vec![client],
    };
    env.write_config(&cfg);
    let img_before = snapshot(&image);
    env.apply_ok();
    env.assert_converged();
    let root = env.path(&format!("/nfs/{}", case.client));
    let img = snapshot(&image);
    assert_same(&img_before, &img, Cmp::ALL, "the image tree after apply");
    let got = snapshot(&root);
    let boot = case.release.boot_dir();
    let read = |rel: &str| {
        std::fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    };

    // cmdline.txt: one line, exactly.
    let cmdline = read(&format!("{boot}/cmdline.txt"));
    assert_eq!(cmdline, case.cmdline);
    assert_eq!(cmdline.matches('\n').count(), 1);
    assert!(!cmdline.contains("init="), "{cmdline}");
    assert!(
        !cmdline.split_whitespace().any(|t| t == "resize"),
        "{cmdline}"
    );
    assert!(cmdline.contains(&format!(" nfsroot={SERVER}:/nfs/{},vers=3 ", case.client)));
    if case.release != Release::Bullseye {
        assert_eq!(
            read("boot/cmdline.txt"),
            STUB_CMDLINE,
            "the stub boot/cmdline.txt"
        );
    }
    // fstab without the SD-card lines, the rest byte for byte.
    assert_eq!(read("etc/fstab"), case.release.fstab_filtered());
    assert!(!read("etc/fstab").contains("PARTUUID="));
    // Identity.
    assert_eq!(read("etc/hostname"), format!("{}\n", case.client));
    assert_eq!(read("etc/hosts"), expected_hosts(case.client));
    // First-boot services masked, ssh enabled by links.
    for unit in MASKS {
        let p = root.join("etc/systemd/system").join(unit);
        assert_eq!(
            std::fs::read_link(&p).unwrap(),
            PathBuf::from("/dev/null"),
            "{unit}"
        );
    }
    assert_eq!(
        std::fs::read_link(root.join("etc/systemd/system/multi-user.target.wants/ssh.service"))
            .unwrap(),
        PathBuf::from("/lib/systemd/system/ssh.service")
    );
    assert_eq!(
        std::fs::read_link(root.join("etc/systemd/system/sshd.service")).unwrap(),
        PathBuf::from("/lib/systemd/system/ssh.service")
    );
    // authorized_keys.
    let (home, uid) = match case.ssh_user {
        Some("pi") => ("home/pi", 1000),
        None | Some("root") => ("root", 0),
        Some(other) => panic!("no fixture user {other}"),
    };
    let mut keys = String::from("# Managed by pinetboot (pinetboot.yaml ssh.authorized_keys).\n");
    for k in case.keys {
        keys.push_str(k);
        keys.push('\n');
    }
    assert_eq!(read(&format!("{home}/.ssh/authorized_keys")), keys);
    let ak = std::fs::symlink_metadata(root.join(home).join(".ssh/authorized_keys")).unwrap();
    assert_eq!(
        (ak.mode() & 0o7777, ak.uid(), ak.gid()),
        (0o600, uid, uid),
        "authorized_keys"
    );
    let sd = std::fs::symlink_metadata(root.join(home).join(".ssh")).unwrap();
    assert!(sd.is_dir());
    assert_eq!(
        (sd.mode() & 0o7777, sd.uid(), sd.gid()),
        (0o700, uid, uid),
        ".ssh"
    );
    // cloud-init: disabled only where the image has it (Trixie).
    let disabled = root.join("etc/cloud/cloud-init.disabled");
    if case.release == Release::Trixie {
        assert_eq!(
            std::fs::read_to_string(&disabled).unwrap(),
            "# pinetboot: identity and SSH keys come from pinetboot.yaml\n"
        );
        let m = std::fs::symlink_metadata(&disabled).unwrap();
        assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o644, 0, 0));
    } else {
        assert!(
            !root.join("etc/cloud").exists(),
            "etc/cloud appeared on {:?}",
            case.release
        );
    }
    // Firmware overrides, byte for byte.
    for name in case.overrides {
        assert_eq!(
            std::fs::read(root.join(boot).join(name)).unwrap(),
            std::fs::read(env.path(&format!("/srv/firmware/{name}"))).unwrap(),
            "{name}"
        );
    }

    // Fidelity of the copy: exactly the image's entries plus pinetboot's, and every entry
    // pinetboot does not manage identical (kind, content, link target, mode incl. setuid,
    // owner, device number, mtime, link count).
    let mut added: BTreeSet<PathBuf> = MASKS
        .iter()
        .map(|u| PathBuf::from(format!("etc/systemd/system/{u}")))
        .collect();
    added.insert("etc/systemd/system/multi-user.target.wants/ssh.service".into());
    added.insert("etc/systemd/system/sshd.service".into());
    added.insert(format!("{home}/.ssh").into());
    added.insert(format!("{home}/.ssh/authorized_keys").into());
    // Its own SSH host key (the image has none).
    added.insert("etc/ssh/ssh_host_ed25519_key".into());
    added.insert("etc/ssh/ssh_host_ed25519_key.pub".into());
    let hk = std::fs::symlink_metadata(root.join("etc/ssh/ssh_host_ed25519_key")).unwrap();
    assert_eq!((hk.mode() & 0o7777, hk.uid(), hk.gid()), (0o600, 0, 0));
    assert!(read("etc/ssh/ssh_host_ed25519_key.pub").starts_with("ssh-ed25519 AAAA"));
    if case.release == Release::Trixie {
        added.insert("etc/cloud/cloud-init.disabled".into());
    }
    let mut modified: BTreeSet<PathBuf> = ["etc/fstab", "etc/hostname", "etc/hosts"]
        .iter()
        .map(PathBuf::from)
        .collect();
    modified.insert(format!("{boot}/cmdline.txt").into());
    for name in case.overrides {
        modified.insert(format!("{boot}/{name}").into());
    }
    let touched_dirs: BTreeSet<PathBuf> = added
        .iter()
        .chain(modified.iter())
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect();
    let img_keys: BTreeSet<PathBuf> = img.keys().cloned().collect();
    let got_keys: BTreeSet<PathBuf> = got.keys().cloned().collect();
    let expected_keys: BTreeSet<PathBuf> = img_keys.union(&added).cloned().collect();
    let extra: Vec<_> = got_keys.difference(&expected_keys).collect();
    let missing: Vec<_> = expected_keys.difference(&got_keys).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "entries: extra {extra:?}, missing {missing:?}"
    );
    let mut bad = Vec::new();
    for (p, want) in &img {
        let have = &got[p];
        let same = if modified.contains(p) || touched_dirs.contains(p) {
            // Content (or entries) changed on purpose; kind, mode and owner are kept.
            std::mem::discriminant(&have.node) == std::mem::discriminant(&want.node)
                && (have.mode, have.uid, have.gid) == (want.mode, want.uid, want.gid)
        } else {
            have.node == want.node
                && (have.mode, have.uid, have.gid, have.mtime, have.nlink)
                    == (want.mode, want.uid, want.gid, want.mtime, want.nlink)
        };
        if !same {
            bad.push(format!("{}: image {want:?}, client {have:?}", p.display()));
        }
    }
    assert!(bad.is_empty(), "copy infidelities:\n{}", bad.join("\n"));
    // The probes, spelled out.
    let e = |p: &str| {
        got.get(Path::new(p))
            .unwrap_or_else(|| panic!("{p} missing"))
    };
    assert_eq!(e("usr/bin/sudo").mode, 0o4755, "setuid bit");
    assert_eq!(e("bin").node, Node::Symlink("usr/bin".into()));
    assert_eq!(
        e("boot/overlays").node,
        if case.release == Release::Bullseye {
            Node::Dir
        } else {
            Node::Symlink("firmware/overlays".into())
        }
    );
    assert_eq!(e("dev/initctl").node, Node::Fifo);
    assert_eq!(e("dev/null").node, Node::Char(0x103));
    assert_eq!(e("dev/console").node, Node::Char(0x501));
    assert_eq!(
        (e("home/pi/.bashrc").uid, e("home/pi/.bashrc").gid),
        (1000, 1000)
    );
    assert_eq!((e("etc/shadow").gid, e("etc/shadow").mode), (42, 0o640));
    assert_eq!(e("tmp").mode, 0o1777);
    assert_eq!(e("etc/os-release").mtime, (1_700_000_000, 123_456_789));
    assert_eq!(
        e("usr/bin/perl").dev_ino,
        e("usr/bin/perl5.36.0").dev_ino,
        "hardlink pair"
    );
    assert_eq!(e("usr/bin/perl").nlink, 2);
    // A copy, never hardlinks into the image (the client could change the image through them).
    let img_inodes: BTreeSet<(u64, u64)> = img.values().map(|e| e.dev_ino).collect();
    let shared: Vec<_> = got
        .iter()
        .filter(|(_, e)| img_inodes.contains(&e.dev_ino))
        .map(|(p, _)| p.display().to_string())
        .collect();
    assert!(
        shared.is_empty(),
        "client entries sharing an inode with the image: {shared:?}"
    );
    for p in added.iter().filter(|p| !p.starts_with(home)) {
        assert_eq!((got[p].uid, got[p].gid), (0, 0), "{} owner", p.display());
    }
    // Modified files keep the image's mode and owner (FAT: 0755).
    assert_eq!(
        got[&PathBuf::from(format!("{boot}/cmdline.txt"))].mode,
        0o755
    );

    // The bind mount: the TFTP folder is the client's boot folder.
    let tftp = env.path(&format!("/tftpboot/{}", case.serial));
    let mounts = env.ns.mounts_under(&env.path("/tftpboot"));
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    assert_eq!(mounts[0].1, tftp.to_string_lossy());
    assert_eq!(
        env.ns.dev_ino(&tftp),
        env.ns.dev_ino(&root.join(boot)),
        "TFTP folder is not {boot}"
    );
    if case.release != Release::Bullseye {
        assert_ne!(
            env.ns.dev_ino(&tftp),
            env.ns.dev_ino(&root.join("boot")),
            "TFTP folder is boot, not boot/firmware"
        );
    }
    let listing = env.ns.sh(&format!(
        "cat '{}/start4.elf' | cmp - '{}/{boot}/start4.elf' && echo same",
        tftp.display(),
        root.display()
    ));
    assert_eq!(listing, "same\n");
    // No fstab line names a path inside the root (mount(8) would resolve it at boot):
    // `pinetboot mount` makes the mount at boot.
    let fstab = env.read("/etc/fstab");
    assert!(!fstab.contains(&format!("/nfs/{}", case.client)), "{fstab}");
}

#[test]
fn bullseye_root_boots_over_nfs() {
    check(&Case {
        release: Release::Bullseye,
        image: "bullseye-lite",
        client: "bull",
        serial: "b0110001",
        ssh_user: None,
        keys: &[KEY1],
        extra: &["modprobe.blacklist=bcm2835_v4l2"],
        overrides: &["start4.elf"],
        cmdline: "console=serial0,115200 console=tty1 quiet root=/dev/nfs nfsroot=192.168.2.209:/nfs/bull,vers=3 rw ip=dhcp rootwait modprobe.blacklist=bcm2835_v4l2\n",
    });
}

#[test]
fn bookworm_root_boots_over_nfs_with_keys_for_pi() {
    check(&Case {
        release: Release::Bookworm,
        image: "bookworm-lite",
        client: "bookw",
        serial: "b0000002",
        ssh_user: Some("pi"),
        keys: &[KEY1, KEY2],
        extra: &["8250.nr_uarts=1", "cgroup_enable=memory"],
        overrides: &["start4.elf", "fixup4.dat"],
        cmdline: "console=serial0,115200 console=tty1 quiet root=/dev/nfs nfsroot=192.168.2.209:/nfs/bookw,vers=3 rw ip=dhcp rootwait 8250.nr_uarts=1 cgroup_enable=memory\n",
    });
}

#[test]
fn trixie_root_boots_over_nfs_with_cloud_init_disabled() {
    check(&Case {
        release: Release::Trixie,
        image: "trixie-lite",
        client: "trix",
        serial: "70000003",
        ssh_user: Some("root"),
        keys: &[KEY2],
        extra: &[],
        overrides: &["bcm2711-rpi-4-b.dtb"],
        cmdline: "console=serial0,115200 console=tty1 root=/dev/nfs nfsroot=192.168.2.209:/nfs/trix,vers=3 rw ip=dhcp rootwait\n",
    });
}

/// An image with every network stack pinetboot knows and Debian's raspi-firmware hook gets
/// each drop-in (and nothing else changes in the files others own: dhcpcd.conf and
/// /etc/default/raspi-firmware keep every byte outside pinetboot's fence).
#[test]
fn network_stacks_and_raspi_firmware_get_their_nfs_root_settings() {
    let env = Env::new();
    let img = env.add_image("bookworm", Release::Bookworm, false);
    let put = |rel: &str, text: &str| {
        let p = img.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    put("lib/systemd/system/networking.service", "[Unit]\n");
    put(
        "usr/lib/systemd/system/systemd-networkd.service",
        "[Unit]\n",
    );
    put("etc/NetworkManager/NetworkManager.conf", "[main]\n");
    put(
        "etc/dhcpcd.conf",
        "hostname\n# the admin's line\nslaac private",
    );
    put("etc/kernel/postinst.d/z50-raspi-firmware", "#!/bin/sh\n");
    put(
        "etc/default/raspi-firmware",
        "#CMA=64M\nROOTPART=PARTUUID=4e639091-02\n",
    );
    env.write_config(
        &Cfg::default()
            .image("bookworm")
            .client(ClientCfg::new("raspi1", "0c4c21e5", "bookworm")),
    );
    env.apply_ok();
    env.assert_converged();
    let read = |rel: &str| env.read(&format!("/nfs/raspi1/{rel}"));
    for unit in ["networking.service", "ifup@.service"] {
        assert!(
            read(&format!(
                "etc/systemd/system/{unit}.d/pinetboot-nfsroot.conf"
            ))
            .ends_with("[Service]\nExecStop=\n"),
            "{unit}"
        );
    }
    assert!(
        read("etc/systemd/network/00-pinetboot-nfsroot.network")
            .ends_with("[Match]\nType=ether\n\n[Network]\nDHCP=ipv4\nKeepConfiguration=yes\n")
    );
    assert!(
        read("etc/NetworkManager/conf.d/pinetboot-nfsroot.conf")
            .ends_with("[keyfile]\nunmanaged-devices=type:ethernet\n")
    );
    assert_eq!(
        read("etc/dhcpcd.conf"),
        "hostname\n# the admin's line\nslaac private\n# BEGIN pinetboot\n\
         # The wired interface is the kernel's (NFS root): dhcpcd leaves it alone.\n\
         denyinterfaces eth0 end0 enx*\n# END pinetboot\n"
    );
    assert_eq!(
        read("etc/default/raspi-firmware"),
        format!(
            "#CMA=64M\nROOTPART=PARTUUID=4e639091-02\n# BEGIN pinetboot\n\
             # The root is on NFS (pinetboot.yaml): raspi-firmware writes these arguments into cmdline.txt.\n\
             ROOTPART='/dev/nfs nfsroot={SERVER}:/nfs/raspi1,vers=3 ip=dhcp'\n# END pinetboot\n"
        )
    );
    let mount = read("etc/systemd/system/boot-firmware.mount");
    assert!(
        mount.contains("What=/boot/firmware\nWhere=/boot/firmware\nType=none\nOptions=bind\n"),
        "{mount}"
    );
    assert_eq!(
        std::fs::read_link(
            env.path("/nfs/raspi1/etc/systemd/system/local-fs.target.wants/boot-firmware.mount")
        )
        .unwrap(),
        Path::new("/etc/systemd/system/boot-firmware.mount")
    );
}
