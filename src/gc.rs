//! The store's lifecycle (`pinetboot gc`): image store entries no declared client's image names
//! and client roots `reprovision` moved aside. `plan` lists them as removable; only `gc --yes`
//! deletes them, by descriptor (a symlink is never followed, a mount never entered: a tree
//! with a mount in it is refused before anything of it is deleted).
//!
//! An entry in use is never a candidate: a store entry is in use while a declared client's
//! image (on this server) is that digest. A moved-aside root is never in use: `reprovision`
//! gave its client a new one.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::Context as _;
use serde::Serialize;

use crate::config::{Source, Valid};
use crate::host::Host;
use crate::image::store;

/// Something `gc` may delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Removable {
    /// Host path.
    pub path: String,
    /// What it is.
    #[serde(flatten)]
    pub what: What,
    /// Its apparent size (bytes of file data), when known: a store entry's from its manifest
    /// (plan), anything's once measured (`gc`).
    pub bytes: Option<u64>,
}

/// What a removable thing is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum What {
    /// An unpacked image no declared client's image names.
    StoreEntry {
        /// The image file's digest.
        sha256: String,
        /// The image's `PRETTY_NAME`, from the manifest.
        pretty_name: Option<String>,
    },
    /// A root `pinetboot reprovision` moved aside.
    OldRoot {
        /// The client it was.
        client: String,
        /// When it was moved aside (UTC, as in its name).
        moved: String,
    },
    /// A shared root no declared shared client boots (an older image version, or an image
    /// with no shared client left), with the boot folders in it.
    SharedRoot {
        /// Its folder's name (`IMAGE-ID`).
        name: String,
    },
    /// A boot folder in a shared root in use, of a client that no longer boots it.
    BootFolder {
        /// The client it was.
        client: String,
    },
}

impl Removable {
    /// One line for people: what, where, how big.
    pub fn describe(&self) -> String {
        let size = self
            .bytes
            .map(|b| format!(", {}", crate::progress::human_bytes(b)))
            .unwrap_or_default();
        match &self.what {
            What::StoreEntry {
                sha256,
                pretty_name,
            } => format!(
                "image store entry {} ({}{size}): no declared client's image is it",
                &sha256[..12],
                pretty_name.as_deref().unwrap_or("unknown system"),
            ),
            What::OldRoot { client, moved } => format!(
                "old root of client {client}, moved aside by reprovision at {moved} ({}{size})",
                self.path
            ),
            What::SharedRoot { name } => format!(
                "shared root {name}: no declared shared client boots it ({}{size})",
                self.path
            ),
            What::BootFolder { client } => format!(
                "boot folder of client {client}, which no longer boots this shared root ({}{size})",
                self.path
            ),
        }
    }
}

/// The digests of the disk images this server's declared clients use: their store entries
/// are in use.
pub fn in_use(valid: &Valid) -> BTreeSet<String> {
    valid
        .clients
        .values()
        .filter_map(|c| valid.images.get(&c.image))
        .filter(|i| !matches!(i.source, Source::Directory(_)))
        .filter_map(|i| i.sha256.clone())
        .collect()
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `.NAME.pinetboot-old-STAMP` → (NAME, STAMP).
fn old_root_name(file: &str) -> Option<(&str, &str)> {
    let (name, stamp) = file.strip_prefix('.')?.split_once(".pinetboot-old-")?;
    (!name.is_empty() && !stamp.is_empty()).then_some((name, stamp))
}

/// What `gc` may delete on this host, in the order found (store entries, then old roots);
/// sizes only from store manifests (nothing is walked: `plan` calls this).
pub fn find(valid: &Valid, host: &Host) -> anyhow::Result<Vec<Removable>> {
    let state = &valid.paths.state;
    let used = in_use(valid);
    let mut out = Vec::new();
    let images = store::images_dir(state);
    let mut names = host
        .names(&images)
        .with_context(|| format!("reading {}", host.path(&images).display()))?;
    names.sort();
    for sha in names.iter().filter(|n| is_sha256(n) && !used.contains(*n)) {
        // Only a complete entry (its manifest is written last); anything else under the
        // store's names is a leftover that apply removes.
        if !store::is_present(host, state, sha) {
            continue;
        }
        let manifest = store::manifest(host, state, sha);
        out.push(Removable {
            path: store::entry_dir(state, sha),
            bytes: manifest.as_ref().map(|m| m.tree_bytes),
            what: What::StoreEntry {
                sha256: sha.clone(),
                pretty_name: manifest.and_then(|m| m.pretty_name),
            },
        });
    }
    let nfs = valid.paths.nfs.trim_end_matches('/');
    shared(valid, host, nfs, &mut out)?;
    let mut names = host
        .names(nfs)
        .with_context(|| format!("reading {}", host.path(nfs).display()))?;
    names.sort();
    for n in &names {
        if let Some((client, moved)) = old_root_name(n) {
            out.push(Removable {
                path: format!("{nfs}/{n}"),
                bytes: None,
                what: What::OldRoot {
                    client: client.to_owned(),
                    moved: moved.to_owned(),
                },
            });
        }
    }
    Ok(out)
}

/// Shared roots no declared shared client boots, and boot folders in the ones in use of
/// clients that no longer boot them.
fn shared(valid: &Valid, host: &Host, nfs: &str, out: &mut Vec<Removable>) -> anyhow::Result<()> {
    let folder = format!("{nfs}/.shared");
    let mut in_use: std::collections::BTreeMap<String, BTreeSet<&str>> = Default::default();
    for (name, c) in &valid.clients {
        if c.root == crate::config::model::RootMode::Shared {
            in_use
                .entry(crate::expand::shared_base(valid, &c.image))
                .or_default()
                .insert(name);
        }
    }
    let mut names = host
        .names(&folder)
        .with_context(|| format!("reading {}", host.path(&folder).display()))?;
    names.sort();
    for n in names {
        let base = format!("{folder}/{n}");
        let Some(clients) = in_use.get(&base) else {
            out.push(Removable {
                path: base,
                bytes: None,
                what: What::SharedRoot { name: n },
            });
            continue;
        };
        let boot = format!("{base}/boot");
        let mut names = host
            .names(&boot)
            .with_context(|| format!("reading {}", host.path(&boot).display()))?;
        names.sort();
        for client in names.into_iter().filter(|c| !clients.contains(c.as_str())) {
            out.push(Removable {
                path: format!("{boot}/{client}"),
                bytes: None,
                what: What::BootFolder { client },
            });
        }
    }
    Ok(())
}

/// Measures each candidate's apparent size, without following a symlink or entering a mount.
/// A candidate with a mount inside is taken out of the list and returned as a refusal.
pub fn measure(
    host: &Host,
    found: Vec<Removable>,
) -> anyhow::Result<(Vec<Removable>, Vec<String>)> {
    let mut ok = Vec::new();
    let mut refused = Vec::new();
    let mounts = crate::host::mountinfo::read().context("reading /proc/self/mountinfo")?;
    for mut r in found {
        let full: PathBuf = host.path(&r.path);
        let Some(m) =
            crate::tree::remove::measure(&full).with_context(|| format!("measuring {}", r.path))?
        else {
            continue;
        };
        if let Some(mount) = m.mounts.first() {
            refused.push(format!(
                "{} holds a mount point ({}): pinetboot never removes anything through a mount; unmount it first",
                r.path,
                mount.display()
            ));
            continue;
        }
        // A folder still served (a bind mount made from it) is in use.
        let prefix = full.to_string_lossy().into_owned();
        if let Some(m) = mounts
            .iter()
            .find(|m| m.root == prefix || m.root.starts_with(&format!("{prefix}/")))
        {
            refused.push(format!(
                "{} is still mounted on {}: in use; run `pinetboot apply` first",
                r.path, m.mount_point
            ));
            continue;
        }
        r.bytes = Some(m.bytes);
        ok.push(r);
    }
    Ok((ok, refused))
}

/// Deletes one candidate by descriptor; returns the bytes freed (apparent size).
pub fn remove(host: &Host, r: &Removable) -> anyhow::Result<u64> {
    let full = host.path(&r.path);
    let removed = crate::tree::remove::remove(&full)
        .with_context(|| format!("deleting {}", full.display()))?;
    tracing::info!(path = %r.path, "removed by gc");
    Ok(removed.map_or(0, |m| m.bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_pinetboot_own() {
        assert_eq!(
            old_root_name(".raspi1.pinetboot-old-20260101T000000Z"),
            Some(("raspi1", "20260101T000000Z"))
        );
        assert_eq!(old_root_name("raspi1.pinetboot-old-x"), None);
        assert_eq!(old_root_name(".raspi1.pinetboot-staging"), None);
        assert_eq!(old_root_name("..pinetboot-old-x"), None);
        assert!(is_sha256(&"ab".repeat(32)));
        assert!(!is_sha256(&"AB".repeat(32)));
        assert!(!is_sha256("abc"));
    }

    #[test]
    fn an_image_in_use_is_the_digest_a_declared_client_names() {
        let sha = "ab".repeat(32);
        let yaml = format!(
            "server: {{address: 10.0.0.1, network: 10.0.0.0/24}}\n\
             images:\n  disk: {{source: /srv/x.img.xz, sha256: {sha}}}\n  dir: {{source: /srv/tree}}\n  unused: {{source: /srv/y.img, sha256: {}}}\n\
             clients:\n  a: {{serial: 0c4c21e5, image: disk}}\n  b: {{serial: 0c4c21e6, image: dir}}\n",
            "cd".repeat(32)
        );
        let v = crate::config::load_str(std::path::Path::new("t.yaml"), &yaml).unwrap();
        assert_eq!(in_use(&v), BTreeSet::from([sha]));
    }
}
