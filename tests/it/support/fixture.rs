//! Fixture builders: realistic Raspberry Pi OS root trees (Bullseye, Bookworm, Trixie), a
//! throwaway host root with foreign `/etc/fstab` lines, and config YAML writers.

use std::os::unix::fs::{PermissionsExt, lchown, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::mountns::MountNs;
use super::run::Run;
use super::tools::{bin, require_root, run, shared_dir};

/// The serial numbers of clients raspi1, raspi2 and raspi3 in [`bookworm_cfg`].
pub const S1: &str = "0c4c21e5";
/// See [`S1`].
pub const S2: &str = "0c4c21e6";
/// See [`S1`].
pub const S3: &str = "0c4c21e7";

/// One Bookworm image `bookworm-lite` and the given clients (raspi1 → [`S1`], raspi2 → [`S2`],
/// raspi3 → [`S3`]).
pub fn bookworm_cfg(names: &[&str]) -> Cfg {
    let mut c = Cfg::default().image("bookworm-lite");
    for n in names {
        let serial = match *n {
            "raspi1" => S1,
            "raspi2" => S2,
            "raspi3" => S3,
            other => panic!("no serial for {other}"),
        };
        c = c.client(ClientCfg::new(n, serial, "bookworm-lite"));
    }
    c
}

/// The boot server's address in every test config.
pub const SERVER: &str = "192.168.2.209";
/// The boot network in every test config.
pub const NETWORK: &str = "192.168.2.0/24";
/// An SSH public key.
pub const KEY1: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGV4YW1wbGUta2V5LW5vdC1yZWFsLXJlcGxhY2UtbWU admin@example";
/// Another SSH public key.
pub const KEY2: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRlYWNoZXIta2V5LW5vdC1yZWFsLXJlcGxhY2UtbWU teacher@school";
/// The mtime every fixture entry gets (with nanoseconds, so copies must keep them).
pub const FIXTURE_MTIME: &str = "@1700000000.123456789";
/// The host's `/etc/fstab` before pinetboot touches it (foreign lines, no trailing block).
pub const HOST_FSTAB: &str = "# /etc/fstab: static file system information.\n\
UUID=0a1b2c3d-1111-2222-3333-444455556666 / ext4 errors=remount-ro 0 1\n\
UUID=ABCD-1234 /boot/efi vfat umask=0077 0 1\n\
tmpfs /tmp tmpfs defaults,nosuid,nodev 0 0\n";

/// A Raspberry Pi OS release, as its root tree looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Debian 11: FAT partition at `/boot`, `init=…firstboot`, `resize2fs_once`.
    Bullseye,
    /// Debian 12: FAT partition at `/boot/firmware`, stub `/boot/cmdline.txt`.
    Bookworm,
    /// Debian 13: `/boot/firmware`, `resize` token, cloud-init.
    Trixie,
}

impl Release {
    /// VERSION_CODENAME.
    pub fn codename(self) -> &'static str {
        match self {
            Release::Bullseye => "bullseye",
            Release::Bookworm => "bookworm",
            Release::Trixie => "trixie",
        }
    }

    /// The boot folder, relative to the root.
    pub fn boot_dir(self) -> &'static str {
        match self {
            Release::Bullseye => "boot",
            _ => "boot/firmware",
        }
    }

    fn disk_id(self) -> &'static str {
        match self {
            Release::Bullseye => "b1e5e7a0",
            Release::Bookworm => "4e639091",
            Release::Trixie => "7a1e0c3d",
        }
    }

    /// The image's own cmdline.txt.
    pub fn cmdline(self) -> String {
        let id = self.disk_id();
        match self {
            Release::Trixie => format!(
                "console=serial0,115200 console=tty1 root=PARTUUID={id}-02 rootfstype=ext4 fsck.repair=yes rootwait resize\n"
            ),
            _ => format!(
                "console=serial0,115200 console=tty1 root=PARTUUID={id}-02 rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n"
            ),
        }
    }

    /// The image's own etc/fstab.
    pub fn fstab(self) -> String {
        let id = self.disk_id();
        let mnt = format!("/{}", self.boot_dir());
        format!(
            "proc            /proc           proc    defaults          0       0\n\
PARTUUID={id}-01  {mnt:<15} vfat    defaults          0       2\n\
PARTUUID={id}-02  /               ext4    defaults,noatime  0       1\n\
# a swapfile is not a swap partition, no line here\n\
#   use  dphys-swapfile swap[on|off]  for that\n"
        )
    }

    /// The image's etc/fstab as pinetboot must leave it (SD-card lines gone, rest kept).
    pub fn fstab_filtered(self) -> String {
        self.fstab()
            .lines()
            .filter(|l| !l.starts_with("PARTUUID="))
            .map(|l| format!("{l}\n"))
            .collect()
    }
}

/// The image's etc/hosts.
pub const IMAGE_HOSTS: &str = "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\nff02::1\t\tip6-allnodes\nff02::2\t\tip6-allrouters\n\n127.0.1.1\t\traspberrypi\n";

/// etc/hosts as pinetboot must leave it for `hostname`.
pub fn expected_hosts(hostname: &str) -> String {
    format!(
        "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\nff02::1\t\tip6-allnodes\nff02::2\t\tip6-allrouters\n\n# BEGIN pinetboot\n127.0.1.1\t{hostname}\n# END pinetboot\n"
    )
}

/// The stub `boot/cmdline.txt` of Bookworm and later.
pub const STUB_CMDLINE: &str = "# This file is no longer used: see /boot/firmware/cmdline.txt\n";

fn mkdir(p: &Path, mode: u32, uid: u32, gid: u32) {
    std::fs::create_dir_all(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    lchown(p, Some(uid), Some(gid)).expect("chown");
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn write(p: &Path, content: impl AsRef<[u8]>, mode: u32, uid: u32, gid: u32) {
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).expect("mkdir -p");
    }
    std::fs::write(p, content).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    lchown(p, Some(uid), Some(gid)).expect("chown");
    // After chown (which clears setuid).
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A root-owned file (see [`write`]).
fn file(p: &Path, content: impl AsRef<[u8]>, mode: u32) {
    write(p, content, mode, 0, 0);
}

/// A systemd unit stand-in `lib/systemd/system/NAME` (`[Unit]` with a description), enabled
/// for multi-user.target when `wanted`.
fn unit(dir: &Path, name: &str, description: &str, wanted: bool) {
    let path = format!("lib/systemd/system/{name}");
    file(
        &dir.join(&path),
        format!("[Unit]\nDescription={description}\n"),
        0o644,
    );
    if wanted {
        link(
            &format!("/{path}"),
            &dir.join("etc/systemd/system/multi-user.target.wants")
                .join(name),
        );
    }
}

fn link(target: &str, at: &Path) {
    symlink(target, at).unwrap_or_else(|e| panic!("{}: {e}", at.display()));
}

/// Builds a Raspberry Pi OS-like root tree of `release` at `dir` (which must not exist).
/// `real_firmware`: copy start4.elf, fixup4.dat and the Pi 4 dtb from the shared fixtures
/// (else small stand-ins, for tests that build many trees).
pub fn build_image(dir: &Path, release: Release, real_firmware: bool) {
    require_root("building a Raspberry Pi OS tree with owners, setuid files and device nodes");
    assert!(!dir.exists(), "{} exists", dir.display());
    mkdir(dir, 0o755, 0, 0);
    for d in [
        "etc",
        "etc/systemd",
        "etc/systemd/system",
        "etc/systemd/system/multi-user.target.wants",
        "etc/ssh",
        "lib",
        "lib/systemd",
        "lib/systemd/system",
        "usr",
        "usr/bin",
        "usr/sbin",
        "mnt",
        "usr/lib",
        "usr/lib/raspberrypi-sys-mods",
        "lib/modules",
        "lib/modules/6.6.51+rpt-rpi-v8",
        "lib/modules/6.6.51+rpt-rpi-v8/kernel",
        "lib/modules/6.6.51+rpt-rpi-v8/kernel/fs",
        "lib/modules/6.6.51+rpt-rpi-v8/kernel/fs/overlayfs",
        "home",
        "dev",
        "var",
        "var/lib",
        "boot",
    ] {
        mkdir(&dir.join(d), 0o755, 0, 0);
    }
    mkdir(&dir.join("root"), 0o700, 0, 0);
    mkdir(&dir.join("tmp"), 0o1777, 0, 0);
    mkdir(&dir.join("home/pi"), 0o755, 1000, 1000);
    link("usr/bin", &dir.join("bin"));
    link("usr/sbin", &dir.join("sbin"));
    // What a shared root's overlay init runs (util-linux, coreutils, the overlay module).
    for program in ["usr/sbin/pivot_root", "usr/sbin/chroot"] {
        file(&dir.join(program), "#!/bin/sh\n", 0o755);
    }
    file(
        &dir.join("lib/modules/6.6.51+rpt-rpi-v8/kernel/fs/overlayfs/overlay.ko.xz"),
        "overlay\n",
        0o644,
    );
    let etc = dir.join("etc");
    file(
        &etc.join("os-release"),
        format!(
            "PRETTY_NAME=\"Debian GNU/Linux ({0})\"\nNAME=\"Debian GNU/Linux\"\nVERSION_CODENAME={0}\nID=debian\n",
            release.codename()
        ),
        0o644,
    );
    file(&etc.join("fstab"), release.fstab(), 0o644);
    file(&etc.join("hostname"), "raspberrypi\n", 0o644);
    file(&etc.join("hosts"), IMAGE_HOSTS, 0o644);
    file(
        &etc.join("passwd"),
        "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\npi:x:1000:1000:,,,:/home/pi:/bin/bash\n",
        0o644,
    );
    file(
        &etc.join("group"),
        "root:x:0:\nshadow:x:42:\npi:x:1000:\n",
        0o644,
    );
    write(
        &etc.join("shadow"),
        "root:*:19000:0:99999:7:::\npi:!:19000:0:99999:7:::\n",
        0o640,
        0,
        42,
    );
    file(&etc.join("machine-id"), "uninitialized\n", 0o444);
    file(
        &etc.join("ssh/sshd_config"),
        "Include /etc/ssh/sshd_config.d/*.conf\n",
        0o644,
    );
    let units = dir.join("lib/systemd/system");
    file(
        &units.join("ssh.service"),
        "[Unit]\nDescription=OpenBSD Secure Shell server\n[Service]\nExecStart=/usr/sbin/sshd -D\n[Install]\nWantedBy=multi-user.target\nAlias=sshd.service\n",
        0o644,
    );
    unit(dir, "dphys-swapfile.service", "dphys-swapfile", false);
    unit(
        dir,
        "userconfig.service",
        "User configuration dialog",
        false,
    );
    match release {
        Release::Bullseye => {
            unit(
                dir,
                "resize2fs_once.service",
                "Resize the root filesystem once",
                true,
            );
            unit(dir, "dhcpcd.service", "dhcpcd", true);
        }
        Release::Bookworm | Release::Trixie => {
            unit(dir, "NetworkManager.service", "Network Manager", true);
        }
    }
    if release == Release::Trixie {
        unit(dir, "rpi-resize.service", "Resize root", false);
        mkdir(&etc.join("cloud"), 0o755, 0, 0);
        file(&etc.join("cloud/cloud.cfg"), "users:\n  - default\n", 0o644);
    }
    file(
        &dir.join("usr/lib/raspberrypi-sys-mods/firstboot"),
        "#!/bin/sh\n# resize the root partition, then reboot\n",
        0o755,
    );
    // Fidelity probes: setuid, hardlink pair, owner 1000, fifo, devices.
    file(&dir.join("usr/bin/sudo"), b"\x7fELF sudo stand-in", 0o4755);
    file(&dir.join("usr/bin/perl"), b"\x7fELF perl stand-in", 0o755);
    std::fs::hard_link(dir.join("usr/bin/perl"), dir.join("usr/bin/perl5.36.0")).expect("hardlink");
    write(
        &dir.join("home/pi/.bashrc"),
        "# ~/.bashrc\n",
        0o644,
        1000,
        1000,
    );
    run(Command::new("mkfifo")
        .arg("-m")
        .arg("0600")
        .arg(dir.join("dev/initctl")));
    run(Command::new("mknod")
        .args(["-m", "0666"])
        .arg(dir.join("dev/null"))
        .args(["c", "1", "3"]));
    run(Command::new("mknod")
        .args(["-m", "0600"])
        .arg(dir.join("dev/console"))
        .args(["c", "5", "1"]));
    // The boot folder (FAT: every file 0755).
    let boot = dir.join(release.boot_dir());
    mkdir(&boot, 0o755, 0, 0);
    mkdir(&boot.join("overlays"), 0o755, 0, 0);
    let fw = shared_dir().join("fixtures/raspi-firmware");
    for name in ["start4.elf", "fixup4.dat", "bcm2711-rpi-4-b.dtb"] {
        let bytes = if real_firmware {
            std::fs::read(fw.join(name)).expect("reading shared firmware")
        } else {
            format!("stand-in for {name}\n").into_bytes()
        };
        file(&boot.join(name), bytes, 0o755);
    }
    file(&boot.join("cmdline.txt"), release.cmdline(), 0o755);
    file(
        &boot.join("config.txt"),
        "# For more options and information see\n# http://rptl.io/configtxt\ndtparam=audio=on\ncamera_auto_detect=1\ndisplay_auto_detect=1\nauto_initramfs=1\ndtoverlay=vc4-kms-v3d\nmax_framebuffers=2\narm_64bit=1\n",
        0o755,
    );
    let mut kernel = b"ARMd kernel8 stand-in".to_vec();
    kernel.resize(8192, 0);
    file(&boot.join("kernel8.img"), kernel, 0o755);
    file(
        &boot.join("initramfs8"),
        b"\x1f\x8b initramfs stand-in",
        0o755,
    );
    file(&boot.join("overlays/README"), "overlays\n", 0o755);
    if release != Release::Bullseye {
        file(&dir.join("boot/cmdline.txt"), STUB_CMDLINE, 0o644);
        file(
            &dir.join("boot/config.txt"),
            "# This file is no longer used: see /boot/firmware/config.txt\n",
            0o644,
        );
        link("firmware/overlays", &dir.join("boot/overlays"));
    }
    run(Command::new("find").arg(dir).args([
        "-exec",
        "touch",
        "-h",
        "-d",
        FIXTURE_MTIME,
        "{}",
        "+",
    ]));
}

/// One client in a config.
#[derive(Debug, Clone)]
pub struct ClientCfg {
    /// Name (its /nfs folder).
    pub name: String,
    /// Serial.
    pub serial: String,
    /// Image name.
    pub image: String,
    /// Hostname, if not the name.
    pub hostname: Option<String>,
    /// MAC.
    pub mac: Option<String>,
    /// Fixed address.
    pub address: Option<String>,
    /// `ssh.user` (None: no ssh block unless keys are given).
    pub ssh_user: Option<String>,
    /// `ssh.authorized_keys`.
    pub keys: Vec<String>,
    /// Extra kernel arguments.
    pub cmdline: Vec<String>,
}

impl ClientCfg {
    /// A client with keys for root.
    pub fn new(name: &str, serial: &str, image: &str) -> Self {
        ClientCfg {
            name: name.into(),
            serial: serial.into(),
            image: image.into(),
            hostname: None,
            mac: None,
            address: None,
            ssh_user: None,
            keys: vec![KEY1.into()],
            cmdline: Vec::new(),
        }
    }
}

/// An image in a config: name, source (host path), `files:` (name in the boot folder, host path).
pub type ImageCfg = (String, String, Vec<(String, String)>);

/// A whole config.
#[derive(Debug, Clone, Default)]
pub struct Cfg {
    /// Images: name, source (host path), `files:` (name in boot folder, host path).
    pub images: Vec<ImageCfg>,
    /// Clients.
    pub clients: Vec<ClientCfg>,
}

impl Cfg {
    /// Adds an image whose source is `/srv/rootfs/NAME`.
    pub fn image(mut self, name: &str) -> Self {
        self.images
            .push((name.into(), format!("/srv/rootfs/{name}"), Vec::new()));
        self
    }

    /// Adds a client.
    pub fn client(mut self, c: ClientCfg) -> Self {
        self.clients.push(c);
        self
    }

    /// The YAML text.
    pub fn yaml(&self) -> String {
        let mut y =
            String::from("# yaml-language-server: $schema=../schema/pinetboot.schema.json\n");
        y.push_str(&format!(
            "server:\n  address: {SERVER}\n  network: {NETWORK}\n"
        ));
        y.push_str("images:\n");
        for (name, source, files) in &self.images {
            y.push_str(&format!("  {name}:\n    source: {source}\n"));
            if !files.is_empty() {
                y.push_str("    files:\n");
                for (rel, host) in files {
                    y.push_str(&format!("      {rel}: {host}\n"));
                }
            }
        }
        if self.clients.is_empty() {
            y.push_str("clients: {}\n");
            return y;
        }
        y.push_str("clients:\n");
        for c in &self.clients {
            y.push_str(&format!(
                "  {}:\n    serial: \"{}\"\n    image: {}\n",
                c.name, c.serial, c.image
            ));
            if let Some(h) = &c.hostname {
                y.push_str(&format!("    hostname: {h}\n"));
            }
            if let Some(m) = &c.mac {
                y.push_str(&format!("    mac: \"{m}\"\n"));
            }
            if let Some(a) = &c.address {
                y.push_str(&format!("    address: {a}\n"));
            }
            if c.ssh_user.is_some() || !c.keys.is_empty() {
                y.push_str("    ssh:\n");
                if let Some(u) = &c.ssh_user {
                    y.push_str(&format!("      user: {u}\n"));
                }
                if !c.keys.is_empty() {
                    y.push_str("      authorized_keys:\n");
                    for k in &c.keys {
                        y.push_str(&format!("        - \"{k}\"\n"));
                    }
                }
            }
            if !c.cmdline.is_empty() {
                y.push_str("    cmdline:\n");
                for t in &c.cmdline {
                    y.push_str(&format!("      - \"{t}\"\n"));
                }
            }
        }
        y
    }
}

/// A throwaway host root (`<tmp>/root`), a config file beside it (`<tmp>/pinetboot.yaml`), an
/// "outside" canary folder (`<tmp>/outside`) and a private mount namespace.
#[derive(Debug)]
pub struct Env {
    /// The namespace (declared first: dropped, and its mounts released, before the files).
    pub ns: MountNs,
    /// The temp folder holding everything.
    pub tmp: tempfile::TempDir,
    /// The `--root` (canonical).
    pub root: PathBuf,
    /// The config file.
    pub config: PathBuf,
    /// A canary folder outside the root.
    pub outside: PathBuf,
}

impl Env {
    /// A fresh host root with a foreign /etc/fstab and /srv/rootfs, and a canary folder.
    pub fn new() -> Env {
        require_root("a throwaway host root with root-owned trees");
        let ns = MountNs::new();
        let tmp = tempfile::Builder::new()
            .prefix("pinetboot-test.")
            .tempdir()
            .expect("tempdir");
        let base = std::fs::canonicalize(tmp.path()).expect("canonicalize");
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let root = base.join("root");
        mkdir(&root, 0o755, 0, 0);
        mkdir(&root.join("etc"), 0o755, 0, 0);
        mkdir(&root.join("srv/rootfs"), 0o755, 0, 0);
        write(&root.join("etc/fstab"), HOST_FSTAB, 0o644, 0, 0);
        let outside = base.join("outside");
        mkdir(&outside, 0o755, 0, 0);
        write(&outside.join("secret"), "outside secret\n", 0o600, 0, 0);
        mkdir(&outside.join("etc"), 0o755, 0, 0);
        write(&outside.join("etc/hostname"), "outside-host\n", 0o644, 0, 0);
        write(&outside.join("etc/fstab"), "outside fstab\n", 0o644, 0, 0);
        write(
            &outside.join("etc/os-release"),
            "VERSION_CODENAME=bookworm\n",
            0o644,
            0,
            0,
        );
        mkdir(&outside.join("systemd"), 0o755, 0, 0);
        Env {
            ns,
            tmp,
            config: base.join("pinetboot.yaml"),
            root,
            outside,
        }
    }

    /// A fresh env with the Bookworm image `bookworm-lite` and the config
    /// [`bookworm_cfg`]`(names)`; `real_firmware` as for [`build_image`].
    pub fn with_clients(names: &[&str], real_firmware: bool) -> Env {
        let env = Env::new();
        env.add_image("bookworm-lite", Release::Bookworm, real_firmware);
        env.write_config(&bookworm_cfg(names));
        env
    }

    /// `text` with this env's root, config, canary and temp folder named `[ROOT]`,
    /// `[CONFIG]`, `[OUTSIDE]`, `[TMP]`, and generated host keys redacted, for a snapshot.
    pub fn redact(&self, text: &str) -> String {
        super::snap::redact(
            text,
            &[
                (&self.root, "[ROOT]"),
                (&self.config, "[CONFIG]"),
                (&self.outside, "[OUTSIDE]"),
                (self.tmp.path(), "[TMP]"),
                (self.root.parent().unwrap(), "[TMP]"),
            ],
        )
    }

    /// A host path under the root.
    pub fn path(&self, host_path: &str) -> PathBuf {
        self.root.join(host_path.trim_start_matches('/'))
    }

    /// Builds an image tree at `/srv/rootfs/NAME`.
    pub fn add_image(&self, name: &str, release: Release, real_firmware: bool) -> PathBuf {
        let dir = self.path(&format!("/srv/rootfs/{name}"));
        build_image(&dir, release, real_firmware);
        dir
    }

    /// Writes the config file.
    pub fn write_config(&self, cfg: &Cfg) {
        std::fs::write(&self.config, cfg.yaml()).expect("writing the config");
    }

    /// Runs `pinetboot --root R --config C ARGS…` inside the namespace.
    pub fn pt(&self, args: &[&str]) -> Run {
        self.pt_env(&[], args)
    }

    /// As [`Env::pt`], with extra environment variables.
    pub fn pt_env(&self, env: &[(&str, &str)], args: &[&str]) -> Run {
        self.pt_in(120, env, args)
    }

    /// As [`Env::pt`] under a `secs` harness that must not have to kill it.
    #[track_caller]
    pub fn pt_timeout(&self, secs: u32, args: &[&str]) -> Run {
        self.pt_in(secs, &[], args).expect_finished(secs)
    }

    /// Runs `pinetboot --root R ARGS…` (no `--config`: pull mode, or the default file)
    /// inside the namespace.
    pub fn pt_no_config(&self, args: &[&str]) -> Run {
        let mut full: Vec<String> = vec!["--root".into(), self.root.to_string_lossy().into_owned()];
        full.extend(args.iter().map(|s| s.to_string()));
        Run::of(
            self.ns.command(120, bin(), &full),
            format!("pinetboot {}", args.join(" ")),
        )
    }

    fn pt_in(&self, secs: u32, env: &[(&str, &str)], args: &[&str]) -> Run {
        let mut full: Vec<String> = vec![
            "--root".into(),
            self.root.to_string_lossy().into_owned(),
            "--config".into(),
            self.config.to_string_lossy().into_owned(),
        ];
        full.extend(args.iter().map(|s| s.to_string()));
        let mut cmd = self.ns.command(secs, bin(), &full);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Run::of(cmd, format!("pinetboot {}", args.join(" ")))
    }

    /// `apply`, which must succeed.
    #[track_caller]
    pub fn apply_ok(&self) -> Run {
        let r = self.pt(&["apply"]);
        r.expect_code(0);
        r
    }

    /// `plan --detailed-exitcode`, which must report no changes.
    #[track_caller]
    pub fn assert_converged(&self) {
        let r = self.pt(&["plan", "--detailed-exitcode"]);
        r.expect_code(0);
        assert_eq!(
            r.stdout, "No changes. The host matches the configuration.\n",
            "plan after apply"
        );
    }

    /// `plan --detailed-exitcode` reports no changes (kept client data may be listed).
    #[track_caller]
    pub fn assert_converged_but_kept(&self) {
        let r = self.pt(&["plan", "--detailed-exitcode"]);
        r.expect_code(0);
        assert!(
            r.stdout
                .starts_with("No changes. The host matches the configuration.\n"),
            "plan after apply: {}",
            r.stdout
        );
    }

    /// Reads a file under the root as text.
    #[track_caller]
    pub fn read(&self, host_path: &str) -> String {
        let p = self.path(host_path);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }
}
