//! The data path, proven on pinetboot's own files: `pinetboot apply` on a throwaway root
//! (bind mounts inside a private mount namespace), the real dnsmasq started on the generated
//! drop-in inside a network namespace, and emulated Pi 4 bootloaders fetching every boot file
//! through the bind mounts. Needs root, `ip`, `unshare`, `nsenter` and `dnsmasq`.

use crate::support::mountns::MountNs;
use crate::support::netlab::write_config;
use crate::support::roots::{SHARED, generated_conf, make_traversable, os_tree, write};
use crate::support::tools::expect_success;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::netlab::{Lab, SERVER_IP};
use crate::support::pi4::{ClientKind, EmulatedPi, boot_concurrently};

const BW_MAC: [u8; 6] = [0xdc, 0xa6, 0x32, 0x01, 0x02, 0x03];
const BU_MAC: [u8; 6] = [0xdc, 0xa6, 0x32, 0x01, 0x02, 0x04];

struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
}

fn setup(clients: &str) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    // dnsmasq serves as nobody: every folder on the way must be traversable.
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let root = tmp.path().join("root");
    os_tree(&root.join("srv/rootfs/bookworm"), "bookworm", 7);
    os_tree(&root.join("srv/rootfs/bullseye"), "bullseye", 11);
    write(&root.join("etc/fstab"), b"proc /proc proc defaults 0 0\n");
    write(
        &root.join("srv/eeprom/pieeprom.bin"),
        &fs::read(Path::new(SHARED).join("rpi-eeprom/pieeprom-2026-05-17.bin")).unwrap(),
    );
    make_traversable(&root);
    let config = tmp.path().join("pinetboot.yaml");
    write_config(
        &config,
        &format!(
            "bootloader: {{image: /srv/eeprom/pieeprom.bin}}\n\
             images:\n  bookworm: {{source: /srv/rootfs/bookworm}}\n  bullseye: {{source: /srv/rootfs/bullseye}}\n\
             clients:\n{clients}"
        ),
    );
    Setup {
        _tmp: tmp,
        root,
        config,
    }
}

const BOTH: &str = "  bw: {serial: 0c4c21e5, mac: 'dc:a6:32:01:02:03', image: bookworm, eeprom: {boot_order: [sd, network, restart]}}\n  bu: {serial: abcd1234, mac: 'dc:a6:32:01:02:04', image: bullseye}\n";

fn apply(ns: &MountNs, s: &Setup) {
    expect_success(&ns.pinetboot(&s.root, &s.config, &["apply"]), "apply");
}

/// The generated drop-in, runnable in the lab.
fn server_conf(lab: &Lab, s: &Setup) -> PathBuf {
    generated_conf(&s.root, &lab.dir().join("conf.d"), false)
}

/// `clients` set up and applied, and the generated drop-in served by the lab's dnsmasq inside
/// the mount namespace.
fn serve(clients: &str) -> (Setup, Lab, MountNs) {
    let s = setup(clients);
    // The lab's namespaces first: the mount namespace copies /run/netns as it is then.
    let lab = Lab::new();
    let ns = MountNs::new();
    apply(&ns, &s);
    lab.start_server_dnsmasq_in(&server_conf(&lab, &s), &[], Some(ns.pid()));
    (s, lab, ns)
}

fn assert_boots(pi: &EmulatedPi, folder: &Path, blksize: u16) -> crate::support::pi4::BootReport {
    crate::support::pi4::assert_boots(pi, folder, blksize, SERVER_IP)
}

#[test]
fn bookworm_and_bullseye_clients_boot_through_pinetboots_files() {
    let (s, lab, _ns) = serve(BOTH);
    // Bookworm layout: boot/firmware, with a bootloader self-update.
    let bw = EmulatedPi::new(&lab.add_pi(BW_MAC), 0x0c4c_21e5);
    let report = assert_boots(&bw, &s.root.join("nfs/bw/boot/firmware"), 1024);
    assert!(
        report.present("pieeprom.upd") && report.present("pieeprom.sig"),
        "{report}"
    );
    let cmdline = fs::read_to_string(s.root.join("nfs/bw/boot/firmware/cmdline.txt")).unwrap();
    assert_eq!(
        cmdline,
        format!(
            "console=serial0,115200 console=tty1 quiet root=/dev/nfs nfsroot={SERVER_IP}:/nfs/bw,vers=3 rw ip=dhcp rootwait\n"
        )
    );
    // Bullseye layout: boot, no eeprom settings, so no update offered.
    let bu = EmulatedPi::new(&lab.add_pi(BU_MAC), 0xabcd_1234);
    let report = assert_boots(&bu, &s.root.join("nfs/bu/boot"), 1468);
    assert!(
        !report.present("pieeprom.upd") && !report.present("pieeprom.sig"),
        "{report}"
    );
}

#[test]
fn undeclared_macs_and_serials_get_nothing_and_pruned_clients_stop_booting() {
    let (s, lab, ns) = serve(BOTH);
    // Every declared client has a MAC: another Pi's MAC gets no boot menu.
    let other = EmulatedPi::new(
        &lab.add_pi([0xdc, 0xa6, 0x32, 0x09, 0x09, 0x09]),
        0x1234_5678,
    );
    let d = other.discover().unwrap();
    assert!(d.router_offer().is_some(), "the router still answers");
    assert!(
        d.pi_proxy_offer().is_none(),
        "undeclared MAC got a boot menu: {d:?}"
    );
    // An x86 PXE client (option 93 = 0 too, non-Pi MAC, no option 97): no Pi boot menu.
    let x86 = EmulatedPi::new(
        &lab.add_pi([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
        0x0000_0001,
    );
    let d = x86.discover_as(ClientKind::X86Bios).unwrap();
    assert!(
        d.pi_proxy_offer().is_none(),
        "x86 PXE client got the Pi menu: {d:?}"
    );
    // A declared MAC whose board reports another serial: nothing in the TFTP root for it.
    let wrong = EmulatedPi::new(&lab.add_pi(BW_MAC), 0xdead_beef);
    let report = wrong.boot(&lab.dir().join("nothing")).unwrap();
    assert!(!report.anything_found(), "{report}");
    // Prune bu: its serial gets "not found" for everything afterwards.
    fs::write(
        &s.config,
        fs::read_to_string(&s.config)
            .unwrap()
            .lines()
            .filter(|l| !l.contains("bu:"))
            .collect::<Vec<_>>()
            .join("\n")
            + "\n",
    )
    .unwrap();
    apply(&ns, &s);
    assert!(
        s.root.join("nfs/bu/boot/kernel8.img").is_file(),
        "client data kept"
    );
    assert!(
        !s.root.join("tftpboot/abcd1234").exists(),
        "the pruned TFTP folder is gone"
    );
    let bu = EmulatedPi::new(&lab.add_pi(BU_MAC), 0xabcd_1234);
    let d = bu.discover().unwrap();
    if d.pi_proxy_offer().is_some() {
        // dnsmasq still runs the old drop-in (it is restarted by systemd on a real host): the
        // TFTP folder is gone, so nothing is served.
        let report = bu.boot(&s.root.join("nfs/bu/boot")).unwrap();
        assert!(!report.anything_found(), "{report}");
    }
}

#[test]
fn ten_declared_pis_boot_at_once_each_from_its_own_root() {
    let mut clients = String::new();
    let pis: Vec<(u32, [u8; 6])> = (0..10u8)
        .map(|i| {
            (
                0x2000_0000 + u32::from(i) * 0x0101,
                [0xdc, 0xa6, 0x32, 0x20, 0x00, i],
            )
        })
        .collect();
    for (i, (serial, mac)) in pis.iter().enumerate() {
        let m = mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        clients.push_str(&format!(
            "  pi{i}: {{serial: '{serial:08x}', mac: '{m}', image: bookworm}}\n"
        ));
    }
    // Each root gets its own cmdline.txt (nfsroot names its own folder): the files differ.
    let (s, lab, _ns) = serve(&clients);
    let emulated: Vec<(EmulatedPi, PathBuf)> = pis
        .iter()
        .enumerate()
        .map(|(i, (serial, mac))| {
            (
                EmulatedPi::new(&lab.add_pi(*mac), *serial),
                s.root.join(format!("nfs/pi{i}/boot/firmware")),
            )
        })
        .collect();
    boot_concurrently(&emulated);
    let a = fs::read_to_string(s.root.join("nfs/pi0/boot/firmware/cmdline.txt")).unwrap();
    assert!(
        a.contains(&format!("nfsroot={SERVER_IP}:/nfs/pi0,vers=3")),
        "{a}"
    );
}

const MC_MAC: [u8; 6] = [0xdc, 0xa6, 0x32, 0x01, 0x02, 0x05];
const SC_MAC: [u8; 6] = [0xdc, 0xa6, 0x32, 0x01, 0x02, 0x06];

/// Boots `pi` (asserting every file), then lets it flash what it fetched; returns the
/// update's timestamp when it flashed.
fn boot_and_update(pi: &mut EmulatedPi, folder: &Path, blksize: u16) -> Option<u64> {
    let report = assert_boots(pi, folder, blksize);
    pi.self_update(&report)
        .unwrap_or_else(|e| panic!("self-update: {e}\n{report}"))
}

#[test]
fn a_pi_whose_update_sets_a_mac_or_string_tftp_prefix_boots_from_that_folder_afterwards() {
    let clients = "  mc: {serial: '11111111', mac: 'dc:a6:32:01:02:05', image: bookworm, eeprom: {tftp_prefix: mac}}\n  \
                   sc: {serial: '22222222', mac: 'dc:a6:32:01:02:06', image: bookworm, eeprom: {tftp_prefix: {string: lab-pi/}}}\n";
    let s = setup(clients);
    let lab = Lab::new();
    let ns = MountNs::new();
    // dnsmasq runs in a copy of the namespace (`ip netns exec` makes one, slave to it): with
    // the namespace's mounts shared, it sees the folders a later apply mounts, as on a host.
    let shared = ns
        .nsenter(None, "mount")
        .args(["--make-rshared", "/"])
        .status()
        .unwrap();
    assert!(shared.success());
    apply(&ns, &s);
    lab.start_server_dnsmasq_in(&server_conf(&lab, &s), &[], Some(ns.pid()));
    let mc_boot = s.root.join("nfs/mc/boot/firmware");
    let sc_boot = s.root.join("nfs/sc/boot/firmware");
    // Factory boards ask in their serial folder, fetch the update there and flash it.
    let mut mc = EmulatedPi::new(&lab.add_pi(MC_MAC), 0x1111_1111);
    let mut sc = EmulatedPi::new(&lab.add_pi(SC_MAC), 0x2222_2222);
    assert_eq!(mc.tftp_prefix(), "11111111/");
    let flashed = boot_and_update(&mut mc, &mc_boot, 1024);
    assert!(flashed.is_some(), "mc flashed nothing");
    assert!(boot_and_update(&mut sc, &sc_boot, 1024).is_some());
    // From then on they ask in the folder their new config names, and boot from it.
    assert_eq!(mc.tftp_prefix(), "dc-a6-32-01-02-05/");
    assert_eq!(sc.tftp_prefix(), "lab-pi/");
    assert_eq!(
        boot_and_update(&mut mc, &mc_boot, 1468),
        None,
        "flashed twice"
    );
    assert_eq!(
        boot_and_update(&mut sc, &sc_boot, 1468),
        None,
        "flashed twice"
    );
    // mc moves on to a string prefix: its bootloader still asks in the MAC folder, which
    // stays served, fetches the new update there, and then boots from the new folder.
    let yaml = fs::read_to_string(&s.config)
        .unwrap()
        .replace("tftp_prefix: mac", "tftp_prefix: {string: mc-lab/}");
    fs::write(&s.config, yaml).unwrap();
    apply(&ns, &s);
    assert!(boot_and_update(&mut mc, &mc_boot, 1024).is_some());
    assert_eq!(mc.tftp_prefix(), "mc-lab/");
    assert_eq!(boot_and_update(&mut mc, &mc_boot, 1024), None);
    // Removing the client takes every folder it was served in away.
    let yaml: String = fs::read_to_string(&s.config)
        .unwrap()
        .lines()
        .filter(|l| !l.contains("mc:"))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&s.config, yaml).unwrap();
    apply(&ns, &s);
    for f in ["11111111", "dc-a6-32-01-02-05", "mc-lab"] {
        assert!(!s.root.join("tftpboot").join(f).exists(), "{f} left behind");
    }
    // The other client still boots from its folder.
    assert_eq!(boot_and_update(&mut sc, &sc_boot, 1024), None);
}

const HASH: &str = "$6$rounds=5000$saltsalt$Q2lnSGkxQ2pkRkVhZ0g0ZnVqU0RmZ2tqc2Q0ZnNkZmc";

/// A client with a pending user: its `userconf.txt` (a password hash) sits in the boot folder
/// TFTP serves until the Pi's first boot. Asked for over TFTP from the boot network, it is
/// refused, while the boot files beside it are served. `dnsmasq_args` picks dnsmasq's
/// privilege model; `want_uid_zero` says which one it must be running in.
fn userconf_refused_over_tftp(dnsmasq_args: &[&str], want_uid_zero: bool) {
    let s = setup(&format!(
        "  bw: {{serial: 0c4c21e5, mac: 'dc:a6:32:01:02:03', image: bookworm, user: {{name: alice, password_hash: '{HASH}'}}}}\n"
    ));
    let lab = Lab::new();
    let ns = MountNs::new();
    apply(&ns, &s);
    let userconf = s.root.join("nfs/bw/boot/firmware/userconf.txt");
    assert_eq!(
        fs::read_to_string(&userconf).unwrap(),
        format!("alice:{HASH}\n")
    );
    let server = lab.start_server_dnsmasq_in(&server_conf(&lab, &s), dnsmasq_args, Some(ns.pid()));
    let status = fs::read_to_string(format!("/proc/{}/status", server.pid)).unwrap();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .to_owned();
    assert_eq!(uid == "0", want_uid_zero, "dnsmasq runs as uid {uid}");
    // Anyone on the boot network: here, the declared Pi's own bootloader.
    let session = EmulatedPi::new(&lab.add_pi(BW_MAC), 0x0c4c_21e5)
        .dhcp()
        .unwrap();
    let firmware = session.tftp_get("0c4c21e5/start4.elf", 1024).unwrap();
    assert_eq!(
        firmware,
        fs::read(s.root.join("nfs/bw/boot/firmware/start4.elf")).unwrap()
    );
    match session.tftp_get("0c4c21e5/userconf.txt", 1024) {
        Err(crate::support::pi4::TftpError::Server {
            code: 2, message, ..
        }) => {
            assert!(message.contains("Permission denied"), "{message}");
        }
        Ok(bytes) => panic!(
            "userconf.txt was served over TFTP: {:?}",
            String::from_utf8_lossy(&bytes)
        ),
        Err(e) => panic!("userconf.txt was not refused for its permissions: {e}"),
    }
    let meta = fs::metadata(&userconf).unwrap();
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (0o600, 0, 0),
        "userconf.txt must be root's alone"
    );
}

#[test]
fn userconf_txt_is_refused_over_tftp_by_a_dnsmasq_that_dropped_root() {
    // As Debian's dnsmasq.service runs it (`-u dnsmasq`, /usr/share/dnsmasq/init-system-common).
    userconf_refused_over_tftp(&["--user=dnsmasq"], false);
}

#[test]
fn userconf_txt_is_refused_over_tftp_by_a_dnsmasq_running_as_root() {
    // Run as root, dnsmasq serves only world-readable files.
    userconf_refused_over_tftp(&["--user=root"], true);
}

/// Two shared clients (`root: shared`) of one image boot through their own serial folders:
/// the same boot files (links to the shared root's), each its own `cmdline.txt` naming its
/// hostname and the read-only shared root.
#[test]
fn two_shared_clients_boot_through_their_own_folders_of_one_shared_root() {
    let shared = "  s1: {serial: 0c4c21e5, mac: 'dc:a6:32:01:02:03', image: bookworm, root: shared}\n  s2: {serial: abcd1234, mac: 'dc:a6:32:01:02:04', image: bookworm, root: shared}\n";
    let (s, lab, _ns) = serve(shared);
    let base = s.root.join("nfs/.shared/bookworm-tree");
    for (mac, serial, name) in [(BW_MAC, 0x0c4c_21e5, "s1"), (BU_MAC, 0xabcd_1234, "s2")] {
        let folder = base.join(format!("boot/{name}"));
        let pi = EmulatedPi::new(&lab.add_pi(mac), serial);
        let report = assert_boots(&pi, &folder, 1024);
        let served = report
            .entries
            .iter()
            .find_map(|e| match &e.outcome {
                crate::support::pi4::Outcome::Fetched { bytes, .. }
                    if e.path.ends_with("/cmdline.txt") =>
                {
                    Some(String::from_utf8_lossy(bytes).into_owned())
                }
                _ => None,
            })
            .expect("cmdline.txt fetched");
        assert!(
            served.contains(&format!("systemd.hostname={name}")),
            "{served}"
        );
        assert!(
            served.contains(&format!(
                "nfsroot={SERVER_IP}:/nfs/.shared/bookworm-tree/root,vers=3 ro "
            )),
            "{served}"
        );
        assert!(
            served.contains("init=/usr/lib/pinetboot/overlay-init"),
            "{served}"
        );
    }
    let exports = fs::read_to_string(s.root.join("etc/exports.d/pinetboot.exports")).unwrap();
    assert!(
        exports.contains("/nfs/.shared/bookworm-tree/root 10."),
        "{exports}"
    );
}
