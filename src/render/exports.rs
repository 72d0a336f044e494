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

/// Renders the exports drop-in for the named clients only (those with a root to export),
/// then the shared roots.
pub fn render_for(valid: &Valid, names: &[String], shared: &[SharedExport]) -> String {
    let mut only = valid.clone();
    only.clients.retain(|n, _| names.contains(n));
    let mut out = render(&only);
    if !shared.is_empty() {
        out.push_str(
            "# Shared roots (`root: shared`): read-only; each Pi's writes stay in its RAM.\n",
        );
    }
    for s in shared {
        let options = shared_options(&valid.nfs_options);
        out.push_str(&format!("{} {}({options})\n", s.root, s.who.join(" ")));
    }
    out
}

/// A shared root's export: its host path and who may mount it (the addresses of its clients,
/// when every one has one, else the boot network's scope).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedExport {
    /// Host path of the shared root.
    pub root: String,
    /// Export scopes.
    pub who: Vec<String>,
}

/// The export options of a shared root: the configured ones with `ro` for `rw`. Root on the
/// Pi is not squashed: its RAM overlay reads the lower tree as root (files such as
/// /etc/shadow are root's alone), and `ro` already keeps every Pi from changing the tree.
pub fn shared_options(options: &[String]) -> String {
    let mut out: Vec<String> = options
        .iter()
        .filter(|o| !matches!(o.as_str(), "rw" | "ro"))
        .cloned()
        .collect();
    out.insert(0, "ro".to_owned());
    out.join(",")
}
