//! A shared client's own boot folder (`root: shared`): its shared root's boot files as hard
//! links (no bytes copied) and its own `cmdline.txt`, which names its hostname. It is what
//! `/tftpboot/SERIAL` is bind-mounted from. Both folders are under the shared root's base
//! folder, which is pinetboot's alone (the root is exported read-only).

use std::path::PathBuf;

use anyhow::Context as _;

use super::{Action, Change, ChangeKind, Ctx, diff, diff_bytes};
use crate::host::linkdir;

/// The name of the file a boot folder holds of its own.
pub const CMDLINE: &str = "cmdline.txt";

/// One shared client's boot folder.
#[derive(Debug, Clone)]
pub struct BootFolder {
    /// The client.
    pub client: String,
    /// Host path of the shared root's base folder.
    pub base: String,
    /// The shared root's boot folder, relative to `base` (e.g. `root/boot/firmware`).
    pub source: PathBuf,
    /// The client's folder, relative to `base` (`boot/NAME`).
    pub dest: PathBuf,
    /// Its `cmdline.txt`.
    pub cmdline: String,
}

/// What is there now.
#[derive(Debug)]
pub struct Observed {
    exists: bool,
    links: linkdir::LinkDiff,
    cmdline: Option<Vec<u8>>,
}

impl BootFolder {
    fn path(&self) -> String {
        format!("{}/{}", self.base, self.dest.display())
    }

    fn observe(&self, ctx: &Ctx) -> anyhow::Result<Option<Observed>> {
        let src = ctx
            .host
            .path(format!("{}/{}", self.base, self.source.display()));
        let dst = ctx.host.path(self.path());
        // Until the shared root is made (earlier in the same apply), there is nothing to link.
        if !src.is_dir() {
            return Ok(None);
        }
        let exists = dst.is_dir();
        let links = linkdir::diff(&src, &dst, &[CMDLINE])
            .with_context(|| format!("comparing {} with {}", dst.display(), src.display()))?;
        let cmdline = ctx
            .host
            .read(format!("{}/{CMDLINE}", self.path()))
            .with_context(|| format!("reading {}/{CMDLINE}", self.path()))?;
        Ok(Some(Observed {
            exists,
            links,
            cmdline,
        }))
    }

    /// The change from what is there (pure).
    pub(super) fn decide(&self, seen: Option<Observed>) -> Option<Change> {
        let Some(seen) = seen else {
            let mut c = Change::new(Action::Create, ChangeKind::BootFolder, self.path());
            c.detail = Some("links to the shared root's boot files, its own cmdline.txt (planned after the shared root is made)".into());
            c.diff = Some(diff("", &self.cmdline));
            return Some(c);
        };
        let cmdline_ok = seen.cmdline.as_deref() == Some(self.cmdline.as_bytes());
        if seen.exists && seen.links.is_empty() && cmdline_ok {
            return None;
        }
        let action = if seen.exists {
            Action::Update
        } else {
            Action::Create
        };
        let mut c = Change::new(action, ChangeKind::BootFolder, self.path());
        let mut what = Vec::new();
        if !seen.links.missing.is_empty() {
            what.push(format!("{} to link", seen.links.missing.len()));
        }
        if !seen.links.extra.is_empty() {
            what.push(format!("{} to remove", seen.links.extra.len()));
        }
        if !cmdline_ok {
            what.push("cmdline.txt".into());
            c.diff = Some(match &seen.cmdline {
                Some(old) => diff_bytes(old, self.cmdline.as_bytes()),
                None => diff("", &self.cmdline),
            });
        }
        c.detail = Some(what.join(", "));
        Some(c)
    }

    pub(super) fn check(&self, ctx: &Ctx) -> anyhow::Result<Option<Change>> {
        Ok(self.decide(self.observe(ctx)?))
    }

    pub(super) fn apply(&self, ctx: &Ctx) -> anyhow::Result<()> {
        let src = ctx
            .host
            .path(format!("{}/{}", self.base, self.source.display()));
        let dst = ctx.host.path(self.path());
        linkdir::sync(&src, &dst, &[CMDLINE])
            .with_context(|| format!("linking {} from {}", dst.display(), src.display()))?;
        crate::host::atomic::write_host_file(&dst.join(CMDLINE), self.cmdline.as_bytes(), 0o644)
            .with_context(|| format!("writing {}/{CMDLINE}", dst.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder() -> BootFolder {
        BootFolder {
            client: "desk01".into(),
            base: "/nfs/.shared/lite-0123456789ab".into(),
            source: "root/boot/firmware".into(),
            dest: "boot/desk01".into(),
            cmdline: "root=/dev/nfs systemd.hostname=desk01\n".into(),
        }
    }

    #[test]
    fn a_boot_folder_is_made_then_kept_in_step() {
        let f = folder();
        let c = f.decide(None).unwrap();
        assert_eq!(
            (c.action, c.kind, c.path.as_str()),
            (
                Action::Create,
                ChangeKind::BootFolder,
                "/nfs/.shared/lite-0123456789ab/boot/desk01"
            )
        );
        let same = Observed {
            exists: true,
            links: linkdir::LinkDiff::default(),
            cmdline: Some(f.cmdline.clone().into_bytes()),
        };
        assert!(f.decide(Some(same)).is_none());
        let drifted = Observed {
            exists: true,
            links: linkdir::LinkDiff {
                missing: vec!["start4.elf".into()],
                extra: vec![],
            },
            cmdline: Some(b"root=/dev/nfs systemd.hostname=other\n".to_vec()),
        };
        let c = f.decide(Some(drifted)).unwrap();
        assert_eq!(c.action, Action::Update);
        assert_eq!(c.detail.as_deref(), Some("1 to link, cmdline.txt"));
        assert!(
            c.diff
                .unwrap()
                .contains("+root=/dev/nfs systemd.hostname=desk01")
        );
    }
}
