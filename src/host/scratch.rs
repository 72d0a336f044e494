//! Scratch space for the tool checks (`dnsmasq --test`, `exportfs` in a private namespace):
//! `<paths.state>/tmp`, mode 0700, never the system's `/tmp`.
//!
//! Each check makes its own folder in it, removed when the check ends. A check killed midway
//! (a killed apply) leaves its folder behind; every apply empties the scratch folder first,
//! under its exclusive lock, so no other apply can be using it. `plan` never touches it.

use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::host::Host;

/// Host path of the scratch folder (`<state>/tmp`).
pub fn host_path(state: &str) -> String {
    format!("{}/tmp", state.trim_end_matches('/'))
}

/// Makes sure `dir` is a real folder of mode 0700 (created with its parents when missing).
fn ensure(dir: &Path) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {
            if m.permissions().mode() & 0o7777 != 0o700 {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .with_context(|| format!("chmod 0700 {}", dir.display()))?;
            }
            Ok(())
        }
        Ok(_) => anyhow::bail!(
            "{} is not a folder; pinetboot keeps its scratch space there: move it away",
            dir.display()
        ),
        Err(_) => {
            if let Some(parent) = dir.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("creating {}", dir.display()))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("chmod 0700 {}", dir.display()))
        }
    }
}

/// Creates the scratch folder of `state` (0700) and removes whatever a killed apply left in
/// it (without following a symlink or entering a mount). The caller holds the exclusive lock.
/// Returns the folder (under the root prefix) and how many leftovers were removed.
pub fn prepare(host: &Host, state: &str) -> anyhow::Result<(PathBuf, usize)> {
    let dir = host.path(host_path(state));
    ensure(&dir)?;
    let mut removed = 0;
    let entries = std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let path = entry.path();
        match crate::tree::remove::remove(&path) {
            Ok(_) => {
                tracing::info!(path = %path.display(), "removed a scratch folder a killed apply left");
                removed += 1;
            }
            // A leftover that cannot go must not stop the apply: it is said, and tried again
            // by the next one.
            Err(e) => tracing::warn!(
                "cannot remove the leftover scratch {}: {e:#}",
                path.display()
            ),
        }
    }
    Ok((dir, removed))
}

/// A fresh folder in the scratch folder `dir` for one check, removed when dropped.
pub fn tempdir(dir: &Path, what: &str) -> anyhow::Result<tempfile::TempDir> {
    ensure(dir)?;
    let made = tempfile::Builder::new()
        .prefix(".tmp")
        .tempdir_in(dir)
        .with_context(|| format!("making a scratch folder for {what} in {}", dir.display()))?;
    crate::host::atomic::pause_point("tool-check");
    Ok(made)
}

/// Fills a check's folder `dir` (from [`tempdir`]): the empty `folders`, then the `files`
/// (names relative to `dir`, in folders that exist by then).
pub fn populate(dir: &Path, folders: &[&str], files: &[(&str, &[u8])]) -> std::io::Result<()> {
    for folder in folders {
        std::fs::create_dir(dir.join(folder))?;
    }
    for (name, content) in files {
        std::fs::write(dir.join(name), content)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_go_and_the_folder_is_private() {
        let t = tempfile::tempdir().unwrap();
        let host = Host::new(t.path()).unwrap();
        let outside = t.path().join("outside");
        std::fs::write(&outside, b"kept").unwrap();
        let left = t.path().join("var/lib/pinetboot/tmp/.tmpAbCdEf");
        std::fs::create_dir_all(left.join("varlib")).unwrap();
        std::fs::write(left.join("exports"), b"/nfs/x h(rw)\n").unwrap();
        std::os::unix::fs::symlink(&outside, left.join("varlib/link")).unwrap();
        std::fs::set_permissions(
            t.path().join("var/lib/pinetboot/tmp"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let (dir, removed) = prepare(&host, "/var/lib/pinetboot/").unwrap();
        assert_eq!(dir, t.path().join("var/lib/pinetboot/tmp"));
        assert_eq!(removed, 1);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        assert_eq!(std::fs::read(&outside).unwrap(), b"kept");
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700);
        let one = tempdir(&dir, "a test").unwrap();
        assert_eq!(one.path().parent(), Some(dir.as_path()));
        drop(one);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    }
}
