//! `pinetboot gc`: image store entries no declared client's image names and roots
//! `reprovision` moved aside are listed by `plan` (never removed by apply) and by `gc` with
//! their sizes, and deleted only by `gc --yes`: never an entry in use, never through a symlink,
//! never a tree with a mount inside.

use std::path::Path;

use serde_json::Value;

use crate::support::fixture::{Env, KEY1, Release, S1, S2, build_image};
use crate::support::snapshot::snapshot;
use crate::support::text::{assert_contains, assert_lacks};

/// Makes a complete store entry for `sha` (a Bookworm tree and its manifest), with `extra`
/// bytes of file data in `root/var/big`.
fn store_entry(env: &Env, sha: &str, extra: u64) {
    let entry = env.path(&format!("/var/lib/pinetboot/images/{sha}"));
    std::fs::create_dir_all(&entry).unwrap();
    build_image(&entry.join("root"), Release::Bookworm, false);
    std::fs::write(entry.join("root/var/big"), vec![1u8; extra as usize]).unwrap();
    let manifest = serde_json::json!({
        "version": 1, "sha256": sha, "source": {"file": "/srv/img/disk.img"}, "format": "raw",
        "boot_dir": "boot/firmware", "pretty_name": "Raspbian GNU/Linux 12 (bookworm)",
        "version_codename": "bookworm", "disk_signature": "4e639091", "file_bytes": 1,
        "image_bytes": 1, "boot_partition_bytes": 1, "root_partition_bytes": 1,
        "tree_bytes": 12345, "files": 1, "unpacked_at": "2026-01-01T00:00:00Z"
    });
    std::fs::write(entry.join("manifest.json"), manifest.to_string()).unwrap();
}

fn config(used: &str) -> String {
    format!(
        "server: {{address: 192.168.2.209, network: 192.168.2.0/24}}
images:
  bookworm-lite: {{source: /srv/rootfs/bookworm-lite}}
  disk: {{source: /srv/img/disk.img, sha256: {used}}}
clients:
  raspi1: {{serial: \"{S1}\", image: bookworm-lite, ssh: {{authorized_keys: [\"{KEY1}\"]}}}}
  raspi2: {{serial: \"{S2}\", image: disk}}
"
    )
}

#[test]
fn gc_lists_then_deletes_only_what_no_declared_client_uses() {
    let env = Env::with_clients(&["raspi1"], false);
    env.apply_ok();
    env.pt(&["reprovision", "raspi1", "--yes"]).expect_code(0);
    let old: Vec<String> = std::fs::read_dir(env.path("/nfs"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(".raspi1.pinetboot-old-"))
        .collect();
    assert_eq!(old.len(), 1, "{old:?}");
    let old = format!("/nfs/{}", old[0]);
    let (used, unused, mounted) = ("a1".repeat(32), "b2".repeat(32), "c3".repeat(32));
    store_entry(&env, &used, 100);
    store_entry(&env, &unused, 5000);
    store_entry(&env, &mounted, 10);
    // A link out of an unused entry: gc must delete the link, never what it points at.
    let unused_root = env.path(&format!("/var/lib/pinetboot/images/{unused}/root"));
    std::os::unix::fs::symlink(&env.outside, unused_root.join("outside")).unwrap();
    let mnt = env.path(&format!("/var/lib/pinetboot/images/{mounted}/root/mnt"));
    std::fs::create_dir_all(&mnt).unwrap();
    env.ns.sh(&format!(
        "mount --bind {} {}",
        env.outside.display(),
        mnt.display()
    ));
    std::fs::write(&env.config, config(&used)).unwrap();
    let outside_before = snapshot(&env.outside);

    // plan lists them (apply never removes them): the two unused entries and the old root.
    let plan = env.pt(&["plan"]);
    plan.expect_code(0);
    assert_contains(
        &plan.stdout,
        "Removable (apply keeps them; `pinetboot gc --yes` deletes them):",
    );
    assert_contains(
        &plan.stdout,
        &format!("image store entry {}", &unused[..12]),
    );
    assert_contains(
        &plan.stdout,
        &format!("image store entry {}", &mounted[..12]),
    );
    assert_contains(&plan.stdout, "old root of client raspi1");
    let section = plan.stdout.split("Removable (").nth(1).unwrap_or_default();
    let section = section.split("\n\n").next().unwrap_or_default();
    assert_lacks(section, &used[..12]);
    let json: Value = serde_json::from_str(&env.pt(&["plan", "--json"]).stdout).unwrap();
    let kinds: Vec<&str> = json["removable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["store_entry", "store_entry", "old_root"]);
    env.apply_ok();
    assert!(env.path(&old).exists(), "apply never deletes an old root");
    assert!(
        env.path(&format!("/var/lib/pinetboot/images/{unused}"))
            .exists()
    );

    // gc without --yes lists with measured sizes and deletes nothing; the mounted entry is
    // refused (exit 1) and named.
    let dry = env.pt(&["gc"]);
    dry.expect_code(1);
    assert_contains(&dry.stdout, &format!("image store entry {}", &unused[..12]));
    assert_contains(&dry.stdout, "run `pinetboot gc --yes` to delete them");
    assert_contains(&dry.stderr, "holds a mount point");
    assert_contains(&dry.stderr, &mounted);
    assert!(env.path(&old).exists() && unused_root.exists());
    let listed: Value = serde_json::from_str(&env.pt(&["gc", "--json"]).stdout).unwrap();
    let entry = &listed["removable"][0];
    assert_eq!(entry["sha256"], unused.as_str());
    let bytes = entry["bytes"].as_u64().unwrap();
    assert!(bytes >= 5000, "measured {bytes}");

    // gc --yes: deletes the unused entry and the old root, keeps the entry in use, the
    // mounted one (exit 1), the client roots, and everything outside.
    let r = env.pt(&["gc", "--yes"]);
    r.expect_code(1);
    assert_contains(&r.stdout, "Freed");
    assert!(!env.path(&old).exists());
    assert!(
        !env.path(&format!("/var/lib/pinetboot/images/{unused}"))
            .exists()
    );
    assert!(
        env.path(&format!("/var/lib/pinetboot/images/{used}/manifest.json"))
            .exists()
    );
    assert!(
        env.path(&format!(
            "/var/lib/pinetboot/images/{mounted}/manifest.json"
        ))
        .exists()
    );
    assert!(env.path("/nfs/raspi1/etc/hostname").exists());
    assert_eq!(
        snapshot(&env.outside),
        outside_before,
        "nothing outside was touched"
    );

    // Unmounted, the last one goes; then there is nothing left to remove.
    env.ns.sh(&format!("umount {}", mnt.display()));
    env.pt(&["gc", "--yes"]).expect_code(0);
    assert!(
        !env.path(&format!("/var/lib/pinetboot/images/{mounted}"))
            .exists()
    );
    let r = env.pt(&["gc"]);
    r.expect_code(0);
    assert_contains(&r.stdout, "Nothing to remove");
    assert!(Path::new(&env.path(&format!("/var/lib/pinetboot/images/{used}"))).exists());
}
