//! Invariant 9: a client root is hostile. After a first apply, something planted in raspi1's
//! root (symlinks out, a fifo, a hardlink, `..` and absolute links on the way, a swap between
//! plan and apply) must make raspi1 a conflict — in the text and JSON plan — while apply exits
//! 1, raspi2 still converges, and nothing outside raspi1's root changes (the whole throwaway
//! root minus that client root, plus a canary folder outside the root). Needs root.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use crate::support::fixture::*;
use crate::support::snapshot::*;
use crate::support::text::{assert_contains, assert_lacks};
use crate::support::tools::mode_of;
use serde_json::Value;

fn setup() -> Env {
    let env = Env::with_clients(&["raspi1", "raspi2"], false);
    env.apply_ok();
    env.assert_converged();
    // raspi2 drifts, so the apply under attack has work to do for the other client.
    std::fs::write(env.path("/nfs/raspi2/etc/hostname"), "drifted\n").unwrap();
    env
}

/// The canary file `rel` outside the root still holds `text`.
#[track_caller]
fn assert_outside(env: &Env, rel: &str, text: &str) {
    let now = std::fs::read_to_string(env.outside.join(rel)).unwrap();
    assert_eq!(now, text, "{rel} outside the root changed");
}

/// [`setup`], then `rel` in raspi1's root replaced by a symlink to `to(env)`, then the
/// [`attack`] checks.
fn symlink_attack(rel: &str, to: impl FnOnce(&Env) -> PathBuf) -> Env {
    let env = setup();
    replace_with_symlink(&victim(&env, rel), &to(&env));
    attack(&env, rel);
    env
}

fn victim(env: &Env, rel: &str) -> PathBuf {
    env.path("/nfs/raspi1").join(rel)
}

/// Everything that must not change: the temp folder (root, config, canary) minus raspi1's root.
fn outside_snapshot(env: &Env) -> Snapshot {
    let base = env.root.parent().unwrap();
    snapshot_without(base, &["root/nfs/raspi1"])
}

/// Runs plan (text, JSON), apply and plan again with a generous timeout, then asserts: nothing
/// outside raspi1's root changed (but raspi2's repaired hostname), raspi1 is a conflict naming
/// `rel`, apply exits 1, raspi2 converged.
fn attack(env: &Env, rel: &str) {
    let hostname2 = PathBuf::from("root/nfs/raspi2/etc/hostname");
    let before = outside_snapshot(env);
    let plan = env.pt_timeout(60, &["plan"]);
    let json = env.pt_timeout(60, &["plan", "--json"]);
    let apply = env.pt_timeout(60, &["apply"]);
    let after = outside_snapshot(env);
    let again = env.pt_timeout(60, &["plan", "--detailed-exitcode"]);
    // Shown by the harness when the test fails.
    eprintln!(
        "--- plan\n{}\n--- apply\n{}{}\n--- plan again\n{}",
        plan.stdout, apply.stdout, apply.stderr, again.stdout
    );

    // 1. Nothing outside the attacked root was read into or written through.
    let strip = |s: &Snapshot| -> Snapshot {
        s.iter()
            .filter(|(p, _)| **p != hostname2 && p.as_path() != Path::new("root/nfs/raspi2/etc"))
            .map(|(p, e)| (p.clone(), e.clone()))
            .collect()
    };
    assert_same(
        &strip(&before),
        &strip(&after),
        Cmp::CONTENT,
        "outside raspi1's root",
    );
    assert_eq!(
        env.read("/nfs/raspi2/etc/hostname"),
        "raspi2\n",
        "raspi2 did not converge"
    );
    for out in [&plan.stdout, &json.stdout, &apply.stdout, &apply.stderr] {
        assert!(
            !out.contains("outside secret") && !out.contains("outside-host"),
            "outside content leaked into output:\n{out}"
        );
    }

    // 2. The plan shows raspi1 as a conflict, and only raspi2's change; a conflict exits 1.
    plan.expect_code(1);
    let want = format!("/nfs/raspi1/{rel}");
    assert_contains(
        &plan.stdout,
        "\nConflicts (these clients are left untouched):\n",
    );
    let line = plan
        .stdout
        .lines()
        .find(|l| l.starts_with("  ! client raspi1: "))
        .unwrap_or_else(|| panic!("no conflict line for raspi1:\n{}", plan.stdout));
    assert!(
        line.contains(&want),
        "conflict does not name {want}: {line}"
    );
    assert!(
        !plan
            .stdout
            .lines()
            .any(|l| l.starts_with("  ! client raspi2")),
        "{}",
        plan.stdout
    );
    assert_contains(&plan.stdout, "  ~ file /nfs/raspi2/etc/hostname\n");
    assert!(
        !plan.stdout.lines().any(|l| (l.starts_with("  + ")
            || l.starts_with("  ~ ")
            || l.starts_with("  - "))
            && l.contains("/nfs/raspi1/")),
        "changes planned inside the attacked root:\n{}",
        plan.stdout
    );
    json.expect_code(1);
    let v: Value = serde_json::from_str(&json.stdout).unwrap();
    let conflicts = v["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1, "{}", json.stdout);
    assert_eq!(conflicts[0]["client"], "raspi1");
    assert!(
        conflicts[0]["message"].as_str().unwrap().contains(&want),
        "{}",
        json.stdout
    );

    // 3. apply: exit 1, raspi2 repaired.
    apply.expect_code(1);
    assert!(
        apply
            .stderr
            .starts_with("error: 1 client left untouched because of conflicts:\n  client raspi1: "),
        "{}",
        apply.stderr
    );
    assert_contains(&apply.stdout, "~ file /nfs/raspi2/etc/hostname\n");

    // 4. Afterwards: nothing pending but the standing conflict, which is still an error.
    again.expect_code(1);
    assert_contains(&again.stdout, "  ! client raspi1: ");
    assert_lacks(&again.stdout, "Plan:");
}

fn replace_with_symlink(path: &Path, target: &Path) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    if meta.is_dir() {
        std::fs::rename(path, path.with_extension("real")).unwrap();
    } else {
        std::fs::remove_file(path).unwrap();
    }
    symlink(target, path).unwrap();
}

#[test]
fn cmdline_txt_symlink_to_a_file_outside() {
    let env = symlink_attack("boot/firmware/cmdline.txt", |env| {
        env.outside.join("secret")
    });
    assert_outside(&env, "secret", "outside secret\n");
}

#[test]
fn etc_symlink_to_a_folder_outside() {
    symlink_attack("etc", |env| env.outside.join("etc"));
}

#[test]
fn etc_fstab_symlink_to_the_hosts_fstab() {
    let env = setup();
    let host_fstab = env.path("/etc/fstab");
    replace_with_symlink(&victim(&env, "etc/fstab"), &host_fstab);
    attack(&env, "etc/fstab");
}

#[test]
fn boot_firmware_symlink_to_slash_never_becomes_the_tftp_folder() {
    let env = setup();
    let tftp = env.path(&format!("/tftpboot/{S1}"));
    // The mount goes away too, so pinetboot wants to mount again.
    env.ns.sh(&format!("umount '{}'", tftp.display()));
    replace_with_symlink(&victim(&env, "boot/firmware"), Path::new("/"));
    attack(&env, "boot/firmware");
    assert!(
        env.ns.mounts_under(&tftp).is_empty(),
        "the TFTP folder was mounted again"
    );
    assert_ne!(
        env.ns.dev_ino(&tftp),
        env.ns.dev_ino(Path::new("/")),
        "the TFTP folder is /"
    );
    assert_ne!(
        env.ns.dev_ino(&tftp),
        env.ns.dev_ino(&env.root),
        "the TFTP folder is the host root"
    );
    // raspi2's mount is untouched.
    assert_eq!(
        env.ns.dev_ino(&env.path(&format!("/tftpboot/{S2}"))),
        env.ns.dev_ino(&env.path("/nfs/raspi2/boot/firmware"))
    );
}

#[test]
fn fifo_at_etc_hostname_does_not_block() {
    let env = setup();
    let p = victim(&env, "etc/hostname");
    std::fs::remove_file(&p).unwrap();
    let st = std::process::Command::new("mkfifo")
        .arg(&p)
        .status()
        .unwrap();
    assert!(st.success());
    attack(&env, "etc/hostname");
}

#[test]
fn hardlink_from_etc_hostname_to_an_outside_file() {
    let env = setup();
    let p = victim(&env, "etc/hostname");
    std::fs::remove_file(&p).unwrap();
    std::fs::hard_link(env.outside.join("etc/hostname"), &p).unwrap();
    attack(&env, "etc/hostname");
    assert_outside(&env, "etc/hostname", "outside-host\n");
}

#[test]
fn dotdot_symlink_in_an_intermediate_folder() {
    let env = symlink_attack("root/.ssh", |_| PathBuf::from("../../.."));
    assert!(!env.root.join("authorized_keys").exists());
    assert!(!env.path("/nfs/authorized_keys").exists());
}

#[test]
fn absolute_symlink_in_an_intermediate_folder() {
    let env = symlink_attack("etc/systemd/system", |env| env.outside.join("systemd"));
    assert_eq!(
        std::fs::read_dir(env.outside.join("systemd"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn swap_between_plan_and_apply() {
    let env = setup();
    std::fs::write(victim(&env, "etc/hostname"), "drifted\n").unwrap();
    let plan = env.pt(&["plan"]);
    plan.expect_code(0);
    assert_contains(&plan.stdout, "  ~ file /nfs/raspi1/etc/hostname\n");
    assert_lacks(&plan.stdout, "! client");
    // Planted after the plan the admin reviewed.
    replace_with_symlink(&victim(&env, "etc/hostname"), &env.outside.join("secret"));
    attack(&env, "etc/hostname");
    assert_outside(&env, "secret", "outside secret\n");
}

#[test]
fn a_symlink_planted_in_the_boot_folder_is_never_followed_through_the_tftp_folder() {
    let env = setup();
    // The client (root on its Pi) plants links to a host secret in its own boot folder.
    let secret = env.outside.join("secret");
    std::os::unix::fs::symlink(&secret, victim(&env, "boot/firmware/leak")).unwrap();
    std::os::unix::fs::symlink(
        "../../../../../../../../etc/hostname",
        victim(&env, "boot/firmware/up"),
    )
    .unwrap();
    // Through the TFTP folder (what dnsmasq serves), neither is followed.
    let tftp = env.path(&format!("/tftpboot/{S1}"));
    for name in ["leak", "up"] {
        let r = env.ns.run("cat", &[tftp.join(name)]);
        assert_ne!(
            r.status.code(),
            Some(0),
            "{name} was followed: {}",
            r.stdout
        );
        assert!(
            r.stderr.contains("Too many levels of symbolic links"),
            "{name}: {}",
            r.stderr
        );
    }
    // The mount is read-only, too: nothing is written into the client's tree through it.
    let r = env.ns.run("touch", &[tftp.join("new-file")]);
    assert_ne!(r.status.code(), Some(0));
    assert_contains(&r.stderr, "Read-only file system");
    // Regular boot files are served as before.
    env.ns
        .sh(&format!("test -s {}", tftp.join("start4.elf").display()));
}

#[test]
fn a_bind_mount_remounted_writable_is_repaired() {
    let env = setup();
    env.apply_ok();
    let tftp = env.path(&format!("/tftpboot/{S1}"));
    env.ns
        .sh(&format!("mount -o remount,bind,rw {}", tftp.display()));
    let plan = env.pt(&["plan"]);
    plan.expect_code(0);
    assert_contains(
        &plan.stdout,
        &format!(
            "~ bind mount /tftpboot/{S1} (mounted from elsewhere or without ro,nosuid,nodev,noexec,nosymfollow"
        ),
    );
    env.apply_ok();
    env.assert_converged();
}

/// A character device with a major number no driver has: opening it fails (ENXIO), so a
/// conflict that says "device" rather than an I/O error proves it was never opened.
fn plant_device(path: &Path) {
    let _ = std::fs::remove_file(path);
    let st = std::process::Command::new("mknod")
        .arg(path)
        .args(["c", "234", "77"])
        .status()
        .unwrap();
    assert!(st.success(), "mknod (needs root)");
}

#[test]
fn a_device_planted_as_a_fact_file_is_never_opened() {
    // etc/passwd is only read (where root's home is), never written.
    let env = setup();
    plant_device(&victim(&env, "etc/passwd"));
    attack(&env, "etc/passwd");
    let plan = env.pt(&["plan"]);
    assert!(
        plan.stdout
            .contains("etc/passwd is a fifo, socket or device, not a file")
            && plan
                .stdout
                .contains("something inside /nfs/raspi1 is not what a Raspberry Pi OS root holds"),
        "{}",
        plan.stdout
    );
}

#[test]
fn a_device_in_the_image_is_a_conflict_that_names_the_image() {
    let env = Env::new();
    let image = env.add_image("bookworm-lite", Release::Bookworm, false);
    plant_device(&image.join("etc/passwd"));
    env.write_config(
        &Cfg::default().image("bookworm-lite").client(ClientCfg::new(
            "raspi1",
            S1,
            "bookworm-lite",
        )),
    );
    let plan = env.pt(&["plan"]);
    assert!(
        plan.stdout.contains("etc/passwd is a fifo, socket or device, not a file")
            && plan.stdout.contains(
                "the image bookworm-lite (/srv/rootfs/bookworm-lite) holds something pinetboot will not read"
            )
            && !plan.stdout.contains("something inside /nfs/raspi1"),
        "{}",
        plan.stdout
    );
    assert!(!env.path("/nfs/raspi1").exists());
}

#[test]
fn a_host_key_the_pi_made_unreadable_is_left_alone_and_stops_nothing() {
    // Root on the Pi replaces its host key with garbage and deletes the public half: that is
    // the Pi's own business. It must not stop the apply for every other client (an error
    // that is not a conflict aborts the whole apply).
    let env = setup();
    let key = victim(&env, "etc/ssh/ssh_host_ed25519_key");
    std::fs::write(&key, "not a key\n").unwrap();
    std::fs::remove_file(victim(&env, "etc/ssh/ssh_host_ed25519_key.pub")).unwrap();
    let apply = env.pt(&["apply"]);
    apply.expect_code(0);
    env.assert_converged();
    assert_eq!(std::fs::read_to_string(&key).unwrap(), "not a key\n");
    assert!(!victim(&env, "etc/ssh/ssh_host_ed25519_key.pub").exists());
    assert_eq!(env.read("/nfs/raspi2/etc/hostname"), "raspi2\n");
    // A public half that can be derived is restored from the Pi's own key.
    std::fs::remove_file(env.path("/nfs/raspi2/etc/ssh/ssh_host_ed25519_key.pub")).unwrap();
    let plan = env.pt(&["plan"]);
    assert_contains(
        &plan.stdout,
        "+ file /nfs/raspi2/etc/ssh/ssh_host_ed25519_key.pub (public half of the client's SSH host key)",
    );
    env.apply_ok();
    env.assert_converged();
    let public = env.read("/nfs/raspi2/etc/ssh/ssh_host_ed25519_key.pub");
    let key_b64 = public.split_whitespace().nth(1).unwrap();
    assert!(env.read("/var/lib/pinetboot/known_hosts").contains(key_b64));
}

// ---------------------------------------------------------------------------------------------
// Boot-time mounts (issue 13, item 1): no path inside a client root is ever handed to mount(8).

/// Stands in for a server reboot: every bind mount under /tftpboot goes.
fn unmount_all_tftp(env: &Env) {
    for serial in [S1, S2] {
        let t = env.path(&format!("/tftpboot/{serial}"));
        env.ns.sh(&format!(
            "while mountpoint -q '{0}'; do umount '{0}'; done",
            t.display()
        ));
    }
}

#[test]
fn a_boot_folder_replaced_by_a_symlink_is_unmounted_and_never_mounted_at_the_next_boot() {
    let env = setup();
    env.apply_ok();
    // No line in the host's fstab names a path inside a client root: mount(8) would resolve it.
    let fstab = env.read("/etc/fstab");
    assert!(!fstab.contains("/nfs/"), "{fstab}");
    let tftp1 = env.path(&format!("/tftpboot/{S1}"));
    let tftp2 = env.path(&format!("/tftpboot/{S2}"));
    assert!(!env.ns.mounts_under(&tftp1).is_empty());

    // Root on the Pi swaps its boot folder for a link to the host's /etc.
    replace_with_symlink(&victim(&env, "boot/firmware"), Path::new("/etc"));
    let plan = env.pt(&["plan"]);
    assert_contains(
        &plan.stdout,
        &format!(
            "  - bind mount /tftpboot/{S1} (client raspi1: its boot folder is no longer a real folder ("
        ),
    );
    assert_contains(&plan.stdout, "  ! client raspi1: ");
    let apply = env.pt(&["apply"]);
    apply.expect_code(1);
    assert!(
        env.ns.mounts_under(&tftp1).is_empty(),
        "the mount of a boot folder that became a symlink is still served"
    );
    assert!(
        !env.ns.mounts_under(&tftp2).is_empty(),
        "raspi2 lost its mount"
    );
    assert!(!env.read("/etc/fstab").contains("/nfs/"));

    // The server reboots: pinetboot-mount.service runs `pinetboot mount`.
    unmount_all_tftp(&env);
    let mount = env.pt(&["mount"]);
    mount.expect_code(1);
    assert!(
        mount.stderr.contains("client raspi1: ")
            && mount
                .stderr
                .contains("/nfs/raspi1/boot/firmware is or passes through a symlink"),
        "{}",
        mount.stderr
    );
    assert!(
        mount
            .stdout
            .contains(&format!("+ bind mount /tftpboot/{S2} from ")),
        "{}",
        mount.stdout
    );
    assert!(
        env.ns.mounts_under(&tftp1).is_empty(),
        "raspi1 was mounted at boot"
    );
    assert_eq!(
        env.ns.dev_ino(&tftp2),
        env.ns.dev_ino(&env.path("/nfs/raspi2/boot/firmware"))
    );
    assert_ne!(env.ns.dev_ino(&tftp1), env.ns.dev_ino(&env.path("/etc")));
    assert_ne!(env.ns.dev_ino(&tftp1), env.ns.dev_ino(Path::new("/etc")));

    // The Pi puts its real folder back: apply mounts it again.
    std::fs::remove_file(victim(&env, "boot/firmware")).unwrap();
    std::fs::rename(
        victim(&env, "boot/firmware.real"),
        victim(&env, "boot/firmware"),
    )
    .unwrap();
    env.apply_ok();
    env.assert_converged();
    assert_eq!(
        env.ns.dev_ino(&tftp1),
        env.ns.dev_ino(&env.path("/nfs/raspi1/boot/firmware"))
    );
}

#[test]
fn mount_at_boot_restores_every_recorded_mount_with_the_safe_options_and_is_idempotent() {
    let env = setup();
    env.apply_ok();
    unmount_all_tftp(&env);
    let mount = env.pt(&["mount"]);
    mount.expect_code(0);
    for (serial, name) in [(S1, "raspi1"), (S2, "raspi2")] {
        let t = env.path(&format!("/tftpboot/{serial}"));
        assert_eq!(
            env.ns.dev_ino(&t),
            env.ns
                .dev_ino(&env.path(&format!("/nfs/{name}/boot/firmware"))),
            "{name}"
        );
        let opts = env
            .ns
            .sh(&format!("findmnt -n -o VFS-OPTIONS '{}'", t.display()));
        for o in ["ro", "nosuid", "nodev", "noexec", "nosymfollow"] {
            assert!(opts.split(',').any(|x| x.trim() == o), "{name}: {opts}");
        }
    }
    // Nothing left for apply; a second run keeps the mounts (same mount ids).
    env.assert_converged();
    let before = env.ns.mounts();
    let again = env.pt(&["mount"]);
    again.expect_code(0);
    assert!(
        again
            .stdout
            .contains(&format!("ok: /tftpboot/{S1} (client raspi1)")),
        "{}",
        again.stdout
    );
    assert_eq!(before, env.ns.mounts());
}

#[test]
fn the_fstab_block_of_earlier_versions_is_removed_and_foreign_lines_stay() {
    let env = setup();
    let fstab = env.path("/etc/fstab");
    let foreign = std::fs::read_to_string(&fstab).unwrap();
    let legacy = format!(
        "{foreign}# BEGIN pinetboot\n# Boot folders of Raspberry Pi clients, bind-mounted onto the TFTP root.\n/nfs/raspi1/boot/firmware /tftpboot/{S1} none bind,ro,nosymfollow,nosuid,nodev,noexec,nofail 0 0\n# END pinetboot\nUUID=1234-5678 /data ext4 defaults 0 2\n"
    );
    std::fs::write(&fstab, &legacy).unwrap();
    let plan = env.pt(&["plan"]);
    assert_contains(&plan.stdout, "  - fstab block /etc/fstab");
    env.apply_ok();
    env.assert_converged();
    assert_eq!(
        std::fs::read_to_string(&fstab).unwrap(),
        format!("{foreign}UUID=1234-5678 /data ext4 defaults 0 2\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Local users of the server (issue 13, item 2)

#[test]
fn a_setuid_file_planted_in_a_client_root_is_out_of_reach_of_the_servers_local_users() {
    let env = setup();
    env.apply_ok();
    // Root on the Pi plants a setuid-root copy of `id` in its root.
    let planted = victim(&env, "usr/local/bin/rootme");
    std::fs::create_dir_all(planted.parent().unwrap()).unwrap();
    std::fs::copy("/usr/bin/id", &planted).unwrap();
    std::os::unix::fs::chown(&planted, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o4755)).unwrap();
    // The server's user `nobody` tries to run it, and to read the Pi's files.
    let as_nobody = |args: &[&str]| {
        // runuser, not setpriv: setpriv keeps root's capabilities until the exec.
        let mut full = vec!["-u", "nobody", "--"];
        full.extend_from_slice(args);
        env.ns.run("runuser", &full)
    };
    let p = planted.to_str().unwrap().to_owned();
    let r = as_nobody(&[&p, "-u"]);
    assert_ne!(
        r.stdout.trim(),
        "0",
        "a setuid file in a client root ran as root"
    );
    assert_contains(&r.stderr, "Permission denied");
    let hostname = victim(&env, "etc/hostname");
    let r = as_nobody(&["cat", hostname.to_str().unwrap()]);
    assert_contains(&r.stderr, "Permission denied");
    assert_eq!(mode_of(&env.path("/nfs")), 0o700);

    // An admin's stricter mode is kept; a looser one is taken back to 0700.
    std::fs::set_permissions(env.path("/nfs"), std::fs::Permissions::from_mode(0o500)).unwrap();
    env.assert_converged();
    std::fs::set_permissions(env.path("/nfs"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let plan = env.pt(&["plan"]);
    assert_contains(&plan.stdout, "  ~ directory /nfs (mode 0755 → 0700)");
    env.apply_ok();
    assert_eq!(mode_of(&env.path("/nfs")), 0o700);
}

/// Replaces the `root` line of raspi1's etc/passwd (whose home gets the declared SSH keys).
fn plant_root_line(env: &Env, line: &[u8]) {
    let p = victim(env, "etc/passwd");
    let text = std::fs::read(&p).unwrap();
    let mut out = Vec::new();
    for l in text.split_inclusive(|b| *b == b'\n') {
        if l.starts_with(b"root:") {
            out.extend_from_slice(line);
            out.push(b'\n');
        } else {
            out.extend_from_slice(l);
        }
    }
    std::fs::write(&p, out).unwrap();
}

/// With `line` as root's line in raspi1's passwd, the attack harness holds (raspi1 is a
/// conflict, nothing else changes) and the plan says `why`.
fn root_line_is_a_conflict(line: &[u8], why: &str) {
    let env = setup();
    plant_root_line(&env, line);
    attack(&env, "etc/passwd");
    let plan = env.pt(&["plan"]);
    assert_contains(&plan.stdout, why);
}

#[test]
fn a_passwd_uid_or_gid_of_minus_one_is_that_clients_conflict_not_a_failed_apply() {
    // 4294967295 is (uid_t)-1: fchown(2) reads it as "leave unchanged", so an owner pinetboot
    // enforces could never be reached and every apply failed with "did not converge".
    const LINES: [(&[u8], &str); 2] = [
        (
            b"root:x:4294967295:0:root:/root:/bin/bash",
            "uid 4294967295 is (uid_t)-1",
        ),
        (
            b"root:x:0:4294967295:root:/root:/bin/bash",
            "gid 4294967295 is (gid_t)-1",
        ),
    ];
    for (line, why) in LINES {
        root_line_is_a_conflict(line, &format!("user root in etc/passwd: its {why}"));
    }
}

#[test]
fn passwd_fields_pinetboot_cannot_use_are_conflicts() {
    // A home that is not UTF-8 was read lossily (U+FFFD), and keys went to another folder; ids
    // that are not plain numbers read as "no such user"; a passwd too large to be one is
    // refused before it is read.
    const LINES: [(&[u8], &str); 3] = [
        (
            b"root:x:0:0:root:/r\xffoot:/bin/bash",
            "its home folder is not UTF-8",
        ),
        (
            b"root:x:+0:0:root:/root:/bin/bash",
            "its uid `+0` is not a number",
        ),
        (b"root:x:0:0:root:/:/bin/bash", "its home folder `/` is not"),
    ];
    for (line, why) in LINES {
        root_line_is_a_conflict(line, why);
    }
    let env = setup();
    let passwd = std::fs::OpenOptions::new()
        .append(true)
        .open(victim(&env, "etc/passwd"))
        .unwrap();
    passwd.set_len(4 << 30).unwrap();
    drop(passwd);
    attack(&env, "etc/passwd");
}
