//! The server's `known_hosts` file of client SSH host keys (see [`crate::sshkeys`]). Its
//! content is observed, not declared: each client root's public host key, read (and
//! re-encoded) when the resource is checked, so keys generated earlier in the same apply are
//! in it.

use std::path::Path;

use anyhow::Context as _;

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

/// What `known_hosts` is built from: the file now, and per client its public host key (or
/// `None` with whether its root has `etc/ssh`, where apply makes one), or `Err` when its
/// tree cannot be read safely.
struct Seen {
    current: std::io::Result<Option<Vec<u8>>>,
    keys: Vec<Result<KeySeen, ()>>,
}

/// A client root's public host key, if any, and whether it has `etc/ssh`.
type KeySeen = (Option<Vec<u8>>, bool);

impl KnownHosts {
    fn observe(&self, ctx: &Ctx) -> Seen {
        let keys = self
            .clients
            .iter()
            .map(|(client, _)| {
                ctx.client_view(client)
                    .and_then(|(tree, _)| {
                        let key = tree.read(Path::new(sshkeys::HOST_KEY_PUB))?;
                        let ssh = tree
                            .entry_resolved(Path::new("etc/ssh"))?
                            .is_some_and(|e| e.kind == EntryKind::Dir);
                        Ok((key, ssh))
                    })
                    .map_err(|_| ())
            })
            .collect();
        Seen {
            current: ctx.host.read(&self.path),
            keys,
        }
    }

    /// The file as it should be, and the clients that have no host key yet (pure).
    fn file(&self, seen: &Seen) -> (HostFile, Vec<String>) {
        // What the file says now, by its names column: a client whose tree cannot be read
        // safely (a conflict, reported by its own resources) keeps its line as it is.
        let current = match &seen.current {
            Ok(Some(b)) => String::from_utf8_lossy(b).into_owned(),
            _ => String::new(),
        };
        let mut hosts = Vec::new();
        let mut missing = Vec::new();
        for ((client, names), read) in self.clients.iter().zip(&seen.keys) {
            let key = match read {
                Ok((Some(text), _)) => sshkeys::sanitize_public(text),
                // clientos generates a key where the root has etc/ssh.
                Ok((None, ssh)) => {
                    if *ssh {
                        missing.push(client.clone());
                    }
                    None
                }
                Err(()) => current.lines().find_map(|l| {
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

    /// The change (pure).
    fn decide(&self, seen: Seen) -> anyhow::Result<Option<Change>> {
        let (file, missing) = self.file(&seen);
        let current = seen
            .current
            .with_context(|| format!("reading {}", self.path))?;
        Ok(file.decide(current).map(|mut c| {
            if !missing.is_empty() {
                c.detail = Some(format!(
                    "with the host keys apply generates first for {}",
                    missing.join(", ")
                ));
            }
            c
        }))
    }

    pub(super) fn check(&self, ctx: &Ctx) -> anyhow::Result<Option<Change>> {
        self.decide(self.observe(ctx))
    }

    pub(super) fn apply(&self, ctx: &Ctx) -> anyhow::Result<()> {
        self.file(&self.observe(ctx)).0.apply(ctx)
    }
}
