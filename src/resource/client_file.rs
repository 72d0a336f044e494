//! Files, folders and links inside a client root — the untrusted tree. Every access goes
//! through [`crate::host::confined::Tree`]; a planted symlink, fifo or device makes the client
//! a conflict instead of being followed.

use std::path::{Path, PathBuf};

use super::{Action, Change, ChangeKind, Ctx, diff, diff_bytes, host_join};
use crate::host::atomic::Owner;
use crate::host::confined::{Entry, EntryKind, Tree, Violation};
use crate::render::fence;

/// What a client path must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// A file with exactly this content.
    Content(Vec<u8>),
    /// Like [`Want::Content`], for a secret (a password hash): the plan never shows it, only
    /// that it changes.
    Secret(Vec<u8>),
    /// `cmdline.txt` with this content, or an equivalent one another tool regenerated (see
    /// [`crate::pios::cmdline_equivalent`]).
    Cmdline(String),
    /// A file others own, with these lines in pinetboot's fenced block (created when missing).
    Block(Vec<String>),
    /// A bootloader image with exactly this content (diffed by its embedded config).
    Eeprom(Vec<u8>),
    /// The client's fstab, without the SD-card lines (left alone when absent).
    FilterFstab,
    /// The client's hosts file with its `127.0.1.1` line for this hostname, in a fence.
    HostsEntry(String),
    /// A symlink with this target (masks point at /dev/null; enable links at units).
    Link(String),
    /// A folder.
    Dir,
    /// An SSH host key generated for this client, once (the path is the private key; its
    /// `.pub` goes beside it). An existing key is the client's and is never replaced.
    SshHostKey {
        /// The comment of the public key (`root@HOSTNAME`).
        comment: String,
    },
}

/// What a client path is now (see [`ClientFile::observe`]).
#[derive(Debug, Clone, Default)]
struct Seen {
    /// The tree's full path, for the paths violations name.
    tree: PathBuf,
    /// The entry at the path (not followed).
    entry: Option<Entry>,
    /// A symlink's target, when a link is wanted and a symlink is there.
    link: Option<Vec<u8>>,
    /// A file's bytes; for a host key, the public line its private half gives.
    content: Option<Vec<u8>>,
    /// For a host key: whether its public half exists.
    public: bool,
}

/// One path inside a client root.
#[derive(Debug, Clone)]
pub struct ClientFile {
    /// The client.
    pub client: String,
    /// Host path of the client root, for messages.
    pub root: String,
    /// Path relative to the root.
    pub rel: PathBuf,
    /// What it must be.
    pub want: Want,
    /// Mode and owner for files and folders pinetboot creates. When `enforce` is false an
    /// existing file keeps its own mode and owner.
    pub owner: Owner,
    /// Whether mode and owner are part of the desired state (authorized_keys, .ssh).
    pub enforce: bool,
}

/// Whether a hosts line gives an address to the local host name (`127.0.1.1 NAME…`): its
/// first field is exactly `127.0.1.1` (not `127.0.1.10`, not a comment).
fn is_hostname_line(line: &[u8]) -> bool {
    line.split(|b| b.is_ascii_whitespace())
        .find(|f| !f.is_empty())
        .is_some_and(|f| f == b"127.0.1.1")
}

/// The hosts file with the hostname's 127.0.1.1 line fenced and the other 127.0.1.1 lines
/// (the image's `raspberrypi`) dropped; every other byte kept. One pass over the file.
fn hosts_with(current: &[u8], hostname: &str) -> Result<Vec<u8>, fence::Broken> {
    Ok(
        fence::parse(current)?.render(&[format!("127.0.1.1\t{hostname}")], |l| {
            !is_hostname_line(l)
        }),
    )
}

impl ClientFile {
    fn full(&self) -> String {
        host_join(&self.root, &self.rel)
    }

    /// The desired bytes for a file path given what is there now; `None` = leave it be. Files
    /// others own are edited as bytes; a broken fence in one is a [`Violation::Fence`].
    fn desired(&self, tree: &Path, current: Option<&[u8]>) -> Result<Option<Vec<u8>>, Violation> {
        let fenced = |r: Result<Vec<u8>, fence::Broken>| {
            r.map(Some)
                .map_err(|b| Violation::Fence(tree.join(&self.rel), b))
        };
        match &self.want {
            Want::Content(c) | Want::Secret(c) | Want::Eeprom(c) => Ok(Some(c.clone())),
            Want::Cmdline(c) => Ok(Some(c.clone().into_bytes())),
            Want::Block(lines) => fenced(fence::splice(current.unwrap_or_default(), lines)),
            Want::FilterFstab => Ok(current.map(crate::pios::filter_fstab)),
            Want::HostsEntry(h) => fenced(hosts_with(current.unwrap_or_default(), h)),
            Want::Link(_) | Want::Dir | Want::SshHostKey { .. } => Ok(None),
        }
    }

    /// Whether the file is one others own that pinetboot edits in part (shown as a text diff
    /// whatever its bytes).
    fn partial(&self) -> bool {
        matches!(
            self.want,
            Want::Block(_) | Want::FilterFstab | Want::HostsEntry(_)
        )
    }

    /// What is at the path now, as far as what it must be needs: its entry, a link's
    /// target, a file's bytes, a host key's public half. Every read is confined.
    fn observe(&self, tree: &Tree) -> anyhow::Result<Seen> {
        let entry = tree.entry(&self.rel)?;
        let mut seen = Seen {
            tree: tree.path().to_owned(),
            entry,
            ..Seen::default()
        };
        match &self.want {
            Want::Dir => {}
            Want::Link(_) => {
                if entry.is_some_and(|e| e.kind == EntryKind::Symlink) {
                    seen.link = tree.read_link(&self.rel)?;
                }
            }
            Want::SshHostKey { .. } => {
                tree.replaceable(&self.rel, entry)?;
                tree.check_replaceable(&self.pub_rel())?;
                seen.public = tree.entry(&self.pub_rel())?.is_some();
                if entry.is_some() && !seen.public {
                    seen.content = self.derivable_public(tree)?;
                }
            }
            _ => {
                tree.replaceable(&self.rel, entry)?;
                seen.content = tree.read(&self.rel)?;
            }
        }
        Ok(seen)
    }

    /// The change from what is there (pure): a folder, link or file made or put right; a
    /// violation when something else is in the way.
    fn decide(&self, seen: &Seen) -> anyhow::Result<Option<Change>> {
        let entry = seen.entry;
        let tree = &seen.tree;
        match &self.want {
            Want::Dir => {
                return Ok(match entry {
                    None => Some(
                        Change::new(Action::Create, ChangeKind::Directory, self.full())
                            .detail(format!("mode {:04o}", self.owner.mode)),
                    ),
                    Some(e) if e.kind == EntryKind::Dir => {
                        let owner_ok = self.owner.uid.is_none_or(|u| u == e.uid)
                            && self.owner.gid.is_none_or(|g| g == e.gid);
                        if self.enforce && (e.mode != self.owner.mode || !owner_ok) {
                            Some(
                                Change::new(Action::Update, ChangeKind::Directory, self.full())
                                    .detail(format!(
                                        "mode {:04o} owner {}:{} → mode {:04o} owner {}:{}",
                                        e.mode,
                                        e.uid,
                                        e.gid,
                                        self.owner.mode,
                                        self.owner.uid.unwrap_or(e.uid),
                                        self.owner.gid.unwrap_or(e.gid)
                                    )),
                            )
                        } else {
                            None
                        }
                    }
                    Some(_) => Err(crate::host::confined::Violation::WrongKind(
                        tree.join(&self.rel),
                        "not a folder where a folder belongs",
                    ))?,
                });
            }
            Want::Link(target) => {
                let current = match entry {
                    None => None,
                    Some(e) if e.kind == EntryKind::Symlink => seen.link.clone(),
                    Some(e) if e.kind == EntryKind::File => Some(b"(a file)".to_vec()),
                    Some(_) => Err(crate::host::confined::Violation::WrongKind(
                        tree.join(&self.rel),
                        "a folder or special file where a link belongs",
                    ))?,
                };
                return Ok(match current {
                    Some(t) if t == target.as_bytes() => None,
                    Some(t) => Some(
                        Change::new(Action::Update, ChangeKind::Link, self.full())
                            .detail(format!("{} → {target}", String::from_utf8_lossy(&t))),
                    ),
                    None => Some(
                        Change::new(Action::Create, ChangeKind::Link, self.full())
                            .detail(format!("→ {target}")),
                    ),
                });
            }
            Want::SshHostKey { .. } => return Ok(self.decide_host_key(seen)),
            _ => {}
        }
        let current = &seen.content;
        let Some(desired) = self.desired(tree, current.as_deref())? else {
            return Ok(None);
        };
        let equivalent = |c: &[u8]| match &self.want {
            Want::Cmdline(d) => {
                std::str::from_utf8(c).is_ok_and(|c| crate::pios::cmdline_equivalent(c, d))
            }
            _ => false,
        };
        let mut change = match &current {
            Some(c) if *c == desired || equivalent(c) => {
                let e = entry.expect("file exists");
                let owner_ok = self.owner.uid.is_none_or(|u| u == e.uid)
                    && self.owner.gid.is_none_or(|g| g == e.gid);
                if self.enforce && (e.mode != self.owner.mode || !owner_ok) {
                    return Ok(Some(
                        Change::new(Action::Update, ChangeKind::File, self.full()).detail(format!(
                            "mode {:04o} owner {}:{} → mode {:04o}",
                            e.mode, e.uid, e.gid, self.owner.mode
                        )),
                    ));
                }
                return Ok(None);
            }
            Some(_) => Change::new(Action::Update, ChangeKind::File, self.full()),
            None => Change::new(Action::Create, ChangeKind::File, self.full()),
        };
        change.diff = Some(match &self.want {
            Want::Eeprom(_) => eeprom_diff(current.as_deref(), &desired),
            Want::Secret(_) => "(a secret: its content is not shown)\n".to_owned(),
            _ if self.partial() => diff_bytes(current.as_deref().unwrap_or_default(), &desired),
            _ => text_diff(current.as_deref().unwrap_or_default(), &desired),
        });
        Ok(Some(change))
    }

    fn pub_rel(&self) -> PathBuf {
        let mut p = self.rel.clone().into_os_string();
        p.push(".pub");
        PathBuf::from(p)
    }

    /// The public line of the client's existing private key, if it has one that parses. A key
    /// the Pi made unreadable is the Pi's business: never an error that stops every apply.
    fn derivable_public(&self, tree: &Tree) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(tree
            .read(&self.rel)?
            .and_then(|private| crate::sshkeys::public_of(&private).ok()))
    }

    /// A host key: made when missing; an existing key's public half restored when it can
    /// be derived (`seen.content`); never replaced.
    fn decide_host_key(&self, seen: &Seen) -> Option<Change> {
        match (seen.entry.is_some(), seen.public) {
            (true, true) => None,
            (true, false) => seen.content.as_ref().map(|_| {
                Change::new(
                    Action::Create,
                    ChangeKind::File,
                    host_join(&self.root, &self.pub_rel()),
                )
                .detail("public half of the client's SSH host key")
            }),
            (false, _) => Some(
                Change::new(Action::Create, ChangeKind::File, self.full()).detail(
                    "ed25519, generated for this client; its public half goes to known_hosts",
                ),
            ),
        }
    }

    fn apply_host_key(&self, tree: &Tree, comment: &str) -> anyhow::Result<()> {
        tree.check_replaceable(&self.rel)?;
        tree.check_replaceable(&self.pub_rel())?;
        let public = Owner {
            mode: 0o644,
            uid: Some(0),
            gid: Some(0),
        };
        if tree.entry(&self.rel)?.is_some() {
            // The key is the client's: only a missing public half it can be derived from is
            // restored.
            return match self.derivable_public(tree)? {
                Some(line) => Ok(tree.write(&self.pub_rel(), &line, public)?),
                None => Ok(()),
            };
        }
        let (private, line) = crate::sshkeys::generate(comment)?;
        // The public half first: a key is only complete once its private half exists.
        tree.write(&self.pub_rel(), &line, public)?;
        tree.write(
            &self.rel,
            &private,
            Owner {
                mode: 0o600,
                uid: Some(0),
                gid: Some(0),
            },
        )?;
        Ok(())
    }

    pub(super) fn check(&self, ctx: &Ctx) -> anyhow::Result<Option<Change>> {
        let (tree, pending) = ctx.client_view(&self.client)?;
        let change = self.decide(&self.observe(&tree)?)?;
        Ok(change.map(|mut c| {
            if pending {
                let note = "in the new root".to_owned();
                c.detail = Some(match c.detail {
                    Some(d) => format!("{d}; {note}"),
                    None => note,
                });
            }
            c
        }))
    }

    pub(super) fn apply(&self, ctx: &Ctx) -> anyhow::Result<()> {
        let tree = ctx.client_root(&self.client)?;
        match &self.want {
            Want::Dir => {
                tree.create_dirs(&self.rel, self.owner)?;
                if self.enforce {
                    // Existing folder: put mode and owner right.
                    let fd = tree
                        .open_dir(&self.rel)?
                        .ok_or_else(|| anyhow::anyhow!("{} vanished", self.full()))?;
                    crate::host::ops::set_owner_of(&fd, self.owner)?;
                }
                Ok(())
            }
            Want::Link(target) => Ok(tree.symlink(&self.rel, target.as_bytes())?),
            Want::SshHostKey { comment } => self.apply_host_key(&tree, comment),
            _ => {
                tree.check_replaceable(&self.rel)?;
                let current = tree.read(&self.rel)?;
                let Some(desired) = self.desired(tree.path(), current.as_deref())? else {
                    return Ok(());
                };
                let owner = match (self.enforce, tree.entry(&self.rel)?) {
                    (false, Some(e)) => Owner {
                        mode: e.mode,
                        uid: Some(e.uid),
                        gid: Some(e.gid),
                    },
                    _ => self.owner,
                };
                Ok(tree.write(&self.rel, &desired, owner)?)
            }
        }
    }
}

/// A bootloader image change, shown as its embedded config's text diff plus timestamps.
fn eeprom_diff(current: Option<&[u8]>, desired: &[u8]) -> String {
    let view = |bytes: &[u8]| match crate::eeprom::EepromImage::parse(bytes.to_vec()) {
        Ok(img) => (
            img.config()
                .unwrap_or_else(|e| format!("(unreadable config: {e})\n")),
            img.timestamp(),
        ),
        Err(e) => (format!("(not a bootloader image: {e})\n"), None),
    };
    let (old, old_ts) = current.map(view).unwrap_or_default();
    let (new, new_ts) = view(desired);
    let ts = |t: Option<u64>| t.map(|t| t.to_string()).unwrap_or_else(|| "none".into());
    format!(
        "bootloader config (update timestamp {} → {}):\n{}",
        ts(old_ts),
        ts(new_ts),
        diff(&old, &new)
    )
}

fn text_diff(current: &[u8], desired: &[u8]) -> String {
    match (std::str::from_utf8(current), std::str::from_utf8(desired)) {
        (Ok(a), Ok(b)) => diff(a, b),
        _ => format!(
            "binary content: {} bytes → {} bytes (sha256 {})\n",
            current.len(),
            desired.len(),
            crate::digest::sha256_hex(desired)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(rel: &str, want: Want, enforce: bool) -> ClientFile {
        ClientFile {
            client: "pi".into(),
            root: "/nfs/pi".into(),
            rel: rel.into(),
            want,
            owner: Owner {
                mode: 0o600,
                uid: Some(1000),
                gid: Some(1000),
            },
            enforce,
        }
    }

    fn seen(kind: Option<EntryKind>, content: Option<&[u8]>) -> Seen {
        Seen {
            tree: "/nfs/pi".into(),
            entry: kind.map(|kind| Entry {
                kind,
                mode: 0o644,
                uid: 0,
                gid: 0,
                size: 0,
            }),
            content: content.map(<[u8]>::to_vec),
            ..Seen::default()
        }
    }

    fn file_seen(content: Option<&[u8]>) -> Seen {
        seen(Some(EntryKind::File), content)
    }

    #[test]
    fn files_are_created_replaced_or_put_right_by_mode_and_owner() {
        let f = item("etc/hostname", Want::Content(b"pi\n".to_vec()), false);
        let c = f.decide(&seen(None, None)).unwrap().unwrap();
        assert_eq!(
            (c.action, c.kind, c.path.as_str()),
            (Action::Create, ChangeKind::File, "/nfs/pi/etc/hostname")
        );
        assert!(c.diff.unwrap().contains("+pi"));
        assert!(f.decide(&file_seen(Some(b"pi\n"))).unwrap().is_none());
        let c = f
            .decide(&file_seen(Some(b"raspberrypi\n")))
            .unwrap()
            .unwrap();
        assert_eq!(c.action, Action::Update);
        // Enforced: the same content with another mode and owner is a change.
        let keys = item(".ssh/authorized_keys", Want::Content(b"k\n".to_vec()), true);
        let c = keys.decide(&file_seen(Some(b"k\n"))).unwrap().unwrap();
        assert_eq!(c.detail.as_deref(), Some("mode 0644 owner 0:0 → mode 0600"));
        // A secret's content is never shown.
        let s = item(
            "boot/userconf.txt",
            Want::Secret(b"alice:$6$x\n".to_vec()),
            true,
        );
        let c = s.decide(&seen(None, None)).unwrap().unwrap();
        assert_eq!(
            c.diff.as_deref(),
            Some("(a secret: its content is not shown)\n")
        );
    }

    #[test]
    fn a_regenerated_cmdline_that_boots_the_same_is_no_change() {
        let want =
            "console=tty1 root=/dev/nfs nfsroot=10.0.0.1:/nfs/pi,vers=3 rw ip=dhcp rootwait\n";
        let f = item(
            "boot/firmware/cmdline.txt",
            Want::Cmdline(want.into()),
            false,
        );
        let regenerated = b"console=tty1 root=/dev/nfs nfsroot=10.0.0.1:/nfs/pi,vers=3 ip=dhcp rw fsck.repair=yes rootwait\n";
        assert!(f.decide(&file_seen(Some(regenerated))).unwrap().is_none());
        let sd = b"console=tty1 root=PARTUUID=1-02 rw rootwait\n";
        assert!(f.decide(&file_seen(Some(sd))).unwrap().is_some());
    }

    #[test]
    fn folders_links_and_fences_refuse_what_is_in_the_way() {
        let d = item("home/alice/.ssh", Want::Dir, true);
        assert_eq!(
            d.decide(&seen(None, None))
                .unwrap()
                .unwrap()
                .detail
                .as_deref(),
            Some("mode 0600")
        );
        let c = d
            .decide(&seen(Some(EntryKind::Dir), None))
            .unwrap()
            .unwrap();
        assert_eq!(
            c.detail.as_deref(),
            Some("mode 0644 owner 0:0 → mode 0600 owner 1000:1000")
        );
        let e = d.decide(&file_seen(None)).unwrap_err();
        assert!(crate::resource::as_violation(&e).is_some());
        let l = item(
            "etc/systemd/system/x.service",
            Want::Link("/dev/null".into()),
            false,
        );
        let mut link = seen(Some(EntryKind::Symlink), None);
        link.link = Some(b"/dev/null".to_vec());
        assert!(l.decide(&link).unwrap().is_none());
        link.link = Some(b"/lib/x".to_vec());
        assert_eq!(
            l.decide(&link).unwrap().unwrap().detail.as_deref(),
            Some("/lib/x → /dev/null")
        );
        assert_eq!(
            l.decide(&file_seen(None))
                .unwrap()
                .unwrap()
                .detail
                .as_deref(),
            Some("(a file) → /dev/null")
        );
        assert!(l.decide(&seen(Some(EntryKind::Dir), None)).is_err());
        // A hosts file with a cut fence: a violation with the fence's hint, nothing written.
        let h = item("etc/hosts", Want::HostsEntry("pi".into()), false);
        let cut = b"# BEGIN pinetboot\n127.0.1.1\tpi\n";
        let e = h.decide(&file_seen(Some(cut))).unwrap_err();
        assert!(matches!(
            crate::resource::as_violation(&e),
            Some(Violation::Fence(..))
        ));
        // No fstab: nothing to filter.
        let f = item("etc/fstab", Want::FilterFstab, false);
        assert!(f.decide(&seen(None, None)).unwrap().is_none());
    }

    #[test]
    fn a_host_key_is_made_once_and_only_its_public_half_restored() {
        let k = item(
            crate::sshkeys::HOST_KEY,
            Want::SshHostKey {
                comment: "root@pi".into(),
            },
            false,
        );
        assert!(
            k.decide(&seen(None, None))
                .unwrap()
                .unwrap()
                .detail
                .unwrap()
                .starts_with("ed25519, generated")
        );
        let mut both = file_seen(None);
        both.public = true;
        assert!(k.decide(&both).unwrap().is_none());
        // The private half only: its public line is restored when it derives, else left be.
        assert!(k.decide(&file_seen(None)).unwrap().is_none());
        let c = k
            .decide(&file_seen(Some(b"ssh-ed25519 AAAA")))
            .unwrap()
            .unwrap();
        assert!(c.path.ends_with(".pub"));
    }

    #[test]
    fn hosts_entry_replaces_the_image_line() {
        let img = b"127.0.0.1\tlocalhost\n::1\t\tlocalhost\n\n127.0.1.1\t\traspberrypi\n";
        let once = hosts_with(img, "raspi1").unwrap();
        assert_eq!(
            once,
            b"127.0.0.1\tlocalhost\n::1\t\tlocalhost\n\n# BEGIN pinetboot\n127.0.1.1\traspi1\n# END pinetboot\n"
        );
        assert_eq!(hosts_with(&once, "raspi1").unwrap(), once);
        let other = hosts_with(&once, "other").unwrap();
        assert!(other.ends_with(b"# BEGIN pinetboot\n127.0.1.1\tother\n# END pinetboot\n"));
        assert!(!other.windows(6).any(|w| w == b"raspi1"));
    }

    #[test]
    fn only_127_0_1_1_lines_outside_the_fence_go() {
        let text: &[u8] =
            b"127.0.1.10 ten\n  127.0.1.1\told\n#127.0.1.1 commented\n\xff 127.0.1.1 x\n\
            # BEGIN pinetboot\n127.0.1.1\tpi\n# END pinetboot\n127.0.1.1 after\ntail \xfe";
        assert_eq!(
            hosts_with(text, "pi").unwrap(),
            b"127.0.1.10 ten\n#127.0.1.1 commented\n\xff 127.0.1.1 x\n\
              # BEGIN pinetboot\n127.0.1.1\tpi\n# END pinetboot\ntail \xfe"
        );
    }

    proptest::proptest! {
        /// Any bytes outside the fence but the `127.0.1.1` lines survive, the block lands
        /// once, and a second pass changes nothing.
        #[test]
        fn hosts_bytes_outside_the_fence_survive(
            lines in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..30), 0..12),
            image_line in 0usize..12,
            last_newline in proptest::prelude::any::<bool>(),
        ) {
            let keep: Vec<&Vec<u8>> = lines
                .iter()
                .filter(|l| {
                    l.split(|&b| b == b'\n').all(|l| {
                        !is_hostname_line(l) && fence::parse(l).is_ok_and(|f| !f.has_block())
                    })
                })
                .collect();
            let mut text = Vec::new();
            let mut want = Vec::new();
            for (i, l) in keep.iter().enumerate() {
                if i == image_line {
                    text.extend_from_slice(b"127.0.1.1\traspberrypi\n");
                }
                text.extend_from_slice(l);
                want.extend_from_slice(l);
                if i + 1 < keep.len() || last_newline {
                    text.push(b'\n');
                    want.push(b'\n');
                }
            }
            if !want.is_empty() && !want.ends_with(b"\n") {
                want.push(b'\n');
            }
            want.extend_from_slice(b"# BEGIN pinetboot\n127.0.1.1\tpi\n# END pinetboot\n");
            let once = hosts_with(&text, "pi").unwrap();
            proptest::prop_assert_eq!(once.escape_ascii().to_string(), want.escape_ascii().to_string());
            proptest::prop_assert_eq!(hosts_with(&once, "pi").unwrap(), once);
        }
    }

    #[test]
    fn a_broken_fence_in_hosts_is_an_error_not_a_second_block() {
        let cut = b"127.0.0.1 localhost\n# BEGIN pinetboot\n127.0.1.1\tpi\n10.0.0.9 nas\n";
        assert_eq!(
            hosts_with(cut, "pi").unwrap_err(),
            fence::Broken::Unterminated { line: 2 }
        );
    }
}
