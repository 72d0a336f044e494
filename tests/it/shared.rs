//! Shared read-only roots (`root: shared`): own and shared clients of one image side by side.
//! One shared root per image, exported read-only and never changed by apply once made; each
//! shared client its own boot folder of hard links with its own `cmdline.txt` (hostname,
//! machine-id, the RAM-overlay init), bind-mounted onto its serial folder; switching a client
//! between `own` and `shared` both ways converges and never deletes its data; `gc` never
//! removes a shared root in use.

use std::os::unix::fs::MetadataExt;

use crate::support::fixture::{Env, KEY1, Release, S1, S2, S3};
use crate::support::snapshot::{Cmp, assert_same, snapshot};
use crate::support::text::{assert_contains, assert_lacks};

const BASE: &str = "/nfs/.shared/bookworm-lite-tree";

/// raspi1 `own_or_shared`, raspi2 and raspi3 shared (with addresses), one image.
fn config(raspi1: &str) -> String {
    format!(
        "server: {{address: 192.168.2.209, network: 192.168.2.0/24}}
images:
  bookworm-lite: {{source: /srv/rootfs/bookworm-lite}}
defaults:
  image: bookworm-lite
  ssh: {{authorized_keys: [\"{KEY1}\"]}}
clients:
  raspi1: {{serial: \"{S1}\", root: {raspi1}}}
  raspi2: {{serial: \"{S2}\", root: shared, address: 192.168.2.52, hostname: pi-two}}
  raspi3: {{serial: \"{S3}\", root: shared, address: 192.168.2.53}}
"
    )
}

fn env(raspi1: &str) -> Env {
    let env = Env::new();
    env.add_image("bookworm-lite", Release::Bookworm, false);
    std::fs::write(&env.config, config(raspi1)).unwrap();
    env
}

fn ino(env: &Env, path: &str) -> (u64, u64) {
    let m = std::fs::metadata(env.path(path)).unwrap();
    (m.dev(), m.ino())
}

#[test]
fn own_and_shared_clients_of_one_image_plan_apply_and_converge() {
    let env = env("own");
    let plan = env.pt(&["plan"]);
    plan.expect_code(0);
    assert_contains(
        &plan.stdout,
        &format!("+ client root {BASE}/root (copy of image bookworm-lite"),
    );
    assert_contains(&plan.stdout, &format!("+ boot folder {BASE}/boot/raspi2"));
    env.apply_ok();
    env.assert_converged();

    // The own client as before; the shared ones have no root of their own.
    assert!(env.path("/nfs/raspi1/etc/hostname").is_file());
    assert!(!env.path("/nfs/raspi2").exists() && !env.path("/nfs/raspi3").exists());
    // The shared root: the image, its SD-card lines gone, the overlay init, no identity.
    let init = env.path(&format!("{BASE}/root/usr/lib/pinetboot/overlay-init"));
    assert_eq!(std::fs::metadata(&init).unwrap().mode() & 0o7777, 0o755);
    assert_contains(&std::fs::read_to_string(&init).unwrap(), "pivot_root");
    assert!(
        env.path(&format!(
            "{BASE}/root/etc/systemd/system/sysinit.target.wants/pinetboot-shared.service"
        ))
        .is_symlink()
    );
    assert_eq!(
        env.read(&format!("{BASE}/root/etc/hostname")),
        "raspberrypi\n"
    );
    assert!(
        !env.path(&format!("{BASE}/root/etc/ssh/ssh_host_ed25519_key"))
            .exists()
    );
    assert_lacks(&env.read(&format!("{BASE}/root/etc/fstab")), "PARTUUID");
    assert_contains(
        &env.read(&format!("{BASE}/root/root/.ssh/authorized_keys")),
        KEY1,
    );

    // Exported read-only to the shared clients' addresses; the own root read-write.
    let exports = env.read("/etc/exports.d/pinetboot.exports");
    assert_contains(&exports, "/nfs/raspi1 192.168.2.0/24(rw,");
    assert_contains(
        &exports,
        &format!("{BASE}/root 192.168.2.52 192.168.2.53(ro,sync,no_subtree_check,no_root_squash)"),
    );

    // Each shared client: its own boot folder of links, its own cmdline, its serial folder.
    for (name, serial, hostname) in [("raspi2", S2, "pi-two"), ("raspi3", S3, "raspi3")] {
        let boot = format!("{BASE}/boot/{name}");
        let cmdline = env.read(&format!("{boot}/cmdline.txt"));
        for token in [
            format!("nfsroot=192.168.2.209:{BASE}/root,vers=3"),
            " ro ".into(),
            "init=/usr/lib/pinetboot/overlay-init".into(),
            format!("systemd.hostname={hostname}"),
            format!("systemd.machine_id={}", pinetboot::pios::machine_id(serial)),
        ] {
            assert_contains(&cmdline, &token);
        }
        assert_lacks(&cmdline, " rw ");
        assert_eq!(
            ino(&env, &format!("{boot}/config.txt")),
            ino(&env, &format!("{BASE}/root/boot/firmware/config.txt")),
            "boot files are links to the shared root's"
        );
        assert_eq!(
            env.ns.dev_ino(&env.path(&format!("/tftpboot/{serial}"))),
            env.ns.dev_ino(&env.path(&boot)),
            "/tftpboot/{serial} is {name}'s boot folder"
        );
    }
    assert_ne!(
        pinetboot::pios::machine_id(S2),
        pinetboot::pios::machine_id(S3)
    );

    // The shared root is never changed by apply once made (a second apply, a drifted
    // client file put right elsewhere).
    let before = snapshot(&env.path(&format!("{BASE}/root")));
    std::fs::write(env.path("/nfs/raspi1/etc/hostname"), "drifted\n").unwrap();
    std::fs::write(
        env.path(&format!("{BASE}/boot/raspi2/cmdline.txt")),
        "drifted\n",
    )
    .unwrap();
    let plan = env.pt(&["plan"]);
    assert_contains(&plan.stdout, &format!("~ boot folder {BASE}/boot/raspi2"));
    env.apply_ok();
    env.assert_converged();
    assert_same(
        &before,
        &snapshot(&env.path(&format!("{BASE}/root"))),
        Cmp::ALL,
        "the shared root",
    );
    assert_contains(
        &env.read(&format!("{BASE}/boot/raspi2/cmdline.txt")),
        "systemd.hostname=pi-two",
    );
}

#[test]
fn switching_between_own_and_shared_converges_both_ways_and_keeps_client_data() {
    let env = env("own");
    env.apply_ok();
    std::fs::write(env.path("/nfs/raspi1/home/mine"), "my data\n").unwrap();

    // own → shared: served from the shared root; its own root kept, and said so.
    std::fs::write(&env.config, config("shared")).unwrap();
    let plan = env.pt(&["plan"]);
    assert_contains(&plan.stdout, "Kept:");
    assert_contains(
        &plan.stdout,
        "client root /nfs/raspi1 of raspi1: client raspi1 boots its image's shared root now",
    );
    env.apply_ok();
    env.assert_converged_but_kept();
    assert_eq!(env.read("/nfs/raspi1/home/mine"), "my data\n");
    assert_eq!(
        env.ns.dev_ino(&env.path(&format!("/tftpboot/{S1}"))),
        env.ns.dev_ino(&env.path(&format!("{BASE}/boot/raspi1")))
    );
    assert_contains(
        &env.read("/etc/exports.d/pinetboot.exports"),
        &format!("{BASE}/root 192.168.2.0/24("),
    );
    // purge may delete that unused own root (only by name).
    assert!(
        env.read("/etc/exports.d/pinetboot.exports")
            .lines()
            .all(|l| !l.starts_with("/nfs/raspi1 "))
    );

    // shared → own: its own root again, as it was; the stale boot folder is gc's.
    std::fs::write(&env.config, config("own")).unwrap();
    env.apply_ok();
    assert_eq!(env.read("/nfs/raspi1/home/mine"), "my data\n");
    assert_eq!(
        env.ns.dev_ino(&env.path(&format!("/tftpboot/{S1}"))),
        env.ns.dev_ino(&env.path("/nfs/raspi1/boot/firmware"))
    );
    let gc = env.pt(&["gc"]);
    gc.expect_code(0);
    assert_contains(
        &gc.stdout,
        "boot folder of client raspi1, which no longer boots this shared root",
    );
    assert_lacks(&gc.stdout, "shared root bookworm-lite-tree:");
    env.pt(&["gc", "--yes"]).expect_code(0);
    assert!(!env.path(&format!("{BASE}/boot/raspi1")).exists());
    assert!(
        env.path(&format!("{BASE}/boot/raspi2/cmdline.txt"))
            .is_file()
    );
    env.assert_converged();
}

#[test]
fn gc_never_removes_a_shared_root_in_use_and_removes_it_once_unused() {
    let env = env("own");
    env.apply_ok();
    let r = env.pt(&["gc"]);
    r.expect_code(0);
    assert_contains(&r.stdout, "Nothing to remove");
    // No shared client left: after apply unbinds them, the shared root is gc's to delete.
    let only_own = config("own")
        .lines()
        .filter(|l| !l.contains("root: shared"))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    std::fs::write(&env.config, only_own).unwrap();
    // Before apply its boot folders are still served: refused.
    let r = env.pt(&["gc", "--yes"]);
    r.expect_code(1);
    assert_contains(&r.stderr, "is still mounted on");
    assert!(env.path(&format!("{BASE}/root/etc/fstab")).exists());
    env.apply_ok();
    let plan = env.pt(&["plan"]);
    assert_contains(
        &plan.stdout,
        "shared root bookworm-lite-tree: no declared shared client boots it",
    );
    env.pt(&["gc", "--yes"]).expect_code(0);
    assert!(!env.path(BASE).exists());
    assert!(env.path("/nfs/raspi1/etc/hostname").is_file());
}

/// An image without what the overlay init runs: its shared clients are conflicts naming what
/// to install, nothing of theirs is made, and the own client converges.
#[test]
fn an_image_that_cannot_boot_a_shared_root_is_said_so_in_the_plan() {
    let env = env("own");
    std::fs::remove_file(env.path("/srv/rootfs/bookworm-lite/usr/sbin/pivot_root")).unwrap();
    let plan = env.pt(&["plan"]);
    plan.expect_code(1);
    assert_contains(
        &plan.stdout,
        "! client raspi2: image bookworm-lite cannot boot a shared root: it lacks /sbin/pivot_root (util-linux)",
    );
    assert_contains(&plan.stdout, "install those packages in the image");
    assert_lacks(&plan.stdout, "boot folder");
    let r = env.pt(&["apply"]);
    r.expect_code(1);
    assert!(env.path("/nfs/raspi1/etc/hostname").is_file());
    assert!(!env.path(&format!("{BASE}/boot/raspi2")).exists());
    assert!(
        env.ns
            .mounts_under(&env.path(&format!("/tftpboot/{S2}")))
            .is_empty(),
        "a conflicted shared client is not served"
    );
}

/// One shared client removed while another stays: its serial folder is no longer served, its
/// boot folder is gc's, and the shared root is exported to the one left only.
#[test]
fn a_removed_shared_client_is_pruned_while_the_others_stay_served() {
    let env = env("own");
    env.apply_ok();
    let without_raspi3: String = config("own")
        .lines()
        .filter(|l| !l.contains("raspi3"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&env.config, without_raspi3).unwrap();
    let plan = env.pt(&["plan"]);
    assert_contains(&plan.stdout, &format!("- bind mount /tftpboot/{S3}"));
    env.apply_ok();
    env.assert_converged_but_kept();
    assert!(
        env.ns
            .mounts_under(&env.path(&format!("/tftpboot/{S3}")))
            .is_empty()
    );
    assert_eq!(
        env.ns.dev_ino(&env.path(&format!("/tftpboot/{S2}"))),
        env.ns.dev_ino(&env.path(&format!("{BASE}/boot/raspi2")))
    );
    let exports = env.read("/etc/exports.d/pinetboot.exports");
    assert_contains(&exports, &format!("{BASE}/root 192.168.2.52(ro,"));
    assert_lacks(&exports, "192.168.2.53");
    assert_contains(
        &env.pt(&["plan"]).stdout,
        "boot folder of client raspi3, which no longer boots this shared root",
    );
    env.pt(&["gc", "--yes"]).expect_code(0);
    assert!(!env.path(&format!("{BASE}/boot/raspi3")).exists());
    assert!(
        env.path(&format!("{BASE}/boot/raspi2/cmdline.txt"))
            .is_file()
    );
}

/// A shared client has no root of its own to reprovision: refused, saying how a shared root
/// is updated; its own former root may be purged by name while it is shared.
#[test]
fn reprovision_refuses_a_shared_client_and_purge_takes_its_unused_own_root() {
    let env = env("own");
    env.apply_ok();
    let r = env.pt(&["reprovision", "raspi2", "--yes"]);
    r.expect_code(1);
    assert_contains(&r.stderr, "client raspi2 boots its image's shared root");
    assert_contains(
        &r.stderr,
        "a new image version (its sha256) makes a new shared root",
    );
    // raspi1 becomes shared: its own root is unused client data, purged only by name.
    std::fs::write(&env.config, config("shared")).unwrap();
    env.apply_ok();
    env.pt(&["purge", "raspi1", "--yes"]).expect_code(0);
    assert!(!env.path("/nfs/raspi1").exists());
    assert!(
        env.path(&format!("{BASE}/boot/raspi1/cmdline.txt"))
            .is_file()
    );
    env.assert_converged();
    let state = env.read("/var/lib/pinetboot/state.json");
    assert_contains(&state, "\"shared\": true");
}

/// What pinetboot writes into a shared root passes the real tools: the overlay init parses as
/// POSIX sh (dash) and the identity unit passes `systemd-analyze verify`.
#[test]
fn the_overlay_init_and_the_identity_unit_pass_their_tools() {
    crate::support::tools::require_tool("systemd-analyze", "systemd");
    let env = env("own");
    env.apply_ok();
    let init = env.path(&format!("{BASE}/root/usr/lib/pinetboot/overlay-init"));
    let out = std::process::Command::new("sh")
        .arg("-n")
        .arg(&init)
        .output()
        .unwrap();
    crate::support::tools::expect_success(&out, "sh -n overlay-init");
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("pinetboot-shared.service");
    std::fs::copy(
        env.path(&format!(
            "{BASE}/root/etc/systemd/system/pinetboot-shared.service"
        )),
        &unit,
    )
    .unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .args([
            "verify",
            "--man=no",
            "--generators=no",
            "--recursive-errors=no",
        ])
        .arg(&unit)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.trim().is_empty(),
        "systemd-analyze verify:\n{text}"
    );
}
