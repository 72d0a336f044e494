//! The bind mount of a client's boot folder onto `/tftpboot/SERIAL`. The source folder is
//! opened confined inside the client root and mounted by descriptor, so a planted symlink can
//! never turn it into a mount of some other host folder.

use anyhow::Context as _;

use super::{Action, Change, ChangeKind, Ctx, host_join};
use crate::host::mount;

/// A client's bind mount.
#[derive(Debug, Clone)]
pub struct Bind {
    /// The client.
    pub client: String,
    /// Host path of the client root.
    pub root: String,
    /// The boot folder, relative to the root.
    pub boot_dir: std::path::PathBuf,
    /// Host path of the TFTP folder.
    pub target: String,
}

impl Bind {
    fn source(&self) -> String {
        host_join(&self.root, &self.boot_dir)
    }

    /// Whether the target is a mount of exactly the source folder, with the safe options.
    fn mounted_right(&self, ctx: &Ctx) -> anyhow::Result<Option<bool>> {
        let Some(m) = ctx.mount_at(&self.target) else {
            return Ok(None);
        };
        if !m.has_options(mount::BIND_OPTIONS) {
            return Ok(Some(false));
        }
        let Ok((tree, false)) = ctx.client_view(&self.client) else {
            return Ok(Some(false));
        };
        let Some(fd) = tree.open_dir(&self.boot_dir)? else {
            return Ok(Some(false));
        };
        let src = crate::host::ops::dev_ino_of(&fd)?;
        let dst = ctx.host.dev_ino(&self.target)?;
        Ok(Some(dst == Some(src)))
    }

    pub(super) fn check(&self, ctx: &Ctx) -> anyhow::Result<Option<Change>> {
        Ok(self.decide(self.mounted_right(ctx)?))
    }

    /// The change from whether the target is mounted, and right (pure).
    fn decide(&self, mounted_right: Option<bool>) -> Option<Change> {
        let change = |a| Change::new(a, ChangeKind::BindMount, &self.target);
        match mounted_right {
            Some(true) => None,
            Some(false) => Some(change(Action::Update).detail(format!(
                "mounted from elsewhere or without {}; remount from {}",
                mount::BIND_OPTIONS.join(","),
                self.source()
            ))),
            None => {
                Some(change(Action::Create).detail(format!("from {} (not mounted)", self.source())))
            }
        }
    }

    pub(super) fn apply(&self, ctx: &Ctx) -> anyhow::Result<()> {
        let target = ctx.host.path(&self.target);
        mount::unbind_all(&target).with_context(|| format!("unmounting {}", target.display()))?;
        let tree = ctx.client_root(&self.client)?;
        let fd = tree
            .open_dir(&self.boot_dir)?
            .with_context(|| format!("{} does not exist", self.source()))?;
        mount::bind(&fd, &target).with_context(|| {
            format!(
                "bind-mounting {} onto {} (needs root; in tests, a private mount namespace)",
                self.source(),
                target.display()
            )
        })
    }
}

/// The bind mount of a client that is no longer declared.
#[derive(Debug, Clone)]
pub struct Unbind {
    /// The client.
    pub client: String,
    /// Host path of the TFTP folder.
    pub target: String,
}

impl Unbind {
    pub(super) fn check(&self, ctx: &Ctx) -> anyhow::Result<Option<Change>> {
        Ok(self.decide(ctx.mount_at(&self.target).is_some()))
    }

    /// The change from whether the target is mounted (pure).
    fn decide(&self, mounted: bool) -> Option<Change> {
        mounted.then(|| {
            Change::new(Action::Remove, ChangeKind::BindMount, &self.target)
                .detail(format!("client {} is no longer declared", self.client))
        })
    }

    pub(super) fn apply(&self, ctx: &Ctx) -> anyhow::Result<()> {
        let target = ctx.host.path(&self.target);
        // Several stacked mounts (e.g. an earlier crash) all go.
        mount::unbind_all(&target).with_context(|| format!("unmounting {}", target.display()))?;
        Ok(())
    }
}

/// A served client's bind mount whose recorded boot folder is no longer a real folder inside
/// the client root (the Pi replaced it with a symlink, or removed it). The mount goes, even
/// while the client is in conflict: pinetboot never keeps serving a folder it would refuse
/// to mount. (Its `client()` is none, so a conflict never drops it.)
#[derive(Debug, Clone)]
pub struct BindGuard {
    /// The client.
    pub client: String,
    /// Host path of the client root.
    pub root: String,
    /// The boot folder, relative to the root, as recorded when it was mounted.
    pub boot_dir: std::path::PathBuf,
    /// Host path of the TFTP folder.
    pub target: String,
}

impl BindGuard {
    /// Why the source is no longer mountable, or `None` while it is a real folder.
    fn refused(&self, ctx: &Ctx) -> Option<String> {
        use crate::bootmount::Unmountable::{Missing, NotAFolder};
        match crate::bootmount::boot_folder(&ctx.host, &self.root, &self.boot_dir) {
            Ok(_) => None,
            Err(Missing(what) | NotAFolder(what)) => Some(what),
        }
    }

    pub(super) fn check(&self, ctx: &Ctx) -> anyhow::Result<Option<Change>> {
        if ctx.mount_at(&self.target).is_none() {
            return Ok(None);
        }
        Ok(self.decide(self.refused(ctx)))
    }

    /// The change for a mounted target from why its boot folder is refused, if it is (pure).
    fn decide(&self, refused: Option<String>) -> Option<Change> {
        refused.map(|why| {
            Change::new(Action::Remove, ChangeKind::BindMount, &self.target).detail(format!(
                "client {}: its boot folder is no longer a real folder ({why}); not served until it is",
                self.client
            ))
        })
    }

    pub(super) fn apply(&self, ctx: &Ctx) -> anyhow::Result<()> {
        Unbind {
            client: self.client.clone(),
            target: self.target.clone(),
        }
        .apply(ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_are_made_remade_removed_and_guarded() {
        let b = Bind {
            client: "pi".into(),
            root: "/nfs/pi".into(),
            boot_dir: "boot/firmware".into(),
            target: "/tftpboot/10000001".into(),
        };
        assert!(b.decide(Some(true)).is_none());
        assert_eq!(
            b.decide(None).unwrap().detail.as_deref(),
            Some("from /nfs/pi/boot/firmware (not mounted)")
        );
        let c = b.decide(Some(false)).unwrap();
        assert_eq!(c.action, Action::Update);
        assert!(
            c.detail
                .unwrap()
                .ends_with("remount from /nfs/pi/boot/firmware")
        );
        let u = Unbind {
            client: "gone".into(),
            target: "/tftpboot/x".into(),
        };
        assert!(u.decide(false).is_none());
        assert_eq!(u.decide(true).unwrap().action, Action::Remove);
        let g = BindGuard {
            client: "pi".into(),
            root: "/nfs/pi".into(),
            boot_dir: "boot/firmware".into(),
            target: "/tftpboot/10000001".into(),
        };
        assert!(g.decide(None).is_none());
        assert!(
            g.decide(Some("a symlink".into()))
                .unwrap()
                .detail
                .unwrap()
                .contains("(a symlink)")
        );
    }
}
