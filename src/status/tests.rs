use std::path::Path;

use super::*;
use crate::config::Valid;
use crate::host::Host;

/// Real proxy + TFTP log: declared 0c4c21e5 booted, undeclared abcd1234 tried.
const SERVER_OUI: &str = include_str!("../../tests/data/server-oui.log");
/// The router's and the proxy's lines of the same run in one syslog (as on a host where both
/// log to the journal): DHCPACK lines tie addresses to MACs.
const SHARED: &str = include_str!("../../tests/data/shared-syslog.log");

const CONFIG: &str = "server: {address: 10.99.0.2, network: 10.99.0.0/24}\n\
images:\n  bookworm: {source: /srv/rootfs/bookworm}\n\
defaults: {image: bookworm}\n\
clients:\n  bw: {serial: 0c4c21e5, mac: 'dc:a6:32:01:02:03'}\n  idle: {serial: 11112222, mac: 'dc:a6:32:01:02:05'}\n  nomac: {serial: 33334444}\n";

fn valid(text: &str) -> Valid {
    crate::config::load_str(Path::new("t.yaml"), text).expect("valid test config")
}

fn file_log(text: &str) -> Log {
    Log {
        info: LogInfo {
            source: LogSource::File,
            path: "/var/log/pinetboot/dnsmasq.log".into(),
            note: None,
        },
        text: text.into(),
    }
}

#[test]
fn declared_client_shows_last_file_ip_and_counts() {
    let s = status(&valid(CONFIG), &file_log(SERVER_OUI));
    assert_eq!(s.format_version, 1);
    assert_eq!(s.log.note, None);
    let names: Vec<&str> = s.clients.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["bw", "idle", "nomac"]);
    let bw = &s.clients[0];
    assert!(bw.seen);
    assert_eq!(
        bw.dhcp,
        Some(DhcpStatus {
            time: Some("Nov 26 18:21:21".into()),
            mac: "dc:a6:32:01:02:03".into(),
            exchange: "PXE proxy".into(),
            boot_menu: Some(true),
            proxy_offers: 1,
        })
    );
    assert_eq!(
        bw.tftp,
        Some(TftpStatus {
            last_file: Some(FileServed {
                file: "initramfs8".into(),
                path: "/srv/tftpboot/0c4c21e5/initramfs8".into(),
                time: Some("Nov 26 18:21:23".into()),
                ip: "10.99.0.173".into(),
            }),
            last_seen: Some("Nov 26 18:21:23".into()),
            last_ip: Some("10.99.0.173".into()),
            sent: 8,
            probes: 1,
            failed: 0,
            not_found: 6,
        })
    );
    let idle = &s.clients[1];
    assert_eq!((idle.seen, &idle.dhcp, &idle.tftp), (false, &None, &None));
    let nomac = &s.clients[2];
    assert_eq!((nomac.seen, &nomac.mac), (false, &None));
    // The proxy's log alone does not tie the undeclared Pi's address to a MAC.
    assert_eq!(
        s.undeclared,
        [Undeclared {
            serial: "abcd1234".into(),
            mac: None,
            mac_declared_for: None,
            ip: Some("10.99.0.169".into()),
            time: Some("Nov 26 18:21:26".into()),
            not_found: 2,
        }]
    );
}

#[test]
fn boot_menu_not_offered_to_an_undeclared_mac() {
    let text = include_str!("../../tests/data/server-hosts-other-mac.log");
    let cfg = CONFIG.replace("dc:a6:32:01:02:05", "dc:a6:32:09:09:09");
    let s = status(&valid(&cfg), &file_log(text));
    let d = s.clients[1].dhcp.as_ref().expect("dhcp seen");
    assert_eq!(
        (d.exchange.as_str(), d.boot_menu, d.proxy_offers),
        ("PXE proxy", Some(false), 1)
    );
    assert!(s.clients[1].tftp.is_none());
}

#[test]
fn shared_syslog_ties_the_undeclared_serial_to_its_mac() {
    let s = status(&valid(CONFIG), &file_log(SHARED));
    assert_eq!(s.undeclared.len(), 1);
    assert_eq!(s.undeclared[0].mac.as_deref(), Some("dc:a6:32:aa:bb:cc"));
    assert_eq!(s.undeclared[0].mac_declared_for, None);
    // The router's DHCPACK is the MAC's last exchange here.
    let d = s.clients[0].dhcp.as_ref().unwrap();
    assert_eq!(d.exchange, "DHCPACK");
    assert_eq!(d.boot_menu, None);
    let out = render_discover(&s, &valid(CONFIG), None);
    assert_eq!(
        out,
        "# Raspberry Pis that asked for files but are not declared; paste under `clients:`.\n  \
         pi-abcd1234:\n    serial: abcd1234\n    mac: dc:a6:32:aa:bb:cc  # seen Nov 26 18:21:26 from 10.99.0.169\n"
    );
    let pasted = format!("{CONFIG}{}", out.split_once('\n').unwrap().1);
    let v = valid(&pasted);
    assert_eq!(v.clients["pi-abcd1234"].serial, "abcd1234");
    assert_eq!(
        v.clients["pi-abcd1234"].mac.as_deref(),
        Some("dc:a6:32:aa:bb:cc")
    );
}

#[test]
fn discover_stanza_without_mac_and_with_image_validates_when_pasted() {
    let cfg = CONFIG.replace("defaults: {image: bookworm}\n", "").replace(
        "clients:\n",
        "clients:\n  first: {serial: 55556666, image: bookworm}\n",
    );
    let cfg = cfg
        .replace("serial: 0c4c21e5,", "serial: 0c4c21e5, image: bookworm,")
        .replace("serial: 11112222,", "serial: 11112222, image: bookworm,")
        .replace("{serial: 33334444}", "{serial: 33334444, image: bookworm}");
    let v = valid(&cfg);
    let s = status(&v, &file_log(SERVER_OUI));
    let out = render_discover(&s, &v, Some("bookworm"));
    assert_eq!(
        out,
        "# Raspberry Pis that asked for files but are not declared; paste under `clients:`.\n  \
         pi-abcd1234:\n    serial: abcd1234  # seen Nov 26 18:21:26 from 10.99.0.169; MAC not in the log\n    image: bookworm\n"
    );
    let pasted = format!("{cfg}{out}");
    assert_eq!(valid(&pasted).clients["pi-abcd1234"].image, "bookworm");
}

#[test]
fn a_mac_already_declared_is_only_a_comment() {
    // The declared bw's MAC asks with another serial: pasting its MAC would duplicate it.
    let text = SHARED.replace("/abcd1234/", "/deadbeef/").replace(
        "10.99.0.169 dc:a6:32:aa:bb:cc",
        "10.99.0.169 dc:a6:32:01:02:03",
    );
    let s = status(&valid(CONFIG), &file_log(&text));
    assert_eq!(s.undeclared[0].serial, "deadbeef");
    assert_eq!(s.undeclared[0].mac_declared_for.as_deref(), Some("bw"));
    let out = render_discover(&s, &valid(CONFIG), None);
    assert!(
        out.contains("    # mac dc:a6:32:01:02:03 is already declared for client `bw`\n"),
        "{out}"
    );
    valid(&format!("{CONFIG}{out}"));
}

#[test]
fn nothing_to_discover_is_a_comment() {
    let s = status(&valid(CONFIG), &file_log(""));
    assert_eq!(
        render_discover(&s, &valid(CONFIG), None),
        "# No undeclared Raspberry Pi asked for files (/var/log/pinetboot/dnsmasq.log).\n"
    );
    assert!(s.clients.iter().all(|c| !c.seen));
}

#[test]
fn text_table() {
    let s = status(&valid(CONFIG), &file_log(SERVER_OUI));
    let out = render_text(&s, &crate::output::Printer::plain());
    let expected = "\
Log: /var/log/pinetboot/dnsmasq.log

CLIENT  SERIAL    MAC                LAST DHCP                  BOOT MENU  LAST FILE   WHEN             TO           COUNTS
bw      0c4c21e5  dc:a6:32:01:02:03  Nov 26 18:21:21 PXE proxy  offered    initramfs8  Nov 26 18:21:23  10.99.0.173  8 sent, 1 probe, 0 failed, 6 not found
idle    11112222  dc:a6:32:01:02:05  never seen
nomac   33334444  -                  never seen

1 Pi not declared asked for files (see `pinetboot discover`):
  abcd1234 from 10.99.0.169 at Nov 26 18:21:26
";
    assert_eq!(out, expected);
}

#[test]
fn json_is_stable() {
    let s = status(&valid(CONFIG), &file_log(""));
    let v: serde_json::Value = serde_json::from_str(&render_json(&s)).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "format_version": 1,
            "log": {"source": "file", "path": "/var/log/pinetboot/dnsmasq.log"},
            "clients": [
                {"name": "bw", "serial": "0c4c21e5", "mac": "dc:a6:32:01:02:03", "seen": false, "dhcp": null, "tftp": null},
                {"name": "idle", "serial": "11112222", "mac": "dc:a6:32:01:02:05", "seen": false, "dhcp": null, "tftp": null},
                {"name": "nomac", "serial": "33334444", "mac": null, "seen": false, "dhcp": null, "tftp": null},
            ],
            "undeclared": [],
        })
    );
}

#[test]
fn translated_tftp_lines_are_reported() {
    let text = "Nov 26 18:21:23 dnsmasq-tftp[1]: /srv/tftpboot/0c4c21e5/start4.elf an 10.99.0.173 gesendet\n";
    let s = status(&valid(CONFIG), &file_log(text));
    assert_eq!(
        s.log.note.as_deref(),
        Some(
            "1 dnsmasq-tftp lines, none understood: is dnsmasq running in a translated locale? run it with LC_ALL=C"
        )
    );
}

#[test]
fn log_file_read_under_root_and_missing_file_noted() {
    let tmp = tempfile::tempdir().unwrap();
    let host = Host::new(tmp.path()).unwrap();
    let log = read_log(&host, "/var/log/pinetboot/dnsmasq.log").unwrap();
    assert_eq!((log.info.source, log.text.as_str()), (LogSource::None, ""));
    assert_eq!(
        log.info.note,
        Some(format!(
            "/var/log/pinetboot/dnsmasq.log does not exist under --root {} (the journal is read only for --root /)",
            tmp.path().display()
        ))
    );
    // A log file at the root of `--root` (its folder must exist).
    crate::host::atomic::write_host_file(&host.path("/dnsmasq.log"), SERVER_OUI.as_bytes(), 0o644)
        .unwrap();
    let log = read_log(&host, "/dnsmasq.log").unwrap();
    assert_eq!(
        (log.info.source, log.text.as_str()),
        (LogSource::File, SERVER_OUI)
    );
}

#[test]
fn a_board_asking_in_its_mac_or_string_prefix_folder_is_its_clients() {
    // After its update sets TFTP_PREFIX=2 (or 1), the board asks in another folder: still
    // that client's boot, never an undeclared serial.
    let config = "server: {address: 10.99.0.2, network: 10.99.0.0/24}\n\
        bootloader: {image: /srv/pieeprom.bin}\n\
        images:\n  bookworm: {source: /srv/rootfs/bookworm}\n\
        defaults: {image: bookworm}\n\
        clients:\n  mc: {serial: 0c4c21e5, mac: 'dc:a6:32:01:02:03', eeprom: {tftp_prefix: mac}}\n  \
        sc: {serial: 11112222, eeprom: {tftp_prefix: {string: pi-lab/}}}\n";
    let log = "Nov 26 18:21:23 dnsmasq-tftp[20956]: sent /srv/tftpboot/dc-a6-32-01-02-03/start4.elf to 10.99.0.173\n\
        Nov 26 18:21:24 dnsmasq-tftp[20956]: sent /srv/tftpboot/dc-a6-32-01-02-03/overlays/overlay_map.dtb to 10.99.0.173\n\
        Nov 26 18:21:25 dnsmasq-tftp[20956]: sent /srv/tftpboot/pi-lab/cmdline.txt to 10.99.0.174\n";
    let s = status(&valid(config), &file_log(log));
    let mc = &s.clients[0];
    let tftp = mc.tftp.as_ref().expect("mc seen over TFTP");
    assert_eq!(tftp.sent, 2);
    assert_eq!(
        tftp.last_file.as_ref().map(|f| f.file.as_str()),
        Some("overlays/overlay_map.dtb")
    );
    let sc = &s.clients[1];
    assert_eq!(
        sc.tftp
            .as_ref()
            .and_then(|t| t.last_file.as_ref())
            .map(|f| f.file.as_str()),
        Some("cmdline.txt")
    );
    assert!(s.undeclared.is_empty(), "{:?}", s.undeclared);
}
