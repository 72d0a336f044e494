//! pinetboot's fenced block in the host's fstab: one bind line per client, so the mounts come
//! back at boot. The file is handled as bytes: every byte outside the fence survives, whatever
//! its encoding; a broken fence is an error naming the file and line, and nothing is written.
//! A symlinked fstab is written through to the file the link leads to ([`through`]).

use std::path::Path;

use anyhow::Context as _;

use super::{Action, Change, Ctx, Handler, diff_bytes};
use crate::host::through;
use crate::render::fence::{self, BrokenFile};

/// The fenced block in the fstab at `path`.
#[derive(Debug, Clone)]
pub struct FstabBlock {
    /// Host path of the fstab.
    pub path: String,
    /// The block's lines.
    pub lines: Vec<String>,
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
        let desired = fenced.render(&self.lines, |_| true);
        let had_block = fenced.has_block();
        Ok((found, desired, had_block))
    }

    pub(super) fn check(&self, ctx: &Ctx) -> anyhow::Result<Option<Change>> {
        let (found, desired, had_block) = self.read(ctx)?;
        let current = found.content.as_deref().unwrap_or_default();
        if desired == current {
            return Ok(None);
        }
        let action = match (had_block, self.lines.is_empty()) {
            (false, _) => Action::Create,
            (true, true) => Action::Remove,
            (true, false) => Action::Update,
        };
        let mut c = Change::new(action, "fstab block", &self.path);
        c.diff = Some(diff_bytes(current, &desired));
        c.handler = Some(Handler::DaemonReload);
        let root = ctx.host.root();
        if found.linked(root, Path::new(&self.path)) {
            c.detail = Some(format!(
                "written through the symlink to {}",
                found.host_target(root)
            ));
        }
        Ok(Some(c))
    }

    pub(super) fn apply(&self, ctx: &Ctx) -> anyhow::Result<()> {
        let (_, desired, _) = self.read(ctx)?;
        through::write(ctx.host.root(), Path::new(&self.path), &desired)
            .with_context(|| format!("writing {}", self.path))
    }
}
