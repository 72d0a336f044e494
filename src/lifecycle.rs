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
    /// Reprovision: the client boots its image's shared root.
    Shared {
        /// The client.
        client: String,
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
            Refused::Shared { client } => write!(
                f,
                "client {client} boots its image's shared root: it has no root of its own to reprovision"
            ),
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
            Refused::Shared { .. } => {
                "a shared root follows its image: a new image version (its sha256) makes a new shared root at the next apply, each Pi boots it at its next reboot, and `pinetboot gc` removes the old one"
            }
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
        // A shared client's own root (from before it was shared) is its data, unused.
        let shared = valid
            .clients
            .get(client)
            .is_some_and(|c| c.root == crate::config::model::RootMode::Shared);
        if valid.clients.contains_key(client) && !shared {
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
        // A shared client's record is of its shared root, not of the root deleted.
        if state.clients.get(&self.client).is_some_and(|r| !r.shared) {
            state.clients.remove(&self.client);
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
        if valid
            .clients
            .get(client)
            .is_some_and(|c| c.root == crate::config::model::RootMode::Shared)
        {
            return Err(Refused::Shared {
                client: client.to_owned(),
            }
            .into());
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::atomic;

    /// `examples/single-pi.yaml` (raspi1 declared, roots under `/nfs`) and an empty root.
    fn setup() -> (Valid, PathBuf, tempfile::TempDir, Host) {
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/single-pi.yaml");
        let valid = crate::config::load(&config).expect("the example is valid");
        let tmp = tempfile::tempdir().unwrap();
        let host = Host::new(tmp.path()).unwrap();
        atomic::create_dir_all(&host.path("/nfs")).unwrap();
        (valid, config, tmp, host)
    }

    fn refused(r: Result<impl fmt::Debug, CheckError>) -> Refused {
        match r {
            Err(CheckError::Refused(r)) => r,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn purge_refusals_say_what_and_what_to_do() {
        let (valid, config, _tmp, host) = setup();
        let r = refused(Purge::check(&valid, &config, &host, "raspi1"));
        assert_eq!(
            r.to_string(),
            format!("client raspi1 is still declared in {}", config.display())
        );
        assert_eq!(
            r.hint(),
            "remove it from the config and run `pinetboot apply` first"
        );
        for name in ["", "a/b", ".x"] {
            let r = refused(Purge::check(&valid, &config, &host, name));
            assert_eq!(r, Refused::NotAName(name.into()));
            assert_eq!(r.hint(), "give the client's name");
        }
        let r = refused(Purge::check(&valid, &config, &host, "gone"));
        assert_eq!(
            (r.to_string(), r.hint()),
            (
                "/nfs/gone does not exist".into(),
                "nothing to delete".into()
            )
        );
        atomic::write_host_file(&host.path("/nfs/file"), b"x", 0o644).unwrap();
        let r = refused(Purge::check(&valid, &config, &host, "file"));
        assert_eq!(
            (r.to_string(), r.hint()),
            (
                "/nfs/file is not a folder".into(),
                "remove it by hand after checking what it is".into()
            )
        );
    }

    #[test]
    fn purge_deletes_an_undeclared_root() {
        let (valid, config, _tmp, host) = setup();
        atomic::create_dir_all(&host.path("/nfs/ghost/etc")).unwrap();
        atomic::write_host_file(&host.path("/nfs/ghost/etc/hostname"), b"ghost\n", 0o644).unwrap();
        let purge = Purge::check(&valid, &config, &host, "ghost").unwrap();
        assert_eq!(purge.root(), "/nfs/ghost");
        purge.run(&valid, &host).unwrap();
        assert_eq!(host.kind("/nfs/ghost").unwrap(), Kind::Missing);
    }

    #[test]
    fn reprovision_refusals() {
        let (valid, config, _tmp, host) = setup();
        let r = must_be_declared(&valid, &config, "nosuch").unwrap_err();
        assert_eq!(
            (r.to_string(), r.hint()),
            (
                format!("client nosuch is not declared in {}", config.display()),
                "give the name of a declared client".into()
            )
        );
        assert!(must_be_declared(&valid, &config, "raspi1").is_ok());
        let r = refused(MoveAside::check(&valid, &host, "raspi1"));
        assert_eq!(
            (r.to_string(), r.hint()),
            (
                "/nfs/raspi1 does not exist: there is nothing to reprovision".into(),
                "run `pinetboot apply`: it provisions the client".into()
            )
        );
        atomic::write_host_file(&host.path("/nfs/raspi1"), b"x", 0o644).unwrap();
        let r = refused(MoveAside::check(&valid, &host, "raspi1"));
        assert_eq!(r.hint(), "inspect it and move it away by hand");
    }

    #[test]
    fn move_aside_keeps_the_data_under_a_dated_name() {
        let (valid, _config, _tmp, host) = setup();
        atomic::create_dir_all(&host.path("/nfs/raspi1/home")).unwrap();
        let aside = MoveAside::check(&valid, &host, "raspi1").unwrap();
        assert_eq!(aside.root(), "/nfs/raspi1");
        // 2026-03-01 12:34:56 UTC
        let to = aside.run(&valid, &host, 1_772_368_496).unwrap();
        assert_eq!(to, "/nfs/.raspi1.pinetboot-old-20260301T123456Z");
        assert_eq!(host.kind("/nfs/raspi1").unwrap(), Kind::Missing);
        assert!(matches!(
            host.kind(format!("{to}/home")).unwrap(),
            Kind::Dir(_)
        ));
    }
}
