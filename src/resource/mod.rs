//! The closed set of resource kinds. Each observes itself against the host, says what would
//! change ([`Change`]), and applies that change. An enum plus `match` keeps the set visible.

pub mod bind;
pub mod boot_folder;
pub mod client_file;
pub mod client_root;
pub mod dir;
pub mod fstab;
pub mod host_file;
pub mod image;
pub mod known_hosts;
pub mod leftover;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::Context as _;
use serde::Serialize;

use crate::host::Host;
use crate::host::confined::{Tree, Violation};
use crate::host::mountinfo::Mount;

/// What a change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Something new.
    Create,
    /// Something that exists is changed.
    Update,
    /// Something pinetboot made is removed.
    Remove,
}

/// A daemon action fired when a resource it watches changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Handler {
    /// `exportfs -ra`.
    ReloadExports,
    /// `dnsmasq --test` on the drop-in, then restart dnsmasq.
    RestartDnsmasq,
    /// `systemctl daemon-reload` (fstab changed; systemd generates mount units from it).
    DaemonReload,
}

impl Handler {
    /// What the handler runs, for the plan.
    pub fn describe(&self) -> &'static str {
        match self {
            Handler::ReloadExports => "exportfs -ra",
            Handler::RestartDnsmasq => "restart dnsmasq (its drop-in passed dnsmasq --test)",
            Handler::DaemonReload => "systemctl daemon-reload",
        }
    }
}

/// What kind of thing a change is about; shown in the plan as [`ChangeKind::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// A folder (on the host or in a client root).
    Directory,
    /// A file (on the host or in a client root).
    File,
    /// A symlink in a client root.
    Link,
    /// pinetboot's block in the host's fstab.
    FstabBlock,
    /// A client root provisioned from an image.
    ClientRoot,
    /// A boot folder's bind mount onto a TFTP folder.
    BindMount,
    /// A disk image in the store (the change's path is the image's name).
    Image,
    /// A staging folder a killed apply left.
    StagingFolder,
    /// A download no apply will use.
    Download,
    /// A shared client's boot folder (links to its shared root's boot files).
    BootFolder,
}

impl ChangeKind {
    /// The kind as the plan (text and JSON) names it.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Directory => "directory",
            ChangeKind::File => "file",
            ChangeKind::Link => "link",
            ChangeKind::FstabBlock => "fstab block",
            ChangeKind::ClientRoot => "client root",
            ChangeKind::BindMount => "bind mount",
            ChangeKind::Image => "image",
            ChangeKind::StagingFolder => "staging folder",
            ChangeKind::Download => "download",
            ChangeKind::BootFolder => "boot folder",
        }
    }
}

impl std::fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ChangeKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One pending change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// What it does.
    pub action: Action,
    /// The resource kind (for [`ChangeKind::Image`] the path is the image's name).
    pub kind: ChangeKind,
    /// The path as the host sees it (no `--root` prefix).
    pub path: String,
    /// The client it belongs to, if any.
    pub client: Option<String>,
    /// Why, or what exactly.
    pub detail: Option<String>,
    /// A unified diff of file contents (`current` → `desired`).
    pub diff: Option<String>,
    /// The handler this change fires.
    pub handler: Option<Handler>,
    /// Apparent size (bytes of file data) of a leftover to remove; absent for other changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

impl Change {
    fn new(action: Action, kind: ChangeKind, path: impl Into<String>) -> Self {
        Change {
            action,
            kind,
            path: path.into(),
            client: None,
            detail: None,
            diff: None,
            handler: None,
            bytes: None,
        }
    }

    fn detail(mut self, d: impl Into<String>) -> Self {
        self.detail = Some(d.into());
        self
    }
}

/// A resource: something pinetboot makes true on the host.
#[derive(Debug, Clone)]
pub enum Resource {
    /// A host folder with a mode.
    Dir(dir::Dir),
    /// A host folder pinetboot made and no longer needs (removed only when empty).
    RemoveDir(dir::RemoveDir),
    /// A whole host file pinetboot owns.
    HostFile(host_file::HostFile),
    /// pinetboot's fenced block in the host's fstab.
    Fstab(fstab::FstabBlock),
    /// A client root provisioned once from an image.
    ClientRoot(client_root::ClientRoot),
    /// A file, folder or link inside a client root.
    ClientFile(client_file::ClientFile),
    /// The bind mount of a client's boot folder onto its TFTP folder.
    Bind(bind::Bind),
    /// A bind mount of a client no longer declared.
    Unbind(bind::Unbind),
    /// A served client's bind mount whose boot folder stopped being a real folder.
    BindGuard(bind::BindGuard),
    /// A disk image unpacked into the image store (applied before every client root).
    Image(image::Image),
    /// The server's `known_hosts` of client SSH host keys.
    KnownHosts(known_hosts::KnownHosts),
    /// A staging folder or download a killed apply left (removed before images are fetched).
    Leftover(leftover::Leftover),
    /// A shared client's own boot folder.
    BootFolder(boot_folder::BootFolder),
}

impl Resource {
    /// The client this resource belongs to, if any.
    pub fn client(&self) -> Option<&str> {
        match self {
            Resource::ClientRoot(r) => Some(&r.client),
            Resource::ClientFile(r) => Some(&r.client),
            Resource::Bind(r) => Some(&r.client),
            Resource::Unbind(r) => Some(&r.client),
            Resource::Dir(r) => r.client.as_deref(),
            Resource::RemoveDir(r) => Some(&r.client),
            Resource::BootFolder(r) => Some(&r.client),
            Resource::HostFile(_)
            | Resource::BindGuard(_)
            | Resource::Fstab(_)
            | Resource::Image(_)
            | Resource::KnownHosts(_)
            | Resource::Leftover(_) => None,
        }
    }

    /// What would change; `None` when the host already matches.
    pub fn check(&self, ctx: &Ctx) -> anyhow::Result<Option<Change>> {
        let change = match self {
            Resource::Dir(r) => r.check(ctx)?,
            Resource::RemoveDir(r) => r.check(ctx)?,
            Resource::HostFile(r) => r.check(ctx)?,
            Resource::Fstab(r) => r.check(ctx)?,
            Resource::ClientRoot(r) => r.check(ctx)?,
            Resource::ClientFile(r) => r.check(ctx)?,
            Resource::Bind(r) => r.check(ctx)?,
            Resource::Unbind(r) => r.check(ctx)?,
            Resource::BindGuard(r) => r.check(ctx)?,
            Resource::Image(r) => r.check(ctx)?,
            Resource::KnownHosts(r) => r.check(ctx)?,
            Resource::Leftover(r) => r.check(ctx)?,
            Resource::BootFolder(r) => r.check(ctx)?,
        };
        Ok(change.map(|mut c| {
            c.client = self.client().map(str::to_owned);
            c
        }))
    }

    /// As [`Resource::apply`], with a note on what was done for apply's output line (a client
    /// root's copy: files, bytes, how many were reflinked), if there is one.
    pub fn apply_noted(&self, ctx: &Ctx) -> anyhow::Result<Option<String>> {
        match self {
            Resource::ClientRoot(r) => r.apply_noted(ctx),
            _ => self.apply(ctx).map(|()| None),
        }
    }

    /// Makes the host match (called only when [`Resource::check`] reported a change).
    pub fn apply(&self, ctx: &Ctx) -> anyhow::Result<()> {
        match self {
            Resource::Dir(r) => r.apply(ctx),
            Resource::RemoveDir(r) => r.apply(ctx),
            Resource::HostFile(r) => r.apply(ctx),
            Resource::Fstab(r) => r.apply(ctx),
            Resource::ClientRoot(r) => r.apply(ctx),
            Resource::ClientFile(r) => r.apply(ctx),
            Resource::Bind(r) => r.apply(ctx),
            Resource::Unbind(r) => r.apply(ctx),
            Resource::BindGuard(r) => r.apply(ctx),
            Resource::Image(r) => r.apply(ctx),
            Resource::KnownHosts(r) => r.apply(ctx),
            Resource::Leftover(r) => r.apply(ctx),
            Resource::BootFolder(r) => r.apply(ctx),
        }
    }
}

/// Where a client's files come from right now.
#[derive(Debug, Clone)]
pub struct ClientPaths {
    /// Host path (as the host sees it) of the client root.
    pub root: String,
    /// Host path of the directory image the root is (or will be) copied from, if any.
    pub image_dir: Option<String>,
}

/// What resources need to observe and change the host.
#[derive(Debug)]
pub struct Ctx {
    /// The host, through the root prefix.
    pub host: Host,
    /// The mount table, read once per plan.
    pub mounts: Vec<Mount>,
    /// Per client: its root and image.
    pub clients: HashMap<String, ClientPaths>,
    /// pinetboot's scratch space for tool checks (`<state>/tmp` under the root prefix; made
    /// and emptied by apply, see [`crate::host::scratch`]).
    pub scratch: PathBuf,
    /// While one pass observes every resource ([`Ctx::observing`]): each client's tree,
    /// opened once for all its resources. `None` otherwise: apply observes afresh.
    pub views: RefCell<Option<HashMap<String, View>>>,
}

/// A client's tree as observed, and whether it is the image (its root does not exist yet).
pub type View = (Rc<Tree>, bool);

impl Ctx {
    /// Runs `f` with each client's tree opened once for all its resources (one observation
    /// pass of the whole plan), then forgets the trees.
    pub fn observing<T>(&self, f: impl FnOnce() -> T) -> T {
        self.views.replace(Some(HashMap::new()));
        let out = f();
        self.views.replace(None);
        out
    }

    /// The tree a client's files are read from: its root when provisioned, else the image it
    /// will be copied from. The flag is true when the root does not exist yet.
    pub fn client_view(&self, client: &str) -> anyhow::Result<View> {
        if let Some(view) = self.views.borrow().as_ref().and_then(|v| v.get(client)) {
            return Ok(view.clone());
        }
        let view = self.open_view(client)?;
        if let Some(views) = self.views.borrow_mut().as_mut() {
            views.insert(client.to_owned(), view.clone());
        }
        Ok(view)
    }

    fn open_view(&self, client: &str) -> anyhow::Result<View> {
        let paths = self
            .clients
            .get(client)
            .with_context(|| format!("unknown client {client}"))?;
        if self.host.exists(&paths.root)? {
            return Ok((Rc::new(Tree::open(&self.host.path(&paths.root))?), false));
        }
        let image = paths
            .image_dir
            .as_ref()
            .with_context(|| format!("client {client} has no root and no directory image"))?;
        Ok((Rc::new(Tree::open(&self.host.path(image))?), true))
    }

    /// The client root, which must exist (apply, after provisioning).
    pub fn client_root(&self, client: &str) -> anyhow::Result<Tree> {
        let paths = self
            .clients
            .get(client)
            .with_context(|| format!("unknown client {client}"))?;
        Ok(Tree::open(&self.host.path(&paths.root))?)
    }

    /// The mount at a host path (topmost), if any.
    pub fn mount_at(&self, host_path: &str) -> Option<&Mount> {
        let full = self.host.path(host_path);
        let full = full.to_string_lossy();
        self.mounts.iter().rev().find(|m| m.mount_point == full)
    }
}

/// A unified diff between two texts, `current` → `desired`, safe to print (see
/// [`printable`]).
pub fn diff(current: &str, desired: &str) -> String {
    diff_bytes(current.as_bytes(), desired.as_bytes())
}

/// A unified diff between two files' bytes, `current` → `desired`, by lines (`\n`). What is
/// not printable text is escaped in the diff only (see [`printable`]); the files' bytes are
/// never touched by this.
pub fn diff_bytes(current: &[u8], desired: &[u8]) -> String {
    similar::TextDiff::from_lines(&*printable(current), &*printable(desired))
        .unified_diff()
        .context_radius(3)
        .header("current", "desired")
        .to_string()
}

/// Bytes as text for a person's terminal: UTF-8 as it is, but each byte that is not UTF-8
/// shown as `\xNN`, and control characters other than newline and tab (CR, NUL, ESC, C1
/// controls: a client root's files are untrusted and must not drive the terminal) shown as
/// `\xNN` or `\u{NNNN}`. A backslash is left as it is, so the escape is for reading, not
/// for reversing.
pub fn printable(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    let plain = |c: char| !c.is_control() || c == '\n' || c == '\t';
    if let Ok(s) = std::str::from_utf8(bytes)
        && s.chars().all(plain)
    {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(bytes.len() + 16);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                c if plain(c) => out.push(c),
                c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
                c => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Whether an error is a client-root violation (a conflict), not a failure of pinetboot's.
pub fn as_violation(e: &anyhow::Error) -> Option<&Violation> {
    e.chain().find_map(|c| c.downcast_ref::<Violation>())
}

/// The relative path as text.
pub fn rel_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Joins a host path and a relative path, as the host sees it.
pub fn host_join(base: &str, rel: &Path) -> String {
    let mut p = PathBuf::from(base);
    p.push(rel);
    p.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_what_is_not_text_and_keeps_the_rest() {
        assert!(matches!(
            printable(b"a\tb\n\xc3\xa9\n"),
            std::borrow::Cow::Borrowed("a\tb\né\n")
        ));
        assert_eq!(
            printable(b"\xff\xfe ok\r\n\0\x1b[31m \xc2\x9b x\\y"),
            "\\xff\\xfe ok\\x0d\n\\x00\\x1b[31m \\u{009b} x\\y"
        );
    }

    #[test]
    fn a_diff_of_bytes_that_are_not_utf8_is_readable() {
        let d = diff_bytes(b"keep \xff\nold\n", b"keep \xff\nnew\n");
        assert!(d.contains(" keep \\xff\n-old\n+new\n"), "{d}");
    }
}
