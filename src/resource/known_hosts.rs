//! The server's `known_hosts` file of client SSH host keys (see [`crate::sshkeys`]). Its
//! content is observed, not declared: each client root's public host key, read (and
//! re-encoded) when the resource is checked, so keys generated earlier in the same apply are
//! in it.

use std::path::Path;

use super::host_file::HostFile;
use super::{Change, Ctx};
use crate::host::confined::EntryKind;
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
    /// The file as it should be now, and the clients that have no host key yet.
    fn file(&self, ctx: &Ctx) -> (HostFile, Vec<String>) {
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
        let mut missing = Vec::new();
        for (client, names) in &self.clients {
            let read = ctx.client_view(client).and_then(|(tree, _)| {
                let key = tree.read(Path::new(sshkeys::HOST_KEY_PUB))?;
                let ssh = tree
                    .entry_resolved(Path::new("etc/ssh"))?
                    .is_some_and(|e| e.kind == EntryKind::Dir);
                Ok((key, ssh))
            });
            let key = match read {
                Ok((Some(text), _)) => sshkeys::sanitize_public(&text),
                // clientos generates a key where the root has etc/ssh.
                Ok((None, ssh)) => {
                    if ssh {
                        missing.push(client.clone());
                    }
                    None
                }
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
        let file = HostFile {
            path: self.path.clone(),
            content: sshkeys::render_known_hosts(&hosts),
            handler: None,
        };
        (file, missing)
    }

    pub(super) fn check(&self, ctx: &Ctx) -> anyhow::Result<Option<Change>> {
        let (file, missing) = self.file(ctx);
        Ok(file.check(ctx)?.map(|mut c| {
            if !missing.is_empty() {
                c.detail = Some(format!(
                    "with the host keys apply generates first for {}",
                    missing.join(", ")
                ));
            }
            c
        }))
    }

    pub(super) fn apply(&self, ctx: &Ctx) -> anyhow::Result<()> {
        self.file(ctx).0.apply(ctx)
    }
}
