//! Invariant 10, on the real binary against throwaway roots: files others own (the host's
//! `/etc/fstab`, a client's `etc/hosts` and `etc/fstab`) are handled as bytes. A broken fence
//! (lone BEGIN or END, END before BEGIN, a BEGIN inside an open block, two blocks) is an error
//! on the host (plan and apply exit 1, nothing written anywhere) and a conflict for a client
//! (naming the file and line); every byte outside the fence survives apply, whatever it is; the
//! plan's diff escapes what is not text; a symlinked host fstab is written through (owner and
//! mode kept), a dangling or looping one is an error, and a client's symlink is never
//! followed. Needs root.
//!
//! The fstab block's lines are not asserted here (they are the fstab resource's business): a
//! stale block is planted, and the tests check that it changed and that nothing else did.

use crate::support::run::Run;
use crate::support::text::assert_contains;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use crate::support::fixture::*;
use crate::support::snapshot::*;
use proptest::prelude::*;

const BEGIN: &str = "# BEGIN pinetboot";
const END: &str = "# END pinetboot";
/// A line in a stale block that pinetboot must replace or remove.
const STALE: &str = "/nfs/gone/boot/firmware /tftpboot/deadbeef none bind 0 0";

fn two_clients() -> Env {
    Env::with_clients(&["raspi1", "raspi2"], false)
}

/// Everything under the test's temp folder (root, config, canary) but the lock file's folder.
fn everything(env: &Env) -> Snapshot {
    snapshot_without(env.root.parent().unwrap(), &["root/run"])
}

/// (bytes before the block, the block's inner lines, bytes after it); an independent reading
/// of the fence for canonical markers.
fn split(text: &[u8]) -> (Vec<u8>, Option<Vec<Vec<u8>>>, Vec<u8>) {
    let (mut before, mut after) = (Vec::new(), Vec::new());
    let mut block: Option<Vec<Vec<u8>>> = None;
    let mut state = 0;
    for line in text.split_inclusive(|&b| b == b'\n') {
        let bare = line.strip_suffix(b"\n").unwrap_or(line);
        match state {
            0 if bare == BEGIN.as_bytes() => {
                state = 1;
                block = Some(Vec::new());
            }
            0 => before.extend_from_slice(line),
            1 if bare == END.as_bytes() => state = 2,
            1 => block.as_mut().unwrap().push(bare.to_vec()),
            _ => after.extend_from_slice(line),
        }
    }
    assert_ne!(
        state,
        1,
        "unterminated block in {:?}",
        String::from_utf8_lossy(text)
    );
    (before, block, after)
}

fn stale_block() -> String {
    format!("{BEGIN}\n{STALE}\n{END}\n")
}

// ---------------------------------------------------------------------------------------------
// Broken fences

/// Broken shapes of a file: (what, text, the message expected after the file's name).
fn broken_shapes(base: &str, inner: &str, user: &str) -> Vec<(&'static str, String, String)> {
    let n = base.lines().count();
    let shapes = vec![
        (
            "a block cut short, user lines after it (the issue's case)",
            format!("{base}{BEGIN}\n{inner}\n{user}"),
            format!(" line {}: `{BEGIN}` has no `{END}` after it", n + 1),
        ),
        (
            "a file truncated inside the BEGIN line",
            format!("{base}{BEGIN}"),
            format!(" line {}: `{BEGIN}` has no `{END}` after it", n + 1),
        ),
        (
            "a lone END",
            format!("{base}{END}\n{user}"),
            format!(" line {}: `{END}` has no `{BEGIN}` before it", n + 1),
        ),
        (
            "END before BEGIN",
            format!("{END}\n{base}{BEGIN}\n{inner}\n"),
            format!(" line 1: `{END}` has no `{BEGIN}` before it"),
        ),
        (
            "a second apply's block appended after a block cut short",
            format!("{base}{BEGIN}\n{inner}\n{user}{BEGIN}\n{inner}\n{END}\n"),
            format!(
                " line {}: `{BEGIN}` again, inside the block opened at line {} (no `{END}` between them)",
                n + 3 + user.lines().count(),
                n + 1
            ),
        ),
        (
            "two blocks",
            format!("{base}{BEGIN}\n{inner}\n{END}\n{user}{BEGIN}\n{inner}\n{END}\n"),
            format!(
                " line {}: a second pinetboot block (the first is lines {}–{})",
                n + 4 + user.lines().count(),
                n + 1,
                n + 3
            ),
        ),
    ];
    shapes
        .into_iter()
        .map(|(what, text, m)| (what, text, format!("{m}; nothing was written")))
        .collect()
}

/// Asserts the bytes around the fstab's block (or, when pinetboot removed it, the whole file)
/// are exactly `before` and `after`, and the stale line is gone.
#[track_caller]
fn assert_outside(text: &[u8], before: &[u8], after: &[u8]) {
    let (b, block, a) = split(text);
    match block {
        Some(lines) => {
            assert_eq!((show(&b), show(&a)), (show(before), show(after)));
            assert!(
                !lines.iter().any(|l| l == STALE.as_bytes()),
                "stale line kept"
            );
        }
        None => assert_eq!(show(&b), show(&[before, after].concat())),
    }
}

/// Runs each of `runs`: every one exits 1, passes `check`, and changes nothing under the
/// test's temp folder.
fn each_fails_and_changes_nothing(env: &Env, what: &str, runs: &[&[&str]], check: impl Fn(&Run)) {
    let before = everything(env);
    for args in runs {
        let r = env.pt(args);
        assert_eq!(
            r.code(),
            Some(1),
            "{what}: {}\n{}{}",
            r.what,
            r.stdout,
            r.stderr
        );
        check(&r);
        assert_same(
            &before,
            &everything(env),
            Cmp::ALL,
            &format!("{what}: {}", r.what),
        );
    }
}

/// Bytes as an unambiguous ASCII string, for assertions that print them.
fn show(b: &[u8]) -> String {
    b.escape_ascii().to_string()
}

#[test]
fn a_broken_host_fstab_fence_stops_plan_and_apply_and_nothing_is_written() {
    let env = two_clients();
    env.apply_ok();
    let user =
        "10.0.0.5:/srv/media /media nfs defaults,_netdev 0 0\n/dev/sdb1 /data ext4 defaults 0 2\n";
    for (what, text, message) in broken_shapes(HOST_FSTAB, STALE, user) {
        std::fs::write(env.path("/etc/fstab"), &text).unwrap();
        // Drift elsewhere: an apply that went ahead would repair it.
        std::fs::write(env.path("/nfs/raspi2/etc/hostname"), "drifted\n").unwrap();
        let want = format!("error: /etc/fstab{message}");
        let runs = [&["plan"][..], &["plan", "--json"], &["apply"], &["apply"]];
        each_fails_and_changes_nothing(&env, what, &runs, |r| {
            assert!(
                r.stderr.starts_with(&want) && r.stderr.contains("\n  hint: "),
                "{what}: {} does not say {want:?} with a hint:\n{}",
                r.what,
                r.stderr
            );
            assert!(!r.stdout.contains("Apply complete"), "{what}: {}", r.stdout);
        });
        assert_eq!(
            std::fs::read_to_string(env.path("/etc/fstab")).unwrap(),
            text
        );
    }
    // Mended by hand: apply converges, the user's lines are still there.
    let mended = format!("{HOST_FSTAB}{BEGIN}\n{STALE}\n{END}\n{user}");
    std::fs::write(env.path("/etc/fstab"), &mended).unwrap();
    env.apply_ok();
    env.assert_converged();
    assert_outside(
        &std::fs::read(env.path("/etc/fstab")).unwrap(),
        HOST_FSTAB.as_bytes(),
        user.as_bytes(),
    );
}

#[test]
fn a_broken_fence_in_a_client_file_is_that_clients_conflict() {
    let env = two_clients();
    env.apply_ok();
    let hosts = env.path("/nfs/raspi1/etc/hosts");
    let base = "127.0.0.1\tlocalhost\n::1\t\tlocalhost\n";
    let inner = "127.0.1.1\traspi1";
    let user = "10.0.0.9\tnas\n";
    for (what, text, message) in broken_shapes(base, inner, user) {
        std::fs::write(&hosts, &text).unwrap();
        // Drift in both clients: raspi2's is repaired, raspi1's is left with the conflict.
        std::fs::write(env.path("/nfs/raspi1/etc/hostname"), "drifted\n").unwrap();
        std::fs::write(env.path("/nfs/raspi2/etc/hostname"), "drifted\n").unwrap();
        let want = format!("{}{message}", hosts.display());
        let plan = env.pt(&["plan"]);
        plan.expect_code(1);
        let line = format!("  ! client raspi1: {want}");
        assert!(
            plan.stdout.contains(&line),
            "{what}: no {line:?} in\n{}",
            plan.stdout
        );
        assert!(
            plan.stdout.contains(&format!("{want}\n      hint: ")),
            "{what}: the hint is not the fence's:\n{}",
            plan.stdout
        );
        assert!(
            !plan.stdout.contains("~ file /nfs/raspi1/"),
            "{what}:\n{}",
            plan.stdout
        );
        let json = env.pt(&["plan", "--json"]);
        json.expect_code(1);
        let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
        assert_eq!(v["conflicts"][0]["client"], "raspi1", "{what}");
        assert!(
            v["conflicts"][0]["message"]
                .as_str()
                .unwrap()
                .contains(&want),
            "{what}: {}",
            json.stdout
        );
        let apply = env.pt(&["apply"]);
        apply.expect_code(1);
        assert!(apply.stderr.contains(&want), "{what}: {}", apply.stderr);
        assert_eq!(std::fs::read_to_string(&hosts).unwrap(), text, "{what}");
        assert_eq!(env.read("/nfs/raspi1/etc/hostname"), "drifted\n", "{what}");
        assert_eq!(env.read("/nfs/raspi2/etc/hostname"), "raspi2\n", "{what}");
    }
    // Mended: raspi1 converges too, the user's line kept.
    std::fs::write(&hosts, format!("{base}{user}")).unwrap();
    env.apply_ok();
    env.assert_converged();
    assert_eq!(
        env.read("/nfs/raspi1/etc/hosts"),
        format!("{base}{user}{BEGIN}\n{inner}\n{END}\n")
    );
}

#[test]
fn a_broken_fence_in_the_image_makes_its_clients_a_conflict_before_any_copy() {
    let env = two_clients();
    let hosts = env.path("/srv/rootfs/bookworm-lite/etc/hosts");
    let text = format!("{IMAGE_HOSTS}{BEGIN}\n127.0.1.1\told\n");
    std::fs::write(&hosts, &text).unwrap();
    let plan = env.pt(&["plan"]);
    plan.expect_code(1);
    let want = format!(
        "{} line 7: `{BEGIN}` has no `{END}` after it",
        env.path("/srv/rootfs/bookworm-lite/etc/hosts").display()
    );
    for client in ["raspi1", "raspi2"] {
        assert_contains(&plan.stdout, &format!("  ! client {client}: {want}"));
    }
    env.pt(&["apply"]).expect_code(1);
    assert!(!env.path("/nfs/raspi1").exists());
    assert_eq!(std::fs::read_to_string(&hosts).unwrap(), text);
}

// ---------------------------------------------------------------------------------------------
// Bytes

#[test]
fn bytes_outside_the_fences_survive_apply_and_the_plan_shows_them_escaped() {
    let env = two_clients();
    env.apply_ok();
    // The host's fstab: bytes that are not UTF-8, CR, NUL, a stale block, no final newline.
    let fstab_before: &[u8] =
        b"# caf\xe9 \xff\xfe latin-1 and junk\r\nUUID=1 / ext4 defaults 0 1\r\n\0nul\n";
    let fstab_after: &[u8] = b"# after \xc3\x28 bad utf-8\nLABEL=x /srv xfs defaults 0 0";
    let fstab = [fstab_before, stale_block().as_bytes(), fstab_after].concat();
    std::fs::write(env.path("/etc/fstab"), &fstab).unwrap();
    // raspi1's hosts: the same, and an image-style hostname line pinetboot replaces.
    let hosts_path = env.path("/nfs/raspi1/etc/hosts");
    let hosts = std::fs::read(&hosts_path).unwrap();
    let (_, block, _) = split(&hosts);
    assert!(block.is_some());
    let odd: &[u8] = b"10.0.0.7 caf\xe9\r\n\x1b[31mred\n127.0.1.1\traspberrypi\n\0\n";
    let hosts_odd = [odd, &hosts, b"10.0.0.8 tail \xff".as_slice()].concat();
    std::fs::write(&hosts_path, &hosts_odd).unwrap();
    // raspi1's fstab: an SD-card line among odd bytes.
    let cfstab_path = env.path("/nfs/raspi1/etc/fstab");
    let cfstab: &[u8] = b"proc /proc proc defaults 0 0\n# \xff\r\nPARTUUID=4e639091-02  /  ext4 defaults 0 1\n/dev/sda1 /caf\xe9 ext4 defaults 0 2";
    std::fs::write(&cfstab_path, cfstab).unwrap();

    // A whole file pinetboot owns, edited by hand in Latin-1: rewritten, the diff readable.
    let dropin = env.path("/etc/dnsmasq.d/pinetboot.conf");
    let mut edited = std::fs::read(&dropin).unwrap();
    edited.extend_from_slice(b"# caf\xe9\n");
    std::fs::write(&dropin, edited).unwrap();

    let plan = env.pt(&["plan"]);
    plan.expect_code(0);
    assert!(!plan.stdout.contains('\u{fffd}'), "{}", plan.stdout);
    assert!(!plan.stdout.contains('\x1b') && !plan.stdout.contains('\r'));
    for shown in [
        "       UUID=1 / ext4 defaults 0 1\\x0d\n",
        "       \\x00nul\n",
        "      -127.0.1.1\traspberrypi\n",
        "       \\x1b[31mred\n",
        "      -PARTUUID=4e639091-02  /  ext4 defaults 0 1\n",
        "       # \\xff\\x0d\n",
        "       /dev/sda1 /caf\\xe9 ext4 defaults 0 2\n",
        "      -# caf\\xe9\n",
    ] {
        assert!(
            plan.stdout.contains(shown),
            "no {shown:?} in\n{}",
            plan.stdout
        );
    }
    let json = env.pt(&["plan", "--json"]);
    json.expect_code(0);
    serde_json::from_str::<serde_json::Value>(&json.stdout).unwrap();

    env.apply_ok();
    env.assert_converged();
    assert_outside(
        &std::fs::read(env.path("/etc/fstab")).unwrap(),
        fstab_before,
        fstab_after,
    );
    assert_eq!(
        show(&std::fs::read(&hosts_path).unwrap()),
        show(
            &[
                b"10.0.0.7 caf\xe9\r\n\x1b[31mred\n\0\n".as_slice(),
                &hosts,
                b"10.0.0.8 tail \xff"
            ]
            .concat()
        )
    );
    assert_eq!(
        show(&std::fs::read(&cfstab_path).unwrap()),
        show(b"proc /proc proc defaults 0 0\n# \xff\r\n/dev/sda1 /caf\xe9 ext4 defaults 0 2")
    );
}

/// Arbitrary lines outside the fences: any bytes, with no marker, no `127.0.1.1` line and no
/// SD-card line among them (those are pinetboot's to change), any line endings, maybe no final
/// newline.
fn foreign() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..24),
        1 => Just(b"tmpfs /tmp tmpfs defaults 0 0".to_vec()),
        1 => Just(b"#BEGIN pinetboot".to_vec()),
        1 => Just(b"127.0.1.10 not-the-hostname-line".to_vec()),
        1 => Just(b"\xff\0\r".to_vec()),
    ];
    (
        proptest::collection::vec(line, 0..6),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(lines, crlf, last)| {
            let end: &[u8] = if crlf { b"\r\n" } else { b"\n" };
            let mut out = Vec::new();
            let n = lines.len();
            for (i, l) in lines.into_iter().enumerate() {
                out.extend_from_slice(&l);
                if i + 1 < n || last {
                    out.extend_from_slice(end);
                }
            }
            out
        })
        .prop_filter("pinetboot's own lines", |t| {
            t.split(|&b| b == b'\n').all(|l| {
                let s = String::from_utf8_lossy(l);
                let t = s.trim();
                let first = s.split_whitespace().next().unwrap_or("");
                t != BEGIN
                    && t != END
                    && first != "127.0.1.1"
                    && !["PARTUUID=", "UUID=", "LABEL=", "/dev/mmcblk0p"]
                        .iter()
                        .any(|p| first.starts_with(p))
            })
        })
}

fn with_newline(mut b: Vec<u8>) -> Vec<u8> {
    if !b.is_empty() && !b.ends_with(b"\n") {
        b.push(b'\n');
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever bytes surround the fences in the host's fstab and a client's hosts and fstab,
    /// apply leaves them exactly as they were, and converges.
    #[test]
    fn any_bytes_outside_the_fences_survive_apply(
        fstab_a in foreign(),
        fstab_b in foreign(),
        hosts_a in foreign(),
        hosts_b in foreign(),
        cfstab in foreign(),
    ) {
        let env = Env::new();
        env.add_image("bookworm-lite", Release::Bookworm, false);
        env.write_config(&Cfg::default().image("bookworm-lite").client(ClientCfg::new("raspi1", S1, "bookworm-lite")));
        env.apply_ok();
        let fstab_a = with_newline(fstab_a);
        std::fs::write(env.path("/etc/fstab"), [fstab_a.as_slice(), stale_block().as_bytes(), &fstab_b].concat()).unwrap();
        // The hosts file: foreign bytes, the image's hostname line, no block yet, more bytes.
        let hosts_path = env.path("/nfs/raspi1/etc/hosts");
        std::fs::write(&hosts_path, [hosts_a.as_slice(), b"\n127.0.1.1 raspberrypi\n", &hosts_b].concat()).unwrap();
        let cfstab_path = env.path("/nfs/raspi1/etc/fstab");
        let sd = b"PARTUUID=4e639091-02  /  ext4 defaults 0 1\n";
        std::fs::write(&cfstab_path, [sd.as_slice(), &cfstab].concat()).unwrap();

        env.apply_ok();
        env.assert_converged();
        assert_outside(&std::fs::read(env.path("/etc/fstab")).unwrap(), &fstab_a, &fstab_b);
        let hosts = std::fs::read(&hosts_path).unwrap();
        let (b, block, a) = split(&hosts);
        prop_assert_eq!(show(&b), show(&with_newline([hosts_a.as_slice(), b"\n", &hosts_b].concat())));
        prop_assert_eq!(block, Some(vec![b"127.0.1.1\traspi1".to_vec()]));
        prop_assert_eq!(show(&a), "");
        prop_assert_eq!(show(&std::fs::read(&cfstab_path).unwrap()), show(&cfstab));
    }
}

// ---------------------------------------------------------------------------------------------
// Symlinked files

fn stat(p: &Path) -> (u32, u32, u32) {
    let m = std::fs::metadata(p).unwrap();
    (m.mode() & 0o7777, m.uid(), m.gid())
}

#[test]
fn a_symlinked_host_fstab_is_written_through_keeping_owner_and_mode() {
    let env = two_clients();
    let link = env.path("/etc/fstab");
    let config = env.path("/srv/config");
    std::fs::create_dir_all(config.join("hosts/server1")).unwrap();
    let user: &[u8] = b"UUID=1 / ext4 defaults 0 1\n/dev/sdb1 /data ext4 defaults 0 2\n";
    // (what, link target as written, links on the way, file the chain ends at)
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 3] = [
        ("relative", "../srv/config/fstab", &[], "/srv/config/fstab"),
        (
            "absolute: resolved inside --root",
            "/srv/config/fstab",
            &[],
            "/srv/config/fstab",
        ),
        (
            "a chain: relative, then absolute",
            "fstab.d/current",
            &[("/etc/fstab.d/current", "/srv/config/hosts/server1/fstab")],
            "/srv/config/hosts/server1/fstab",
        ),
    ];
    for (what, to, chain, end) in cases {
        let target = env.path(end);
        std::fs::write(&target, [user, stale_block().as_bytes()].concat()).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
        std::os::unix::fs::chown(&target, Some(1000), Some(1001)).unwrap();
        let _ = std::fs::remove_file(&link);
        symlink(to, &link).unwrap();
        for (from, to) in chain {
            let from = env.path(from);
            std::fs::create_dir_all(from.parent().unwrap()).unwrap();
            let _ = std::fs::remove_file(&from);
            symlink(to, &from).unwrap();
        }
        let plan = env.pt(&["plan"]);
        plan.expect_code(0);
        let line = format!(" fstab block /etc/fstab (written through the symlink to {end})\n");
        assert!(
            plan.stdout.contains(&line),
            "{what}: no {line:?} in\n{}",
            plan.stdout
        );
        env.apply_ok();
        env.assert_converged();
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new(to), "{what}");
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_outside(&std::fs::read(&target).unwrap(), user, b"");
        assert_eq!(
            stat(&target),
            (0o640, 1000, 1001),
            "{what}: owner or mode lost"
        );
        for dir in [env.path("/etc"), target.parent().unwrap().to_owned()] {
            for e in std::fs::read_dir(&dir).unwrap() {
                let name = e.unwrap().file_name();
                assert!(
                    !name.to_string_lossy().contains(".pinetboot-"),
                    "{what}: temp file left in {}",
                    dir.display()
                );
            }
        }
    }
}

#[test]
fn dangling_looping_and_folder_fstab_links_are_errors_and_nothing_is_written() {
    let env = two_clients();
    env.apply_ok();
    std::fs::write(env.path("/nfs/raspi2/etc/hostname"), "drifted\n").unwrap();
    let link = env.path("/etc/fstab");
    std::fs::remove_file(&link).unwrap();
    // An absolute target that exists on this machine, outside the root: under --root it means
    // the same path inside the root, which does not exist.
    let outside = env.outside.join("etc/fstab");
    let outside_text = std::fs::read(&outside).unwrap();
    let cases: [(&str, String, String); 4] = [
        (
            "dangling",
            "config/missing".into(),
            "is a symlink to config/missing, which does not exist".into(),
        ),
        (
            "absolute, outside the root",
            outside.display().to_string(),
            format!(
                "is a symlink to {}, which does not exist",
                outside.display()
            ),
        ),
        (
            "a loop",
            "fstab.loop".into(),
            "is a symlink that loops".into(),
        ),
        (
            "a folder",
            "/srv".into(),
            "leads to /srv, which is a folder, not a regular file".into(),
        ),
    ];
    symlink("fstab", env.path("/etc/fstab.loop")).unwrap();
    for (what, to, message) in cases {
        let _ = std::fs::remove_file(&link);
        symlink(&to, &link).unwrap();
        let want = format!("/etc/fstab {message}");
        each_fails_and_changes_nothing(&env, what, &[&["plan"][..], &["apply"]], |r| {
            assert!(
                r.stderr.contains(&want),
                "{what}: no {want:?} in\n{}",
                r.stderr
            );
        });
        assert_eq!(std::fs::read(&outside).unwrap(), outside_text);
    }
}

#[test]
fn a_symlinked_client_hosts_is_never_followed_even_inside_the_root() {
    let env = two_clients();
    env.apply_ok();
    let hosts = env.path("/nfs/raspi1/etc/hosts");
    let real = env.path("/nfs/raspi1/etc/hosts.real");
    std::fs::write(&real, IMAGE_HOSTS).unwrap();
    std::fs::remove_file(&hosts).unwrap();
    symlink("hosts.real", &hosts).unwrap();
    let plan = env.pt(&["plan"]);
    plan.expect_code(1);
    assert_contains(
        &plan.stdout,
        &format!(
            "  ! client raspi1: {} is or passes through a symlink",
            hosts.display()
        ),
    );
    env.pt(&["apply"]).expect_code(1);
    assert!(
        std::fs::symlink_metadata(&hosts)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read_to_string(&real).unwrap(), IMAGE_HOSTS);
}
