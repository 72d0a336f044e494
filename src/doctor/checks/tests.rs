//! The checks against hand-made facts: a healthy host, then one fault at a time.

use super::*;
use crate::config::Valid;
use crate::doctor::facts::{
    ClientFacts, ConfFile, Export, Iface, Meta, NfsFacts, PathEntry, PlanFacts, Process, Socket,
    User,
};

fn valid() -> Valid {
    crate::config::load_str(
        std::path::Path::new("t.yaml"),
        "server: {address: 10.99.0.2, network: 10.99.0.0/24, interface: eth0}\n\
         images:\n  bw: {source: /srv/bw}\n\
         clients:\n  bw: {serial: 0c4c21e5, image: bw}\n",
    )
    .unwrap()
}

fn dir(path: &str, mode: u32) -> PathEntry {
    PathEntry {
        path: path.into(),
        meta: Ok(Some(Meta {
            mode,
            uid: 0,
            gid: 0,
            dir: true,
            file: false,
        })),
    }
}

fn sock(addr: &str, port: u16, device: Option<&str>, owner: (u32, &str)) -> Socket {
    Socket {
        addr: addr.parse().unwrap(),
        port,
        inode: u64::from(port),
        device: device.map(str::to_owned),
        owners: vec![(owner.0, owner.1.to_owned())],
    }
}

/// A healthy host with a running NFS server.
fn healthy() -> Facts {
    Facts {
        config_path: "t.yaml".into(),
        applied: None,
        pending_commit: None,
        config: Ok(valid()),
        real_host: false,
        dnsmasq_binary: Some("/usr/sbin/dnsmasq".into()),
        dnsmasq: vec![Process {
            pid: 42,
            comm: "dnsmasq".into(),
            uid: 65534,
            gid: 30,
            cmdline: vec!["dnsmasq".into()],
        }],
        dnsmasq_elsewhere: 0,
        sockets: vec![
            sock("0.0.0.0", 67, Some("eth0"), (42, "dnsmasq")),
            sock("10.99.0.2", 69, None, (42, "dnsmasq")),
            sock("127.0.0.53", 53, None, (7, "systemd-resolve")),
        ],
        devices_known: true,
        confs: vec![ConfFile {
            path: "/etc/dnsmasq.conf".into(),
            text: "#port=5353\n".into(),
        }],
        drop_in: Some("port=0\ninterface=eth0\n".into()),
        nfs: NfsFacts {
            installed: true,
            in_kernel: true,
            mounted: true,
            threads: Some(8),
            exports: Some(Ok(vec![Export {
                path: "/nfs/bw".into(),
                client: "10.99.0.0/24".into(),
                options: "rw".into(),
            }])),
        },
        interfaces: Ok(vec![Iface {
            name: "eth0".into(),
            up: true,
            carrier: true,
            addrs: vec![("10.99.0.2".parse().unwrap(), 24)],
        }]),
        clients: vec![ClientFacts {
            name: "bw".into(),
            serial: "0c4c21e5".into(),
            root: "/nfs/bw".into(),
            target: "/tftpboot/0c4c21e5".into(),
            source: Some("/nfs/bw/boot/firmware".into()),
            mounted: true,
            same_folder: Ok(Some(true)),
            components: vec![
                dir("/", 0o755),
                dir("/tftpboot", 0o755),
                dir("/tftpboot/0c4c21e5", 0o755),
            ],
            start4: PathEntry {
                path: "/tftpboot/0c4c21e5/start4.elf".into(),
                meta: Ok(Some(Meta {
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                    dir: false,
                    file: true,
                })),
            },
            export_scope: "10.99.0.0/24".into(),
        }],
        tftp_user: User {
            name: "nobody".into(),
            uid: 65534,
            gid: 30,
            source: "test".into(),
        },
        state: Some(Ok(())),
        plan: Some(Ok(PlanFacts::default())),
    }
}

fn find<'a>(f: &'a [Finding], id: &str) -> &'a Finding {
    f.iter()
        .find(|x| x.id == id)
        .unwrap_or_else(|| panic!("no {id}: {f:#?}"))
}

/// Asserts that the finding `id` of all checks on `h` says `part` in its detail.
#[track_caller]
fn assert_detail(h: &Facts, id: &str, part: &str) {
    let f = all(h);
    let detail = &find(&f, id).detail;
    assert!(detail.contains(part), "{id}: {detail:?} lacks {part:?}");
}

fn not_ok(f: &[Finding]) -> Vec<(&str, Severity)> {
    f.iter()
        .filter(|x| x.severity != Severity::Ok)
        .map(|x| (x.id.as_str(), x.severity))
        .collect()
}

#[test]
fn healthy_host_is_all_ok() {
    let f = all(&healthy());
    assert_eq!(not_ok(&f), vec![], "{f:#?}");
    assert!(
        find(&f, "dnsmasq.dns")
            .detail
            .contains("systemd-resolve (pid 7) on :53 is no clash")
    );
    assert_eq!(find(&f, "client.bw.export").severity, Severity::Ok);
    assert!(!crate::doctor::has_problem(&f));
}

#[test]
fn nfs_not_running_skips_exports() {
    let mut h = healthy();
    h.nfs = NfsFacts {
        installed: true,
        ..NfsFacts::default()
    };
    let f = all(&h);
    assert_eq!(not_ok(&f), vec![("nfs.running", Severity::Problem)]);
    let n = find(&f, "nfs.running");
    assert_eq!(n.fix.as_deref(), Some(FIX_NFS_NOT_RUNNING));
    assert!(n.detail.starts_with("the kernel has no nfsd"));
    h.nfs.in_kernel = true;
    assert!(
        find(&all(&h), "nfs.running")
            .detail
            .starts_with("/proc/fs/nfsd is not mounted")
    );
    h.nfs.mounted = true;
    h.nfs.threads = Some(0);
    assert_detail(&h, "nfs.running", "no threads");
}

#[test]
fn exports_to_the_wrong_scope_or_missing() {
    let mut h = healthy();
    h.nfs.exports = Some(Ok(vec![Export {
        path: "/nfs/bw".into(),
        client: "*".into(),
        options: "rw".into(),
    }]));
    let e = find(&all(&h), "client.bw.export").clone();
    assert_eq!(e.severity, Severity::Problem);
    assert!(
        e.detail.contains("exported to *, not to 10.99.0.0/24"),
        "{e:?}"
    );
    h.nfs.exports = Some(Ok(vec![]));
    assert_detail(&h, "client.bw.export", "does not list /nfs/bw");
    h.nfs.installed = false;
    assert_eq!(find(&all(&h), "nfs.installed").severity, Severity::Problem);
}

#[test]
fn dnsmasq_missing_and_foreign_ports() {
    let mut h = healthy();
    h.dnsmasq.clear();
    h.dnsmasq_elsewhere = 2;
    h.sockets = vec![
        sock("0.0.0.0", 67, None, (9, "dhcpd")),
        sock("0.0.0.0", 69, None, (10, "in.tftpd")),
    ];
    let f = all(&h);
    assert!(
        find(&f, "dnsmasq.running")
            .detail
            .contains("2 dnsmasq processes in other network namespaces")
    );
    let d = find(&f, "dnsmasq.dhcp");
    assert_eq!(d.severity, Severity::Problem);
    assert_eq!(
        d.detail,
        "UDP 67 (0.0.0.0:67) is held by dhcpd (pid 9), not dnsmasq"
    );
    assert!(
        find(&f, "dnsmasq.tftp")
            .fix
            .as_deref()
            .unwrap()
            .contains("tftpd-hpa")
    );
    h.sockets[0].owners.clear();
    assert_detail(&h, "dnsmasq.dhcp", "cannot see");
    h.dnsmasq_binary = None;
    assert_eq!(
        find(&all(&h), "dnsmasq.installed").severity,
        Severity::Problem
    );
}

#[test]
fn dnsmasq_without_its_sockets() {
    let mut h = healthy();
    h.sockets.retain(|s| s.port == 53);
    let f = all(&h);
    let d = find(&f, "dnsmasq.dhcp");
    assert_eq!(d.severity, Severity::Problem);
    assert!(d.fix.as_deref().unwrap().contains("without the DHCP part"));
    assert!(f.iter().all(|x| x.id != "dnsmasq.interface"));
}

#[test]
fn wrong_interface_binding() {
    let mut h = healthy();
    h.sockets[0].device = Some("wlan0".into());
    h.sockets[1].addr = "127.0.0.1".parse().unwrap();
    let d = find(&all(&h), "dnsmasq.interface").clone();
    assert_eq!(d.severity, Severity::Problem);
    assert!(
        d.detail
            .contains("DHCP socket is bound to another interface (0.0.0.0%wlan0:67)"),
        "{d:?}"
    );
    assert!(
        d.detail
            .contains("TFTP sockets (127.0.0.1:69) do not take requests for 10.99.0.2")
    );
    // Unbound wildcard sockets serve every interface.
    let mut h = healthy();
    h.sockets[0].device = None;
    h.sockets[1].addr = "0.0.0.0".parse().unwrap();
    assert_eq!(find(&all(&h), "dnsmasq.interface").severity, Severity::Ok);
}

#[test]
fn dns_in_the_serving_instance_is_a_warning() {
    let mut h = healthy();
    h.sockets.push(sock("0.0.0.0", 53, None, (42, "dnsmasq")));
    let f = all(&h);
    assert_eq!(not_ok(&f), vec![("dnsmasq.dns", Severity::Warning)]);
    assert!(!crate::doctor::has_problem(&f));
    let mut h = healthy();
    h.drop_in = Some("interface=eth0\n".into());
    assert_detail(&h, "dnsmasq.dns", "lacks port=0");
}

#[test]
fn other_configs_claiming_the_network() {
    let mut h = healthy();
    h.confs.push(ConfFile {
        path: "/etc/dnsmasq.d/lan.conf".into(),
        text: "dhcp-range=set:lan,10.99.0.50,10.99.0.99,12h\n\
               dhcp-range=192.168.7.10,192.168.7.20\n\
               dhcp-range=tag:x,10.99.0.0,proxy  # proxy too\n\
               pxe-service=x86PC,\"PC\",pxelinux\n\
               pxe-service=tag:pc,x86PC,\"PC\",pxelinux\n\
               pxe-service=X86-64_EFI,\"EFI\",grub\n\
               port=53\nport=0\n"
            .into(),
    });
    let f: Vec<Finding> = all(&h)
        .into_iter()
        .filter(|x| x.id == "dnsmasq.config")
        .collect();
    let d: Vec<(&str, Severity)> = f.iter().map(|x| (x.detail.as_str(), x.severity)).collect();
    assert_eq!(d.len(), 4, "{d:#?}");
    assert!(
        d[0].0
            .starts_with("/etc/dnsmasq.d/lan.conf:1: dhcp-range=set:lan,10.99.0.50")
    );
    assert!(
        d[1].0
            .starts_with("/etc/dnsmasq.d/lan.conf:3: dhcp-range=tag:x,10.99.0.0,proxy also")
    );
    assert!(
        d[2].0
            .starts_with("/etc/dnsmasq.d/lan.conf:4: pxe-service=x86PC")
    );
    assert_eq!(d[3].1, Severity::Warning);
    assert!(d[3].0.starts_with("/etc/dnsmasq.d/lan.conf:7: port=53"));
}

#[test]
fn address_missing_elsewhere_wrong_prefix_or_down() {
    let mut h = healthy();
    h.interfaces = Ok(vec![Iface {
        name: "eth0".into(),
        up: true,
        carrier: true,
        addrs: vec![("192.0.2.2".parse().unwrap(), 24)],
    }]);
    let f = all(&h);
    let a = find(&f, "server.address");
    assert_eq!(a.severity, Severity::Problem);
    assert!(a.detail.contains("it has: 192.0.2.2/24 on eth0"));
    assert!(
        a.fix
            .as_deref()
            .unwrap()
            .contains("ip addr add 10.99.0.2/24 dev eth0")
    );
    assert_eq!(find(&f, "server.interface").severity, Severity::Ok);
    // On another interface than server.interface.
    let mut h = healthy();
    if let Ok(i) = &mut h.interfaces {
        i[0].name = "eth1".into();
    }
    let f = all(&h);
    assert!(
        find(&f, "server.address")
            .detail
            .contains("is on eth1, but server.interface is eth0")
    );
    assert!(
        find(&f, "server.interface")
            .detail
            .contains("there is no interface eth0")
    );
    // A different prefix: a warning.
    let mut h = healthy();
    if let Ok(i) = &mut h.interfaces {
        i[0].addrs[0].1 = 16;
    }
    let a = find(&all(&h), "server.address").clone();
    assert_eq!(a.severity, Severity::Warning);
    assert!(a.detail.contains("local network 10.99.0.0/16"), "{a:?}");
    // Down, no carrier.
    let mut h = healthy();
    if let Ok(i) = &mut h.interfaces {
        i[0].carrier = false;
    }
    assert_detail(&h, "server.interface", "no carrier");
    if let Ok(i) = &mut h.interfaces {
        i[0].up = false;
    }
    assert_detail(&h, "server.interface", "administratively down");
}

#[test]
fn client_mount_states() {
    let mut h = healthy();
    h.clients[0].source = None;
    assert_detail(&h, "client.bw.mount", "has not set up bw");
    let mut h = healthy();
    h.clients[0].mounted = false;
    let f = all(&h);
    assert!(
        find(&f, "client.bw.mount")
            .detail
            .starts_with("nothing is mounted on /tftpboot/0c4c21e5")
    );
    assert!(
        f.iter().all(|x| x.id != "client.bw.access"),
        "no noise after the root cause"
    );
    h.clients[0].mounted = true;
    h.clients[0].same_folder = Ok(Some(false));
    assert_detail(&h, "client.bw.mount", "not from /nfs/bw/boot/firmware");
}

#[test]
fn access_by_the_tftp_user() {
    let mut h = healthy();
    h.clients[0].components[2] = dir("/tftpboot/0c4c21e5", 0o700);
    let a = find(&all(&h), "client.bw.access").clone();
    assert_eq!(a.severity, Severity::Problem);
    assert!(
        a.detail
            .starts_with("/tftpboot/0c4c21e5 (0700, owner 0:0) cannot be entered"),
        "{a:?}"
    );
    // Group bits count for the group dnsmasq runs as.
    let mut h = healthy();
    h.clients[0].components[1] = PathEntry {
        path: "/tftpboot".into(),
        meta: Ok(Some(Meta {
            mode: 0o750,
            uid: 0,
            gid: 30,
            dir: true,
            file: false,
        })),
    };
    assert_eq!(find(&all(&h), "client.bw.access").severity, Severity::Ok);
    h.tftp_user.gid = 31;
    assert_eq!(
        find(&all(&h), "client.bw.access").severity,
        Severity::Problem
    );
    // Listing needs read on the serial folder itself.
    let mut h = healthy();
    h.clients[0].components[2] = dir("/tftpboot/0c4c21e5", 0o711);
    assert_detail(&h, "client.bw.access", "cannot be listed");
}

#[test]
fn start4_missing_or_private() {
    let mut h = healthy();
    h.clients[0].start4.meta = Ok(None);
    let s = find(&all(&h), "client.bw.start4").clone();
    assert_eq!(s.severity, Severity::Problem);
    assert!(s.detail.contains("start4.elf is missing"));
    h.clients[0].start4.meta = Ok(Some(Meta {
        mode: 0o600,
        uid: 0,
        gid: 0,
        dir: false,
        file: true,
    }));
    let s = find(&all(&h), "client.bw.start4").clone();
    assert!(
        s.detail
            .contains("(0600, owner 0:0) cannot be read by nobody"),
        "{s:?}"
    );
    assert_eq!(
        s.fix.as_deref(),
        Some("`chmod a+r /tftpboot/0c4c21e5/start4.elf` (0644)")
    );
}

#[test]
fn config_state_and_drift() {
    let mut h = healthy();
    h.plan = Some(Ok(PlanFacts {
        changes: vec![
            "+ bind mount /tftpboot/0c4c21e5 (from /nfs/bw/boot/firmware (not mounted))".into(),
        ],
        conflicts: vec![],
    }));
    let f = all(&h);
    assert_eq!(not_ok(&f), vec![("plan", Severity::Warning)]);
    assert!(
        find(&f, "plan")
            .detail
            .starts_with("1 pending change:\n+ bind mount")
    );
    h.plan = Some(Ok(PlanFacts {
        changes: vec![],
        conflicts: vec!["bw: /nfs/bw/etc is a symlink".into()],
    }));
    assert_eq!(find(&all(&h), "plan.conflict").severity, Severity::Problem);
    h.state = Some(Err("state.json is not a pinetboot state file".into()));
    assert_eq!(find(&all(&h), "state").severity, Severity::Problem);
    let mut h = healthy();
    h.config = Err("t.yaml:1:9: server.address: bad".into());
    let f = all(&h);
    assert_eq!(f[0].id, "config");
    assert_eq!(f[0].severity, Severity::Problem);
    assert!(
        f.iter()
            .all(|x| !x.id.starts_with("client.") && x.id != "server.address")
    );
    assert!(f.iter().any(|x| x.id == "dnsmasq.running"));
}

#[test]
fn real_host_dnsmasq_without_the_drop_in_folder() {
    let mut h = healthy();
    h.real_host = true;
    h.dnsmasq[0].cmdline = vec!["dnsmasq".into(), "-C".into(), "/etc/other.conf".into()];
    let d = find(&all(&h), "dnsmasq.drop-in").clone();
    assert_eq!(d.severity, Severity::Warning);
    assert!(d.detail.contains("--conf-file=/etc/other.conf"), "{d:?}");
    h.dnsmasq[0].cmdline = vec![
        "/usr/sbin/dnsmasq".into(),
        "-x".into(),
        "/run/dnsmasq/dnsmasq.pid".into(),
        "-7".into(),
        "/etc/dnsmasq.d,.dpkg-dist,.dpkg-old,.dpkg-new".into(),
    ];
    assert!(all(&h).iter().all(|x| x.id != "dnsmasq.drop-in"));
}
