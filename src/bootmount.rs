//! The boot folders' bind mounts at server boot (`pinetboot mount`, run by
//! `pinetboot-mount.service` before dnsmasq and the NFS server).
//!
//! A bind line in `/etc/fstab` would name a path inside an untrusted client root, and mount(8)
//! resolves it: a Pi whose root replaced `boot/firmware` with `ln -s /etc boot/firmware` would
//! have the host's /etc served by TFTP after the next server reboot. So pinetboot writes no
//! fstab lines; this step re-creates each mount the last apply recorded in the state file the
//! way apply makes it: the client root and its boot folder opened confined (no symlink on the
//! way or at the end), the folder checked to be a real folder, and the mount made from that
//! descriptor. What is not a real folder is refused, named, and left unmounted.

use std::path::Path;

use crate::host::confined::Tree;
use crate::host::mount;
use crate::host::mountinfo;
use crate::host::{Host, Kind};
use crate::state::{ClientRecord, State};

/// What happened to one recorded mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Already mounted from the right folder with the safe options.
    AlreadyMounted,
    /// Mounted now.
    Mounted,
    /// Not mounted, and why (something that must be fixed in the client root or by apply).
    Refused(String),
}

/// One recorded client's mount and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The client.
    pub client: String,
    /// Host path of the TFTP folder.
    pub target: String,
    /// Host path of the boot folder (as recorded).
    pub source: String,
    /// What happened.
    pub outcome: Outcome,
}

/// Re-creates every recorded boot-folder mount that is missing or wrong. Never fails as a
/// whole: each client's problem is its own [`Outcome::Refused`].
pub fn restore(host: &Host, state: &State) -> Vec<Report> {
    let mut out = Vec::new();
    for (name, rec) in &state.clients {
        let boot = rec.boot_dir.as_deref().unwrap_or("");
        let source = crate::resource::host_join(&rec.root, Path::new(boot));
        // The serial folder, and the folders its bootloader's TFTP prefix names.
        for target in rec.folders() {
            let outcome = restore_one(host, rec, target).unwrap_or_else(Outcome::Refused);
            match &outcome {
                Outcome::Refused(why) => {
                    tracing::error!(client = %name, target = %target, "not mounted: {why}");
                }
                Outcome::Mounted => {
                    tracing::info!(client = %name, target = %target, source = %source, "mounted");
                }
                Outcome::AlreadyMounted => {}
            }
            out.push(Report {
                client: name.clone(),
                target: target.clone(),
                source: source.clone(),
                outcome,
            });
        }
    }
    out
}

/// Why a recorded boot folder cannot be mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmountable {
    /// It is not there (the message names it).
    Missing(String),
    /// Something is there that is not a real folder reached without symlinks (the violation).
    NotAFolder(String),
}
use Unmountable::{Missing, NotAFolder};

/// Opens the boot folder `boot_dir` of the client root `root` (host paths) the one way it may be
/// mounted: the root and every step below it without symlinks, a folder at the end. Used by
/// `pinetboot mount` and by apply's guard on served mounts.
pub fn boot_folder(
    host: &Host,
    root: &str,
    boot_dir: &Path,
) -> Result<std::os::fd::OwnedFd, Unmountable> {
    let root = host.path(root);
    let tree = Tree::open(&root).map_err(|v| NotAFolder(v.to_string()))?;
    match tree.open_dir(boot_dir) {
        Ok(Some(fd)) => Ok(fd),
        Ok(None) => Err(Missing(format!(
            "{} does not exist",
            root.join(boot_dir).display()
        ))),
        Err(v) => Err(NotAFolder(v.to_string())),
    }
}

fn restore_one(host: &Host, rec: &ClientRecord, target_path: &str) -> Result<Outcome, String> {
    let Some(boot_dir) = rec.boot_dir.as_deref() else {
        return Err(
            "the state file records no boot folder for this client; run `pinetboot apply`".into(),
        );
    };
    let fd = boot_folder(host, &rec.root, Path::new(boot_dir)).map_err(|why| match why {
        Missing(what) => format!("{what}; run `pinetboot apply`"),
        NotAFolder(what) => format!(
            "{what} — not a real folder inside the client root (a planted symlink?); pinetboot will not mount it"
        ),
    })?;
    let target = host.path(target_path);
    match host.kind(target_path) {
        Ok(Kind::Dir(_)) => {}
        Ok(Kind::Missing) => {
            return Err(format!(
                "{} does not exist; run `pinetboot apply`",
                target.display()
            ));
        }
        Ok(_) => {
            return Err(format!(
                "{} is not a folder; run `pinetboot apply`",
                target.display()
            ));
        }
        Err(e) => return Err(format!("{}: {e}; run `pinetboot apply`", target.display())),
    }
    let at = target.to_string_lossy();
    let mounts = mountinfo::read().map_err(|e| format!("reading /proc/self/mountinfo: {e}"))?;
    if let Some(top) = mounts.iter().rev().find(|m| m.mount_point == at)
        && top.has_options(mount::BIND_OPTIONS)
    {
        let src = mount::dev_ino_of(&fd).map_err(|e| e.to_string())?;
        if host.dev_ino(target_path).map_err(|e| e.to_string())? == Some(src) {
            return Ok(Outcome::AlreadyMounted);
        }
    }
    mount::unbind_all(&target).map_err(|e| format!("unmounting {}: {e}", target.display()))?;
    mount::bind(&fd, &target).map_err(|e| {
        format!(
            "bind-mounting {} onto {}: {e} (needs root)",
            host.path(&rec.root).join(boot_dir).display(),
            target.display()
        )
    })?;
    Ok(Outcome::Mounted)
}
