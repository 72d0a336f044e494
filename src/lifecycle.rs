//! A client root's life outside `apply`: deleting an undeclared client's root (`pinetboot
//! purge`, the one way client data is deleted) and moving a declared client's root aside so
//! apply provisions it anew (`pinetboot reprovision`; the data is kept).
//!
//! Each is a check that names what it would touch or refuses with a [`Refused`] (a message and
//! a hint), then the operation itself. The caller holds the exclusive lock across both and
//! asks for confirmation in between.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::config::Valid;
use crate::expand::root_of;
use crate::host::{Host, Kind, mountinfo};
use crate::state::State;

/// Why a purge or a reprovision will not go ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Purge: the client is still in the config (`config` names the file).
    StillDeclared {
        /// The client.
        client: String,
        /// The config file.
        config: PathBuf,
    },
    /// Reprovision: the client is not in the config.
    NotDeclared {
        /// The client.
        client: String,
        /// The config file.
        config: PathBuf,
    },
    /// Purge: the name cannot be a client's (empty, a `/`, a leading dot).
    NotAName(String),
    /// Purge: there is no root to delete.
    NothingToDelete {
        /// Host path of the root.
        root: String,
    },
    /// Reprovision: there is no root to move aside.
    NothingToReprovision {
        /// Host path of the root.
        root: String,
    },
    /// Something other than a folder is where the root belongs.
    NotAFolder {
        /// Host path of the root.
        root: String,
        /// What to do about it (purge and reprovision say different things).
        hint: &'static str,
    },
    /// Purge: a mount is inside the root, or made from a folder inside it.
    Mounted {
        /// The mount point.
        mount_point: String,
        /// Host path of the root.
        root: String,
    },
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::StillDeclared { client, config } => write!(
                f,
                "client {client} is still declared in {}",
                config.display()
            ),
            Refused::NotDeclared { client, config } => {
                write!(f, "client {client} is not declared in {}", config.display())
            }
            Refused::NotAName(name) => write!(f, "`{name}` is not a client name"),
            Refused::NothingToDelete { root } => write!(f, "{root} does not exist"),
            Refused::NothingToReprovision { root } => {
                write!(f, "{root} does not exist: there is nothing to reprovision")
            }
            Refused::NotAFolder { root, .. } => write!(f, "{root} is not a folder"),
            Refused::Mounted { mount_point, root } => {
                write!(f, "{mount_point} is still mounted from or inside {root}")
            }
        }
    }
}

impl std::error::Error for Refused {}

impl Refused {
    /// What the person can do about it.
    pub fn hint(&self) -> String {
        match self {
            Refused::StillDeclared { .. } => {
                "remove it from the config and run `pinetboot apply` first"
            }
            Refused::NotDeclared { .. } => "give the name of a declared client",
            Refused::NotAName(_) => "give the client's name",
            Refused::NothingToDelete { .. } => "nothing to delete",
            Refused::NothingToReprovision { .. } => {
                "run `pinetboot apply`: it provisions the client"
            }
            Refused::NotAFolder { hint, .. } => hint,
            Refused::Mounted { .. } => {
                "run `pinetboot apply` so the removed client's bind mount is pruned, then purge"
            }
        }
        .to_owned()
    }
}

/// The root of an undeclared client, checked and ready to be deleted.
#[derive(Debug)]
pub struct Purge {
    client: String,
    root: String,
}

impl Purge {
    /// Checks that `client` is not declared (in `valid`, loaded from `config`), that its root
    /// is a folder, and that nothing is mounted inside it or from it.
    pub fn check(
        valid: &Valid,
        config: &Path,
        host: &Host,
        client: &str,
    ) -> Result<Purge, CheckError> {
        if valid.clients.contains_key(client) {
            return Err(Refused::StillDeclared {
                client: client.to_owned(),
                config: config.to_owned(),
            }
            .into());
        }
        if client.is_empty() || client.contains('/') || client.starts_with('.') {
            return Err(Refused::NotAName(client.to_owned()).into());
        }
        let root = root_of(valid, client);
        match host.kind(&root)? {
            Kind::Dir(_) => {}
            Kind::Missing => return Err(Refused::NothingToDelete { root }.into()),
            _ => {
                return Err(Refused::NotAFolder {
                    root,
                    hint: "remove it by hand after checking what it is",
                }
                .into());
            }
        }
        let prefix = format!("{}/", host.path(&root).to_string_lossy());
        if let Some(m) = mountinfo::read()?
            .iter()
            .find(|m| m.mount_point.starts_with(&prefix) || m.root.starts_with(&prefix))
        {
            return Err(Refused::Mounted {
                mount_point: m.mount_point.clone(),
                root,
            }
            .into());
        }
        Ok(Purge {
            client: client.to_owned(),
            root,
        })
    }

    /// Host path of the root.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Deletes the root and forgets the client in the state file.
    pub fn run(self, valid: &Valid, host: &Host) -> anyhow::Result<()> {
        let full = host.path(&self.root);
        // By descriptor: no symlink inside the tree is followed, and a mount made inside it
        // since the check is refused before anything is deleted.
        crate::tree::remove::remove(&full)
            .with_context(|| format!("deleting {}", full.display()))?;
        let mut state = State::load(host, &valid.paths.state)?;
        if state.clients.remove(&self.client).is_some() {
            state.save(host, &valid.paths.state)?;
        }
        Ok(())
    }
}

/// A declared client's root, checked and ready to be moved aside.
#[derive(Debug)]
pub struct MoveAside {
    client: String,
    root: String,
}

/// Refuses a reprovision of a client that is not declared (checked before the lock is taken).
pub fn must_be_declared(valid: &Valid, config: &Path, client: &str) -> Result<(), Refused> {
    if valid.clients.contains_key(client) {
        Ok(())
    } else {
        Err(Refused::NotDeclared {
            client: client.to_owned(),
            config: config.to_owned(),
        })
    }
}

impl MoveAside {
    /// Checks that the root of the declared `client` is a folder.
    pub fn check(valid: &Valid, host: &Host, client: &str) -> Result<MoveAside, CheckError> {
        let root = root_of(valid, client);
        match host.kind(&root)? {
            Kind::Dir(_) => Ok(MoveAside {
                client: client.to_owned(),
                root,
            }),
            Kind::Missing => Err(Refused::NothingToReprovision { root }.into()),
            _ => Err(Refused::NotAFolder {
                root,
                hint: "inspect it and move it away by hand",
            }
            .into()),
        }
    }

    /// Host path of the root.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Moves the root to `<nfs>/.NAME.pinetboot-old-<UTC time of now_secs>` (one rename on
    /// the same filesystem, synced), then makes the client's record forget the boot folder and
    /// image it was provisioned from, so the new root is detected afresh from its image.
    /// Returns the host path it was moved to.
    pub fn run(self, valid: &Valid, host: &Host, now_secs: i64) -> anyhow::Result<String> {
        let stamp = crate::image::store::utc(now_secs, true);
        let aside = format!(
            "{}/.{}.pinetboot-old-{stamp}",
            valid.paths.nfs.trim_end_matches('/'),
            self.client
        );
        let (from, to) = (host.path(&self.root), host.path(&aside));
        crate::host::atomic::rename_noreplace_synced(&from, &to)
            .with_context(|| format!("moving {} to {}", from.display(), to.display()))?;
        tracing::info!(client = %self.client, old = %aside, "moved the client root aside");
        let mut state = State::load(host, &valid.paths.state)?;
        if let Some(rec) = state.clients.get_mut(&self.client) {
            rec.boot_dir = None;
            rec.image_sha256 = None;
            state.save(host, &valid.paths.state)?;
        }
        Ok(aside)
    }
}

/// A check that refused, or could not look.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The operation is refused.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// Reading the host failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
