//! What a killed apply leaves behind, under names pinetboot gives its own work in folders it
//! owns: a client root's staging folder (`<nfs>/.NAME.pinetboot-staging`, a clone cut short),
//! an image's staging folder (`<state>/images/.SHA.staging`, an unpack cut short), and a
//! download no apply will use (`<state>/images/SHA.download` or `SHA.image` of an image no
//! client of the config uses, or one already unpacked).
//!
//! They are found by those exact names (nothing else in those folders is looked at), shown in
//! the plan with their apparent size, and removed by apply before any image is fetched (they
//! can be tens of gigabytes), with [`crate::tree::remove`]: no symlink is followed and no
//! mount entered. One with a mount inside is left alone and said in the plan's warnings.
//!
//! Every staging folder found is a leftover, also one of a client or image still in the
//! config: apply holds the exclusive lock, so no running apply owns it, and the clone or unpack
//! it belonged to starts over from scratch anyway. `plan` may run while an apply works (it
//! waits for the lock only when the lock file exists): it only shows. A root moved aside by
//! `reprovision` (`.NAME.pinetboot-old-TIME`) is client data: never a leftover.

use std::collections::BTreeSet;

use anyhow::Context as _;

use super::{Action, Change, ChangeKind, Ctx};
use crate::host::Host;
use crate::image::store;

/// What a leftover is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// The staging folder of a clone of this client's root.
    Clone {
        /// The client.
        client: String,
        /// Whether the client is still in the config.
        declared: bool,
    },
    /// The staging folder of an unpack of the image with this sha256.
    Unpack {
        /// sha256 of the image.
        sha256: String,
    },
    /// A download (partial, or complete but not unpacked) of the image with this sha256.
    Download {
        /// sha256 of the image.
        sha256: String,
        /// Whether the image is in the store already (else: no client's image any more).
        unpacked: bool,
    },
}

/// A leftover to remove.
#[derive(Debug, Clone)]
pub struct Leftover {
    /// Host path.
    pub path: String,
    /// What it is.
    pub what: What,
    /// Its apparent size when observed (bytes of file data).
    pub bytes: u64,
}

impl Leftover {
    fn kind(&self) -> ChangeKind {
        match self.what {
            What::Clone { .. } | What::Unpack { .. } => ChangeKind::StagingFolder,
            What::Download { .. } => ChangeKind::Download,
        }
    }

    fn why(&self) -> String {
        match &self.what {
            What::Clone {
                client,
                declared: true,
            } => format!("an interrupted clone of client {client}'s root; the clone starts over"),
            What::Clone {
                client,
                declared: false,
            } => format!(
                "an interrupted clone of client {client}'s root; {client} is no longer declared"
            ),
            What::Unpack { sha256 } => {
                format!(
                    "an interrupted unpack of image sha256 {}…",
                    &sha256[..12.min(sha256.len())]
                )
            }
            What::Download {
                sha256,
                unpacked: true,
            } => format!(
                "a download of image sha256 {}…, which is unpacked already",
                &sha256[..12.min(sha256.len())]
            ),
            What::Download {
                sha256,
                unpacked: false,
            } => format!(
                "a download of image sha256 {}…, which no client uses any more",
                &sha256[..12.min(sha256.len())]
            ),
        }
    }

    pub(super) fn check(&self, ctx: &Ctx) -> anyhow::Result<Option<Change>> {
        Ok(self.decide(ctx.host.exists(&self.path)?))
    }

    /// The change from whether it is still there (pure).
    fn decide(&self, exists: bool) -> Option<Change> {
        if !exists {
            return None;
        }
        let mut c = Change::new(Action::Remove, self.kind(), &self.path).detail(format!(
            "{}; {}",
            self.why(),
            crate::progress::human_bytes(self.bytes)
        ));
        c.bytes = Some(self.bytes);
        Some(c)
    }

    pub(super) fn apply(&self, ctx: &Ctx) -> anyhow::Result<()> {
        let full = ctx.host.path(&self.path);
        let removed = crate::tree::remove::remove(&full)
            .with_context(|| format!("removing the leftover {}", self.path))?;
        if let Some(m) = removed {
            tracing::info!(path = %self.path, bytes = m.bytes, entries = m.entries, "removed a leftover");
        }
        Ok(())
    }
}

/// What [`find`] found: leftovers to remove, and why others are left alone.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// To remove.
    pub leftovers: Vec<Leftover>,
    /// Leftovers pinetboot does not remove (a mount inside), as plan warnings.
    pub refused: Vec<String>,
}

/// The client name in `.NAME.pinetboot-staging`.
fn clone_staging_name(file: &str) -> Option<&str> {
    let name = file.strip_prefix('.')?.strip_suffix(".pinetboot-staging")?;
    (!name.is_empty()).then_some(name)
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The sha256 in `.SHA.staging`.
fn unpack_staging_name(file: &str) -> Option<&str> {
    let sha = file.strip_prefix('.')?.strip_suffix(".staging")?;
    is_sha256(sha).then_some(sha)
}

/// The sha256 in `SHA.download` / `SHA.image`.
fn download_name(file: &str) -> Option<&str> {
    let sha = file
        .strip_suffix(".download")
        .or_else(|| file.strip_suffix(".image"))?;
    is_sha256(sha).then_some(sha)
}

/// Names in a host folder (none when it does not exist or is not a folder).
fn names(host: &Host, dir: &str) -> anyhow::Result<Vec<String>> {
    host.names(dir)
        .with_context(|| format!("reading {}", host.path(dir).display()))
}

/// Finds the leftovers in the client-root folder `nfs` and the image store of `state`.
/// `declared`: the clients in the config; `resumed`: sha256 of the images the next apply
/// fetches (their downloads are resumed, not leftovers).
pub fn find(
    host: &Host,
    nfs: &str,
    state: &str,
    declared: &BTreeSet<String>,
    resumed: &BTreeSet<String>,
) -> anyhow::Result<Found> {
    let mut candidates = Vec::new();
    let nfs = nfs.trim_end_matches('/');
    for n in names(host, nfs)? {
        if let Some(client) = clone_staging_name(&n) {
            candidates.push((
                format!("{nfs}/{n}"),
                What::Clone {
                    client: client.to_owned(),
                    declared: declared.contains(client),
                },
            ));
        }
    }
    let images = store::images_dir(state);
    for n in names(host, &images)? {
        if let Some(sha) = unpack_staging_name(&n) {
            candidates.push((
                format!("{images}/{n}"),
                What::Unpack {
                    sha256: sha.to_owned(),
                },
            ));
        } else if let Some(sha) = download_name(&n)
            && !resumed.contains(sha)
        {
            candidates.push((
                format!("{images}/{n}"),
                What::Download {
                    sha256: sha.to_owned(),
                    unpacked: store::is_present(host, state, sha),
                },
            ));
        }
    }
    let mut found = Found::default();
    for (path, what) in candidates {
        let Some(m) = crate::tree::remove::measure(&host.path(&path))
            .with_context(|| format!("measuring the leftover {path}"))?
        else {
            continue;
        };
        if let Some(mount) = m.mounts.first() {
            let at = if mount.as_os_str().is_empty() {
                path.clone()
            } else {
                format!("{path}/{}", mount.display())
            };
            found.refused.push(format!(
                "{path} is left from an interrupted apply but {at} is a mount point: pinetboot never removes anything through a mount; unmount it, then apply again"
            ));
            continue;
        }
        found.leftovers.push(Leftover {
            path,
            what,
            bytes: m.bytes,
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_pinetboot_gives() {
        assert_eq!(
            clone_staging_name(".raspi1.pinetboot-staging"),
            Some("raspi1")
        );
        assert_eq!(clone_staging_name(".pinetboot-staging"), None);
        assert_eq!(clone_staging_name("raspi1.pinetboot-staging"), None);
        assert_eq!(
            clone_staging_name(".raspi1.pinetboot-old-20260101T000000Z"),
            None
        );
        let sha = "0123456789abcdef".repeat(4);
        assert_eq!(unpack_staging_name(&format!(".{sha}.staging")), Some(&*sha));
        assert_eq!(unpack_staging_name(&format!("{sha}.staging")), None);
        assert_eq!(unpack_staging_name(".abc.staging"), None);
        assert_eq!(download_name(&format!("{sha}.download")), Some(&*sha));
        assert_eq!(download_name(&format!("{sha}.image")), Some(&*sha));
        assert_eq!(download_name(&sha), None);
        assert_eq!(
            download_name(&format!("{}.download", sha.to_uppercase())),
            None
        );
    }

    #[test]
    fn found_by_name_and_measured() {
        let t = tempfile::tempdir().unwrap();
        let host = Host::new(t.path()).unwrap();
        let sha_a = "a".repeat(64);
        let sha_b = "b".repeat(64);
        let sha_c = "c".repeat(64);
        let nfs = t.path().join("nfs");
        let dir = |p: std::path::PathBuf| crate::host::ops::create_dirs(&p, 0o755).unwrap();
        let file = |p: std::path::PathBuf, n: usize| {
            crate::host::atomic::write_host_file(&p, &vec![0u8; n], 0o644).unwrap();
        };
        dir(nfs.join(".gone.pinetboot-staging/usr"));
        file(nfs.join(".gone.pinetboot-staging/usr/x"), 300);
        dir(nfs.join(".raspi1.pinetboot-old-20260101T000000Z"));
        dir(nfs.join("raspi1"));
        let images = t.path().join("var/lib/pinetboot/images");
        dir(images.join(format!(".{sha_a}.staging/root")));
        dir(images.join(&sha_c));
        file(images.join(format!("{sha_b}.download")), 70);
        file(images.join(format!("{sha_c}.download")), 7);
        let declared = BTreeSet::from(["raspi1".to_owned()]);
        let resumed = BTreeSet::from([sha_c]);
        let found = find(&host, "/nfs/", "/var/lib/pinetboot", &declared, &resumed).unwrap();
        assert!(found.refused.is_empty());
        let got: Vec<(String, u64)> = found
            .leftovers
            .iter()
            .map(|l| (l.path.clone(), l.bytes))
            .collect();
        assert_eq!(
            got,
            vec![
                ("/nfs/.gone.pinetboot-staging".to_owned(), 300),
                (format!("/var/lib/pinetboot/images/.{sha_a}.staging"), 0),
                (format!("/var/lib/pinetboot/images/{sha_b}.download"), 70),
            ]
        );
        assert_eq!(
            found.leftovers[0].what,
            What::Clone {
                client: "gone".into(),
                declared: false
            }
        );
    }
}
