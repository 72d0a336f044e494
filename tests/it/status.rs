//! `pinetboot status` and `discover` on a real boot log: `pinetboot apply` on a throwaway root
//! (bind mounts inside a private mount namespace), the real dnsmasq started on the generated
//! drop-in (its `tftp-root` and `log-facility` resolved under the root, as the host would see
//! them) inside the namespace lab, one declared and one undeclared emulated Pi 4 booting, then
//! the real binaries reading the log dnsmasq wrote under `--root`. Needs root, `ip`,
//! `unshare`, `nsenter` and `dnsmasq`.

use crate::support::mountns::MountNs;
use crate::support::netlab::server_yaml;
use crate::support::roots::{generated_conf, make_traversable, os_tree, write};
use crate::support::tools::expect_success;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::support::netlab::Lab;
use crate::support::pi4::{EmulatedPi, Outcome, Step};

const BW_MAC: [u8; 6] = [0xdc, 0xa6, 0x32, 0x01, 0x02, 0x03];
const STRANGER_MAC: [u8; 6] = [0xdc, 0xa6, 0x32, 0xaa, 0xbb, 0xcc];

/// Two declared clients: `bw` by MAC, `idle` without a MAC (so any Raspberry Pi MAC is
/// offered a boot, and an undeclared Pi reaches TFTP). No `defaults.image`.
const CLIENTS: &str = "  bw: {serial: 0c4c21e5, mac: 'dc:a6:32:01:02:03', image: bookworm}\n  idle: {serial: 11112222, image: bookworm}\n";

fn config_text() -> String {
    format!(
        "{}images:\n  bookworm: {{source: /srv/rootfs/bookworm}}\n\
         clients:\n{CLIENTS}",
        server_yaml()
    )
}

fn pinetboot(root: &Path, config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pinetboot"))
        .arg("--root")
        .arg(root)
        .arg("--config")
        .arg(config)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

#[test]
fn status_and_discover_read_the_log_of_a_real_boot() {
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let root = tmp.path().join("root");
    os_tree(&root.join("srv/rootfs/bookworm"), "bookworm", 3);
    write(&root.join("etc/fstab"), b"proc /proc proc defaults 0 0\n");
    make_traversable(&root);
    let config = tmp.path().join("pinetboot.yaml");
    fs::write(&config, config_text()).unwrap();

    // Before any boot: no log yet, everyone never seen.
    let out = expect_success(&pinetboot(&root, &config, &["status", "--json"]), "status");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["log"]["source"], "none", "{v}");
    assert_eq!(v["clients"][0]["seen"], false);

    let lab = Lab::new();
    let ns = MountNs::new();
    expect_success(&ns.pinetboot(&root, &config, &["apply"]), "apply");
    let log_dir = root.join("var/log/pinetboot");
    assert!(log_dir.is_dir(), "apply makes the log folder");

    // The generated drop-in, with host paths resolved under the root as the host sees them.
    let text = fs::read_to_string(root.join("etc/dnsmasq.d/pinetboot.conf")).unwrap();
    assert!(
        text.contains("\nlog-facility=/var/log/pinetboot/dnsmasq.log\n"),
        "{text}"
    );
    let conf_dir = generated_conf(&root, &lab.dir().join("conf.d"), true);
    // The drop-in's log-facility wins over the lab's --log-facility: let the lab watch the
    // file dnsmasq really writes (the lab names its first server's log server0.log).
    let log = log_dir.join("dnsmasq.log");
    std::os::unix::fs::symlink(&log, lab.dir().join("server0.log")).unwrap();
    let server = lab.start_server_dnsmasq_in(&conf_dir, &[], Some(ns.pid()));
    assert_eq!(server.log, lab.dir().join("server0.log"));
    assert!(fs::symlink_metadata(&log).unwrap().is_file());

    let bw = EmulatedPi::new(&lab.add_pi(BW_MAC), 0x0c4c_21e5);
    let report = bw.boot(&root.join("nfs/bw/boot/firmware")).unwrap();
    assert!(report.booted() && report.all_ok(), "{report}");
    let last = report
        .entries
        .iter()
        .rev()
        .find(|e| e.step == Step::Get && matches!(e.outcome, Outcome::Fetched { .. }))
        .expect("files fetched")
        .path
        .strip_prefix("0c4c21e5/")
        .expect("served from the serial folder")
        .to_owned();
    let stranger = EmulatedPi::new(&lab.add_pi(STRANGER_MAC), 0xabcd_1234);
    let sr = stranger.boot(&lab.dir().join("nothing")).unwrap();
    assert!(!sr.anything_found(), "{sr}");
    let (bw_ip, stranger_ip) = (report.ip.to_string(), sr.ip.to_string());
    server
        .wait_for_log(Duration::from_secs(10), |t| {
            t.contains(&format!("0c4c21e5/{last} to {bw_ip}"))
                && t.contains(&format!("/tftpboot/start.elf not found for {stranger_ip}"))
        })
        .unwrap_or_else(|t| panic!("log incomplete:\n{t}"));

    // status --json
    let out = expect_success(
        &pinetboot(&root, &config, &["status", "--json"]),
        "status --json",
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["format_version"], 1);
    assert_eq!(
        v["log"],
        serde_json::json!({"source": "file", "path": "/var/log/pinetboot/dnsmasq.log"})
    );
    let c = &v["clients"][0];
    assert_eq!(
        (c["name"].as_str(), c["seen"].as_bool()),
        (Some("bw"), Some(true)),
        "{v}"
    );
    assert_eq!(c["dhcp"]["mac"], "dc:a6:32:01:02:03");
    assert_eq!(c["dhcp"]["exchange"], "PXE proxy");
    assert_eq!(c["dhcp"]["boot_menu"], true);
    assert_eq!(c["tftp"]["last_file"]["file"], last.as_str());
    assert_eq!(
        c["tftp"]["last_file"]["path"],
        format!("{}/tftpboot/0c4c21e5/{last}", root.display())
    );
    assert_eq!(c["tftp"]["last_file"]["ip"], bw_ip.as_str());
    assert_eq!(c["tftp"]["last_ip"], bw_ip.as_str());
    let fetched = report
        .entries
        .iter()
        .filter(|e| e.step == Step::Get && matches!(e.outcome, Outcome::Fetched { .. }))
        .count();
    assert_eq!(c["tftp"]["sent"], fetched, "{v}");
    let idle = &v["clients"][1];
    assert_eq!(
        *idle,
        serde_json::json!({"name": "idle", "serial": "11112222", "mac": null, "seen": false, "dhcp": null, "tftp": null})
    );
    assert_eq!(v["undeclared"][0]["serial"], "abcd1234", "{v}");
    assert_eq!(v["undeclared"][0]["ip"], stranger_ip.as_str());
    assert_eq!(v["undeclared"].as_array().unwrap().len(), 1, "{v}");

    // status (table)
    let out = expect_success(&pinetboot(&root, &config, &["status"]), "status");
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        out.lines().next(),
        Some("Log: /var/log/pinetboot/dnsmasq.log"),
        "{out}"
    );
    let bw_row = rows
        .iter()
        .find(|r| r.first() == Some(&"bw"))
        .expect("bw row");
    assert!(
        bw_row.contains(&last.as_str()) && bw_row.contains(&bw_ip.as_str()),
        "{out}"
    );
    assert!(bw_row.contains(&"offered"), "{out}");
    let idle_row = rows
        .iter()
        .find(|r| r.first() == Some(&"idle"))
        .expect("idle row");
    assert_eq!(
        idle_row,
        &["idle", "11112222", "-", "never", "seen"],
        "{out}"
    );
    assert!(
        out.contains(&format!("  abcd1234 from {stranger_ip} at ")),
        "{out}"
    );

    // discover: a stanza that validates when pasted under `clients:`.
    let out = expect_success(&pinetboot(&root, &config, &["discover"]), "discover");
    let expected_head = "# Raspberry Pis that asked for files but are not declared; paste under `clients:`.\n  pi-abcd1234:\n    serial: abcd1234  # seen ";
    assert!(out.starts_with(expected_head), "{out}");
    assert!(
        out.ends_with(&format!(
            " from {stranger_ip}; MAC not in the log\n    image: bookworm\n"
        )),
        "{out}"
    );
    let pasted = format!("{}{out}", config_text());
    let valid = pinetboot::config::load_str(Path::new("pasted.yaml"), &pasted)
        .unwrap_or_else(|e| panic!("pasted stanza does not validate: {e:?}\n{pasted}"));
    assert_eq!(valid.clients["pi-abcd1234"].serial, "abcd1234");
    assert_eq!(valid.clients["pi-abcd1234"].image, "bookworm");
    assert_eq!(valid.clients.len(), 3);
}

/// `status` (table and `--json`) and `discover` on the recorded dnsmasq logs in `tests/data`,
/// laid at the drop-in's log path under a throwaway root, as snapshots. Needs no root.
#[test]
fn status_and_discover_of_recorded_logs() {
    for log in ["server-oui", "server-hosts-other-mac", "shared-syslog"] {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/data/{log}.log"));
        fs::create_dir_all(root.join("var/log/pinetboot")).unwrap();
        fs::copy(&data, root.join("var/log/pinetboot/dnsmasq.log")).unwrap();
        let config = tmp.path().join("pinetboot.yaml");
        fs::write(&config, config_text()).unwrap();
        let mut text = String::new();
        for args in [&["status"][..], &["status", "--json"], &["discover"]] {
            let out = pinetboot(&root, &config, args);
            text.push_str(&format!(
                "=== {}\nexit code: {:?}\n--- stdout\n{}--- stderr\n{}",
                args.join(" "),
                out.status.code(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let text = crate::support::snap::redact(&text, &[(&root, "[ROOT]"), (&config, "[CONFIG]")]);
        insta::assert_snapshot!(format!("recorded_{log}"), text);
    }
}
