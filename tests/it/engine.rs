//! The plan/apply engine on the real binary against throwaway roots, with bind mounts inside a
//! private mount namespace: invariants 1 (plan changes nothing), 2 (idempotence), 3 (crash
//! safety), 5 (prune keeps client data), 6 (one apply at a time) and 8 (safe defaults), the
//! exit codes, the JSON plan's shape, drift repair and the host's fstab. Needs root.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::support::fixture::*;
use crate::support::paused::Paused;
use crate::support::snap::redact_times_and_hashes;
use crate::support::snapshot::*;
use crate::support::text::{assert_contains, assert_lacks};
use crate::support::tools::*;
use proptest::prelude::*;
use serde_json::Value;

/// The lines of a text plan or apply output that describe changes (`  + …`, `~`, `-`).
fn change_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| {
            let t = l.trim_start();
            (t.starts_with("+ ") || t.starts_with("~ ") || t.starts_with("- "))
                && !l.starts_with("      ")
        })
        .map(str::to_owned)
        .collect()
}

fn base(env: &Env) -> PathBuf {
    env.root.parent().unwrap().to_path_buf()
}

// ---------------------------------------------------------------------------------------------
// Invariant 1

#[test]
fn plan_changes_nothing_pending_applied_and_drifted() {
    let env = Env::with_clients(&["raspi1", "raspi2"], false);
    let check = |stage: &str| {
        let before = snapshot(&base(&env));
        let text = env.pt(&["plan"]);
        text.expect_code(0);
        let json = env.pt(&["plan", "--json"]);
        json.expect_code(0);
        let detailed = env.pt(&["plan", "--detailed-exitcode"]);
        assert!(matches!(detailed.code(), Some(0 | 2)), "{detailed:?}");
        let after = snapshot(&base(&env));
        assert_same(&before, &after, Cmp::ALL, &format!("plan ({stage})"));
        text.stdout
    };
    // Pending roots: nothing exists yet, not even /run/pinetboot.lock.
    let pending = check("pending roots");
    insta::assert_snapshot!("plan_pending", env.redact(&pending));
    assert!(!env.path("/run").exists(), "plan created /run");
    assert!(!env.path("/nfs").exists(), "plan created /nfs");
    env.apply_ok();
    let applied = check("after apply");
    assert_eq!(applied, "No changes. The host matches the configuration.\n");
    // Drift and a removed client (a Kept note): plan still changes nothing.
    std::fs::write(env.path("/nfs/raspi1/etc/hostname"), "drifted\n").unwrap();
    env.write_config(&bookworm_cfg(&["raspi1"]));
    let drifted = check("drifted, client removed");
    insta::assert_snapshot!("plan_drifted_client_removed", env.redact(&drifted));
}

// ---------------------------------------------------------------------------------------------
// Invariant 2

#[test]
fn second_apply_changes_nothing_no_mtime_no_remount_no_handler() {
    let env = Env::with_clients(&["raspi1", "raspi2"], false);
    let first = env.apply_ok();
    assert_contains(&first.stdout, "skipped: exportfs -ra (--root is ");
    assert!(
        first
            .stdout
            .ends_with("Apply complete: 30 added, 8 changed, 0 removed.\n"),
        "{}",
        first.stdout
    );
    env.assert_converged();
    let snap = snapshot(&base(&env));
    let mounts = env.ns.mounts_under(&env.root);
    assert_eq!(mounts.len(), 2, "two bind mounts: {mounts:?}");
    let second = env.pt(&["apply"]);
    second.expect_code(0);
    assert_eq!(second.stdout, "Apply complete: no changes.\n");
    assert!(!second.stdout.contains("skipped:") && !second.stdout.contains("ran:"));
    assert_eq!(second.stderr, "", "second apply wrote to stderr");
    assert_eq!(
        env.ns.mounts_under(&env.root),
        mounts,
        "mount IDs changed (remount)"
    );
    assert_same(&snap, &snapshot(&base(&env)), Cmp::ALL, "second apply");
}

// ---------------------------------------------------------------------------------------------
// --detailed-exitcode

#[test]
fn detailed_exitcode_is_2_pending_0_converged_1_bad_config() {
    let env = Env::with_clients(&["raspi1"], false);
    let r = env.pt(&["plan", "--detailed-exitcode"]);
    r.expect_code(2);
    assert!(
        r.stdout
            .ends_with("Plan: 18 to add, 4 to change, 0 to remove.\n"),
        "{}",
        r.stdout
    );
    // Without the flag pending changes still exit 0.
    env.pt(&["plan"]).expect_code(0);
    env.apply_ok();
    env.pt(&["plan", "--detailed-exitcode"]).expect_code(0);
    env.pt(&["plan", "--json", "--detailed-exitcode"])
        .expect_code(0);
    // Drift: 2 again, for text and JSON.
    std::fs::write(env.path("/nfs/raspi1/etc/hostname"), "x\n").unwrap();
    env.pt(&["plan", "--detailed-exitcode"]).expect_code(2);
    env.pt(&["plan", "--json", "--detailed-exitcode"])
        .expect_code(2);
    // A bad config: 1, for plan and apply, and nothing changes.
    let good = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        good.replacen("server:\n", "server:\n  srever: typo\n", 1),
    )
    .unwrap();
    let before = snapshot(&base(&env));
    let r = env.pt(&["plan", "--detailed-exitcode"]);
    r.expect_code(1);
    assert_contains(&r.stderr, "srever");
    assert_contains(&r.stderr, "nothing was changed");
    assert_eq!(r.stdout, "");
    env.pt(&["apply"]).expect_code(1);
    assert_same(&before, &snapshot(&base(&env)), Cmp::ALL, "bad config");
}

/// A client in conflict is an error for plan as for apply: exit 1 with or without
/// `--detailed-exitcode`, in text and JSON, also when changes are pending too (1 wins over 2:
/// Terraform's 1 is an error, 2 a clean plan with changes), and while nothing else is pending.
#[test]
fn plan_exits_1_while_a_client_is_in_conflict() {
    let env = Env::with_clients(&["raspi1", "raspi2"], false);
    env.apply_ok();
    // raspi1: a symlink where pinetboot writes (a conflict); raspi2: drift (a change).
    let hostname1 = env.path("/nfs/raspi1/etc/hostname");
    std::fs::remove_file(&hostname1).unwrap();
    std::os::unix::fs::symlink(env.outside.join("secret"), &hostname1).unwrap();
    std::fs::write(env.path("/nfs/raspi2/etc/hostname"), "drifted\n").unwrap();
    let said = "error: 1 client is in conflict, which apply would leave untouched: raspi1";
    for args in [
        &["plan"][..],
        &["plan", "--detailed-exitcode"],
        &["plan", "--json"],
        &["plan", "--json", "--detailed-exitcode"],
    ] {
        let r = env.pt(args);
        r.expect_code(1);
        assert!(r.stderr.contains(said), "{args:?}: {}", r.stderr);
        insta::assert_snapshot!(
            format!("plan_conflict{}", args[1..].join("").replace("--", "_")),
            env.redact(&r.transcript())
        );
        if args.contains(&"--json") {
            let v = check_json_plan(&env, &r.stdout);
            assert_eq!(v["conflicts"][0]["client"], "raspi1");
            assert_eq!(v["summary"]["change"], Value::from(1), "{}", r.stdout);
        } else {
            assert_contains(&r.stdout, "  ! client raspi1: ");
            assert_eq!(
                change_lines(&r.stdout),
                vec!["  ~ file /nfs/raspi2/etc/hostname".to_owned()],
                "{}",
                r.stdout
            );
        }
    }
    // Apply repairs raspi2 and exits 1; the conflict alone still makes plan exit 1.
    env.pt(&["apply"]).expect_code(1);
    assert_eq!(env.read("/nfs/raspi2/etc/hostname"), "raspi2\n");
    let r = env.pt(&["plan", "--detailed-exitcode"]);
    r.expect_code(1);
    assert!(change_lines(&r.stdout).is_empty(), "{}", r.stdout);
    let r = env.pt(&["plan", "--json", "--detailed-exitcode"]);
    r.expect_code(1);
    assert_eq!(
        check_json_plan(&env, &r.stdout)["changes"],
        serde_json::json!([])
    );
    // Resolved: 2 (raspi1's hostname to write), then 0.
    std::fs::remove_file(&hostname1).unwrap();
    env.pt(&["plan", "--detailed-exitcode"]).expect_code(2);
    env.apply_ok();
    env.assert_converged();
}

// ---------------------------------------------------------------------------------------------
// plan --json

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn null_or_string(v: &Value, what: &str) {
    assert!(v.is_null() || v.is_string(), "{what} is {v}");
}

fn check_json_plan(env: &Env, text: &str) -> Value {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    // Always there, and only there when they say something (docs/plan-json.md).
    let always = set(&[
        "format_version",
        "root",
        "summary",
        "changes",
        "conflicts",
        "kept",
        "warnings",
        "handlers",
    ]);
    let optional = set(&["server", "source", "applied", "removable"]);
    let found = keys(&v);
    assert!(found.is_superset(&always), "{found:?}");
    assert!(
        found.difference(&always).all(|k| optional.contains(k)),
        "{found:?}"
    );
    for r in v["removable"].as_array().into_iter().flatten() {
        let want = match r["kind"].as_str() {
            Some("store_entry") => set(&["kind", "path", "bytes", "sha256", "pretty_name"]),
            Some("old_root") => set(&["kind", "path", "bytes", "client", "moved"]),
            Some("shared_root") => set(&["kind", "path", "bytes", "name"]),
            Some("boot_folder") => set(&["kind", "path", "bytes", "client"]),
            other => panic!("removable of kind {other:?}: {r}"),
        };
        assert_eq!(keys(r), want, "{r}");
    }
    assert_eq!(v["format_version"], Value::from(1));
    assert_eq!(v["root"].as_str(), Some(env.root.to_str().unwrap()));
    assert_eq!(keys(&v["summary"]), set(&["add", "change", "remove"]));
    let changes = v["changes"].as_array().expect("changes is an array");
    let mut counts = [0u64; 3];
    for c in changes {
        // A leftover's removal also says its apparent size.
        let leftover = ["staging folder", "download"].contains(&c["kind"].as_str().unwrap_or(""));
        let mut want = set(&[
            "action", "kind", "path", "client", "detail", "diff", "handler",
        ]);
        if leftover {
            want.insert("bytes".into());
            assert!(c["bytes"].is_u64(), "{c}");
            assert_eq!(c["action"], "remove", "{c}");
        }
        assert_eq!(keys(c), want, "{c}");
        let action = c["action"].as_str().expect("action is a string");
        match action {
            "create" => counts[0] += 1,
            "update" => counts[1] += 1,
            "remove" => counts[2] += 1,
            other => panic!("unknown action {other}"),
        }
        let kind = c["kind"].as_str().expect("kind is a string");
        assert!(
            [
                "directory",
                "file",
                "fstab block",
                "client root",
                "link",
                "bind mount",
                "staging folder",
                "download"
            ]
            .contains(&kind),
            "kind {kind}"
        );
        let path = c["path"].as_str().expect("path is a string");
        assert!(path.starts_with('/'), "{path}");
        assert!(
            !path.contains(env.root.to_str().unwrap()),
            "path carries the --root prefix: {path}"
        );
        null_or_string(&c["client"], "client");
        null_or_string(&c["detail"], "detail");
        null_or_string(&c["diff"], "diff");
        match &c["handler"] {
            Value::Null => {}
            Value::String(h) => assert!(
                ["reload-exports", "restart-dnsmasq", "daemon-reload"].contains(&h.as_str()),
                "handler {h}"
            ),
            other => panic!("handler is {other}"),
        }
        if path.starts_with("/nfs/raspi") {
            assert!(c["client"].is_string(), "client file without client: {c}");
        }
    }
    assert_eq!(v["summary"]["add"].as_u64(), Some(counts[0]));
    assert_eq!(v["summary"]["change"].as_u64(), Some(counts[1]));
    assert_eq!(v["summary"]["remove"].as_u64(), Some(counts[2]));
    for c in v["conflicts"].as_array().expect("conflicts is an array") {
        assert_eq!(keys(c), set(&["client", "message", "hint"]), "{c}");
        for k in ["client", "message", "hint"] {
            assert!(c[k].is_string(), "conflict {k}: {c}");
        }
    }
    for k in v["kept"].as_array().expect("kept is an array") {
        assert_eq!(keys(k), set(&["client", "path", "note"]), "{k}");
        for f in ["client", "path", "note"] {
            assert!(k[f].is_string(), "kept {f}: {k}");
        }
    }
    for h in v["handlers"].as_array().expect("handlers is an array") {
        assert!(h.is_string(), "handler {h}");
    }
    v
}

#[test]
fn plan_json_has_a_stable_shape() {
    let env = Env::with_clients(&["raspi1", "raspi2"], false);
    let r = env.pt(&["plan", "--json"]);
    r.expect_code(0);
    insta::assert_snapshot!("plan_json_two_clients", env.redact(&r.transcript()));
    let v = check_json_plan(&env, &r.stdout);
    assert_eq!(v["summary"]["add"], Value::from(30));
    assert_eq!(v["summary"]["change"], Value::from(8));
    assert_eq!(v["summary"]["remove"], Value::from(0));
    assert_eq!(
        v["handlers"],
        serde_json::json!(["reload-exports", "restart-dnsmasq"])
    );
    let first = &v["changes"][0];
    assert_eq!(first["action"], "create");
    assert_eq!(first["kind"], "directory");
    assert_eq!(first["path"], "/nfs");
    assert_eq!(first["client"], Value::Null);
    assert_eq!(first["detail"], "mode 0700");
    // No fstab line: the boot-time mounts are pinetboot-mount.service's.
    assert!(
        !v["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["kind"] == "fstab block")
    );
    assert_eq!(v["conflicts"], serde_json::json!([]));
    assert_eq!(v["kept"], serde_json::json!([]));
    // Text and JSON agree on the counts.
    let text = env.pt(&["plan"]);
    assert!(
        text.stdout
            .ends_with("Plan: 30 to add, 8 to change, 0 to remove.\n"),
        "{}",
        text.stdout
    );
    assert_eq!(
        change_lines(&text.stdout).len(),
        v["changes"].as_array().unwrap().len()
    );

    // Converged, then a conflict (raspi1) and a kept root (raspi2 removed).
    env.apply_ok();
    let v = check_json_plan(&env, &env.pt(&["plan", "--json"]).stdout);
    assert_eq!(v["changes"], serde_json::json!([]));
    assert_eq!(v["handlers"], serde_json::json!([]));
    assert_eq!(
        v["summary"],
        serde_json::json!({"add": 0, "change": 0, "remove": 0})
    );
    std::fs::remove_file(env.path("/nfs/raspi1/etc/hostname")).unwrap();
    std::os::unix::fs::symlink(
        env.outside.join("secret"),
        env.path("/nfs/raspi1/etc/hostname"),
    )
    .unwrap();
    env.write_config(&bookworm_cfg(&["raspi1"]));
    // A conflict is an error: 1, though changes are pending too.
    let r = env.pt(&["plan", "--json", "--detailed-exitcode"]);
    r.expect_code(1);
    let v = check_json_plan(&env, &r.stdout);
    assert_eq!(v["conflicts"].as_array().unwrap().len(), 1);
    assert_eq!(v["conflicts"][0]["client"], "raspi1");
    assert!(
        v["conflicts"][0]["message"]
            .as_str()
            .unwrap()
            .contains("/nfs/raspi1/etc/hostname")
    );
    assert_eq!(
        v["kept"],
        serde_json::json!([{
            "client": "raspi2",
            "path": "/nfs/raspi2",
            "note": "client data is never deleted implicitly; to delete it: pinetboot purge raspi2 --yes"
        }])
    );
    assert!(
        v["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["client"] != "raspi1"),
        "a conflicted client's changes are listed"
    );
}

// ---------------------------------------------------------------------------------------------
// Drift

#[test]
fn drift_is_shown_and_repaired_and_the_hosts_fstab_is_never_touched() {
    let env = Env::with_clients(&["raspi1"], false);
    env.apply_ok();
    let fstab_applied = env.read("/etc/fstab");
    let conf = env.path("/etc/dnsmasq.d/pinetboot.conf");
    let dnsmasq = env.read("/etc/dnsmasq.d/pinetboot.conf");
    let cmdline = env.read("/nfs/raspi1/boot/firmware/cmdline.txt");
    // Someone edits the drop-in, adds a line to the host's fstab, unmounts, edits cmdline.txt,
    // and chmods the TFTP root 0777.
    std::fs::write(&conf, format!("{dnsmasq}dhcp-range=0.0.0.0,proxy\n")).unwrap();
    let foreign = "10.0.0.5:/srv/media /media nfs defaults,_netdev 0 0\n";
    std::fs::write(env.path("/etc/fstab"), format!("{fstab_applied}{foreign}")).unwrap();
    let tftp = env.path(&format!("/tftpboot/{S1}"));
    env.ns.sh(&format!("umount '{}'", tftp.display()));
    std::fs::write(
        env.path("/nfs/raspi1/boot/firmware/cmdline.txt"),
        "console=tty1 root=/dev/mmcblk0p2 rootwait\n",
    )
    .unwrap();
    std::fs::set_permissions(
        env.path("/tftpboot"),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();

    let plan = env.pt(&["plan", "--detailed-exitcode"]);
    plan.expect_code(2);
    insta::assert_snapshot!("plan_drift", env.redact(&plan.transcript()));
    assert_eq!(
        change_lines(&plan.stdout),
        vec![
            "  ~ directory /tftpboot (mode 0777 → 0755)".to_owned(),
            "  ~ file /nfs/raspi1/boot/firmware/cmdline.txt".to_owned(),
            "  ~ file /etc/dnsmasq.d/pinetboot.conf".to_owned(),
            format!("  + bind mount /tftpboot/{S1} (from /nfs/raspi1/boot/firmware (not mounted))"),
        ],
        "{}",
        plan.stdout
    );

    let apply = env.apply_ok();
    assert_eq!(
        change_lines(&apply.stdout),
        vec![
            "~ directory /tftpboot".to_owned(),
            "~ file /nfs/raspi1/boot/firmware/cmdline.txt".to_owned(),
            "~ file /etc/dnsmasq.d/pinetboot.conf".to_owned(),
            format!("+ bind mount /tftpboot/{S1}"),
        ],
        "{}",
        apply.stdout
    );
    assert!(
        apply
            .stdout
            .ends_with("Apply complete: 1 added, 3 changed, 0 removed.\n")
    );
    env.assert_converged();
    assert_eq!(env.read("/etc/fstab"), format!("{fstab_applied}{foreign}"));
    assert_eq!(env.read("/etc/dnsmasq.d/pinetboot.conf"), dnsmasq);
    assert_eq!(env.read("/nfs/raspi1/boot/firmware/cmdline.txt"), cmdline);
    assert_eq!(mode_of(&env.path("/tftpboot")), 0o755);
    assert_eq!(
        env.ns.dev_ino(&tftp),
        env.ns.dev_ino(&env.path("/nfs/raspi1/boot/firmware")),
        "the bind mount is back"
    );
}

// ---------------------------------------------------------------------------------------------
// Invariant 3: crash safety

/// Paths pinetboot writes in the single-client scenario, with where their "old" content lives
/// (relative to the root; `None`: did not exist).
fn managed_paths() -> Vec<(String, Option<String>)> {
    let img = "srv/rootfs/bookworm-lite";
    let mut v: Vec<(String, Option<String>)> = vec![
        ("etc/dnsmasq.d/pinetboot.conf".into(), None),
        ("etc/exports.d/pinetboot.exports".into(), None),
        ("etc/fstab".into(), Some("etc/fstab".into())),
        ("var/lib/pinetboot/state.json".into(), None),
    ];
    for rel in [
        "boot/firmware/cmdline.txt",
        "etc/fstab",
        "etc/hostname",
        "etc/hosts",
    ] {
        v.push((format!("nfs/raspi1/{rel}"), Some(format!("{img}/{rel}"))));
    }
    for rel in [
        "root/.ssh/authorized_keys",
        "etc/systemd/system/dphys-swapfile.service",
        "etc/systemd/system/resize2fs_once.service",
        "etc/systemd/system/rpi-resize.service",
        "etc/systemd/system/userconfig.service",
        "etc/systemd/system/sshd.service",
        "etc/systemd/system/multi-user.target.wants/ssh.service",
    ] {
        v.push((format!("nfs/raspi1/{rel}"), None));
    }
    v
}

/// A snapshot with the content of what is random per apply (the client's generated SSH host
/// key, and known_hosts which holds its public half) replaced by its length alone: two
/// applies make different keys, of the same kind, size, owner and mode.
fn without_random_content(s: Snapshot) -> Snapshot {
    s.into_iter()
        .map(|(p, mut e)| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            let random = matches!(
                name.as_deref(),
                Some("ssh_host_ed25519_key" | "ssh_host_ed25519_key.pub" | "known_hosts")
            );
            if let (true, Node::File(len, _)) = (random, &e.node) {
                e.node = Node::File(*len, 0);
            }
            (p, e)
        })
        .collect()
}

fn is_leftover(p: &Path) -> bool {
    p.file_name()
        .is_some_and(|n| n.to_string_lossy().contains(".pinetboot-"))
}

#[test]
fn crash_at_every_point_then_apply_converges_to_the_clean_end_state() {
    // The clean end state.
    let clean_env = Env::with_clients(&["raspi1"], false);
    let pre = snapshot(&clean_env.root);
    clean_env.apply_ok();
    let clean = without_random_content(snapshot(&clean_env.root));
    let managed = managed_paths();
    for (p, _) in &managed {
        assert!(
            clean.contains_key(Path::new(p)),
            "{p} missing after a clean apply"
        );
    }
    drop(clean_env);

    let mut leftovers_seen: Vec<String> = Vec::new();
    let mut passed = 0;
    for n in 1..=200u32 {
        let env = Env::with_clients(&["raspi1"], false);
        let crash = env.pt_env(&[("PINETBOOT_CRASH_AT", &n.to_string())], &["apply"]);
        if !crash.aborted() {
            crash.expect_code(0);
            passed = n - 1;
            break;
        }
        // Nothing half-written: every managed path is its old self or its new self.
        let now = without_random_content(snapshot(&env.root));
        let root_there = now.contains_key(Path::new("nfs/raspi1"));
        for (p, old) in &managed {
            if p.starts_with("nfs/raspi1/") && !root_there {
                continue;
            }
            let cur = now.get(Path::new(p)).map(|e| e.node.clone());
            let new = clean.get(Path::new(p)).map(|e| e.node.clone());
            let old = old
                .as_ref()
                .and_then(|o| pre.get(Path::new(o)))
                .map(|e| e.node.clone());
            assert!(
                cur == new || cur == old,
                "crash point {n}: {p} is neither old ({old:?}) nor new ({new:?}): {cur:?}"
            );
        }
        // Apply again: converges to the clean end state.
        let again = env.pt(&["apply"]);
        again.expect_code(0);
        env.assert_converged();
        let after = without_random_content(snapshot(&env.root));
        let leftovers: Vec<PathBuf> = after.keys().filter(|p| is_leftover(p)).cloned().collect();
        for l in &leftovers {
            leftovers_seen.push(format!("crash point {n}: {}", l.display()));
        }
        assert!(
            !after.contains_key(Path::new("nfs/.raspi1.pinetboot-staging")),
            "crash point {n}: the staging folder is left behind"
        );
        let filtered: Snapshot = after.into_iter().filter(|(p, _)| !is_leftover(p)).collect();
        assert_same(
            &clean,
            &filtered,
            Cmp::CONTENT,
            &format!("crash point {n}, then apply"),
        );
        let mounts = env.ns.mounts_under(&env.path("/tftpboot"));
        assert_eq!(mounts.len(), 1, "crash point {n}: mounts {mounts:?}");
    }
    assert!(passed >= 20, "only {passed} crash points were passed");
    eprintln!("crash points passed by one apply: {passed}");
    // A rewrite of a file removes the temp files an interrupted write of it left behind.
    assert!(
        leftovers_seen.is_empty(),
        "leftover temp files after recovery ({}):\n{}",
        leftovers_seen.len(),
        leftovers_seen.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Invariant 5: prune and purge

#[test]
fn removed_client_is_pruned_but_its_root_is_kept_until_purged_by_name() {
    let env = Env::with_clients(&["raspi1", "raspi2"], false);
    env.apply_ok();
    let root2 = env.path("/nfs/raspi2");
    let kept = snapshot(&root2);
    let fstab_before = env.read("/etc/fstab");
    env.write_config(&bookworm_cfg(&["raspi1"]));
    let plan = env.pt(&["plan", "--detailed-exitcode"]);
    plan.expect_code(2);
    insta::assert_snapshot!("plan_client_removed", env.redact(&plan.transcript()));
    assert_eq!(
        change_lines(&plan.stdout),
        vec![
            "  ~ file /etc/exports.d/pinetboot.exports".to_owned(),
            "  ~ file /var/lib/pinetboot/known_hosts".to_owned(),
            format!("  - bind mount /tftpboot/{S2} (client raspi2 is no longer declared)"),
            format!("  - directory /tftpboot/{S2} (client raspi2 is no longer declared)"),
        ],
        "{}",
        plan.stdout
    );

    let apply = env.apply_ok();
    assert_contains(
        &apply.stdout,
        "kept: client root /nfs/raspi2 of raspi2 (client data is never deleted implicitly; to delete it: pinetboot purge raspi2 --yes)\n",
    );
    assert!(
        apply
            .stdout
            .ends_with("Apply complete: 0 added, 2 changed, 2 removed.\n"),
        "{}",
        apply.stdout
    );
    env.assert_converged();
    let tftp2 = env.path(&format!("/tftpboot/{S2}"));
    assert!(
        env.ns.mounts_under(&tftp2).is_empty(),
        "raspi2's bind mount is still there"
    );
    assert!(!tftp2.exists(), "raspi2's TFTP folder is still there");
    env.ns.sh(&format!("! test -e '{}'", tftp2.display()));
    let exports = env.read("/etc/exports.d/pinetboot.exports");
    assert!(!exports.contains("/nfs/raspi2"), "{exports}");
    assert!(exports.contains("/nfs/raspi1 "), "{exports}");
    assert_eq!(env.read("/etc/fstab"), fstab_before);
    assert_same(
        &kept,
        &snapshot(&root2),
        Cmp::ALL,
        "the removed client's root",
    );

    // purge: refuses without --yes, refuses a declared client, deletes with --yes.
    let r = env.pt(&["purge", "raspi2"]);
    r.expect_code(1);
    assert_eq!(
        r.stderr,
        "error: this deletes /nfs/raspi2 and everything in it (client raspi2's data)\n  hint: run again with --yes: pinetboot purge raspi2 --yes\n"
    );
    assert_same(&kept, &snapshot(&root2), Cmp::ALL, "purge without --yes");
    let r = env.pt(&["purge", "raspi1", "--yes"]);
    r.expect_code(1);
    assert!(
        r.stderr
            .starts_with("error: client raspi1 is still declared in "),
        "{}",
        r.stderr
    );
    assert!(env.path("/nfs/raspi1/etc/hostname").is_file());
    let r = env.pt(&["purge", "raspi2", "--yes"]);
    r.expect_code(0);
    assert_eq!(r.stdout, "deleted client root /nfs/raspi2\n");
    assert!(!root2.exists());
    assert!(
        env.path("/srv/rootfs/bookworm-lite/etc/hostname").is_file(),
        "the image went too"
    );
    env.assert_converged();
    let r = env.pt(&["purge", "raspi2", "--yes"]);
    r.expect_code(1);
    assert!(
        r.stderr.starts_with("error: /nfs/raspi2 does not exist"),
        "{}",
        r.stderr
    );
}

#[test]
fn purge_refuses_while_the_removed_clients_boot_folder_is_still_mounted() {
    let env = Env::with_clients(&["raspi1", "raspi2"], false);
    env.apply_ok();
    env.write_config(&bookworm_cfg(&["raspi1"]));
    let before = snapshot(&env.path("/nfs/raspi2"));
    let r = env.pt(&["purge", "raspi2", "--yes"]);
    r.expect_code(1);
    assert_contains(
        &r.stderr,
        &format!("/tftpboot/{S2} is still mounted from or inside /nfs/raspi2"),
    );
    assert_same(
        &before,
        &snapshot(&env.path("/nfs/raspi2")),
        Cmp::ALL,
        "purge while mounted",
    );
}

// ---------------------------------------------------------------------------------------------
// Invariant 6: one apply at a time

fn hold_lock(env: &Env) -> File {
    std::fs::create_dir_all(env.path("/run")).unwrap();
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(env.path("/run/pinetboot.lock"))
        .unwrap();
    f.lock().expect("taking the lock from the test");
    f
}

#[test]
fn apply_waits_for_the_lock_or_fails_fast_with_no_wait() {
    let env = Env::with_clients(&["raspi1"], false);
    let lock = hold_lock(&env);
    let before = snapshot(&base(&env));
    let r = env.pt(&["apply", "--no-wait"]);
    r.expect_code(1);
    assert_eq!(
        r.stderr,
        "error: another pinetboot apply is running\n  hint: wait for it, or run without --no-wait to wait\n"
    );
    assert_eq!(r.stdout, "");
    assert_same(
        &before,
        &snapshot(&base(&env)),
        Cmp::ALL,
        "apply --no-wait while locked",
    );

    // Without --no-wait it says it waits, and does nothing until the lock is free.
    let err = env.outside.join("apply.stderr");
    let out = env.outside.join("apply.stdout");
    let mut full: Vec<String> = vec![
        "--root".into(),
        env.root.to_string_lossy().into(),
        "--config".into(),
        env.config.to_string_lossy().into(),
        "apply".into(),
    ];
    full.shrink_to_fit();
    let mut child = env
        .ns
        .command(120, bin(), &full)
        .stdout(Stdio::from(File::create(&out).unwrap()))
        .stderr(Stdio::from(File::create(&err).unwrap()))
        .spawn()
        .unwrap();
    let waiting = format!(
        "waiting for another pinetboot apply to finish (lock {}/run/pinetboot.lock)…\n",
        env.root.display()
    );
    assert!(
        wait_until(Duration::from_secs(20), || std::fs::read_to_string(&err)
            .unwrap_or_default()
            == waiting),
        "stderr: {:?}",
        std::fs::read_to_string(&err)
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "apply did not wait");
    assert!(
        !env.path("/nfs").exists(),
        "apply changed the host while waiting"
    );
    drop(lock);
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "{}",
        std::fs::read_to_string(&err).unwrap()
    );
    let stdout = std::fs::read_to_string(&out).unwrap();
    assert!(
        stdout.ends_with("Apply complete: 18 added, 4 changed, 0 removed.\n"),
        "{stdout}"
    );
    env.assert_converged();
}

#[test]
fn two_applies_started_together_never_interleave() {
    let env = Env::with_clients(&["raspi1", "raspi2", "raspi3"], true);
    let args: Vec<String> = vec![
        "--root".into(),
        env.root.to_string_lossy().into(),
        "--config".into(),
        env.config.to_string_lossy().into(),
        "apply".into(),
    ];
    let spawn = || {
        env.ns
            .command(120, bin(), &args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = spawn();
    let b = spawn();
    let a = a.wait_with_output().unwrap();
    let b = b.wait_with_output().unwrap();
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    assert_eq!(a.status.code(), Some(0), "{}", text(&a));
    assert_eq!(b.status.code(), Some(0), "{}", text(&b));
    let mut summaries: Vec<String> = [&a, &b]
        .iter()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .last()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    summaries.sort();
    assert_eq!(
        summaries,
        vec![
            "Apply complete: 42 added, 12 changed, 0 removed.".to_owned(),
            "Apply complete: no changes.".to_owned()
        ],
        "\n--- a\n{}\n--- b\n{}",
        text(&a),
        text(&b)
    );
    let waited = [&a, &b]
        .iter()
        .filter(|o| {
            String::from_utf8_lossy(&o.stderr)
                .contains("waiting for another pinetboot apply to finish")
        })
        .count();
    eprintln!("applies that waited for the lock: {waited}");
    env.assert_converged();
    assert_eq!(env.ns.mounts_under(&env.path("/tftpboot")).len(), 3);
}

// ---------------------------------------------------------------------------------------------
// Invariant 8: safe by default

fn check_safe_defaults(env: &Env, before: &Snapshot) {
    let exports = env.read("/etc/exports.d/pinetboot.exports");
    assert_eq!(
        exports,
        "# Managed by pinetboot: edits here are overwritten by `pinetboot apply`.\n\
# Client roots for Raspberry Pi network boot (exports(5)).\n\
/nfs/raspi1 192.168.2.51(rw,sync,no_subtree_check,no_root_squash)\n\
/nfs/raspi2 192.168.2.0/24(rw,sync,no_subtree_check,no_root_squash)\n"
    );
    assert!(!exports.contains('*'));
    let dnsmasq = env.read("/etc/dnsmasq.d/pinetboot.conf");
    assert!(!dnsmasq.contains("dhcp-range=0.0.0.0"), "{dnsmasq}");
    assert!(
        dnsmasq.contains("dhcp-host=dc:a6:32:01:02:03,set:pinetboot  # raspi2\n"),
        "{dnsmasq}"
    );
    assert!(
        dnsmasq.contains("pxe-service=tag:pinetboot,0,\"Raspberry Pi Boot\"\n"),
        "{dnsmasq}"
    );
    // Every folder pinetboot created outside client roots is 0755, /nfs 0700.
    let after = snapshot(&env.root);
    let mut created = Vec::new();
    for (p, e) in &after {
        if e.node != Node::Dir
            || before.contains_key(p)
            || p.starts_with("nfs/raspi1")
            || p.starts_with("nfs/raspi2")
        {
            continue;
        }
        created.push(format!("{} {:04o}", p.display(), e.mode));
    }
    let expected: Vec<String> = [
        "etc/dnsmasq.d",
        "etc/exports.d",
        "nfs",
        "run",
        "tftpboot",
        "tftpboot/0c4c21e5",
        "tftpboot/0c4c21e6",
        "var",
        "var/lib",
        "var/lib/pinetboot",
        "var/lib/pinetboot/tmp",
        "var/log",
        "var/log/pinetboot",
    ]
    .iter()
    // The client roots' folder (no local user enters a client root) and the tool checks'
    // scratch folder are private.
    .map(|p| {
        let private = *p == "nfs" || p.ends_with("/tmp");
        format!("{p} {}", if private { "0700" } else { "0755" })
    })
    .collect();
    assert_eq!(
        created, expected,
        "folders pinetboot created, with their modes"
    );
    // Nothing world-writable under the TFTP root, as the TFTP server sees it (mounts included).
    let found = env.ns.sh(&format!(
        "find '{}' -perm -0002 \\( -type d -o -type f \\) -print",
        env.path("/tftpboot").display()
    ));
    assert_eq!(found, "", "world-writable entries under the TFTP root");
}

fn safe_cfg() -> Cfg {
    let mut c1 = ClientCfg::new("raspi1", S1, "bookworm-lite");
    c1.address = Some("192.168.2.51".into());
    let mut c2 = ClientCfg::new("raspi2", S2, "bookworm-lite");
    c2.mac = Some("dc:a6:32:01:02:03".into());
    Cfg::default().image("bookworm-lite").client(c1).client(c2)
}

#[test]
fn safe_defaults_no_star_exports_and_0755_folders_but_a_private_nfs() {
    let env = Env::new();
    env.add_image("bookworm-lite", Release::Bookworm, false);
    env.write_config(&safe_cfg());
    let before = snapshot(&env.root);
    env.apply_ok();
    check_safe_defaults(&env, &before);
}

#[test]
fn safe_defaults_hold_under_umask_000() {
    let env = Env::new();
    env.add_image("bookworm-lite", Release::Bookworm, false);
    env.write_config(&safe_cfg());
    let before = snapshot(&env.root);
    let r = env.ns.run(
        "sh",
        &[
            "-c",
            "umask 000 && exec \"$0\" \"$@\"",
            bin(),
            "--root",
            env.root.to_str().unwrap(),
            "--config",
            env.config.to_str().unwrap(),
            "apply",
        ],
    );
    r.expect_code(0);
    check_safe_defaults(&env, &before);
    let mode = mode_of(&env.path("/run/pinetboot.lock"));
    assert_eq!(
        mode & 0o002,
        0,
        "the lock file is world-writable ({mode:04o})"
    );
}

// ---------------------------------------------------------------------------------------------
// The host's fstab, as a property

/// (before the block, the block's inner lines, after the block); no block: (text, None, "").
fn split_fence(text: &str) -> (String, Option<Vec<String>>, String) {
    let mut before = String::new();
    let mut block: Option<Vec<String>> = None;
    let mut after = String::new();
    let mut state = 0;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches('\n');
        match state {
            0 if bare == "# BEGIN pinetboot" => {
                state = 1;
                block = Some(Vec::new());
            }
            0 => before.push_str(line),
            1 if bare == "# END pinetboot" => state = 2,
            1 => block.as_mut().unwrap().push(bare.to_owned()),
            _ => after.push_str(line),
        }
    }
    assert_ne!(state, 1, "unterminated block in {text:?}");
    (before, block, after)
}

fn expected_block(names: &[&str]) -> Option<Vec<String>> {
    if names.is_empty() {
        return None;
    }
    let mut v =
        vec!["# Boot folders of Raspberry Pi clients, bind-mounted onto the TFTP root.".to_owned()];
    for n in names {
        let s = match *n {
            "raspi1" => S1,
            "raspi2" => S2,
            _ => S3,
        };
        v.push(format!(
            "/nfs/{n}/boot/firmware /tftpboot/{s} none bind,ro,nosymfollow,nosuid,nodev,noexec,nofail 0 0"
        ));
    }
    Some(v)
}

fn foreign_text() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        "#[ a-zA-Z0-9=/]{0,20}",
        "UUID=[0-9a-f]{4}-[0-9a-f]{4} /[a-z]{1,6} ext4 defaults 0 [0-2]",
        "tmpfs /[a-z]{1,6} tmpfs defaults,size=[0-9]{1,3}m 0 0",
        "[ \t]{0,3}",
        Just("# BEGIN pinetboo".to_owned()),
        Just("#END pinetboot".to_owned()),
        Just("/dev/sda1 /data\\040dir ext4 defaults 0 2".to_owned()),
    ];
    (prop::collection::vec(line, 0..6), any::<bool>()).prop_map(|(lines, nl)| {
        let mut t = lines.join("\n");
        if nl && !lines.is_empty() {
            t.push('\n');
        }
        t
    })
}

fn subset(mask: u8) -> Vec<&'static str> {
    ["raspi1", "raspi2", "raspi3"]
        .into_iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, n)| n)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    /// The host's fstab: pinetboot writes no line of its own any more; a block an earlier
    /// version wrote is removed, and every other byte stays.
    #[test]
    fn bytes_outside_the_legacy_fstab_block_never_change(
        prefix in foreign_text(),
        suffix in foreign_text(),
        legacy in 0u8..8,
        a in 0u8..8,
    ) {
        let env = Env::new();
        env.add_image("bookworm-lite", Release::Bookworm, false);
        let fstab = env.path("/etc/fstab");
        let sep = if prefix.is_empty() || prefix.ends_with('\n') { "" } else { "\n" };
        let old = match expected_block(&subset(legacy)) {
            Some(lines) => format!(
                "{prefix}{sep}# BEGIN pinetboot\n{}\n# END pinetboot\n{suffix}",
                lines.join("\n")
            ),
            None => format!("{prefix}{suffix}"),
        };
        std::fs::write(&fstab, &old).unwrap();
        env.write_config(&bookworm_cfg(&subset(a)));
        env.apply_ok();
        let now = std::fs::read_to_string(&fstab).unwrap();
        let (_, block, _) = split_fence(&now);
        prop_assert_eq!(block, None);
        if legacy == 0 {
            prop_assert_eq!(&now, &old);
        } else {
            prop_assert_eq!(&now, &format!("{prefix}{sep}{suffix}"));
        }
        env.assert_converged();
    }
}

// ---------------------------------------------------------------------------------------------
// Leftovers of killed applies, and the tool checks' scratch space

/// Staging folders a killed apply left in the client-root folder, of a client no longer
/// declared and of one still declared, are shown by plan (text and JSON, with their apparent
/// size) and removed by apply without following a symlink out of them; one with a mount inside
/// is a warning and left alone until unmounted; a root moved aside by `reprovision` is client
/// data and never touched.
#[test]
fn leftover_staging_folders_are_shown_and_removed_never_through_links_or_mounts() {
    let env = Env::with_clients(&["raspi1"], false);
    env.apply_ok();
    let outside_before = snapshot(&env.outside);
    // A removed client's interrupted clone: 3 MiB apparent (sparse), links out of it.
    let gone = env.path("/nfs/.raspi9.pinetboot-staging");
    std::fs::create_dir_all(gone.join("usr/bin")).unwrap();
    File::create(gone.join("usr/bin/big"))
        .unwrap()
        .set_len(3 << 20)
        .unwrap();
    std::os::unix::fs::symlink(&env.outside, gone.join("etc")).unwrap();
    std::os::unix::fs::symlink(env.outside.join("secret"), gone.join("usr/bin/secret")).unwrap();
    std::fs::hard_link(env.outside.join("secret"), gone.join("usr/bin/hardlink")).unwrap();
    // A declared client's (its root exists: the clone it belonged to is long over).
    let mine = env.path("/nfs/.raspi1.pinetboot-staging");
    std::fs::create_dir_all(mine.join("boot")).unwrap();
    std::fs::write(mine.join("boot/x"), vec![7u8; 1000]).unwrap();
    // Client data a reprovision moved aside.
    let aside = env.path("/nfs/.raspi1.pinetboot-old-20260101T000000Z");
    std::fs::create_dir_all(&aside).unwrap();
    std::fs::write(aside.join("notes"), "mine\n").unwrap();
    // A leftover with a mount inside (in the test's namespace).
    let mounted = env.path("/nfs/.raspi8.pinetboot-staging");
    std::fs::create_dir_all(mounted.join("mnt")).unwrap();
    env.ns.sh(&format!(
        "mount --bind {} {}",
        env.outside.display(),
        mounted.join("mnt").display()
    ));

    let plan = env.pt(&["plan", "--detailed-exitcode"]);
    plan.expect_code(2);
    let secret_len = std::fs::metadata(env.outside.join("secret")).unwrap().len();
    assert_eq!(
        change_lines(&plan.stdout),
        vec![
            "  - staging folder /nfs/.raspi1.pinetboot-staging (an interrupted clone of client raspi1's root; the clone starts over; 1000 B)".to_owned(),
            "  - staging folder /nfs/.raspi9.pinetboot-staging (an interrupted clone of client raspi9's root; raspi9 is no longer declared; 3.0 MiB)".to_owned(),
        ],
        "{}",
        plan.stdout
    );
    let refusal = "/nfs/.raspi8.pinetboot-staging is left from an interrupted apply but /nfs/.raspi8.pinetboot-staging/mnt is a mount point: pinetboot never removes anything through a mount; unmount it, then apply again";
    assert_contains(&plan.stdout, refusal);
    assert!(
        plan.stdout
            .ends_with("Plan: 0 to add, 0 to change, 2 to remove.\n"),
        "{}",
        plan.stdout
    );
    let json = env.pt(&["plan", "--json"]);
    json.expect_code(0);
    let v = check_json_plan(&env, &json.stdout);
    assert_eq!(v["changes"][0]["kind"], "staging folder");
    assert_eq!(v["changes"][0]["bytes"], Value::from(1000));
    assert_eq!(v["changes"][1]["path"], "/nfs/.raspi9.pinetboot-staging");
    assert_eq!(
        v["changes"][1]["bytes"],
        Value::from((3u64 << 20) + secret_len)
    );
    assert_eq!(v["changes"][1]["client"], Value::Null);
    assert!(
        v["warnings"]
            .as_array()
            .unwrap()
            .contains(&Value::from(refusal))
    );

    let r = env.apply_ok();
    assert_contains(
        &r.stdout,
        "- staging folder /nfs/.raspi9.pinetboot-staging\n",
    );
    assert_contains(&r.stdout, &format!("not removed: {refusal}"));
    assert!(!gone.exists() && !mine.exists());
    assert_eq!(
        std::fs::read_to_string(aside.join("notes")).unwrap(),
        "mine\n"
    );
    assert!(mounted.join("mnt").is_dir());
    assert_eq!(
        env.ns.mounts_under(&mounted).len(),
        1,
        "the mount is left alone"
    );
    assert_same(
        &outside_before,
        &snapshot(&env.outside),
        Cmp::CONTENT,
        "outside",
    );

    // Unmounted: removed by the next apply.
    env.ns
        .sh(&format!("umount {}", mounted.join("mnt").display()));
    let plan = env.pt(&["plan", "--detailed-exitcode"]);
    plan.expect_code(2);
    assert_eq!(
        change_lines(&plan.stdout),
        vec!["  - staging folder /nfs/.raspi8.pinetboot-staging (an interrupted clone of client raspi8's root; raspi8 is no longer declared; 0 B)".to_owned()]
    );
    env.apply_ok();
    assert!(!mounted.exists());
    assert!(aside.join("notes").is_file());
    // Converged; the moved-aside root is only listed, for `pinetboot gc --yes`.
    let plan = env.pt(&["plan", "--detailed-exitcode"]);
    plan.expect_code(0);
    assert_eq!(
        plan.stdout,
        "No changes. The host matches the configuration.\n\n\
         Removable (apply keeps them; `pinetboot gc --yes` deletes them):\n  \
         old root of client raspi1, moved aside by reprovision at 20260101T000000Z (/nfs/.raspi1.pinetboot-old-20260101T000000Z)\n"
    );
    assert_same(
        &outside_before,
        &snapshot(&env.outside),
        Cmp::CONTENT,
        "outside",
    );
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The tool checks (dnsmasq --test, exportfs) make their scratch folders in
/// `<paths.state>/tmp` (0700), never in `$TMPDIR`: an apply that runs both works with
/// `TMPDIR` naming nothing, and leaves an empty `TMPDIR` empty. A check killed midway (SIGKILL
/// by pid) leaves its folder there, and the next apply removes it, and anything else left
/// there, without following a link out of it.
#[test]
fn tool_checks_work_in_pinetboots_scratch_folder_which_the_next_apply_empties() {
    require_tool("dnsmasq", "dnsmasq");
    require_tool("exportfs", "nfs-kernel-server");
    let env = Env::with_clients(&["raspi1"], false);
    let nowhere = base(&env).join("no-such-tmpdir");
    let r = env.pt_env(&[("TMPDIR", nowhere.to_str().unwrap())], &["apply"]);
    r.expect_code(0);
    assert!(
        !r.stderr.contains("was not checked") && !r.stderr.contains("not installed"),
        "a tool check did not run: {}",
        r.stderr
    );
    assert!(!nowhere.exists());
    let scratch = env.path("/var/lib/pinetboot/tmp");
    assert_eq!(mode_of(&scratch), 0o700);
    assert!(names_in(&scratch).is_empty());

    // A new client changes the exports and the dnsmasq drop-in: the first
    // check is killed while its scratch folder is there.
    env.write_config(&bookworm_cfg(&["raspi1", "raspi2"]));
    let tmpdir = base(&env).join("tmpdir");
    std::fs::create_dir(&tmpdir).unwrap();
    let vars = [("TMPDIR", tmpdir.to_str().unwrap())];
    let paused = Paused::start(&env, "tool-check", &vars, &["apply"]);
    let left = names_in(&scratch);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].starts_with(".tmp"), "{left:?}");
    paused.kill();
    assert_eq!(names_in(&scratch), left, "a killed check leaves its folder");
    assert!(names_in(&tmpdir).is_empty());
    // Anything else there goes too, never through a link.
    let outside_before = snapshot(&env.outside);
    let planted = scratch.join(".tmpPlanted");
    std::fs::create_dir_all(planted.join("varlib")).unwrap();
    std::os::unix::fs::symlink(&env.outside, planted.join("etc")).unwrap();
    std::os::unix::fs::symlink(env.outside.join("secret"), planted.join("varlib/etab")).unwrap();
    std::fs::write(planted.join("exports"), "/nfs/x 10.0.0.0/24(rw)\n").unwrap();

    let r = env.pt_env(&vars, &["apply"]);
    r.expect_code(0);
    assert!(names_in(&scratch).is_empty(), "{:?}", names_in(&scratch));
    assert!(names_in(&tmpdir).is_empty());
    assert_same(
        &outside_before,
        &snapshot(&env.outside),
        Cmp::CONTENT,
        "outside",
    );
    env.assert_converged();
}

/// `bootloader:` with the shared base image copied under the root, and `eeprom` settings for
/// raspi1 (with `mac`) and raspi2.
fn with_eeprom(env: &Env, base: &[u8], raspi1: &str, raspi2: &str) {
    let dir = env.path("/srv/eeprom");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("pieeprom.bin"), base).unwrap();
    let mut yaml = bookworm_cfg(&["raspi1", "raspi2"]).yaml();
    yaml = yaml.replacen(
        "images:\n",
        "bootloader:\n  image: /srv/eeprom/pieeprom.bin\nimages:\n",
        1,
    );
    yaml = yaml.replacen(
        &format!("    serial: \"{S1}\"\n"),
        &format!("    serial: \"{S1}\"\n    mac: \"dc:a6:32:01:02:0a\"\n    eeprom: {raspi1}\n"),
        1,
    );
    yaml = yaml.replacen(
        &format!("    serial: \"{S2}\"\n"),
        &format!("    serial: \"{S2}\"\n    eeprom: {raspi2}\n"),
        1,
    );
    std::fs::write(&env.config, yaml).unwrap();
}

#[test]
fn the_boot_folder_is_served_in_the_folder_the_tftp_prefix_names_too() {
    let env = Env::new();
    env.add_image("bookworm-lite", Release::Bookworm, false);
    let base =
        std::fs::read(shared_dir().join("fixtures/rpi-eeprom/pieeprom-2026-05-17.bin")).unwrap();
    with_eeprom(
        &env,
        &base,
        "{tftp_prefix: mac}",
        "{tftp_prefix: {string: lab2/}}",
    );
    env.apply_ok();
    env.assert_converged();
    for (folder, client) in [
        (S1, "raspi1"),
        ("dc-a6-32-01-02-0a", "raspi1"),
        (S2, "raspi2"),
        ("lab2", "raspi2"),
    ] {
        assert_eq!(
            env.ns.dev_ino(&env.path(&format!("/tftpboot/{folder}"))),
            env.ns
                .dev_ino(&env.path(&format!("/nfs/{client}/boot/firmware"))),
            "/tftpboot/{folder} is not {client}'s boot folder"
        );
    }
    let state = env.read("/var/lib/pinetboot/state.json");
    assert!(
        state.contains("\"prefix_folders\": [\n        \"/tftpboot/dc-a6-32-01-02-0a\"\n      ]"),
        "{state}"
    );
    // A base image whose own config sets another prefix, for a client that declares none:
    // the flashed Pi would ask where nothing is served. That client is a conflict.
    let other = pinetboot::eeprom::EepromImage::parse(base)
        .unwrap()
        .with_config("[all]\nBOOT_UART=0\nTFTP_PREFIX=2\n", None)
        .unwrap();
    with_eeprom(
        &env,
        &other,
        "{tftp_prefix: mac}",
        "{boot_order: [sd, network]}",
    );
    // The bootloader update's timestamp is the clock's: a plan in the same second as the
    // apply would show the `ts:` line unchanged. A clock in 2100 keeps the snapshot stable.
    let plan = env.pt_env(&[("SOURCE_DATE_EPOCH", "4102444800")], &["plan"]);
    plan.expect_code(1);
    insta::assert_snapshot!(
        "plan_eeprom_prefix_conflict",
        redact_times_and_hashes(&env.redact(&plan.transcript()))
    );
    assert_contains(
        &plan.stdout,
        "! client raspi2: the bootloader image /srv/eeprom/pieeprom.bin sets TFTP_PREFIX in its own config",
    );
    assert_lacks(&plan.stdout, "! client raspi1");
}
