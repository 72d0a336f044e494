//! The facts planning needs, read from the host once: the state file, the clock, the mount
//! table, what the image store holds (and where each entry's boot folder is), what killed
//! applies left, the firmware overrides and bootloader base image the config names, and per
//! client root and per image folder the files pinetboot reads there (os-release, fstab,
//! passwd, cmdline.txt, the boot folder and what is in it, the markers of network stacks…),
//! through the confined tree reader.
//!
//! [`collect`] is the only part that touches the host; [`crate::expand`] and
//! [`crate::clientos`] are pure functions of `(Valid, Facts)`. A read that was refused (a
//! planted symlink, a fifo) is kept as the [`Violation`] it was and reported where planning
//! looks at that file, so a plan built from facts says exactly what one built by reading
//! as it went did. The model is `doctor/facts.rs` → `doctor/checks.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::config::{Source, Valid};
use crate::eeprom::EepromImage;
use crate::host::Host;
use crate::host::confined::{Entry, EntryKind, Tree, Violation};
use crate::host::mountinfo::Mount;
use crate::host::ops::Found;
use crate::image::store;
use crate::resource::leftover;
use crate::state::State;

/// A host file read once (a firmware override): its bytes, `None` when missing, or the
/// error's full text.
pub type HostRead = Result<Option<Vec<u8>>, String>;

/// Everything planning needs from the host.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The root prefix (`--root`) the host was read through.
    pub prefix: PathBuf,
    /// The state file as it was read.
    pub state: State,
    /// Seconds since the epoch (a new bootloader update's timestamp).
    pub now: u64,
    /// The mount table.
    pub mounts: Vec<Mount>,
    /// sha256 of the images in the store (of those the config and the state name), with the
    /// boot folder their manifest records, when it is readable.
    pub store: BTreeMap<String, Option<String>>,
    /// Leftovers of killed applies.
    pub leftovers: leftover::Found,
    /// What `pinetboot gc` may delete: unused store entries, moved-aside roots.
    pub removable: Vec<crate::gc::Removable>,
    /// Firmware overrides (`images.*.files`), by host path.
    pub host_files: BTreeMap<PathBuf, HostRead>,
    /// Local disk image files (`source: FILE`): whether each is a regular file.
    pub sources: BTreeMap<PathBuf, bool>,
    /// The bootloader base image, when a client declares `eeprom:` settings (or the error's
    /// full text).
    pub bootloader: Option<Result<EepromImage, String>>,
    /// What is at each client root's host path (declared clients and recorded ones).
    pub roots: BTreeMap<String, Found>,
    /// The trees read (client roots that are folders, image folders), by host path, or why
    /// one could not be opened.
    pub trees: BTreeMap<String, Result<TreeFacts, Violation>>,
}

impl Facts {
    /// A host path under the root prefix, as [`Host::path`] makes it (for messages and
    /// violations, which name full paths).
    pub fn root_path(&self, host_path: &str) -> PathBuf {
        let mut out = self.prefix.clone();
        for c in Path::new(host_path).components() {
            if let std::path::Component::Normal(s) = c {
                out.push(s);
            }
        }
        out
    }

    /// Whether the image with this sha256 is in the store.
    pub fn in_store(&self, sha256: &str) -> bool {
        self.store.contains_key(sha256)
    }

    /// What is at a root's host path (missing when not collected).
    pub fn root(&self, host_path: &str) -> Found {
        self.roots.get(host_path).copied().unwrap_or(Found::Missing)
    }

    /// The tree at a host path, as read, or why it could not be opened.
    pub fn tree(&self, host_path: &str) -> Result<&TreeFacts, Violation> {
        match self.trees.get(host_path) {
            Some(Ok(t)) => Ok(t),
            Some(Err(v)) => Err(v.clone()),
            None => Err(not_collected(Path::new(host_path))),
        }
    }

    /// The boot folder the store manifest records for the image unpacked at `store_root`.
    pub fn manifest_boot_dir(&self, state_dir: &str, image_dir: &str) -> Option<&str> {
        self.store.iter().find_map(|(sha, boot)| {
            (store::root_dir(state_dir, sha) == image_dir)
                .then_some(boot.as_deref())
                .flatten()
        })
    }
}

/// A fact planning asked for that the collector did not read: a pinetboot bug, reported as
/// an I/O error on that path rather than a wrong plan.
fn not_collected(path: &Path) -> Violation {
    Violation::Io(
        path.to_owned(),
        io::Error::other("not collected before planning (a pinetboot bug)"),
    )
}

/// How a path was read: as pinetboot manages it (no symlink anywhere) or as the Pi sees it
/// (symlinks resolved inside the tree).
type Key = (PathBuf, bool);

/// The files of one tree (a client root or an image folder) that planning reads, as read.
/// Built by [`collect`] from the host, or in memory by [`TreeFacts::memory`] for tests.
#[derive(Debug, Clone, Default)]
pub struct TreeFacts {
    path: PathBuf,
    /// Every path not recorded is missing (a tree built in memory); else such a path is a
    /// pinetboot bug.
    complete: bool,
    reads: BTreeMap<Key, Result<Option<Vec<u8>>, Violation>>,
    entries: BTreeMap<Key, Result<Option<Entry>, Violation>>,
    dirs: BTreeMap<PathBuf, Result<bool, Violation>>,
}

impl TreeFacts {
    /// The tree's full path (under the root prefix), for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn missing<T>(&self, rel: &Path, absent: T) -> Result<T, Violation> {
        if self.complete {
            Ok(absent)
        } else {
            Err(not_collected(&self.path.join(rel)))
        }
    }

    fn read_key(&self, rel: &Path, resolved: bool) -> Result<Option<Vec<u8>>, Violation> {
        match self.reads.get(&(rel.to_owned(), resolved)) {
            Some(r) => r.clone(),
            None => self.missing(rel, None),
        }
    }

    fn entry_key(&self, rel: &Path, resolved: bool) -> Result<Option<Entry>, Violation> {
        if let Some(r) = self.entries.get(&(rel.to_owned(), resolved)) {
            return r.clone();
        }
        // In memory: the folders on the way to a recorded path are folders.
        if self.complete && self.is_parent(rel) {
            return Ok(Some(memory_entry(EntryKind::Dir, 0o755)));
        }
        self.missing(rel, None)
    }

    fn is_parent(&self, rel: &Path) -> bool {
        self.entries
            .keys()
            .any(|(p, _)| p != rel && p.starts_with(rel))
    }

    /// As [`Tree::read`]: a file pinetboot manages, no symlink anywhere.
    pub fn read(&self, rel: &Path) -> Result<Option<Vec<u8>>, Violation> {
        self.read_key(rel, false)
    }

    /// As [`Tree::read_resolved`]: a fact, symlinks resolved inside the tree.
    pub fn read_resolved(&self, rel: &Path) -> Result<Option<Vec<u8>>, Violation> {
        self.read_key(rel, true)
    }

    /// As [`Tree::entry`].
    pub fn entry(&self, rel: &Path) -> Result<Option<Entry>, Violation> {
        self.entry_key(rel, false)
    }

    /// As [`Tree::entry_resolved`].
    pub fn entry_resolved(&self, rel: &Path) -> Result<Option<Entry>, Violation> {
        self.entry_key(rel, true)
    }

    /// As [`Tree::open_dir`]: whether the folder is there (every folder on the way real).
    pub fn open_dir(&self, rel: &Path) -> Result<bool, Violation> {
        match self.dirs.get(rel) {
            Some(r) => r.clone(),
            None if self.complete => Ok(matches!(
                self.entry(rel)?,
                Some(Entry {
                    kind: EntryKind::Dir,
                    ..
                })
            )),
            None => self.missing(rel, false),
        }
    }

    /// An empty tree in memory at `path` (for tests: paths not added are missing).
    pub fn memory(path: impl Into<PathBuf>) -> Self {
        TreeFacts {
            path: path.into(),
            complete: true,
            ..TreeFacts::default()
        }
    }

    /// Adds a regular file (mode 0644, root's), read the same either way.
    pub fn file(self, rel: &str, content: &[u8]) -> Self {
        self.file_with(rel, content, 0o644)
    }

    /// Adds a regular file with this mode.
    pub fn file_with(mut self, rel: &str, content: &[u8], mode: u32) -> Self {
        let rel = PathBuf::from(rel);
        for resolved in [false, true] {
            self.reads
                .insert((rel.clone(), resolved), Ok(Some(content.to_vec())));
            self.entries.insert(
                (rel.clone(), resolved),
                Ok(Some(Entry {
                    size: content.len() as u64,
                    ..memory_entry(EntryKind::File, mode)
                })),
            );
        }
        self
    }

    /// Adds a folder.
    pub fn dir(mut self, rel: &str) -> Self {
        for resolved in [false, true] {
            self.entries.insert(
                (PathBuf::from(rel), resolved),
                Ok(Some(memory_entry(EntryKind::Dir, 0o755))),
            );
        }
        self
    }

    /// Adds a symlink planted at `rel` (refused wherever pinetboot reads or manages it).
    pub fn symlink(mut self, rel: &str) -> Self {
        let rel = PathBuf::from(rel);
        let full = self.path.join(&rel);
        for resolved in [false, true] {
            self.reads.insert(
                (rel.clone(), resolved),
                Err(Violation::Symlink(full.clone())),
            );
        }
        self.entries.insert(
            (rel.clone(), false),
            Ok(Some(memory_entry(EntryKind::Symlink, 0o777))),
        );
        self.dirs.insert(rel, Err(Violation::Symlink(full)));
        self
    }
}

fn memory_entry(kind: EntryKind, mode: u32) -> Entry {
    Entry {
        kind,
        mode,
        uid: 0,
        gid: 0,
        size: 0,
    }
}

/// A tree being read: the open tree and what was read from it so far (each path once).
struct Reading {
    tree: Tree,
    facts: TreeFacts,
}

impl Reading {
    fn read(&mut self, rel: impl AsRef<Path>, resolved: bool) {
        let tree = &self.tree;
        let key = (rel.as_ref().to_owned(), resolved);
        self.facts
            .reads
            .entry(key)
            .or_insert_with_key(|(p, resolved)| match resolved {
                true => tree.read_resolved(p),
                false => tree.read(p),
            });
    }

    fn entry(&mut self, rel: impl AsRef<Path>, resolved: bool) -> Option<Entry> {
        let tree = &self.tree;
        let key = (rel.as_ref().to_owned(), resolved);
        let seen =
            self.facts
                .entries
                .entry(key)
                .or_insert_with_key(|(p, resolved)| match resolved {
                    true => tree.entry_resolved(p),
                    false => tree.entry(p),
                });
        seen.as_ref().ok().copied().flatten()
    }

    fn open_dir(&mut self, rel: &Path) {
        if !self.facts.dirs.contains_key(rel) {
            let r = self.tree.open_dir(rel).map(|fd| fd.is_some());
            self.facts.dirs.insert(rel.to_owned(), r);
        }
    }
}

/// The trees being read, by host path.
struct Trees<'h> {
    host: &'h Host,
    open: BTreeMap<String, Result<Reading, Violation>>,
}

impl Trees<'_> {
    fn get(&mut self, host_path: &str) -> Option<&mut Reading> {
        let host = self.host;
        self.open
            .entry(host_path.to_owned())
            .or_insert_with(|| {
                let full = host.path(host_path);
                Tree::open(&full).map(|tree| Reading {
                    tree,
                    facts: TreeFacts {
                        path: full,
                        ..TreeFacts::default()
                    },
                })
            })
            .as_mut()
            .ok()
    }
}

/// Reads everything planning `valid` needs from `host`, once.
pub fn collect(valid: &Valid, host: &Host) -> anyhow::Result<Facts> {
    let state = State::load(host, &valid.paths.state)?;
    let mut facts = Facts {
        prefix: host.root().to_owned(),
        now: crate::host::ops::now(),
        ..Facts::default()
    };
    let state_dir = &valid.paths.state;
    // The store entries the config and the state name.
    let shas: BTreeSet<&String> = valid
        .images
        .values()
        .filter_map(|i| i.sha256.as_ref())
        .chain(
            state
                .clients
                .values()
                .filter_map(|r| r.image_sha256.as_ref()),
        )
        .collect();
    for sha in shas {
        if store::is_present(host, state_dir, sha) {
            let boot = store::manifest(host, state_dir, sha).map(|m| m.boot_dir);
            facts.store.insert(sha.clone(), boot);
        }
    }
    let resumed: BTreeSet<String> = crate::expand::disk_images(valid)
        .iter()
        .filter_map(|r| match r {
            crate::resource::Resource::Image(i) if !facts.in_store(&i.sha256) => {
                Some(i.sha256.clone())
            }
            _ => None,
        })
        .collect();
    let declared: BTreeSet<String> = valid.clients.keys().cloned().collect();
    facts.leftovers = leftover::find(host, &valid.paths.nfs, state_dir, &declared, &resumed)?;
    facts.removable = crate::gc::find(valid, host)?;
    for (name, rec) in &state.clients {
        if valid.clients.contains_key(name) {
            continue;
        }
        let found = host.found(&rec.root)?;
        if found != Found::Missing {
            facts.roots.insert(rec.root.clone(), found);
        }
    }
    for image in valid.images.values() {
        if let Source::File(p) = &image.source {
            facts.sources.insert(p.clone(), host.is_file(p));
        }
    }
    let mut trees = Trees {
        host,
        open: BTreeMap::new(),
    };
    let mut shared_read = std::collections::BTreeSet::new();
    for (name, client) in &valid.clients {
        let root = crate::expand::root_of(valid, name);
        let found = host.found(&root)?;
        facts.roots.insert(root.clone(), found);
        let image = &valid.images[&client.image];
        if client.eeprom.is_some()
            && let Some((base, _)) = &valid.bootloader
            && facts.bootloader.is_none()
        {
            facts.bootloader =
                Some(crate::bootloader::base_image(host, base).map_err(|e| format!("{e:#}")));
        }
        for host_path in image.files.values() {
            facts
                .host_files
                .entry(host_path.clone())
                .or_insert_with(|| {
                    host.read(host_path)
                        .map_err(|e| format!("{:#}", anyhow::Error::new(e)))
                });
        }
        if client.root == crate::config::model::RootMode::Shared {
            // The image's shared root, read once for all its shared clients.
            let base = crate::expand::shared_base(valid, &client.image);
            if !shared_read.insert(base.clone()) {
                continue;
            }
            let tree = format!("{base}/root");
            let found = host.found(&tree)?;
            facts.roots.insert(tree.clone(), found);
            let image_dir = match &image.source {
                Source::Directory(p) => Some(p.to_string_lossy().into_owned()),
                _ => image
                    .sha256
                    .as_deref()
                    .filter(|s| facts.in_store(s))
                    .map(|s| crate::image::store::root_dir(state_dir, s)),
            };
            if image_dir.is_none() && found == Found::Missing {
                continue;
            }
            let recorded = state.shared.get(&base).map(|r| r.boot_dir.clone());
            let manifest = image_dir
                .as_deref()
                .and_then(|d| facts.manifest_boot_dir(state_dir, d))
                .map(str::to_owned);
            collect_client(
                valid,
                &mut trees,
                client,
                &tree,
                found,
                image_dir.as_deref(),
                recorded,
                manifest,
            );
            continue;
        }
        let Some(image_dir) = crate::expand::source_dir(valid, &facts, &state, name, client, found)
        else {
            continue;
        };
        let recorded = state
            .clients
            .get(name)
            .filter(|r| !r.shared)
            .and_then(|r| r.boot_dir.clone());
        let manifest = image_dir
            .as_deref()
            .and_then(|d| facts.manifest_boot_dir(state_dir, d))
            .map(str::to_owned);
        collect_client(
            valid,
            &mut trees,
            client,
            &root,
            found,
            image_dir.as_deref(),
            recorded,
            manifest,
        );
    }
    facts.trees = trees
        .open
        .into_iter()
        .map(|(k, v)| (k, v.map(|r| r.facts)))
        .collect();
    facts.mounts = crate::host::mountinfo::read().context("reading /proc/self/mountinfo")?;
    facts.state = state;
    Ok(facts)
}

/// Reads what [`crate::expand`] reads for one client, from its root (when it is a folder)
/// and from the image folder it is (or was) made from. The boot folder is decided as
/// planning decides it (from what was read so far), then what is in it is read.
#[allow(clippy::too_many_arguments)]
fn collect_client(
    valid: &Valid,
    trees: &mut Trees<'_>,
    client: &crate::config::ValidClient,
    root: &str,
    found: Found,
    image_dir: Option<&str>,
    recorded: Option<String>,
    manifest: Option<String>,
) {
    let root_exists = match found {
        Found::Dir => true,
        Found::Missing => false,
        // A conflict: nothing inside is read.
        Found::Symlink | Found::Other => return,
    };
    let has_image = image_dir.is_some_and(|d| trees.get(d).is_some());
    let view_path = match (root_exists, image_dir) {
        (true, _) => root,
        (false, Some(d)) if has_image => d,
        _ => return,
    };
    if trees.get(view_path).is_none() {
        return;
    }
    let detect_path = if has_image {
        image_dir.expect("has image")
    } else {
        view_path
    };
    // Facts read as the Pi sees them, from the image (else the tree itself).
    let detect = trees.get(detect_path).expect("opened");
    for p in ["etc/os-release", "usr/lib/os-release", "etc/fstab"] {
        detect.read(p, true);
    }
    detect.entry("boot/firmware", true);
    if has_image {
        detect.read("etc/machine-id", true);
        for k in crate::clientos::IMAGE_HOST_KEYS {
            detect.entry(Path::new("etc/ssh").join(k), true);
        }
    }
    let Ok(boot_dir) = crate::expand::boot_dir_of(&detect.facts, recorded, manifest) else {
        return;
    };
    detect.read(boot_dir.join("cmdline.txt"), true);
    let view = trees.get(view_path).expect("opened");
    view.read("etc/fstab", false);
    view.entry(&boot_dir, false);
    view.open_dir(&boot_dir);
    if client.eeprom.is_some() && valid.bootloader.is_some() {
        view.read(boot_dir.join("pieeprom.upd"), false);
    }
    view.read("etc/passwd", true);
    for p in crate::clientos::FACT_PATHS {
        view.entry(p, true);
    }
    for f in crate::clientos::BOOT_FOLDER_SECRETS {
        let rel = boot_dir.join(f);
        if view
            .entry(&rel, false)
            .is_some_and(|e| e.kind == EntryKind::File)
        {
            view.read(&rel, false);
        }
    }
    if let Some(ssh) = &client.ssh
        && !ssh.authorized_keys.is_empty()
    {
        let user = ssh.user.as_deref().unwrap_or("root");
        if let Ok(Some(home)) = crate::clientos::home_of(&view.facts, user) {
            view.entry(&home, false);
        }
    }
}
