//! A real Debian arm64 kernel boots over the network from what pinetboot serves.
//!
//! The fixture (`tests/realos/build-debian-raspi.sh`, built once per machine) is a Debian
//! bookworm Raspberry Pi root. `pinetboot apply` provisions client `raspi1` from it under a
//! throwaway `--root` (inside a private mount namespace). Then, in the namespace lab of
//! `tests/netsupport`: dnsmasq runs pinetboot's generated drop-in (proxy-DHCP + TFTP), an
//! nfs-ganesha serves exactly pinetboot's exports over NFSv3 (this kernel has no nfsd), the
//! emulated Pi 4 bootloader does the proxy-DHCP exchange and fetches `config.txt`,
//! `cmdline.txt` and the kernel and initramfs that `config.txt` names over TFTP, and
//! `qemu-system-aarch64 -M virt` (TCG) boots exactly those files with exactly that
//! `cmdline.txt` plus `console=ttyAMA0`, its NIC (the client's MAC) on the lab's bridge.
//!
//! Checks on the booted guest, over the serial console and over ssh: `/` is NFSv3 from the
//! server, the declared hostname, masked first-boot units, no failed units, the declared key
//! logs in, a file written by the guest lands in the client root on the server, the kernel's
//! postinst hook keeps `root=/dev/nfs`, a clean power-off, and a second boot over TFTP.
//! Times (NFS root, login prompt, whole run) are printed.
//!
//! Needs root, `ip`, `unshare`, `nsenter`, dnsmasq, nfs-ganesha + nfs-ganesha-vfs, rpcbind,
//! qemu-system-arm and openssh-client; fails (never skips) without them.

use crate::support::netlab::server_yaml;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::mountns::MountNs;
use crate::support::netlab::{Lab, SERVER_IP};
use crate::support::pi4::{EmulatedPi, Session, boot_images};
use crate::support::realos::guest::{
    CMD_TIMEOUT, failed_units, guest_address, power_off, preflight, set_pi_link,
};
use crate::support::realos::nfs::NfsServer;
use crate::support::realos::vm::{Vm, VmSpec, mac_string};
use crate::support::roots::generated_conf;
use crate::support::tools::expect_success;

/// The client as declared.
const CLIENT: &str = "raspi1";
const SERIAL: u32 = 0x0c4c_21e5;
const MAC: [u8; 6] = [0xdc, 0xa6, 0x32, 0x5e, 0xed, 0x01];
const HOSTNAME: &str = "pi-netboot-1";
/// The first-boot units pinetboot masks.
const MASKED: [&str; 4] = [
    "dphys-swapfile.service",
    "resize2fs_once.service",
    "rpi-resize.service",
    "userconfig.service",
];

/// From qemu's start to the root file system mounted over NFS.
const NFS_ROOT_TIMEOUT: Duration = Duration::from_secs(180);
/// From qemu's start to the login prompt.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(360);
/// The kernel's postinst hook (copies kernel and initrd into the boot folder over NFS).
const POSTINST_TIMEOUT: Duration = Duration::from_secs(240);
/// TFTP block size the emulated bootloader asks for.
const BLKSIZE: u16 = 1468;

/// Console text that shows the root file system is mounted: systemd greets from the root
/// the initramfs switched to (the initramfs only does that once its NFS mount succeeded).
const ROOT_MOUNTED: &str = "Welcome to ";
/// The end of agetty's login prompt (`HOSTNAME login: `; the hostname is checked after
/// logging in, so a wrong one fails with a clear message rather than a timeout).
const LOGIN_PROMPT: &str = " login: ";

/// The throwaway host: `--root` folder, config, ssh key.
struct Host {
    tmp: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
    key: PathBuf,
}

impl Host {
    fn new() -> Host {
        let tmp = tempfile::Builder::new()
            .prefix("pnb-realboot-")
            .tempdir()
            .unwrap();
        // dnsmasq serves TFTP as nobody: every folder on the way must be traversable.
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let root = tmp.path().join("root");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::create_dir_all(root.join("srv/rootfs/debian")).unwrap();
        fs::write(root.join("etc/fstab"), "proc /proc proc defaults 0 0\n").unwrap();
        let key = tmp.path().join("id_ed25519");
        let public = crate::support::tools::ssh_keygen(&key, "pinetboot-real-boot");
        let config = tmp.path().join("pinetboot.yaml");
        fs::write(&config, config_yaml(&public)).unwrap();
        Host {
            root,
            config,
            key,
            tmp,
        }
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }

    /// The client root on the server (`--root` + `/nfs/raspi1`).
    fn client_root(&self) -> PathBuf {
        self.root.join("nfs").join(CLIENT)
    }

    /// The client's boot folder on the server (what `/tftpboot/SERIAL` is bound to).
    fn boot_folder(&self) -> PathBuf {
        self.client_root().join("boot/firmware")
    }
}

/// With `PINETBOOT_REALBOOT_KEEP=1` the temp folder (console logs, ganesha's config and log,
/// the fetched boot files, the client root) is kept and its path printed.
impl Drop for Host {
    fn drop(&mut self) {
        if std::env::var_os("PINETBOOT_REALBOOT_KEEP").is_some() {
            let fresh = tempfile::tempdir().expect("tempdir");
            let kept = std::mem::replace(&mut self.tmp, fresh);
            eprintln!("keeping {}", kept.keep().display());
        }
    }
}

/// One client from the fixture's root tree (a directory image), the lab's server and network.
fn config_yaml(public_key: &str) -> String {
    format!(
        "{}images:\n  debian: {{source: /srv/rootfs/debian}}\n\
         clients:\n  {CLIENT}:\n    serial: '{SERIAL:08x}'\n    mac: '{}'\n    image: debian\n    \
         hostname: {HOSTNAME}\n    ssh: {{authorized_keys: ['{public_key}']}}\n",
        server_yaml(),
        mac_string(&MAC)
    )
}

/// Binds the fixture's root tree read-only at `--root`/srv/rootfs/debian in `ns` (where the
/// config's image source points), then runs `pinetboot apply`.
fn apply(ns: &MountNs, host: &Host, fixture: &Path) {
    let target = host.root.join("srv/rootfs/debian");
    let out = ns
        .nsenter(None, "mount")
        .args(["--bind", "-o", "ro"])
        .arg(fixture.join("rootfs"))
        .arg(&target)
        .output()
        .expect("mount (util-linux)");
    expect_success(&out, "bind-mount the fixture");
    let out = ns.pinetboot(&host.root, &host.config, &["apply"]);
    eprintln!("{}", expect_success(&out, "pinetboot apply"));
}

/// What the emulated bootloader fetched: the kernel and initramfs (written to files for
/// qemu) and the command line.
struct Fetched {
    kernel: PathBuf,
    initrd: PathBuf,
    cmdline: String,
    /// The kernel's and the initramfs's names, as config.txt gives them.
    names: (String, String),
}

/// GET `SERIAL/name` over TFTP and compare it with the boot folder on the server.
fn tftp_get(session: &Session, boot_folder: &Path, name: &str) -> Vec<u8> {
    let remote = format!("{SERIAL:08x}/{name}");
    let bytes = session
        .tftp_get(&remote, BLKSIZE)
        .unwrap_or_else(|e| panic!("TFTP {remote}: {e}"));
    let disk = fs::read(boot_folder.join(name)).unwrap();
    assert!(
        bytes == disk,
        "TFTP {remote}: {} bytes differ from the {} bytes in the boot folder",
        bytes.len(),
        disk.len()
    );
    bytes
}

/// The bootloader's part, through the real data path: proxy-DHCP with the declared MAC and
/// serial, the serial-prefix probe, then `config.txt`, `cmdline.txt` and the kernel and
/// initramfs it names, each compared with the boot folder. Files go to `out`.
fn fetch_boot_files(pi: &EmulatedPi, host: &Host, out: &Path) -> Fetched {
    let session = pi.dhcp().unwrap_or_else(|e| panic!("DHCP phase: {e}"));
    assert_eq!(
        session.tftp_server, SERVER_IP,
        "TFTP server from the proxy offer"
    );
    let boot = host.boot_folder();
    let probe = format!("{SERIAL:08x}/start4.elf");
    session
        .tftp_probe(&probe)
        .unwrap_or_else(|e| panic!("TFTP probe {probe}: {e}"));
    let config = String::from_utf8(tftp_get(&session, &boot, "config.txt")).unwrap();
    let (kernel_name, initramfs) = boot_images(&config);
    let initramfs = initramfs.unwrap_or_else(|| panic!("config.txt names no initramfs:\n{config}"));
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
        names: (kernel_name, initramfs),
    }
}

/// Measured times of one boot, from qemu's start.
#[derive(Debug, Default, Clone, Copy)]
struct BootTimes {
    tftp: Duration,
    nfs_root: Duration,
    login: Duration,
    /// From `systemctl poweroff` to qemu's exit.
    poweroff: Duration,
}

/// Fetches the boot files over TFTP and starts the VM on them; waits for the NFS root and the
/// login prompt.
fn boot(lab: &Lab, pi: &EmulatedPi, host: &Host, n: u32) -> (Vm, BootTimes) {
    set_pi_link(pi, true);
    let t = Instant::now();
    let fetched = fetch_boot_files(pi, host, &host.dir().join(format!("boot{n}")));
    let tftp = t.elapsed();
    set_pi_link(pi, false);
    assert!(
        fetched
            .cmdline
            .contains(&format!("nfsroot={SERVER_IP}:/nfs/{CLIENT},vers=3"))
            && fetched.cmdline.contains("root=/dev/nfs"),
        "boot {n}: cmdline.txt served over TFTP does not boot from NFS: {}",
        fetched.cmdline
    );
    eprintln!(
        "boot {n}: fetched {} + {} over TFTP in {tftp:.1?}; cmdline: {}",
        fetched.names.0, fetched.names.1, fetched.cmdline
    );
    let spec = VmSpec {
        netns: lab.rtr.clone(),
        bridge: "br0".into(),
        tap: "tapvm0".into(),
        mac: MAC,
        kernel: fetched.kernel,
        initrd: Some(fetched.initrd),
        append: format!("{} console=ttyAMA0", fetched.cmdline),
        memory_mib: 1024,
        smp: 2,
        log: host.dir().join(format!("console{n}.log")),
    };
    let mut vm = Vm::start(&spec);
    eprintln!(
        "boot {n}: qemu pid {}, console log {}",
        vm.pid(),
        spec.log.display()
    );
    vm.wait_for(ROOT_MOUNTED, NFS_ROOT_TIMEOUT);
    let nfs_root = vm.elapsed();
    eprintln!("boot {n}: NFS root mounted after {nfs_root:.1?}");
    vm.wait_for(LOGIN_PROMPT, LOGIN_TIMEOUT);
    let login = vm.elapsed();
    eprintln!("boot {n}: login prompt after {login:.1?}");
    (
        vm,
        BootTimes {
            tftp,
            nfs_root,
            login,
            poweroff: Duration::ZERO,
        },
    )
}

/// Logs in on the console (the prompt was consumed by [`boot`]: send the user name).
fn console_login(vm: &mut Vm) {
    vm.send_line("");
    vm.login_root(CMD_TIMEOUT);
}

/// `/` is NFSv3 from the server's export, and the hostname is the declared one.
fn check_root_and_hostname(vm: &mut Vm) {
    let out = vm.run_ok("findmnt -n -o SOURCE,FSTYPE,OPTIONS /", CMD_TIMEOUT);
    let fields: Vec<&str> = out.split_whitespace().collect();
    assert!(
        fields.len() == 3
            && fields[0] == format!("{SERVER_IP}:/nfs/{CLIENT}")
            && fields[1] == "nfs"
            && fields[2].split(',').any(|o| o == "vers=3")
            && fields[2]
                .split(',')
                .any(|o| o == format!("addr={SERVER_IP}")),
        "/ is not NFSv3 from {SERVER_IP}:/nfs/{CLIENT}: {out}"
    );
    let name = vm.run_ok("hostname", CMD_TIMEOUT);
    assert_eq!(name.trim(), HOSTNAME, "hostname");
    // pinetboot's boot-firmware.mount: raspi-firmware's hook wants a mount point there.
    vm.run_ok("mountpoint /boot/firmware", CMD_TIMEOUT);
}

/// Every unit pinetboot masks reports `masked`.
fn check_masked(vm: &mut Vm) {
    let (out, _) = vm.run(
        &format!("systemctl is-enabled {}", MASKED.join(" ")),
        CMD_TIMEOUT,
    );
    let states: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(
        states,
        vec!["masked"; MASKED.len()],
        "systemctl is-enabled {MASKED:?}"
    );
}

/// `ssh root@ADDRESS COMMAND` with the declared key, from the server namespace (on the lab
/// bridge); bounded by `timeout`. The Pi's host key must be the one pinetboot generated for
/// it and pinned in its `known_hosts` (looked up by the declared hostname).
fn ssh(lab: &Lab, host: &Host, address: &str, command: &str) -> Result<String, String> {
    let key = host.key.to_str().unwrap();
    let target = format!("root@{address}");
    let netns = lab.srv.clone();
    let known = host.root.join("var/lib/pinetboot/known_hosts");
    let known_hosts = format!("UserKnownHostsFile={}", known.display());
    let alias = format!("HostKeyAlias={HOSTNAME}");
    let args = [
        "netns",
        "exec",
        &netns,
        "timeout",
        "90",
        "ssh",
        "-F",
        "/dev/null",
        "-i",
        key,
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        &known_hosts,
        "-o",
        &alias,
        "-o",
        "ConnectTimeout=30",
        "-o",
        "LogLevel=ERROR",
        &target,
        command,
    ];
    crate::support::realos::run_cmd("ip", &args)
}

/// A file written on the guest over NFS appears in the client root on the server.
fn check_write_through(vm: &mut Vm, host: &Host) {
    let token = format!("written-by-the-guest-{}", std::process::id());
    vm.run_ok(
        &format!("echo {token} > /root/pinetboot-real-boot.txt && sync"),
        CMD_TIMEOUT,
    );
    let on_server = host.client_root().join("root/pinetboot-real-boot.txt");
    let text = fs::read_to_string(&on_server)
        .unwrap_or_else(|e| panic!("{} on the server: {e}", on_server.display()));
    assert_eq!(text.trim(), token, "{}", on_server.display());
}

/// What the NFSv3 SETACL problem of ganesha 4.3 broke: `cp -p`, files in systemd's state
/// folder, ssh host key files. Returns the failures (empty when all passed).
fn check_acl_paths(vm: &mut Vm) -> Vec<String> {
    let cmds = [
        "cp -p /etc/ssh/ssh_config /root/cp-p-test && chmod 0640 /root/cp-p-test \
         && cp -p /root/cp-p-test /root/cp-p-test2 && test \"$(stat -c %a /root/cp-p-test2)\" = 640",
        "rm -rf /root/cp-a-ssh-test && cp -a /etc/ssh /root/cp-a-ssh-test",
        "touch /var/lib/systemd/pinetboot-acl-test && rm /var/lib/systemd/pinetboot-acl-test",
        "mkdir -p /var/lib/pinetboot-acl-test && chmod 2750 /var/lib/pinetboot-acl-test \
         && test \"$(stat -c %a /var/lib/pinetboot-acl-test)\" = 2750",
        "if command -v setfacl >/dev/null; then setfacl -m u:nobody:r /root/cp-p-test; \
         case $? in 0) ;; *) getfacl /root/cp-p-test;; esac; fi",
    ];
    let mut failures = Vec::new();
    for cmd in cmds {
        let (out, code) = vm.run(cmd, CMD_TIMEOUT);
        if code != 0 {
            failures.push(format!("`{cmd}` exited {code}: {}", out.trim()));
        }
    }
    failures
}

/// The kernel's postinst hook (what a kernel upgrade runs) must keep the NFS command line;
/// `Err` with the command line it left otherwise.
fn check_postinst(vm: &mut Vm, host: &Host) -> Result<(), String> {
    let (out, code) = vm.run(
        "DEB_MAINT_PARAMS=configure /etc/kernel/postinst.d/z50-raspi-firmware $(uname -r) 2>&1; \
         sync",
        POSTINST_TIMEOUT,
    );
    let cmdline = vm.run_ok("cat /boot/firmware/cmdline.txt", CMD_TIMEOUT);
    eprintln!(
        "postinst (exit {code}): {}\ncmdline.txt after it: {cmdline}",
        out.trim()
    );
    let on_server = fs::read_to_string(host.boot_folder().join("cmdline.txt")).unwrap();
    assert_eq!(
        on_server.trim(),
        cmdline.trim(),
        "the guest and the server disagree"
    );
    let nfs = cmdline.contains("root=/dev/nfs")
        && cmdline.contains(&format!("nfsroot={SERVER_IP}:/nfs/{CLIENT},vers=3"));
    if nfs {
        Ok(())
    } else {
        Err(format!(
            "the kernel's postinst hook (exit {code}) rewrote cmdline.txt for a local root:\n\
             {cmdline}\n{out}"
        ))
    }
}

/// The first boot and every check on it; soft failures go to `problems`. Ends with a clean
/// power-off.
fn first_boot(lab: &Lab, pi: &EmulatedPi, host: &Host, problems: &mut Vec<String>) -> BootTimes {
    let (mut vm, mut times) = boot(lab, pi, host, 1);
    console_login(&mut vm);
    check_root_and_hostname(&mut vm);
    check_masked(&mut vm);
    let failed = failed_units(&mut vm);
    if !failed.is_empty() {
        problems.push(format!("failed units on the first boot:\n{failed}"));
    }
    let acl_failures = check_acl_paths(&mut vm);
    if !acl_failures.is_empty() {
        problems.push(format!(
            "file operations over NFSv3 failed on the guest:\n{}",
            acl_failures.join("\n")
        ));
    }
    let address = guest_address(&mut vm);
    match ssh(lab, host, &address, "hostname") {
        Ok(out) if out.trim() == HOSTNAME => {}
        Ok(out) => problems.push(format!("ssh `hostname` printed {out:?}")),
        Err(e) => problems.push(format!("ssh with the declared key: {e}")),
    }
    check_write_through(&mut vm, host);
    if let Err(e) = check_postinst(&mut vm, host) {
        problems.push(e);
    }
    times.poweroff = power_off(&mut vm);
    times
}

/// The second boot, over TFTP again (after the postinst hook rewrote the boot folder): the
/// NFS root, the hostname, no failed units, a clean power-off.
fn second_boot(lab: &Lab, pi: &EmulatedPi, host: &Host, problems: &mut Vec<String>) -> BootTimes {
    let (mut vm, mut times) = boot(lab, pi, host, 2);
    console_login(&mut vm);
    check_root_and_hostname(&mut vm);
    let failed = failed_units(&mut vm);
    if !failed.is_empty() {
        problems.push(format!("failed units on the second boot:\n{failed}"));
    }
    times.poweroff = power_off(&mut vm);
    times
}

#[test]
fn real_kernel_boots_over_nfs_from_pinetboot() {
    let started = Instant::now();
    preflight();
    let fixture = crate::support::realos::fixture();
    eprintln!("fixture: {} ({:.1?})", fixture.display(), started.elapsed());
    let host = Host::new();
    // The lab's namespaces first: the mount namespace copies /run/netns as it is then.
    let lab = Lab::new();
    let ns = MountNs::new();
    let t = Instant::now();
    apply(&ns, &host, &fixture);
    let apply_time = t.elapsed();
    let conf = generated_conf(&host.root, &lab.dir().join("conf.d"), false);
    lab.start_server_dnsmasq_in(&conf, &[], Some(ns.pid()));
    let exports = fs::read_to_string(host.root.join("etc/exports.d/pinetboot.exports")).unwrap();
    let nfs = NfsServer::start(
        &lab.srv,
        &host.root,
        &exports,
        &host.dir().join("nfs-server"),
    );
    eprintln!("exports:\n{exports}ganesha config:\n{}", nfs.config);
    let pi = EmulatedPi::new(&lab.add_pi(MAC), SERIAL);

    let mut problems = Vec::new();
    let first = first_boot(&lab, &pi, &host, &mut problems);
    if !problems.is_empty() {
        eprintln!("problems so far:\n{}", problems.join("\n"));
    }
    let second = second_boot(&lab, &pi, &host, &mut problems);
    drop(nfs);

    eprintln!(
        "times (from qemu's start; TFTP is the emulated bootloader's fetch before it):\n\
         {:<8} {:>8} {:>10} {:>8} {:>10}\n\
         {:<8} {:>8.1?} {:>10.1?} {:>8.1?} {:>10.1?}\n\
         {:<8} {:>8.1?} {:>10.1?} {:>8.1?} {:>10.1?}\n\
         apply {apply_time:.1?}; whole run {:.1?}",
        "boot",
        "TFTP",
        "NFS root",
        "login",
        "power-off",
        "first",
        first.tftp,
        first.nfs_root,
        first.login,
        first.poweroff,
        "second",
        second.tftp,
        second.nfs_root,
        second.login,
        second.poweroff,
        started.elapsed()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
