//! A client's root tree, provisioned once from its image: copied into a staging folder beside
//! it, then renamed into place. Afterwards it belongs to the client and is never overwritten
//! or deleted by `apply` (only `pinetboot purge NAME --yes` deletes it).

use std::path::PathBuf;

use anyhow::Context as _;

use super::{Action, Change, ChangeKind, Ctx};

/// A client root that must exist.
#[derive(Debug, Clone)]
pub struct ClientRoot {
    /// The client.
    pub client: String,
    /// Host path of the root (`/nfs/NAME`).
    pub path: String,
    /// The image's name, for the plan.
    pub image: String,
    /// Host path of the directory tree it is copied from.
    pub source: String,
    /// The source is a disk image not unpacked into the store yet: what goes inside the root
    /// is planned once it is (`engine::apply` plans again after unpacking images).
    pub pending: bool,
}

impl ClientRoot {
    /// The staging folder a copy is made in (next to the root, so the rename is atomic).
    pub fn staging(&self) -> String {
        let p = PathBuf::from(&self.path);
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        p.with_file_name(format!(".{name}.pinetboot-staging"))
            .to_string_lossy()
            .into_owned()
    }

    pub(super) fn check(&self, ctx: &Ctx) -> anyhow::Result<Option<Change>> {
        Ok(self.decide(ctx.host.exists(&self.path)?))
    }

    /// The change from whether anything is at the root's path (pure): once there, the root
    /// is the client's.
    fn decide(&self, exists: bool) -> Option<Change> {
        if exists {
            return None;
        }
        let mut detail = format!("copy of image {} ({})", self.image, self.source);
        if self.pending {
            detail.push_str("; files inside are planned after the image is unpacked");
        }
        Some(Change::new(Action::Create, ChangeKind::ClientRoot, &self.path).detail(detail))
    }

    pub(super) fn apply(&self, ctx: &Ctx) -> anyhow::Result<()> {
        self.apply_noted(ctx).map(|_| ())
    }

    /// Applies, and says what the copy did (for apply's output line).
    pub(super) fn apply_noted(&self, ctx: &Ctx) -> anyhow::Result<Option<String>> {
        let root = ctx.host.path(&self.path);
        if ctx.host.exists(&self.path)? {
            return Ok(None);
        }
        let staging = ctx.host.path(self.staging());
        // A staging folder left by an interrupted apply is ours and incomplete: start over
        // (the plan shows it as a leftover, removed before this; this is for a race). Its
        // content came from an image: no symlink is followed, no mount entered.
        crate::tree::remove::remove(&staging)
            .with_context(|| format!("removing the interrupted copy {}", staging.display()))?;
        let source = ctx.host.path(&self.source);
        let stats = match crate::tree::copy_tree(&source, &staging) {
            Ok(stats) => stats,
            Err(e) => {
                // A failed copy leaves nothing behind (a killed one is a leftover the next
                // plan shows).
                if let Err(e2) = crate::tree::remove::remove(&staging) {
                    tracing::warn!(
                        "cannot remove the failed copy {}: {e2:#}",
                        staging.display()
                    );
                }
                return Err(e).with_context(|| {
                    format!("copying image {} into {}", self.image, staging.display())
                });
            }
        };
        tracing::info!(
            client = %self.client,
            files = stats.files,
            bytes = stats.bytes,
            reflinked = stats.reflinked,
            "copied client root"
        );
        // The copy's data reaches the disk before the root appears under its name, so a
        // power cut never leaves a root of empty files (one syncfs, not one fsync per file).
        crate::host::ops::sync_filesystem_of(&staging)
            .with_context(|| format!("syncing {}", staging.display()))?;
        if crate::host::atomic::crash_point("before-root-rename") {
            std::process::abort();
        }
        crate::host::atomic::rename_noreplace_synced(&staging, &root)
            .with_context(|| format!("moving {} into place", root.display()))?;
        Ok(Some(format!(
            "copied from image {}: {} files, {}, {} reflinked",
            self.image,
            stats.files,
            crate::progress::human_bytes(stats.bytes),
            stats.reflinked
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_is_made_once_and_a_pending_one_says_its_files_wait() {
        let mut r = ClientRoot {
            client: "pi".into(),
            path: "/nfs/pi".into(),
            image: "lite".into(),
            source: "/srv/lite".into(),
            pending: false,
        };
        assert!(r.decide(true).is_none());
        assert_eq!(
            r.decide(false).unwrap().detail.as_deref(),
            Some("copy of image lite (/srv/lite)")
        );
        r.pending = true;
        assert!(
            r.decide(false)
                .unwrap()
                .detail
                .unwrap()
                .ends_with("planned after the image is unpacked")
        );
        assert_eq!(r.staging(), "/nfs/.pi.pinetboot-staging");
    }
}
