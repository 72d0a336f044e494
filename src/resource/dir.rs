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
    pub(super) fn check(&self, ctx: &Ctx) -> anyhow::Result<Option<Change>> {
        Ok(match ctx.host.kind(&self.path)? {
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
    pub(super) fn check(&self, ctx: &Ctx) -> anyhow::Result<Option<Change>> {
        Ok(match ctx.host.kind(&self.path)? {
            Kind::Dir(_) => Some(
                Change::new(Action::Remove, ChangeKind::Directory, &self.path)
                    .detail(format!("client {} is no longer declared", self.client)),
            ),
            _ => None,
        })
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
