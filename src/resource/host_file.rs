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
    /// The file's bytes now (`None`: missing).
    fn observe(&self, ctx: &Ctx) -> anyhow::Result<Option<Vec<u8>>> {
        ctx.host
            .read(&self.path)
            .with_context(|| format!("reading {}", self.path))
    }

    /// The change from the file's bytes now (pure).
    pub(super) fn decide(&self, current: Option<Vec<u8>>) -> Option<Change> {
        let mut change = match current {
            None => Change::new(Action::Create, ChangeKind::File, &self.path),
            Some(bytes) if bytes == self.content.as_bytes() => return None,
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
        Some(change)
    }

    pub(super) fn check(&self, ctx: &Ctx) -> anyhow::Result<Option<Change>> {
        Ok(self.decide(self.observe(ctx)?))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_file_is_created_or_replaced_with_a_diff_and_fires_its_handler() {
        let f = HostFile {
            path: "/etc/exports.d/pinetboot.exports".into(),
            content: "/nfs/a 10.0.0.0/24(rw)\n".into(),
            handler: Some(Handler::ReloadExports),
        };
        let c = f.decide(None).unwrap();
        assert_eq!(
            (c.action, c.handler),
            (Action::Create, Some(Handler::ReloadExports))
        );
        assert!(c.diff.unwrap().contains("+/nfs/a 10.0.0.0/24(rw)"));
        assert!(f.decide(Some(f.content.clone().into_bytes())).is_none());
        let c = f.decide(Some(b"/nfs/old\n".to_vec())).unwrap();
        assert_eq!(c.action, Action::Update);
        assert!(c.diff.unwrap().contains("-/nfs/old"));
    }
}
