//! The fenced block earlier versions of pinetboot wrote into the host's fstab (one bind line
//! per client), which is now removed: mount(8) resolves the paths it is given, and those paths
//! lay inside untrusted client roots. The boot-time mounts are `pinetboot mount`'s
//! ([`crate::bootmount`]). The file is handled as bytes: every byte outside the fence survives,
//! whatever its encoding; a broken fence is an error naming the file and line, and nothing is
//! written. A symlinked fstab is written through to the file the link leads to ([`through`]).

use std::path::Path;

use anyhow::Context as _;

use super::{Action, Change, ChangeKind, Ctx, Handler, diff_bytes};
use crate::host::through;
use crate::render::fence::{self, BrokenFile};

/// The block an earlier version left in the fstab at `path`, to remove.
#[derive(Debug, Clone)]
pub struct FstabBlock {
    /// Host path of the fstab.
    pub path: String,
}

impl FstabBlock {
    /// The file as it is, and as it should be; an error when its fence is broken.
    fn read(&self, ctx: &Ctx) -> anyhow::Result<(through::Found, Vec<u8>, bool)> {
        let found = through::read(ctx.host.root(), Path::new(&self.path))
            .with_context(|| format!("reading {}", self.path))?;
        let current = found.content.as_deref().unwrap_or_default();
        let fenced = fence::parse(current).map_err(|broken| BrokenFile {
            path: self.path.clone(),
            broken,
        })?;
        let desired = fenced.render(&[], |_| true);
        let had_block = fenced.has_block();
        Ok((found, desired, had_block))
    }

    pub(super) fn check(&self, ctx: &Ctx) -> anyhow::Result<Option<Change>> {
        let (found, desired, had_block) = self.read(ctx)?;
        Ok(self.decide(ctx.host.root(), &found, &desired, had_block))
    }

    /// The change from the file as found (through its links, under `root`) and as it should
    /// be (pure).
    fn decide(
        &self,
        root: &Path,
        found: &through::Found,
        desired: &[u8],
        had_block: bool,
    ) -> Option<Change> {
        let current = found.content.as_deref().unwrap_or_default();
        if desired == current {
            return None;
        }
        let action = if had_block {
            Action::Remove
        } else {
            Action::Update
        };
        let mut c = Change::new(action, ChangeKind::FstabBlock, &self.path);
        c.diff = Some(diff_bytes(current, desired));
        c.handler = Some(Handler::DaemonReload);
        if found.linked(root, Path::new(&self.path)) {
            c.detail = Some(format!(
                "written through the symlink to {}",
                found.host_target(root)
            ));
        }
        Some(c)
    }

    pub(super) fn apply(&self, ctx: &Ctx) -> anyhow::Result<()> {
        let (_, desired, _) = self.read(ctx)?;
        through::write(ctx.host.root(), Path::new(&self.path), &desired)
            .with_context(|| format!("writing {}", self.path))
    }
}
