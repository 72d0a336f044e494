//! End-to-end tests: router dnsmasq + server dnsmasq (proxy-DHCP + TFTP,
//! the shape pinetboot generates) + emulated Pi 4 bootloaders, all inside
//! private network namespaces. Needs root, `ip` and `dnsmasq`; fails (never
//! skips) without them.

use crate::support::roots::filler;
use crate::support::tools::expect_success;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::netlab::{Lab, SERVER_IFACE, SERVER_IP, ServerHandle, mac_string};
use crate::support::pi4::{ClientKind, EmulatedPi, boot_concurrently};
use pinetboot::bootlog::{self, BootEventKind};

const FIRMWARE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/raspi-firmware"
);
const SERIAL: u32 = 0x0c4c_21e5;
const PI_MAC: [u8; 6] = [0xdc, 0xa6, 0x32, 0x01, 0x02, 0x03];

/// How the proxy scopes its `pxe-service` to Pis.
enum Scope<'a> {
    /// `dhcp-host=<mac>,set:pinetboot` for each MAC.
    Hosts(&'a [[u8; 6]]),
    /// `dhcp-mac=set:pinetboot,dc:a6:32:*:*:*`.
    Oui,
}

fn firmware_dir() -> PathBuf {
    let p = PathBuf::from(std::env::var("PINETBOOT_FIRMWARE").unwrap_or_else(|_| FIRMWARE.into()));
    assert!(
        p.join("start4.elf").is_file(),
        "firmware fixtures missing at {} (set PINETBOOT_FIRMWARE)",
        p.display()
    );
    p
}

fn write_public(path: &Path, bytes: &[u8]) {
    fs::write(path, bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
}

/// Create `root/SERIAL/` with the real firmware plus generated files;
/// world-readable (dnsmasq serves as `nobody`). Returns the folder.
fn boot_folder(root: &Path, serial: u32) -> PathBuf {
    let dir = root.join(format!("{serial:08x}"));
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let fw = firmware_dir();
    for f in ["start4.elf", "fixup4.dat", "bcm2711-rpi-4-b.dtb"] {
        write_public(&dir.join(f), &fs::read(fw.join(f)).unwrap());
    }
    write_public(
        &dir.join("config.txt"),
        format!(
            "[all]\narm_64bit=1\nkernel=kernel8.img\nauto_initramfs=1\n# serial {serial:08x}\n"
        )
        .as_bytes(),
    );
    write_public(
        &dir.join("cmdline.txt"),
        format!(
            "console=tty1 root=/dev/nfs nfsroot={SERVER_IP}:/nfs/{serial:08x},vers=3 rw ip=dhcp rootwait\n"
        )
        .as_bytes(),
    );
    write_public(
        &dir.join("kernel8.img"),
        &filler(3 * 1024 * 1024, u64::from(serial) | 1 << 40),
    );
    write_public(
        &dir.join("initramfs8"),
        &filler(300 * 1024 + 7, u64::from(!serial) | 1 << 40),
    );
    dir
}

fn tftp_root(lab: &Lab) -> PathBuf {
    let root = lab.dir().join("tftpboot");
    fs::create_dir_all(&root).unwrap();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
    root
}

/// The server config under test: what pinetboot's dnsmasq drop-in holds.
fn server_conf(root: &Path, scope: Scope) -> String {
    let mut c =
        format!("port=0\ninterface={SERVER_IFACE}\nbind-interfaces\ndhcp-range=10.99.0.0,proxy\n");
    match scope {
        Scope::Hosts(macs) => {
            for m in macs {
                c += &format!("dhcp-host={},set:pinetboot\n", mac_string(m));
            }
        }
        Scope::Oui => c += "dhcp-mac=set:pinetboot,dc:a6:32:*:*:*\n",
    }
    c += &format!(
        "pxe-service=tag:pinetboot,0,\"Raspberry Pi Boot\"\nenable-tftp\ntftp-root={}\nlog-dhcp\n",
        root.display()
    );
    c
}

/// A lab whose server dnsmasq serves, to `scope`, a TFTP root holding SERIAL's boot folder:
/// the lab, the TFTP root, the boot folder and the server.
fn serving(scope: Scope) -> (Lab, PathBuf, PathBuf, ServerHandle) {
    let lab = Lab::new();
    let root = tftp_root(&lab);
    let folder = boot_folder(&root, SERIAL);
    let server = start_server(&lab, &server_conf(&root, scope));
    (lab, root, folder, server)
}

/// Write the config as a drop-in dir, check it with `dnsmasq --test`, start it.
fn start_server(lab: &Lab, conf: &str) -> ServerHandle {
    let dir = lab.dir().join("dnsmasq.d");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("pinetboot.conf"), conf).unwrap();
    let out = std::process::Command::new("dnsmasq")
        .args(["--test", "--conf-file=/dev/null"])
        .arg(format!("--conf-dir={},*.conf", dir.display()))
        .env("LC_ALL", "C")
        .output()
        .expect("run dnsmasq --test");
    expect_success(&out, format_args!("dnsmasq --test of\n{conf}\n"));
    lab.start_server_dnsmasq(&dir, &[])
}

fn assert_booted(pi: &EmulatedPi, folder: &Path, blksize: u16) {
    let report = crate::support::pi4::assert_boots(pi, folder, blksize, SERVER_IP);
    assert!(!report.present("pieeprom.upd"), "{report}");
}

#[test]
fn declared_pi_discovers_proxy_and_router() {
    let (lab, _, _, _) = serving(Scope::Hosts(&[PI_MAC]));
    let pi = EmulatedPi::new(&lab.add_pi(PI_MAC), SERIAL);
    let out = pi.discover().unwrap();
    let router = out.router_offer().expect("router OFFER");
    assert!(
        crate::support::netlab::POOL.0 <= router.yiaddr
            && router.yiaddr <= crate::support::netlab::POOL.1
    );
    let proxy = out
        .pi_proxy_offer()
        .unwrap_or_else(|| panic!("no Pi proxy OFFER: {out:#?}"));
    assert_eq!(proxy.server_id, Some(SERVER_IP));
    let pxe = proxy.pxe.as_ref().unwrap();
    // The exact 32 bytes of pi4-netboot.md §2.
    let mut want = vec![
        0x06, 0x01, 0x03, 0x0a, 0x04, 0x00, b'P', b'X', b'E', 0x09, 0x14, 0x00, 0x00, 0x11,
    ];
    want.extend_from_slice(b"Raspberry Pi Boot");
    want.push(0xff);
    assert_eq!(pxe.raw, want);
    assert_eq!(pxe.discovery_control, Some(3));
    assert!(out.option97_echoed(), "{out:#?}");
    assert_eq!(out.tftp_server(None), Some(SERVER_IP));
    assert_eq!(out.proxy_offers().count(), 1);
}

#[test]
fn declared_pi_boots_blksize_1024() {
    let (lab, _, folder, _) = serving(Scope::Hosts(&[PI_MAC]));
    let pi = EmulatedPi::new(&lab.add_pi(PI_MAC), SERIAL);
    assert_booted(&pi, &folder, 1024);
}

#[test]
fn declared_pi_boots_blksize_1468() {
    let (lab, _, folder, _) = serving(Scope::Oui);
    let pi = EmulatedPi::new(&lab.add_pi(PI_MAC), SERIAL);
    assert_booted(&pi, &folder, 1468);
}

#[test]
fn undeclared_serial_gets_not_found_and_is_logged() {
    // OUI scope: the unknown board gets the menu, but has no folder.
    let (lab, root, folder, server) = serving(Scope::Oui);
    let known = EmulatedPi::new(&lab.add_pi(PI_MAC), SERIAL);
    assert_booted(&known, &folder, 1024);
    let stranger_mac = [0xdc, 0xa6, 0x32, 0xaa, 0xbb, 0xcc];
    let stranger = EmulatedPi::new(&lab.add_pi(stranger_mac), 0xabcd_1234);
    let report = stranger.boot(&lab.dir().join("nonexistent")).unwrap();
    assert!(report.prefix_used.is_none(), "{report}");
    assert!(!report.anything_found(), "{report}");
    assert!(report.all_ok(), "{report}");
    assert!(report.entries.len() >= 7, "{report}");

    // The log tells the story: parse it with the real parser.
    let log = server
        .wait_for_log(Duration::from_secs(5), |t| {
            t.contains("abcd1234/start.elf not found")
        })
        .unwrap_or_else(|t| panic!("no not-found line in log:\n{t}"));
    let events = bootlog::Parser::with_tftp_root(&root).parse_log(&log);
    let summary = bootlog::Summary::fold(&events);
    let declared = summary
        .serials
        .get("0c4c21e5")
        .expect("declared serial in summary");
    let last = declared.last_sent.as_ref().expect("a file was sent");
    assert_eq!(
        last.path,
        root.join("0c4c21e5/initramfs8").display().to_string()
    );
    assert_eq!(last.client_ip, report_ip(&known, &events));
    assert!(last.time.is_some(), "log lines carry a timestamp");
    assert!(declared.probes >= 1, "start4.elf size probe: {declared:?}");
    assert_eq!(summary.unknown_serials(), vec!["abcd1234"]);
    assert_eq!(
        summary.serials["abcd1234"].last_client_ip,
        Some(report.ip.to_string())
    );
    for mac in [mac_string(&stranger_mac), mac_string(&PI_MAC)] {
        let m = summary
            .macs
            .get(&mac)
            .unwrap_or_else(|| panic!("{mac} missing: {summary:?}"));
        assert_eq!(m.pi_menu, Some(true), "{mac}: {m:?}");
        assert!(m.tags.iter().any(|t| t == "pinetboot"), "{mac}: {m:?}");
    }
    assert!(events.iter().any(|e| matches!(&e.kind,
        BootEventKind::TftpError { code: 0, message, .. } if message == "Early terminate")));
}

/// The IP the known Pi fetched from, as seen in the log.
fn report_ip(pi: &EmulatedPi, events: &[bootlog::BootEvent]) -> String {
    events
        .iter()
        .find_map(|e| match &e.kind {
            BootEventKind::TftpSent {
                serial: Some(s),
                client_ip,
                ..
            } if *s == pi.serial_folder() => Some(client_ip.clone()),
            _ => None,
        })
        .expect("a sent line for the known Pi")
}

#[test]
fn x86_pxe_client_gets_no_pi_menu() {
    let (lab, _, _, _) = serving(Scope::Oui);
    let pc_mac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    let pc = EmulatedPi::new(&lab.add_pi(pc_mac), 0);
    let out = pc.discover_as(ClientKind::X86Bios).unwrap();
    assert!(
        out.router_offer().is_some(),
        "router must still answer: {out:#?}"
    );
    assert!(
        out.pi_proxy_offer().is_none(),
        "x86 client got the Pi menu: {out:#?}"
    );
    assert!(!out.offers.iter().any(|o| o.has_pi_menu()), "{out:#?}");
}

#[test]
fn dhcp_host_scope_excludes_other_pi() {
    let (lab, _, _, server) = serving(Scope::Hosts(&[PI_MAC]));
    let other_mac = [0xdc, 0xa6, 0x32, 0x09, 0x09, 0x09];
    let other = EmulatedPi::new(&lab.add_pi(other_mac), 0x1122_3344);
    let out = other.discover().unwrap();
    assert!(out.router_offer().is_some(), "{out:#?}");
    // dnsmasq 2.90 still answers an untagged PXE client with a proxy OFFER,
    // but its option 43 has no boot menu (`06 01 08 0a 04 00 "PXE" ff`), so
    // the bootloader finds no "Raspberry Pi Boot" and no TFTP server.
    assert!(
        out.pi_proxy_offer().is_none(),
        "undeclared MAC got the Pi menu: {out:#?}"
    );
    for o in out.proxy_offers() {
        let pxe = o.pxe.as_ref().expect("proxy OFFER carries option 43");
        assert!(pxe.menu.is_empty(), "{out:#?}");
    }
    assert!(out.tftp_server(None).is_none());
    let mac = mac_string(&other_mac);
    let log = server
        .wait_for_log(Duration::from_secs(5), |t| t.contains("option: 43"))
        .unwrap_or_else(|t| panic!("no option 43 line:\n{t}"));
    let summary = bootlog::Summary::fold(&bootlog::parse_log(&log));
    let m = &summary.macs[&mac];
    assert_eq!(m.pi_menu, Some(false), "{m:?}");
    assert!(!m.tags.iter().any(|t| t == "pinetboot"), "{m:?}");
}

#[test]
fn ten_pis_boot_concurrently() {
    let lab = Lab::new();
    let root = tftp_root(&lab);
    let pis: Vec<(EmulatedPi, PathBuf)> = (0..10u8)
        .map(|i| {
            let serial = 0x1000_0000 + u32::from(i) * 0x0101;
            let mac = [0xdc, 0xa6, 0x32, 0x10, 0x00, i];
            (
                EmulatedPi::new(&lab.add_pi(mac), serial),
                boot_folder(&root, serial),
            )
        })
        .collect();
    let server = start_server(&lab, &server_conf(&root, Scope::Oui));
    let ips: Vec<_> = boot_concurrently(&pis)
        .iter()
        .zip(&pis)
        .map(|(report, (pi, _))| (pi.serial_folder(), report.ip))
        .collect();
    let mut distinct: Vec<_> = ips.iter().map(|(_, ip)| *ip).collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 10, "leases must be distinct");
    // The log agrees: each serial's last file went to that Pi's address.
    let log = server
        .wait_for_log(Duration::from_secs(5), |t| {
            t.matches("/initramfs8 to ").count() == 10
        })
        .unwrap_or_else(|t| panic!("not all initramfs8 sends logged:\n{t}"));
    let summary = bootlog::Summary::fold(&bootlog::Parser::with_tftp_root(&root).parse_log(&log));
    for (serial, ip) in &ips {
        let last = summary.serials[serial].last_sent.as_ref().unwrap();
        assert!(
            last.path.ends_with(&format!("{serial}/initramfs8")),
            "{last:?}"
        );
        assert_eq!(last.client_ip, ip.to_string());
    }
    assert!(summary.unknown_serials().is_empty());
}
