//! The checks: pure functions from [`Facts`] to [`Finding`]s, in the order a person debugging a
//! Pi that does not boot would go: config and drift, dnsmasq and its ports, other DHCP configs,
//! the server address, each client's TFTP folder, NFS. One module per area.

mod client;
mod config;
mod dnsmasq;
mod network;
mod nfs;
#[cfg(test)]
mod tests;

pub use client::may;
pub use nfs::FIX_NFS_NOT_RUNNING;

use super::facts::Facts;
use super::{Finding, Severity};

/// One check: its id and what it checks, said once for every finding it may end in.
pub(super) struct Check {
    id: String,
    check: String,
}

impl Check {
    pub(super) fn new(id: impl Into<String>, check: impl Into<String>) -> Self {
        Check {
            id: id.into(),
            check: check.into(),
        }
    }

    /// Checked and fine.
    pub(super) fn ok(&self, detail: impl Into<String>) -> Finding {
        Finding::ok(self.id.clone(), self.check.clone(), detail)
    }

    /// A warning with its fix.
    pub(super) fn warning(&self, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding::warning(self.id.clone(), self.check.clone(), detail, fix)
    }

    /// A problem with its fix.
    pub(super) fn problem(&self, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding::problem(self.id.clone(), self.check.clone(), detail, fix)
    }
}

/// Every check, in report order.
pub fn all(f: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    config::config(f, &mut out);
    dnsmasq::dnsmasq(f, &mut out);
    if let Ok(valid) = &f.config {
        dnsmasq::other_configs(f, valid, &mut out);
        network::address(f, valid, &mut out);
        for c in &f.clients {
            client::client(f, c, &mut out);
        }
    }
    nfs::nfs(f, &mut out);
    out
}

/// Counts per severity: (ok, warnings, problems).
pub fn counts(findings: &[Finding]) -> (usize, usize, usize) {
    let n = |s| findings.iter().filter(|f| f.severity == s).count();
    (n(Severity::Ok), n(Severity::Warning), n(Severity::Problem))
}
