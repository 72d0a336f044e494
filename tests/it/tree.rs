//! Integration tests of `pinetboot::tree` (run as root, on real files).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::tools::{require_root, require_tool, run};
use crate::support::tree::*;
use pinetboot::tree::{Meta, TreeError, TreeWriter, copy_tree};

fn outside_state() -> (String, i64, i64) {
    let md = fs::symlink_metadata("/etc/passwd").unwrap();
    (hash_file(Path::new("/etc/passwd")), md.mtime(), md.ctime())
}

/// A `TreeWriter` creating `root` in a fresh temporary folder: the folder, `root` and the
/// writer.
fn writer_in_temp_dir() -> (tempfile::TempDir, PathBuf, TreeWriter) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let w = TreeWriter::create(&root).unwrap();
    (tmp, root, w)
}

#[test]
fn copy_tree_keeps_every_field() {
    require_root("a source tree with other owners, device nodes and trusted.* xattrs");
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let dst = tmp.path().join("dst");
    build_source_tree(
        &src,
        &TreeSpec {
            big_dir: true,
            symlink_xattr: true,
            boot_dir: Some("boot/firmware"),
        },
    );
    let before = outside_state();
    let stats = copy_tree(&src, &dst).unwrap();
    assert_eq!(before, outside_state(), "/etc/passwd changed");

    let a = snapshot(&src);
    let b = snapshot(&dst);
    assert_same(
        &a,
        &b,
        &CompareOpts {
            mtime_ns: true,
            root: true,
            extra_right: vec![],
        },
    );
    // Spot checks that the comparison really covers what matters.
    let sudo = &b[Path::new("usr/bin/sudo")];
    assert_eq!(sudo.mode, 0o4755);
    assert_eq!(b[Path::new("usr/bin/wall")].mode, 0o2755);
    assert_eq!(b[Path::new("var/mail")].mode, 0o2775);
    assert_eq!(b[Path::new("var/tmp")].mode, 0o1777);
    let pi = &b[Path::new("home/pi")];
    assert_eq!((pi.mode, pi.uid, pi.gid), (0o700, 1000, 1000));
    let ping = &b[Path::new("usr/bin/ping")];
    assert!(
        ping.xattrs
            .iter()
            .any(|(n, v)| n == b"security.capability" && *v == cap_blob())
    );
    assert!(
        ping.xattrs
            .iter()
            .any(|(n, v)| n == b"user.test" && v == b"hello xattr")
    );
    assert_eq!(
        b[Path::new("bin/ping")].xattrs,
        vec![(b"trusted.linkattr".to_vec(), b"L".to_vec())]
    );
    assert_eq!(
        b[Path::new("etc/passwd-link")].target.as_deref(),
        Some(&b"/etc/passwd"[..])
    );
    assert_eq!(b[Path::new("dev/null")].rdev, rustix::fs::makedev(1, 3));
    assert_eq!(b[Path::new("dev/loop0")].rdev, rustix::fs::makedev(7, 0));
    assert_eq!(
        link_groups(&b),
        vec![vec![
            PathBuf::from("bin/perl"),
            PathBuf::from("usr/bin/perl"),
            PathBuf::from("usr/bin/perl5.36")
        ]]
    );
    let sparse = &b[Path::new("var/sparse.img")];
    assert_eq!(sparse.size, 8 << 20);
    assert!(
        sparse.blocks * 512 < 1 << 20,
        "sparse file lost its holes: {} blocks",
        sparse.blocks
    );
    assert_eq!(b[Path::new("")].mtime, (1_500_000_000, 987_654_321));
    // atime kept where reading does not touch it.
    for p in ["dev/null", "dev/initctl", "dev/log"] {
        let (s, d) = (
            fs::symlink_metadata(src.join(p)).unwrap(),
            fs::symlink_metadata(dst.join(p)).unwrap(),
        );
        assert_eq!(
            (s.atime(), s.atime_nsec()),
            (d.atime(), d.atime_nsec()),
            "{p}"
        );
    }
    assert_eq!(
        b.keys()
            .filter(|p| p.starts_with("big") && p != &Path::new("big"))
            .count(),
        3000
    );
    // Stats.
    let files = a
        .values()
        .filter(|e| e.kind == 0o100000)
        .map(|e| e.ino)
        .collect::<std::collections::BTreeSet<_>>()
        .len() as u64;
    assert_eq!(stats.files, files);
    assert_eq!(stats.hardlinks, 2);
    assert_eq!(stats.symlinks, 7);
    assert_eq!(stats.specials, 4);
    assert_eq!(
        stats.dirs as usize,
        a.values().filter(|e| e.kind == 0o040000).count() - 1
    );
    assert!(stats.bytes > 8 << 20);
    assert_eq!(stats.xattrs, 4);
    // Only src and dst in the temp dir: nothing written elsewhere.
    let mut names: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["dst", "src"]);
}

#[test]
fn copy_tree_refuses_existing_destination_and_symlink_root() {
    // Needs no root.
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    let dst = tmp.path().join("dst");
    fs::create_dir(&dst).unwrap();
    let err = copy_tree(&src, &dst).unwrap_err();
    assert!(matches!(err, TreeError::DestinationExists(_)), "{err}");
    assert!(err.to_string().contains("dst"), "{err}");
    std::os::unix::fs::symlink(&src, tmp.path().join("srclink")).unwrap();
    let err = copy_tree(&tmp.path().join("srclink"), &tmp.path().join("dst2")).unwrap_err();
    assert!(err.to_string().contains("srclink"), "{err}");
}

#[test]
fn hostile_relative_paths_are_refused() {
    require_root("a source tree with other owners, device nodes and trusted.* xattrs");
    let (tmp, root, mut w) = writer_in_temp_dir();
    w.dir(Path::new("a"), Meta::new(0o755, 0, 0)).unwrap();
    let m = || Meta::new(0o644, 0, 0);
    for bad in [
        "../x",
        "/abs",
        "a/../../b",
        "a/..",
        "",
        ".",
        "a/./b",
        "a//b",
        "a/",
    ] {
        let p = Path::new(bad);
        let is_invalid = |r: Result<(), TreeError>| matches!(r, Err(TreeError::InvalidPath { .. }));
        assert!(is_invalid(w.dir(p, m())), "dir {bad:?}");
        assert!(
            is_invalid(w.file(p, m(), &mut &b"x"[..]).map(|_| ())),
            "file {bad:?}"
        );
        assert!(is_invalid(w.symlink(p, b"t", m())), "symlink {bad:?}");
        assert!(is_invalid(w.fifo(p, m())), "fifo {bad:?}");
        assert!(is_invalid(w.char_dev(p, 0, m())), "char_dev {bad:?}");
        assert!(
            is_invalid(w.hardlink(p, Path::new("a"))),
            "hardlink {bad:?}"
        );
        assert!(
            is_invalid(w.hardlink(Path::new("z"), p)),
            "hardlink src {bad:?}"
        );
    }
    let err = w.dir(Path::new("../x"), m()).unwrap_err();
    assert!(err.to_string().contains("../x"), "{err}");
    w.finish().unwrap();
    let mut names: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["root"]);
    assert_eq!(
        fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect::<Vec<_>>(),
        ["a"]
    );
}

#[test]
fn never_writes_through_its_own_symlinks() {
    require_root("a source tree with other owners, device nodes and trusted.* xattrs");
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("victim"), b"original").unwrap();
    let root = tmp.path().join("root");
    let mut w = TreeWriter::create(&root).unwrap();
    let m = || Meta::new(0o644, 0, 0);
    w.symlink(
        Path::new("esc"),
        outside.as_os_str().as_encoded_bytes(),
        m(),
    )
    .unwrap();
    w.symlink(Path::new("up"), b"../outside", m()).unwrap();
    w.symlink(Path::new("victim"), b"../outside/victim", m())
        .unwrap();
    w.dir(Path::new("d"), Meta::new(0o755, 0, 0)).unwrap();
    w.symlink(Path::new("d/self"), b".", m()).unwrap();
    for p in [
        "esc/pwned",
        "up/pwned",
        "up/victim",
        "d/self/x",
        "esc/victim",
    ] {
        let r = w.file(Path::new(p), m(), &mut &b"evil"[..]);
        assert!(
            matches!(r, Err(TreeError::SymlinkOnPath { .. })),
            "{p}: {r:?}"
        );
        let r = w.dir(Path::new(p), m());
        assert!(
            matches!(r, Err(TreeError::SymlinkOnPath { .. })),
            "{p}: {r:?}"
        );
    }
    // Re-creating an existing symlink's name never follows it.
    let r = w.file(Path::new("victim"), m(), &mut &b"evil"[..]);
    assert!(matches!(r, Err(TreeError::Io { .. })), "{r:?}");
    let r = w.fifo(Path::new("victim"), m());
    assert!(r.is_err());
    // A hardlink to a symlink links the symlink itself.
    w.hardlink(Path::new("victim2"), Path::new("victim"))
        .unwrap();
    let r = w.hardlink(Path::new("x"), Path::new("esc/victim"));
    assert!(matches!(r, Err(TreeError::SymlinkOnPath { .. })), "{r:?}");
    // Bad nanoseconds and xattr names are refused.
    let mut bad = m();
    bad.mtime = (0, 1_000_000_000);
    assert!(matches!(
        w.file(Path::new("ns"), bad, &mut &b""[..]),
        Err(TreeError::InvalidMeta { .. })
    ));
    let mut bad = m();
    bad.xattrs = vec![(b"user.a\0b".to_vec(), vec![])];
    assert!(matches!(
        w.fifo(Path::new("xa"), bad),
        Err(TreeError::InvalidMeta { .. })
    ));
    w.finish().unwrap();
    assert_eq!(fs::read(outside.join("victim")).unwrap(), b"original");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 1);
    assert!(
        fs::symlink_metadata(root.join("victim2"))
            .unwrap()
            .is_symlink()
    );
}

#[test]
fn writer_applies_metadata_in_the_right_order() {
    require_root("a source tree with other owners, device nodes and trusted.* xattrs");
    let (_tmp, root, mut w) = writer_in_temp_dir();
    let mut dm = Meta::new(0o2750, 1000, 1000);
    dm.mtime = (1_234_567_890, 5);
    dm.xattrs = vec![(
        b"system.posix_acl_default".to_vec(),
        // ACL v2: user::rwx, group::r-x, other::---
        [
            2u32.to_le_bytes().to_vec(),
            [1u8, 0, 7, 0, 0xff, 0xff, 0xff, 0xff].to_vec(),
            [4u8, 0, 5, 0, 0xff, 0xff, 0xff, 0xff].to_vec(),
            [0x20u8, 0, 0, 0, 0xff, 0xff, 0xff, 0xff].to_vec(),
        ]
        .concat(),
    )];
    w.dir(Path::new("d"), dm).unwrap();
    let mut fm = Meta::new(0o6755, 0, 0);
    fm.mtime = (1_000_000_000, 999_999_999);
    fm.atime = (1_000_000_001, 1);
    fm.xattrs = vec![(b"security.capability".to_vec(), cap_blob())];
    let n = w
        .file(Path::new("d/f"), fm, &mut &vec![0u8; 100_000][..])
        .unwrap();
    assert_eq!(n, 100_000);
    w.char_dev(
        Path::new("d/c"),
        rustix::fs::makedev(4, 64),
        Meta::new(0o4620, 0, 5),
    )
    .unwrap();
    w.socket(Path::new("d/s"), Meta::new(0o777, 2, 3)).unwrap();
    let mut rm = Meta::new(0o755, 0, 0);
    rm.mtime = (42, 42);
    w.set_root_meta(rm).unwrap();
    w.finish().unwrap();
    let f = entry(&root.join("d/f"));
    assert_eq!((f.mode, f.uid, f.gid, f.size), (0o6755, 0, 0, 100_000));
    assert_eq!(f.mtime, (1_000_000_000, 999_999_999));
    assert!(
        f.blocks < 16,
        "all-zero file should be a hole: {}",
        f.blocks
    );
    assert_eq!(
        f.xattrs,
        vec![(b"security.capability".to_vec(), cap_blob())]
    );
    let d = entry(&root.join("d"));
    assert_eq!(
        (d.mode, d.uid, d.gid, d.mtime),
        (0o2750, 1000, 1000, (1_234_567_890, 5))
    );
    // The default ACL was applied after the children were created: they kept
    // their own modes.
    assert_eq!(d.xattrs.len(), 1);
    let c = entry(&root.join("d/c"));
    assert_eq!(
        (c.mode, c.gid, c.rdev),
        (0o4620, 5, rustix::fs::makedev(4, 64))
    );
    let s = entry(&root.join("d/s"));
    assert_eq!((s.kind, s.mode, s.uid, s.gid), (0o140000, 0o777, 2, 3));
    assert_eq!(entry(&root).mtime, (42, 42));
}

/// Reflink test: a btrfs filesystem in a file, loop-mounted inside a private
/// mount namespace (the test re-executes itself through `unshare -m`).
#[test]
fn reflink_on_btrfs() {
    if let Some(dir) = std::env::var_os("PINETBOOT_REFLINK_INNER") {
        reflink_inner(Path::new(&dir));
        return;
    }
    require_root("a source tree with other owners, device nodes and trusted.* xattrs");
    require_tool("mkfs.btrfs", "btrfs-progs");
    require_tool("unshare", "util-linux");
    require_tool("mount", "mount");
    assert!(
        fs::read_to_string("/proc/filesystems")
            .unwrap()
            .contains("btrfs"),
        "the kernel has no btrfs: cannot run the reflink test"
    );
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("btrfs.img");
    fs::File::create(&img).unwrap().set_len(200 << 20).unwrap();
    run(Command::new("mkfs.btrfs").arg("-q").arg(&img));
    fs::create_dir(tmp.path().join("mnt")).unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = run(Command::new("unshare")
        .args(["-m", "--propagation", "private", "--"])
        .arg(exe)
        .args([
            "--exact",
            "tree::reflink_on_btrfs",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PINETBOOT_REFLINK_INNER", tmp.path())
        .env(
            "PINETBOOT_REFLINK_OUTER_NS",
            fs::read_link("/proc/self/ns/mnt").unwrap(),
        ));
    assert!(out.contains("1 passed"), "inner test did not run: {out}");
    // Nothing stayed mounted here.
    assert_eq!(fs::read_dir(tmp.path().join("mnt")).unwrap().count(), 0);
}

fn reflink_inner(dir: &Path) {
    let own = fs::read_link("/proc/self/ns/mnt").unwrap();
    let outer = std::env::var_os("PINETBOOT_REFLINK_OUTER_NS").expect("outer namespace id");
    assert_ne!(
        own.as_os_str(),
        outer,
        "refusing to mount in the caller's mount namespace"
    );
    let mnt = dir.join("mnt");
    run(Command::new("mount")
        .args(["-t", "btrfs", "-o", "loop"])
        .arg(dir.join("btrfs.img"))
        .arg(&mnt));
    let result = std::panic::catch_unwind(|| {
        let src = mnt.join("src");
        build_source_tree(
            &src,
            &TreeSpec {
                big_dir: false,
                symlink_xattr: true,
                boot_dir: None,
            },
        );
        let dst = mnt.join("dst");
        let stats = copy_tree(&src, &dst).unwrap();
        assert!(stats.reflinked > 0, "nothing reflinked: {stats:?}");
        assert_eq!(stats.reflinked, stats.files, "{stats:?}");
        assert_same(
            &snapshot(&src),
            &snapshot(&dst),
            &CompareOpts {
                mtime_ns: true,
                root: true,
                extra_right: vec![],
            },
        );
    });
    run(Command::new("umount").arg(&mnt));
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// An owner of 4294967295 (`(uid_t)-1`) is refused, naming the entry: chown would read it as
/// "no change" and leave the entry root's (and rustix asserts against it in debug builds).
#[test]
fn an_owner_of_minus_one_is_refused_not_left_as_root() {
    // Needs no root.
    let (tmp, root, mut w) = writer_in_temp_dir();
    for (uid, gid) in [(u32::MAX, 0), (0, u32::MAX)] {
        let e = w
            .file(Path::new("f"), Meta::new(0o644, uid, gid), &mut &b"x"[..])
            .and_then(|_| w.finish().map(|_| ()))
            .expect_err("an owner of -1 was accepted");
        assert!(
            matches!(&e, TreeError::InvalidMeta { path, reason }
                if path.ends_with("f") && reason.contains("(uid_t)-1")),
            "{e:?}"
        );
        let _ = fs::remove_file(root.join("f"));
        w = TreeWriter::create(&tmp.path().join(format!("r{uid}{gid}"))).unwrap();
    }
    let e = w
        .symlink(Path::new("l"), b"target", Meta::new(0o777, u32::MAX, 0))
        .and_then(|_| w.finish().map(|_| ()))
        .expect_err("a symlink owned by -1 was accepted");
    assert!(matches!(e, TreeError::InvalidMeta { .. }), "{e:?}");
}
