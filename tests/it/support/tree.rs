//! Shared test helpers: building a Pi-OS-like source tree, snapshotting a
//! tree entry by entry, and comparing two snapshots field by field.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps, XattrFlags};
use sha2::{Digest, Sha256};

/// A valid VFS_CAP_REVISION_2 `security.capability` blob granting
/// cap_net_raw (bit 13), effective.
pub fn cap_blob() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0x0200_0001u32.to_le_bytes()); // revision 2 | effective
    v.extend_from_slice(&(1u32 << 13).to_le_bytes()); // permitted[0]
    v.extend_from_slice(&0u32.to_le_bytes()); // inheritable[0]
    v.extend_from_slice(&0u32.to_le_bytes()); // permitted[1]
    v.extend_from_slice(&0u32.to_le_bytes()); // inheritable[1]
    v
}

/// `len` pseudo-random bytes from the xorshift64 generator seeded with `seed` (not 0): the same
/// bytes for the same seed, for data no compressor or deduplication shortcuts.
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn set_times(p: &Path, mtime: (i64, u32)) {
    let ts = Timestamps {
        last_access: Timespec {
            tv_sec: mtime.0 + 17,
            tv_nsec: i64::from((mtime.1 + 1) % 1_000_000_000),
        },
        last_modification: Timespec {
            tv_sec: mtime.0,
            tv_nsec: i64::from(mtime.1),
        },
    };
    rustix::fs::utimensat(CWD, p, &ts, AtFlags::SYMLINK_NOFOLLOW).unwrap();
}

fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// What a source tree should contain; `sockets` is off for trees that go
/// through tools that refuse them.
pub struct TreeSpec {
    /// Add the 3000-entry directory.
    pub big_dir: bool,
    /// Add a trusted.* xattr on a symlink (ext4 via mke2fs -d may drop it).
    pub symlink_xattr: bool,
    /// Boot dir layout: `None`, `Some("boot")` or `Some("boot/firmware")`
    /// (adds etc/fstab with the matching vfat line).
    pub boot_dir: Option<&'static str>,
}

/// Builds a Pi-OS-like source tree at `root` (which must not exist).
/// Nanosecond timestamps are set on every entry, deepest first.
pub fn build_source_tree(root: &Path, spec: &TreeSpec) {
    fs::create_dir(root).unwrap();
    let p = |r: &str| root.join(r);
    for d in [
        "bin", "etc", "usr", "usr/bin", "dev", "home", "home/pi", "var", "var/tmp", "big",
    ] {
        if d == "big" && !spec.big_dir {
            continue;
        }
        fs::create_dir(p(d)).unwrap();
    }
    // setuid root binary; setgid file owned by someone else.
    fs::write(p("usr/bin/sudo"), b"#!/bin/sh\necho pretend sudo\n").unwrap();
    chmod(&p("usr/bin/sudo"), 0o4755);
    fs::write(p("usr/bin/wall"), b"wall binary").unwrap();
    chown(&p("usr/bin/wall"), 1000, 5);
    chmod(&p("usr/bin/wall"), 0o2755);
    // file capability + user xattr.
    fs::write(p("usr/bin/ping"), b"ping binary \x00\x01\x02").unwrap();
    chmod(&p("usr/bin/ping"), 0o755);
    rustix::fs::lsetxattr(
        p("usr/bin/ping"),
        "security.capability",
        &cap_blob(),
        XattrFlags::empty(),
    )
    .unwrap();
    rustix::fs::lsetxattr(
        p("usr/bin/ping"),
        "user.test",
        b"hello xattr",
        XattrFlags::empty(),
    )
    .unwrap();
    rustix::fs::lsetxattr(p("etc"), "user.dirattr", b"on a dir", XattrFlags::empty()).unwrap();
    // hardlink pair (+ a third name).
    fs::write(p("usr/bin/perl"), b"perl interpreter").unwrap();
    fs::hard_link(p("usr/bin/perl"), p("usr/bin/perl5.36")).unwrap();
    fs::hard_link(p("usr/bin/perl"), p("bin/perl")).unwrap();
    // symlinks: relative, absolute, dangling, escaping.
    std::os::unix::fs::symlink("../usr/bin/sudo", p("bin/sudo")).unwrap();
    std::os::unix::fs::symlink("/usr/bin/ping", p("bin/ping")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", p("bin/dangling")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", p("etc/passwd-link")).unwrap();
    std::os::unix::fs::symlink("../../../../../../etc", p("var/tmp/up")).unwrap();
    // Targets of 60 bytes and more do not fit in the inode: ext4 keeps them in a data block.
    let edge = format!("/usr/lib/{}", "e".repeat(51));
    assert_eq!(edge.len(), 60);
    std::os::unix::fs::symlink(&edge, p("bin/edge60")).unwrap();
    let long = format!("../usr/share/{}/target", "long-directory-name/".repeat(12));
    std::os::unix::fs::symlink(&long, p("bin/long")).unwrap();
    chown(&p("bin/dangling"), 1000, 1000);
    if spec.symlink_xattr {
        rustix::fs::lsetxattr(p("bin/ping"), "trusted.linkattr", b"L", XattrFlags::empty())
            .unwrap();
    }
    // device nodes, fifo, socket.
    let mk = |r: &str, ft: FileType, mode: u32, dev: u64| {
        rustix::fs::mknodat(CWD, p(r), ft, Mode::from_raw_mode(mode), dev).unwrap();
        chmod(&p(r), mode);
    };
    mk(
        "dev/null",
        FileType::CharacterDevice,
        0o666,
        rustix::fs::makedev(1, 3),
    );
    mk(
        "dev/loop0",
        FileType::BlockDevice,
        0o660,
        rustix::fs::makedev(7, 0),
    );
    chown(&p("dev/loop0"), 0, 6);
    mk("dev/initctl", FileType::Fifo, 0o600, 0);
    mk("dev/log", FileType::Socket, 0o666, 0);
    // private home, sticky tmp, setgid dir.
    fs::write(p("home/pi/.bashrc"), b"# bashrc\n").unwrap();
    chown(&p("home/pi/.bashrc"), 1000, 1000);
    chmod(&p("home/pi/.bashrc"), 0o600);
    chown(&p("home/pi"), 1000, 1000);
    chmod(&p("home/pi"), 0o700);
    chmod(&p("var/tmp"), 0o1777);
    fs::create_dir(p("var/mail")).unwrap();
    chown(&p("var/mail"), 0, 8);
    chmod(&p("var/mail"), 0o2775);
    // sparse file: 8 MiB with data at 3 MiB and at the very end.
    {
        let mut f = fs::File::create(p("var/sparse.img")).unwrap();
        f.set_len(8 << 20).unwrap();
        use std::io::{Seek, SeekFrom};
        f.seek(SeekFrom::Start(3 << 20)).unwrap();
        f.write_all(&[0xabu8; 5000]).unwrap();
        f.seek(SeekFrom::Start((8 << 20) - 3)).unwrap();
        f.write_all(b"end").unwrap();
    }
    // a bigger pseudo-random file.
    {
        let data = pseudo_random_bytes(0x1234_5678_9abc_def0, 300_000);
        fs::write(p("usr/bin/bigbin"), data).unwrap();
    }
    fs::write(p("etc/hostname"), b"raspberrypi\n").unwrap();
    fs::write(
        p("etc/os-release"),
        b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_CODENAME=bookworm\nID=debian\n",
    )
    .unwrap();
    fs::write(p("empty"), b"").unwrap();
    if let Some(boot) = spec.boot_dir {
        fs::create_dir_all(root.join(boot)).unwrap();
        fs::write(
            p("etc/fstab"),
            format!(
                "proc            /proc           proc    defaults          0       0\n\
                 PARTUUID=0c4c21e5-01  /{boot}  vfat    defaults          0       2\n\
                 PARTUUID=0c4c21e5-02  /               ext4    defaults,noatime  0       1\n"
            ),
        )
        .unwrap();
    }
    if spec.big_dir {
        for i in 0..3000 {
            fs::write(
                p(&format!("big/entry-{i:05}-with-a-longish-name")),
                i.to_string(),
            )
            .unwrap();
        }
    }
    // Nanosecond times on everything, deepest first (children change dir mtimes).
    let mut all = Vec::new();
    collect_paths(root, &mut all);
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, path) in all.iter().enumerate() {
        set_times(
            path,
            (1_600_000_000 + i as i64 * 3600, 123_456_789 + i as u32),
        );
    }
    set_times(root, (1_500_000_000, 987_654_321));
}

fn collect_paths(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let path = e.path();
        out.push(path.clone());
        if e.file_type().unwrap().is_dir() {
            collect_paths(&path, out);
        }
    }
}

/// One entry of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// File type bits (`mode & S_IFMT`).
    pub kind: u32,
    /// Permission bits incl. setuid/setgid/sticky (not for symlinks).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Size (regular files and symlinks only).
    pub size: u64,
    /// sha256 of the content (regular files).
    pub hash: Option<String>,
    /// Symlink target.
    pub target: Option<Vec<u8>>,
    /// Device number (char/block devices).
    pub rdev: u64,
    /// Sorted xattrs.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// mtime seconds and nanoseconds.
    pub mtime: (i64, i64),
    /// Inode number (compared only through hardlink groups).
    pub ino: u64,
    /// 512-byte blocks allocated (for sparseness checks, not compared).
    pub blocks: u64,
}

/// Reads every xattr of `p` without following it.
pub fn lxattrs(p: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut names = vec![0u8; 65536];
    let n = rustix::fs::llistxattr(p, &mut names[..]).unwrap();
    names.truncate(n);
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let mut v = vec![0u8; 65536];
        let n = rustix::fs::lgetxattr(p, name, &mut v[..]).unwrap();
        v.truncate(n);
        out.push((name.to_vec(), v));
    }
    out.sort();
    out
}

/// Sha256 of a file's content, hex.
pub fn hash_file(p: &Path) -> String {
    let mut f = fs::File::open(p).unwrap();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

/// Snapshot of one path (not following it).
pub fn entry(p: &Path) -> Entry {
    let md = fs::symlink_metadata(p).unwrap();
    let kind = md.mode() & 0o170000;
    let is_reg = kind == 0o100000;
    let is_lnk = kind == 0o120000;
    Entry {
        kind,
        mode: if is_lnk { 0 } else { md.mode() & 0o7777 },
        uid: md.uid(),
        gid: md.gid(),
        size: if is_reg || is_lnk { md.size() } else { 0 },
        hash: is_reg.then(|| hash_file(p)),
        target: is_lnk.then(|| fs::read_link(p).unwrap().as_os_str().as_bytes().to_vec()),
        rdev: if kind == 0o020000 || kind == 0o060000 {
            md.rdev()
        } else {
            0
        },
        xattrs: lxattrs(p),
        mtime: (md.mtime(), md.mtime_nsec()),
        ino: md.ino(),
        blocks: md.blocks(),
    }
}

/// Snapshot of a whole tree, keyed by relative path ("" = the root).
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    out.insert(PathBuf::new(), entry(root));
    let mut all = Vec::new();
    collect_paths(root, &mut all);
    for p in all {
        out.insert(p.strip_prefix(root).unwrap().to_path_buf(), entry(&p));
    }
    out
}

/// Hardlink groups (sets of ≥ 2 paths sharing an inode), sorted.
pub fn link_groups(snap: &BTreeMap<PathBuf, Entry>) -> Vec<Vec<PathBuf>> {
    let mut by_ino: BTreeMap<u64, Vec<PathBuf>> = BTreeMap::new();
    for (p, e) in snap {
        if e.kind != 0o040000 {
            by_ino.entry(e.ino).or_default().push(p.clone());
        }
    }
    let mut groups: Vec<Vec<PathBuf>> = by_ino.into_values().filter(|g| g.len() > 1).collect();
    for g in &mut groups {
        g.sort();
    }
    groups.sort();
    groups
}

/// How to compare two snapshots.
pub struct CompareOpts {
    /// Compare mtime nanoseconds (false: seconds only).
    pub mtime_ns: bool,
    /// Compare the root entry's metadata.
    pub root: bool,
    /// Paths present only on the right-hand side that are allowed.
    pub extra_right: Vec<PathBuf>,
}

/// Asserts that every field of every entry matches.
pub fn assert_same(
    left: &BTreeMap<PathBuf, Entry>,
    right: &BTreeMap<PathBuf, Entry>,
    opts: &CompareOpts,
) {
    let mut errors = Vec::new();
    for (p, l) in left {
        if p.as_os_str().is_empty() && !opts.root {
            continue;
        }
        let Some(r) = right.get(p) else {
            errors.push(format!("{p:?}: missing on the right"));
            continue;
        };
        let mut l = l.clone();
        let mut r = r.clone();
        l.ino = 0;
        r.ino = 0;
        l.blocks = 0;
        r.blocks = 0;
        if !opts.mtime_ns {
            l.mtime.1 = 0;
            r.mtime.1 = 0;
        }
        if l != r {
            errors.push(format!("{p:?}:\n  left  {l:?}\n  right {r:?}"));
        }
    }
    for p in right.keys() {
        if !left.contains_key(p) && !opts.extra_right.iter().any(|x| p.starts_with(x)) {
            errors.push(format!("{p:?}: only on the right"));
        }
    }
    assert!(
        errors.is_empty(),
        "{} differences:\n{}",
        errors.len(),
        errors[..errors.len().min(30)].join("\n")
    );
    let lg = link_groups(left);
    let rg: Vec<Vec<PathBuf>> = link_groups(right)
        .into_iter()
        .filter(|g| {
            !g.iter()
                .all(|p| opts.extra_right.iter().any(|x| p.starts_with(x)))
        })
        .collect();
    assert_eq!(lg, rg, "hardlink groups differ");
}
