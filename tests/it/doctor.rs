//! `pinetboot doctor` against real daemons: `pinetboot apply` on a throwaway root inside a
//! private mount namespace, the real dnsmasq started on the generated drop-in inside the lab's
//! server network namespace, and doctor run inside both (`nsenter -t HOLDER -m -- ip netns exec
//! SRV pinetboot … doctor`). A healthy setup has no problem but NFS (this machine has no nfsd);
//! each broken setup names its fault. Needs root, `ip`, `unshare`, `nsenter`, `ss` and `dnsmasq`.

use crate::support::mountns::MountNs;
use crate::support::netlab::write_config;
use crate::support::roots::{generated_conf, make_traversable, os_tree, write};
use crate::support::snap::{redact, redact_after};
use crate::support::text::assert_contains;
use crate::support::tools::expect_success;

use std::fs;
use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};

use crate::support::netlab::{Lab, SERVER_IFACE, SERVER_IP, in_netns};
use serde_json::Value;

const SERIAL: &str = "0c4c21e5";
const NFS_FIX: &str = "start the kernel NFS server: `systemctl enable --now nfs-server` (package nfs-kernel-server; it loads the nfsd module and mounts /proc/fs/nfsd), then `exportfs -ra`";

/// `pinetboot ARGS` in the mount namespace `ns`, and in network namespace `netns` if given.
fn pinetboot(ns: &MountNs, netns: Option<&str>, s: &Setup, args: &[&str]) -> Output {
    ns.pinetboot_cmd(netns, &s.root, &s.config)
        .args(args)
        .output()
        .expect("nsenter (util-linux)")
}

/// Runs a command in the mount namespace `ns`; it must succeed.
fn run_in(ns: &MountNs, args: &[&str]) {
    let out = ns.nsenter(None, args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
}

struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
}

impl Setup {
    /// The client's boot folder (what /tftpboot/SERIAL shows), as the host sees it.
    fn boot(&self) -> PathBuf {
        self.root.join("nfs/bw/boot/firmware")
    }
}

/// A root with a small Bookworm-like image and one client `bw`.
fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    os_tree(&root.join("srv/rootfs/bookworm"), "bookworm", 5);
    write(&root.join("etc/fstab"), b"proc /proc proc defaults 0 0\n");
    // dnsmasq serves as nobody: every folder on the way must be traversable.
    make_traversable(tmp.path());
    let config = tmp.path().join("pinetboot.yaml");
    write_config(
        &config,
        &format!(
            "images:\n  bookworm: {{source: /srv/rootfs/bookworm}}\n\
             clients:\n  bw: {{serial: {SERIAL}, mac: 'dc:a6:32:01:02:03', image: bookworm}}\n"
        ),
    );
    Setup {
        _tmp: tmp,
        root,
        config,
    }
}

fn apply(ns: &MountNs, s: &Setup) {
    expect_success(&pinetboot(ns, None, s, &["apply"]), "apply");
}

/// Starts dnsmasq on the generated drop-in (tftp-root with the --root prefix, as the host would
/// see it; its log-facility dropped for the lab's) in the server namespace and the mount namespace of the bind mounts.
fn start_dnsmasq(lab: &Lab, ns: &MountNs, s: &Setup) {
    let dir = generated_conf(&s.root, &lab.dir().join("conf.d"), false);
    lab.start_server_dnsmasq_in(&dir, &[], Some(ns.pid()));
}

/// Lab (namespaces first: the mount namespace copies /run/netns as it is then), mount
/// namespace, apply.
fn applied() -> (Setup, Lab, MountNs) {
    let s = setup();
    let lab = Lab::new();
    let ns = MountNs::new();
    apply(&ns, &s);
    (s, lab, ns)
}

struct Report {
    code: i32,
    json: Value,
    text: String,
}

impl Report {
    fn finding(&self, id: &str) -> &Value {
        self.json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == id)
            .unwrap_or_else(|| panic!("no finding {id}:\n{}", self.text))
    }

    fn severity(&self, id: &str) -> &str {
        self.finding(id)["severity"].as_str().unwrap()
    }

    fn ids(&self, severity: &str) -> Vec<&str> {
        self.json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["severity"] == severity)
            .map(|f| f["id"].as_str().unwrap())
            .collect()
    }

    /// The detail of finding `id`.
    fn detail(&self, id: &str) -> &str {
        self.finding(id)["detail"].as_str().unwrap()
    }

    /// Asserts `id` is a problem whose detail contains `needle`.
    fn assert_problem(&self, id: &str, needle: &str) {
        let f = self.finding(id);
        assert_eq!(f["severity"], "problem", "{id}:\n{}", self.text);
        let detail = self.detail(id);
        assert!(
            detail.contains(needle),
            "{id}: {detail:?} lacks {needle:?}\n{}",
            self.text
        );
        assert!(f["fix"].as_str().is_some_and(|f| !f.is_empty()));
        assert_eq!(self.code, 1, "a problem exits 1:\n{}", self.text);
    }
}

/// `pinetboot doctor` (JSON and text) inside the mount namespace and network namespace `netns`.
fn doctor(ns: &MountNs, netns: &str, s: &Setup) -> Report {
    let out = pinetboot(ns, Some(netns), s, &["doctor", "--json"]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json printed no JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let text_out = pinetboot(ns, Some(netns), s, &["doctor"]);
    let text = String::from_utf8_lossy(&text_out.stdout).into_owned();
    let code = out.status.code().unwrap();
    assert_eq!(text_out.status.code(), Some(code), "{text}");
    Report { code, json, text }
}

/// Doctor's text with the setup's paths, process ids and the lab's namespace names redacted.
fn redact_doctor(s: &Setup, text: &str) -> String {
    let text = redact(text, &[(&s.root, "[ROOT]"), (&s.config, "[CONFIG]")]);
    let text = redact_after(&redact_after(&text, "pid ", "[PID]"), "pnb-", "[LAB]");
    // IPv6 link-local addresses are random and appear only once duplicate address detection
    // is done: left out of the list of listeners.
    text.lines()
        .map(|l| {
            l.split(", ")
                .filter(|part| !part.starts_with("[fe80:"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .map(|l| l + "\n")
        .collect()
}

#[test]
fn healthy_setup_has_no_problem_but_the_missing_nfs_server() {
    let (s, lab, ns) = applied();
    start_dnsmasq(&lab, &ns, &s);
    let r = doctor(&ns, &lab.srv, &s);
    eprintln!("{}", r.text);
    insta::assert_snapshot!("healthy_text", redact_doctor(&s, &r.text));
    for id in [
        "config",
        "state",
        "plan",
        "dnsmasq.installed",
        "dnsmasq.running",
        "dnsmasq.dhcp",
        "dnsmasq.tftp",
        "dnsmasq.interface",
        "dnsmasq.dns",
        "dnsmasq.config",
        "server.address",
        "server.interface",
        "client.bw.mount",
        "client.bw.access",
        "client.bw.start4",
        "nfs.installed",
    ] {
        assert_eq!(r.severity(id), "ok", "{id}:\n{}", r.text);
    }
    // This machine's kernel has no nfsd: exactly that is the one problem.
    assert_eq!(r.ids("problem"), vec!["nfs.running"], "{}", r.text);
    assert!(r.ids("warning").is_empty(), "{}", r.text);
    let nfs = r.finding("nfs.running");
    assert_eq!(nfs["fix"], NFS_FIX);
    assert!(
        nfs["detail"]
            .as_str()
            .unwrap()
            .contains("/proc/fs/nfsd is not mounted"),
        "{}",
        r.text
    );
    assert_eq!(r.code, 1);
    assert_eq!(r.json["format_version"], 1);
    assert_eq!(r.json["summary"]["problem"], 1);
    // What the checks saw, in their own words.
    let detail = |id| r.detail(id);
    assert!(
        detail("dnsmasq.dhcp").contains(&format!("0.0.0.0%{SERVER_IFACE}:67 by dnsmasq")),
        "{}",
        r.text
    );
    assert!(
        detail("dnsmasq.tftp").contains(&format!("{SERVER_IP}:69 by dnsmasq")),
        "{}",
        r.text
    );
    assert!(detail("client.bw.access").contains("the running dnsmasq"));
    assert!(
        detail("server.address").contains(&format!("{SERVER_IP}/24 on {SERVER_IFACE}")),
        "{}",
        r.text
    );
    // Plain text: ok/warn/FAIL marks, the fix under the finding, a summary.
    assert_contains(
        &r.text,
        "ok   dnsmasq is running in this network namespace: pid ",
    );
    assert_contains(&r.text, "FAIL the kernel NFS server is running: ");
    assert_contains(&r.text, &format!("     fix: {NFS_FIX}\n"));
    assert!(r.text.ends_with(", 0 warnings, 1 problem.\n"), "{}", r.text);
}

#[test]
fn dnsmasq_not_running() {
    let (s, lab, ns) = applied();
    let r = doctor(&ns, &lab.srv, &s);
    r.assert_problem("dnsmasq.running", "no process named dnsmasq");
    r.assert_problem("dnsmasq.dhcp", "nothing listens on UDP 67");
    r.assert_problem("dnsmasq.tftp", "nothing listens on UDP 69");
    assert_eq!(r.severity("client.bw.mount"), "ok", "{}", r.text);
}

#[test]
fn bind_mount_unmounted() {
    let (s, lab, ns) = applied();
    start_dnsmasq(&lab, &ns, &s);
    run_in(
        &ns,
        &[
            "umount",
            s.root.join("tftpboot").join(SERIAL).to_str().unwrap(),
        ],
    );
    let r = doctor(&ns, &lab.srv, &s);
    r.assert_problem(
        "client.bw.mount",
        &format!("nothing is mounted on /tftpboot/{SERIAL}"),
    );
    let fix = r.finding("client.bw.mount")["fix"].as_str().unwrap();
    assert!(
        fix.contains("`pinetboot mount` (mounts /nfs/bw/boot/firmware by descriptor")
            && !fix.contains("mount --bind"),
        "{fix}"
    );
    assert_eq!(r.severity("dnsmasq.running"), "ok", "{}", r.text);
}

#[test]
fn serial_folder_unreadable_by_nobody() {
    let (s, lab, ns) = applied();
    start_dnsmasq(&lab, &ns, &s);
    fs::set_permissions(s.boot(), fs::Permissions::from_mode(0o700)).unwrap();
    let r = doctor(&ns, &lab.srv, &s);
    let target = s.root.join("tftpboot").join(SERIAL);
    r.assert_problem(
        "client.bw.access",
        &format!("{} (0700, owner 0:0) cannot be entered", target.display()),
    );
    assert!(
        r.detail("client.bw.access").contains("uid 65534"),
        "dnsmasq serves as nobody:\n{}",
        r.text
    );
    assert_eq!(r.severity("client.bw.mount"), "ok", "{}", r.text);
}

#[test]
fn start4_elf_missing() {
    let (s, lab, ns) = applied();
    start_dnsmasq(&lab, &ns, &s);
    fs::remove_file(s.boot().join("start4.elf")).unwrap();
    let r = doctor(&ns, &lab.srv, &s);
    r.assert_problem("client.bw.start4", "start4.elf is missing");
    assert_eq!(r.severity("client.bw.access"), "ok", "{}", r.text);
}

#[test]
fn server_address_not_on_any_interface() {
    let s = setup();
    let lab = Lab::new();
    // A namespace without the server's address (made before the mount namespace, so its
    // /run/netns handle is visible there).
    let other = lab.add_pi([0xdc, 0xa6, 0x32, 0x09, 0x09, 0x09]);
    let ns = MountNs::new();
    apply(&ns, &s);
    let r = doctor(&ns, &other.netns, &s);
    r.assert_problem(
        "server.address",
        &format!("no interface in this network namespace has {SERVER_IP}"),
    );
    r.assert_problem(
        "server.interface",
        &format!("there is no interface {SERVER_IFACE}"),
    );
}

#[test]
fn second_dnsmasq_config_claims_the_boot_network() {
    let (s, lab, ns) = applied();
    start_dnsmasq(&lab, &ns, &s);
    write(
        &s.root.join("etc/dnsmasq.d/lan.conf"),
        b"# the office LAN\ndhcp-range=10.99.0.50,10.99.0.99,12h\npxe-service=x86PC,\"Boot PC\",pxelinux\nport=53\ndhcp-range=192.168.7.10,192.168.7.20,12h\n",
    );
    // Not read by dnsmasq's conf-dir: a backup.
    write(
        &s.root.join("etc/dnsmasq.d/old.conf.dpkg-old"),
        b"dhcp-range=10.99.0.0,proxy\n",
    );
    let r = doctor(&ns, &lab.srv, &s);
    let findings: Vec<&Value> = r.json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["id"] == "dnsmasq.config")
        .collect();
    let details: Vec<(&str, &str)> = findings
        .iter()
        .map(|f| {
            (
                f["severity"].as_str().unwrap(),
                f["detail"].as_str().unwrap(),
            )
        })
        .collect();
    let expected = [
        (
            "problem",
            "/etc/dnsmasq.d/lan.conf:2: dhcp-range=10.99.0.50,10.99.0.99,12h also serves the boot network 10.99.0.0/24",
        ),
        ("problem", "/etc/dnsmasq.d/lan.conf:3: pxe-service="),
        ("warning", "/etc/dnsmasq.d/lan.conf:4: port=53"),
    ];
    assert_eq!(details.len(), expected.len(), "{}", r.text);
    for ((severity, detail), (want_severity, want_start)) in details.iter().zip(expected) {
        assert_eq!(*severity, want_severity, "{detail}");
        assert!(detail.starts_with(want_start), "{}", r.text);
    }
    assert_eq!(r.code, 1);
}

#[test]
fn udp_67_held_by_something_else() {
    let (s, lab, ns) = applied();
    let _socket = in_netns(&lab.srv, || UdpSocket::bind("0.0.0.0:67")).unwrap();
    let r = doctor(&ns, &lab.srv, &s);
    r.assert_problem(
        "dnsmasq.dhcp",
        &format!("(pid {}), not dnsmasq", std::process::id()),
    );
    assert!(
        r.detail("dnsmasq.dhcp")
            .starts_with("UDP 67 (0.0.0.0:67) is held by "),
        "{}",
        r.text
    );
}

#[test]
fn invalid_config_is_a_problem_and_the_rest_still_runs() {
    let s = setup();
    fs::write(&s.config, "server: {address: nope}\n").unwrap();
    let out = Command::new(crate::support::tools::bin())
        .arg("--root")
        .arg(&s.root)
        .arg("--config")
        .arg(&s.config)
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let first = &json["findings"][0];
    assert_eq!(first["id"], "config");
    assert_eq!(first["severity"], "problem");
    assert!(
        json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["id"] == "dnsmasq.installed"),
        "{json}"
    );
}
