//! The server's `known_hosts` file of client SSH host keys (see [`crate::sshkeys`]). Its
//! content is observed, not declared: each client root's public host key, read (and
//! re-encoded) when the resource is checked, so keys generated earlier in the same apply are
//! in it.

use std::path::Path;

use super::host_file::HostFile;
use super::{Change, Ctx};
use crate::sshkeys::{self, KnownHost};

/// `known_hosts` for the declared clients.
#[derive(Debug, Clone)]
pub struct KnownHosts {
    /// Host path of the file.
    pub path: String,
    /// Per client: its name and the names it is reached by.
    pub clients: Vec<(String, Vec<String>)>,
}

impl KnownHosts {
    /// The file as it should be now.
    fn file(&self, ctx: &Ctx) -> HostFile {
        // What the file says now, by its names column: a client whose tree cannot be read
        // safely (a conflict, reported by its own resources) keeps its line as it is.
        let current = ctx
            .host
            .read(&self.path)
            .ok()
            .flatten()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let mut hosts = Vec::new();
        for (client, names) in &self.clients {
            let read = ctx
                .client_view(client)
                .and_then(|(tree, _)| Ok(tree.read(Path::new(sshkeys::HOST_KEY_PUB))?));
            let key = match read {
                Ok(Some(text)) => sshkeys::sanitize_public(&text),
                Ok(None) => None,
                Err(_) => current.lines().find_map(|l| {
                    let (n, key) = l.split_once(' ')?;
                    (n == names.join(",")).then(|| key.to_owned())
                }),
            };
            if let Some(key) = key {
                hosts.push(KnownHost {
                    client: client.clone(),
                    names: names.clone(),
                    key,
                });
            }
        }
        HostFile {
            path: self.path.clone(),
            content: sshkeys::render_known_hosts(&hosts),
            handler: None,
        }
    }

    pub(super) fn check(&self, ctx: &Ctx) -> anyhow::Result<Option<Change>> {
        self.file(ctx).check(ctx)
    }

    pub(super) fn apply(&self, ctx: &Ctx) -> anyhow::Result<()> {
        self.file(ctx).apply(ctx)
    }
}
