//! pinetboot on an operating system nobody here wrote: Debian bookworm arm64 built from
//! Debian's package archive the way Debian's Raspberry Pi images are built
//! (`tests/realos/build-debian-raspi.sh`, cached outside the clone), as a directory source and
//! as a Raspberry-Pi-OS-layout `.img.xz`. Each becomes a client with one `apply`: the engine
//! (plan, apply, converge, prune), the client-root tweaks (read through the real symlinks:
//! `etc/os-release -> ../usr/lib/os-release`, merged /usr), the image reader (the unpacked
//! store entry matches the tree the image was made from), the OS's own cmdline regeneration
//! (the image's real raspi-firmware kernel hook, run in the client root under qemu-user), the
//! data path (the real dnsmasq serving the real kernel and initrd to an emulated Pi 4
//! bootloader) and `status` on dnsmasq's log.
//!
//! Needs root, the build script's tools (mmdebstrap, qemu-user-static, …), `ip`, `unshare`,
//! `nsenter`, `dnsmasq`; `.ci/run` installs them and builds the fixture first.

use crate::support::netlab::write_config;
use crate::support::realos::fixture;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::mountns::MountNs;
use crate::support::netlab::{Lab, SERVER_IP};
use crate::support::pi4::EmulatedPi;
use crate::support::roots::{generated_conf, write};

const MAC: [u8; 6] = [0xdc, 0xa6, 0x32, 0x5e, 0xed, 0x01];
const SERIAL: &str = "5eed0001";

fn info(fixture: &Path, key: &str) -> String {
    crate::support::realos::fixture_info(fixture)
        .remove(key)
        .unwrap_or_else(|| panic!("{key} missing from info.env"))
}

fn mac() -> String {
    crate::support::netlab::mac_string(&MAC)
}

struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
    ns: MountNs,
}

/// A throwaway root whose `/srv` holds the fixture (bind-mounted read-only inside the test's
/// mount namespace: the fixture is never written) and a config using it as `image_yaml`.
fn setup(fixture: &Path, image_yaml: &str, clients: &str) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let root = tmp.path().join("root");
    write(&root.join("etc/fstab"), b"proc /proc proc defaults 0 0\n");
    fs::create_dir_all(root.join("srv/debian")).unwrap();
    write(&root.join("srv/images/debian-raspi.img.xz"), b"");
    let ns = MountNs::new();
    for (from, to) in [
        (fixture.join("rootfs"), root.join("srv/debian")),
        (
            fixture.join("debian-raspi.img.xz"),
            root.join("srv/images/debian-raspi.img.xz"),
        ),
    ] {
        let out = ns
            .nsenter(None, "mount")
            .args(["--bind", "-o", "ro"])
            .arg(&from)
            .arg(&to)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let out = ns
            .nsenter(None, "mount")
            .args(["-o", "remount,bind,ro"])
            .arg(&to)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let config = tmp.path().join("pinetboot.yaml");
    write_config(
        &config,
        &format!("images:\n  debian: {image_yaml}\nclients:\n{clients}"),
    );
    Setup {
        _tmp: tmp,
        root,
        config,
        ns,
    }
}

fn run(s: &Setup, args: &[&str]) -> Output {
    s.ns.pinetboot_cmd(None, &s.root, &s.config)
        .args(args)
        .env("PINETBOOT_PROGRESS", "0")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[track_caller]
fn ok(s: &Setup, args: &[&str]) -> String {
    let out = run(s, args);
    assert!(out.status.success(), "pinetboot {args:?}:\n{}", text(&out));
    text(&out)
}

#[track_caller]
fn assert_no_changes(s: &Setup) {
    let out = run(s, &["plan", "--detailed-exitcode"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "plan after apply is not empty:\n{}",
        text(&out)
    );
}

/// What every real-OS client must look like after `apply`.
fn check_client(s: &Setup, name: &str) {
    let c = s.root.join("nfs").join(name);
    // The real root's links are kept as they are.
    assert_eq!(
        fs::read_link(c.join("etc/os-release")).unwrap(),
        Path::new("../usr/lib/os-release")
    );
    for l in ["bin", "sbin", "lib"] {
        assert!(
            c.join(l).symlink_metadata().unwrap().is_symlink(),
            "{l} is no longer a link"
        );
    }
    let cmdline = fs::read_to_string(c.join("boot/firmware/cmdline.txt")).unwrap();
    assert!(
        cmdline.contains(&format!(
            " root=/dev/nfs nfsroot={SERVER_IP}:/nfs/{name},vers=3 rw ip=dhcp rootwait"
        )) && !cmdline.contains("PARTUUID")
            && cmdline.contains("net.ifnames=0")
            && cmdline.starts_with("console=serial0,115200 console=tty1 "),
        "{cmdline}"
    );
    let fstab = fs::read_to_string(c.join("etc/fstab")).unwrap();
    assert!(
        !fstab.contains("PARTUUID=") && fstab.contains("proc /proc proc defaults 0 0"),
        "{fstab}"
    );
    assert_eq!(
        fs::read_to_string(c.join("etc/hostname")).unwrap(),
        format!("{name}\n")
    );
    for unit in ["dphys-swapfile.service", "userconfig.service"] {
        assert_eq!(
            fs::read_link(c.join("etc/systemd/system").join(unit)).unwrap(),
            Path::new("/dev/null")
        );
    }
    // raspi-firmware regenerates cmdline.txt with pinetboot's NFS arguments.
    let defaults = fs::read_to_string(c.join("etc/default/raspi-firmware")).unwrap();
    assert!(
        defaults.ends_with(&format!(
            "# BEGIN pinetboot\n# The root is on NFS (pinetboot.yaml): raspi-firmware writes these arguments into cmdline.txt.\nROOTPART='/dev/nfs nfsroot={SERVER_IP}:/nfs/{name},vers=3 ip=dhcp'\n# END pinetboot\n"
        )) && defaults.contains("ROOTPART=PARTUUID=5eed4b1d-02\n"),
        "{defaults}"
    );
    assert_eq!(
        fs::read_link(c.join("etc/systemd/system/local-fs.target.wants/boot-firmware.mount"))
            .unwrap(),
        Path::new("/etc/systemd/system/boot-firmware.mount")
    );
    // ifupdown leaves the NFS root's interface up at shutdown.
    assert_eq!(
        fs::read_to_string(
            c.join("etc/systemd/system/networking.service.d/pinetboot-nfsroot.conf")
        )
        .unwrap()
        .lines()
        .last(),
        Some("ExecStop=")
    );
    // Its own SSH host key, pinned in the server's known_hosts.
    let key = c.join("etc/ssh/ssh_host_ed25519_key");
    let md = key.metadata().unwrap();
    assert_eq!((md.mode() & 0o7777, md.uid()), (0o600, 0));
    let public = fs::read_to_string(c.join("etc/ssh/ssh_host_ed25519_key.pub")).unwrap();
    let key_b64 = public.split_whitespace().nth(1).unwrap();
    let known = fs::read_to_string(s.root.join("var/lib/pinetboot/known_hosts")).unwrap();
    assert!(
        known
            .lines()
            .any(|l| l == format!("{name} ssh-ed25519 {key_b64}")),
        "{known}"
    );
}

/// Runs the image's own raspi-firmware kernel hook inside the client root (chroot with /proc,
/// in a private mount namespace; arm64 under qemu-user), as a kernel upgrade on the Pi would;
/// returns the new cmdline.txt.
fn run_kernel_hook(s: &Setup, name: &str, kernel: &str) -> String {
    let c = s.root.join("nfs").join(name);
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "--", "sh", "-ec"])
        .arg(
            "mount -t proc proc \"$1/proc\"; exec chroot \"$1\" /usr/bin/env \
             DEB_MAINT_PARAMS=configure /etc/kernel/postinst.d/z50-raspi-firmware \"$2\"",
        )
        .arg("sh")
        .arg(&c)
        .arg(kernel)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the image's kernel hook failed in the client root (binfmt qemu-aarch64 registered by \
         the build script?):\n{}",
        text(&out)
    );
    fs::read_to_string(c.join("boot/firmware/cmdline.txt")).unwrap()
}

#[test]
fn a_real_debian_tree_becomes_a_client_that_survives_its_kernel_hook() {
    let fx = fixture();
    let kernel = info(&fx, "KERNEL_VERSION");
    // The lab's namespaces first: the mount namespace copies /run/netns as it is then.
    let lab = Lab::new();
    let s = setup(
        &fx,
        "{source: /srv/debian}",
        &format!("  raspi1: {{serial: {SERIAL}, mac: '{}'}}\n", mac()),
    );
    fs::write(
        &s.config,
        fs::read_to_string(&s.config).unwrap() + "defaults: {image: debian}\n",
    )
    .unwrap();
    let plan = ok(&s, &["plan"]);
    assert!(!plan.contains("Conflicts"), "{plan}");
    assert!(!plan.contains("looks already booted"), "{plan}");
    for want in [
        "+ client root /nfs/raspi1",
        "+ file /nfs/raspi1/etc/ssh/ssh_host_ed25519_key (ed25519, generated for this client",
        "/nfs/raspi1/etc/default/raspi-firmware",
        "/nfs/raspi1/etc/systemd/system/networking.service.d/pinetboot-nfsroot.conf",
        "/var/lib/pinetboot/known_hosts",
    ] {
        assert!(plan.contains(want), "plan lacks {want}:\n{plan}");
    }
    ok(&s, &["apply"]);
    assert_no_changes(&s);
    check_client(&s, "raspi1");

    // A kernel upgrade on the Pi: the image's own hook regenerates cmdline.txt. It must still
    // boot over NFS, and pinetboot must see it as in sync (no nightly rewrite).
    let before = fs::read_to_string(s.root.join("nfs/raspi1/boot/firmware/cmdline.txt")).unwrap();
    let after = run_kernel_hook(&s, "raspi1", &kernel);
    assert_ne!(after, before, "the hook did not regenerate cmdline.txt");
    assert!(
        after.contains(&format!(
            "root=/dev/nfs nfsroot={SERVER_IP}:/nfs/raspi1,vers=3 ip=dhcp rw"
        )) && !after.contains("PARTUUID"),
        "{after}"
    );
    assert_no_changes(&s);

    // A booted client holds its own identity: no warning about it.
    fs::write(
        s.root.join("nfs/raspi1/etc/machine-id"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    let plan = ok(&s, &["plan"]);
    assert!(!plan.contains("looks already booted"), "{plan}");

    // The server reboots: its mounts are gone, and pinetboot-mount.service runs `pinetboot
    // mount`, which mounts the real boot folder again by descriptor (no fstab line names it).
    assert!(
        !fs::read_to_string(s.root.join("etc/fstab"))
            .unwrap()
            .contains("/nfs/raspi1"),
        "an fstab line names a path inside the client root"
    );
    let tftp = s.root.join(format!("tftpboot/{SERIAL}"));
    let umount = s.ns.nsenter(None, "umount").arg(&tftp).output().unwrap();
    assert!(umount.status.success(), "umount: {}", text(&umount));
    let out = ok(&s, &["mount"]);
    assert!(
        out.contains(&format!(
            "+ bind mount /tftpboot/{SERIAL} from /nfs/raspi1/boot/firmware"
        )),
        "{out}"
    );
    assert_no_changes(&s);

    // The data path: the real dnsmasq on pinetboot's drop-in serves the real firmware, kernel
    // and initrd (named by the image's config.txt) from /tftpboot/SERIAL, as mounted at boot.
    let conf = generated_conf(&s.root, &lab.dir().join("conf.d"), true);
    // The drop-in's log-facility wins over the lab's: the lab watches the file dnsmasq writes
    // (it names its first server's log server0.log), which `status` reads under --root.
    std::os::unix::fs::symlink(
        s.root.join("var/log/pinetboot/dnsmasq.log"),
        lab.dir().join("server0.log"),
    )
    .unwrap();
    lab.start_server_dnsmasq_in(&conf, &[], Some(s.ns.pid()));
    let pi = EmulatedPi::new(&lab.add_pi(MAC), u32::from_str_radix(SERIAL, 16).unwrap());
    let report = crate::support::pi4::assert_boots(
        &pi,
        &s.root.join("nfs/raspi1/boot/firmware"),
        1468,
        SERVER_IP,
    );
    assert!(report.present(&format!("vmlinuz-{kernel}")), "{report}");
    assert!(report.present(&format!("initrd.img-{kernel}")), "{report}");
    // status reads what dnsmasq logged.
    let out = run(&s, &["status", "--json"]);
    let status = String::from_utf8_lossy(&out.stdout).into_owned();
    let v: serde_json::Value =
        serde_json::from_str(&status).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    let c = &v["clients"][0];
    assert_eq!(c["name"], "raspi1");
    assert_eq!(c["seen"], true, "{status}");
    assert!(c["tftp"]["sent"].as_u64().unwrap() >= 7, "{status}");

    // Prune: the client's mount and TFTP folder go, its root stays.
    fs::write(
        &s.config,
        fs::read_to_string(&s.config)
            .unwrap()
            .replace(
                &format!("  raspi1: {{serial: {SERIAL}, mac: '{}'}}\n", mac()),
                "",
            )
            .replace("clients:\n", "clients: {}\n"),
    )
    .unwrap();
    let out = ok(&s, &["apply"]);
    assert!(out.contains("pinetboot purge raspi1 --yes"), "{out}");
    assert!(!s.root.join(format!("tftpboot/{SERIAL}")).exists());
    assert!(s.root.join("nfs/raspi1/usr/lib/os-release").is_file());
    assert_no_changes(&s);
}

/// Metadata of a tree worth comparing, by relative path.
#[derive(Debug, PartialEq, Eq)]
struct Meta {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: i64,
    link: Option<PathBuf>,
}

fn walk(root: &Path, fat: &Path) -> (BTreeMap<PathBuf, Meta>, Vec<Vec<PathBuf>>) {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, Vec<PathBuf>> = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_owned();
            let md = p.symlink_metadata().unwrap();
            let ft = md.file_type();
            let kind = if ft.is_symlink() {
                "link"
            } else if ft.is_dir() {
                stack.push(p.clone());
                "dir"
            } else if ft.is_file() {
                "file"
            } else {
                "special"
            };
            // The FAT partition keeps names, sizes and contents, not owners or modes.
            let on_fat = rel.starts_with(fat);
            if kind == "file" && md.nlink() > 1 {
                inodes.entry(md.ino()).or_default().push(rel.clone());
            }
            out.insert(
                rel,
                Meta {
                    kind,
                    mode: if on_fat { 0 } else { md.mode() & 0o7777 },
                    uid: if on_fat { 0 } else { md.uid() },
                    gid: if on_fat { 0 } else { md.gid() },
                    size: if kind == "dir" { 0 } else { md.size() },
                    mtime: if on_fat || kind == "link" {
                        0
                    } else {
                        md.mtime()
                    },
                    link: ft.is_symlink().then(|| fs::read_link(&p).unwrap()),
                },
            );
        }
    }
    let mut groups: Vec<Vec<PathBuf>> = inodes
        .into_values()
        .map(|mut v| {
            v.sort();
            v
        })
        .collect();
    groups.sort();
    (out, groups)
}

#[test]
fn a_real_debian_img_xz_unpacks_to_the_tree_it_was_made_from_and_boots_the_same() {
    let fx = fixture();
    let sha = info(&fx, "IMAGE_SHA256");
    let s = setup(
        &fx,
        &format!("{{source: /srv/images/debian-raspi.img.xz, sha256: {sha}}}"),
        &format!(
            "  raspi1: {{serial: {SERIAL}, mac: '{}', image: debian}}\n  raspi2: {{serial: 5eed0002, image: debian}}\n",
            mac()
        ),
    );
    let plan = ok(&s, &["plan"]);
    assert!(plan.contains("+ image debian (unpack"), "{plan}");
    assert!(!plan.contains("Conflicts"), "{plan}");
    let out = ok(&s, &["apply"]);
    assert!(!out.contains("Conflicts"), "{out}");
    assert_no_changes(&s);
    check_client(&s, "raspi1");
    check_client(&s, "raspi2");
    // Each client its own host key.
    assert_ne!(
        fs::read(s.root.join("nfs/raspi1/etc/ssh/ssh_host_ed25519_key")).unwrap(),
        fs::read(s.root.join("nfs/raspi2/etc/ssh/ssh_host_ed25519_key")).unwrap()
    );
    // The store entry is the tree the image was made from: every path, kind, owner, mode,
    // size, mtime (ext4), symlink target and hardlink group.
    let store = s.root.join(format!("var/lib/pinetboot/images/{sha}/root"));
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(
            s.root
                .join(format!("var/lib/pinetboot/images/{sha}/manifest.json")),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["boot_dir"], "boot/firmware", "{manifest}");
    let fat = Path::new("boot/firmware");
    let (want, want_links) = walk(&fx.join("rootfs"), fat);
    let (got, got_links) = walk(&store, fat);
    // The ext4 partition's own lost+found is part of the root, as on Raspberry Pi OS.
    let (mut want, want_links) = (want, want_links);
    let lf = got.get(Path::new("lost+found")).expect("lost+found");
    assert_eq!((lf.kind, lf.mode, lf.uid), ("dir", 0o700, 0));
    want.insert(
        "lost+found".into(),
        Meta {
            kind: "dir",
            mode: 0o700,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: lf.mtime,
            link: None,
        },
    );
    let diffs: Vec<String> = want
        .iter()
        .filter(|(p, m)| got.get(*p) != Some(m))
        .map(|(p, m)| format!("{}: {m:?} → {:?}", p.display(), got.get(p)))
        .chain(
            got.keys()
                .filter(|p| !want.contains_key(*p))
                .map(|p| format!("{}: extra", p.display())),
        )
        .take(20)
        .collect();
    assert!(
        diffs.is_empty(),
        "{} paths differ (of {}), first ones:\n{}",
        diffs.len(),
        want.len(),
        diffs.join("\n")
    );
    assert_eq!(got_links, want_links, "hardlink groups differ");
    for f in ["start4.elf", "config.txt", "bcm2711-rpi-4-b.dtb"] {
        assert_eq!(
            fs::read(store.join("boot/firmware").join(f)).unwrap(),
            fs::read(fx.join("rootfs/boot/firmware").join(f)).unwrap(),
            "{f}"
        );
    }
}
