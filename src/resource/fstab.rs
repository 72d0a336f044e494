//! pinetboot's fenced block in the host's fstab: one bind line per client, so the mounts come
//! back at boot. Bytes outside the fence never change.

use anyhow::Context as _;

use super::{Action, Change, Ctx, Handler, diff};
use crate::render::fence;

/// The fenced block in the fstab at `path`.
#[derive(Debug, Clone)]
pub struct FstabBlock {
    /// Host path of the fstab.
    pub path: String,
    /// The block's lines.
    pub lines: Vec<String>,
}

impl FstabBlock {
    fn desired(&self, current: &str) -> String {
        fence::splice(current, &self.lines)
    }

    pub(super) fn check(&self, ctx: &Ctx) -> anyhow::Result<Option<Change>> {
        let current = ctx
            .host
            .read(&self.path)
            .with_context(|| format!("reading {}", self.path))?;
        let text = current
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        let desired = self.desired(&text);
        if desired == text {
            return Ok(None);
        }
        let action = match fence::extract(&text) {
            None => Action::Create,
            Some(_) if self.lines.is_empty() => Action::Remove,
            Some(_) => Action::Update,
        };
        let mut c = Change::new(action, "fstab block", &self.path);
        c.diff = Some(diff(&text, &desired));
        c.handler = Some(Handler::DaemonReload);
        Ok(Some(c))
    }

    pub(super) fn apply(&self, ctx: &Ctx) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let full = ctx.host.path(&self.path);
        let current = ctx.host.read(&self.path)?;
        let text = current
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        let mode = std::fs::metadata(&full)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o644);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)?;
        }
        crate::host::atomic::write_host_file(&full, self.desired(&text).as_bytes(), mode)
            .with_context(|| format!("writing {}", full.display()))
    }
}
