//! `pinetboot plan` (text and `--json`) of every `examples/*.yaml` against a throwaway root
//! seeded as `examples/plan-demo.sh` seeds it (a tiny Raspberry Pi OS Bookworm tree where an
//! example names a local image folder), as insta snapshots: the reviewer sees the whole plan,
//! and any change to it fails the test. Needs no root.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::support::snap::redact;
use crate::support::tools::bin;

/// Writes `content` at `root/rel`, making its folders.
fn put(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, content).unwrap();
}

/// The stand-in for an unpacked Raspberry Pi OS (Bookworm) tree of `examples/plan-demo.sh`.
fn bookworm_tree(tree: &Path) {
    for d in [
        "etc/systemd/system",
        "boot/firmware/overlays",
        "lib/systemd/system",
        "root",
        "home",
        "usr/sbin",
        "mnt",
        "lib/modules/6.6.51+rpt-rpi-v8/kernel/fs/overlayfs",
    ] {
        fs::create_dir_all(tree.join(d)).unwrap();
    }
    // What a shared root's overlay init runs (examples/kiosk-wall.yaml).
    put(tree, "usr/sbin/pivot_root", "");
    put(tree, "usr/sbin/chroot", "");
    std::os::unix::fs::symlink("usr/sbin", tree.join("sbin")).unwrap();
    put(
        tree,
        "etc/os-release",
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n",
    );
    put(
        tree,
        "etc/fstab",
        "proc            /proc           proc    defaults          0       0\n\
         PARTUUID=4e639091-01  /boot/firmware  vfat    defaults          0       2\n\
         PARTUUID=4e639091-02  /               ext4    defaults,noatime  0       1\n",
    );
    put(tree, "etc/hostname", "raspberrypi\n");
    put(
        tree,
        "etc/hosts",
        "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n\n127.0.1.1\t\traspberrypi\n",
    );
    put(tree, "etc/passwd", "root:x:0:0:root:/root:/bin/bash\n");
    put(
        tree,
        "lib/systemd/system/ssh.service",
        "[Unit]\nDescription=OpenBSD Secure Shell server\n",
    );
    put(
        tree,
        "boot/firmware/cmdline.txt",
        "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n",
    );
    put(
        tree,
        "boot/cmdline.txt",
        "# This file is no longer used: see /boot/firmware/cmdline.txt\n",
    );
    put(
        tree,
        "boot/firmware/config.txt",
        "arm_64bit=1\nauto_initramfs=1\n",
    );
}

/// A throwaway root with the host's fstab and every local image the examples name.
fn example_root(root: &Path) {
    put(root, "etc/fstab", "proc /proc proc defaults 0 0\n");
    bookworm_tree(&root.join("srv/rootfs/bookworm-lite"));
    bookworm_tree(&root.join("srv/rootfs/lab"));
    for f in ["start4.elf", "fixup4.dat", "bcm2711-rpi-4-b.dtb"] {
        put(
            root,
            &format!("srv/firmware/{f}"),
            &format!("stand-in {f}\n"),
        );
    }
}

/// Runs `pinetboot --root ROOT --config examples/NAME.yaml plan ARGS` and returns
/// "exit code, stdout, stderr" with the root redacted.
fn plan(name: &str, args: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    example_root(&root);
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{name}.yaml"));
    let out = Command::new(bin())
        .arg("--root")
        .arg(&root)
        .arg("--config")
        .arg(&config)
        .arg("plan")
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("PINETBOOT_CONFIG")
        .env_remove("PINETBOOT_LOG")
        .output()
        .expect("running pinetboot");
    let text = format!(
        "exit code: {:?}\n--- stdout\n{}--- stderr\n{}--- end",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    redact(&text, &[(&root, "[ROOT]"), (&config, "[CONFIG]")])
}

#[test]
fn plan_single_pi() {
    insta::assert_snapshot!(plan("single-pi", &[]));
    insta::assert_snapshot!("plan_single_pi_json", plan("single-pi", &["--json"]));
}

#[test]
fn plan_classroom() {
    insta::assert_snapshot!(plan("classroom", &[]));
    insta::assert_snapshot!("plan_classroom_json", plan("classroom", &["--json"]));
}

#[test]
fn plan_kiosk_wall() {
    insta::assert_snapshot!(plan("kiosk-wall", &[]));
}

#[test]
fn plan_firmware_overrides() {
    insta::assert_snapshot!(plan("firmware-overrides", &[]));
    insta::assert_snapshot!(
        "plan_firmware_overrides_json",
        plan("firmware-overrides", &["--json"])
    );
}
