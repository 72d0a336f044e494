//! A real Debian arm64 kernel boots a shared read-only root (`root: shared`, issue 16) with its
//! writes in RAM, and a reboot resets it.
//!
//! The server side is pinetboot's own: `pinetboot apply` of a config whose client
//! `shared1` is `root: shared` makes the image's shared root (the real Debian fixture tree),
//! its boot folder of links with its own `cmdline.txt` (`ro`, `init=` the overlay init,
//! `systemd.hostname=`, `systemd.machine_id=`), and the read-only export that nfs-ganesha then
//! serves over NFSv3, as in `real_boot`.
//!
//! Then, in the namespace lab, twice: the emulated Pi 4 bootloader fetches the boot files
//! over TFTP (proxy-DHCP, serial folder), and `qemu-system-aarch64 -M virt` (TCG) boots
//! them. Checks on the booted guest, over the serial console: `/` is an overlay whose lower
//! layer is the NFS export (NFSv3 from the server, mounted read-only) and whose upper is a
//! tmpfs; the hostname and `/etc/machine-id` are the command line's; a non-root user runs
//! programs; the declared key logs in over ssh; no failed units; a file the guest writes is in
//! its tmpfs and not on the server; after the second boot the file is gone. No file of the
//! exported tree changed (`find -cnewer`). A third boot, with the overlay module taken out of
//! the tree, stops with the overlay init's message instead of booting. Times are printed.
//!
//! Needs root and the tools of `real_boot`; fails (never skips) without them.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::mountns::MountNs;
use crate::support::netlab::{Lab, SERVER_IP, server_yaml};
use crate::support::pi4::{EmulatedPi, Session, boot_images};
use crate::support::realos::guest::{
    CMD_TIMEOUT, failed_units, guest_address, power_off, preflight, set_pi_link,
};
use crate::support::realos::must;
use crate::support::realos::nfs::{self, NfsServer};
use crate::support::realos::vm::{Vm, VmSpec, mac_string};
use crate::support::roots::generated_conf;
use crate::support::tools::expect_success;

const CLIENT: &str = "shared1";
const SERIAL: u32 = 0x5a4e_d001;
const MAC: [u8; 6] = [0xdc, 0xa6, 0x32, 0x5e, 0xed, 0x16];
/// The name the command line gives (`systemd.hostname=`).
const HOSTNAME: &str = "classroom-pi-07";
/// The shared root, as the server names it.
const BASE: &str = "nfs/.shared/debian-tree";
/// The file the guest writes on the first boot.
const WRITTEN: &str = "/root/pinetboot-shared-boot.txt";

const NFS_ROOT_TIMEOUT: Duration = Duration::from_secs(180);
const LOGIN_TIMEOUT: Duration = Duration::from_secs(360);
const BLKSIZE: u16 = 1468;

/// systemd greets from the root the initramfs switched to.
const ROOT_MOUNTED: &str = "Welcome to ";
/// What the overlay init prints when it stops the boot.
const SCRIPT_FAILED: &str = "pinetboot overlay-init: ";
/// initramfs-tools' rescue shell (any other panic in the initramfs).
const INITRAMFS_SHELL: &str = "(initramfs) ";
const LOGIN_PROMPT: &str = " login: ";

/// The throwaway host: `--root` folder and config.
struct Host {
    tmp: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
    key: PathBuf,
}

impl Host {
    fn new() -> Host {
        let tmp = tempfile::Builder::new()
            .prefix("pnb-sharedboot-")
            .tempdir()
            .unwrap();
        // dnsmasq serves TFTP as nobody: every folder on the way must be traversable.
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let root = tmp.path().join("root");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::create_dir_all(root.join("srv/rootfs/debian")).unwrap();
        fs::write(root.join("etc/fstab"), "proc /proc proc defaults 0 0\n").unwrap();
        let key = tmp.path().join("id_ed25519");
        let public = crate::support::tools::ssh_keygen(&key, "pinetboot-shared-boot");
        let config = tmp.path().join("pinetboot.yaml");
        fs::write(
            &config,
            format!(
                "{}images:\n  debian: {{source: /srv/rootfs/debian}}\n\
                 clients:\n  {CLIENT}:\n    serial: '{SERIAL:08x}'\n    mac: '{}'\n    \
                 image: debian\n    hostname: {HOSTNAME}\n    root: shared\n    \
                 ssh: {{authorized_keys: ['{public}']}}\n",
                server_yaml(),
                mac_string(&MAC)
            ),
        )
        .unwrap();
        Host {
            tmp,
            root,
            config,
            key,
        }
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }

    /// The exported tree (what a shared client mounts read-only).
    fn tree(&self) -> PathBuf {
        self.root.join(BASE).join("root")
    }

    /// The client's boot folder (what `/tftpboot/SERIAL` is bound to).
    fn boot_folder(&self) -> PathBuf {
        self.root.join(BASE).join("boot").join(CLIENT)
    }
}

/// With `PINETBOOT_REALBOOT_KEEP=1` the temp folder (console logs, ganesha's files, the
/// tree) is kept and its path printed.
impl Drop for Host {
    fn drop(&mut self) {
        if std::env::var_os("PINETBOOT_REALBOOT_KEEP").is_some() {
            let fresh = tempfile::tempdir().expect("tempdir");
            let kept = std::mem::replace(&mut self.tmp, fresh);
            eprintln!("keeping {}", kept.keep().display());
        }
    }
}

/// Binds the fixture's root tree read-only where the config's image source points, then
/// runs `pinetboot apply` (an own client: the tree the test then exports read-only).
fn apply(ns: &MountNs, host: &Host, fixture: &Path) {
    let out = ns
        .nsenter(None, "mount")
        .args(["--bind", "-o", "ro"])
        .arg(fixture.join("rootfs"))
        .arg(host.root.join("srv/rootfs/debian"))
        .output()
        .expect("mount (util-linux)");
    expect_success(&out, "bind-mount the fixture");
    let out = ns.pinetboot(&host.root, &host.config, &["apply"]);
    expect_success(&out, "pinetboot apply");
}

/// GET `SERIAL/name` over TFTP; it must equal the boot folder's file.
fn tftp_get(session: &Session, boot_folder: &Path, name: &str) -> Vec<u8> {
    let remote = format!("{SERIAL:08x}/{name}");
    let bytes = session
        .tftp_get(&remote, BLKSIZE)
        .unwrap_or_else(|e| panic!("TFTP {remote}: {e}"));
    let disk = fs::read(boot_folder.join(name)).unwrap();
    assert!(bytes == disk, "TFTP {remote} differs from the boot folder");
    bytes
}

/// The kernel, initramfs and command line fetched over TFTP.
struct Fetched {
    kernel: PathBuf,
    initrd: PathBuf,
    cmdline: String,
}

fn fetch_boot_files(pi: &EmulatedPi, host: &Host, out: &Path) -> Fetched {
    let session = pi.dhcp().unwrap_or_else(|e| panic!("DHCP phase: {e}"));
    assert_eq!(session.tftp_server, SERVER_IP);
    let boot = host.boot_folder();
    let config = String::from_utf8(tftp_get(&session, &boot, "config.txt")).unwrap();
    let (kernel_name, initramfs) = boot_images(&config);
    let initramfs = initramfs.expect("config.txt names an initramfs");
    let cmdline = String::from_utf8(tftp_get(&session, &boot, "cmdline.txt")).unwrap();
    fs::create_dir_all(out).unwrap();
    let kernel = out.join(&kernel_name);
    fs::write(&kernel, tftp_get(&session, &boot, &kernel_name)).unwrap();
    let initrd = out.join(&initramfs);
    fs::write(&initrd, tftp_get(&session, &boot, &initramfs)).unwrap();
    Fetched {
        kernel,
        initrd,
        cmdline: cmdline.trim().to_string(),
    }
}

/// Measured times of one boot (NFS root, login: from qemu's start).
#[derive(Debug, Default, Clone, Copy)]
struct BootTimes {
    tftp: Duration,
    root: Duration,
    login: Duration,
    poweroff: Duration,
}

/// TFTP, then qemu on exactly those files; waits for the root and the login prompt, and
/// fails at once with the console when the initramfs stops the boot.
fn boot(lab: &Lab, pi: &EmulatedPi, host: &Host, n: u32) -> (Vm, BootTimes) {
    set_pi_link(pi, true);
    let t = Instant::now();
    let fetched = fetch_boot_files(pi, host, &host.dir().join(format!("boot{n}")));
    let tftp = t.elapsed();
    set_pi_link(pi, false);
    eprintln!("boot {n}: TFTP {tftp:.1?}; cmdline: {}", fetched.cmdline);
    let spec = VmSpec {
        netns: lab.rtr.clone(),
        bridge: "br0".into(),
        tap: "tapvm1".into(),
        mac: MAC,
        kernel: fetched.kernel,
        initrd: Some(fetched.initrd),
        append: format!("{} console=ttyAMA0", fetched.cmdline),
        memory_mib: 1024,
        smp: 2,
        log: host.dir().join(format!("console{n}.log")),
    };
    let mut vm = Vm::start(&spec);
    eprintln!("boot {n}: console log {}", spec.log.display());
    match vm.try_wait_for_any(
        &[ROOT_MOUNTED, SCRIPT_FAILED, INITRAMFS_SHELL],
        NFS_ROOT_TIMEOUT,
    ) {
        Ok((0, _)) => {}
        Ok((_, text)) => panic!(
            "boot {n}: the initramfs stopped the boot:\n{}\n{}",
            crate::support::realos::tail(&text, 40),
            vm.tail()
        ),
        Err(e) => panic!("boot {n}: {e}"),
    }
    let root = vm.elapsed();
    eprintln!("boot {n}: root mounted after {root:.1?}");
    vm.wait_for(LOGIN_PROMPT, LOGIN_TIMEOUT);
    let login = vm.elapsed();
    eprintln!("boot {n}: login prompt after {login:.1?}");
    vm.send_line("");
    vm.login_root(CMD_TIMEOUT);
    (
        vm,
        BootTimes {
            tftp,
            root,
            login,
            poweroff: Duration::ZERO,
        },
    )
}

/// `findmnt -n -o SOURCE,FSTYPE,OPTIONS PATH`, split.
fn findmnt(vm: &mut Vm, path: &str) -> (String, String, Vec<String>) {
    let out = vm.run_ok(
        &format!("findmnt -n -o SOURCE,FSTYPE,OPTIONS {path}"),
        CMD_TIMEOUT,
    );
    let fields: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(fields.len(), 3, "findmnt {path}: {out}");
    (
        fields[0].to_string(),
        fields[1].to_string(),
        fields[2].split(',').map(str::to_string).collect(),
    )
}

/// `/` is an overlay over the read-only NFS export with its upper layer in a tmpfs; the
/// identity is the command line's.
fn check_root_and_identity(vm: &mut Vm) {
    let (_, fstype, options) = findmnt(vm, "/");
    assert_eq!(fstype, "overlay", "/ is not an overlay: {options:?}");
    for want in [
        "lowerdir=/mnt/lower",
        "upperdir=/mnt/upper",
        "workdir=/mnt/work",
    ] {
        assert!(
            options.iter().any(|o| o == want),
            "/ lacks {want}: {options:?}"
        );
    }
    // The shared root the overlay init moved aside: NFSv3 from the server, read-only.
    let (source, fstype, options) = findmnt(vm, "/media/pinetboot-shared");
    assert!(
        source == format!("{SERVER_IP}:/{BASE}/root")
            && fstype == "nfs"
            && options.iter().any(|o| o == "vers=3")
            && options.iter().any(|o| o == "ro"),
        "the lower layer is not NFSv3 read-only from {SERVER_IP}:/{BASE}/root: {source} {fstype} {options:?}"
    );
    let (_, fstype, _) = findmnt(vm, "/media/pinetboot-shared/mnt");
    assert_eq!(fstype, "tmpfs", "the upper layer");
    let (out, code) = vm.run(
        "touch /media/pinetboot-shared/pinetboot-write-test",
        CMD_TIMEOUT,
    );
    assert!(
        code != 0 && out.contains("Read-only file system"),
        "writing to the NFS lower layer: exit {code}: {out}"
    );
    let name = vm.run_ok("hostname", CMD_TIMEOUT);
    assert_eq!(name.trim(), HOSTNAME, "hostname");
    let etc = vm.run_ok("cat /etc/hostname; grep 127.0.1.1 /etc/hosts", CMD_TIMEOUT);
    assert!(
        etc.contains(HOSTNAME),
        "/etc/hostname and /etc/hosts: {etc}"
    );
    let id = vm.run_ok("cat /etc/machine-id", CMD_TIMEOUT);
    assert_eq!(
        id.trim(),
        pinetboot::pios::machine_id(&format!("{SERIAL:08x}")),
        "/etc/machine-id"
    );
    // A non-root user runs a program from the NFS lower (see [`nfs_server`]).
    let (out, code) = vm.run(
        "systemd-run --wait --quiet -p User=nobody /bin/true",
        CMD_TIMEOUT,
    );
    assert_eq!(
        code, 0,
        "a non-root user cannot run /bin/true from the shared root: {out}"
    );
    // Its own SSH host key, made at this boot.
    vm.run_ok("test -s /etc/ssh/ssh_host_ed25519_key", CMD_TIMEOUT);
}

/// The boot script's refusal: with the image's overlay module moved out of the tree (and
/// none in the initramfs or built in), the initramfs stops with pinetboot's message naming
/// what is missing, and no root is booted. Returns the time from qemu's start to the
/// message.
fn boot_stops_without_overlay(lab: &Lab, pi: &EmulatedPi, host: &Host, kernel: &str) -> Duration {
    let module = host.tree().join(format!(
        "lib/modules/{kernel}/kernel/fs/overlayfs/overlay.ko"
    ));
    assert!(module.is_file(), "{} is not a file", module.display());
    fs::rename(&module, host.dir().join("overlay.ko.moved")).unwrap();
    set_pi_link(pi, true);
    let fetched = fetch_boot_files(pi, host, &host.dir().join("boot3"));
    set_pi_link(pi, false);
    let spec = VmSpec {
        netns: lab.rtr.clone(),
        bridge: "br0".into(),
        tap: "tapvm1".into(),
        mac: MAC,
        kernel: fetched.kernel,
        initrd: Some(fetched.initrd),
        append: format!("{} console=ttyAMA0", fetched.cmdline),
        memory_mib: 1024,
        smp: 2,
        log: host.dir().join("console3.log"),
    };
    let mut vm = Vm::start(&spec);
    let want = "pinetboot overlay-init: no overlay file system";
    match vm.try_wait_for_any(&[want, ROOT_MOUNTED], NFS_ROOT_TIMEOUT) {
        Ok((0, _)) => {}
        Ok((_, _)) => panic!(
            "boot 3: booted a root without the overlay module\n{}",
            vm.tail()
        ),
        Err(e) => panic!("boot 3: {e}"),
    }
    let stopped = vm.elapsed();
    let message = vm.wait_for("\n", CMD_TIMEOUT);
    eprintln!(
        "boot 3: stopped after {stopped:.1?}: {want}{}",
        message.trim_end()
    );
    assert!(
        message.contains("modprobe overlay failed")
            && message.contains("the shared root is not booted writable"),
        "the message says what is missing: {message}"
    );
    stopped
}

/// ganesha serving `exports` with the NFSv3 ACL side protocol answered (GETACL), unlike
/// `real_boot`'s server.
///
/// An overlay over an NFSv3 lower asks the lower for POSIX ACLs on every permission check
/// that consults them (a non-owner's access to a file with group bits: any `exec` by a
/// non-root user): `ovl_get_acl` → `get_acl` → `nfs3_get_acl`, which returns `EOPNOTSUPP`
/// once the server has said it has no NFSACL program, and the VFS returns that error from
/// the permission check. [`nfs::ACL_SETTINGS`] makes ganesha say exactly that (to dodge its
/// broken SETACL), so with it every `User=` service fails with `203/EXEC` "Operation not
/// supported" on the shared root (seen: systemd-timesyncd), while root's processes run.
/// The kernel NFS server a pinetboot host runs answers GETACL (nfsd synthesises an ACL from
/// the mode); here ganesha's NFSACL program stays at 100227 so GETACL is answered, and the
/// lower is never written, so its SETACL bug cannot bite.
fn nfs_server(lab: &Lab, host: &Host, exports: &str) -> NfsServer {
    let dir = host.dir().join("nfs-server");
    let state = dir.join("ganesha-state");
    fs::create_dir_all(&state).unwrap();
    let parsed = nfs::parse_exports(exports);
    let config = nfs::ganesha_conf(&parsed, &host.root, &state, &nfs::plugins_dir());
    assert!(config.contains(nfs::ACL_SETTINGS), "{config}");
    let config = config.replace(nfs::ACL_SETTINGS, "Enable_NFSACL = true;");
    NfsServer::start_with_config(&lab.srv, config, &dir)
}

/// `ssh root@ADDRESS COMMAND` from the server's namespace with the declared key; the host
/// key must be the one pinetboot pinned for the tree (in its `known_hosts`, under the tree's
/// host name: every shared client of the tree has that key).
fn ssh(lab: &Lab, host: &Host, address: &str, command: &str) -> Result<String, String> {
    // A shared Pi makes its host key at every boot: nothing to pin.
    let known_hosts = "UserKnownHostsFile=/dev/null".to_owned();
    let alias = "HostKeyAlias=shared".to_owned();
    let target = format!("root@{address}");
    let key = host.key.to_str().unwrap();
    let mut args = vec![
        "netns",
        "exec",
        &lab.srv,
        "timeout",
        "90",
        "ssh",
        "-F",
        "/dev/null",
    ];
    args.extend(["-i", key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"]);
    args.extend([
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        &known_hosts,
        "-o",
        &alias,
    ]);
    args.extend([
        "-o",
        "ConnectTimeout=30",
        "-o",
        "LogLevel=ERROR",
        &target,
        command,
    ]);
    crate::support::realos::run_cmd("ip", &args)
}

/// `find TREE -cnewer MARKER` on the server: what changed in the exported tree since
/// `marker` was made (content, names, modes or owners).
fn changed_since(tree: &Path, marker: &Path) -> String {
    let tree = tree.to_str().unwrap();
    let marker = marker.to_str().unwrap();
    must("find", &[tree, "-cnewer", marker, "-print"])
}

#[test]
fn a_read_only_nfs_root_boots_with_writes_in_ram_and_a_reboot_resets_it() {
    let started = Instant::now();
    preflight();
    let fixture = crate::support::realos::fixture();
    let host = Host::new();
    let lab = Lab::new();
    let ns = MountNs::new();
    let t = Instant::now();
    apply(&ns, &host, &fixture);
    let apply_time = t.elapsed();
    let exports = fs::read_to_string(host.root.join("etc/exports.d/pinetboot.exports")).unwrap();
    let cmdline = fs::read_to_string(host.boot_folder().join("cmdline.txt")).unwrap();
    eprintln!("exports:\n{exports}cmdline.txt: {cmdline}");
    for token in [
        format!("nfsroot={SERVER_IP}:/{BASE}/root,vers=3"),
        " ro ".into(),
        "init=/usr/lib/pinetboot/overlay-init".into(),
        format!("systemd.hostname={HOSTNAME}"),
    ] {
        assert!(
            cmdline.contains(&token),
            "cmdline.txt lacks {token}: {cmdline}"
        );
    }
    let marker = host.dir().join("tree-marker");
    fs::write(&marker, "").unwrap();
    let conf = generated_conf(&host.root, &lab.dir().join("conf.d"), false);
    lab.start_server_dnsmasq_in(&conf, &[], Some(ns.pid()));
    let nfs = nfs_server(&lab, &host, &exports);
    assert!(nfs.config.contains("Access_Type = RO;"), "{}", nfs.config);
    let pi = EmulatedPi::new(&lab.add_pi(MAC), SERIAL);
    let mut problems = Vec::new();

    // First boot: the overlay, the identity, a write that stays in RAM.
    let (mut vm, mut first) = boot(&lab, &pi, &host, 1);
    check_root_and_identity(&mut vm);
    let failed = failed_units(&mut vm);
    if !failed.is_empty() {
        problems.push(format!("failed units on the first boot:\n{failed}"));
    }
    let address = guest_address(&mut vm);
    match ssh(&lab, &host, &address, "hostname") {
        Ok(out) if out.trim() == HOSTNAME => {}
        Ok(out) => problems.push(format!("ssh `hostname` printed {out:?}")),
        Err(e) => problems.push(format!("ssh with the declared key: {e}")),
    }
    let token = format!("written-by-the-guest-{}", std::process::id());
    vm.run_ok(&format!("echo {token} > {WRITTEN} && sync"), CMD_TIMEOUT);
    let back = vm.run_ok(&format!("cat {WRITTEN}"), CMD_TIMEOUT);
    assert_eq!(back.trim(), token, "the guest reads back what it wrote");
    let upper = vm.run_ok(
        &format!("cat /media/pinetboot-shared/mnt/upper{WRITTEN}"),
        CMD_TIMEOUT,
    );
    assert_eq!(upper.trim(), token, "the write is in the tmpfs upper layer");
    let on_server = host.tree().join(WRITTEN.trim_start_matches('/'));
    assert!(
        !on_server.exists(),
        "the guest's write reached the server: {}",
        on_server.display()
    );
    let (out, code) = vm.run(
        "test ! -e /media/pinetboot-shared/mnt/upper/boot",
        CMD_TIMEOUT,
    );
    assert_eq!(code, 0, "something rewrote the boot folder in RAM: {out}");
    let (df, _) = vm.run(
        "df -h / /media/pinetboot-shared/mnt; du -xh -d 3 /media/pinetboot-shared/mnt/upper | sort -h | tail -n 8",
        CMD_TIMEOUT,
    );
    eprintln!("boot 1: RAM used by the overlay:\n{df}");
    first.poweroff = power_off(&mut vm);
    drop(vm);

    // Second boot: the image's state again.
    let (mut vm, mut second) = boot(&lab, &pi, &host, 2);
    check_root_and_identity(&mut vm);
    let (out, code) = vm.run(&format!("test ! -e {WRITTEN}"), CMD_TIMEOUT);
    assert_eq!(code, 0, "{WRITTEN} survived the reboot: {out}");
    let failed = failed_units(&mut vm);
    if !failed.is_empty() {
        problems.push(format!("failed units on the second boot:\n{failed}"));
    }
    second.poweroff = power_off(&mut vm);
    drop(vm);

    let changed = changed_since(&host.tree(), &marker);
    assert!(
        changed.trim().is_empty(),
        "the exported tree changed while shared clients booted from it:\n{changed}"
    );

    // Third boot: an image without the overlay module stops in the initramfs.
    let kernel = crate::support::realos::fixture_info(&fixture)["KERNEL_VERSION"].clone();
    let refused = boot_stops_without_overlay(&lab, &pi, &host, &kernel);
    drop(nfs);
    eprintln!(
        "times (root and login from qemu's start):\n\
         {:<8} {:>8} {:>10} {:>8} {:>10}\n\
         {:<8} {:>8.1?} {:>10.1?} {:>8.1?} {:>10.1?}\n\
         {:<8} {:>8.1?} {:>10.1?} {:>8.1?} {:>10.1?}\n\
         without the overlay module the boot stopped after {refused:.1?}\n\
         apply {apply_time:.1?}; whole run {:.1?}",
        "boot",
        "TFTP",
        "root",
        "login",
        "power-off",
        "first",
        first.tftp,
        first.root,
        first.login,
        first.poweroff,
        "second",
        second.tftp,
        second.root,
        second.login,
        second.poweroff,
        started.elapsed()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
