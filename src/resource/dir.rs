//! Host folders: the NFS folder, the TFTP root and one TFTP folder per serial. Never
//! world-writable (the recipe's `chmod 777 /tftpboot` is a bug we do not copy).

use anyhow::Context as _;

use super::{Action, Change, ChangeKind, Ctx};
use crate::host::{Kind, ops};

/// A host folder that must exist with `mode`.
#[derive(Debug, Clone)]
pub struct Dir {
    /// Host path.
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// Whether an existing folder's mode is corrected (not for mount points): permission bits
    /// beyond `mode` are taken away, a stricter mode an admin chose is kept.
    pub enforce_mode: bool,
    /// The client it serves, if any.
    pub client: Option<String>,
}

impl Dir {
    /// What is at the path now.
    fn observe(&self, ctx: &Ctx) -> anyhow::Result<Kind> {
        Ok(ctx.host.kind(&self.path)?)
    }

    /// The change from what is there (pure).
    fn decide(&self, seen: Kind) -> anyhow::Result<Option<Change>> {
        Ok(match seen {
            Kind::Missing => Some(
                Change::new(Action::Create, ChangeKind::Directory, &self.path)
                    .detail(format!("mode {:04o}", self.mode)),
            ),
            Kind::Dir(m) if m & !self.mode == 0 || !self.enforce_mode => None,
            Kind::Dir(m) => Some(
                Change::new(Action::Update, ChangeKind::Directory, &self.path)
                    .detail(format!("mode {m:04o} → {:04o}", m & self.mode)),
            ),
            Kind::File | Kind::Other => anyhow::bail!(
                "{} exists and is not a folder; move it away so pinetboot can create the folder",
                self.path
            ),
        })
    }

    pub(super) fn check(&self, ctx: &Ctx) -> anyhow::Result<Option<Change>> {
        self.decide(self.observe(ctx)?)
    }

    pub(super) fn apply(&self, ctx: &Ctx) -> anyhow::Result<()> {
        let full = ctx.host.path(&self.path);
        if ctx.host.kind(&self.path)? == Kind::Missing {
            ops::create_dirs(&full, self.mode)
                .with_context(|| format!("creating {}", full.display()))?;
        }
        if !self.enforce_mode {
            return Ok(());
        }
        let Kind::Dir(now) = ctx.host.kind(&self.path)? else {
            anyhow::bail!("{} is not a folder", full.display());
        };
        ops::set_mode(&full, now & self.mode)
            .with_context(|| format!("setting the mode of {}", full.display()))
    }
}

/// A host folder pinetboot made for a client that is gone; removed only when empty.
#[derive(Debug, Clone)]
pub struct RemoveDir {
    /// Host path.
    pub path: String,
    /// The client it served.
    pub client: String,
}

impl RemoveDir {
    /// The change from what is at the path (pure): a folder there goes.
    fn decide(&self, seen: Kind) -> Option<Change> {
        matches!(seen, Kind::Dir(_)).then(|| {
            Change::new(Action::Remove, ChangeKind::Directory, &self.path)
                .detail(format!("client {} is no longer declared", self.client))
        })
    }

    pub(super) fn check(&self, ctx: &Ctx) -> anyhow::Result<Option<Change>> {
        Ok(self.decide(ctx.host.kind(&self.path)?))
    }

    pub(super) fn apply(&self, ctx: &Ctx) -> anyhow::Result<()> {
        let full = ctx.host.path(&self.path);
        ops::remove_empty_dir(&full).with_context(|| {
            format!(
                "removing {} (pinetboot removes it only when empty)",
                full.display()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Action;

    fn dir(enforce_mode: bool) -> Dir {
        Dir {
            path: "/nfs".into(),
            mode: 0o700,
            enforce_mode,
            client: None,
        }
    }

    #[test]
    fn a_folder_is_made_and_only_loosened_modes_are_tightened() {
        let c = dir(true).decide(Kind::Missing).unwrap().unwrap();
        assert_eq!(
            (c.action, c.detail.as_deref()),
            (Action::Create, Some("mode 0700"))
        );
        assert!(dir(true).decide(Kind::Dir(0o700)).unwrap().is_none());
        // Stricter than asked: the admin's choice stays.
        assert!(dir(true).decide(Kind::Dir(0o500)).unwrap().is_none());
        let c = dir(true).decide(Kind::Dir(0o755)).unwrap().unwrap();
        assert_eq!(c.detail.as_deref(), Some("mode 0755 → 0700"));
        // A mount point's mode is not ours.
        assert!(dir(false).decide(Kind::Dir(0o755)).unwrap().is_none());
        assert!(dir(true).decide(Kind::File).is_err());
    }

    #[test]
    fn only_a_folder_there_is_removed() {
        let r = RemoveDir {
            path: "/tftpboot/x".into(),
            client: "gone".into(),
        };
        assert_eq!(r.decide(Kind::Dir(0o755)).unwrap().action, Action::Remove);
        assert!(r.decide(Kind::Missing).is_none());
        assert!(r.decide(Kind::File).is_none());
    }
}
