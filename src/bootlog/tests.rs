use super::*;

/// Real log of the proxy + TFTP dnsmasq 2.90 (OUI scope) while the emulated
/// declared Pi 0c4c21e5 booted and then the undeclared abcd1234 tried; the
/// temp TFTP root was replaced by `/srv/tftpboot`.
const SERVER_OUI: &str = include_str!("../../tests/data/server-oui.log");
/// Real log, `dhcp-host` scope, an undeclared Pi MAC asking.
const SERVER_OTHER_MAC: &str = include_str!("../../tests/data/server-hosts-other-mac.log");
/// Real log of the lab's router dnsmasq during the SERVER_OUI run.
const ROUTER: &str = include_str!("../../tests/data/router.log");

fn kind(line: &str) -> BootEventKind {
    Parser::new()
        .parse_line(line)
        .unwrap_or_else(|| panic!("no event: {line}"))
        .kind
}

#[test]
fn timestamp_formats() {
    let t = LogTime::parse("Nov 26 18:21:21 dnsmasq[1]: x").unwrap();
    assert_eq!(
        (t.month, t.day, t.hour, t.minute, t.second),
        (11, 26, 18, 21, 21)
    );
    assert_eq!(t.text, "Nov 26 18:21:21");
    let t = LogTime::parse("Aug  2 12:21:06 raspberrypi dnsmasq-tftp[548]: x").unwrap();
    assert_eq!((t.month, t.day), (8, 2));
    assert!(LogTime::parse("dnsmasq[1]: started").is_none());
    assert!(LogTime::parse("Foo 26 18:21:21 x").is_none());
    assert!(LogTime::parse("Nov 26 25:21:21 x").is_none());
    assert!(LogTime::parse("Nov 2").is_none());
    assert!(LogTime::parse("Nov 26 18:21:2é").is_none());
}

#[test]
fn split_prefixes() {
    let l = split_line("Nov 26 18:21:23 dnsmasq-tftp[20956]: sent /a to 1.2.3.4\n").unwrap();
    assert_eq!(l.source, Source::Tftp);
    assert_eq!(l.pid, Some(20956));
    assert_eq!(l.message, "sent /a to 1.2.3.4");
    assert!(l.time.is_some());
    // syslog with a host name
    let l = split_line(
        "Aug  2 12:21:06 raspberrypi dnsmasq-dhcp[548]: PXE(eth0) b8:27:eb:6c:4c:16 proxy",
    )
    .unwrap();
    assert_eq!((l.source, l.time.unwrap().day), (Source::Dhcp, 2));
    // no timestamp (log-facility=- in the foreground)
    let l = split_line("dnsmasq[7]: started, version 2.90 DNS disabled").unwrap();
    assert_eq!((l.source, l.time), (Source::Main, None));
    assert!(split_line("kernel: something else").is_none());
    assert!(split_line("Nov 26 18:21:23 dnsmasq-foo[1]: x").is_none());
}

#[test]
fn tftp_lines() {
    assert_eq!(
        kind(
            "Nov 26 18:21:23 dnsmasq-tftp[1]: sent /srv/tftpboot/0c4c21e5/start4.elf to 10.99.0.173"
        ),
        BootEventKind::TftpSent {
            path: "/srv/tftpboot/0c4c21e5/start4.elf".into(),
            serial: Some("0c4c21e5".into()),
            client_ip: "10.99.0.173".into()
        }
    );
    assert_eq!(
        kind(
            "Nov 26 18:21:26 dnsmasq-tftp[1]: file /srv/tftpboot/abcd1234/start4.elf not found for 10.99.0.169"
        ),
        BootEventKind::TftpNotFound {
            path: "/srv/tftpboot/abcd1234/start4.elf".into(),
            serial: Some("abcd1234".into()),
            client_ip: Some("10.99.0.169".into())
        }
    );
    // pre-2.86 wording, no client
    assert_eq!(
        kind(
            "Aug  2 12:21:06 raspberrypi dnsmasq-tftp[548]: file /pxe-boot/b66c4c16/kernel8-32.img not found"
        ),
        BootEventKind::TftpNotFound {
            path: "/pxe-boot/b66c4c16/kernel8-32.img".into(),
            serial: Some("b66c4c16".into()),
            client_ip: None
        }
    );
    assert_eq!(
        kind(
            "Aug  2 12:21:06 raspberrypi dnsmasq-tftp[548]: failed sending /pxe-boot/b66c4c16/kernel8.img to 192.168.1.116"
        ),
        BootEventKind::TftpFailed {
            path: "/pxe-boot/b66c4c16/kernel8.img".into(),
            serial: Some("b66c4c16".into()),
            client_ip: "192.168.1.116".into()
        }
    );
    assert_eq!(
        kind("Nov 26 18:21:23 dnsmasq-tftp[1]: error 0 Early terminate received from 10.99.0.173"),
        BootEventKind::TftpError {
            code: 0,
            message: "Early terminate".into(),
            client_ip: "10.99.0.173".into()
        }
    );
    assert_eq!(
        kind(
            "Nov 26 18:21:23 dnsmasq-tftp[1]: cannot access /srv/tftpboot/0c4c21e5/kernel8.img: Permission denied"
        ),
        BootEventKind::TftpCannotAccess {
            path: "/srv/tftpboot/0c4c21e5/kernel8.img".into(),
            serial: Some("0c4c21e5".into()),
            reason: "Permission denied".into()
        }
    );
    // startup chatter is no event
    assert!(
        Parser::new()
            .parse_line("Nov 26 18:21:21 dnsmasq-tftp[1]: TFTP root is /srv/tftpboot  ")
            .is_none()
    );
}

#[test]
fn dhcp_lines() {
    assert_eq!(
        kind("Nov 26 18:21:21 dnsmasq-dhcp[1]: 2260849984 PXE(eth0) dc:a6:32:01:02:03 proxy"),
        BootEventKind::DhcpProxyOffer {
            xid: Some(2260849984),
            iface: "eth0".into(),
            mac: "dc:a6:32:01:02:03".into(),
            ignored: false
        }
    );
    // without log-dhcp: no xid
    assert!(matches!(
        kind("Nov 26 18:21:21 dnsmasq-dhcp[1]: PXE(eth0) DC:A6:32:01:02:03 proxy"),
        BootEventKind::DhcpProxyOffer { xid: None, ref mac, .. } if mac == "dc:a6:32:01:02:03"
    ));
    assert_eq!(
        kind(
            "Nov 26 18:21:23 dnsmasq-dhcp[1]: 2260849984 DHCPACK(br0) 10.99.0.173 dc:a6:32:01:02:03 "
        ),
        BootEventKind::Dhcp {
            xid: Some(2260849984),
            msg: "DHCPACK".into(),
            iface: "br0".into(),
            ip: Some("10.99.0.173".into()),
            mac: Some("dc:a6:32:01:02:03".into()),
            detail: String::new()
        }
    );
    assert_eq!(
        kind("Nov 26 18:21:21 dnsmasq-dhcp[1]: 2260849984 tags: pinetboot, known, eth0"),
        BootEventKind::DhcpTags {
            xid: Some(2260849984),
            tags: vec!["pinetboot".into(), "known".into(), "eth0".into()]
        }
    );
    assert_eq!(
        kind(
            "Nov 26 18:21:19 dnsmasq-dhcp[1]: 2920046811 sent size: 10 option: 43 vendor-encap  06:01:08:0a:04:00:50:58:45:ff"
        ),
        BootEventKind::DhcpOptionSent {
            xid: Some(2920046811),
            code: 43,
            size: 10,
            name: "vendor-encap".into(),
            value: "06:01:08:0a:04:00:50:58:45:ff".into()
        }
    );
    assert!(matches!(
        kind("Nov 26 18:21:19 dnsmasq-dhcp[1]: 1 sent size:  4 option:  1 netmask  255.255.255.0"),
        BootEventKind::DhcpOptionSent { code: 1, size: 4, ref value, .. } if value == "255.255.255.0"
    ));
    // informational lines are no event
    for l in [
        "Nov 26 18:21:21 dnsmasq-dhcp[1]: 2260849984 vendor class: PXEClient:Arch:00000:UNDI:002001",
        "Nov 26 18:21:21 dnsmasq-dhcp[1]: 2260849984 broadcast response",
        "Nov 26 18:21:21 dnsmasq-dhcp[1]: DHCP, proxy on subnet 10.99.0.0",
    ] {
        assert!(Parser::new().parse_line(l).is_none(), "{l}");
    }
}

#[test]
fn serial_extraction() {
    let p = Parser::new();
    assert_eq!(
        p.serial_of("/srv/tftpboot/0c4c21e5/overlays/overlay_map.dtb")
            .as_deref(),
        Some("0c4c21e5")
    );
    assert_eq!(p.serial_of("/srv/tftpboot/config.txt"), None);
    assert_eq!(
        p.serial_of("/srv/tftpboot/0C4C21E5/start4.elf"),
        None,
        "bootloader asks lowercase"
    );
    // heuristic is fooled by an 8-hex directory above the root ...
    assert_eq!(
        p.serial_of("/srv/abcdef01/tftp/config.txt").as_deref(),
        Some("abcdef01")
    );
    // ... the root-aware parser is not
    let r = Parser::with_tftp_root("/srv/abcdef01/tftp");
    assert_eq!(r.serial_of("/srv/abcdef01/tftp/config.txt"), None);
    assert_eq!(
        r.serial_of("/srv/abcdef01/tftp/deadbeef/start4.elf")
            .as_deref(),
        Some("deadbeef")
    );
    assert_eq!(r.serial_of("/elsewhere/deadbeef/start4.elf"), None);
}

#[test]
fn option43_menu_detection() {
    assert_eq!(
        vendor_encap_has_menu("06:01:03:0a:04:00:50:58:45:09:14:00:00:11..."),
        Some(true)
    );
    assert_eq!(
        vendor_encap_has_menu("06:01:08:0a:04:00:50:58:45:ff"),
        Some(false)
    );
    assert_eq!(vendor_encap_has_menu("06:01:03:0a:04:00:50..."), None);
    assert_eq!(vendor_encap_has_menu("zz"), None);
}

#[test]
fn sample_server_log_summary() {
    let events = Parser::with_tftp_root("/srv/tftpboot").parse_log(SERVER_OUI);
    assert!(
        events
            .iter()
            .all(|e| e.time.is_some() && e.pid == Some(20956))
    );
    let s = Summary::fold(&events);

    let known = &s.serials["0c4c21e5"];
    let last = known.last_sent.as_ref().unwrap();
    assert_eq!(last.path, "/srv/tftpboot/0c4c21e5/initramfs8");
    assert_eq!(last.client_ip, "10.99.0.173");
    assert_eq!(last.time.as_ref().unwrap().text, "Nov 26 18:21:23");
    // start4.elf size probe: `error 0 Early terminate` then `sent` (2.90)
    assert_eq!(known.probes, 1);
    assert_eq!(known.sent, 8);
    assert_eq!(known.not_found, 6);
    assert!(known.exists());

    let stranger = &s.serials["abcd1234"];
    assert_eq!((stranger.not_found, stranger.exists()), (2, false));
    assert_eq!(stranger.last_client_ip.as_deref(), Some("10.99.0.169"));
    assert_eq!(s.unknown_serials(), vec!["abcd1234"]);

    let m = &s.macs["dc:a6:32:01:02:03"];
    assert_eq!((m.proxy_offers, m.pi_menu), (1, Some(true)));
    assert_eq!(m.tags, vec!["pinetboot", "eth0"]);
    assert!(
        s.macs["dc:a6:32:aa:bb:cc"]
            .tags
            .contains(&"pinetboot".to_string())
    );
    // root-less files of the prefix fallback carry no serial
    assert!(events.iter().any(|e| matches!(&e.kind,
        BootEventKind::TftpNotFound { path, serial: None, .. } if path == "/srv/tftpboot/recover4.elf")));
}

#[test]
fn sample_untagged_mac_gets_menuless_offer() {
    let s = Summary::fold(&parse_log(SERVER_OTHER_MAC));
    let m = &s.macs["dc:a6:32:09:09:09"];
    assert_eq!(
        m.proxy_offers, 1,
        "dnsmasq logs `proxy` even without a matching pxe-service"
    );
    assert_eq!(m.pi_menu, Some(false));
    assert_eq!(m.tags, vec!["eth0"]);
    assert!(s.serials.is_empty());
}

#[test]
fn sample_router_log_last_exchange() {
    let s = Summary::fold(&parse_log(ROUTER));
    for (mac, ip) in [
        ("dc:a6:32:01:02:03", "10.99.0.173"),
        ("dc:a6:32:aa:bb:cc", "10.99.0.169"),
    ] {
        match &s.macs[mac].last {
            BootEventKind::Dhcp {
                msg, ip: Some(got), ..
            } => assert_eq!((msg.as_str(), got.as_str()), ("DHCPACK", ip)),
            other => panic!("{mac}: {other:?}"),
        }
        assert_eq!(s.macs[mac].proxy_offers, 0);
    }
}

#[test]
fn older_dnsmasq_probe_is_failed_sending() {
    // Wording of dnsmasq before 2.90 (raspberrypi/firmware#1605), C locale.
    let log = "\
Aug  2 12:21:06 raspberrypi dnsmasq-tftp[548]: error 0 Early terminate received from 192.168.1.116
Aug  2 12:21:06 raspberrypi dnsmasq-tftp[548]: failed sending /pxe-boot/b66c4c16/kernel8.img to 192.168.1.116
Aug  2 12:21:09 raspberrypi dnsmasq-tftp[548]: sent /pxe-boot/b66c4c16/kernel7.img to 192.168.1.116
Aug  2 12:21:10 raspberrypi dnsmasq-tftp[548]: failed sending /pxe-boot/b66c4c16/cmdline.txt to 192.168.1.116
";
    let s = Summary::fold(&parse_log(log));
    let x = &s.serials["b66c4c16"];
    assert_eq!((x.probes, x.sent, x.failed), (1, 1, 1));
    assert!(x.last_sent.as_ref().unwrap().path.ends_with("kernel7.img"));
    assert_eq!(x.last_seen.as_ref().unwrap().text, "Aug  2 12:21:10");
}

#[test]
fn interleaved_clients_keep_probes_apart() {
    let log = "\
Nov 26 18:00:00 dnsmasq-tftp[1]: error 0 Early terminate received from 10.0.0.1
Nov 26 18:00:00 dnsmasq-tftp[1]: sent /t/11111111/kernel8.img to 10.0.0.2
Nov 26 18:00:00 dnsmasq-tftp[1]: sent /t/22222222/start4.elf to 10.0.0.1
";
    let s = Summary::fold(&parse_log(log));
    assert_eq!(
        (s.serials["11111111"].sent, s.serials["11111111"].probes),
        (1, 0)
    );
    assert_eq!(
        (s.serials["22222222"].sent, s.serials["22222222"].probes),
        (0, 1)
    );
}

#[test]
fn garbage_is_ignored() {
    let log =
        "\n\u{0}\u{ff}\nNov 26 18:21:23 dnsmasq-tftp[x]: sent  to \nNov 26 dnsmasq-dhcp[1]: ()\n";
    let events = parse_log(log);
    assert!(events.iter().all(|e| e.pid.is_none() || e.time.is_none()));
}
