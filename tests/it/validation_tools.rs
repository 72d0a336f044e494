//! Generated files checked by their own tools (DESIGN invariant 7): the exports drop-in by the
//! real `exportfs` (isolated: private mount and network namespace, temporary /etc/exports(.d)
//! and /var/lib/nfs), the dnsmasq drop-in by
//! `dnsmasq --test`; and an apply whose exports exportfs rejects stops before the file lands.
//! Needs root, nfs-kernel-server (exportfs), util-linux (unshare) and dnsmasq.

use std::fs;
use std::path::Path;
use std::process::Command;

use pinetboot::validate_tools::{exports_check, exports_under};

const CONFIG: &str = "server: {address: 10.99.0.2, network: 10.99.0.0/24}\n\
images:\n  bookworm: {source: /srv/rootfs/bookworm}\n\
defaults: {image: bookworm}\n\
clients:\n  raspi1: {serial: 0c4c21e5}\n  raspi2: {serial: abcd1234, address: 10.99.0.50}\n";

fn need(tool: &str) {
    assert!(
        pinetboot::host::tools::which(tool).is_some(),
        "this test needs {tool} (apt install nfs-kernel-server util-linux dnsmasq)"
    );
}

fn need_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test needs root (exportfs runs in a private mount namespace)"
    );
}

#[test]
fn generated_exports_pass_exportfs_needs_root() {
    need_root();
    need("exportfs");
    let valid = pinetboot::config::load_str(Path::new("t.yaml"), CONFIG).unwrap();
    let text = pinetboot::render::exports::render(&valid);
    assert!(text.contains("/nfs/raspi1 10.99.0.0/24("), "{text}");
    let root = tempfile::tempdir().unwrap();
    for c in ["raspi1", "raspi2"] {
        fs::create_dir_all(root.path().join("nfs").join(c)).unwrap();
    }
    let scratch = tempfile::tempdir().unwrap();
    let out = exports_check(
        "/etc/exports.d/pinetboot.exports",
        &exports_under(root.path(), &text),
        scratch.path(),
    )
    .unwrap();
    // `exportfs -s` lists what the kernel would export.
    let r = root.path().display();
    assert!(
        out.contains(&format!("{r}/nfs/raspi1  10.99.0.0/24(")),
        "{out}"
    );
    assert!(
        out.contains(&format!("{r}/nfs/raspi2  10.99.0.50(")),
        "{out}"
    );
    // The host's own files were not touched.
    assert!(
        !Path::new("/etc/exports.d/pinetboot.exports").exists() || {
            fs::read_to_string("/etc/exports.d/pinetboot.exports").unwrap() != text
        }
    );
}

#[test]
fn broken_exports_fail_with_exportfs_own_message_needs_root() {
    need_root();
    need("exportfs");
    let root = tempfile::tempdir().unwrap();
    fs::create_dir_all(root.path().join("nfs/a")).unwrap();
    let r = root.path().display();
    // Two comment lines: exportfs counts only the others, pinetboot gives the file's line.
    let bad = format!(
        "# head\n# er\n{r}/nfs/a 10.0.0.0/24(rw,no_subtree_check)\n{r}/nfs/a 10.0.0.1(rw,bogus)\n"
    );
    let scratch = tempfile::tempdir().unwrap();
    let e = exports_check("/etc/exports.d/pinetboot.exports", &bad, scratch.path()).unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.starts_with("exportfs rejects /etc/exports.d/pinetboot.exports (line 4 of the file): "),
        "{msg}"
    );
    assert!(
        msg.contains("exportfs: /etc/exports.d/pinetboot.exports:2: unknown keyword \"bogus\""),
        "{msg}"
    );
    // A path that does not exist: exportfs's message, no line number.
    let e = exports_check(
        "/etc/exports.d/pinetboot.exports",
        &format!("{r}/nfs/missing 10.0.0.0/24(rw,no_subtree_check)\n"),
        scratch.path(),
    )
    .unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.starts_with("exportfs rejects /etc/exports.d/pinetboot.exports: ")
            && msg.contains(&format!(
                "exportfs: Failed to stat {r}/nfs/missing: No such file or directory"
            )),
        "{msg}"
    );
}

#[test]
fn broken_dnsmasq_drop_in_fails_with_dnsmasq_own_message() {
    need("dnsmasq");
    let valid = pinetboot::config::load_str(Path::new("t.yaml"), CONFIG).unwrap();
    let good = pinetboot::render::dnsmasq::render(&valid);
    let scratch = tempfile::tempdir().unwrap();
    pinetboot::handlers::dnsmasq_test("/etc/dnsmasq.d/pinetboot.conf", &good, scratch.path())
        .unwrap();
    let bad = good.replace("dhcp-range=10.99.0.0,proxy", "dhcp-range=10.99.0.300,proxy");
    assert_ne!(bad, good);
    let e =
        pinetboot::handlers::dnsmasq_test("/etc/dnsmasq.d/pinetboot.conf", &bad, scratch.path())
            .unwrap_err();
    let msg = format!("{e:#}");
    let line = bad
        .lines()
        .position(|l| l.starts_with("dhcp-range="))
        .unwrap()
        + 1;
    assert!(
        msg.starts_with(
            "dnsmasq rejects the generated /etc/dnsmasq.d/pinetboot.conf; nothing was written: "
        ),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("bad dhcp-range at line {line} of ")),
        "{msg}"
    );
}

/// An apply whose exports `exportfs` rejects (a `fsid` pinetboot's own validation lets
/// through) stops with exportfs's message and the file name, and the file never lands.
#[test]
fn apply_stops_when_exportfs_rejects_the_exports_needs_root() {
    need_root();
    need("exportfs");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let tree = root.join("srv/rootfs/bookworm");
    fs::create_dir_all(tree.join("boot/firmware")).unwrap();
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(tree.join("etc/os-release"), "VERSION_CODENAME=bookworm\n").unwrap();
    fs::write(tree.join("etc/fstab"), "proc /proc proc defaults 0 0\n").unwrap();
    fs::write(
        tree.join("boot/firmware/cmdline.txt"),
        "console=tty1 rootwait\n",
    )
    .unwrap();
    fs::write(tree.join("boot/firmware/start4.elf"), "x").unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/fstab"), "proc /proc proc defaults 0 0\n").unwrap();
    let config = tmp.path().join("pinetboot.yaml");
    fs::write(
        &config,
        CONFIG.replace(
            "defaults:",
            "nfs: {options: [rw, no_subtree_check, fsid=xyz]}\ndefaults:",
        ),
    )
    .unwrap();
    // In a private mount namespace: apply makes bind mounts.
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "--"])
        .arg(env!("CARGO_BIN_EXE_pinetboot"))
        .arg("--root")
        .arg(&root)
        .arg("--config")
        .arg(&config)
        .arg("apply")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("/etc/exports.d/pinetboot.exports was not written")
            && stderr.contains("bad fsid \"fsid=xyz\""),
        "{stderr}"
    );
    assert!(!root.join("etc/exports.d/pinetboot.exports").exists());
    assert!(
        !root.join("etc/dnsmasq.d/pinetboot.conf").exists(),
        "apply stopped there"
    );
}
