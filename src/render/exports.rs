//! The NFS exports drop-in: one line per client root, scoped to the boot network or the
//! client's own address, never to the world.

use crate::config::Valid;

/// Renders `/etc/exports.d/pinetboot.exports`.
pub fn render(valid: &Valid) -> String {
    let mut out = String::from(super::HEADER);
    out.push_str("# Client roots for Raspberry Pi network boot (exports(5)).\n");
    let options = valid.nfs_options.join(",");
    for (name, client) in &valid.clients {
        let who = client
            .address
            .map(|a| a.to_string())
            .unwrap_or_else(|| valid.nfs_scope.clone());
        let path = format!("{}/{name}", valid.paths.nfs.trim_end_matches('/'));
        out.push_str(&format!("{path} {who}({options})\n"));
    }
    out
}

/// Renders the exports drop-in for the named clients only (those with a root to export).
pub fn render_for(valid: &Valid, names: &[String]) -> String {
    let mut only = valid.clone();
    only.clients.retain(|n, _| names.contains(n));
    render(&only)
}
