//! Whole-tree snapshots for "nothing changed" checks: kind, content hash, link target, mode,
//! owner, mtime and inode of every entry, compared under a chosen [`Cmp`].

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A folder.
    Dir,
    /// A regular file: length and a hash of the content.
    File(u64, u64),
    /// A symlink and its target.
    Symlink(PathBuf),
    /// A fifo.
    Fifo,
    /// A character device and its device number.
    Char(u64),
    /// A block device and its device number.
    Block(u64),
    /// A socket.
    Socket,
}

/// One entry of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// What it is (content hash or link target included).
    pub node: Node,
    /// Permission bits including setuid/setgid/sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time (seconds, nanoseconds).
    pub mtime: (i64, i64),
    /// Device and inode.
    pub dev_ino: (u64, u64),
    /// Link count.
    pub nlink: u64,
}

/// Every entry under a folder, by path relative to it (the folder itself is `""`).
pub type Snapshot = BTreeMap<PathBuf, Entry>;

/// Hash of bytes (stable within a test run).
pub fn hash_bytes(b: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    b.hash(&mut h);
    h.finish()
}

fn entry_of(path: &Path) -> Entry {
    let m = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let ft = m.file_type();
    let node = if ft.is_dir() {
        Node::Dir
    } else if ft.is_symlink() {
        Node::Symlink(std::fs::read_link(path).expect("readlink"))
    } else if ft.is_file() {
        let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Node::File(b.len() as u64, hash_bytes(&b))
    } else if ft.is_fifo() {
        Node::Fifo
    } else if ft.is_char_device() {
        Node::Char(m.rdev())
    } else if ft.is_block_device() {
        Node::Block(m.rdev())
    } else {
        Node::Socket
    };
    Entry {
        node,
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        mtime: (m.mtime(), m.mtime_nsec()),
        dev_ino: (m.dev(), m.ino()),
        nlink: m.nlink(),
    }
}

/// Snapshots `dir` (not following symlinks; the test process's mount namespace, so bind mounts
/// made inside a [`super::mountns::MountNs`] are not seen).
pub fn snapshot(dir: &Path) -> Snapshot {
    let mut out = Snapshot::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let full = if rel.as_os_str().is_empty() {
            dir.to_path_buf()
        } else {
            dir.join(&rel)
        };
        let e = entry_of(&full);
        if e.node == Node::Dir {
            for child in
                std::fs::read_dir(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
            {
                let child = child.expect("read_dir entry");
                stack.push(rel.join(child.file_name()));
            }
        }
        out.insert(rel, e);
    }
    out
}

/// Snapshot without the subtrees at the given relative paths.
pub fn snapshot_without(dir: &Path, skip: &[&str]) -> Snapshot {
    snapshot(dir)
        .into_iter()
        .filter(|(p, _)| !skip.iter().any(|s| p.starts_with(s)))
        .collect()
}

/// What to compare between snapshots.
#[derive(Debug, Clone, Copy)]
pub struct Cmp {
    /// Compare modification times.
    pub mtime: bool,
    /// Compare device/inode numbers and link counts.
    pub ino: bool,
}

impl Cmp {
    /// Everything.
    pub const ALL: Cmp = Cmp {
        mtime: true,
        ino: true,
    };
    /// Content, kind, link target, mode and owner only.
    pub const CONTENT: Cmp = Cmp {
        mtime: false,
        ino: false,
    };
}

/// Differences between two snapshots, one line each (empty when equal).
pub fn diff_snapshots(a: &Snapshot, b: &Snapshot, cmp: Cmp) -> Vec<String> {
    let mut out = Vec::new();
    let keys: BTreeSet<&PathBuf> = a.keys().chain(b.keys()).collect();
    for k in keys {
        match (a.get(k), b.get(k)) {
            (Some(_), None) => out.push(format!("removed: {}", k.display())),
            (None, Some(_)) => out.push(format!("added: {}", k.display())),
            (Some(x), Some(y)) => {
                let mut x = x.clone();
                let mut y = y.clone();
                if !cmp.mtime {
                    x.mtime = (0, 0);
                    y.mtime = (0, 0);
                }
                if !cmp.ino {
                    x.dev_ino = (0, 0);
                    y.dev_ino = (0, 0);
                    x.nlink = 0;
                    y.nlink = 0;
                }
                if x != y {
                    out.push(format!("changed: {}: {x:?} → {y:?}", k.display()));
                }
            }
            (None, None) => unreachable!(),
        }
    }
    out
}

/// Asserts two snapshots are equal under `cmp`, listing every difference.
#[track_caller]
pub fn assert_same(before: &Snapshot, after: &Snapshot, cmp: Cmp, what: &str) {
    let d = diff_snapshots(before, after, cmp);
    assert!(
        d.is_empty(),
        "{what}: {} differences:\n{}",
        d.len(),
        d.join("\n")
    );
}
