//! Whole host files pinetboot owns (the dnsmasq and exports drop-ins), written atomically.
//! A file that must pass its tool (dnsmasq) is checked before it replaces the old one.

use anyhow::Context as _;

use super::{Action, Change, ChangeKind, Ctx, Handler, diff, diff_bytes};

/// A host file whose whole content pinetboot owns.
#[derive(Debug, Clone)]
pub struct HostFile {
    /// Host path.
    pub path: String,
    /// The content.
    pub content: String,
    /// Fired when the file changes.
    pub handler: Option<Handler>,
}

impl HostFile {
    pub(super) fn check(&self, ctx: &Ctx) -> anyhow::Result<Option<Change>> {
        let current = ctx
            .host
            .read(&self.path)
            .with_context(|| format!("reading {}", self.path))?;
        let mut change = match current {
            None => Change::new(Action::Create, ChangeKind::File, &self.path),
            Some(bytes) if bytes == self.content.as_bytes() => return Ok(None),
            Some(bytes) => {
                let mut c = Change::new(Action::Update, ChangeKind::File, &self.path);
                c.diff = Some(diff_bytes(&bytes, self.content.as_bytes()));
                c
            }
        };
        if change.action == Action::Create {
            change.diff = Some(diff("", &self.content));
        }
        change.handler = self.handler;
        Ok(Some(change))
    }

    pub(super) fn apply(&self, ctx: &Ctx) -> anyhow::Result<()> {
        if self.handler == Some(Handler::RestartDnsmasq) {
            crate::handlers::dnsmasq_test(&self.path, &self.content, &ctx.scratch)?;
        }
        let full = ctx.host.path(&self.path);
        if let Some(parent) = full.parent() {
            crate::host::ops::create_dirs(parent, 0o777)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        crate::host::atomic::write_host_file(&full, self.content.as_bytes(), 0o644)
            .with_context(|| format!("writing {}", full.display()))
    }
}
